/// Named configurations, by the hyperparameters they encode, and each method's recipe.

/// Optimiser and schedule defaults that go with a preset (docs/methods/common.md#b11-optimizer and the
/// "Recipe" section of each method page).
public struct Recipe: Codable, Sendable, Equatable {
    /// Base learning rate per `lrBatchDivisor` images (the scaling rule), unless `absoluteLR`.
    public var blr: Float
    public var lrBatchDivisor: Int
    /// A fixed peak learning rate that ignores the batch (the tiny presets: 1e-3).
    public var absoluteLR: Float?
    public var minLR: Float
    /// Warm-up as a share of the total steps (MAE: 40 of 1600 epochs).
    public var warmupFraction: Float
    public var weightDecay: Float
    public var beta1: Float
    public var beta2: Float
    /// Global gradient-norm clip (SimMIM: 5), or nil.
    public var clipGrad: Float?
    /// The batch the paper trained with (the learning rate scales from `blr` either way).
    public var paperBatchSize: Int
    /// RandomResizedCrop's smallest area share (SimMIM 0.67; the MAE family 0.2).
    public var cropScaleMin: Float = 0.2
    /// A job's batch when the request names none: what fits a CPU server, not the paper's.
    public var defaultBatchSize = 8
    /// Fine-tuning's base rate per 256 images for this preset, when it differs from the
    /// method's paper recipe (`FinetuneRecipe`): the small presets' own, found by a sweep.
    public var finetuneBLR: Float?
    /// Fine-tuning's smallest crop, when the method's recipe's (8 % of the area) is too small
    /// for the preset's images.
    public var finetuneCropScaleMin: Float?

    public func peakLR(batch: Int) -> Float { absoluteLR ?? blr * Float(batch) / Float(lrBatchDivisor) }

    enum CodingKeys: String, CodingKey {
        case blr, beta1, beta2
        case lrBatchDivisor = "lr_batch_divisor", absoluteLR = "absolute_lr", minLR = "min_lr"
        case warmupFraction = "warmup_fraction", weightDecay = "weight_decay", clipGrad = "clip_grad"
        case paperBatchSize = "paper_batch_size", cropScaleMin = "crop_scale_min", defaultBatchSize = "default_batch_size"
        case finetuneBLR = "finetune_blr", finetuneCropScaleMin = "finetune_crop_scale_min"
    }
}

public struct Preset: Sendable, Equatable {
    public let name: String
    public let summary: String
    public let model: ModelConfig
    public let recipe: Recipe
    /// The method's small test preset (alias `tiny`).
    public let isTiny: Bool
    /// The method's paper-scale preset (alias `default`).
    public let isDefault: Bool
    /// The method's preset for small images on a CPU (alias `small`).
    public var isSmall = false

    /// This model as the method's `small` preset, with a recipe for it.
    func small(_ recipe: Recipe) -> Preset {
        var p = Preset(name: name, summary: summary, model: model, recipe: recipe, isTiny: false, isDefault: false)
        p.isSmall = true
        return p
    }
}

public enum Presets {
    static let maeRecipe = Recipe(blr: 1.5e-4, lrBatchDivisor: 256, absoluteLR: nil, minLR: 0, warmupFraction: 0.025,
                                  weightDecay: 0.05, beta1: 0.9, beta2: 0.95, clipGrad: nil, paperBatchSize: 4096)
    static let simmimRecipe = Recipe(blr: 2e-4, lrBatchDivisor: 512, absoluteLR: nil, minLR: 1e-5, warmupFraction: 0.1,
                                     weightDecay: 0.05, beta1: 0.9, beta2: 0.999, clipGrad: 5, paperBatchSize: 2048, cropScaleMin: 0.67)

