import Config
import ImageData
import TensorCore

/// The batches one job trains on. Batch k depends only on the job's seed and k, so a source
/// opened at `startStep` after a resume yields exactly what an uninterrupted run would have.
public protocol TrainingBatches: AnyObject {
    /// The next batch of normalised images (B, 3, H, W), their class indices when the dataset is
    /// labelled, and how long the trainer waited for it.
    func next() throws -> TrainingBatch
    /// The held-out images a fine-tuning job is scored on (never among its batches); nil when
    /// the source has none.
    var heldOut: (any ImageDataset)? { get }
    func close()
}

public struct TrainingBatch {
    public let images: Tensor
    public let labels: [Int]?
    public let waitSeconds: Double

    public init(images: Tensor, labels: [Int]?, waitSeconds: Double) {
        self.images = images
        self.labels = labels
        self.waitSeconds = waitSeconds
    }
}

/// Opens the batches of a job from a given step.
public typealias DataSource = @Sendable (_ config: JobConfig, _ startStep: Int) throws -> any TrainingBatches
