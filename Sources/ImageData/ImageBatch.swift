import TensorCore

/// A batch for the trainer: images (B, 3, H, W), normalised as the augmentation config says.
public struct ImageBatch: Sendable {
    /// The loader step this batch belongs to (evaluation batches count from 0).
    public let step: Int
    public let images: Tensor
    /// Class indices, nil when the dataset is unlabelled.
    public let labels: [Int]?
    /// Dataset index of each image (after any substitution for an undecodable file).
    public let indices: [Int]
    /// Seconds `next()` waited for this batch: 0 when prefetching kept up.
    public var dataWaitSeconds: Double

    public var count: Int { indices.count }
}

/// Why a loader could not produce a batch.
public enum LoaderError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `next()` after `close()`.
    case closed
    /// Every image of the dataset failed to decode (the last error's text).
    case noDecodableImage(dataset: String, lastError: String)
    /// The dataset is empty.
    case emptyDataset(String)

    public var description: String {
        switch self {
        case .closed: "the loader is closed"
        case .noDecodableImage(let id, let last): "no image of dataset '\(id)' could be decoded (last error: \(last))"
        case .emptyDataset(let id): "dataset '\(id)' has no images"
        }
    }
}
