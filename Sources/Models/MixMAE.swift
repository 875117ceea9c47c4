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

extension SwinStage {
    /// MixMIM's stage: no shift anywhere, so the only attention mask is the one that keeps the
    /// two mixed images apart. x (B, L, C); `sourceMask` (nW, N, N), nil when unmixed.
    func callAsFunction(_ x: Tensor, sourceMask: Tensor?) -> Tensor {
        let h = blocks.items.reduce(x) { h, block in block(h, mask: sourceMask) }
        return downsample.map { $0(h) } ?? h  // B5 merging stays inside one mask unit
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
public final class MixMAE: Module, MIMModel, UnitPredictor, @unchecked Sendable {
    public let config: ModelConfig
    let patchEmbed: NormedPatchEmbed
    let absolutePosEmbed: Tensor  // (1, L₁, C₁), fixed
    let layers: ModuleList<SwinStage>
    let norm: LayerNorm
    let decoder: MAEDecoder       // position table (1, U², Dd)

    public init(config c: ModelConfig, seed: UInt64, decoderBlocks: Bool = true) {
        precondition(c.method == .mixmae, "MixMAE built from a \(c.method) config")
        config = c
        var rng = RandomGenerator(seed: seed)
        patchEmbed = NormedPatchEmbed(patch: c.patchSize, dim: c.embedDim, eps: c.layerNormEps, rng: &rng)
        absolutePosEmbed = SinCos.table2D(dim: c.embedDim, grid: c.grid, classToken: false)
        // MixMIM's blocks build their MLPs with Xavier, then B12 re-draws every Linear with it.
        layers = ModuleList(SwinStage.pyramid(c, shifted: false, mlpInit: .xavier, rng: &rng))
        Init.redrawXavierLinears(in: layers, rng: &rng)
        norm = LayerNorm(c.encoderDim, eps: c.layerNormEps)
        let maskToken = Init.normal([1, 1, c.decoderDim], std: 0.02, rng: &rng)  // drawn first, as in models_mixmim.py
        decoder = MAEDecoder(config: c, classToken: false, maskToken: maskToken, withBlocks: decoderBlocks, rng: &rng)
        super.init()
        child("patch_embed", patchEmbed)
        child("layers", layers)
        child("norm", norm)
        buffer("absolute_pos_embed", absolutePosEmbed)
        decoder.register(in: self)
    }

    // MARK: Masking

    public var masksPerSample: Bool { false }

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

    /// Latent (B, U², C_last) → both branches' predictions (2B, U², P): branch A = z·(1−m₄) + t·m₄,
    /// branch B = z·m₄ + t·(1−m₄), stacked.
    func decode(_ latent: Tensor, plan: MixPlan) -> Tensor {
        decoder(rows: decoder.embedRows(latent), placement: plan.branches)
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
        // Every unit of every image is scored: a plain mean.
        let loss = unitLoss(pred, images: images, mask: Tensor(repeating: 1, shape: [B, n]))
        return MIMOutput(loss: loss, prediction: pred, latent: latent, mask: unitTensor(p.units, batch: B))
    }

    /// Branch A: each image's masked units predicted from its own visible units only (the
    /// attention mask and the mask tokens keep the partner out), with the pixel mask m.
    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction {
        GradMode.withoutGrad {
            let B = images.shape[0]
            let p = plan(batch: B, units: sharedUnits(spec, batch: B))
            let pred = decode(encode(images, plan: p), plan: p).slice(axis: 0, start: 0, length: B)  // (B, U², P)
            return reconstruction(pred, images: images, units: unitTensor(p.units, batch: B))
        }
    }

    /// The unmixed encoder (no attention mask) after its final LN: (B, U², C_last) or pooled.
    public func encode(_ images: Tensor, pool: Pooling) -> Tensor {
        pooledWithoutClassToken(encode(images, plan: nil), pool)
    }

    /// MixMIM declares `no_weight_decay = {mask_token}` besides biases and 1-D tensors.
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor) || name.contains("mask_token")
    }
}
