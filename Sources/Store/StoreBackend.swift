import Foundation

/// What a database engine must do for `Store`: every operation of the public API, each in one
/// transaction of its own. `Store` keeps what is the same on every engine (ids, page tokens,
/// argument checks, the lifecycle's rules in `JobRecord.moved`); a backend keeps only what
/// differs: SQL, locking and how rows become records.
///
/// Implementations: `SQLiteStore` (GRDB, one file) and `PostgresStore` (postgres-nio, shared by
/// several nodes).
protocol StoreBackend: Sendable {
    func appliedMigrations() throws(StoreError) -> [String]
    func probeWrite() -> Bool
    func integrityCheck() throws(StoreError) -> String

    /// Inserts `job` (its `seq` is assigned here) unless its idempotency key was seen before.
    func submit(_ job: JobRecord, maxQueued: Int?) throws(StoreError) -> (job: JobRecord, created: Bool)
    func job(_ id: String) throws(StoreError) -> JobRecord?
    /// Newest first, at most `limit`, only `seq < beforeSeq` when given.
    func jobs(states: Set<JobState>, method: String?, beforeSeq: Int64?, limit: Int) throws(StoreError) -> [JobRecord]
    func transition(_ id: String, to: JobState, from: Set<JobState>?, error: String?) throws(StoreError) -> StateChange
    func claimNextQueued() throws(StoreError) -> StateChange?
    func requestStop(_ id: String, _ kind: StopKind) throws(StoreError) -> StopOutcome
    func stopRequest(_ id: String) throws(StoreError) -> StopKind?
    func requeueInterrupted() throws(StoreError) -> Store.Interrupted
    func record(progress: JobProgress, metrics: [MetricRecord], for id: String) throws(StoreError)
    func delete(_ id: String) throws(StoreError) -> [String]
    func countsByState() throws(StoreError) -> [JobState: Int]

    func metrics(jobID: String, afterStep: Int, maxPoints: Int?) throws(StoreError) -> [MetricRecord]
    func metricCount(jobID: String) throws(StoreError) -> Int
    func addCheckpoint(_ c: CheckpointRecord) throws(StoreError) -> Int64
    func checkpoints(jobID: String) throws(StoreError) -> [CheckpointRecord]
    func checkpoint(jobID: String, step: Int) throws(StoreError) -> CheckpointRecord?
    func latestCheckpoint(jobID: String) throws(StoreError) -> CheckpointRecord?
    func deleteCheckpoint(jobID: String, step: Int) throws(StoreError)
    func events(jobID: String, afterID: Int64, limit: Int?) throws(StoreError) -> [JobEventRecord]
    func lastEventID(jobID: String) throws(StoreError) -> Int64
    func historyPage(jobID: String, afterStep: Int, afterEventID: Int64, limit: Int) throws(StoreError) -> HistoryPage
    func upsert(dataset: DatasetRecord) throws(StoreError)
    func datasets() throws(StoreError) -> [DatasetRecord]
    func dataset(_ id: String) throws(StoreError) -> DatasetRecord?
    func add(evaluation: EvaluationRecord) throws(StoreError) -> EvaluationRecord
    func evaluations(jobID: String) throws(StoreError) -> [EvaluationRecord]
}
