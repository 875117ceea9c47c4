import Dispatch
import NIOCore
import NIOPosix

/// How the synchronous Store API waits for postgres-nio's asynchronous one.
///
/// Store calls come from threads that may block (trainer slots, NIO's blocking pool, tests), so
/// a call starts a task for the async work and parks its own thread on a semaphore until the
/// task ends. The task must never need the thread it blocks: a synchronous test runs on Swift's
/// cooperative pool, which has one thread per core, and two such tests waiting on tasks queued
/// behind them would deadlock. So every task (and the client's `run()`) prefers `executor`,
/// whose jobs run on the store's own event loops, never on the cooperative pool.
enum PostgresBlocking {
    /// Shared by every PostgreSQL store in the process: the connections' sockets and the async
    /// code around them. Two threads: decoding rows is light, waiting is the database's.
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    static let executor = EventLoopTaskExecutor(group: group)

    /// Runs `body` to completion and returns its result, blocking the calling thread.
    static func wait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = Outcome<T>()
        Task(executorPreference: executor) {
            do { outcome.finish(.success(try await body())) } catch { outcome.finish(.failure(error)) }
        }
        return try outcome.wait().get()
    }

    /// One task's result, handed from the event loop to the blocked thread.
    private final class Outcome<T: Sendable>: @unchecked Sendable {
        // Written once before `done` is signalled and read once after: the semaphore orders them.
        private var result: Result<T, any Error>?
        private let done = DispatchSemaphore(value: 0)

        func finish(_ r: Result<T, any Error>) {
            result = r
            done.signal()
        }

        func wait() -> Result<T, any Error> {
            done.wait()
            return result!
        }
    }
}

/// A task executor that runs its jobs on an event loop group's threads.
final class EventLoopTaskExecutor: TaskExecutor {
    let group: any EventLoopGroup

    init(group: any EventLoopGroup) {
        self.group = group
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        group.next().execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
