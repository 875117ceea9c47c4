import CDNNL

/// `attention` with bf16 products (see `BF16`): the five per-head GEMMs of a forward and
/// backward pass take bf16 operands and sum in fp32; bias, mask, softmax and its gradient stay
/// fp32.
///
/// A head's product is tiny (Swin: 36×36×32), so one GEMM call per head spends most of its time
/// getting started. Here q, k, v (and, going back, dO) are rounded once into a head-major copy,
/// (B, H, L, dh) per part, and each thread runs one batched oneDNN matmul per kind of product
/// over a chunk of (entry, head) pairs: with every head's matrix dense, oneDNN's batched bf16
/// kernels run those shapes at several times the rate of separate calls.
extension Tensor {
    static func attentionBF16(qkv: Tensor, heads H: Int, bias: Tensor?, biasBatches: Int, mask: Tensor?,
                              maskBatches: Int, scale: Float) -> Tensor {
        let B = qkv.shape[0], L = qkv.shape[1], D = qkv.shape[2] / 3, dh = D / H
        let LL = L * L, block = L * dh
        let heads = headMajor(qkv.pointer, parts: 3, B: B, L: L, H: H, dh: dh)
        let q = heads.pointer, k = q + B * H * block, v = k + B * H * block
        let out = Tensor(uninitialized: [B, L, D])
        let probs = Tensor(uninitialized: [B, H, L, L])
        let pAll = probs.pointer, o = out.pointer
        let pb = BF16Matrix(uninitializedRows: B * H * L, cols: L)
        let biasP = bias?.pointer, maskP = mask?.pointer
        FLOPCounter.add(4 * B * H * LL * dh)
        let plan = AttentionChunks(B: B, H: H, L: L)
        plan.run { c in
            let hm = c.headOffset * block, sc = c.headOffset * LL
            // S = scale·Q·Kᵀ
            batchedBF16(c, L, L, dh, scale, q + hm, (H * block, block, dh, 1), k + hm, (H * block, block, 1, dh),
                        pAll + sc, (H * LL, LL, L, 1))
            for u in c.units {
                let p = pAll + u * LL, b = u / H, h = u % H
                softmaxBlock(p, L, bias: biasP.map { $0 + ((b % biasBatches) * H + h) * LL },
                             mask: maskP.map { $0 + (b % maskBatches) * LL })
                mims_bf16_pack(p, 1, LL, LL, pb.mutablePointer + u * LL)
            }
            // O = P·V, written straight into (B, L, D)
            batchedBF16(c, L, dh, L, 1, pb.pointer + sc, (H * LL, LL, L, 1), v + hm, (H * block, block, dh, 1),
                        o + c.b * L * D + c.h * dh, (L * D, dh, D, 1))
        }
        withExtendedLifetime(pb) {}
        return out.recording("attention", .attention, [qkv] + (bias.map { [$0] } ?? [])) { g in
            _ = (probs, mask)  // P is read (and overwritten by dS) below
            FLOPCounter.add(8 * B * H * LL * dh)
            let gO = headMajor(g.pointer, parts: 1, B: B, L: L, H: H, dh: dh)
            let dHeads = Tensor(uninitialized: [3, B, H, L, dh])  // dQ, dK, dV, head-major
            let dPAll = Tensor(uninitialized: [B, H, L, L])
            let sb = BF16Matrix(uninitializedRows: B * H * L, cols: L)  // P, then dS, in bf16
            let dq = dHeads.pointer, dk = dq + B * H * block, dv = dk + B * H * block
            let go = gO.pointer, dPp = dPAll.pointer, s = sb.mutablePointer
            plan.run { c in
                let hm = c.headOffset * block, sc = c.headOffset * LL
                for u in c.units { mims_bf16_pack(pAll + u * LL, 1, LL, LL, s + u * LL) }
                // dV = Pᵀ·dO ; dP = dO·Vᵀ
                batchedBF16(c, L, dh, L, 1, s + sc, (H * LL, LL, 1, L), go + hm, (H * block, block, dh, 1),
                            dv + hm, (H * block, block, dh, 1))
                batchedBF16(c, L, L, dh, 1, go + hm, (H * block, block, dh, 1), v + hm, (H * block, block, 1, dh),
                            dPp + sc, (H * LL, LL, L, 1))
                // dS = P ⊙ (dP − rowsum(dP ⊙ P)), written over P (the bias gradient reads it).
                for u in c.units {
                    let p = pAll + u * LL, dP = dPp + u * LL
                    for r in 0..<L { softmaxBackwardRow(p + r * L, dP + r * L, p + r * L, L, 0) }
                    mims_bf16_pack(p, 1, LL, LL, s + u * LL)
                }
                // dQ = scale·dS·K ; dK = scale·dSᵀ·Q
                batchedBF16(c, L, dh, L, scale, s + sc, (H * LL, LL, L, 1), k + hm, (H * block, block, dh, 1),
                            dq + hm, (H * block, block, dh, 1))
                batchedBF16(c, L, dh, L, scale, s + sc, (H * LL, LL, 1, L), q + hm, (H * block, block, dh, 1),
                            dk + hm, (H * block, block, dh, 1))
            }
            withExtendedLifetime((heads, gO, dPAll, sb)) {}
            if qkv.requiresGrad {
                // Back from head-major (3, B, H, L, dh) into the (B, L, 3D) rows.
                qkv.accumulateGrad { dst, beta in
                    parallelFor(3 * B * H) { units in
                        for unit in units {
                            let part = unit / (B * H), b = unit / H % B, h = unit % H
                            let src = dq + unit * block
                            let rows = dst + b * L * 3 * D + part * D + h * dh
                            for l in 0..<L {
                                let from = src + l * dh, to = rows + l * 3 * D
                                if beta == 0 {
                                    to.update(from: from, count: dh)
                                } else {
                                    for i in 0..<dh { to[i] += from[i] }
                                }
                            }
                        }
                    }
                }
            }
            withExtendedLifetime(dHeads) {}
            if let bias { accumulateBiasGradient(bias, biasBatches: biasBatches, scores: probs) }
        }
    }

