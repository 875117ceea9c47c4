import Foundation
import Synchronization

/// What another process changed in the database, as its notification says.
public enum StoreChange: Sendable, Equatable {
    /// Rows of this job were written: metrics and progress, an event, or its deletion.
    case job(String)
    /// Notifications may have been missed (the listening connection was lost and is back):
    /// anything may have changed.
    case unknown
}

/// A running subscription to other processes' changes; `cancel()` ends it.
public final class StoreWatch: Sendable {
    private final class Started: Sendable {
        let flag = Atomic<Bool>(false)
        let semaphore = DispatchSemaphore(value: 0)
    }

    private let task: Task<Void, Never>
    private let started = Started()

    init(_ run: @escaping @Sendable (_ onListening: @escaping @Sendable () -> Void) async -> Void, executor: any TaskExecutor) {
        let started = self.started
        task = Task(executorPreference: executor) {
            await run {
                if !started.flag.exchange(true, ordering: .relaxed) { started.semaphore.signal() }
            }
        }
    }

    /// True once the first subscription took effect: every change committed after it is reported.
    public var isListening: Bool { started.flag.load(ordering: .relaxed) }

    /// Waits up to `seconds` for the subscription to take effect; false if it did not (it keeps trying).
    public func waitUntilListening(seconds: Double) -> Bool {
        isListening || started.semaphore.wait(timeout: .now() + seconds) == .success
    }

    public func cancel() { task.cancel() }

    deinit { task.cancel() }
}

extension Store {
    /// Calls `onChange` for every change another process commits, from a thread of the store's
    /// own; nil when no other process writes to this database (SQLite: the data dir's lock).
    /// Changes this store makes itself are not reported: its process publishes them directly.
    public func watchChanges(_ onChange: @escaping @Sendable (StoreChange) -> Void) -> StoreWatch? {
        backend.watchChanges(onChange)
    }
}
