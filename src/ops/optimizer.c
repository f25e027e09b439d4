/* Optimiser updates as one flat loop over the contiguous parameter array (the CPU twins of
 * src/backend/cuda/optimizer.cu). Each value's update is computed in double and rounded once. */
#include "ops/ops.h"

#include <math.h>

void adamw_update(real *p, real *m1, real *m2, const real *g, const unsigned char *decay, size_t n, double lr,
                  double b1, double b2, double bc1, double bc2, double eps, double wd) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double gi = g[i];
        double a = b1 * m1[i] + (1 - b1) * gi;
        double v = b2 * m2[i] + (1 - b2) * gi * gi;
        m1[i] = (real)a;
        m2[i] = (real)v;
        double upd = (a / bc1) / (sqrt(v / bc2) + eps);
        if (decay[i]) upd += wd * p[i];
        p[i] -= (real)(lr * upd);
    }
}

void sgd_update(real *p, real *m1, const real *g, const unsigned char *decay, size_t n, double lr, double mu,
                double wd) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double gi = g[i] + (decay[i] ? wd * p[i] : 0);
        double v = mu * m1[i] + gi;
        m1[i] = (real)v;
        p[i] -= (real)(lr * v);
    }
}

void vec_scale(real *x, size_t n, double a) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = (real)(a * x[i]);
}

long count_nonfinite(const real *x, size_t n) {
    long bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (size_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}
