import Foundation
import TestSupport
import Testing
@testable import Server

/// Clients that hold connections without finishing a request: each is closed once its timeout
/// passes (short here), and connections beyond the maximum are refused at once. Nothing here
/// asserts that a connection stays open for a given time; only that it is closed within a
/// generous window.
@Suite("Hostile clients: connections", .serialized) struct ConnectionLimitTests {
    /// Only a failing test waits this long: far beyond the 0.3 s timeouts, so that a machine
    /// busy with other suites (which starve the server's event loops and this test's polling)
    /// cannot fail it.
    static let generous = 60.0

    static func server(_ tweak: @escaping (inout ServerConfiguration) -> Void) async throws -> (LiveServer, Int) {
        let server = try await LiveServer.start { c in
            c.headerTimeoutSeconds = 60
            c.bodyIdleTimeoutSeconds = 60
            c.idleTimeoutSeconds = 60
            tweak(&c)
        }
        return (server, server.base.port!)
    }

    @Test func aHeadTrickledLineByLineIsClosedAfterTheHeaderTimeout() async throws {
        let (server, port) = try await Self.server { $0.headerTimeoutSeconds = 0.3 }
        defer { Task { await server.stop() } }
        let closed = try await offThread { () throws -> Bool in
            let s = try RawSocket(port: port)
            s.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            // A new header line after every receive timeout (50 ms), never the blank line that ends the head.
            let deadline = Date().addingTimeInterval(Self.generous)
            var line = 0
            while Date() < deadline && line < 1000 {
                line += 1
                if !s.send("X-Trickle-\(line): 1\r\n") || s.pump() { return true }
            }
            return false
        }
        #expect(closed, "a trickled head was still open after \(Self.generous) s")
        #expect(try await server.get("/healthz").status == 200)
    }

    @Test func aBodyThatStopsIsClosedAfterTheBodyIdleTimeout() async throws {
        let (server, port) = try await Self.server { $0.bodyIdleTimeoutSeconds = 0.3 }
        defer { Task { await server.stop() } }
        let closed = try await offThread { () throws -> Bool in
            let s = try RawSocket(port: port)
            s.send("POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            return s.waitClosed(within: Self.generous)
        }
        #expect(closed, "a stalled body was still open after \(Self.generous) s")
        #expect(try await server.get("/v1/jobs").status == 200)
    }

    @Test func idleConnectionsAreClosedAfterTheIdleTimeout() async throws {
        let (server, port) = try await Self.server { $0.idleTimeoutSeconds = 0.3 }
        defer { Task { await server.stop() } }
        let (answered, allClosed) = try await offThread { () throws -> (Int?, Bool) in
            // One keep-alive connection after a full exchange, and 50 that never send a byte.
            let used = try RawSocket(port: port)
            used.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            let status = used.readResponse(within: Self.generous)
            let silent = try (0..<50).map { _ in try RawSocket(port: port) }
            let deadline = Date().addingTimeInterval(Self.generous)
            var open = silent + [used]
            while !open.isEmpty && Date() < deadline {
                open = open.filter { !$0.pump() }
            }
            return (status, open.isEmpty)
        }
        #expect(answered == 200)
        #expect(allClosed, "idle connections were still open after \(Self.generous) s")
        #expect(try await server.get("/healthz").status == 200)
    }

    @Test func connectionsBeyondTheMaximumAreRefusedWhileTheOthersAreServed() async throws {
        let (server, port) = try await Self.server { $0.maxConnections = 4 }
        defer { Task { await server.stop() } }
        let result = try await offThread { () throws -> (admitted: [Int?], refused: String, refusedClosed: Bool, served: Int?, later: Int?) in
            // Four connections, each admitted (it answered a request) and kept open.
            let held = try (0..<4).map { _ in try RawSocket(port: port) }
            var admitted: [Int?] = []
            for s in held {
                s.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                admitted.append(s.readResponse(within: Self.generous))
            }
            // The fifth is answered 503 and closed at once, without sending anything.
            let extra = try RawSocket(port: port)
            let refusedClosed = extra.waitClosed(within: Self.generous)
            // The server goes on serving the connections it holds.
            held[0].send("GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            let served = held[0].readResponse(within: Self.generous)
            // Once one closes, a new connection gets in (eventually: the count drops on the server's event loop).
            held[3].send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            _ = held[3].waitClosed(within: Self.generous)
            var later: Int?
            let deadline = Date().addingTimeInterval(Self.generous)
            var tries = 0
            while later != 200 && Date() < deadline && tries < 200 {
                tries += 1
                later = try? RawSocket.exchange(port: port, "GET", "/healthz").status
            }
            return (admitted, extra.text, refusedClosed, served, later)
        }
        #expect(result.admitted == [200, 200, 200, 200])
        #expect(result.refusedClosed, "the connection beyond the maximum was not closed")
        #expect(result.refused.hasPrefix("HTTP/1.1 503") && result.refused.contains("application/problem+json")
                && result.refused.contains("Retry-After: 1"), "\(result.refused)")
        #expect(result.served == 200)
        #expect(result.later == 200)
    }

    /// The connection-limit settings are checked at start, each naming its flag.
    @Test func limitsOutOfRangeAreRefusedAtStart() {
        var c = ServerConfiguration()
        c.headerTimeoutSeconds = 0
        c.idleTimeoutSeconds = .nan
        c.maxConnections = 0
        c.maxStreams = 0
        c.allowedHosts = ["http://x/"]
        let problems = c.problems().joined(separator: "\n")
        for flag in ["header-timeout", "idle-timeout", "max-connections", "max-streams", "allowed-host"] {
            #expect(problems.contains(flag), "\(problems)")
        }
    }
}
