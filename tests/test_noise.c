/* Tests of the randomness of DP-SGD (include/dpformer/noise.h): ChaCha20 against RFC 8439, the
 * generator's modes and saved state, the Gaussian noise's distribution (moments, tails,
 * Kolmogorov–Smirnov) and its independence from the thread count, and the Poisson sampler against
 * Binomial(n, q). Ends with a printed (not asserted) benchmark in ns per sample.
 *
 * Statistical checks use 5 standard errors (a false failure has probability ~6e-7 per check); the
 * seeded ones are deterministic anyway. DPFORMER_NOISE_SAMPLES overrides the 10^6 Gaussian samples
 * per distribution check (e.g. for slow instrumented builds); tolerances scale with it. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dpformer/noise.h"
#include "privacy/rng_internal.h"
#include "testutil.h"

/* See test_golden. The two words were also computed with an independent ChaCha20 implementation
 * (Python's `cryptography`) from the key derivation described in chacha20.c. */
#define GOLDEN_W0 0x6b5175fd97e147e9ull
#define GOLDEN_W1 0xbdd2b50eb55be4bdull
#define GOLDEN_PLAIN 0xd732c944004dd6e7ull
#define GOLDEN_HARDENED 0xa64b1f23255f835aull

static size_t n_samples(void) {
    const char *s = getenv("DPFORMER_NOISE_SAMPLES");
    long v = s && *s ? atol(s) : 0;
    return v >= 10000 ? (size_t)v : 1000000;
}

