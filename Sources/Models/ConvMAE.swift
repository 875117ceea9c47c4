import Config
import NN
import TensorCore

/// ConvMAE (docs/methods/convmae.md): two masked-convolution stages computed densely, a ViT stage on the
/// visible stage-3 tokens only, multi-scale fusion of stage-1 and stage-2 features into stage 3,
/// and MAE's decoder and norm-pixel loss. Block-wise masking is decided at the stage-3 grid and
/// upsampled ×2 and ×4, so the masks of all scales align. Names follow the official
/// `models_convmae.py`.
///
/// Legend: B batch, G_k stage-k grid side (G₁ = 4·G₃, G₂ = 2·G₃), C_k stage width (D = C₃),
/// L = G₃² stage-3 tokens, keep visible tokens per sample, Dd decoder width, s = encoder stride
/// (pixels per stage-3 token), P = s²·3 target values per token.

/// The dense maps of every stage and the pooled vector (no masking).
public struct ConvMAEFeatures {
    /// (B, G₁, G₁, C₁) after the stage-1 conv blocks.
    public let stage1: Tensor
    /// (B, G₂, G₂, C₂) after the stage-2 conv blocks.
    public let stage2: Tensor
    /// (B, G₃, G₃, D): ViT blocks + fused stage-1/2 features, after the final LN.
    public let stage3: Tensor
    /// (B, D): the mean of the stage-3 tokens.
    public let pooled: Tensor
}

public final class ConvMAE: Module, MIMModel, @unchecked Sendable {
    public let config: ModelConfig
    let patchEmbed1: ConvPatchEmbed
    let patchEmbed2: ConvPatchEmbed
    let patchEmbed3: ConvPatchEmbed
    let patchEmbed4: Linear
    let stage1OutputDecode: StridedConv  // k4 s4, C₁ → D
    let stage2OutputDecode: StridedConv  // k2 s2, C₂ → D
    let posEmbed: Tensor                 // (1, L, D), fixed
    let blocks1: ModuleList<MaskedConvBlock>
    let blocks2: ModuleList<MaskedConvBlock>
    let blocks3: ModuleList<TransformerBlock>
    let norm: LayerNorm
    let decoderEmbed: Linear
    let maskToken: Tensor                // (1, 1, Dd)
    let decoderPosEmbed: Tensor          // (1, L, Dd), fixed
    let decoderBlocks: ModuleList<TransformerBlock>
    let decoderNorm: LayerNorm
    let decoderPred: Linear

    public init(config c: ModelConfig, seed: UInt64) {
        precondition(c.method == .convmae, "ConvMAE built from a \(c.method) config")
        config = c
        var rng = RandomGenerator(seed: seed)
        let dims = c.stageDims, D = c.encoderDim, G3 = c.stageGrids[2]
        patchEmbed1 = ConvPatchEmbed(patch: c.patchSize, inChannels: 3, dim: dims[0], rng: &rng)
        patchEmbed2 = ConvPatchEmbed(patch: 2, inChannels: dims[0], dim: dims[1], rng: &rng)
        patchEmbed3 = ConvPatchEmbed(patch: 2, inChannels: dims[1], dim: D, xavierWeight: true, rng: &rng)
        patchEmbed4 = Linear(D, D, rng: &rng)
        stage1OutputDecode = StridedConv(dims[0], D, kernel: 4, rng: &rng)
        stage2OutputDecode = StridedConv(dims[1], D, kernel: 2, rng: &rng)
        posEmbed = SinCos.table2D(dim: D, grid: G3, classToken: false)
        blocks1 = ModuleList((0..<c.depths[0]).map { _ in MaskedConvBlock(dim: dims[0], mlpRatio: c.mlpRatio, rng: &rng) })
        blocks2 = ModuleList((0..<c.depths[1]).map { _ in MaskedConvBlock(dim: dims[1], mlpRatio: c.mlpRatio, rng: &rng) })
        blocks3 = ModuleList(depth: c.depths[2], dim: D, heads: c.heads[2], mlpRatio: c.mlpRatio, eps: c.layerNormEps, rng: &rng)
        norm = LayerNorm(D, eps: c.layerNormEps)
        decoderEmbed = Linear(D, c.decoderDim, rng: &rng)
        maskToken = Init.normal([1, 1, c.decoderDim], std: 0.02, rng: &rng)
        decoderPosEmbed = SinCos.table2D(dim: c.decoderDim, grid: G3, classToken: false)
        decoderBlocks = ModuleList(depth: c.decoderDepth, dim: c.decoderDim, heads: c.decoderHeads,
                                   mlpRatio: c.mlpRatio, eps: c.layerNormEps, rng: &rng)
        decoderNorm = LayerNorm(c.decoderDim, eps: c.layerNormEps)
        decoderPred = Linear(c.decoderDim, c.encoderStride * c.encoderStride * 3, rng: &rng)
        super.init()
        child("patch_embed1", patchEmbed1)
        child("patch_embed2", patchEmbed2)
        child("patch_embed3", patchEmbed3)
        child("patch_embed4", patchEmbed4)
        child("stage1_output_decode", stage1OutputDecode)
        child("stage2_output_decode", stage2OutputDecode)
        buffer("pos_embed", posEmbed)
        child("blocks1", blocks1)
        child("blocks2", blocks2)
        child("blocks3", blocks3)
        child("norm", norm)
        child("decoder_embed", decoderEmbed)
        parameter("mask_token", maskToken)
        buffer("decoder_pos_embed", decoderPosEmbed)
        child("decoder_blocks", decoderBlocks)
        child("decoder_norm", decoderNorm)
        child("decoder_pred", decoderPred)
    }

