import Config
import Foundation
import Models
import Testing
@testable import Server

/// Fine-tuning over HTTP: submission and validation, scores stored and streamed, what a
/// fine-tuning job refuses, and imported weights as a starting point.
@Suite("HTTP fine-tuning", .serialized) struct FinetuneRouteTests {
    func finetune(_ server: LiveServer, _ extra: [String: Any]) async throws -> LiveServer.Reply {
        var body: [String: Any] = ["method": "mae", "task": "finetune", "dataset": "synthetic", "total_steps": 4, "batch_size": 8,
                                   "overrides": ["eval_every": 2, "eval_images": 20]]
        body.merge(extra) { _, new in new }
        return try await server.request("POST", "/v1/jobs", json: body)
    }

    /// From a pretraining job: the fine-tune takes its preset and newest step, scores top-1 at
    /// steps 2 and 4, stores and streams each score, and refuses reconstruction and export
    /// (it has no decoder) while its encoder still embeds.
    @Test func aFineTuneIsScoredStoredAndStreamed() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let source = try await server.submit(steps: 4, overrides: ["checkpoint_every": 4])
        _ = try await server.waitFor(source, states: ["succeeded"])
        let created = try await finetune(server, ["init": ["job": source]])
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.object["id"] as? String)
        let config = try #require(created.object["config"] as? [String: Any])
        #expect(created.object["task"] as? String == "finetune" && config["preset"] as? String == "mae_vit_tiny_patch4_dec32d1b_32")
        #expect((config["init"] as? [String: Any])?["step"] as? Int == 4)
        #expect((config["finetune"] as? [String: Any])?["classes"] as? Int == 10)
        let job = try await server.waitFor(id, states: ["succeeded", "failed"])
        #expect(job["state"] as? String == "succeeded", "\(job["error"] ?? "")")

        let evaluations = try #require(try await server.get("/v1/jobs/\(id)/evaluations").object["evaluations"] as? [[String: Any]])
        #expect(evaluations.map { $0["step"] as? Int } == [2, 4])
        for e in evaluations {
            let result = try #require(e["result"] as? [String: Any])
            #expect(result["kind"] as? String == "finetune" && result["images"] as? Int == 20)
            #expect((result["top1"] as? Double).map { (0...1).contains($0) } == true)
        }
        let events = SSEEvent.parse(try await server.get("/v1/jobs/\(id)/events", headers: ["Last-Event-ID": "0:0"]).text)
        let scored = events.filter { $0.event == "evaluation" }.map { $0.json["step"] as? Int }
        #expect(scored == [2, 4], "\(events.map(\.event))")

        let image = try Data(contentsOf: URL(fileURLWithPath: "Public/samples").appendingPathComponent("cat.jpg"))
        let reconstruct = try await server.request("POST", "/v1/jobs/\(id)/reconstruct", body: image, headers: ["Content-Type": "image/jpeg"])
        #expect(reconstruct.status == 409 && reconstruct.isProblem && reconstruct.text.contains("fine-tuning job"), "\(reconstruct.text)")
        // The classifier exports to timm, head included; transformers' classification models not yet.
        let export = try await server.get("/v1/jobs/\(id)/checkpoints/4/export?format=timm")
        #expect(export.status == 200, "\(export.text)")
        let files = try ExportRouteTests.untar(export.body)
        let weights = try #require(files["\(id)-4-timm/model.safetensors"])
        #expect(try ExportRouteTests.tensorNames(weights).isSuperset(of: ["head.weight", "head.bias", "cls_token"]))
        let configBytes = try #require(files["\(id)-4-timm/config.json"])
        let timmConfig = try JSONSerialization.jsonObject(with: configBytes) as? [String: Any]
        #expect(timmConfig?["num_classes"] as? Int == 10)
        let hf = try await server.get("/v1/jobs/\(id)/checkpoints/4/export?format=hf")
        #expect(hf.status == 422 && hf.errorFields == ["format"], "\(hf.text)")
        let features = try await server.request("POST", "/v1/jobs/\(id)/features?pool=mean", body: image, headers: ["Content-Type": "image/jpeg"])
        #expect(features.status == 200 && features.object["dim"] as? Int == 64, "\(features.text)")

        // A fine-tuning job is no init.
        let again = try await finetune(server, ["init": ["job": id]])
        #expect(again.status == 422 && again.errorFields == ["init"], "\(again.text)")
    }

    /// Each bad request is a 422 naming its field, and creates no job.
    @Test func badRequestsNameTheirField() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let cases: [([String: Any], String)] = [
            (["task": "classify"], "task"),
            (["task": "pretrain", "overrides": ["eval_every": 2]], "overrides.eval_every"),
            (["overrides": ["pool": "cls"], "method": "simmim"], "overrides.pool"),
            (["overrides": ["mixup": -1]], "overrides.mixup"),
            (["init": ["weights": "../etc/passwd"]], "init"),
            (["init": ["weights": "nope"]], "init.weights"),
            (["init": ["job": "j1", "weights": "w"]], "init"),
            (["init": ["job": "jnope"]], "init.job"),
        ]
        for (extra, field) in cases {
            let r = try await finetune(server, extra)
            #expect(r.status == 422 && r.isProblem && r.errorFields == [field], "\(extra): \(r.status) \(r.text)")
            #expect(!r.text.contains(server.dataDir.path))
        }
        let jobs = try #require(try await server.get("/v1/jobs").object["jobs"] as? [Any])
        #expect(jobs.isEmpty)
    }

    /// Weights placed in the checkpoint directory's weights/ folder (as `mimserve import-hf -o`
    /// writes them) are listed, and start a fine-tune and a pretraining job; the preset is the
    /// one whose model the file holds.
    @Test func importedWeightsAreListedAndStartJobs() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let preset = try Presets.resolve(method: .mae, preset: "tiny")
        let folder = server.dataDir.appendingPathComponent("checkpoints/weights")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try WeightsFile.write(MAE(config: preset.model, seed: 5), to: folder.appendingPathComponent("tiny-mae.safetensors").path)
        try Data("not a weights file".utf8).write(to: folder.appendingPathComponent("broken.safetensors"))

        let listed = try #require(try await server.get("/v1/weights").object["weights"] as? [[String: Any]])
        #expect(listed.map { $0["id"] as? String } == ["broken", "tiny-mae"])
        #expect(listed[1]["method"] as? String == "mae" && listed[1]["finetuned"] as? Bool == false)
        #expect(listed[0]["error"] is String && !(listed[0]["error"] as! String).contains(server.dataDir.path))

        let tuned = try await finetune(server, ["init": ["weights": "tiny-mae"]])
        #expect(tuned.status == 201, "\(tuned.text)")
        let config = try #require(tuned.object["config"] as? [String: Any])
        #expect(config["preset"] as? String == preset.name && (config["init"] as? [String: Any])?["weights"] as? String == "tiny-mae")
        let pretrain = try await server.request("POST", "/v1/jobs", json: ["method": "mae", "total_steps": 2, "batch_size": 4,
                                                                           "init": ["weights": "tiny-mae"]])
        #expect(pretrain.status == 201, "\(pretrain.text)")
        for r in [tuned, pretrain] {
            let job = try await server.waitFor(try #require(r.object["id"] as? String), states: ["succeeded", "failed"])
            #expect(job["state"] as? String == "succeeded", "\(job["error"] ?? "")")
        }
        let broken = try await finetune(server, ["init": ["weights": "broken"]])
        #expect(broken.status == 422 && broken.errorFields == ["init.weights"], "\(broken.text)")
    }
}
