import Config
import Foundation
import Models
import Testing
import Store
@testable import Trainer

/// UM-MAE and GreenMIM as jobs: their options resolve and validate like any model field, and a
/// tiny job of each trains to the end with checkpoints (the resume path reloads them).
@Suite("UM-MAE and GreenMIM jobs", .serialized) struct VisibleOnlyJobTests {
    @Test func optionsAreOverridableAndValidatedByField() throws {
        let um = try JobConfig.resolve(JobRequest(method: "ummae", preset: "tiny", overrides: [
            "secondary_mask_ratio": .number(0.5), "decoder_positions": .string("reference"),
        ]))
        #expect(um.model.secondaryMaskRatio == 0.5 && um.model.decoderPositions == .reference)
        let green = try JobConfig.resolve(JobRequest(method: "greenmim", preset: "tiny", overrides: [
            "grouping": .string("fixed"), "group_size_max": .number(12),
        ]))
        #expect(green.model.grouping == .fixed && green.model.groupSizeMax == 12)
        #expect(try JobConfig.decode(green.json()) == green)
        func fields(_ method: String, _ overrides: [String: JSONValue]) -> [String] {
            do { _ = try JobConfig.resolve(JobRequest(method: method, preset: "tiny", overrides: overrides)); return [] }
            catch { return error.errors.map(\.field) }
        }
        #expect(fields("ummae", ["secondary_mask_ratio": .number(1)]) == ["overrides.secondary_mask_ratio"])
        #expect(fields("ummae", ["mask_ratio": .number(0.5)]) == ["overrides.mask_ratio"])
        #expect(fields("greenmim", ["grouping": .string("greedy")]) == ["overrides.grouping"])
        #expect(fields("greenmim", ["group_size_max": .number(0)]) == ["overrides.group_size_max"])
    }

    @Test(arguments: ["ummae", "greenmim"])
    func aTinyJobTrainsToTheEnd(method: String) async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit(method, steps: 6, overrides: ["checkpoint_every": .number(3)])
        let job = try await h.wait(id, for: [.succeeded, .failed])
        #expect(job.state == .succeeded && job.step == 6, "\(job.error ?? "")")
        #expect(try h.store.metrics(jobID: id).allSatisfy { $0.loss.isFinite })
        #expect(try !h.store.checkpoints(jobID: id).isEmpty)
    }
}
