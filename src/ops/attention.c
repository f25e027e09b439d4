/* Multi-head scaled dot-product attention (causal or bidirectional, with key-padding mask and
 * dropout on the probabilities, optionally with the Re-Attention logit correction), forward and backward. Parallel over (batch, head) pairs; within a
 * pair the products are single-threaded GEMMs on strided views of the fused qkv buffer (OpenBLAS's
 * OpenMP build runs serially inside a parallel region). Each pair writes only its own slices. */
#include <math.h>

#include "ops/blas.h"
#include "ops/ops.h"

static inline int key_visible(const int32_t *ids_b, int causal, int t, int u) {
    return ids_b[u] != 0 && (!causal || u <= t);
}

/* Softmax of the visible entries of each row of s[T,T] into a (masked entries 0, padding query rows
 * all 0); pd receives the dropped-out probabilities used for the output. */
static void masked_softmax(real *a, real *pd, const real *s, const int32_t *ids_b, int causal, float p,
                           uint64_t seed, uint64_t row0, int ld, int T) {
    const real keep_scale = (real)(p > 0 ? 1.0 / (1.0 - p) : 1.0);
    for (int t = 0; t < T; t++) {
        real *ar = a + (size_t)t * T, *pr = pd + (size_t)t * T;
        const real *sr = s + (size_t)t * T;
        memset(ar, 0, sizeof(real) * (size_t)T);
        if (ids_b[t] == 0) {
            memset(pr, 0, sizeof(real) * (size_t)T);
            continue;
        }
        int ulim = causal ? t + 1 : T;
        real mx = -INFINITY;
        for (int u = 0; u < ulim; u++)
            if (ids_b[u] && sr[u] > mx) mx = sr[u];
        double sum = 0;
        for (int u = 0; u < ulim; u++)
            if (ids_b[u]) sum += (ar[u] = (real)exp((double)(sr[u] - mx)));
        real inv = (real)(1.0 / sum);
        for (int u = 0; u < T; u++) {
            ar[u] *= inv;
            real w = ar[u];
            if (p > 0 && w != 0) w = dp_dropout_keep(seed, row0 + (uint64_t)t * ld + u, p) ? w * keep_scale : 0;
            pr[u] = w;
        }
    }
}

/* Re-Attention: subtract kappa·‖q_t‖²·kvar_u/(2·hd) from the visible logits of s[T,T] (query rows at
 * padding positions are skipped: masked_softmax zeroes them). */
static void reatt_correct(real *s, const real *q, int ld, const real *kvar, const real *qsq, double kappa,
                          const int32_t *ids_b, int causal, int T, int hd) {
    const double cf = kappa / (2.0 * hd);
    for (int t = 0; t < T; t++) {
        if (ids_b[t] == 0) continue;
        double qn = 0;
        if (qsq) qn = qsq[t];
        else
            for (int j = 0; j < hd; j++) qn += (double)q[(size_t)t * ld + j] * q[(size_t)t * ld + j];
        const real c = (real)(cf * qn);
        real *sr = s + (size_t)t * T;
        const int ulim = causal ? t + 1 : T;
        for (int u = 0; u < ulim; u++) sr[u] -= c * kvar[u];
    }
}

/* Re-Attention: ovar[t] = Σ_u pd_tu² vvar_u, the output's noise variance from the values'. */
static void reatt_out_var(real *ovar, const real *pd, const real *vvar, int T) {
    for (int t = 0; t < T; t++) {
        const real *pr = pd + (size_t)t * T;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int u = 0; u < T; u++) acc += (double)pr[u] * pr[u] * vvar[u];
        ovar[t] = (real)acc;
    }
}

void attention_forward(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                       uint64_t seed, int ex0, int B, int T, int C, int H) {
    attention_forward_ra(out, att, qkv, ids, causal, p, seed, ex0, B, T, C, H, NULL);
}

/* The dropout index of probability (0, 0) of sequence b, head h: (off, off) of the full window of
 * w->L positions, whose rows are w->L indices apart. */
static inline uint64_t mask_origin(const dp_mask_window *w, int b, int h, int H) {
    const uint64_t seq = dp_mask_seq(w, b);
    const uint64_t L = (uint64_t)w->L, off = (uint64_t)w->off;
    return (seq * (uint64_t)H + (uint64_t)h) * L * L + off * L + off;
}

void attention_forward_ra(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                          uint64_t seed, int ex0, int B, int T, int C, int H, const attention_reatt *ra) {
    const dp_mask_window w = {T, 0, ex0, NULL};
    attention_forward_window(out, att, qkv, ids, causal, p, seed, &w, B, T, C, H, ra);
}

