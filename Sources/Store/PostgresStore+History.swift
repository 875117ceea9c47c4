import Foundation
import PostgresNIO

extension PostgresStore {
    // MARK: - Metrics

    func metrics(jobID: String, afterStep: Int, maxPoints: Int?) throws(StoreError) -> [MetricRecord] {
        let columns = MetricRecord.postgresColumns
        guard let maxPoints else {
            return try read { conn in
                try await conn.rows("""
                    SELECT \(unescaped: columns) FROM metrics WHERE job_id = \(jobID) AND step > \(afterStep) ORDER BY step
                    """).map(MetricRecord.init(postgres:))
            }
        }
        // A snapshot: the ends and the points come from the same history.
        return try snapshot { conn in
            // Two seeks, one round trip (MIN and MAX would scan the whole range).
            let ends = try await conn.rows("""
                SELECT (SELECT step FROM metrics WHERE job_id = \(jobID) AND step > \(afterStep) ORDER BY step LIMIT 1),
                       (SELECT step FROM metrics WHERE job_id = \(jobID) AND step > \(afterStep) ORDER BY step DESC LIMIT 1)
                """)[0].decode((Int?, Int?).self)
            guard let lo = ends.0, let hi = ends.1 else { return [] }
            let rows: [PostgresRow]
            if hi - lo + 1 <= maxPoints {
                // No more steps than points: every row (a step is logged at most once).
                rows = try await conn.rows("""
                    SELECT \(unescaped: columns) FROM metrics WHERE job_id = \(jobID) AND step >= \(lo) ORDER BY step
                    """)
            } else if maxPoints == 1 {
                rows = try await conn.rows("SELECT \(unescaped: columns) FROM metrics WHERE job_id = \(jobID) AND step = \(hi)")
            } else {
                // For each of n evenly spaced targets, the first row at or after it: one index seek
                // each (LATERAL … LIMIT 1). Rounded as numeric, half away from zero, as SQLite does;
                // DISTINCT drops targets that land on the same row across a gap.
                rows = try await conn.rows("""
                    SELECT DISTINCT ON (m.step) m.* FROM generate_series(0, \(maxPoints) - 1) AS p(i)
                    CROSS JOIN LATERAL (
                        SELECT \(unescaped: columns) FROM metrics
                        WHERE job_id = \(jobID)
                          AND step >= \(lo)::bigint + round(p.i::numeric * (\(hi)::bigint - \(lo)::bigint) / (\(maxPoints)::bigint - 1))::bigint
                        ORDER BY step LIMIT 1) AS m
                    ORDER BY m.step
                    """)
            }
            return try rows.map(MetricRecord.init(postgres:))
        }
    }

    func metricCount(jobID: String) throws(StoreError) -> Int {
        try read { conn in try await conn.rows("SELECT COUNT(*) FROM metrics WHERE job_id = \(jobID)")[0].decode(Int.self) }
    }

    // MARK: - Checkpoints

    func addCheckpoint(_ c: CheckpointRecord, lease: Lease?) throws(StoreError) -> Int64 {
        try transaction { conn in
            try await Self.lockJob(conn, c.jobID)
            try await Self.fence(conn, lease)
            try await conn.rows("""
                INSERT INTO checkpoints (\(unescaped: CheckpointRecord.postgresColumns))
                VALUES (\(c.jobID), \(c.step), \(c.path), \(c.bytes), \(c.sha256), \(c.isFinal), \(c.createdAt),
                        \(lease?.owner)::text, \(lease?.token)::text)
                ON CONFLICT (job_id, step) DO UPDATE SET path = EXCLUDED.path, bytes = EXCLUDED.bytes, sha256 = EXCLUDED.sha256,
                    is_final = EXCLUDED.is_final, created_at = EXCLUDED.created_at,
                    lease_owner = EXCLUDED.lease_owner, lease_token = EXCLUDED.lease_token
                """)
            return try await Self.appendEvent(conn, jobID: c.jobID, kind: .checkpoint, data: Store.checkpointEventData(c))
        }
    }

    func checkpoints(jobID: String) throws(StoreError) -> [CheckpointRecord] {
        try read { conn in
            try await conn.rows("""
                SELECT \(unescaped: CheckpointRecord.postgresColumns) FROM checkpoints WHERE job_id = \(jobID) ORDER BY step
                """).map(CheckpointRecord.init(postgres:))
        }
    }

    func checkpoint(jobID: String, step: Int) throws(StoreError) -> CheckpointRecord? {
        try read { conn in
            try await conn.rows("""
                SELECT \(unescaped: CheckpointRecord.postgresColumns) FROM checkpoints WHERE job_id = \(jobID) AND step = \(step)
                """).first.map(CheckpointRecord.init(postgres:))
        }
    }

    func latestCheckpoint(jobID: String) throws(StoreError) -> CheckpointRecord? {
        try read { conn in
            try await conn.rows("""
                SELECT \(unescaped: CheckpointRecord.postgresColumns) FROM checkpoints WHERE job_id = \(jobID)
                ORDER BY step DESC LIMIT 1
                """).first.map(CheckpointRecord.init(postgres:))
        }
    }

