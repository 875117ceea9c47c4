/// Convolutions. Feature maps are channels-last (B, H, W, C) inside the engine so that 1×1
/// convolutions are `linear`, per-pixel LayerNorm is `layerNorm`, and tokens are rows.
/// Weights keep PyTorch's (out, in, kh, kw) layout so checkpoints load by name.
public enum ImageLayout: Sendable { case nchw, nhwc }

extension Tensor {
    /// 2-D convolution → (B, Ho, Wo, Cout). The input is NCHW (images) or NHWC (feature maps).
    /// im2col builds one row per output pixel with columns ordered (cin, ky, kx), matching the
    /// weight's (Cout, Cin·kh·kw) view, then one GEMM. With kernel == stride and no padding the
    /// im2col is a pure re-indexing (patchify) of the input.
    public func conv2d(weight: Tensor, bias: Tensor? = nil, stride: Int, padding: Int = 0,
                       layout: ImageLayout) -> Tensor {
        Profiler.measure(.conv, .forward) {
            precondition(rank == 4 && weight.rank == 4, "conv2d: input \(shape), weight \(weight.shape) must be 4-D")
            let B = shape[0]
            let (Cin, H, W) = layout == .nchw ? (shape[1], shape[2], shape[3]) : (shape[3], shape[1], shape[2])
            let Cout = weight.shape[0], kh = weight.shape[2], kw = weight.shape[3]
            precondition(weight.shape[1] == Cin, "conv2d: weight \(weight.shape) expects \(weight.shape[1]) input channels, input has \(Cin)")
            if let bias { precondition(bias.shape == [Cout], "conv2d bias \(bias.shape) ≠ [\(Cout)]") }
            let Ho = (H + 2 * padding - kh) / stride + 1, Wo = (W + 2 * padding - kw) / stride + 1
            precondition(Ho > 0 && Wo > 0, "conv2d: kernel \(kh)×\(kw) larger than padded input \(H)×\(W)")
            let K = Cin * kh * kw, rows = B * Ho * Wo
            let geometry = ConvGeometry(B: B, Cin: Cin, H: H, W: W, kh: kh, kw: kw, stride: stride,
                                        padding: padding, Ho: Ho, Wo: Wo, layout: layout)
            let cols = Tensor(uninitialized: [rows, K])
            geometry.im2col(pointer, cols.pointer)
            let out = Tensor(uninitialized: [B, Ho, Wo, Cout])
            let y = out.pointer, wp = weight.pointer
            gemm(transA: false, transB: true, m: rows, n: Cout, k: K, a: cols.pointer, lda: K,
                 b: wp, ldb: K, bias: bias?.pointer, c: y, ldc: Cout)
            return out.recording("conv2d", .conv, [self, weight] + (bias.map { [$0] } ?? [])) { g in
                let gp = g.pointer
                if weight.requiresGrad {
                    weight.accumulateGrad { dw, beta in  // dW = gᵀ·cols
                        gemm(transA: true, transB: false, m: Cout, n: K, k: rows, a: gp, lda: Cout,
                             b: cols.pointer, ldb: K, beta: beta, c: dw, ldc: K)
                    }
                }
                if let bias, bias.requiresGrad {
                    bias.accumulateGrad { db, beta in columnSums(gp, rows: rows, cols: Cout, into: db, beta: beta) }
                }
                if self.requiresGrad {
                    let dcols = cols  // reuse the im2col buffer: cols is not needed after dW
                    gemm(transA: false, transB: false, m: rows, n: K, k: Cout, a: gp, lda: Cout,
                         b: wp, ldb: K, c: dcols.pointer, ldc: K)
                    self.accumulateGrad { dx, beta in
                        if beta == 0 { dx.update(repeating: 0, count: self.count) }
                        geometry.col2im(dcols.pointer, dx)
                    }
                }
            }
        }
    }

