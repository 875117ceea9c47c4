import Config
import Crypto
import Hummingbird
import Foundation
import TestSupport
import ImageData
import Testing
@testable import Server
import Trainer
import Store

@Suite("HTTP end to end", .serialized) struct EndToEndTests {
    /// A stream that starts from the beginning of a long history reads it in pages and misses
    /// nothing: more rows than one page, then the terminal state.
    @Test func aLongHistoryReplaysInPages() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let id = try await server.submit(steps: 1)
        _ = try await server.waitFor(id, states: ["succeeded"])
        let extra = 2 * EventStream.replayPageSize + 7
        let store = try Store(path: server.dataDir.appendingPathComponent("mimserve.sqlite").path, migrations: MigrationSet.locate())
        let rows = (2...(extra + 1)).map { MetricRecord(jobID: id, step: $0, loss: 1, lr: 0, imagesPerS: nil, wallTimeS: Double($0)) }
        try store.record(progress: JobProgress(step: extra + 1, loss: 1, lr: 0, imagesPerS: nil, etaS: nil), metrics: rows, for: id)
        let events = SSEEvent.parse(try await server.get("/v1/jobs/\(id)/events", headers: ["Last-Event-ID": "0:0"]).text)
        #expect(events.filter { $0.event == "metric" }.map { $0.json["step"] as! Int } == Array(1...(extra + 1)))
        #expect(events.last?.event == "state" && events.last?.json["state"] as? String == "succeeded")
    }

    /// A rendered history is reused only while the job's row is unchanged: new rows show at
    /// once, and a client holding the current ETag gets a 304.
    @Test func aHistoryIsNeverStaleAndAnsweredNotModified() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let id = try await server.submit(steps: 1)
        _ = try await server.waitFor(id, states: ["succeeded"])
        let path = "/v1/jobs/\(id)/metrics?max_points=200"
        let first = try await server.get(path)
        let etag = try #require(first.headers["etag"])
        #expect((first.object["metrics"] as? [Any])?.count == 1)
        #expect(try await server.get(path, headers: ["If-None-Match": etag]).status == 304)
        let csv = try await server.get("/v1/jobs/\(id)/metrics?max_points=200&format=csv")
        #expect(csv.headers["content-type"] == "text/csv; charset=utf-8" && csv.text.split(separator: "\n").count == 2)

        let store = try Store(path: server.dataDir.appendingPathComponent("mimserve.sqlite").path, migrations: MigrationSet.locate())
        let rows = (2...6).map { MetricRecord(jobID: id, step: $0, loss: 1, lr: 0, imagesPerS: nil, wallTimeS: Double($0)) }
        try store.record(progress: JobProgress(step: 6, loss: 1, lr: 0, imagesPerS: nil, etaS: nil), metrics: rows, for: id)
        let second = try await server.get(path, headers: ["If-None-Match": etag])
        #expect(second.status == 200 && second.headers["etag"] != etag)
        #expect((second.object["metrics"] as? [[String: Any]])?.map { $0["step"] as! Int } == Array(1...6))
        #expect(try await server.get("/v1/jobs/\(id)/metrics?max_points=200&format=csv").text.split(separator: "\n").count == 7)
    }

    /// Inference options a model cannot honour are refused, naming the field, and answers report
    /// what was used: SimMIM has no class token; UM-MAE always masks 0.75.
    @Test func inferenceOptionsAreHonestPerMethod() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let swin = try await server.submit("simmim", steps: 1)
        let um = try await server.submit("ummae", steps: 1)
        _ = try await server.waitFor(swin, states: ["succeeded"])
        _ = try await server.waitFor(um, states: ["succeeded"])
        let png = ["Content-Type": "image/png"]
        let cls = try await server.request("POST", "/v1/jobs/\(swin)/features?pool=cls", body: samplePNG(), headers: png)
        #expect(cls.status == 422 && cls.errorFields == ["pool"], "\(cls.text)")
        let mean = try await server.request("POST", "/v1/jobs/\(swin)/features?pool=mean", body: samplePNG(), headers: png)
        #expect(mean.status == 200 && mean.object["pool"] as? String == "mean")
        let half = try await server.request("POST", "/v1/jobs/\(um)/reconstruct?mask_ratio=0.5&format=json", body: samplePNG(), headers: png)
        #expect(half.status == 422 && half.errorFields == ["mask_ratio"], "\(half.text)")
        let fixed = try await server.request("POST", "/v1/jobs/\(um)/reconstruct?format=json", body: samplePNG(), headers: png)
        #expect(fixed.status == 200 && fixed.object["mask_ratio"] as? Double == 0.75, "\(fixed.text)")
    }

    @Test func aTinyJobFromSubmissionToReconstruction() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let id = try await server.submit(steps: 40, overrides: ["checkpoint_every": 10])

        // The whole stream, from the job's start, ends by itself after `succeeded`.
        let first = try await server.get("/v1/jobs/\(id)/events", headers: ["Last-Event-ID": "0:0"])
        #expect(first.status == 200 && first.headers["content-type"] == "text/event-stream")
        let events = SSEEvent.parse(first.text)
        let metricSteps = events.filter { $0.event == "metric" }.map { $0.json["step"] as! Int }
        #expect(metricSteps == Array(1...40))
        #expect(events.last?.event == "state" && events.last?.json["state"] as? String == "succeeded")
        #expect(events.filter { $0.event == "checkpoint" }.map { $0.json["step"] as! Int } == [10, 20, 30, 40])

        // Reconnecting with the id of the 15th metric gives exactly what followed it.
        let cut = events.firstIndex { $0.event == "metric" && $0.json["step"] as? Int == 15 }!
        let second = try await server.get("/v1/jobs/\(id)/events", headers: ["Last-Event-ID": events[cut].id!])
        let rest = SSEEvent.parse(second.text)
        // (Ids may differ: a replay sends metrics before the checkpoint events it passes.)
        #expect(rest.filter { $0.event == "metric" }.map(\.data) == Array(events[(cut + 1)...]).filter { $0.event == "metric" }.map(\.data))
        let checkpointsAfterCut = events[(cut + 1)...].filter { $0.event == "checkpoint" }.map { $0.json["step"] as! Int }
        #expect(rest.filter { $0.event == "checkpoint" }.map { $0.json["step"] as! Int } == checkpointsAfterCut)
        #expect(rest.last?.json["state"] as? String == "succeeded")

        // History as JSON and CSV.
        let history = try await server.get("/v1/jobs/\(id)/metrics").object["metrics"] as! [[String: Any]]
        #expect(history.map { $0["step"] as! Int } == Array(1...40))
        #expect(history.map { $0["loss"] as! Double } == events.filter { $0.event == "metric" }.map { $0.json["loss"] as! Double })
        let csv = try await server.get("/v1/jobs/\(id)/metrics?format=csv")
        #expect(csv.text.split(separator: "\n").count == 41 && csv.text.hasPrefix("step,loss,lr,images_per_s,wall_time_s"))
        let thin = try await server.get("/v1/jobs/\(id)/metrics?max_points=5&after_step=10").object["metrics"] as! [[String: Any]]
        #expect(thin.count == 5 && thin.first?["step"] as? Int == 11 && thin.last?["step"] as? Int == 40)

        // Checkpoints download intact.
        let cks = try await server.get("/v1/jobs/\(id)/checkpoints").object["checkpoints"] as! [[String: Any]]
        #expect(cks.map { $0["step"] as! Int } == [20, 30, 40] || cks.map { $0["step"] as! Int } == [10, 20, 30, 40])
        let last = cks.last!
        let file = try await server.get(last["url"] as! String)
        #expect(file.status == 200 && file.body.count == last["bytes"] as! Int)
        #expect(SHA256.hash(data: file.body).map { String(format: "%02x", $0) }.joined() == last["sha256"] as! String)

        // Reconstruction strip: 4 panels of 128 px (the 32 px model upscaled ×4) with 4 px gaps.
        let png = try await server.request("POST", "/v1/jobs/\(id)/reconstruct?mask_ratio=0.75&seed=3", body: samplePNG(),
                                           headers: ["Content-Type": "image/png"])
        #expect(png.status == 200 && png.headers["content-type"] == "image/png", "\(png.text)")
        let strip = try ImageCodec.decode([UInt8](png.body))
        #expect(strip.width == 4 * 128 + 12 && strip.height == 128)
        let info = try await server.request("POST", "/v1/jobs/\(id)/reconstruct?format=json&seed=3", body: samplePNG(),
                                            headers: ["Content-Type": "image/png"]).object
        #expect(info["step"] as? Int == 40 && abs((info["masked_fraction"] as? Double ?? 0) - 0.75) < 1e-9)

        // Features: the encoder width, the same for the same image.
        let a = try await server.request("POST", "/v1/jobs/\(id)/features", body: samplePNG(), headers: ["Content-Type": "image/png"]).object
        let b = try await server.request("POST", "/v1/jobs/\(id)/features?pool=mean", body: samplePNG(), headers: ["Content-Type": "image/png"]).object
        #expect(a["dim"] as? Int == 64)
        #expect((a["features"] as? [[Double]])?.first?.count == 64)
        #expect(a["features"] as? [[Double]] == b["features"] as? [[Double]])
        let two = try await server.request("POST", "/v1/jobs/\(id)/features?pool=none", json: [
            "images": [samplePNG().base64EncodedString(), samplePNG(width: 20, height: 30).base64EncodedString()],
        ]).object
        #expect(two["count"] as? Int == 2 && two["tokens"] as? Int == 65 && (two["features"] as? [[Double]])?.first?.count == 65 * 64)

        // Evaluation against the baselines, stored with the job.
        let eval = try await server.request("POST", "/v1/jobs/\(id)/evaluate", json: [
            "dataset": "synthetic", "options": ["train_limit": 60, "test_limit": 20, "probe_epochs": 30],
        ])
        #expect(eval.status == 201, "\(eval.text)")
        let result = eval.object["result"] as? [String: Any] ?? [:]
        for key in ["knn", "linear_probe"] {
            let acc = result[key] as? [String: Double] ?? [:]
            #expect(Set(acc.keys) == ["encoder", "raw_pixels", "random_encoder"])
            #expect(acc.values.allSatisfy { (0...1).contains($0) })
        }
        let evals = try await server.get("/v1/jobs/\(id)/evaluations").object["evaluations"] as? [[String: Any]]
        #expect(evals?.count == 1)
    }

    @Test func listsFiltersAndPaginates() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        var ids: [String] = []
        for _ in 0..<3 { ids.append(try await server.submit("mae", steps: 100_000)) }
        ids.append(try await server.submit("simmim", steps: 5))
        let page1 = try await server.get("/v1/jobs?limit=2").object
        let page2 = try await server.get("/v1/jobs?limit=2&page_token=\(page1["next_page_token"] as! String)").object
        let seen = ((page1["jobs"] as! [[String: Any]]) + (page2["jobs"] as! [[String: Any]])).map { $0["id"] as! String }
        #expect(seen == ids.reversed())
        #expect(page2["next_page_token"] is NSNull)
        let simmim = try await server.get("/v1/jobs?method=simmim").object["jobs"] as! [[String: Any]]
        #expect(simmim.map { $0["id"] as! String } == [ids[3]])
        _ = try await server.waitFor(ids[0], states: ["running"])
        let running = try await server.get("/v1/jobs?state=running").object["jobs"] as! [[String: Any]]
        #expect(running.map { $0["id"] as! String } == [ids[0]])
        // Lifecycle over HTTP: pause the running job, resume it, cancel everything.
        #expect(try await server.request("POST", "/v1/jobs/\(ids[0])/pause").status == 200)
        _ = try await server.waitFor(ids[0], states: ["paused"])
        #expect(try await server.request("POST", "/v1/jobs/\(ids[0])/resume").object["state"] as? String == "queued")
        for id in ids { _ = try await server.request("POST", "/v1/jobs/\(id)/cancel") }
        for id in ids.prefix(3) { _ = try await server.waitFor(id, states: ["cancelled"]) }
        #expect(try await server.request("DELETE", "/v1/jobs/\(ids[1])").status == 204)
        #expect(try await server.get("/v1/jobs/\(ids[1])").status == 404)
    }

    @Test func idempotentSubmission() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let body = try JSONSerialization.data(withJSONObject: ["method": "mae", "preset": "tiny", "total_steps": 3])
        let h = ["Idempotency-Key": "abc-123", "Content-Type": "application/json"]
        let a = try await server.request("POST", "/v1/jobs", body: body, headers: h)
        let b = try await server.request("POST", "/v1/jobs", body: body, headers: h)
        #expect(a.status == 201 && b.status == 200 && a.object["id"] as? String == b.object["id"] as? String)
        let other = try JSONSerialization.data(withJSONObject: ["method": "mae", "preset": "tiny", "total_steps": 4])
        let c = try await server.request("POST", "/v1/jobs", body: other, headers: h)
        #expect(c.status == 422 && c.isProblem && c.errorFields == ["Idempotency-Key"])
    }

    /// A job shows the request it was made from, as sent (the preset's alias, what it left out
    /// left out), beside its resolved configuration: what a clone sends again.
    @Test func aJobShowsTheRequestItWasMadeFrom() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let asked: [String: Any] = ["method": "simmim", "preset": "tiny", "total_steps": 3, "seed": 7,
                                    "overrides": ["clip_grad": NSNull(), "mask_ratio": 0.5]]
        let posted = try await server.request("POST", "/v1/jobs", json: asked)
        #expect(posted.status == 201)
        let id = try #require(posted.object["id"] as? String)
        for job in [posted.object, try await server.get("/v1/jobs/\(id)").object,
                    try #require((try await server.get("/v1/jobs").object["jobs"] as? [[String: Any]])?.first)] {
            let request = try #require(job["request"] as? [String: Any])
            let canonical = { (o: [String: Any]) in String(decoding: try JSONSerialization.data(withJSONObject: o, options: .sortedKeys), as: UTF8.self) }
            #expect(try canonical(request) == canonical(asked))
            let config = try #require(job["config"] as? [String: Any])
            let training = try #require(config["training"] as? [String: Any])
            #expect(config["request"] == nil && config["preset"] as? String != "tiny")
            #expect((training["clip_grad"] ?? NSNull()) is NSNull && training["batch_size"] as? Int == 16)
        }
    }

    @Test func systemEndpoints() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        #expect(try await server.get("/healthz").object["status"] as? String == "ok")
        let ready = try await server.get("/readyz")
        #expect(ready.status == 200 && ready.object["status"] as? String == "ready")
        _ = try await server.get("/v1/methods")
        let metrics = try await server.get("/metrics")
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        for name in ["mimserve_jobs{state=\"queued\"}", "mimserve_queue_depth", "mimserve_training_steps_per_second",
                     "mimserve_http_request_duration_seconds_bucket"] {
            #expect(metrics.text.contains(name), "missing \(name)")
        }
        let methods = try await server.get("/v1/methods").object
        let names = (methods["methods"] as! [[String: Any]]).map { $0["name"] as! String }
        #expect(names.contains("mae") && names.contains("simmim"))
        let overrides = ((methods["schema"] as? [String: Any])?["properties"] as? [String: Any])?["overrides"] as? [String: Any]
        let fields = (overrides?["properties"] as? [String: Any] ?? [:]).keys
        #expect(fields.contains("mask_ratio") && fields.contains("base_lr") && fields.contains("clip_grad"))
        // What this machine runs: the precisions a job may ask for, and the CPU facts behind them.
        let system = try await server.get("/v1/system").object
        #expect(system["precisions"] as? [String] == Precision.supported.map(\.rawValue))
        let machine = system["machine"] as? [String: Any] ?? [:]
        #expect((machine["cores"] as? Int ?? 0) >= 1 && (machine["memory_bytes"] as? Int ?? 0) > 0)
        #expect(((machine["cpu_features"] as? [String]) ?? []).contains("avx512_bf16") == Precision.supported.contains(.bf16)
                || ((machine["cpu_features"] as? [String]) ?? []).contains("amx_bf16"))
        // The sample photos, each served where the list says, with its size and licence.
        let samples = try await server.get("/v1/samples").object["samples"] as? [[String: Any]] ?? []
        #expect(samples.count == 8)
        for s in samples {
            let file = try await server.get(s["url"] as? String ?? "")
            #expect(file.status == 200 && file.body.count == s["bytes"] as? Int && s["width"] as? Int == 224, "\(s)")
            #expect(!(s["licence"] as? String ?? "").isEmpty)
        }
        let datasets = try await server.get("/v1/datasets").object["datasets"] as! [[String: Any]]
        #expect(datasets.contains { $0["id"] as? String == "synthetic" })
        #expect(try await server.get("/v1/datasets/synthetic").status == 200)
        #expect(try await server.get("/v1/datasets/nope").status == 404)
        // A registered image folder.
        let folder = server.dataDir.appendingPathComponent("datasets/shapes/red")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try samplePNG().write(to: folder.appendingPathComponent("a.png"))
        let registered = try await server.request("POST", "/v1/datasets", json: ["id": "shapes"])
        #expect(registered.status == 201 && registered.object["count"] as? Int == 1, "\(registered.text)")
        #expect(try await server.request("POST", "/v1/datasets", json: ["id": "missing"]).errorFields == ["id"])
    }

    @Test func aTokenGuardsChanges() async throws {
        let server = try await LiveServer.start { $0.token = "s3cret-token" }
        defer { Task { await server.stop() } }
        let body = ["method": "mae", "preset": "tiny", "total_steps": 2] as [String: Any]
        let none = try await server.request("POST", "/v1/jobs", json: body, auth: false)
        #expect(none.status == 401 && none.isProblem && none.headers["www-authenticate"] == "Bearer")
        let wrong = try await server.request("POST", "/v1/jobs", json: body, headers: ["Authorization": "Bearer nope"], auth: false)
        #expect(wrong.status == 401)
        #expect(try await server.request("POST", "/v1/jobs", json: body).status == 201)
        #expect(try await server.get("/v1/jobs").status == 200)
        #expect(BearerAuthMiddleware<BasicRequestContext>.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!BearerAuthMiddleware<BasicRequestContext>.constantTimeEqual(Array("abc".utf8), Array("abd".utf8)))
        #expect(!BearerAuthMiddleware<BasicRequestContext>.constantTimeEqual(Array("abc".utf8), Array("abcd".utf8)))
    }

    @Test func startupRefusesUnsafeConfigurations() {
        var c = ServerConfiguration()
        c.host = "0.0.0.0"
        #expect(c.problems().contains { $0.hasPrefix("token:") })
        c.token = "long-enough-token"
        #expect(c.problems().isEmpty)
        c.port = 70000
        #expect(c.problems().contains { $0.hasPrefix("port:") })
        c.port = 0
        c.inferenceQueue = -1
        c.inferenceBatch = 0
        #expect(c.problems() == ["inference-queue: must be in 0…256, got -1", "inference-batch: must be in 1…64, got 0"])
    }
}

