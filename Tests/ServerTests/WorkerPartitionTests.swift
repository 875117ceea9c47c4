import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import Store

/// `mimserve worker` processes on one PostgreSQL: the partition test.
@Suite("Workers and leases", .serialized,
       .enabled(if: freshPostgresLocation() != nil, "MIMSERVE_TEST_POSTGRES is unset: no PostgreSQL server for these tests (make test starts one)"))
struct WorkerPartitionTests {
    /// A worker process; its first line names the port of its probes.
    final class WorkerProcess {
        let process = Process()
        let base: URL

        init(dataDir: URL, database: String, leaseSeconds: Double) throws {
            process.executableURL = CrashTests.executable
            process.arguments = ["worker", "--port", "0", "--data-dir", dataDir.path, "--database", database,
                                 "--lease-seconds", "\(leaseSeconds)", "--log-level", "error"]
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            var line = Data()
            while let byte = try out.fileHandleForReading.read(upToCount: 1), !byte.isEmpty, byte != Data("\n".utf8) { line += byte }
            let text = String(decoding: line, as: UTF8.self)
            guard let url = text.split(separator: " ").last.flatMap({ URL(string: String($0)) }), url.port != nil else {
                throw Failure("unexpected first line: \(text)")
            }
            base = url
        }

        /// Training steps this worker completed since it started (its `/metrics`).
        func stepsDone() async throws -> Int { try await gauge("mimserve_training_steps_completed") }

        /// Jobs this worker's slots are training now.
        func jobsTraining() async throws -> Int { try await gauge("mimserve_trainer_jobs_training") }

        func gauge(_ name: String) async throws -> Int {
            let (data, _) = try await URLSession.shared.data(from: URL(string: "/metrics", relativeTo: base)!)
            let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(name + " ") }
            return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? -1
        }

        func status(_ path: String) async throws -> Int {
            let (_, response) = try await URLSession.shared.data(from: URL(string: path, relativeTo: base)!)
            return (response as? HTTPURLResponse)?.statusCode ?? 0
        }

        func stop() {
            kill(process.processIdentifier, SIGCONT)
            process.terminate()
            process.waitUntilExit()
        }
    }

    static func wait(_ what: String, timeout: TimeInterval = 120, _ done: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try await !done() {
            if Date() > deadline { throw Failure("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Worker A is frozen (SIGSTOP) past its lease: worker B takes the job and finishes it from
    /// A's last checkpoint. A, thawed, trains no further step of it and writes nothing for it.
    @Test func aFrozenWorkerLosesItsJobAndWritesNothingMore() async throws {
        let location = try #require(freshPostgresLocation())
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("mimserve-workers-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let api = try await LiveServer.start {
            $0.database = location
            $0.dataDir = dataDir.path
            $0.trainerSlots = 0
        }
        defer { Task { await api.stop() } }
        let store = try Store(DatabaseLocation(parsing: location), migrations: MigrationSet.locate(dialect: .postgres))

        let a = try WorkerProcess(dataDir: dataDir, database: location, leaseSeconds: 2)
        defer { a.stop() }
        #expect(try await a.status("/readyz") == 200)
        #expect(try await a.status("/v1/jobs") == 404)
        // Long enough that it is still training when B has started; cancelled at the end.
        let id = try await api.submit(steps: 200_000, overrides: ["checkpoint_every": 50])
        try await Self.wait("a checkpoint by A") { try store.latestCheckpoint(jobID: id) != nil }

        let b = try WorkerProcess(dataDir: dataDir, database: location, leaseSeconds: 2)
        defer { b.stop() }
        #expect(try await b.status("/readyz") == 200)
        #expect(try await b.stepsDone() == 0)
        kill(a.process.processIdentifier, SIGSTOP)
        let frozenAt = try #require(try store.job(id)).step
        try await Self.wait("B to take the job") { try await b.stepsDone() > 0 }
        let takeovers = try store.events(jobID: id).filter { $0.kind == .state && $0.dataJSON.contains("lease expired") }
        #expect(takeovers.count == 1)

        kill(a.process.processIdentifier, SIGCONT)
        // A's heartbeat, its next step or its next write learns the job is gone, and its slot lets
        // go of it; from then on, while B trains on, A must not take a single step.
        try await Self.wait("A to let go of the job") { try await a.jobsTraining() == 0 }
        let aSteps = try await a.stepsDone()
        let bSteps = try await b.stepsDone()
        try await Self.wait("B to train 20 more steps") { try await b.stepsDone() >= bSteps + 20 }
        #expect(try await a.stepsDone() == aSteps)
        #expect(try await a.status("/readyz") == 200)
        _ = try await api.request("POST", "/v1/jobs/\(id)/cancel")
        let job = try await api.waitFor(id, states: ["cancelled", "failed", "succeeded"])
        #expect(job["state"] as? String == "cancelled", "\(job)")
        // B went on from A's last checkpoint, not from step 0, and every step has one row.
        let last = try #require(try store.job(id))
        #expect(frozenAt >= 50)
        #expect(try await b.stepsDone() < last.step)
        #expect(try store.metricCount(jobID: id) == last.step)
        #expect(try store.events(jobID: id).filter { $0.dataJSON.contains("lease expired") }.count == 1)
    }
}
