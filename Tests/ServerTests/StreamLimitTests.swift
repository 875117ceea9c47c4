import Foundation
import TestSupport
import Testing
@testable import Server

/// Event streams end when there is nothing more to follow, and there are only so many at once.
@Suite("Hostile clients: event streams", .serialized) struct StreamLimitTests {
    static let generous = 60.0

    /// Opens a raw event stream and waits for its first event (the job's state): from then on
    /// the server holds the stream.
    static func openStream(port: Int, job: String) throws -> RawSocket {
        let s = try RawSocket(port: port)
        s.send("GET /v1/jobs/\(job)/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        guard s.read(within: generous, until: { $0.contains("event: state") }) else { throw Failure("no stream: \(s.text)") }
        return s
    }

    /// A long job holds the only trainer slot, so a second one stays queued for as long as the test needs.
    static func queuedJob(_ server: LiveServer) async throws -> (holder: String, queued: String) {
        let holder = try await server.submit(steps: 1_000_000)
        _ = try await server.waitFor(holder, states: ["running"])
        return (holder, try await server.submit(steps: 5))
    }

    @Test func aStreamEndsWithAFinalEventWhenItsJobIsDeleted() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let port = server.base.port!
        let (holder, queued) = try await Self.queuedJob(server)
        let stream = try await offThread { try Self.openStream(port: port, job: queued) }
        #expect(try await server.request("DELETE", "/v1/jobs/\(queued)").status == 204)
        let closed = try await offThread { stream.waitStreamEnd(within: Self.generous) }
        #expect(closed, "the stream of a deleted job stayed open")
        let events = SSEEvent.parse(stream.body)
        #expect(events.last?.event == "end" && events.last?.json["reason"] as? String == "deleted", "\(stream.text)")
        #expect(try await server.request("POST", "/v1/jobs/\(holder)/cancel").status == 200)
    }

    @Test func streamsBeyondTheMaximumGet503WithRetryAfter() async throws {
        let server = try await LiveServer.start { $0.maxStreams = 2 }
        defer { Task { await server.stop() } }
        let port = server.base.port!
        let (holder, queued) = try await Self.queuedJob(server)
        let first = try await offThread { try Self.openStream(port: port, job: queued) }
        let second = try await offThread { try Self.openStream(port: port, job: holder) }
        let refused = try await server.get("/v1/jobs/\(queued)/events")
        #expect(refused.status == 503 && refused.isProblem && refused.headers["retry-after"] != nil, "\(refused.status) \(refused.text)")
        // A place frees once a stream ends (here: its job is deleted), eventually.
        #expect(try await server.request("DELETE", "/v1/jobs/\(queued)").status == 204)
        #expect(try await offThread { first.waitStreamEnd(within: Self.generous) })
        let admitted = try await offThread { () -> Bool in
            let deadline = Date().addingTimeInterval(Self.generous)
            var tries = 0
            while Date() < deadline && tries < 500 {
                tries += 1
                guard let s = try? RawSocket(port: port) else { continue }
                s.send("GET /v1/jobs/\(holder)/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                s.read(within: 5) { $0.contains("\r\n\r\n") }
                if s.text.hasPrefix("HTTP/1.1 200") { return true }
                usleep(20_000)
            }
            return false
        }
        #expect(admitted)
        _ = second
        #expect(try await server.request("POST", "/v1/jobs/\(holder)/cancel").status == 200)
    }
}
