/* Element-wise kernels: exact GELU (and its squared derivative, for the Re-Attention variance track),
 * GPT-2's tanh-approximated GELU, hash-mask dropout, and a vectorisable exp for the softmax. */
#include <math.h>

#include "ops/ops.h"

#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT2PI 0.39894228040143267794

void add_into(real *out, const real *a, const real *b, long n) {
#pragma omp parallel for schedule(static) if (OPS_PAR(n))
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void dropout_forward(real *out, const real *inp, long n, float p, uint64_t seed, uint64_t idx0) {
    if (p <= 0) {
        if (out != inp) memcpy(out, inp, sizeof(real) * (size_t)n);
        return;
    }
    real scale = (real)(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static) if (OPS_PAR(4.0 * n))
    for (long i = 0; i < n; i++) out[i] = dp_dropout_keep(seed, idx0 + (uint64_t)i, p) ? inp[i] * scale : 0;
}

void dropout_backward(real *dinp, const real *dout, long n, float p, uint64_t seed, uint64_t idx0) {
    dropout_forward(dinp, dout, n, p, seed, idx0); /* the mask is its own adjoint */
}

void dropout_window(real *out, const real *inp, int B, int T, int C, float p, uint64_t seed, const dp_mask_window *w) {
    if (p <= 0) {
        if (out != inp) memcpy(out, inp, sizeof(real) * (size_t)B * T * C);
        return;
    }
    real scale = (real)(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static) if (OPS_PAR(4.0 * B * T * C))
    for (long r = 0; r < (long)B * T; r++) {
        const uint64_t i0 = dp_mask_row(w, (int)(r / T), (int)(r % T)) * (uint64_t)C;
        const real *x = inp + r * C;
        real *o = out + r * C;
        for (int c = 0; c < C; c++) o[c] = dp_dropout_keep(seed, i0 + (uint64_t)c, p) ? x[c] * scale : 0;
    }
}

#ifdef DP_REAL_DOUBLE
void vexp(real *out, const real *in, long n) {
    for (long i = 0; i < n; i++) out[i] = exp(in[i]);
}

double vexp_shift_sum(real *z, long n, real shift) {
    double s = 0;
    for (long i = 0; i < n; i++) s += (z[i] = exp(z[i] - shift));
    return s;
}
#else
/* exp(x) = 2^k · e^r with k = round(x / ln 2) and r = x − k·ln 2 computed in two parts (Cody–Waite,
 * so r is accurate even for |k| ≈ 126), |r| ≤ ln2/2, e^r by its degree-7 Taylor polynomial (truncation
 * below 2e-9). Clamping to [−87, 88] keeps 2^k a normal float; exp(−87) ≈ 1.6e-38 stands in for smaller
 * values, which is harmless in a softmax (it adds < 1e-37 relative). */
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define EXP_C7 (1.0f / 5040)
#define EXP_C6 (1.0f / 720)
#define EXP_C5 (1.0f / 120)
#define EXP_C4 (1.0f / 24)
#define EXP_C3 (1.0f / 6)
#define EXP_C2 0.5f

static inline float exp_scalar(float x) {
    if (x != x) return x; /* NaN propagates, so a diverging run is detected */
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float t = x * 1.44269504088896341f;
    float k = (t + 12582912.0f) - 12582912.0f; /* round to nearest without a call */
    float r = (x - k * LN2_HI) - k * LN2_LO;
    float p = ((((((EXP_C7 * r + EXP_C6) * r + EXP_C5) * r + EXP_C4) * r + EXP_C3) * r + EXP_C2) * r + 1.0f) * r + 1.0f;
    union {
        float f;
        int32_t i;
    } u;
    u.i = (int32_t)((uint32_t)((int32_t)k + 127) << 23);
    return p * u.f;
}

#ifdef __AVX512F__
#include <immintrin.h>
static inline __m512 exp_avx512(__m512 x) {
    /* operand order matters: max/min return their second operand when one is NaN, so NaN propagates */
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(EXP_C7);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k); /* p · 2^k */
}
#endif

void vexp(real *out, const real *in, long n) {
    long i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, exp_avx512(_mm512_loadu_ps(in + i)));
