import Foundation
import NN
import Testing
import TestSupport
import TensorCore
import Config
@testable import Models

/// `--format timm` against a tiny timm ViT and Swin (Tools/reference/timm_export_reference.py):
/// timm's weights, put into our MAE and SimMIM by the inverse of the export's names, give timm's
/// forward_features within its float32 noise band, and an export holds exactly timm's tensor
/// names, shapes and values. That timm loads an export is checked by the script's
/// `--check-export DIR` on the directories this suite writes when TIMM_EXPORT_DIR is set.
@Suite("timm export") struct TimmExportTests {
    static func fixture() throws -> Fixture {
        let url = try #require(Bundle.module.url(forResource: "timm_tiny", withExtension: "bin", subdirectory: "Fixtures"))
        return try Fixture(contentsOf: url)
    }

    /// The fixture's `<kind>.param.*` tensors by timm name.
    static func timmWeights(_ fx: Fixture, _ kind: String) -> [String: Tensor] { fx.tensors(prefixed: "\(kind).param.") }

    static let vitConfig = ModelConfig(method: .mae, imageSize: 32, patchSize: 4, embedDim: 32, depths: [2], heads: [2],
                                       layerNormEps: 1e-6, maskRatio: 0.75, maskUnit: 4, decoderDim: 16, decoderDepth: 1,
                                       decoderHeads: 2, normPixLoss: true)
    static let swinConfig = ModelConfig(method: .simmim, imageSize: 32, patchSize: 2, embedDim: 8, depths: [2, 2, 2],
                                        heads: [2, 2, 4], windowSize: 4, layerNormEps: 1e-5, maskRatio: 0.6, maskUnit: 8,
                                        normPixLoss: false)

    /// Our model with its encoder replaced by timm's weights (names mapped back), the rest as initialised.
    static func load(_ model: some MIMModel, _ weights: [String: Tensor], ourName: (String) -> String) throws {
        var state = model.stateDict()
        for (timm, t) in weights {
            let name = ourName(timm)
            let ours = try #require(state[name], "timm's \(timm) has no counterpart \(name)")
            #expect(ours.shape == t.shape, "\(timm): timm \(t.shape), ours \(ours.shape)")
            state[name] = t
        }
        try model.loadState(state, strict: true)
    }

