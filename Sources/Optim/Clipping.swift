import TensorCore

/// Clips gradients by their global L2 norm as `torch.nn.utils.clip_grad_norm_` does: the norm
/// is taken over every gradient as one vector, and when `maxNorm / (norm + 1e-6) < 1` every
/// gradient is multiplied by that factor (so the result has norm just under `maxNorm`).
/// Tensors without a gradient are ignored. Returns the norm before clipping, which is NaN or
/// infinite when a gradient is (nothing is scaled then; check `gradientsAreFinite` to skip
/// the step).
@discardableResult
public func clipGradNorm(_ params: [Tensor], maxNorm: Float) -> Float {
    Profiler.measure(.optimizer, .update) {
        precondition(maxNorm > 0, "maxNorm must be positive, got \(maxNorm)")
        let norm = gradientNorm(params)
        guard norm.isFinite else { return Float(norm) }
        let coefficient = clipCoefficient(norm: norm, maxNorm: maxNorm)
        if coefficient < 1 {
            for g in params.compactMap(\.grad) {
                let p = g.pointer
                var i = 0
                while i + 8 <= g.count { store8(load8(p + i) * coefficient, p + i); i += 8 }
                while i < g.count { p[i] *= coefficient; i += 1 }
            }
        }
        return Float(norm)
    }
}

/// What `clipGradNorm` multiplies every gradient by when it is below 1.
func clipCoefficient(norm: Double, maxNorm: Float) -> Float {
    precondition(maxNorm > 0, "maxNorm must be positive, got \(maxNorm)")
    return Float(Double(maxNorm) / (norm + 1e-6))
}

/// The L2 norm of every gradient as one vector (tensors without one are ignored), squares
/// summed in Double: NaN or infinite exactly when a gradient holds a NaN or an infinity (the
/// square of a finite float cannot overflow a Double). Each gradient is cut into fixed blocks
/// summed in parallel and then in order, so the value does not depend on the thread count.
func gradientNorm(_ params: [Tensor]) -> Double {
    let block = 1 << 16
    var total: Double = 0
    for g in params.compactMap(\.grad) {
        let blocks = (g.count + block - 1) / block
        var partial = [Double](repeating: 0, count: blocks)
        partial.withUnsafeMutableBufferPointer { out in
            let out = out.baseAddress!, p = g.pointer
            parallelFor(blocks, minPerThread: 4) { range in
                for b in range {
                    let lo = b * block
                    out[b] = squaredNorm(p + lo, min(block, g.count - lo))
                }
            }
        }
        for s in partial { total += s }
    }
    return total.squareRoot()
}

/// False when any gradient holds a NaN or an infinity (tensors without a gradient are ignored).
public func gradientsAreFinite(_ params: [Tensor]) -> Bool {
    Profiler.measure(.optimizer, .update) {
        for t in params {
            guard let g = t.grad else { continue }
            // x − x is 0 for finite x and NaN for ±inf and NaN; NaN survives the sum.
            let p = g.pointer
            var acc = SIMD8<Float>(repeating: 0)
            var i = 0
            while i + 8 <= g.count { let x = load8(p + i); acc += x - x; i += 8 }
            var tail: Float = 0
            while i < g.count { tail += p[i] - p[i]; i += 1 }
            if acc.sum() + tail != 0 { return false }
        }
        return true
    }
}

/// Σ x² of `n` floats, squares taken and summed in Double eight lanes at a time.
private func squaredNorm(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
    var acc = SIMD8<Double>(repeating: 0)
    var i = 0
    while i + 8 <= n {
        let x = SIMD8<Double>(load8(p + i))
        acc += x * x
        i += 8
    }
    var s = acc.sum()
    while i < n { s += Double(p[i]) * Double(p[i]); i += 1 }
    return s
}
