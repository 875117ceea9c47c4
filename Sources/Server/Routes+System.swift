import Config
import Foundation
import Hummingbird
import ImageData
import Models
import Prometheus
import Store
import Trainer

extension APIRoutes {
    mutating func addSystemRoutes() {
        let core = self.core
        on(.get, "/healthz") { _, _ in try JSON.response(["status": "ok"]) }

        on(.get, "/readyz") { _, _ in
            let (writable, applied) = try await core.blocking { (core.store.probeWrite(), (try? core.store.appliedMigrations()) ?? []) }
            let migrated = applied == core.store.migrations.files.map(\.name)
            let alive = core.pool.aliveSlots == core.configuration.trainerSlots
            let checks: [String: Bool] = ["database_writable": writable, "migrations_applied": migrated, "trainer_pool_running": alive]
            let ready = checks.values.allSatisfy { $0 }
            struct Body: Encodable { let status: String; let checks: [String: Bool]; let migrations: [String] }
            return try JSON.response(Body(status: ready ? "ready" : "not ready", checks: checks, migrations: applied),
                                     status: ready ? .ok : .serviceUnavailable)
        }

        on(.get, "/metrics") { _, _ in
            let running = core.pool.runningJobs
            let (counts, runningJobs) = try await core.blocking { () -> ([JobState: Int], [JobRecord]) in
                ((try? core.store.countsByState()) ?? [:], running.compactMap { try? core.store.job($0) })
            }
            let r = core.prometheus
            for state in JobState.allCases {
                Self.gauge(r, "jobs", "Jobs by state", [("state", state.rawValue)]).set(Double(counts[state] ?? 0))
            }
            Self.gauge(r, "queue_depth", "Jobs waiting for a trainer slot").set(Double(counts[.queued] ?? 0))
            let elapsed = Date().timeIntervalSince(core.startedAt)
            Self.gauge(r, "training_steps_per_second", "Training steps per second since start (all slots)")
                .set(elapsed > 0 ? Double(core.pool.stepsDone) / elapsed : 0)
            Self.gauge(r, "training_steps_completed", "Training steps completed since start").set(Double(core.pool.stepsDone))
            Self.gauge(r, "trainer_slots_alive", "Trainer threads running").set(Double(core.pool.aliveSlots))
            Self.gauge(r, "inference_in_flight", "Inference requests running").set(Double(core.inference.inFlight))
            for job in runningJobs {
                if let loss = job.loss {
                    Self.gauge(r, "job_last_loss", "Last logged loss of a running job", [("job", job.id), ("method", job.method)])
                        .set(loss)
                }
            }
            Self.gauge(r, "http_connections_open", "Open HTTP connections").set(Double(core.limits.openConnections))
            Self.gauge(r, "http_connections_refused", "Connections refused since start (--max-connections)")
                .set(Double(core.limits.refusedConnections))
            Self.gauge(r, "http_connections_timed_out", "Connections closed by a header, body or idle timeout since start")
                .set(Double(core.limits.timedOutConnections))
            Self.gauge(r, "event_streams_open", "Open event streams").set(Double(core.streams.openCount))
            var bytes: [UInt8] = []
            r.emit(into: &bytes)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }

        on(.get, "/openapi.json") { _, _ in
            let data = try await core.blocking { core.publicDir.flatMap { FileManager.default.contents(atPath: "\($0)/openapi.json") } }
            guard let data else {
                throw APIError.notFound("openapi.json (Public/ is not configured)")
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }

        on(.get, "/v1/methods") { _, _ in try JSON.response(MethodsDocument.make()) }

        on(.get, "/v1/datasets") { _, _ in
            try JSON.response(["datasets": try await core.blocking { core.datasets.list() }])
        }

        on(.get, "/v1/datasets/{id}") { _, context in
            let id = try context.id()
            do { return try JSON.response(try await core.blocking { try core.datasets.open(id).info }) } catch { throw Self.datasetError(error, core: core) }
        }

        // Registers (or rescans) an image folder placed under <data-dir>/datasets/<id>.
        on(.post, "/v1/datasets") { request, _ in
            struct Body: Decodable { let id: String }
            let body = try decodeJSON(Body.self, from: try await request.jsonBytes(limit: 64 << 10))
            do { try DatasetRegistry.validate(id: body.id) } catch { throw APIError.invalid("id", "\(error)") }
            guard !DatasetRegistry.builtInIDs.contains(body.id) else { throw APIError.invalid("id", "'\(body.id)' is a built-in dataset") }
            let folder = try core.datasets.folderPath(for: body.id)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
                throw APIError.invalid("id", "no folder \(folder); copy images there (class sub-folders give labels) and register again")
            }
            core.datasets.forget(body.id)
            let info: DatasetInfo
            do { info = try await core.blocking { try core.datasets.open(body.id).info } } catch { throw Self.datasetError(error, core: core) }
            let classes = info.classes.isEmpty ? nil : String(decoding: try JSONEncoder().encode(info.classes), as: UTF8.self)
            try await core.blocking { try core.store.upsert(dataset: DatasetRecord(id: info.id, kind: info.kind.rawValue, name: info.name, path: "datasets/\(info.id)",
                                                         imageCount: info.count, classesJSON: classes, imageSize: info.imageWidth,
                                                         licence: info.licence)) }
            return try JSON.response(info, status: .created)
        }
    }

