import Foundation
import GRDB

extension Store {
    // MARK: - Metrics

    /// Logged steps after `afterStep`, in order; with `maxPoints`, evenly thinned to at most
    /// that many (the first and the last step always kept, so a chart ends where training is).
    ///
    /// Thinned in SQL: the rows nearest `maxPoints` evenly spaced steps between the first and
    /// the last, each found by one seek in the (job_id, step) primary key, so the cost grows
    /// with `maxPoints`, not with the job's history (200 of 100 000 rows: 202 seeks).
    public func metrics(jobID: String, afterStep: Int = 0, maxPoints: Int? = nil) throws(StoreError) -> [MetricRecord] {
        try read { db in
            let all = MetricRecord.filter(MetricRecord.CodingKeys.jobID == jobID && MetricRecord.CodingKeys.step > afterStep)
                .order(MetricRecord.CodingKeys.step)
            guard let maxPoints, maxPoints >= 1 else { return try all.fetchAll(db) }
            let bounds = try Row.fetchOne(db, sql: "SELECT MIN(step) AS lo, MAX(step) AS hi FROM metrics WHERE job_id = ? AND step > ?",
                                          arguments: [jobID, afterStep])
            guard let lo: Int = bounds?["lo"], let hi: Int = bounds?["hi"] else { return [] }
            // Fewer steps than points: every row (a step is logged at most once).
            if hi - lo + 1 <= maxPoints { return try all.fetchAll(db) }
            if maxPoints == 1 { return try all.filter(MetricRecord.CodingKeys.step == hi).fetchAll(db) }
            let seek = try db.cachedStatement(sql: "SELECT * FROM metrics WHERE job_id = ? AND step >= ? ORDER BY step LIMIT 1")
            var rows: [MetricRecord] = []
            rows.reserveCapacity(maxPoints)
            var next = lo
            for i in 0..<maxPoints {
                // The i-th of maxPoints evenly spaced steps in [lo, hi], never before the row after the last one taken.
                let target = max(next, lo + Int((Double(i) * Double(hi - lo) / Double(maxPoints - 1)).rounded()))
                guard target <= hi, let row = try MetricRecord.fetchOne(seek, arguments: [jobID, target]) else { break }
                rows.append(row)
                next = row.step + 1
            }
            return rows
        }
    }

    public func metricCount(jobID: String) throws(StoreError) -> Int {
        try read { try MetricRecord.filter(MetricRecord.CodingKeys.jobID == jobID).fetchCount($0) }
    }

    // MARK: - Checkpoints

    /// Records a checkpoint whose file is already written and renamed into place.
    public func addCheckpoint(_ c: CheckpointRecord) throws(StoreError) {
        try write { db in
            try c.upsert(db)
            try Self.appendEvent(db, jobID: c.jobID, kind: .checkpoint,
                                 data: ["step": c.step, "bytes": c.bytes, "sha256": c.sha256, "final": c.isFinal])
        }
    }

    public func checkpoints(jobID: String) throws(StoreError) -> [CheckpointRecord] {
        try read { try CheckpointRecord.filter(CheckpointRecord.CodingKeys.jobID == jobID)
            .order(CheckpointRecord.CodingKeys.step).fetchAll($0) }
    }

    public func checkpoint(jobID: String, step: Int) throws(StoreError) -> CheckpointRecord? {
        try read { try CheckpointRecord.fetchOne($0, key: ["job_id": jobID, "step": step]) }
    }

    public func latestCheckpoint(jobID: String) throws(StoreError) -> CheckpointRecord? {
        try read { try CheckpointRecord.filter(CheckpointRecord.CodingKeys.jobID == jobID)
            .order(CheckpointRecord.CodingKeys.step.desc).fetchOne($0) }
    }

    public func deleteCheckpoint(jobID: String, step: Int) throws(StoreError) {
        _ = try write { try CheckpointRecord.deleteOne($0, key: ["job_id": jobID, "step": step]) }
    }

    // MARK: - Events

    /// State, checkpoint and evaluation events of a job after `afterID`, in order.
    public func events(jobID: String, afterID: Int64 = 0) throws(StoreError) -> [JobEventRecord] {
        try read { try JobEventRecord.filter(JobEventRecord.CodingKeys.jobID == jobID && JobEventRecord.CodingKeys.id > afterID)
            .order(JobEventRecord.CodingKeys.id).fetchAll($0) }
    }

    // MARK: - Datasets

    public func upsert(dataset: DatasetRecord) throws(StoreError) {
        try write { try dataset.upsert($0) }
    }

    public func datasets() throws(StoreError) -> [DatasetRecord] {
        try read { try DatasetRecord.order(DatasetRecord.CodingKeys.id).fetchAll($0) }
    }

    public func dataset(_ id: String) throws(StoreError) -> DatasetRecord? {
        try read { try DatasetRecord.fetchOne($0, key: id) }
    }

    // MARK: - Evaluations

    @discardableResult
    public func add(evaluation: EvaluationRecord) throws(StoreError) -> EvaluationRecord {
        try write { db in
            let e = try evaluation.inserted(db)
            try Self.appendEvent(db, jobID: e.jobID, kind: .evaluation,
                                 data: ["id": e.id ?? 0, "dataset": e.datasetID, "step": e.step])
            return e
        }
    }

    public func evaluations(jobID: String) throws(StoreError) -> [EvaluationRecord] {
        try read { try EvaluationRecord.filter(EvaluationRecord.CodingKeys.jobID == jobID)
            .order(EvaluationRecord.CodingKeys.id).fetchAll($0) }
    }
}