    /// Depthwise k×k convolution (stride 1) on a channels-last map (B, H, W, C),
    /// weight (C, 1, k, k), optional bias (C) → (B, Ho, Wo, C).
    public func depthwiseConv2d(weight: Tensor, bias: Tensor? = nil, padding: Int) -> Tensor {
        Profiler.measure(.conv, .forward) {
            precondition(rank == 4, "depthwiseConv2d: input must be (B, H, W, C), got \(shape)")
            let B = shape[0], H = shape[1], W = shape[2], C = shape[3]
            precondition(weight.rank == 4 && weight.shape[0] == C && weight.shape[1] == 1 && weight.shape[2] == weight.shape[3],
                         "depthwiseConv2d weight must be (\(C), 1, k, k), got \(weight.shape)")
            if let bias { precondition(bias.shape == [C], "depthwiseConv2d bias \(bias.shape) ≠ [\(C)]") }
            let k = weight.shape[2]
            let Ho = H + 2 * padding - k + 1, Wo = W + 2 * padding - k + 1
            precondition(Ho > 0 && Wo > 0, "depthwiseConv2d: kernel \(k) larger than padded input \(H)×\(W)")
            // Weight as (k·k, C) so the inner loop runs over contiguous channels.
            let wt = Tensor(uninitialized: [k * k, C])
            for c in 0..<C { for t in 0..<(k * k) { wt.pointer[t * C + c] = weight.pointer[c * k * k + t] } }
            let out = Tensor(uninitialized: [B, Ho, Wo, C])
            let x = pointer, y = out.pointer, w = wt.pointer, bp = bias?.pointer
            FLOPCounter.add(2 * B * Ho * Wo * C * k * k)
            parallelFor(B * Ho) { range in
                for by in range {
                    let b = by / Ho, oy = by % Ho
                    for ox in 0..<Wo {
                        let dst = y + ((b * Ho + oy) * Wo + ox) * C
                        if let bp { dst.update(from: bp, count: C) } else { dst.update(repeating: 0, count: C) }
                        for ky in 0..<k {
                            let iy = oy + ky - padding
                            if iy < 0 || iy >= H { continue }
                            for kx in 0..<k {
                                let ix = ox + kx - padding
                                if ix < 0 || ix >= W { continue }
                                let src = x + ((b * H + iy) * W + ix) * C, wk = w + (ky * k + kx) * C
                                for c in 0..<C { dst[c] += src[c] * wk[c] }
                            }
                        }
                    }
                }
            }
            return out.recording("depthwiseConv2d", .conv, [self, weight] + (bias.map { [$0] } ?? [])) { g in
                _ = wt  // the transposed weight is read below
                let gp = g.pointer
                FLOPCounter.add(4 * B * Ho * Wo * C * k * k)
                if self.requiresGrad {
                    self.accumulateGrad { dx, beta in
                        if beta == 0 { dx.update(repeating: 0, count: self.count) }
                        parallelFor(B) { range in  // samples are disjoint: no write races
                            for b in range {
                                for oy in 0..<Ho {
                                    for ky in 0..<k {
                                        let iy = oy + ky - padding
                                        if iy < 0 || iy >= H { continue }
                                        for ox in 0..<Wo {
                                            let gr = gp + ((b * Ho + oy) * Wo + ox) * C
                                            for kx in 0..<k {
                                                let ix = ox + kx - padding
                                                if ix < 0 || ix >= W { continue }
                                                let d = dx + ((b * H + iy) * W + ix) * C, wk = w + (ky * k + kx) * C
                                                for c in 0..<C { d[c] += gr[c] * wk[c] }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                if weight.requiresGrad || (bias?.requiresGrad ?? false) {
                    let threads = ComputeThreads.count
                    let partial = Tensor(zeros: [threads, k * k + 1, C])  // dW (k·k rows) then dB
                    DispatchApply.run(threads) { t in
                        let lo = B * Ho * t / threads, hi = B * Ho * (t + 1) / threads
                        let pw = partial.pointer + t * (k * k + 1) * C, pb = pw + k * k * C
                        for by in lo..<hi {
                            let b = by / Ho, oy = by % Ho
                            for ox in 0..<Wo {
                                let gr = gp + ((b * Ho + oy) * Wo + ox) * C
                                for c in 0..<C { pb[c] += gr[c] }
                                for ky in 0..<k {
                                    let iy = oy + ky - padding
                                    if iy < 0 || iy >= H { continue }
                                    for kx in 0..<k {
                                        let ix = ox + kx - padding
                                        if ix < 0 || ix >= W { continue }
                                        let src = x + ((b * H + iy) * W + ix) * C, d = pw + (ky * k + kx) * C
                                        for c in 0..<C { d[c] += gr[c] * src[c] }
                                    }
                                }
                            }
                        }
                    }
                    let pp = partial.pointer
                    if weight.requiresGrad {
                        weight.accumulateGrad { dw, beta in
                            for c in 0..<C {
                                for tap in 0..<(k * k) {
                                    var s: Float = 0
                                    for t in 0..<threads { s += pp[(t * (k * k + 1) + tap) * C + c] }
                                    let i = c * k * k + tap
                                    dw[i] = beta == 0 ? s : dw[i] + s
                                }
                            }
                        }
                    }
                    if let bias, bias.requiresGrad {
                        bias.accumulateGrad { db, beta in
                            for c in 0..<C {
                                var s: Float = 0
                                for t in 0..<threads { s += pp[(t * (k * k + 1) + k * k) * C + c] }
                                db[c] = beta == 0 ? s : db[c] + s
                            }
                        }
                    }
                    withExtendedLifetime(partial) {}  // pp points into it
                }
            }
        }
    }
}

/// Index arithmetic shared by im2col and its adjoint col2im.
struct ConvGeometry: Sendable {
    let B, Cin, H, W, kh, kw, stride, padding, Ho, Wo: Int
    let layout: ImageLayout

    @inline(__always)
    func inputOffset(b: Int, c: Int, y: Int, x: Int) -> Int {
        layout == .nchw ? ((b * Cin + c) * H + y) * W + x : ((b * H + y) * W + x) * Cin + c
    }

    /// cols[(b, oy, ox), (c, ky, kx)] = x[b, c, oy·s + ky − p, ox·s + kx − p] (0 outside).
    func im2col(_ x: UnsafePointer<Float>, _ cols: UnsafeMutablePointer<Float>) {
        let K = Cin * kh * kw
        parallelFor(B * Ho, minPerThread: 4) { range in
            for by in range {
                let b = by / Ho, oy = by % Ho
                for ox in 0..<Wo {
                    let row = cols + (by * Wo + ox) * K
                    var j = 0
                    for c in 0..<Cin {
                        for ky in 0..<kh {
                            let iy = oy * stride + ky - padding
                            for kx in 0..<kw {
                                let ix = ox * stride + kx - padding
                                row[j] = (iy < 0 || iy >= H || ix < 0 || ix >= W) ? 0 : x[inputOffset(b: b, c: c, y: iy, x: ix)]
                                j += 1
                            }
                        }
                    }
                }
            }
        }
    }

    /// dx += col2im(dcols): the adjoint of `im2col`, parallel over samples (disjoint writes).
    func col2im(_ dcols: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>) {
        let K = Cin * kh * kw
        parallelFor(B) { range in
            for b in range {
                for oy in 0..<Ho {
                    for ox in 0..<Wo {
                        let row = dcols + ((b * Ho + oy) * Wo + ox) * K
                        var j = 0
                        for c in 0..<Cin {
                            for ky in 0..<kh {
                                let iy = oy * stride + ky - padding
                                for kx in 0..<kw {
                                    let ix = ox * stride + kx - padding
                                    if iy >= 0 && iy < H && ix >= 0 && ix < W {
                                        dx[inputOffset(b: b, c: c, y: iy, x: ix)] += row[j]
                                    }
                                    j += 1
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
