/// Matrix products on OpenBLAS: `linear` (x·Wᵀ + b, PyTorch weight layout) and `matmul`
/// (all transpose cases, batched).
extension Tensor {
    /// y = x · Wᵀ + b for x (…, in), weight (out, in), bias (out) → (…, out). With `residual`
    /// (the output's shape), y = residual + (x · Wᵀ + b), added in place as each block of the
    /// product is done: a residual branch's last product then never exists as a tensor of its
    /// own, which the sum would keep alive for the backward pass (one float per token and
    /// channel, twice per transformer block). The same values as `residual + linear(…)`, bit
    /// for bit.
    public func linear(weight: Tensor, bias: Tensor? = nil, adding residual: Tensor? = nil) -> Tensor {
        Profiler.measure(.gemm, .forward) {
            precondition(weight.rank == 2, "linear weight must be (out, in), got \(weight.shape)")
            let inF = weight.shape[1], outF = weight.shape[0]
            precondition(dim(-1) == inF, "linear: input \(shape) does not end in \(inF)")
            if let bias { precondition(bias.shape == [outF], "linear bias \(bias.shape) ≠ [\(outF)]") }
            let rows = count / max(inF, 1)
            let outShape = Array(shape.dropLast()) + [outF]
            if let residual { precondition(residual.shape == outShape, "linear: residual \(residual.shape) ≠ output \(outShape)") }
            let products = LinearProducts(weight: weight, bias: bias, rows: rows)
            let out = Tensor(uninitialized: outShape)
            products.forward(pointer, into: out.pointer)
            if let residual { out.addInPlace(residual) }
            let residualVertex = residual?.vertex  // its values are not read again
            return out.recording("linear", .gemm, [self, weight] + (bias.map { [$0] } ?? []) + (residual.map { [$0] } ?? [])) { g in
                // The residual's gradient first, where the separate sum's backward gave it.
                if let residualVertex, residualVertex.requiresGrad { passGradient(g, to: residualVertex, writing: [self, weight, bias]) }
                let dy = products.gradient(g)
                if self.requiresGrad {
                    self.accumulateGrad { dx, beta in products.inputGradient(dy, into: dx, beta: beta) }
                }
                products.parameterGradients(dy, input: self.pointer)
            }
        }
    }

    /// `gelu().linear(weight:bias:)`, the second half of an MLP, without keeping the GELU's
    /// output for the backward pass: only `self` (the hidden layer before GELU) is kept, and the
    /// backward makes GELU(self) again for the weight gradient. That drops a quarter of what a
    /// transformer block keeps for its backward (4 of 16 floats per token and channel at MLP
    /// ratio 4) for one more pass of GELU over the hidden layer. The results are those of
    /// `gelu().linear(…)`, bit for bit: the same kernels on the same values, in fp32 and in bf16
    /// (`LinearProducts`). `residual` as in `linear`.
    public func geluLinear(weight: Tensor, bias: Tensor? = nil, adding residual: Tensor? = nil) -> Tensor {
        precondition(weight.rank == 2, "linear weight must be (out, in), got \(weight.shape)")
        let inF = weight.shape[1], outF = weight.shape[0]
        precondition(dim(-1) == inF, "linear: input \(shape) does not end in \(inF)")
        if let bias { precondition(bias.shape == [outF], "linear bias \(bias.shape) ≠ [\(outF)]") }
        let outShape = Array(shape.dropLast()) + [outF]
        if let residual { precondition(residual.shape == outShape, "linear: residual \(residual.shape) ≠ output \(outShape)") }
        let rows = count / max(inF, 1), n = count, x = pointer
        let products = LinearProducts(weight: weight, bias: bias, rows: rows)
        let out = Tensor(uninitialized: outShape)
        if products.bf16 {
            // The product reads GELU(x) rounded: made a piece at a time into the bf16 operand,
            // with no fp32 GELU(x) beside x (a recomputed Swin-B block's forward peaked there).
            let rounded = Profiler.measure(.activation, .forward) { roundedGELU(x, rows: rows, cols: inF) }
            Profiler.measure(.gemm, .forward) { products.forward(rounded: rounded, into: out.pointer) }
        } else {
            let activated = Profiler.measure(.activation, .forward) {
                let a = Tensor(uninitialized: shape), y = a.pointer
                parallelFor(n, minPerThread: 1 << 15) { r in geluValues(r, x: x, into: y + r.lowerBound) }
                return a
            }
            Profiler.measure(.gemm, .forward) { products.forward(activated.pointer, into: out.pointer) }
        }
        if let residual { Profiler.measure(.elementwise, .forward) { out.addInPlace(residual) } }
        let residualVertex = residual?.vertex  // its values are not read again
        return out.recording("gelu+linear", nil, [self, weight] + (bias.map { [$0] } ?? []) + (residual.map { [$0] } ?? [])) { g in
            if let residualVertex, residualVertex.requiresGrad {
                Profiler.measure(.elementwise, .backward) { passGradient(g, to: residualVertex, writing: [self, weight, bias]) }
            }
            let dy = Profiler.measure(.gemm, .backward) { products.gradient(g) }
            // dW = dYᵀ·GELU(x) first, with GELU(x) made again and dropped before dA = dY·W exists,
            // so the two are never held together: a block's backward then peaks lower by the
            // activation (in bf16 its rounded copy, made a piece at a time with no fp32 copy: the
            // same bits as rounding it whole), for one more pass of GELU over x.
            if weight.requiresGrad && products.bf16 {
                let rounded = Profiler.measure(.activation, .backward) { roundedGELU(x, rows: rows, cols: inF) }
                Profiler.measure(.gemm, .backward) { products.parameterGradients(dy, roundedInput: rounded) }
            } else if weight.requiresGrad {
                let a = Tensor(uninitialized: self.shape)
                withExtendedLifetime(a) {
                    let ap = a.pointer
                    Profiler.measure(.activation, .backward) {
                        parallelFor(n, minPerThread: 1 << 15) { r in geluValues(r, x: x, into: ap + r.lowerBound) }
                    }
                    Profiler.measure(.gemm, .backward) { products.parameterGradients(dy, input: ap) }
                }
            } else {
                Profiler.measure(.gemm, .backward) { products.parameterGradients(dy, input: nil) }
            }
            // dX = dA ⊙ GELU′(x), with dA = dY·W turned into dX in place, or added to an earlier gradient.
            guard self.requiresGrad else { return }
            let dA = Tensor(uninitialized: self.shape), da = dA.pointer, earlier = self.grad?.pointer
            Profiler.measure(.gemm, .backward) { products.inputGradient(dy, into: da, beta: 0) }
            Profiler.measure(.activation, .backward) {
                parallelFor(n, minPerThread: 1 << 15) { r in geluGradient(r, x: x, da: da, earlier: earlier) }
            }
            if self.grad == nil { self.grad = dA }
        }
    }

