import Config
import ImageData
import TensorCore

/// Training batches from an `ImageData` dataset through the prefetching `Loader`.
public enum ImageDataSource {
    /// Opens the job's dataset from `registry` and a loader positioned at the start step.
    public static func make(registry: DatasetRegistry) -> DataSource {
        { config, startStep in
            let dataset = try registry.open(config.dataset)
            let t = config.training
            return LoaderBatches(try Loader(dataset: dataset, batchSize: t.batchSize, imageSize: config.model.imageSize,
                                            augmentation: augmentation(for: t), seed: t.seed, startStep: startStep,
                                            workers: t.dataWorkers, prefetch: max(4, 2 * t.dataWorkers)))
        }
    }

    /// The pretraining transform (docs/methods/common.md#b13-pretraining-augmentation):
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

    init(_ loader: Loader) { self.loader = loader }

    func next() throws -> (images: Tensor, waitSeconds: Double) {
        let b = try loader.next()
        return (b.images, b.dataWaitSeconds)
    }

    func close() { loader.close() }
}
