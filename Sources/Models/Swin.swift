import Config
import NN
import TensorCore

/// Swin building blocks (docs/methods/common.md, B4 and B5) on (B, G·G, C) raster token maps.
/// Window partition with its cyclic roll, window reverse and patch merging are row gathers
/// by maps computed once per stage geometry.

/// The windows of one stage: which tokens form each window, the reverse map, and the
/// shifted-window region mask.
public struct WindowLayout: Sendable {
    public let grid: Int
    public let window: Int
    public let shift: Int
    /// (nW·N) rows of the (G·G) map: rolled by (−s, −s), windows in raster order, tokens in
    /// raster order within each window.
    public let partition: RowIndex
    public let reverse: RowIndex
    /// (nW, N, N): −100 between tokens of different regions; nil without shift.
    public let mask: Tensor?

    public var windows: Int { (grid / window) * (grid / window) }
    public var tokensPerWindow: Int { window * window }

    public init(grid: Int, window: Int, shift: Int) {
        precondition(grid % window == 0, "window \(window) does not divide grid \(grid)")
        self.grid = grid
        self.window = window
        self.shift = shift
        let nw = grid / window
        var part: [Int32] = []
        part.reserveCapacity(grid * grid)
        for wy in 0..<nw { for wx in 0..<nw { for py in 0..<window { for px in 0..<window {
            let y = (wy * window + py + shift) % grid, x = (wx * window + px + shift) % grid
            part.append(Int32(y * grid + x))
        } } } }
        partition = RowIndex(part, sourceRows: grid * grid)
        reverse = Patches.inverse(partition)
        guard shift > 0 else { mask = nil; return }
        // Region label of a rolled coordinate: [0, G−w), [G−w, G−s), [G−s, G).
        func region(_ c: Int) -> Int { c < grid - window ? 0 : (c < grid - shift ? 1 : 2) }
        let n = window * window
        let m = Tensor(zeros: [nw * nw, n, n])
        for w in 0..<(nw * nw) {
            let (wy, wx) = (w / nw, w % nw)
            let labels = (0..<n).map { t in region(wy * window + t / window) * 3 + region(wx * window + t % window) }
            for i in 0..<n { for j in 0..<n where labels[i] != labels[j] { m.pointer[(w * n + i) * n + j] = -100 } }
        }
        mask = m
    }

    /// B4's relative index for the tokens of a w×w window: (Δrow + w − 1)(2w − 1) + (Δcol + w − 1),
    /// query minus key.
    public static func relativeIndex(window w: Int) -> [Int] {
        let n = w * w
        var idx = [Int](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n {
            idx[i * n + j] = (i / w - j / w + w - 1) * (2 * w - 1) + (i % w - j % w + w - 1)
        } }
        return idx
    }
}

/// Window attention with a relative-position-bias table: names `relative_position_bias_table`,
/// `qkv`, `proj`.
public final class WindowAttention: Module, @unchecked Sendable {
    public let table: Tensor  // ((2w−1)², H)
    public let qkv: Linear
    public let proj: Linear
    public let heads: Int
    public let window: Int
    /// Element map (H, N, N) → table entries, for the bias gather.
    let biasIndex: RowIndex

    public init(dim: Int, heads: Int, window: Int, rng: inout RandomGenerator) {
        precondition(dim % heads == 0, "width \(dim) is not divisible by heads \(heads)")
        self.heads = heads
        self.window = window
        let span = 2 * window - 1
        table = Init.truncatedNormal([span * span, heads], std: 0.02, rng: &rng)
        qkv = Linear(dim, 3 * dim, initializer: .truncatedNormal(std: 0.02), rng: &rng)
        proj = Linear(dim, dim, initializer: .truncatedNormal(std: 0.02), rng: &rng)
        let rel = WindowLayout.relativeIndex(window: window), n = window * window
        var idx = [Int32](repeating: 0, count: heads * n * n)
        for h in 0..<heads { for ij in 0..<(n * n) { idx[h * n * n + ij] = Int32(rel[ij] * heads + h) } }
        biasIndex = RowIndex(idx, sourceRows: span * span * heads)
        super.init()
        parameter("relative_position_bias_table", table)
        child("qkv", qkv)
        child("proj", proj)
    }

    /// The (H, N, N) bias gathered from the table (differentiable).
    public func relativeBias() -> Tensor {
        let n = window * window
        return table.gatherRows(biasIndex, rowLength: 1, shape: [heads, n, n])
    }

    /// x (B·nW, N, C) windows → (B·nW, N, C). With `norm`, x is the windows before it, and the
    /// norm's output is not kept for the backward pass (`Linear(_:normalizedBy:)`).
    public func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm? = nil, mask: Tensor?) -> Tensor {
        let qkv = norm.map { self.qkv(x, normalizedBy: $0) } ?? self.qkv(x)
        return proj(Tensor.attention(qkv: qkv, heads: heads, bias: relativeBias(), mask: mask))
    }
}

