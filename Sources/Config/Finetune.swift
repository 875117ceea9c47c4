/// What a job trains: the method's self-supervised objective, or a classifier on its encoder
/// (docs/finetuning.md).
public enum JobTask: String, Codable, Sendable, CaseIterable {
    case pretrain, finetune
}

/// The settings only fine-tuning reads; stored with a fine-tuning job's configuration.
public struct FinetuneConfig: Codable, Sendable, Equatable {
    /// How encoder tokens become the head's input: the mean over tokens, or MAE's class token.
    public var pool: Pooling
    /// Layer-wise learning-rate decay: layer k of L + 1 learns at decay^(L + 1 − k) × the rate.
    public var layerDecay: Float
    public var labelSmoothing: Float
    /// The drop-path rate of the last block (rising linearly from 0 at the first).
    public var dropPath: Float
    /// Beta(α, α) parameters of mixup and CutMix; 0 turns each off. When both are on, each
    /// batch uses one of them, chosen with equal odds.
    public var mixup: Float
    public var cutmix: Float
    /// Score top-1 on the held-out split every this many steps (and at the end).
    public var evalEvery: Int
    /// Held-out images scored (the first this many of the split).
    public var evalImages: Int
    /// The share of the dataset held out, when it has no held-out split of its own.
    public var valFraction: Float
    /// Classes of the dataset (the head's outputs), resolved at submission.
    public var classes: Int
    /// The held-out dataset (`fashion-mnist-test`, a folder's `val/` split); nil: `valFraction`
    /// of the training dataset, drawn with the job's seed and never trained on.
    public var heldOut: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case pool, mixup, cutmix, classes
        case layerDecay = "layer_decay", labelSmoothing = "label_smoothing", dropPath = "drop_path"
        case evalEvery = "eval_every", evalImages = "eval_images", valFraction = "val_fraction", heldOut = "held_out"
    }

    public static let defaultEvalImages = 2000
    public static let defaultValFraction: Float = 0.1

    /// The settings a request may override (everything but what the dataset decides).
    public static let overridableNames: Set<String> = Set(CodingKeys.allCases.map(\.rawValue)).subtracting(["classes", "held_out"])
}

/// The papers' fine-tuning recipes, per method (docs/finetuning.md#recipe): AdamW with
/// β = (0.9, 0.999) and weight decay 0.05, warm-up then cosine to 1e-6, RandomResizedCrop from
/// 8 % of the area, label smoothing 0.1, drop path 0.1. The base rate is per 256 images.
public struct FinetuneRecipe: Sendable, Equatable {
    public var blr: Float
    public var layerDecay: Float
    public var warmupFraction: Float
    public var minLR: Float = 1e-6
    public var weightDecay: Float = 0.05
    public var beta2: Float = 0.999
    public var cropScaleMin: Float = 0.08
    public var labelSmoothing: Float = 0.1
    public var dropPath: Float = 0.1

    public static func of(_ method: Method) -> FinetuneRecipe {
        switch method {
        // MAE and ConvMAE fine-tune their ViTs with blr 5e-4, decay 0.65, 5 of 100 epochs warm-up.
        case .mae, .convmae: FinetuneRecipe(blr: 5e-4, layerDecay: 0.65, warmupFraction: 0.05)
        // SimMIM's Swin recipe (5e-3 per 2048 images, decay 0.9, 20 of 100 epochs), which the
        // other Swin-based methods follow; MixMIM decays its layers faster (0.7).
        case .simmim, .ummae, .greenmim: FinetuneRecipe(blr: 6.25e-4, layerDecay: 0.9, warmupFraction: 0.2)
        case .mixmae: FinetuneRecipe(blr: 6.25e-4, layerDecay: 0.7, warmupFraction: 0.2)
        }
    }

    /// A peak learning rate for `batch` images (a preset with a fixed rate keeps it).
    public func peakLR(batch: Int, preset: Recipe) -> Float { preset.absoluteLR ?? (preset.finetuneBLR ?? blr) * Float(batch) / 256 }
}

/// Held-out splits the server knows by name.
public enum HeldOutSplit {
    /// The dataset scored for `dataset` when it has a split of its own (`fashion-mnist` →
    /// `fashion-mnist-test`; a folder `X` with a `val/` subfolder → `X/val`), if that exists.
    public static func candidates(for dataset: String) -> [String] {
        dataset == "fashion-mnist" ? ["fashion-mnist-test"] : [dataset + "/val"]
    }
}
