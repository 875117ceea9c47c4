import Config
import Foundation
import ImageData
import Models
import NN
import TensorCore

/// What a training run optimises: the method's pretraining loss, or a classifier's
/// (docs/finetuning.md). The run around it (schedule, checkpoints, stops, bookkeeping) is the
/// same for both.
protocol Objective: AnyObject {
    /// The trained tensors, by the names checkpoints and optimizer state use.
    func namedParameters() -> [(name: String, tensor: Tensor)]
    func noDecay(_ name: String, _ tensor: Tensor) -> Bool
    func lrScale(_ name: String) -> Float
    /// One step's scalar loss, on the tape. `rng` is the job's checkpointed generator.
    func loss(_ batch: TrainingBatch, rng: inout RandomGenerator) throws -> Tensor
    func stateDict() -> [String: Tensor]
    /// Restores a checkpoint of this job.
    func loadState(_ state: [String: Tensor]) throws
    /// Starts from a pretraining checkpoint's weights (`init`).
    func loadInitial(_ state: [String: Tensor]) throws
}

extension Objective {
    var parameters: [Tensor] { namedParameters().map(\.tensor) }
}

/// The method's own objective (masks drawn from the run's generator).
final class Pretraining: Objective {
    let model: any MIMModel
    let batchSize: Int

    init(model: any MIMModel, batchSize: Int) {
        self.model = model
        self.batchSize = batchSize
    }

    func namedParameters() -> [(name: String, tensor: Tensor)] { model.namedParameters() }
    func noDecay(_ name: String, _ tensor: Tensor) -> Bool { model.excludedFromWeightDecay(name, tensor) }
    func lrScale(_ name: String) -> Float { 1 }

    func loss(_ batch: TrainingBatch, rng: inout RandomGenerator) throws -> Tensor {
        let mask = model.sampleMask(batch: batchSize, ratio: nil, rng: &rng)
        return model.trainingLoss(batch.images, mask: mask)
    }

    func stateDict() -> [String: Tensor] { model.stateDict() }
    func loadState(_ state: [String: Tensor]) throws { try model.loadState(state) }
    func loadInitial(_ state: [String: Tensor]) throws { try model.loadState(state) }
}

/// Supervised fine-tuning of the encoder under a linear head: label smoothing, optional
/// mixup / CutMix, drop path, layer-wise learning-rate decay.
final class Finetuning: Objective {
    let classifier: Classifier
    let settings: FinetuneConfig

    init(backbone: any MIMModel, settings: FinetuneConfig, seed: UInt64) {
        classifier = Classifier(backbone: backbone, classes: settings.classes, pool: settings.pool, seed: seed)
        classifier.setDropPath(settings.dropPath)
        self.settings = settings
    }

    func namedParameters() -> [(name: String, tensor: Tensor)] { classifier.namedParameters() }
    func noDecay(_ name: String, _ tensor: Tensor) -> Bool { classifier.excludedFromWeightDecay(name, tensor) }
    func lrScale(_ name: String) -> Float { classifier.lrScale(name, decay: settings.layerDecay) }

    func loss(_ batch: TrainingBatch, rng: inout RandomGenerator) throws -> Tensor {
        guard let labels = batch.labels else { throw TrainingFailure.unlabelled }
        let classes = settings.classes
        if let bad = labels.first(where: { !(0..<classes).contains($0) }) { throw TrainingFailure.labelOutOfRange(bad, classes: classes) }
        var targets = Mixing.smoothedOneHot(labels, classes: classes, smoothing: settings.labelSmoothing)
        var images = batch.images
        if settings.mixup > 0 || settings.cutmix > 0 {
            (images, targets) = Mixing.mix(images, targets: targets, classes: classes, mixup: settings.mixup,
                                           cutmix: settings.cutmix, rng: &rng)
        }
        let logits = StochasticDepth.training(rng: &rng) { classifier(images) }
        return Tensor.softTargetCrossEntropy(logits, targets: targets)
    }

    func stateDict() -> [String: Tensor] { classifier.stateDict() }
    func loadState(_ state: [String: Tensor]) throws { try classifier.loadState(state) }
    func loadInitial(_ state: [String: Tensor]) throws { try classifier.loadEncoder(from: state) }

