import Synchronization
import TensorCore

/// Makes batch k of a training run as a pure function of (dataset, seed, k): which images
/// (per-epoch seeded shuffles) and how they are augmented (one generator per sample
/// position). Nothing depends on threads, timing or where a loader started, so a resumed
/// job sees exactly the batches it would have seen.
///
/// Sample position p = k · B + j runs through epoch p / count at slot p % count of that
/// epoch's permutation; a batch that straddles two epochs simply takes its tail from the next.
struct BatchMaker: Sendable {
    let dataset: any ImageDataset
    let datasetID: String
    let batchSize: Int
    let seed: UInt64
    let transform: ImageTransform
    let labelled: Bool
    private let orders = EpochOrders()

    init(dataset: any ImageDataset, batchSize: Int, transform: ImageTransform, seed: UInt64) {
        self.dataset = dataset
        self.datasetID = dataset.info.id
        self.batchSize = batchSize
        self.seed = seed
        self.transform = transform
        self.labelled = dataset.count > 0 && dataset.label(at: 0) != nil
    }

    /// Dataset indices of batch `step`, before any substitution.
    func indices(step: Int) -> [Int] {
        let n = dataset.count
        return (0..<batchSize).map { j in
            let p = step * batchSize + j
            return orders.permutation(epoch: p / n, count: n, seed: seed)[p % n]
        }
    }

    func make(step: Int) throws -> ImageBatch {
        let size = transform.size
        let images = Tensor(uninitialized: [batchSize, 3, size, size])
        var used = indices(step: step)
        for j in 0..<batchSize {
            var rng = SeedStream.augmentation.generator(seed: seed, index: step * batchSize + j)
            let (image, index) = try loadImage(near: used[j])
            used[j] = index
            transform.apply(image, rng: &rng, into: images.pointer + j * 3 * size * size)
        }
        let labels = labelled ? used.map { dataset.label(at: $0) ?? -1 } : nil
        return ImageBatch(step: step, images: images, labels: labels, indices: used, dataWaitSeconds: 0)
    }

    /// The image at `index`, or, when it cannot be decoded, the next one that can (in dataset
    /// order, so the substitution is as deterministic as the rest). The dataset counts failures.
    func loadImage(near index: Int) throws -> (RGBImage, Int) {
        let n = dataset.count
        var lastError: (any Error)?
        for offset in 0..<n {
            let i = (index + offset) % n
            do { return (try dataset.image(at: i), i) } catch { lastError = error }
        }
        throw LoaderError.noDecodableImage(dataset: datasetID, lastError: lastError.map { "\($0)" } ?? "none")
    }
}

/// Per-epoch permutations, computed once and shared by the worker threads (a few recent epochs
/// are kept: batches near an epoch boundary need two).
final class EpochOrders: Sendable {
    private let cache = Mutex<[Int: [Int]]>([:])

    func permutation(epoch: Int, count: Int, seed: UInt64) -> [Int] {
        if let hit = cache.withLock({ $0[epoch] }) { return hit }
        var rng = SeedStream.order.generator(seed: seed, index: epoch)
        let order = rng.permutation(count)
        cache.withLock { c in
            c[epoch] = order
            for old in c.keys where old < epoch - 2 || old > epoch + 2 { c[old] = nil }
        }
        return order
    }
}
