import Config
import NN
import TensorCore

/// GreenMIM (docs/methods/greenmim.md): a plain Swin encoder that only ever holds the visible tokens
/// (group window attention, sparse patch merging), a one-block MAE-style decoder and an MSE
/// loss on norm-pixel units. One mask per batch, so every stage has one layout and grouping.
/// Parameter names: the encoder is a Swin under `encoder.` (`patch_embed`, `layers.s.blocks.b`,
/// `layers.s.downsample`, `norm`; no mask token), so its weights load into a dense Swin and back;
/// the decoder follows MAE (`decoder_embed`, `mask_token`, `decoder_pos_embed`,
/// `decoder_blocks.i`, `decoder_norm`, `decoder_pred`).
///
/// Legend: B batch, U unit-grid side (units are the encoder's final stride, one final token
/// each), G token-grid side, N_s visible tokens at stage s, C_s stage width, Dd decoder width,
/// q unit size in pixels.

/// The token layout of one batch: visible tokens, attention plans and merge maps per stage.
public struct GreenLayout: Sendable {
    public struct Stage: Sendable {
        public let visible: VisibleTokens
        public let plain: GroupPlan
        public let shifted: GroupPlan
        /// (N_{s+1}·4) rows of the N_s visible rows, B5's order per 2×2 block; nil at the last stage.
        let merge: RowIndex?
    }

    /// Masked units (U², raster), shared by the batch.
    public let maskedUnits: [Bool]
    /// N_0 rows of the G² embedded tokens.
    let embedGather: RowIndex
    public let stages: [Stage]

    public init(config c: ModelConfig, maskedUnits: [Bool]) {
        precondition(maskedUnits.count == c.unitGrid * c.unitGrid, "GreenMIM mask has \(maskedUnits.count) units, expected \(c.unitGrid)²")
        precondition(maskedUnits.contains(false), "GreenMIM needs at least one visible unit")
        self.maskedUnits = maskedUnits
        let U = c.unitGrid
        var built: [Stage] = []
        var visible: VisibleTokens?
        for s in c.depths.indices {
            let grid = c.stageGrids[s], f = grid / U  // tokens per unit side at this stage
            let masked = (0..<(grid * grid)).map { maskedUnits[(($0 / grid) / f) * U + ($0 % grid) / f] }
            let v = VisibleTokens(grid: grid, masked: masked)
            if let prev = visible { precondition(prev.count == 4 * v.count, "a 2×2 merge block is partly visible") }
            visible = v
            let w = min(c.windowSize, grid)
            let plain = GroupPlan(visible: v, window: w, shift: 0, heads: c.heads[s], width: c.stageDims[s],
                                  mode: c.resolvedGrouping, groupSizeMax: c.groupSizeMax)
            let shifted = grid > c.windowSize
                ? GroupPlan(visible: v, window: w, shift: w / 2, heads: c.heads[s], width: c.stageDims[s],
                            mode: c.resolvedGrouping, groupSizeMax: c.groupSizeMax)
                : plain
            built.append(Stage(visible: v, plain: plain, shifted: shifted, merge: nil))
        }
        // Merge maps: for each visible 2×2 block of stage s (raster order of stage s+1), its four
        // tokens' places in stage s's visible list, as (even row, even col), (odd, even), (even, odd), (odd, odd).
        for s in 0..<(built.count - 1) {
            let v = built[s].visible, next = built[s + 1].visible
            var place = [Int](repeating: -1, count: v.grid * v.grid)
            for t in 0..<v.count { place[v.rows[t] * v.grid + v.cols[t]] = t }
            var idx: [Int] = []
            for t in 0..<next.count {
                for (dy, dx) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    idx.append(place[(2 * next.rows[t] + dy) * v.grid + 2 * next.cols[t] + dx])
                }
            }
            precondition(!idx.contains(-1), "a 2×2 merge block is partly visible")
            built[s] = Stage(visible: v, plain: built[s].plain, shifted: built[s].shifted, merge: RowIndex(idx, sourceRows: v.count))
        }
        stages = built
        let first = built[0].visible
        embedGather = RowIndex((0..<first.count).map { first.rows[$0] * first.grid + first.cols[$0] }, sourceRows: first.grid * first.grid)
    }
}

/// The Swin encoder of GreenMIM: dense Swin parameters, visible-only forward.
public final class GreenSwinEncoder: Module, @unchecked Sendable {
    public let patchEmbed: NormedPatchEmbed
    public let layers: ModuleList<SwinStage>
    public let norm: LayerNorm

    public init(config c: ModelConfig, rng: inout RandomGenerator) {
        patchEmbed = NormedPatchEmbed(patch: c.patchSize, dim: c.embedDim, eps: c.layerNormEps, rng: &rng)
        layers = ModuleList(SwinStage.pyramid(c, rng: &rng))
        norm = LayerNorm(c.encoderDim, eps: c.layerNormEps)
        super.init()
        child("patch_embed", patchEmbed)
        child("layers", layers)
        child("norm", norm)
        // GreenMIM initialises every Linear and Conv with Xavier (over Swin's truncated normal).
        Self.xavierLinears(self, rng: &rng)
        let w = patchEmbed.embed.weight
        w.pointer.update(from: Init.xavierUniform(w.shape, rng: &rng).pointer, count: w.count)
    }

