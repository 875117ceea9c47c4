/// Every way a Store call can fail, each with a message a client can act on.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `Migrations/` is missing, misnamed or unreadable.
    case migrations(String)
    /// The database was written by a newer MIMServe (it has migrations this build lacks).
    case newerSchema([String])
    /// No job (or checkpoint, dataset) with this id.
    case notFound(String)
    /// A state change the lifecycle does not allow; nothing was changed.
    case illegalTransition(id: String, from: JobState, to: JobState)
    /// The `Idempotency-Key` was used before with a different request body.
    case idempotencyConflict(key: String, jobID: String)
    /// The operation needs the job in another state (e.g. deleting a running job).
    case conflict(String)
    /// A `next_page_token` this store did not issue.
    case badPageToken
    /// As many jobs as the server allows already wait in the queue.
    case queueFull(limit: Int)
    /// `--database` is not a location this build reads (the message never holds a password).
    case badLocation(String)
    /// A trainer's lease on the job is gone (it expired and another trainer claimed the job, or
    /// the job left `running`): the write was refused, and the trainer must stop the job
    /// without writing anything more for it.
    case leaseLost(jobID: String)
    /// The database failed (I/O, disk full, corruption, a server that cannot be reached). The
    /// message names the failure, never SQL text or a password.
    case database(String)

    public var description: String {
        switch self {
        case .migrations(let m): "migrations: \(m)"
        case .newerSchema(let names): "the database has migrations this build does not know (\(names.joined(separator: ", "))); use a newer MIMServe"
        case .notFound(let what): "\(what) not found"
        case .illegalTransition(let id, let from, let to): "job \(id) cannot go from \(from.rawValue) to \(to.rawValue)"
        case .idempotencyConflict(let key, let job): "Idempotency-Key '\(key)' was used for job \(job) with a different request body"
        case .conflict(let m): m
        case .badPageToken: "next_page_token is not one this server issued"
        case .queueFull(let limit): "\(limit) jobs are already queued, the most this server accepts (--max-queued); retry when some have started"
        case .badLocation(let m): "database: \(m)"
        case .leaseLost(let id): "this trainer no longer holds job \(id); another trainer took it after its lease expired"
        case .database(let m): "database: \(m)"
        }
    }
}
