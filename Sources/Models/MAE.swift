import Config
import NN
import TensorCore

/// MAE (docs/methods/mae.md): a ViT encoder on the visible 25% of patches (no mask tokens), a narrow
/// decoder that alone sees every position, and an MSE loss on norm-pixel masked patches.
/// Parameter names follow the original `models_mae.py`.
public final class MAE: Module, MIMModel, @unchecked Sendable {
    public let config: ModelConfig
    let patchEmbed: PatchEmbed
    let clsToken: Tensor
    let posEmbed: Tensor         // (1, 1 + L, D), fixed
    let blocks: ModuleList<TransformerBlock>
    let norm: LayerNorm
    let decoderEmbed: Linear
    let maskToken: Tensor
    let decoderPosEmbed: Tensor  // (1, 1 + L, Dd), fixed
    let decoderBlocks: ModuleList<TransformerBlock>
    let decoderNorm: LayerNorm
    let decoderPred: Linear
    let patchPos: Tensor         // pos_embed without its class row, (1, L, D)

    public init(config: ModelConfig, seed: UInt64) {
        precondition(config.method == .mae, "MAE built from a \(config.method) config")
        self.config = config
        var rng = RandomGenerator(seed: seed)
        let (D, Dd, G, p) = (config.embedDim, config.decoderDim, config.grid, config.patchSize)
        patchEmbed = PatchEmbed(patch: p, dim: D, xavier: true, rng: &rng)
        clsToken = Init.normal([1, 1, D], std: 0.02, rng: &rng)
        posEmbed = SinCos.table2D(dim: D, grid: G, classToken: true)
        patchPos = posEmbed.slice(axis: 1, start: 1, length: G * G)
        maskToken = Init.normal([1, 1, Dd], std: 0.02, rng: &rng)
        decoderPosEmbed = SinCos.table2D(dim: Dd, grid: G, classToken: true)
        blocks = ModuleList(depth: config.depths[0], dim: D, heads: config.heads[0], mlpRatio: config.mlpRatio,
                            eps: config.layerNormEps, rng: &rng)
        norm = LayerNorm(D, eps: config.layerNormEps)
        decoderEmbed = Linear(D, Dd, rng: &rng)
        decoderBlocks = ModuleList(depth: config.decoderDepth, dim: Dd, heads: config.decoderHeads,
                                   mlpRatio: config.mlpRatio, eps: config.layerNormEps, rng: &rng)
        decoderNorm = LayerNorm(Dd, eps: config.layerNormEps)
        decoderPred = Linear(Dd, p * p * 3, rng: &rng)
        super.init()
        parameter("cls_token", clsToken)
        buffer("pos_embed", posEmbed)
        child("patch_embed", patchEmbed)
        child("blocks", blocks)
        child("norm", norm)
        child("decoder_embed", decoderEmbed)
        parameter("mask_token", maskToken)
        buffer("decoder_pos_embed", decoderPosEmbed)
        child("decoder_blocks", decoderBlocks)
        child("decoder_norm", decoderNorm)
        child("decoder_pred", decoderPred)
    }

    var tokens: Int { config.grid * config.grid }

