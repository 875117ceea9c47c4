import Foundation
import GRDB

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
    /// Stores a queued job. With an idempotency key seen before: the same request hash returns
    /// the earlier job (`created == false`), another hash throws `.idempotencyConflict`.
    /// Queues a job, or returns the one an earlier request with the same Idempotency-Key made.
    /// With `maxQueued`, refuses (`.queueFull`) when that many jobs already wait, counted in the
    /// same transaction as the insert so concurrent submissions cannot overshoot.
    public func submit(_ new: NewJob, maxQueued: Int? = nil) throws(StoreError) -> (job: JobRecord, created: Bool) {
        try write { db in
            if let key = new.idempotencyKey,
               let existing = try JobRecord.filter(JobRecord.CodingKeys.idempotencyKey == key).fetchOne(db) {
                guard existing.requestHash == new.requestHash else {
                    throw StoreError.idempotencyConflict(key: key, jobID: existing.id)
                }
                return (existing, false)
            }
            if let maxQueued {
                let queued = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs WHERE state = 'queued'") ?? 0
                if queued >= maxQueued { throw StoreError.queueFull(limit: maxQueued) }
            }
            let seq = (try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM jobs") ?? 0) + 1
            let now = Date()
            let job = JobRecord(id: Self.newJobID(), seq: seq, method: new.method, preset: new.preset,
                                configJSON: new.configJSON, datasetID: new.datasetID, state: .queued, step: 0,
                                totalSteps: new.totalSteps, loss: nil, lr: nil, imagesPerS: nil, etaS: nil, peakRSSMB: nil, error: nil,
                                idempotencyKey: new.idempotencyKey, requestHash: new.requestHash,
                                createdAt: now, startedAt: nil, finishedAt: nil, updatedAt: now)
            try job.insert(db)
            try Self.appendEvent(db, jobID: job.id, kind: .state, data: ["state": JobState.queued.rawValue])
            return (job, true)
        }
    }

    public func job(_ id: String) throws(StoreError) -> JobRecord? {
        try read { try JobRecord.fetchOne($0, key: id) }
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
        let rows: [JobRecord] = try read { db in
            var request = JobRecord.order(JobRecord.CodingKeys.seq.desc)
            if !query.states.isEmpty { request = request.filter(query.states.map(\.rawValue).contains(JobRecord.CodingKeys.state)) }
            if let m = query.method { request = request.filter(JobRecord.CodingKeys.method == m) }
            if let before { request = request.filter(JobRecord.CodingKeys.seq < before) }
            return try request.limit(limit + 1).fetchAll(db)
        }
        let page = Array(rows.prefix(limit))
        let token = rows.count > limit ? Data("seq:\(page.last!.seq)".utf8).base64EncodedString() : nil
        return JobPage(jobs: page, nextPageToken: token)
    }

    /// Moves a job to `to` if the lifecycle allows it from its current state (and, when given,
    /// only from one of `from`); otherwise throws and changes nothing. Records a state event.
    @discardableResult
    public func transition(_ id: String, to: JobState, from: Set<JobState>? = nil, error: String? = nil) throws(StoreError) -> StateChange {
        try write { db in try Self.transition(db, id, to: to, from: from, error: error) }
    }

    /// Claims the oldest queued job for a trainer slot (queued → running), atomically.
    public func claimNextQueued() throws(StoreError) -> StateChange? {
        try write { db in
            guard let next = try JobRecord.filter(JobRecord.CodingKeys.state == JobState.queued.rawValue)
                .order(JobRecord.CodingKeys.seq).fetchOne(db) else { return nil }
            return try Self.transition(db, next.id, to: .running, from: [.queued], error: nil)
        }
    }

    /// Asks a job to stop, atomically with the check of its state. A queued (or, for cancel,
    /// paused) job moves at once; a running job gets the request written on its row, and its
    /// trainer honours it at the next step, wherever that trainer runs. A pending cancel is never
    /// downgraded to a pause.
    public func requestStop(_ id: String, _ kind: StopKind) throws(StoreError) -> StopOutcome {
        try write { db in
            guard let job = try JobRecord.fetchOne(db, key: id) else { throw StoreError.notFound("job \(id)") }
            guard job.state.actions.contains(kind == .cancel ? .cancel : .pause) else {
                throw StoreError.illegalTransition(id: id, from: job.state, to: kind == .cancel ? .cancelled : .paused)
            }
            switch (kind, job.state) {
            case (_, .running):
                try db.execute(sql: """
                    UPDATE jobs SET stop_request = CASE WHEN stop_request = 'cancel' THEN 'cancel' ELSE ? END WHERE id = ?
                    """, arguments: [kind.rawValue, id])
                return .requested(job)
            case (.cancel, .queued), (.cancel, .paused):
                return .moved(try Self.transition(db, id, to: .cancelled, from: nil, error: nil))
            default:
                throw StoreError.illegalTransition(id: id, from: job.state, to: kind == .cancel ? .cancelled : .paused)
            }
        }
    }

    /// The stop a running job has been asked for, if any (its trainer reads it every step).
    public func stopRequest(_ id: String) throws(StoreError) -> StopKind? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT stop_request FROM jobs WHERE id = ?", arguments: [id]).flatMap(StopKind.init)
        }
    }

    /// Start-up: jobs left `running` by a process that died go back to the queue; they resume
    /// from their last checkpoint. A cancel or pause asked before the crash is honoured instead.
    public func requeueInterrupted() throws(StoreError) -> Interrupted {
        try write { db in
            var found = Interrupted()
            let pending = try Row.fetchAll(db, sql: """
                SELECT id, stop_request FROM jobs WHERE state = 'running' AND stop_request IS NOT NULL ORDER BY seq
                """)
            for row in pending {
                let id: String = row["id"]
                let to: JobState = row["stop_request"] == StopKind.cancel.rawValue ? .cancelled : .paused
                try Self.transition(db, id, to: to, from: [.running], error: nil, reason: "interrupted")
                found.stopped.append(StateChange.Summary(id: id, state: to))
            }
            let ids = try String.fetchAll(db, sql: "SELECT id FROM jobs WHERE state = 'running' ORDER BY seq")
            for id in ids {
                try db.execute(sql: "UPDATE jobs SET interruptions = interruptions + 1 WHERE id = ?", arguments: [id])
                let count = try Int.fetchOne(db, sql: "SELECT interruptions FROM jobs WHERE id = ?", arguments: [id]) ?? 0
                if count >= Self.maxInterruptions {
                    try Self.transition(db, id, to: .failed, from: [.running],
                                        error: "interrupted \(count) times by process crashes", reason: "interrupted")
                    found.failed.append(id)
                } else {
                    try Self.transition(db, id, to: .queued, from: [.running], error: nil, reason: "interrupted")
                    found.requeued.append(id)
                }
            }
            return found
        }
    }

    /// Crashes a job may live through: the next one fails it instead of re-queueing it.
    public static let maxInterruptions = 3

    /// The jobs start-up found left `running` by a process that died.
    public struct Interrupted: Sendable, Equatable {
        /// Re-queued, to resume from their last checkpoint.
        public var requeued: [String] = []
        /// Failed: interrupted `maxInterruptions` times.
        public var failed: [String] = []
        /// Cancelled or paused, as asked before the process died.
        public var stopped: [StateChange.Summary] = []
    }

    /// Progress on the job row and the new metric rows, in one transaction. Re-logged steps
    /// (after a resume) replace the earlier rows rather than duplicating them.
    public func record(progress: JobProgress, metrics: [MetricRecord], for id: String) throws(StoreError) {
        try write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO metrics (job_id, step, loss, lr, images_per_s, wall_time_s) VALUES (?, ?, ?, ?, ?, ?)
                """)
            for m in metrics {
                try insert.execute(arguments: [m.jobID, m.step, m.loss, m.lr, m.imagesPerS, m.wallTimeS])
            }
            try db.execute(sql: """
                UPDATE jobs SET step = ?, loss = ?, lr = ?, images_per_s = ?, eta_s = ?,
                    peak_rss_mb = MAX(COALESCE(peak_rss_mb, 0), COALESCE(?, 0)), updated_at = ? WHERE id = ?
                """, arguments: [progress.step, progress.loss, progress.lr, progress.imagesPerS, progress.etaS, progress.rssMB, Date(), id])
            if db.changesCount == 0 { throw StoreError.notFound("job \(id)") }
        }
    }

    /// Deletes a job that is not running, with its metrics, checkpoints rows and events.
    /// Returns the checkpoint paths so the caller can remove the files.
    public func delete(_ id: String) throws(StoreError) -> [String] {
        try write { db in
            guard let job = try JobRecord.fetchOne(db, key: id) else { throw StoreError.notFound("job \(id)") }
            guard job.state.actions.contains(.delete) else {
                throw StoreError.conflict("job \(id) is running; cancel it before deleting it")
            }
            let paths = try String.fetchAll(db, sql: "SELECT path FROM checkpoints WHERE job_id = ?", arguments: [id])
            try job.delete(db)
            return paths
        }
    }

    public func countsByState() throws(StoreError) -> [JobState: Int] {
        try read { db in
            var counts = Dictionary(uniqueKeysWithValues: JobState.allCases.map { ($0, 0) })
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state") {
                if let s = JobState(rawValue: row["state"]) { counts[s] = row["n"] }
            }
            return counts
        }
    }

    // MARK: - Inside transactions

    @discardableResult
    static func transition(_ db: Database, _ id: String, to: JobState, from: Set<JobState>?, error: String?,
                           reason: String? = nil) throws -> StateChange {
        guard var job = try JobRecord.fetchOne(db, key: id) else { throw StoreError.notFound("job \(id)") }
        guard job.state.successors.contains(to), from?.contains(job.state) ?? true else {
            throw StoreError.illegalTransition(id: id, from: job.state, to: to)
        }
        let now = Date()
        job.state = to
        job.updatedAt = now
        if to == .running && job.startedAt == nil { job.startedAt = now }
        if to.isTerminal { job.finishedAt = now; job.etaS = nil }
        // A finished job keeps its last throughput; a waiting one has none.
        if to == .queued || to == .paused { job.imagesPerS = nil }
        if let error { job.error = error }
        try job.update(db)
        if to != .running {
            try db.execute(sql: "UPDATE jobs SET stop_request = NULL WHERE id = ?", arguments: [id])
        }
        var data: [String: Any] = ["state": to.rawValue]
        if let error { data["error"] = error }
        if let reason { data["reason"] = reason }
        let eventID = try appendEvent(db, jobID: id, kind: .state, data: data)
        return StateChange(job: job, eventID: eventID)
    }

    /// Inserts an event and returns its id (the SSE event id clients resume from).
    @discardableResult
    static func appendEvent(_ db: Database, jobID: String, kind: JobEventRecord.Kind, data: [String: Any]) throws -> Int64 {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: data, options: [.sortedKeys]), as: UTF8.self)
        try JobEventRecord(id: nil, jobID: jobID, kind: kind, dataJSON: json, createdAt: Date()).insert(db)
        return db.lastInsertedRowID
    }

    static func newJobID() -> String {
        var g = SystemRandomNumberGenerator()
        let n = g.next() as UInt64
        let hex = String(n, radix: 16)
        return "j" + String(repeating: "0", count: 16 - hex.count) + hex
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
