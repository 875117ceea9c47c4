import Config
import Foundation
import Testing
@testable import Server
import TestSupport

@Suite("OpenAPI document") struct OpenAPITests {
    /// Every registered route is documented and every documented operation is registered.
    @Test func routesAndDocumentAgree() throws {
        var c = ServerConfiguration()
        c.dataDir = Scratch.url("mimserve-openapi").path
        let core = try makeCore(c, role: .api)
        let (_, routes) = makeRouter(core)
        let publicDir = try #require(core.publicDir)
        let data = try Data(contentsOf: URL(fileURLWithPath: publicDir).appendingPathComponent("openapi.json"))
        let doc = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(doc["openapi"] as? String == "3.1.0")
        let paths = try #require(doc["paths"] as? [String: [String: Any]])
        var documented: Set<String> = []
        for (path, ops) in paths {
            for method in ops.keys where ["get", "post", "put", "patch", "delete"].contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        #expect(Set(routes) == documented, "only in the router: \(Set(routes).subtracting(documented)); only documented: \(documented.subtracting(routes))")
        #expect(routes.count == Set(routes).count)
    }

    /// The job request has one description: the schema the server validates with, the one
    /// `GET /v1/methods` serves and the one in `Public/openapi.json` are the same document.
    /// (Regenerate the file with `mimserve schema --openapi Public/openapi.json`.)
    @Test func theJobRequestSchemaIsTheSameEverywhere() async throws {
        let generated = try JSONSerialization.jsonObject(with: JSONEncoder().encode(JobSchema.jsonSchema())) as! NSDictionary
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let served = try #require(try await server.get("/v1/methods").object["schema"] as? NSDictionary)
        let file = try await server.get("/openapi.json").object
        let documented = try #require(((file["components"] as? [String: Any])?["schemas"] as? [String: Any])?["JobRequest"] as? NSDictionary)
        #expect(served == generated)
        #expect(documented == generated, "Public/openapi.json is stale: run `mimserve schema --openapi Public/openapi.json`")
        // Each method lists the poolings the features endpoint accepts for it.
        let methods = try #require(try await server.get("/v1/methods").object["methods"] as? [[String: Any]])
        for m in methods {
            let method = try #require(Method(rawValue: m["name"] as? String ?? ""))
            #expect(m["pools"] as? [String] == method.pools.map(\.rawValue))
        }
    }
}
