import TensorCore

/// How a Linear's weight starts: Xavier-uniform (B12, MAE) or truncated normal (Swin's 0.02).
public enum LinearInit: Sendable {
    case xavier
    case truncatedNormal(std: Float)
}

/// y = x·Wᵀ + b with weight (out, in): names `weight`, `bias`. Zero bias.
public final class Linear: Module, @unchecked Sendable {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, initializer: LinearInit = .xavier,
                rng: inout RandomGenerator) {
        switch initializer {
        case .xavier:
            weight = Init.xavierUniform([outFeatures, inFeatures], fanIn: inFeatures, fanOut: outFeatures, rng: &rng)
        case .truncatedNormal(let std):
            weight = Init.truncatedNormal([outFeatures, inFeatures], std: std, rng: &rng)
        }
        self.bias = bias ? Tensor(zeros: [outFeatures]) : nil
        super.init()
        parameter("weight", weight)
        if let b = self.bias { parameter("bias", b) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.linear(weight: weight, bias: bias) }

    /// residual + self(x), without keeping self(x) apart for the backward pass (`Tensor.linear`).
    public func callAsFunction(_ x: Tensor, adding residual: Tensor?) -> Tensor {
        x.linear(weight: weight, bias: bias, adding: residual)
    }

    /// self(norm(x)), without keeping norm(x) for the backward pass (`Tensor.layerNormLinear`).
    public func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm) -> Tensor {
        x.layerNormLinear(normWeight: norm.weight, normBias: norm.bias, eps: norm.eps, weight: weight, bias: bias)
    }
}

/// LayerNorm over the last dimension: names `weight` (ones), `bias` (zeros).
public final class LayerNorm: Module, @unchecked Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ dim: Int, eps: Float) {
        weight = Tensor(repeating: 1, shape: [dim])
        bias = Tensor(zeros: [dim])
        self.eps = eps
        super.init()
        parameter("weight", weight)
        parameter("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, eps: eps) }
}

/// fc2(GELU(fc1(x))): names `fc1`, `fc2`. GELU's output is not kept for the backward pass
/// (`Tensor.geluLinear`).
public final class MLP: Module, @unchecked Sendable {
    public let fc1: Linear
    public let fc2: Linear

    public init(_ dim: Int, hidden: Int, initializer: LinearInit = .xavier, rng: inout RandomGenerator) {
        fc1 = Linear(dim, hidden, initializer: initializer, rng: &rng)
        fc2 = Linear(hidden, dim, initializer: initializer, rng: &rng)
        super.init()
        child("fc1", fc1)
        child("fc2", fc2)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { fc1(x).geluLinear(weight: fc2.weight, bias: fc2.bias) }

    /// residual + self(norm(x)), keeping neither norm(x), GELU's output nor self(norm(x)) apart
    /// for the backward pass.
    public func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm, adding residual: Tensor? = nil) -> Tensor {
        fc1(x, normalizedBy: norm).geluLinear(weight: fc2.weight, bias: fc2.bias, adding: residual)
    }
}

/// Multi-head self-attention with a fused qkv projection (rows [q; k; v]): names `qkv`, `proj`.
public final class SelfAttention: Module, @unchecked Sendable {
    public let qkv: Linear
    public let proj: Linear
    public let heads: Int

    public init(_ dim: Int, heads: Int, rng: inout RandomGenerator) {
        precondition(dim % heads == 0, "width \(dim) is not divisible by heads \(heads)")
        qkv = Linear(dim, 3 * dim, rng: &rng)
        proj = Linear(dim, dim, rng: &rng)
        self.heads = heads
        super.init()
        child("qkv", qkv)
        child("proj", proj)
    }

    /// x (B, L, D) → (B, L, D); `bias` (Mb, H, L, L) and `mask` (Mm, L, L) as in `Tensor.attention`.
    public func callAsFunction(_ x: Tensor, bias: Tensor? = nil, mask: Tensor? = nil) -> Tensor {
        proj(Tensor.attention(qkv: qkv(x), heads: heads, bias: bias, mask: mask))
    }

    /// residual + self(norm(x)), keeping neither norm(x) nor self(norm(x)) apart for the
    /// backward pass.
    public func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm, bias: Tensor? = nil, mask: Tensor? = nil,
                               adding residual: Tensor? = nil) -> Tensor {
        proj(Tensor.attention(qkv: qkv(x, normalizedBy: norm), heads: heads, bias: bias, mask: mask), adding: residual)
    }
}

/// Pre-norm transformer block (docs/methods/common.md#b3-vit-block): x + attn(norm1(x)), then
/// x + mlp(norm2(x)).
/// Names `norm1`, `attn`, `norm2`, `mlp` as in timm / MAE.
public final class TransformerBlock: Module, ResidualBlock, @unchecked Sendable {
    public var dropPathRate: Float = 0
    public let norm1: LayerNorm
    public let attn: SelfAttention
    public let norm2: LayerNorm
    public let mlp: MLP

    public init(_ dim: Int, heads: Int, mlpRatio: Int = 4, eps: Float, rng: inout RandomGenerator) {
        norm1 = LayerNorm(dim, eps: eps)
        attn = SelfAttention(dim, heads: heads, rng: &rng)
        norm2 = LayerNorm(dim, eps: eps)
        mlp = MLP(dim, hidden: dim * mlpRatio, rng: &rng)
        super.init()
        child("norm1", norm1)
        child("attn", attn)
        child("norm2", norm2)
        child("mlp", mlp)
    }

    public func callAsFunction(_ x: Tensor, bias: Tensor? = nil, mask: Tensor? = nil) -> Tensor {
        recomputable(x) { [self] x in
            let h = x.plusBranch(droppingPath: dropPathRate) { attn(x, normalizedBy: norm1, bias: bias, mask: mask, adding: $0) }
            return h.plusBranch(droppingPath: dropPathRate) { mlp(h, normalizedBy: norm2, adding: $0) }
        }
    }

    /// Only the rows `kept` of this block's output, (K, D) for x (B, T, D), where nothing reads
    /// the others (a decoder's last block under a loss on some tokens): attention over every
    /// token, then the MLP half on the kept rows alone. Each kept row is what `self(x)` gives
    /// it, but for the GEMMs' row count. Where drop path is drawing (per sample), the whole
    /// output is made and the rows gathered from it.
    public func callAsFunction(_ x: Tensor, keepingRows kept: RowIndex) -> Tensor {
        let D = x.dim(-1)
        guard dropPathRate == 0 || StochasticDepth.current == nil else {
            return self(x).gatherRows(kept, shape: [kept.count, D])
        }
        return recomputable(x) { [self] x in
            let h = attn(x, normalizedBy: norm1, adding: x)
            let rows = h.gatherRows(kept, shape: [kept.count, D])
            return mlp(rows, normalizedBy: norm2, adding: rows)
        }
    }
}
