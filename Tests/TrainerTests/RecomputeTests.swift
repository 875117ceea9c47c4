import Config
import Foundation
import Models
import Store
import TensorCore
import Testing
@testable import Trainer

/// `"recompute": true` changes what a step keeps in memory, not what it computes: each block
/// runs again in the backward pass on the same input, with the same random draws, so a job's
/// losses and final weights are exactly those of the same job without it. (A recipe that clips,
/// SimMIM's, also writes its gradients into buffers that stay, `AdamW.holdsGradientBuffers`.)
@Suite("Recomputation", .serialized)
struct RecomputeTests {
    @Test(arguments: ["mae", "simmim", "ummae", "greenmim", "mixmae", "convmae"])
    func aRecomputingRunIsTheSameRun(method: String) async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let overrides: [String: JSONValue] = ["checkpoint_every": .number(12)]
        let kept = try h.submit(method, steps: 12, batch: 4, overrides: overrides)
        let recomputed = try h.submit(method, steps: 12, batch: 4, overrides: overrides.merging(["recompute": .bool(true)]) { a, _ in a })
        for job in try await h.ended([kept, recomputed], timeout: 120) { #expect(job.state == .succeeded) }
        try expectSameRun(h, kept, recomputed)
    }

    /// In bf16 a recomputing run drops the optimizer's bf16 weight copies and rounds each weight
    /// where a GEMM reads it: the same bits, so still the same run.
    @Test(.enabled(if: BF16.available, "this CPU has no AVX512_BF16 or AMX (MIMSERVE_BF16_EMULATE=1 emulates them on AVX-512)"),
          arguments: ["mae", "simmim"])
    func aRecomputingBF16RunIsTheSameRun(method: String) async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let overrides: [String: JSONValue] = ["checkpoint_every": .number(8), "precision": .string("bf16")]
        let kept = try h.submit(method, steps: 8, batch: 4, overrides: overrides)
        let recomputed = try h.submit(method, steps: 8, batch: 4, overrides: overrides.merging(["recompute": .bool(true)]) { a, _ in a })
        for job in try await h.ended([kept, recomputed], timeout: 120) { #expect(job.state == .succeeded) }
        try expectSameRun(h, kept, recomputed)
    }

    /// Fine-tuning draws drop-path samples inside the blocks; the recomputation replays them.
    @Test(arguments: ["mae", "simmim", "convmae"])
    func aRecomputingFineTuneReplaysItsDropPath(method: String) async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let overrides: [String: JSONValue] = ["checkpoint_every": .number(10), "eval_every": .number(10), "drop_path": .number(0.5)]
        let kept = try h.submit(method, steps: 10, batch: 4, overrides: overrides, task: "finetune")
        let recomputed = try h.submit(method, steps: 10, batch: 4, overrides: overrides.merging(["recompute": .bool(true)]) { a, _ in a },
                                      task: "finetune")
        for job in try await h.ended([kept, recomputed], timeout: 120) { #expect(job.state == .succeeded) }
        try expectSameRun(h, kept, recomputed)
        // With the draws not replayed the runs part at once; without any drop path a replay
        // could not go wrong. A rate of 0.5 drops some branch in every step of four samples.
        let other = try h.submit(method, steps: 10, batch: 4, overrides: overrides.merging(["drop_path": .number(0)]) { _, b in b }, task: "finetune")
        #expect(try await h.ended([other], timeout: 120).first?.state == .succeeded)
        #expect(try h.store.metrics(jobID: other).first?.loss != h.store.metrics(jobID: kept).first?.loss)
    }

    private func expectSameRun(_ h: Harness, _ a: String, _ b: String) throws {
        let la = try h.store.metrics(jobID: a).map(\.loss), lb = try h.store.metrics(jobID: b).map(\.loss)
        #expect(la.count > 0 && la == lb, "first difference at step \((la.indices.first { la[$0] != lb[$0] } ?? -1) + 1): \(la.prefix(3)) vs \(lb.prefix(3))")
        let wa = try weights(h, a), wb = try weights(h, b)
        #expect(wa.keys.sorted() == wb.keys.sorted())
        let differing = wa.keys.filter { wa[$0] != wb[$0] }.sorted()
        #expect(differing.isEmpty, "\(differing.count) of \(wa.count) tensors differ, e.g. \(differing.prefix(3))")
    }

    private func weights(_ h: Harness, _ id: String) throws -> [String: [Float]] {
        let record = try #require(try h.store.latestCheckpoint(jobID: id))
        let file = try WeightsFile.read(path: h.pool.options.checkpoints.url(record.path).path)
        return file.weights.merging(file.extraTensors) { a, _ in a }.mapValues(\.scalars)  // weights and AdamW moments
    }
}
