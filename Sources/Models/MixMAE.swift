import Config
import NN
import TensorCore

/// MixMAE / MixMIM (docs/methods/mixmae.md): two images share one encoder pass. Sample i is mixed with
/// its partner π(i) = B−1−i under one batch-wide unit mask, a no-shift Swin with large windows
/// encodes the mixture while an additive −1e30 mask keeps attention inside each source image,
/// and a dual-branch decoder un-mixes so every unit of every image is predicted from the other
/// half of the same image. Parameter names follow the official `models_mixmim.py` (no prefix).
///
/// Legend: B batch, k stage, G_k stage grid side, L_k = G_k² tokens, C_k stage width, U mask
/// units per side (= the last grid), Dd decoder width, s encoder stride in pixels,
/// P = s²·3 target values per unit, nW windows per image, N tokens per window.

/// A Swin block without shift whose attention takes an extra additive mask: names `norm1`,
/// `attn`, `norm2`, `mlp` (the official MixMIMBlock).
final class MixBlock: Module, @unchecked Sendable {
    let norm1: LayerNorm
    let attn: WindowAttention
    let norm2: LayerNorm
    let mlp: MLP
    let layout: WindowLayout

    init(dim: Int, heads: Int, layout: WindowLayout, mlpRatio: Int, eps: Float, rng: inout RandomGenerator) {
        self.layout = layout
        norm1 = LayerNorm(dim, eps: eps)
        attn = WindowAttention(dim: dim, heads: heads, window: layout.window, rng: &rng)
        norm2 = LayerNorm(dim, eps: eps)
        mlp = MLP(dim, hidden: dim * mlpRatio, rng: &rng)
        super.init()
        child("norm1", norm1)
        child("attn", attn)
        child("norm2", norm2)
        child("mlp", mlp)
    }

    /// x (B, L, C); `sourceMask` (nW, N, N) separates the two mixed images, nil when unmixed.
    func callAsFunction(_ x: Tensor, sourceMask: Tensor?) -> Tensor {
        let (B, L, C) = (x.shape[0], x.shape[1], x.shape[2])
        let n = layout.tokensPerWindow, nW = layout.windows
        let windows = norm1(x).gatherRows(layout.partition, batch: B, shape: [B * nW, n, C])  // (B·nW, N, C)
        // Entry b·nW + w of the batch uses mask[w]: one mask serves every sample.
        let attended = attn(windows, mask: sourceMask)
        let h = x + attended.gatherRows(layout.reverse, batch: B, shape: [B, L, C])  // back to raster (B, L, C)
        return h + mlp(norm2(h))
    }
}

/// One stage: names `blocks.i`, `downsample` (B5 merging, which stays inside one mask unit).
final class MixStage: Module, @unchecked Sendable {
    let blocks: ModuleList<MixBlock>
    let downsample: PatchMerging?
    let layout: WindowLayout

    init(dim: Int, depth: Int, heads: Int, grid: Int, window: Int, mlpRatio: Int, eps: Float, downsample: Bool,
         rng: inout RandomGenerator) {
        // No shifted windows anywhere; a stage no larger than the window attends over the whole map.
        layout = WindowLayout(grid: grid, window: min(window, grid), shift: 0)
        var made: [MixBlock] = []
        for _ in 0..<depth {
            made.append(MixBlock(dim: dim, heads: heads, layout: layout, mlpRatio: mlpRatio, eps: eps, rng: &rng))
        }
        blocks = ModuleList(made)
        self.downsample = downsample ? PatchMerging(dim: dim, grid: grid, eps: eps, rng: &rng) : nil
        super.init()
        child("blocks", blocks)
        if let d = self.downsample { child("downsample", d) }
    }

    func callAsFunction(_ x: Tensor, sourceMask: Tensor?) -> Tensor {
        let h = blocks.items.reduce(x) { h, block in block(h, sourceMask: sourceMask) }
        return downsample.map { $0(h) } ?? h
    }
}

/// Everything one batch's mask decides, built once per forward pass.
struct MixPlan {
    /// (U²) true = masked, shared by every sample.
    let units: [Bool]
    /// Per stage (nW, N, N): −1e30 between tokens from different source images; nil if none differ.
    let sourceMasks: [Tensor?]
    /// (B·L₁) rows of the (B·L₁) patch tokens: masked positions take the partner's token.
    let mix: RowIndex
    /// (2B·U²) rows of [z (B·U²); mask token]: branch A then branch B.
    let branches: RowIndex
    /// (B·U²) rows of the decoder output (2B·U²): A_i at masked units, B_π(i) elsewhere.
    let unmix: RowIndex

