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

public final class ConvMAE: Module, MIMModel, NoiseMaskedPredictor, @unchecked Sendable {
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
    let decoder: MAEDecoder              // position table (1, L, Dd)

    public init(config c: ModelConfig, seed: UInt64, decoderBlocks: Bool = true) {
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
        decoder = MAEDecoder(config: c, classToken: false, withBlocks: decoderBlocks, rng: &rng)
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
        decoder.register(in: self)
    }

    // MARK: Encoder and decoder

    /// The dense part: conv stages 1–2 (masked when visibility maps are given) and the stage-3
    /// embedding. Returns stage maps, the stage-3 tokens with positions (B, L, D) and the
    /// fusion terms E₁, E₂ (B, L, D).
    func convStages(_ images: Tensor, visibility: (Tensor, Tensor)?)
        -> (stage1: Tensor, stage2: Tensor, x: Tensor, e1: Tensor, e2: Tensor) {
        let B = images.shape[0], L = unitCount, D = config.encoderDim
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
    func encode(_ images: Tensor, shuffle s: NoiseShuffle) -> Tensor {
        let B = images.shape[0], D = config.encoderDim
        let c = convStages(images, visibility: (s.visibility1, s.visibility2))
        let shape = [B, s.keep, D]
        let x = blocks3(c.x.gatherRows(s.visible, shape: shape))
        // Fusion before the norm: z = Blocks₃(x_vis) + E₁_vis + E₂_vis.
        return norm(x + c.e1.gatherRows(s.visible, shape: shape) + c.e2.gatherRows(s.visible, shape: shape))
    }

    // MARK: MIMModel

    public func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        noiseMask(batch: batch, ratio: ratio, rng: &rng)
    }

    public func forward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput { noiseMaskedForward(images, mask: spec) }

    public func trainingLoss(_ images: Tensor, mask spec: MaskSpec) -> Tensor { noiseMaskedTrainingLoss(images, mask: spec) }

    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction { forwardReconstruction(images, mask: spec) }

    /// Every stage densely (no mask), the ViT stage over all tokens with the fusion terms, as
    /// the pretrained final LN expects them.
    public func multiScaleFeatures(_ images: Tensor) -> ConvMAEFeatures {
        GradMode.withoutGrad { multiScale(images) }
    }

    /// The same on the tape.
    func multiScale(_ images: Tensor) -> ConvMAEFeatures {
        let B = images.shape[0], G3 = config.stageGrids[2], D = config.encoderDim
        let c = convStages(images, visibility: nil)
        let z = norm(blocks3(c.x) + c.e1 + c.e2)  // (B, L, D)
        return ConvMAEFeatures(stage1: c.stage1, stage2: c.stage2, stage3: z.reshaped([B, G3, G3, D]),
                               pooled: z.mean(axes: [1]))
    }

    public func encode(_ images: Tensor, pool: Pooling) -> Tensor {
        let f = multiScale(images)
        guard pool == .none else { return f.pooled }  // no class token: .cls pools like .mean
        return f.stage3.reshaped([images.shape[0], unitCount, config.encoderDim])
    }

    /// ConvMAE trains with MAE's `add_weight_decay`: only biases and 1-D tensors are excluded.
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor)
    }
}

extension NoiseShuffle {
    /// ConvMAE's visibility maps of the conv stages: the stage-3 mask, inverted and upsampled
    /// ×4 to (B, G₁, G₁, 1) and ×2 to (B, G₂, G₂, 1), 1 = visible. Masks of all scales align.
    var visibility1: Tensor { visibility(upsampledBy: 4) }
    var visibility2: Tensor { visibility(upsampledBy: 2) }

    private func visibility(upsampledBy f: Int) -> Tensor {
        let (B, L) = (mask.shape[0], mask.shape[1])
        let G3 = Int(Double(L).squareRoot())
        let visible = GradMode.withoutGrad { Tensor(repeating: 1, shape: mask.shape) - mask }.reshaped([B, G3, G3])
        return Masking.upsample(visible, factor: f).reshaped([B, G3 * f, G3 * f, 1])
    }
}
