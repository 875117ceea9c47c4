/// GreenMIM presets (docs/methods/greenmim.md#presets), named by their hyperparameters.
extension Presets {
    /// AdamW (0.9, 0.95), wd 0.05, blr 1.5e-4 per 256 at batch 2048, 40 of 800 epochs warm-up.
    static let greenmimRecipe = Recipe(blr: 1.5e-4, lrBatchDivisor: 256, absoluteLR: nil, minLR: 0, warmupFraction: 0.05,
                                       weightDecay: 0.05, beta1: 0.9, beta2: 0.95, clipGrad: nil, paperBatchSize: 2048)

    static func greenmim(_ name: String, _ summary: String, image: Int, patch: Int, dim: Int, depths: [Int], heads: [Int],
                         window: Int, unit: Int, decoder: (Int, Int, Int), tiny: Bool = false,
                         isDefault: Bool = false) -> Preset {
        var config = ModelConfig(method: .greenmim, imageSize: image, patchSize: patch, embedDim: dim, depths: depths,
                                 heads: heads, windowSize: window, layerNormEps: 1e-6, maskRatio: 0.75, maskUnit: unit,
                                 decoderDim: decoder.0, decoderDepth: decoder.1, decoderHeads: decoder.2, normPixLoss: true)
        config.decoderPositions = .true
        config.grouping = .search
        config.groupSizeMax = window * window  // g_max = w² (docs/methods/greenmim.md#grouping), overridable
        return Preset(name: name, summary: summary, model: config,
                      recipe: tiny ? tinyRecipe(greenmimRecipe) : greenmimRecipe, isTiny: tiny, isDefault: isDefault)
    }

    static let greenmimPresets: [Preset] = [
        greenmim("greenmim_swin_tiny_patch2_window4_dec32d1b_32",
                 "CPU test size: 32 px, T-Swin C32 (2,2,2), window 4, 8 px batch-shared units",
                 image: 32, patch: 2, dim: 32, depths: [2, 2, 2], heads: [2, 4, 8], window: 4, unit: 8,
                 decoder: (32, 1, 2), tiny: true),
        greenmim("greenmim_swin_tiny_patch4_window7_dec512d1b_224", "Swin-T at 224 px, window 7, 32 px units",
                 image: 224, patch: 4, dim: 96, depths: [2, 2, 6, 2], heads: [3, 6, 12, 24], window: 7, unit: 32,
                 decoder: (512, 1, 16)),
        greenmim("greenmim_swin_base_patch4_window7_dec512d1b_224", "Swin-B at 224 px, window 7, 32 px units (the paper's)",
                 image: 224, patch: 4, dim: 128, depths: [2, 2, 18, 2], heads: [4, 8, 16, 32], window: 7, unit: 32,
                 decoder: (512, 1, 16), isDefault: true),
    ]
}