    static func xavierLinears(_ m: Module, rng: inout RandomGenerator) {
        if let l = m as? Linear {
            let w = l.weight
            w.pointer.update(from: Init.xavierUniform(w.shape, fanIn: w.shape[1], fanOut: w.shape[0], rng: &rng).pointer, count: w.count)
        }
        for (_, c) in m.children { xavierLinears(c, rng: &rng) }
    }

    /// images (B, 3, H, W) → the final stage's visible tokens (B, N_last, C_last), raster order.
    public func callAsFunction(_ images: Tensor, layout: GreenLayout) -> Tensor {
        let tokens = patchEmbed(images)  // (B, G², C)
        let (B, C) = (tokens.shape[0], tokens.shape[2])
        var x = tokens.gatherRows(layout.embedGather, batch: B, shape: [B, layout.stages[0].visible.count, C])  // (B, N_0, C)
        for (stage, plan) in zip(layers.items, layout.stages) {
            for (i, block) in stage.blocks.items.enumerated() {
                x = block(visible: x, plan: i % 2 == 1 ? plan.shifted : plan.plain)
            }
            if let merge = plan.merge, let down = stage.downsample {
                let c = x.shape[2]
                let merged = x.gatherRows(merge, batch: B, shape: [B, merge.count / 4, 4 * c])  // (B, N_{s+1}, 4C_s)
                x = down.reduction(down.norm(merged))  // (B, N_{s+1}, 2C_s)
            }
        }
        return norm(x)
    }

    /// The dense Swin forward (every token, cyclic windows): (B, 3, H, W) → (B, L_last, C_last).
    public func dense(_ images: Tensor) -> Tensor {
        norm(layers.items.reduce(patchEmbed(images)) { x, stage in stage(x) })
    }
}

/// GreenMIM: visible-only Swin encoder, one-block decoder at the unit grid, MSE on norm-pixel units.
public final class GreenMIM: Module, MIMModel, @unchecked Sendable {
    public let config: ModelConfig
    public let encoder: GreenSwinEncoder
    let decoderEmbed: Linear
    let maskToken: Tensor
    let decoderPosEmbed: Tensor  // (1, U², Dd), fixed
    let decoderBlocks: ModuleList<TransformerBlock>
    let decoderNorm: LayerNorm
    let decoderPred: Linear

    public init(config: ModelConfig, seed: UInt64) {
        precondition(config.method == .greenmim, "GreenMIM built from a \(config.method) config")
        self.config = config
        var rng = RandomGenerator(seed: seed)
        let (Dd, q) = (config.decoderDim, config.maskUnit)
        encoder = GreenSwinEncoder(config: config, rng: &rng)
        decoderEmbed = Linear(config.encoderDim, Dd, rng: &rng)
        maskToken = Init.normal([1, 1, Dd], std: 0.02, rng: &rng)
        decoderPosEmbed = SinCos.table2D(dim: Dd, grid: config.unitGrid, classToken: false)
        decoderBlocks = ModuleList(depth: config.decoderDepth, dim: Dd, heads: config.decoderHeads,
                                   mlpRatio: config.mlpRatio, eps: config.layerNormEps, rng: &rng)
        decoderNorm = LayerNorm(Dd, eps: config.layerNormEps)
        decoderPred = Linear(Dd, q * q * 3, rng: &rng)
        super.init()
        child("encoder", encoder)
        child("decoder_embed", decoderEmbed)
        parameter("mask_token", maskToken)
        buffer("decoder_pos_embed", decoderPosEmbed)
        child("decoder_blocks", decoderBlocks)
        child("decoder_norm", decoderNorm)
        child("decoder_pred", decoderPred)
    }

    var units: Int { config.unitGrid * config.unitGrid }

