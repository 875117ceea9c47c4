import Foundation
import NN
import Testing
import TestSupport
import TensorCore
import Config
@testable import Models

/// `--format hf` of fine-tuned classifiers against a tiny transformers `ViTForImageClassification`
/// and `SwinForImageClassification` (Tools/reference/hf_classifier_reference.py): transformers'
/// weights, put into our classifier by the export's own names, give transformers' logits within
/// the fixture's float32 noise band, and the export holds exactly the tensors `save_pretrained`
/// wrote, with a config that names the architecture and its labels. That transformers loads an
/// export is checked by the script's `--check-export DIR` on the directories this suite writes
/// when HF_EXPORT_DIR is set.
@Suite("Hugging Face classifier export") struct HFClassifierExportTests {
    static func fixture() throws -> Fixture {
        let url = try #require(Bundle.module.url(forResource: "hf_classifier_tiny", withExtension: "bin", subdirectory: "Fixtures"))
        return try Fixture(contentsOf: url)
    }

    @Test(arguments: ["vit", "swin"]) func fineTunedClassifiersMatchTransformers(kind: String) throws {
        let fx = try Self.fixture()
        var file = fx.tensors(prefixed: "\(kind).param.")  // by transformers name
        let want = file
        let vit = kind == "vit"
        let backbone: any MIMModel = vit ? MAE(config: TimmExportTests.vitConfig, seed: 0)
                                         : SimMIM(config: TimmExportTests.swinConfig, seed: 0)
        let classifier = Classifier(backbone: backbone, classes: 3, pool: vit ? .cls : .mean, seed: 0)

        // transformers' tensors into ours, by the names the export writes.
        var state = backbone.stateDict()
        let encoder = vit ? TimmExport.vitTensors(state) : state.filter { $0.key.hasPrefix("encoder.") && $0.key != "encoder.mask_token" }
        let taken = try HFWeights.gather(encoder, from: &file, names: vit ? HFViTMAE.hfNames : HFSwinSimMIM.hfNames)
        if vit {
            // Our position table is computed: transformers' must be that very table.
            let table = try #require(taken["pos_embed"])
            #expect(TimmExportTests.maxDifference(table.scalars, state["pos_embed"]!.scalars) < 1e-6)
        }
        state.merge(taken) { _, new in new }
        try backbone.loadState(state, strict: true)
        let bias = try #require(classifier.head.bias)
        for (name, ours) in [("classifier.weight", classifier.head.weight), ("classifier.bias", bias)] {
            let removed = file.removeValue(forKey: name)
            let t = try #require(removed)
            #expect(t.shape == ours.shape)
            ours.pointer.update(from: t.pointer, count: t.count)
        }
        #expect(file.keys.sorted() == [], "transformers' tensors with no counterpart in ours")

        let logits = GradMode.withoutGrad { classifier(try! fx.tensor("\(kind).images").tensor) }
        #expect(logits.shape == [2, 3])
        let check = BandedComparison(fx, label: "hf_classifier_tiny \(kind)")
        check.expect(logits.scalars, "\(kind).logits")
        print("\(kind).logits max |Δ| \(TimmExportTests.maxDifference(logits.scalars, try fx.tensor("\(kind).logits").values)); \(check.summary())")

        let files = try ModelExport.files(classifier, format: .hf)
        #expect(files.map(\.name) == ["config.json", "model.safetensors"])
        let written = try SafeTensors.decode(try #require(files.last).bytes)
        #expect(written.metadata["format"] == "pt")
        #expect(Set(written.tensors.keys) == Set(want.keys), "export names differ from save_pretrained's")
        for (name, t) in want {
            #expect(written.tensors[name]?.shape == t.shape && written.tensors[name]?.scalars == t.scalars, "\(kind): \(name)")
        }
        let config = try #require(try JSONSerialization.jsonObject(with: Data(files[0].bytes)) as? [String: Any])
        #expect(config["architectures"] as? [String] == [vit ? "ViTForImageClassification" : "SwinForImageClassification"])
        #expect(config["model_type"] as? String == (vit ? "vit" : "swin"))
        #expect(config["id2label"] as? [String: String] == ["0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"])
        #expect(config["label2id"] as? [String: Int] == ["LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2])
        #expect(config["image_size"] as? Int == 32 && config["layer_norm_eps"] as? Double == (vit ? 1e-6 : 1e-5))
        if vit {
            #expect(config["hidden_size"] as? Int == 32 && config["num_hidden_layers"] as? Int == 2)
            #expect(config["num_attention_heads"] as? Int == 2 && config["intermediate_size"] as? Int == 128)
        } else {
            #expect(config["depths"] as? [Int] == [2, 2, 2] && config["num_heads"] as? [Int] == [2, 2, 4])
            #expect(config["embed_dim"] as? Int == 8 && config["window_size"] as? Int == 4)
        }
        if let dir = ProcessInfo.processInfo.environment["HF_EXPORT_DIR"] { try ModelExport.write(files, to: dir + "/\(kind)_cls") }
    }

    @Test func refusesWhatTransformersCannotCompute() throws {
        func reason(_ config: ModelConfig, pool: Pooling) -> String? {
            let classifier = Classifier(backbone: try! ModelRegistry.make(config, seed: 0), classes: 3, pool: pool, seed: 0)
            do { _ = try ModelExport.files(classifier, format: .hf); return nil } catch {
                guard case let .unsupported(_, format, reason) = error, format == .hf else { return "\(error)" }
                return reason
            }
        }
        #expect(reason(TimmExportTests.vitConfig, pool: .cls) == nil)
        #expect(reason(TimmExportTests.vitConfig, pool: .mean)?.contains("class token") == true)
        // GreenMIM's encoder is transformers' Swin, but its presets use eps 1e-6.
        var greenmim = try #require(Presets.forMethod(.greenmim).first { $0.isTiny }).model
        greenmim.layerNormEps = 1e-6
        #expect(reason(greenmim, pool: .mean)?.contains("eps 1e-5") == true)
        greenmim.layerNormEps = 1e-5
        #expect(reason(greenmim, pool: .mean) == nil)
        for method in [Method.mixmae, .ummae, .convmae] {
            let preset = try #require(Presets.forMethod(method).first { $0.isTiny })
            #expect(reason(preset.model, pool: .mean) != nil, "\(method) exported to transformers")
        }
    }
}
