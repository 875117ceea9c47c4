/// Broadcasting binary ops (+, −, ×) and scalar ops, with their backward.
extension Tensor {
    enum BinaryKind { case add, sub, mul }

    static func binary(_ a: Tensor, _ b: Tensor, _ kind: BinaryKind) -> Tensor {
        Profiler.measure(.elementwise, .forward) {
            let outShape = a.shape == b.shape ? a.shape : Broadcast.shape(a.shape, b.shape)
            let out = Tensor(uninitialized: outShape)
            let o = out.pointer, pa = a.pointer, pb = b.pointer
            if a.shape == b.shape {
                let n = out.count
                parallelFor(n, minPerThread: 1 << 16) { r in
                    switch kind {
                    case .add: for i in r { o[i] = pa[i] + pb[i] }
                    case .sub: for i in r { o[i] = pa[i] - pb[i] }
                    case .mul: for i in r { o[i] = pa[i] * pb[i] }
                    }
                }
            } else {
                let sa = Broadcast.strides(of: a.shape, in: outShape)
                let sb = Broadcast.strides(of: b.shape, in: outShape)
                Broadcast.forEachRun(outShape, [sa, sb]) { off, offs, n, inner in
                    let x = pa + offs[0], y = pb + offs[1], z = o + off
                    let ia = inner[0], ib = inner[1]
                    switch kind {
                    case .add: for i in 0..<n { z[i] = x[i * ia] + y[i * ib] }
                    case .sub: for i in 0..<n { z[i] = x[i * ia] - y[i * ib] }
                    case .mul: for i in 0..<n { z[i] = x[i * ia] * y[i * ib] }
                    }
                }
            }
            // Each side's gradient reads the other side's values only for a product: a sum or
            // a difference keeps neither operand alive, a product only what the other needs.
            let (va, vb) = (a.vertex, b.vertex)
            // a's gradient can be g itself (`Vertex.take`): g is only read after that, unless b is a too.
            let aTakesG = a.shape == outShape && va !== vb
            let (aValues, bValues) = kind == .mul ? (b.requiresGrad ? a : nil, a.requiresGrad ? b : nil) : (nil, nil)
            return out.recording("binary", .elementwise, [a, b]) { g in
                if va.requiresGrad {
                    switch kind {
                    case .add, .sub: if aTakesG { va.take(g) } else { va.accumulateReduced(g, scale: 1) }
                    case .mul: va.accumulateProduct(g, bValues!)
                    }
                }
                if vb.requiresGrad {
                    switch kind {
                    case .add: vb.accumulateReduced(g, scale: 1)
                    case .sub: vb.accumulateReduced(g, scale: -1)
                    case .mul: vb.accumulateProduct(g, aValues!)
                    }
                }
            }
        }
    }

    /// self += other (same shape), in place, off the tape: the residual sum inside `linear` and
    /// `geluLinear`, the same additions as `binary(_:_:.add)`'s.
    func addInPlace(_ other: Tensor) {
        precondition(other.shape == shape, "addInPlace: \(other.shape) ≠ \(shape)")
        let n = count, o = pointer, src = other.pointer
        withExtendedLifetime(other) {
            parallelFor(n, minPerThread: 1 << 16) { r in
                for i in r { o[i] = o[i] + src[i] }
            }
        }
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .add) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .sub) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .mul) }

    /// `self · s + t`, elementwise with scalars.
    public func affine(scale s: Float, shift t: Float = 0) -> Tensor {
        Profiler.measure(.elementwise, .forward) {
            let out = Tensor(uninitialized: shape)
            let x = pointer, y = out.pointer
            for i in 0..<count { y[i] = x[i] * s + t }
            let v = vertex
            return out.recording("affine", .elementwise, [self]) { g in
                v.accumulateReduced(g, scale: s)
            }
        }
    }

    public static func * (a: Tensor, s: Float) -> Tensor { a.affine(scale: s) }
    public static func + (a: Tensor, s: Float) -> Tensor { a.affine(scale: 1, shift: s) }

    /// max(x, 0).
    public func relu() -> Tensor {
        Profiler.measure(.activation, .forward) {
            let out = Tensor(uninitialized: shape)
            let x = pointer, y = out.pointer
            for i in 0..<count { y[i] = x[i] > 0 ? x[i] : 0 }
            return out.recording("relu", .activation, [self]) { g in
                self.accumulateGrad { dx, beta in
                    let gp = g.pointer
                    for i in 0..<self.count { let v = x[i] > 0 ? gp[i] : 0; dx[i] = beta == 0 ? v : dx[i] + v }
                }
            }
        }
    }

    /// The same elements with another shape (no copy).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Profiler.measure(.memory, .forward) {
            var newShape = newShape
            if let hole = newShape.firstIndex(of: -1) {
                let known = newShape.enumerated().filter { $0.offset != hole }.map(\.element).reduce(1, *)
                precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
                newShape[hole] = count / known
            }
            precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) (\(count)) to \(newShape)")
            let out = Tensor(sharing: self, shape: newShape)
            let v = vertex
            return out.recording("reshape", .memory, [self]) { g in
                v.take(g)
            }
        }
    }
}

extension Vertex {
    /// Adds g ⊙ other (broadcast), summed over the dimensions along which this tensor was
    /// broadcast: a product's gradient. The product is a new tensor, so it is handed over.
    func accumulateProduct(_ g: Tensor, _ other: Tensor) {
        let product = Tensor.binary(g.detached(), other.detached(), .mul)
        if product.shape == shape { take(product) } else { accumulateReduced(product, scale: 1) }
    }

    /// Adds `scale · g`, summed over the dimensions along which this tensor was broadcast.
    func accumulateReduced(_ g: Tensor, scale: Float) {
        accumulateGrad { dst, beta in
            if g.shape == shape {
                let n = count, src = g.pointer
                if beta == 0 {
                    for i in 0..<n { dst[i] = scale * src[i] }
                } else {
                    for i in 0..<n { dst[i] += scale * src[i] }
                }
            } else if scale == 1 {
                Broadcast.reduce(g.pointer, from: g.shape, into: dst, to: shape, beta: beta)
            } else {
                let tmp = Tensor(uninitialized: shape)
                Broadcast.reduce(g.pointer, from: g.shape, into: tmp.pointer, to: shape, beta: 0)
                for i in 0..<count { let v = scale * tmp.pointer[i]; dst[i] = beta == 0 ? v : dst[i] + v }
            }
        }
    }
}
