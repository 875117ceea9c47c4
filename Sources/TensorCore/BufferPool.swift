import Synchronization
#if canImport(Glibc)
import Glibc
#endif
#if os(Linux)
/// glibc's malloc_trim(3) (declared in <malloc.h>, which the Glibc module does not export):
/// returns free heap pages to the kernel.
@_silgen_name("malloc_trim") private func malloc_trim(_ pad: Int) -> Int32
/// glibc's mallopt(3), also from <malloc.h>.
@_silgen_name("mallopt") private func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// Float storage owned by tensors. When the last tensor using it goes away the memory returns
/// to the pool it came from (`BufferPool.shared` for tensors), so a steady-state training step
/// reuses the previous step's buffers.
public final class Storage: @unchecked Sendable {
    /// The first float, on a cache line (`BufferPool.alignment`).
    public let pointer: UnsafeMutablePointer<Float>
    /// Capacity in floats: the pool bucket size, at least the requested count.
    public let capacity: Int
    /// What malloc returned (`pointer` is the first cache line boundary in it).
    private let block: UInt
    private let pool: BufferPool

    fileprivate init(block: UInt, capacity: Int, pool: BufferPool) {
        self.block = block
        self.pointer = BufferPool.aligned(block)
        self.capacity = capacity
        self.pool = pool
    }

    deinit { pool.recycle(block, capacity: capacity) }
}

/// Size-bucketed free lists of float buffers. Buckets are quarter powers of two
/// (2^k · {1, 1.25, 1.5, 1.75}), so at most 25% of a buffer is slack.
///
/// Buffers from 1 MiB up to 32 MiB (`directFloats..<heapLimitFloats`) are not cached: they
/// come from the C library's heap and go back to it when released. A bucket keeps as many
/// buffers as its size ever had live at once, so caching these sizes holds the sum of every
/// size's own peak, while the heap joins freed neighbours and serves one size from another's
/// memory: recomputed Swin-B steps (batch 8) peaked at 2 137 MB with every size cached and at
/// 1 942 MB this way, at the same speed (docs/architecture.md#memory). For that the heap is
/// told to keep what it is given back (no trimming; `trim()` returns it when jobs end) and to
/// take everything under 32 MiB from itself. Larger buffers would be fresh mappings, faulted
/// in page by page at every use, so they are cached like small ones.
public final class BufferPool: Sendable {
    public static let shared = BufferPool()

    public struct Statistics: Sendable, Equatable {
        /// Cached-size buffers obtained from the system allocator since start (a pool miss).
        public var freshAllocations = 0
        /// Buffers of the direct sizes, which always come from the C heap.
        public var directAllocations = 0
        /// Requests served from a free list.
        public var reuses = 0
        /// Floats currently held in free lists.
        public var cachedFloats = 0
        /// Floats in live buffers (handed out, not yet returned).
        public var liveFloats = 0
        public var peakLiveFloats = 0
    }

    private struct State {
        var free: [Int: [UInt]] = [:]  // bucket size → malloc blocks (pointers are not Sendable)
        var stats = Statistics()
    }

    private let state = Mutex(State())

    /// Buffers of `directFloats..<heapLimitFloats` floats (1 MiB up to 32 MiB) bypass the cache.
    public static let directFloats = 1 << 18
    public static let heapLimitFloats = 1 << 23

    /// Every buffer starts on a cache line. malloc's 16-byte alignment put large buffers 16
    /// bytes past a page, so each 64-byte vector load or store of a row straddled two lines:
    /// oneDNN's sgemm lost 20–35 % on some of ViT-B's shapes on an Ice Lake Xeon that way
    /// (docs/architecture.md#memory). A buffer is a malloc block `alignment` bytes longer than
    /// it needs, used from its first line boundary: the same count always asks malloc for the
    /// same size, so the heap refills a freed block as before. (posix_memalign asks for a
    /// larger block and splits it, which did not fit the holes the last step left: the MAE
    /// ViT-S step's resident memory grew by 500 MB.)
    static let alignment = 64

    /// malloc with room to start on a line boundary.
    private static func allocate(floats: Int) -> UInt {
        guard let block = malloc(floats * MemoryLayout<Float>.size + alignment) else {
            fatalError("out of memory allocating \(floats) floats")
        }
        return UInt(bitPattern: block)
    }

    /// The first line boundary in a block from `allocate`.
    static func aligned(_ block: UInt) -> UnsafeMutablePointer<Float> {
        UnsafeMutablePointer(bitPattern: (block + UInt(alignment - 1)) & ~UInt(alignment - 1))!
    }

    static func isDirect(_ count: Int) -> Bool { (directFloats..<heapLimitFloats).contains(count) }

    /// Sets the heap up for the direct sizes, once per process (glibc; elsewhere a no-op).
    private static let heapConfigured: Bool = {
        #if os(Linux)
        let mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1  // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        return mallopt(mmapThreshold, Int32(heapLimitFloats * MemoryLayout<Float>.size + alignment)) == 1
            && mallopt(trimThreshold, Int32.max) == 1
        #else
        return true
        #endif
    }()

    public init() { _ = Self.heapConfigured }

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
        let size = Self.isDirect(count) ? count : Self.bucketSize(for: count)
        let reused: UInt? = state.withLock { s in
            s.stats.liveFloats += size
            s.stats.peakLiveFloats = max(s.stats.peakLiveFloats, s.stats.liveFloats)
            if Self.isDirect(size) {
                s.stats.directAllocations += 1
                return nil
            }
            if let p = s.free[size]?.popLast() {
                s.stats.reuses += 1
                s.stats.cachedFloats -= size
                return p
            }
            s.stats.freshAllocations += 1
            return nil
        }
        return Storage(block: reused ?? Self.allocate(floats: size), capacity: size, pool: self)
    }

    /// Whether released buffers are filled with NaN (`MIMSERVE_POISON_RELEASED=1`, a test
    /// setting; the kernel matrix runs the numeric suites with it): a kernel that still reads a
    /// tensor's memory after the tensor went away (a `pointer` used past its tensor's last use,
    /// which Swift may release early) or reads a fresh buffer before writing it then reads NaN
    /// and fails its test, instead of silently reading what another owner wrote.
    static let poisonsReleased = Atomic<Bool>(getenv("MIMSERVE_POISON_RELEASED").map { String(cString: $0) == "1" } ?? false)

    fileprivate func recycle(_ block: UInt, capacity: Int) {
        if Self.poisonsReleased.load(ordering: .relaxed) { Self.aligned(block).update(repeating: .nan, count: capacity) }
        if Self.isDirect(capacity) {
            state.withLock { $0.stats.liveFloats -= capacity }
            free(UnsafeMutableRawPointer(bitPattern: block))
            return
        }
        state.withLock { s in
            s.free[capacity, default: []].append(block)
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
        for block in buffers { free(UnsafeMutableRawPointer(bitPattern: block)) }
        #if os(Linux)
        _ = malloc_trim(0)
        #endif
    }
}
