import Config
import NN
import TensorCore

/// MAE (docs/methods/mae.md): a ViT encoder on the visible 25% of patches (no mask tokens), a narrow
/// decoder that alone sees every position, and an MSE loss on norm-pixel masked patches.
/// Parameter names follow the original `models_mae.py`.
///
/// Legend: B batch, G patch-grid side, L = G² patches, keep visible patches per sample, D width,
/// Dd decoder width, p patch size in pixels.
public final class MAE: Module, MIMModel, NoiseMaskedPredictor, @unchecked Sendable {
    public let config: ModelConfig
    let patchEmbed: PatchEmbed
    let clsToken: Tensor
    let posEmbed: Tensor         // (1, 1 + L, D), fixed
    let blocks: ModuleList<TransformerBlock>
    let norm: LayerNorm
    let decoder: MAEDecoder      // with a class row: position table (1, 1 + L, Dd)
    let patchPos: Tensor         // pos_embed without its class row, (1, L, D)

    public init(config: ModelConfig, seed: UInt64, decoderBlocks: Bool = true) {
        precondition(config.method == .mae, "MAE built from a \(config.method) config")
        self.config = config
        var rng = RandomGenerator(seed: seed)
        let (D, G, p) = (config.embedDim, config.grid, config.patchSize)
        patchEmbed = PatchEmbed(patch: p, dim: D, xavier: true, rng: &rng)
        clsToken = Init.normal([1, 1, D], std: 0.02, rng: &rng)
        posEmbed = SinCos.table2D(dim: D, grid: G, classToken: true)
        patchPos = posEmbed.slice(axis: 1, start: 1, length: G * G)
        // models_mae.py draws the decoder's mask token with the other tokens, before any block.
        let maskToken = Init.normal([1, 1, config.decoderDim], std: 0.02, rng: &rng)
        blocks = ModuleList(depth: config.depths[0], dim: D, heads: config.heads[0], mlpRatio: config.mlpRatio,
                            eps: config.layerNormEps, rng: &rng)
        norm = LayerNorm(D, eps: config.layerNormEps)
        decoder = MAEDecoder(config: config, classToken: true, maskToken: maskToken, withBlocks: decoderBlocks, rng: &rng)
        super.init()
        parameter("cls_token", clsToken)
        buffer("pos_embed", posEmbed)
        child("patch_embed", patchEmbed)
        child("blocks", blocks)
        child("norm", norm)
        decoder.register(in: self)
    }

    /// Patch tokens with positions, (B, L, D).
    func embed(_ images: Tensor) -> Tensor {
        patchEmbed(images) + patchPos
    }

    /// Class token (+ its zero position) in front of `x` (B, n, D).
    func prependClass(_ x: Tensor) -> Tensor {
        let cls = clsToken + posEmbed.slice(axis: 1, start: 0, length: 1)
        return Tensor.concat([expandToken(cls, batch: x.shape[0]), x], axis: 1)
    }

    func encode(_ images: Tensor, shuffle s: NoiseShuffle) -> Tensor {
        let B = images.shape[0], D = config.embedDim
        // The kept tokens alone are embedded, each with its position row.
        let L = config.grid * config.grid
        let positions = RowIndex(s.visible.indices.map { $0 % Int32(L) }, sourceRows: L)
        let x = (patchEmbed(images, tokens: s.visible) + patchPos.gatherRows(positions, shape: [B * s.keep, D]))
            .reshaped([B, s.keep, D])  // (B, keep, D) in noise order
        return norm(blocks(prependClass(x)))  // (B, 1 + keep, D)
    }

    public func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        noiseMask(batch: batch, ratio: ratio, rng: &rng)
    }

    public func forward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput { noiseMaskedForward(images, mask: spec) }

    public func trainingLoss(_ images: Tensor, mask spec: MaskSpec) -> Tensor { noiseMaskedTrainingLoss(images, mask: spec) }

    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction { forwardReconstruction(images, mask: spec) }

    public func encode(_ images: Tensor, pool: Pooling) -> Tensor {
        let z = norm(blocks(prependClass(embed(images))))  // (B, 1 + L, D)
        let B = images.shape[0], L = unitCount, D = config.embedDim
        switch pool {
        case .cls: return z.slice(axis: 1, start: 0, length: 1).reshaped([B, D])
        case .mean: return z.slice(axis: 1, start: 1, length: L).mean(axes: [1])
        case .none: return z
        }
    }

    /// MAE decays tokens; only biases and 1-D tensors are excluded (docs/methods/common.md#no-decay-rules).
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor)
    }
}
