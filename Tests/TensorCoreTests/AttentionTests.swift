import Foundation
import Testing
import TestSupport
@testable import TensorCore

@Suite("Fused multi-head attention") struct AttentionTests {
    /// Naive twin: explicit loops in Double over batch, head, query, key.
    func naiveAttention(_ qkv: Tensor, heads H: Int, bias: Tensor?, mask: Tensor?) -> [Float] {
        let B = qkv.shape[0], L = qkv.shape[1], D = qkv.shape[2] / 3, dh = D / H
        let q = qkv.scalars, scale = 1 / Double(dh).squareRoot()
        let mb = bias.map { $0.rank == 3 ? 1 : $0.shape[0] } ?? 1, mm = mask?.shape[0] ?? 1
        var out = [Float](repeating: 0, count: B * L * D)
        for b in 0..<B {
            for h in 0..<H {
                for i in 0..<L {
                    var logits = [Double](repeating: 0, count: L)
                    for j in 0..<L {
                        var s = 0.0
                        for c in 0..<dh {
                            s += Double(q[(b * L + i) * 3 * D + h * dh + c]) * Double(q[(b * L + j) * 3 * D + D + h * dh + c])
                        }
                        s *= scale
                        if let bias { s += Double(bias.pointer[(((b % mb) * H + h) * L + i) * L + j]) }
                        if let mask { s += Double(mask.pointer[((b % mm) * L + i) * L + j]) }
                        logits[j] = s
                    }
                    let m = logits.max()!
                    let e = logits.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
                    for c in 0..<dh {
                        var s = 0.0
                        for j in 0..<L { s += e[j] / z * Double(q[(b * L + j) * 3 * D + 2 * D + h * dh + c]) }
                        out[(b * L + i) * D + h * dh + c] = Float(s)
                    }
                }
            }
        }
        return out
    }

    @Test(arguments: [(1, 1, 1, 4), (2, 5, 2, 16), (4, 7, 3, 24), (3, 13, 1, 8)])
    func matchesNaiveTwinAndFiniteDifferences(B: Int, L: Int, H: Int, D: Int) {
        let qkv = randomTensor([B, L, 3 * D], seed: 1)
        let bias = randomTensor([H, L, L], seed: 2)
        withThreadCounts { _ in
            let y = Tensor.attention(qkv: qkv, heads: H, bias: bias)
            #expect(maxAbsDiff(y.scalars, naiveAttention(qkv, heads: H, bias: bias, mask: nil)) < 1e-5)
            let plain = Tensor.attention(qkv: qkv, heads: H)
            #expect(maxAbsDiff(plain.scalars, naiveAttention(qkv, heads: H, bias: nil, mask: nil)) < 1e-5)
        }
        checkGradients([qkv, bias]) { Tensor.attention(qkv: qkv, heads: H, bias: bias) }
    }

    @Test func perBatchBiasAndMaskCycle() {
        // 4 entries: bias cycles with period 2, mask with period 4 (as Swin's windows per image).
        let (B, L, H, D) = (4, 6, 2, 8)
        let qkv = randomTensor([B, L, 3 * D], seed: 3)
        let bias = randomTensor([2, H, L, L], seed: 4)
        var rng = RandomGenerator(seed: 5)
        let mask = Tensor((0..<(4 * L * L)).map { _ in rng.uniform() < 0.3 ? -100 : 0 }, shape: [4, L, L])
        for b in 0..<4 { for i in 0..<L { mask.pointer[(b * L + i) * L + i] = 0 } }  // never fully masked
        let y = Tensor.attention(qkv: qkv, heads: H, bias: bias, mask: mask)
        #expect(maxAbsDiff(y.scalars, naiveAttention(qkv, heads: H, bias: bias, mask: mask)) < 1e-5)
        checkGradients([qkv, bias]) { Tensor.attention(qkv: qkv, heads: H, bias: bias, mask: mask) }
    }

    /// fp32 attention against the float64 twin of the bf16 tests with nothing rounded, so each
    /// output is held to fp32's own bound (sums, softmax and exp at 1e-5 relative on the
    /// magnitudes involved, derived there). The shapes cover one entry's heads split over the
    /// threads, many entries per thread (B = 10, L = 64), masks, per-entry biases, 32-wide
    /// heads and 130-token heads, whose products are big enough to go to oneDNN's sgemm
    /// (`SGEMMKernel.oneDNNFrom`), and Swin-sized 36-token windows with 64-wide heads; the q, k,
    /// v gradient is added to one already there, and with qkv frozen the bias still gets its
    /// gradient. Every way of multiplying a head's blocks (`HeadProducts`) this CPU runs is held
    /// to it.
    @Test(arguments: [(3, 5, 2, 4, true), (1, 9, 4, 8, false), (10, 64, 4, 8, true), (1, 50, 3, 32, false), (2, 130, 2, 32, true),
                      (3, 36, 2, 64, true)])
    func matchesTheFloat64TwinWithinFP32Bounds(B: Int, L: Int, H: Int, dh: Int, masked: Bool) {
        let D = H * dh
        let qkv = randomTensor([B, L, 3 * D], seed: 21)
        let bias = randomTensor([B % 2 == 0 ? 2 : 1, H, L, L], seed: 22, scale: 0.5)
        let seed = randomTensor([B, L, D], seed: 23)
        let earlier = randomTensor([B, L, 3 * D], seed: 25)  // a gradient from another use of qkv
        var rng = RandomGenerator(seed: 24)
        let mask = masked ? Tensor((0..<(B * L * L)).map { i in (i / L) % L == i % L || rng.uniform() < 0.7 ? 0 : -100 },
                                   shape: [B, L, L]) : nil
        let twin = AttentionBF16Tests.Twin(qkv: qkv, heads: H, bias: bias, mask: mask, seed: seed, u: 0)
        func check(_ name: String, _ got: Tensor, _ twin: ([Double], [Double]), plus: Tensor? = nil, threads: Int) {
            for i in 0..<got.count {
                let want = twin.0[i] + Double(plus?.pointer[i] ?? 0)
                let err = abs(Double(got.pointer[i]) - want), bound = twin.1[i] + 1e-7 * abs(want)
                #expect(err <= bound, "\(name)[\(i)] B\(B) L\(L) H\(H) threads \(threads): \(got.pointer[i]) vs \(want) (bound \(bound))")
                if err > bound { break }
            }
        }
        for products in HeadProducts.supported { withThreadCounts { threads in
            let x = qkv.copy(), b = bias.copy()
            x.requiresGrad = true
            b.requiresGrad = true
            x.grad = earlier.copy()
            let y = Tensor.attention(qkv: x, heads: H, bias: b, mask: mask, products: products)
            y.backward(seed: seed)
            check("out", y, twin.out, threads: threads)
            check("dqkv", x.grad!, twin.dqkv, plus: earlier, threads: threads)
            check("dbias", b.grad!, twin.dbias, threads: threads)

            let frozen = qkv.copy(), learning = bias.copy()
            learning.requiresGrad = true
            Tensor.attention(qkv: frozen, heads: H, bias: learning, mask: mask, products: products).backward(seed: seed)
            #expect(frozen.grad == nil)
            check("dbias, qkv frozen", learning.grad!, twin.dbias, threads: threads)
        } }
    }

