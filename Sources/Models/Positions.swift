import TensorCore

/// Fixed 2-D sin-cos position table (docs/methods/common.md, B2): for the token at (row y, col x) the
/// vector is [sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)], ω_k = 10000^(−k/d), d = D/4.
/// The column part comes first. Computed in Double, stored as Float.
public enum SinCos {
    /// (1, [1 +] G·G, D); the optional class row is zeros.
    public static func table2D(dim: Int, grid: Int, classToken: Bool) -> Tensor {
        precondition(dim % 4 == 0, "sin-cos table width \(dim) must be divisible by 4")
        let d = dim / 4, offset = classToken ? 1 : 0
        let t = Tensor(zeros: [1, grid * grid + offset, dim])
        let omega = (0..<d).map { Foundation_pow(10000, -Double($0) / Double(d)) }
        for y in 0..<grid {
            for x in 0..<grid {
                let row = t.pointer + (offset + y * grid + x) * dim
                for k in 0..<d {
                    let ax = Double(x) * omega[k], ay = Double(y) * omega[k]
                    row[k] = Float(Foundation_sin(ax))
                    row[d + k] = Float(Foundation_cos(ax))
                    row[2 * d + k] = Float(Foundation_sin(ay))
                    row[3 * d + k] = Float(Foundation_cos(ay))
                }
            }
        }
        return t
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@inline(__always) func Foundation_pow(_ a: Double, _ b: Double) -> Double { pow(a, b) }
@inline(__always) func Foundation_sin(_ a: Double) -> Double { sin(a) }
@inline(__always) func Foundation_cos(_ a: Double) -> Double { cos(a) }
@inline(__always) func Foundation_log1p(_ a: Double) -> Double { log1p(a) }
