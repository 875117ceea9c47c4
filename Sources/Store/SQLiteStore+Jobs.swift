import Foundation
import GRDB

extension SQLiteStore {
    func submit(_ new: JobRecord, maxQueued: Int?) throws(StoreError) -> (job: JobRecord, created: Bool) {
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
            var job = new
            job.seq = (try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM jobs") ?? 0) + 1
            try job.insert(db)
            try Self.appendEvent(db, jobID: job.id, kind: .state, data: Store.stateEventData(.queued, error: nil, reason: nil))
            return (job, true)
        }
    }

    func job(_ id: String) throws(StoreError) -> JobRecord? {
        try read { try JobRecord.fetchOne($0, key: id) }
    }

    func jobs(states: Set<JobState>, method: String?, beforeSeq: Int64?, limit: Int) throws(StoreError) -> [JobRecord] {
        try read { db in
            var request = JobRecord.order(JobRecord.CodingKeys.seq.desc)
            if !states.isEmpty { request = request.filter(states.map(\.rawValue).contains(JobRecord.CodingKeys.state)) }
            if let method { request = request.filter(JobRecord.CodingKeys.method == method) }
            if let beforeSeq { request = request.filter(JobRecord.CodingKeys.seq < beforeSeq) }
            return try request.limit(limit).fetchAll(db)
        }
    }

    func transition(_ id: String, to: JobState, from: Set<JobState>?, error: String?, lease: Lease?) throws(StoreError) -> StateChange {
        try write { db in
            try Self.fence(db, lease)
            return try Self.transition(db, id, to: to, from: from, error: error)
        }
    }

    func requestStop(_ id: String, _ kind: StopKind) throws(StoreError) -> StopOutcome {
        try write { db in
            guard let job = try JobRecord.fetchOne(db, key: id) else { throw StoreError.notFound("job \(id)") }
            switch try job.stopDecision(kind) {
            case .request:
                try db.execute(sql: """
                    UPDATE jobs SET stop_request = CASE WHEN stop_request = 'cancel' THEN 'cancel' ELSE ? END WHERE id = ?
                    """, arguments: [kind.rawValue, id])
                return .requested(job)
            case .cancelNow:
                return .moved(try Self.transition(db, id, to: .cancelled, from: nil, error: nil))
            }
        }
    }

    func stopRequest(_ id: String, lease: Lease?) throws(StoreError) -> StopKind? {
        try read { db in
            try Self.fence(db, lease)
            return try String.fetchOne(db, sql: "SELECT stop_request FROM jobs WHERE id = ?", arguments: [id]).flatMap(StopKind.init)
        }
    }

    func requeueInterrupted() throws(StoreError) -> Store.Interrupted {
        try write { db in try Self.takeBack(db, reason: "interrupted", where: "state = 'running'", arguments: []) }
    }

    func record(progress: JobProgress, metrics: [MetricRecord], for id: String, lease: Lease?) throws(StoreError) {
        try write { db in
            try Self.fence(db, lease)
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

    func delete(_ id: String) throws(StoreError) -> [String] {
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

    func countsByState() throws(StoreError) -> [JobState: Int] {
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
        guard let current = try JobRecord.fetchOne(db, key: id) else { throw StoreError.notFound("job \(id)") }
        var job = try current.moved(to: to, from: from, error: error)
        if to != .running { job.worker = nil }
        try job.update(db)
        if to != .running {
            try db.execute(sql: """
                UPDATE jobs SET stop_request = NULL, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL WHERE id = ?
                """, arguments: [id])
        }
        let eventID = try appendEvent(db, jobID: id, kind: .state, data: Store.stateEventData(to, error: error, reason: reason))
        return StateChange(job: job, eventID: eventID)
    }

    /// Inserts an event and returns its id (the SSE event id clients resume from).
    @discardableResult
    static func appendEvent(_ db: Database, jobID: String, kind: JobEventRecord.Kind, data: [String: Any]) throws -> Int64 {
        try JobEventRecord(id: nil, jobID: jobID, kind: kind, dataJSON: Store.eventJSON(data), createdAt: Date()).insert(db)
        return db.lastInsertedRowID
    }
}