@Suite("SSE keep-alive") struct HeartbeatTests {
    /// A paused job's stream stays open with keep-alive comments (and its state first).
    @Test func anIdleStreamSendsHeartbeats() async throws {
        let server = try await LiveServer.start { $0.sseHeartbeatSeconds = 0.1 }
        defer { Task { await server.stop() } }
        let id = try await server.submit(steps: 1_000_000, overrides: ["checkpoint_every": 1_000_000])
        _ = try await server.waitFor(id, states: ["running"])
        #expect(try await server.request("POST", "/v1/jobs/\(id)/pause").status == 200)
        _ = try await server.waitFor(id, states: ["paused"])
        // Read on a thread of its own: a blocking read on the cooperative pool would starve the
        // server's own tasks (the heartbeats among them) when other suites keep the pool busy.
        let port = server.base.port!, path = "/v1/jobs/\(id)/events"
        let text = try await offThread {
            let socket = try RawSocket(port: port)
            socket.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\r\n")
            let deadline = Date().addingTimeInterval(60)
            while socket.text.components(separatedBy: ": keep-alive").count < 3 && Date() < deadline && !socket.pump() {}
            return socket.text
        }
        #expect(text.contains("text/event-stream"))
        #expect(text.contains("event: state") && text.contains("\"paused\""))
        #expect(text.components(separatedBy: ": keep-alive").count >= 3, "\(text)")
        _ = try await server.request("POST", "/v1/jobs/\(id)/cancel")
    }
}

