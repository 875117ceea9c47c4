import Config
import Foundation
import Models
import NN
import Testing
import TensorCore
@testable import Trainer
import TestSupport

/// One weights format: a training checkpoint is a weights file, `import-hf` writes one without
/// training state, and `mimserve export-hf` reads either.
@Suite("Weights files and checkpoints share one format", .serialized) struct WeightsFileTests {
    static func checkpoint(method: String, seed: UInt64) throws -> (Checkpoint, any MIMModel) {
        let config = try JobConfig.resolve(JobRequest(method: method, preset: "tiny", totalSteps: 10))
        let model = try ModelRegistry.make(config.model, seed: seed)
        let moments = Dictionary(uniqueKeysWithValues: model.namedParameters().flatMap { name, t in
            [("exp_avg." + name, Tensor(repeating: 0.5, shape: t.shape)), ("exp_avg_sq." + name, Tensor(repeating: 0.25, shape: t.shape))]
        })
        let ck = Checkpoint(config: config, step: 7, optimizerSteps: 7, rng: RandomGenerator(seed: 9), wallTimeS: 1.5,
                            weights: model.stateDict(), moments: moments)
        return (ck, model)
    }

    static func expectSameWeights(_ a: [String: Tensor], _ b: [String: Tensor], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(Set(a.keys) == Set(b.keys), sourceLocation: sourceLocation)
        for (name, t) in a { #expect(t.scalars == b[name]?.scalars, "tensor \(name)", sourceLocation: sourceLocation) }
    }

    static func temporaryDirectory() throws -> URL {
        let url = Scratch.url("mimserve-weights")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs the built `mimserve` (beside the test bundle) and returns its exit status and stderr.
    static func mimserve(_ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("mimserve")
        process.arguments = arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    @Test func aCheckpointReadsAsAWeightsFileAndAModelAloneIsNoCheckpoint() throws {
        let (ck, model) = try Self.checkpoint(method: "mae", seed: 3)
        let file = try WeightsFile.decode(ck.encode())
        #expect(file.model == ck.config.model && file.extraTensors.count == 2 * model.namedParameters().count)
        Self.expectSameWeights(try file.makeModel().stateDict(), model.stateDict())
        let back = try Checkpoint.decode(ck.encode())
        #expect(back.step == 7 && back.config == ck.config)
        Self.expectSameWeights(back.moments, ck.moments)

        let alone = try WeightsFile.decode(WeightsFile.encode(model))
        #expect(alone.model == ck.config.model && alone.extraTensors.isEmpty)
        Self.expectSameWeights(alone.weights, model.stateDict())
        #expect(throws: CheckpointError.self) { try Checkpoint.decode(WeightsFile.encode(model)) }
        #expect(throws: WeightsFileError.self) { try WeightsFile.decode(SafeTensors.encode(model.stateDict(), metadata: ["format": "pt"])) }
    }

    @Test func exportHFReadsATrainingCheckpointAndImportHFWritesTheSameFormat() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (ck, model) = try Self.checkpoint(method: "mae", seed: 4)
        let ckPath = dir.appendingPathComponent("step-00000007.safetensors").path
        try AtomicFile.write(ck.encode(), to: ckPath)
        let hf = dir.appendingPathComponent("hf").path
        let exported = try Self.mimserve(["export-hf", ckPath, "--output", hf])
        #expect(exported.status == 0, "\(exported.stderr)")

        let imported = dir.appendingPathComponent("imported.safetensors").path
        let back = try Self.mimserve(["import-hf", hf, "--output", imported])
        #expect(back.status == 0, "\(back.stderr)")
        let file = try WeightsFile.read(path: imported)
        #expect(file.model == ck.config.model)
        Self.expectSameWeights(file.weights, model.stateDict())
        let again = try Self.mimserve(["export-hf", imported, "--output", dir.appendingPathComponent("hf2").path])
        #expect(again.status == 0, "\(again.stderr)")

        // UM-MAE has no transformers counterpart: refused, saying so.
        let (ummae, _) = try Self.checkpoint(method: "ummae", seed: 5)
        let umPath = dir.appendingPathComponent("ummae.safetensors").path
        try AtomicFile.write(ummae.encode(), to: umPath)
        let refused = try Self.mimserve(["export-hf", umPath, "--output", dir.appendingPathComponent("no").path])
        #expect(refused.status != 0 && refused.stderr.contains("ummae does not export to hf"), "\(refused.stderr)")
        let foreign = try Self.mimserve(["export-hf", hf + "/model.safetensors", "--output", dir.appendingPathComponent("no").path])
        #expect(foreign.status != 0 && foreign.stderr.contains("not a MIMServe weights file or checkpoint"), "\(foreign.stderr)")
    }
}
