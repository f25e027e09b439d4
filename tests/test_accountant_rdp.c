/* RDP accountant: the published values of docs reference-values.md (Opacus, TF-Privacy /
 * dp_accounting), and properties that any correct implementation has: q = 1 is the Gaussian
 * mechanism, monotonicity in steps, q, σ and α, integer and fractional orders agreeing at integers,
 * composition adding up, δ(ε) inverting ε(δ), and finite output over the whole supported range. */
#include <math.h>
#include <string.h>

#include "dpformer/accountant.h"
#include "privacy/rdp.h"
#include "testutil.h"

static double eps_one(double q, double sigma, int64_t steps, double delta, const double *orders, size_t n,
                      dp_conversion conv, double *best_order) {
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    dp_rdp_result r = {0};
    CHECK(dp_history_add_poisson_gaussian(&h, sigma, q, steps, &err) == 0);
    CHECK(dp_rdp_epsilon(&h, orders, n, delta, conv, &r, &err) == 0);
    dp_history_free(&h);
    if (best_order) *best_order = r.best_order;
    return r.epsilon;
}

/* {1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5} ∪ {5..63} ∪ {128, 256, 512}: the TF-Privacy test grid. */
static size_t tfp_orders(double *o) {
    const double head[] = {1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5};
    size_t n = 0;
    for (size_t i = 0; i < 10; i++) o[n++] = head[i];
    for (int a = 5; a <= 63; a++) o[n++] = a;
    o[n++] = 128, o[n++] = 256, o[n++] = 512;
    return n;
}

static void test_published(void) {
    double best;
    /* Opacus grid, improved conversion. */
    CHECK_CLOSE(eps_one(0.04, 1.5, 2250, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL), 7.32911117143, 1e-10);
    /* Opacus grid, classic conversion: 8.07385 at order 4.1. */
    CHECK_CLOSE(eps_one(0.04, 1.5, 2250, 1e-5, NULL, 0, DP_CONVERSION_CLASSIC, &best), 8.07385, 1e-6);
    CHECK(best == 4.1);
    const double o5[] = {2, 5, 10, 20, 100};
    CHECK_CLOSE(eps_one(0.01, 1.0, 300, 1e-5, o5, 5, DP_CONVERSION_IMPROVED, &best), 2.39, 5e-3 / 2.39);
    CHECK(best == 5);
    double o[80];
    size_t n = tfp_orders(o);
    CHECK_CLOSE(eps_one(0.0025, 1.3, 6000, 1e-5, o, n, DP_CONVERSION_IMPROVED, &best), 0.7242234026109595, 1e-12);
    CHECK(best == 19);
    CHECK_CLOSE(eps_one(0.001, 1.0, 30000, 1e-7, o, n, DP_CONVERSION_IMPROVED, &best), 1.4154988495444842, 1e-12);
    CHECK(best == 13);

    /* Heterogeneous composition: (1e-5, 1.0, 10 steps) then (1e-4, 3.0, 4 steps), orders 2..32 → 0.336 at 23. */
    double o32[31];
    for (int i = 0; i < 31; i++) o32[i] = 2 + i;
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    dp_rdp_result r;
    CHECK(dp_history_add_poisson_gaussian(&h, 1.0, 1e-5, 10, &err) == 0);
    CHECK(dp_history_add_poisson_gaussian(&h, 3.0, 1e-4, 4, &err) == 0);
    CHECK(dp_rdp_epsilon(&h, o32, 31, 1e-5, DP_CONVERSION_IMPROVED, &r, &err) == 0);
    CHECK_CLOSE(r.epsilon, 0.336, 5e-4 / 0.336);
    CHECK(r.best_order == 23);
    CHECK(!r.at_edge);
    dp_history_free(&h);
}

