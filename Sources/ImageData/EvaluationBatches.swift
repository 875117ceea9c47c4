import Synchronization
import TensorCore

/// Evaluation batches: the whole dataset (or its first `limit` images) in dataset order,
/// through the evaluation transform (resize + centre crop), with labels — for k-NN and
/// linear-probe evaluation. Deterministic; the last batch may be smaller. Each batch is
/// made when asked for (`for b in 0..<eval.batchCount { try eval.batch(b) }`), its samples
/// in parallel on the compute threads.
public struct EvaluationBatches: Sendable {
    public let dataset: any ImageDataset
    public let batchSize: Int
    public let transform: ImageTransform
    public let count: Int

    public init(dataset: any ImageDataset, batchSize: Int, imageSize: Int,
                augmentation: AugmentationConfig = AugmentationConfig(), limit: Int? = nil) {
        precondition(batchSize > 0, "batch size must be positive, got \(batchSize)")
        self.dataset = dataset
        self.batchSize = batchSize
        self.transform = ImageTransform(augmentation, size: imageSize, mode: .eval)
        self.count = Swift.min(dataset.count, limit ?? dataset.count)
    }

    public var batchCount: Int { (count + batchSize - 1) / batchSize }

    /// Batch `b` (0 ..< batchCount). Undecodable images are replaced as the training loader
    /// does (by the next decodable one), and `indices` says which were used.
    public func batch(_ b: Int) throws -> ImageBatch {
        precondition(b >= 0 && b < batchCount, "evaluation batch \(b) out of 0..<\(batchCount)")
        let lo = b * batchSize, n = Swift.min(batchSize, count - lo), size = transform.size
        let images = Tensor(uninitialized: [n, 3, size, size])
        let maker = BatchMaker(dataset: dataset, batchSize: n, transform: transform, seed: 0)
        var used = [Int](repeating: 0, count: n)
        var failure: (any Error)?
        used.withUnsafeMutableBufferPointer { usedBuffer in
            let out = images.pointer, indices = usedBuffer
            let errors = ErrorSlot()
            parallelFor(n) { range in
                for j in range {
                    do {
                        let (image, index) = try maker.loadImage(near: lo + j)
                        indices[j] = index
                        var unused = RandomGenerator(seed: 0)  // the eval transform draws nothing
                        transform.apply(image, rng: &unused, into: out + j * 3 * size * size)
                    } catch { errors.set(error) }
                }
            }
            failure = errors.value
        }
        if let failure { throw failure }
        let labels = maker.labelled ? used.map { dataset.label(at: $0) ?? -1 } : nil
        return ImageBatch(step: b, images: images, labels: labels, indices: used, dataWaitSeconds: 0)
    }
}

/// The first error raised by any of the parallel workers.
private final class ErrorSlot: Sendable {
    private let stored = Mutex<(any Error)?>(nil)

    func set(_ error: any Error) { stored.withLock { if $0 == nil { $0 = error } } }
    var value: (any Error)? { stored.withLock { $0 } }
}
