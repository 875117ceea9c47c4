import Config
import NN
import TensorCore

/// UM-MAE (docs/methods/ummae.md): uniform sampling keeps one unit per 2×2 group, so the kept units
/// compact into a dense half-resolution token image that the unchanged Swin-style pyramid
/// encodes with full windows; secondary-masked units enter as a learned token; a two-stage
/// decoder (pixel shuffle ×2, then ViT blocks at the unit grid) predicts the primary-masked
/// units (MSE on norm-pixel units).
/// Parameter names follow the reference `models_mae_swin.py`: a flat `blocks.k` list with
/// `attn.posmlp.{0,2}` and `downsample.{norm,proj}` at the first block of stages 2…,
/// `patch_embed.{proj,norm}`, `norm`, `vis_mask_token`, and MAE's decoder names.
///
/// Legend: B batch, U unit-grid side, Ug = U/2 group grid, K tokens per unit side, g stage
/// grid side (compacted, or full for features), nW windows, N = w² tokens per window,
/// H heads, Ng distinct coordinate gaps, C stage width, Dd decoder width, q unit in pixels.

/// The coordinate-MLP inputs of one block kind of one stage: the distinct key-minus-query gaps
/// of the batch, f = sign(d)·ln(1 + |d|) per axis, and where each (window, head, i, j) reads
/// the MLP's output. The MLP runs once per distinct gap instead of once per pair.
struct GapBias {
    let features: Tensor  // (Ng, 2): (row, col)
    let index: RowIndex   // (B·nW, H, N, N) elements of the (Ng, H) MLP output

    /// - positions: (B·g0²·2) original (row, col) of the stage-0 tokens, g0 = grid << stage.
    /// - stage: s; a stage token's position is its top-left stage-0 token's position / 2^s
    ///   (each downsampling keeps the top-left position and halves it).
    /// - span: the largest gap in stage-0 units (the full token grid side).
    init(positions: [Int32], batch B: Int, layout: WindowLayout, stage: Int, heads H: Int, span: Int) {
        let g = layout.grid, g0 = g << stage, n = layout.tokensPerWindow, nW = layout.windows
        let scale = Double(1 << stage), side = 2 * span + 1
        var gapID = [Int32](repeating: -1, count: side * side)
        var feats: [Float] = []
        var idx = [Int32](repeating: 0, count: B * nW * H * n * n)
        var tokenPos = [Int](repeating: 0, count: 2 * n)
        var pairs = [Int32](repeating: 0, count: n * n)  // one window's (i, j) → first MLP output row
        // Rebuilt every step (the positions are the step's mask): each window's pairs are found
        // once, then written head by head in contiguous runs.
        idx.withUnsafeMutableBufferPointer { idx in
            for b in 0..<B {
                for w in 0..<nW {
                    for t in 0..<n {  // stage token → its top-left stage-0 token's position
                        let s = Int(layout.partition.indices[w * n + t]), (y, x) = ((s / g) << stage, (s % g) << stage)
                        tokenPos[2 * t] = Int(positions[2 * (b * g0 * g0 + y * g0 + x)])
                        tokenPos[2 * t + 1] = Int(positions[2 * (b * g0 * g0 + y * g0 + x) + 1])
                    }
                    for i in 0..<n {
                        for j in 0..<n {
                            let dy = tokenPos[2 * j] - tokenPos[2 * i], dx = tokenPos[2 * j + 1] - tokenPos[2 * i + 1]  // key − query
                            let key = (dy + span) * side + dx + span
                            if gapID[key] < 0 {
                                gapID[key] = Int32(feats.count / 2)
                                for d in [Double(dy) / scale, Double(dx) / scale] {
                                    feats.append(Float((d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0)) * Foundation_log1p(abs(d))))
                                }
                            }
                            pairs[i * n + j] = gapID[key] * Int32(H)
                        }
                    }
                    let base = (b * nW + w) * H * n * n
                    for h in 0..<H {
                        let run = base + h * n * n
                        for k in 0..<(n * n) { idx[run + k] = pairs[k] + Int32(h) }
                    }
                }
            }
        }
        features = Tensor(feats, shape: [feats.count / 2, 2])
        index = RowIndex(idx, sourceRows: feats.count / 2 * H)
    }
}