    static func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(Float(0)) { m, p in max(m, abs(p.0 - p.1)) }
    }

    static func expectExport(_ model: some MIMModel, equals weights: [String: Tensor], kind: String) throws -> [ExportedFile] {
        let files = try ModelExport.files(model, format: .timm)
        #expect(files.map(\.name) == ["config.json", "model.safetensors"])
        let written = try SafeTensors.decode(try #require(files.last).bytes)
        #expect(written.metadata["format"] == "pt")
        #expect(Set(written.tensors.keys) == Set(weights.keys), "\(kind): export names differ from timm's state_dict")
        for (name, t) in weights {
            #expect(written.tensors[name]?.shape == t.shape && written.tensors[name]?.scalars == t.scalars, "\(kind): \(name)")
        }
        if let dir = ProcessInfo.processInfo.environment["TIMM_EXPORT_DIR"] {
            try ModelExport.write(files, to: dir + "/" + kind)
        }
        return files
    }

    @Test func vitMatchesTimm() throws {
        let fx = try Self.fixture()
        let weights = Self.timmWeights(fx, "vit")
        let model = MAE(config: Self.vitConfig, seed: 0)
        // pos_embed is our fixed sin-cos buffer: timm's must be that very table for the model to be representable.
        let table = try #require(weights["pos_embed"])
        #expect(Self.maxDifference(table.scalars, model.stateDict()["pos_embed"]!.scalars) < 1e-6)
        try Self.load(model, weights) { $0 }

        let check = BandedComparison(fx, label: "timm_tiny vit")
        let features = model.features(try fx.tensor("vit.images").tensor, pool: .none)  // (B, 1 + L, D)
        #expect(features.shape == [2, 65, 32])
        check.expect(features.scalars, "vit.features")
        print("vit.features max |Δ| \(Self.maxDifference(features.scalars, try fx.tensor("vit.features").values)); \(check.summary())")

        let files = try Self.expectExport(model, equals: weights, kind: "vit")
        let config = try #require(try JSONSerialization.jsonObject(with: Data(files[0].bytes)) as? [String: Any])
        #expect(config["architecture"] as? String == "vit_base_patch16_224")
        let args = try #require(config["model_args"] as? [String: Any])
        #expect(args["img_size"] as? Int == 32 && args["patch_size"] as? Int == 4 && args["embed_dim"] as? Int == 32)
        #expect(args["depth"] as? Int == 2 && args["num_heads"] as? Int == 2 && args["num_classes"] as? Int == 0)
    }

    @Test func swinMatchesTimm() throws {
        let fx = try Self.fixture()
        let weights = Self.timmWeights(fx, "swin")
        let model = SimMIM(config: Self.swinConfig, seed: 0)
        try Self.load(model, weights) { "encoder." + TimmExport.ourSwinName($0) }

        let check = BandedComparison(fx, label: "timm_tiny swin")
        let features = model.features(try fx.tensor("swin.images").tensor, pool: .none)  // (B, L_last, C_last) = NHWC
        #expect(features.shape == [2, 16, 32])
        check.expect(features.scalars, "swin.features")
        print("swin.features max |Δ| \(Self.maxDifference(features.scalars, try fx.tensor("swin.features").values)); \(check.summary())")

        let files = try Self.expectExport(model, equals: weights, kind: "swin")
        let config = try #require(try JSONSerialization.jsonObject(with: Data(files[0].bytes)) as? [String: Any])
        let args = try #require(config["model_args"] as? [String: Any])
        #expect(args["depths"] as? [Int] == [2, 2, 2] && args["num_heads"] as? [Int] == [2, 2, 4])
        #expect(args["window_size"] as? Int == 4 && args["embed_dim"] as? Int == 8)
    }

    /// A fine-tuned classifier against timm's classifier of the same encoder and head, for each
    /// pooling timm can express (the class token; the mean of the patch tokens after the norm,
    /// `fc_norm` false; Swin's mean): the logits agree within the fixture's noise band, and the
    /// export holds exactly timm's state_dict, head included, with a config that builds it.
    @Test(arguments: ["vit_token", "vit_avg", "swin_avg"]) func fineTunedClassifiersMatchTimms(name: String) throws {
        let fx = try Self.fixture()
        let kind = String(name.prefix { $0 != "_" })
        let encoder = Self.timmWeights(fx, kind), head = Self.timmWeights(fx, name)
        let backbone: any MIMModel
        if kind == "vit" {
            let mae = MAE(config: Self.vitConfig, seed: 0)
            try Self.load(mae, encoder) { $0 }
            backbone = mae
        } else {
            let simmim = SimMIM(config: Self.swinConfig, seed: 0)
            try Self.load(simmim, encoder) { "encoder." + TimmExport.ourSwinName($0) }
            backbone = simmim
        }
        let classifier = Classifier(backbone: backbone, classes: 3, pool: name == "vit_token" ? .cls : .mean, seed: 0)
        let prefix = kind == "vit" ? "head." : "head.fc."
        for part in ["weight", "bias"] {
            let t = try #require(head[prefix + part]), ours = part == "weight" ? classifier.head.weight : try #require(classifier.head.bias)
            #expect(t.shape == ours.shape)
            ours.pointer.update(from: t.pointer, count: t.count)
        }
        let logits = GradMode.withoutGrad { classifier(try! fx.tensor("\(kind).images").tensor) }
        #expect(logits.shape == [2, 3])
        let check = BandedComparison(fx, label: "timm_tiny \(name)")
        check.expect(logits.scalars, "\(name).logits")
        print("\(name).logits max |Δ| \(Self.maxDifference(logits.scalars, try fx.tensor("\(name).logits").values)); \(check.summary())")

        let files = try ModelExport.files(classifier, format: .timm)
        let written = try SafeTensors.decode(try #require(files.last).bytes).tensors
        let want = encoder.merging(head) { a, _ in a }
        #expect(Set(written.keys) == Set(want.keys), "\(name): export names differ from timm's state_dict")
        for (key, t) in want { #expect(written[key]?.scalars == t.scalars, "\(name): \(key)") }
        let config = try #require(try JSONSerialization.jsonObject(with: Data(files[0].bytes)) as? [String: Any])
        let args = try #require(config["model_args"] as? [String: Any])
        #expect(config["num_classes"] as? Int == 3 && args["num_classes"] as? Int == 3)
        #expect(args["global_pool"] as? String == (name == "vit_token" ? "token" : "avg"))
        #expect(args["fc_norm"] as? Bool == (name == "vit_avg" ? false : nil))
        // transformers' ViT classifies the class token only (HFClassifierExportTests covers the others).
        if name == "vit_avg" { #expect(throws: ExportError.self) { try ModelExport.files(classifier, format: .hf) } }
        if let dir = ProcessInfo.processInfo.environment["TIMM_EXPORT_DIR"] { try ModelExport.write(files, to: dir + "/" + name) }
    }

    @Test func refusesWhatTimmCannotCompute() throws {
        func reason(_ config: ModelConfig) -> String? {
            do { _ = try ModelExport.files(try ModelRegistry.make(config, seed: 0), format: .timm); return nil } catch {
                guard case let .unsupported(_, format, reason) = error as? ExportError, format == .timm else { return "\(error)" }
                return reason
            }
        }
        var mae = Self.vitConfig
        mae.layerNormEps = 1e-12  // a model imported from Hugging Face
        #expect(reason(mae)?.contains("eps 1e-6") == true)
        // GreenMIM's encoder is timm's Swin, but its presets use eps 1e-6.
        var greenmim = try #require(Presets.forMethod(.greenmim).first { $0.isTiny }).model
        greenmim.layerNormEps = 1e-6
        #expect(reason(greenmim)?.contains("eps 1e-5") == true)
        greenmim.layerNormEps = 1e-5
        #expect(reason(greenmim) == nil)
        for method in [Method.mixmae, .ummae, .convmae] {
            let preset = try #require(Presets.forMethod(method).first { $0.isTiny })
            #expect(reason(preset.model) != nil, "\(method) exported to timm")
        }
    }
}
