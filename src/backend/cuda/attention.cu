/* CUDA twins of attention_forward_ra / attention_backward (src/ops/attention.c): multi-head scaled
 * dot-product attention on the fused qkv[B,T,3C] buffer, causal or bidirectional, with the key-padding
 * mask (id 0), hash-mask dropout on the probabilities and the optional Re-Attention logit correction.
 * The products (Q·Kᵀ, P'·V and the four of the backward) are cuBLAS strided-batched GEMMs, one call
 * per head with the batch over sequences (qkv's per-head views have stride T·3C between sequences
 * but hd between heads, so (b, h) cannot be one uniform batch); the masked softmax (+ correction,
 * + the output-variance track) and its backward are warp-per-row kernels with double-precision row
 * sums like the CPU code. att holds the probabilities before dropout; the dropped ones are written
 * per head to a grow-only scratch of at most ATT_SCRATCH_MAX reals (sequences are taken in chunks
 * when B·T² is larger), and the backward regenerates them from the same (seed, index) masks. */
#include "backend/cuda/cuda_common.h"

static_assert(sizeof(real) == sizeof(float), "the CUDA backend is single precision only");

#define ATT_WARPS 8                   /* rows per block of the row kernels, one warp each */
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_SCRATCH_MAX (16l << 20)   /* reals of per-head scratch (64 MiB) before sequences are chunked */
#define ATT_MAX_BATCH 65535           /* sequences per strided-batched GEMM call */
#define ATT_MAX_BLOCKS (1u << 20)     /* grid-stride loops cover the rest */

namespace {

__device__ __forceinline__ double att_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float att_warp_max_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The corrected logit s − c·kvar (c = 0 without Re-Attention), rounded as the CPU's `sr[u] -= c*kvar[u]`
 * (no fused multiply-add, so the three passes of a row see the same value). */
__device__ __forceinline__ float att_logit(const real *a, const real *kv, float c, int u) {
    return kv ? __fsub_rn(a[u], __fmul_rn(c, kv[u])) : a[u];
}

/* Masked softmax in place over the scores in att[B,H,T,T] (one warp per row r = (b·H + h)·T + t), with
 * the Re-Attention correction when kvar != NULL (qsq[B,H,T] optional) and, when ovar != NULL,
 * ovar[r] = Σ_u p'_tu² vvar[b,h,u] with p' the dropped-out probabilities. Padding query rows become 0. */
__global__ void att_softmax_forward_kernel(real *att, const real *qkv, const int32_t *ids, int causal, float p,
                                           real keep_scale, uint64_t seed, int ex0, int B, int T, int C, int H,
                                           const real *kvar, const real *qsq, double kappa, const real *vvar,
                                           real *ovar) {
    const long long r = (long long)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= (long long)B * H * T) return; /* whole warp */
    const int t = (int)(r % T);
    const long long bh = r / T;
    const int h = (int)(bh % H), b = (int)(bh / H);
    const int hd = C / H;
    real *a = att + (size_t)r * T;
    const int32_t *ids_b = ids + (size_t)b * T;
    if (ids_b[t] == 0) {
        for (int u = lane; u < T; u += 32) a[u] = 0;
        if (ovar && lane == 0) ovar[r] = 0;
        return;
    }
    const int ulim = causal ? t + 1 : T;
    float c = 0;
    const real *kv = NULL;
    if (kvar) {
        double qn;
        if (qsq)
            qn = qsq[r];
        else {
            const real *q = qkv + ((size_t)b * T + t) * 3 * C + (size_t)h * hd;
            double s = 0;
            for (int j = lane; j < hd; j += 32) s += (double)q[j] * q[j];
            qn = att_warp_sum_d(s);
        }
        c = (float)(kappa / (2.0 * hd) * qn);
        kv = kvar + (size_t)bh * T;
    }
    float mx = -INFINITY;
    for (int u = lane; u < ulim; u += 32)
        if (ids_b[u]) mx = fmaxf(mx, att_logit(a, kv, c, u));
    mx = att_warp_max_f(mx); /* finite: key t itself is visible */
    double sum = 0;
    for (int u = lane; u < ulim; u += 32)
        if (ids_b[u]) sum += (double)expf(att_logit(a, kv, c, u) - mx);
    sum = att_warp_sum_d(sum);
    const float inv = (float)(1.0 / sum);
    const uint64_t row0 = (((uint64_t)(ex0 + b) * H + h) * T + t) * (uint64_t)T;
    const real *vv = ovar ? vvar + (size_t)bh * T : NULL;
    double acc = 0;
    for (int u = lane; u < T; u += 32) {
        float w = 0;
        if (u < ulim && ids_b[u]) w = expf(att_logit(a, kv, c, u) - mx) * inv;
        a[u] = w;
        if (vv) {
            float wd = w;
            if (p > 0 && wd != 0) wd = dp_dropout_keep_dev(seed, row0 + u, p) ? wd * keep_scale : 0;
            acc += (double)wd * wd * vv[u];
        }
    }
    if (vv) {
        acc = att_warp_sum_d(acc);
        if (lane == 0) ovar[r] = (real)acc;
    }
}

