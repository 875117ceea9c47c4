/// Vectorisable float approximations. libm's `expf`/`erff` never vectorise (~22 ns an element
/// here); these run 8 or 16 lanes at a time in plain Swift. Accuracy is checked against libm in
/// tests.
///
/// They are scalar functions meant for plain loops over buffers: LLVM vectorises such loops
/// (8 lanes with AVX2, 16 in the AVX-512 build, see Package.swift), while hand-written SIMD8
/// code with tails was partly scalarised.
public enum FastMath {
    /// e^x, relative error ≲ 2e-7 on [-87, 88]; inputs above clamp to e^88, inputs below
    /// −87.34 give exactly 0 (their true values are denormal). Exact zeros make masked attention
    /// logits (−1e30, MixMAE) drop out by construction and keep denormals out of the GEMMs.
    @inlinable @inline(__always)
    public static func exp(_ input: Float) -> Float {
        let x = input > 88.3762626647949 ? 88.3762626647949 : (input < -87.3365478515625 ? -87.3365478515625 : input)
        // n = round(x / ln 2) through the 1.5·2^23 trick; the low mantissa bits of t hold n.
        let magic: Float = 12582912
        let t = x * 1.44269504088896341 + magic
        let n = t - magic
        let r = x - n * 0.693359375 + n * 2.12194440e-4  // Cody–Waite split of ln 2
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let y = p * (r * r) + r + 1
        let scaled = y * Float(bitPattern: (t.bitPattern &- magic.bitPattern &+ 127) &<< 23)
        return input < -87.3365478515625 ? 0 : scaled
    }

    /// erf(x) as a rational function (odd over even polynomial), absolute error ≲ 1e-7;
    /// |x| ≥ 4 is ±1 in float32.
    @inlinable @inline(__always)
    public static func erf(_ input: Float) -> Float {
        let x = input > 4 ? 4 : (input < -4 ? -4 : input)
        let x2 = x * x
        var p: Float = -2.72614225801306e-10
        p = p * x2 + 2.77068142495902e-08
        p = p * x2 + -2.10102402082508e-06
        p = p * x2 + -5.69250639462346e-05
        p = p * x2 + -7.34990630326855e-04
        p = p * x2 + -2.95459980854025e-03
        p = p * x2 + -1.60960333262415e-02
        var q: Float = -1.45660718464996e-05
        q = q * x2 + -2.13374055278905e-04
        q = q * x2 + -1.68282697438203e-03
        q = q * x2 + -7.37332916720468e-03
        q = q * x2 + -1.42647390514189e-02
        return p * x / q
    }

    /// Φ(x) = ½(1 + erf(x/√2)), the standard normal CDF.
    @inlinable @inline(__always)
    public static func normalCDF(_ x: Float) -> Float { 0.5 * (1 + erf(x * 0.70710678118654752)) }

    /// φ(x) = e^(−x²/2)/√(2π), the standard normal density.
    @inlinable @inline(__always)
    public static func normalPDF(_ x: Float) -> Float { exp(-0.5 * x * x) * 0.39894228040143268 }
}

extension SIMD8 where Scalar == Float {
    @inlinable @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ lanes: Int) -> SIMD8<Float> {
        if lanes == 8 { return UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
        var v = SIMD8<Float>(repeating: 0)
        for l in 0..<lanes { v[l] = p[l] }
        return v
    }

    @inlinable @inline(__always)
    func store(_ p: UnsafeMutablePointer<Float>, _ lanes: Int) {
        if lanes == 8 { UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD8<Float>.self); return }
        for l in 0..<lanes { p[l] = self[l] }
    }
}

extension SIMD16 where Scalar == Float {
    /// 16 floats from `p`, which need no alignment.
    @inlinable @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

    @inlinable @inline(__always)
    func store(_ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD16<Float>.self) }
}

/// Sum of `n` floats with 8 independent accumulators (reductions do not vectorise by themselves).
@inlinable
func simdSum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= n { acc += SIMD8.load(p + i, 8); i += 8 }
    var s = acc.sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

/// Dot product of two float runs.
@inlinable
func simdDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= n { acc += SIMD8.load(a + i, 8) * SIMD8.load(b + i, 8); i += 8 }
    var s = acc.sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

@inlinable
func simdMax(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>(repeating: -.infinity)
    var i = 0
    while i + 8 <= n {
        let v = SIMD8.load(p + i, 8)
        acc.replace(with: v, where: v .> acc)
        i += 8
    }
    var m = acc.max()
    while i < n { m = Swift.max(m, p[i]); i += 1 }
    return m
}
