/// LayerNorm over the last dimension, caching mean and 1/σ for backward (llm.c style).
extension Tensor {
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        Profiler.measure(.norm, .forward) {
            let (out, stats) = layerNormForward(weight: weight, bias: bias, eps: eps)
            let params = [weight, bias].compactMap { $0 }
            return out.recording("layerNorm", .norm, [self] + params) { g in
                self.layerNormBackward(g.pointer, stats: stats, weight: weight, bias: bias)
            }
        }
    }

    /// `layerNorm(weight: normWeight, bias: normBias, eps:).linear(weight:bias:)` without
    /// keeping the norm's output for the backward pass: only `self` (which the block keeps
    /// anyway, as the residual stream) and each row's mean and 1/σ are kept, and the backward
    /// normalises again for the linear layer's weight gradient, the same operations on the same
    /// values. The results are the composition's, bit for bit, in fp32 and in bf16.
    public func layerNormLinear(normWeight: Tensor?, normBias: Tensor?, eps: Float, weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(weight.rank == 2, "linear weight must be (out, in), got \(weight.shape)")
        let inF = weight.shape[1], outF = weight.shape[0]
        precondition(dim(-1) == inF, "linear: input \(shape) does not end in \(inF)")
        if let bias { precondition(bias.shape == [outF], "linear bias \(bias.shape) ≠ [\(outF)]") }
        let rows = count / max(inF, 1)
        let (normed, stats) = Profiler.measure(.norm, .forward) { layerNormForward(weight: normWeight, bias: normBias, eps: eps) }
        let products = LinearProducts(weight: weight, bias: bias, rows: rows)
        let out = Tensor(uninitialized: Array(shape.dropLast()) + [outF])
        Profiler.measure(.gemm, .forward) { products.forward(normed.pointer, into: out.pointer) }
        let inputs = [self, weight] + [normWeight, normBias, bias].compactMap { $0 }
        return out.recording("layerNorm+linear", nil, inputs) { g in
            let dy = Profiler.measure(.gemm, .backward) { products.gradient(g) }
            do {  // the norm's output again, for the weight's gradient only (freed before dN exists)
                let again = weight.requiresGrad ? Tensor(uninitialized: self.shape) : nil
                if let again {
                    Profiler.measure(.norm, .backward) {
                        self.layerNormApply(stats: stats, weight: normWeight, bias: normBias, into: again.pointer)
                    }
                }
                Profiler.measure(.gemm, .backward) { products.parameterGradients(dy, input: again?.pointer) }
            }
            guard self.requiresGrad || normWeight?.requiresGrad == true || normBias?.requiresGrad == true else { return }
            // dN = dY·W, the norm's output gradient.
            let dN = Tensor(uninitialized: self.shape)
            Profiler.measure(.gemm, .backward) { products.inputGradient(dy, into: dN.pointer, beta: 0) }
            Profiler.measure(.norm, .backward) {
                self.layerNormBackward(dN.pointer, stats: stats, weight: normWeight, bias: normBias)
            }
        }
    }

    /// The normalised rows and each row's (mean, 1/σ).
    private func layerNormForward(weight: Tensor?, bias: Tensor?, eps: Float) -> (Tensor, Tensor) {
        let d = dim(-1), rows = count / max(d, 1)
        if let weight { precondition(weight.shape == [d], "layerNorm weight \(weight.shape) ≠ [\(d)]") }
        if let bias { precondition(bias.shape == [d], "layerNorm bias \(bias.shape) ≠ [\(d)]") }
        let out = Tensor(uninitialized: shape)
        let stats = Tensor(uninitialized: [rows, 2])  // (mean, rstd)
        let x = pointer, st = stats.pointer
        parallelFor(rows, minPerThread: 16) { range in
            for r in range {
                let xr = x + r * d
                let mean = simdSum(xr, d) / Float(d)
                var acc = SIMD8<Float>(repeating: 0)
                var i = 0
                while i + 8 <= d { let v = SIMD8.load(xr + i, 8) - mean; acc += v * v; i += 8 }
                var sq = acc.sum()
                while i < d { let v = xr[i] - mean; sq += v * v; i += 1 }
                st[2 * r] = mean
                st[2 * r + 1] = 1 / (sq / Float(d) + eps).squareRoot()
            }
            normalise(rows: range, stats: st, weight: weight?.pointer, bias: bias?.pointer, into: out.pointer)
        }
        return (out, stats)
    }

    /// The forward's output again from its (mean, 1/σ): the same operations, the same values.
    private func layerNormApply(stats: Tensor, weight: Tensor?, bias: Tensor?, into y: UnsafeMutablePointer<Float>) {
        let rows = count / max(dim(-1), 1), st = stats.pointer, w = weight?.pointer, b = bias?.pointer
        parallelFor(rows, minPerThread: 16) { range in normalise(rows: range, stats: st, weight: w, bias: b, into: y) }
    }

    @inline(__always)
    private func normalise(rows range: Range<Int>, stats st: UnsafePointer<Float>, weight w: UnsafePointer<Float>?,
                           bias b: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        let d = dim(-1), x = pointer
        for r in range {
            let xr = x + r * d, yr = y + r * d, mean = st[2 * r], rstd = st[2 * r + 1]
            switch (w, b) {
            case let (w?, b?): for i in 0..<d { yr[i] = (xr[i] - mean) * rstd * w[i] + b[i] }
            case let (w?, nil): for i in 0..<d { yr[i] = (xr[i] - mean) * rstd * w[i] }
            case let (nil, b?): for i in 0..<d { yr[i] = (xr[i] - mean) * rstd + b[i] }
            case (nil, nil): for i in 0..<d { yr[i] = (xr[i] - mean) * rstd }
            }
        }
    }

    /// Accumulates the gradients of `self`, `weight` and `bias` from the norm's output
    /// gradient `gp`.
    private func layerNormBackward(_ gp: UnsafePointer<Float>, stats: Tensor, weight: Tensor?, bias: Tensor?) {
        let d = dim(-1), rows = count / max(d, 1), x = pointer, st = stats.pointer, w = weight?.pointer
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
                // dxhat = g·w; dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)). One
                // pass adds the row to the parameter gradients and makes the two row sums, 16
                // lanes at a time (explicit vectors: the sums do not vectorise by themselves).
                var sumD = SIMD16<Float>(repeating: 0), sumDX = SIMD16<Float>(repeating: 0)
                var i = 0
                while i + 16 <= d {
                    let g = SIMD16<Float>.load(gr + i), xh = (SIMD16<Float>.load(xr + i) - mean) * rstd
                    (SIMD16<Float>.load(dwp + i) + g * xh).store(dwp + i)
                    (SIMD16<Float>.load(dbp + i) + g).store(dbp + i)
                    let dxh = g * SIMD16<Float>.load(wp + i)
                    sumD += dxh
                    sumDX += dxh * xh
                    i += 16
                }
                var sd = sumD.sum(), sdx = sumDX.sum()
                while i < d {
                    let xh = (xr[i] - mean) * rstd, dxh = gr[i] * wp[i]
                    dwp[i] += gr[i] * xh
                    dbp[i] += gr[i]
                    sd += dxh
                    sdx += dxh * xh
                    i += 1
                }
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
