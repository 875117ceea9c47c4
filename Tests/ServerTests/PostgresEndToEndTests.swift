import Foundation
import Testing
@testable import Server
import Store
import TestSupport

/// The test server `make test` starts (Tests/Postgres/with-cluster.sh), with a schema of its own
/// per call so tests never see each other's jobs; nil without one.
func freshPostgresLocation() -> String? {
    guard let base = ProcessInfo.processInfo.environment["MIMSERVE_TEST_POSTGRES"], !base.isEmpty else { return nil }
    let tag = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    return base + (base.contains("?") ? "&" : "?") + "schema=t_\(tag)"
}

@Suite("HTTP end to end on PostgreSQL", .serialized,
       .enabled(if: freshPostgresLocation() != nil, "MIMSERVE_TEST_POSTGRES is unset: no PostgreSQL server for these tests (make test starts one)"))
struct PostgresEndToEndTests {
    /// A tiny job from submission to success with the store in PostgreSQL: state, metrics,
    /// checkpoints and the event stream (whole and resumed) read back through HTTP.
    @Test func aTinyJobTrainsAndStreamsWithPostgres() async throws {
        let location = try #require(freshPostgresLocation())
        let server = try await LiveServer.start { $0.database = location }
        defer { Task { await server.stop() } }
        let id = try await server.submit(steps: 12, overrides: ["checkpoint_every": 5])
        let job = try await server.waitFor(id, states: ["succeeded", "failed"])
        #expect(job["state"] as? String == "succeeded", "\(job)")

        let events = SSEEvent.parse(try await server.get("/v1/jobs/\(id)/events", headers: ["Last-Event-ID": "0:0"]).text)
        #expect(events.filter { $0.event == "metric" }.map { $0.json["step"] as! Int } == Array(1...12))
        #expect(events.filter { $0.event == "checkpoint" }.map { $0.json["step"] as! Int } == [5, 10, 12])
        #expect(events.last?.event == "state" && events.last?.json["state"] as? String == "succeeded")
        let cut = try #require(events.first { $0.event == "metric" && $0.json["step"] as? Int == 7 }?.id)
        let rest = SSEEvent.parse(try await server.get("/v1/jobs/\(id)/events", headers: ["Last-Event-ID": cut]).text)
        #expect(rest.filter { $0.event == "metric" }.map { $0.json["step"] as! Int } == Array(8...12))

        let history = try await server.get("/v1/jobs/\(id)/metrics").object["metrics"] as? [[String: Any]] ?? []
        #expect(history.map { $0["step"] as! Int } == Array(1...12))
        let thin = try await server.get("/v1/jobs/\(id)/metrics?max_points=4").object["metrics"] as? [[String: Any]] ?? []
        #expect(thin.count == 4 && thin.first?["step"] as? Int == 1 && thin.last?["step"] as? Int == 12)
        #expect(try await server.get("/readyz").status == 200)

        // The rows are in PostgreSQL, and no SQLite file was made.
        let store = try Store(DatabaseLocation(parsing: location), migrations: MigrationSet.locate(dialect: .postgres))
        #expect(try store.job(id)?.state == .succeeded && store.metricCount(jobID: id) == 12)
        #expect(!FileManager.default.fileExists(atPath: server.dataDir.appendingPathComponent("mimserve.sqlite").path))
    }

