/// GELU (exact erf form) and softmax over the last dimension.
extension Tensor {
    /// x·Φ(x) = ½x(1 + erf(x/√2)).
    public func gelu() -> Tensor {
        Profiler.measure(.activation, .forward) {
            let out = Tensor(uninitialized: shape)
            let x = pointer, y = out.pointer
            parallelFor(count, minPerThread: 1 << 15) { r in
                for i in r { y[i] = x[i] * FastMath.normalCDF(x[i]) }
            }
            return out.recording("gelu", .activation, [self]) { g in
                let gp = g.pointer
                self.accumulateGrad { dx, beta in
                    parallelFor(self.count, minPerThread: 1 << 15) { r in
                        // d/dx x·Φ(x) = Φ(x) + x·φ(x)
                        if beta == 0 {
                            for i in r { dx[i] = gp[i] * (FastMath.normalCDF(x[i]) + x[i] * FastMath.normalPDF(x[i])) }
                        } else {
                            for i in r { dx[i] += gp[i] * (FastMath.normalCDF(x[i]) + x[i] * FastMath.normalPDF(x[i])) }
                        }
                    }
                }
            }
        }
    }

    /// Softmax over the last dimension.
    public func softmax() -> Tensor {
        Profiler.measure(.attention, .forward) {
            let d = dim(-1), rows = count / max(d, 1)
            let out = Tensor(uninitialized: shape)
            let x = pointer, y = out.pointer
            parallelFor(rows, minPerThread: 8) { r in
                for row in r { softmaxRow(x + row * d, y + row * d, d) }
            }
            return out.recording("softmax", .attention, [self]) { g in
                let gp = g.pointer
                self.accumulateGrad { dx, beta in
                    parallelFor(rows, minPerThread: 8) { r in
                        for row in r {
                            softmaxBackwardRow(y + row * d, gp + row * d, dx + row * d, d, beta)
                        }
                    }
                }
            }
        }
    }
}

/// y = softmax(x) for one row; x and y may alias.
@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let m = simdMax(x, n)
    for i in 0..<n { y[i] = FastMath.exp(x[i] - m) }
    let inv = 1 / simdSum(y, n)
    for i in 0..<n { y[i] *= inv }
}

/// Softmax over each row of the L×L block at `p`, in place, after adding `bias` and then `mask`
/// (each L×L, either may be nil): attention's scores for one head. Each row is shifted by its
/// maximum first so that exp then runs over the whole block in one loop; a loop per row spends
/// much of its time in the scalar tail when rows are short (Swin's windows have 36 tokens).
/// The same values as `softmaxRow` on each row. With `stats`, each row's maximum and the
/// reciprocal of its sum are kept there (2·L floats), so `softmaxBlockReplay` can make the
/// same probabilities again from the same scores.
@inline(__always)
func softmaxBlock(_ p: UnsafeMutablePointer<Float>, _ L: Int, bias: UnsafePointer<Float>?, mask: UnsafePointer<Float>?,
                  stats: UnsafeMutablePointer<Float>? = nil) {
    addScoreTerms(p, L, bias: bias, mask: mask)
    for r in 0..<L {
        let row = p + r * L, m = simdMax(row, L)
        stats?[2 * r] = m
        for i in 0..<L { row[i] -= m }
    }
    let LL = L * L
    for i in 0..<LL { p[i] = FastMath.exp(p[i]) }
    for r in 0..<L {
        let row = p + r * L, inv = 1 / simdSum(row, L)
        stats?[2 * r + 1] = inv
        for i in 0..<L { row[i] *= inv }
    }
}

/// `softmaxBlock` again on the same scores, from the row maxima and reciprocal sums it kept in
/// `stats`: the same operations in the same order, so the same probabilities, bit for bit.
@inline(__always)
func softmaxBlockReplay(_ p: UnsafeMutablePointer<Float>, _ L: Int, bias: UnsafePointer<Float>?, mask: UnsafePointer<Float>?,
                        stats: UnsafePointer<Float>) {
    addScoreTerms(p, L, bias: bias, mask: mask)
    for r in 0..<L {
        let row = p + r * L, m = stats[2 * r]
        for i in 0..<L { row[i] -= m }
    }
    let LL = L * L
    for i in 0..<LL { p[i] = FastMath.exp(p[i]) }
    for r in 0..<L {
        let row = p + r * L, inv = stats[2 * r + 1]
        for i in 0..<L { row[i] *= inv }
    }
}

/// Adds `bias` and then `mask` (each L×L, either may be nil) to the L×L scores at `p`.
@inline(__always)
private func addScoreTerms(_ p: UnsafeMutablePointer<Float>, _ L: Int, bias: UnsafePointer<Float>?, mask: UnsafePointer<Float>?) {
    let LL = L * L
    switch (bias, mask) {
    case let (b?, m?): for i in 0..<LL { p[i] = p[i] + b[i] + m[i] }
    case let (b?, nil): for i in 0..<LL { p[i] += b[i] }
    case let (nil, m?): for i in 0..<LL { p[i] += m[i] }
    case (nil, nil): break
    }
}

/// dx = y ⊙ (g − Σ g⊙y), added to dx when beta is 1.
@inline(__always)
func softmaxBackwardRow(_ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                        _ n: Int, _ beta: Float) {
    let dot = simdDot(y, g, n)
    if beta == 0 {
        for i in 0..<n { dx[i] = y[i] * (g[i] - dot) }
    } else {
        for i in 0..<n { dx[i] += y[i] * (g[i] - dot) }
    }
}
