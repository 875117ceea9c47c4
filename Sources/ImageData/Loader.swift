import Foundation
import TensorCore

/// Training batches made by background threads, delivered in order.
///
/// Batch k depends only on (dataset, seed, k) — see `BatchMaker` — so the worker count, timing
/// and `startStep` never change what the trainer sees: a loader created with `startStep: 20`
/// yields exactly batches 20, 21, … of one started at 0. Workers are plain threads (not Swift
/// concurrency's cooperative pool, which the HTTP server shares); each claims the next step
/// while fewer than `prefetch` batches are claimed or waiting, so memory stays bounded.
///
/// `next()` is meant for one consumer (the trainer's thread); `close()` stops and joins the
/// workers and may be called from anywhere, any number of times.
public final class Loader: Sendable {
    public let batchSize: Int
    public let imageSize: Int
    public let workers: Int
    public let prefetch: Int
    private let maker: BatchMaker
    private let queue: PrefetchQueue

    /// - Parameters:
    ///   - dataset: the images; must not be empty.
    ///   - augmentation: the training transform (RandomResizedCrop, flip, normalisation).
    ///   - seed: drives the per-epoch shuffles and every augmentation.
    ///   - startStep: the first batch `next()` returns (a resumed job's step).
    ///   - workers: decoding threads (default 1: on 2 cores the trainer needs the rest).
    ///   - prefetch: batches made ahead of the consumer, at least `workers`.
    public init(dataset: any ImageDataset, batchSize: Int, imageSize: Int,
                augmentation: AugmentationConfig = AugmentationConfig(), seed: UInt64, startStep: Int = 0,
                workers: Int = 1, prefetch: Int = 4) throws {
        precondition(batchSize > 0 && imageSize > 0 && startStep >= 0 && workers > 0,
                     "loader needs batchSize, imageSize, workers > 0 and startStep ≥ 0")
        guard dataset.count > 0 else { throw LoaderError.emptyDataset(dataset.info.id) }
        self.batchSize = batchSize
        self.imageSize = imageSize
        self.workers = workers
        self.prefetch = max(prefetch, workers)
        maker = BatchMaker(dataset: dataset, batchSize: batchSize,
                           transform: ImageTransform(augmentation, size: imageSize, mode: .train), seed: seed)
        queue = PrefetchQueue(startStep: startStep, prefetch: self.prefetch, workers: workers)
        for w in 0..<workers {
            let thread = Thread { [queue, maker] in queue.work(maker) }
            thread.name = "mimserve.loader.\(w)"
            thread.start()
        }
    }

    deinit { queue.close() }

    /// The next batch in step order; blocks until it is ready and reports how long it waited.
    public func next() throws -> ImageBatch { try queue.next() }

    /// Stops the workers (after the batch each is making) and waits for them to exit.
    public func close() { queue.close() }

    /// Batch `step` made on the calling thread: what the workers deliver for that step.
    public func makeBatch(step: Int) throws -> ImageBatch { try maker.make(step: step) }
}

/// The reorder buffer between workers and the consumer. All state is guarded by `condition`.
private final class PrefetchQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var nextToClaim: Int
    private var nextToDeliver: Int
    private var ready: [Int: Result<ImageBatch, any Error>] = [:]
    private var closed = false
    private var running: Int
    private let prefetch: Int

    init(startStep: Int, prefetch: Int, workers: Int) {
        nextToClaim = startStep
        nextToDeliver = startStep
        self.prefetch = prefetch
        running = workers
    }

    func work(_ maker: BatchMaker) {
        while true {
            condition.lock()
            while !closed && nextToClaim >= nextToDeliver + prefetch { condition.wait() }
            if closed {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let step = nextToClaim
            nextToClaim += 1
            condition.unlock()

            let result = Result { try maker.make(step: step) }

            condition.lock()
            ready[step] = result
            condition.broadcast()
            condition.unlock()
        }
    }

    func next() throws -> ImageBatch {
        let start = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        while !closed && ready[nextToDeliver] == nil { condition.wait() }
        guard !closed, let result = ready.removeValue(forKey: nextToDeliver) else {
            condition.unlock()
            throw LoaderError.closed
        }
        nextToDeliver += 1
        condition.broadcast()
        condition.unlock()
        var batch = try result.get()
        batch.dataWaitSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return batch
    }

    func close() {
        condition.lock()
        closed = true
        ready.removeAll()
        condition.broadcast()
        while running > 0 { condition.wait() }
        condition.unlock()
    }
}
