import Foundation
import NN
import Testing
import TestSupport
import TensorCore
@testable import Models

/// Hugging Face `SwinForMaskedImageModeling` import and export against a tiny model saved by
/// transformers (Tools/reference/hf_swin_simmim_reference.py): the same latent, reconstruction and
/// loss as transformers on the same mask; export → import is lossless and writes transformers'
/// names. That transformers loads an export is checked by the script's `--check-export DIR` on
/// the directory this suite writes when HF_EXPORT_DIR is set.
@Suite("Hugging Face Swin SimMIM interop") struct HFSwinSimMIMTests {
    static func fixtureDirectory() throws -> String {
        try #require(Bundle.module.url(forResource: "hf_swin_simmim_tiny", withExtension: nil, subdirectory: "Fixtures")).path
    }

    static func fixture() throws -> Fixture {
        let url = try #require(Bundle.module.url(forResource: "hf_swin_simmim_tiny", withExtension: "bin", subdirectory: "Fixtures"))
        return try Fixture(contentsOf: url)
    }

    static func forward(_ model: SimMIM, _ fx: Fixture) throws -> MIMOutput {
        let spec = MaskSpec.units(try fx.tensor("unit_mask").tensor)
        let images = try fx.tensor("pixel_values").tensor
        return GradMode.withoutGrad { model.forward(images, mask: spec) }
    }

    @Test func matchesTransformers() throws {
        let model = try HFSwinSimMIM.load(directory: Self.fixtureDirectory())
        #expect(model.config.depths == [2, 2, 2] && model.config.heads == [2, 2, 4] && model.config.windowSize == 4)
        #expect(model.config.maskUnit == 8 && model.config.encoderStride == 8)
        let check = BandedComparison(try Self.fixture(), label: "hf_swin_simmim_tiny")
        let out = try Self.forward(model, check.fixture)
        check.expect(out.latent.scalars, "latent")
        check.expect(out.prediction.scalars, "reconstruction")
        check.expect([out.loss.item], "loss")
        for (name, ours) in [("latent", out.latent.scalars), ("reconstruction", out.prediction.scalars), ("loss", [out.loss.item])] {
            let ref = try check.fixture.tensor(name).values
            print("hf_swin_simmim_tiny \(name) max |Δ| \(zip(ours, ref).map { abs($0 - $1) }.max() ?? 0)")
        }
        print(check.summary())
    }

    @Test func exportThenImportIsLossless() throws {
        let model = try HFSwinSimMIM.load(directory: Self.fixtureDirectory())
        let files = try ModelExport.files(model, format: .hf)
        let written = try SafeTensors.decode(try #require(files.first { $0.name == "model.safetensors" }).bytes)
        let original = try SafeTensors.read(path: Self.fixtureDirectory() + "/model.safetensors")
        #expect(written.metadata["format"] == "pt")
        #expect(Set(written.tensors.keys) == Set(original.tensors.keys))
        for (name, t) in original.tensors {
            #expect(written.tensors[name]?.shape == t.shape && written.tensors[name]?.scalars == t.scalars, "\(name)")
        }
        let dir = Scratch.url("hf-swin").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ModelExport.write(files, to: dir)
        if let keep = ProcessInfo.processInfo.environment["HF_EXPORT_DIR"] { try ModelExport.write(files, to: keep) }
        let again = try HFSwinSimMIM.load(directory: dir)
        #expect(again.config == model.config)
        let fx = try Self.fixture()
        #expect(try Self.forward(again, fx).loss.item == Self.forward(model, fx).loss.item)
        // import-hf picks the mapping by model_type.
        #expect(try HFImport.load(directory: dir) is SimMIM)
    }

    @Test func refusesWhatItCannotRepresent() throws {
        let source = try Self.fixtureDirectory()
        let dir = Scratch.url("hf-swin")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(atPath: source + "/model.safetensors", toPath: dir.appendingPathComponent("model.safetensors").path)
        let data = try Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))
        let cases: [(String, Any)] = [("layer_norm_eps", 1e-6), ("use_absolute_embeddings", true), ("encoder_stride", 4)]
        for (key, value) in cases {
            var config = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            config[key] = value
            try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
            do {
                _ = try HFSwinSimMIM.load(directory: dir.path)
                Issue.record("imported \(key) = \(value)")
            } catch {
                guard case .unsupported(key: key, _, _) = error else { Issue.record("\(key): \(error)"); continue }
            }
        }
        var config = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        config["model_type"] = "vit"
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
        #expect(throws: HFImportError.self) { try HFImport.load(directory: dir.path) }
    }
}
