/* Gaussian noise for DP-SGD: x[i] += σ·z_i over millions of values per step, from the ChaCha20
 * stream of a dp_rng. Box–Muller with the project's own log / sin / cos written as branch-free
 * polynomials so that whole batches vectorise (AVX-512 in Release builds), in fixed blocks with their
 * own ChaCha20 streams so OpenMP threads never change the result, and, in hardened mode, each value the
 * scaled sum of four independent normals (the floating-point-attack mitigation; docs/noise.md).
 *
 * Reproducibility across builds: every operation is an IEEE double operation with one defined
 * rounding (explicit fma(), division, sqrt; in ISO C mode, -std=c11, GCC does not contract a*b+c
 * into an fma on its own), so a seeded run gives the same bits in Debug and Release, vectorised or
 * not; tests/test_noise.c pins them with golden values.
 *
 * The block loop (noise_blocks, noise_internal.h) is the CPU's entry of the backend op of that name;
 * src/backend/cuda/noise.cu computes the same blocks on a GPU with the same operations, bit for bit,
 * from the key drawn here (dp_noise_gaussian_add_backend). */
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "core/common.h"
#include "dpformer/noise.h"
#include "privacy/noise_internal.h"
#include "privacy/rng_internal.h"

/* GCC on x86 prefers 256-bit vectors even where AVX-512 is enabled (-march=native); the ChaCha20
 * lanes and the Box–Muller batches are long, regular loops for which 512-bit vectors are about 1.6x
 * faster on the machines measured (docs/noise.md). Harmless where AVX-512 is not enabled. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC target("prefer-vector-width=512")
#endif

#define BATCH_WORDS (DP_CHACHA_LANES * 8) /* 64-bit words per dp_chacha20_x16 call: 128 */
#define BATCH_PAIRS (BATCH_WORDS / 2)     /* Box–Muller pairs per batch: 64 */

/* ---------------------------------------------------------------------------------------------
 * Scalar kernels (inlined into the batch loops, where the compiler vectorises them)
 * ------------------------------------------------------------------------------------------- */

static inline double bits_to_double(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}
static inline uint64_t double_to_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* (w + 1/2) / 2^64 rounded to nearest, then kept below 1: the top 52 bits convert exactly, the low
 * 12 bits add resolution near 0 (the log of small uniforms is the Gaussian tail), one rounding. */
static inline double unit_open(uint64_t w) {
    double hi = (double)(int64_t)(w >> 12) * 0x1p-52;
    double lo = ((double)(int64_t)(w & 0xFFF) + 0.5) * 0x1p-64;
    /* The sum rounds up to 1 only when w >> 12 is all ones; step back one ulp then, without a branch
     * (a branch here defeats vectorisation of the callers). */
    uint64_t b = double_to_bits(hi + lo);
    return bits_to_double(b - (uint64_t)(b == 0x3FF0000000000000ull));
}

double dp_noise_unit_open(uint64_t w) { return unit_open(w); }

/* ln(u) for a normal double u in (0, 1). u = 2^e·m with m in [√½, √2); ln m = 2·atanh(s) with
 * s = (m−1)/(m+1), |s| <= 0.1716, summed to s^21 (truncation below 2^-55 relative); ln 2 is split so
 * that e·ln2_hi is exact. Error: a few ulp, ample for noise. */