    func deleteCheckpoint(jobID: String, step: Int, lease: Lease?) throws(StoreError) {
        try transaction { conn in
            try await Self.fence(conn, lease)
            try await conn.rows("DELETE FROM checkpoints WHERE job_id = \(jobID) AND step = \(step)")
        }
    }

    // MARK: - Events

    func events(jobID: String, afterID: Int64, limit: Int?) throws(StoreError) -> [JobEventRecord] {
        try read { conn in try await Self.events(conn, jobID: jobID, afterID: afterID, limit: limit) }
    }

    func lastEventID(jobID: String) throws(StoreError) -> Int64 {
        try read { conn in
            try await conn.rows("SELECT MAX(id) FROM job_events WHERE job_id = \(jobID)")[0].decode(Int64?.self) ?? 0
        }
    }

    /// One repeatable-read snapshot, so events and job agree with the metrics.
    func historyPage(jobID: String, afterStep: Int, afterEventID: Int64, limit: Int) throws(StoreError) -> HistoryPage {
        try snapshot { conn in
            let metrics = try await conn.rows("""
                SELECT \(unescaped: MetricRecord.postgresColumns) FROM metrics WHERE job_id = \(jobID) AND step > \(afterStep)
                ORDER BY step LIMIT \(limit)
                """).map(MetricRecord.init(postgres:))
            guard metrics.count < limit else { return HistoryPage(metrics: metrics, events: [], job: nil, isLast: false) }
            let events = try await Self.events(conn, jobID: jobID, afterID: afterEventID, limit: limit)
            return HistoryPage(metrics: metrics, events: events, job: try await Self.job(conn, jobID, locking: false),
                               isLast: events.count < limit)
        }
    }

    static func events(_ conn: PostgresConnection, jobID: String, afterID: Int64, limit: Int?) async throws -> [JobEventRecord] {
        try await conn.rows("""
            SELECT \(unescaped: JobEventRecord.postgresColumns) FROM job_events WHERE job_id = \(jobID) AND id > \(afterID)
            ORDER BY id LIMIT \(limit)::bigint
            """).map(JobEventRecord.init(postgres:))
    }

    /// Holds the job's row until the transaction ends (see `appendEvent`).
    static func lockJob(_ conn: PostgresConnection, _ id: String) async throws {
        try await conn.rows("SELECT 1 FROM jobs WHERE id = \(id) FOR UPDATE")
    }

    // MARK: - Datasets

    func upsert(dataset d: DatasetRecord) throws(StoreError) {
        try read { conn in
            _ = try await conn.rows("""
                INSERT INTO datasets (\(unescaped: DatasetRecord.postgresColumns))
                VALUES (\(d.id), \(d.kind), \(d.name), \(d.path)::text, \(d.imageCount), \(d.classesJSON)::text,
                        \(d.imageSize)::integer, \(d.licence)::text, \(d.createdAt))
                ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, path = EXCLUDED.path,
                    image_count = EXCLUDED.image_count, classes_json = EXCLUDED.classes_json, image_size = EXCLUDED.image_size,
                    licence = EXCLUDED.licence, created_at = EXCLUDED.created_at
                """)
        }
    }

    func datasets() throws(StoreError) -> [DatasetRecord] {
        try read { conn in
            try await conn.rows("SELECT \(unescaped: DatasetRecord.postgresColumns) FROM datasets ORDER BY id").map(DatasetRecord.init(postgres:))
        }
    }

    func dataset(_ id: String) throws(StoreError) -> DatasetRecord? {
        try read { conn in
            try await conn.rows("SELECT \(unescaped: DatasetRecord.postgresColumns) FROM datasets WHERE id = \(id)")
                .first.map(DatasetRecord.init(postgres:))
        }
    }

    // MARK: - Evaluations

    func add(evaluation e: EvaluationRecord, lease: Lease?) throws(StoreError) -> EvaluationRecord {
        try transaction { conn in
            try await Self.lockJob(conn, e.jobID)
            try await Self.fence(conn, lease)
            let stored = try EvaluationRecord(postgres: try await conn.rows("""
                INSERT INTO evaluations (job_id, dataset_id, step, result_json, created_at)
                VALUES (\(e.jobID), \(e.datasetID), \(e.step), \(e.resultJSON), \(e.createdAt))
                RETURNING \(unescaped: EvaluationRecord.postgresColumns)
                """)[0])
            try await Self.appendEvent(conn, jobID: stored.jobID, kind: .evaluation, data: Store.evaluationEventData(stored))
            return stored
        }
    }

    func evaluations(jobID: String) throws(StoreError) -> [EvaluationRecord] {
        try read { conn in
            try await conn.rows("""
                SELECT \(unescaped: EvaluationRecord.postgresColumns) FROM evaluations WHERE job_id = \(jobID) ORDER BY id
                """).map(EvaluationRecord.init(postgres:))
        }
    }
}