#endif
    for (; i < n; i++) out[i] = exp_scalar(in[i]);
}

double vexp_shift_sum(real *z, long n, real shift) {
    long i = 0;
    double s = 0;
#ifdef __AVX512F__
    __m512 sh = _mm512_set1_ps(shift);
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(z + i), sh));
        _mm512_storeu_ps(z + i, e);
        acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    s = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
#endif
    for (; i < n; i++) s += (z[i] = exp_scalar(z[i] - shift));
    return s;
}
#endif

/* ---- exact GELU: x·Φ(x), Φ(x) = (1 + erf(x/√2)) / 2 ---- */
#if !defined(DP_REAL_DOUBLE) && defined(__AVX512F__)
/* Φ and φ for 16 floats: erf by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7, below float
 * resolution of Φ's range), sharing one exp(−x²/2) with the density. */
static inline void phi_avx512(__m512 x, __m512 *cdf, __m512 *pdf) {
    const __m512 ax = _mm512_abs_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)));
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(ax, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 e = exp_avx512(_mm512_mul_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(-0.5f))); /* e^{-x²/2} */
    __m512 erf_abs = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0f));
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 erf = _mm512_mask_sub_ps(erf_abs, neg, _mm512_setzero_ps(), erf_abs);
    *cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f), _mm512_add_ps(_mm512_set1_ps(1.0f), erf));
    *pdf = _mm512_mul_ps(e, _mm512_set1_ps(0.39894228040143267794f));
}
#endif

void gelu_forward(real *out, const real *inp, long n) {
#pragma omp parallel for schedule(static) if (OPS_PAR(8.0 * n))
    for (long b = 0; b < n; b += 4096) {
        long i = b, end = DP_MIN(n, b + 4096);
#if !defined(DP_REAL_DOUBLE) && defined(__AVX512F__)
        for (; i + 16 <= end; i += 16) {
            __m512 x = _mm512_loadu_ps(inp + i), cdf, pdf;
            phi_avx512(x, &cdf, &pdf);
            _mm512_storeu_ps(out + i, _mm512_mul_ps(x, cdf));
        }
#endif
        for (; i < end; i++) {
            double x = inp[i];
            out[i] = (real)(0.5 * x * (1.0 + erf(x * INV_SQRT2)));
        }
    }
}

void gelu_backward(real *dinp, const real *dout, const real *inp, long n) {
#pragma omp parallel for schedule(static) if (OPS_PAR(8.0 * n))
    for (long b = 0; b < n; b += 4096) {
        long i = b, end = DP_MIN(n, b + 4096);
#if !defined(DP_REAL_DOUBLE) && defined(__AVX512F__)
        for (; i + 16 <= end; i += 16) {
            __m512 x = _mm512_loadu_ps(inp + i), cdf, pdf;
            phi_avx512(x, &cdf, &pdf);
            _mm512_storeu_ps(dinp + i, _mm512_mul_ps(_mm512_loadu_ps(dout + i), _mm512_fmadd_ps(x, pdf, cdf)));
        }
#endif
        for (; i < end; i++) {
            double x = inp[i];
            double cdf = 0.5 * (1.0 + erf(x * INV_SQRT2));
            double pdf = INV_SQRT2PI * exp(-0.5 * x * x);
            dinp[i] = (real)(dout[i] * (cdf + x * pdf));
        }
    }
}

void gelu_deriv_sq_rowmean(real *out, const real *inp, long N, int F) {
#pragma omp parallel for schedule(static) if (OPS_PAR(8.0 * N * F))
    for (long r = 0; r < N; r++) {
        const real *x = inp + (size_t)r * F;
        double acc = 0;
        int i = 0;
#if !defined(DP_REAL_DOUBLE) && defined(__AVX512F__)
        __m512 s = _mm512_setzero_ps();
        for (; i + 16 <= F; i += 16) {
            __m512 xv = _mm512_loadu_ps(x + i), cdf, pdf;
            phi_avx512(xv, &cdf, &pdf);
            __m512 d = _mm512_fmadd_ps(xv, pdf, cdf);
            s = _mm512_fmadd_ps(d, d, s);
        }
        acc = _mm512_reduce_add_ps(s);
#endif
        for (; i < F; i++) {
            double xi = x[i];
            double d = 0.5 * (1.0 + erf(xi * INV_SQRT2)) + xi * INV_SQRT2PI * exp(-0.5 * xi * xi);
            acc += d * d;
        }
        out[r] = (real)(acc / F);
    }
}

