/* Kernels of the sequence-classification head (text classification): pooling of the encoder's final
 * hidden states, the DP-FP representation clip with its noise, and softmax cross-entropy over K
 * classes. The head's linear layer itself is linear_forward/backward. Layouts as in ops.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dpformer/model.h"
#include "ops/ops.h"

static int first_token(const int32_t *ids, int T) {
    for (int t = 0; t < T; t++)
        if (ids[t]) return t;
    return -1;
}

void pool_forward(real *pooled, const real *h, const int32_t *ids, int pool, int B, int T, int C) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * T * C))
    for (int b = 0; b < B; b++) {
        real *o = pooled + (size_t)b * C;
        const int32_t *id = ids + (size_t)b * T;
        memset(o, 0, sizeof(real) * (size_t)C);
        if (pool == DP_POOL_FIRST) {
            int t = first_token(id, T);
            if (t >= 0) memcpy(o, h + ((size_t)b * T + t) * C, sizeof(real) * (size_t)C);
        } else {
            int n = 0;
            for (int t = 0; t < T; t++) {
                if (!id[t]) continue;
                const real *x = h + ((size_t)b * T + t) * C;
                for (int i = 0; i < C; i++) o[i] += x[i];
                n++;
            }
            if (n)
                for (int i = 0; i < C; i++) o[i] /= (real)n;
        }
    }
}

void pool_backward(real *dh, const real *dpooled, const int32_t *ids, int pool, int B, int T, int C) {
    memset(dh, 0, sizeof(real) * (size_t)B * T * C);
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * T * C))
    for (int b = 0; b < B; b++) {
        const real *g = dpooled + (size_t)b * C;
        const int32_t *id = ids + (size_t)b * T;
        if (pool == DP_POOL_FIRST) {
            int t = first_token(id, T);
            if (t >= 0) memcpy(dh + ((size_t)b * T + t) * C, g, sizeof(real) * (size_t)C);
        } else {
            int n = 0;
            for (int t = 0; t < T; t++) n += id[t] != 0;
            for (int t = 0; t < T; t++) {
                if (!id[t]) continue;
                real *d = dh + ((size_t)b * T + t) * C;
                for (int i = 0; i < C; i++) d[i] = g[i] / (real)n;
            }
        }
    }
}

void rep_clip_forward(real *rep, real *scale, const real *x, const real *noise, double clip, int B, int C) {
    for (int b = 0; b < B; b++) {
        const real *xb = x + (size_t)b * C;
        real *r = rep + (size_t)b * C;
        double s = 1;
        if (clip > 0) {
            double sq = 0;
            for (int i = 0; i < C; i++) sq += (double)xb[i] * xb[i];
            double norm = sqrt(sq);
            if (norm > clip) s = clip / norm;
        }
        scale[b] = (real)s;
        for (int i = 0; i < C; i++) r[i] = (real)(s * xb[i]) + (noise ? noise[(size_t)b * C + i] : 0);
    }
}

void rep_clip_backward(real *dx, const real *drep, const real *x, const real *scale, int B, int C) {
    for (int b = 0; b < B; b++) {
        const real *xb = x + (size_t)b * C, *g = drep + (size_t)b * C;
        real *d = dx + (size_t)b * C;
        if (scale[b] >= 1) {
            memcpy(d, g, sizeof(real) * (size_t)C);
            continue;
        }
        /* x̄ = clip·x/‖x‖: ∂x̄/∂x = s (I − x xᵀ/‖x‖²) with s = clip/‖x‖ */
        double sq = 0, xg = 0;
        for (int i = 0; i < C; i++) {
            sq += (double)xb[i] * xb[i];
            xg += (double)xb[i] * g[i];
        }
        double s = scale[b], k = xg / sq;
        for (int i = 0; i < C; i++) d[i] = (real)(s * (g[i] - k * xb[i]));
    }
}

void softmax_xent(real *loss, real *dz, const real *z, const int32_t *labels, const real *weight, int B, int K) {
    if (!labels && B > 0) {
        /* a classifier run on a next-item batch (targets, no labels): the callers check the model's task
         * (n_classes) first; stop here with a message rather than read through a null pointer */
        fprintf(stderr, "dpformer: internal error: the loss of a classification model needs labels (dp_batch.labels), "
                        "and the batch has none (a next-item batch given to a classifier?)\n");
        abort();
    }
    for (int b = 0; b < B; b++) {
        const real *zb = z + (size_t)b * K;
        double mx = zb[0], sum = 0;
        for (int k = 1; k < K; k++) mx = zb[k] > mx ? zb[k] : mx;
        for (int k = 0; k < K; k++) sum += exp((double)zb[k] - mx);
        double lse = mx + log(sum);
        loss[b] = (real)(lse - zb[labels[b]]);
        if (!dz) continue;
        double w = weight ? weight[b] : 1;
        for (int k = 0; k < K; k++)
            dz[(size_t)b * K + k] = (real)(w * (exp((double)zb[k] - lse) - (k == labels[b] ? 1.0 : 0.0)));
    }
}