static void hex_to_bytes(const char *hex, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void block_bytes(const uint32_t w[16], uint8_t out[64]) {
    for (int j = 0; j < 16; j++)
        for (int b = 0; b < 4; b++) out[4 * j + b] = (uint8_t)(w[j] >> (8 * b));
}

/* ---------------------------------------------------------------------------------------------
 * ChaCha20
 * ------------------------------------------------------------------------------------------- */

static void test_chacha_rfc(void) {
    uint32_t key[8];
    for (int j = 0; j < 8; j++) /* key bytes 00 01 .. 1f, read little-endian */
        key[j] = (uint32_t)(4 * j) | (uint32_t)(4 * j + 1) << 8 | (uint32_t)(4 * j + 2) << 16 | (uint32_t)(4 * j + 3) << 24;

    /* §2.3.2: counter 1, nonce 00 00 00 09 00 00 00 4a 00 00 00 00. */
    const uint32_t nonce1[3] = {0x09000000u, 0x4a000000u, 0};
    const char *expect1 = "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
                          "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e";
    uint32_t w[16];
    uint8_t got[64], want[64];
    dp_chacha20_block(key, 1, nonce1, w);
    block_bytes(w, got);
    hex_to_bytes(expect1, want, 64);
    CHECK(memcmp(got, want, 64) == 0);
    CHECK(w[0] == 0xe4e7f110u && w[15] == 0x4e3c50a2u);

    /* §2.4.2: encryption of the "sunscreen" text, counter 1, nonce 00 00 00 00 00 00 00 4a 00 00 00 00. */
    const char *pt = "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
                     "sunscreen would be it.";
    const char *ct_hex = "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dabcd62b357"
                         "1639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
                         "5af90bbf74a35be6b40b8eedf2785e42874d";
    size_t len = strlen(pt);
    CHECK(len == 114);
    uint8_t ct[114], expect_ct[114];
    hex_to_bytes(ct_hex, expect_ct, 114);
    const uint32_t nonce2[3] = {0, 0x4a000000u, 0};
    for (size_t off = 0; off < len; off += 64) {
        dp_chacha20_block(key, (uint32_t)(1 + off / 64), nonce2, w);
        block_bytes(w, got);
        for (size_t i = off; i < len && i < off + 64; i++) ct[i] = (uint8_t)pt[i] ^ got[i - off];
    }
    CHECK(memcmp(ct, expect_ct, len) == 0);

    /* The 16-lane form is the RFC block with the 64-bit counter split over words 12-13; start just
     * below 2^32 so lanes carry into the high word. */
    uint32_t x16[16][DP_CHACHA_LANES];
    const uint64_t c0 = 0xFFFFFFFAull, nonce64 = 0x0123456789abcdefull;
    dp_chacha20_x16(key, c0, nonce64, x16);
    int lanes_ok = 1;
    for (int l = 0; l < DP_CHACHA_LANES; l++) {
        uint64_t c = c0 + (uint64_t)l;
        const uint32_t nz[3] = {(uint32_t)(c >> 32), (uint32_t)nonce64, (uint32_t)(nonce64 >> 32)};
        dp_chacha20_block(key, (uint32_t)c, nz, w);
        for (int j = 0; j < 16; j++) lanes_ok &= x16[j][l] == w[j];
    }
    CHECK(lanes_ok);
}

/* ---------------------------------------------------------------------------------------------
 * Generator: modes and state
 * ------------------------------------------------------------------------------------------- */

static void test_seeded(void) {
    dp_rng *a = dp_rng_create_seeded(42), *b = dp_rng_create_seeded(42), *c = dp_rng_create_seeded(43);
    dp_rng *z = dp_rng_create_seeded(0);
    int same = 1, diff_c = 0, diff_z = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t va = dp_rng_u64(a), vb = dp_rng_u64(b), vc = dp_rng_u64(c), vz = dp_rng_u64(z);
        same &= va == vb;
        diff_c += va != vc;
        diff_z += vz != va;
    }
    CHECK(same);
    CHECK(diff_c == 1000);
    CHECK(diff_z == 1000);
    CHECK(dp_rng_get_mode(a) == DP_RNG_SEEDED);
    CHECK(dp_rng_get_noise_method(a) == DP_NOISE_PLAIN);

    /* uniform and below read the same stream as u64 (checked on a twin generator). */
    dp_rng *d = dp_rng_create_seeded(7), *e = dp_rng_create_seeded(7);
    CHECK(dp_rng_uniform(d) == dp_noise_unit_open(dp_rng_u64(e)));
    int below_ok = 1;
    for (int i = 0; i < 10000; i++) below_ok &= dp_rng_below(d, 10) < 10;
    CHECK(below_ok);
    CHECK(dp_rng_below(d, 0) == 0 && dp_rng_below(d, 1) == 0);
    /* below(2^63 + 1) rejects almost half of the words: still in range. */
    uint64_t big = (1ull << 63) + 1;
    for (int i = 0; i < 100; i++) below_ok &= dp_rng_below(d, big) < big;
    CHECK(below_ok);
    dp_rng_free(a), dp_rng_free(b), dp_rng_free(c), dp_rng_free(z), dp_rng_free(d), dp_rng_free(e);
}

