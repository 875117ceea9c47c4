#ifndef CDNNL_H
#define CDNNL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/// True when this CPU has the AVX512_BF16 dot-product instructions (or AMX) that make bf16
/// GEMMs worth running, and oneDNN may use them (DNNL_MAX_CPU_ISA does not hold it lower);
/// false otherwise (the server then refuses bf16; only tests emulate it, `mims_bf16_available`).
bool mims_bf16_supported(void);

/// True when bf16 GEMMs can run here: natively (`mims_bf16_supported`), or emulated when the
/// environment sets MIMSERVE_BF16_EMULATE=1 and the CPU has AVX-512 (oneDNN's bf16 matmul then
/// emulates the dot products, and operands are rounded in software, nearest even, as the
/// hardware does). Emulation is many times slower: it exists so that the bf16 paths are tested,
/// and their memory measured, on machines without the units. The server never offers it.
bool mims_bf16_available(void);

/// Row-major C = alpha · op(A) · op(B) + bias + beta · C with bf16 operands (rounded by
/// `mims_bf16_pack`) and fp32 sums, by oneDNN's matmul on the calling thread alone. op(A) is
/// m×k, stored m rows of k or, when transposed, k rows of m, with row stride lda; likewise
/// op(B), k×n. `bias` (n floats, added to every row) may be NULL; with a bias alpha must be 1.
/// beta must be 0 or 1. Returns 0, -1 for an unsupported alpha/beta, or a oneDNN status code
/// when a primitive could not be made.
int mims_bf16_matmul(bool trans_a, bool trans_b, long m, long n, long k, float alpha,
                     const uint16_t *a, long lda, const uint16_t *b, long ldb, const float *bias,
                     float beta, float *c, long ldc);

/// Batched bf16 products with fp32 sums: for every b < batch and h < heads,
/// C[b,h] = alpha · A[b,h] · B[b,h], A[b,h] m×k and B[b,h] k×n. Each operand is described by
/// four element strides: batch, head, row, column (a transposed operand is given by swapping
/// its row and column strides). oneDNN's fast kernels want each matrix's rows or columns
/// dense (a head-major layout); C is overwritten. Returns 0 or a oneDNN status code.
int mims_bf16_matmul_batched(long batch, long heads, long m, long n, long k, float alpha,
                             const uint16_t *a, const long a_strides[4], const uint16_t *b,
                             const long b_strides[4], float *c, const long c_strides[4]);

/// Rounds the rows×cols matrix at `src` (row stride ld) to bf16 into dense `dst`.
void mims_bf16_pack(const float *src, long rows, long cols, long ld, uint16_t *dst);

/// Whether GEMMs issued from the calling thread run in bf16 (a training step sets it around its
/// forward and backward passes; every other thread stays fp32).
void mims_set_bf16_gemm(bool on);
bool mims_bf16_gemm_enabled(void);

/// Row-major fp32 C = alpha · op(A) · op(B) + beta · C by oneDNN's sgemm on the calling thread
/// alone. Returns 0 or a oneDNN status code.
int mims_sgemm(bool trans_a, bool trans_b, long m, long n, long k, float alpha,
               const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);

/// The same product through oneDNN's fp32 matmul primitive (made once per shape and strides, kept
/// per thread; `SGEMMKernel.oneDNNMatmul`, for benchmarks); beta other than 0 or 1 runs mims_sgemm.
int mims_sgemm_matmul(bool trans_a, bool trans_b, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);

/// Rounds n floats to bf16 (nearest even) and back, in place: what the bf16 GEMM sees, except
/// for subnormal inputs, which this keeps and AVX512_BF16's convert (`mims_bf16_pack`) may
/// flush to zero. For tests.
void mims_round_to_bf16(float *x, size_t n);

#endif
