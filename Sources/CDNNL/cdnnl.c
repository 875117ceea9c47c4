// bf16 GEMM through oneDNN's matmul primitive (Debian's libdnnl 2.6 has no BLAS-like bf16 call).
//
// Inputs arrive as fp32 and are rounded to bf16 into per-thread scratch buffers (AVX512_BF16's
// two-register convert, 32 floats per instruction); the matmul reads them with the caller's
// transposition as strides and writes fp32. Primitives are created once per shape and kept in a
// small per-thread cache: creating one costs far more than running a small GEMM. The caller
// splits work across its own threads, so each call runs oneDNN on the calling thread alone
// (omp_set_num_threads(1)): no OpenMP team competes with the rest of the compute pool.

#include "cdnnl.h"

#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// libgomp's (oneDNN's threading runtime on Debian); declared here because Swift's clang does
// not see gcc's omp.h.
extern void omp_set_num_threads(int);

bool mims_bf16_supported(void) {
    __builtin_cpu_init();
    bool cpu = __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
    // oneDNN may be held below the CPU (DNNL_MAX_CPU_ISA): its ISA values are bit sets, each
    // containing the ones below it.
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return cpu && (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

static _Thread_local bool bf16_gemm;

void mims_set_bf16_gemm(bool on) { bf16_gemm = on; }
bool mims_bf16_gemm_enabled(void) { return bf16_gemm; }

static inline uint16_t round_one(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

__attribute__((target("avx512f,avx512bf16")))
static void to_bf16(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh r = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)r);
    }
    for (; i < n; i++) dst[i] = round_one(src[i]);
}

void mims_round_to_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)round_one(x[i]) << 16;
        memcpy(x + i, &u, 4);
    }
}

// Copies the rows×cols operand at `src` (row stride ld) into a dense bf16 buffer.
static void pack(const float *src, long rows, long cols, long ld, uint16_t *dst) {
    if (ld == cols) { to_bf16(src, dst, (size_t)rows * (size_t)cols); return; }
    for (long r = 0; r < rows; r++) to_bf16(src + r * ld, dst + r * cols, (size_t)cols);
}

typedef struct {
    long m, n, k, ldc;
    bool trans_a, trans_b, accumulate;
    float alpha;
    dnnl_primitive_t primitive;
} cached;

enum { CACHE_SIZE = 64 };

typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    cached entries[CACHE_SIZE];
    int count, next;
    uint16_t *scratch;
    size_t scratch_elems;
} thread_state;

static _Thread_local thread_state *state;

static thread_state *current(void) {
    if (state) return state;
    thread_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (dnnl_engine_create(&s->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&s->stream, s->engine, dnnl_stream_default_flags) != dnnl_success) {
        free(s);
        return NULL;
    }
    state = s;
    return s;
}

static uint16_t *scratch(thread_state *s, size_t elems) {
    if (s->scratch_elems < elems) {
        free(s->scratch);
        s->scratch = malloc(elems * sizeof(uint16_t));
        s->scratch_elems = s->scratch ? elems : 0;
    }
    return s->scratch;
}

