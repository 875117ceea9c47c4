/// Sums and means over axes.
extension Tensor {
    /// Sum over `axes` (all when empty); the reduced dimensions are dropped unless `keepDims`.
    public func sum(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        Profiler.measure(.elementwise, .forward) {
            let axes = normalizedAxes(axes)
            var kept = shape
            for a in axes { kept[a] = 1 }
            let outShape = keepDims ? kept : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
            let out = Tensor(uninitialized: outShape)
            Broadcast.reduce(pointer, from: shape, into: out.pointer, to: kept, beta: 0)
            let v = vertex
            return out.recording("sum", .elementwise, [self]) { g in
                // Broadcast g (seen with kept dims) back over the input shape.
                v.accumulateGrad { dx, beta in
                    let src = g.pointer
                    let strides = Broadcast.strides(of: kept, in: v.shape)
                    Broadcast.forEachRun(v.shape, [strides]) { o, offs, n, inner in
                        for i in 0..<n {
                            let v = src[offs[0] + i * inner[0]]
                            dx[o + i] = beta == 0 ? v : dx[o + i] + v
                        }
                    }
                }
            }
        }
    }

    /// Mean over `axes` (all when empty).
    public func mean(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let axes = normalizedAxes(axes)
        let n = axes.map { shape[$0] }.reduce(1, *)
        return sum(axes: axes, keepDims: keepDims) * (1 / Float(max(n, 1)))
    }

    func normalizedAxes(_ axes: [Int]) -> [Int] {
        if axes.isEmpty { return Array(0..<rank) }
        return axes.map { a in
            let r = a < 0 ? a + rank : a
            precondition(r >= 0 && r < rank, "axis \(a) out of range for shape \(shape)")
            return r
        }
    }
}
