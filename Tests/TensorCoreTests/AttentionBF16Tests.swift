import CDNNL
import Foundation
import Testing
import TestSupport
@testable import TensorCore

/// Attention with bf16 products (`Tensor.attentionBF16`) against a float64 twin.
///
/// The twin runs on q, k, v and dO rounded to bf16, as ours does, and computes every product
/// exactly; the probabilities P and score gradients dS are also rounded by ours before their
/// products. Each output is held to a first-order bound on those roundings: a rounded value
/// is off by at most u = 2⁻⁸ of itself, and that error passes through each sum weighted by the
/// absolute values of the other operand. What fp32 adds (sums, softmax, FastMath's exp) is
/// covered by ε = 1e-5 relative on the same magnitudes, and the sum of the terms is widened by
/// a quarter for second-order effects. The bound is derived, not tuned: a wrong index or
/// stride, or a product left unrounded where ours rounds, lands far outside it.
@Suite("bf16 attention", .enabled(if: BF16.available, "this CPU has no AVX512_BF16 or AMX (MIMSERVE_BF16_EMULATE=1 emulates them on AVX-512)"))
struct AttentionBF16Tests {
    static let u = 0x1p-8, eps = 1e-5

    @Test(arguments: [(3, 5, 2, 4, true), (1, 9, 4, 8, false), (10, 64, 4, 8, true)])
    func matchesTheFloat64TwinWithinTheRoundingBound(B: Int, L: Int, H: Int, dh: Int, masked: Bool) {
        let D = H * dh
        let qkv = randomTensor([B, L, 3 * D], seed: 21)
        let bias = randomTensor([B % 2 == 0 ? 2 : 1, H, L, L], seed: 22, scale: 0.5)
        let seed = randomTensor([B, L, D], seed: 23)
        var rng = RandomGenerator(seed: 24)
        // Swin-like: −100 on some keys, never a query's own.
        let mask = masked ? Tensor((0..<(B * L * L)).map { i in (i / L) % L == i % L || rng.uniform() < 0.7 ? 0 : -100 },
                                   shape: [B, L, L]) : nil
        let twin = Twin(qkv: qkv, heads: H, bias: bias, mask: mask, seed: seed)
        withThreadCounts { threads in
            let x = qkv.copy(), b = bias.copy()
            x.requiresGrad = true
            b.requiresGrad = true
            let y = BF16.gemms(true) { Tensor.attention(qkv: x, heads: H, bias: b, mask: mask) }
            BF16.gemms(true) { y.backward(seed: seed) }
            for (name, got, (want, bound)) in [("out", y, twin.out), ("dqkv", x.grad!, twin.dqkv), ("dbias", b.grad!, twin.dbias)] {
                var worst = 0.0
                for i in 0..<got.count {
                    let err = abs(Double(got.pointer[i]) - want[i])
                    #expect(err <= bound[i], "\(name)[\(i)] B\(B) L\(L) H\(H) threads \(threads): \(got.pointer[i]) vs \(want[i]) (bound \(bound[i]))")
                    worst = max(worst, err / bound[i])
                    if err > bound[i] { break }
                }
                #expect(worst > 0, "\(name): bf16 results should differ from the exact ones somewhere")
            }
        }
    }

    /// Exact attention forward and backward on bf16-rounded inputs, with each output's bound.
    /// With `u` 0 nothing is rounded and the bound is fp32's alone (the fp32 attention's test).
    struct Twin {
        var out: ([Double], [Double]), dqkv: ([Double], [Double]), dbias: ([Double], [Double])

