import Config
import Foundation
import Hummingbird
import ImageData
import Models
import Store
import Trainer

extension APIRoutes {
    mutating func addInferenceRoutes() {
        let core = self.core

        on(.post, "/v1/jobs/{id}/reconstruct") { request, context in
            let id = try context.id()
            let maskRatio = try request.queryFloat("mask_ratio", in: 0...1, open: true)
            let seed = try request.queryInt("seed", in: 0...Int(Int32.max)).map(UInt64.init) ?? 0
            let step = try request.queryInt("step", in: 0...Int(Int32.max))
            let format = request.query("format") ?? "png"
            guard ["png", "json"].contains(format) else { throw APIError.invalid("format", "must be png or json, got '\(format)'") }
            let method = try await core.requireJob(id)
            if let fixed = method.fixedMaskRatio, let asked = maskRatio, asked != fixed {
                throw APIError.invalid("mask_ratio", "\(method.rawValue) always masks \(fixed) (one unit kept per 2×2 group), got \(asked); leave it out")
            }
            let image = try await core.imageBody(request)
            let r = try await core.inference.reconstruct(jobID: id, step: step, image: image, maskRatio: maskRatio, seed: seed)
            let headers: HTTPFields = [.init("X-Checkpoint-Step")!: String(r.step), .init("X-Mask-Ratio")!: String(r.maskRatio)]
            if format == "json" {
                struct Body: Encodable {
                    let job_id: String, step: Int, mask_ratio: Float, seed: UInt64, image_size: Int
                    let masked_fraction: Double, masked_mse: Double, note: String?, png_base64: String
                }
                return try JSON.response(Body(job_id: id, step: r.step, mask_ratio: r.maskRatio, seed: r.seed, image_size: r.imageSize,
                                              masked_fraction: r.maskedFraction, masked_mse: r.maskedMSE, note: r.note,
                                              png_base64: Data(r.png).base64EncodedString()), headers: headers)
            }
            var h = headers
            h[.contentType] = "image/png"
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: r.png)))
        }

        on(.post, "/v1/jobs/{id}/features") { request, context in
            let id = try context.id()
            let pool = try request.queryEnum("pool", Pooling.self) ?? .mean
            let step = try request.queryInt("step", in: 0...Int(Int32.max))
            let method = try await core.requireJob(id)
            guard method.pools.contains(pool) else {
                throw APIError.invalid("pool", "\(method.rawValue) offers \(method.pools.map(\.rawValue).joined(separator: ", ")) (only MAE's ViT has a class token), got '\(pool.rawValue)'")
            }
            let images: [[UInt8]]
            if request.headers[.contentType]?.hasPrefix("application/json") == true {
                // Several images: {"images": ["<base64>", …]}
                struct Body: Decodable { let images: [String] }
                let body = try decodeJSON(Body.self, from: try await request.bytes(limit: core.configuration.maxBodyBytes))
                guard !body.images.isEmpty else { throw APIError.invalid("images", "is empty; send at least one image") }
                // Every header is read and the pixels summed before a single image is decoded.
                var total = 0
                images = try body.images.enumerated().map { i, text in
                    guard let data = Data(base64Encoded: text) else { throw APIError.invalid("images[\(i)]", "is not base64") }
                    let bytes = [UInt8](data)
                    total = total.addingReportingOverflow(try core.checkPixels(bytes, field: "images[\(i)]")).partialValue
                    return bytes
                }
                let budget = core.configuration.requestPixelBudget
                guard total <= budget else {
                    throw APIError.invalid("images", "\(body.images.count) images declare \(total) pixels together; one request may decode at most \(budget) (--max-request-pixels)")
                }
            } else {
                images = [try await core.imageBody(request)]
            }
            let f = try await core.inference.features(jobID: id, step: step, images: images, pool: pool)
            struct Body: Encodable {
                let job_id: String, step: Int, pool: String, dim: Int, tokens: Int?, count: Int, features: [[Float]]
                func encode(to encoder: any Encoder) throws {
                    var c = encoder.container(keyedBy: CodingKeys.self)
                    try c.encode(job_id, forKey: .job_id); try c.encode(step, forKey: .step); try c.encode(pool, forKey: .pool)
                    try c.encode(dim, forKey: .dim); try c.encode(tokens, forKey: .tokens); try c.encode(count, forKey: .count)
                    try c.encode(features, forKey: .features)
                }
                enum CodingKeys: String, CodingKey { case job_id, step, pool, dim, tokens, count, features }
            }
            return try JSON.response(Body(job_id: id, step: f.step, pool: pool.rawValue, dim: f.dim, tokens: f.tokens,
                                          count: f.features.count, features: f.features))
        }

        on(.post, "/v1/jobs/{id}/evaluate") { request, context in
            let id = try context.id()
            struct Body: Decodable {
                let dataset: String?
                let step: Int?
                let options: EvaluationOptions?
            }
            let bytes = try await request.jsonBytes(limit: 64 << 10, optional: true)
            let body = bytes.isEmpty ? Body(dataset: nil, step: nil, options: nil) : try decodeJSON(Body.self, from: bytes)
            let options = body.options ?? EvaluationOptions()
            let problems = options.problems()
            if !problems.isEmpty { throw APIError.invalid(problems.map { FieldError("options.\($0.field)", $0.reason) }) }
            _ = try await core.requireJob(id)
            let datasetID = body.dataset ?? "synthetic"
            let train: any ImageDataset
            do { train = try core.datasets.open(datasetID) } catch {
                throw APIError.invalid("dataset", core.withoutServerPaths("\(error)"))
            }
            // Fashion-MNIST has a test split of its own.
            let test: (any ImageDataset)? = datasetID == "fashion-mnist" ? try? core.datasets.open("fashion-mnist-test") : nil
            let record = try await core.inference.evaluate(jobID: id, step: body.step, dataset: train, test: test, options: options)
            return try JSON.response(EvaluationResource(record), status: .created)
        }

        on(.get, "/v1/jobs/{id}/evaluations") { _, context in
            let id = try context.id()
            let rows = try await core.blocking {
                _ = try core.job(id)
                return try core.store.evaluations(jobID: id)
            }
            return try JSON.response(["evaluations": rows.map(EvaluationResource.init)])
        }
    }
}