    /// Two API nodes on one PostgreSQL database share a data dir (the one-server lock is
    /// SQLite's) and a separate checkpoint dir. A job submitted to the node without trainer
    /// slots is trained by the other; the first streams it live (its keep-alives come once an
    /// hour, so only the other node's notifications can wake its stream), and serves its
    /// checkpoints and a reconstruction from the checkpoint dir.
    @Test func twoAPINodesShareTheirFoldersAndFollowEachOthersJobs() async throws {
        let location = try #require(freshPostgresLocation())
        let root = Scratch.url("mimserve-nodes")
        defer { try? FileManager.default.removeItem(at: root) }
        let (dataDir, checkpointDir) = (root.appendingPathComponent("data"), root.appendingPathComponent("shared-checkpoints"))
        let front = try await LiveServer.start {
            $0.database = location
            $0.dataDir = dataDir.path
            $0.checkpointDir = checkpointDir.path
            $0.trainerSlots = 0
            $0.sseHeartbeatSeconds = 3600
        }
        defer { Task { await front.stop() } }
        let id = try await front.submit(steps: 30, overrides: ["checkpoint_every": 10])
        // The stream opens while the job waits in the queue; only then does the node that trains it start.
        let stream = Task { SSEEvent.parse(try await front.get("/v1/jobs/\(id)/events").text) }
        try await ClusterTests.wait("the stream to open") {
            try await front.get("/metrics").text.contains("mimserve_event_streams_open 1")
        }
        let trainer = try await LiveServer.start {
            $0.database = location
            $0.dataDir = dataDir.path
            $0.checkpointDir = checkpointDir.path
        }
        defer { Task { await trainer.stop() } }
        let events = try await stream.value
        #expect(events.filter { $0.event == "metric" }.map { $0.json["step"] as! Int } == Array(1...30))
        #expect(events.filter { $0.event == "checkpoint" }.map { $0.json["step"] as! Int } == [10, 20, 30])
        #expect(events.last?.event == "state" && events.last?.json["state"] as? String == "succeeded")

        let files = try FileManager.default.contentsOfDirectory(atPath: checkpointDir.appendingPathComponent(id).path).sorted()
        #expect(files == ["step-00000010.safetensors", "step-00000020.safetensors", "step-00000030.safetensors"])
        #expect(!FileManager.default.fileExists(atPath: dataDir.appendingPathComponent("checkpoints").path))
        let download = try await front.get("/v1/jobs/\(id)/checkpoints/30")
        let file = try Data(contentsOf: checkpointDir.appendingPathComponent("\(id)/step-00000030.safetensors"))
        #expect(download.status == 200 && download.body == file)
        let png = try await front.request("POST", "/v1/jobs/\(id)/reconstruct?mask_ratio=0.75&seed=3", body: samplePNG(),
                                          headers: ["Content-Type": "image/png"])
        #expect(png.status == 200 && png.headers["content-type"] == "image/png")
    }

    /// `mimserve serve --database postgres://…`: the executable reads the flag (with a password,
    /// which a trust-authenticated test server ignores) and keeps its jobs there.
    @Test func theExecutableTakesADatabaseFlag() async throws {
        let location = try #require(freshPostgresLocation())
        let withPassword = location.replacingOccurrences(of: "postgres://postgres@", with: "postgres://postgres:never-shown@")
        let dataDir = Scratch.url("mimserve-pg")
        let server = try MIMServeProcess.serve(dataDir: dataDir, extraArguments: ["--database", withPassword])
        defer {
            server.process.terminate()
            server.process.waitUntilExit()
            try? FileManager.default.removeItem(at: dataDir)
        }
        let ready = try await server.get("/readyz")
        #expect(ready["status"] as? String == "ready", "\(ready)")
        let job = try await server.post("/v1/jobs", ["method": "mae", "preset": "tiny", "total_steps": 3, "batch_size": 8])
        let id = try #require(job["id"] as? String, "\(job)")
        let store = try Store(DatabaseLocation(parsing: location), migrations: MigrationSet.locate(dialect: .postgres))
        #expect(try store.job(id) != nil)
    }
}

@Suite("Database setting") struct DatabaseSettingTests {
    /// A bad location stops the server before it starts, naming the setting, without the password.
    @Test func aBadLocationIsAProblemWithoutThePassword() {
        var c = ServerConfiguration()
        c.database = "postgres://mim:hunter2@localhost/"
        let problems = c.problems()
        #expect(problems.count == 1 && problems[0].hasPrefix("database:") && !problems[0].contains("hunter2"), "\(problems)")
    }
}
