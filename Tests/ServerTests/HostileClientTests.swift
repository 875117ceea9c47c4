import Foundation
import Testing
import Hummingbird
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Server

/// Requests that used to kill the process: each now gets a 4xx problem that names its field,
/// and the server goes on answering.
@Suite("Hostile clients", .serialized) struct HostileClientTests {
    /// A 33-byte PNG whose IHDR declares 4294967295 × 4294967295 (valid CRC, no pixel data).
    static let overflowingPNG: Data = {
        func be(_ v: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: v >> $0) } }
        let body = Array("IHDR".utf8) + be(0xFFFF_FFFF) + be(0xFFFF_FFFF) + [8, 2, 0, 0, 0]
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + be(13) + body + be(~crc))
    }()

    @Test func anImageHeaderWhosePixelCountOverflowsIsRefused() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        #expect(Self.overflowingPNG.count == 33)
        // Also inside a dataset folder, which every listing of the datasets probes.
        let folder = server.dataDir.appendingPathComponent("datasets/hostile")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Self.overflowingPNG.write(to: folder.appendingPathComponent("bomb.png"))
        #expect(try await server.get("/v1/datasets").status == 200)
        let id = try await server.submit(steps: 2)
        _ = try await server.waitFor(id, states: ["succeeded"])
        let reply = try await server.request("POST", "/v1/jobs/\(id)/reconstruct", body: Self.overflowingPNG,
                                             headers: ["Content-Type": "image/png"])
        #expect(reply.status == 422 && reply.isProblem, "\(reply.status) \(reply.text)")
        #expect(reply.text.contains("4294967295"))
        #expect(try await server.get("/healthz").status == 200)
    }

    @Test func aSwinWithMoreStagesThanItsStrideCanHoldIsRefused() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        for stages in [9, 65, 1000] {
            let ones = Array(repeating: 1, count: stages)
            let reply = try await server.request("POST", "/v1/jobs", json: [
                "method": "simmim", "preset": "tiny", "overrides": ["depths": ones, "heads": ones]])
            #expect(reply.status == 422 && reply.errorFields.contains("overrides.depths"), "\(stages): \(reply.status) \(reply.text)")
        }
        #expect((try await server.get("/v1/jobs").object["jobs"] as? [Any])?.isEmpty == true)
        #expect(try await server.get("/healthz").status == 200)
    }

    /// Many images each under --max-pixels add up: the request's total is checked first.
    @Test func theImagesOfOneRequestShareOneDecodeBudget() async throws {
        let server = try await LiveServer.start { $0.maxPixels = 10_000; $0.maxRequestPixels = 20_000 }
        defer { Task { await server.stop() } }
        let id = try await server.submit(steps: 2)
        _ = try await server.waitFor(id, states: ["succeeded"])
        let image = samplePNG(width: 100, height: 90).base64EncodedString()  // 9 000 pixels each
        func features(_ count: Int) async throws -> LiveServer.Reply {
            try await server.request("POST", "/v1/jobs/\(id)/features", json: ["images": Array(repeating: image, count: count)])
        }
        #expect(try await features(2).status == 200)
        let refused = try await features(3)
        #expect(refused.status == 422 && refused.errorFields == ["images"], "\(refused.status) \(refused.text)")
        #expect(refused.text.contains("27000 pixels"))
        #expect(try await features(0).errorFields == ["images"])
    }

    @Test func aFullQueueAnswers429WithRetryAfter() async throws {
        // No trainer takes jobs off the queue while the pool is held busy by a long first job.
        let server = try await LiveServer.start { $0.maxQueued = 3 }
        defer { Task { await server.stop() } }
        let running = try await server.submit(steps: 1_000_000)
        _ = try await server.waitFor(running, states: ["running"])
        for _ in 0..<3 { _ = try await server.submit(steps: 5) }
        let refused = try await server.request("POST", "/v1/jobs", json: ["method": "mae", "preset": "tiny", "total_steps": 5])
        #expect(refused.status == 429 && refused.isProblem && refused.headers["retry-after"] == "30", "\(refused.status)")
        #expect((try await server.get("/v1/jobs?state=queued").object["jobs"] as? [Any])?.count == 3)
        #expect(try await server.request("POST", "/v1/jobs/\(running)/cancel").status == 200)
    }

    /// A job bigger than --max-job-memory is refused at submission with the estimate, the limit
    /// and the largest batch that fits; nothing is queued.
    @Test func aJobThatWouldExhaustMemoryIsRefusedAtSubmission() async throws {
        let server = try await LiveServer.start { $0.maxJobMemory = 5 << 29 }
        defer { Task { await server.stop() } }
        let big = try await server.request("POST", "/v1/jobs", json: ["method": "mae", "preset": "default", "batch_size": 64])
        #expect(big.status == 422 && big.errorFields == ["batch_size"], "\(big.status) \(big.text)")
        #expect(big.text.contains("the limit is 2.50 GB") && big.text.contains("fits"), "\(big.text)")
        let huge = try await server.request("POST", "/v1/jobs", json: [
            "method": "mae", "preset": "tiny", "overrides": ["embed_dim": 4096, "depths": [64], "heads": [64]]])
        #expect(huge.status == 422 && huge.errorFields == ["preset"], "\(huge.status) \(huge.text)")
        #expect((try await server.get("/v1/jobs").object["jobs"] as? [Any])?.isEmpty == true)
        // A job that fits carries its estimate.
        let ok = try await server.request("POST", "/v1/jobs", json: ["method": "mae", "preset": "tiny", "total_steps": 2])
        let estimate = try #require(ok.object["estimate"] as? [String: Any])
        #expect(ok.status == 201 && (estimate["peak_bytes"] as? Int ?? 0) > 0 && (estimate["parameters"] as? Int ?? 0) > 0)
        // Checkpoints are bounded too: 101 ViT-B checkpoints would need about 130 GB.
        let disk = try await server.request("POST", "/v1/jobs", json: [
            "method": "mae", "preset": "default", "batch_size": 1, "overrides": ["keep_checkpoints": 100]])
        #expect(disk.status == 422 && disk.errorFields == ["overrides.keep_checkpoints"], "\(disk.status) \(disk.text)")
        let methods = try await server.get("/v1/methods").object["methods"] as? [[String: Any]] ?? []
        let presets = methods.flatMap { $0["presets"] as? [[String: Any]] ?? [] }
        #expect(!presets.isEmpty && presets.allSatisfy { ($0["estimate"] as? [String: Any])?["peak_bytes"] != nil })
    }

    /// A dataset folder the server cannot use is named by its id, never by where the data lives.
    @Test func datasetErrorsDoNotRevealTheDataDirectory() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let folder = server.dataDir.appendingPathComponent("datasets/empty")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data("not an image".utf8).write(to: folder.appendingPathComponent("a.png"))
        for reply in [try await server.request("POST", "/v1/datasets", json: ["id": "empty"]),
                      try await server.get("/v1/datasets/empty")] {
            #expect(reply.status == 422 && reply.isProblem, "\(reply.status) \(reply.text)")
            // Decoded, since JSON may escape the slashes of a path.
            let detail = reply.object["detail"] as? String ?? ""
            #expect(!detail.contains(server.dataDir.path) && !detail.contains(FileManager.default.temporaryDirectory.path), "\(detail)")
            #expect(detail.contains("<data-dir>/datasets/empty"), "\(detail)")
        }
    }

    @Test func aSecondServerOnTheSameDataDirectoryExitsAtStart() async throws {
        let first = try await LiveServer.start()
        defer { Task { await first.stop() } }
        var c = ServerConfiguration()
        c.port = 0
        c.dataDir = first.dataDir.path
        do {
            _ = try buildApplication(configuration: c)
            Issue.record("a second server opened a data directory in use")
        } catch {
            #expect("\(error)".contains("in use by another mimserve (pid \(getpid()))"), "\(error)")
        }
        #expect(try await first.get("/healthz").status == 200)
    }
}

@Suite("Internal errors") struct InternalErrorTests {
    struct Leaky: Error, CustomStringConvertible {
        var description: String { "SQLite error 1: no such table: jobs - while executing `SELECT * FROM jobs` in /srv/secret/data/mimserve.sqlite" }
    }

    /// A 500 names an id and nothing of the failure itself: no SQL, no path.
    @Test func aServerErrorCarriesAnIdAndNoInternals() async throws {
        let router = Router()
        router.add(middleware: ProblemMiddleware())
        router.get("/boom") { _, _ -> String in throw Leaky() }
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) })
        let task = Task { try await app.runService() }
        defer { task.cancel() }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next())
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/boom")!)
        #expect((response as? HTTPURLResponse)?.statusCode == 500)
        let body = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let id = try #require(body["error_id"] as? String)
        #expect((body["detail"] as? String)?.contains(id) == true)
        let text = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\\/", with: "/")  // JSON may escape "/"
        #expect(!text.contains("SELECT") && !text.contains("/srv/") && !text.contains("SQLite"), "\(text)")
    }
}
