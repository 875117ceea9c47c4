import Foundation
import TensorCore

/// The work shared by the loader's workers and its consumer. Batches are made sample by
/// sample: workers claim the next unclaimed sample of the oldest batch in the window
/// (`prefetch` batches from the one the consumer needs next), so several workers share a batch
/// and batches complete in order. When the consumer finds its batch unfinished it makes the
/// unclaimed samples itself instead of sleeping: on a busy machine a worker may wait
/// milliseconds for a core while the consumer already has one.
/// All state is guarded by `condition`.
final class PrefetchQueue: @unchecked Sendable {
    /// A batch being made: its tensor is written by many threads, each in its own slot.
    private final class Pending {
        let step: Int
        let images: Tensor
        var indices: [Int]
        var claimed = 0
        var done = 0
        var error: (any Error)?

        init(step: Int, batchSize: Int, imageSize: Int) {
            self.step = step
            images = Tensor(uninitialized: [batchSize, 3, imageSize, imageSize])
            indices = [Int](repeating: -1, count: batchSize)
        }
    }

    private let condition = NSCondition()
    private let maker: BatchMaker
    private let prefetch: Int
    private var pending: [Pending] = []  // steps nextToDeliver, nextToDeliver + 1, … in order
    private var nextToDeliver: Int
    private var closed = false
    private var running: Int  // workers not yet exited: `close()` waits for 0

    init(maker: BatchMaker, startStep: Int, prefetch: Int, workers: Int) {
        self.maker = maker
        self.prefetch = prefetch
        nextToDeliver = startStep
        running = workers
    }

    /// A worker thread's loop: make samples until closed.
    func work() {
        condition.lock()
        while true {
            while !closed && claimableBatch() == nil { condition.wait() }
            guard !closed, let batch = claimableBatch() else { break }
            makeClaimedSample(of: batch)
        }
        running -= 1
        condition.broadcast()
        condition.unlock()
    }

    func next() throws -> ImageBatch {
        let start = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { throw LoaderError.closed }
        let batch = self.batch(at: 0)
        while batch.done < maker.batchSize && !closed {
            if batch.claimed < maker.batchSize { makeClaimedSample(of: batch) } else { condition.wait() }
        }
        guard !closed else { throw LoaderError.closed }
        pending.removeFirst()
        nextToDeliver += 1
        condition.broadcast()  // the window moved: workers may start a new batch
        if let error = batch.error { throw error }
        var result = maker.finish(step: batch.step, images: batch.images, indices: batch.indices)
        result.dataWaitSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return result
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        pending.removeAll()
        condition.unlock()
    }

    /// The batch `offset` places after the next to deliver, created when first needed.
    private func batch(at offset: Int) -> Pending {
        while pending.count <= offset {
            pending.append(Pending(step: nextToDeliver + pending.count, batchSize: maker.batchSize,
                                   imageSize: maker.transform.size))
        }
        return pending[offset]
    }

    private func claimableBatch() -> Pending? {
        for offset in 0..<prefetch {
            let b = batch(at: offset)
            if b.claimed < maker.batchSize { return b }
        }
        return nil
    }

    /// Claims the next sample of `batch` and makes it outside the lock. Called and returns locked.
    private func makeClaimedSample(of batch: Pending) {
        let slot = batch.claimed
        batch.claimed += 1
        condition.unlock()
        let result = Result { try maker.makeSample(step: batch.step, slot: slot, into: batch.images) }
        condition.lock()
        switch result {
        case .success(let index): batch.indices[slot] = index
        case .failure(let error): batch.error = batch.error ?? error
        }
        batch.done += 1
        if batch.done == maker.batchSize { condition.broadcast() }
    }
}