static void test_state(void) {
    dp_error err;
    dp_rng *a = dp_rng_create_seeded(2024);
    CHECK(dp_rng_set_noise_method(a, DP_NOISE_HARDENED, &err) == 0);
    for (int i = 0; i < 37; i++) dp_rng_u64(a); /* mid-block, mid-buffer */
    uint8_t st[DP_RNG_STATE_BYTES];
    char hex[DP_RNG_STATE_HEX_LEN + 1];
    dp_rng_state_save(a, st);
    dp_rng_state_save_hex(a, hex);
    CHECK(strlen(hex) == DP_RNG_STATE_HEX_LEN);

    /* Continuation: words across several buffer refills, then a noise call, then more words. */
    enum { W = 300, NN = 10000 };
    uint64_t wa[W];
    float na[NN], nb[NN], nc[NN];
    for (int i = 0; i < W; i++) wa[i] = dp_rng_u64(a);
    CHECK(dp_noise_gaussian_fill(a, na, NN, 1.5, &err) == 0);
    uint64_t after_a = dp_rng_u64(a);

    dp_rng *b = dp_rng_state_restore(st, sizeof st, &err);
    dp_rng *c = dp_rng_state_restore_hex(hex, &err);
    CHECK(b != NULL && c != NULL);
    if (b && c) {
        CHECK(dp_rng_get_mode(b) == DP_RNG_SEEDED && dp_rng_get_noise_method(b) == DP_NOISE_HARDENED);
        int same = 1;
        for (int i = 0; i < W; i++) same &= dp_rng_u64(b) == wa[i] && dp_rng_u64(c) == wa[i];
        CHECK(same);
        CHECK(dp_noise_gaussian_fill(b, nb, NN, 1.5, &err) == 0);
        CHECK(dp_noise_gaussian_fill(c, nc, NN, 1.5, &err) == 0);
        CHECK(memcmp(na, nb, sizeof na) == 0);
        CHECK(memcmp(na, nc, sizeof na) == 0);
        CHECK(dp_rng_u64(b) == after_a);
        /* Saving a restored generator gives the same bytes as saving the original at that point. */
        uint8_t sa[DP_RNG_STATE_BYTES], sb[DP_RNG_STATE_BYTES];
        dp_rng_state_save(a, sa);
        dp_rng_state_save(b, sb);
        CHECK(memcmp(sa, sb, sizeof sa) == 0);
    }
    dp_rng_free(b), dp_rng_free(c);

    /* Corrupted or malformed states are refused. */
    uint8_t bad[DP_RNG_STATE_BYTES];
    memcpy(bad, st, sizeof bad);
    bad[20] ^= 1; /* a key bit */
    CHECK(dp_rng_state_restore(bad, sizeof bad, &err) == NULL);
    CHECK(strstr(err.msg, "checksum") != NULL);
    CHECK(dp_rng_state_restore(st, sizeof st - 1, &err) == NULL);
    CHECK(dp_rng_state_restore(NULL, 0, &err) == NULL);
    memcpy(bad, st, sizeof bad);
    bad[0] = 'X';
    CHECK(dp_rng_state_restore(bad, sizeof bad, &err) == NULL);
    char badhex[DP_RNG_STATE_HEX_LEN + 1];
    memcpy(badhex, hex, sizeof badhex);
    badhex[10] = 'g';
    CHECK(dp_rng_state_restore_hex(badhex, &err) == NULL);
    CHECK(dp_rng_state_restore_hex("00", &err) == NULL);
    dp_rng_free(a);
}

static void test_secure(void) {
    dp_error err;
    dp_rng *a = dp_rng_create_secure(&err), *b = dp_rng_create_secure(&err);
    CHECK(a != NULL && b != NULL);
    if (!a || !b) {
        fprintf(stderr, "secure generator unavailable: %s\n", err.msg);
        dp_rng_free(a), dp_rng_free(b);
        return;
    }
    CHECK(dp_rng_get_mode(a) == DP_RNG_SECURE && dp_rng_get_noise_method(a) == DP_NOISE_HARDENED);
    int differ = 0;
    for (int i = 0; i < 64; i++) differ += dp_rng_u64(a) != dp_rng_u64(b);
    CHECK(differ == 64);
    CHECK(dp_rng_set_noise_method(a, DP_NOISE_PLAIN, &err) != 0);
    CHECK(dp_rng_get_noise_method(a) == DP_NOISE_HARDENED);

    /* The saved state holds no key; restoring it re-keys: a secure generator, not the continuation. */
    uint8_t st[DP_RNG_STATE_BYTES];
    dp_rng_state_save(a, st);
    int key_zero = 1;
    for (int i = 16; i < 48; i++) key_zero &= st[i] == 0;
    CHECK(key_zero);
    dp_rng *r = dp_rng_state_restore(st, sizeof st, &err);
    CHECK(r != NULL);
    if (r) {
        CHECK(dp_rng_get_mode(r) == DP_RNG_SECURE);
        int differ_r = 0;
        for (int i = 0; i < 64; i++) differ_r += dp_rng_u64(a) != dp_rng_u64(r);
        CHECK(differ_r == 64);
    }
    dp_rng_free(r), dp_rng_free(a), dp_rng_free(b);
}

