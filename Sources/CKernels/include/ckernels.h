#ifndef MIMSERVE_CKERNELS_H
#define MIMSERVE_CKERNELS_H

#include <stdbool.h>

/// True when this CPU runs `mims_head_gemm` and `mims_transpose` with vectors of `width` floats:
/// 16 needs AVX-512 F, 8 needs AVX2 and FMA. Callers keep another path when neither runs.
bool mims_head_gemm_supported(int width);

/// One attention head's fp32 product on the calling thread:
/// C[i·ldc + j] = alpha · Σ_p A[i·a_row + p·a_col] · B[p·ldb + j], for i < m, j < n, p < k.
/// A is read one element at a time through two strides, so a transposed A costs nothing; B is
/// read in rows of n (the caller transposes a B it holds the other way into a small block
/// first). C is overwritten. The sum over p runs in order, one fused multiply-add per term, so
/// the same operands give the same bits on every call, at either width. Only for a `width` that
/// `mims_head_gemm_supported` accepts.
void mims_head_gemm(int width, long m, long n, long k, float alpha, const float *a, long a_row,
                    long a_col, const float *b, long ldb, float *c, long ldc);

/// dst[j·rows + i] = src[i·ld + j] for i < rows, j < cols: the cols×rows transpose of a
/// strided block, dense, with vectors of `width` floats (as `mims_head_gemm`).
void mims_transpose(int width, const float *src, long rows, long cols, long ld, float *dst);

/// Asks the CPU to bring the rows×cols block at `src` (row stride ld) into cache: the next
/// head's rows while this one is multiplied, which no hardware prefetcher guesses (a few dozen
/// 128-byte pieces, kilobytes apart).
void mims_prefetch_block(const float *src, long rows, long cols, long ld);

/// One spin-wait hint (x86 `pause`): lets the other hyperthread run and saves power while a
/// thread polls for work.
static inline void mims_spin_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

#endif
