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
    /// Other processes' committed changes, as they happen; nil where there are none.
    func watchChanges(_ onChange: @escaping @Sendable (StoreChange) -> Void) -> StoreWatch?

    /// Inserts `job` (its `seq` is assigned here) unless its idempotency key was seen before.
    func submit(_ job: JobRecord, maxQueued: Int?) throws(StoreError) -> (job: JobRecord, created: Bool)
    func job(_ id: String) throws(StoreError) -> JobRecord?
    /// Newest first, at most `limit`, only `seq < beforeSeq` when given.
    func jobs(states: Set<JobState>, method: String?, beforeSeq: Int64?, limit: Int) throws(StoreError) -> [JobRecord]
    /// With a `lease`, refused (`.leaseLost`) unless the job is running under that lease: the
    /// same rule for every write that takes one, checked in the write's own transaction.
    func transition(_ id: String, to: JobState, from: Set<JobState>?, error: String?, lease: Lease?) throws(StoreError) -> StateChange
    /// Takes back running jobs whose lease expired, then claims the oldest queued job under a
    /// new lease (`token`, expiring `leaseSeconds` from now on the database's clock).
    func claimNext(owner: String, token: String, leaseSeconds: Double) throws(StoreError) -> Claim?
    func renew(_ lease: Lease, leaseSeconds: Double) throws(StoreError)
    func requestStop(_ id: String, _ kind: StopKind) throws(StoreError) -> StopOutcome
    func stopRequest(_ id: String, lease: Lease?) throws(StoreError) -> StopKind?
    func requeueInterrupted() throws(StoreError) -> Store.Interrupted
    func record(progress: JobProgress, metrics: [MetricRecord], for id: String, lease: Lease?) throws(StoreError)
    func delete(_ id: String) throws(StoreError) -> [String]
    func countsByState() throws(StoreError) -> [JobState: Int]

    func metrics(jobID: String, afterStep: Int, maxPoints: Int?) throws(StoreError) -> [MetricRecord]
    func metricCount(jobID: String) throws(StoreError) -> Int
    func addCheckpoint(_ c: CheckpointRecord, lease: Lease?) throws(StoreError) -> Int64
    func checkpoints(jobID: String) throws(StoreError) -> [CheckpointRecord]
    func checkpoint(jobID: String, step: Int) throws(StoreError) -> CheckpointRecord?
    func latestCheckpoint(jobID: String) throws(StoreError) -> CheckpointRecord?
    func deleteCheckpoint(jobID: String, step: Int, lease: Lease?) throws(StoreError)
    func events(jobID: String, afterID: Int64, limit: Int?) throws(StoreError) -> [JobEventRecord]
    func lastEventID(jobID: String) throws(StoreError) -> Int64
    func historyPage(jobID: String, afterStep: Int, afterEventID: Int64, limit: Int) throws(StoreError) -> HistoryPage
    func upsert(dataset: DatasetRecord) throws(StoreError)
    func datasets() throws(StoreError) -> [DatasetRecord]
    func dataset(_ id: String) throws(StoreError) -> DatasetRecord?
    func add(evaluation: EvaluationRecord, lease: Lease?) throws(StoreError) -> EvaluationRecord
    func evaluations(jobID: String) throws(StoreError) -> [EvaluationRecord]
}