static void test_gaussian_limit(void) {
    /* q = 1 is the Gaussian mechanism exactly; q a hair below 1 must approach it continuously. */
    const double sig[] = {0.3, 1.0, 2.7, 100.0};
    const double al[] = {1.1, 1.5, 2, 3.7, 12, 63, 512};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 7; j++) {
            double s = sig[i], a = al[j];
            CHECK(dp_rdp_poisson_gaussian(1.0, s, a) == a / (2 * s * s));
            CHECK_CLOSE(dp_rdp_poisson_gaussian(1 - 1e-9, s, a) / (a / (2 * s * s)), 1.0, 1e-5);
        }
    /* The plain Gaussian event is the same mechanism. */
    dp_history h1, h2;
    dp_history_init(&h1), dp_history_init(&h2);
    dp_error err;
    dp_rdp_result r1, r2;
    CHECK(dp_history_add_gaussian(&h1, 2.0, 5, &err) == 0);
    CHECK(dp_history_add_poisson_gaussian(&h2, 2.0, 1.0, 5, &err) == 0);
    CHECK(dp_rdp_epsilon(&h1, NULL, 0, 1e-6, DP_CONVERSION_IMPROVED, &r1, &err) == 0);
    CHECK(dp_rdp_epsilon(&h2, NULL, 0, 1e-6, DP_CONVERSION_IMPROVED, &r2, &err) == 0);
    CHECK(r1.epsilon == r2.epsilon);
    dp_history_free(&h1), dp_history_free(&h2);
}

static void test_integer_vs_fractional(void) {
    /* At an integer α the two-sided series is a finite sum whose halves recombine into the binomial sum. */
    const double qs[] = {1e-5, 0.001, 0.04, 0.3, 0.9};
    const double ss[] = {0.4, 1.0, 1.5, 5.0};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 4; j++)
            for (int a = 2; a <= 40; a += (a < 8 ? 1 : 7)) {
                double li = rdp_log_a_int(qs[i], ss[j], a), lf = rdp_log_a_frac(qs[i], ss[j], a);
                double scale = fmax(fabs(li), 1e-300);
                tu_checks++;
                if (!(fabs(li - lf) <= 1e-9 * scale + 1e-15)) {
                    tu_failures++;
                    fprintf(stderr, "q=%g s=%g a=%d: int %.17g frac %.17g\n", qs[i], ss[j], a, li, lf);
                }
            }
    /* Continuity across an integer: the fractional series just beside α = 5 matches the integer value. */
    double mid = dp_rdp_poisson_gaussian(0.04, 1.5, 5.0);
    CHECK_CLOSE(dp_rdp_poisson_gaussian(0.04, 1.5, 5.0 - 1e-9), mid, 1e-7);
    CHECK_CLOSE(dp_rdp_poisson_gaussian(0.04, 1.5, 5.0 + 1e-9), mid, 1e-7);
}

static void test_monotone(void) {
    double e0 = eps_one(0.01, 1.0, 1000, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL);
    CHECK(eps_one(0.01, 1.0, 2000, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL) > e0);
    CHECK(eps_one(0.02, 1.0, 1000, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL) > e0);
    CHECK(eps_one(0.01, 1.2, 1000, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL) < e0);
    CHECK(eps_one(0.01, 1.0, 1000, 1e-6, NULL, 0, DP_CONVERSION_IMPROVED, NULL) > e0);
    /* The improved conversion is never worse than the classic one. */
    CHECK(eps_one(0.01, 1.0, 1000, 1e-5, NULL, 0, DP_CONVERSION_CLASSIC, NULL) > e0);
    /* Along a sweep, strictly increasing in steps and q, decreasing in σ. */
    double prev = 0;
    for (int64_t t = 1; t <= 10000000; t *= 10) {
        double e = eps_one(0.001, 1.0, t, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL);
        CHECK(e > prev);
        prev = e;
    }
    prev = 0;
    for (double q = 1e-5; q <= 1; q *= 4) {
        double e = eps_one(q, 1.0, 100, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL);
        CHECK(e > prev);
        prev = e;
    }
    prev = INFINITY;
    for (double s = 0.5; s <= 64; s *= 2) {
        double e = eps_one(0.01, s, 1000, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL);
        CHECK(e < prev);
        prev = e;
    }
    /* Per-step RDP is non-decreasing in α (Rényi divergences are). */
    double o[DP_RDP_DEFAULT_N_ORDERS];
    dp_rdp_default_orders(o);
    const double qs[] = {1e-4, 0.01, 0.3};
    for (size_t i = 0; i < 3; i++) {
        double last = 0;
        int ok = 1;
        for (size_t k = 0; k < DP_RDP_DEFAULT_N_ORDERS; k++) {
            double r = dp_rdp_poisson_gaussian(qs[i], 0.8, o[k]);
            if (!(r >= last * (1 - 1e-9))) ok = 0;
            last = r;
        }
        CHECK(ok);
    }
}

