/* CUDA backend parity of the DP-SGD noise: the CUDA table's noise_blocks (cuda_noise_blocks of
 * src/backend/cuda/noise.cu) must give
 * bit for bit the values of the CPU (src/privacy/noise.c) for the same generator state, in plain and
 * hardened mode, for add (from the same random x) and fill, for sizes inside one batch, across batch
 * and block boundaries and over many blocks. Two identically seeded generators are used: one feeds
 * the public CPU functions, the other gives the key that the GPU uses (drawn as noise.c draws it,
 * directly and through dp_noise_gaussian_add_backend); the arrays are compared with memcmp and the
 * generators must still agree afterwards (each call takes exactly four words). Then the moments and
 * the 3σ tail of a large device array, and the backend entry point's validation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dpformer/noise.h"
#include "gpu_testutil.h"
#include "privacy/noise_internal.h"

static const dp_backend *be; /* the CUDA backend's table */
static dp_backend be_noise;  /* a copy of it (the entry point under test takes any table) */
static uint64_t seed = 20240917;

/* Count values of the device array d equal in bits to ref; print the first difference. */
static size_t same_bits(const char *name, const real *d, const real *ref, size_t n) {
    real *h = gt_to_host(be, d, n);
    size_t same = 0, first = n;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&h[i], &ref[i], sizeof(real)) == 0)
            same++;
        else if (first == n)
            first = i;
    }
    tu_checks++;
    if (same != n) {
        tu_failures++;
        printf("  %-40s %zu/%zu values identical FAIL (first difference at %zu: gpu %.9g cpu %.9g)\n", name, same,
               n, first, (double)h[first], (double)ref[first]);
    } else {
        printf("  %-40s %zu/%zu values identical\n", name, same, n);
    }
    free(h);
    return same;
}

/* The key of the next call, drawn as noise.c draws it. */
static void draw_key(dp_rng *r, uint32_t key[8]) {
    for (int j = 0; j < 4; j++) {
        uint64_t k = dp_rng_u64(r);
        key[2 * j] = (uint32_t)k;
        key[2 * j + 1] = (uint32_t)(k >> 32);
    }
}

/* One size: CPU (public functions) against GPU (direct and through the backend entry point), add and
 * fill, with three generators in the same state. */
static void test_size(dp_noise_method method, size_t n, double sigma) {
    const int hardened = method == DP_NOISE_HARDENED;
    const double scale = hardened ? 0.5 * sigma : sigma;
    dp_error err = {{0}};
    char name[128];
    uint64_t s = seed++;
    dp_rng *rc = dp_rng_create_seeded(s), *rg = dp_rng_create_seeded(s), *rb = dp_rng_create_seeded(s);
    CHECK(dp_rng_set_noise_method(rc, method, &err) == 0);
    CHECK(dp_rng_set_noise_method(rg, method, &err) == 0);
    CHECK(dp_rng_set_noise_method(rb, method, &err) == 0);
    real *x0 = gt_random(&seed, n, 1.0);
    real *xc = dp_malloc(sizeof(real) * n);
    uint32_t key[8];

    /* add, from the same x; the second call of the same generators gets a new key */
    for (int call = 0; call < 2; call++) {
        memcpy(xc, x0, sizeof(real) * n);
        CHECK(dp_noise_gaussian_add(rc, xc, n, sigma, &err) == 0);
        real *dg = gt_to_dev(be, x0, sizeof(real) * n), *db = gt_to_dev(be, x0, sizeof(real) * n);
        draw_key(rg, key);
        be->noise_blocks(dg, n, key, scale, hardened, 1);
        CHECK(dp_noise_gaussian_add_backend(rb, &be_noise, db, n, sigma, &err) == 0);
        snprintf(name, sizeof name, "%s n=%zu add #%d (direct)", hardened ? "hardened" : "plain", n, call + 1);
        same_bits(name, dg, xc, n);
        snprintf(name, sizeof name, "%s n=%zu add #%d (backend)", hardened ? "hardened" : "plain", n, call + 1);
        same_bits(name, db, xc, n);
        be->free(dg);
        be->free(db);
    }
    /* fill: every value overwritten (the device array starts as NaN) */
    CHECK(dp_noise_gaussian_fill(rc, xc, n, sigma, &err) == 0);
    real *dg = gt_dev_poison(be, n);
    draw_key(rg, key);
    be->noise_blocks(dg, n, key, scale, hardened, 0);
    draw_key(rb, key); /* keep rb in step (the backend entry point only adds) */
    snprintf(name, sizeof name, "%s n=%zu fill", hardened ? "hardened" : "plain", n);
    same_bits(name, dg, xc, n);
    be->free(dg);

    /* the three generators took the same number of words */
    uint64_t wc = dp_rng_u64(rc), wg = dp_rng_u64(rg), wb = dp_rng_u64(rb);
    CHECK(wc == wg && wc == wb);
    memset(key, 0, sizeof key);
    dp_rng_free(rc), dp_rng_free(rg), dp_rng_free(rb);
    free(x0), free(xc);
}

