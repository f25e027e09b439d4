/* LayerNorm forward and backward over the last dimension (eps DP_LN_EPS). Statistics are computed
 * in double so that float and double builds differ only by rounding of the stored values. */
#include <math.h>

#include "ops/ops.h"

void layernorm_forward(real *out, real *mean, real *rstd, const real *inp, const real *w, const real *b, long N, int C) {
#pragma omp parallel for schedule(static) if (OPS_PAR(4.0 * N * C))
    for (long r = 0; r < N; r++) {
        const real *x = inp + r * C;
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        for (int i = 0; i < C; i++) {
            double dx = x[i] - m;
            v += dx * dx;
        }
        v /= C;
        double s = 1.0 / sqrt(v + DP_LN_EPS);
        real *o = out + r * C;
        for (int i = 0; i < C; i++) o[i] = (real)((x[i] - m) * s) * w[i] + b[i];
        mean[r] = (real)m;
        rstd[r] = (real)s;
    }
}

void layernorm_backward(real *dinp, real *dw, real *db, const real *dout, const real *inp, const real *w,
                        const real *mean, const real *rstd, long N, int C) {
#pragma omp parallel for schedule(static) if (OPS_PAR(4.0 * N * C))
    for (long r = 0; r < N; r++) {
        const real *x = inp + r * C, *g = dout + r * C;
        real m = mean[r], s = rstd[r];
        double sum_dn = 0, sum_dn_xh = 0;
        for (int i = 0; i < C; i++) {
            double dn = (double)g[i] * w[i];
            sum_dn += dn;
            sum_dn_xh += dn * ((x[i] - m) * s);
        }
        sum_dn /= C;
        sum_dn_xh /= C;
        real *dx = dinp + r * C;
        for (int i = 0; i < C; i++) {
            double xh = (x[i] - m) * s;
            dx[i] += (real)(s * ((double)g[i] * w[i] - sum_dn - xh * sum_dn_xh));
        }
    }
    if (dw || db) {
        /* Parameter gradients are reduced over rows serially: N·C is small and the order is fixed. */
        for (long r = 0; r < N; r++) {
            const real *x = inp + r * C, *g = dout + r * C;
            real m = mean[r], s = rstd[r];
            for (int i = 0; i < C; i++) {
                if (dw) dw[i] += g[i] * ((x[i] - m) * s);
                if (db) db[i] += g[i];
            }
        }
    }
}

void layernorm_per_example_grads(real *gw, real *gb, const real *dout, const real *inp, const real *mean,
                                 const real *rstd, const int *lo, int B, int T, int C) {
#pragma omp parallel for schedule(static) if (OPS_PAR(4.0 * B * T * C))
    for (int b = 0; b < B; b++) {
        real *w = gw + (size_t)b * C, *bb = gb + (size_t)b * C;
        memset(w, 0, sizeof(real) * (size_t)C);
        memset(bb, 0, sizeof(real) * (size_t)C);
        for (int t = lo[b]; t < T; t++) {
            size_t r = (size_t)b * T + t;
            const real *x = inp + r * C, *g = dout + r * C;
            real m = mean[r], s = rstd[r];
            for (int i = 0; i < C; i++) {
                w[i] += g[i] * ((x[i] - m) * s);
                bb[i] += g[i];
            }
        }
    }
}