static void test_composition_and_inverse(void) {
    double o[DP_RDP_DEFAULT_N_ORDERS], ra[DP_RDP_DEFAULT_N_ORDERS], rb[DP_RDP_DEFAULT_N_ORDERS];
    double rab[DP_RDP_DEFAULT_N_ORDERS], sum[DP_RDP_DEFAULT_N_ORDERS];
    size_t n = dp_rdp_default_orders(o);
    dp_history a, b, ab;
    dp_history_init(&a), dp_history_init(&b), dp_history_init(&ab);
    dp_error err;
    CHECK(dp_history_add_poisson_gaussian(&a, 1.1, 0.02, 700, &err) == 0);
    CHECK(dp_history_add_gaussian(&b, 4.0, 3, &err) == 0);
    CHECK(dp_history_add_poisson_gaussian(&ab, 1.1, 0.02, 700, &err) == 0);
    CHECK(dp_history_add_gaussian(&ab, 4.0, 3, &err) == 0);
    CHECK(dp_rdp_compute(&a, o, n, ra, &err) == 0);
    CHECK(dp_rdp_compute(&b, o, n, rb, &err) == 0);
    CHECK(dp_rdp_compute(&ab, o, n, rab, &err) == 0);
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        sum[i] = ra[i] + rb[i];
        if (fabs(sum[i] - rab[i]) > 1e-13 * rab[i]) ok = 0;
        if (fabs(ra[i] - 700 * dp_rdp_poisson_gaussian(0.02, 1.1, o[i])) > 1e-13 * ra[i]) ok = 0;
    }
    CHECK(ok);
    dp_rdp_result r1, r2;
    CHECK(dp_rdp_epsilon(&ab, o, n, 1e-5, DP_CONVERSION_IMPROVED, &r1, &err) == 0);
    CHECK(dp_rdp_to_epsilon(o, sum, n, 1e-5, DP_CONVERSION_IMPROVED, &r2, &err) == 0);
    CHECK_CLOSE(r1.epsilon, r2.epsilon, 1e-13);
    /* δ at the computed ε gives back δ (the same order attains both optima). */
    for (int c = 0; c < 2; c++) {
        dp_rdp_result re, rd;
        CHECK(dp_rdp_epsilon(&ab, NULL, 0, 1e-5, (dp_conversion)c, &re, &err) == 0);
        CHECK(dp_rdp_delta(&ab, NULL, 0, re.epsilon, (dp_conversion)c, &rd, &err) == 0);
        CHECK_CLOSE(rd.delta / 1e-5, 1.0, 1e-9);
        CHECK(rd.best_order == re.best_order);
    }
    /* An empty history is perfectly private. */
    dp_history empty;
    dp_history_init(&empty);
    CHECK(dp_rdp_epsilon(&empty, NULL, 0, 1e-5, DP_CONVERSION_IMPROVED, &r1, &err) == 0);
    CHECK(r1.epsilon == 0);
    dp_history_free(&a), dp_history_free(&b), dp_history_free(&ab);
}

static void test_edge_and_errors(void) {
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    dp_rdp_result r;
    CHECK(dp_history_add_poisson_gaussian(&h, 1.0, 0.01, 300, &err) == 0);
    /* Orders {2, 3}: the optimum (order 5 on a wider grid) lies beyond the last one. */
    const double o2[] = {2, 3};
    CHECK(dp_rdp_epsilon(&h, o2, 2, 1e-5, DP_CONVERSION_IMPROVED, &r, &err) == 0);
    CHECK(r.at_edge && r.best_order == 3);
    CHECK(dp_rdp_epsilon(&h, NULL, 0, 1e-5, DP_CONVERSION_IMPROVED, &r, &err) == 0);
    CHECK(!r.at_edge);
    CHECK(dp_rdp_epsilon(&h, o2, 0, 1e-5, DP_CONVERSION_IMPROVED, &r, &err) != 0);
    CHECK(strstr(err.msg, "empty") != NULL);
    const double bad[] = {2, 1.0};
    CHECK(dp_rdp_epsilon(&h, bad, 2, 1e-5, DP_CONVERSION_IMPROVED, &r, &err) != 0);
    CHECK(dp_rdp_epsilon(&h, NULL, 0, 0.0, DP_CONVERSION_IMPROVED, &r, &err) != 0);
    CHECK(strstr(err.msg, "delta") != NULL);
    CHECK(dp_rdp_epsilon(&h, NULL, 0, 1.0, DP_CONVERSION_IMPROVED, &r, &err) != 0);
    CHECK(dp_rdp_delta(&h, NULL, 0, -1.0, DP_CONVERSION_IMPROVED, &r, &err) != 0);
    CHECK(isnan(dp_rdp_poisson_gaussian(0.0, 1.0, 2.0)));
    CHECK(isnan(dp_rdp_poisson_gaussian(0.5, 0.0, 2.0)));
    CHECK(isnan(dp_rdp_poisson_gaussian(0.5, 1.0, 1.0)));
    CHECK(dp_history_add_poisson_gaussian(&h, 1.0, 1.5, 1, &err) != 0);
    CHECK(dp_history_add_poisson_gaussian(&h, -1.0, 0.5, 1, &err) != 0);
    CHECK(dp_history_add_poisson_gaussian(&h, 1.0, 0.5, -1, &err) != 0);
    dp_history_free(&h);
}

