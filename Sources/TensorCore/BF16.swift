import CDNNL

/// bf16 GEMMs: both operands rounded to bfloat16, products summed in fp32 (oneDNN's matmul on
/// AVX512_BF16 or AMX). Only `gemm` changes; weights, optimizer state, norms, softmax,
/// reductions and losses stay fp32 whatever is chosen.
public enum BF16 {
    /// The CPU has bf16 dot-product units: the server offers bf16 (never emulated) only then.
    public static let supported = mims_bf16_supported()

    /// bf16 GEMMs can run in this process: natively, or emulated on an AVX-512 CPU without the
    /// units when the environment sets MIMSERVE_BF16_EMULATE=1 (many times slower; for the tests
    /// and memory measurements of the bf16 paths on such machines, never for timings).
    public static let available = mims_bf16_available()

    /// `available` without `supported`: timings mean nothing.
    public static var emulated: Bool { available && !supported }

    /// GEMMs issued from the calling thread run in bf16.
    public static var isOn: Bool { mims_bf16_gemm_enabled() }

    /// Runs `body` with GEMMs issued from this thread in bf16 (`on`) or fp32, then restores
    /// what was set before. Pool threads that run parts of a GEMM never read it: `gemm` decides
    /// on the calling thread.
    public static func gemms<T>(_ on: Bool, _ body: () throws -> T) rethrows -> T {
        precondition(!on || available, "bf16 GEMMs need AVX512_BF16 or AMX, which this CPU lacks")
        let previous = mims_bf16_gemm_enabled()
        mims_set_bf16_gemm(on)
        defer { mims_set_bf16_gemm(previous) }
        return try body()
    }
}
