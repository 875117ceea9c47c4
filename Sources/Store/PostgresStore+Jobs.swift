import Foundation
import PostgresNIO

extension PostgresStore {
    func submit(_ new: JobRecord, maxQueued: Int?) throws(StoreError) -> (job: JobRecord, created: Bool) {
        let lock = AdvisoryLock.submissions.rawValue
        return try transaction { conn in
            // Submissions take turns (for this transaction only): the count of queued jobs and
            // the idempotency check stay true until the insert commits, on every node.
            try await conn.rows("SELECT pg_advisory_xact_lock(\(lock))")
            if let key = new.idempotencyKey,
               let row = try await conn.rows(PostgresQuery(unsafeSQL: "SELECT \(JobRecord.postgresColumns) FROM jobs WHERE idempotency_key = $1",
                                                           binds: Self.binds(key))).first {
                let existing = try JobRecord(postgres: row)
                guard existing.requestHash == new.requestHash else {
                    throw StoreError.idempotencyConflict(key: key, jobID: existing.id)
                }
                return (existing, false)
            }
            if let maxQueued {
                let queued = try await conn.rows("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").first?.decode(Int.self) ?? 0
                if queued >= maxQueued { throw StoreError.queueFull(limit: maxQueued) }
            }
            let rows = try await conn.rows("""
                INSERT INTO jobs (id, method, preset, config_json, dataset_id, state, step, total_steps, idempotency_key,
                                  request_hash, created_at, updated_at)
                VALUES (\(new.id), \(new.method), \(new.preset), \(new.configJSON), \(new.datasetID), 'queued', 0, \(new.totalSteps),
                        \(new.idempotencyKey)::text, \(new.requestHash)::text, \(new.createdAt), \(new.updatedAt))
                RETURNING \(unescaped: JobRecord.postgresColumns)
                """)
            let job = try JobRecord(postgres: rows[0])
            try await Self.appendEvent(conn, jobID: job.id, kind: .state, data: Store.stateEventData(.queued, error: nil, reason: nil))
            return (job, true)
        }
    }

    func job(_ id: String) throws(StoreError) -> JobRecord? {
        try read { conn in try await Self.job(conn, id, locking: false) }
    }

    func jobs(states: Set<JobState>, method: String?, beforeSeq: Int64?, limit: Int) throws(StoreError) -> [JobRecord] {
        var conditions: [String] = [], binds = PostgresBindings()
        if !states.isEmpty {
            binds.append(states.map(\.rawValue).sorted())
            conditions.append("state = ANY($\(binds.count))")
        }
        if let method {
            binds.append(method)
            conditions.append("method = $\(binds.count)")
        }
        if let beforeSeq {
            binds.append(beforeSeq)
            conditions.append("seq < $\(binds.count)")
        }
        binds.append(limit)
        let sql = "SELECT \(JobRecord.postgresColumns) FROM jobs"
            + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY seq DESC LIMIT $\(binds.count)"
        let query = PostgresQuery(unsafeSQL: sql, binds: binds)
        return try read { conn in try await conn.rows(query).map(JobRecord.init(postgres:)) }
    }

    func transition(_ id: String, to: JobState, from: Set<JobState>?, error: String?, lease: Lease?) throws(StoreError) -> StateChange {
        try transaction { conn in
            try await Self.fence(conn, lease)
            return try await Self.transition(conn, id, to: to, from: from, error: error)
        }
    }

    func requestStop(_ id: String, _ kind: StopKind) throws(StoreError) -> StopOutcome {
        try transaction { conn in
            guard let job = try await Self.job(conn, id, locking: true) else { throw StoreError.notFound("job \(id)") }
            switch try job.stopDecision(kind) {
            case .request:
                try await conn.rows("""
                    UPDATE jobs SET stop_request = CASE WHEN stop_request = 'cancel' THEN 'cancel' ELSE \(kind.rawValue) END
                    WHERE id = \(id)
                    """)
                return .requested(job)
            case .cancelNow:
                return .moved(try await Self.transition(conn, id, to: .cancelled, from: nil, error: nil))
            }
        }
    }

