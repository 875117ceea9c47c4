import Config
import Foundation
import Testing
import TensorCore
@testable import Models

@Suite("UM-MAE and GreenMIM configurations") struct VisibleOnlyConfigTests {
    static let ummae = "ummae_swin_tiny_patch2_window4_posmlp16_dec32d1b_32"
    static let greenmim = "greenmim_swin_tiny_patch2_window4_dec32d1b_32"

    func fields(_ mutate: (inout ModelConfig) -> Void, from preset: String) -> [String] {
        var c = Presets.named(preset)!.model
        mutate(&c)
        do { try c.validate(); return [] } catch { return error.errors.map(\.field) }
    }

    @Test func invalidCombinationsNameTheirField() {
        let (um, green) = (Self.ummae, Self.greenmim)
        #expect(fields({ $0.maskRatio = 0.5 }, from: um) == ["mask_ratio"])
        #expect(fields({ $0.secondaryMaskRatio = 1 }, from: um) == ["secondary_mask_ratio"])
        #expect(fields({ $0.posMLPDim = 0 }, from: um) == ["pos_mlp_dim"])
        #expect(fields({ $0.maskUnit = 8 }, from: um) == ["mask_unit"])  // the ×2 decoder shuffle needs stride / 2
        #expect(fields({ $0.imageSize = 8 }, from: um) == ["image_size"])  // a 2×2 unit grid compacts to one token, then halves again
        #expect(fields({ $0.grouping = .fixed }, from: um) == ["grouping"])
        #expect(fields({ $0.decoderHeads = 3 }, from: um) == ["decoder_heads"])
        #expect(fields({ $0.decoderDim = 30; $0.decoderHeads = 3 }, from: um) == ["decoder_dim"])
        #expect(fields({ $0.maskUnit = 4 }, from: green) == ["mask_unit"])
        #expect(fields({ $0.groupSizeMax = 0 }, from: green) == ["group_size_max"])
        #expect(fields({ $0.secondaryMaskRatio = 0.25 }, from: green) == ["secondary_mask_ratio"])
        #expect(fields({ $0.maskRatio = 0.99 }, from: green) == ["mask_ratio"])
        #expect(fields({ $0.decoderDepth = 0 }, from: green) == ["decoder_dim"])
        #expect(fields({ $0.grouping = .search }, from: "simmim_swin_tiny_patch2_window4_32") == ["grouping"])
        #expect(fields({ $0.windowSize = 3 }, from: green) == ["window_size"])
    }

    @Test func optionsRoundTripThroughJSON() throws {
        var c = Presets.named(Self.greenmim)!.model
        c.grouping = .fixed
        c.groupSizeMax = 12
        c.decoderPositions = .reference
        let text = String(decoding: try JSONEncoder().encode(c), as: UTF8.self)
        #expect(text.contains("\"grouping\":\"fixed\"") && text.contains("\"group_size_max\":12")
                && text.contains("\"decoder_positions\":\"reference\""))
        #expect(try JSONDecoder().decode(ModelConfig.self, from: Data(text.utf8)) == c)
        // A config without the new keys (an older job) still decodes, with the defaults.
        let simmim = try JSONEncoder().encode(Presets.named("simmim_swin_tiny_patch2_window4_32")!.model)
        let old = try JSONDecoder().decode(ModelConfig.self, from: simmim)
        #expect(old.grouping == nil && old.resolvedGrouping == .search && old.resolvedSecondaryMaskRatio == 0.25)
    }

    @Test func parameterNamesFollowTheReferenceStateDicts() throws {
        let um = try ModelRegistry.make(Presets.named(Self.ummae)!.model, seed: 0)
        let names = Set(um.namedParameters().map(\.name))
        for n in ["patch_embed.proj.weight", "patch_embed.norm.bias", "vis_mask_token", "blocks.0.attn.posmlp.0.weight",
                  "blocks.1.attn.posmlp.2.bias", "blocks.2.downsample.norm.weight", "blocks.2.downsample.proj.weight",
                  "blocks.4.downsample.proj.bias", "blocks.5.mlp.fc2.weight", "norm.weight", "decoder_embed.weight",
                  "mask_token", "decoder_blocks.0.attn.qkv.weight", "decoder_norm.bias", "decoder_pred.weight"] {
            #expect(names.contains(n), "UM-MAE is missing \(n)")
        }
        #expect(!names.contains("blocks.3.downsample.proj.weight") && um.stateDict()["decoder_embed.weight"]?.shape == [128, 128])
        #expect(um.stateDict()["blocks.0.attn.posmlp.0.weight"]?.shape == [16, 2, 1, 1])
        #expect(Set(um.namedBuffers().map(\.name)) == ["decoder_pos_embed"])
        let green = try ModelRegistry.make(Presets.named(Self.greenmim)!.model, seed: 0)
        let gn = Set(green.namedParameters().map(\.name))
        for n in ["encoder.patch_embed.proj.weight", "encoder.layers.0.blocks.1.attn.relative_position_bias_table",
                  "encoder.layers.1.downsample.reduction.weight", "encoder.norm.weight", "decoder_embed.weight",
                  "mask_token", "decoder_blocks.0.mlp.fc1.weight", "decoder_pred.bias"] {
            #expect(gn.contains(n), "GreenMIM is missing \(n)")
        }
        #expect(!gn.contains("encoder.mask_token"))
    }

    @Test func weightDecayExclusionsFollowEachMethod() throws {
        let green = try ModelRegistry.make(Presets.named(Self.greenmim)!.model, seed: 0)
        let state = green.stateDict()
        #expect(green.excludedFromWeightDecay("mask_token", state["mask_token"]!))
        #expect(green.excludedFromWeightDecay("encoder.layers.0.blocks.0.attn.relative_position_bias_table",
                                             state["encoder.layers.0.blocks.0.attn.relative_position_bias_table"]!))
        #expect(!green.excludedFromWeightDecay("encoder.layers.0.blocks.0.attn.qkv.weight", state["encoder.layers.0.blocks.0.attn.qkv.weight"]!))
        let um = try ModelRegistry.make(Presets.named(Self.ummae)!.model, seed: 0)
        let us = um.stateDict()
        #expect(!um.excludedFromWeightDecay("vis_mask_token", us["vis_mask_token"]!))  // MAE-style: tokens decay
        #expect(um.excludedFromWeightDecay("blocks.0.attn.posmlp.0.bias", us["blocks.0.attn.posmlp.0.bias"]!))
    }
}
