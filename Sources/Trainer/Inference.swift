import Config
import Foundation
import ImageData
import Models
import NN
import Store
import Synchronization
import TensorCore

/// Reconstructions, features and evaluations from a job's checkpoints, for the server.
///
/// Work runs on a queue of its own (never the event loops or the cooperative pool), at most
/// `maxConcurrent` requests at once; one more is refused with `.busy` at once rather than
/// queued without bound. Loaded models stay in a small LRU cache keyed by job and step.
public final class InferenceService: Sendable {
    public let store: Store
    public let checkpoints: CheckpointDirectory
    public let maxConcurrent: Int
    public let cacheSize: Int
    public let maxPixels: Int

    private struct Loaded {
        let key: String
        let model: any MIMModel
        /// A fine-tuning job's encoder and head (`model` is then its backbone, without a decoder).
        let classifier: Classifier?
        let config: JobConfig
        let step: Int
        /// A job trained in bf16 serves in bf16 where this CPU has the units (fp32 elsewhere,
        /// e.g. on another node of a cluster): its model was fitted to bf16 products.
        var bf16: Bool { config.training.precision == .bf16 && BF16.supported }
    }

    private struct State {
        var inFlight = 0
        var cache: [Loaded] = []  // most recent last
    }

    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "mimserve.inference", attributes: .concurrent)

    /// Called on the request's thread once it holds a slot, before its work (a test hook).
    private let onAdmitted: (@Sendable () -> Void)?

    public init(store: Store, checkpoints: CheckpointDirectory, maxConcurrent: Int = 2, cacheSize: Int = 4,
                maxPixels: Int = ImageCodec.defaultMaxPixels, onAdmitted: (@Sendable () -> Void)? = nil) {
        self.onAdmitted = onAdmitted
        self.store = store
        self.checkpoints = checkpoints
        self.maxConcurrent = maxConcurrent
        self.cacheSize = cacheSize
        self.maxPixels = maxPixels
    }

    public var inFlight: Int { state.withLock { $0.inFlight } }

    // MARK: - Requests

    public struct ReconstructionResult: Sendable {
        public let png: [UInt8]
        public let jobID: String
        public let step: Int
        public let maskRatio: Float
        public let seed: UInt64
        public let imageSize: Int
        public let maskedFraction: Double
        /// Mean squared error on masked pixels, in normalised pixel space.
        public let maskedMSE: Double
        public let note: String?
    }

    /// A strip: original · masked · reconstruction · reconstruction with the visible part pasted.
    public func reconstruct(jobID: String, step: Int?, image: [UInt8], maskRatio: Float?, seed: UInt64) async throws(InferenceError) -> ReconstructionResult {
        if let r = maskRatio, !(r > 0 && r < 1) { throw .badParameter("mask_ratio", "must be in (0, 1), got \(r)") }
        return try await run { [self] in
            let picture = try decode(image)
            let loaded = try model(jobID: jobID, step: step)
            guard loaded.classifier == nil else {
                throw InferenceError.notApplicable("job \(jobID) is a fine-tuning job: its checkpoints hold an encoder and a classifier head, "
                    + "no decoder to reconstruct with; reconstruct with the job it started from")
            }
            let transform = ImageTransform(AugmentationConfig(), size: loaded.config.model.imageSize, mode: .eval)
            var unused = RandomGenerator(seed: 0)
            let input = transform.tensor(picture, rng: &unused)
            var rng = RandomGenerator(seed: seed)
            let mask = loaded.model.sampleMask(batch: 1, ratio: maskRatio, rng: &rng)
            let r = BF16.gemms(loaded.bf16) { loaded.model.reconstruct(input, mask: mask) }
            let strip = Strip.make(input: input, prediction: r.image, pixelMask: r.pixelMask, transform: transform)
            let (fraction, mse) = Strip.maskedError(input: input, prediction: r.image, pixelMask: r.pixelMask)
            let png: [UInt8]
            // Speed over size: libpng's fast mode writes the strip in a third of the time
            // (~10 ms for ViT-B's 4-panel strip) for ~20 % more bytes.
            do { png = try PNGEncoder.encode(strip, fast: true) } catch { throw InferenceError.internalFailure("PNG encoding failed: \(error)") }
            return ReconstructionResult(png: png, jobID: jobID, step: loaded.step, maskRatio: maskRatio ?? loaded.config.model.maskRatio,
                                        seed: seed, imageSize: loaded.config.model.imageSize, maskedFraction: fraction,
                                        maskedMSE: mse, note: r.note)
        }
    }

    public struct Features: Sendable {
        public let dim: Int
        /// Tokens per image with pooling `none`, else nil.
        public let tokens: Int?
        /// Per image: `dim` values, or `tokens × dim` row-major with `none`.
        public let features: [[Float]]
        public let step: Int
    }

    public func features(jobID: String, step: Int?, images: [[UInt8]], pool: Pooling) async throws(InferenceError) -> Features {
        guard !images.isEmpty else { throw .badParameter("images", "no image given") }
        guard images.count <= 64 else { throw .badParameter("images", "at most 64 images per request, got \(images.count)") }
        return try await run { [self] in
            let pictures = try images.map(decode)
            let loaded = try model(jobID: jobID, step: step)
            let size = loaded.config.model.imageSize
            let transform = ImageTransform(AugmentationConfig(), size: size, mode: .eval)
            let batch = Tensor(uninitialized: [pictures.count, 3, size, size])
            var unused = RandomGenerator(seed: 0)
            for (i, p) in pictures.enumerated() { transform.apply(p, rng: &unused, into: batch.pointer + i * 3 * size * size) }
            let z = BF16.gemms(loaded.bf16) { loaded.model.features(batch, pool: pool) }
            let dim = z.shape.last!, perImage = z.count / pictures.count
            let rows = (0..<pictures.count).map { i in Array(UnsafeBufferPointer(start: z.pointer + i * perImage, count: perImage)) }
            return Features(dim: dim, tokens: pool == .none ? z.shape[1] : nil, features: rows, step: loaded.step)
        }
    }

    /// k-NN and linear-probe accuracy of the job's encoder on a labelled dataset, against the
    /// same classifiers on raw pixels and on a randomly initialised encoder; stored with the job.
    public func evaluate(jobID: String, step: Int?, dataset: any ImageDataset, test: (any ImageDataset)?,
                         options: EvaluationOptions) async throws(InferenceError) -> EvaluationRecord {
        try await run { [self] in
            let loaded = try model(jobID: jobID, step: step)
            let result: EvaluationResult
            do {
                result = try Evaluator(options: options).evaluate(model: loaded.model, config: loaded.config,
                                                                  train: dataset, test: test)
            } catch let e as InferenceError { throw e } catch { throw InferenceError.badParameter("dataset", "\(error)") }
            let json = String(decoding: try JSONEncoder.sorted.encode(result), as: UTF8.self)
            do {
                return try store.add(evaluation: EvaluationRecord(jobID: jobID, datasetID: dataset.info.id, step: loaded.step, resultJSON: json))
            } catch { throw InferenceError.internalFailure("cannot store the evaluation: \(error)") }
        }
    }

    /// Runs other work that loads a checkpoint's model (an export) under the same admission as
    /// inference: at most `maxConcurrent` at once, one more refused with `.busy`, so concurrent
    /// requests cannot hold more models in memory than inference may. `work` reports its own
    /// failures in its result.
    public func admitted<T: Sendable>(_ work: @escaping @Sendable () -> T) async throws(InferenceError) -> T {
        try await run(work)
    }

    /// Drops cached models of a job (after it is deleted).
    public func forget(jobID: String) {
        state.withLock { $0.cache.removeAll { $0.key.hasPrefix(jobID + "@") } }
    }

    // MARK: - Plumbing

    private func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws(InferenceError) -> T {
        let admitted = state.withLock { s -> Bool in
            guard s.inFlight < maxConcurrent else { return false }
            s.inFlight += 1
            return true
        }
        guard admitted else { throw .busy }
        defer { state.withLock { $0.inFlight -= 1 } }
        let result: Result<T, InferenceError> = await withCheckedContinuation { c in
            queue.async { [onAdmitted] in
                onAdmitted?()
                do { c.resume(returning: .success(try work())) } catch let e as InferenceError {
                    c.resume(returning: .failure(e))
                } catch {
                    c.resume(returning: .failure(.internalFailure("\(error)")))
                }
            }
        }
        return try result.get()
    }

    private func decode(_ bytes: [UInt8]) throws(InferenceError) -> RGBImage {
        do { return try ImageCodec.decode(bytes, maxPixels: maxPixels) } catch {
            if case .tooLarge = error { throw .imageTooLarge("\(error)") }
            throw .badImage("\(error)")
        }
    }

    private func model(jobID: String, step: Int?) throws(InferenceError) -> Loaded {
        let record: CheckpointRecord
        do {
            guard try store.job(jobID) != nil else { throw InferenceError.notFound("job \(jobID)") }
            if let step {
                guard let r = try store.checkpoint(jobID: jobID, step: step) else {
                    let steps = try store.checkpoints(jobID: jobID).map { String($0.step) }.joined(separator: ", ")
                    throw InferenceError.notFound("checkpoint at step \(step) of job \(jobID) (it has: \(steps.isEmpty ? "none" : steps))")
                }
                record = r
            } else {
                guard let r = try store.latestCheckpoint(jobID: jobID) else {
                    throw InferenceError.noCheckpoint(jobID)
                }
                record = r
            }
        } catch let e as InferenceError { throw e } catch { throw .internalFailure("\(error)") }
        let key = "\(jobID)@\(record.step)"
        if let hit = state.withLock({ s -> Loaded? in
            guard let i = s.cache.firstIndex(where: { $0.key == key }) else { return nil }
            let hit = s.cache.remove(at: i)
            s.cache.append(hit)
            return hit
        }) { return hit }
        guard let bytes = checkpoints.read(record.path) else {
            throw .internalFailure("checkpoint file \(record.path) is missing")
        }
        let loaded: Loaded
        do {
            let ck = try Checkpoint.decode(bytes)
            let model = try ModelRegistry.make(ck.config.model, seed: 0)
            var classifier: Classifier?
            if let f = ck.config.finetune {
                classifier = Classifier(backbone: model, classes: f.classes, pool: f.pool, seed: 0)
                try classifier!.loadState(ck.weights)
            } else {
                try model.loadState(ck.weights)
            }
            loaded = Loaded(key: key, model: model, classifier: classifier, config: ck.config, step: ck.step)
        } catch { throw .internalFailure("cannot load checkpoint \(record.path): \(error)") }
        state.withLock { s in
            s.cache.append(loaded)
            if s.cache.count > cacheSize { s.cache.removeFirst(s.cache.count - cacheSize) }
        }
        return loaded
    }
}