/// Window attention whose relative bias is an MLP of coordinate gaps: Linear(2→hidden) → ReLU →
/// Linear(hidden→H), stored as the reference's 1×1 convs `posmlp.0`, `posmlp.2` (out, in, 1, 1).
final class PosMLPWindowAttention: Module, @unchecked Sendable {
    let qkv: Linear
    let proj: Linear
    let mlpIn: (weight: Tensor, bias: Tensor)
    let mlpOut: (weight: Tensor, bias: Tensor)
    let heads: Int

    init(dim: Int, heads: Int, hidden: Int, rng: inout RandomGenerator) {
        precondition(dim % heads == 0, "width \(dim) is not divisible by heads \(heads)")
        self.heads = heads
        qkv = Linear(dim, 3 * dim, rng: &rng)
        proj = Linear(dim, dim, rng: &rng)
        // UM-MAE's conv init: N(0, 2/fan_out), fan_out = k²·out; zero bias.
        mlpIn = (Init.normal([hidden, 2, 1, 1], std: (2 / Float(hidden)).squareRoot(), rng: &rng), Tensor(zeros: [hidden]))
        mlpOut = (Init.normal([heads, hidden, 1, 1], std: (2 / Float(heads)).squareRoot(), rng: &rng), Tensor(zeros: [heads]))
        super.init()
        child("qkv", qkv)
        child("proj", proj)
        let posmlp = Module(), first = Module(), last = Module()
        first.parameter("weight", mlpIn.weight)
        first.parameter("bias", mlpIn.bias)
        last.parameter("weight", mlpOut.weight)
        last.parameter("bias", mlpOut.bias)
        posmlp.child("0", first)
        posmlp.child("2", last)
        child("posmlp", posmlp)
    }

    /// The (B·nW, H, N, N) bias of every window of the batch.
    func bias(_ gaps: GapBias, windows: Int, tokens n: Int) -> Tensor {
        let hidden = mlpIn.weight.shape[0]
        let h = gaps.features.linear(weight: mlpIn.weight.reshaped([hidden, 2]), bias: mlpIn.bias).relu()  // (Ng, hidden)
        let perGap = h.linear(weight: mlpOut.weight.reshaped([heads, hidden]), bias: mlpOut.bias)  // (Ng, H)
        return perGap.gatherRows(gaps.index, rowLength: 1, shape: [windows, heads, n, n])
    }

    /// x (B·nW, N, C) windows → same.
    func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm? = nil, gaps: GapBias, mask: Tensor?) -> Tensor {
        let qkv = norm.map { self.qkv(x, normalizedBy: $0) } ?? self.qkv(x)
        return proj(Tensor.attention(qkv: qkv, heads: heads, bias: bias(gaps, windows: x.shape[0], tokens: x.shape[1]), mask: mask))
    }
}

/// UM-MAE's downsampling at the start of stages 2…: LN(C) → Conv 2×2 stride 2 (C → 2C, bias).
/// Names `norm`, `proj`.
final class UMDownsample: Module, @unchecked Sendable {
    let norm: LayerNorm
    let weight: Tensor  // (2C, C, 2, 2)
    let bias: Tensor

    init(dim: Int, eps: Float, rng: inout RandomGenerator) {
        norm = LayerNorm(dim, eps: eps)
        weight = Init.normal([2 * dim, dim, 2, 2], std: (2 / Float(4 * 2 * dim)).squareRoot(), rng: &rng)
        bias = Tensor(zeros: [2 * dim])
        super.init()
        child("norm", norm)
        let proj = Module()
        proj.parameter("weight", weight)
        proj.parameter("bias", bias)
        child("proj", proj)
    }

    /// (B, g², C) → (B, (g/2)², 2C).
    func callAsFunction(_ x: Tensor, grid g: Int) -> Tensor {
        let (B, C) = (x.shape[0], x.shape[2])
        let y = norm(x).reshaped([B, g, g, C]).conv2d(weight: weight, bias: bias, stride: 2, layout: .nhwc)  // (B, g/2, g/2, 2C)
        return y.reshaped([B, g * g / 4, 2 * C])
    }
}

