// Small fp32 products for attention heads (docs/architecture.md#attention).
//
// A head's products are small (36×36×32 in a Swin window, 50×50×64 in ViT's encoder), so a
// library GEMM spends much of each call on packing and dispatch: OpenBLAS ran them at a quarter
// of its large-matrix rate. Here a block of C stays in registers (up to 24 vectors of 16
// floats) while the sum over p streams one row of B and broadcasts one element of A per row.
// Rows of C that do not fill a vector end in masked loads and stores, so any n runs without a
// scalar tail or padding. Compiled twice by function attribute, for AVX-512 (16 floats a vector)
// and for AVX2 with FMA (8 floats, half the registers); the caller picks by CPU at run time.

#include "ckernels.h"

#include <immintrin.h>

bool mims_head_gemm_supported(int width) {
    __builtin_cpu_init();
    if (width == 16) return __builtin_cpu_supports("avx512f");
    if (width == 8) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return false;
}

#define AVX512 __attribute__((target("avx512f"), always_inline)) static inline

// One mr × (nv·16) block of C; the last vector keeps the lanes in `tail`.
AVX512 void block16(const int mr, const int nv, __mmask16 tail, long k, float alpha, const float *a,
                  long a_row, long a_col, const float *b, long ldb, float *c, long ldc) {
    __m512 acc[12][4];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_ps();
    for (long p = 0; p < k; p++) {
        const float *brow = b + p * ldb;
        __m512 bv[4];
        for (int v = 0; v < nv; v++)
            bv[v] = v == nv - 1 ? _mm512_maskz_loadu_ps(tail, brow + 16 * v) : _mm512_loadu_ps(brow + 16 * v);
        const float *ap = a + p * a_col;
        for (int r = 0; r < mr; r++) {
            __m512 av = _mm512_set1_ps(ap[r * a_row]);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    __m512 scale = _mm512_set1_ps(alpha);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            __m512 x = _mm512_mul_ps(acc[r][v], scale);
            if (v == nv - 1) _mm512_mask_storeu_ps(c + r * ldc + 16 * v, tail, x);
            else _mm512_storeu_ps(c + r * ldc + 16 * v, x);
        }
}

// Rows per block for nv vectors per row: at most 24 accumulators. Measured on Zen 5 (one core):
// 12 rows of two vectors ran at a third of the rate of 10 (the compiler spills), 8 and 6 rows
// 5-15 % below 10.
static int rows_for(int nv) { return nv == 1 ? 8 : (nv == 2 ? 10 : (nv == 3 ? 8 : 6)); }

// One function per vector count, switching to a block whose row count is a constant, so each
// block compiles with its accumulators in registers.
#define ROWS(BLOCK, NV, M)                                                                        \
    case M: BLOCK(M, NV, tail, k, alpha, a, a_row, a_col, b, ldb, c, ldc); break;
#define PANEL(NAME, ISA, BLOCK, TAIL, NV)                                                         \
    __attribute__((target(ISA))) static void NAME(int mr, TAIL tail, long k, float alpha,         \
        const float *a, long a_row, long a_col, const float *b, long ldb, float *c, long ldc) {   \
        switch (mr) {                                                                             \
            ROWS(BLOCK, NV, 1) ROWS(BLOCK, NV, 2) ROWS(BLOCK, NV, 3) ROWS(BLOCK, NV, 4)           \
            ROWS(BLOCK, NV, 5) ROWS(BLOCK, NV, 6) ROWS(BLOCK, NV, 7) ROWS(BLOCK, NV, 8)           \
            ROWS(BLOCK, NV, 9) ROWS(BLOCK, NV, 10) ROWS(BLOCK, NV, 11) ROWS(BLOCK, NV, 12)        \
        }                                                                                         \
    }
PANEL(panel1, "avx512f", block16, __mmask16, 1)
PANEL(panel2, "avx512f", block16, __mmask16, 2)
PANEL(panel3, "avx512f", block16, __mmask16, 3)
PANEL(panel4, "avx512f", block16, __mmask16, 4)

__attribute__((target("avx512f")))
static void head_gemm16(long m, long n, long k, float alpha, const float *a, long a_row, long a_col,
                    const float *b, long ldb, float *c, long ldc) {
    for (long j = 0; j < n; j += 64) {
        long width = n - j < 64 ? n - j : 64;
        int nv = (int)((width + 15) / 16);
        int rest = (int)(width - 16 * (nv - 1));
        __mmask16 tail = (__mmask16)((1u << rest) - 1);
        int rows = rows_for(nv);
        for (long i = 0; i < m; i += rows) {
            int mr = (int)(m - i < rows ? m - i : rows);
            const float *ai = a + i * a_row;
            float *ci = c + i * ldc + j;
            const float *bj = b + j;
            switch (nv) {
            case 1: panel1(mr, tail, k, alpha, ai, a_row, a_col, bj, ldb, ci, ldc); break;
            case 2: panel2(mr, tail, k, alpha, ai, a_row, a_col, bj, ldb, ci, ldc); break;
            case 3: panel3(mr, tail, k, alpha, ai, a_row, a_col, bj, ldb, ci, ldc); break;
            default: panel4(mr, tail, k, alpha, ai, a_row, a_col, bj, ldb, ci, ldc); break;
            }
        }
    }
}

// Transposes the 16×16 block of `rows` (≤ 16) rows of `cols` (≤ 16) floats at src (row stride
// ld) into dst (row stride ldd): unpacks within 128-bit lanes, then 128-bit lane shuffles.
__attribute__((target("avx512f"))) static void transpose16(const float *src, long ld, int rows, int cols,
                                                           float *dst, long ldd) {
    __mmask16 colMask = (__mmask16)((1u << cols) - 1), rowMask = (__mmask16)((1u << rows) - 1);
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_maskz_loadu_ps(colMask, src + i * ld) : _mm512_setzero_ps();
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    // r[4g + c] now holds, in each 128-bit lane l, column 4l + c of rows 4g…4g+3.
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD);
    }
    for (int j = 0; j < cols; j++) _mm512_mask_storeu_ps(dst + j * ldd, rowMask, r[j]);
}

