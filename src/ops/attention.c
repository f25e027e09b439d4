/* Multi-head scaled dot-product attention (causal or bidirectional, with key-padding mask and
 * dropout on the probabilities), forward and backward. Parallel over (batch, head) pairs; each pair
 * writes only its own slice, so no synchronisation is needed. */
#include <math.h>

#include "ops/ops.h"

static inline int key_visible(const int32_t *ids_b, int causal, int t, int u) {
    return ids_b[u] != 0 && (!causal || u <= t);
}

void attention_forward(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                       uint64_t seed, int B, int T, int C, int H) {
    const int hd = C / H, C3 = 3 * C;
    const real scale = (real)(1.0 / sqrt((double)hd));
    const real keep_scale = (real)(p > 0 ? 1.0 / (1.0 - p) : 1.0);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const int32_t *ids_b = ids + (size_t)b * T;
            const real *base = qkv + (size_t)b * T * C3;
            for (int t = 0; t < T; t++) {
                real *a = att + (((size_t)b * H + h) * T + t) * T;
                real *o = out + ((size_t)b * T + t) * C + h * hd;
                memset(a, 0, sizeof(real) * (size_t)T);
                memset(o, 0, sizeof(real) * (size_t)hd);
                if (ids_b[t] == 0) continue;
                const real *q = base + (size_t)t * C3 + h * hd;
                real mx = -INFINITY;
                for (int u = 0; u < T; u++) {
                    if (!key_visible(ids_b, causal, t, u)) continue;
                    const real *k = base + (size_t)u * C3 + C + h * hd;
                    real s = 0;
                    for (int i = 0; i < hd; i++) s += q[i] * k[i];
                    s *= scale;
                    a[u] = s;
                    if (s > mx) mx = s;
                }
                double sum = 0;
                for (int u = 0; u < T; u++) {
                    if (!key_visible(ids_b, causal, t, u)) continue;
                    real e = (real)exp((double)(a[u] - mx));
                    a[u] = e;
                    sum += e;
                }
                real inv = (real)(1.0 / sum);
                uint64_t row = (((uint64_t)b * H + h) * T + t) * T;
                for (int u = 0; u < T; u++) {
                    if (!key_visible(ids_b, causal, t, u)) continue;
                    a[u] *= inv;
                    real w = a[u];
                    if (p > 0) w = dp_dropout_keep(seed, row + u, p) ? w * keep_scale : 0;
                    if (w == 0) continue;
                    const real *v = base + (size_t)u * C3 + 2 * C + h * hd;
                    for (int i = 0; i < hd; i++) o[i] += w * v[i];
                }
            }
        }
    }
}

void attention_backward(real *dqkv, const real *dout, const real *qkv, const real *att, const int32_t *ids,
                        int causal, float p, uint64_t seed, int B, int T, int C, int H) {
    const int hd = C / H, C3 = 3 * C;
    const real scale = (real)(1.0 / sqrt((double)hd));
    const real keep_scale = (real)(p > 0 ? 1.0 / (1.0 - p) : 1.0);
#pragma omp parallel
    {
        real *dpr = dp_malloc(sizeof(real) * (size_t)T);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                const int32_t *ids_b = ids + (size_t)b * T;
                const real *base = qkv + (size_t)b * T * C3;
                real *dbase = dqkv + (size_t)b * T * C3;
                for (int t = 0; t < T; t++)
                    for (int j = 0; j < 3; j++) memset(dbase + (size_t)t * C3 + j * C + h * hd, 0, sizeof(real) * (size_t)hd);
                for (int t = 0; t < T; t++) {
                    if (ids_b[t] == 0) continue;
                    const real *a = att + (((size_t)b * H + h) * T + t) * T;
                    const real *g = dout + ((size_t)b * T + t) * C + h * hd;
                    const real *q = base + (size_t)t * C3 + h * hd;
                    real *dq = dbase + (size_t)t * C3 + h * hd;
                    uint64_t row = (((uint64_t)b * H + h) * T + t) * T;
                    double dot = 0;
                    for (int u = 0; u < T; u++) {
                        dpr[u] = 0;
                        if (!key_visible(ids_b, causal, t, u)) continue;
                        real m = 1;
                        if (p > 0) m = dp_dropout_keep(seed, row + u, p) ? keep_scale : 0;
                        if (m == 0) continue;
                        const real *v = base + (size_t)u * C3 + 2 * C + h * hd;
                        real *dv = dbase + (size_t)u * C3 + 2 * C + h * hd;
                        real s = 0, w = a[u] * m;
                        for (int i = 0; i < hd; i++) {
                            s += g[i] * v[i];
                            dv[i] += w * g[i];
                        }
                        dpr[u] = s * m;
                        dot += (double)a[u] * dpr[u];
                    }
                    for (int u = 0; u < T; u++) {
                        if (!key_visible(ids_b, causal, t, u)) continue;
                        real ds = a[u] * (dpr[u] - (real)dot) * scale;
                        if (ds == 0) continue;
                        const real *k = base + (size_t)u * C3 + C + h * hd;
                        real *dk = dbase + (size_t)u * C3 + C + h * hd;
                        for (int i = 0; i < hd; i++) {
                            dq[i] += ds * k[i];
                            dk[i] += ds * q[i];
                        }
                    }
                }
            }
        }
        free(dpr);
    }
}