    public func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        Masking.noise(batch: batch, tokens: tokens, ratio: ratio ?? config.maskRatio, rng: &rng)
    }

    /// The shuffle (kept tokens in noise order), restore index and 0/1 mask of B7.
    struct Shuffle {
        let keep: Int
        let visible: RowIndex  // (B·keep) rows of the (B·L) patch tokens
        let unshuffle: RowIndex  // (B·(1+L)) rows of [decoder latents (B·(1+keep)); mask token]
        let mask: Tensor  // (B, L)
    }

    func shuffle(noise: Tensor, keep: Int) -> Shuffle {
        let B = noise.shape[0], L = tokens
        precondition(noise.shape == [B, L], "MAE noise must be (B, \(L)), got \(noise.shape)")
        precondition(keep >= 1 && keep <= L, "MAE keeps \(keep) of \(L) tokens")
        let orders = Masking.argsortRows(noise)
        var visible: [Int32] = [], unshuffle: [Int32] = []
        let mask = Tensor(repeating: 1, shape: [B, L])
        let maskRow = Int32(B * (1 + keep))
        for b in 0..<B {
            var restore = [Int](repeating: 0, count: L)
            for (rank, l) in orders[b].enumerated() { restore[l] = rank }
            for l in orders[b].prefix(keep) {
                visible.append(Int32(b * L + l))
                mask.pointer[b * L + l] = 0
            }
            unshuffle.append(Int32(b * (1 + keep)))  // class latent stays in front
            for l in 0..<L {
                unshuffle.append(restore[l] < keep ? Int32(b * (1 + keep) + 1 + restore[l]) : maskRow)
            }
        }
        return Shuffle(keep: keep, visible: RowIndex(visible, sourceRows: B * L),
                       unshuffle: RowIndex(unshuffle, sourceRows: B * (1 + keep) + 1), mask: mask)
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

    func encode(_ images: Tensor, shuffle s: Shuffle) -> Tensor {
        let B = images.shape[0], D = config.embedDim
        let x = embed(images).gatherRows(s.visible, shape: [B, s.keep, D])  // (B, keep, D) in noise order
        return norm(blocks(prependClass(x)))  // (B, 1 + keep, D)
    }

    func decode(_ latent: Tensor, shuffle s: Shuffle) -> Tensor {
        let B = latent.shape[0], L = tokens, Dd = config.decoderDim
        let d = decoderEmbed(latent)  // (B, 1 + keep, Dd)
        let rows = Tensor.concat([d.reshaped([B * (1 + s.keep), Dd]), maskToken.reshaped([1, Dd])], axis: 0)
        let full = rows.gatherRows(s.unshuffle, shape: [B, 1 + L, Dd]) + decoderPosEmbed  // B8
        let out = decoderPred(decoderNorm(decoderBlocks(full)))  // (B, 1 + L, p²·3)
        return out.slice(axis: 1, start: 1, length: L)
    }

    public func forward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput {
        guard case let .noise(noise, keep) = spec else { preconditionFailure("MAE masks by noise (B7)") }
        let s = shuffle(noise: noise, keep: keep)
        let latent = encode(images, shuffle: s)
        let pred = decode(latent, shuffle: s)
        let target = GradMode.withoutGrad { self.target(images) }
        let loss = Tensor.maskedMSE(pred, target: target, mask: s.mask)
        return MIMOutput(loss: loss, prediction: pred, latent: latent, mask: s.mask)
    }

    /// Patch targets (B, L, p²·3), normalised per patch when `normPixLoss`.
    func target(_ images: Tensor) -> Tensor {
        let patches = Patches.patchify(images, patch: config.patchSize)
        return config.normPixLoss ? Patches.normalizedTarget(patches) : patches.copy()
    }

    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction {
        GradMode.withoutGrad {
            let out = forward(images, mask: spec)
            var pred = out.prediction
            var note: String?
            if config.normPixLoss {
                // De-normalise each patch with the target patch's own statistics (the MAE demo).
                let stats = Patches.statistics(Patches.patchify(images, patch: config.patchSize))
                pred = Patches.denormalize(pred, mean: stats.mean, std: stats.std)
                note = "norm-pixel predictions de-normalised with ground-truth patch statistics"
            }
            let image = Patches.unpatchify(pred, patch: config.patchSize, imageSize: config.imageSize)
            let B = images.shape[0], G = config.grid
            let units = out.mask.reshaped([B, G, G])
            return Reconstruction(image: image, pixelMask: pixelMask(units: units), note: note)
        }
    }

    public func features(_ images: Tensor, pool: Pooling) -> Tensor {
        GradMode.withoutGrad {
            let z = norm(blocks(prependClass(embed(images))))  // (B, 1 + L, D)
            let B = images.shape[0], L = tokens, D = config.embedDim
            switch pool {
            case .cls: return z.slice(axis: 1, start: 0, length: 1).reshaped([B, D])
            case .mean: return z.slice(axis: 1, start: 1, length: L).mean(axes: [1])
            case .none: return z
            }
        }
    }

    /// MAE decays tokens; only biases and 1-D tensors are excluded (docs/methods/common.md#no-decay-rules).
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor)
    }
}