/* ---------------------------------------------------------------------------------------------
 * Gaussian noise
 * ------------------------------------------------------------------------------------------- */

/* The vectorised uniform / log / sin / cos against long-double libm on chosen and random words. */
static void test_kernels(void) {
    CHECK(dp_noise_unit_open(0) == 0x1p-65);
    CHECK(dp_noise_unit_open(UINT64_MAX) < 1.0 && dp_noise_unit_open(UINT64_MAX) > 0.99);
    CHECK(dp_noise_unit_open(1ull << 63) == 0.5 + 0x1p-65);
    enum { N = 64 };
    uint64_t ur[N], ua[N], s = 99;
    const uint64_t edge[] = {0, 1, UINT64_MAX, 1ull << 63, 1ull << 62, 3ull << 62, (1ull << 61) - 1, 1ull << 61,
                             0xFFFFFFFFFFFFF000ull, 0x0000000000000FFFull};
    double maxerr = 0;
    for (int rep = 0; rep < 200; rep++) {
        for (int i = 0; i < N; i++) {
            ur[i] = (uint64_t)(tu_uniform(&s) * 0x1p53) << 11 ^ (uint64_t)(tu_uniform(&s) * 0x1p53);
            ua[i] = (uint64_t)(tu_uniform(&s) * 0x1p53) << 11 ^ (uint64_t)(tu_uniform(&s) * 0x1p53);
        }
        if (rep == 0)
            for (int i = 0; i < (int)(sizeof edge / sizeof edge[0]); i++) ur[i] = edge[i], ua[N - 1 - i] = edge[i];
        if (rep == 1) /* tiny uniforms: the far tail */
            for (int i = 0; i < N; i++) ur[i] >>= (i % 64);
        double zc[N], zs[N];
        dp_noise_box_muller(ur, ua, N, zc, zs);
        for (int i = 0; i < N; i++) {
            long double u = dp_noise_unit_open(ur[i]);
            long double r = sqrtl(-2.0L * logl(u));
            long double th = 6.283185307179586476925286766559L * ((long double)ua[i] * 0x1p-64L);
            long double ec = fabsl(zc[i] - r * cosl(th)) / fmaxl(1.0L, r);
            long double es = fabsl(zs[i] - r * sinl(th)) / fmaxl(1.0L, r);
            maxerr = fmax(maxerr, (double)fmaxl(ec, es));
        }
    }
    printf("box-muller kernel: max error vs long-double libm %.3g (relative to max(1, r))\n", maxerr);
    CHECK(maxerr < 1e-14);
}

/* Φ, the standard normal CDF. */
static double phi(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Mean, variance, two-sided tails at 2σ and 3σ, and the KS distance to N(0, σ²), each against its
 * tolerance: 5 standard errors for moments and tails, the asymptotic KS critical value
 * sqrt(−ln(α/2)/2)/sqrt(N) at level ks_alpha. */
static void check_gaussian(const char *label, const double *v, size_t n, double sigma, double ks_alpha) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += v[i];
    double mean = sum / (double)n, ss = 0;
    size_t t2 = 0, t3 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = v[i] - mean;
        ss += d * d;
        t2 += fabs(v[i]) > 2 * sigma;
        t3 += fabs(v[i]) > 3 * sigma;
    }
    double var = ss / (double)(n - 1), dn = (double)n;
    double p2 = erfc(2 / sqrt(2.0)), p3 = erfc(3 / sqrt(2.0)); /* P(|Z| > 2), P(|Z| > 3) */
    double f2 = (double)t2 / dn, f3 = (double)t3 / dn;
    double *sorted = dp_malloc(n * sizeof *sorted);
    memcpy(sorted, v, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_double);
    double ks = 0;
    for (size_t i = 0; i < n; i++) {
        double F = phi(sorted[i] / sigma);
        ks = fmax(ks, fmax(F - (double)i / dn, (double)(i + 1) / dn - F));
    }
    free(sorted);
    double ks_crit = sqrt(-0.5 * log(ks_alpha / 2)) / sqrt(dn);
    printf("%-22s n=%zu mean/sigma=%+.5f var/sigma^2=%.5f P(>2s)=%.5f (%.5f) P(>3s)=%.6f (%.6f) KS=%.5f (crit %.5f)\n",
           label, n, mean / sigma, var / (sigma * sigma), f2, p2, f3, p3, ks, ks_crit);
    CHECK(fabs(mean) <= 5 * sigma / sqrt(dn));
    CHECK(fabs(var - sigma * sigma) <= 5 * sigma * sigma * sqrt(2 / dn));
    CHECK(fabs(f2 - p2) <= 5 * sqrt(p2 * (1 - p2) / dn));
    CHECK(fabs(f3 - p3) <= 5 * sqrt(p3 * (1 - p3) / dn));
    CHECK(ks < ks_crit);
}