/* pd[nb,T,T] = the dropped-out probabilities of head h of sequences b0 .. b0+nb−1 (p > 0). */
__global__ void att_dropout_head_kernel(real *pd, const real *att, int b0, int nb, int h, int H, int T, float p,
                                        real keep_scale, uint64_t seed, int ex0) {
    const size_t TT = (size_t)T * T, n = (size_t)nb * TT;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const int b = b0 + (int)(i / TT);
        const size_t e = i % TT;
        real w = att[((size_t)b * H + h) * TT + e];
        if (w != 0) w = dp_dropout_keep_dev(seed, ((uint64_t)(ex0 + b) * H + h) * TT + e, p) ? w * keep_scale : 0;
        pd[i] = w;
    }
}

/* In place on d[nb,T,T] = dP' (head h, sequences b0..): through dropout and the softmax,
 * dS = P ∘ (dP − Σ_u P dP) · scale with dP = dP' ∘ mask·keep_scale; zero where masked and on padding
 * query rows. One warp per row. */
__global__ void att_softmax_backward_kernel(real *d, const real *att, const int32_t *ids, int causal, float p,
                                            real keep_scale, uint64_t seed, int ex0, int b0, int nb, int h, int H,
                                            int T, real scale) {
    const long long r = (long long)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= (long long)nb * T) return; /* whole warp */
    const int t = (int)(r % T), b = b0 + (int)(r / T);
    real *dr = d + (size_t)r * T;
    const real *ar = att + (((size_t)b * H + h) * T + t) * (size_t)T;
    const int32_t *ids_b = ids + (size_t)b * T;
    if (ids_b[t] == 0) {
        for (int u = lane; u < T; u += 32) dr[u] = 0;
        return;
    }
    const uint64_t row0 = (((uint64_t)(ex0 + b) * H + h) * T + t) * (uint64_t)T;
    double dot = 0;
    for (int u = lane; u < T; u += 32) {
        const real a = ar[u];
        real g = dr[u];
        if (p > 0 && a != 0) g *= dp_dropout_keep_dev(seed, row0 + u, p) ? keep_scale : (real)0;
        dr[u] = g;
        dot += (double)a * g;
    }
    const real fd = (real)att_warp_sum_d(dot);
    const int ulim = causal ? t + 1 : T;
    for (int u = lane; u < T; u += 32) dr[u] = u < ulim && ids_b[u] ? ar[u] * (dr[u] - fd) * scale : 0;
}

/* Grow-only device scratch (the ops run in issue order on one stream; cudaFree waits for the device). */
real *att_scratch(size_t n) {
    static real *buf;
    static size_t cap;
    if (n > cap) {
        if (buf) CUDA_CHECK(cudaFree(buf));
        buf = NULL;
        cap = 0;
        CUDA_CHECK(cudaMalloc((void **)&buf, sizeof(real) * n));
        cap = n;
    }
    return buf;
}