    var tokens: Int { config.stageGrids[2] * config.stageGrids[2] }

    // MARK: Masking

    public func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        Masking.noise(batch: batch, tokens: tokens, ratio: ratio ?? config.maskRatio, rng: &rng)
    }

    /// B7 at the stage-3 grid, with the visibility maps of the conv stages.
    struct Shuffle {
        let keep: Int
        let visible: RowIndex    // (B·keep) rows of the (B·L) stage-3 tokens, in noise order
        let unshuffle: RowIndex  // (B·L) rows of [decoder latents (B·keep); mask token]
        let mask: Tensor         // (B, L), 1 = masked
        let visibility1: Tensor  // (B, G₁, G₁, 1), 1 = visible: the mask upsampled ×4
        let visibility2: Tensor  // (B, G₂, G₂, 1): ×2
    }

    func shuffle(noise: Tensor, keep: Int) -> Shuffle {
        let B = noise.shape[0], L = tokens, G3 = config.stageGrids[2]
        precondition(noise.shape == [B, L], "ConvMAE noise must be (B, \(L)), got \(noise.shape)")
        precondition(keep >= 1 && keep <= L, "ConvMAE keeps \(keep) of \(L) tokens")
        var visible: [Int32] = [], unshuffle: [Int32] = []
        let mask = Tensor(repeating: 1, shape: [B, L])
        let maskRow = Int32(B * keep)
        for (b, order) in Masking.argsortRows(noise).enumerated() {
            var restore = [Int](repeating: 0, count: L)
            for (rank, l) in order.enumerated() { restore[l] = rank }
            for l in order.prefix(keep) {
                visible.append(Int32(b * L + l))
                mask.pointer[b * L + l] = 0
            }
            for l in 0..<L { unshuffle.append(restore[l] < keep ? Int32(b * keep + restore[l]) : maskRow) }
        }
        let visibility = GradMode.withoutGrad { Tensor(repeating: 1, shape: mask.shape) - mask }.reshaped([B, G3, G3])
        func upsampled(_ f: Int) -> Tensor {
            Masking.upsample(visibility, factor: f).reshaped([B, G3 * f, G3 * f, 1])
        }
        return Shuffle(keep: keep, visible: RowIndex(visible, sourceRows: B * L),
                       unshuffle: RowIndex(unshuffle, sourceRows: B * keep + 1), mask: mask,
                       visibility1: upsampled(4), visibility2: upsampled(2))
    }

    // MARK: Encoder and decoder

    /// The dense part: conv stages 1–2 (masked when visibility maps are given) and the stage-3
    /// embedding. Returns stage maps, the stage-3 tokens with positions (B, L, D) and the
    /// fusion terms E₁, E₂ (B, L, D).
    func convStages(_ images: Tensor, visibility: (Tensor, Tensor)?)
        -> (stage1: Tensor, stage2: Tensor, x: Tensor, e1: Tensor, e2: Tensor) {
        let B = images.shape[0], L = tokens, D = config.encoderDim
        var x = patchEmbed1(images, layout: .nchw)  // (B, G₁, G₁, C₁)
        for block in blocks1.items { x = block(x, visibility: visibility?.0) }
        let stage1 = x
        let e1 = stage1OutputDecode(x, layout: .nhwc).reshaped([B, L, D])  // (B, G₃, G₃, D) → tokens
        x = patchEmbed2(x, layout: .nhwc)  // (B, G₂, G₂, C₂)
        for block in blocks2.items { x = block(x, visibility: visibility?.1) }
        let stage2 = x
        let e2 = stage2OutputDecode(x, layout: .nhwc).reshaped([B, L, D])
        let t = patchEmbed4(patchEmbed3(x, layout: .nhwc).reshaped([B, L, D])) + posEmbed  // (B, L, D)
        return (stage1, stage2, t, e1, e2)
    }

    /// Visible latents (B, keep, D) in noise order, after the final LN.
    func encode(_ images: Tensor, shuffle s: Shuffle) -> Tensor {
        let B = images.shape[0], D = config.encoderDim
        let c = convStages(images, visibility: (s.visibility1, s.visibility2))
        let shape = [B, s.keep, D]
        let x = blocks3(c.x.gatherRows(s.visible, shape: shape))
        // Fusion before the norm: z = Blocks₃(x_vis) + E₁_vis + E₂_vis.
        return norm(x + c.e1.gatherRows(s.visible, shape: shape) + c.e2.gatherRows(s.visible, shape: shape))
    }

    /// B8 (no class token) and the decoder: latents (B, keep, D) → (B, L, P).
    func decode(_ latent: Tensor, shuffle s: Shuffle) -> Tensor {
        let B = latent.shape[0], L = tokens, Dd = config.decoderDim
        let d = decoderEmbed(latent)  // (B, keep, Dd)
        let rows = Tensor.concat([d.reshaped([B * s.keep, Dd]), maskToken.reshaped([1, Dd])], axis: 0)
        let full = rows.gatherRows(s.unshuffle, shape: [B, L, Dd]) + decoderPosEmbed  // raster order
        return decoderPred(decoderNorm(decoderBlocks(full)))
    }

    /// Patch targets (B, L, P) at the encoder stride, normalised per patch when `normPixLoss`.
    func target(_ images: Tensor) -> Tensor {
        let patches = Patches.patchify(images, patch: config.encoderStride)
        return config.normPixLoss ? Patches.normalizedTarget(patches) : patches.copy()
    }

    // MARK: MIMModel

    public func forward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput {
        guard case let .noise(noise, keep) = spec else { preconditionFailure("ConvMAE masks by noise (B7)") }
        let s = shuffle(noise: noise, keep: keep)
        let latent = encode(images, shuffle: s)
        let pred = decode(latent, shuffle: s)
        let target = GradMode.withoutGrad { self.target(images) }
        let loss = Tensor.maskedMSE(pred, target: target, mask: s.mask)
        return MIMOutput(loss: loss, prediction: pred, latent: latent, mask: s.mask)
    }

    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction {
        GradMode.withoutGrad {
            let out = forward(images, mask: spec)
            let stride = config.encoderStride, G3 = config.stageGrids[2], B = images.shape[0]
            var pred = out.prediction
            var note: String?
            if config.normPixLoss {
                let stats = Patches.statistics(Patches.patchify(images, patch: stride))
                pred = Patches.denormalize(pred, mean: stats.mean, std: stats.std)
                note = "norm-pixel predictions de-normalised with ground-truth patch statistics"
            }
            let image = Patches.unpatchify(pred, patch: stride, imageSize: config.imageSize)
            return Reconstruction(image: image, pixelMask: pixelMask(units: out.mask.reshaped([B, G3, G3])), note: note)
        }
    }

    /// Every stage densely (no mask), the ViT stage over all tokens with the fusion terms, as
    /// the pretrained final LN expects them.
    public func multiScaleFeatures(_ images: Tensor) -> ConvMAEFeatures {
        GradMode.withoutGrad {
            let B = images.shape[0], G3 = config.stageGrids[2], D = config.encoderDim
            let c = convStages(images, visibility: nil)
            let z = norm(blocks3(c.x) + c.e1 + c.e2)  // (B, L, D)
            return ConvMAEFeatures(stage1: c.stage1, stage2: c.stage2, stage3: z.reshaped([B, G3, G3, D]),
                                   pooled: z.mean(axes: [1]))
        }
    }

    public func features(_ images: Tensor, pool: Pooling) -> Tensor {
        let f = multiScaleFeatures(images)
        guard pool == .none else { return f.pooled }  // no class token: .cls pools like .mean
        return f.stage3.reshaped([images.shape[0], tokens, config.encoderDim])
    }

    /// ConvMAE trains with MAE's `add_weight_decay`: only biases and 1-D tensors are excluded.
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor)
    }
}
