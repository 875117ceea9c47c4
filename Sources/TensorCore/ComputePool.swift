import CKernels
import Dispatch
import Synchronization

/// Threads that stay awake between parallel regions, under `DispatchApply`.
///
/// A training step runs thousands of parallel regions, many of them short (a layer norm over a
/// small batch, one attention call of a Swin stage at batch 2). `concurrentPerform` puts its
/// worker threads to sleep after each and wakes them through the kernel for the next: a
/// UM-MAE step at batch 2 made about 800 context switches and 1 600 futex calls. Here one
/// worker per other core spins on a ticket word for about 50 µs after a region ends, so the
/// next region starts without a system call (ViT-B's step at batch 8 took 9 % less time); a
/// worker idle for longer than that sleeps on a semaphore, so an idle server burns nothing.
///
/// A region is published as one 64-bit ticket word: generation (32 bits), iteration count
/// (16) and next iteration (16). Every thread, the caller included, claims iterations by
/// compare-and-swap on that word, so a thread that still holds an old generation can never take
/// an iteration of a newer region. Only one region uses the pool at a time: a second caller (a
/// region started inside a region, or another job's thread) gets `false` and runs its region on
/// `concurrentPerform` as before.
final class ComputePool: @unchecked Sendable {
    static let shared = ComputePool(workers: max(0, ProcessInfoCores.active - 1))

    /// Pause instructions a worker spins through before it sleeps: about 50 µs on the Zen 5
    /// EPYC (25 ns a pause), longer than most gaps between a step's regions. 20 000 (0.5 ms)
    /// timed the same steps within the noise, and burns ten times longer after the last one.
    private static let spinLimit = 2_000

    private final class Worker: Sendable {
        let asleep = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
    }

    private let ticket = Atomic<UInt64>(0)
    private let unfinished = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    /// The current region's body: written only by the caller that holds `busy`, before it
    /// publishes the region, and read only by a thread that has just claimed an iteration of it.
    private nonisolated(unsafe) var body: ((Int) -> Void)?
    private let workers: [Worker]

    private init(workers count: Int) {
        workers = (0..<count).map { _ in Worker() }
        for (i, worker) in workers.enumerated() {
            // A serial queue of its own per worker: Dispatch gives it a thread, which never
            // returns (the trainer slots are made the same way, see TrainerPool).
            DispatchQueue(label: "mimserve.compute.\(i)", qos: .userInitiated).async { [self] in loop(worker) }
        }
    }

    /// Runs `body(0)…body(n − 1)` on the caller and the workers; false (nothing run) when the
    /// pool is in use or has no workers.
    func run(_ n: Int, _ body: (Int) -> Void) -> Bool {
        guard !workers.isEmpty, n > 0, n < 1 << 16,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        withoutActuallyEscaping(body) { body in
            self.body = body
            unfinished.store(n, ordering: .relaxed)
            let generation = (ticket.load(ordering: .relaxed) >> 32) &+ 1
            ticket.store(generation << 32 | UInt64(n) << 16, ordering: .sequentiallyConsistent)
            for worker in workers where worker.asleep.exchange(false, ordering: .sequentiallyConsistent) {
                worker.wake.signal()
            }
            help(generation)
            var spins = 0
            while unfinished.load(ordering: .acquiring) > 0 { Self.pause(&spins) }
            self.body = nil
        }
        busy.store(false, ordering: .releasing)
        return true
    }

    /// Claims and runs iterations of region `generation` until none is left.
    private func help(_ generation: UInt64) {
        var t = ticket.load(ordering: .acquiring)
        while t >> 32 == generation && t & 0xffff < (t >> 16) & 0xffff {
            let (claimed, now) = ticket.compareExchange(expected: t, desired: t + 1, ordering: .acquiringAndReleasing)
            if claimed {
                body!(Int(t & 0xffff))
                unfinished.subtract(1, ordering: .releasing)
                t = ticket.load(ordering: .acquiring)
            } else {
                t = now
            }
        }
    }

    private func loop(_ me: Worker) -> Never {
        var seen = ticket.load(ordering: .acquiring) >> 32
        while true {
            var spins = 0
            var t = ticket.load(ordering: .acquiring)
            while t >> 32 == seen {
                if spins < Self.spinLimit {
                    Self.pause(&spins)
                } else {
                    // Announce the sleep, then look once more: a caller that published a region
                    // after that look sees the flag and signals.
                    me.asleep.store(true, ordering: .sequentiallyConsistent)
                    if ticket.load(ordering: .sequentiallyConsistent) >> 32 == seen { me.wake.wait() }
                    me.asleep.store(false, ordering: .sequentiallyConsistent)
                    spins = 0
                }
                t = ticket.load(ordering: .acquiring)
            }
            seen = t >> 32
            help(seen)
        }
    }

    /// Workers asleep now (tests wait for it to exercise the wake-up path).
    var sleepingWorkers: Int { workers.count { $0.asleep.load(ordering: .relaxed) } }

    /// Worker threads (one per core but the caller's).
    var workerCount: Int { workers.count }

    @inline(__always)
    private static func pause(_ spins: inout Int) {
        spins += 1
        mims_spin_pause()
    }
}