/// A Swin block with the coordinate-MLP bias, optionally downsampling first. Names `norm1`,
/// `attn`, `norm2`, `mlp`, `downsample`.
final class UMSwinBlock: WindowBlock<PosMLPWindowAttention>, @unchecked Sendable {
    let downsample: UMDownsample?

    init(dim: Int, heads: Int, posMLP: Int, mlpRatio: Int, eps: Float, downsampleFrom: Int?, rng: inout RandomGenerator) {
        downsample = downsampleFrom.map { UMDownsample(dim: $0, eps: eps, rng: &rng) }
        let attention = PosMLPWindowAttention(dim: dim, heads: heads, hidden: posMLP, rng: &rng)
        super.init(dim: dim, attention: attention, mlpRatio: mlpRatio, mlpInit: .xavier, eps: eps, rng: &rng)
        if let d = downsample { child("downsample", d) }
    }

    /// x (B, g², C) on the stage grid (after any downsampling) → same. Positions roll with the
    /// features: `gaps` was built from the same (rolled) partition.
    func callAsFunction(_ x: Tensor, layout: WindowLayout, gaps: GapBias) -> Tensor {
        self(x, layout: layout) { [self] in attn($0, normalizedBy: norm1, gaps: gaps, mask: layout.mask) }
    }
}

/// UM-MAE with its Swin-T-style encoder and MAE-style decoder.
public final class UMMAE: Module, MIMModel, UnitPredictor, @unchecked Sendable {
    public let config: ModelConfig
    let patchEmbed: NormedPatchEmbed
    let visMaskToken: Tensor?
    let blocks: ModuleList<UMSwinBlock>
    let stageOfBlock: [Int]
    let norm: LayerNorm
    /// `decoder_embed` widens to 4·Dd for the ×2 pixel shuffle; position table (1, U², Dd).
    let decoder: MAEDecoder
    /// Window layouts (plain, shifted) per stage grid, compacted and full.
    let layouts: [Int: (plain: WindowLayout, shifted: WindowLayout)]
    /// Decoder pixel shuffle ×2 as an element map per sample: (2M)²·Dd of M²·4Dd.
    let shuffle: RowIndex

    public init(config c: ModelConfig, seed: UInt64, decoderBlocks: Bool = true) {
        precondition(c.method == .ummae, "UMMAE built from a \(c.method) config")
        config = c
        var rng = RandomGenerator(seed: seed)
        let Dd = c.decoderDim
        patchEmbed = NormedPatchEmbed(patch: c.patchSize, dim: c.embedDim, eps: c.layerNormEps, rng: &rng)
        Init.redrawXavier(patchEmbed.embed.weight, rng: &rng)  // re-initialised with Xavier, zero bias (reference)
        patchEmbed.embed.bias.pointer.update(repeating: 0, count: patchEmbed.embed.bias.count)
        visMaskToken = c.resolvedSecondaryMaskRatio > 0 ? Init.normal([1, 1, c.embedDim], std: 0.02, rng: &rng) : nil
        var made: [UMSwinBlock] = [], stages: [Int] = []
        for s in c.depths.indices {
            for i in 0..<c.depths[s] {
                made.append(UMSwinBlock(dim: c.stageDims[s], heads: c.heads[s], posMLP: c.resolvedPosMLPDim, mlpRatio: c.mlpRatio,
                                        eps: c.layerNormEps, downsampleFrom: s > 0 && i == 0 ? c.stageDims[s - 1] : nil, rng: &rng))
                stages.append(s)
            }
        }
        blocks = ModuleList(made)
        stageOfBlock = stages
        norm = LayerNorm(c.encoderDim, eps: c.layerNormEps)
        decoder = MAEDecoder(config: c, classToken: false, embedWidth: 4 * Dd, withBlocks: decoderBlocks, rng: &rng)
        var layouts: [Int: (plain: WindowLayout, shifted: WindowLayout)] = [:]
        for g in c.stageGrids + c.stageGrids.map({ $0 / 2 }) where layouts[g] == nil {
            // A stage no larger than the window attends over the whole map, without shift.
            let win = min(c.windowSize, g)
            let plain = WindowLayout(grid: g, window: win, shift: 0)
            layouts[g] = (plain, g > c.windowSize ? WindowLayout(grid: g, window: win, shift: win / 2) : plain)
        }
        self.layouts = layouts
        shuffle = Self.pixelShuffleIndex(grid: c.unitGrid / 4, width: Dd)
        super.init()
        child("patch_embed", patchEmbed)
        if let t = visMaskToken { parameter("vis_mask_token", t) }
        child("blocks", blocks)
        child("norm", norm)
        decoder.register(in: self)
    }

