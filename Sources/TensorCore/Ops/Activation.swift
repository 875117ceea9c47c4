/// GELU (exact erf form) and softmax over the last dimension.
extension Tensor {
    /// x·Φ(x) = ½x(1 + erf(x/√2)).
    public func gelu() -> Tensor {
        let out = Tensor(uninitialized: shape)
        let x = pointer, y = out.pointer
        parallelFor(count, minPerThread: 1 << 15) { r in
            let base = r.lowerBound
            mapSIMD8(r.count) { i, lanes in
                let v = SIMD8<Float>.load(x + base + i, lanes)
                let phi = 0.5 * (1 + FastMath.erf(v * 0.70710678118654752))
                (v * phi).store(y + base + i, lanes)
            }
        }
        return out.recording("gelu", [self]) { g in
            let gp = g.pointer
            self.accumulateGrad { dx, beta in
                parallelFor(self.count, minPerThread: 1 << 15) { r in
                    let base = r.lowerBound
                    mapSIMD8(r.count) { i, lanes in
                        let v = SIMD8<Float>.load(x + base + i, lanes)
                        let phi = 0.5 * (1 + FastMath.erf(v * 0.70710678118654752))
                        let density = FastMath.exp(-0.5 * v * v) * 0.39894228040143268
                        var d = SIMD8<Float>.load(gp + base + i, lanes) * (phi + v * density)
                        if beta != 0 { d += SIMD8<Float>.load(dx + base + i, lanes) }
                        d.store(dx + base + i, lanes)
                    }
                }
            }
        }
    }

    /// Softmax over the last dimension.
    public func softmax() -> Tensor {
        let d = dim(-1), rows = count / max(d, 1)
        let out = Tensor(uninitialized: shape)
        let x = pointer, y = out.pointer
        parallelFor(rows, minPerThread: 8) { r in
            for row in r { softmaxRow(x + row * d, y + row * d, d) }
        }
        return out.recording("softmax", [self]) { g in
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

/// y = softmax(x) for one row; x and y may alias.
@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let m = simdMax(x, n)
    var acc = SIMD8<Float>(repeating: 0)
    mapSIMD8(n) { i, lanes in
        var e = FastMath.exp(SIMD8.load(x + i, lanes) - m)
        if lanes < 8 { for l in lanes..<8 { e[l] = 0 } }
        acc += e
        e.store(y + i, lanes)
    }
    let inv = 1 / acc.sum()
    mapSIMD8(n) { i, lanes in (SIMD8.load(y + i, lanes) * inv).store(y + i, lanes) }
}

/// dx = y ⊙ (g − Σ g⊙y), added to dx when beta is 1.
@inline(__always)
func softmaxBackwardRow(_ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                        _ n: Int, _ beta: Float) {
    let dot = simdDot(y, g, n)
    mapSIMD8(n) { i, lanes in
        var v = SIMD8.load(y + i, lanes) * (SIMD8.load(g + i, lanes) - dot)
        if beta != 0 { v += SIMD8.load(dx + i, lanes) }
        v.store(dx + i, lanes)
    }
}
