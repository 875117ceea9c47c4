import Config
import Foundation
import Hummingbird
import Models
import Store
import Trainer

/// JSON encoding shared by every response: ISO-8601 dates, stable key order.
enum JSON {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.dateEncodingStrategy = .iso8601
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return e
    }()

    static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

/// A job as the API shows it.
struct JobResource: Encodable {
    let id: String
    let state: JobState
    let method: String
    let preset: String
    let dataset: String
    /// pretrain or finetune.
    let task: JobTask
    /// The resolved configuration (without `request`, which is shown on its own).
    let config: JobConfig?
    /// The request as submitted; nil for jobs submitted before requests were kept.
    let request: JobRequest?
    /// The cost model's estimate for this job's configuration and batch.
    let estimate: CostEstimate?
    let step: Int
    let totalSteps: Int
    let loss: Double?
    let lr: Double?
    let imagesPerS: Double?
    let etaS: Double?
    let peakRSSMB: Double?
    let error: String?
    /// What a client may do to the job in its state.
    let actions: [JobAction]
    let createdAt: Date
    let startedAt: Date?
    let finishedAt: Date?
    let updatedAt: Date
    /// The node training it (host:pid) while it runs.
    let worker: String?
    /// Times a crash or a lost lease took it from its trainer (it resumed from its last checkpoint).
    let interruptions: Int

    init(_ j: JobRecord) {
        id = j.id; state = j.state; method = j.method; preset = j.preset; dataset = j.datasetID
        let stored = try? JobConfig.decode(j.configJSON)
        request = stored?.request
        config = stored.map { var c = $0; c.request = nil; return c }
        task = config?.jobTask ?? .pretrain
        estimate = config?.estimate
        step = j.step; totalSteps = j.totalSteps; loss = j.loss; lr = j.lr; imagesPerS = j.imagesPerS; etaS = j.etaS
        peakRSSMB = j.peakRSSMB; error = j.error; actions = j.state.actions
        createdAt = j.createdAt; startedAt = j.startedAt; finishedAt = j.finishedAt; updatedAt = j.updatedAt
        worker = j.state == .running ? j.worker : nil; interruptions = j.interruptions
    }

    enum CodingKeys: String, CodingKey {
        case id, state, method, preset, dataset, task, config, request, estimate, step, loss, lr, error, actions
        case totalSteps = "total_steps", imagesPerS = "images_per_s", etaS = "eta_s", peakRSSMB = "peak_rss_mb"
        case createdAt = "created_at", startedAt = "started_at", finishedAt = "finished_at", updatedAt = "updated_at"
        case worker, interruptions
    }

    // Explicit so that nil values appear as null (clients see every field, always).
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(state, forKey: .state); try c.encode(method, forKey: .method)
        try c.encode(preset, forKey: .preset); try c.encode(dataset, forKey: .dataset); try c.encode(task, forKey: .task)
        try c.encode(config, forKey: .config)
        try c.encode(request, forKey: .request)
        try c.encode(estimate, forKey: .estimate)
        try c.encode(step, forKey: .step); try c.encode(totalSteps, forKey: .totalSteps); try c.encode(loss, forKey: .loss)
        try c.encode(lr, forKey: .lr); try c.encode(imagesPerS, forKey: .imagesPerS); try c.encode(etaS, forKey: .etaS)
        try c.encode(peakRSSMB, forKey: .peakRSSMB); try c.encode(error, forKey: .error); try c.encode(actions, forKey: .actions)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(startedAt, forKey: .startedAt); try c.encode(finishedAt, forKey: .finishedAt); try c.encode(updatedAt, forKey: .updatedAt)
        try c.encode(worker, forKey: .worker); try c.encode(interruptions, forKey: .interruptions)
    }
}

struct MetricResource: Encodable {
    let step: Int
    let loss: Double
    let lr: Double
    let imagesPerS: Double?
    let wallTimeS: Double

    init(_ m: MetricRecord) { step = m.step; loss = m.loss; lr = m.lr; imagesPerS = m.imagesPerS; wallTimeS = m.wallTimeS }

    enum CodingKeys: String, CodingKey {
        case step, loss, lr
        case imagesPerS = "images_per_s", wallTimeS = "wall_time_s"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(step, forKey: .step); try c.encode(loss, forKey: .loss); try c.encode(lr, forKey: .lr)
        try c.encode(imagesPerS, forKey: .imagesPerS); try c.encode(wallTimeS, forKey: .wallTimeS)
    }
}

extension MetricResource {
    /// `{"job_id": …, "metrics": [...]}` written directly: the same JSON as `JSON.encoder` makes
    /// (sorted keys, null for a missing rate, non-finite numbers as strings), at a fraction of
    /// its cost — Foundation's encoder was a third of the time of a 200-point history request.
    /// The history as CSV, one row per logged step (an empty cell for an unknown throughput).
    static func csv(_ rows: [MetricRecord]) -> ByteBuffer {
        var csv = "step,loss,lr,images_per_s,wall_time_s\n"
        for m in rows { csv += "\(m.step),\(m.loss),\(m.lr),\(m.imagesPerS.map { String($0) } ?? ""),\(m.wallTimeS)\n" }
        return ByteBuffer(string: csv)
    }

    static func list(jobID: String, _ rows: [MetricRecord]) -> ByteBuffer {
        func number(_ v: Double?) -> String {
            guard let v else { return "null" }
            if v.isNaN { return "\"NaN\"" }
            if v.isInfinite { return v > 0 ? "\"Infinity\"" : "\"-Infinity\"" }
            return v.description
        }
        let id = (try? JSON.encoder.encode(jobID)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
        var s = "{\"job_id\":\(id),\"metrics\":["
        s.reserveCapacity(32 + rows.count * 110)
        for (i, m) in rows.enumerated() {
            if i > 0 { s += "," }
            s += "{\"images_per_s\":\(number(m.imagesPerS)),\"loss\":\(number(m.loss)),\"lr\":\(number(m.lr)),"
            s += "\"step\":\(m.step),\"wall_time_s\":\(number(m.wallTimeS))}"
        }
        s += "]}"
        return ByteBuffer(string: s)
    }
}

struct CheckpointResource: Encodable {
    let step: Int
    let bytes: Int64
    let sha256: String
    let final: Bool
    let createdAt: Date
    let url: String

    init(_ c: CheckpointRecord) {
        step = c.step; bytes = c.bytes; sha256 = c.sha256; final = c.isFinal; createdAt = c.createdAt
        url = "/v1/jobs/\(c.jobID)/checkpoints/\(c.step)"
    }

    enum CodingKeys: String, CodingKey {
        case step, bytes, sha256, final, url
        case createdAt = "created_at"
    }
}

struct EvaluationResource: Encodable {
    let id: Int64
    let dataset: String
    let step: Int
    let createdAt: Date
    let result: JSONValue

    init(_ e: EvaluationRecord) {
        id = e.id ?? 0; dataset = e.datasetID; step = e.step; createdAt = e.createdAt
        result = (try? JSONDecoder().decode(JSONValue.self, from: Data(e.resultJSON.utf8))) ?? .null
    }

    enum CodingKeys: String, CodingKey {
        case id, dataset, step, result
        case createdAt = "created_at"
    }
}
