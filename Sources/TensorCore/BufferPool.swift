import Synchronization
#if os(Linux)
/// glibc's malloc_trim(3) (declared in <malloc.h>, which the Glibc module does not export):
/// returns free heap pages to the kernel.
@_silgen_name("malloc_trim") private func malloc_trim(_ pad: Int) -> Int32
#endif

/// Float storage owned by tensors. When the last tensor using it goes away the memory returns
/// to the pool it came from (`BufferPool.shared` for tensors), so a steady-state training step
/// reuses the previous step's buffers.
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    /// Capacity in floats: the pool bucket size, at least the requested count.
    public let capacity: Int
    private let pool: BufferPool

    fileprivate init(pointer: UnsafeMutablePointer<Float>, capacity: Int, pool: BufferPool) {
        self.pointer = pointer
        self.capacity = capacity
        self.pool = pool
    }

    deinit { pool.recycle(pointer, capacity: capacity) }
}

/// Size-bucketed free lists of float buffers. Buckets are quarter powers of two
/// (2^k · {1, 1.25, 1.5, 1.75}), so at most 25% of a buffer is slack.
public final class BufferPool: Sendable {
    public static let shared = BufferPool()

    public struct Statistics: Sendable, Equatable {
        /// Buffers obtained from the system allocator since start.
        public var freshAllocations = 0
        /// Requests served from a free list.
        public var reuses = 0
        /// Floats currently held in free lists.
        public var cachedFloats = 0
        /// Floats in live buffers (handed out, not yet returned).
        public var liveFloats = 0
        public var peakLiveFloats = 0
    }

    private struct State {
        var free: [Int: [UInt]] = [:]  // bucket size → addresses (pointers are not Sendable)
        var stats = Statistics()
    }

    private let state = Mutex(State())

    /// Smallest bucket size ≥ `count`.
    static func bucketSize(for count: Int) -> Int {
        if count <= 64 { return 64 }
        let highBit = Int.bitWidth - 1 - (count - 1).leadingZeroBitCount  // 2^highBit ≤ count-1 < 2^(highBit+1)
        let base = 1 << highBit
        let quarter = base / 4
        let steps = (count - base + quarter - 1) / quarter  // 1...4
        return base + steps * quarter
    }

    public func storage(count: Int) -> Storage {
        let size = Self.bucketSize(for: count)
        let reused: UInt? = state.withLock { s in
            s.stats.liveFloats += size
            s.stats.peakLiveFloats = max(s.stats.peakLiveFloats, s.stats.liveFloats)
            if let p = s.free[size]?.popLast() {
                s.stats.reuses += 1
                s.stats.cachedFloats -= size
                return p
            }
            s.stats.freshAllocations += 1
            return nil
        }
        let pointer = reused.flatMap { UnsafeMutablePointer<Float>(bitPattern: $0) }
            ?? UnsafeMutablePointer<Float>.allocate(capacity: size)
        return Storage(pointer: pointer, capacity: size, pool: self)
    }

    fileprivate func recycle(_ pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        let address = UInt(bitPattern: pointer)
        state.withLock { s in
            s.free[capacity, default: []].append(address)
            s.stats.cachedFloats += capacity
            s.stats.liveFloats -= capacity
        }
    }

    public var statistics: Statistics { state.withLock { $0.stats } }

    /// Resets the peak to the current live size (for per-phase peaks in benchmarks).
    public func resetPeak() { state.withLock { $0.stats.peakLiveFloats = $0.stats.liveFloats } }

    /// Returns every cached buffer to the system, and asks the allocator to give the freed
    /// pages back to the kernel (glibc keeps freed heap memory mapped otherwise), so a server's
    /// resident memory falls back once its jobs end. Live buffers are untouched.
    public func trim() {
        let buffers = state.withLock { s -> [UInt] in
            let all = s.free.values.flatMap { $0 }
            s.free.removeAll()
            s.stats.cachedFloats = 0
            return all
        }
        for a in buffers { UnsafeMutablePointer<Float>(bitPattern: a)?.deallocate() }
        #if os(Linux)
        _ = malloc_trim(0)
        #endif
    }
}