    func stopRequest(_ id: String, lease: Lease?) throws(StoreError) -> StopKind? {
        try read { conn in
            let row = try await conn.rows("SELECT stop_request, state, lease_token FROM jobs WHERE id = \(id)").first
            let (request, state, token) = try row?.decode((String?, String, String?).self) ?? (nil, "", nil)
            if let lease, state != JobState.running.rawValue || token != lease.token { throw StoreError.leaseLost(jobID: id) }
            return request.flatMap(StopKind.init)
        }
    }

    func requeueInterrupted() throws(StoreError) -> Store.Interrupted {
        try transaction { conn in
            try await Self.takeBack(conn, reason: "interrupted",
                                    "SELECT id, stop_request FROM jobs WHERE state = 'running' ORDER BY seq FOR UPDATE")
        }
    }

    func record(progress: JobProgress, metrics: [MetricRecord], for id: String, lease: Lease?) throws(StoreError) {
        // One statement per chunk of rows (a statement takes at most 65 535 parameters); a step
        // logged twice in one batch keeps its last row, as the upsert would.
        var latest: [Int: MetricRecord] = [:]
        for m in metrics { latest[m.step] = m }
        let rows = latest.values.sorted { $0.step < $1.step }
        let inserts = stride(from: 0, to: rows.count, by: 5_000).map { start in
            Self.metricInsert(rows[start..<min(start + 5_000, rows.count)])
        }
        try transaction { conn in
            try await Self.fence(conn, lease)
            for insert in inserts { try await conn.rows(insert) }
            let updated = try await conn.rows("""
                UPDATE jobs SET step = \(progress.step), loss = \(progress.loss)::float8, lr = \(progress.lr)::float8,
                    images_per_s = \(progress.imagesPerS)::float8, eta_s = \(progress.etaS)::float8,
                    peak_rss_mb = GREATEST(COALESCE(peak_rss_mb, 0), COALESCE(\(progress.rssMB)::float8, 0)), updated_at = \(Date())
                WHERE id = \(id) RETURNING id
                """)
            if updated.isEmpty { throw StoreError.notFound("job \(id)") }
            try await Self.notifyChange(conn, jobID: id)
        }
    }

    static func metricInsert(_ rows: ArraySlice<MetricRecord>) -> PostgresQuery {
        var binds = PostgresBindings(capacity: rows.count * 6)
        var values: [String] = []
        values.reserveCapacity(rows.count)
        for m in rows {
            let n = binds.count
            binds.append(m.jobID)
            binds.append(m.step)
            binds.append(m.loss)
            binds.append(m.lr)
            binds.append(m.imagesPerS)
            binds.append(m.wallTimeS)
            values.append("($\(n + 1), $\(n + 2), $\(n + 3), $\(n + 4), $\(n + 5)::float8, $\(n + 6))")
        }
        return PostgresQuery(unsafeSQL: """
            INSERT INTO metrics (\(MetricRecord.postgresColumns)) VALUES \(values.joined(separator: ", "))
            ON CONFLICT (job_id, step) DO UPDATE SET loss = EXCLUDED.loss, lr = EXCLUDED.lr,
                images_per_s = EXCLUDED.images_per_s, wall_time_s = EXCLUDED.wall_time_s
            """, binds: binds)
    }

    func delete(_ id: String) throws(StoreError) -> [String] {
        try transaction { conn in
            guard let job = try await Self.job(conn, id, locking: true) else { throw StoreError.notFound("job \(id)") }
            guard job.state.actions.contains(.delete) else {
                throw StoreError.conflict("job \(id) is running; cancel it before deleting it")
            }
            let paths = try await conn.rows("SELECT path FROM checkpoints WHERE job_id = \(id) ORDER BY step").map { try $0.decode(String.self) }
            try await conn.rows("DELETE FROM jobs WHERE id = \(id)")
            try await Self.notifyChange(conn, jobID: id)
            return paths
        }
    }

