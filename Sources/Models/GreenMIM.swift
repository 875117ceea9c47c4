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

extension SwinEncoder {
    /// GreenMIM's encoder pass: the dense Swin's weights on the visible tokens alone (group
    /// window attention, sparse patch merging).
    /// images (B, 3, H, W) → the final stage's visible tokens (B, N_last, C_last), raster order.
    public func callAsFunction(_ images: Tensor, layout: GreenLayout) -> Tensor {
        let B = images.shape[0]
        var x = patchEmbed(images, tokens: layout.embedGather, batch: B)  // (B·N_0, C)
        x = x.reshaped([B, layout.stages[0].visible.count, x.shape[1]])
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
}

/// GreenMIM: visible-only Swin encoder, one-block decoder at the unit grid, MSE on norm-pixel units.
public final class GreenMIM: Module, MIMModel, UnitPredictor, @unchecked Sendable {
    public let config: ModelConfig
    /// A plain Swin (no mask token), run on the visible tokens only.
    public let encoder: SwinEncoder
    let decoder: MAEDecoder  // position table (1, U², Dd)

    public init(config: ModelConfig, seed: UInt64, decoderBlocks: Bool = true) {
        precondition(config.method == .greenmim, "GreenMIM built from a \(config.method) config")
        self.config = config
        var rng = RandomGenerator(seed: seed)
        let encoder = SwinEncoder(config: config, maskToken: false, rng: &rng)
        // GreenMIM initialises every Linear and Conv with Xavier (over Swin's truncated normal).
        Init.redrawXavierLinears(in: encoder, rng: &rng)
        Init.redrawXavier(encoder.patchEmbed.embed.weight, rng: &rng)
        self.encoder = encoder
        decoder = MAEDecoder(config: config, classToken: false, withBlocks: decoderBlocks, rng: &rng)
        super.init()
        child("encoder", encoder)
        decoder.register(in: self)
    }

    /// One noise row for the whole batch (B7 on units): the ⌊U²·(1 − r)⌋ lowest stay visible.
    public var masksPerSample: Bool { false }

    public func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        Masking.noise(batch: 1, tokens: unitCount, ratio: ratio ?? config.maskRatio, rng: &rng)
    }

    /// The batch's masked units and the order in which the reference decoder would unshuffle
    /// the visible latents (the noise order; nil for a unit mask).
    func batchMask(_ spec: MaskSpec) -> (masked: [Bool], noiseOrder: [Int]?) {
        switch spec {
        case let .noise(noise, keep):
            precondition(noise.rank == 2 && noise.shape[1] == unitCount, "GreenMIM noise must be (1, \(unitCount)), got \(noise.shape)")
            let values = noise.scalars, first = Array(values[0..<unitCount])
            precondition((1..<noise.shape[0]).allSatisfy { Array(values[($0 * unitCount)..<(($0 + 1) * unitCount)]) == first },
                         "GreenMIM masks per batch: one noise row (or identical rows)")
            precondition(keep >= 1 && keep <= unitCount, "GreenMIM keeps \(keep) of \(unitCount) units")
            let order = Masking.argsortRows(Tensor(first, shape: [1, unitCount]))[0]
            var masked = [Bool](repeating: true, count: unitCount)
            for u in order.prefix(keep) { masked[u] = false }
            return (masked, order)
        case let .units(t):
            let B = t.shape[0]
            precondition(t.shape == [B, config.unitGrid, config.unitGrid], "GreenMIM unit mask must be (B, \(config.unitGrid), \(config.unitGrid)), got \(t.shape)")
            let row = (0..<unitCount).map { t.pointer[$0] != 0 }
            precondition((0..<B).allSatisfy { b in (0..<unitCount).allSatisfy { (t.pointer[b * unitCount + $0] != 0) == row[$0] } },
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
        var slot = [Int](repeating: -1, count: unitCount)  // unit → latent index
        switch config.resolvedDecoderPositions {
        case .true:
            for (k, u) in visibleUnits.enumerated() { slot[u] = k }
        case .reference:
            // B8 on raster-ordered latents: latent k lands where the k-th lowest noise is.
            guard let order = noiseOrder else { preconditionFailure("the reference decoder ordering needs the masking noise") }
            for (k, u) in order.prefix(n).enumerated() { slot[u] = k }
        }
        var idx: [Int] = []
        for b in 0..<B { for u in 0..<unitCount { idx.append(slot[u] >= 0 ? b * n + slot[u] : B * n) } }
        return RowIndex(idx, sourceRows: B * n + 1)
    }

    /// Latents (B, N_last, C_last) → (B, U², q²·3).
    func decode(_ latent: Tensor, placement: RowIndex) -> Tensor {
        decoder(rows: decoder.embedRows(latent), placement: placement)
    }

    /// The encoder's latents of the visible units, the decoder's placement and the loss mask
    /// (B, U²): the masked units.
    func encodeVisible(_ images: Tensor, mask spec: MaskSpec) -> (latent: Tensor, placement: RowIndex, lossMask: Tensor) {
        let B = images.shape[0]
        let (masked, order) = batchMask(spec)
        let layout = GreenLayout(config: config, maskedUnits: masked)
        let latent = encoder(images, layout: layout)
        let lossMask = Tensor((0..<B).flatMap { _ in masked.map { $0 ? Float(1) : 0 } }, shape: [B, unitCount])
        return (latent, placement(masked: masked, noiseOrder: order, batch: B), lossMask)
    }

    public func forward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput {
        let (latent, placement, lossMask) = encodeVisible(images, mask: spec)
        let pred = decode(latent, placement: placement)
        let loss = unitLoss(pred, images: images, mask: lossMask)
        return MIMOutput(loss: loss, prediction: pred, latent: latent,
                         mask: lossMask.reshaped([images.shape[0], config.unitGrid, config.unitGrid]))
    }

    /// The loss of `forward`, predicting the masked units alone.
    public func trainingLoss(_ images: Tensor, mask spec: MaskSpec) -> Tensor {
        let (latent, placement, lossMask) = encodeVisible(images, mask: spec)
        let scored = scoredRows(lossMask)
        let pred = decoder(rows: decoder.embedRows(latent), placement: placement, predicting: scored.tokens)
        return scoredUnitLoss(pred, images: images, scored: scored.targets)
    }

    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction { forwardReconstruction(images, mask: spec) }

    /// The dense Swin on every token (the weights are plain Swin weights): final LN, then pooling.
    public func encode(_ images: Tensor, pool: Pooling) -> Tensor {
        pooledWithoutClassToken(encoder.dense(images), pool)
    }

    /// GreenMIM exempts names containing "position_bias" or "token" (docs/methods/common.md#no-decay-rules).
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor) || name.contains("position_bias") || name.contains("token")
    }
}
