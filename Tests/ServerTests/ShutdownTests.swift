import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import Store
import TestSupport

/// The real executable stopped with SIGTERM while clients follow a running job: the streams end
/// first, then the job checkpoints at the step it reached and goes back to the queue, and the
/// process exits without waiting out any grace period.
@Suite("Graceful shutdown", .serialized) struct ShutdownTests {
    static let generous = 60.0

    final class Server: @unchecked Sendable {
        let running: MIMServeProcess
        var process: Process { running.process }
        var port: Int { running.base.port! }

        init(dataDir: URL) throws {
            running = try MIMServeProcess.serve(dataDir: dataDir, extraArguments: ["--sse-heartbeat", "0.2"])
        }

        func job(_ id: String) throws -> [String: Any] {
            let r = try RawSocket.exchange(port: port, "GET", "/v1/jobs/\(id)")
            return (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) as? [String: Any] ?? [:]
        }

        /// Polls the job until `done` holds for it; nil if it never does within the deadline.
        func waitForJob(_ id: String, within seconds: Double, _ done: ([String: Any]) -> Bool) throws -> [String: Any]? {
            let deadline = Date().addingTimeInterval(seconds)
            var polls = 0
            while Date() < deadline && polls < 100_000 {
                polls += 1
                let job = try self.job(id)
                if done(job) { return job }
                usleep(20_000)
            }
            return nil
        }

        /// SIGTERM, then the seconds until the process has exited (nil: still running at the deadline).
        func terminate(within seconds: Double) -> Double? {
            let started = Date()
            kill(process.processIdentifier, SIGTERM)
            let exited = DispatchSemaphore(value: 0)
            let process = self.process
            DispatchQueue.global().async { process.waitUntilExit(); exited.signal() }
            guard exited.wait(timeout: .now() + seconds) == .success else { return nil }
            return Date().timeIntervalSince(started)
        }
    }

    @Test func sigtermEndsStreamsThenCheckpointsTheRunningJobAndARestartResumesIt() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: MIMServeProcess.executable.path), "build mimserve first")
        let work = Scratch.url("mimserve-shutdown")
        let dataDir = work.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let first = try Server(dataDir: dataDir)
        let port = first.port
        // No periodic checkpoint: the only one is the one shutdown writes.
        let submitted = try RawSocket.exchange(port: port, "POST", "/v1/jobs", headers: ["Content-Type": "application/json"], body: """
            {"method": "mae", "preset": "tiny", "total_steps": 1000000, "batch_size": 4, "overrides": {"checkpoint_every": 1000000}}
            """)
        let id = try #require((try JSONSerialization.jsonObject(with: Data(submitted.body.utf8)) as? [String: Any])?["id"] as? String,
                              "\(submitted.status) \(submitted.body)")
        let running = try await offThread {
            try first.waitForJob(id, within: Self.generous) { $0["state"] as? String == "running" && ($0["step"] as? Int ?? 0) >= 20 } != nil
        }
        #expect(running)
        let streams = try await offThread { try (0..<3).map { _ in try StreamLimitTests.openStream(port: port, job: id) } }

        let seconds = try await offThread { first.terminate(within: Self.generous) }
        #expect(seconds != nil, "mimserve was still running \(Self.generous) s after SIGTERM")
        for stream in streams {
            let closed = try await offThread { stream.waitStreamEnd(within: 10) }
            let events = SSEEvent.parse(stream.body)
            #expect(closed && events.last?.event == "end" && events.last?.json["reason"] as? String == "shutdown", "\(stream.body.suffix(300))")
        }

        // The job went back to the queue with a checkpoint at exactly the step it had reached.
        let dbPath = dataDir.appendingPathComponent("mimserve.sqlite").path
        let store = try Store(path: dbPath, migrations: MigrationSet.locate())
        let job = try #require(try store.job(id))
        let checkpoint = try #require(try store.latestCheckpoint(jobID: id))
        #expect(job.state == .queued)
        #expect(job.step >= 20 && checkpoint.step == job.step, "job at \(job.step), checkpoint at \(checkpoint.step)")
        let before = Dictionary(uniqueKeysWithValues: try store.metrics(jobID: id).map { ($0.step, $0.wallTimeS) })
        #expect(before.count == job.step)

        // A restart continues from that checkpoint: the rows up to it are never written again.
        let second = try Server(dataDir: dataDir)
        let resumed = try await offThread {
            try second.waitForJob(id, within: Self.generous) { ($0["step"] as? Int ?? 0) > checkpoint.step + 10 } != nil
        }
        #expect(resumed, "the job did not continue after the restart")
        let after = Dictionary(uniqueKeysWithValues: try store.metrics(jobID: id).map { ($0.step, $0.wallTimeS) })
        for step in 1...checkpoint.step where after[step] != before[step] {
            Issue.record("step \(step) was trained again after the restart")
            break
        }
        let stopped = try await offThread { second.terminate(within: Self.generous) }
        #expect(stopped != nil)
        let final = try #require(try store.job(id))
        let lastCheckpoint = try store.latestCheckpoint(jobID: id)
        #expect(final.state == .queued && lastCheckpoint?.step == final.step)
    }
}
