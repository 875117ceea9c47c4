import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import ImageData
@testable import Server
import TestSupport

/// A real server on an ephemeral port with a temporary data directory, stopped by `stop()`.
final class LiveServer: @unchecked Sendable {
    let dataDir: URL
    let base: URL
    let token: String?
    private let task: Task<Void, any Error>

    static func start(_ tweak: (inout ServerConfiguration) -> Void = { _ in }) async throws -> LiveServer {
        let dir = Scratch.url("mimserve-http")
        var c = ServerConfiguration()
        c.port = 0
        c.dataDir = dir.path
        c.logLevel = "error"
        c.sseHeartbeatSeconds = 0.2
        tweak(&c)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = try buildApplication(configuration: c) { _, port in continuation.yield(port) }
        let task = Task { try await app.runService() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw URLError(.cannotConnectToHost) }
        return LiveServer(dataDir: dir, base: URL(string: "http://127.0.0.1:\(port)")!, token: c.token, task: task)
    }

    private init(dataDir: URL, base: URL, token: String?, task: Task<Void, any Error>) {
        self.dataDir = dataDir
        self.base = base
        self.token = token
        self.task = task
    }

    func stop() async {
        task.cancel()
        _ = await task.result
    }

    struct Reply {
        let status: Int
        /// Lower-cased names.
        let headers: [String: String]
        let body: Data

        var json: Any? { try? JSONSerialization.jsonObject(with: body) }
        var object: [String: Any] { json as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
        /// The fields named by a problem+json 422.
        var errorFields: [String] { (object["errors"] as? [[String: Any]] ?? []).compactMap { $0["field"] as? String } }
        var isProblem: Bool { headers["content-type"] == "application/problem+json" && object["status"] as? Int == status }
    }

    func request(_ method: String, _ path: String, body: Data? = nil, json: Any? = nil, headers: [String: String] = [:],
                 auth: Bool = true) async throws -> Reply {
        var r = URLRequest(url: URL(string: path, relativeTo: base)!)
        r.httpMethod = method
        r.timeoutInterval = 120
        if let json {
            r.httpBody = try JSONSerialization.data(withJSONObject: json)
            r.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let body {
            r.httpBody = body
        }
        if auth, let token { r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        for (k, v) in headers { r.setValue(v, forHTTPHeaderField: k) }
        let (data, response) = try await URLSession.shared.data(for: r)
        let http = response as! HTTPURLResponse
        var h: [String: String] = [:]
        for (k, v) in http.allHeaderFields { if let k = k as? String, let v = v as? String { h[k.lowercased()] = v } }
        return Reply(status: http.statusCode, headers: h, body: data)
    }

    func get(_ path: String, headers: [String: String] = [:]) async throws -> Reply { try await request("GET", path, headers: headers) }

    /// Submits a tiny job and returns its id.
    func submit(_ method: String = "mae", steps: Int, overrides: [String: Any] = [:]) async throws -> String {
        let r = try await request("POST", "/v1/jobs", json: ["method": method, "preset": "tiny", "total_steps": steps, "batch_size": 8,
                                                             "overrides": overrides])
        guard r.status == 201, let id = r.object["id"] as? String else { throw Failure("submit failed: \(r.status) \(r.text)") }
        return id
    }

    func waitFor(_ id: String, states: Set<String>, timeout: TimeInterval = 120) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let job = try await get("/v1/jobs/\(id)").object
            if let s = job["state"] as? String, states.contains(s) { return job }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw Failure("job \(id) did not reach \(states)")
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// One server-sent event.
struct SSEEvent: Equatable {
    var id: String?
    var event: String
    var data: String

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any] ?? [:] }

    static func parse(_ text: String) -> [SSEEvent] {
        text.components(separatedBy: "\n\n").compactMap { block in
            var e = SSEEvent(id: nil, event: "message", data: "")
            var any = false
            for line in block.split(separator: "\n") where !line.hasPrefix(":") {
                any = true
                if line.hasPrefix("id: ") { e.id = String(line.dropFirst(4)) }
                else if line.hasPrefix("event: ") { e.event = String(line.dropFirst(7)) }
                else if line.hasPrefix("data: ") { e.data += String(line.dropFirst(6)) }
            }
            return any ? e : nil
        }
    }
}

/// A small valid PNG (a gradient), made with our own encoder.
func samplePNG(width: Int = 48, height: Int = 40) -> Data {
    var bytes = [UInt8]()
    for y in 0..<height { for x in 0..<width { bytes += [UInt8(x * 255 / width), UInt8(y * 255 / height), 128] } }
    return Data(try! PNGEncoder.encode(bytes: bytes, width: width, height: height, channels: 3))
}