// A: m×k bf16 dense, stored k-major when transposed (so its strides say so); B likewise.
static dnnl_status_t make(thread_state *s, cached *e) {
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {e->m, e->k}, db = {e->k, e->n}, dc = {e->m, e->n};
    dnnl_dims_t sa = {e->trans_a ? 1 : e->k, e->trans_a ? e->m : 1};
    dnnl_dims_t sb = {e->trans_b ? 1 : e->n, e->trans_b ? e->k : 1};
    dnnl_dims_t sc = {e->ldc, 1};
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_strides(&a, 2, da, dnnl_bf16, sa)) != dnnl_success) return st;
    if ((st = dnnl_memory_desc_init_by_strides(&b, 2, db, dnnl_bf16, sb)) != dnnl_success) return st;
    if ((st = dnnl_memory_desc_init_by_strides(&c, 2, dc, dnnl_f32, sc)) != dnnl_success) return st;
    dnnl_matmul_desc_t desc;
    if ((st = dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c)) != dnnl_success) return st;
    dnnl_primitive_attr_t attr;
    if ((st = dnnl_primitive_attr_create(&attr)) != dnnl_success) return st;
    if (e->alpha != 1.0f) dnnl_primitive_attr_set_output_scales(attr, 1, 0, &e->alpha);
    if (e->accumulate) {
        dnnl_post_ops_t ops;
        dnnl_post_ops_create(&ops);
        dnnl_post_ops_append_sum(ops, 1.0f);
        dnnl_primitive_attr_set_post_ops(attr, ops);
        dnnl_post_ops_destroy(ops);
    }
    dnnl_primitive_desc_t pd;
    st = dnnl_primitive_desc_create(&pd, &desc, attr, s->engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return st;
    st = dnnl_primitive_create(&e->primitive, pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static cached *lookup(thread_state *s, long m, long n, long k, long ldc, bool ta, bool tb, bool acc, float alpha, dnnl_status_t *status) {
    for (int i = 0; i < s->count; i++) {
        cached *e = &s->entries[i];
        if (e->m == m && e->n == n && e->k == k && e->ldc == ldc && e->trans_a == ta && e->trans_b == tb &&
            e->accumulate == acc && e->alpha == alpha) return e;
    }
    cached *e = &s->entries[s->next];
    if (s->count == CACHE_SIZE) dnnl_primitive_destroy(e->primitive); else s->count++;
    s->next = (s->next + 1) % CACHE_SIZE;
    *e = (cached){m, n, k, ldc, ta, tb, acc, alpha, NULL};
    if ((*status = make(s, e)) != dnnl_success) {
        e->m = -1;  // never matches again
        return NULL;
    }
    return e;
}

void mims_bf16_pack(const float *src, long rows, long cols, long ld, uint16_t *dst) { pack(src, rows, cols, ld, dst); }

int mims_bf16_gemm(bool trans_a, bool trans_b, long m, long n, long k, float alpha,
                   const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    return mims_bf16_gemm_packed(trans_a, trans_b, m, n, k, alpha, a, lda, NULL, b, ldb, NULL, beta, c, ldc);
}

int mims_bf16_gemm_packed(bool trans_a, bool trans_b, long m, long n, long k, float alpha,
                          const float *a, long lda, const uint16_t *a_packed, const float *b, long ldb,
                          const uint16_t *b_packed, float beta, float *c, long ldc) {
    if (beta != 0.0f && beta != 1.0f) return -1;
    thread_state *s = current();
    if (!s) return -2;
    omp_set_num_threads(1);
    dnnl_status_t status = dnnl_success;
    cached *e = lookup(s, m, n, k, ldc, trans_a, trans_b, beta == 1.0f, alpha, &status);
    if (!e) return (int)status;
    size_t need = (a_packed ? 0 : (size_t)m * (size_t)k) + (b_packed ? 0 : (size_t)k * (size_t)n);
    uint16_t *buf = need ? scratch(s, need) : NULL;
    if (need && !buf) return -3;
    // Dense copies: op(A) stored as given (m×k, or k×m when transposed), likewise B; an operand
    // the caller packed already is used as it is.
    uint16_t *ab = (uint16_t *)a_packed, *bb = (uint16_t *)b_packed;
    if (!ab) {
        ab = buf;
        buf += (size_t)m * (size_t)k;
        if (trans_a) pack(a, k, m, lda, ab); else pack(a, m, k, lda, ab);
    }
    if (!bb) {
        bb = buf;
        if (trans_b) pack(b, n, k, ldb, bb); else pack(b, k, n, ldb, bb);
    }
    dnnl_memory_t ma, mb, mc;
    dnnl_memory_desc_t da, db, dc;
    const dnnl_memory_desc_t *q;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_get_primitive_desc(e->primitive, (const_dnnl_primitive_desc_t *)&pd);
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0); da = *q;
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0); db = *q;
    q = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0); dc = *q;
    dnnl_memory_create(&ma, &da, s->engine, ab);
    dnnl_memory_create(&mb, &db, s->engine, bb);
    dnnl_memory_create(&mc, &dc, s->engine, c);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    status = dnnl_primitive_execute(e->primitive, s->stream, 3, args);
    if (status == dnnl_success) status = dnnl_stream_wait(s->stream);
    dnnl_memory_destroy(ma);
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(mc);
    return (int)status;
}

int mims_sgemm(bool trans_a, bool trans_b, long m, long n, long k, float alpha,
               const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    omp_set_num_threads(1);
    return (int)dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