    /// The (B, L, parts·D) rows at `source` rounded to bf16 and laid out head-major:
    /// (parts, B, H, L, dh), each head's L × dh matrix dense.
    private static func headMajor(_ source: UnsafePointer<Float>, parts: Int, B: Int, L: Int, H: Int, dh: Int) -> BF16Matrix {
        let D = H * dh, block = L * dh
        let m = BF16Matrix(uninitializedRows: parts * B * H * L, cols: dh)
        let dst = m.mutablePointer
        parallelFor(parts * B * H, minPerThread: max(1, 4096 / block)) { units in
            for unit in units {
                let part = unit / (B * H), b = unit / H % B, h = unit % H
                mims_bf16_pack(source + b * L * parts * D + part * D + h * dh, L, dh, parts * D, dst + unit * block)
            }
        }
        return m
    }
}

/// How attention's (entry, head) pairs are shared out: each thread takes a contiguous run of
/// entries with all their heads, cut into chunks whose scores fit in a core's L2 cache, so a
/// chunk's S is still there when the softmax and the next product read it; with fewer entries
/// than threads (one image served), each thread takes a share of every entry's heads instead.
struct AttentionChunks {
    struct Chunk {
        let b, entries, h, heads, H: Int
        /// Index of the chunk's first (entry, head) pair, in (B, H) order.
        var headOffset: Int { b * H + h }
        /// Every (entry, head) pair of the chunk, in (B, H) order.
        var units: [Int] { (b..<b + entries).flatMap { e in (e * H + h)..<(e * H + h + heads) } }
    }

    let perThread: [[Chunk]]

    init(B: Int, H: Int, L: Int, threads: Int = ComputeThreads.count) {
        if B >= threads {
            let cap = max(1, (256 << 10) / (H * L * L * 4))
            perThread = (0..<threads).map { t in
                let lo = B * t / threads, hi = B * (t + 1) / threads
                let pieces = (hi - lo + cap - 1) / cap
                return (0..<pieces).map { i in
                    let a = lo + (hi - lo) * i / pieces, z = lo + (hi - lo) * (i + 1) / pieces
                    return Chunk(b: a, entries: z - a, h: 0, heads: H, H: H)
                }
            }
        } else {
            let parts = min(threads, H)
            perThread = (0..<parts).map { t in
                let lo = H * t / parts, hi = H * (t + 1) / parts
                return (0..<B).map { Chunk(b: $0, entries: 1, h: lo, heads: hi - lo, H: H) }
            }
        }
    }

    func run(_ body: (Chunk) -> Void) {
        DispatchApply.run(perThread.count) { t in
            for c in perThread[t] where c.entries > 0 && c.heads > 0 { body(c) }
        }
    }
}

/// Element strides of a batched operand: entry, head, row, column.
typealias BatchedStrides = (Int, Int, Int, Int)

/// C[e, h] = alpha · A[e, h] · B[e, h] over a chunk's entries and heads (m×k times k×n), bf16
/// operands with fp32 sums; a shape oneDNN cannot run is a programming error.
private func batchedBF16(_ c: AttentionChunks.Chunk, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                         _ a: UnsafePointer<UInt16>, _ sa: BatchedStrides, _ b: UnsafePointer<UInt16>, _ sb: BatchedStrides,
                         _ out: UnsafeMutablePointer<Float>, _ so: BatchedStrides) {
    let strides = [sa.0, sa.1, sa.2, sa.3, sb.0, sb.1, sb.2, sb.3, so.0, so.1, so.2, so.3]
    let status = strides.withUnsafeBufferPointer { s in
        mims_bf16_matmul_batched(c.entries, c.heads, m, n, k, alpha, a, s.baseAddress!, b, s.baseAddress! + 4,
                                 out, s.baseAddress! + 8)
    }
    precondition(status == 0, "oneDNN batched bf16 matmul \(c.entries)×\(c.heads) of \(m)×\(n)×\(k) failed with status \(status)")
}