__attribute__((target("avx512f")))
static void transpose_blocks16(const float *src, long rows, long cols, long ld, float *dst) {
    for (long i = 0; i < rows; i += 16)
        for (long j = 0; j < cols; j += 16)
            transpose16(src + i * ld + j, ld, rows - i < 16 ? (int)(rows - i) : 16,
                        cols - j < 16 ? (int)(cols - j) : 16, dst + j * rows + i, rows);
}

// ---- AVX2 + FMA: 8 floats a vector, 16 registers ----

#define AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline

// Lanes below `rest` of an 8-float vector, as vmaskmov wants them (sign bit set).
__attribute__((target("avx2"))) static inline __m256i lanes_below(int rest) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(rest), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// One mr × (nv·8) block of C; the last vector keeps the lanes in `tail`.
AVX2 void block8(const int mr, const int nv, __m256i tail, long k, float alpha, const float *a,
                 long a_row, long a_col, const float *b, long ldb, float *c, long ldc) {
    __m256 acc[12][2];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = _mm256_setzero_ps();
    for (long p = 0; p < k; p++) {
        const float *brow = b + p * ldb;
        __m256 bv[2];
        for (int v = 0; v < nv; v++)
            bv[v] = v == nv - 1 ? _mm256_maskload_ps(brow + 8 * v, tail) : _mm256_loadu_ps(brow + 8 * v);
        const float *ap = a + p * a_col;
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_broadcast_ss(ap + r * a_row);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    __m256 scale = _mm256_set1_ps(alpha);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            __m256 x = _mm256_mul_ps(acc[r][v], scale);
            if (v == nv - 1) _mm256_maskstore_ps(c + r * ldc + 8 * v, tail, x);
            else _mm256_storeu_ps(c + r * ldc + 8 * v, x);
        }
}

