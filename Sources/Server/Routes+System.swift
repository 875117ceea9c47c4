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
        addProbeRoutes()
        on(.get, "/openapi.json") { _, _ in
            let data = try await core.blocking { core.publicDir.flatMap { FileManager.default.contents(atPath: "\($0)/openapi.json") } }
            guard let data else {
                throw APIError.notFound("openapi.json (Public/ is not configured)")
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }

        on(.get, "/v1/methods") { _, _ in try JSON.response(MethodsDocument.make()) }
        on(.get, "/v1/system") { _, _ in
            try JSON.response(SystemDocument(machine: try await core.blocking { MachineInfo.current }, configuration: core.configuration))
        }
        // Imported weights a job may start from (`init: {"weights": id}`): the files `mimserve import-hf`
        // wrote into the checkpoint directory's weights/ folder.
        on(.get, "/v1/weights") { _, _ in
            struct Entry: Encodable {
                let id: String
                let method: String?
                let bytes: Int64
                let model: ModelConfig?
                let finetuned: Bool
                let error: String?

                // Explicit so that nil values appear as null.
                func encode(to encoder: any Encoder) throws {
                    enum K: String, CodingKey { case id, method, bytes, model, finetuned, error }
                    var c = encoder.container(keyedBy: K.self)
                    try c.encode(id, forKey: .id); try c.encode(method, forKey: .method); try c.encode(bytes, forKey: .bytes)
                    try c.encode(model, forKey: .model); try c.encode(finetuned, forKey: .finetuned); try c.encode(error, forKey: .error)
                }
            }
            let entries = try await core.blocking { () -> [Entry] in
                let folder = core.pool.options.checkpoints
                return folder.importedWeightIDs().compactMap { id -> Entry? in
                    guard let url = folder.importedWeights(id) else { return nil }
                    let bytes = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int64) ?? 0
                    do {
                        let d = try WeightsFile.readDescription(path: url.path)
                        return Entry(id: id, method: d.model.method.rawValue, bytes: bytes, model: d.model, finetuned: d.finetune != nil, error: nil)
                    } catch {
                        return Entry(id: id, method: nil, bytes: bytes, model: nil, finetuned: false, error: core.withoutServerPaths("\(error)"))
                    }
                }
            }
            return try JSON.response(["weights": entries])
        }

        on(.get, "/v1/samples") { _, _ in
            try JSON.response(["samples": try await core.blocking { try SampleEntry.list(publicDir: core.publicDir) }])
        }

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

/// `GET /v1/methods`: what can be trained, with every preset, and the JSON Schema of a job
/// request (`JobSchema`) from which clients build their forms.
struct MethodsDocument: Encodable {
    struct PresetEntry: Encodable {
        let name: String
        let summary: String
        let tiny: Bool
        let small: Bool
        let `default`: Bool
        let model: ModelConfig
        let training: TrainingConfig
        let recipe: Recipe
        /// What training this preset at its default batch costs (memory, FLOPs, checkpoint size).
        let estimate: CostEstimate
    }
    struct MethodEntry: Encodable {
        let name: String
        let summary: String
        /// `pool` values of `POST /v1/jobs/{id}/features`.
        let pools: [Pooling]
        /// The ratio reconstruction always masks, when the method fixes it.
        let fixedMaskRatio: Float?
        let presets: [PresetEntry]

        enum CodingKeys: String, CodingKey { case name, summary, pools, presets, fixedMaskRatio = "fixed_mask_ratio" }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(summary, forKey: .summary)
            try c.encode(pools, forKey: .pools)
            try c.encode(fixedMaskRatio, forKey: .fixedMaskRatio)
            try c.encode(presets, forKey: .presets)
        }
    }
    let methods: [MethodEntry]
    let schema: JSONValue

    static func make() -> MethodsDocument {
        let methods = Method.allCases.map { m in
            MethodEntry(name: m.rawValue, summary: m.summary, pools: m.pools, fixedMaskRatio: m.fixedMaskRatio,
                        presets: Presets.forMethod(m).compactMap { p in
                guard let resolved = try? JobConfig.resolve(JobRequest(method: m.rawValue, preset: p.name)) else { return nil }
                return PresetEntry(name: p.name, summary: p.summary, tiny: p.isTiny, small: p.isSmall, default: p.isDefault, model: p.model,
                                   training: resolved.training, recipe: p.recipe,
                                   estimate: p.model.estimate(batch: resolved.training.batchSize, step: resolved.training.stepMemory))
            })
        }
        return MethodsDocument(methods: methods, schema: JobSchema.jsonSchema())
    }
}

