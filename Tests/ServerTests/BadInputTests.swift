import Foundation
import Testing
@testable import Server

@Suite("HTTP bad input", .serialized) struct BadInputTests {
    @Test func everyBadRequestIsAProblemThatNamesItsFieldAndChangesNothing() async throws {
        let server = try await LiveServer.start { $0.maxBodyBytes = 64 << 10; $0.maxJobBodyBytes = 100 << 10; $0.maxPixels = 100_000 }
        defer { Task { await server.stop() } }
        func post(_ body: String, _ path: String = "/v1/jobs") async throws -> LiveServer.Reply {
            try await server.request("POST", path, body: Data(body.utf8), headers: ["Content-Type": "application/json"])
        }
        // Submissions.
        let malformed = try await post("{\"method\": ")
        #expect(malformed.status == 400 && malformed.isProblem)
        #expect(try await post("").status == 400)
        #expect(try await post("{\"method\": 3}").errorFields == ["method"])
        #expect(try await post("{}").errorFields == ["method"])
        #expect(try await post("{\"method\": \"mae\", \"total_steps\": \"ten\"}").errorFields == ["total_steps"])
        #expect(try await post("{\"method\": \"byol\"}").errorFields == ["method"])
        #expect(try await post("{\"method\": \"mae\", \"preset\": \"giant\"}").errorFields == ["preset"])
        #expect(try await post("{\"method\": \"mae\", \"dataset\": \"imagenet\"}").errorFields == ["dataset"])
        let combo = try await post("{\"method\": \"simmim\", \"preset\": \"tiny\", \"overrides\": {\"base_lr\": -1, \"mask_ratio\": 1.5}}")
        #expect(combo.status == 422 && Set(combo.errorFields) == ["overrides.base_lr", "overrides.mask_ratio"])
        #expect(try await post("{\"method\": \"simmim\", \"preset\": \"tiny\", \"overrides\": {\"window_size\": 3}}").errorFields
            == ["overrides.window_size"])
        #expect(try await post("{\"method\": \"mae\", \"overrides\": {\"colour\": 1}}").errorFields == ["overrides.colour"])
        #expect(try await post("{\"method\": \"mae\", \"overrides\": {\"mask_ratio\": \"high\"}}").errorFields == ["overrides.mask_ratio"])
        // Oversized body: 413 as problem+json, at the job submission's own limit (not --max-body-bytes).
        let huge = try await server.request("POST", "/v1/jobs", body: Data(repeating: 32, count: 200 << 10),
                                            headers: ["Content-Type": "application/json"])
        #expect(huge.status == 413 && huge.isProblem)
        let padded = try await post("{\"method\": \"nope\"}" + String(repeating: " ", count: 80 << 10))
        #expect(padded.status == 422 && padded.errorFields == ["method"], "a body under --max-job-body-bytes is read whole")
        // Nothing above created a job.
        #expect((try await server.get("/v1/jobs").object["jobs"] as! [Any]).isEmpty)

        // Unknown ids and query values.
        #expect(try await server.get("/v1/jobs/nope").status == 404)
        #expect(try await server.get("/v1/jobs/nope/events").status == 404)
        #expect(try await server.request("POST", "/v1/jobs/nope/cancel").status == 404)
        #expect(try await server.get("/v1/jobs?state=sleeping").errorFields == ["state"])
        #expect(try await server.get("/v1/jobs?limit=0").errorFields == ["limit"])
        #expect(try await server.get("/v1/jobs?page_token=zzz").errorFields == ["page_token"])
        #expect(try await server.get("/no/such/route").status == 404)
        // A known path with a method it does not serve: 405 naming what it does serve.
        let wrongMethod = try await server.request("PUT", "/v1/jobs/nope/cancel")
        #expect(wrongMethod.status == 405 && wrongMethod.isProblem)
        #expect(wrongMethod.headers["allow"] == "POST")
        #expect(try await server.request("DELETE", "/v1/jobs").headers["allow"] == "POST, GET")
        // Static files: the dashboard is served, nothing outside Public/ is.
        #expect(try await server.get("/").headers["content-type"]?.hasPrefix("text/html") == true)
        for escape in ["/%2e%2e/Package.swift", "/..%2fPackage.swift", "/samples/%2e%2e/%2e%2e/Package.swift"] {
            let r = try await server.get(escape)
            #expect(r.status == 404 || r.status == 400, "\(escape) → \(r.status)")
            #expect(!r.text.contains("swift-tools-version"))
        }