    /// For the `small` presets (docs/methods/README.md#small-presets): a base rate per 256 images
    /// found by a sweep on Fashion-MNIST (`blr`); a batch of 64 and 5 % warm-up, which a second
    /// sweep (batch 32–128, warm-up 0–20 %, mask ratios) kept; crops from 35 % of the area (28 px
    /// digits and garments lose their subject below that).
    static func smallRecipe(_ r: Recipe, blr: Float) -> Recipe {
        var s = r
        s.blr = blr
        s.finetuneBLR = smallBLR.finetune
        s.finetuneCropScaleMin = 0.35
        s.lrBatchDivisor = 256
        s.absoluteLR = nil
        s.minLR = 0
        s.warmupFraction = 0.05
        s.cropScaleMin = 0.35
        s.defaultBatchSize = 64
        return s
    }

    static func tinyRecipe(_ r: Recipe) -> Recipe {
        var t = r
        t.absoluteLR = 1e-3
        t.minLR = 0
        t.warmupFraction = 0.05
        t.defaultBatchSize = 16
        return t
    }

    static func mae(_ name: String, _ summary: String, image: Int, patch: Int, dim: Int, depth: Int, heads: Int,
                    decoder: (Int, Int, Int), tiny: Bool = false, isDefault: Bool = false) -> Preset {
        let config = ModelConfig(method: .mae, imageSize: image, patchSize: patch, embedDim: dim, depths: [depth],
                                 heads: [heads], layerNormEps: 1e-6, maskRatio: 0.75, maskUnit: patch,
                                 decoderDim: decoder.0, decoderDepth: decoder.1, decoderHeads: decoder.2, normPixLoss: true)
        return Preset(name: name, summary: summary, model: config,
                      recipe: tiny ? tinyRecipe(maeRecipe) : maeRecipe, isTiny: tiny, isDefault: isDefault)
    }

    static func simmim(_ name: String, _ summary: String, image: Int, patch: Int, dim: Int, depths: [Int], heads: [Int],
                       window: Int, unit: Int, tiny: Bool = false, isDefault: Bool = false) -> Preset {
        let config = ModelConfig(method: .simmim, imageSize: image, patchSize: patch, embedDim: dim, depths: depths,
                                 heads: heads, windowSize: window, layerNormEps: 1e-5, maskRatio: 0.6, maskUnit: unit,
                                 normPixLoss: false)
        return Preset(name: name, summary: summary, model: config,
                      recipe: tiny ? tinyRecipe(simmimRecipe) : simmimRecipe, isTiny: tiny, isDefault: isDefault)
    }

    public static let all: [Preset] = [
        mae("mae_vit_tiny_patch4_dec32d1b_32", "CPU test size: 32 px, ViT D64 depth 2, 4 heads, decoder 32×1",
            image: 32, patch: 4, dim: 64, depth: 2, heads: 4, decoder: (32, 1, 4), tiny: true),
        mae("mae_vit_small_patch16_dec512d8b_224", "ViT-S/16 at 224 px, decoder 512×8",
            image: 224, patch: 16, dim: 384, depth: 12, heads: 6, decoder: (512, 8, 16)),
        mae("mae_vit_base_patch16_dec512d8b_224", "ViT-B/16 at 224 px, decoder 512×8 (the paper's)",
            image: 224, patch: 16, dim: 768, depth: 12, heads: 12, decoder: (512, 8, 16), isDefault: true),
        simmim("simmim_swin_tiny_patch2_window4_32", "CPU test size: 32 px, T-Swin C32 (2,2,2), window 4, 8 px units",
               image: 32, patch: 2, dim: 32, depths: [2, 2, 2], heads: [2, 4, 8], window: 4, unit: 8, tiny: true),
        simmim("simmim_swin_tiny_patch4_window7_224", "Swin-T at 224 px, window 7, 32 px units",
               image: 224, patch: 4, dim: 96, depths: [2, 2, 6, 2], heads: [3, 6, 12, 24], window: 7, unit: 32),
        simmim("simmim_swin_base_patch4_window6_192", "Swin-B at 192 px, window 6, 32 px units (the paper's)",
               image: 192, patch: 4, dim: 128, depths: [2, 2, 18, 2], heads: [4, 8, 16, 32], window: 6, unit: 32,
               isDefault: true),
    ] + ummaePresets + greenmimPresets + mixConvPresets + smallPresets

