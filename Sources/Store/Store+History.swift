import Foundation
import GRDB

extension Store {
    // MARK: - Metrics

    /// Logged steps after `afterStep`, in order; with `maxPoints`, evenly thinned to at most
    /// that many (the last step always kept, so a chart ends where training is).
    public func metrics(jobID: String, afterStep: Int = 0, maxPoints: Int? = nil) throws(StoreError) -> [MetricRecord] {
        let rows = try read { db in
            try MetricRecord.filter(MetricRecord.CodingKeys.jobID == jobID && MetricRecord.CodingKeys.step > afterStep)
                .order(MetricRecord.CodingKeys.step).fetchAll(db)
        }
        guard let maxPoints, maxPoints >= 1, rows.count > maxPoints else { return rows }
        if maxPoints == 1 { return [rows.last!] }
        let stride = Double(rows.count - 1) / Double(maxPoints - 1)
        return (0..<maxPoints).map { rows[Int((Double($0) * stride).rounded())] }
    }

    public func metricCount(jobID: String) throws(StoreError) -> Int {
        try read { try MetricRecord.filter(MetricRecord.CodingKeys.jobID == jobID).fetchCount($0) }
    }

    // MARK: - Checkpoints

    /// Records a checkpoint whose file is already written and renamed into place.
    /// Records a checkpoint and its event; returns the event's id.
    @discardableResult
    public func addCheckpoint(_ c: CheckpointRecord) throws(StoreError) -> Int64 {
        try write { db in
            try c.upsert(db)
            return try Self.appendEvent(db, jobID: c.jobID, kind: .checkpoint,
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
