import Config
import Foundation
import Store
import Synchronization
import TensorCore

public struct TrainerOptions: Sendable {
    /// Concurrent training jobs (each on its own thread; default 1 on 2 cores; 0 trains nothing).
    public var slots: Int
    /// Where checkpoint files are written and read.
    public var checkpoints: CheckpointDirectory
    public var dataSource: DataSource
    /// Metrics go to the database once this many steps are pending…
    public var metricsBatchSteps = 50
    /// …or this many seconds have passed, whichever comes first.
    public var metricsBatchSeconds = 1.0
    /// False only to measure what bookkeeping costs (`mimserve-bench jobs`): no metric rows and
    /// no checkpoints are written; the job's start and end still are.
    public var bookkeeping = true
    /// Called after every step with (job, step, data wait s, step s): benchmarks and tests.
    public var stepObserver: (@Sendable (String, Int, Double, Double) -> Void)?
    /// Tests only: called with a job's id after a slot claimed it and before the slot registers
    /// it as running here, the window in which a cancel used to be lost.
    public var claimed: (@Sendable (String) -> Void)?
    /// Nice value of the slot threads and of the kernels they run (0: the process's own).
    public var nice: Int32 = 0
    /// How long a claim holds a job without a heartbeat; slots renew every third of it.
    public var leaseSeconds = Store.defaultLeaseSeconds
    /// Names this process on the leases it holds (`lease_owner`).
    public var workerID = Store.workerID()
    public var log: @Sendable (String) -> Void

    public init(slots: Int = 1, checkpoints: CheckpointDirectory, dataSource: @escaping DataSource,
                log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(("trainer: " + $0 + "\n").utf8)) }) {
        self.slots = slots
        self.checkpoints = checkpoints
        self.dataSource = dataSource
        self.log = log
    }
}

/// N trainer slots, each a dedicated thread (never an event loop, never Swift concurrency's
/// cooperative pool) that claims the oldest queued job in a transaction and trains it.
/// Cancel and pause are written on the job's row (any process may write them); each running
/// job reads them, and this process's shutdown flag, at every step boundary.
public final class TrainerPool: Sendable {
    public let store: Store
    public let bus: EventBus
    public let options: TrainerOptions

    private struct State {
        var running: Set<String> = []
        var aliveSlots = 0
        var stopping = false
        var stepsDone = 0
        var memoryReleases = 0
    }

    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let stopped = DispatchGroup()

    public init(store: Store, bus: EventBus, options: TrainerOptions) {
        self.store = store
        self.bus = bus
        self.options = options
    }

    /// Starts the slots. On a store this process alone trains from (SQLite: the data dir is
    /// locked), first re-queues the jobs a dead process left running; on a shared database those
    /// jobs may be other workers' live ones, so their expired leases bring them back instead.
    public func start() throws(StoreError) {
        let interrupted = try store.isShared ? Store.Interrupted() : store.requeueInterrupted()
        for id in interrupted.requeued {
            options.log("job \(id) was interrupted; re-queued to resume from its last checkpoint")
            bus.publish(.state(jobID: id, .queued, error: nil, eventID: nil))
        }
        for job in interrupted.stopped {
            options.log("job \(job.id) was interrupted after a request to stop; it is \(job.state.rawValue)")
            bus.publish(.state(jobID: job.id, job.state, error: nil, eventID: nil))
        }
        for id in interrupted.failed {
            let error = Store.interruptedTooOften()
            options.log("job \(id) was \(error); it fails instead of running again")
            bus.publish(.state(jobID: id, .failed, error: error, eventID: nil))
        }
        for slot in 0..<options.slots {
            stopped.enter()
            state.withLock { $0.aliveSlots += 1 }
            // A serial queue of its own per slot (an overcommit thread that Dispatch manages):
            // never an event loop nor the cooperative pool. Not a bare Thread: on Linux,
            // libdispatch's `concurrentPerform` (our GEMM split) corrupted its continuation
            // cache when a foreign thread that had used it exited (found by ASan).
            DispatchQueue(label: "mimserve.trainer.\(slot)", qos: .userInitiated).async { [self] in
                let own = ThreadPriority.current
                if options.nice != own { ThreadPriority.set(options.nice) }
                defer { if options.nice != own { ThreadPriority.set(own) } }
                slotLoop(slot)
                state.withLock { $0.aliveSlots -= 1 }
                stopped.leave()
            }
        }
    }

    /// Wakes idle slots (a job was queued or resumed).
    public func notify() {
        for _ in 0..<options.slots { wake.signal() }
    }

    /// Stops after the current step of every running job: each checkpoints and goes back to
    /// the queue, so the next start resumes it. Blocks until the slots have ended.
    public func shutdown(timeout: TimeInterval = 120) {
        state.withLock { s in
            s.stopping = true
        }
        for _ in 0..<max(1, options.slots) { wake.signal() }
        _ = stopped.wait(timeout: .now() + timeout)
    }

    public var aliveSlots: Int { state.withLock { $0.aliveSlots } }
    public var runningJobs: Set<String> { state.withLock { $0.running } }
    /// How many times the pool went idle and gave its buffers back (benchmarks wait on it).
    public var memoryReleases: Int { state.withLock { $0.memoryReleases } }
    /// Training steps completed since start (for a steps/s rate).
    public var stepsDone: Int { state.withLock { $0.stepsDone } }

