import Foundation
import GRDB

extension SQLiteStore {
    // MARK: - Metrics

    func metrics(jobID: String, afterStep: Int, maxPoints: Int?) throws(StoreError) -> [MetricRecord] {
        try read { db in
            guard let maxPoints else {
                return try MetricRecord.filter(MetricRecord.CodingKeys.jobID == jobID && MetricRecord.CodingKeys.step > afterStep)
                    .order(MetricRecord.CodingKeys.step).fetchAll(db)
            }
            // Two seeks (MIN and MAX in one query would scan the whole range).
            // (Cached statements: compiling these costs more than running them.)
            let first = try db.cachedStatement(sql: "SELECT step FROM metrics WHERE job_id = ? AND step > ? ORDER BY step LIMIT 1")
            let last = try db.cachedStatement(sql: "SELECT step FROM metrics WHERE job_id = ? AND step > ? ORDER BY step DESC LIMIT 1")
            guard let lo = try Int.fetchOne(first, arguments: [jobID, afterStep]),
                  let hi = try Int.fetchOne(last, arguments: [jobID, afterStep]) else { return [] }
            let columns = "job_id, step, loss, lr, images_per_s, wall_time_s"
            let rows: RowCursor
            if hi - lo + 1 <= maxPoints {
                // No more steps than points: every row (a step is logged at most once).
                rows = try Row.fetchCursor(db.cachedStatement(sql: "SELECT \(columns) FROM metrics WHERE job_id = ? AND step >= ? ORDER BY step"),
                                           arguments: [jobID, lo])
            } else if maxPoints == 1 {
                rows = try Row.fetchCursor(db.cachedStatement(sql: "SELECT \(columns) FROM metrics WHERE job_id = ? AND step = ?"),
                                           arguments: [jobID, hi])
            } else {
                rows = try Row.fetchCursor(db.cachedStatement(sql: """
                    WITH RECURSIVE points(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM points WHERE i + 1 < :n)
                    SELECT \(columns) FROM metrics WHERE job_id = :job AND step IN (
                        SELECT (SELECT step FROM metrics WHERE job_id = :job
                                AND step >= :lo + CAST(ROUND(i * (:hi - :lo) * 1.0 / (:n - 1)) AS INTEGER) ORDER BY step LIMIT 1)
                        FROM points)
                    ORDER BY step
                    """), arguments: ["n": maxPoints, "job": jobID, "lo": lo, "hi": hi])
            }
            // Columns by position: the record's Codable decoding costs more than the query here.
            var out: [MetricRecord] = []
            out.reserveCapacity(min(maxPoints, hi - lo + 1))
            while let row = try rows.next() {
                out.append(MetricRecord(jobID: row[0], step: row[1], loss: row[2], lr: row[3], imagesPerS: row[4], wallTimeS: row[5]))
            }
            return out
        }
    }

    func metricCount(jobID: String) throws(StoreError) -> Int {
        try read { try MetricRecord.filter(MetricRecord.CodingKeys.jobID == jobID).fetchCount($0) }
    }

    // MARK: - Checkpoints

    func addCheckpoint(_ c: CheckpointRecord, lease: Lease?) throws(StoreError) -> Int64 {
        try write { db in
            try Self.fence(db, lease)
            try c.written(under: lease).upsert(db)
            return try Self.appendEvent(db, jobID: c.jobID, kind: .checkpoint,
                                        data: Store.checkpointEventData(c))
        }
    }

    func checkpoints(jobID: String) throws(StoreError) -> [CheckpointRecord] {
        try read { try CheckpointRecord.filter(CheckpointRecord.CodingKeys.jobID == jobID)
            .order(CheckpointRecord.CodingKeys.step).fetchAll($0) }
    }

    func checkpoint(jobID: String, step: Int) throws(StoreError) -> CheckpointRecord? {
        try read { try CheckpointRecord.fetchOne($0, key: ["job_id": jobID, "step": step]) }
    }

    func latestCheckpoint(jobID: String) throws(StoreError) -> CheckpointRecord? {
        try read { try CheckpointRecord.filter(CheckpointRecord.CodingKeys.jobID == jobID)
            .order(CheckpointRecord.CodingKeys.step.desc).fetchOne($0) }
    }

    func deleteCheckpoint(jobID: String, step: Int, lease: Lease?) throws(StoreError) {
        _ = try write { db in
            try Self.fence(db, lease)
            return try CheckpointRecord.deleteOne(db, key: ["job_id": jobID, "step": step])
        }
    }

    // MARK: - Events

    func events(jobID: String, afterID: Int64, limit: Int?) throws(StoreError) -> [JobEventRecord] {
        try read { try Self.events($0, jobID: jobID, afterID: afterID, limit: limit) }
    }

    func lastEventID(jobID: String) throws(StoreError) -> Int64 {
        try read { try Int64.fetchOne($0, sql: "SELECT MAX(id) FROM job_events WHERE job_id = ?", arguments: [jobID]) ?? 0 }
    }

    /// One read transaction: a snapshot, so events and job agree with the metrics.
    func historyPage(jobID: String, afterStep: Int, afterEventID: Int64, limit: Int) throws(StoreError) -> HistoryPage {
        try read { db in
            let metrics = try MetricRecord.filter(MetricRecord.CodingKeys.jobID == jobID && MetricRecord.CodingKeys.step > afterStep)
                .order(MetricRecord.CodingKeys.step).limit(limit).fetchAll(db)
            guard metrics.count < limit else { return HistoryPage(metrics: metrics, events: [], job: nil, isLast: false) }
            let events = try Self.events(db, jobID: jobID, afterID: afterEventID, limit: limit)
            return HistoryPage(metrics: metrics, events: events, job: try JobRecord.fetchOne(db, key: jobID), isLast: events.count < limit)
        }
    }

    static func events(_ db: Database, jobID: String, afterID: Int64, limit: Int?) throws -> [JobEventRecord] {
        var request = JobEventRecord.filter(JobEventRecord.CodingKeys.jobID == jobID && JobEventRecord.CodingKeys.id > afterID)
            .order(JobEventRecord.CodingKeys.id)
        if let limit { request = request.limit(limit) }
        return try request.fetchAll(db)
    }

    // MARK: - Datasets

    func upsert(dataset: DatasetRecord) throws(StoreError) {
        try write { try dataset.upsert($0) }
    }

    func datasets() throws(StoreError) -> [DatasetRecord] {
        try read { try DatasetRecord.order(DatasetRecord.CodingKeys.id).fetchAll($0) }
    }

    func dataset(_ id: String) throws(StoreError) -> DatasetRecord? {
        try read { try DatasetRecord.fetchOne($0, key: id) }
    }

    // MARK: - Evaluations

    func add(evaluation: EvaluationRecord, lease: Lease?) throws(StoreError) -> EvaluationRecord {
        try write { db in
            try Self.fence(db, lease)
            let e = try evaluation.inserted(db)
            try Self.appendEvent(db, jobID: e.jobID, kind: .evaluation,
                                 data: Store.evaluationEventData(e))
            return e
        }
    }

    func evaluations(jobID: String) throws(StoreError) -> [EvaluationRecord] {
        try read { try EvaluationRecord.filter(EvaluationRecord.CodingKeys.jobID == jobID)
            .order(EvaluationRecord.CodingKeys.id).fetchAll($0) }
    }
}
