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

/// Row-major single-precision GEMM: C = alpha · op(A) · op(B) + beta · C, with op(A) M×K and
/// op(B) K×N. `lda`, `ldb`, `ldc` are row strides, so strided sub-matrices (a head inside a
/// fused qkv row) need no copy.
///
/// Work is split by us into row or column blocks run on `ComputeThreads.count` threads, each a
/// single-threaded OpenBLAS call; OpenBLAS's own threads stay at one (see `ComputeThreads`).
public func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    threads: Int? = nil
) {
    if m == 0 || n == 0 { return }
    FLOPCounter.add(2 * m * n * k)
    // Read on the calling thread: the split below runs on pool threads that never set it.
    let call = BF16.isOn && k > 0 ? bf16Call : sgemmCall
    let t = threads ?? ComputeThreads.count
    // Below ~2 MFLOP a split costs more than it saves.
    let parts = m * n * k < 1 << 20 ? 1 : t
    if parts <= 1 {
        call(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    if BF16.isOn && k > 0 {
        bf16Split(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parts: parts)
        return
    }
    // Split the larger output dimension; the other operand is shared read-only.
    if m >= n {
        DispatchApply.run(parts) { p in
            let lo = m * p / parts, hi = m * (p + 1) / parts
            guard lo < hi else { return }
            let aOff = transA ? lo : lo * lda
            call(transA, transB, hi - lo, n, k, alpha, a + aOff, lda, b, ldb, beta, c + lo * ldc, ldc)
        }
    } else {
        DispatchApply.run(parts) { p in
            let lo = n * p / parts, hi = n * (p + 1) / parts
            guard lo < hi else { return }
            let bOff = transB ? lo * ldb : lo
            call(transA, transB, m, hi - lo, k, alpha, a, lda, b + bOff, ldb, beta, c + lo, ldc)
        }
    }
}

@inline(__always)
func sgemmCall(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    if k == 0 {
        // BLAS leaves C untouched when K = 0 only if beta = 1; make the empty sum explicit.
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : c[i * ldc + j] * beta } }
        return
    }
    if SGEMMKernel.current == .oneDNN, m * n * k >= SGEMMKernel.oneDNNFrom {
        let status = mims_sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        precondition(status == 0, "oneDNN sgemm \(m)×\(n)×\(k) failed with status \(status)")
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Which library runs a single-threaded fp32 GEMM block. oneDNN's sgemm (the library under
/// PyTorch's CPU kernels, linked already for bf16) runs large blocks 2–8 % faster than OpenBLAS
/// 0.3.21 on one core of our AVX-512 EPYC machine; blocks under `oneDNNFrom` multiply-adds (attention's
/// per-head products of small images, the heads of tiny models) stay with OpenBLAS, which calls
/// faster there. `MIMSERVE_SGEMM=openblas` turns oneDNN off (for comparisons).
public enum SGEMMKernel: String, Sendable {
    case openBLAS = "openblas"
    case oneDNN = "onednn"

    public static let current: SGEMMKernel = getenv("MIMSERVE_SGEMM").flatMap { SGEMMKernel(rawValue: String(cString: $0)) } ?? .oneDNN
    static let oneDNNFrom = 1 << 22
}

/// One block of a bf16 GEMM (see `BF16`): a failure to build a oneDNN primitive for a
/// shape is a programming error, reported with the shape.
func bf16Call(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    precondition(beta == 0 || beta == 1, "bf16 GEMM takes beta 0 or 1, got \(beta)")
    let status = mims_bf16_gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    precondition(status == 0, "oneDNN bf16 matmul \(m)×\(n)×\(k) (transA \(transA), transB \(transB)) failed with status \(status)")
}

/// A bf16 GEMM in `parts` blocks of the larger output dimension: the operand every block reads
/// whole (B when splitting rows, A when splitting columns) is rounded to bf16 once, its rows
/// spread over the threads, instead of once per block; each block rounds only its own slice of
/// the other operand. The same split as the fp32 path, so blocks see the same shapes.
func bf16Split(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, parts: Int
) {
    precondition(beta == 0 || beta == 1, "bf16 GEMM takes beta 0 or 1, got \(beta)")
    let splitRows = m >= n
    // The shared operand as stored: rows × cols with row stride ld.
    let (source, ld) = splitRows ? (b, ldb) : (a, lda)
    let (rows, cols) = splitRows ? (transB ? (n, k) : (k, n)) : (transA ? (k, m) : (m, k))
    let packed = Tensor(uninitialized: [(rows * cols + 1) / 2])  // bf16 pairs in float storage
    let shared = UnsafeMutableRawPointer(packed.pointer).bindMemory(to: UInt16.self, capacity: rows * cols)
    DispatchApply.run(parts) { p in
        let lo = rows * p / parts, hi = rows * (p + 1) / parts
        if lo < hi { mims_bf16_pack(source + lo * ld, hi - lo, cols, ld, shared + lo * cols) }
    }
    let failures = Atomic<Int>(0)
    DispatchApply.run(parts) { p in
        let status: Int32
        if splitRows {
            let lo = m * p / parts, hi = m * (p + 1) / parts
            guard lo < hi else { return }
            status = mims_bf16_gemm_packed(transA, transB, hi - lo, n, k, alpha, a + (transA ? lo : lo * lda), lda, nil,
                                           b, ldb, shared, beta, c + lo * ldc, ldc)
        } else {
            let lo = n * p / parts, hi = n * (p + 1) / parts
            guard lo < hi else { return }
            status = mims_bf16_gemm_packed(transA, transB, m, hi - lo, k, alpha, a, lda, shared,
                                           b + (transB ? lo * ldb : lo), ldb, nil, beta, c + lo, ldc)
        }
        if status != 0 { failures.store(Int(status), ordering: .relaxed) }
    }
    let status = failures.load(ordering: .relaxed)
    precondition(status == 0, "oneDNN bf16 matmul \(m)×\(n)×\(k) (transA \(transA), transB \(transB)) failed with status \(status)")
    withExtendedLifetime(packed) {}
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

/// `concurrentPerform` without the Sendable dance for pointer-capturing closures.
enum DispatchApply {
    static func run(_ iterations: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
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
