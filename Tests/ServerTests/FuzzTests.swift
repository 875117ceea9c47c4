import Config
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing
import TensorCore
import Trainer
@testable import Server

/// Generated and mutated input against a live server: 10 000 job submissions and 10 000 image
/// bodies. Every answer is a success or a 4xx problem that names its field, and the server is
/// alive at the end. Seeded, so a failure replays.
@Suite("Fuzzing a live server", .serialized) struct FuzzTests {
    static let count = 10_000

    /// Sends `bodies` four at a time and checks each answer with `check`.
    static func send(_ server: LiveServer, _ requests: [(path: String, body: Data, type: String)],
                     check: @escaping @Sendable (Int, LiveServer.Reply) -> Void) async throws {
        var next = 0
        while next < requests.count {
            let batch = requests[next..<min(next + 4, requests.count)]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (offset, r) in batch.enumerated() {
                    let index = next + offset
                    group.addTask {
                        let reply = try await server.request("POST", r.path, body: r.body, headers: ["Content-Type": r.type])
                        check(index, reply)
                    }
                }
                try await group.waitForAll()
            }
            next += batch.count
        }
    }

    @Test func generatedJobSubmissionsGet201OrAProblemNamingTheField() async throws {
        // Small jobs only (a tight memory limit), so what is accepted trains in moments or waits.
        let server = try await LiveServer.start { $0.maxJobMemory = 256 << 20; $0.maxQueued = 20 }
        defer { Task { await server.stop() } }
        let sample = try JobConfig.resolve(JobRequest(method: "mae", preset: "tiny"))
        let fields = (Array(JSONValue.object(of: sample.model).keys) + Array(JSONValue.object(of: sample.training).keys)).sorted()
        var g = RandomGenerator(seed: 20261130)
        func pick<T>(_ xs: [T]) -> T { xs[Int(g.next() % UInt64(xs.count))] }
        func number() -> Any {
            pick([0, 1, -1, 2, 3, 4, 7, 8, 16, 32, 64, 4096, 65, 1 << 31, Int.max, Int.min, -(1 << 40), 0.5, -0.25, 1e300, -1e300,
                  1e-300, 3.75, 1e18, 224, 1024, 100_000])
        }
        func value(depth: Int = 0) -> Any {
            switch g.next() % 9 {
            case 0: return number()
            case 1: return pick(["", "mae", "tiny", "default", "x", String(repeating: "a", count: 300), "1", "null", "[]"])
            case 2: return Bool(g.next() % 2 == 0)
            case 3: return NSNull()
            case 4: return (0..<Int(g.next() % 70)).map { _ in number() }
            case 5: return depth > 40 ? [] : [value(depth: depth + 1)]            // deep nesting
            case 6: return depth > 3 ? [:] : ["k": value(depth: depth + 1), pick(fields): value(depth: depth + 1)]
            case 7: return (0..<Int(g.next() % 5)).map { _ in Int(g.next() % 9) }  // short integer lists
            default: return Int(g.next() % 300)
            }
        }
        var requests: [(path: String, body: Data, type: String)] = []
        for _ in 0..<Self.count {
            var body: [String: Any] = [:]
            if g.next() % 10 != 0 { body["method"] = g.next() % 4 == 0 ? value() : pick(["mae", "simmim", "ummae", "greenmim", "mixmae", "convmae"]) }
            if g.next() % 2 == 0 { body["preset"] = g.next() % 3 == 0 ? value() : pick(["tiny", "default", "small"]) }
            for key in ["total_steps", "batch_size", "seed", "dataset"] where g.next() % 3 == 0 { body[key] = value() }
            if g.next() % 4 != 0 {
                var overrides: [String: Any] = [:]
                for _ in 0..<Int(g.next() % 4) { overrides[g.next() % 10 == 0 ? "nope" : pick(fields)] = value() }
                body["overrides"] = g.next() % 10 == 0 ? value() : overrides
            }
            let top: Any = g.next() % 50 == 0 ? value() : body
            let data = (try? JSONSerialization.data(withJSONObject: top, options: [.fragmentsAllowed])) ?? Data("{".utf8)
            requests.append(("/v1/jobs", data, "application/json"))
        }
        let outcomes = Mutex<[Int: Int]>([:]), bad = Mutex<[String]>([])
        let sent = requests
        try await Self.send(server, sent) { i, reply in
            outcomes.withLock { $0[reply.status, default: 0] += 1 }
            let ok = [201, 429].contains(reply.status) || ([400, 422].contains(reply.status) && reply.isProblem
                && (reply.status == 400 || !reply.errorFields.isEmpty && reply.errorFields.allSatisfy { !$0.isEmpty }))
            if !ok { bad.withLock { $0.append("#\(i): \(reply.status) \(reply.text.prefix(300)) for \(String(decoding: sent[i].body.prefix(300), as: UTF8.self))") } }
        }
        print("fuzz jobs: \(Self.count) bodies → statuses \(outcomes.withLock { $0 }.sorted { $0.key < $1.key })")
        let failures = bad.withLock { $0 }
        #expect(failures.count == 0, "\(failures.prefix(5))")
        #expect(try await server.get("/healthz").status == 200)
    }

    @Test func mutatedImagesGet200OrAProblem() async throws {
        // As many inference slots as requests in flight: no 503 decides anything here.
        let server = try await LiveServer.start { $0.maxPixels = 1 << 20; $0.inferenceSlots = 4 }
        defer { Task { await server.stop() } }
        let id = try await server.submit(steps: 2)
        _ = try await server.waitFor(id, states: ["succeeded"])
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ImageDataTests/Fixtures")
        let seeds: [(bytes: [UInt8], type: String)] = [([UInt8](samplePNG(width: 40, height: 36)), "image/png")]
            + (try ["baseline.jpg", "progressive.jpg", "gray.jpg"].map { ([UInt8](try Data(contentsOf: fixtures.appendingPathComponent($0))), "image/jpeg") })
        var g = RandomGenerator(seed: 7)
        var requests: [(path: String, body: Data, type: String)] = []
        for i in 0..<Self.count {
            var (bytes, type) = seeds[i % seeds.count]
            switch g.next() % 5 {
            case 0:  // flip bits anywhere
                for _ in 0..<(1 + Int(g.next() % 8)) { bytes[Int(g.next() % UInt64(bytes.count))] ^= UInt8(1 << (g.next() % 8)) }
            case 1:  // cut short
                bytes = Array(bytes.prefix(Int(g.next() % UInt64(bytes.count))))
            case 2:  // overwrite header bytes (dimensions, depth, colour type, markers) with extremes
                for _ in 0..<(1 + Int(g.next() % 4)) { bytes[Int(g.next() % UInt64(min(bytes.count, 200)))] = [0, 0xFF, 0x7F, 0x80][Int(g.next() % 4)] }
            case 3:  // splice a run from elsewhere in the file
                let from = Int(g.next() % UInt64(bytes.count)), to = Int(g.next() % UInt64(bytes.count))
                let n = min(Int(g.next() % 64), bytes.count - max(from, to))
                if n > 0 { bytes.replaceSubrange(to..<(to + n), with: bytes[from..<(from + n)]) }
            default:  // random garbage with the right magic
                bytes = Array(bytes.prefix(8)) + (0..<Int(g.next() % 512)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            }
            let route = i % 2 == 0 ? "reconstruct" : "features"
            requests.append(("/v1/jobs/\(id)/\(route)", Data(bytes), type))
        }
        let outcomes = Mutex<[Int: Int]>([:]), bad = Mutex<[String]>([])
        try await Self.send(server, requests) { i, reply in
            outcomes.withLock { $0[reply.status, default: 0] += 1 }
            let ok = reply.status == 200 || ([400, 415, 422].contains(reply.status) && reply.isProblem)
            if !ok { bad.withLock { $0.append("#\(i): \(reply.status) \(reply.text.prefix(300))") } }
        }
        print("fuzz images: \(Self.count) bodies → statuses \(outcomes.withLock { $0 }.sorted { $0.key < $1.key })")
        let failures = bad.withLock { $0 }
        #expect(failures.count == 0, "\(failures.prefix(5))")
        #expect(try await server.get("/healthz").status == 200)
    }
}
