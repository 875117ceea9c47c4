import NN
import TensorCore

/// Conv patch embedding (B1, docs/methods/common.md#b1-patch-embedding): kernel = stride = p,
/// 3 → D. Names `proj.weight`, `proj.bias`.
public final class PatchEmbed: Module, @unchecked Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let patch: Int

    /// `xavier`: Xavier-uniform on the (D, 3·p·p) view (MAE); otherwise PyTorch's default.
    public init(patch: Int, inChannels: Int = 3, dim: Int, xavier: Bool, rng: inout RandomGenerator) {
        self.patch = patch
        let shape = [dim, inChannels, patch, patch]
        weight = xavier
            ? Init.xavierUniform(shape, fanIn: inChannels * patch * patch, fanOut: dim, rng: &rng)
            : Init.pytorchDefault(shape, rng: &rng)
        let bound = 1 / Float(inChannels * patch * patch).squareRoot()
        bias = xavier ? Tensor(zeros: [dim]) : Init.uniform([dim], low: -bound, high: bound, rng: &rng)
        super.init()
        let proj = Module()
        proj.parameter("weight", weight)
        proj.parameter("bias", bias)
        child("proj", proj)
    }

    /// (B, 3, H, W) → (B, G·G, D) tokens in raster order.
    public func callAsFunction(_ images: Tensor) -> Tensor {
        let y = images.conv2d(weight: weight, bias: bias, stride: patch, layout: .nchw)  // (B, G, G, D)
        return y.reshaped([y.shape[0], y.shape[1] * y.shape[2], y.shape[3]])
    }

    /// The rows `tokens` of `self(images)` viewed as (B·G², D), embedded alone: (batch·tokens.count,
    /// D), with `batch` as in `gatherRows` (`tokens` per sample when > 1). A method that drops
    /// most tokens (MAE, GreenMIM, UM-MAE keep a quarter) cuts out just their patches, the
    /// convolution's im2col rows of those tokens, and runs the same product on them alone,
    /// instead of embedding every patch and gathering after.
    public func callAsFunction(_ images: Tensor, tokens: RowIndex, batch: Int = 1) -> Tensor {
        let (C, S) = (images.shape[1], images.shape[2]), p = patch, g = S / p, K = C * p * p
        let samples = tokens.sourceRows / (g * g)
        precondition(images.rank == 4 && images.shape[3] == S && S % p == 0 && samples * g * g == tokens.sourceRows
                     && images.shape[0] == samples * batch,
                     "patch embedding of \(tokens.sourceRows) token rows (batch \(batch)) from images \(images.shape)")
        // Element (c, py, px) of token row r, in the weight's (C, p, p) order.
        var elements = [Int32](repeating: 0, count: tokens.count * K)
        for (o, r) in tokens.indices.enumerated() {
            precondition(r >= 0, "patch embedding: token row \(o) selects no token")
            let (b, t) = (Int(r) / (g * g), Int(r) % (g * g))
            let origin = b * C * S * S + (t / g) * p * S + (t % g) * p
            for c in 0..<C { for py in 0..<p { for px in 0..<p {
                elements[o * K + (c * p + py) * p + px] = Int32(origin + (c * S + py) * S + px)
            } } }
        }
        let patches = images.gatherRows(RowIndex(elements, sourceRows: samples * C * S * S), rowLength: 1, batch: batch,
                                        shape: [batch * tokens.count, K])
        return patches.linear(weight: weight.reshaped([weight.shape[0], K]), bias: bias)
    }
}

/// Numbered children `0`, `1`, … (PyTorch's nn.ModuleList).
public final class ModuleList<M: Module>: Module, @unchecked Sendable {
    public let items: [M]

    public init(_ items: [M]) {
        self.items = items
        super.init()
        for (i, m) in items.enumerated() { child(String(i), m) }
    }
}

extension ModuleList where M == TransformerBlock {
    /// `depth` pre-norm blocks (B3).
    convenience init(depth: Int, dim: Int, heads: Int, mlpRatio: Int, eps: Float, rng: inout RandomGenerator) {
        var blocks: [TransformerBlock] = []
        for _ in 0..<depth { blocks.append(TransformerBlock(dim, heads: heads, mlpRatio: mlpRatio, eps: eps, rng: &rng)) }
        self.init(blocks)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        items.reduce(x) { h, block in block(h) }
    }
}

/// A learned (1, 1, D) token broadcast to B rows of (B, 1, D).
func expandToken(_ token: Tensor, batch: Int) -> Tensor {
    let d = token.dim(-1)
    return token.reshaped([1, d]).gatherRows(RowIndex([Int32](repeating: 0, count: batch), sourceRows: 1), shape: [batch, 1, d])
}
