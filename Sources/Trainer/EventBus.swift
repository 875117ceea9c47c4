import Foundation
import Store
import Synchronization

/// What a running job tells the world, in the order it happens.
public enum JobEvent: Sendable, Equatable {
    /// After every step: where the job is and how fast it goes.
    case progress(jobID: String, JobProgress, totalSteps: Int)
    /// One logged step (the same row the metrics table gets).
    case metric(MetricRecord)
    /// A state change, with the database event id it was stored under.
    case state(jobID: String, JobState, error: String?, eventID: Int64?)
    /// A checkpoint that is on disk and in the database.
    case checkpoint(CheckpointRecord, eventID: Int64?)
    /// The job and its history were deleted: its streams end.
    case deleted(jobID: String)
    /// Another process (a worker, another API node) wrote rows of the job: its streams read
    /// them from the database.
    case stored(jobID: String)

    public var jobID: String {
        switch self {
        case .progress(let id, _, _): id
        case .metric(let m): m.jobID
        case .state(let id, _, _, _): id
        case .checkpoint(let c, _): c.jobID
        case .deleted(let id): id
        case .stored(let id): id
        }
    }
}

/// In-process fan-out of job events to live subscribers (SSE streams).
///
/// Publishing never blocks and never waits for a reader: each subscriber has a bounded buffer,
/// and one that falls behind is dropped (its stream finishes early); the reader then replays
/// what it missed from the database and subscribes again. Training speed never depends on
/// how fast a client reads.
public final class EventBus: Sendable {
    public struct Subscription: Sendable {
        public let events: AsyncStream<JobEvent>
        /// The job's latest metric events published before this subscription: with the
        /// database (written in batches) they cover everything up to the live stream.
        public let recent: [MetricRecord]
        let id: UInt64
        let jobID: String?
    }

    private struct Subscriber {
        let jobID: String?
        let continuation: AsyncStream<JobEvent>.Continuation
    }

    private struct State {
        var next: UInt64 = 0
        var all: [UInt64: Subscriber] = [:]
        var recent: [String: [MetricRecord]] = [:]
    }

    private let subscribers = Mutex(State())
    public let bufferSize: Int
    /// Metric events kept per job: more than the trainer's metric batch, so a stream that
    /// starts between a publish and the batch's commit still sees every step.
    public let recentLimit: Int

    public init(bufferSize: Int = 1024, recentLimit: Int = 512) {
        self.bufferSize = bufferSize
        self.recentLimit = recentLimit
    }

    /// Events of one job (or of every job with `nil`), from now on.
    public func subscribe(jobID: String?) -> Subscription {
        let (stream, continuation) = AsyncStream<JobEvent>.makeStream(bufferingPolicy: .bufferingOldest(bufferSize))
        let (id, recent) = subscribers.withLock { s in
            s.next += 1
            s.all[s.next] = Subscriber(jobID: jobID, continuation: continuation)
            return (s.next, jobID.flatMap { s.recent[$0] } ?? [])
        }
        continuation.onTermination = { [weak self] _ in self?.remove(id) }
        return Subscription(events: stream, recent: recent, id: id, jobID: jobID)
    }

    public func unsubscribe(_ s: Subscription) { remove(s.id)?.continuation.finish() }

    public func publish(_ event: JobEvent) {
        let targets = subscribers.withLock { s in
            switch event {
            case .metric(let m):
                s.recent[m.jobID, default: []].append(m)
                if s.recent[m.jobID]!.count > recentLimit { s.recent[m.jobID]!.removeFirst(s.recent[m.jobID]!.count - recentLimit) }
            case .state(let id, let state, _, _) where state.isTerminal:
                s.recent[id] = nil
            case .deleted(let id):
                s.recent[id] = nil
            default: break
            }
            return s.all.filter { $0.value.jobID == nil || $0.value.jobID == event.jobID }
        }
        for (id, sub) in targets {
            if case .dropped = sub.continuation.yield(event) {
                // Too slow: end its stream so it catches up from the database.
                remove(id)?.continuation.finish()
            }
        }
    }

    /// Tells every job's subscribers to re-read their job from the database (notifications from
    /// other processes may have been missed).
    public func wakeAll() {
        let targets = subscribers.withLock { $0.all.values.compactMap { s in s.jobID.map { (s, $0) } } }
        for (sub, id) in targets { sub.continuation.yield(.stored(jobID: id)) }
    }

    public var subscriberCount: Int { subscribers.withLock { $0.all.count } }

    /// Forgets a job's recent metrics (it was deleted).
    public func forget(jobID: String) { subscribers.withLock { _ = $0.recent.removeValue(forKey: jobID) } }

    @discardableResult
    private func remove(_ id: UInt64) -> Subscriber? {
        subscribers.withLock { $0.all.removeValue(forKey: id) }
    }
}
