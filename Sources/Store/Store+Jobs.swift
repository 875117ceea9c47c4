import Foundation

/// What a submission stores; the server has validated and resolved the config already.
public struct NewJob: Sendable {
    public var method: String
    public var preset: String
    public var configJSON: String
    public var datasetID: String
    public var totalSteps: Int
    public var idempotencyKey: String?
    /// A digest of the request body, to tell a retry (same body) from a reused key.
    public var requestHash: String?

    public init(method: String, preset: String, configJSON: String, datasetID: String, totalSteps: Int,
                idempotencyKey: String? = nil, requestHash: String? = nil) {
        self.method = method
        self.preset = preset
        self.configJSON = configJSON
        self.datasetID = datasetID
        self.totalSteps = totalSteps
        self.idempotencyKey = idempotencyKey
        self.requestHash = requestHash
    }
}

public struct JobQuery: Sendable {
    public var states: Set<JobState> = []
    public var method: String?
    public var limit = 50
    public var pageToken: String?

    public init(states: Set<JobState> = [], method: String? = nil, limit: Int = 50, pageToken: String? = nil) {
        self.states = states
        self.method = method
        self.limit = limit
        self.pageToken = pageToken
    }
}

public struct JobPage: Sendable {
    /// Newest first.
    public let jobs: [JobRecord]
    public let nextPageToken: String?
}

/// Live progress of a running job, kept on its row.
public struct JobProgress: Sendable, Equatable {
    public var step: Int
    public var loss: Double?
    public var lr: Double?
    public var imagesPerS: Double?
    public var etaS: Double?
    /// Resident memory of the process, MB (the row keeps the highest seen).
    public var rssMB: Double?

    public init(step: Int, loss: Double?, lr: Double?, imagesPerS: Double?, etaS: Double?, rssMB: Double? = nil) {
        self.step = step
        self.loss = loss
        self.lr = lr
        self.imagesPerS = imagesPerS
        self.etaS = etaS
        self.rssMB = rssMB
    }
}

extension Store {
    /// Queues a job, or returns the one an earlier request with the same Idempotency-Key made:
    /// the same request hash returns the earlier job (`created == false`), another hash throws
    /// `.idempotencyConflict`. With `maxQueued`, refuses (`.queueFull`) when that many jobs
    /// already wait, counted in the same transaction as the insert so concurrent submissions
    /// (from any node) cannot overshoot.
    public func submit(_ new: NewJob, maxQueued: Int? = nil) throws(StoreError) -> (job: JobRecord, created: Bool) {
        let now = Date()
        let job = JobRecord(id: Self.newJobID(), seq: 0, method: new.method, preset: new.preset,
                            configJSON: new.configJSON, datasetID: new.datasetID, state: .queued, step: 0,
                            totalSteps: new.totalSteps, loss: nil, lr: nil, imagesPerS: nil, etaS: nil, peakRSSMB: nil, error: nil,
                            idempotencyKey: new.idempotencyKey, requestHash: new.requestHash,
                            createdAt: now, startedAt: nil, finishedAt: nil, updatedAt: now)
        return try backend.submit(job, maxQueued: maxQueued)
    }

    public func job(_ id: String) throws(StoreError) -> JobRecord? {
        try backend.job(id)
    }

    /// Jobs newest first, filtered, a page at a time.
    public func jobs(_ query: JobQuery) throws(StoreError) -> JobPage {
        var before: Int64?
        if let token = query.pageToken {
            guard let data = Data(base64Encoded: token), let text = String(data: data, encoding: .utf8),
                  text.hasPrefix("seq:"), let seq = Int64(text.dropFirst(4)) else { throw .badPageToken }
            before = seq
        }
        let limit = max(1, min(query.limit, 500))
        let rows = try backend.jobs(states: query.states, method: query.method, beforeSeq: before, limit: limit + 1)
        let page = Array(rows.prefix(limit))
        let token = rows.count > limit ? Data("seq:\(page.last!.seq)".utf8).base64EncodedString() : nil
        return JobPage(jobs: page, nextPageToken: token)
    }