/* Mean, variance and the fraction beyond 3σ of a large device fill (5 standard errors; variance 1%). */
static void test_distribution(dp_noise_method method, size_t n, double sigma) {
    const int hardened = method == DP_NOISE_HARDENED;
    dp_rng *r = dp_rng_create_seeded(seed++);
    dp_error err = {{0}};
    CHECK(dp_rng_set_noise_method(r, method, &err) == 0);
    uint32_t key[8];
    draw_key(r, key);
    real *d = gt_dev_poison(be, n);
    be->synchronize();
    double t0 = dp_now();
    be->noise_blocks(d, n, key, hardened ? 0.5 * sigma : sigma, hardened, 0);
    be->synchronize();
    double dt = dp_now() - t0;
    real *h = gt_to_host(be, d, n);
    double sum = 0, sum2 = 0;
    size_t tail = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        double v = h[i];
        if (!isfinite(v)) bad++;
        sum += v;
        sum2 += v * v;
        tail += fabs(v) > 3 * sigma;
    }
    double mean = sum / n, var = sum2 / n - mean * mean, frac = (double)tail / n;
    const double p3 = 0.0026997960632601866; /* P(|z| > 3) */
    double se3 = sqrt(p3 * (1 - p3) / n);
    printf("  %-8s n=%zu: mean/sigma %+.5f (tol %.5f) var/sigma^2 %.5f P(>3s) %.6f (%.6f +- %.6f); %.3f ms, "
           "%.3f ns/value\n",
           hardened ? "hardened" : "plain", n, mean / sigma, 5 / sqrt((double)n), var / (sigma * sigma), frac, p3,
           5 * se3, dt * 1e3, dt * 1e9 / n);
    CHECK(bad == 0);
    CHECK(fabs(mean) < 5 * sigma / sqrt((double)n));
    CHECK(fabs(var / (sigma * sigma) - 1) < 0.01);
    CHECK(fabs(frac - p3) < 5 * se3);
    memset(key, 0, sizeof key);
    free(h);
    be->free(d);
    dp_rng_free(r);
}

/* dp_noise_gaussian_add_backend validates as dp_noise_gaussian_add does and n = 0 draws nothing. */
static void test_validation(void) {
    dp_error e1 = {{0}}, e2 = {{0}};
    dp_rng *a = dp_rng_create_seeded(7), *b = dp_rng_create_seeded(7);
    real *d = gt_dev_poison(be, 4);
    CHECK(dp_noise_gaussian_add_backend(a, &be_noise, d, 4, -1.0, &e1) == -1);
    CHECK(dp_noise_gaussian_add(b, NULL, 4, -1.0, &e2) == -1);
    CHECK(strcmp(e1.msg, e2.msg) == 0);
    CHECK(dp_noise_gaussian_add_backend(a, &be_noise, d, 4, NAN, &e1) == -1);
    CHECK(dp_noise_gaussian_add_backend(NULL, &be_noise, d, 4, 1.0, &e1) == -1);
    CHECK(dp_noise_gaussian_add_backend(a, &be_noise, NULL, 4, 1.0, &e1) == -1);
    CHECK(dp_noise_gaussian_add(b, NULL, 4, 1.0, &e2) == -1);
    CHECK(strcmp(e1.msg, e2.msg) == 0);
    CHECK(dp_noise_gaussian_add_backend(a, &be_noise, NULL, 0, 1.0, &e1) == 0);
    CHECK(dp_rng_u64(a) == dp_rng_u64(b)); /* no call drew anything */
    be->free(d);
    dp_rng_free(a), dp_rng_free(b);
}

int main(void) {
    be = gt_cuda_or_skip("test_gpu_noise");
    if (!be) return GT_SKIP;
    be_noise = *be;
    /* the tables' entries (set in cpu_backend.c and cuda_backend.cu) */
    CHECK(be->noise_blocks != NULL && be->noise_blocks != noise_blocks);
    CHECK(dp_backend_cpu()->noise_blocks == noise_blocks);

    const size_t sizes[] = {1, 127, 128, DP_NOISE_BLOCK + 5, 3 * DP_NOISE_BLOCK + 1000, 4 * 1024 * 1024 + 3};
    for (int method = 0; method < 2; method++)
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
            test_size((dp_noise_method)method, sizes[i], i == 2 ? 0.0 : 0.7 + 0.3 * i); /* σ = 0 once */
    test_distribution(DP_NOISE_PLAIN, 4 * 1024 * 1024 + 3, 2.5);
    test_distribution(DP_NOISE_HARDENED, 4 * 1024 * 1024 + 3, 2.5);
    test_validation();
    return tu_finish("test_gpu_noise");
}