        // A finished job: illegal transitions are 409s.
        let id = try await server.submit(steps: 3)
        _ = try await server.waitFor(id, states: ["succeeded"])
        let cancel = try await server.request("POST", "/v1/jobs/\(id)/cancel")
        #expect(cancel.status == 409 && cancel.isProblem)
        #expect(try await server.request("POST", "/v1/jobs/\(id)/pause").status == 409)
        #expect(try await server.request("POST", "/v1/jobs/\(id)/resume").status == 409)
        #expect(try await server.get("/v1/jobs/\(id)/events", headers: ["Last-Event-ID": "garbage"]).errorFields == ["Last-Event-ID"])
        #expect(try await server.get("/v1/jobs/\(id)/checkpoints/999").status == 404)
        #expect(try await server.get("/v1/jobs/\(id)/metrics?format=xml").errorFields == ["format"])

        // Images: content type, empty, truncated, not an image, pixel bomb, parameters.
        func reconstruct(_ body: Data, type: String = "image/png", query: String = "") async throws -> LiveServer.Reply {
            try await server.request("POST", "/v1/jobs/\(id)/reconstruct\(query)", body: body, headers: ["Content-Type": type])
        }
        #expect(try await reconstruct(samplePNG(), type: "text/plain").status == 415)
        #expect(try await reconstruct(Data()).errorFields == ["body"])
        #expect(try await reconstruct(samplePNG().prefix(60)).errorFields == ["body"])
        #expect(try await reconstruct(Data("GIF89a not supported".utf8)).errorFields == ["body"])
        #expect(try await reconstruct(pixelBomb()).errorFields == ["body"])
        #expect(try await reconstruct(samplePNG(), query: "?mask_ratio=1.5").errorFields == ["mask_ratio"])
        #expect(try await reconstruct(samplePNG(), query: "?seed=-1").errorFields == ["seed"])
        #expect(try await reconstruct(samplePNG(), query: "?step=7").status == 404)
        #expect(try await server.request("POST", "/v1/jobs/\(id)/features?pool=max", body: samplePNG(),
                                         headers: ["Content-Type": "image/png"]).errorFields == ["pool"])
        #expect(try await server.request("POST", "/v1/jobs/\(id)/features", json: ["images": ["%%%"]]).errorFields == ["images[0]"])
        #expect(try await server.request("POST", "/v1/jobs/\(id)/evaluate", json: ["dataset": "samples"]).errorFields == ["dataset"])
        #expect(try await server.request("POST", "/v1/jobs/\(id)/evaluate", json: ["options": ["k": 0]]).errorFields == ["options.k"])
        #expect(try await server.request("POST", "/v1/jobs/\(id)/evaluate", json: ["options": ["train_limt": 100]]).errorFields == ["options.train_limt"])
        // No checkpoint yet: 409 with the reason.
        let queued = try await server.submit(steps: 1_000_000, overrides: ["checkpoint_every": 1_000_000])
        let early = try await reconstruct(samplePNG()).status
        #expect(early == 200)
        let none = try await server.request("POST", "/v1/jobs/\(queued)/reconstruct", body: samplePNG(), headers: ["Content-Type": "image/png"])
        #expect(none.status == 409 && none.isProblem)
        _ = try await server.request("POST", "/v1/jobs/\(queued)/cancel")

        // The server is still up and the job it finished is intact.
        #expect(try await server.get("/healthz").status == 200)
        #expect(try await server.get("/v1/jobs/\(id)").object["state"] as? String == "succeeded")
    }
}

/// A 20-byte-header PNG that declares 30000 × 30000 pixels (and has no data).
func pixelBomb() -> Data {
    var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]
    let side: UInt32 = 30000
    for _ in 0..<2 { png += [UInt8(side >> 24), UInt8(side >> 16 & 255), UInt8(side >> 8 & 255), UInt8(side & 255)] }
    png += [8, 2, 0, 0, 0]
    var crc: UInt32 = 0xFFFF_FFFF
    for b in png[12...] {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    crc ^= 0xFFFF_FFFF
    png += [UInt8(crc >> 24), UInt8(crc >> 16 & 255), UInt8(crc >> 8 & 255), UInt8(crc & 255)]
    return Data(png)
}