    /// A gauge `mimserve_<name>` (created once, then found by name and labels).
    static func gauge(_ r: PrometheusCollectorRegistry, _ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
        r.makeGauge(descriptor: MetricNameDescriptor(namespace: "mimserve", metricName: name, unitName: "", helpText: help), labels: labels)
    }

    static func datasetError(_ error: any Error, core: ServerCore) -> APIError {
        let text = core.withoutServerPaths("\(error)")
        if case DatasetError.unknownDataset = error { return APIError(.notFound, "Not found", text) }
        return APIError(.unprocessableContent, "Unusable dataset", text, fields: [FieldError("dataset", text)])
    }
}

/// `GET /v1/methods`: what can be trained, with every preset and overridable field.
struct MethodsDocument: Encodable {
    struct PresetEntry: Encodable {
        let name: String
        let summary: String
        let tiny: Bool
        let `default`: Bool
        let model: ModelConfig
        let training: TrainingConfig
        /// What training this preset at its default batch costs (memory, FLOPs, checkpoint size).
        let estimate: CostEstimate
    }
    struct MethodEntry: Encodable {
        let name: String
        let summary: String
        let presets: [PresetEntry]
    }
    struct Field: Encodable {
        let name: String
        let group: String
        let type: String
        let help: String
    }
    let methods: [MethodEntry]
    let fields: [Field]

    static func make() -> MethodsDocument {
        let methods = Method.allCases.map { m in
            MethodEntry(name: m.rawValue, summary: summaries[m.rawValue] ?? m.rawValue, presets: Presets.forMethod(m).compactMap { p in
                guard let resolved = try? JobConfig.resolve(JobRequest(method: m.rawValue, preset: p.name)) else { return nil }
                return PresetEntry(name: p.name, summary: p.summary, tiny: p.isTiny, default: p.isDefault, model: p.model,
                                   training: resolved.training, estimate: p.model.estimate(batch: resolved.training.batchSize))
            })
        }
        let sample = try? JobConfig.resolve(JobRequest(method: "mae", preset: "tiny"))
        var fields: [Field] = []
        for (group, object) in [("model", sample.map { JSONValue.object(of: $0.model) } ?? [:]),
                                ("training", sample.map { JSONValue.object(of: $0.training) } ?? [:])] {
            for (name, value) in object.sorted(by: { $0.key < $1.key }) where name != "method" {
                fields.append(Field(name: name, group: group, type: types[name] ?? value.typeName, help: help[name] ?? ""))
            }
        }
        if !fields.contains(where: { $0.name == "clip_grad" }) {
            fields.append(Field(name: "clip_grad", group: "training", type: "number", help: help["clip_grad"]!))
        }
        return MethodsDocument(methods: methods, fields: fields)
    }