    // MARK: - Lifecycle requests

    /// Cancels a queued, paused or running job. A running job stops at its next step.
    @discardableResult
    public func cancel(_ id: String) throws(StoreError) -> JobRecord {
        try request(id, .cancel)
    }

    /// Pauses a running job: it checkpoints at its next step and waits, `paused`, for resume.
    @discardableResult
    public func pause(_ id: String) throws(StoreError) -> JobRecord {
        try request(id, .pause)
    }

    /// Puts a paused job back in the queue; it continues from its last checkpoint.
    @discardableResult
    public func resume(_ id: String) throws(StoreError) -> JobRecord {
        let change = try store.transition(id, to: .queued, from: [.paused])
        bus.publish(.state(jobID: id, .queued, error: nil, eventID: change.eventID))
        notify()
        return change.job
    }

    /// Deletes a job that is not running, with every checkpoint file it wrote.
    public func delete(_ id: String) throws(StoreError) {
        let paths = try store.delete(id)
        options.checkpoints.removeJob(id, recorded: paths)
    }

    private func request(_ id: String, _ kind: StopKind) throws(StoreError) -> JobRecord {
        switch try store.requestStop(id, kind) {
        case .moved(let change):
            bus.publish(.state(jobID: id, change.state, error: nil, eventID: change.eventID))
            return change.job
        case .requested(let job):
            return job
        }
    }

    // MARK: - Slots

    private func slotLoop(_ slot: Int) {
        while !state.withLock({ $0.stopping }) {
            let claim: Claim?
            do {
                claim = try store.claimNext(owner: options.workerID, leaseSeconds: options.leaseSeconds)
            } catch {
                options.log("slot \(slot): cannot claim a job: \(error)")
                _ = wake.wait(timeout: .now() + 1)
                continue
            }
            guard let claim else {
                _ = wake.wait(timeout: .now() + 1)
                continue
            }
            publishTakenBack(claim.expired)
            let job = claim.change.job
            bus.publish(.state(jobID: job.id, .running, error: nil, eventID: claim.change.eventID))
            options.claimed?(job.id)
            state.withLock { _ = $0.running.insert(job.id) }
            run(job, lease: claim.lease)
            let idle = state.withLock { s -> Bool in
                s.running.remove(job.id)
                return s.running.isEmpty
            }
            // The job's tensors are back in the buffer pool: when no job trains any more, give
            // them to the system, or the server would keep the largest job's memory for good.
            if idle {
                BufferPool.shared.trim()
                state.withLock { $0.memoryReleases += 1 }
            }
        }
    }

    private func run(_ job: JobRecord, lease: Lease) {
        let config: JobConfig
        do {
            config = try JobConfig.decode(job.configJSON)
        } catch {
            _ = try? store.transition(job.id, to: .failed, from: [.running], error: "stored config is unreadable: \(error)", lease: lease)
            return
        }
        let heartbeat = Heartbeat(store: store, lease: lease, seconds: options.leaseSeconds, log: options.log)
        defer { heartbeat.stop() }
        var opts = options
        let observer = options.stepObserver
        opts.stepObserver = { [self] id, step, wait, seconds in
            state.withLock { $0.stepsDone += 1 }
            observer?(id, step, wait, seconds)
        }
        TrainingRun(job: job, config: config, store: store, bus: bus, options: opts, lease: lease,
                    stopRequested: { [self] in stopRequest(lease, heartbeat: heartbeat) }).run()
    }

    /// A lost lease wins over everything: the job is another trainer's now. Then a client's
    /// request on the job's row wins over this process's shutdown: a job asked to pause during
    /// shutdown ends paused, not re-queued. An unreadable row stops nothing.
    private func stopRequest(_ lease: Lease, heartbeat: Heartbeat) -> StopRequest? {
        if heartbeat.lost { return .leaseLost }
        let request: StopKind?
        do {
            request = try store.stopRequest(lease.jobID, lease: lease)
        } catch .leaseLost {
            return .leaseLost
        } catch {
            request = nil
        }
        switch request {
        case .cancel: return .cancel
        case .pause: return .pause
        case nil: return state.withLock { $0.stopping } ? .shutdown : nil
        }
    }

    /// Jobs a claim took back from trainers whose lease expired.
    private func publishTakenBack(_ expired: Store.Interrupted) {
        for id in expired.requeued {
            options.log("job \(id): its trainer's lease expired; re-queued to resume from its last checkpoint")
            bus.publish(.state(jobID: id, .queued, error: nil, eventID: nil))
        }
        for job in expired.stopped {
            options.log("job \(job.id): its trainer's lease expired after a request to stop; it is \(job.state.rawValue)")
            bus.publish(.state(jobID: job.id, job.state, error: nil, eventID: nil))
        }
        for id in expired.failed {
            let error = Store.interruptedTooOften()
            options.log("job \(id): its trainer's lease expired; \(error), it fails instead of running again")
            bus.publish(.state(jobID: id, .failed, error: error, eventID: nil))
        }
    }
}
