import Config
import NN
import TensorCore

/// What every pretraining method offers the trainer and the server.
public protocol MIMModel: Module {
    var config: ModelConfig { get }

    /// A fresh mask for a batch (`ratio` overrides the config's, e.g. for reconstructions).
    func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec

    /// True when each sample of a batch has a mask of its own; false when the whole batch shares
    /// one (GreenMIM, MixMAE), so samples masked differently need passes of their own.
    var masksPerSample: Bool { get }

    /// One pretraining forward pass on normalised images (B, 3, H, W): loss on the tape.
    func forward(_ images: Tensor, mask: MaskSpec) -> MIMOutput

    /// `forward(images, mask:).loss` for a training step, which reads nothing else: a method may
    /// skip what only the rest needs (predictions the loss does not score).
    func trainingLoss(_ images: Tensor, mask: MaskSpec) -> Tensor

    /// The prediction in normalised pixel space (B, 3, H, W) and the pixel mask (B, 1, H, W).
    func reconstruct(_ images: Tensor, mask: MaskSpec) -> Reconstruction

    /// Encoder output without masking, on the tape (fine-tuning trains through it): (B, D)
    /// pooled or (B, L, D) with `.none`. `features` is the same without gradients.
    func encode(_ images: Tensor, pool: Pooling) -> Tensor

    /// True for parameters that get no weight decay (the method's rule,
    /// docs/methods/common.md#no-decay-rules).
    func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool
}

public struct MIMOutput {
    /// Scalar loss on the tape.
    public let loss: Tensor
    /// The decoder's output: MAE-style (B, L, q²·3) patches, or SimMIM's (B, 3, H, W) image.
    public let prediction: Tensor
    /// The encoder's output after its final norm.
    public let latent: Tensor
    /// Token mask (B, L) or unit mask (B, U, U); 1 = masked.
    public let mask: Tensor
}

public struct Reconstruction {
    public let image: Tensor
    public let pixelMask: Tensor
    /// How norm-pixel predictions were mapped back to pixels, when they were.
    public let note: String?
}

extension MIMModel {
    public var masksPerSample: Bool { true }

    public func trainingLoss(_ images: Tensor, mask: MaskSpec) -> Tensor { forward(images, mask: mask).loss }

    /// Encoder features without masking and without gradients: (B, D) pooled or (B, L, D) with `.none`.
    public func features(_ images: Tensor, pool: Pooling) -> Tensor {
        GradMode.withoutGrad { encode(images, pool: pool) }
    }

    /// Biases and 1-D tensors get no decay (B11); methods add their own exclusions.
    public static func isBiasOrVector(_ name: String, _ tensor: Tensor) -> Bool {
        tensor.rank <= 1 || name.hasSuffix(".bias") || name == "bias"
    }

    /// Per-pixel mask (B, 1, H, W) from a unit mask (B, U, U).
    func pixelMask(units: Tensor) -> Tensor {
        let up = Masking.upsample(units, factor: config.maskUnit)
        return up.reshaped([units.shape[0], 1, config.imageSize, config.imageSize])
    }

    /// Encoder tokens (B, L, D) pooled for an encoder without a class token: `.cls` pools like `.mean`.
    func pooledWithoutClassToken(_ tokens: Tensor, _ pool: Pooling) -> Tensor {
        pool == .none ? tokens : tokens.mean(axes: [1])
    }
}

/// Builds the model of a (validated) configuration.
public enum ModelRegistry {
    /// The model `config` describes, its weights drawn from `seed`. With `decoderBlocks` false
    /// the MAE-style decoder is built without its blocks: the backbone of a fine-tune or a
    /// classifier, which only encodes (MAE ViT-B's 8 decoder blocks are 25 M weights). Its
    /// encoder is the same, weight for weight, since every method draws those blocks after its
    /// encoder; SimMIM's one-layer head is built either way.
    public static func make(_ config: ModelConfig, seed: UInt64, decoderBlocks: Bool = true) throws(ConfigError) -> any MIMModel {
        try config.validate()
        switch config.method {
        case .mae: return MAE(config: config, seed: seed, decoderBlocks: decoderBlocks)
        case .simmim: return SimMIM(config: config, seed: seed)
        case .ummae: return UMMAE(config: config, seed: seed, decoderBlocks: decoderBlocks)
        case .greenmim: return GreenMIM(config: config, seed: seed, decoderBlocks: decoderBlocks)
        case .mixmae: return MixMAE(config: config, seed: seed, decoderBlocks: decoderBlocks)
        case .convmae: return ConvMAE(config: config, seed: seed, decoderBlocks: decoderBlocks)
        }
    }
}