    /// op(A) · op(B) for 2-D operands, or batched over a leading dimension: A (batch, ·, ·)
    /// with B either (batch, ·, ·) or 2-D and shared by every batch entry.
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        Profiler.measure(.gemm, .forward) {
            precondition(a.rank == 2 || a.rank == 3, "matmul: A must be 2-D or 3-D, got \(a.shape)")
            precondition(b.rank == 2 || b.rank == 3, "matmul: B must be 2-D or 3-D, got \(b.shape)")
            let batch = a.rank == 3 ? a.shape[0] : 1
            precondition(b.rank == 2 || (a.rank == 3 && b.shape[0] == batch), "matmul batch mismatch \(a.shape) · \(b.shape)")
            let (ar, ac) = (a.dim(-2), a.dim(-1)), (br, bc) = (b.dim(-2), b.dim(-1))
            let m = transposeA ? ac : ar, k = transposeA ? ar : ac
            let kb = transposeB ? bc : br, n = transposeB ? br : bc
            precondition(k == kb, "matmul inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
            let aStride = ar * ac, bStride = b.rank == 3 ? br * bc : 0, cStride = m * n
            let out = Tensor(uninitialized: a.rank == 3 ? [batch, m, n] : [m, n])
            for i in 0..<batch {
                gemm(transA: transposeA, transB: transposeB, m: m, n: n, k: k,
                     a: a.pointer + i * aStride, lda: ac, b: b.pointer + i * bStride, ldb: bc,
                     c: out.pointer + i * cStride, ldc: n)
            }
            return out.recording("matmul", .gemm, [a, b]) { g in
                let gp = g.pointer
                if a.requiresGrad {
                    a.accumulateGrad { da, beta in
                        for i in 0..<batch {
                            let gi = gp + i * cStride, bi = b.pointer + i * bStride, dai = da + i * aStride
                            if !transposeA {  // dA = dC · op(B)ᵀ
                                gemm(transA: false, transB: !transposeB, m: m, n: k, k: n, a: gi, lda: n,
                                     b: bi, ldb: bc, beta: beta, c: dai, ldc: ac)
                            } else {          // dA = op(B) · dCᵀ
                                gemm(transA: transposeB, transB: true, m: k, n: m, k: n, a: bi, lda: bc,
                                     b: gi, ldb: n, beta: beta, c: dai, ldc: ac)
                            }
                        }
                    }
                }
                if b.requiresGrad {
                    b.accumulateGrad { db, beta in
                        for i in 0..<batch {
                            let gi = gp + i * cStride, ai = a.pointer + i * aStride, dbi = db + i * bStride
                            // A shared 2-D B sums its gradient over the batch.
                            let betaI: Float = (bStride == 0 && i > 0) ? 1 : beta
                            if !transposeB {  // dB = op(A)ᵀ · dC
                                gemm(transA: !transposeA, transB: false, m: k, n: n, k: m, a: ai, lda: ac,
                                     b: gi, ldb: n, beta: betaI, c: dbi, ldc: bc)
                            } else {          // dB = dCᵀ · op(A)
                                gemm(transA: true, transB: transposeA, m: n, n: k, k: m, a: gi, lda: n,
                                     b: ai, ldb: ac, beta: betaI, c: dbi, ldc: bc)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A product's output gradient `g` to the residual added inside it: handed over (`Vertex.take`)
/// unless the residual is also one of the tensors whose gradients the product then writes.
private func passGradient(_ g: Tensor, to residual: Vertex, writing others: [Tensor?]) {
    if others.contains(where: { $0?.vertex === residual }) {
        residual.accumulateReduced(g, scale: 1)
    } else {
        residual.take(g)
    }
}

/// dst[c] = beta·dst[c] + Σ_r src[r, c], parallel over column blocks.
func columnSums(_ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>, beta: Float) {
    parallelFor(cols, minPerThread: 64) { cr in
        if beta == 0 { for c in cr { dst[c] = 0 } }
        for r in 0..<rows {
            let row = src + r * cols
            for c in cr { dst[c] += row[c] }
        }
    }
}

/// The three products of a linear layer, y = x·Wᵀ + b over `rows` rows, in the precision its
/// forward pass ran in: fp32, or bf16 operands with fp32 sums when GEMMs run in bf16 (`BF16`),
/// decided once at the forward pass. In bf16 the weight is read from the optimizer's bf16 copy
/// when it keeps one (the weight cannot change before the backward pass has read it: an update
/// waits for every use's backward), the bias is added inside the forward GEMM as in fp32, and
/// the output gradient is rounded once for both backward products. Every op built on a linear
/// layer (`linear`, `geluLinear`, `layerNormLinear`) computes through it, so each keeps in bf16
/// just what it keeps in fp32.
struct LinearProducts {
    let weight: Tensor
    let bias: Tensor?
    let rows: Int, inF: Int, outF: Int
    let bf16: Bool

    init(weight: Tensor, bias: Tensor?, rows: Int) {
        self.weight = weight
        self.bias = bias
        self.rows = rows
        inF = weight.shape[1]
        outF = weight.shape[0]
        bf16 = BF16.isOn && rows > 0 && inF > 0 && outF > 0
    }

    /// The weight as the bf16 products read it.
    private func roundedWeight() -> BF16Matrix {
        if let copy = weight.bf16Copy {
            precondition(copy.rows == outF && copy.cols == inF, "bf16 copy \(copy.rows)×\(copy.cols) of a \(weight.shape) weight")
            return copy
        }
        return BF16Matrix(weight.pointer, rows: outF, cols: inF)
    }

    /// y = x·Wᵀ + b for the rows × inF input at `x`.
    func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        if bf16 {
            forward(rounded: BF16Matrix(x, rows: rows, cols: inF), into: y)
        } else {
            gemm(transA: false, transB: true, m: rows, n: outF, k: inF, a: x, lda: inF,
                 b: weight.pointer, ldb: inF, bias: bias?.pointer, c: y, ldc: outF)
        }
    }

    /// As `forward(_:into:)` in bf16, with the input already rounded (`rows` × `inF`).
    func forward(rounded x: BF16Matrix, into y: UnsafeMutablePointer<Float>) {
        precondition(bf16 && x.rows == rows && x.cols == inF, "a rounded input is for a bf16 product of its shape")
        gemm(transA: false, transB: true, a: x, b: roundedWeight(), bias: bias?.pointer, c: y, ldc: outF)
    }

    /// The output gradient dY as both backward products read it (rounded once in bf16).
    struct Gradient {
        let values: Tensor
        let rounded: BF16Matrix?
    }

    func gradient(_ g: Tensor) -> Gradient {
        Gradient(values: g, rounded: bf16 ? BF16Matrix(g.pointer, rows: rows, cols: outF) : nil)
    }

    /// dX = dY·W into `dx`, or added to it with beta 1.
    func inputGradient(_ dy: Gradient, into dx: UnsafeMutablePointer<Float>, beta: Float) {
        if let gb = dy.rounded {
            gemm(transA: false, transB: false, a: gb, b: roundedWeight(), beta: beta, c: dx, ldc: inF)
        } else {
            gemm(transA: false, transB: false, m: rows, n: inF, k: outF, a: dy.values.pointer, lda: outF,
                 b: weight.pointer, ldb: inF, beta: beta, c: dx, ldc: inF)
        }
    }

    /// dW += dYᵀ·x and db += Σ dY, for those of the two that require a gradient. `x` is the
    /// layer's input, needed only when the weight requires one.
    func parameterGradients(_ dy: Gradient, input x: UnsafePointer<Float>?) {
        parameterGradients(dy, input: x, rounded: nil)
    }

    /// As `parameterGradients(_:input:)` in bf16, with the input already rounded (`rows` × `inF`),
    /// as the rounding of those values would make it.
    func parameterGradients(_ dy: Gradient, roundedInput: BF16Matrix) {
        precondition(bf16 && roundedInput.rows == rows && roundedInput.cols == inF, "a rounded input is for a bf16 product of its shape")
        parameterGradients(dy, input: nil, rounded: roundedInput)
    }

    private func parameterGradients(_ dy: Gradient, input x: UnsafePointer<Float>?, rounded: BF16Matrix?) {
        if weight.requiresGrad {
            if let gb = dy.rounded {
                guard let xb = rounded ?? x.map({ BF16Matrix($0, rows: rows, cols: inF) }) else {
                    preconditionFailure("the weight gradient of a linear layer needs its input")
                }
                weight.accumulateGrad { dw, beta in gemm(transA: true, transB: false, a: gb, b: xb, beta: beta, c: dw, ldc: inF) }
            } else {
                guard let x else { preconditionFailure("the weight gradient of a linear layer needs its input") }
                let gp = dy.values.pointer
                weight.accumulateGrad { dw, beta in
                    gemm(transA: true, transB: false, m: outF, n: inF, k: rows, a: gp, lda: outF,
                         b: x, ldb: inF, beta: beta, c: dw, ldc: inF)
                }
            }
        }
        if let bias, bias.requiresGrad {
            let gp = dy.values.pointer
            bias.accumulateGrad { db, beta in columnSums(gp, rows: rows, cols: outF, into: db, beta: beta) }
        }
    }
}

// `geluLinear`'s backward passes over elements `r` of its input `x`. Their loops must vectorise
// (scalar, GELU's backward took a tenth of a ViT-B step): each runs over offsets from pointers
// moved to the range's start, since a checked index subtraction in a loop body keeps LLVM from
// vectorising it, and the in-place loop names one pointer, since with two that alias the
// vectorised loop's overlap check fails and every element runs scalar.

/// GELU of the rows × cols values at `x`, rounded to bf16 a piece at a time: the same bits as
/// rounding an fp32 GELU(x), without one.
private func roundedGELU(_ x: UnsafePointer<Float>, rows: Int, cols: Int) -> BF16Matrix {
    let rounded = BF16Matrix(uninitializedRows: rows, cols: cols)
    parallelFor(rows * cols, minPerThread: 1 << 15) { r in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 4096) { piece in
            var lo = r.lowerBound
            while lo < r.upperBound {
                let part = lo..<min(lo + piece.count, r.upperBound)
                geluValues(part, x: x, into: piece.baseAddress!)
                rounded.round(piece.baseAddress!, into: part)
                lo = part.upperBound
            }
        }
    }
    return rounded
}

/// GELU(x[i]) into `out[i - r.lowerBound]`, as `gelu` makes it.
private func geluValues(_ r: Range<Int>, x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
    let x = x + r.lowerBound
    for i in 0..<r.count { out[i] = x[i] * FastMath.normalCDF(x[i]) }
}

/// dX = dA ⊙ GELU′(x): added to `earlier` when there is an earlier gradient, else written over
/// dA in place. d/dx x·Φ(x) = Φ(x) + x·φ(x), as `gelu`'s backward writes it.
private func geluGradient(_ r: Range<Int>, x: UnsafePointer<Float>, da: UnsafeMutablePointer<Float>,
                          earlier: UnsafeMutablePointer<Float>?) {
    let x = x + r.lowerBound, da = da + r.lowerBound
    if let dx = earlier.map({ $0 + r.lowerBound }) {
        for i in 0..<r.count { dx[i] += da[i] * (FastMath.normalCDF(x[i]) + x[i] * FastMath.normalPDF(x[i])) }
    } else {
        for i in 0..<r.count { da[i] = da[i] * (FastMath.normalCDF(x[i]) + x[i] * FastMath.normalPDF(x[i])) }
    }
}
