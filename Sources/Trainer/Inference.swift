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
/// Work runs on a queue of its own (never the event loops or the cooperative pool), on at most
/// `maxConcurrent` slots. Reconstructions and features are batched: requests for the same
/// checkpoint and task that arrive while a slot is busy wait (at most `maxWaiting` of them; one
/// more is refused with `.busy` at once rather than queued without bound), and the next free
/// slot runs them together, up to `maxBatch` images in one forward pass. A request that finds a
/// free slot starts at once; requests arriving before its pass starts join it, and one that
/// finds that pass full starts another on a free slot. Results are those
/// of the same request alone: every sample keeps its own image, seed and mask. Loaded models stay
/// in a small LRU cache keyed by job and step.
public final class InferenceService: Sendable {
    public let store: Store
    public let checkpoints: CheckpointDirectory
    public let maxConcurrent: Int
    public let cacheSize: Int
    public let maxPixels: Int
    /// Requests that may wait for a slot; one more is refused with `.busy`.
    public let maxWaiting: Int
    /// Images one forward pass takes from the requests it batches (a larger features request
    /// still runs, alone).
    public let maxBatch: Int

    private struct Loaded {
        let key: String
        let model: any MIMModel
        /// A fine-tuning job's encoder and head (`model` is then its backbone, without a decoder).
        let classifier: Classifier?
        let config: JobConfig
        let step: Int
        /// A job trained in bf16 serves in bf16 where this CPU has the units (fp32 elsewhere,
        /// e.g. on another node of a cluster): its model was fitted to bf16 products.
        var bf16: Bool { config.training.precision == .bf16 && BF16.available }
    }

    /// What may share a forward pass: the same checkpoint as asked (nil: the newest) and task.
    struct BatchKey: Hashable, Sendable {
        enum Work: Hashable, Sendable {
            case reconstruct(maskRatio: Float?)
            case features(Pooling)
        }
        let jobID: String
        let step: Int?
        let work: Work
    }

    /// A reconstruction or features request, waiting or in a batch.
    private struct Member: Sendable {
        let key: BatchKey
        let images: [[UInt8]]
        let seed: UInt64
        let reply: @Sendable (Result<Reply, InferenceError>) -> Void
        /// The batch it leads, or the one it joined and starts with; nil while it waits for a slot.
        var batch: Int? = nil
    }

    /// A batch that holds a slot and has not yet taken its members.
    private struct OpenBatch {
        let id: Int
        /// Its leader's and joined members' images.
        var images: Int
    }

    private enum Reply: Sendable {
        case reconstruction(ReconstructionResult)
        case features(Features)
    }

    /// Batches run since start, and the requests they served.
    public struct BatchCounts: Sendable, Equatable {
        public var batches = 0
        public var requests = 0
    }

    private struct State {
        var inFlight = 0  // slots busy
        var cache: [Loaded] = []  // most recent last
        /// Requests waiting for a slot or for their batch to start, oldest first.
        var waiting: [Member] = []
        /// The newest batch per key that holds a slot and has not yet taken its members.
        var open: [BatchKey: OpenBatch] = [:]
        var batchesOpened = 0

