import COpenBLAS
import Dispatch
import Synchronization

/// How many threads compute kernels use. GEMMs are split by us and run on single-threaded
/// OpenBLAS calls, so OpenBLAS's own pool is pinned to one thread and never oversubscribes.
public enum ComputeThreads {
    private static let value = Atomic<Int>(defaultCount())
    private static let blasConfigured: Bool = {
        openblas_set_num_threads(1)
        return true
    }()

    static func defaultCount() -> Int {
        if let env = getenvInt("MIMSERVE_THREADS"), env > 0 { return env }
        return max(1, ProcessInfoCores.active)
    }

    public static var count: Int {
        _ = blasConfigured
        return value.load(ordering: .relaxed)
    }

    public static func set(_ n: Int) {
        precondition(n >= 1, "thread count must be ≥ 1, got \(n)")
        _ = blasConfigured
        value.store(n, ordering: .relaxed)
    }
}

/// Splits `0..<n` into at most `ComputeThreads.count` contiguous chunks and runs them in parallel.
/// Work below `minPerThread` items per chunk runs inline.
public func parallelFor(_ n: Int, minPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
    if n <= 0 { return }
    let threads = min(ComputeThreads.count, max(1, n / max(1, minPerThread)))
    if threads <= 1 {
        body(0..<n)
        return
    }
    DispatchApply.run(threads) { t in
        let lo = n * t / threads, hi = n * (t + 1) / threads
        if lo < hi { body(lo..<hi) }
    }
}
