import CKernels
import Glibc

/// Fused multi-head self-attention on a packed qkv tensor.
///
/// Legend: B batch (windows or groups count here too), L tokens, H heads, dh head width,
/// D = H·dh. Heads are read in place from the (B, L, 3D) qkv rows with strided GEMMs, so no
/// permute is ever materialised; the output is written straight into (B, L, D).
///
/// The B×H×L×L probabilities are never stored. Each thread makes one head's scores and
/// probabilities in a block of its own, which stays in cache for the product with V; the
/// forward keeps only each row's maximum and reciprocal sum, and the backward makes the scores
/// again (one more product per head) and the probabilities from them, bit for bit the
/// forward's. The ViT-S decoder's 8 layers at batch 16 held 318 MB of probabilities that way.
extension Tensor {
    /// softmax(scale·QKᵀ + bias + mask)·V per batch entry and head.
    /// - qkv: (B, L, 3D), rows ordered [q; k; v], head h at channels h·dh…(h+1)·dh−1.
    /// - bias: (Mb, H, L, L) or (H, L, L), differentiable; entry b uses bias[b mod Mb].
    /// - mask: (Mm, L, L), constant; entry b uses mask[b mod Mm] (e.g. Swin's shift mask
    ///   with Mm = windows per image, GreenMIM's per-group block-diagonal mask).
    /// - products: which code multiplies each head's blocks in fp32 (tests compare the two).
    public static func attention(qkv: Tensor, heads: Int, bias: Tensor? = nil, mask: Tensor? = nil,
                                 scale: Float? = nil, products: HeadProducts = .current) -> Tensor {
        Profiler.measure(.attention, .forward) {
            precondition(qkv.rank == 3 && qkv.shape[2] % (3 * heads) == 0,
                         "attention: qkv must be (B, L, 3·D) with D divisible by heads=\(heads), got \(qkv.shape)")
            let B = qkv.shape[0], L = qkv.shape[1], D = qkv.shape[2] / 3, H = heads, dh = D / H
            let scale = scale ?? 1 / Float(dh).squareRoot()
            var biasBatches = 0
            if let bias {
                let s = bias.shape
                biasBatches = bias.rank == 3 ? 1 : s[0]
                precondition(Array(s.suffix(3)) == [H, L, L] && (bias.rank == 3 || bias.rank == 4) && B % biasBatches == 0,
                             "attention bias must be (Mb, \(H), \(L), \(L)) with Mb dividing \(B), got \(s)")
            }
            var maskBatches = 0
            if let mask {
                maskBatches = mask.shape[0]
                precondition(mask.rank == 3 && Array(mask.shape.suffix(2)) == [L, L] && B % maskBatches == 0,
                             "attention mask must be (Mm, \(L), \(L)) with Mm dividing \(B), got \(mask.shape)")
            }
            if BF16.isOn {
                return attentionBF16(qkv: qkv, heads: H, bias: bias, biasBatches: biasBatches, mask: mask,
                                     maskBatches: maskBatches, scale: scale)
            }
            let out = Tensor(uninitialized: [B, L, D])
            // Per row of each head's scores, its maximum and the reciprocal of its sum: all the
            // backward pass needs to make the probabilities again from recomputed scores.
            let stats = Tensor(uninitialized: [B, H, L, 2])
            let q = qkv.pointer, o = out.pointer, st = stats.pointer
            let ld = 3 * D, LL = L * L
            let biasP = bias?.pointer, maskP = mask?.pointer
            let biasAt = { (b: Int, h: Int) in biasP.map { $0 + ((b % biasBatches) * H + h) * LL } }
            let maskAt = { (b: Int) in maskP.map { $0 + (b % maskBatches) * LL } }
            FLOPCounter.add(4 * B * H * L * L * dh)
            let threads = min(ComputeThreads.count, B * H)
            do {
                // One head's scores and, for the register-blocked products, a right operand; per thread.
                let scratch = Tensor(uninitialized: [threads, LL + L * dh])
                DispatchApply.run(threads) { t in
                    let p = scratch.pointer + t * (LL + L * dh), rhs = p + LL
                    let units = B * H * t / threads..<B * H * (t + 1) / threads
                    for u in units {
                        let b = u / H, h = u % H
                        let qb = q + b * L * ld + h * dh, kb = qb + D, vb = qb + 2 * D
                        if u + 1 < units.upperBound { prefetchHead(q + ((u + 1) / H) * L * ld + (u + 1) % H * dh, L, dh, D) }
                        products.run(false, true, L, L, dh, scale, qb, ld, kb, ld, p, L, packed: rhs)
                        softmaxBlock(p, L, bias: biasAt(b, h), mask: maskAt(b), stats: st + u * 2 * L)
                        products.run(false, false, L, dh, L, 1, p, L, vb, ld, o + b * L * D + h * dh, D, packed: rhs)
                    }
                }
            }
            return out.recording("attention", .attention, [qkv] + (bias.map { [$0] } ?? [])) { g in
                _ = (stats, mask)
                let gp = g.pointer
                // The model's four gradient products; the scores made again are not counted, so
                // the benchmarks' GFLOP/s stays the model's work per second.
                FLOPCounter.add(8 * B * H * L * L * dh)
                let dqkvT = qkv.grad
                let dq = Tensor(uninitialized: qkv.shape)  // every element is written below
                let dqp = dq.pointer
                let scratch = Tensor(uninitialized: [threads, 2 * LL + L * dh])
                // One head's backward; leaves dS in its block `p`.
                func head(_ b: Int, _ h: Int, _ p: UnsafeMutablePointer<Float>, next: (b: Int, h: Int)?) {
                    if let next {
                        prefetchHead(q + next.b * L * ld + next.h * dh, L, dh, D)
                        mims_prefetch_block(gp + next.b * L * D + next.h * dh, L, dh, D)
                    }
                    let dP = p + LL, rhs = dP + LL
                    let off = b * L * ld + h * dh
                    let qb = q + off, kb = qb + D, vb = qb + 2 * D
                    let dQ = dqp + off, dK = dQ + D, dV = dQ + 2 * D
                    let gO = gp + b * L * D + h * dh
                    products.run(false, true, L, L, dh, scale, qb, ld, kb, ld, p, L, packed: rhs)
                    softmaxBlockReplay(p, L, bias: biasAt(b, h), mask: maskAt(b), stats: st + (b * H + h) * 2 * L)
                    // dV = Pᵀ·dO ; dP = dO·Vᵀ
                    products.run(true, false, L, dh, L, 1, p, L, gO, D, dV, ld, packed: rhs)
                    products.run(false, true, L, L, dh, 1, gO, D, vb, ld, dP, L, packed: rhs)
                    // dS = P ⊙ (dP − rowsum(dP ⊙ P)), written over P (P is not needed after).
                    for r in 0..<L { softmaxBackwardRow(p + r * L, dP + r * L, p + r * L, L, 0) }
                    // dQ = scale·dS·K ; dK = scale·dSᵀ·Q
                    products.run(false, false, L, dh, L, scale, p, L, kb, ld, dQ, ld, packed: rhs)
                    products.run(true, false, L, dh, L, scale, p, L, qb, ld, dK, ld, packed: rhs)
                }
                if let bias, bias.requiresGrad {
                    // A learned bias's gradient sums dS over the entries that share it. The
                    // entries (cycles of Mb) fall into at most 8 runs, each summed in order into
                    // its own partial block by one thread, and the partials are then added in
                    // run order: the same sums however many threads, without a B×H×L×L buffer
                    // of score gradients (10.6 MB in Swin-B's first stage at batch 8).
                    let cycles = B / biasBatches, runs = min(cycles, 8), units = biasBatches * H
                    let partials = Tensor(uninitialized: [runs, units, LL])
                    let slots = runs * units, workers = min(threads, slots)
                    DispatchApply.run(workers) { t in
                        let p = scratch.pointer + t * (2 * LL + L * dh)
                        for slot in slots * t / workers..<slots * (t + 1) / workers {
                            let run = slot / units, mb = slot % units / H, h = slot % H
                            let sum = partials.pointer + slot * LL
                            let inRun = cycles * run / runs..<cycles * (run + 1) / runs
                            for cycle in inRun {
                                head(cycle * biasBatches + mb, h, p,
                                     next: cycle + 1 < inRun.upperBound ? ((cycle + 1) * biasBatches + mb, h) : nil)
                                if cycle == inRun.lowerBound {
                                    sum.update(from: p, count: LL)
                                } else {
                                    for i in 0..<LL { sum[i] += p[i] }
                                }
                            }
                        }
                    }
                    accumulateBiasGradient(bias, runs: partials)
                } else {
                    DispatchApply.run(threads) { t in
                        let p = scratch.pointer + t * (2 * LL + L * dh)
                        let units = B * H * t / threads..<B * H * (t + 1) / threads
                        for u in units { head(u / H, u % H, p, next: u + 1 < units.upperBound ? ((u + 1) / H, (u + 1) % H) : nil) }
                    }
                }
                if let dqkvT {
                    let n = qkv.count, dst = dqkvT.pointer
                    withExtendedLifetime(dq) { for i in 0..<n { dst[i] += dqp[i] } }
                } else if qkv.requiresGrad {
                    qkv.grad = dq
                }
            }
        }
    }