    /// Sized for 28–96 px images on a CPU: a ViT of width 192 (MAE, ConvMAE's last stage) and a
    /// Swin with C = 48 (the Swin-based four), all at 32 px.
    static let smallPresets: [Preset] = [
        mae("mae_vit_d192x6_patch4_dec128d2b_32", "Small images on a CPU: 32 px, ViT D192 depth 6, 3 heads, decoder 128×2",
            image: 32, patch: 4, dim: 192, depth: 6, heads: 3, decoder: (128, 2, 4)).small(smallRecipe(maeRecipe, blr: smallBLR.mae)),
        simmim("simmim_swin_c48_patch2_window4_32", "Small images on a CPU: 32 px, Swin C48 (2,2,6), window 4, 8 px units",
               image: 32, patch: 2, dim: 48, depths: [2, 2, 6], heads: [3, 6, 12], window: 4, unit: 8)
            .small(smallRecipe(simmimRecipe, blr: smallBLR.swin)),
        ummae("ummae_swin_c48_patch2_window4_posmlp16_dec128d2b_32",
              "Small images on a CPU: 32 px, Swin C48 (2,2,6) with coordinate-MLP bias, 4 px units, decoder 128×2",
              image: 32, patch: 2, dim: 48, depths: [2, 2, 6], heads: [3, 6, 12], window: 4, unit: 4, posMLP: 16,
              decoder: (128, 2, 4)).small(smallRecipe(ummaeRecipe, blr: smallBLR.ummae)),
        greenmim("greenmim_swin_c48_patch2_window4_dec128d2b_32",
                 "Small images on a CPU: 32 px, Swin C48 (2,2,6), window 4, 8 px units, decoder 128×2",
                 image: 32, patch: 2, dim: 48, depths: [2, 2, 6], heads: [3, 6, 12], window: 4, unit: 8,
                 decoder: (128, 2, 4)).small(smallRecipe(greenmimRecipe, blr: smallBLR.swin)),
        mixmae("mixmae_swin_c48_patch2_window8_dec128d2b_32",
               "Small images on a CPU: 32 px, Swin C48 (2,2,6), window 8 no shift, 8 px units, decoder 128×2",
               image: 32, patch: 2, dim: 48, depths: [2, 2, 6], heads: [3, 6, 12], window: 8, decoder: (128, 2, 4))
            .small(smallRecipe(mixmaeRecipe, blr: smallBLR.swin)),
        convmae("convmae_convvit_c48_patch4_dec128d2b_32",
                "Small images on a CPU: 32 px, conv 48-96 + ViT 192 (depths 1-1-6, 3 heads) on 8×8 tokens, 4 px units, decoder 128×2",
                image: 32, patch: 1, widths: [48, 96, 192], depths: [1, 1, 6], heads: 3, decoder: (128, 2, 4))
            .small(smallRecipe(convmaeRecipe, blr: smallBLR.mae)),
    ]

    /// The small presets' base rates per 256 images (the sweep in docs/methods/README.md#small-presets).
    static let smallBLR = (mae: Float(6e-3), swin: Float(2e-3), ummae: Float(6e-3), finetune: Float(8e-3))

    public static func named(_ name: String) -> Preset? { all.first { $0.name == name } }

    public static func forMethod(_ method: Method) -> [Preset] { all.filter { $0.model.method == method } }

    /// A full preset name, or the aliases `tiny` and `default`, for a method.
    public static func resolve(method: Method, preset: String) throws(ConfigError) -> Preset {
        let candidates = forMethod(method)
        let found: Preset? = switch preset {
        case "tiny": candidates.first(where: \.isTiny)
        case "small": candidates.first(where: \.isSmall)
        case "default": candidates.first(where: \.isDefault)
        default: candidates.first { $0.name == preset }
        }
        guard let found else {
            let names = (["tiny", "small", "default"] + candidates.map(\.name)).joined(separator: ", ")
            throw ConfigError(errors: [FieldError("preset", "unknown preset '\(preset)' for \(method.rawValue); choose one of \(names)")])
        }
        return found
    }
}