    /// Each way of multiplying a head's blocks against float64 products, on shapes that cover
    /// the register-blocked kernel's edges at each vector width this CPU runs: rows that leave
    /// a partial block, columns that end inside a vector or span several panels, either operand
    /// transposed and read with a row stride wider than its width. Each element is held to the
    /// summation bound of its own terms, γ_k·Σ|a·b| with γ_k = k·u/(1 − k·u), plus one rounding
    /// for alpha.
    @Test(arguments: [(1, 1, 1), (7, 17, 5), (13, 36, 32), (36, 36, 32), (50, 64, 50), (11, 130, 9), (197, 32, 197), (5, 200, 64)])
    func headProductsMatchFloat64(m: Int, n: Int, k: Int) {
        var rng = RandomGenerator(seed: UInt64(m * 1000 + n * 10 + k))
        let u = Double(Float.ulpOfOne) / 2, gamma = Double(k) * u / (1 - Double(k) * u)
        for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
            // Every kind of product multiplies the same operands.
            let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 5, ldc = n + 2
            let a = (0..<((transA ? k : m) * lda)).map { _ in rng.uniform() * 2 - 1 }
            let b = (0..<((transB ? n : k) * ldb)).map { _ in rng.uniform() * 2 - 1 }
            var blocked: [Float]?  // the first register-blocked result
            for products in HeadProducts.supported {
                var c = [Float](repeating: .nan, count: m * ldc)
                let packed = [Float](repeating: 0, count: k * n)
                let alpha: Float = 0.3
                packed.withUnsafeBufferPointer { pk in
                    products.run(transA, transB, m, n, k, alpha, a, lda, b, ldb, &c, ldc,
                                 packed: UnsafeMutablePointer(mutating: pk.baseAddress!))
                }
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = 0.0, magnitude = 0.0
                        for p in 0..<k {
                            let x = Double(transA ? a[p * lda + i] : a[i * lda + p])
                            let y = Double(transB ? b[j * ldb + p] : b[p * ldb + j])
                            sum += x * y
                            magnitude += abs(x * y)
                        }
                        let want = Double(alpha) * sum
                        let bound = Double(alpha) * gamma * magnitude + u * abs(want) + Double(Float.leastNormalMagnitude)
                        worst = max(worst, abs(Double(c[i * ldc + j]) - want) / bound)
                    }
                }
                #expect(worst <= 1, "\(products) \(m)×\(n)×\(k) transA \(transA) transB \(transB): error \(worst) of the bound")
                // Columns past n in each row of C are left alone.
                #expect((0..<m).allSatisfy { i in c[(i * ldc + n)..<(i * ldc + ldc)].allSatisfy(\.isNaN) })
                // Both vector widths do the same operations per element, so give the same bits
                // (AVX2 leaves products from `oneDNNFrom` multiply-adds up to the library).
                if products != .library, m * n * k < SGEMMKernel.oneDNNFrom {
                    if let blocked {
                        #expect(blocked.elementsEqual(c) { $0.bitPattern == $1.bitPattern }, "\(products) transA \(transA) transB \(transB)")
                    }
                    blocked = c
                }
            }
        }
    }

    @Test func maskedKeysContributeNothing() {
        // A −1e30 mask (MixMAE) must make attention ignore those keys exactly.
        let (L, D) = (5, 4)
        let qkv = randomTensor([1, L, 3 * D], seed: 6)
        let mask = Tensor(zeros: [1, L, L])
        for i in 0..<L { mask.pointer[i * L + 4] = -1e30 }
        let y = Tensor.attention(qkv: qkv, heads: 1, mask: mask)
        let changed = qkv.copy()
        for c in 0..<(3 * D) where c >= D { changed.pointer[4 * 3 * D + c] += 10 }  // key and value of token 4
        let y2 = Tensor.attention(qkv: changed, heads: 1, mask: mask)
        #expect(maxAbsDiff(Array(y.scalars[0..<(4 * D)]), Array(y2.scalars[0..<(4 * D)])) == 0)
    }
}