        init(qkv: Tensor, heads H: Int, bias: Tensor, mask: Tensor?, seed: Tensor, u: Double = AttentionBF16Tests.u) {
            let (B, L, D) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3), dh = D / H
            let eps = AttentionBF16Tests.eps
            func rounded(_ t: Tensor) -> [Double] {
                let c = t.copy()
                if u > 0 { mims_round_to_bf16(c.pointer, c.count) }
                return c.scalars.map(Double.init)
            }
            let x = rounded(qkv), g = rounded(seed), scale = 1 / Double(dh).squareRoot()
            let mb = bias.shape[0], mm = mask?.shape[0] ?? 1
            var o = [Double](repeating: 0, count: B * L * D), oB = o
            var dx = [Double](repeating: 0, count: B * L * 3 * D), dxB = dx
            var db = [Double](repeating: 0, count: bias.count), dbB = db
            for b in 0..<B {
                for h in 0..<H {
                    func q(_ i: Int, _ c: Int) -> Double { x[(b * L + i) * 3 * D + h * dh + c] }
                    func k(_ i: Int, _ c: Int) -> Double { x[(b * L + i) * 3 * D + D + h * dh + c] }
                    func v(_ i: Int, _ c: Int) -> Double { x[(b * L + i) * 3 * D + 2 * D + h * dh + c] }
                    func dO(_ i: Int, _ c: Int) -> Double { g[(b * L + i) * D + h * dh + c] }
                    var p = [[Double]](repeating: [Double](repeating: 0, count: L), count: L)
                    for i in 0..<L {
                        var s = (0..<L).map { j in
                            scale * (0..<dh).reduce(0.0) { $0 + q(i, $1) * k(j, $1) }
                                + Double(bias.pointer[(((b % mb) * H + h) * L + i) * L + j])
                                + Double(mask?.pointer[((b % mm) * L + i) * L + j] ?? 0)
                        }
                        let m = s.max()!
                        s = s.map { Foundation.exp($0 - m) }
                        let z = s.reduce(0, +)
                        p[i] = s.map { $0 / z }
                    }
                    // out = P̃·V: P's rounding weighs each term.
                    for i in 0..<L {
                        for c in 0..<dh {
                            let at = (b * L + i) * D + h * dh + c
                            o[at] = (0..<L).reduce(0.0) { $0 + p[i][$1] * v($1, c) }
                            oB[at] = (u + eps) * (0..<L).reduce(0.0) { $0 + p[i][$1] * abs(v($1, c)) }
                        }
                    }
                    // dP = dÕ·Ṽᵀ (exact but for fp32 sums), dS = P ⊙ (dP − Σ P⊙dP).
                    var dP = p, dPB = p, dS = p, dSB = p
                    for i in 0..<L {
                        for j in 0..<L {
                            dP[i][j] = (0..<dh).reduce(0.0) { $0 + dO(i, $1) * v(j, $1) }
                            dPB[i][j] = eps * (0..<dh).reduce(0.0) { $0 + abs(dO(i, $1) * v(j, $1)) }
                        }
                        let rowDot = (0..<L).reduce(0.0) { $0 + p[i][$1] * dP[i][$1] }
                        let rowDotB = (0..<L).reduce(0.0) { $0 + p[i][$1] * (dPB[i][$1] + eps * abs(dP[i][$1])) }
                        for j in 0..<L {
                            dS[i][j] = p[i][j] * (dP[i][j] - rowDot)
                            dSB[i][j] = p[i][j] * (dPB[i][j] + rowDotB) + eps * abs(dS[i][j])
                            let at = (((b % mb) * H + h) * L + i) * L + j
                            db[at] += dS[i][j]
                            dbB[at] += dSB[i][j]
                        }
                    }
                    for j in 0..<L {
                        for c in 0..<dh {
                            let row = (b * L + j) * 3 * D + h * dh + c
                            // dQ[j] = scale·Σ_i dS̃[j, i]·K̃[i] ; dK[j] = scale·Σ_i dS̃[i, j]·Q̃[i] ; dV[j] = Σ_i P̃[i, j]·dÕ[i]
                            dx[row] = scale * (0..<L).reduce(0.0) { $0 + dS[j][$1] * k($1, c) }
                            dxB[row] = scale * (0..<L).reduce(0.0) { $0 + (dSB[j][$1] + u * abs(dS[j][$1])) * abs(k($1, c)) }
                            dx[row + D] = scale * (0..<L).reduce(0.0) { $0 + dS[$1][j] * q($1, c) }
                            dxB[row + D] = scale * (0..<L).reduce(0.0) { $0 + (dSB[$1][j] + u * abs(dS[$1][j])) * abs(q($1, c)) }
                            dx[row + 2 * D] = (0..<L).reduce(0.0) { $0 + p[$1][j] * dO($1, c) }
                            dxB[row + 2 * D] = (u + eps) * (0..<L).reduce(0.0) { $0 + p[$1][j] * abs(dO($1, c)) }
                        }
                    }
                }
            }
            let widen = { (bound: [Double]) in bound.map { 1.25 * $0 + 1e-30 } }
            out = (o, widen(oB))
            dqkv = (dx, widen(dxB))
            dbias = (db, widen(dbB))
        }
    }
}
