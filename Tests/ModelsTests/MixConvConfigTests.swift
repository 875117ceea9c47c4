import Config
import Foundation
import Testing
import TensorCore
@testable import Models

@Suite("MixMAE and ConvMAE configurations, presets and names") struct MixConvConfigTests {
    static let mix = "mixmae_swin_tiny_patch2_window4_dec32d1b_32", conv = "convmae_convvit_tiny_patch8_dec32d1b_32"

    func fields(_ mutate: (inout ModelConfig) -> Void, from preset: String) -> [String] {
        var c = Presets.named(preset)!.model
        mutate(&c)
        do { try c.validate(); return [] } catch { return error.errors.map(\.field) }
    }

    @Test func presetsResolveAndDescribeThePapers() throws {
        for m in [Method.mixmae, .convmae] {
            #expect(try Presets.resolve(method: m, preset: "tiny").model.imageSize == 32)
            #expect(try Presets.resolve(method: m, preset: "default").model.imageSize == 224)
        }
        let mix = try Presets.resolve(method: .mixmae, preset: "default").model
        #expect(mix.stageGrids == [56, 28, 14, 7] && mix.maskUnit == 32 && mix.unitGrid == 7 && mix.encoderDim == 1024)
        let conv = try Presets.resolve(method: .convmae, preset: "default").model
        #expect(conv.stageDims == [256, 384, 768] && conv.encoderDim == 768 && conv.encoderStride == 16 && conv.maskUnit == 16)
        let tiny = Presets.named(Self.conv)!.model
        #expect(tiny.stageDims == [16, 32, 64] && tiny.stageWidths == nil && tiny.stageGrids == [16, 8, 4])
    }

    @Test func invalidFieldsAreNamed() {
        #expect(fields({ $0.maskUnit = 16 }, from: Self.mix) == ["mask_unit"])
        #expect(fields({ $0.maskRatio = 0.05 }, from: Self.mix) == ["mask_ratio"])  // ⌊16·0.05⌋ = 0 masked
        #expect(fields({ $0.decoderHeads = 3 }, from: Self.mix) == ["decoder_heads"])
        #expect(fields({ $0.decoderDim = 30; $0.decoderHeads = 2 }, from: Self.mix) == ["decoder_dim"])
        #expect(fields({ $0.windowSize = 3 }, from: Self.mix) == ["window_size"])
        #expect(fields({ $0.stageWidths = [32, 64, 128] }, from: Self.mix) == ["stage_widths"])
        #expect(fields({ $0.depths = [1, 1, 1, 1]; $0.heads = [4, 4, 4, 4] }, from: Self.conv).contains("depths"))
        #expect(fields({ $0.stageWidths = [16, 32] }, from: Self.conv) == ["stage_widths"])
        #expect(fields({ $0.stageWidths = [16, 32, 66] }, from: Self.conv).contains("stage_widths"))
        #expect(fields({ $0.heads = [4, 4, 3] }, from: Self.conv) == ["heads"])
        #expect(fields({ $0.heads = [3, 3, 4] }, from: Self.conv) == [])  // conv stages have no heads
        #expect(fields({ $0.maskUnit = 4 }, from: Self.conv) == ["mask_unit"])
        #expect(fields({ $0.decoderDepth = 0 }, from: Self.conv) == ["decoder_dim"])
        #expect(fields({ $0.maskRatio = 0.97 }, from: Self.conv) == ["mask_ratio"])  // keeps ⌊16·0.03⌋ = 0
    }

    @Test func oldConfigJSONStillDecodesAndWidthsRoundTrip() throws {
        let old = #"{"method":"simmim","image_size":32,"patch_size":2,"embed_dim":32,"depths":[2,2,2],"heads":[2,4,8],"window_size":4,"mlp_ratio":4,"layer_norm_eps":1e-5,"mask_ratio":0.6,"mask_unit":8,"decoder_dim":0,"decoder_depth":0,"decoder_heads":0,"norm_pix_loss":false}"#
        #expect(try JSONDecoder().decode(ModelConfig.self, from: Data(old.utf8)) == Presets.named("simmim_swin_tiny_patch2_window4_32")!.model)
        let conv = try Presets.resolve(method: .convmae, preset: "default").model
        let data = try JSONEncoder().encode(conv)
        #expect(String(decoding: data, as: UTF8.self).contains(#""stage_widths":[256,384,768]"#))
        #expect(try JSONDecoder().decode(ModelConfig.self, from: data) == conv)
    }

    @Test func parameterNamesFollowTheOfficialStateDicts() throws {
        let mix = try ModelRegistry.make(Presets.named(Self.mix)!.model, seed: 0)
        let mn = Set(mix.namedParameters().map(\.name))
        for n in ["patch_embed.proj.weight", "patch_embed.norm.bias", "layers.0.blocks.1.attn.relative_position_bias_table",
                  "layers.2.blocks.0.attn.qkv.weight", "layers.1.downsample.reduction.weight", "norm.weight", "mask_token",
                  "decoder_embed.weight", "decoder_blocks.0.attn.proj.bias", "decoder_norm.bias", "decoder_pred.weight"] {
            #expect(mn.contains(n), "missing \(n)")
        }
        #expect(Set(mix.namedBuffers().map(\.name)) == ["absolute_pos_embed", "decoder_pos_embed"])
        #expect(mix.excludedFromWeightDecay("mask_token", mix.stateDict()["mask_token"]!))
        #expect(!mix.excludedFromWeightDecay("layers.0.blocks.0.attn.relative_position_bias_table",
                                             mix.stateDict()["layers.0.blocks.0.attn.relative_position_bias_table"]!))
        let conv = try ModelRegistry.make(Presets.named(Self.conv)!.model, seed: 0)
        let state = conv.stateDict()
        let shapes: [String: [Int]] = [
            "patch_embed1.proj.weight": [16, 3, 2, 2], "patch_embed3.norm.weight": [64], "patch_embed4.weight": [64, 64],
            "blocks1.0.conv1.weight": [16, 16, 1, 1], "blocks1.0.attn.weight": [16, 1, 5, 5], "blocks2.0.mlp.fc1.weight": [128, 32, 1, 1],
            "blocks3.1.attn.qkv.weight": [192, 64], "stage1_output_decode.weight": [64, 16, 4, 4],
            "stage2_output_decode.weight": [64, 32, 2, 2], "pos_embed": [1, 16, 64], "decoder_pos_embed": [1, 16, 32],
            "mask_token": [1, 1, 32], "decoder_pred.weight": [192, 32],
        ]
        for (n, s) in shapes { #expect(state[n]?.shape == s, "\(n): \(String(describing: state[n]?.shape))") }
        #expect(!conv.excludedFromWeightDecay("mask_token", state["mask_token"]!))  // MAE's rule: tokens decay
    }
}
