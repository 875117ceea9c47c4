/// LayerNorm over the last dimension, caching mean and 1/σ for backward (llm.c style).
extension Tensor {
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        Profiler.measure(.norm, .forward) {
            let d = dim(-1), rows = count / max(d, 1)
            if let weight { precondition(weight.shape == [d], "layerNorm weight \(weight.shape) ≠ [\(d)]") }
            if let bias { precondition(bias.shape == [d], "layerNorm bias \(bias.shape) ≠ [\(d)]") }
            let out = Tensor(uninitialized: shape)
            let stats = Tensor(uninitialized: [rows, 2])  // (mean, rstd)
            let x = pointer, y = out.pointer, st = stats.pointer
            let w = weight?.pointer, b = bias?.pointer
            parallelFor(rows, minPerThread: 16) { range in
                for r in range {
                    let xr = x + r * d, yr = y + r * d
                    let mean = simdSum(xr, d) / Float(d)
                    var acc = SIMD8<Float>(repeating: 0)
                    var i = 0
                    while i + 8 <= d { let v = SIMD8.load(xr + i, 8) - mean; acc += v * v; i += 8 }
                    var sq = acc.sum()
                    while i < d { let v = xr[i] - mean; sq += v * v; i += 1 }
                    let rstd = 1 / (sq / Float(d) + eps).squareRoot()
                    st[2 * r] = mean
                    st[2 * r + 1] = rstd
                    switch (w, b) {
                    case let (w?, b?): for i in 0..<d { yr[i] = (xr[i] - mean) * rstd * w[i] + b[i] }
                    case let (w?, nil): for i in 0..<d { yr[i] = (xr[i] - mean) * rstd * w[i] }
                    case let (nil, b?): for i in 0..<d { yr[i] = (xr[i] - mean) * rstd + b[i] }
                    case (nil, nil): for i in 0..<d { yr[i] = (xr[i] - mean) * rstd }
                    }
                }
            }
            let params = [weight, bias].compactMap { $0 }
            return out.recording("layerNorm", .norm, [self] + params) { g in
                _ = stats  // the cached (mean, rstd) must outlive the forward
                let gp = g.pointer
                let threads = ComputeThreads.count
                // Per-thread partial sums for dW, dB: rows are split across threads.
                let partial = Tensor(zeros: [threads, 2, d])
                let pp = partial.pointer
                let dxT: Tensor? = self.requiresGrad ? (self.grad ?? Tensor(uninitialized: self.shape)) : nil
                let dxBeta: Float = self.grad == nil ? 0 : 1
                let ones = w == nil ? Tensor(repeating: 1, shape: [d]) : nil
                let wp = w ?? ones!.pointer
                DispatchApply.run(threads) { t in
                    let lo = rows * t / threads, hi = rows * (t + 1) / threads
                    let dwp = pp + t * 2 * d, dbp = dwp + d
                    for r in lo..<hi {
                        let xr = x + r * d, gr = gp + r * d
                        let mean = st[2 * r], rstd = st[2 * r + 1]
                        // dxhat = g·w; dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat))
                        // Parameter gradients: plain loops (vectorised); the two row sums need
                        // explicit SIMD accumulators.
                        for i in 0..<d {
                            let xh = (xr[i] - mean) * rstd
                            dwp[i] += gr[i] * xh
                            dbp[i] += gr[i]
                        }
                        var sumD = SIMD8<Float>(repeating: 0), sumDX = SIMD8<Float>(repeating: 0)
                        var i = 0
                        while i + 8 <= d {
                            let dxh = SIMD8.load(gr + i, 8) * SIMD8.load(wp + i, 8)
                            sumD += dxh
                            sumDX += dxh * (SIMD8.load(xr + i, 8) - mean) * rstd
                            i += 8
                        }
                        var sd = sumD.sum(), sdx = sumDX.sum()
                        while i < d { let dxh = gr[i] * wp[i]; sd += dxh; sdx += dxh * (xr[i] - mean) * rstd; i += 1 }
                        guard let dxT else { continue }
                        let md = sd / Float(d), mdx = sdx / Float(d)
                        let dx = dxT.pointer + r * d
                        if dxBeta == 0 {
                            for i in 0..<d { dx[i] = rstd * (gr[i] * wp[i] - md - (xr[i] - mean) * rstd * mdx) }
                        } else {
                            for i in 0..<d { dx[i] += rstd * (gr[i] * wp[i] - md - (xr[i] - mean) * rstd * mdx) }
                        }
                    }
                }
                if let dxT, self.grad == nil { self.grad = dxT }
                for (k, p) in [(0, weight), (1, bias)] {
                    guard let p, p.requiresGrad else { continue }
                    p.accumulateGrad { dp, beta in
                        for i in 0..<d {
                            var s: Float = 0
                            for t in 0..<threads { s += pp[t * 2 * d + k * d + i] }
                            dp[i] = beta == 0 ? s : dp[i] + s
                        }
                    }
                }
                withExtendedLifetime((partial, ones)) {}  // pp and wp point into them
            }
        }
    }
}