static inline double ln_unit(double u) {
    uint64_t b = double_to_bits(u);
    int64_t e = (int64_t)(b >> 52) - 1023;
    uint64_t mb = (b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    uint64_t big = mb > 0x3FF6A09E667F3BCDull; /* m > √2: halve m (exponent − 1) and add 1 to e */
    double m = bits_to_double(mb - (big << 52));
    e += (int64_t)big;
    double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    /* 2/3 + 2/5·y + ... + 2/21·y^9 (y = s²) by Estrin's scheme: the short dependency chain lets the
     * out-of-order core overlap the lanes' polynomials with the division and square root. */
    double y = s2, y2 = y * y, y4 = y2 * y2, y8 = y4 * y4;
    double a0 = fma(2.0 / 5, y, 2.0 / 3), a1 = fma(2.0 / 9, y, 2.0 / 7), a2 = fma(2.0 / 13, y, 2.0 / 11);
    double a3 = fma(2.0 / 17, y, 2.0 / 15), a4 = fma(2.0 / 21, y, 2.0 / 19);
    double p = fma(a4, y8, fma(fma(a3, y2, a2), y4, fma(a1, y2, a0)));
    double ln_m = fma(s * s2, p, 2.0 * s); /* 2s + s^3·(2/3 + ...) */
    const double ln2_hi = 0x1.62e42feep-1, ln2_lo = 0x1.a39ef35793c76p-33;
    double de = (double)e;
    return fma(de, ln2_hi, fma(de, ln2_lo, ln_m));
}

/* cos and sin of the angle 2π·w/2^64. The range reduction is done on the integer: adding 2^61 and
 * taking the top two bits gives the quadrant q (nearest multiple of π/2) and the remaining 62 bits,
 * re-centred, an exact offset f in [−2^61, 2^61), so x = f·π/2^63 lies in [−π/4, π/4) where Taylor
 * series to x^17 / x^16 are accurate to below 1e-17. */
static inline void cos_sin_turn(uint64_t w, double *c_out, double *s_out) {
    uint64_t b = w + (1ull << 61);
    uint64_t q = b >> 62;
    int64_t f = (int64_t)(b & ((1ull << 62) - 1)) - ((int64_t)1 << 61);
    double x = (double)f * 0x1.921fb54442d18p-62; /* π/2 · 2^-62 */
    double x2 = x * x;
    double x4 = x2 * x2;
    /* sin x = x + x³·Σ S_k x^2k, cos x = 1 + x²·Σ C_k x^2k (Taylor, k = 0..7), by Estrin's scheme. */
    double s01 = fma(1.0 / 120.0, x2, -1.0 / 6.0), s23 = fma(1.0 / 362880.0, x2, -1.0 / 5040.0);
    double s45 = fma(1.0 / 6227020800.0, x2, -1.0 / 39916800.0);
    double s67 = fma(1.0 / 355687428096000.0, x2, -1.0 / 1307674368000.0);
    double ps = fma(fma(s67, x4, s45), x4 * x4, fma(s23, x4, s01));
    double s = fma(x * x2, ps, x);
    double c01 = fma(1.0 / 24.0, x2, -0.5), c23 = fma(1.0 / 40320.0, x2, -1.0 / 720.0);
    double c45 = fma(1.0 / 479001600.0, x2, -1.0 / 3628800.0);
    double c67 = fma(1.0 / 20922789888000.0, x2, -1.0 / 87178291200.0);
    double pc = fma(fma(c67, x4, c45), x4 * x4, fma(c23, x4, c01));
    double c = fma(x2, pc, 1.0);
    /* angle = q·π/2 + x: q = 1 gives (−sin x, cos x), q = 2 (−cos x, −sin x), q = 3 (sin x, −cos x). */
    uint64_t bs = double_to_bits(s), bc = double_to_bits(c), swap = 0 - (q & 1);
    uint64_t cq = (bs & swap) | (bc & ~swap), sq = (bc & swap) | (bs & ~swap);
    *c_out = bits_to_double(cq ^ (((q + 1) >> 1 & 1) << 63)); /* flip the sign bit for q = 1, 2 */
    *s_out = bits_to_double(sq ^ ((q >> 1) << 63));           /* and for q = 2, 3 */
}

void dp_noise_box_muller(const uint64_t *ur, const uint64_t *ua, int n, double *z_cos, double *z_sin) {
    for (int i = 0; i < n; i++) {
        double r = sqrt(-2.0 * ln_unit(unit_open(ur[i])));
        double c, s;
        cos_sin_turn(ua[i], &c, &s);
        z_cos[i] = r * c;
        z_sin[i] = r * s;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Blocks
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const uint32_t *key; /* (8) this call's key (four words of the generator's stream) */
    double scale;        /* σ for plain, σ/2 for hardened (the sum of four unit normals has variance 4) */
    int hardened;        /* DP_NOISE_HARDENED: each value the scaled sum of four normals */
    int add;             /* 1: x += noise; 0: x = noise */
    dp_real *xr;         /* (n) the array, when it is dp_real */
    double *xd;          /* (n) the array, when it is double */
} noise_job;

/* Values per batch: 128 normals make 128 plain values or 32 hardened ones. */
static int batch_values(int hardened) { return hardened ? BATCH_PAIRS / 2 : BATCH_WORDS; }

/* Noise for values [start, start + count) of the array: block `block` of the call, drawing from
 * ChaCha20 under the call's key with nonce = block and counters 0, 16, 32, ... (src/backend/cuda/noise.cu
 * computes the same values on a GPU: a change here must be made there too). */
static void noise_block(const noise_job *job, uint64_t block, size_t start, size_t count) {
    uint32_t w[16][DP_CHACHA_LANES];
    uint64_t u[BATCH_WORDS];
    double zc[BATCH_PAIRS], zs[BATCH_PAIRS], v[BATCH_WORDS];
    const int per = batch_values(job->hardened);
    uint64_t counter = 0;
    for (size_t done = 0; done < count; done += (size_t)per, counter += DP_CHACHA_LANES) {
        dp_chacha20_x16(job->key, counter, block, w);
        for (int m = 0; m < 8; m++) /* word m of each block, as in the stream, lane-major in u */
            for (int l = 0; l < DP_CHACHA_LANES; l++)
                u[m * DP_CHACHA_LANES + l] = (uint64_t)w[2 * m][l] | (uint64_t)w[2 * m + 1][l] << 32;
        dp_noise_box_muller(u, u + BATCH_PAIRS, BATCH_PAIRS, zc, zs);
        if (job->hardened) {
            /* Four independent standard normals per value: both outputs of pairs j and j + 32. */
            for (int j = 0; j < BATCH_PAIRS / 2; j++)
                v[j] = ((zc[j] + zs[j]) + (zc[j + 32] + zs[j + 32])) * job->scale;
        } else {
            for (int j = 0; j < BATCH_PAIRS; j++) {
                v[j] = zc[j] * job->scale;
                v[j + BATCH_PAIRS] = zs[j] * job->scale;
            }
        }
        size_t take = DP_MIN((size_t)per, count - done);
        if (job->xr) {
            dp_real *x = job->xr + start + done;
            if (job->add)
                for (size_t i = 0; i < take; i++) x[i] = (dp_real)((double)x[i] + v[i]);
            else
                for (size_t i = 0; i < take; i++) x[i] = (dp_real)v[i];
        } else {
            double *x = job->xd + start + done;
            if (job->add)
                for (size_t i = 0; i < take; i++) x[i] += v[i];
            else
                for (size_t i = 0; i < take; i++) x[i] = v[i];
        }
    }
    /* The noise alone is secret (only x + noise is released): leave none of it on the stack. */
    dp_secure_wipe(w, sizeof w);
    dp_secure_wipe(u, sizeof u);
    dp_secure_wipe(zc, sizeof zc);
    dp_secure_wipe(zs, sizeof zs);
    dp_secure_wipe(v, sizeof v);
}

/* All blocks of a call over values [0, n). */
static void noise_job_run(const noise_job *job, size_t n) {
    const int64_t nblocks = (int64_t)((n + DP_NOISE_BLOCK - 1) / DP_NOISE_BLOCK);
    /* Block b's values depend only on (key, b), so any schedule over any number of threads gives the
     * same array; static scheduling because blocks cost the same. */
#pragma omp parallel for schedule(static) if (nblocks > 1)
    for (int64_t b = 0; b < nblocks; b++) {
        size_t start = (size_t)b * DP_NOISE_BLOCK;
        noise_block(job, (uint64_t)b, start, DP_MIN((size_t)DP_NOISE_BLOCK, n - start));
    }
}

void noise_blocks(dp_real *x, size_t n, const uint32_t key[8], double scale, int hardened, int add) {
    if (n == 0) return;
    noise_job job = {.key = key, .scale = scale, .hardened = hardened != 0, .add = add, .xr = x, .xd = NULL};
    noise_job_run(&job, n);
}

/* The validation and key of a call: -1 with err on bad input; 0 when n = 0 (nothing to do, nothing
 * drawn); 1 with the call's key (four words of the stream, each split low half first), scale and
 * method. The caller wipes the key. */
static int noise_key(dp_rng *rng, const void *x, size_t n, double sigma, uint32_t key[8], double *scale,
                     int *hardened, dp_error *err) {
    if (!rng) return dp_fail(err, "gaussian noise: no random generator");
    if (!(sigma >= 0) || !isfinite(sigma))
        return dp_fail(err, "gaussian noise: sigma must be a finite number >= 0, got %g", sigma);
    if (n == 0) return 0;
    if (!x) return dp_fail(err, "gaussian noise: NULL array of %zu values", n);
    *hardened = dp_rng_get_noise_method(rng) == DP_NOISE_HARDENED;
    *scale = *hardened ? 0.5 * sigma : sigma;
    for (int j = 0; j < 4; j++) {
        uint64_t k = dp_rng_u64(rng);
        key[2 * j] = (uint32_t)k;
        key[2 * j + 1] = (uint32_t)(k >> 32);
    }
    return 1;
}

static int noise_run(dp_rng *rng, dp_real *xr, double *xd, size_t n, double sigma, int add, dp_error *err) {
    uint32_t key[8];
    double scale = 0;
    int hardened = 0;
    int r = noise_key(rng, xr ? (const void *)xr : (const void *)xd, n, sigma, key, &scale, &hardened, err);
    if (r <= 0) return r;
    noise_job job = {.key = key, .scale = scale, .hardened = hardened, .add = add, .xr = xr, .xd = xd};
    noise_job_run(&job, n);
    dp_secure_wipe(key, sizeof key);
    return 0;
}

int dp_noise_gaussian_add_backend(dp_rng *rng, const struct dp_backend *be, dp_real *x, size_t n, double sigma,
                                  dp_error *err) {
    if (!be || !be->noise_blocks) return dp_fail(err, "gaussian noise: no backend to compute it");
    uint32_t key[8];
    double scale = 0;
    int hardened = 0;
    int r = noise_key(rng, x, n, sigma, key, &scale, &hardened, err);
    if (r <= 0) return r;
    be->noise_blocks(x, n, key, scale, hardened, 1);
    dp_secure_wipe(key, sizeof key);
    return 0;
}

int dp_noise_gaussian_add(dp_rng *rng, dp_real *x, size_t n, double sigma, dp_error *err) {
    return noise_run(rng, x, NULL, n, sigma, 1, err);
}
int dp_noise_gaussian_fill(dp_rng *rng, dp_real *x, size_t n, double sigma, dp_error *err) {
    return noise_run(rng, x, NULL, n, sigma, 0, err);
}
int dp_noise_gaussian_add_f64(dp_rng *rng, double *x, size_t n, double sigma, dp_error *err) {
    return noise_run(rng, NULL, x, n, sigma, 1, err);
}
int dp_noise_gaussian_fill_f64(dp_rng *rng, double *x, size_t n, double sigma, dp_error *err) {
    return noise_run(rng, NULL, x, n, sigma, 0, err);
}