/* Sequences per chunk: bounded by the scratch size and the GEMM batch limit. */
int att_chunk(int B, int T) {
    long long per = (long long)T * T, nb = per > 0 ? ATT_SCRATCH_MAX / per : B;
    if (nb < 1) nb = 1;
    if (nb > B) nb = B;
    if (nb > ATT_MAX_BATCH) nb = ATT_MAX_BATCH;
    return (int)nb;
}

/* Column-major C = alpha·op(A)·op(B) (beta 0: C is not read) for `batch` matrices at the given strides. */
void att_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float *A, int lda,
              long long sA, const float *Bm, int ldb, long long sB, float *Cm, int ldc, long long sC, int batch) {
    const float beta = 0;
    CUBLAS_CHECK(cublasSgemmStridedBatched(dp_cuda_blas(), ta, tb, m, n, k, &alpha, A, lda, sA, Bm, ldb, sB, &beta, Cm,
                                           ldc, sC, batch));
}

unsigned att_row_blocks(long long rows) { return (unsigned)((rows + ATT_WARPS - 1) / ATT_WARPS); }

unsigned att_elem_blocks(size_t n) {
    size_t b = (n + ATT_THREADS - 1) / ATT_THREADS;
    if (b < 1) b = 1;
    return b > ATT_MAX_BLOCKS ? ATT_MAX_BLOCKS : (unsigned)b;
}

} // namespace

/* Row-major products on column-major cuBLAS: a row-major X[m,n] with leading dimension ld is the
 * column-major Xᵀ with the same ld, so each row-major Z = X·Y below is issued as Zᵀ = Yᵀ·Xᵀ. */
extern "C" void cuda_attention_forward_ra(real *out, real *att, const real *qkv, const int32_t *ids, int causal,
                                          float p, uint64_t seed, int ex0, int B, int T, int C, int H,
                                          const attention_reatt *ra) {
    if (B <= 0 || T <= 0) return;
    const int hd = C / H, C3 = 3 * C;
    const real scale = (real)(1.0 / sqrt((double)hd));
    const real keep_scale = (real)(p > 0 ? 1.0 / (1.0 - p) : 1.0);
    const long long TT = (long long)T * T, sQ = (long long)T * C3, sO = (long long)T * C, sA = (long long)H * TT;
    const int nbmax = att_chunk(B, T);

    /* att[b,h] = scale · Q Kᵀ  (row-major [T,T]: column-major Sᵀ = K·Qᵀ) */
    for (int b0 = 0; b0 < B; b0 += nbmax) {
        const int nb = B - b0 < nbmax ? B - b0 : nbmax;
        for (int h = 0; h < H; h++) {
            const real *q = qkv + (size_t)b0 * sQ + (size_t)h * hd, *k = q + C;
            att_gemm(CUBLAS_OP_T, CUBLAS_OP_N, T, T, hd, scale, k, C3, sQ, q, C3, sQ, att + (size_t)b0 * sA + (size_t)h * TT,
                     T, sA, nb);
        }
    }

    /* masked softmax (+ Re-Attention correction, + output variance) in place */
    const real *kvar = ra ? ra->kvar : NULL, *qsq = ra ? ra->qsq : NULL, *vvar = NULL;
    real *ovar = NULL;
    if (ra && ra->vvar && ra->ovar) {
        vvar = ra->vvar;
        ovar = ra->ovar;
    }
    const long long rows = (long long)B * H * T;
    att_softmax_forward_kernel<<<att_row_blocks(rows), ATT_THREADS>>>(att, qkv, ids, causal, p, keep_scale, seed, ex0, B,
                                                                      T, C, H, kvar, qsq, ra ? ra->kappa : 0.0, vvar,
                                                                      ovar);
    CUDA_CHECK_LAUNCH();

    /* out[b, :, h] = P' V  (row-major [T,hd] with row stride C: column-major outᵀ = Vᵀ·P'ᵀ) */
    real *pd = p > 0 ? att_scratch((size_t)nbmax * (size_t)TT) : NULL;
    for (int b0 = 0; b0 < B; b0 += nbmax) {
        const int nb = B - b0 < nbmax ? B - b0 : nbmax;
        for (int h = 0; h < H; h++) {
            const real *v = qkv + (size_t)b0 * sQ + 2 * (size_t)C + (size_t)h * hd;
            const real *P;
            long long sP;
            if (pd) {
                att_dropout_head_kernel<<<att_elem_blocks((size_t)nb * TT), ATT_THREADS>>>(pd, att, b0, nb, h, H, T, p,
                                                                                           keep_scale, seed, ex0);
                CUDA_CHECK_LAUNCH();
                P = pd;
                sP = TT;
            } else {
                P = att + (size_t)b0 * sA + (size_t)h * TT;
                sP = sA;
            }
            att_gemm(CUBLAS_OP_N, CUBLAS_OP_N, hd, T, T, 1.0f, v, C3, sQ, P, T, sP, out + (size_t)b0 * sO + (size_t)h * hd,
                     C, sO, nb);
        }
    }
}

