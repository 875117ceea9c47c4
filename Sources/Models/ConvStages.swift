import NN
import TensorCore

/// ConvMAE's convolutional parts (docs/methods/convmae.md; B6 in docs/methods/common.md) on
/// channels-last maps. Convolution
/// weights keep PyTorch's (out, in, kh, kw) layout and names so checkpoints load by name;
/// 1×1 convolutions run as `linear` on the (out, in) view of that weight.
///
/// Legend: B batch, H×W map, C channels, k kernel side, M visibility map (1 = visible).

/// A convolution with kernel = stride (no padding): names `weight`, `bias`.
final class StridedConv: Module, @unchecked Sendable {
    let weight: Tensor  // (Cout, Cin, k, k)
    let bias: Tensor
    let kernel: Int

    /// PyTorch's default init (U(±1/√fanIn) for weight and bias); `xavierWeight` re-draws the
    /// weight Xavier-uniform on its (Cout, Cin·k·k) view, as ConvMAE does for the stage-3 embed.
    init(_ inChannels: Int, _ outChannels: Int, kernel: Int, xavierWeight: Bool = false, rng: inout RandomGenerator) {
        self.kernel = kernel
        let shape = [outChannels, inChannels, kernel, kernel]
        let fanIn = inChannels * kernel * kernel
        let bound = 1 / Float(fanIn).squareRoot()
        let w = Init.uniform(shape, low: -bound, high: bound, rng: &rng)
        bias = Init.uniform([outChannels], low: -bound, high: bound, rng: &rng)
        weight = xavierWeight ? Init.xavierUniform(shape, fanIn: fanIn, fanOut: outChannels, rng: &rng) : w
        super.init()
        parameter("weight", weight)
        parameter("bias", bias)
    }

    /// (B, 3, H, W) images or (B, H, W, Cin) maps → (B, H/k, W/k, Cout).
    func callAsFunction(_ x: Tensor, layout: ImageLayout) -> Tensor {
        x.conv2d(weight: weight, bias: bias, stride: kernel, layout: layout)
    }
}

/// A 1×1 convolution on (B, H, W, Cin) → (B, H, W, Cout): names `weight` (Cout, Cin, 1, 1), `bias`.
final class PointwiseConv: Module, @unchecked Sendable {
    let weight: Tensor
    let bias: Tensor

    init(_ inChannels: Int, _ outChannels: Int, rng: inout RandomGenerator) {
        let bound = 1 / Float(inChannels).squareRoot()  // PyTorch's Conv2d default
        weight = Init.uniform([outChannels, inChannels, 1, 1], low: -bound, high: bound, rng: &rng)
        bias = Init.uniform([outChannels], low: -bound, high: bound, rng: &rng)
        super.init()
        parameter("weight", weight)
        parameter("bias", bias)
    }

    /// The (Cout, Cin) view of the weight.
    var matrix: Tensor { weight.reshaped([weight.shape[0], weight.shape[1]]) }

    /// residual + self(x) (`Tensor.linear`'s `residual`).
    func callAsFunction(_ x: Tensor, adding residual: Tensor? = nil) -> Tensor {
        x.linear(weight: matrix, bias: bias, adding: residual)
    }

    /// self(norm(x)), without keeping norm(x) for the backward pass (`Tensor.layerNormLinear`).
    func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm) -> Tensor {
        x.layerNormLinear(normWeight: norm.weight, normBias: norm.bias, eps: norm.eps, weight: matrix, bias: bias)
    }
}

/// Depthwise k×k convolution, padding k/2, with bias: names `weight` (C, 1, k, k), `bias`.
final class DepthwiseConv: Module, @unchecked Sendable {
    let weight: Tensor
    let bias: Tensor

    init(_ channels: Int, kernel: Int, rng: inout RandomGenerator) {
        let bound = 1 / Float(kernel)  // fan-in k·k of one group
        weight = Init.uniform([channels, 1, kernel, kernel], low: -bound, high: bound, rng: &rng)
        bias = Init.uniform([channels], low: -bound, high: bound, rng: &rng)
        super.init()
        parameter("weight", weight)
        parameter("bias", bias)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        x.depthwiseConv2d(weight: weight, bias: bias, padding: weight.shape[2] / 2)
    }
}

