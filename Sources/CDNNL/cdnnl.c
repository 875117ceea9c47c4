// bf16 GEMM through oneDNN's matmul primitive (Debian's libdnnl 2.6 has no BLAS-like bf16 call).
//
// The caller rounds its fp32 operands to bf16 first (`mims_bf16_pack`: AVX512_BF16's
// two-register convert, 32 floats per instruction), once per operand however many blocks read
// it; the matmul reads them with the caller's transposition and row strides as its strides,
// adds an optional fp32 bias row, and writes fp32. Primitives are created once per shape and kept in a
// small per-thread cache: creating one costs far more than running a small GEMM. The caller
// splits work across its own threads, so each call runs oneDNN on the calling thread alone
// (omp_set_num_threads(1)): no OpenMP team competes with the rest of the compute pool.

#include "cdnnl.h"

#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdatomic.h>
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

bool mims_bf16_available(void) {
    if (mims_bf16_supported()) return true;
    const char *emulate = getenv("MIMSERVE_BF16_EMULATE");
    if (!emulate || strcmp(emulate, "1") != 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
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

// The last n mod 32 floats go through masked loads and a masked store (the masked-off lanes
// are never touched), so short rows (a 36×36 attention block, a 32-wide head) pay no scalar
// tail.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void to_bf16_native(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh r = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)r);
    }
    if (i < n) {
        size_t rest = n - i;
        __mmask16 lo = rest >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rest) - 1);
        __mmask16 hi = rest > 16 ? (__mmask16)((1u << (rest - 16)) - 1) : 0;
        __m512bh r = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + i + 16), _mm512_maskz_loadu_ps(lo, src + i));
        _mm512_mask_storeu_epi16(dst + i, (__mmask32)lo | ((__mmask32)hi << 16), (__m512i)r);
    }
}

// Without the units (emulation, `mims_bf16_available`): the same rounding one float at a time,
// subnormals flushed to zero as the instruction flushes them.
static void to_bf16_software(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, 4);
        if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
        float f;
        memcpy(&f, &u, 4);
        dst[i] = round_one(f);
    }
}