static void test_robust_range(void) {
    /* q from 1e-6 to 1, σ from 0.3 to 100, up to 1e7 steps: finite, non-negative, ordered. */
    const double qs[] = {1e-6, 1e-4, 0.01, 0.3, 0.99, 1.0};
    const double ss[] = {0.3, 0.7, 1.0, 3.0, 10.0, 100.0};
    int finite = 1, ordered = 1;
    for (size_t i = 0; i < 6; i++)
        for (size_t j = 0; j < 6; j++) {
            double e1 = eps_one(qs[i], ss[j], 1, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL);
            double e2 = eps_one(qs[i], ss[j], 10000000, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL);
            if (!isfinite(e1) || !isfinite(e2) || e1 < 0) {
                finite = 0;
                fprintf(stderr, "q=%g sigma=%g: eps %g %g\n", qs[i], ss[j], e1, e2);
            }
            if (!(e2 >= e1)) ordered = 0;
        }
    CHECK(finite);
    CHECK(ordered);
    /* Where the per-step RDP is ~1e-16 (tiny q, huge σ) the bound must still be positive and at least the
     * conversion term alone at the best order (RDP >= 0), not collapse to 0 through cancellation. */
    double e = eps_one(1e-6, 100.0, 10000000, 1e-5, NULL, 0, DP_CONVERSION_IMPROVED, NULL);
    double floor_term = INFINITY, o[DP_RDP_DEFAULT_N_ORDERS];
    dp_rdp_default_orders(o);
    for (size_t k = 0; k < DP_RDP_DEFAULT_N_ORDERS; k++)
        floor_term = fmin(floor_term, log1p(-1 / o[k]) - (log(1e-5) + log(o[k])) / (o[k] - 1));
    CHECK(e >= floor_term);
    CHECK(e < floor_term + 1e-6);
}

/* Noise multipliers whose square overflows or underflows (found by fuzzing the history reader): no
 * noise means infinite RDP at every order (integer orders used to give 0, so ε came out 0), and both
 * extremes answer at once instead of running the fractional series' whole loop. */
static void test_extreme_sigma(void) {
    const double orders[] = {1.5, 2, 32.5, 33};
    for (int i = 0; i < 4; i++) {
        CHECK(dp_rdp_poisson_gaussian(0.5, 1e-160, orders[i]) == INFINITY);
        CHECK(dp_rdp_poisson_gaussian(0.01, 4.9406564584124654e-324, orders[i]) == INFINITY);
        CHECK(dp_rdp_poisson_gaussian(0.5, 1e200, orders[i]) == 0.0);
    }
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    CHECK(dp_history_add_poisson_gaussian(&h, 1e-160, 0.5, 1, &err) == 0);
    dp_rdp_result r;
    CHECK(dp_rdp_epsilon(&h, orders, 4, 1e-5, DP_CONVERSION_IMPROVED, &r, &err) == 0 && r.epsilon == INFINITY);
    dp_history_free(&h);
}

int main(void) {
    test_published();
    test_extreme_sigma();
    test_gaussian_limit();
    test_integer_vs_fractional();
    test_monotone();
    test_composition_and_inverse();
    test_edge_and_errors();
    test_robust_range();
    return tu_finish("test_accountant_rdp");
}
