import Foundation

extension Store {
    // MARK: - Metrics

    /// Logged steps after `afterStep`, in order; with `maxPoints`, evenly thinned to at most
    /// that many (the first and the last step always kept, so a chart ends where training is).
    ///
    /// Thinned in SQL, in one statement: for each of `maxPoints` evenly spaced steps between the
    /// first and the last, the first row at or after it, each found by one seek in the
    /// (job_id, step) primary key. The cost grows with `maxPoints`, not with the job's history
    /// (200 points of 100 000 rows: about 400 seeks, no scan).
    public func metrics(jobID: String, afterStep: Int = 0, maxPoints: Int? = nil) throws(StoreError) -> [MetricRecord] {
        try backend.metrics(jobID: jobID, afterStep: afterStep, maxPoints: maxPoints.flatMap { $0 >= 1 ? $0 : nil })
    }

    public func metricCount(jobID: String) throws(StoreError) -> Int {
        try backend.metricCount(jobID: jobID)
    }

    // MARK: - Checkpoints

    /// Records a checkpoint whose file is already written and renamed into place, and its
    /// event; returns the event's id. With the trainer's `lease`, refused (`.leaseLost`) unless
    /// the job still runs under it.
    @discardableResult
    public func addCheckpoint(_ c: CheckpointRecord, lease: Lease? = nil) throws(StoreError) -> Int64 {
        try backend.addCheckpoint(c, lease: lease)
    }

    public func checkpoints(jobID: String) throws(StoreError) -> [CheckpointRecord] {
        try backend.checkpoints(jobID: jobID)
    }

    public func checkpoint(jobID: String, step: Int) throws(StoreError) -> CheckpointRecord? {
        try backend.checkpoint(jobID: jobID, step: step)
    }

    public func latestCheckpoint(jobID: String) throws(StoreError) -> CheckpointRecord? {
        try backend.latestCheckpoint(jobID: jobID)
    }

    /// With the trainer's `lease`, refused (`.leaseLost`) unless the job still runs under it.
    public func deleteCheckpoint(jobID: String, step: Int, lease: Lease? = nil) throws(StoreError) {
        try backend.deleteCheckpoint(jobID: jobID, step: step, lease: lease)
    }

    // MARK: - Events

    /// State, checkpoint and evaluation events of a job after `afterID`, in order (at most `limit`).
    public func events(jobID: String, afterID: Int64 = 0, limit: Int? = nil) throws(StoreError) -> [JobEventRecord] {
        try backend.events(jobID: jobID, afterID: afterID, limit: limit)
    }

    /// The id of a job's latest event (0 when it has none): where a new stream starts.
    public func lastEventID(jobID: String) throws(StoreError) -> Int64 {
        try backend.lastEventID(jobID: jobID)
    }

    /// One page of what a stream missed after (`afterStep`, `afterEventID`): up to `limit`
    /// metric rows; when those reach the end, the events after `afterEventID` (up to `limit`)
    /// and the job, read in the same snapshot. Metrics are committed before the state change
    /// that ends a job, so a page that shows the job ended holds all of its metrics.
    public func historyPage(jobID: String, afterStep: Int, afterEventID: Int64, limit: Int) throws(StoreError) -> HistoryPage {
        try backend.historyPage(jobID: jobID, afterStep: afterStep, afterEventID: afterEventID, limit: limit)
    }

    // MARK: - Datasets

    public func upsert(dataset: DatasetRecord) throws(StoreError) {
        try backend.upsert(dataset: dataset)
    }

    public func datasets() throws(StoreError) -> [DatasetRecord] {
        try backend.datasets()
    }

    public func dataset(_ id: String) throws(StoreError) -> DatasetRecord? {
        try backend.dataset(id)
    }

    // MARK: - Evaluations

    /// Stores an evaluation and its event; returns it with its id.
    @discardableResult
    /// With the trainer's `lease` (a fine-tuning job's own scores), refused (`.leaseLost`) unless
    /// the job still runs under it.
    public func add(evaluation: EvaluationRecord, lease: Lease? = nil) throws(StoreError) -> EvaluationRecord {
        try backend.add(evaluation: evaluation, lease: lease)
    }

    public func evaluations(jobID: String) throws(StoreError) -> [EvaluationRecord] {
        try backend.evaluations(jobID: jobID)
    }
}

/// A page of a job's history for a stream that catches up (`Store.historyPage`).
public struct HistoryPage: Sendable {
    public let metrics: [MetricRecord]
    public let events: [JobEventRecord]
    /// The job as of this page's snapshot; nil when it was deleted, or when more metrics follow.
    public let job: JobRecord?
    /// True when nothing more was stored at this page's snapshot.
    public let isLast: Bool
}