extension ServerCore {
    /// The job's method; a 404 unless the job exists (read on the blocking pool).
    func requireJob(_ id: String) async throws -> Method {
        let job: JobRecord = try await blocking { [self] in try self.job(id) }
        guard let method = Method(rawValue: job.method) else { throw APIError.notFound("method of job \(id)") }
        return method
    }

    /// A raw PNG or JPEG body, checked for its type and declared size before any decoding.
    func imageBody(_ request: Request) async throws -> [UInt8] {
        let type = request.headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard let type, ["image/png", "image/jpeg", "image/jpg", "application/octet-stream"].contains(type) else {
            throw APIError(.unsupportedMediaType, "Unsupported media type",
                           "send the image as the raw body with Content-Type image/png or image/jpeg (got \(type ?? "none"))")
        }
        let bytes = try await request.bytes(limit: configuration.maxBodyBytes)
        guard !bytes.isEmpty else { throw APIError.invalid("body", "is empty; send a PNG or JPEG image") }
        try checkPixels(bytes, field: "body")
        return bytes
    }

    /// Reads only the header: a pixel bomb is refused before a byte of it is decoded. Returns
    /// the pixels the image declares.
    @discardableResult
    func checkPixels(_ bytes: [UInt8], field: String) throws -> Int {
        let header: ImageHeader
        do { header = try ImageCodec.probe(bytes) } catch {
            throw APIError(.unprocessableContent, "Unreadable image", "\(error)", fields: [FieldError(field, "\(error)")])
        }
        if header.pixelCount > configuration.maxPixels {
            let reason = "declares \(header.width)×\(header.height) = \(header.pixelCount) pixels; the limit is \(configuration.maxPixels) (--max-pixels)"
            throw APIError(.unprocessableContent, "Image too large", reason, fields: [FieldError(field, reason)])
        }
        return header.pixelCount
    }
}