/// `GET /v1/samples`: the photos shipped in `Public/samples`, with their size and licence (from
/// `samples.json`, which `Tools/samples/make_samples.py` writes beside them). The dashboard's
/// reconstruction panel offers these.
struct SampleEntry: Encodable {
    let name: String
    let url: String
    let bytes: Int
    let width: Int
    let height: Int
    let subject: String
    let source: String
    let licence: String

    struct Manifest: Decodable {
        struct Item: Decodable { let file: String, subject: String, source: String, licence: String }
        let samples: [Item]
    }

    /// Listed files that are missing or unreadable are left out (and logged by nobody: the
    /// folder is ours, and a test reads every entry).
    static func list(publicDir: String?) throws -> [SampleEntry] {
        guard let publicDir else { return [] }
        let dir = URL(fileURLWithPath: publicDir).appendingPathComponent("samples")
        guard let data = FileManager.default.contents(atPath: dir.appendingPathComponent("samples.json").path) else { return [] }
        let manifest = try JSONDecoder().decode(Manifest.self, from: data)
        return manifest.samples.compactMap { item in
            guard !item.file.contains("/"), let bytes = FileManager.default.contents(atPath: dir.appendingPathComponent(item.file).path),
                  let header = try? ImageCodec.probe([UInt8](bytes)) else { return nil }
            return SampleEntry(name: item.file, url: "samples/\(item.file)", bytes: bytes.count, width: header.width, height: header.height,
                               subject: item.subject, source: item.source, licence: item.licence)
        }
    }
}

/// What this machine is and runs (`GET /v1/system`): the facts a user needs to choose
/// `precision`, `batch_size` and the trainer slots.
struct MachineInfo: Encodable, Sendable {
    let cpuModel: String
    let cores: Int
    /// The vector and matrix extensions that matter to our kernels, as /proc/cpuinfo names them.
    let cpuFeatures: [String]
    let memoryBytes: UInt64

    static let relevantFeatures = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"]

    /// Read once: the CPU does not change under a running process.
    static let current: MachineInfo = {
        let text = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        func field(_ name: String) -> String? {
            text.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { $0.split(separator: ":", maxSplits: 1).last }
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let flags = Set((field("flags") ?? "").split(separator: " ").map(String.init))
        return MachineInfo(cpuModel: field("model name") ?? "unknown", cores: ProcessInfo.processInfo.activeProcessorCount,
                           cpuFeatures: relevantFeatures.filter(flags.contains), memoryBytes: ProcessInfo.processInfo.physicalMemory)
    }()

    enum CodingKeys: String, CodingKey {
        case cores, cpuModel = "cpu_model", cpuFeatures = "cpu_features", memoryBytes = "memory_bytes"
    }
}

struct SystemDocument: Encodable {
    let machine: MachineInfo
    /// `precision` values a job may ask for here.
    let precisions: [Precision]
    let trainerSlots: Int
    let inferenceSlots: Int
    let inferenceQueue: Int
    let inferenceBatch: Int
    /// The default and current limit on a job's estimated peak memory.
    let maxJobMemoryBytes: Int

    init(machine: MachineInfo, configuration c: ServerConfiguration) {
        self.machine = machine
        precisions = Precision.supported
        trainerSlots = c.trainerSlots
        inferenceSlots = c.inferenceSlots
        inferenceQueue = c.inferenceQueue
        inferenceBatch = c.inferenceBatch
        maxJobMemoryBytes = c.jobMemoryLimit
    }

    enum CodingKeys: String, CodingKey {
        case machine, precisions, trainerSlots = "trainer_slots", inferenceSlots = "inference_slots", inferenceQueue = "inference_queue",
             inferenceBatch = "inference_batch", maxJobMemoryBytes = "max_job_memory_bytes"
    }
}
