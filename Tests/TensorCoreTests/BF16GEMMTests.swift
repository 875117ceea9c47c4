import CDNNL
import Testing
import TestSupport
@testable import TensorCore

/// bf16 GEMM (oneDNN): its inputs are rounded to bf16 and its sums are fp32. The reference is the
/// float64 product of the same rounded inputs, so the only difference left is fp32 accumulation:
/// at most γ_k·Σ|a||b| + one final rounding per element, with γ_k = k·u / (1 − k·u), u = 2⁻²⁴
/// (Higham, Accuracy and Stability of Numerical Algorithms, §3.1). The bound is derived, not tuned.
@Suite("bf16 GEMM", .enabled(if: BF16.available, "this CPU has no AVX512_BF16 or AMX (MIMSERVE_BF16_EMULATE=1 emulates them on AVX-512)"))
struct BF16GEMMTests {
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func matchesTheFloat64ProductOfRoundedInputs(transA: Bool, transB: Bool) {
        for (m, n, k, extra) in [(1, 1, 1, 0), (3, 5, 7, 2), (17, 1, 33, 0), (131, 67, 129, 3), (61, 263, 97, 0)] {
            let rowsA = transA ? k : m, colsA = transA ? m : k, rowsB = transB ? n : k, colsB = transB ? k : n
            // Row strides wider than the rows (`extra`): a sub-matrix, as attention heads are.
            let a = randomTensor([rowsA, colsA + extra], seed: 1), b = randomTensor([rowsB, colsB + extra], seed: 2)
            let c0 = randomTensor([m, n + extra], seed: 3)
            let (lda, ldb, ldc) = (colsA + extra, colsB + extra, n + extra)
            for beta: Float in [0, 1] {
                let ra = a.copy(), rb = b.copy()
                mims_round_to_bf16(ra.pointer, ra.count)
                mims_round_to_bf16(rb.pointer, rb.count)
                withThreadCounts { _ in
                    let c = c0.copy()
                    BF16.gemms(true) {
                        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a.pointer, lda: lda,
                             b: b.pointer, ldb: ldb, beta: beta, c: c.pointer, ldc: ldc)
                    }
                    let u = 0x1p-24, gamma = Double(k) * u / (1 - Double(k) * u)
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = 0.0, magnitude = 0.0
                            for p in 0..<k {
                                let av = Double(transA ? ra.pointer[p * lda + i] : ra.pointer[i * lda + p])
                                let bv = Double(transB ? rb.pointer[j * ldb + p] : rb.pointer[p * ldb + j])
                                s += av * bv
                                magnitude += abs(av * bv)
                            }
                            let prior = Double(beta) * Double(c0.pointer[i * ldc + j])
                            let expected = 0.5 * s + prior
                            let bound = 0.5 * gamma * magnitude + 2 * u * (abs(expected) + abs(prior)) + 1e-30
                            let got = Double(c.pointer[i * ldc + j])
                            #expect(abs(got - expected) <= bound, "\(m)×\(n)×\(k) β=\(beta) [\(i),\(j)]: \(got) vs \(expected) (bound \(bound))")
                        }
                        // The padding past n is never written.
                        for j in n..<ldc { #expect(c.pointer[i * ldc + j] == c0.pointer[i * ldc + j]) }
                    }
                }
            }
        }
    }

    /// A linear layer in bf16 adds its bias inside the GEMM and rounds its output gradient once
    /// for both backward GEMMs: y = x̃·W̃ᵀ + b, dx = g̃·W̃, dW = g̃ᵀ·x̃ (tildes: rounded to bf16),
    /// db = Σ g in fp32. Each is held to the float64 product of the rounded operands with the
    /// bound above; shapes small enough for one block and large enough to be split.
    @Test(arguments: [(5, 7, 3), (131, 97, 101)])
    func linearMatchesTheFloat64ProductsOfRoundedOperands(rows: Int, inF: Int, outF: Int) {
        let x = randomTensor([rows, inF], seed: 11), w = randomTensor([outF, inF], seed: 12)
        let b = randomTensor([outF], seed: 13), seed = randomTensor([rows, outF], seed: 14)
        let (rx, rw, rg) = (x.copy(), w.copy(), seed.copy())
        for t in [rx, rw, rg] { mims_round_to_bf16(t.pointer, t.count) }
        let u = 0x1p-24
        // got[i, j] against Σ_p l(i, p)·r(p, j) (+ add[j]) over k terms, in float64.
        func expectProduct(_ got: Tensor, _ what: String, rows m: Int, cols n: Int, k: Int,
                           _ l: (Int, Int) -> Float, _ r: (Int, Int) -> Float, add: Tensor? = nil) {
            let gamma = Double(k) * u / (1 - Double(k) * u)
            for i in 0..<m {
                for j in 0..<n {
                    var s = Double(add?.pointer[j] ?? 0), magnitude = abs(s)
                    for p in 0..<k {
                        let term = Double(l(i, p)) * Double(r(p, j))
                        s += term
                        magnitude += abs(term)
                    }
                    let bound = gamma * magnitude + 2 * u * abs(s) + 1e-30
                    let value = Double(got.pointer[i * n + j])
                    #expect(abs(value - s) <= bound, "\(what) \(rows)×\(inF)→\(outF) [\(i),\(j)]: \(value) vs \(s) (bound \(bound))")
                }
            }
        }
        withThreadCounts { _ in
            let xi = x.copy(), wi = w.copy(), bi = b.copy()
            for p in [xi, wi, bi] { p.requiresGrad = true }
            let y = BF16.gemms(true) { xi.linear(weight: wi, bias: bi) }
            expectProduct(y, "y", rows: rows, cols: outF, k: inF, { rx.pointer[$0 * inF + $1] },
                          { rw.pointer[$1 * inF + $0] }, add: b)
            BF16.gemms(true) { y.backward(seed: seed) }
            expectProduct(xi.grad!, "dx", rows: rows, cols: inF, k: outF, { rg.pointer[$0 * outF + $1] },
                          { rw.pointer[$0 * inF + $1] })
            expectProduct(wi.grad!, "dW", rows: outF, cols: inF, k: rows, { rg.pointer[$1 * outF + $0] },
                          { rx.pointer[$0 * inF + $1] })
            for j in 0..<outF {
                var s = 0.0, magnitude = 0.0
                for i in 0..<rows { s += Double(seed.pointer[i * outF + j]); magnitude += abs(Double(seed.pointer[i * outF + j])) }
                let bound = Double(rows) * u * magnitude + u * abs(s)
                #expect(abs(Double(bi.grad!.pointer[j]) - s) <= bound, "db[\(j)]")
            }
        }
    }

    @Test func theSettingIsPerThreadAndRestored() {
        #expect(!BF16.isOn)
        BF16.gemms(true) {
            #expect(BF16.isOn)
            BF16.gemms(false) { #expect(!BF16.isOn) }
            #expect(BF16.isOn)
        }
        #expect(!BF16.isOn)
    }

    /// The rounding is bf16's: round to nearest, ties to even, on the upper 16 bits.
    @Test func roundingIsToNearestEven() {
        var x: [Float] = [1 + 0x1p-8, 1 + 0x1p-9, 1 + 0x1p-9 + 0x1p-20, 1 + 3 * 0x1p-9, -0.0, .infinity]
        mims_round_to_bf16(&x, x.count)
        #expect(x[0] == 1)             // 1 + 2⁻⁸ ties between 1 and 1 + 2⁻⁷ (bf16's ulp at 1): even wins
        #expect(x[1] == 1 && x[2] == 1) // under half an ulp
        #expect(x[3] == 1 + 0x1p-7)     // three quarters of an ulp rounds up
        #expect(x[4] == 0 && x[4].sign == .minus && x[5] == .infinity)
    }
}