static void to_bf16(const float *src, uint16_t *dst, size_t n) {
    static _Atomic int native = -1;  // unknown, then whether the CPU has the convert
    int has = atomic_load_explicit(&native, memory_order_relaxed);
    if (has < 0) {
        has = mims_bf16_supported();
        atomic_store_explicit(&native, has, memory_order_relaxed);
    }
    if (has) to_bf16_native(src, dst, n); else to_bf16_software(src, dst, n);
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

// What a primitive is made for: a plain (ndims 2) or batched (ndims 4: batch, heads, rows,
// cols) product, with every operand's strides. Compared whole with memcmp, so always zeroed
// before it is filled.
typedef struct {
    long ndims, batch, heads, m, n, k;
    long sa[4], sb[4], sc[4];  // op(A) m×k, op(B) k×n, C m×n; batch strides first when ndims 4
    long accumulate, bias;
    long f32;  // fp32 operands (the fp32 matmul); else bf16
    float alpha;
} shape_key;

typedef struct {
    shape_key key;
    dnnl_primitive_t primitive;
} cached;

enum { CACHE_SIZE = 256 };

typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    cached entries[CACHE_SIZE];
    int count, next;
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

static dnnl_status_t make(thread_state *s, const shape_key *key, dnnl_primitive_t *out) {
    int nd = (int)key->ndims, lead = nd - 2;
    dnnl_dims_t da = {0}, db = {0}, dc = {0}, dbias = {0}, sa = {0}, sb = {0}, sc = {0}, sbias = {0};
    for (int i = 0; i < lead; i++) {
        long d = i == 0 ? key->batch : key->heads;
        da[i] = db[i] = dc[i] = d;
        dbias[i] = 1;
        sbias[i] = key->n;
    }
    da[lead] = key->m; da[lead + 1] = key->k;
    db[lead] = key->k; db[lead + 1] = key->n;
    dc[lead] = key->m; dc[lead + 1] = key->n;
    dbias[lead] = 1; dbias[lead + 1] = key->n;
    sbias[lead] = key->n; sbias[lead + 1] = 1;
    for (int i = 0; i < nd; i++) { sa[i] = key->sa[i]; sb[i] = key->sb[i]; sc[i] = key->sc[i]; }
    dnnl_memory_desc_t a, b, c, bias;
    dnnl_status_t st;
    dnnl_data_type_t operands = key->f32 ? dnnl_f32 : dnnl_bf16;
    if ((st = dnnl_memory_desc_init_by_strides(&a, nd, da, operands, sa)) != dnnl_success) return st;
    if ((st = dnnl_memory_desc_init_by_strides(&b, nd, db, operands, sb)) != dnnl_success) return st;
    if ((st = dnnl_memory_desc_init_by_strides(&c, nd, dc, dnnl_f32, sc)) != dnnl_success) return st;
    if ((st = dnnl_memory_desc_init_by_strides(&bias, nd, dbias, dnnl_f32, sbias)) != dnnl_success) return st;
    dnnl_matmul_desc_t desc;
    if ((st = dnnl_matmul_desc_init(&desc, &a, &b, key->bias ? &bias : NULL, &c)) != dnnl_success) return st;
    dnnl_primitive_attr_t attr;
    if ((st = dnnl_primitive_attr_create(&attr)) != dnnl_success) return st;
    if (key->alpha != 1.0f) dnnl_primitive_attr_set_output_scales(attr, 1, 0, &key->alpha);
    if (key->accumulate) {
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
    st = dnnl_primitive_create(out, pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

// The primitive for `key` from this thread's cache, made (and the oldest evicted) on a miss.
static dnnl_primitive_t lookup(thread_state *s, const shape_key *key, dnnl_status_t *status) {
    for (int i = 0; i < s->count; i++) {
        const shape_key *e = &s->entries[i].key;
        // The sizes first: most entries differ there, and a full compare is 160 bytes.
        if (e->m == key->m && e->n == key->n && e->k == key->k && memcmp(e, key, sizeof *key) == 0)
            return s->entries[i].primitive;
    }
    dnnl_primitive_t p = NULL;
    if ((*status = make(s, key, &p)) != dnnl_success) return NULL;
    cached *e = &s->entries[s->next];
    if (s->count == CACHE_SIZE) dnnl_primitive_destroy(e->primitive); else s->count++;
    s->next = (s->next + 1) % CACHE_SIZE;
    e->key = *key;
    e->primitive = p;
    return p;
}

void mims_bf16_pack(const float *src, long rows, long cols, long ld, uint16_t *dst) { pack(src, rows, cols, ld, dst); }

static int execute(const shape_key *key, const void *a, const void *b, const float *bias, float *c) {
    thread_state *s = current();
    if (!s) return -2;
    omp_set_num_threads(1);
    dnnl_status_t status = dnnl_success;
    dnnl_primitive_t primitive = lookup(s, key, &status);
    if (!primitive) return (int)status;
    const_dnnl_primitive_desc_t pd;
    dnnl_primitive_get_primitive_desc(primitive, &pd);
    dnnl_memory_t mem[4];
    dnnl_exec_arg_t args[4];
    int queries[4] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md, dnnl_query_weights_md};
    int indices[4] = {0, 0, 0, 1};  // weights_md 1 is the bias
    int names[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    void *buffers[4] = {(void *)a, (void *)b, c, (void *)bias};
    int count = bias ? 4 : 3;
    for (int i = 0; i < count; i++) {
        const dnnl_memory_desc_t *q = dnnl_primitive_desc_query_md(pd, queries[i], indices[i]);
        dnnl_memory_create(&mem[i], q, s->engine, buffers[i]);
        args[i] = (dnnl_exec_arg_t){names[i], mem[i]};
    }
    status = dnnl_primitive_execute(primitive, s->stream, count, args);
    if (status == dnnl_success) status = dnnl_stream_wait(s->stream);
    for (int i = 0; i < count; i++) dnnl_memory_destroy(mem[i]);
    return (int)status;
}

static shape_key plain_key(bool f32, bool trans_a, bool trans_b, long m, long n, long k, float alpha,
                           long lda, long ldb, bool bias, float beta, long ldc) {
    shape_key key;
    memset(&key, 0, sizeof key);
    key.ndims = 2; key.batch = key.heads = 1; key.m = m; key.n = n; key.k = k;
    key.sa[0] = trans_a ? 1 : lda; key.sa[1] = trans_a ? lda : 1;
    key.sb[0] = trans_b ? 1 : ldb; key.sb[1] = trans_b ? ldb : 1;
    key.sc[0] = ldc; key.sc[1] = 1;
    key.accumulate = beta == 1.0f; key.bias = bias; key.alpha = alpha; key.f32 = f32;
    return key;
}

int mims_bf16_matmul(bool trans_a, bool trans_b, long m, long n, long k, float alpha,
                     const uint16_t *a, long lda, const uint16_t *b, long ldb, const float *bias,
                     float beta, float *c, long ldc) {
    if ((beta != 0.0f && beta != 1.0f) || (bias && alpha != 1.0f)) return -1;
    shape_key key = plain_key(false, trans_a, trans_b, m, n, k, alpha, lda, ldb, bias != NULL, beta, ldc);
    return execute(&key, a, b, bias, c);
}

int mims_sgemm_matmul(bool trans_a, bool trans_b, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    if (beta != 0.0f && beta != 1.0f) return mims_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    shape_key key = plain_key(true, trans_a, trans_b, m, n, k, alpha, lda, ldb, false, beta, ldc);
    return execute(&key, a, b, NULL, c);
}

int mims_bf16_matmul_batched(long batch, long heads, long m, long n, long k, float alpha,
                             const uint16_t *a, const long a_strides[4], const uint16_t *b,
                             const long b_strides[4], float *c, const long c_strides[4]) {
    shape_key key;
    memset(&key, 0, sizeof key);
    key.ndims = 4; key.batch = batch; key.heads = heads; key.m = m; key.n = n; key.k = k;
    memcpy(key.sa, a_strides, sizeof key.sa);
    memcpy(key.sb, b_strides, sizeof key.sb);
    memcpy(key.sc, c_strides, sizeof key.sc);
    key.alpha = alpha;
    return execute(&key, a, b, NULL, c);
}

int mims_sgemm(bool trans_a, bool trans_b, long m, long n, long k, float alpha,
               const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    omp_set_num_threads(1);
    return (int)dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