public enum InferenceError: Error, Sendable, CustomStringConvertible {
    /// No such job or checkpoint.
    case notFound(String)
    /// The job has no checkpoint yet (it has not reached its first one).
    case noCheckpoint(String)
    /// The body is not a decodable PNG or JPEG.
    case badImage(String)
    /// The image declares more pixels than the server accepts.
    case imageTooLarge(String)
    /// A query or body parameter is out of range.
    case badParameter(String, String)
    /// The job cannot do this (a fine-tuning job has no decoder to reconstruct with).
    case notApplicable(String)
    /// Every inference slot is taken; retry shortly.
    case busy
    case internalFailure(String)

    public var description: String {
        switch self {
        case .notFound(let what): "\(what) not found"
        case .noCheckpoint(let id): "job \(id) has no checkpoint yet; wait for its first one (checkpoint_every) or its end"
        case .badImage(let m): "the body is not a usable image: \(m)"
        case .imageTooLarge(let m): m
        case .badParameter(let f, let m): "\(f): \(m)"
        case .notApplicable(let m): m
        case .busy: "all inference slots are busy; retry shortly"
        case .internalFailure(let m): m
        }
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}

/// The picture strip of a reconstruction.
enum Strip {
    /// Panels of at least 128 px (small models are upscaled by nearest neighbour), 4 px apart.
    static func make(input: Tensor, prediction: Tensor, pixelMask: Tensor, transform: ImageTransform) -> RGBImage {
        let size = input.shape[2], plane = size * size
        let original = transform.image(from: input, index: 0), predicted = transform.image(from: prediction, index: 0)
        let mask = UnsafeBufferPointer(start: pixelMask.pointer, count: plane)
        var masked = original.pixels, pasted = original.pixels
        for p in 0..<plane where mask[p] > 0.5 {
            for c in 0..<3 {
                masked[p * 3 + c] = original.pixels[p * 3 + c] * 0.25 + 0.35  // dimmed: hidden from the model
                pasted[p * 3 + c] = predicted.pixels[p * 3 + c]
            }
        }
        let panels = [original.pixels, masked, predicted.pixels, pasted]
        let scale = max(1, 128 / size), side = size * scale, gap = 4
        let width = 4 * side + 3 * gap
        var out = [Float](repeating: 1, count: width * side * 3)
        for (k, panel) in panels.enumerated() {
            let x0 = k * (side + gap)
            for y in 0..<side {
                for x in 0..<side {
                    let src = ((y / scale) * size + x / scale) * 3, dst = (y * width + x0 + x) * 3
                    out[dst] = panel[src]; out[dst + 1] = panel[src + 1]; out[dst + 2] = panel[src + 2]
                }
            }
        }
        return RGBImage(width: width, height: side, channels: 3, pixels: out)
    }

    static func maskedError(input: Tensor, prediction: Tensor, pixelMask: Tensor) -> (fraction: Double, mse: Double) {
        let size = input.shape[2], plane = size * size
        var n = 0, sum = 0.0
        for p in 0..<plane where pixelMask.pointer[p] > 0.5 {
            n += 1
            for c in 0..<3 {
                let d = Double(prediction.pointer[c * plane + p] - input.pointer[c * plane + p])
                sum += d * d
            }
        }
        return (Double(n) / Double(plane), n == 0 ? 0 : sum / Double(3 * n))
    }
}