    /// One noise row for the whole batch (B7 on units): the ⌊U²·(1 − r)⌋ lowest stay visible.
    public func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        Masking.noise(batch: 1, tokens: units, ratio: ratio ?? config.maskRatio, rng: &rng)
    }

    /// The batch's masked units and the order in which the reference decoder would unshuffle
    /// the visible latents (the noise order; nil for a unit mask).
    func batchMask(_ spec: MaskSpec) -> (masked: [Bool], noiseOrder: [Int]?) {
        switch spec {
        case let .noise(noise, keep):
            precondition(noise.rank == 2 && noise.shape[1] == units, "GreenMIM noise must be (1, \(units)), got \(noise.shape)")
            let values = noise.scalars, first = Array(values[0..<units])
            precondition((1..<noise.shape[0]).allSatisfy { Array(values[($0 * units)..<(($0 + 1) * units)]) == first },
                         "GreenMIM masks per batch: one noise row (or identical rows)")
            precondition(keep >= 1 && keep <= units, "GreenMIM keeps \(keep) of \(units) units")
            let order = Masking.argsortRows(Tensor(first, shape: [1, units]))[0]
            var masked = [Bool](repeating: true, count: units)
            for u in order.prefix(keep) { masked[u] = false }
            return (masked, order)
        case let .units(t):
            let B = t.shape[0]
            precondition(t.shape == [B, config.unitGrid, config.unitGrid], "GreenMIM unit mask must be (B, \(config.unitGrid), \(config.unitGrid)), got \(t.shape)")
            let row = (0..<units).map { t.pointer[$0] != 0 }
            precondition((0..<B).allSatisfy { b in (0..<units).allSatisfy { (t.pointer[b * units + $0] != 0) == row[$0] } },
                         "GreenMIM masks per batch: every sample needs the same unit mask")
            return (row, nil)
        case .uniform:
            preconditionFailure("GreenMIM masks by batch-shared noise or units, not UM-MAE's uniform sampling")
        }
    }

    /// Decoder input rows: for each sample and unit (raster), its latent row in the (B·N_last)
    /// latents or the mask-token row B·N_last.
    func placement(masked: [Bool], noiseOrder: [Int]?, batch B: Int) -> RowIndex {
        let visibleUnits = masked.indices.filter { !masked[$0] }, n = visibleUnits.count
        var slot = [Int](repeating: -1, count: units)  // unit → latent index
        switch config.resolvedDecoderPositions {
        case .true:
            for (k, u) in visibleUnits.enumerated() { slot[u] = k }
        case .reference:
            // B8 on raster-ordered latents: latent k lands where the k-th lowest noise is.
            guard let order = noiseOrder else { preconditionFailure("the reference decoder ordering needs the masking noise") }
            for (k, u) in order.prefix(n).enumerated() { slot[u] = k }
        }
        var idx: [Int] = []
        for b in 0..<B { for u in 0..<units { idx.append(slot[u] >= 0 ? b * n + slot[u] : B * n) } }
        return RowIndex(idx, sourceRows: B * n + 1)
    }

    func decode(_ latent: Tensor, placement: RowIndex) -> Tensor {
        let (B, n, Dd) = (latent.shape[0], latent.shape[1], config.decoderDim)
        let d = decoderEmbed(latent).reshaped([B * n, Dd])
        let rows = Tensor.concat([d, maskToken.reshaped([1, Dd])], axis: 0)
        let full = rows.gatherRows(placement, shape: [B, units, Dd]) + decoderPosEmbed  // (B, U², Dd)
        return decoderPred(decoderNorm(decoderBlocks(full)))  // (B, U², q²·3)
    }

    public func forward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput {
        let B = images.shape[0]
        let (masked, order) = batchMask(spec)
        let layout = GreenLayout(config: config, maskedUnits: masked)
        let latent = encoder(images, layout: layout)
        let pred = decode(latent, placement: placement(masked: masked, noiseOrder: order, batch: B))
        let lossMask = Tensor((0..<B).flatMap { _ in masked.map { $0 ? Float(1) : 0 } }, shape: [B, units])
        let target = GradMode.withoutGrad { self.target(images) }
        let loss = Tensor.maskedMSE(pred, target: target, mask: lossMask)
        return MIMOutput(loss: loss, prediction: pred, latent: latent,
                         mask: lossMask.reshaped([B, config.unitGrid, config.unitGrid]))
    }

    /// Unit targets (B, U², q²·3), normalised per unit when `normPixLoss`.
    func target(_ images: Tensor) -> Tensor {
        let patches = Patches.patchify(images, patch: config.maskUnit)
        return config.normPixLoss ? Patches.normalizedTarget(patches) : patches.copy()
    }

    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction {
        GradMode.withoutGrad {
            let out = forward(images, mask: spec)
            var pred = out.prediction, note: String?
            if config.normPixLoss {
                let stats = Patches.statistics(Patches.patchify(images, patch: config.maskUnit))
                pred = Patches.denormalize(pred, mean: stats.mean, std: stats.std)
                note = "norm-pixel predictions de-normalised with ground-truth patch statistics"
            }
            let image = Patches.unpatchify(pred, patch: config.maskUnit, imageSize: config.imageSize)
            return Reconstruction(image: image, pixelMask: pixelMask(units: out.mask), note: note)
        }
    }

    /// The dense Swin on every token (the weights are plain Swin weights): final LN, then pooling.
    public func features(_ images: Tensor, pool: Pooling) -> Tensor {
        GradMode.withoutGrad {
            let z = encoder.dense(images)
            return pool == .none ? z : z.mean(axes: [1])  // no class token: .cls pools like .mean
        }
    }

    /// GreenMIM exempts names containing "position_bias" or "token" (docs/methods/common.md#no-decay-rules).
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor) || name.contains("position_bias") || name.contains("token")
    }
}
