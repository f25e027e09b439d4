/* Small reductions of the per-example clipping engine (src/privacy/clip.c): squared norms and inner
 * products of each example's rows added to its squared gradient norm, and the clipped sum of
 * per-example vectors. Every sum runs in double, each in a fixed order (b, t, i ascending), so the
 * result does not depend on the number of threads. */
#include "ops/ops.h"

void per_example_sqnorm_add(double *sq, const real *x, int B, int W) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * W))
    for (int b = 0; b < B; b++) {
        const real *xb = x + (size_t)b * W;
        double s = 0;
        for (int i = 0; i < W; i++) s += (double)xb[i] * xb[i];
        sq[b] += s;
    }
}

void per_example_dot_add(double *sq, const real *X, const real *Y, const int *lo, int B, int T, int C,
                         double scale) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * T * C))
    for (int b = 0; b < B; b++) {
        /* example b's rows lo[b] .. T−1 are contiguous: one flat loop */
        int t0 = lo[b] < 0 ? 0 : lo[b];
        size_t k0 = ((size_t)b * T + (size_t)t0) * C, k1 = ((size_t)b + 1) * T * C;
        double s = 0;
        for (size_t k = k0; k < k1; k++) s += (double)X[k] * Y[k];
        sq[b] += scale * s;
    }
}

/* Columns go to threads in chunks (each thread reads its chunk of every row, b ascending); each
 * column's sum is made in double and added to dw once. */
#define WRS_CHUNK 256

void weighted_rows_sum(real *dw, const real *x, const double *c, int B, int C) {
    if (B <= 0 || C <= 0) return;
    const int nchunks = (C + WRS_CHUNK - 1) / WRS_CHUNK;
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * C))
    for (int j = 0; j < nchunks; j++) {
        const int i0 = j * WRS_CHUNK, n = C - i0 < WRS_CHUNK ? C - i0 : WRS_CHUNK;
        double acc[WRS_CHUNK];
        for (int i = 0; i < n; i++) acc[i] = 0;
        for (int b = 0; b < B; b++) {
            const real *xb = x + (size_t)b * C + i0;
            const double cb = c[b];
            for (int i = 0; i < n; i++) acc[i] += cb * xb[i];
        }
        for (int i = 0; i < n; i++) dw[i0 + i] += (real)acc[i];
    }
}