        /// `leader` leads a new batch, now the open one of its key.
        mutating func open(_ leader: Member) -> Member {
            batchesOpened += 1
            open[leader.key] = OpenBatch(id: batchesOpened, images: leader.images.count)
            var m = leader
            m.batch = batchesOpened
            return m
        }
        var counts = BatchCounts()
    }

    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "mimserve.inference", attributes: .concurrent)

    /// Called on the work's thread once it holds a slot, before its work (a test hook); a batch
    /// calls it once.
    private let onAdmitted: (@Sendable () -> Void)?

    public init(store: Store, checkpoints: CheckpointDirectory, maxConcurrent: Int = 2, maxWaiting: Int = 16, maxBatch: Int = 8,
                cacheSize: Int = 4, maxPixels: Int = ImageCodec.defaultMaxPixels, onAdmitted: (@Sendable () -> Void)? = nil) {
        self.onAdmitted = onAdmitted
        self.store = store
        self.checkpoints = checkpoints
        self.maxConcurrent = maxConcurrent
        self.maxWaiting = maxWaiting
        self.maxBatch = maxBatch
        self.cacheSize = cacheSize
        self.maxPixels = maxPixels
    }

    /// Slots busy.
    public var inFlight: Int { state.withLock { $0.inFlight } }
    /// Requests waiting for a slot or for their batch to start.
    public var waiting: Int { state.withLock { $0.waiting.count } }
    public var batchCounts: BatchCounts { state.withLock { $0.counts } }

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
        let key = BatchKey(jobID: jobID, step: step, work: .reconstruct(maskRatio: maskRatio))
        guard case let .reconstruction(r) = try await batched(key, images: [image], seed: seed) else {
            throw .internalFailure("a reconstruction came back as features")
        }
        return r
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
        let key = BatchKey(jobID: jobID, step: step, work: .features(pool))
        guard case let .features(f) = try await batched(key, images: images, seed: 0) else {
            throw .internalFailure("features came back as a reconstruction")
        }
        return f
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

    /// Other work (an evaluation, an export) takes a free slot or is refused with `.busy`; it is
    /// never batched.
    private func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws(InferenceError) -> T {
        let admitted = state.withLock { s -> Bool in
            guard s.inFlight < maxConcurrent else { return false }
            s.inFlight += 1
            return true
        }
        guard admitted else { throw .busy }
        let result: Result<T, InferenceError> = await withCheckedContinuation { c in
            queue.async { [self] in
                onAdmitted?()
                let result: Result<T, InferenceError>
                do { result = .success(try work()) } catch let e as InferenceError {
                    result = .failure(e)
                } catch {
                    result = .failure(.internalFailure("\(error)"))
                }
                if let next = handOff() { queue.async { [self] in runBatches(leader: next) } }
                c.resume(returning: result)
            }
        }
        return try result.get()
    }

    // MARK: - Batching

    private enum Admission { case lead(Member), wait, refuse }

    private func batched(_ key: BatchKey, images: [[UInt8]], seed: UInt64) async throws(InferenceError) -> Reply {
        let result: Result<Reply, InferenceError> = await withCheckedContinuation { c in
            let member = Member(key: key, images: images, seed: seed) { c.resume(returning: $0) }
            switch admit(member) {
            case .lead(let leader): queue.async { [self] in runBatches(leader: leader) }
            case .wait: break
            case .refuse: c.resume(returning: .failure(.busy))
            }
        }
        return try result.get()
    }

    /// Joins a batch about to start if it has room, else takes a free slot (a batch of its
    /// own), else waits if the queue has room.
    private func admit(_ m: Member) -> Admission {
        state.withLock { s in
            if let open = s.open[m.key], open.images + m.images.count <= maxBatch {
                s.open[m.key]?.images += m.images.count
                var joined = m
                joined.batch = open.id
                s.waiting.append(joined)
                return .wait
            }
            if s.inFlight < maxConcurrent {
                s.inFlight += 1
                return .lead(s.open(m))
            }
            guard s.waiting.count < maxWaiting else { return .refuse }
            s.waiting.append(m)
            return .wait
        }
    }

    /// Runs `leader`'s batch on this slot, then the batches of whoever waits, until no one does.
    private func runBatches(leader first: Member) {
        var leader = first
        while true {
            onAdmitted?()
            runBatch(leader)
            guard let next = handOff() else { return }
            leader = next
        }
    }

    /// When a slot's work is done: the oldest waiting request that no batch about to start
    /// will take (none is open for its checkpoint and task, or the open one is full for it)
    /// leads the next batch on this slot, or the slot is freed.
    private func handOff() -> Member? {
        state.withLock { s in
            let maxBatch = maxBatch
            guard let i = s.waiting.firstIndex(where: { m in
                m.batch == nil && (s.open[m.key].map { $0.images + m.images.count > maxBatch } ?? true)
            }) else {
                s.inFlight -= 1
                return nil
            }
            return s.open(s.waiting.remove(at: i))
        }
    }

    /// The batch as it starts: the leader and the waiting requests with its key, oldest first,
    /// while they fit in `maxBatch` images. Later arrivals wait for the next batch; one that
    /// joined this batch and no longer fits waits for a slot like any other.
    private func seal(_ leader: Member) -> [Member] {
        state.withLock { s in
            var members = [leader], images = leader.images.count, rest: [Member] = []
            for m in s.waiting {
                if m.key == leader.key, images + m.images.count <= maxBatch {
                    members.append(m)
                    images += m.images.count
                } else {
                    var left = m
                    if left.batch == leader.batch { left.batch = nil }
                    rest.append(left)
                }
            }
            s.waiting = rest
            if s.open[leader.key]?.id == leader.batch { s.open[leader.key] = nil }
            s.counts.batches += 1
            s.counts.requests += members.count
            return members
        }
    }

    private func runBatch(_ leader: Member) {
        // The model loads before the batch is sealed, so requests arriving meanwhile join it.
        let loaded: Loaded
        do { loaded = try model(jobID: leader.key.jobID, step: leader.key.step) } catch {
            for m in seal(leader) { m.reply(.failure(error)) }
            return
        }
        let members = seal(leader)
        switch leader.key.work {
        case .reconstruct(let ratio): reconstruct(members, loaded: loaded, maskRatio: ratio)
        case .features(let pool): features(members, loaded: loaded, pool: pool)
        }
    }

    private func reconstruct(_ members: [Member], loaded: Loaded, maskRatio: Float?) {
        guard loaded.classifier == nil else {
            let e = InferenceError.notApplicable("job \(members[0].key.jobID) is a fine-tuning job: its checkpoints hold an encoder and a classifier head, "
                + "no decoder to reconstruct with; reconstruct with the job it started from")
            for m in members { m.reply(.failure(e)) }
            return
        }
        let transform = ImageTransform(AugmentationConfig(), size: loaded.config.model.imageSize, mode: .eval)
        // One upload decoded at a time: the batch holds model-size inputs, never several pictures.
        var ready: [(member: Member, input: Tensor, mask: MaskSpec)] = []
        for m in members {
            do {
                let picture = try decode(m.images[0])
                var unused = RandomGenerator(seed: 0), rng = RandomGenerator(seed: m.seed)
                ready.append((m, transform.tensor(picture, rng: &unused), loaded.model.sampleMask(batch: 1, ratio: maskRatio, rng: &rng)))
            } catch { m.reply(.failure(error)) }
        }
        // Each sample keeps its own mask; a model whose batch shares one mask passes each
        // distinct mask separately.
        var groups: [[Int]] = []
        for i in ready.indices {
            if let g = groups.firstIndex(where: { loaded.model.masksPerSample || ready[$0[0]].mask.isSame(as: ready[i].mask) }) {
                groups[g].append(i)
            } else {
                groups.append([i])
            }
        }
        for group in groups {
            let input = Tensor.concat(group.map { ready[$0].input }, axis: 0)
            guard let mask = MaskSpec.concatenating(group.map { ready[$0].mask }) else {
                for i in group { ready[i].member.reply(.failure(.internalFailure("masks of one kind did not concatenate"))) }
                continue
            }
            let r = BF16.gemms(loaded.bf16) { loaded.model.reconstruct(input, mask: mask) }
            // The strips, PNG-encoded on all cores: one strip per core, or one strip in pieces.
            let results = UnsafeMutableBufferPointer<Result<Reply, InferenceError>>.allocate(capacity: group.count)
            defer { results.deallocate() }
            let pieces = group.count == 1 ? ComputeThreads.count : 1
            parallelFor(group.count) { range in
                for k in range {
                    let m = ready[group[k]].member
                    let strip = Strip.make(input: input, prediction: r.image, pixelMask: r.pixelMask, transform: transform, index: k)
                    let (fraction, mse) = Strip.maskedError(input: input, prediction: r.image, pixelMask: r.pixelMask, index: k)
                    // Speed over size (PNGEncoder.encodeFast).
                    guard let png = try? PNGEncoder.encode(strip, fast: true, parts: pieces) else {
                        (results.baseAddress! + k).initialize(to: .failure(.internalFailure("PNG encoding failed")))
                        continue
                    }
                    (results.baseAddress! + k).initialize(to: .success(.reconstruction(ReconstructionResult(
                        png: png, jobID: m.key.jobID, step: loaded.step, maskRatio: maskRatio ?? loaded.config.model.maskRatio,
                        seed: m.seed, imageSize: loaded.config.model.imageSize, maskedFraction: fraction, maskedMSE: mse, note: r.note))))
                }
            }
            for k in group.indices { ready[group[k]].member.reply((results.baseAddress! + k).move()) }
        }
    }

    private func features(_ members: [Member], loaded: Loaded, pool: Pooling) {
        let size = loaded.config.model.imageSize, imageFloats = 3 * size * size
        let transform = ImageTransform(AugmentationConfig(), size: size, mode: .eval)
        var ready: [(member: Member, input: Tensor)] = []
        for m in members {
            do {
                let input = Tensor(uninitialized: [m.images.count, 3, size, size])
                var unused = RandomGenerator(seed: 0)
                for (i, bytes) in m.images.enumerated() { transform.apply(try decode(bytes), rng: &unused, into: input.pointer + i * imageFloats) }
                ready.append((m, input))
            } catch { m.reply(.failure(error)) }
        }
        guard !ready.isEmpty else { return }
        let batch = ready.count == 1 ? ready[0].input : Tensor.concat(ready.map(\.input), axis: 0)
        let z = BF16.gemms(loaded.bf16) { loaded.model.features(batch, pool: pool) }
        let dim = z.shape.last!, perImage = z.count / batch.shape[0]
        var row = 0
        for (m, input) in ready {
            let rows = (row..<(row + input.shape[0])).map { i in Array(UnsafeBufferPointer(start: z.pointer + i * perImage, count: perImage)) }
            row += input.shape[0]
            m.reply(.success(.features(Features(dim: dim, tokens: pool == .none ? z.shape[1] : nil, features: rows, step: loaded.step))))
        }
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
            let model = try ModelRegistry.make(ck.config.model, seed: 0, decoderBlocks: ck.config.finetune == nil)
            var classifier: Classifier?
            if let f = ck.config.finetune {
                classifier = Classifier(backbone: model, classes: f.classes, pool: f.pool, seed: 0)
                try classifier!.loadState(ck.weights)
            } else {
                try model.loadState(ck.weights)
            }
            loaded = Loaded(key: key, model: model, classifier: classifier, config: ck.config, step: ck.step)
        } catch { throw .internalFailure("cannot load checkpoint \(record.path): \(error)") }
        // A served model never changes: a bf16 one rounds its weight matrices once here, not
        // in every forward pass (half again the weights' memory while it is cached).
        if loaded.bf16 {
            for p in loaded.classifier?.parameters ?? loaded.model.parameters where p.rank == 2 {
                p.bf16Copy = BF16Matrix(p.pointer, rows: p.shape[0], cols: p.shape[1])
            }
        }
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
    /// Every inference slot is taken and no request may wait (or the work is never queued).
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
        case .busy: "every inference slot is busy and the queue is full; retry shortly"
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
    /// Sample `index` of the batch.
    static func make(input: Tensor, prediction: Tensor, pixelMask: Tensor, transform: ImageTransform, index: Int) -> RGBImage {
        let size = input.shape[2], plane = size * size
        let original = transform.image(from: input, index: index), predicted = transform.image(from: prediction, index: index)
        let mask = UnsafeBufferPointer(start: pixelMask.pointer + index * plane, count: plane)
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

    static func maskedError(input: Tensor, prediction: Tensor, pixelMask: Tensor, index: Int) -> (fraction: Double, mse: Double) {
        let size = input.shape[2], plane = size * size
        let mask = pixelMask.pointer + index * plane, x = input.pointer + index * 3 * plane, y = prediction.pointer + index * 3 * plane
        var n = 0, sum = 0.0
        for p in 0..<plane where mask[p] > 0.5 {
            n += 1
            for c in 0..<3 {
                let d = Double(y[c * plane + p] - x[c * plane + p])
                sum += d * d
            }
        }
        return (Double(n) / Double(plane), n == 0 ? 0 : sum / Double(3 * n))
    }
}
