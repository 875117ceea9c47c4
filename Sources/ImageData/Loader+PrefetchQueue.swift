import Foundation

/// The reorder buffer between the loader's workers and its consumer: workers claim steps in
/// order while fewer than `prefetch` are claimed or waiting, and `next()` hands them out in
/// step order whatever order they finish in. All state is guarded by `condition`.
final class PrefetchQueue: @unchecked Sendable {
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
