import Foundation
import Testing
@testable import Server

@Suite("OpenAPI document") struct OpenAPITests {
    /// Every registered route is documented and every documented operation is registered.
    @Test func routesAndDocumentAgree() throws {
        var c = ServerConfiguration()
        c.dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("mimserve-openapi-\(UUID().uuidString)").path
        let core = try makeCore(c)
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
}
