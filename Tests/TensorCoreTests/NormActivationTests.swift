import Foundation
import Testing
import TestSupport
@testable import TensorCore

@Suite("LayerNorm, GELU, softmax and the fast math behind them") struct NormActivationTests {
    @Test func fastExpMatchesLibm() {
        var worst: Double = 0
        for i in 0..<20000 {
            let x = Float(-87 + Double(i) * 175 / 20000)
            let ref = Foundation.exp(Double(x))
            worst = max(worst, abs(Double(FastMath.exp(x)) - ref) / ref)
        }
        #expect(worst < 4e-7)
        #expect(FastMath.exp(-1e30) == 0 && FastMath.exp(-100) == 0 && FastMath.exp(-87.3) > 0)
    }

    @Test func fastErfMatchesLibm() {
        var worst: Double = 0
        for i in 0..<20000 {
            let x = -6 + Double(i) * 12 / 20000
            worst = max(worst, abs(Double(FastMath.erf(Float(x))) - Foundation.erf(x)))
        }
        #expect(worst < 5e-7)
    }

    @Test(arguments: [1, 7, 8, 13, 64])
    func layerNormMatchesNaiveTwin(d: Int) {
        let x = randomTensor([3, d], seed: 5, scale: 2), w = randomTensor([d], seed: 6), b = randomTensor([d], seed: 7)
        let y = x.layerNorm(weight: w, bias: b, eps: 1e-5)
        for r in 0..<3 {
            let row = (0..<d).map { Double(x.pointer[r * d + $0]) }
            let mean = row.reduce(0, +) / Double(d)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d)
            for i in 0..<d {
                let ref = (row[i] - mean) / (variance + 1e-5).squareRoot() * Double(w.pointer[i]) + Double(b.pointer[i])
                #expect(abs(Double(y.pointer[r * d + i]) - ref) < 1e-4)
            }
        }
        if d > 1 {
            checkGradients([x, w, b], eps: 1e-2, atol: 3e-3, rtol: 3e-3) { x.layerNorm(weight: w, bias: b, eps: 1e-5) }
            checkGradients([x], atol: 3e-3, rtol: 3e-3) { x.layerNorm(weight: nil, bias: nil, eps: 1e-6) }
        }
    }

    @Test func geluMatchesErfForm() {
        let x = randomTensor([5, 13], seed: 8, scale: 4)
        let y = x.gelu()
        for i in 0..<x.count {
            let v = Double(x.pointer[i])
            #expect(abs(Double(y.pointer[i]) - 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot()))) < 2e-6)
        }
        withThreadCounts { _ in checkGradients([x]) { x.gelu() } }
    }

    /// The fused ops below must equal their compositions in fp32, and in bf16 where it runs
    /// (`BF16.available`), where both round the same values for the same GEMMs.
    let precisions = BF16.available ? [false, true] : [false]

    /// A block's norm and the linear layer after it keep no normalised rows, yet must be
    /// `layerNorm(…).linear(…)` exactly: the output and every gradient, bit for bit, with and
    /// without the norm's affine parameters, with gradients already there from another use, a
    /// frozen linear weight, and an input that needs no gradient; and finite differences agree.
    @Test(arguments: [(1, 1, 1), (3, 33, 5), (40, 200, 7)])
    func layerNormLinearIsLayerNormThenLinearBitForBit(rows: Int, width: Int, out: Int) {
        withThreadCounts { threads in
            for (affine, frozenWeight, earlierUse, inputGrad) in [(true, false, false, true), (true, false, true, true),
                                                                   (false, true, false, true), (true, false, false, false)] {
                func run(_ fused: Bool) -> [[Float]] {
                    let x = randomTensor([rows, width], seed: 41, scale: 3), w = randomTensor([out, width], seed: 42)
                    let b = randomTensor([out], seed: 43)
                    let nw = affine ? randomTensor([width], seed: 44) : nil, nb = affine ? randomTensor([width], seed: 45) : nil
                    x.requiresGrad = inputGrad
                    w.requiresGrad = !frozenWeight
                    for p in [b, nw, nb].compactMap({ $0 }) { p.requiresGrad = true }
                    if earlierUse { x.grad = randomTensor(x.shape, seed: 46); nw?.grad = randomTensor([width], seed: 47) }
                    let y = fused ? x.layerNormLinear(normWeight: nw, normBias: nb, eps: 1e-5, weight: w, bias: b)
                                  : x.layerNorm(weight: nw, bias: nb, eps: 1e-5).linear(weight: w, bias: b)
                    y.backward(seed: randomTensor(y.shape, seed: 48))
                    return [y.scalars] + [x, w, b, nw, nb].map { $0?.grad?.scalars ?? [] }
                }
                for bf16 in precisions {
                    let fused = BF16.gemms(bf16) { run(true) }, composed = BF16.gemms(bf16) { run(false) }
                    expectBitForBit(["output", "dX", "dWeight", "dBias", "dNormWeight", "dNormBias"], fused, composed,
                                    "\(rows)×\(width)→\(out) affine \(affine) frozen \(frozenWeight) earlier \(earlierUse) threads \(threads) bf16 \(bf16)")
                }
            }
        }
        if width > 1 && rows * width * out < 2000 {
            let x = randomTensor([rows, width], seed: 49, scale: 2), w = randomTensor([out, width], seed: 50)
            let b = randomTensor([out], seed: 51), nw = randomTensor([width], seed: 52), nb = randomTensor([width], seed: 53)
            checkGradients([x, w, b, nw, nb], atol: 3e-3, rtol: 3e-3) {
                x.layerNormLinear(normWeight: nw, normBias: nb, eps: 1e-5, weight: w, bias: b)
            }
        }
    }

    /// The MLP's fused second half keeps no GELU output, yet must be `gelu().linear(…)` exactly:
    /// the output and every gradient, bit for bit, including a hidden layer whose gradient
    /// already holds another use's, a frozen weight, a bias-free layer and a hidden layer that
    /// needs no gradient; and its gradients agree with finite differences.
    @Test(arguments: [(1, 1, 1), (3, 33, 5), (40, 1100, 7)])
    func geluLinearIsGeluThenLinearBitForBit(rows: Int, hidden: Int, out: Int) {
        withThreadCounts { threads in
            for (withBias, frozenWeight, earlierUse, hiddenGrad) in [(true, false, false, true), (true, false, true, true),
                                                                      (false, true, false, true), (true, false, false, false)] {
                func run(_ fused: Bool) -> [[Float]] {
                    let h = randomTensor([rows, hidden], seed: 31, scale: 3), w = randomTensor([out, hidden], seed: 32)
                    let b = withBias ? randomTensor([out], seed: 33) : nil
                    h.requiresGrad = hiddenGrad
                    w.requiresGrad = !frozenWeight
                    b?.requiresGrad = true
                    // A gradient already there (another use's) is added to, not overwritten.
                    if earlierUse { h.grad = randomTensor(h.shape, seed: 38); w.grad = randomTensor(w.shape, seed: 39) }
                    let y = fused ? h.geluLinear(weight: w, bias: b) : h.gelu().linear(weight: w, bias: b)
                    y.backward(seed: randomTensor(y.shape, seed: 34))
                    return [y.scalars, h.grad?.scalars ?? [], w.grad?.scalars ?? [], b?.grad?.scalars ?? []]
                }
                for bf16 in precisions {
                    let fused = BF16.gemms(bf16) { run(true) }, composed = BF16.gemms(bf16) { run(false) }
                    expectBitForBit(["output", "dHidden", "dWeight", "dBias"], fused, composed,
                                    "\(rows)×\(hidden)→\(out) bias \(withBias) frozen \(frozenWeight) earlier \(earlierUse) threads \(threads) bf16 \(bf16)")
                }
            }
        }
        if rows * hidden * out < 2000 {
            let h = randomTensor([rows, hidden], seed: 35, scale: 2), w = randomTensor([out, hidden], seed: 36), b = randomTensor([out], seed: 37)
            checkGradients([h, w, b]) { h.geluLinear(weight: w, bias: b) }
        }
    }

    /// A residual branch's last product adds the residual in place (`linear` and `geluLinear`
    /// with `adding:`), yet must be `residual + product` exactly: the output and every gradient,
    /// bit for bit, for a residual that is also the product's input (a block's x feeding its own
    /// branch), one whose gradient already holds another use's, and a frozen one; and the
    /// gradients agree with finite differences.
    @Test(arguments: [(1, 1), (3, 5), (40, 70)])
    func aResidualAddedInsideTheProductIsTheSum(rows: Int, width: Int) {
        withThreadCounts { threads in
            for gelu in [false, true] {
                for (residualIsInput, earlier, frozen) in [(true, false, false), (false, true, false), (false, false, true), (true, true, false)] {
                    func run(_ fused: Bool) -> [[Float]] {
                        let x = randomTensor([rows, width], seed: 61, scale: 2), w = randomTensor([width, width], seed: 62)
                        let b = randomTensor([width], seed: 63)
                        let r = residualIsInput ? x : randomTensor([rows, width], seed: 64)
                        for t in [x, w, b] { t.requiresGrad = true }
                        r.requiresGrad = !frozen
                        if earlier { r.grad = randomTensor(r.shape, seed: 65) }
                        let y: Tensor
                        switch (fused, gelu) {
                        case (true, false): y = x.linear(weight: w, bias: b, adding: r)
                        case (true, true): y = x.geluLinear(weight: w, bias: b, adding: r)
                        case (false, false): y = r + x.linear(weight: w, bias: b)
                        case (false, true): y = r + x.geluLinear(weight: w, bias: b)
                        }
                        y.backward(seed: randomTensor(y.shape, seed: 66))
                        return [y.scalars, x.grad?.scalars ?? [], w.grad?.scalars ?? [], b.grad?.scalars ?? [], r.grad?.scalars ?? []]
                    }
                    for bf16 in precisions {
                        expectBitForBit(["output", "dX", "dWeight", "dBias", "dResidual"], BF16.gemms(bf16) { run(true) }, BF16.gemms(bf16) { run(false) },
                                        "\(rows)×\(width) gelu \(gelu) residual is input \(residualIsInput) earlier \(earlier) frozen \(frozen) threads \(threads) bf16 \(bf16)")
                    }
                }
            }
        }
        if rows * width < 100 {
            let x = randomTensor([rows, width], seed: 67), w = randomTensor([width, width], seed: 68), b = randomTensor([width], seed: 69)
            let r = randomTensor([rows, width], seed: 70)
            checkGradients([x, w, b, r]) { x.linear(weight: w, bias: b, adding: r) }
            checkGradients([x, w, b]) { x.geluLinear(weight: w, bias: b, adding: x) }
        }
    }

    @Test(arguments: [1, 5, 8, 17])
    func softmaxMatchesNaiveTwin(d: Int) {
        let x = randomTensor([4, d], seed: 9, scale: 5)
        let y = x.softmax()
        for r in 0..<4 {
            let row = (0..<d).map { Double(x.pointer[r * d + $0]) }
            let m = row.max()!, z = row.map { Foundation.exp($0 - m) }.reduce(0, +)
            for i in 0..<d { #expect(abs(Double(y.pointer[r * d + i]) - Foundation.exp(row[i] - m) / z) < 1e-6) }
        }
        checkGradients([x]) { x.softmax() }
    }
}

/// Expects each named result of a fused op to be its composition's, bit for bit.
private func expectBitForBit(_ names: [String], _ fused: [[Float]], _ composed: [[Float]], _ context: String,
                             sourceLocation: SourceLocation = #_sourceLocation) {
    for (name, (got, want)) in zip(names, zip(fused, composed)) {
        let same = got == want
        #expect(same, "\(name) \(context): max diff \(got.count == want.count ? maxAbsDiff(got, want) : .nan)",
                sourceLocation: sourceLocation)
    }
}
