import CDNNL
import COpenBLAS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Counts floating-point operations done by GEMM, attention and convolution so benchmarks can
/// report achieved GFLOP/s. One multiply-add counts as 2.
public enum FLOPCounter {
    private static let total = Atomic<Int>(0)

    @inlinable public static func add(_ flops: Int) { _add(flops) }
    @usableFromInline static func _add(_ flops: Int) { total.add(flops, ordering: .relaxed) }
    public static var value: Int { total.load(ordering: .relaxed) }
    public static func reset() { total.store(0, ordering: .relaxed) }
}

/// Row-major single-precision GEMM: C = alpha · op(A) · op(B) + bias + beta · C, with op(A)
/// M×K and op(B) K×N. `lda`, `ldb`, `ldc` are row strides, so strided sub-matrices (a head
/// inside a fused qkv row) need no copy. `bias` (one float per column of C, added to every
/// row) may be nil; with a bias, beta must be 0.
///
/// Work is split by us into row or column blocks run on `ComputeThreads.count` threads, each a
/// single-threaded OpenBLAS or oneDNN call; OpenBLAS's own threads stay at one (see
/// `ComputeThreads`). Each block writes its own part of the bias, just before its product reads
/// that part back, so the bias costs no pass of its own over C. `kernel` forces a library for
/// every block (benchmarks compare them); nil means `SGEMMKernel.current`.
public func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int, bias: UnsafePointer<Float>? = nil,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    threads: Int? = nil, kernel: SGEMMKernel? = nil
) {
    precondition(bias == nil || beta == 0, "GEMM with a bias takes beta 0, got \(beta)")
    if m == 0 || n == 0 { return }
    let t = threads ?? ComputeThreads.count
    // Read on the calling thread: the split below runs on pool threads that never set it.
    if BF16.isOn && k > 0 {
        let pa = BF16Matrix(a, rows: transA ? k : m, cols: transA ? m : k, ld: lda, threads: t)
        let pb = BF16Matrix(b, rows: transB ? n : k, cols: transB ? k : n, ld: ldb, threads: t)
        gemm(transA: transA, transB: transB, alpha: alpha, a: pa, b: pb, bias: bias, beta: beta, c: c, ldc: ldc, threads: t)
        return
    }
    FLOPCounter.add(2 * m * n * k)
    GEMMShapes.note(transA: transA, transB: transB, m: m, n: n, k: k)
    let kernel = kernel ?? SGEMMKernel.current
    // Below ~2 MFLOP a split costs more than it saves.
    let parts = m * n * k < 1 << 20 ? 1 : t
    if transA && !transB && bias == nil && kernel == .oneDNN && parts > 1 && m >= 4 * n && n >= 128 && k >= 1024 {
        // The weight gradient of a layer widening 4× (fc1: Aᵀ·B, M = 4N, summed over K tokens):
        // oneDNN's sgemm runs the product the other way round, Cᵀ = Bᵀ·A, 1.2–1.4× faster on the
        // Ice Lake Xeon (docs/architecture.md#compute-core); C is then written from Cᵀ in one pass.
        let ct = Tensor(uninitialized: [n, m])
        let ctp = ct.pointer
        DispatchApply.run(parts) { p in
            let lo = m * p / parts, hi = m * (p + 1) / parts
            guard lo < hi else { return }
            sgemmCall(true, false, n, hi - lo, k, alpha, b, ldb, a + lo, lda, nil, 0, ctp + lo, m, kernel: kernel)
            transposeRows(lo..<hi, of: ctp, ld: m, columns: n, beta: beta, into: c, ldc: ldc)
        }
        return
    }
    if parts <= 1 {
        sgemmCall(transA, transB, m, n, k, alpha, a, lda, b, ldb, bias, beta, c, ldc, kernel: kernel)
        return
    }
    // Split the larger output dimension; the other operand is shared read-only.
    if m >= n {
        DispatchApply.run(parts) { p in
            let lo = m * p / parts, hi = m * (p + 1) / parts
            guard lo < hi else { return }
            let aOff = transA ? lo : lo * lda
            sgemmCall(transA, transB, hi - lo, n, k, alpha, a + aOff, lda, b, ldb, bias, beta, c + lo * ldc, ldc, kernel: kernel)
        }
    } else {
        DispatchApply.run(parts) { p in
            let lo = n * p / parts, hi = n * (p + 1) / parts
            guard lo < hi else { return }
            let bOff = transB ? lo * ldb : lo
            sgemmCall(transA, transB, m, hi - lo, k, alpha, a, lda, b + bOff, ldb, bias.map { $0 + lo }, beta, c + lo, ldc,
                      kernel: kernel)
        }
    }
}