    /// Sample i's partner: the batch reversed, so an odd batch's middle sample pairs with itself.
    static func partner(_ i: Int, batch: Int) -> Int { batch - 1 - i }
}

/// MixMAE: names `patch_embed`, `absolute_pos_embed` (fixed), `layers.s`, `norm`, `mask_token`,
/// `decoder_embed`, `decoder_pos_embed` (fixed), `decoder_blocks.i`, `decoder_norm`, `decoder_pred`.
public final class MixMAE: Module, MIMModel, @unchecked Sendable {
    public let config: ModelConfig
    let patchEmbed: NormedPatchEmbed
    let absolutePosEmbed: Tensor  // (1, L₁, C₁), fixed
    let layers: ModuleList<MixStage>
    let norm: LayerNorm
    let maskToken: Tensor         // (1, 1, Dd)
    let decoderEmbed: Linear
    let decoderPosEmbed: Tensor   // (1, U², Dd), fixed
    let decoderBlocks: ModuleList<TransformerBlock>
    let decoderNorm: LayerNorm
    let decoderPred: Linear

    public init(config c: ModelConfig, seed: UInt64) {
        precondition(c.method == .mixmae, "MixMAE built from a \(c.method) config")
        config = c
        var rng = RandomGenerator(seed: seed)
        patchEmbed = NormedPatchEmbed(patch: c.patchSize, dim: c.embedDim, eps: c.layerNormEps, rng: &rng)
        absolutePosEmbed = SinCos.table2D(dim: c.embedDim, grid: c.grid, classToken: false)
        var stages: [MixStage] = []
        for s in c.depths.indices {
            stages.append(MixStage(dim: c.stageDims[s], depth: c.depths[s], heads: c.heads[s], grid: c.stageGrids[s],
                                   window: c.windowSize, mlpRatio: c.mlpRatio, eps: c.layerNormEps,
                                   downsample: s < c.depths.count - 1, rng: &rng))
        }
        layers = ModuleList(stages)
        // B12: every Linear is Xavier-uniform (the Swin parts default to truncated normal).
        xavierInitLinears(layers, rng: &rng)
        norm = LayerNorm(c.encoderDim, eps: c.layerNormEps)
        maskToken = Init.normal([1, 1, c.decoderDim], std: 0.02, rng: &rng)
        decoderEmbed = Linear(c.encoderDim, c.decoderDim, rng: &rng)
        decoderPosEmbed = SinCos.table2D(dim: c.decoderDim, grid: c.unitGrid, classToken: false)
        decoderBlocks = ModuleList(depth: c.decoderDepth, dim: c.decoderDim, heads: c.decoderHeads,
                                   mlpRatio: c.mlpRatio, eps: c.layerNormEps, rng: &rng)
        decoderNorm = LayerNorm(c.decoderDim, eps: c.layerNormEps)
        decoderPred = Linear(c.decoderDim, c.encoderStride * c.encoderStride * 3, rng: &rng)
        super.init()
        child("patch_embed", patchEmbed)
        child("layers", layers)
        child("norm", norm)
        parameter("mask_token", maskToken)
        buffer("absolute_pos_embed", absolutePosEmbed)
        buffer("decoder_pos_embed", decoderPosEmbed)
        child("decoder_embed", decoderEmbed)
        child("decoder_blocks", decoderBlocks)
        child("decoder_norm", decoderNorm)
        child("decoder_pred", decoderPred)
    }

    var unitCount: Int { config.unitGrid * config.unitGrid }

    // MARK: Masking

