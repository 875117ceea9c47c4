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
///
/// As in fp32, the B×H×L×L probabilities are never stored: a chunk's scores and probabilities
/// live in its thread's scratch, the forward keeps each row's maximum and reciprocal sum, and
/// the backward makes the chunk's scores again (the same batched product on the same operands,
/// so the same bits) and the probabilities from them. What the backward reads is the rounded
/// head-major q, k, v, so the fp32 qkv rows are not kept either.
extension Tensor {
    static func attentionBF16(qkv: Tensor, heads H: Int, bias: Tensor?, biasBatches: Int, mask: Tensor?,
                              maskBatches: Int, scale: Float) -> Tensor {
        let B = qkv.shape[0], L = qkv.shape[1], D = qkv.shape[2] / 3, dh = D / H
        let LL = L * L, block = L * dh
        let heads = headMajor(qkv.pointer, parts: 3, B: B, L: L, H: H, dh: dh)
        let q = heads.pointer, k = q + B * H * block, v = k + B * H * block
        let out = Tensor(uninitialized: [B, L, D])
        let stats = Tensor(uninitialized: [B, H, L, 2])  // each row's maximum and 1/sum
        let o = out.pointer, st = stats.pointer
        let biasP = bias?.pointer, maskP = mask?.pointer
        let biasAt = { (u: Int) in biasP.map { $0 + ((u / H % biasBatches) * H + u % H) * LL } }
        let maskAt = { (u: Int) in maskP.map { $0 + (u / H % maskBatches) * LL } }
        FLOPCounter.add(4 * B * H * LL * dh)
        let plan = AttentionChunks(B: B, H: H, L: L)
        do {
            let scores = plan.scratch(LL), rounded = plan.roundedScratch(L)
            plan.run { t, c in
                let p = scores.pointer + t * plan.largestChunk * LL, pb = rounded.mutablePointer + t * plan.largestChunk * LL
                let hm = c.headOffset * block
                // S = scale·Q·Kᵀ, then P in place, rounded for the product with V
                batchedBF16(c, L, L, dh, scale, q + hm, (H * block, block, dh, 1), k + hm, (H * block, block, 1, dh),
                            p, c.scoreStrides(L))
                for (i, u) in c.units.enumerated() {
                    softmaxBlock(p + i * LL, L, bias: biasAt(u), mask: maskAt(u), stats: st + u * 2 * L)
                }
                mims_bf16_pack(p, 1, c.count * LL, c.count * LL, pb)
                // O = P·V, written straight into (B, L, D)
                batchedBF16(c, L, dh, L, 1, pb, c.scoreStrides(L), v + hm, (H * block, block, dh, 1),
                            o + c.b * L * D + c.h * dh, (L * D, dh, D, 1))
            }
        }
        let qkvVertex = qkv.vertex  // the backward reads the rounded heads, not these values
        return out.recording("attention", .attention, [qkv] + (bias.map { [$0] } ?? [])) { g in
            _ = (stats, mask)
            FLOPCounter.add(8 * B * H * LL * dh)
            let gO = headMajor(g.pointer, parts: 1, B: B, L: L, H: H, dh: dh)
            let dHeads = Tensor(uninitialized: [3, B, H, L, dh])  // dQ, dK, dV, head-major
            let dq = dHeads.pointer, dk = dq + B * H * block, dv = dk + B * H * block, go = gO.pointer
            // A learned bias's gradient sums dS over the entries that share it, after the chunks.
            let scoreGrads = bias?.requiresGrad == true ? Tensor(uninitialized: [B, H, L, L]) : nil
            let scores = plan.scratch(2 * LL), rounded = plan.roundedScratch(L)  // P and dP; P, then dS
            plan.run { t, c in
                let p = scores.pointer + t * plan.largestChunk * 2 * LL, dP = p + c.count * LL
                let s = rounded.mutablePointer + t * plan.largestChunk * LL
                let hm = c.headOffset * block, n = c.count * LL
                // S again, and P from it with the forward's row statistics
                batchedBF16(c, L, L, dh, scale, q + hm, (H * block, block, dh, 1), k + hm, (H * block, block, 1, dh),
                            p, c.scoreStrides(L))
                for (i, u) in c.units.enumerated() {
                    softmaxBlockReplay(p + i * LL, L, bias: biasAt(u), mask: maskAt(u), stats: st + u * 2 * L)
                }
                mims_bf16_pack(p, 1, n, n, s)
                // dV = Pᵀ·dO ; dP = dO·Vᵀ
                let transposed = c.scoreStrides(L, transposed: true)
                batchedBF16(c, L, dh, L, 1, s, transposed, go + hm, (H * block, block, dh, 1),
                            dv + hm, (H * block, block, dh, 1))
                batchedBF16(c, L, L, dh, 1, go + hm, (H * block, block, dh, 1), v + hm, (H * block, block, 1, dh),
                            dP, c.scoreStrides(L))
                // dS = P ⊙ (dP − rowsum(dP ⊙ P)), written over P.
                for r in 0..<(c.count * L) { softmaxBackwardRow(p + r * L, dP + r * L, p + r * L, L, 0) }
                mims_bf16_pack(p, 1, n, n, s)
                if let scoreGrads { (scoreGrads.pointer + c.headOffset * LL).update(from: p, count: n) }
                // dQ = scale·dS·K ; dK = scale·dSᵀ·Q
                batchedBF16(c, L, dh, L, scale, s, c.scoreStrides(L), k + hm, (H * block, block, dh, 1),
                            dq + hm, (H * block, block, dh, 1))
                batchedBF16(c, L, dh, L, scale, s, transposed, q + hm, (H * block, block, dh, 1),
                            dk + hm, (H * block, block, dh, 1))
            }
            withExtendedLifetime((heads, gO, scores, rounded)) {}
            if qkvVertex.requiresGrad {
                // Back from head-major (3, B, H, L, dh) into the (B, L, 3D) rows.
                qkvVertex.accumulateGrad { dst, beta in
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
            if let bias, let scoreGrads { accumulateBiasGradient(bias, biasBatches: biasBatches, scores: scoreGrads) }
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
        /// How many pairs the chunk has.
        var count: Int { entries * heads }
        /// Strides (entry, head, row, column) of the chunk's L×L blocks laid out densely in
        /// scratch, in (B, H) order; `transposed` reads each block transposed.
        func scoreStrides(_ L: Int, transposed: Bool = false) -> BatchedStrides {
            (heads * L * L, L * L, transposed ? 1 : L, transposed ? L : 1)
        }
    }

    let perThread: [[Chunk]]
    /// The most (entry, head) pairs of any chunk: a thread's scratch holds that many blocks.
    let largestChunk: Int

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
        largestChunk = perThread.joined().map(\.count).max() ?? 0
    }

    /// fp32 scratch of `floatsPerPair` floats per pair of the largest chunk, for each thread.
    func scratch(_ floatsPerPair: Int) -> Tensor { Tensor(uninitialized: [perThread.count, max(1, largestChunk * floatsPerPair)]) }

    /// bf16 scratch of one L×L block per pair of the largest chunk, for each thread.
    func roundedScratch(_ L: Int) -> BF16Matrix { BF16Matrix(uninitializedRows: max(1, perThread.count * largestChunk * L), cols: L) }

    /// Runs `body(thread, chunk)` for every chunk, each thread's chunks in order on that thread.
    func run(_ body: (Int, Chunk) -> Void) {
        DispatchApply.run(perThread.count) { t in
            for c in perThread[t] where c.entries > 0 && c.heads > 0 { body(t, c) }
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