    /// PixelShuffle(2) on tokens: out token (2i + a, 2j + b) channel c = in token (i, j)
    /// channel c·4 + a·2 + b, for an M×M map of 4·D channels.
    static func pixelShuffleIndex(grid M: Int, width D: Int) -> RowIndex {
        var idx = [Int32](repeating: 0, count: 4 * M * M * D)
        for y in 0..<(2 * M) { for x in 0..<(2 * M) { for c in 0..<D {
            idx[(y * 2 * M + x) * D + c] = Int32(((y / 2) * M + x / 2) * 4 * D + c * 4 + (y % 2) * 2 + x % 2)
        } } }
        return RowIndex(idx, sourceRows: idx.count)
    }

    /// Uniform sampling fixes the primary ratio at 0.75, so `ratio` is not used.
    public func sampleMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        UniformMasking.sample(batch: batch, unitGrid: config.unitGrid, secondaryRatio: config.resolvedSecondaryMaskRatio, rng: &rng)
    }

    /// The pyramid on a token map x (B, g0², C) whose tokens sit at `positions` (B·g0²·2,
    /// original patch coordinates) → (B, (g0 / 2^(S−1))², C_last) after the final LN.
    func encode(_ input: Tensor, grid g0: Int, positions: [Int32]) -> Tensor {
        let B = input.shape[0]
        var x = input
        var gaps: [Int: GapBias] = [:]  // per stage and block kind (2s + shifted), shared by the blocks
        var inStage = 0
        for (k, block) in blocks.items.enumerated() {
            let s = stageOfBlock[k], g = g0 >> s
            if let down = block.downsample {
                x = down(x, grid: g * 2)
                inStage = 0
            }
            let shifted = inStage % 2 == 1
            let layout = shifted ? layouts[g]!.shifted : layouts[g]!.plain
            let key = 2 * s + (shifted ? 1 : 0)
            let gap = gaps[key] ?? GapBias(positions: positions, batch: B, layout: layout, stage: s,
                                           heads: config.heads[s], span: config.grid)
            gaps[key] = gap
            x = block(x, layout: layout, gaps: gap)
            inStage += 1
        }
        return norm(x)
    }

    /// Decoder rows: for each sample and unit (raster), its row in the (B·Ug²) expanded latents,
    /// or the mask-token row B·Ug² for primary-masked units.
    func placement(_ compaction: UMCompaction) -> RowIndex {
        Self.placement(compaction, unitGrid: config.unitGrid, positions: config.resolvedDecoderPositions)
    }

    static func placement(_ compaction: UMCompaction, unitGrid U: Int, positions: DecoderPositions) -> RowIndex {
        let Ug = U / 2, B = compaction.keptUnits.count, n = Ug * Ug, units = U * U
        var idx = [Int](repeating: B * n, count: B * units)
        for b in 0..<B {
            let kept = compaction.keptUnits[b]
            switch positions {
            case .true:
                for u in kept { idx[b * units + u] = b * n + ((u / U) / 2) * Ug + (u % U) / 2 }
            case .reference:
                // Latent k (group-raster) takes the table row of the k-th kept unit in raster order.
                for (k, u) in kept.sorted().enumerated() { idx[b * units + u] = b * n + k }
            }
        }
        return RowIndex(idx, sourceRows: B * n + 1)
    }

    /// Latents (B, M², C_last), M = U/4 → (B, U², q²·3), or with `scored` the predictions of
    /// those decoder tokens alone (S, q²·3).
    func decode(_ latent: Tensor, placement: RowIndex, predicting scored: RowIndex? = nil) -> Tensor {
        let (B, M, Dd) = (latent.shape[0], config.unitGrid / 4, config.decoderDim)
        let expanded = decoder.embed(latent)  // (B, M², 4Dd)
            .gatherRows(shuffle, rowLength: 1, batch: B, shape: [B * 4 * M * M, Dd])  // (B·Ug², Dd), group-raster
        guard let scored else { return decoder(rows: expanded, placement: placement) }
        return decoder(rows: expanded, placement: placement, predicting: scored)
    }

    func masks(_ spec: MaskSpec) -> (primary: Tensor, secondary: Tensor) {
        guard case let .uniform(primary, secondary) = spec else { preconditionFailure("UM-MAE masks by uniform sampling") }
        return (primary, secondary)
    }

    /// The encoder's latents of the compacted visible units, the compaction, and the loss mask
    /// (B, U²): the primary-masked units.
    func encodeVisible(_ images: Tensor, mask spec: MaskSpec) -> (latent: Tensor, compaction: UMCompaction, lossMask: Tensor) {
        let (primary, secondary) = masks(spec)
        let B = images.shape[0]
        precondition(primary.shape == [B, config.unitGrid, config.unitGrid], "UM-MAE mask \(primary.shape) for batch \(B)")
        let compaction = UMCompaction(primary: primary, secondary: secondary, tokensPerUnit: config.unitTokens)
        let Gc = compaction.compactGrid, C = config.embedDim
        var x = patchEmbed(images, tokens: compaction.gather).reshaped([B, Gc * Gc, C])  // (B, Gc², C), compacted
        if let token = visMaskToken {
            let s = compaction.secondaryTokens  // (B, Gc², 1)
            x = x * (Tensor(repeating: 1, shape: s.shape) - s) + patchEmbed.norm(token) * s  // e·(1−s) + LN(t)·s
        }
        let latent = encode(x, grid: Gc, positions: compaction.positions)
        return (latent, compaction, primary.reshaped([B, unitCount]).detached())
    }

    public func forward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput {
        let (latent, compaction, lossMask) = encodeVisible(images, mask: spec)
        let pred = decode(latent, placement: placement(compaction))
        return MIMOutput(loss: unitLoss(pred, images: images, mask: lossMask), prediction: pred, latent: latent,
                         mask: masks(spec).primary)
    }

    /// The loss of `forward`, predicting the primary-masked units alone.
    public func trainingLoss(_ images: Tensor, mask spec: MaskSpec) -> Tensor {
        let (latent, compaction, lossMask) = encodeVisible(images, mask: spec)
        let scored = scoredRows(lossMask)
        let pred = decode(latent, placement: placement(compaction), predicting: scored.tokens)
        return scoredUnitLoss(pred, images: images, scored: scored.targets)
    }

    /// Everything the encoder did not see (primary and secondary units) is the masked area.
    public func reconstruct(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction {
        GradMode.withoutGrad {
            let (primary, secondary) = masks(spec)
            let out = forward(images, mask: spec)
            let hidden = Tensor(zeros: primary.shape)
            for i in 0..<hidden.count { hidden.pointer[i] = max(primary.pointer[i], secondary.pointer[i]) }
            return reconstruction(out.prediction, images: images, units: hidden)
        }
    }

    /// The encoder on the full token grid (true coordinates, the pretraining window), final LN,
    /// then pooling.
    public func encode(_ images: Tensor, pool: Pooling) -> Tensor {
        let x = patchEmbed(images)  // (B, G², C)
        let (B, G) = (images.shape[0], config.grid)
        var positions: [Int32] = []
        positions.reserveCapacity(2 * B * G * G)
        for _ in 0..<B { for t in 0..<(G * G) { positions += [Int32(t / G), Int32(t % G)] } }
        return pooledWithoutClassToken(encode(x, grid: G, positions: positions), pool)
    }

    /// UM-MAE follows MAE (biases and 1-D tensors only); its tokens are (1, 1, C) and so
    /// are decayed as in the reference.
    public func excludedFromWeightDecay(_ name: String, _ tensor: Tensor) -> Bool {
        Self.isBiasOrVector(name, tensor)
    }
}
