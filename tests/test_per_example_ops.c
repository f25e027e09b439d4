/* Tests of the clipping engine's small reductions (src/ops/per_example.c): per_example_sqnorm_add,
 * per_example_dot_add and weighted_rows_sum against straightforward double loops on random inputs
 * (accumulating onto random starting values; first positions lo[b] from 0 to T; widths below, at and
 * across the column chunk), the double accumulation that single precision needs (sums a float
 * accumulator would get wrong come out exact), results independent of the thread count, and B = 0 and
 * empty rows leaving everything alone. Written for either precision of `real`. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "ops/ops.h"
#include "testutil.h"

static uint64_t rng = 424242;

/* One rounding of real (the result of weighted_rows_sum is rounded once to real). */
#ifdef DP_REAL_DOUBLE
#define REAL_EPS DBL_EPSILON
#else
#define REAL_EPS FLT_EPSILON
#endif

static real *random_reals(size_t n, double scale) {
    real *x = dp_malloc(sizeof(real) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = (real)(scale * tu_normal(&rng));
    return x;
}

static double *random_doubles(size_t n, double lo, double hi) {
    double *x = dp_malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * tu_uniform(&rng);
    return x;
}

static void test_sqnorm(int B, int W) {
    real *x = random_reals((size_t)B * W, 1.0);
    double *sq = random_doubles(B, 0.5, 1.5), *ref = dp_malloc(sizeof(double) * B);
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int i = 0; i < W; i++) s += (double)x[(size_t)b * W + i] * (double)x[(size_t)b * W + i];
        ref[b] = sq[b] + s;
    }
    per_example_sqnorm_add(sq, x, B, W);
    for (int b = 0; b < B; b++) CHECK_CLOSE(sq[b], ref[b], 1e-12);
    free(x);
    free(sq);
    free(ref);
}

static void test_dot(int B, int T, int C, double scale) {
    size_t n = (size_t)B * T * C;
    real *X = random_reals(n, 1.0), *Y = random_reals(n, 1.0);
    double *sq = random_doubles(B, 0.5, 1.5), *ref = dp_malloc(sizeof(double) * B);
    double *sq0 = dp_malloc(sizeof(double) * B);
    int *lo = dp_malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++) {
        lo[b] = b == 0 ? 0 : b == B - 1 ? T : (int)(tu_uniform(&rng) * T); /* 0, T and between */
        double s = 0;
        for (int t = lo[b]; t < T; t++)
            for (int i = 0; i < C; i++) {
                size_t k = ((size_t)b * T + t) * C + i;
                s += (double)X[k] * (double)Y[k];
            }
        ref[b] = sq[b] + scale * s;
        sq0[b] = sq[b];
    }
    per_example_dot_add(sq, X, Y, lo, B, T, C, scale);
    for (int b = 0; b < B; b++) {
        CHECK_CLOSE(sq[b], ref[b], 1e-12);
        if (lo[b] == T) CHECK(sq[b] == sq0[b]); /* no rows: exactly unchanged */
    }
    free(X);
    free(Y);
    free(sq);
    free(ref);
    free(sq0);
    free(lo);
}

static void test_weighted_rows_sum(int B, int C) {
    real *x = random_reals((size_t)B * C, 1.0), *dw = random_reals(C, 1.0);
    double *c = random_doubles(B, 0.1, 1.1), *ref = dp_malloc(sizeof(double) * (C ? C : 1));
    double *sum = dp_malloc(sizeof(double) * (C ? C : 1));
    for (int i = 0; i < C; i++) {
        double s = 0;
        for (int b = 0; b < B; b++) s += c[b] * (double)x[(size_t)b * C + i];
        sum[i] = s;
        ref[i] = (double)dw[i] + s;
    }
    weighted_rows_sum(dw, x, c, B, C);
    /* the sum rounded to real once, then added in real: a half-ulp of each, nothing more */
    for (int i = 0; i < C; i++) {
        tu_checks++;
        double err = fabs((double)dw[i] - ref[i]), bound = 0.5 * REAL_EPS * (fabs(sum[i]) + fabs(ref[i])) * 1.0001;
        if (!(err <= bound)) {
            tu_failures++;
            fprintf(stderr, "weighted_rows_sum B=%d C=%d: dw[%d] = %.10g, expected %.10g (error %.3g > %.3g)\n", B,
                    C, i, (double)dw[i], ref[i], err, bound);
        }
    }
    free(x);
    free(dw);
    free(c);
    free(ref);
    free(sum);
}