    static let summaries = [
        "mae": "MAE: ViT encoder on visible patches only, light decoder, norm-pixel MSE on masked patches",
        "simmim": "SimMIM: Swin encoder over all tokens with a learned mask token, 1×1 head, L1 on masked pixels",
        "ummae": "UM-MAE: uniform masking (one kept unit per 2×2) + secondary masking; compact visible input for Swin",
        "greenmim": "GreenMIM: Swin over visible tokens only with group window attention and optimal grouping",
        "mixmae": "MixMAE: two images mixed by a mask, large-window Swin, dual reconstruction",
        "convmae": "ConvMAE: masked convolution stages + ViT over visible tokens, block-wise masking, multi-scale fusion",
    ]

    /// JSON types by field (a sample value cannot tell 0 the number from 0 the integer).
    static let types: [String: String] = {
        var t: [String: String] = [:]
        for f in ["image_size", "patch_size", "embed_dim", "window_size", "mlp_ratio", "mask_unit", "decoder_dim", "decoder_depth",
                  "decoder_heads", "total_steps", "batch_size", "seed", "warmup_steps", "checkpoint_every", "keep_checkpoints",
                  "data_workers", "pos_mlp_dim", "group_size_max"] { t[f] = "integer" }
        for f in ["layer_norm_eps", "mask_ratio", "base_lr", "min_lr", "weight_decay", "beta1", "beta2", "clip_grad",
                  "crop_scale_min", "secondary_mask_ratio"] { t[f] = "number" }
        for f in ["norm_pix_loss", "hflip"] { t[f] = "boolean" }
        for f in ["depths", "heads", "stage_widths"] { t[f] = "array" }
        return t
    }()

    static let help: [String: String] = [
        "image_size": "Input side in pixels", "patch_size": "Patch side in pixels", "embed_dim": "Encoder width (first stage for Swin)",
        "depths": "Blocks per stage", "heads": "Attention heads per stage", "window_size": "Swin window side in tokens",
        "mlp_ratio": "MLP hidden width ÷ width", "layer_norm_eps": "LayerNorm epsilon", "mask_ratio": "Share of masked units, in (0, 1)",
        "mask_unit": "Masking granularity in pixels", "decoder_dim": "Decoder width", "decoder_depth": "Decoder blocks",
        "decoder_heads": "Decoder attention heads", "norm_pix_loss": "Normalise each target patch by its mean and std",
        "total_steps": "Training steps", "batch_size": "Images per step", "seed": "Seed for init, data order, augmentation and masks",
        "base_lr": "Peak learning rate after warm-up", "min_lr": "Final learning rate of the cosine schedule",
        "warmup_steps": "Linear warm-up steps", "weight_decay": "AdamW decoupled weight decay", "beta1": "AdamW β1",
        "beta2": "AdamW β2", "clip_grad": "Global gradient-norm clip (null: none)",
        "crop_scale_min": "RandomResizedCrop smallest area share", "hflip": "Random horizontal flips",
        "checkpoint_every": "Steps between checkpoints", "keep_checkpoints": "Periodic checkpoints kept (plus the final)",
        "data_workers": "Image decoding threads",
        "secondary_mask_ratio": "UM-MAE: share of kept units hidden again by the mask token",
        "pos_mlp_dim": "UM-MAE: hidden width of the relative-position MLP",
        "decoder_positions": "UM-MAE: true (the units' real positions) or reference (the papers' code ordering)",
        "grouping": "GreenMIM: search (cost-optimal group size) or fixed (the reference code)",
        "group_size_max": "GreenMIM: largest group of visible tokens per attention call",
        "stage_widths": "ConvMAE: width of each stage",
    ]
}

extension JSONValue {
    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}