void attention_forward_window(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                              uint64_t seed, const dp_mask_window *w, int B, int T, int C, int H,
                              const attention_reatt *ra) {
    const int hd = C / H, C3 = 3 * C;
    const real scale = (real)(1.0 / sqrt((double)hd));
#pragma omp parallel if (OPS_PAR(2.0 * B * T * T * C))
    {
        real *s = dp_malloc(sizeof(real) * (size_t)T * T), *pd = dp_malloc(sizeof(real) * (size_t)T * T);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                const int32_t *ids_b = ids + (size_t)b * T;
                const real *q = qkv + (size_t)b * T * C3 + h * hd, *k = q + C, *v = q + 2 * C;
                real *a = att + ((size_t)b * H + h) * T * T;
                /* s = scale · Q Kᵀ  [T,T] */
                dp_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, C3, k, C3, 0, s, T);
                const size_t bh = ((size_t)b * H + h) * T;
                if (ra) reatt_correct(s, q, C3, ra->kvar + bh, ra->qsq ? ra->qsq + bh : NULL, ra->kappa, ids_b, causal, T, hd);
                masked_softmax(a, pd, s, ids_b, causal, p, seed, mask_origin(w, b, h, H), w->L, T);
                if (ra && ra->vvar && ra->ovar) reatt_out_var(ra->ovar + bh, pd, ra->vvar + bh, T);
                /* out = P V  [T,hd], rows of out strided by C */
                dp_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1, pd, T, v, C3, 0,
                        out + (size_t)b * T * C + h * hd, C);
            }
        }
        free(s);
        free(pd);
    }
}

void attention_backward(real *dqkv, const real *dout, const real *qkv, const real *att, const int32_t *ids,
                        int causal, float p, uint64_t seed, int ex0, int B, int T, int C, int H) {
    const dp_mask_window w = {T, 0, ex0, NULL};
    attention_backward_window(dqkv, dout, qkv, att, ids, causal, p, seed, &w, B, T, C, H);
}

void attention_backward_window(real *dqkv, const real *dout, const real *qkv, const real *att, const int32_t *ids,
                               int causal, float p, uint64_t seed, const dp_mask_window *w, int B, int T, int C,
                               int H) {
    const int hd = C / H, C3 = 3 * C;
    const uint64_t ld = (uint64_t)w->L;
    const real scale = (real)(1.0 / sqrt((double)hd));
    const real keep_scale = (real)(p > 0 ? 1.0 / (1.0 - p) : 1.0);
#pragma omp parallel if (OPS_PAR(4.0 * B * T * T * C))
    {
        real *dpd = dp_malloc(sizeof(real) * (size_t)T * T), *pd = dp_malloc(sizeof(real) * (size_t)T * T);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                const int32_t *ids_b = ids + (size_t)b * T;
                const size_t boff = (size_t)b * T * C3 + h * hd;
                const real *q = qkv + boff, *k = q + C, *v = q + 2 * C;
                real *dq = dqkv + boff, *dk = dq + C, *dv = dq + 2 * C;
                const real *a = att + ((size_t)b * H + h) * T * T;
                const real *g = dout + (size_t)b * T * C + h * hd;
                const uint64_t row0 = mask_origin(w, b, h, H);
                /* dropped-out probabilities, regenerated from the stored ones and the hash mask */
                for (int t = 0; t < T; t++)
                    for (int u = 0; u < T; u++) {
                        const size_t i = (size_t)t * T + u;
                        real wt = a[i];
                        if (p > 0 && wt != 0) wt = dp_dropout_keep(seed, row0 + (uint64_t)t * ld + u, p) ? wt * keep_scale : 0;
                        pd[i] = wt;
                    }
                /* dV = P'ᵀ dO ; dP' = dO Vᵀ */
                dp_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1, pd, T, g, C, 0, dv, C3);
                dp_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1, g, C, v, C3, 0, dpd, T);
                /* through dropout and softmax: dS = P ∘ (dP − Σ_u P dP) · scale (masked entries have P = 0) */
                for (int t = 0; t < T; t++) {
                    real *dr = dpd + (size_t)t * T;
                    const real *ar = a + (size_t)t * T;
                    if (ids_b[t] == 0) {
                        memset(dr, 0, sizeof(real) * (size_t)T);
                        continue;
                    }
                    double dot = 0;
                    for (int u = 0; u < T; u++) {
                        real m = 1;
                        if (p > 0 && ar[u] != 0) m = dp_dropout_keep(seed, row0 + (uint64_t)t * ld + u, p) ? keep_scale : 0;
                        dr[u] *= m;
                        dot += (double)ar[u] * dr[u];
                    }
                    for (int u = 0; u < T; u++) dr[u] = key_visible(ids_b, causal, t, u) ? ar[u] * (dr[u] - (real)dot) * scale : 0;
                }
                /* dQ = dS K ; dK = dSᵀ Q */
                dp_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1, dpd, T, k, C3, 0, dq, C3);
                dp_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1, dpd, T, q, C3, 0, dk, C3);
            }
        }
        free(dpd);
        free(pd);
    }
}