/// The pre-norm residual every Swin-style block shares: names `norm1`, `attn`, `norm2`, `mlp`.
/// Methods differ only in their window attention (`Attention`) and in what they tell it:
///     x ← x + reverse(attend(partition(norm1(x)))), x ← x + mlp(norm2(x))
/// with the layout's cyclic roll folded into partition and reverse. The norm works per token, so
/// partition(norm1(x)) = norm1(partition(x)): the windows are cut from x and `attend` applies
/// norm1 inside its qkv projection, which then keeps no normalised copy for the backward pass.
public class WindowBlock<Attention: Module>: Module, ResidualBlock, @unchecked Sendable {
    public var dropPathRate: Float = 0
    public let norm1: LayerNorm
    public let attn: Attention
    public let norm2: LayerNorm
    public let mlp: MLP

    /// The caller builds `attention` first, so the seeded draws run attention, then MLP, as in
    /// the references.
    init(dim: Int, attention: Attention, mlpRatio: Int, mlpInit: LinearInit, eps: Float, rng: inout RandomGenerator) {
        norm1 = LayerNorm(dim, eps: eps)
        attn = attention
        norm2 = LayerNorm(dim, eps: eps)
        mlp = MLP(dim, hidden: dim * mlpRatio, initializer: mlpInit, rng: &rng)
        super.init()
        child("norm1", norm1)
        child("attn", attn)
        child("norm2", norm2)
        child("mlp", mlp)
    }

    /// x (B, G·G, C) → same; `attend` maps the windows of x (B·nW, N, C), normalised by `norm1`
    /// in its qkv projection, to (B·nW, N, C).
    func callAsFunction(_ x: Tensor, layout: WindowLayout, attend: @escaping (Tensor) -> Tensor) -> Tensor {
        recomputable(x) { [self] x in
            let (B, L, C) = (x.shape[0], x.shape[1], x.shape[2])
            let n = layout.tokensPerWindow, nW = layout.windows
            let windows = x.gatherRows(layout.partition, batch: B, shape: [B * nW, n, C])  // roll + partition
            let h = x + attend(windows).gatherRows(layout.reverse, batch: B, shape: [B, L, C])  // reverse + roll back
                .droppingPath(rate: dropPathRate)
            return h.plusBranch(droppingPath: dropPathRate) { mlp(h, normalizedBy: norm2, adding: $0) }
        }
    }
}

/// A Swin block with the relative-position-bias table, on one fixed window layout.
public final class SwinBlock: WindowBlock<WindowAttention>, @unchecked Sendable {
    public let layout: WindowLayout

    /// `mlpInit`: Swin's truncated normal; MixMIM builds its blocks with Xavier.
    public init(dim: Int, heads: Int, layout: WindowLayout, mlpRatio: Int, mlpInit: LinearInit = .truncatedNormal(std: 0.02),
                eps: Float, rng: inout RandomGenerator) {
        self.layout = layout
        let attention = WindowAttention(dim: dim, heads: heads, window: layout.window, rng: &rng)
        super.init(dim: dim, attention: attention, mlpRatio: mlpRatio, mlpInit: mlpInit, eps: eps, rng: &rng)
    }

    /// x (B, G·G, C) → same, with the layout's shifted-window mask.
    public func callAsFunction(_ x: Tensor) -> Tensor { self(x, mask: layout.mask) }

    /// x (B, G·G, C) → same, with `mask` (nW, N, N) in place of the layout's: entry b·nW + w of
    /// the batch uses mask[w], so one mask serves every sample.
    public func callAsFunction(_ x: Tensor, mask: Tensor?) -> Tensor {
        self(x, layout: layout) { [self] in attn($0, normalizedBy: norm1, mask: mask) }
    }
}

/// B5: 2×2 neighbourhoods concatenated as (even row, even col), (odd row, even col),
/// (even row, odd col), (odd row, odd col), then LN(4C) and a bias-free 4C → 2C map.
/// Names `norm`, `reduction`.
public final class PatchMerging: Module, @unchecked Sendable {
    public let norm: LayerNorm
    public let reduction: Linear
    let index: RowIndex
    let grid: Int

    public init(dim: Int, grid: Int, eps: Float, rng: inout RandomGenerator) {
        precondition(grid % 2 == 0, "patch merging needs an even grid, got \(grid)")
        self.grid = grid
        norm = LayerNorm(4 * dim, eps: eps)
        reduction = Linear(4 * dim, 2 * dim, bias: false, initializer: .truncatedNormal(std: 0.02), rng: &rng)
        let h = grid / 2
        var idx: [Int32] = []
        for i in 0..<h { for j in 0..<h { for (dy, dx) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            idx.append(Int32((2 * i + dy) * grid + 2 * j + dx))
        } } }
        index = RowIndex(idx, sourceRows: grid * grid)
        super.init()
        child("norm", norm)
        child("reduction", reduction)
    }

    /// (B, G·G, C) → (B, (G/2)², 2C).
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (B, C) = (x.shape[0], x.shape[2])
        let merged = x.gatherRows(index, batch: B, shape: [B, grid * grid / 4, 4 * C])
        return reduction(norm(merged))
    }
}