    /// Moves a job to `to` if the lifecycle allows it from its current state (and, when given,
    /// only from one of `from`); otherwise throws and changes nothing. Records a state event in
    /// the same transaction and returns its id. A trainer passes its `lease`: the change is then
    /// refused (`.leaseLost`) unless the job still runs under it.
    @discardableResult
    public func transition(_ id: String, to: JobState, from: Set<JobState>? = nil, error: String? = nil,
                           lease: Lease? = nil) throws(StoreError) -> StateChange {
        try backend.transition(id, to: to, from: from, error: error, lease: lease)
    }

    /// Claims the oldest queued job for a trainer slot (queued → running), atomically: two
    /// slots, in one process or on two machines, never claim the same job. The claim's lease is
    /// `claimNext`'s; callers that write for the job should use that instead.
    public func claimNextQueued() throws(StoreError) -> StateChange? {
        try claimNext(owner: Self.workerID())?.change
    }

    /// Asks a job to stop, atomically with the check of its state. A queued (or, for cancel,
    /// paused) job moves at once; a running job gets the request written on its row, and its
    /// trainer honours it at the next step, wherever that trainer runs. A pending cancel is never
    /// downgraded to a pause.
    public func requestStop(_ id: String, _ kind: StopKind) throws(StoreError) -> StopOutcome {
        try backend.requestStop(id, kind)
    }

    /// The stop a running job has been asked for, if any (its trainer reads it every step).
    /// With the trainer's `lease`, also throws `.leaseLost` when the job is no longer its own.
    public func stopRequest(_ id: String, lease: Lease? = nil) throws(StoreError) -> StopKind? {
        try backend.stopRequest(id, lease: lease)
    }

    /// Start-up: jobs left `running` by a process that died go back to the queue; they resume
    /// from their last checkpoint. A cancel or pause asked before the crash is honoured instead.
    /// Only for a store no other process trains from (SQLite, whose data dir this process has
    /// locked): on a shared database it would take jobs other workers are training, so there
    /// expired leases bring jobs back instead (`claimNext`).
    public func requeueInterrupted() throws(StoreError) -> Interrupted {
        try backend.requeueInterrupted()
    }

    /// Crashes (or expired leases) a job may live through: the next one fails it instead of
    /// re-queueing it.
    public static let maxInterruptions = 3

    /// The jobs start-up found left `running` by a process that died.
    public struct Interrupted: Sendable, Equatable {
        /// Re-queued, to resume from their last checkpoint.
        public var requeued: [String] = []
        /// Failed: interrupted `maxInterruptions` times.
        public var failed: [String] = []
        /// Cancelled or paused, as asked before the process died.
        public var stopped: [StateChange.Summary] = []

        public init(requeued: [String] = [], failed: [String] = [], stopped: [StateChange.Summary] = []) {
            self.requeued = requeued
            self.failed = failed
            self.stopped = stopped
        }
    }

    /// Progress on the job row and the new metric rows, in one transaction. Re-logged steps
    /// (after a resume) replace the earlier rows rather than duplicating them. With the
    /// trainer's `lease`, nothing is written unless the job still runs under it (`.leaseLost`).
    public func record(progress: JobProgress, metrics: [MetricRecord], for id: String, lease: Lease? = nil) throws(StoreError) {
        try backend.record(progress: progress, metrics: metrics, for: id, lease: lease)
    }

    /// Deletes a job that is not running, with its metrics, checkpoints rows and events.
    /// Returns the checkpoint paths so the caller can remove the files.
    public func delete(_ id: String) throws(StoreError) -> [String] {
        try backend.delete(id)
    }

    public func countsByState() throws(StoreError) -> [JobState: Int] {
        try backend.countsByState()
    }
}

/// A job after a state change, and the id of the event the change inserted in the same
/// transaction (so a publisher never has to look it up, and never gets another's).
@dynamicMemberLookup
public struct StateChange: Sendable {
    public let job: JobRecord
    public let eventID: Int64

    public subscript<T>(dynamicMember path: KeyPath<JobRecord, T>) -> T { job[keyPath: path] }

    /// A job and the state it moved to.
    public struct Summary: Sendable, Equatable {
        public let id: String
        public let state: JobState
    }
}

/// A stop asked of a job by a client (a shutdown is the process's own affair, never stored).
public enum StopKind: String, Sendable {
    case cancel, pause
}

/// What `requestStop` did.
public enum StopOutcome: Sendable {
    /// The job was not running and moved at once.
    case moved(StateChange)
    /// The job is running; its trainer stops it at the next step.
    case requested(JobRecord)
}
