/* Element-wise kernels: exact GELU, hash-mask dropout, and a vectorisable exp for the softmax. */
#include <math.h>

#include "ops/ops.h"

#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT2PI 0.39894228040143267794

void gelu_forward(real *out, const real *inp, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (real)(0.5 * x * (1.0 + erf(x * INV_SQRT2)));
    }
}

void gelu_backward(real *dinp, const real *dout, const real *inp, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        double x = inp[i];
        double cdf = 0.5 * (1.0 + erf(x * INV_SQRT2));
        double pdf = INV_SQRT2PI * exp(-0.5 * x * x);
        dinp[i] = (real)(dout[i] * (cdf + x * pdf));
    }
}

void dropout_forward(real *out, const real *inp, long n, float p, uint64_t seed) {
    if (p <= 0) {
        if (out != inp) memcpy(out, inp, sizeof(real) * (size_t)n);
        return;
    }
    real scale = (real)(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) out[i] = dp_dropout_keep(seed, (uint64_t)i, p) ? inp[i] * scale : 0;
}

void dropout_backward(real *dinp, const real *dout, long n, float p, uint64_t seed) {
    dropout_forward(dinp, dout, n, p, seed); /* the mask is its own adjoint */
}

#ifdef DP_REAL_DOUBLE
void vexp(real *out, const real *in, long n) {
    for (long i = 0; i < n; i++) out[i] = exp(in[i]);
}
#else
/* exp(x) = 2^k · 2^f with k = round(x·log2 e), f ∈ [−1/2, 1/2]; 2^f from a degree-6 polynomial
 * (relative error below 2e-7). Written without calls or branches so the loop vectorises to AVX-512.
 * Inputs below −87 flush to 0 (the softmax only passes x − max ≤ 0). */
void vexp(real *out, const real *in, long n) {
#pragma omp simd
    for (long i = 0; i < n; i++) {
        float x = in[i];
        x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
        float t = x * 1.44269504088896341f;
        float k = __builtin_roundf(t);
        float f = t - k;
        /* Taylor-like minimax coefficients of 2^f on [-0.5, 0.5]. */
        float p = 1.535336188319500e-4f;
        p = p * f + 1.339887440266574e-3f;
        p = p * f + 9.618437357674640e-3f;
        p = p * f + 5.550332471162809e-2f;
        p = p * f + 2.402264791363012e-1f;
        p = p * f + 6.931472028550421e-1f;
        p = p * f + 1.0f;
        union {
            float f;
            int32_t i;
        } u;
        u.i = ((int32_t)k + 127) << 23;
        float r = p * u.f;
        out[i] = in[i] < -87.0f ? 0.0f : r;
    }
}
#endif