/// One stage: names `blocks.i`, `downsample`.
public final class SwinStage: Module, @unchecked Sendable {
    public let blocks: ModuleList<SwinBlock>
    public let downsample: PatchMerging?
    /// The stage's unshifted windows (odd blocks use the shifted ones when `shifted`).
    public let layout: WindowLayout

    public init(dim: Int, depth: Int, heads: Int, grid: Int, window: Int, shifted: Bool, mlpRatio: Int,
                mlpInit: LinearInit = .truncatedNormal(std: 0.02), eps: Float, downsample: Bool, rng: inout RandomGenerator) {
        // A stage no larger than the window attends over the whole map, without shift.
        let w = min(window, grid)
        layout = WindowLayout(grid: grid, window: w, shift: 0)
        let shiftedLayout = shifted && grid > window ? WindowLayout(grid: grid, window: w, shift: w / 2) : layout
        var made: [SwinBlock] = []
        for i in 0..<depth {
            made.append(SwinBlock(dim: dim, heads: heads, layout: i % 2 == 1 ? shiftedLayout : layout,
                                  mlpRatio: mlpRatio, mlpInit: mlpInit, eps: eps, rng: &rng))
        }
        blocks = ModuleList(made)
        self.downsample = downsample ? PatchMerging(dim: dim, grid: grid, eps: eps, rng: &rng) : nil
        super.init()
        child("blocks", blocks)
        if let d = self.downsample { child("downsample", d) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = blocks.items.reduce(x) { h, block in block(h) }
        return downsample.map { $0(h) } ?? h
    }
}

/// Patch embedding followed by LN (hierarchical encoders): names `proj`, `norm`.
public final class NormedPatchEmbed: Module, @unchecked Sendable {
    public let embed: PatchEmbed
    public let norm: LayerNorm

    public init(patch: Int, dim: Int, eps: Float, rng: inout RandomGenerator) {
        embed = PatchEmbed(patch: patch, dim: dim, xavier: false, rng: &rng)
        norm = LayerNorm(dim, eps: eps)
        super.init()
        for (name, m) in embed.children { child(name, m) }  // `proj` directly under this module
        child("norm", norm)
    }

    /// (B, 3, H, W) → (B, G·G, C).
    public func callAsFunction(_ images: Tensor) -> Tensor { norm(embed(images)) }

    /// The rows `tokens` of `self(images)` alone, as `PatchEmbed`'s (the norm is per token).
    public func callAsFunction(_ images: Tensor, tokens: RowIndex, batch: Int = 1) -> Tensor {
        norm(embed(images, tokens: tokens, batch: batch))
    }
}

extension SwinStage {
    /// The stages of a config's Swin pyramid (C, 2C, 4C, … with patch merging between stages),
    /// built in order so the seeded init matches the reference. MixMIM turns the shift off.
    static func pyramid(_ c: ModelConfig, shifted: Bool = true, mlpInit: LinearInit = .truncatedNormal(std: 0.02),
                        rng: inout RandomGenerator) -> [SwinStage] {
        c.depths.indices.map { s in
            SwinStage(dim: c.stageDims[s], depth: c.depths[s], heads: c.heads[s], grid: c.stageGrids[s],
                      window: c.windowSize, shifted: shifted, mlpRatio: c.mlpRatio, mlpInit: mlpInit, eps: c.layerNormEps,
                      downsample: s < c.depths.count - 1, rng: &rng)
        }
    }
}

/// The Swin encoder SimMIM and GreenMIM share: names `patch_embed`, `mask_token` (SimMIM only),
/// `layers.s`, `norm`, so GreenMIM's weights load into SimMIM's encoder and back. Each method's
/// forward pass is its own (SimMIM's mask tokens, GreenMIM's visible-only groups).
public final class SwinEncoder: Module, @unchecked Sendable {
    public let patchEmbed: NormedPatchEmbed
    /// The learned token masked patches become (SimMIM); nil when masked patches never enter.
    public let maskToken: Tensor?
    public let layers: ModuleList<SwinStage>
    public let norm: LayerNorm

    public init(config c: ModelConfig, maskToken: Bool, rng: inout RandomGenerator) {
        patchEmbed = NormedPatchEmbed(patch: c.patchSize, dim: c.embedDim, eps: c.layerNormEps, rng: &rng)
        self.maskToken = maskToken ? Init.truncatedNormal([1, 1, c.embedDim], std: 0.02, rng: &rng) : nil
        layers = ModuleList(SwinStage.pyramid(c, rng: &rng))
        norm = LayerNorm(c.encoderDim, eps: c.layerNormEps)
        super.init()
        child("patch_embed", patchEmbed)
        if let t = self.maskToken { parameter("mask_token", t) }
        child("layers", layers)
        child("norm", norm)
    }

    /// Every token, cyclic windows, no mask: (B, 3, H, W) → (B, L_last, C_last) after the final LN.
    public func dense(_ images: Tensor) -> Tensor {
        norm(layers.items.reduce(patchEmbed(images)) { x, stage in stage(x) })
    }
}