/* Sums a real accumulator would lose: a large value then many small ones. */
static void test_double_accumulation(void) {
    const int W = 1001;
    /* ‖(4096, 1, …, 1)‖² = 2^24 + 1000: in float, 2^24 + 1 rounds back to 2^24 */
    real *x = dp_malloc(sizeof(real) * 2 * W);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < W; i++) x[(size_t)b * W + i] = i == 0 ? (real)4096 : (real)1;
    double sq[2] = {0, 0.25};
    per_example_sqnorm_add(sq, x, 2, W);
    CHECK(sq[0] == 16777216.0 + 1000);
    CHECK(sq[1] == 16777216.0 + 1000 + 0.25);
    /* the same as an inner product of T = W rows of C = 1, from lo = 0 and lo = 1 (skipping the 4096) */
    int lo[2] = {0, 1};
    double dq[2] = {1, 1};
    per_example_dot_add(dq, x, x, lo, 2, W, 1, 2.0);
    CHECK(dq[0] == 1 + 2 * (16777216.0 + 1000));
    CHECK(dq[1] == 1 + 2 * 1000.0);
    free(x);

    /* dw = 1 + Σ_b 2^-26 over 1000 examples: adding each 2^-26 to 1 in float would leave 1 */
    const int B = 1000, C = 3;
    real *y = dp_malloc(sizeof(real) * (size_t)B * C);
    double *c = dp_malloc(sizeof(double) * B);
    for (int b = 0; b < B; b++) {
        c[b] = 1.0;
        for (int i = 0; i < C; i++) y[(size_t)b * C + i] = (real)ldexp(1.0, -26);
    }
    real dw[3] = {1, 1, -1};
    weighted_rows_sum(dw, y, c, B, C);
    const double s = B * ldexp(1.0, -26);
    CHECK(dw[0] != 1);
    CHECK_CLOSE(dw[0], 1 + s, 2 * REAL_EPS);
    CHECK_CLOSE(dw[1], 1 + s, 2 * REAL_EPS);
    CHECK_CLOSE(dw[2], -1 + s, 2 * REAL_EPS);
    free(y);
    free(c);
}

/* The same results, bit for bit, from 1 thread and from 3. */
static void test_threads(void) {
    const int B = 13, T = 9, C = 300; /* C spans two column chunks of weighted_rows_sum */
    size_t n = (size_t)B * T * C;
    real *X = random_reals(n, 1.0), *Y = random_reals(n, 1.0);
    double *c = random_doubles(B, 0.1, 1.1);
    int *lo = dp_malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++) lo[b] = b % (T + 1);
    double sq[2][13];
    real *dw[2];
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : 3);
        for (int b = 0; b < B; b++) sq[k][b] = b;
        dw[k] = dp_calloc((size_t)T * C, sizeof(real));
        per_example_sqnorm_add(sq[k], X, B, T * C);
        per_example_dot_add(sq[k], X, Y, lo, B, T, C, 2.0);
        weighted_rows_sum(dw[k], X, c, B, T * C);
    }
    CHECK(memcmp(sq[0], sq[1], sizeof sq[0]) == 0);
    CHECK(memcmp(dw[0], dw[1], sizeof(real) * (size_t)T * C) == 0);
    free(X);
    free(Y);
    free(c);
    free(lo);
    free(dw[0]);
    free(dw[1]);
}

/* B = 0 touches nothing (even through NULL pointers); rows of width 0 add 0. */
static void test_empty(void) {
    double sq[2] = {3, 4};
    real dw[2] = {5, 6};
    real x[2] = {1, 2};
    double c[1] = {1};
    int lo[1] = {0};
    per_example_sqnorm_add(NULL, NULL, 0, 7);
    per_example_dot_add(NULL, NULL, NULL, NULL, 0, 3, 4, 2.0);
    weighted_rows_sum(NULL, NULL, NULL, 0, 7);
    per_example_sqnorm_add(sq, x, 0, 2);
    per_example_dot_add(sq, x, x, lo, 0, 1, 2, 2.0);
    weighted_rows_sum(dw, x, c, 0, 2);
    per_example_sqnorm_add(sq, x, 2, 0);
    per_example_dot_add(sq, x, x, lo, 1, 1, 0, 2.0);
    weighted_rows_sum(dw, x, c, 1, 0);
    CHECK(sq[0] == 3 && sq[1] == 4);
    CHECK(dw[0] == 5 && dw[1] == 6);
}

int main(void) {
    const int widths[] = {1, 37, 256, 600};
    for (size_t k = 0; k < sizeof widths / sizeof *widths; k++) {
        test_sqnorm(1, widths[k]);
        test_sqnorm(9, widths[k]);
        test_weighted_rows_sum(1, widths[k]);
        test_weighted_rows_sum(11, widths[k]);
    }
    test_dot(2, 5, 33, 2.0);
    test_dot(10, 17, 24, 2.0);
    test_dot(6, 1, 64, -0.5);
    test_double_accumulation();
    test_threads();
    test_empty();
    return tu_finish("test_per_example_ops");
}
