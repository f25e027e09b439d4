/* Re-Attention variance propagation: one small function per rule of docs/reattention.md. A track is
 * one scalar per position (the mean variance of the coordinates of that position's noise under
 * DP-SGD); the model composes these rules alongside its forward pass (src/model/reattention.c).
 * Everything here is O(rows × width) and accumulates in double. */
#include <math.h>

#include "ops/ops.h"

/* Sum of squares in double; the simd reduction lets the compiler vectorise it (the order of the
 * additions then depends on the vector width only, not on the thread count). */
static double sum_square(const real *x, int n) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static double mean_square(const real *x, int n) { return sum_square(x, n) / n; }

void var_embedding(real *v, const int32_t *ids, const real *E, const real *P, const double *r2_item, double r2_dense,
                   int B, int T, int C) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * T * C))
    for (long r = 0; r < (long)B * T; r++) {
        const int t = (int)(r % T);
        const int32_t id = ids[r];
        double x = r2_dense * mean_square(P + (size_t)t * C, C);
        if (id != 0) x += r2_item[id] * mean_square(E + (size_t)id * C, C);
        v[r] = (real)x;
    }
}

void var_layernorm(real *vout, const real *vin, const real *rstd, const real *w, long N, int C) {
    const double g2 = mean_square(w, C);
#pragma omp parallel for schedule(static) if (OPS_PAR((double)N))
    for (long r = 0; r < N; r++) vout[r] = (real)((double)vin[r] * g2 * (double)rstd[r] * rstd[r]);
}

void row_sqnorm(real *xsq, const real *x, long N, int C) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)N * C))
    for (long r = 0; r < N; r++) xsq[r] = (real)sum_square(x + (size_t)r * C, C);
}

void var_linear_stats(double *wsq_per_out, double *ms, const real *w, int OC, int C) {
    double s = 0;
    for (int o = 0; o < OC; o++) s += sum_square(w + (size_t)o * C, C);
    *wsq_per_out = s / OC;
    *ms = s / ((double)OC * C);
}

void var_linear_heads(real *vout, const real *vin, const real *xsq, const double *a, const double *m, double r2_dense,
                      int B, int T, int H, int C) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * T * H))
    for (long r = 0; r < (long)B * T; r++) {
        const long b = r / T, t = r % T;
        const double v = vin[r], x = xsq[r];
        for (int h = 0; h < H; h++) vout[((size_t)b * H + h) * T + t] = (real)(v * a[h] + r2_dense * m[h] * (x + C * v));
    }
}

void var_linear(real *vout, const real *vin, const real *x, const real *w, long N, int C, int OC, double r2_dense) {
    double a, ms;
    var_linear_stats(&a, &ms, w, OC, C);
    real *xsq = dp_malloc(sizeof(real) * (size_t)(N > 0 ? N : 1));
    row_sqnorm(xsq, x, N, C);
    var_linear_heads(vout, vin, xsq, &a, &ms, r2_dense, 1, (int)N, 1, C);
    free(xsq);
}

void var_gelu(real *vout, const real *vin, const real *x, long N, int F) {
    real *g = dp_malloc(sizeof(real) * (size_t)(N > 0 ? N : 1));
    gelu_deriv_sq_rowmean(g, x, N, F);
    for (long r = 0; r < N; r++) vout[r] = vin[r] * g[r];
    free(g);
}

void var_dropout(real *v, long N, int C, float p, uint64_t seed, uint64_t idx0) {
    if (p <= 0) return;
    const double s = 1.0 / ((1.0 - p) * (1.0 - p) * C);
#pragma omp parallel for schedule(static) if (OPS_PAR(4.0 * N * C))
    for (long r = 0; r < N; r++) {
        int kept = 0;
        for (int k = 0; k < C; k++) kept += dp_dropout_keep(seed, idx0 + (uint64_t)r * C + (uint64_t)k, p);
        v[r] = (real)((double)v[r] * kept * s);
    }
}

void var_dropout_window(real *v, int B, int T, int C, float p, uint64_t seed, const dp_mask_window *w) {
    if (p <= 0) return;
    const double s = 1.0 / ((1.0 - p) * (1.0 - p) * C);
#pragma omp parallel for schedule(static) if (OPS_PAR(4.0 * B * T * C))
    for (long r = 0; r < (long)B * T; r++) {
        const uint64_t i0 = dp_mask_row(w, (int)(r / T), (int)(r % T)) * (uint64_t)C;
        int kept = 0;
        for (int k = 0; k < C; k++) kept += dp_dropout_keep(seed, i0 + (uint64_t)k, p);
        v[r] = (real)((double)v[r] * kept * s);
    }
}

void var_heads_mean(real *vout, const real *vh, int B, int T, int H) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * T * H))
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            double s = 0;
            for (int h = 0; h < H; h++) s += vh[((size_t)b * H + h) * T + t];
            vout[(size_t)b * T + t] = (real)(s / H);
        }
}

void attention_query_sqnorm(real *qsq, const real *qkv, int B, int T, int C, int H) {
    const int hd = C / H;
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * T * C))
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const real *q = qkv + ((size_t)b * T + t) * 3 * C;
            for (int h = 0; h < H; h++) qsq[((size_t)b * H + h) * T + t] = (real)sum_square(q + h * hd, hd);
        }
}
