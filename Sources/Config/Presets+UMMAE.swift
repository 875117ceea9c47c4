/// UM-MAE presets (docs/methods/ummae.md#presets), named by their hyperparameters.
extension Presets {
    /// AdamW (0.9, 0.95), wd 0.05, blr 1.5e-4 per 256 at batch 4096, 10 of 200 epochs warm-up.
    static let ummaeRecipe = Recipe(blr: 1.5e-4, lrBatchDivisor: 256, absoluteLR: nil, minLR: 0, warmupFraction: 0.05,
                                    weightDecay: 0.05, beta1: 0.9, beta2: 0.95, clipGrad: nil, paperBatchSize: 4096)

    static func ummae(_ name: String, _ summary: String, image: Int, patch: Int, dim: Int, depths: [Int], heads: [Int],
                      window: Int, unit: Int, posMLP: Int, decoder: (Int, Int, Int), tiny: Bool = false,
                      isDefault: Bool = false) -> Preset {
        var config = ModelConfig(method: .ummae, imageSize: image, patchSize: patch, embedDim: dim, depths: depths,
                                 heads: heads, windowSize: window, layerNormEps: 1e-6, maskRatio: 0.75, maskUnit: unit,
                                 decoderDim: decoder.0, decoderDepth: decoder.1, decoderHeads: decoder.2, normPixLoss: true)
        config.secondaryMaskRatio = 0.25
        config.posMLPDim = posMLP
        config.decoderPositions = .true
        return Preset(name: name, summary: summary, model: config,
                      recipe: tiny ? tinyRecipe(ummaeRecipe) : ummaeRecipe, isTiny: tiny, isDefault: isDefault)
    }

    static let ummaePresets: [Preset] = [
        ummae("ummae_swin_tiny_patch2_window4_posmlp16_dec32d1b_32",
              "CPU test size: 32 px, T-Swin C32 (2,2,2) with coordinate-MLP bias, 4 px units, compact 8×8, window 4",
              image: 32, patch: 2, dim: 32, depths: [2, 2, 2], heads: [2, 4, 8], window: 4, unit: 4, posMLP: 16,
              decoder: (32, 1, 2), tiny: true),
        ummae("ummae_swin_tiny_patch4_window8_posmlp32_dec512d2b_256",
              "Swin-T at 256 px, 16 px units, compact 32×32 with window 8, decoder 512×2 (the paper's)",
              image: 256, patch: 4, dim: 96, depths: [2, 2, 6, 2], heads: [3, 6, 12, 24], window: 8, unit: 16, posMLP: 32,
              decoder: (512, 2, 16), isDefault: true),
    ]
}
