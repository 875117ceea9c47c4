import Foundation

/// Runs blocking work on a Dispatch thread and awaits it. The cooperative pool that runs tests
/// has a thread per core, so a test that blocks one of them (waiting on a job, a socket, a
/// process) for long can leave none for the live servers other suites run in the process.
public func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        DispatchQueue.global().async { c.resume(with: Result { try body() }) }
    }
}
