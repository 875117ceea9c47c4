import Config
import Foundation
import Hummingbird
import Models
import Store
import Trainer

extension APIRoutes {
    mutating func addJobRoutes() {
        let core = self.core

        on(.post, "/v1/jobs") { request, _ in
            let bytes = try await request.jsonBytes(limit: core.configuration.maxJobBodyBytes)
            let body = try decodeJSON(JobRequest.self, from: bytes)
            // The checkpoint a warm start names, looked up before validation (which does not block).
            var initCheckpoint: Result<InitCheckpoint, FieldError>?
            if let ref = body.initFrom { initCheckpoint = try await core.blocking { try core.initCheckpoint(ref) } }
            let found = initCheckpoint
            var config = try JobConfig.resolve(body, datasetExists: core.datasetExists, datasetClasses: core.datasetClasses,
                                               precisions: Precision.supported,
                                               maxJobMemory: core.configuration.jobMemoryLimit,
                                               maxJobDisk: core.configuration.maxJobDisk,
                                               findCheckpoint: { _ in found! })
            config.request = body
            let key = request.headers[.init("Idempotency-Key")!]
            if let key, key.isEmpty || key.count > 255 {
                throw APIError.invalid("Idempotency-Key", "must be 1–255 characters")
            }
            let new = NewJob(
                method: config.method.rawValue, preset: config.preset, configJSON: config.json(), datasetID: config.dataset,
                totalSteps: config.training.totalSteps, idempotencyKey: key, requestHash: key == nil ? nil : Checksum.sha256Hex(bytes))
            let (job, created) = try await core.blocking { try core.store.submit(new, maxQueued: core.configuration.maxQueued) }
            if created { core.pool.notify() }
            return try JSON.response(JobResource(job), status: created ? .created : .ok,
                                     headers: [.location: "/v1/jobs/\(job.id)"])
        }

        on(.get, "/v1/jobs") { request, _ in
            var query = JobQuery(limit: try request.queryInt("limit", in: 1...500) ?? 50, pageToken: request.query("page_token"))
            if let states = request.query("state") {
                for s in states.split(separator: ",") {
                    guard let state = JobState(rawValue: String(s)) else {
                        throw APIError.invalid("state", "must be one of \(JobState.allCases.map(\.rawValue).joined(separator: ", ")), got '\(s)'")
                    }
                    query.states.insert(state)
                }
            }
            if let method = request.query("method") {
                guard Method(rawValue: method) != nil else {
                    throw APIError.invalid("method", "must be one of \(Method.allCases.map(\.rawValue).joined(separator: ", ")), got '\(method)'")
                }
                query.method = method
            }
            let q = query
            let page = try await core.blocking { try core.store.jobs(q) }
            struct Body: Encodable {
                let jobs: [JobResource]
                let nextPageToken: String?
                enum CodingKeys: String, CodingKey { case jobs, nextPageToken = "next_page_token" }
                func encode(to encoder: any Encoder) throws {
                    var c = encoder.container(keyedBy: CodingKeys.self)
                    try c.encode(jobs, forKey: .jobs)
                    try c.encode(nextPageToken, forKey: .nextPageToken)
                }
            }
            return try JSON.response(Body(jobs: page.jobs.map(JobResource.init), nextPageToken: page.nextPageToken))
        }

        on(.get, "/v1/jobs/{id}") { _, context in
            let id = try context.id()
            return try JSON.response(JobResource(try await core.blocking { try core.job(id) }))
        }

        on(.post, "/v1/jobs/{id}/cancel") { _, context in
            let id = try context.id()
            return try JSON.response(JobResource(try await core.blocking { try core.pool.cancel(id) }))
        }
        on(.post, "/v1/jobs/{id}/pause") { _, context in
            let id = try context.id()
            return try JSON.response(JobResource(try await core.blocking { try core.pool.pause(id) }))
        }
        on(.post, "/v1/jobs/{id}/resume") { _, context in
            let id = try context.id()
            return try JSON.response(JobResource(try await core.blocking { try core.pool.resume(id) }))
        }

        on(.delete, "/v1/jobs/{id}") { _, context in
            let id = try context.id()
            try await core.blocking { try core.pool.delete(id) }
            core.inference.forget(jobID: id)
            core.metricHistories.forget(jobID: id)
            // Its open event streams end with a final event.
            core.bus.publish(.deleted(jobID: id))
            core.bus.forget(jobID: id)
            return Response(status: .noContent)
        }

        on(.get, "/v1/jobs/{id}/metrics") { request, context in
            let id = try context.id()
            let after = try request.queryInt("after_step", in: 0...Int(Int32.max)) ?? 0
            let maxPoints = try request.queryInt("max_points", in: 1...1_000_000)
            let format = request.query("format") ?? "json"
            guard ["json", "csv"].contains(format) else { throw APIError.invalid("format", "must be json or csv, got '\(format)'") }
            let key = MetricHistoryCache.Key(jobID: id, afterStep: after, maxPoints: maxPoints, format: format)
            let (version, body) = try await core.blocking { () throws -> (String, ByteBuffer) in
                let version = MetricHistoryCache.version(of: try core.job(id))
                return (version, try core.metricHistories.body(key, version: version) {
                    let rows = try core.store.metrics(jobID: id, afterStep: after, maxPoints: maxPoints)
                    return format == "csv" ? MetricResource.csv(rows) : MetricResource.list(jobID: id, rows)
                })
            }
            // A client that holds this version (a chart polling an idle or finished job) gets a 304.
            let etag = "\"\(version)\""
            var headers: HTTPFields = [.eTag: etag, .cacheControl: "no-cache"]
            if let held = request.headers[.ifNoneMatch], held.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == etag }) {
                return Response(status: .notModified, headers: headers)
            }
            if format == "csv" {
                headers[.contentType] = "text/csv; charset=utf-8"
                headers[.contentDisposition] = "attachment; filename=\"\(id)-metrics.csv\""
            } else {
                headers[.contentType] = "application/json"
            }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
        }

        on(.get, "/v1/jobs/{id}/checkpoints") { _, context in
            let id = try context.id()
            let rows = try await core.blocking {
                _ = try core.job(id)
                return try core.store.checkpoints(jobID: id)
            }
            return try JSON.response(["checkpoints": rows.map(CheckpointResource.init)])
        }

        on(.get, "/v1/jobs/{id}/checkpoints/{step}") { _, context in
            let id = try context.id()
            let step = try context.step()
            let ck = try await core.blocking { try core.checkpoint(id, step: step) }
            let path = core.pool.options.checkpoints.url(ck.path).path
            guard let handle = FileHandle(forReadingAtPath: path) else { throw APIError.checkpointGone(step: step) }
            let file = SendableFile(handle)
            // Streamed in 1 MiB pieces, each read on the blocking pool: paper-scale checkpoints are over a gigabyte.
            let body = ResponseBody(contentLength: Int(ck.bytes)) { writer in
                defer { file.close() }
                while let chunk = try await core.blocking({ try file.read(1 << 20) }), !chunk.isEmpty {
                    try await writer.write(ByteBuffer(bytes: chunk))
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: [
                .contentType: "application/octet-stream",
                .contentDisposition: "attachment; filename=\"\(id)-step\(step).safetensors\"",
                .init("X-Checksum-SHA256")!: ck.sha256,
            ], body: body)
        }

        // The same files as `mimserve export-hf --format`, as one tar built in memory (the
        // export holds the model's weights once, without the optimizer state of the checkpoint).
        on(.get, "/v1/jobs/{id}/checkpoints/{step}/export") { request, context in
            let id = try context.id()
            let step = try context.step()
            guard let format = try request.queryEnum("format", ExportFormat.self) else {
                throw APIError.invalid("format", "is required: one of \(ExportFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            // Admitted like inference: each export holds a whole model in memory.
            let archive = try await core.inference.admitted { () -> Result<[UInt8], any Error> in Result { () throws -> [UInt8] in
                let ck = try core.checkpoint(id, step: step)
                guard let data = FileManager.default.contents(atPath: core.pool.options.checkpoints.url(ck.path).path) else {
                    throw APIError.checkpointGone(step: step)
                }
                let files: [ExportedFile]
                do { files = try WeightsFile.decode([UInt8](data)).exportFiles(format) } catch let ExportError.unsupported(method, _, reason) {
                    throw APIError.invalid("format", "a \(method.rawValue) model does not export to \(format.rawValue): \(reason)")
                }
                let folder = "\(id)-\(step)-\(format.rawValue)"
                var tar = TarArchive(mtime: Int(ck.createdAt.timeIntervalSince1970))
                for file in files { tar.add(name: "\(folder)/\(file.name)", contents: file.bytes) }
                return tar.finished()
            } }.get()
            return Response(status: .ok, headers: [
                .contentType: "application/x-tar",
                .contentDisposition: "attachment; filename=\"\(id)-\(step)-\(format.rawValue).tar\"",
            ], body: .init(byteBuffer: ByteBuffer(bytes: archive)))
        }
    }
}

/// A file read from one request's body writer, one chunk at a time, each on the blocking pool
/// (never two reads at once: the writer awaits each).
final class SendableFile: @unchecked Sendable {
    private let handle: FileHandle
    init(_ handle: FileHandle) { self.handle = handle }
    func read(_ count: Int) throws -> Data? { try handle.read(upToCount: count) }
    func close() { try? handle.close() }
}

extension ServerCore {
    func job(_ id: String) throws -> JobRecord {
        guard let job = try store.job(id) else { throw APIError.notFound("job \(id)") }
        return job
    }

    /// The recorded checkpoint of job `id` at `step`; 404 naming the job or the step.
    func checkpoint(_ id: String, step: Int) throws -> CheckpointRecord {
        _ = try job(id)
        guard let ck = try store.checkpoint(jobID: id, step: step) else { throw APIError.notFound("checkpoint at step \(step) of job \(id)") }
        return ck
    }
}

extension APIError {
    /// 410: the database records the checkpoint, its file is gone (no path in the message).
    static func checkpointGone(step: Int) -> APIError {
        APIError(.gone, "Checkpoint file missing", "the checkpoint file of step \(step) is gone from the checkpoint directory")
    }
}

extension ServerCore {
    /// The checkpoint a job's `init` names, with its job's model; or why it cannot be used.
    func initCheckpoint(_ ref: CheckpointReference) throws -> Result<InitCheckpoint, FieldError> {
        if let id = ref.weights { return importedWeights(id) }
        guard let jobID = ref.job else { return .failure(FieldError("init", "needs job or weights")) }
        return try initCheckpoint(job: jobID, step: ref.step)
    }

    /// Imported weights as an init: their model (read from the file's header) and whether they
    /// are a fine-tuned classifier; the preset is the method's one with that model, if any.
    func importedWeights(_ id: String) -> Result<InitCheckpoint, FieldError> {
        let folder = pool.options.checkpoints
        guard let url = folder.importedWeights(id) else {
            let ids = folder.importedWeightIDs()
            return .failure(FieldError("init.weights", "no imported weights '\(id)'; GET /v1/weights lists \(ids.isEmpty ? "none" : ids.joined(separator: ", "))"))
        }
        let found: (model: ModelConfig, finetune: FinetuneConfig?)
        do { found = try WeightsFile.readDescription(path: url.path) } catch {
            return .failure(FieldError("init.weights", "'\(id)' is not a usable weights file: \(withoutServerPaths("\(error)"))"))
        }
        let preset = Presets.forMethod(found.model.method).first { $0.model == found.model } ?? Presets.forMethod(found.model.method).first { $0.isDefault }
        return .success(InitCheckpoint(preset: preset?.name ?? "default", model: found.model,
                                       task: found.finetune == nil ? .pretrain : .finetune, step: 0))
    }

    func initCheckpoint(job id: String, step: Int?) throws -> Result<InitCheckpoint, FieldError> {
        let ref = CheckpointReference(job: id, step: step)
        guard let job = try store.job(id) else { return .failure(FieldError("init.job", "no job '\(id)'")) }
        guard let config = try? JobConfig.decode(job.configJSON) else {
            return .failure(FieldError("init.job", "job \(id) has a configuration this server cannot read"))
        }
        if let step = ref.step {
            guard try store.checkpoint(jobID: id, step: step) != nil else {
                let steps = try store.checkpoints(jobID: id).map { String($0.step) }
                return .failure(FieldError("init.step", "job \(id) has no checkpoint at step \(step) (it has: \(steps.isEmpty ? "none" : steps.joined(separator: ", ")))"))
            }
            return .success(InitCheckpoint(preset: config.preset, model: config.model, task: config.jobTask, step: step))
        }
        guard let newest = try store.latestCheckpoint(jobID: id) else {
            return .failure(FieldError("init.job", "job \(id) has no checkpoint yet"))
        }
        return .success(InitCheckpoint(preset: config.preset, model: config.model, task: config.jobTask, step: newest.step))
    }
}
