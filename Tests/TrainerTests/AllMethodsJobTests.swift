import Config
import Foundation
import ImageData
import Models
import Store
import Testing
@testable import Trainer

/// Every method is a job like the baselines: it trains, checkpoints, reconstructs and gives features.
@Suite("Every method as a job", .serialized) struct AllMethodsJobTests {
    @Test(arguments: Method.allCases) func trainsReconstructsAndEmbeds(method: Method) async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit(method.rawValue, steps: 4, overrides: ["checkpoint_every": .number(2)])
        let job = try h.wait(id, for: [.succeeded, .failed])
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
}
