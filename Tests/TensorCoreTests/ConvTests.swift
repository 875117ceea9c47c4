import Testing
import TestSupport
@testable import TensorCore

@Suite("Convolutions") struct ConvTests {
    /// Naive direct convolution; input in `layout`, output NHWC.
    func naiveConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride s: Int, padding p: Int, layout: ImageLayout) -> [Float] {
        let B = x.shape[0]
        let (C, H, W) = layout == .nchw ? (x.shape[1], x.shape[2], x.shape[3]) : (x.shape[3], x.shape[1], x.shape[2])
        let O = w.shape[0], kh = w.shape[2], kw = w.shape[3]
        let Ho = (H + 2 * p - kh) / s + 1, Wo = (W + 2 * p - kw) / s + 1
        var out = [Float](repeating: 0, count: B * Ho * Wo * O)
        for n in 0..<B { for oy in 0..<Ho { for ox in 0..<Wo { for o in 0..<O {
            var acc = Double(b?.pointer[o] ?? 0)
            for c in 0..<C { for ky in 0..<kh { for kx in 0..<kw {
                let iy = oy * s + ky - p, ix = ox * s + kx - p
                guard iy >= 0, iy < H, ix >= 0, ix < W else { continue }
                let xi = layout == .nchw ? ((n * C + c) * H + iy) * W + ix : ((n * H + iy) * W + ix) * C + c
                acc += Double(x.pointer[xi]) * Double(w.pointer[((o * C + c) * kh + ky) * kw + kx])
            } } }
            out[((n * Ho + oy) * Wo + ox) * O + o] = Float(acc)
        } } } }
        return out
    }

    @Test(arguments: [(2, 0, ImageLayout.nchw), (2, 0, .nhwc), (1, 1, .nchw), (2, 1, .nhwc), (3, 2, .nhwc)])
    func conv2dMatchesNaiveTwin(stride: Int, padding: Int, layout: ImageLayout) {
        let (B, C, H, W, O) = (2, 3, 6, 5, 4)
        let k = stride == 2 && padding == 0 ? 2 : 3
        let x = randomTensor(layout == .nchw ? [B, C, H, W] : [B, H, W, C], seed: 1)
        let w = randomTensor([O, C, k, k], seed: 2), b = randomTensor([O], seed: 3)
        let y = x.conv2d(weight: w, bias: b, stride: stride, padding: padding, layout: layout)
        #expect(maxAbsDiff(y.scalars, naiveConv(x, w, b, stride: stride, padding: padding, layout: layout)) < 1e-5)
        checkGradients([x, w, b]) { x.conv2d(weight: w, bias: b, stride: stride, padding: padding, layout: layout) }
    }

    @Test(arguments: [(3, 1), (5, 2), (1, 0)])
    func depthwiseMatchesNaiveTwin(k: Int, padding: Int) {
        let (B, H, W, C) = (2, 5, 4, 11)
        let x = randomTensor([B, H, W, C], seed: 4), w = randomTensor([C, 1, k, k], seed: 5), b = randomTensor([C], seed: 6)
        let y = x.depthwiseConv2d(weight: w, bias: b, padding: padding)
        #expect(y.shape == [B, H + 2 * padding - k + 1, W + 2 * padding - k + 1, C])
        // Twin: a dense convolution whose weight is zero off the diagonal.
        let dense = Tensor(zeros: [C, C, k, k])
        for c in 0..<C { for t in 0..<(k * k) { dense.pointer[(c * C + c) * k * k + t] = w.pointer[c * k * k + t] } }
        let ref = naiveConv(x, dense, b, stride: 1, padding: padding, layout: .nhwc)
        #expect(maxAbsDiff(y.scalars, ref) < 1e-5)
        withThreadCounts { _ in
            checkGradients([x, w, b]) { x.depthwiseConv2d(weight: w, bias: b, padding: padding) }
        }
    }
}