/* ---- GPT-2's GELU (tanh approximation, Hugging Face's gelu_new):
 *   0.5·x·(1 + tanh(u)),  u = √(2/π)·(x + 0.044715·x³),
 * computed as x·σ(2u) (σ the logistic function; 0.5·(1 + tanh(u)) = σ(2u)), which needs one exp and
 * has no cancellation near u = 0. The derivative is σ(2u) + x·σ(2u)·(1 − σ(2u))·2u'. ---- */
#define GELU_TANH_K 0.79788456080286535588 /* √(2/π) */
#define GELU_TANH_A 0.044715

static inline void gelu_tanh_scalar(double x, double *y, double *dy) {
    const double u2 = 2.0 * GELU_TANH_K * (x + GELU_TANH_A * x * x * x);
    const double s = 1.0 / (1.0 + exp(-u2)); /* exp overflow gives s = 0, the limit */
    *y = x * s;
    if (dy) *dy = s + x * s * (1.0 - s) * 2.0 * GELU_TANH_K * (1.0 + 3.0 * GELU_TANH_A * x * x);
}

#if !defined(DP_REAL_DOUBLE) && defined(__AVX512F__)
/* σ(2u) for 16 floats, through the clamped exp above (σ is 0 or 1 to float precision where it clamps). */
static inline __m512 gelu_tanh_sigma_avx512(__m512 x) {
    const __m512 x2 = _mm512_mul_ps(x, x);
    const __m512 inner = _mm512_fmadd_ps(_mm512_set1_ps((float)GELU_TANH_A), _mm512_mul_ps(x2, x), x);
    const __m512 mu2 = _mm512_mul_ps(_mm512_set1_ps((float)(-2.0 * GELU_TANH_K)), inner);
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp_avx512(mu2)));
}
#endif

void gelu_tanh_forward(real *out, const real *inp, long n) {
#pragma omp parallel for schedule(static) if (OPS_PAR(8.0 * n))
    for (long b = 0; b < n; b += 4096) {
        long i = b, end = DP_MIN(n, b + 4096);
#if !defined(DP_REAL_DOUBLE) && defined(__AVX512F__)
        for (; i + 16 <= end; i += 16) {
            __m512 x = _mm512_loadu_ps(inp + i);
            _mm512_storeu_ps(out + i, _mm512_mul_ps(x, gelu_tanh_sigma_avx512(x)));
        }
#endif
        for (; i < end; i++) {
            double y;
            gelu_tanh_scalar(inp[i], &y, NULL);
            out[i] = (real)y;
        }
    }
}

void gelu_tanh_backward(real *dinp, const real *dout, const real *inp, long n) {
#pragma omp parallel for schedule(static) if (OPS_PAR(8.0 * n))
    for (long b = 0; b < n; b += 4096) {
        long i = b, end = DP_MIN(n, b + 4096);
#if !defined(DP_REAL_DOUBLE) && defined(__AVX512F__)
        const __m512 one = _mm512_set1_ps(1.0f), k2 = _mm512_set1_ps((float)(2.0 * GELU_TANH_K)),
                     a3 = _mm512_set1_ps((float)(3.0 * GELU_TANH_A));
        for (; i + 16 <= end; i += 16) {
            __m512 x = _mm512_loadu_ps(inp + i), s = gelu_tanh_sigma_avx512(x);
            __m512 du2 = _mm512_mul_ps(k2, _mm512_fmadd_ps(a3, _mm512_mul_ps(x, x), one)); /* 2u' */
            __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(x, s), _mm512_sub_ps(one, s)), du2, s);
            _mm512_storeu_ps(dinp + i, _mm512_mul_ps(_mm512_loadu_ps(dout + i), d));
        }
#endif
        for (; i < end; i++) {
            double y, dy;
            gelu_tanh_scalar(inp[i], &y, &dy);
            dinp[i] = (real)(dout[i] * dy);
        }
    }
}
