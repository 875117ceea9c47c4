import Config
import Testing
import TensorCore
@testable import Models

@Suite("Configurations and presets") struct ConfigTests {
    @Test func everyPresetValidatesAndAliasesResolve() throws {
        for p in Presets.all { try p.model.validate() }
        for m in Method.allCases {
            let tiny = try Presets.resolve(method: m, preset: "tiny")
            let paper = try Presets.resolve(method: m, preset: "default")
            #expect(tiny.isTiny && paper.isDefault)
        }
        #expect(throws: ConfigError.self) { try Presets.resolve(method: .mae, preset: "simmim_swin_tiny_patch2_window4_32") }
    }

    func fields(_ mutate: (inout ModelConfig) -> Void, from preset: String) -> [String] {
        var c = Presets.named(preset)!.model
        mutate(&c)
        do { try c.validate(); return [] } catch { return error.errors.map(\.field) }
    }

    @Test func invalidCombinationsNameTheirField() {
        let mae = "mae_vit_tiny_patch4_dec32d1b_32", swin = "simmim_swin_tiny_patch2_window4_32"
        #expect(fields({ $0.patchSize = 5 }, from: mae).contains("patch_size"))
        #expect(fields({ $0.maskRatio = 1 }, from: mae) == ["mask_ratio"])
        #expect(fields({ $0.maskRatio = 0 }, from: swin) == ["mask_ratio"])
        #expect(fields({ $0.heads = [3] }, from: mae) == ["heads"])
        #expect(fields({ $0.decoderHeads = 3 }, from: mae) == ["decoder_heads"])
        #expect(fields({ $0.windowSize = 3 }, from: swin) == ["window_size"])
        #expect(fields({ $0.heads = [2, 4] }, from: swin) == ["heads"])
        #expect(fields({ $0.maskUnit = 4 }, from: swin) == ["mask_unit"])
        #expect(fields({ $0.imageSize = 36 }, from: swin).contains("mask_unit"))
        #expect(fields({ $0.depths = [2, 2, 2, 2, 2] }, from: swin).contains("heads"))
    }

    @Test func configsRoundTripThroughJSONWithSnakeCaseKeys() throws {
        let c = Presets.named("simmim_swin_base_patch4_window6_192")!.model
        let data = try JSONEncoder().encode(c)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"window_size\":6") && text.contains("\"mask_unit\":32"))
        #expect(try JSONDecoder().decode(ModelConfig.self, from: data) == c)
    }

    @Test func parameterNamesFollowTheReferenceStateDicts() throws {
        let mae = try ModelRegistry.make(Presets.named("mae_vit_tiny_patch4_dec32d1b_32")!.model, seed: 0)
        let names = Set(mae.namedParameters().map(\.name))
        for n in ["cls_token", "mask_token", "patch_embed.proj.weight", "blocks.1.attn.qkv.weight", "norm.bias",
                  "decoder_embed.weight", "decoder_blocks.0.mlp.fc2.bias", "decoder_norm.weight", "decoder_pred.bias"] {
            #expect(names.contains(n), "missing \(n)")
        }
        #expect(Set(mae.namedBuffers().map(\.name)) == ["pos_embed", "decoder_pos_embed"])
        let simmim = try ModelRegistry.make(Presets.named("simmim_swin_tiny_patch2_window4_32")!.model, seed: 0)
        let sn = Set(simmim.namedParameters().map(\.name))
        for n in ["encoder.patch_embed.proj.weight", "encoder.patch_embed.norm.weight", "encoder.mask_token",
                  "encoder.layers.0.blocks.1.attn.relative_position_bias_table", "encoder.layers.1.downsample.reduction.weight",
                  "encoder.layers.1.downsample.norm.bias", "encoder.norm.weight", "decoder.0.weight", "decoder.0.bias"] {
            #expect(sn.contains(n), "missing \(n)")
        }
        #expect(!sn.contains("encoder.layers.2.downsample.reduction.weight"))
        #expect(simmim.stateDict()["decoder.0.weight"]?.shape == [192, 128, 1, 1])
    }
}

import Foundation

@Suite("Weight shapes and behaviour settings") struct WeightShapeTests {
    /// What `init` relies on: changing any behaviour setting leaves every parameter's name and
    /// shape as they were, for every method, so such a checkpoint loads.
    @Test(arguments: Method.allCases) func behaviourSettingsKeepEveryParameterShape(method: Method) throws {
        let base = try JobConfig.resolve(JobRequest(method: method.rawValue, preset: "tiny")).model
        let shapes = { (m: ModelConfig) throws -> [String: [Int]] in
            Dictionary(uniqueKeysWithValues: try ModelRegistry.make(m, seed: 0).namedParameters().map { ($0.name, $0.tensor.shape) })
        }
        let reference = try shapes(base)
        let changes: [String: JSONValue] = [
            "layer_norm_eps": .number(1e-3), "mask_ratio": .number(base.maskRatio == 0.5 ? 0.6 : 0.5), "norm_pix_loss": .bool(!base.normPixLoss),
            "secondary_mask_ratio": .number(0.1), "decoder_positions": .string("reference"), "grouping": .string("fixed"),
            "group_size_max": .number(8),
        ]
        #expect(Set(changes.keys) == ModelConfig.behaviourFields)
        // UM-MAE's ratio is fixed by its sampling (a 422 otherwise).
        for (key, value) in changes where JobSchema.field(named: key)?.applies(to: method) == true
            && !(key == "mask_ratio" && method.fixedMaskRatio != nil) {
            let changed = try JobConfig.resolve(JobRequest(method: method.rawValue, preset: "tiny", overrides: [key: value])).model
            #expect(changed != base, "\(key) changed nothing")
            #expect(try shapes(changed) == reference, "\(method) \(key)")
            #expect(changed.weightShapeDifference(from: base) == nil)
        }
        var wider = base
        wider.embedDim *= 2
        #expect(wider.weightShapeDifference(from: base)?.hasPrefix("embed_dim") == true)
    }
}
