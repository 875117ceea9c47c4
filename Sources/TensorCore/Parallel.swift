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

    /// A count for the current task only (`with`), over the process-wide one.
    @TaskLocal private static var scoped: Int?

    public static var count: Int {
        _ = blasConfigured
        return scoped ?? value.load(ordering: .relaxed)
    }

    /// Sets the process-wide count (a benchmark's `--threads`).
    public static func set(_ n: Int) {
        precondition(n >= 1, "thread count must be ≥ 1, got \(n)")
        _ = blasConfigured
        value.store(n, ordering: .relaxed)
    }

    /// Runs `body` with `n` threads for the calling task only. How a kernel splits its work can
    /// change the order of its float sums, so a count set process-wide would change the results
    /// of whatever else runs at the time (a training job beside a test, say); this one cannot.
    public static func with<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        precondition(n >= 1, "thread count must be ≥ 1, got \(n)")
        return try $scoped.withValue(n) { try body() }
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