    /// dBias[unit] (+)= Σ over runs r, in order, of partial[r, unit], from partial sums of
    /// score gradients (runs, Mb·H, L·L).
    static func accumulateBiasGradient(_ bias: Tensor, runs partials: Tensor) {
        let runs = partials.shape[0], units = partials.shape[1], LL = partials.shape[2], src = partials.pointer
        precondition(units * LL == bias.count, "bias \(bias.shape) against partial sums \(partials.shape)")
        bias.accumulateGrad { db, beta in
            parallelFor(units) { range in
                for unit in range {
                    let dst = db + unit * LL
                    for r in 0..<runs {
                        let s = src + (r * units + unit) * LL
                        if r == 0 && beta == 0 {
                            dst.update(from: s, count: LL)
                        } else {
                            for i in 0..<LL { dst[i] += s[i] }
                        }
                    }
                }
            }
        }
    }

    /// dBias[mb, h] = Σ over b ≡ mb (mod Mb) of dS[b, h], from the score gradients dS (B, H, L, L).
    static func accumulateBiasGradient(_ bias: Tensor, biasBatches: Int, scores dS: Tensor) {
        guard bias.requiresGrad else { return }
        let B = dS.shape[0], H = dS.shape[1], LL = dS.shape[2] * dS.shape[3], src = dS.pointer
        bias.accumulateGrad { db, beta in
            parallelFor(biasBatches * H) { range in
                for unit in range {
                    let mb = unit / H, h = unit % H
                    let dst = db + unit * LL
                    var first = beta == 0
                    for b in stride(from: mb, to: B, by: biasBatches) {
                        let s = src + (b * H + h) * LL
                        if first {
                            dst.update(from: s, count: LL)
                            first = false
                        } else {
                            for i in 0..<LL { dst[i] += s[i] }
                        }
                    }
                }
            }
        }
    }
}