static void test_gaussian_distribution(void) {
    dp_error err;
    const size_t n = n_samples();
    const double sigma = 2.5;
    float *x = dp_malloc(n * sizeof *x);
    double *v = dp_malloc(n * sizeof *v);

    /* Seeded runs are deterministic, so the KS test can use the 1e-3 level without ever flaking; the
     * secure run is fresh randomness every time, so it uses 1e-6 (a 1e-3 test would fail one CI run in
     * a thousand) while still catching any real defect, which gives a distance many times larger. */
    dp_rng *plain = dp_rng_create_seeded(1), *hard = dp_rng_create_seeded(2), *sec = dp_rng_create_secure(&err);
    CHECK(dp_rng_set_noise_method(hard, DP_NOISE_HARDENED, &err) == 0);
    CHECK(sec != NULL);
    dp_rng *gens[3] = {plain, hard, sec};
    const char *names[3] = {"seeded plain", "seeded hardened", "secure (hardened)"};
    const double alpha[3] = {1e-3, 1e-3, 1e-6};
    for (int g = 0; g < 3; g++) {
        if (!gens[g]) continue;
        CHECK(dp_noise_gaussian_fill(gens[g], x, n, sigma, &err) == 0);
        for (size_t i = 0; i < n; i++) v[i] = x[i];
        check_gaussian(names[g], v, n, sigma, alpha[g]);
    }

    /* Double arrays, and add == fill + the array, exactly (both round x + σz once). */
    dp_rng *a = dp_rng_create_seeded(5), *b = dp_rng_create_seeded(5);
    CHECK(dp_noise_gaussian_fill_f64(a, v, n, 1.0, &err) == 0);
    check_gaussian("seeded plain (double)", v, n, 1.0, 1e-3);
    double *y = dp_malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) y[i] = (double)(i % 17) - 8.0;
    dp_rng_set_noise_method(a, DP_NOISE_HARDENED, &err);
    dp_rng_set_noise_method(b, DP_NOISE_HARDENED, &err);
    dp_rng_u64(b), dp_rng_u64(b), dp_rng_u64(b), dp_rng_u64(b); /* skip the fill call's key */
    CHECK(dp_noise_gaussian_fill_f64(a, v, n, 0.75, &err) == 0);
    CHECK(dp_noise_gaussian_add_f64(b, y, n, 0.75, &err) == 0);
    int add_ok = 1;
    for (size_t i = 0; i < n; i++) add_ok &= y[i] == ((double)(i % 17) - 8.0) + v[i];
    CHECK(add_ok);
    /* The float add rounds (double)x + σz once. */
    dp_rng *c = dp_rng_create_seeded(6), *d = dp_rng_create_seeded(6);
    for (size_t i = 0; i < 1000; i++) x[i] = (float)i * 0.001f;
    CHECK(dp_noise_gaussian_add(c, x, 1000, 0.1, &err) == 0);
    CHECK(dp_noise_gaussian_fill_f64(d, v, 1000, 0.1, &err) == 0);
    int round_ok = 1;
    for (size_t i = 0; i < 1000; i++) round_ok &= x[i] == (float)((double)((float)i * 0.001f) + v[i]);
    CHECK(round_ok);

    /* Plain and hardened differ from the same state, and σ = 0 fills zeros. */
    dp_rng *p = dp_rng_create_seeded(8), *h = dp_rng_create_seeded(8);
    dp_rng_set_noise_method(h, DP_NOISE_HARDENED, &err);
    float xp[64], xh[64];
    dp_noise_gaussian_fill(p, xp, 64, 1.0, &err);
    dp_noise_gaussian_fill(h, xh, 64, 1.0, &err);
    CHECK(memcmp(xp, xh, sizeof xp) != 0);
    dp_noise_gaussian_fill(p, xp, 64, 0.0, &err);
    int zeros = 1;
    for (int i = 0; i < 64; i++) zeros &= xp[i] == 0.0f;
    CHECK(zeros);

    /* Invalid arguments. */
    CHECK(dp_noise_gaussian_add(p, x, 10, -1.0, &err) != 0);
    CHECK(dp_noise_gaussian_add(p, x, 10, NAN, &err) != 0);
    CHECK(dp_noise_gaussian_add(p, x, 10, INFINITY, &err) != 0);
    CHECK(dp_noise_gaussian_add(p, NULL, 10, 1.0, &err) != 0);
    CHECK(dp_noise_gaussian_add(p, NULL, 0, 1.0, &err) == 0);

    dp_rng_free(plain), dp_rng_free(hard), dp_rng_free(sec), dp_rng_free(a), dp_rng_free(b);
    dp_rng_free(c), dp_rng_free(d), dp_rng_free(p), dp_rng_free(h);
    free(x), free(v), free(y);
}