/// Stage embedding: kernel = stride conv, per-pixel LN (eps 1e-5), GELU. Names `proj`, `norm`.
final class ConvPatchEmbed: Module, @unchecked Sendable {
    let proj: StridedConv
    let norm: LayerNorm

    init(patch: Int, inChannels: Int, dim: Int, xavierWeight: Bool = false, rng: inout RandomGenerator) {
        proj = StridedConv(inChannels, dim, kernel: patch, xavierWeight: xavierWeight, rng: &rng)
        norm = LayerNorm(dim, eps: 1e-5)  // the reference's nn.LayerNorm default
        super.init()
        child("proj", proj)
        child("norm", norm)
    }

    /// → (B, H/p, W/p, dim).
    func callAsFunction(_ x: Tensor, layout: ImageLayout) -> Tensor {
        norm(proj(x, layout: layout)).gelu()
    }
}

/// 1×1 conv → GELU → 1×1 conv: names `fc1`, `fc2` (the reference's CMlp).
final class ConvMLP: Module, @unchecked Sendable {
    let fc1: PointwiseConv
    let fc2: PointwiseConv

    init(_ dim: Int, hidden: Int, rng: inout RandomGenerator) {
        fc1 = PointwiseConv(dim, hidden, rng: &rng)
        fc2 = PointwiseConv(hidden, dim, rng: &rng)
        super.init()
        child("fc1", fc1)
        child("fc2", fc2)
    }

    /// residual + self(norm(x)), keeping neither norm(x), GELU's output nor self(norm(x)) apart
    /// for the backward pass.
    func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm, adding residual: Tensor? = nil) -> Tensor {
        fc1(x, normalizedBy: norm).geluLinear(weight: fc2.matrix, bias: fc2.bias, adding: residual)
    }
}

/// B6, the masked convolution block: names `norm1`, `conv1`, `attn` (depthwise 5×5), `conv2`,
/// `norm2`, `mlp`.
///     y = conv2(dw5×5(M ⊙ conv1(LN(x)))), x ← x + y, x ← x + mlp(LN(x))
/// M multiplies after conv1, so conv1's bias is zeroed at masked pixels too: the depthwise
/// conv, the only spatial mixing, then never reads a masked pixel, and every other step is
/// per pixel. Visible outputs are therefore independent of masked inputs (bit for bit).
final class MaskedConvBlock: Module, ResidualBlock, @unchecked Sendable {
    var dropPathRate: Float = 0
    let norm1: LayerNorm
    let conv1: PointwiseConv
    let attn: DepthwiseConv
    let conv2: PointwiseConv
    let norm2: LayerNorm
    let mlp: ConvMLP

    init(dim: Int, mlpRatio: Int, rng: inout RandomGenerator) {
        norm1 = LayerNorm(dim, eps: 1e-5)
        conv1 = PointwiseConv(dim, dim, rng: &rng)
        conv2 = PointwiseConv(dim, dim, rng: &rng)
        attn = DepthwiseConv(dim, kernel: 5, rng: &rng)
        norm2 = LayerNorm(dim, eps: 1e-5)
        mlp = ConvMLP(dim, hidden: dim * mlpRatio, rng: &rng)
        super.init()
        child("norm1", norm1)
        child("conv1", conv1)
        child("conv2", conv2)
        child("attn", attn)
        child("norm2", norm2)
        child("mlp", mlp)
    }

    /// x (B, H, W, C), visibility (B, H, W, 1) or nil (dense) → (B, H, W, C).
    func callAsFunction(_ x: Tensor, visibility: Tensor?) -> Tensor {
        recomputable(x) { [self] x in
            var y = conv1(x, normalizedBy: norm1)
            if let visibility { y = y * visibility }
            let h = x.plusBranch(droppingPath: dropPathRate) { conv2(attn(y), adding: $0) }
            return h.plusBranch(droppingPath: dropPathRate) { mlp(h, normalizedBy: norm2, adding: $0) }
        }
    }
}