    func countsByState() throws(StoreError) -> [JobState: Int] {
        try read { conn in
            var counts = Dictionary(uniqueKeysWithValues: JobState.allCases.map { ($0, 0) })
            for row in try await conn.rows("SELECT state, COUNT(*) FROM jobs GROUP BY state") {
                let (state, n) = try row.decode((String, Int).self)
                if let s = JobState(rawValue: state) { counts[s] = n }
            }
            return counts
        }
    }

    // MARK: - Inside transactions

    static func binds(_ values: String...) -> PostgresBindings {
        var binds = PostgresBindings()
        for v in values { binds.append(v) }
        return binds
    }

    /// The job's row; with `locking`, held until the transaction ends so no one else changes it
    /// or adds an event for it meanwhile.
    static func job(_ conn: PostgresConnection, _ id: String, locking: Bool) async throws -> JobRecord? {
        try await conn.rows(PostgresQuery(unsafeSQL: "SELECT \(JobRecord.postgresColumns) FROM jobs WHERE id = $1"
                                          + (locking ? " FOR UPDATE" : ""), binds: binds(id)))
            .first.map(JobRecord.init(postgres:))
    }

    @discardableResult
    static func transition(_ conn: PostgresConnection, _ id: String, to: JobState, from: Set<JobState>?, error: String?,
                           reason: String? = nil) async throws -> StateChange {
        guard let current = try await job(conn, id, locking: true) else { throw StoreError.notFound("job \(id)") }
        let moved = try current.moved(to: to, from: from, error: error)
        let rows = try await conn.rows("""
            UPDATE jobs SET state = \(moved.state.rawValue), updated_at = \(moved.updatedAt), started_at = \(moved.startedAt),
                finished_at = \(moved.finishedAt), eta_s = \(moved.etaS)::float8, images_per_s = \(moved.imagesPerS)::float8,
                error = \(moved.error)::text,
                stop_request = CASE WHEN \(to.rawValue) = 'running' THEN stop_request END,
                lease_owner = CASE WHEN \(to.rawValue) = 'running' THEN lease_owner END,
                lease_token = CASE WHEN \(to.rawValue) = 'running' THEN lease_token END,
                lease_expires_at = CASE WHEN \(to.rawValue) = 'running' THEN lease_expires_at END
            WHERE id = \(id)
            RETURNING \(unescaped: JobRecord.postgresColumns)
            """)
        let job = try JobRecord(postgres: rows[0])
        let eventID = try await appendEvent(conn, jobID: id, kind: .state, data: Store.stateEventData(to, error: error, reason: reason))
        return StateChange(job: job, eventID: eventID)
    }

    /// Inserts an event and returns its id (the SSE event id clients resume from). The caller
    /// holds the job's row lock: ids come from a sequence, so without it two writers could commit
    /// one job's events out of id order, and a stream replaying "after id N" could miss one.
    @discardableResult
    static func appendEvent(_ conn: PostgresConnection, jobID: String, kind: JobEventRecord.Kind, data: [String: Any]) async throws -> Int64 {
        let json = try Store.eventJSON(data)
        let id = try await conn.rows("""
            INSERT INTO job_events (job_id, kind, data_json, created_at) VALUES (\(jobID), \(kind.rawValue), \(json), \(Date()))
            RETURNING id
            """)[0].decode(Int64.self)
        try await notifyChange(conn, jobID: jobID)
        return id
    }

    /// Tells the other nodes listening on this schema's channel that `jobID`'s rows changed,
    /// when (and only if) the transaction commits. The payload is the writer's application name
    /// (unique per store, so a node skips its own news) and the job id. NOTIFY folds repeats
    /// within one transaction.
    static func notifyChange(_ conn: PostgresConnection, jobID: String) async throws {
        try await conn.rows("""
            SELECT pg_notify(\(unescaped: PostgresStore.channelExpression), current_setting('application_name') || ' ' || \(jobID))
            """)
    }
}
