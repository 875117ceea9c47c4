import Foundation
import TestSupport
import Testing
@testable import Server

/// What a web page of another site could do to a server on 127.0.0.1, refused: JSON sent as a
/// "simple" text/plain request, DNS rebinding (its own name as Host), cross-site changes, and
/// reads of a token-protected server.
@Suite("Hostile clients: browsers", .serialized) struct BrowserSafetyTests {
    static func problemField(_ body: String) -> [String] {
        let object = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        return (object["errors"] as? [[String: Any]] ?? []).compactMap { $0["field"] as? String }
    }

    @Test func jsonRoutesRequireTheJSONContentType() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let job = #"{"method": "mae", "preset": "tiny", "total_steps": 5}"#
        for type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", nil] {
            let r = try await server.request("POST", "/v1/jobs", body: Data(job.utf8), headers: type.map { ["Content-Type": $0] } ?? [:])
            #expect(r.status == 415 && r.isProblem && r.errorFields == ["Content-Type"], "\(type ?? "none"): \(r.status) \(r.text)")
        }
        let datasets = try await server.request("POST", "/v1/datasets", body: Data(#"{"id": "x"}"#.utf8), headers: ["Content-Type": "text/plain"])
        #expect(datasets.status == 415 && datasets.errorFields == ["Content-Type"])
        #expect((try await server.get("/v1/jobs").object["jobs"] as? [Any])?.isEmpty == true, "a text/plain body made a job")
        // The JSON type (with parameters) is accepted; evaluate's empty body needs no type.
        let ok = try await server.request("POST", "/v1/jobs", body: Data(job.utf8), headers: ["Content-Type": "application/json; charset=utf-8"])
        #expect(ok.status == 201, "\(ok.text)")
        let id = try #require(ok.object["id"] as? String)
        _ = try await server.waitFor(id, states: ["succeeded"])
        let plainEvaluate = try await server.request("POST", "/v1/jobs/\(id)/evaluate", body: Data("{}".utf8), headers: ["Content-Type": "text/plain"])
        #expect(plainEvaluate.status == 415 && plainEvaluate.errorFields == ["Content-Type"])
        let emptyEvaluate = try await server.request("POST", "/v1/jobs/\(id)/evaluate?step=999", body: Data())
        #expect(emptyEvaluate.status != 415, "\(emptyEvaluate.status) \(emptyEvaluate.text)")
    }

    @Test func aHostOutsideTheAllowListIsMisdirected() async throws {
        let server = try await LiveServer.start { $0.allowedHosts = ["mimserve.internal", "proxy.example:8443"] }
        defer { Task { await server.stop() } }
        let port = server.base.port!
        let statuses = try await offThread { () throws -> [String: (Int, [String])] in
            var out: [String: (Int, [String])] = [:]
            for host in ["127.0.0.1", "127.0.0.1:\(port)", "localhost", "LOCALHOST:\(port)", "[::1]", "[::1]:\(port)",
                         "mimserve.internal", "mimserve.internal:9", "proxy.example:8443",
                         "evil.example", "evil.example:\(port)", "localhost:1", "127.0.0.1:\(port + 1)", "proxy.example",
                         "proxy.example:8444", "127.0.0.1.evil.example", "[::1", ""] {
                let r = try RawSocket.exchange(port: port, "GET", "/healthz", headers: ["Host": host])
                out[host] = (r.status, Self.problemField(r.body))
            }
            // Static files and the API alike.
            let page = try RawSocket.exchange(port: port, "GET", "/", headers: ["Host": "evil.example"])
            out["page"] = (page.status, Self.problemField(page.body))
            return out
        }
        for allowed in ["127.0.0.1", "127.0.0.1:\(port)", "localhost", "LOCALHOST:\(port)", "[::1]", "[::1]:\(port)",
                        "mimserve.internal", "mimserve.internal:9", "proxy.example:8443"] {
            #expect(statuses[allowed]?.0 == 200, "\(allowed): \(String(describing: statuses[allowed]))")
        }
        for refused in ["evil.example", "evil.example:\(port)", "localhost:1", "127.0.0.1:\(port + 1)", "proxy.example",
                        "proxy.example:8444", "127.0.0.1.evil.example", "[::1", "page"] {
            #expect(statuses[refused]?.0 == 421 && statuses[refused]?.1 == ["Host"], "\(refused): \(String(describing: statuses[refused]))")
        }
        #expect(statuses[""]?.0 == 400 || statuses[""]?.0 == 421)
    }

    @Test func aChangeFromAnotherOriginIsForbidden() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let port = server.base.port!
        let job: [String: Any] = ["method": "mae", "preset": "tiny", "total_steps": 3]
        for origin in ["http://evil.example", "https://evil.example:\(port)", "null", "http://127.0.0.1.evil.example", "file://"] {
            let r = try await server.request("POST", "/v1/jobs", json: job, headers: ["Origin": origin])
            #expect(r.status == 403 && r.isProblem && r.errorFields == ["Origin"], "\(origin): \(r.status) \(r.text)")
        }
        #expect((try await server.get("/v1/jobs").object["jobs"] as? [Any])?.isEmpty == true)
        // The dashboard's own origin may; a read from anywhere is only a read.
        let own = try await server.request("POST", "/v1/jobs", json: job, headers: ["Origin": "http://127.0.0.1:\(port)"])
        #expect(own.status == 201, "\(own.text)")
        let id = try #require(own.object["id"] as? String)
        #expect(try await server.request("DELETE", "/v1/jobs/\(id)", headers: ["Origin": "http://localhost:\(port)"]).status != 403)
        #expect(try await server.get("/v1/jobs", headers: ["Origin": "http://evil.example"]).status == 200)
    }

    @Test func aTokenGuardsReadsButNotTheProbesOrTheDashboard() async throws {
        let token = "read-guard-token"
        let server = try await LiveServer.start { $0.token = token }
        defer { Task { await server.stop() } }
        for path in ["/v1/jobs", "/v1/methods", "/v1/datasets", "/metrics", "/v1/jobs/x/events", "/v1/jobs?access_token=\(token)"] {
            let r = try await server.request("GET", path, auth: false)
            #expect(r.status == 401 && r.isProblem && r.headers["www-authenticate"] == "Bearer", "\(path): \(r.status)")
        }
        let wrong = try await server.request("GET", "/v1/jobs", headers: ["Authorization": "Bearer not-the-token"], auth: false)
        #expect(wrong.status == 401)
        for path in ["/healthz", "/readyz", "/openapi.json", "/", "/js/api.js"] {
            #expect(try await server.request("GET", path, auth: false).status == 200, "\(path)")
        }
        #expect(try await server.get("/v1/jobs").status == 200)
        #expect(try await server.get("/metrics").status == 200)

        let open = try await LiveServer.start { $0.token = token; $0.authReads = false }
        defer { Task { await open.stop() } }
        #expect(try await open.request("GET", "/v1/jobs", auth: false).status == 200)
        #expect(try await open.request("POST", "/v1/jobs", json: ["method": "mae"], auth: false).status == 401)
    }

    @Test func theDashboardNeverPutsTheTokenInAURL() throws {
        let publicDir = try #require(ServerConfiguration().locatePublic())
        for file in try FileManager.default.contentsOfDirectory(atPath: "\(publicDir)/js") {
            let text = try String(contentsOfFile: "\(publicDir)/js/\(file)", encoding: .utf8)
            #expect(!text.contains("access_token") && !text.contains("new EventSource"), "\(file)")
        }
    }
}
