import Config
import Foundation
import Store
import TensorCore
import Testing
@testable import Trainer

@Suite("Warm starts (init)", .serialized) struct WarmStartTests {
    func weights(_ h: Harness, _ job: String, step: Int) throws -> [String: Tensor] {
        let record = try #require(try h.store.checkpoint(jobID: job, step: step))
        return try Checkpoint.decode([UInt8](Data(contentsOf: h.pool.options.checkpoints.url(record.path)))).weights
    }

    /// A job started from another's checkpoint begins with its weights: with a learning rate of
    /// 1e-30, its one step moves no weight by more than 1e-29 (AdamW's update is lr × m̂/(√v̂+ε),
    /// |m̂/(√v̂+ε)| ≤ 1/(1−β₁) ≈ 10 at the first step), so its checkpoint holds the source's weights.
    /// The same job from the seed alone does not.
    @Test func aWarmStartBeginsWithTheSourceCheckpointsWeights() async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let source = try h.submit(steps: 12, seed: 1, overrides: ["checkpoint_every": .number(6)])
        try await h.wait(source, for: [.succeeded])
        let still: [String: JSONValue] = ["base_lr": .number(1e-30), "min_lr": .number(0), "warmup_steps": .number(0)]
        let warm = try h.submit(steps: 1, seed: 2, overrides: still, initFrom: CheckpointReference(job: source, step: 12))
        let cold = try h.submit(steps: 1, seed: 2, overrides: still)
        try await h.wait(warm, for: [.succeeded])
        try await h.wait(cold, for: [.succeeded])
        let want = try weights(h, source, step: 12), got = try weights(h, warm, step: 1), fresh = try weights(h, cold, step: 1)
        #expect(Set(got.keys) == Set(want.keys))
        var worst: Float = 0, freshWorst: Float = 0
        for (name, w) in want {
            for i in 0..<w.count {
                worst = max(worst, abs(got[name]!.pointer[i] - w.pointer[i]))
                freshWorst = max(freshWorst, abs(fresh[name]!.pointer[i] - w.pointer[i]))
            }
        }
        #expect(worst <= 1e-29, "a weight moved by \(worst)")
        #expect(freshWorst > 1e-3)
    }

    /// A source checkpoint gone by the time the job runs fails it with a reason naming init.
    @Test func aMissingSourceFailsTheJobNamingInit() async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let source = try h.submit(steps: 4, overrides: ["checkpoint_every": .number(4)])
        try await h.wait(source, for: [.succeeded])
        let warm = try h.submit(steps: 4, initFrom: CheckpointReference(job: source, step: 3))
        let job = try await h.wait(warm, for: [.failed])
        #expect(job.error?.hasPrefix("init: job \(source)'s checkpoint at step 3 is gone") == true, "\(job.error ?? "")")
    }
}