/// Prefetches one head's q, k and v rows (L rows of dh floats at `qb`, `qb + D`, `qb + 2D`,
/// row stride 3D).
@inline(__always)
private func prefetchHead(_ qb: UnsafePointer<Float>, _ L: Int, _ dh: Int, _ D: Int) {
    for part in 0..<3 { mims_prefetch_block(qb + part * D, L, dh, 3 * D) }
}

/// What multiplies one attention head's blocks in fp32. A head's products are small (a Swin
/// window's QKᵀ is 36×36×32), and a library GEMM spends much of such a call packing and
/// dispatching: OpenBLAS ran Swin-B's window heads at about 50 GFLOP/s on two cores. The
/// register-blocked kernel (`mims_head_gemm`) keeps a block of the result in registers and reads
/// the left operand in place; the right one is first copied into a small per-thread block. It
/// runs with AVX-512 or with AVX2 and FMA (there only for heads the library gives OpenBLAS),
/// and both widths give the same bits. `MIMSERVE_HEAD_GEMM=library|avx2|avx512` picks one (for
/// comparisons); by default the widest this CPU runs, and the library on CPUs with neither.
public enum HeadProducts: String, Sendable, CaseIterable {
    /// `sgemmCall`: OpenBLAS, or oneDNN from `SGEMMKernel.oneDNNFrom` multiply-adds.
    case library
    /// `mims_head_gemm` with 8-float vectors.
    case avx2
    /// `mims_head_gemm` with 16-float vectors.
    case avx512

    /// Floats per vector of the register-blocked kernel; 0 for the library.
    var width: Int32 { switch self { case .library: 0; case .avx2: 8; case .avx512: 16 } }

    public static let supported: [HeadProducts] =
        allCases.filter { $0 == .library || mims_head_gemm_supported($0.width) }
    public static let current: HeadProducts = {
        let asked = getenv("MIMSERVE_HEAD_GEMM").flatMap { HeadProducts(rawValue: String(cString: $0)) }
        return asked.flatMap { supported.contains($0) ? $0 : nil } ?? supported.last!
    }()

    /// Row-major C = alpha · op(A) · op(B), as `sgemmCall` with beta 0. `packed` has room for
    /// op(B), k·n floats.
    @inline(__always)
    func run(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
             _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
             _ c: UnsafeMutablePointer<Float>, _ ldc: Int, packed: UnsafeMutablePointer<Float>) {
        // With AVX2, oneDNN's sgemm ran ViT-B's 197-token decoder heads 15 % faster than
        // this kernel (`core --attention-only`, Zen 3); heads from `oneDNNFrom` up go there.
        guard self == .avx512 || (self == .avx2 && m * n * k < SGEMMKernel.oneDNNFrom) else {
            sgemmCall(transA, transB, m, n, k, alpha, a, lda, b, ldb, nil, 0, c, ldc)
            return
        }
        // op(B) is read once per block of rows, so it is first copied dense (k rows of n): in
        // place, rows a few KB apart (a head inside a (B, L, 3D) qkv row) share a handful of
        // L1 sets, and the re-reads missed.
        if transB {
            mims_transpose(width, b, n, k, ldb, packed)
        } else {
            for p in 0..<k { (packed + p * n).update(from: b + p * ldb, count: n) }
        }
        mims_head_gemm(width, m, n, k, alpha, a, transA ? 1 : lda, transA ? lda : 1, packed, n, c, ldc)
    }
}
