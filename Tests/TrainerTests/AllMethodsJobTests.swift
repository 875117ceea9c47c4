import Config
import Foundation
import ImageData
import Models
import Store
import Synchronization
import Testing
@testable import Trainer

/// Every method is a job like the baselines: it trains, checkpoints, reconstructs and gives features.
@Suite("Every method as a job", .serialized) struct AllMethodsJobTests {
    @Test(arguments: Method.allCases) func trainsReconstructsAndEmbeds(method: Method) async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit(method.rawValue, steps: 4, overrides: ["checkpoint_every": .number(2)])
        let job = try await h.wait(id, for: [.succeeded, .failed])
        #expect(job.state == .succeeded, "\(method): \(job.error ?? "")")
        #expect(try h.store.checkpoints(jobID: id).map(\.step) == [2, 4])

        let inference = InferenceService(store: h.store, checkpoints: h.pool.options.checkpoints)
        var bytes = [UInt8]()
        for y in 0..<40 { for x in 0..<48 { bytes += [UInt8(x * 5), UInt8(y * 6), 90] } }
        let png = try PNGEncoder.encode(bytes: bytes, width: 48, height: 40, channels: 3)
        let r = try await inference.reconstruct(jobID: id, step: nil, image: png, maskRatio: nil, seed: 1)
        let strip = try ImageCodec.decode(r.png)
        #expect(strip.height == 128 && strip.width == 4 * 128 + 12 && r.step == 4)
        #expect(r.maskedFraction > 0 && r.maskedFraction < 1 && r.maskedMSE.isFinite)
        let f = try await inference.features(jobID: id, step: 2, images: [png, png], pool: .mean)
        let config = try JobConfig.decode(job.configJSON)
        #expect(f.features.count == 2 && f.dim == config.model.encoderDim && f.step == 2)
        // The same image in two rows: equal up to the GEMM's row-dependent summation order.
        #expect(zip(f.features[0], f.features[1]).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($0)) })
        #expect(f.features[0].allSatisfy { $0.isFinite })
    }

    /// Requests that wait for the slot run as one batch, and each gets what it would alone.
    /// The slot is held by a features request whose pass waits on a gate the test opens; two
    /// more features requests join that pass, three reconstructions queue for the next. Seeds
    /// 1, 2, 1: a method whose batch shares one mask (GreenMIM, MixMAE) passes the two masks
    /// separately within the batch. Batched rows differ from lone ones only by the GEMM's
    /// row-dependent summation order, hence the same 1e-4 as above.
    @Test(arguments: Method.allCases) func waitingRequestsShareAPassAndGetWhatTheyWouldAlone(method: Method) async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit(method.rawValue, steps: 2)
        #expect(try await h.wait(id, for: [.succeeded, .failed]).state == .succeeded)
        let gate = Gate()
        let inference = InferenceService(store: h.store, checkpoints: h.pool.options.checkpoints, maxConcurrent: 1,
                                         onAdmitted: { gate.pass() })
        let images = (0..<3).map { k in
            var bytes = [UInt8]()
            for y in 0..<40 { for x in 0..<48 { bytes += [UInt8(x * 5), UInt8(y * 6), UInt8(40 * k)] } }
            return try! PNGEncoder.encode(bytes: bytes, width: 48, height: 40, channels: 3)
        }
        async let held = inference.features(jobID: id, step: nil, images: [images[0]], pool: .mean)
        try await gate.waitUntilHeld()
        async let joined = inference.features(jobID: id, step: nil, images: [images[1], images[2]], pool: .mean)
        let seeds: [UInt64] = [1, 2, 1]
        let queued = Task {
            try await withThrowingTaskGroup(of: (Int, InferenceService.ReconstructionResult).self) { group in
                for k in 0..<3 {
                    group.addTask { (k, try await inference.reconstruct(jobID: id, step: nil, image: images[k], maskRatio: nil, seed: seeds[k])) }
                }
                var out = [InferenceService.ReconstructionResult?](repeating: nil, count: 3)
                for try await (k, r) in group { out[k] = r }
                return out.map { $0! }
            }
        }
        while inference.waiting < 4 { try await Task.sleep(for: .milliseconds(1)) }  // a state, not a timer, decides
        gate.open()
        let (first, second, batched) = try await (held, joined, queued.value)
        #expect(inference.batchCounts == .init(batches: 2, requests: 5))

        func close(_ a: [Float], _ b: [Float]) -> Bool { a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($0)) } }
        let alone = try await inference.features(jobID: id, step: nil, images: images, pool: .mean)
        #expect(zip([first.features[0]] + second.features, alone.features).allSatisfy(close))
        for k in 0..<3 {
            let r = try await inference.reconstruct(jobID: id, step: nil, image: images[k], maskRatio: nil, seed: seeds[k])
            #expect(abs(batched[k].maskedMSE - r.maskedMSE) <= 1e-4 * r.maskedMSE && batched[k].maskedFraction == r.maskedFraction)
            let a = try ImageCodec.decode(batched[k].png).pixels, b = try ImageCodec.decode(r.png).pixels
            // 8-bit panels: a rounding boundary may move one level.
            #expect(a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1.0 / 255 + 1e-6 }, "\(method) request \(k)")
        }
        #expect(batched[0].maskedFraction == batched[2].maskedFraction)
    }

    /// A request whose checkpoint's pass about to start is full takes a free slot for a pass of
    /// its own instead of waiting for the full one to end. The first pass (one image, a batch of
    /// at most one) is held on a gate before it starts; the second request must complete while
    /// it is held. Before, it waited beside an idle slot.
    @Test func aRequestThatFindsItsPassFullStartsAnotherOnAFreeSlot() async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit("mae", steps: 2)
        #expect(try await h.wait(id, for: [.succeeded, .failed]).state == .succeeded)
        let gate = Gate()
        let inference = InferenceService(store: h.store, checkpoints: h.pool.options.checkpoints, maxConcurrent: 2, maxBatch: 1,
                                         onAdmitted: { gate.pass() })
        var bytes = [UInt8]()
        for y in 0..<40 { for x in 0..<48 { bytes += [UInt8(x * 5), UInt8(y * 6), 90] } }
        let png = try PNGEncoder.encode(bytes: bytes, width: 48, height: 40, channels: 3)
        async let held = inference.features(jobID: id, step: nil, images: [png], pool: .mean)
        try await gate.waitUntilHeld()
        let second = Task { try await inference.features(jobID: id, step: nil, images: [png], pool: .mean) }
        // Either it waits (the old behaviour) or its own pass starts: a state decides, not a timer.
        while inference.waiting == 0 && inference.batchCounts.batches == 0 { try await Task.sleep(for: .milliseconds(1)) }
        #expect(inference.waiting == 0, "the second request waits while a slot is free")
        if inference.waiting == 0 { #expect(try await second.value.features.count == 1) }
        gate.open()
        let first = try await held, alone = try await second.value
        #expect(first.features == alone.features)
        // A slot is freed just after its batch delivers its results (`handOff`), so a request
        // can return a moment before its slot is counted free: wait for that state (a deadline
        // only bounds a failure).
        let deadline = ContinuousClock.now + .seconds(30)
        while inference.inFlight != 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        #expect(inference.batchCounts == .init(batches: 2, requests: 2) && inference.inFlight == 0)
    }
}

/// Holds the first work that passes until `open()`; later ones pass at once.
final class Gate: Sendable {
    private let held = Mutex(false)
    private let opened = DispatchSemaphore(value: 0)

    func pass() {
        let first = held.withLock { h -> Bool in
            defer { h = true }
            return !h
        }
        if first { opened.wait() }
    }

    func waitUntilHeld() async throws {
        while !held.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(1)) }
    }

    func open() { opened.signal() }
}