extern "C" void cuda_attention_backward(real *dqkv, const real *dout, const real *qkv, const real *att,
                                        const int32_t *ids, int causal, float p, uint64_t seed, int ex0, int B, int T,
                                        int C, int H) {
    if (B <= 0 || T <= 0) return;
    const int hd = C / H, C3 = 3 * C;
    const real scale = (real)(1.0 / sqrt((double)hd));
    const real keep_scale = (real)(p > 0 ? 1.0 / (1.0 - p) : 1.0);
    const long long TT = (long long)T * T, sQ = (long long)T * C3, sO = (long long)T * C, sA = (long long)H * TT;
    const int nbmax = att_chunk(B, T);
    /* one [nb,T,T] scratch per head: first P' (for dV), then dP' → dS in place */
    real *s = att_scratch((size_t)nbmax * (size_t)TT);

    for (int b0 = 0; b0 < B; b0 += nbmax) {
        const int nb = B - b0 < nbmax ? B - b0 : nbmax;
        for (int h = 0; h < H; h++) {
            const size_t boff = (size_t)b0 * sQ + (size_t)h * hd;
            const real *q = qkv + boff, *k = q + C, *v = q + 2 * C;
            real *dq = dqkv + boff, *dk = dq + C, *dv = dq + 2 * C;
            const real *g = dout + (size_t)b0 * sO + (size_t)h * hd;
            const real *ah = att + (size_t)b0 * sA + (size_t)h * TT;

            /* dV = P'ᵀ dO  (row-major [T,hd], row stride 3C: column-major dVᵀ = dOᵀ·P') */
            const real *P = ah;
            long long sP = sA;
            if (p > 0) {
                att_dropout_head_kernel<<<att_elem_blocks((size_t)nb * TT), ATT_THREADS>>>(s, att, b0, nb, h, H, T, p,
                                                                                           keep_scale, seed, ex0);
                CUDA_CHECK_LAUNCH();
                P = s;
                sP = TT;
            }
            att_gemm(CUBLAS_OP_N, CUBLAS_OP_T, hd, T, T, 1.0f, g, C, sO, P, T, sP, dv, C3, sQ, nb);

            /* dP' = dO Vᵀ  (row-major [T,T]: column-major dP'ᵀ = V·dOᵀ), into the scratch (P' is used up) */
            att_gemm(CUBLAS_OP_T, CUBLAS_OP_N, T, T, hd, 1.0f, v, C3, sQ, g, C, sO, s, T, TT, nb);

            /* through dropout and softmax: dS in place */
            att_softmax_backward_kernel<<<att_row_blocks((long long)nb * T), ATT_THREADS>>>(
                s, att, ids, causal, p, keep_scale, seed, ex0, b0, nb, h, H, T, scale);
            CUDA_CHECK_LAUNCH();

            /* dQ = dS K  (column-major dQᵀ = Kᵀ·dSᵀ) ; dK = dSᵀ Q  (column-major dKᵀ = Qᵀ·dS) */
            att_gemm(CUBLAS_OP_N, CUBLAS_OP_N, hd, T, T, 1.0f, k, C3, sQ, s, T, TT, dq, C3, sQ, nb);
            att_gemm(CUBLAS_OP_N, CUBLAS_OP_T, hd, T, T, 1.0f, q, C3, sQ, s, T, TT, dk, C3, sQ, nb);
        }
    }
}