static uint64_t fnv1a64(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Golden values: the seeded stream and the noise computed from it are part of the checkpoint format
 * (a resumed seeded run must continue identically, in any build, on any IEEE-754 machine). A change
 * to these numbers is a format change: it needs a new state version, not a new constant here. */
static void test_golden(void) {
    dp_error err;
    dp_rng *r = dp_rng_create_seeded(2024);
    uint64_t w0 = dp_rng_u64(r), w1 = dp_rng_u64(r);
    enum { N = 3 * DP_NOISE_BLOCK + 77 };
    static float xp[N], xh[N];
    CHECK(dp_noise_gaussian_fill(r, xp, N, 1.0, &err) == 0);
    dp_rng_set_noise_method(r, DP_NOISE_HARDENED, &err);
    CHECK(dp_noise_gaussian_fill(r, xh, N, 1.0, &err) == 0);
    uint64_t hp = fnv1a64(xp, sizeof xp), hh = fnv1a64(xh, sizeof xh);
    printf("golden: words %016llx %016llx, plain %016llx, hardened %016llx\n", (unsigned long long)w0,
           (unsigned long long)w1, (unsigned long long)hp, (unsigned long long)hh);
    CHECK(w0 == GOLDEN_W0 && w1 == GOLDEN_W1);
    CHECK(hp == GOLDEN_PLAIN);
    CHECK(hh == GOLDEN_HARDENED);
    dp_rng_free(r);
}

/* The same state gives the same array with 1 and with 2 threads (n spans many blocks and ends in a
 * partial block and an odd tail). */
static void test_threads(void) {
    dp_error err;
    const size_t n = 25 * DP_NOISE_BLOCK + 1234 + 1;
    float *x1 = dp_malloc(n * sizeof *x1), *x2 = dp_malloc(n * sizeof *x2);
    for (int method = 0; method < 2; method++) {
        dp_rng *a = dp_rng_create_seeded(11), *b = dp_rng_create_seeded(11);
        dp_rng_set_noise_method(a, (dp_noise_method)method, &err);
        dp_rng_set_noise_method(b, (dp_noise_method)method, &err);
        for (size_t i = 0; i < n; i++) x1[i] = x2[i] = (float)(i % 5);
        omp_set_num_threads(1);
        CHECK(dp_noise_gaussian_add(a, x1, n, 1.0, &err) == 0);
        omp_set_num_threads(2);
        int team = 0;
#pragma omp parallel
#pragma omp single
        team = omp_get_num_threads();
        CHECK(team == 2);
        CHECK(dp_noise_gaussian_add(b, x2, n, 1.0, &err) == 0);
        CHECK(memcmp(x1, x2, n * sizeof *x1) == 0);
        CHECK(dp_rng_u64(a) == dp_rng_u64(b));
        dp_rng_free(a), dp_rng_free(b);
    }
    free(x1), free(x2);
}

/* ---------------------------------------------------------------------------------------------
 * Poisson sampling
 * ------------------------------------------------------------------------------------------- */

static void test_poisson_rate(double q) {
    dp_error err;
    enum { N = 1000, DRAWS = 20000 };
    dp_rng *rng = dp_rng_create_seeded(31337);
    int64_t *out = dp_malloc(N * sizeof *out);
    int64_t *hits = dp_calloc(N, sizeof *hits);
    double s1 = 0, s2 = 0;
    int ok = 1;
    for (int d = 0; d < DRAWS; d++) {
        int64_t k = dp_poisson_sample(rng, q, N, out, &err);
        ok &= k >= 0 && k <= N;
        if (k < 0) break;
        for (int64_t i = 0; i < k; i++) {
            ok &= out[i] >= 0 && out[i] < N && (i == 0 || out[i] > out[i - 1]); /* in range, increasing */
            hits[out[i]]++;
        }
        s1 += (double)k;
        s2 += (double)k * (double)k;
    }
    CHECK(ok);
    /* Sizes ~ Binomial(N, q): mean Nq, variance Nq(1−q). The sample variance's standard error uses the
     * binomial excess kurtosis (1 − 6q(1−q)) / (Nq(1−q)). */
    double mu = N * q, var = N * q * (1 - q), D = DRAWS;
    double mean = s1 / D, svar = (s2 - D * mean * mean) / (D - 1);
    double kurt = (1 - 6 * q * (1 - q)) / var;
    double se_var = var * sqrt(2 / (D - 1) + kurt / D);
    /* Each index's inclusion count ~ Binomial(DRAWS, q): the largest of the N z-scores, and their sum
     * of squares (≈ χ² with N degrees of freedom: mean N, standard deviation sqrt(2N)). */
    double zmax = 0, chi2 = 0, sd = sqrt(D * q * (1 - q));
    for (int i = 0; i < N; i++) {
        double z = ((double)hits[i] - D * q) / sd;
        zmax = fmax(zmax, fabs(z));
        chi2 += z * z;
    }
    printf("poisson q=%-5g size mean %.4f (%.4f) var %.4f (%.4f); inclusion max|z| %.2f chi2 %.1f (df %d)\n", q, mean,
           mu, svar, var, zmax, chi2, N);
    CHECK(fabs(mean - mu) <= 5 * sqrt(var / D));
    CHECK(fabs(svar - var) <= 5 * se_var);
    CHECK(zmax < 5.5); /* P(max of 1000 |z| > 5.5) ≈ 4e-5 */
    CHECK(fabs(chi2 - N) <= 5 * sqrt(2.0 * N));
    free(out), free(hits);
    dp_rng_free(rng);
}

static void test_poisson_edges(void) {
    dp_error err;
    enum { N = 1000 };
    dp_rng *rng = dp_rng_create_seeded(4);
    int64_t out[N];
    CHECK(dp_poisson_sample(rng, 1.0, N, out, &err) == N);
    int all = 1;
    for (int i = 0; i < N; i++) all &= out[i] == i;
    CHECK(all);
    /* Tiny q: most batches are empty (P(empty) = (1 − 1e-5)^1000 ≈ 0.990), and empty is a valid result. */
    int empty = 0;
    for (int d = 0; d < 1000; d++) empty += dp_poisson_sample(rng, 1e-5, N, out, &err) == 0;
    CHECK(empty >= 970);
    int none = 1;
    for (int d = 0; d < 100; d++) none &= dp_poisson_sample(rng, 1e-300, N, out, &err) == 0;
    CHECK(none);
    /* q just below 1: almost all. */
    int64_t k = dp_poisson_sample(rng, 1 - 1e-9, N, out, &err);
    CHECK(k >= N - 1);
    CHECK(dp_poisson_sample(rng, 0.5, 0, NULL, &err) == 0);
    CHECK(dp_poisson_sample(rng, 0.5, 1, out, &err) >= 0);
    /* Invalid q and n. */
    const double bad[] = {0.0, -0.1, 1.5, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(dp_poisson_sample(rng, bad[i], N, out, &err) == -1);
    CHECK(strstr(err.msg, "(0, 1]") != NULL);
    CHECK(dp_poisson_sample(rng, 0.5, -1, out, &err) == -1);
    CHECK(dp_poisson_sample(rng, 0.5, 10, NULL, &err) == -1);
    dp_rng_free(rng);
}

/* ---------------------------------------------------------------------------------------------
 * Benchmark (printed, not asserted)
 * ------------------------------------------------------------------------------------------- */

/* The fastest of `reps` calls, in ns per value: the machines this runs on are shared, and the minimum
 * is the cost without interference. */
static double bench_ns(dp_rng *rng, float *x, size_t n, int reps) {
    dp_error err;
    dp_noise_gaussian_add(rng, x, n, 1.0, &err); /* warm-up: page faults, thread start */
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        double t0 = dp_now();
        dp_noise_gaussian_add(rng, x, n, 1e-3, &err);
        best = fmin(best, dp_now() - t0);
    }
    return best / (double)n * 1e9;
}

static void bench(void) {
    dp_error err;
    const size_t n = 1500000; /* about the parameter count of the models trained here */
    float *x = dp_calloc(n, sizeof *x);
    dp_rng *plain = dp_rng_create_seeded(1), *sec = dp_rng_create_secure(&err);
    /* Instrumented or unoptimised builds measure nothing useful: one repetition keeps them fast. */
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
    int reps = 1;
#else
    int reps = n_samples() < 1000000 ? 1 : 10;
#endif
    int maxt = omp_get_max_threads();
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t == 1 ? 1 : maxt);
        printf("bench (%d thread%s, n=%zu, best of %d): seeded plain %.2f ns/sample", t == 1 ? 1 : maxt, t == 1 ? "" : "s", n,
               reps, bench_ns(plain, x, n, reps));
        if (sec) printf(", secure hardened %.2f ns/sample", bench_ns(sec, x, n, reps));
        printf("\n");
    }
    int64_t *idx = dp_malloc(100000 * sizeof *idx);
    double t0 = dp_now();
    int64_t total = 0;
    for (int r = 0; r < 10; r++) total += dp_poisson_sample(plain, 0.01, 100000, idx, &err);
    printf("bench poisson q=0.01 n=100000: %.1f ns per selected index\n", (dp_now() - t0) / (double)total * 1e9);
    free(idx), free(x);
    dp_rng_free(plain), dp_rng_free(sec);
}

int main(void) {
    test_chacha_rfc();
    test_seeded();
    test_state();
    test_secure();
    test_kernels();
    test_gaussian_distribution();
    test_golden();
    test_threads();
    test_poisson_rate(0.01);
    test_poisson_rate(0.3);
    test_poisson_edges();
    bench();
    return tu_finish("test_noise");
}