    /// One mask for the whole batch (MixMIM's `random_masking`): noise over the U² units, the
    /// ⌊U²·r⌋ smallest are masked. Returned as (B, U, U) with identical rows.
    public func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        let n = unitCount, masked = Int(Float(n) * (ratio ?? config.maskRatio))
        let noise = Tensor(uninitialized: [1, n])
        for i in 0..<n { noise.pointer[i] = rng.uniform() }
        let order = Masking.argsortRows(noise)[0]
        let t = Tensor(zeros: [batch, config.unitGrid, config.unitGrid])
        for b in 0..<batch { for u in order.prefix(masked) { t.pointer[b * n + u] = 1 } }
        return .units(t)
    }

    /// The batch's shared unit mask (U²), true = masked. `.units` may be (1, U, U) or (B, U, U)
    /// with equal rows; `.noise` is B7 (the `keep` lowest stay visible) on a (1 or B, U²) row.
    func sharedUnits(_ spec: MaskSpec, batch: Int) -> [Bool] {
        let n = unitCount
        let rows: Tensor
        switch spec {
        case .units(let t):
            precondition(t.count % n == 0 && (t.count / n == 1 || t.count / n == batch),
                         "MixMAE unit mask must be (1 or \(batch), \(config.unitGrid), \(config.unitGrid)), got \(t.shape)")
            rows = t
        case let .noise(noise, keep):
            precondition(noise.count % n == 0, "MixMAE noise must be (1 or \(batch), \(n)), got \(noise.shape)")
            let r = Tensor(repeating: 1, shape: [noise.count / n, n])
            for (b, order) in Masking.argsortRows(noise.reshaped([noise.count / n, n])).enumerated() {
                for u in order.prefix(keep) { r.pointer[b * n + u] = 0 }
            }
            rows = r
        case .uniform:
            preconditionFailure("MixMAE masks by batch-shared units or noise, not UM-MAE's uniform sampling")
        }
        let first = (0..<n).map { rows.pointer[$0] != 0 }
        for b in 1..<(rows.count / n) {
            precondition((0..<n).allSatisfy { (rows.pointer[b * n + $0] != 0) == first[$0] },
                         "MixMAE's mask is shared by the batch: sample \(b) differs from sample 0")
        }
        return first
    }

    /// Index maps and attention masks for a batch of `B` under `units`.
    func plan(batch B: Int, units: [Bool]) -> MixPlan {
        let U = config.unitGrid, n = unitCount
        // Nearest upsampling of the unit mask to a stage grid G (one unit = (G/U)² tokens).
        func stageMask(_ G: Int) -> [Bool] {
            let f = G / U
            return (0..<(G * G)).map { units[(($0 / G) / f) * U + ($0 % G) / f] }
        }
        let sourceMasks: [Tensor?] = layers.items.map { stage in
            let layout = stage.layout, m = stageMask(layout.grid)
            let N = layout.tokensPerWindow, nW = layout.windows
            let mask = Tensor(zeros: [nW, N, N])
            var anyMixed = false
            for w in 0..<nW {
                let labels = (0..<N).map { m[Int(layout.partition.indices[w * N + $0])] }
                for i in 0..<N { for j in 0..<N where labels[i] != labels[j] {
                    mask.pointer[(w * N + i) * N + j] = -1e30
                    anyMixed = true
                } }
            }
            return anyMixed ? mask : nil
        }
        let L1 = config.grid * config.grid, m1 = stageMask(config.grid)
        var mix = [Int32](repeating: 0, count: B * L1)
        for i in 0..<B { for l in 0..<L1 {
            mix[i * L1 + l] = Int32((m1[l] ? MixPlan.partner(i, batch: B) : i) * L1 + l)
        } }
        let maskRow = Int32(B * n)
        var branches = [Int32](repeating: 0, count: 2 * B * n), unmix = [Int32](repeating: 0, count: B * n)
        for i in 0..<B { for l in 0..<n {
            let own = Int32(i * n + l)
            branches[i * n + l] = units[l] ? maskRow : own        // A: the visible units of x̃_i
            branches[(B + i) * n + l] = units[l] ? own : maskRow  // B: the partner's units of x̃_i
            unmix[i * n + l] = units[l] ? own : Int32((B + MixPlan.partner(i, batch: B)) * n + l)
        } }
        return MixPlan(units: units, sourceMasks: sourceMasks,
                       mix: RowIndex(mix, sourceRows: B * L1),
                       branches: RowIndex(branches, sourceRows: B * n + 1),
                       unmix: RowIndex(unmix, sourceRows: 2 * B * n))
    }

    // MARK: Encoder and decoder

    /// images (B, 3, H, W) → (B, U², C_last) after the final LN; mixed when a plan is given.
    func encode(_ images: Tensor, plan: MixPlan?) -> Tensor {
        var x = patchEmbed(images)  // (B, L₁, C₁)
        // x̃_i = x_i·(1−m₁) + x_π(i)·m₁ as one row gather (exact for a 0/1 mask).
        if let plan { x = x.gatherRows(plan.mix, shape: x.shape) }
        x = x + absolutePosEmbed
        for (k, stage) in layers.items.enumerated() { x = stage(x, sourceMask: plan?.sourceMasks[k]) }
        return norm(x)
    }

    /// Latent (B, U², C_last) → both branches' predictions (2B, U², P).
    func decode(_ latent: Tensor, plan: MixPlan) -> Tensor {
        let (B, n, Dd) = (latent.shape[0], unitCount, config.decoderDim)
        let z = decoderEmbed(latent)  // (B, U², Dd)
        let rows = Tensor.concat([z.reshaped([B * n, Dd]), maskToken.reshaped([1, Dd])], axis: 0)  // (B·U² + 1, Dd)
        // Branch A = z·(1−m₄) + t·m₄, branch B = z·m₄ + t·(1−m₄), stacked: (2B, U², Dd).
        let x = rows.gatherRows(plan.branches, shape: [2 * B, n, Dd]) + decoderPosEmbed
        return decoderPred(decoderNorm(decoderBlocks(x)))
    }

    /// Patch targets (B, U², P) at the encoder stride, normalised per patch when `normPixLoss`.
    func target(_ images: Tensor) -> Tensor {
        let patches = Patches.patchify(images, patch: config.encoderStride)
        return config.normPixLoss ? Patches.normalizedTarget(patches) : patches.copy()
    }

    func unitTensor(_ units: [Bool], batch: Int) -> Tensor {
        let U = config.unitGrid
        return Tensor((0..<batch).flatMap { _ in units.map { $0 ? Float(1) : 0 } }, shape: [batch, U, U])
    }

    // MARK: MIMModel

    public func forward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput {
        let B = images.shape[0], n = unitCount
        let p = plan(batch: B, units: sharedUnits(spec, batch: B))
        let latent = encode(images, plan: p)
        let both = decode(latent, plan: p)  // (2B, U², P)
        // Un-mix: pred_i = A_i·m₄ + B_π(i)·(1−m₄).
        let pred = both.gatherRows(p.unmix, shape: [B, n, both.dim(-1)])
        let target = GradMode.withoutGrad { self.target(images) }
        // Every unit of every image is scored: a plain mean.
        let loss = Tensor.maskedMSE(pred, target: target, mask: Tensor(repeating: 1, shape: [B, n]))
        return MIMOutput(loss: loss, prediction: pred, latent: latent, mask: unitTensor(p.units, batch: B))
    }

    /// Branch A: each image's masked units predicted from its own visible units only (the
    /// attention mask and the mask tokens keep the partner out), with the pixel mask m.
    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction {
        GradMode.withoutGrad {
            let B = images.shape[0], s = config.encoderStride
            let p = plan(batch: B, units: sharedUnits(spec, batch: B))
            var pred = decode(encode(images, plan: p), plan: p).slice(axis: 0, start: 0, length: B)  // (B, U², P)
            var note: String?
            if config.normPixLoss {
                let stats = Patches.statistics(Patches.patchify(images, patch: s))
                pred = Patches.denormalize(pred, mean: stats.mean, std: stats.std)
                note = "norm-pixel predictions de-normalised with ground-truth patch statistics"
            }
            let image = Patches.unpatchify(pred, patch: s, imageSize: config.imageSize)
            return Reconstruction(image: image, pixelMask: pixelMask(units: unitTensor(p.units, batch: B)), note: note)
        }
    }

    /// The unmixed encoder (no attention mask) after its final LN: (B, U², C_last) or pooled.
    public func features(_ images: Tensor, pool: Pooling) -> Tensor {
        GradMode.withoutGrad {
            let z = encode(images, plan: nil)
            return pool == .none ? z : z.mean(axes: [1])  // no class token: .cls pools like .mean
        }
    }

    /// MixMIM declares `no_weight_decay = {mask_token}` besides biases and 1-D tensors.
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor) || name.contains("mask_token")
    }
}

/// Re-draws every Linear weight under `module` as Xavier-uniform (bias stays 0), in tree order.
func xavierInitLinears(_ module: Module, rng: inout RandomGenerator) {
    if let linear = module as? Linear {
        let (out, inp) = (linear.weight.shape[0], linear.weight.shape[1])
        let w = Init.xavierUniform(linear.weight.shape, fanIn: inp, fanOut: out, rng: &rng)
        linear.weight.pointer.update(from: w.pointer, count: w.count)
    }
    for (_, child) in module.children { xavierInitLinears(child, rng: &rng) }
}
