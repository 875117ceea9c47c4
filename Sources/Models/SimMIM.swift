import Config
import NN
import TensorCore

extension SwinEncoder {
    /// SimMIM's encoder pass: masked tokens are replaced by the learned token after the
    /// patch-embed LN and go through every stage (docs/methods/simmim.md#encoder).
    /// images (B, 3, H, W), token mask (B, L, 1) or nil → (B, L_last, C_last).
    public func callAsFunction(_ images: Tensor, tokenMask: Tensor?) -> Tensor {
        guard let m = tokenMask else { return dense(images) }
        guard let maskToken else { preconditionFailure("a token mask needs an encoder built with a mask token") }
        let x = patchEmbed(images) * (Tensor(repeating: 1, shape: m.shape) - m) + maskToken * m  // e·(1−m) + t·m
        return norm(layers.items.reduce(x) { h, stage in stage(h) })
    }
}

/// SimMIM (docs/methods/simmim.md): Swin over all tokens with mask tokens, a 1×1 conv head with pixel
/// shuffle to the image, L1 on masked pixels against the normalised input.
public final class SimMIM: Module, MIMModel, @unchecked Sendable {
    public let config: ModelConfig
    /// Names under `encoder.`: `patch_embed`, `mask_token`, `layers.s`, `norm`.
    public let encoder: SwinEncoder
    let headWeight: Tensor  // decoder.0.weight (stride²·3, C_last, 1, 1)
    let headBias: Tensor
    let shuffle: RowIndex   // pixel shuffle as an element map, per sample

    public init(config: ModelConfig, seed: UInt64) {
        precondition(config.method == .simmim, "SimMIM built from a \(config.method) config")
        self.config = config
        var rng = RandomGenerator(seed: seed)
        encoder = SwinEncoder(config: config, maskToken: true, rng: &rng)
        let r = config.encoderStride, cLast = config.encoderDim
        headWeight = Init.pytorchDefault([r * r * 3, cLast, 1, 1], rng: &rng)
        let bound = 1 / Float(cLast).squareRoot()
        headBias = Init.uniform([r * r * 3], low: -bound, high: bound, rng: &rng)
        shuffle = Self.pixelShuffleIndex(imageSize: config.imageSize, factor: r)
        super.init()
        child("encoder", encoder)
        let head = Module(), conv = Module()
        conv.parameter("weight", headWeight)
        conv.parameter("bias", headBias)
        head.child("0", conv)
        child("decoder", head)
    }

    /// out[c, r·i + a, r·j + b] = in[(i, j), c·r² + a·r + b]: channel outermost, unlike patchify.
    static func pixelShuffleIndex(imageSize: Int, factor r: Int) -> RowIndex {
        let g = imageSize / r
        var idx = [Int32](repeating: 0, count: 3 * imageSize * imageSize)
        for c in 0..<3 { for y in 0..<imageSize { for x in 0..<imageSize {
            let (i, a, j, b) = (y / r, y % r, x / r, x % r)
            idx[(c * imageSize + y) * imageSize + x] = Int32((i * g + j) * 3 * r * r + c * r * r + a * r + b)
        } } }
        return RowIndex(idx, sourceRows: idx.count)
    }

    public func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        Masking.randomUnits(batch: batch, unitGrid: config.unitGrid, ratio: ratio ?? config.maskRatio, rng: &rng)
    }

    /// Latent (B, L_last, C_last) → image (B, 3, H, W).
    func head(_ latent: Tensor) -> Tensor {
        let (B, r, cLast) = (latent.shape[0], config.encoderStride, config.encoderDim)
        let y = latent.linear(weight: headWeight.reshaped([r * r * 3, cLast]), bias: headBias)
        return y.gatherRows(shuffle, rowLength: 1, batch: B, shape: [B, 3, config.imageSize, config.imageSize])
    }

    public func forward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput {
        guard case let .units(units) = spec else { preconditionFailure("SimMIM masks by units") }
        let B = images.shape[0], G = config.grid
        let tokenMask = Masking.upsample(units, factor: config.maskUnit / config.patchSize).reshaped([B, G * G, 1])
        let latent = encoder(images, tokenMask: tokenMask)
        let pred = head(latent)
        let pixels = pixelMask(units: units)  // (B, 1, H, W)
        let full = Tensor(zeros: images.shape) + pixels  // repeated over channels
        let loss = Tensor.maskedL1(pred, target: images, mask: full.detached(), channels: 3)
        return MIMOutput(loss: loss, prediction: pred, latent: latent, mask: units)
    }

    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction {
        GradMode.withoutGrad {
            guard case let .units(units) = spec else { preconditionFailure("SimMIM masks by units") }
            let out = forward(images, mask: spec)
            return Reconstruction(image: out.prediction, pixelMask: pixelMask(units: units), note: nil)
        }
    }

    public func encode(_ images: Tensor, pool: Pooling) -> Tensor {
        pooledWithoutClassToken(encoder.dense(images), pool)
    }

    /// SimMIM also exempts the mask token and relative-position tables
    /// (docs/methods/common.md#no-decay-rules).
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor) || name.contains("mask_token")
            || name.contains("relative_position_bias_table") || name.contains("absolute_pos_embed")
    }
}