// At most 12 accumulators, leaving registers for B's vectors and A's broadcast: 12 rows of one
// vector, 6 of two (the classic Haswell 6×16 block).
PANEL(panel8_1, "avx2,fma", block8, __m256i, 1)
PANEL(panel8_2, "avx2,fma", block8, __m256i, 2)

__attribute__((target("avx2,fma")))
static void head_gemm8(long m, long n, long k, float alpha, const float *a, long a_row, long a_col,
                       const float *b, long ldb, float *c, long ldc) {
    for (long j = 0; j < n; j += 16) {
        long width = n - j < 16 ? n - j : 16;
        int nv = (int)((width + 7) / 8);
        __m256i tail = lanes_below((int)(width - 8 * (nv - 1)));
        int rows = nv == 1 ? 12 : 6;
        for (long i = 0; i < m; i += rows) {
            int mr = (int)(m - i < rows ? m - i : rows);
            const float *ai = a + i * a_row;
            float *ci = c + i * ldc + j;
            if (nv == 1) panel8_1(mr, tail, k, alpha, ai, a_row, a_col, b + j, ldb, ci, ldc);
            else panel8_2(mr, tail, k, alpha, ai, a_row, a_col, b + j, ldb, ci, ldc);
        }
    }
}

// The 8×8 block of `rows` (≤ 8) rows of `cols` (≤ 8) floats at src into dst, transposed:
// unpacks, shuffles within 128-bit lanes, then swaps of 128-bit halves.
__attribute__((target("avx2"))) static void transpose8(const float *src, long ld, int rows, int cols,
                                                       float *dst, long ldd) {
    __m256i colMask = lanes_below(cols), rowMask = lanes_below(rows);
    __m256 r[8], t[8];
    if (cols == 8)
        for (int i = 0; i < 8; i++) r[i] = i < rows ? _mm256_loadu_ps(src + i * ld) : _mm256_setzero_ps();
    else
        for (int i = 0; i < 8; i++) r[i] = i < rows ? _mm256_maskload_ps(src + i * ld, colMask) : _mm256_setzero_ps();
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    // r[4g + c] now holds, in each 128-bit half h, column 4h + c of rows 4g…4g+3.
    for (int c = 0; c < 4; c++) {
        t[c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x20);
        t[4 + c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x31);
    }
    if (rows == 8)
        for (int j = 0; j < cols; j++) _mm256_storeu_ps(dst + j * ldd, t[j]);
    else
        for (int j = 0; j < cols; j++) _mm256_maskstore_ps(dst + j * ldd, rowMask, t[j]);
}

__attribute__((target("avx2")))
static void transpose_blocks8(const float *src, long rows, long cols, long ld, float *dst) {
    for (long i = 0; i < rows; i += 8)
        for (long j = 0; j < cols; j += 8)
            transpose8(src + i * ld + j, ld, rows - i < 8 ? (int)(rows - i) : 8,
                       cols - j < 8 ? (int)(cols - j) : 8, dst + j * rows + i, rows);
}

void mims_head_gemm(int width, long m, long n, long k, float alpha, const float *a, long a_row,
                    long a_col, const float *b, long ldb, float *c, long ldc) {
    if (width == 16) head_gemm16(m, n, k, alpha, a, a_row, a_col, b, ldb, c, ldc);
    else head_gemm8(m, n, k, alpha, a, a_row, a_col, b, ldb, c, ldc);
}

void mims_transpose(int width, const float *src, long rows, long cols, long ld, float *dst) {
    if (width == 16) transpose_blocks16(src, rows, cols, ld, dst);
    else transpose_blocks8(src, rows, cols, ld, dst);
}

void mims_prefetch_block(const float *src, long rows, long cols, long ld) {
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j += 16) __builtin_prefetch(src + i * ld + j, 0, 3);
}