    /// Top-1 accuracy and mean cross-entropy (unsmoothed) on the first `limit` held-out images,
    /// without drop path or mixing.
    func score(_ heldOut: any ImageDataset, limit: Int) throws -> FinetuneScore {
        let batches = EvaluationBatches(dataset: heldOut, batchSize: 64, imageSize: classifier.backbone.config.imageSize, limit: limit)
        var correct = 0, seen = 0, loss = 0.0
        try GradMode.withoutGrad {
            for b in 0..<batches.batchCount {
                let batch = try batches.batch(b)
                guard let labels = batch.labels else { throw TrainingFailure.unlabelled }
                let logits = classifier(batch.images), C = settings.classes
                for (i, label) in labels.enumerated() {
                    let row = UnsafeBufferPointer(start: logits.pointer + i * C, count: C)
                    let best = row.indices.max { row[$0] < row[$1] } ?? 0
                    if best == label { correct += 1 }
                    let top = row.max() ?? 0
                    let logSum = Double(top) + log(row.reduce(0.0) { $0 + exp(Double($1 - top)) })
                    if (0..<C).contains(label) { loss += logSum - Double(row[label]) }
                }
                withExtendedLifetime(logits) {}  // each row points into it
                seen += labels.count
            }
        }
        return FinetuneScore(top1: seen == 0 ? 0 : Double(correct) / Double(seen), loss: seen == 0 ? 0 : loss / Double(seen),
                             images: seen, classes: settings.classes, dataset: heldOut.info.id)
    }
}

/// A fine-tuning job's score at one step, stored as an evaluation (`kind` "finetune").
public struct FinetuneScore: Codable, Sendable, Equatable {
    public var kind = "finetune"
    public var top1: Double
    public var loss: Double
    public var images: Int
    public var classes: Int
    public var dataset: String
}

/// Targets and the batch mixing of fine-tuning (docs/finetuning.md#mixing), as timm's `Mixup`
/// does them in batch mode: each image is mixed with the batch's reverse.
enum Mixing {
    /// (1 − ε)·one-hot + ε / C, row-major (B·C).
    static func smoothedOneHot(_ labels: [Int], classes: Int, smoothing: Float) -> [Float] {
        let off = smoothing / Float(classes), on = 1 - smoothing + off
        var t = [Float](repeating: off, count: labels.count * classes)
        for (i, y) in labels.enumerated() { t[i * classes + y] = on }
        return t
    }

    /// Mixup (λ·x + (1 − λ)·x_rev) or CutMix (a box of x_rev pasted, λ its complement's area
    /// share), λ ~ Beta(α, α); with both on, CutMix with probability ½. Targets mix with the
    /// same λ.
    static func mix(_ images: Tensor, targets: [Float], classes: Int, mixup: Float, cutmix: Float,
                    rng: inout RandomGenerator) -> (Tensor, [Float]) {
        let (B, C, H, W) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let useCutmix = cutmix > 0 && (mixup <= 0 || rng.uniform() < 0.5)
        var lambda = Float(beta(Double(useCutmix ? cutmix : mixup), rng: &rng))
        let out = Tensor(uninitialized: images.shape)
        let x = images.pointer, y = out.pointer, plane = H * W, sample = C * plane
        if useCutmix {
            let ratio = (1 - lambda).squareRoot()
            let cutH = Int(Float(H) * ratio), cutW = Int(Float(W) * ratio)
            let cy = Int(rng.next() % UInt64(H)), cx = Int(rng.next() % UInt64(W))
            let y0 = max(0, cy - cutH / 2), y1 = min(H, cy + cutH / 2), x0 = max(0, cx - cutW / 2), x1 = min(W, cx + cutW / 2)
            lambda = 1 - Float((y1 - y0) * (x1 - x0)) / Float(plane)
            y.update(from: x, count: images.count)
            for b in 0..<B {
                let other = x + (B - 1 - b) * sample, dst = y + b * sample
                for c in 0..<C { for r in y0..<y1 { for q in x0..<x1 { dst[c * plane + r * W + q] = other[c * plane + r * W + q] } } }
            }
        } else {
            for b in 0..<B {
                let a = x + b * sample, other = x + (B - 1 - b) * sample, dst = y + b * sample
                for i in 0..<sample { dst[i] = lambda * a[i] + (1 - lambda) * other[i] }
            }
        }
        var mixed = targets
        for b in 0..<B {
            for k in 0..<classes {
                mixed[b * classes + k] = lambda * targets[b * classes + k] + (1 - lambda) * targets[(B - 1 - b) * classes + k]
            }
        }
        return (out, mixed)
    }

    /// Beta(α, α) as X / (X + Y) with X, Y ~ Gamma(α).
    static func beta(_ alpha: Double, rng: inout RandomGenerator) -> Double {
        let x = gamma(alpha, rng: &rng), y = gamma(alpha, rng: &rng)
        return x + y > 0 ? x / (x + y) : 0.5
    }

    /// Gamma(α, 1) by Marsaglia and Tsang's method; α < 1 through Gamma(α + 1)·U^(1/α).
    static func gamma(_ alpha: Double, rng: inout RandomGenerator) -> Double {
        if alpha < 1 {
            let u = max(rng.uniformDouble(), 1e-300)
            return gamma(alpha + 1, rng: &rng) * pow(u, 1 / alpha)
        }
        let d = alpha - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            let z = Double(rng.normal())
            let v = pow(1 + c * z, 3)
            guard v > 0 else { continue }
            let u = rng.uniformDouble()
            if log(max(u, 1e-300)) < 0.5 * z * z + d - d * v + d * log(v) { return d * v }
        }
    }
}
