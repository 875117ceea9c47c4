import Foundation
import NN
import Testing
import TestSupport
import TensorCore
@testable import Models

/// Hugging Face `ViTMAEForPreTraining` import and export against a tiny model saved by
/// transformers (Tools/reference/hf_vitmae_reference.py): same loss, logits and mask as
/// transformers on the same noise; export → import is lossless; malformed directories fail with
/// the error that names the problem. That transformers loads an export is checked by the
/// script's `--check-export DIR` mode (tests cannot run Python).
@Suite("Hugging Face ViTMAE interop") struct HFInteropTests {
    static func fixtureDirectory() throws -> String {
        try #require(Bundle.module.url(forResource: "hf_vitmae_tiny", withExtension: nil, subdirectory: "Fixtures")).path
    }

    static func fixture() throws -> Fixture {
        let url = try #require(Bundle.module.url(forResource: "hf_vitmae_tiny", withExtension: "bin", subdirectory: "Fixtures"))
        return try Fixture(contentsOf: url)
    }

    /// A fresh empty directory under the system's temporary folder.
    static func temporaryDirectory() throws -> URL {
        let url = Scratch.url("hf-interop")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func forward(_ model: MAE, _ fx: Fixture) throws -> MIMOutput {
        let spec = MaskSpec.noise(try fx.tensor("noise").tensor, keep: 16)
        return GradMode.withoutGrad { model.forward(try! fx.tensor("pixel_values").tensor, mask: spec) }
    }

    @Test func matchesTransformers() throws {
        let model = try HFViTMAE.load(directory: Self.fixtureDirectory())
        #expect(model.config.layerNormEps == 1e-12)
        #expect(model.config.mlpRatio == 4 && model.config.depths == [2] && model.config.decoderDepth == 1)
        // transformers' outputs in float64, each element within its float32 noise band.
        let check = BandedComparison(try Self.fixture(), label: "hf_vitmae_tiny")
        let out = try Self.forward(model, check.fixture)
        GoldenTests.expectEqual(out.mask.scalars, try check.fixture.tensor("mask"))
        check.expect(out.latent.scalars, "latent")
        check.expect(out.prediction.scalars, "logits")
        check.expect([out.loss.item], "loss")
        print(check.summary())
    }

    @Test func exportThenImportIsLossless() throws {
        let model = try HFViTMAE.load(directory: Self.fixtureDirectory())
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try HFViTMAE.export(model, to: dir.path)

        // Hub names (query/key/value split, decoder_layers), as many tensors as transformers wrote.
        let written = try SafeTensors.read(path: dir.appendingPathComponent("model.safetensors").path)
        let original = try SafeTensors.read(path: Self.fixtureDirectory() + "/model.safetensors")
        #expect(written.metadata["format"] == "pt")
        #expect(written.tensors.count == original.tensors.count)
        #expect(written.tensors["decoder.decoder_layers.0.attention.attention.value.bias"] != nil)
        #expect(written.tensors["vit.encoder.layer.1.attention.attention.query.weight"]?.shape == [64, 64])

        let again = try HFViTMAE.load(directory: dir.path)
        #expect(again.config == model.config)
        let before = model.stateDict(), after = again.stateDict()
        #expect(Set(before.keys) == Set(after.keys))
        for (name, t) in before {
            #expect(after[name]?.scalars == t.scalars, "\(name) changed in export → import")
        }
        let fx = try Self.fixture()
        #expect(try Self.forward(again, fx).loss.item == Self.forward(model, fx).loss.item)
    }

    /// A copy of the fixture directory with `edit` applied to its config and tensors.
    static func malformed(config edit: (inout [String: Any]) -> Void = { _ in },
                          tensors editTensors: (inout [String: Tensor]) -> Void = { _ in }) throws -> URL {
        let source = try fixtureDirectory()
        let dir = try temporaryDirectory()
        let data = try Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))
        var config = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
        var tensors = try SafeTensors.read(path: source + "/model.safetensors").tensors
        editTensors(&tensors)
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: dir.appendingPathComponent("model.safetensors").path)
        return dir
    }

    static func expectLoadError(_ dir: URL, _ expected: (HFImportError) -> Bool,
                                sourceLocation: SourceLocation = #_sourceLocation) {
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            _ = try HFViTMAE.load(directory: dir.path)
            Issue.record("loaded a malformed directory", sourceLocation: sourceLocation)
        } catch {
            #expect(expected(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func missingConfigFile() throws {
        let dir = try Self.malformed()
        try FileManager.default.removeItem(at: dir.appendingPathComponent("config.json"))
        Self.expectLoadError(dir) { $0 == .missingFile(dir.path + "/config.json") }
    }

    @Test func missingTensor() throws {
        let name = "vit.encoder.layer.1.attention.attention.key.weight"
        let dir = try Self.malformed(tensors: { $0[name] = nil })
        Self.expectLoadError(dir) { $0 == .missingTensor(name) }
    }

    @Test func wrongModelType() throws {
        let dir = try Self.malformed(config: { $0["model_type"] = "vit" })
        Self.expectLoadError(dir) {
            if case .unsupported(key: "model_type", value: "vit", _) = $0 { true } else { false }
        }
    }

    @Test func nonIntegerMLPRatio() throws {
        let dir = try Self.malformed(config: { $0["intermediate_size"] = 200 })
        Self.expectLoadError(dir) {
            if case .unsupported(key: "intermediate_size", value: "200", _) = $0 { true } else { false }
        }
    }

    @Test func unexpectedAndMisshapedTensorsAndForeignTables() throws {
        Self.expectLoadError(try Self.malformed(tensors: { $0["vit.pooler.dense.weight"] = Tensor(zeros: [4]) })) {
            $0 == .unexpectedTensor("vit.pooler.dense.weight")
        }
        Self.expectLoadError(try Self.malformed(tensors: { $0["vit.layernorm.bias"] = Tensor(zeros: [63]) })) {
            $0 == .shapeMismatch("vit.layernorm.bias", expected: [64], found: [63])
        }
        let table = "decoder.decoder_pos_embed"
        Self.expectLoadError(try Self.malformed(tensors: { $0[table] = Tensor(zeros: [1, 65, 32]) })) {
            if case .positionTableMismatch(table, _) = $0 { true } else { false }
        }
    }
}