@Suite("Inference limits") struct InferenceLimitTests {
    /// With one slot and room for one waiting request, a request that finds the slot held and
    /// the queue full is refused at once with 503, and so is an export (which never queues);
    /// the waiting request runs when the slot frees. The slot is held on a gate the test opens
    /// and the queue is read from /metrics, so no timing decides anything.
    @Test func aFullQueueAnswers503WithRetryAfter() async throws {
        let admitted = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let server = try await LiveServer.start {
            $0.inferenceSlots = 1
            $0.inferenceQueue = 1
            $0.inferenceAdmitted = { admitted.signal(); release.wait() }
        }
        defer { Task { await server.stop() } }
        let id = try await server.submit(steps: 2)
        _ = try await server.waitFor(id, states: ["succeeded"])
        let body = try JSONSerialization.data(withJSONObject: ["images": [samplePNG(width: 64, height: 64).base64EncodedString()]])
        let json = ["Content-Type": "application/json"], png = ["Content-Type": "image/png"]
        func gauge(_ name: String) async throws -> Double? {
            let line = try await server.get("/metrics").text.split(separator: "\n").first { $0.hasPrefix("mimserve_\(name) ") }
            return line.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        func slotHeld() async {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async { admitted.wait(); c.resume() }
            }
        }
        async let first = server.request("POST", "/v1/jobs/\(id)/features", body: body, headers: json)
        await slotHeld()
        // A reconstruction cannot join a features pass: it waits, and fills the queue.
        async let waiting = server.request("POST", "/v1/jobs/\(id)/reconstruct?seed=1", body: samplePNG(), headers: png)
        while try await gauge("inference_waiting") != 1 { try await Task.sleep(for: .milliseconds(5)) }
        let refused = try await server.request("POST", "/v1/jobs/\(id)/reconstruct?seed=2", body: samplePNG(), headers: png)
        #expect(refused.status == 503 && refused.isProblem && refused.headers["retry-after"] == "2", "\(refused.status)")
        let export = try await server.get("/v1/jobs/\(id)/checkpoints/2/export?format=hf")
        #expect(export.status == 503 && export.isProblem, "\(export.status)")
        release.signal()
        #expect(try await first.status == 200)
        await slotHeld()  // the waiting request's pass, on the slot the first one left
        release.signal()
        #expect(try await waiting.status == 200)
        let (batches, served, left) = (try await gauge("inference_batches"), try await gauge("inference_batched_requests"),
                                       try await gauge("inference_waiting"))
        #expect(batches == 2 && served == 2 && left == 0)
        // The slot is free again: an export gets it (and passes the gate at once).
        release.signal()
        #expect(try await server.get("/v1/jobs/\(id)/checkpoints/2/export?format=hf").status == 200)
        admitted.wait()
        let system = try await server.get("/v1/system").object
        #expect(system["inference_slots"] as? Int == 1 && system["inference_queue"] as? Int == 1 && system["inference_batch"] as? Int == 8)
    }
}

