import Config
import Testing
import TestSupport
import NN
import TensorCore
@testable import Models

@Suite("Classifier: the encoder under a head, for fine-tuning") struct ClassifierTests {
    func classifier(_ method: Method, pool: Pooling = .mean) throws -> Classifier {
        let preset = try Presets.resolve(method: method, preset: "tiny")
        return Classifier(backbone: try ModelRegistry.make(preset.model, seed: 1), classes: 5, pool: pool, seed: 2)
    }

    /// For every method: logits (B, classes); the trained tensors are the encoder's (nothing of
    /// a decoder, no mask token) and the head's, and a cross-entropy step reaches every one.
    @Test(arguments: Method.allCases) func everyTrainedTensorIsTheEncodersOrTheHeads(method: Method) throws {
        let c = try classifier(method)
        let names = c.namedParameters().map(\.name)
        #expect(names.suffix(2) == ["head.weight", "head.bias"])
        #expect(!names.contains { $0.contains("decoder") || $0.contains("mask_token") }, "\(names)")
        #expect(names.count < c.backbone.namedParameters().count + 2)
        let images = syntheticImages(count: 3, size: c.backbone.config.imageSize, seed: 3)
        let logits = c(images)
        #expect(logits.shape == [3, 5])
        let targets = Array(repeating: Float(0.2), count: 15)
        Tensor.softTargetCrossEntropy(logits, targets: targets).backward()
        let missing = c.namedParameters().filter { $0.tensor.grad == nil }.map(\.name)
        #expect(missing.isEmpty, "no gradient for \(missing)")
        #expect(Set(c.stateDict().keys) == Set(names))
        #expect(c.blocks.count >= 2)
    }

    /// A fine-tune's backbone is built without the decoder's blocks, and its encoder is the
    /// pretraining model's, weight for weight: same names, same values from the same seed, so
    /// a fine-tune from scratch starts where it always did.
    @Test(arguments: Method.allCases) func aBackboneWithoutDecoderBlocksHasTheSameEncoder(method: Method) throws {
        let preset = try Presets.resolve(method: method, preset: "tiny")
        let full = try ModelRegistry.make(preset.model, seed: 1)
        let lean = try ModelRegistry.make(preset.model, seed: 1, decoderBlocks: false)
        let fullNames = Set(full.namedParameters().map(\.name)), leanNames = Set(lean.namedParameters().map(\.name))
        #expect(leanNames.isSubset(of: fullNames))
        #expect(!leanNames.contains { $0.hasPrefix("decoder_blocks.") })
        #expect(leanNames.count < fullNames.count || !fullNames.contains { $0.hasPrefix("decoder_blocks.") })
        let a = Classifier(backbone: full, classes: 5, pool: .mean, seed: 2)
        let b = Classifier(backbone: lean, classes: 5, pool: .mean, seed: 2)
        #expect(a.namedParameters().map(\.name) == b.namedParameters().map(\.name))
        for ((name, x), (_, y)) in zip(a.namedParameters(), b.namedParameters()) {
            #expect(x.shape == y.shape && x.scalars == y.scalars, "\(name) differs")
        }
        let images = syntheticImages(count: 2, size: preset.model.imageSize, seed: 3)
        #expect(a(images).scalars == b(images).scalars)
    }

    /// Layer ids of a ViT (MAE tiny, depth 2): embedding 0, block i → i + 1, final norm and head
    /// L + 1; rates decay^(L + 1 − id).
    @Test func vitLayersFollowTheBlocks() throws {
        let c = try classifier(.mae, pool: .cls)
        let ids = Dictionary(uniqueKeysWithValues: c.namedParameters().map { ($0.name, c.layerID($0.name)) })
        #expect(ids["cls_token"] == 0 && ids["patch_embed.proj.weight"] == 0)
        #expect(ids["blocks.0.attn.qkv.weight"] == 1 && ids["blocks.1.mlp.fc2.bias"] == 2)
        #expect(ids["norm.weight"] == 3 && ids["head.weight"] == 3 && c.layerCount == 4)
        #expect(c.lrScale("head.bias", decay: 0.5) == 1 && c.lrScale("blocks.1.norm1.weight", decay: 0.5) == 0.5)
        #expect(c.lrScale("patch_embed.proj.bias", decay: 0.5) == 0.125)
    }

    /// Layer ids of a Swin (SimMIM tiny, depths 2, 2, 2): patch merging goes with the last block
    /// of its stage, as SimMIM's fine-tuning assigns it.
    @Test func swinLayersCountBlocksAcrossStages() throws {
        let c = try classifier(.simmim)
        let id = { c.layerID($0) }
        #expect(id("encoder.patch_embed.proj.weight") == 0 && id("encoder.patch_embed.norm.bias") == 0)
        #expect(id("encoder.layers.0.blocks.0.attn.qkv.weight") == 1 && id("encoder.layers.0.blocks.1.mlp.fc1.weight") == 2)
        #expect(id("encoder.layers.0.downsample.reduction.weight") == 2)
        #expect(id("encoder.layers.1.blocks.0.norm1.weight") == 3 && id("encoder.layers.2.blocks.1.norm2.bias") == 6)
        #expect(id("encoder.norm.weight") == 7 && id("head.weight") == 7)
    }

    /// Drop-path rates rise linearly over the encoder's blocks, from 0 to the rate.
    @Test func dropPathRisesOverTheBlocks() throws {
        let c = try classifier(.simmim)
        c.setDropPath(0.25)
        let rates = c.blocks.map(\.dropPathRate)
        #expect(rates.count == 6 && rates.first == 0 && rates.last == 0.25)
        #expect(zip(rates, rates.dropFirst()).allSatisfy { $0 < $1 })
    }

    /// A fine-tuning checkpoint loads back strictly; a pretraining one loads as the encoder.
    @Test func statesLoadStrictlyAndEncodersFromPretraining() throws {
        let a = try classifier(.mae), b = try classifier(.mae)
        let pretrained = try ModelRegistry.make(Presets.resolve(method: .mae, preset: "tiny").model, seed: 9)
        try b.loadEncoder(from: pretrained.stateDict())
        #expect(b.stateDict()["blocks.0.attn.qkv.weight"]!.scalars == pretrained.stateDict()["blocks.0.attn.qkv.weight"]!.scalars)
        try a.loadState(b.stateDict())
        #expect(a.stateDict()["norm.weight"]!.scalars == b.stateDict()["norm.weight"]!.scalars)
        #expect(throws: StateError.self) { try a.loadState(pretrained.stateDict()) }
    }
}
