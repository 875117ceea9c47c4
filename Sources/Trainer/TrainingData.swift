import Config
import TensorCore

/// The batches one job trains on. Batch k depends only on the job's seed and k, so a source
/// opened at `startStep` after a resume yields exactly what an uninterrupted run would have.
public protocol TrainingBatches: AnyObject {
    /// The next batch of normalised images (B, 3, H, W) and how long the trainer waited for it.
    func next() throws -> (images: Tensor, waitSeconds: Double)
    func close()
}

/// Opens the batches of a job from a given step.
public typealias DataSource = @Sendable (_ config: JobConfig, _ startStep: Int) throws -> any TrainingBatches
