/// MixMAE and ConvMAE presets and recipes (docs/methods/mixmae.md#presets,
/// docs/methods/convmae.md#presets), named by their hyperparameters: a 32 px CPU test size
/// (alias `tiny`) and the paper's (alias `default`).
extension Presets {
    /// MixMIM: AdamW (0.9, 0.95), wd 0.05, blr 1.5e-4 per 256 at batch 2048, 40 of 600 epochs warm-up.
    static let mixmaeRecipe = Recipe(blr: 1.5e-4, lrBatchDivisor: 256, absoluteLR: nil, minLR: 0,
                                     warmupFraction: 40.0 / 600, weightDecay: 0.05, beta1: 0.9, beta2: 0.95,
                                     clipGrad: nil, paperBatchSize: 2048)
    /// ConvMAE: as MAE but batch 2048, 40 of 1600 epochs warm-up.
    static let convmaeRecipe = Recipe(blr: 1.5e-4, lrBatchDivisor: 256, absoluteLR: nil, minLR: 0,
                                      warmupFraction: 40.0 / 1600, weightDecay: 0.05, beta1: 0.9, beta2: 0.95,
                                      clipGrad: nil, paperBatchSize: 2048)

    static func mixmae(_ name: String, _ summary: String, image: Int, patch: Int, dim: Int, depths: [Int], heads: [Int],
                       window: Int, decoder: (Int, Int, Int), tiny: Bool = false, isDefault: Bool = false) -> Preset {
        // One unit per last-stage token: 32 px at patch 4 with four stages.
        let stride = patch << (depths.count - 1)
        let config = ModelConfig(method: .mixmae, imageSize: image, patchSize: patch, embedDim: dim, depths: depths,
                                 heads: heads, windowSize: window, layerNormEps: 1e-5, maskRatio: 0.5, maskUnit: stride,
                                 decoderDim: decoder.0, decoderDepth: decoder.1, decoderHeads: decoder.2, normPixLoss: true)
        return Preset(name: name, summary: summary, model: config,
                      recipe: tiny ? tinyRecipe(mixmaeRecipe) : mixmaeRecipe, isTiny: tiny, isDefault: isDefault)
    }

    static func convmae(_ name: String, _ summary: String, image: Int, patch: Int, widths: [Int], depths: [Int], heads: Int,
                        decoder: (Int, Int, Int), tiny: Bool = false, isDefault: Bool = false) -> Preset {
        // Stages 2 and 3 halve the grid: the stride and the 16 px (paper) mask unit is patch·4.
        let doubling = widths == widths.indices.map { widths[0] << $0 }
        let config = ModelConfig(method: .convmae, imageSize: image, patchSize: patch, embedDim: widths[0], depths: depths,
                                 heads: [heads, heads, heads], layerNormEps: 1e-6, maskRatio: 0.75, maskUnit: patch * 4,
                                 decoderDim: decoder.0, decoderDepth: decoder.1, decoderHeads: decoder.2, normPixLoss: true,
                                 stageWidths: doubling ? nil : widths)
        return Preset(name: name, summary: summary, model: config,
                      recipe: tiny ? tinyRecipe(convmaeRecipe) : convmaeRecipe, isTiny: tiny, isDefault: isDefault)
    }

    static let mixConvPresets: [Preset] = [
        mixmae("mixmae_swin_tiny_patch2_window4_dec32d1b_32",
               "CPU test size: 32 px, T-Swin C32 (2,2,2), window 4 no shift, 8 px units, decoder 32×1",
               image: 32, patch: 2, dim: 32, depths: [2, 2, 2], heads: [2, 4, 8], window: 4, decoder: (32, 1, 2), tiny: true),
        mixmae("mixmae_swin_base_patch4_window14_dec512d8b_224",
               "Swin-B/W14 (windows 14-14-14-7, no shift) at 224 px, 32 px units, decoder 512×8 (the paper's)",
               image: 224, patch: 4, dim: 128, depths: [2, 2, 18, 2], heads: [4, 8, 16, 32], window: 14,
               decoder: (512, 8, 16), isDefault: true),
        convmae("convmae_convvit_tiny_patch8_dec32d1b_32",
                "CPU test size: 32 px, conv 16-32 + ViT 64 (depths 1-1-2, 4 heads), 8 px units, decoder 32×1",
                image: 32, patch: 2, widths: [16, 32, 64], depths: [1, 1, 2], heads: 4, decoder: (32, 1, 4), tiny: true),
        convmae("convmae_convvit_base_patch16_dec512d8b_224",
                "ConvMAE-B at 224 px: conv 256-384 + ViT 768 (depths 2-2-11, 12 heads), decoder 512×8 (the paper's)",
                image: 224, patch: 4, widths: [256, 384, 768], depths: [2, 2, 11], heads: 12, decoder: (512, 8, 16),
                isDefault: true),
    ]
}
