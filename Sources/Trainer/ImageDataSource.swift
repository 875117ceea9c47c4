import Config
import ImageData
import TensorCore

/// Training batches from an `ImageData` dataset through the prefetching `Loader`.
public enum ImageDataSource {
    /// Opens the job's dataset from `registry` and a loader positioned at the start step. A
    /// fine-tuning job trains on its dataset less the held-out split (`splits`).
    public static func make(registry: DatasetRegistry) -> DataSource {
        { config, startStep in
            var dataset = try registry.open(config.dataset)
            var heldOut: (any ImageDataset)?
            if config.finetune != nil { (dataset, heldOut) = try splits(of: dataset, config: config, registry: registry) }
            let t = config.training
            return LoaderBatches(try Loader(dataset: dataset, batchSize: t.batchSize, imageSize: config.model.imageSize,
                                            augmentation: augmentation(for: t), seed: t.seed, startStep: startStep,
                                            workers: t.dataWorkers, prefetch: max(4, 2 * t.dataWorkers)), heldOut: heldOut)
        }
    }

    /// A fine-tuning job's training images and held-out images: the dataset and its own held-out
    /// split when it has one (`held_out`), else a seeded `val_fraction` of it set aside.
    public static func splits(of dataset: any ImageDataset, config: JobConfig,
                              registry: DatasetRegistry) throws -> (train: any ImageDataset, heldOut: any ImageDataset) {
        guard let f = config.finetune else { return (dataset, dataset) }
        if let id = f.heldOut { return (dataset, try registry.open(id)) }
        var rng = RandomGenerator(seed: config.training.seed ^ 0x7661_6C5F_7370_6C74)
        let order = rng.permutation(dataset.count)
        let held = min(dataset.count - 1, max(1, Int((Float(dataset.count) * f.valFraction).rounded())))
        return (Subset(dataset, indices: order.dropFirst(held).sorted()), Subset(dataset, indices: order.prefix(held).sorted()))
    }

    /// The training transform (docs/methods/common.md#b13-pretraining-augmentation):
    /// RandomResizedCrop(scale_min…1), flip, ImageNet normalisation.
    public static func augmentation(for t: TrainingConfig) -> AugmentationConfig {
        var a = AugmentationConfig()
        a.scale = [t.cropScaleMin, 1]
        a.hflipProbability = t.hflip ? 0.5 : 0
        return a
    }
}

final class LoaderBatches: TrainingBatches {
    let loader: Loader
    let heldOut: (any ImageDataset)?

    init(_ loader: Loader, heldOut: (any ImageDataset)? = nil) {
        self.loader = loader
        self.heldOut = heldOut
    }

    func next() throws -> TrainingBatch {
        let b = try loader.next()
        return TrainingBatch(images: b.images, labels: b.labels, waitSeconds: b.dataWaitSeconds)
    }

    func close() { loader.close() }
}