/// Rows `rows` of C (each `columns` wide) from the columns of Cᵀ (`ld` apart): C = Cᵀᵀ, or
/// added to C when beta is 1. Tiles of 16×16 keep both sides' lines in cache.
@inline(__always)
func transposeRows(_ rows: Range<Int>, of ct: UnsafePointer<Float>, ld: Int, columns: Int, beta: Float,
                   into c: UnsafeMutablePointer<Float>, ldc: Int) {
    let tile = 16
    for i0 in stride(from: rows.lowerBound, to: rows.upperBound, by: tile) {
        let i1 = min(i0 + tile, rows.upperBound)
        for j0 in stride(from: 0, to: columns, by: tile) {
            let j1 = min(j0 + tile, columns)
            for i in i0..<i1 {
                let row = c + i * ldc
                if beta == 0 {
                    for j in j0..<j1 { row[j] = ct[j * ld + i] }
                } else {
                    for j in j0..<j1 { row[j] = beta * row[j] + ct[j * ld + i] }
                }
            }
        }
    }
}

/// One single-threaded block of `gemm`. A bias is written into C first, then summed onto.
@inline(__always)
func sgemmCall(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ bias: UnsafePointer<Float>?, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
    kernel: SGEMMKernel = SGEMMKernel.current
) {
    var beta = beta
    if let bias {
        for i in 0..<m { (c + i * ldc).update(from: bias, count: n) }
        beta = 1
    }
    if k == 0 {
        // BLAS leaves C untouched when K = 0 only if beta = 1; make the empty sum explicit.
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : c[i * ldc + j] * beta } }
        return
    }
    if kernel != .openBLAS, m * n * k >= SGEMMKernel.oneDNNFrom {
        let status = kernel == .oneDNN ? mims_sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
                                       : mims_sgemm_matmul(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        precondition(status == 0, "oneDNN \(kernel.rawValue) \(m)×\(n)×\(k) failed with status \(status)")
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Which library runs a single-threaded fp32 GEMM block. oneDNN's sgemm (the library under
/// PyTorch's CPU kernels, linked already for bf16) runs large blocks 2–8 % faster than OpenBLAS
/// 0.3.21 on one core of our AVX-512 EPYC machine. Attention's per-head products from 128 tokens
/// up go to oneDNN too: on one core of the Ice Lake Xeon, best of 12 passes over 256 heads,
/// oneDNN ran 197×197×32 heads' six products at 77–96 GFLOP/s against OpenBLAS's 66–74 (QKᵀ 90
/// against 66), 128-token heads at 69–91 against 57–75; 50-token heads (ViT's encoder, 0.16 M
/// multiply-adds) ran slower in oneDNN (QKᵀ 33 against 50), so blocks under `oneDNNFrom`
/// multiply-adds (those, Swin's 36- to 49-token windows, the heads of tiny models) stay with
/// OpenBLAS. `MIMSERVE_SGEMM=openblas` turns oneDNN off (for comparisons). oneDNN's matmul
/// primitive is a third choice, for `mimserve-bench --kernels`: on the Ice Lake Xeon it ran
/// whole steps' products in the same time as `dnnl_sgemm` (docs/architecture.md).
public enum SGEMMKernel: String, Sendable, CaseIterable {
    case openBLAS = "openblas"
    case oneDNN = "onednn"
    /// oneDNN's fp32 matmul primitive (its brgemm kernels on AVX-512), made once per shape.
    case oneDNNMatmul = "onednn-matmul"

    public static let current: SGEMMKernel = getenv("MIMSERVE_SGEMM").flatMap { SGEMMKernel(rawValue: String(cString: $0)) } ?? .oneDNN
    static let oneDNNFrom = 1 << 19  // 128×128×32
}

/// A matrix rounded to bf16 (nearest even) once, stored densely: the operand form of bf16
/// GEMMs (see `BF16`). Rounding costs a pass over the matrix, so an operand that feeds several
/// GEMMs (a linear layer's output gradient feeds two) is rounded once for all of them, and a
/// GEMM split into blocks rounds each operand once, not once per block.
public struct BF16Matrix {
    public let rows: Int
    public let cols: Int
    private let storage: Tensor  // bf16 pairs in float storage, from the pool

    /// Rounds the rows × cols matrix at `source` (row stride `ld`, default `cols`), its rows
    /// spread over `threads` threads.
    public init(_ source: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int? = nil, threads: Int = ComputeThreads.count) {
        self.rows = rows
        self.cols = cols
        storage = Tensor(uninitialized: [(rows * cols + 1) / 2])
        let ld = ld ?? cols, dst = mutablePointer
        let parts = rows * cols < 1 << 16 ? 1 : max(1, min(threads, rows))
        DispatchApply.run(parts) { p in
            let lo = rows * p / parts, hi = rows * (p + 1) / parts
            if lo < hi { mims_bf16_pack(source + lo * ld, hi - lo, cols, ld, dst + lo * cols) }
        }
    }

    /// Room for a rows × cols bf16 matrix, to be filled by the caller (`mutablePointer`, or
    /// `round(from:range:)`).
    public init(uninitializedRows rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        storage = Tensor(uninitialized: [(rows * cols + 1) / 2])
    }

    /// Rounds elements `range` of the dense rows × cols matrix at `source` into the same
    /// positions here (an optimizer refreshing the part of a weight it just updated).
    public func round(from source: UnsafePointer<Float>, range: Range<Int>) {
        round(source + range.lowerBound, into: range)
    }

    /// Rounds the `range.count` floats at `values` into elements `range` (a matrix rounded a
    /// piece at a time, as its values are made).
    public func round(_ values: UnsafePointer<Float>, into range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows * cols, "range \(range) outside \(rows)×\(cols)")
        mims_bf16_pack(values, 1, range.count, range.count, mutablePointer + range.lowerBound)
    }

    var pointer: UnsafePointer<UInt16> { UnsafePointer(mutablePointer) }

    var mutablePointer: UnsafeMutablePointer<UInt16> {
        UnsafeMutableRawPointer(storage.pointer).bindMemory(to: UInt16.self, capacity: rows * cols)
    }
}

/// Row-major C = alpha · op(A) · op(B) + bias + beta · C on operands rounded to bf16, with fp32
/// sums (oneDNN's matmul; see `BF16`). op(A) is `a` or its transpose, likewise op(B); `bias`
/// (one float per column of C, added to every row; alpha must then be 1) may be nil; beta is
/// 0 or 1. Split into blocks of the larger output dimension on `threads` threads, as `gemm`
/// splits fp32 work, so blocks see the same shapes in both precisions.
public func gemm(
    transA: Bool, transB: Bool, alpha: Float = 1, a: BF16Matrix, b: BF16Matrix,
    bias: UnsafePointer<Float>? = nil, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    threads: Int? = nil
) {
    let m = transA ? a.cols : a.rows, k = transA ? a.rows : a.cols
    let n = transB ? b.rows : b.cols
    precondition((transB ? b.cols : b.rows) == k, "bf16 GEMM inner dimensions differ: \(m)×\(k) · \(transB ? b.cols : b.rows)×\(n)")
    precondition(beta == 0 || beta == 1, "bf16 GEMM takes beta 0 or 1, got \(beta)")
    precondition(bias == nil || alpha == 1, "bf16 GEMM with a bias takes alpha 1, got \(alpha)")
    if m == 0 || n == 0 { return }
    FLOPCounter.add(2 * m * n * k)
    let lda = a.cols, ldb = b.cols
    let t = threads ?? ComputeThreads.count
    let parts = m * n * k < 1 << 20 ? 1 : t
    let failures = Atomic<Int>(0)
    withExtendedLifetime((a, b)) {
        let ap = a.pointer, bp = b.pointer
        DispatchApply.run(parts) { p in
            let status: Int32
            if m >= n {
                let lo = m * p / parts, hi = m * (p + 1) / parts
                guard lo < hi else { return }
                status = mims_bf16_matmul(transA, transB, hi - lo, n, k, alpha, ap + (transA ? lo : lo * lda), lda,
                                          bp, ldb, bias, beta, c + lo * ldc, ldc)
            } else {
                let lo = n * p / parts, hi = n * (p + 1) / parts
                guard lo < hi else { return }
                status = mims_bf16_matmul(transA, transB, m, hi - lo, k, alpha, ap, lda,
                                          bp + (transB ? lo * ldb : lo), ldb, bias.map { $0 + lo }, beta, c + lo, ldc)
            }
            if status != 0 { failures.store(Int(status), ordering: .relaxed) }
        }
    }
    let status = failures.load(ordering: .relaxed)
    // A primitive oneDNN cannot make for a shape is a programming error, reported with it.
    precondition(status == 0, "oneDNN bf16 matmul \(m)×\(n)×\(k) (transA \(transA), transB \(transB)) failed with status \(status)")
}

/// OpenBLAS with its own threading (for the benchmark's "native" peak comparison).
public func nativeBLASGemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                           c: UnsafeMutablePointer<Float>, threads: Int) {
    openblas_set_num_threads(Int32(threads))
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
    openblas_set_num_threads(1)
}

/// The naive twin of `gemm` (Double accumulation), for tests.
public func naiveGemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                s += Double(av) * Double(bv)
            }
            let prior = beta == 0 ? 0 : beta * c[i * ldc + j]
            c[i * ldc + j] = alpha * Float(s) + prior
        }
    }
}

/// Runs `body(0)…body(iterations − 1)` in parallel: on `ComputePool`'s awake threads, or through
/// `concurrentPerform` (without the Sendable dance for pointer-capturing closures) when the pool
/// is taken.
enum DispatchApply {
    static func run(_ iterations: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            if iterations == 1 { return body(0) }
            if ComputePool.shared.run(iterations, body) { return }
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: iterations) { box.value($0) }
        }
    }
}

struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

import Dispatch
