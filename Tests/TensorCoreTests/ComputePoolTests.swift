import Dispatch
import Synchronization
import Testing
@testable import TensorCore

@Suite("Compute pool") struct ComputePoolTests {
    /// Runs `regions` parallel regions of 1…37 iterations; each iteration adds its index + 1
    /// to its own counter, so a lost or repeated iteration shows as a wrong count.
    func check(regions: Int, seed: Int) -> Bool {
        var ok = true
        for r in 0..<regions {
            let n = 1 + (r * 7 + seed) % 37
            let hits = Mutex([Int](repeating: 0, count: n))
            DispatchApply.run(n) { i in hits.withLock { $0[i] += i + 1 } }
            if hits.withLock({ $0 }) != (0..<n).map({ $0 + 1 }) { ok = false }
        }
        return ok
    }

    @Test func everyIterationRunsExactlyOnce() {
        #expect(check(regions: 3000, seed: 0))
    }

    @Test func aRegionInsideARegionRunsToo() {
        let total = Atomic<Int>(0)
        DispatchApply.run(4) { _ in
            DispatchApply.run(5) { j in total.add(j, ordering: .relaxed) }
        }
        #expect(total.load(ordering: .relaxed) == 4 * (0 + 1 + 2 + 3 + 4))
    }

    @Test func callersOnSeveralThreadsShareIt() {
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            if !check(regions: 500, seed: t) { failures.add(1, ordering: .relaxed) }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
    }

    /// Workers that went to sleep are woken by the next region (gated on their state, not on
    /// time).
    @Test func sleepingWorkersWakeForTheNextRegion() async {
        let pool = ComputePool.shared
        guard pool.workerCount > 0 else { return }
        #expect(check(regions: 1, seed: 3))
        while pool.sleepingWorkers < pool.workerCount { await Task.yield() }
        let seen = Mutex<Set<Int>>([])
        // Enough iterations that, with the caller alone, it would still finish: the check is
        // that every iteration runs and the call returns.
        DispatchApply.run(64) { i in seen.withLock { _ = $0.insert(i) } }
        #expect(seen.withLock { $0 } == Set(0..<64))
        #expect(check(regions: 200, seed: 5))
    }
}