@Suite("Warm starts over HTTP") struct WarmStartHTTPTests {
    /// `init` names another job (its newest checkpoint unless a step is given): the stored
    /// configuration names the step it resolved to, and the job trains. What cannot be a warm
    /// start gets a 422 naming the field, and no job is created.
    @Test func aJobStartsFromAnotherJobsCheckpointOrIsRefusedNamingInit() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let source = try await server.submit(steps: 8, overrides: ["checkpoint_every": 4])
        _ = try await server.waitFor(source, states: ["succeeded"])
        let body: [String: Any] = ["method": "mae", "preset": "tiny", "total_steps": 4, "batch_size": 8, "init": ["job": source]]
        let created = try await server.request("POST", "/v1/jobs", json: body)
        #expect(created.status == 201, "\(created.text)")
        let config = created.object["config"] as? [String: Any]
        let initFrom = config?["init"] as? [String: Any]
        #expect(initFrom?["job"] as? String == source && initFrom?["step"] as? Int == 8, "\(String(describing: initFrom))")
        let id = try #require(created.object["id"] as? String)
        let done = try await server.waitFor(id, states: ["succeeded", "failed"])
        #expect(done["state"] as? String == "succeeded", "\(done)")

        let before = (try await server.get("/v1/jobs").object["jobs"] as? [Any])?.count
        let refused: [(String, [String: Any])] = [
            ("init.job", ["method": "mae", "preset": "tiny", "init": ["job": "j0000000000000000"]]),
            ("init.step", ["method": "mae", "preset": "tiny", "init": ["job": source, "step": 5]]),
            ("init", ["method": "simmim", "preset": "tiny", "init": ["job": source]]),
            ("init", ["method": "mae", "preset": "tiny", "overrides": ["embed_dim": 32], "init": ["job": source]]),
            ("init", ["method": "mae", "preset": "tiny", "init": ["job": source, "weights": "w1"]]),
            ("init.jobs", ["method": "mae", "preset": "tiny", "init": ["jobs": source]]),
            ("init", ["method": "mae", "preset": "tiny", "init": 5]),
        ]
        for (field, request) in refused {
            let r = try await server.request("POST", "/v1/jobs", json: request)
            #expect(r.status == 422 && r.isProblem && r.errorFields == [field], "\(field): \(r.status) \(r.text)")
        }
        // A setting that changes no weight's shape is fine.
        let masked = try await server.request("POST", "/v1/jobs", json: ["method": "mae", "preset": "tiny", "total_steps": 2, "batch_size": 8,
                                                                         "overrides": ["mask_ratio": 0.5], "init": ["job": source, "step": 4]])
        #expect(masked.status == 201, "\(masked.text)")
        #expect((try await server.get("/v1/jobs").object["jobs"] as? [Any])?.count == (before ?? 0) + 1)
    }
}
