/* Tests of the audit statistics (src/audit/one_run.c): the one-run bound and its p-value against
 * values computed independently (tests/audit_bound_ref.py: exact binomial coefficients in 60-digit
 * decimal arithmetic), edge cases, monotonicity, the guess search with its Bonferroni correction, and
 * AUC / TPR at low FPR on score sets whose answers are known. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/audit.h"
#include "testutil.h"

typedef struct {
    int64_t m, r, v;
    double delta, significance, bound, p_at_1;
} ref_case;

/* python3 tests/audit_bound_ref.py */
static const ref_case REF[] = {
    {1000, 100, 100, 0, 0.05, 3.4929654310, 2.484378555724e-14},
    {1000, 100, 90, 0, 0.05, 1.6308231922, 2.735812800766e-05},
    {1000, 100, 90, 1e-05, 0.05, 1.6261434807, 8.412885614385e-04},
    {1000, 100, 60, 1e-05, 0.05, 0.0495486604, 9.984587634832e-01},
    {1000, 100, 50, 1e-05, 0.05, 0.0000000000, 9.999997392965e-01},
    {1000, 100, 0, 1e-05, 0.05, 0.0000000000, 1.000000000000e+00},
    {1000, 1000, 700, 1e-05, 0.05, 0.7317404486, 9.871627357455e-01},
    {1000, 1000, 1000, 1e-06, 0.05, 5.8063965449, 6.588622306865e-06},
    {200, 20, 20, 1e-05, 0.05, 1.8164727958, 2.389947728666e-03},
    {200, 20, 18, 0, 0.01, 0.5825969148, 6.477869058209e-02},
    {10000, 500, 420, 1e-05, 0.05, 1.4454043778, 2.707326779583e-03},
    {10000, 2000, 1300, 1e-06, 0.05, 0.5409028810, 1.000000000000e+00},
    {100, 10, 10, 0.01, 0.05, 0.0000000000, 5.012468622208e-01},
};

static void test_reference(void) {
    for (size_t i = 0; i < sizeof REF / sizeof REF[0]; i++) {
        const ref_case *c = &REF[i];
        dp_error err;
        double b = dp_audit_epsilon_lower_bound(c->m, c->r, c->v, c->significance, c->delta, &err);
        CHECK_CLOSE(b, c->bound, 2e-6);
        double p = dp_audit_p_value(c->m, c->r, c->v, 1.0, c->delta);
        CHECK(fabs(p - c->p_at_1) <= 1e-9 * c->p_at_1 + 1e-300);
        if (!(fabs(p - c->p_at_1) <= 1e-9 * c->p_at_1 + 1e-300))
            fprintf(stderr, "  case %zu: p-value %.12e, reference %.12e\n", i, p, c->p_at_1);
        /* the bound is where the p-value crosses the significance */
        if (c->bound > 0) {
            CHECK(dp_audit_p_value(c->m, c->r, c->v, c->bound, c->delta) <= c->significance * (1 + 1e-9));
            CHECK(dp_audit_p_value(c->m, c->r, c->v, c->bound + 1e-4, c->delta) > c->significance);
        }
    }
}

static void test_edges(void) {
    dp_error err;
    /* nothing correct, or nothing guessed: no evidence at all */
    CHECK(dp_audit_epsilon_lower_bound(100, 0, 0, 0.05, 1e-5, &err) == 0);
    CHECK(dp_audit_epsilon_lower_bound(100, 50, 0, 0.05, 1e-5, &err) == 0);
    CHECK(dp_audit_p_value(100, 50, 0, 3.0, 1e-5) == 1.0);
    /* more guesses right (same r) or a larger significance: a larger bound; a larger delta: smaller */
    double a = dp_audit_epsilon_lower_bound(1000, 100, 80, 0.05, 1e-5, &err);
    double b = dp_audit_epsilon_lower_bound(1000, 100, 85, 0.05, 1e-5, &err);
    double c = dp_audit_epsilon_lower_bound(1000, 100, 85, 0.10, 1e-5, &err);
    double d = dp_audit_epsilon_lower_bound(1000, 100, 85, 0.05, 1e-3, &err);
    CHECK(0 < a && a < b && b < c && d < b);
    /* invalid counts are refused with the field named */
    CHECK(dp_audit_epsilon_lower_bound(100, 101, 1, 0.05, 1e-5, &err) < 0 && strstr(err.msg, "guesses"));
    CHECK(dp_audit_epsilon_lower_bound(100, 10, 11, 0.05, 1e-5, &err) < 0 && strstr(err.msg, "correct"));
    CHECK(dp_audit_epsilon_lower_bound(0, 0, 0, 0.05, 1e-5, &err) < 0 && strstr(err.msg, "canaries"));
    CHECK(dp_audit_epsilon_lower_bound(100, 10, 5, 0, 1e-5, &err) < 0 && strstr(err.msg, "significance"));
    CHECK(dp_audit_epsilon_lower_bound(100, 10, 5, 0.05, 1, &err) < 0 && strstr(err.msg, "delta"));
    /* p-values are probabilities and grow with epsilon */
    double prev = 0;
    for (double e = 0; e < 8; e += 0.25) {
        double p = dp_audit_p_value(1000, 200, 150, e, 1e-5);
        CHECK(p >= prev - 1e-15 && p <= 1);
        prev = p;
    }
}

static void test_evaluate(void) {
    enum { M = 1000 };
    double *s = malloc(sizeof(double) * M);
    uint8_t *in = malloc(M);
    dp_audit_result r;
    dp_error err;
    /* perfectly separated scores: AUC 1, TPR 1 at FPR 0, and the bound of guessing all the ins (the
     * Bonferroni-corrected level) */
    uint64_t st = 7;
    int64_t n_in = 0;
    for (int i = 0; i < M; i++) {
        in[i] = tu_uniform(&st) < 0.5;
        n_in += in[i];
        s[i] = in[i] ? 10 + tu_uniform(&st) : tu_uniform(&st);
    }
    CHECK(dp_audit_evaluate(s, in, M, 0, 0.05, 1e-5, 0.01, &r, &err) == 0);
    /* the halving grid 1000, 500, 250, 125, 63, 32, 16, 8, 4, 2, 1 */
    CHECK(r.canaries == M && r.included == n_in && r.hypotheses == 11);
    CHECK_CLOSE(r.auc, 1.0, 1e-12);
    CHECK_CLOSE(r.tpr_at_fpr, 1.0, 1e-12);
    /* the best guess set is the largest grid k that holds only included canaries */
    int64_t kbest = 0;
    for (int64_t k = M;; k = (k + 1) / 2) {
        if (k <= n_in && kbest == 0) kbest = k;
        if (k == 1) break;
    }
    CHECK(r.guesses == kbest && r.correct == kbest);
    CHECK_CLOSE(r.epsilon_lower, dp_audit_epsilon_lower_bound(M, kbest, kbest, 0.05 / 11, 1e-5, &err), 1e-6);
    CHECK(r.epsilon_lower > 2.5);
    /* every grid k gives at most the reported bound at the corrected level */
    for (int64_t k = M;; k = (k + 1) / 2) {
        int64_t v = k <= n_in ? k : n_in;
        CHECK(dp_audit_epsilon_lower_bound(M, k, v, 0.05 / 11, 1e-5, &err) <= r.epsilon_lower + 1e-6);
        if (k == 1) break;
    }
    /* a fixed guess count: no correction, so a larger bound than the search's for the same top-k */
    dp_audit_result f;
    CHECK(dp_audit_evaluate(s, in, M, 100, 0.05, 1e-5, 0.01, &f, &err) == 0);
    CHECK(f.hypotheses == 1 && f.guesses == 100 && f.correct == 100);
    CHECK_CLOSE(f.epsilon_lower, dp_audit_epsilon_lower_bound(M, 100, 100, 0.05, 1e-5, &err), 1e-9);
    /* scores that carry no information (all equal; or independent of inclusion): AUC 1/2, no bound */
    for (int i = 0; i < M; i++) s[i] = 1.0;
    CHECK(dp_audit_evaluate(s, in, M, 0, 0.05, 1e-5, 0.01, &r, &err) == 0);
    CHECK_CLOSE(r.auc, 0.5, 1e-12);
    CHECK(r.epsilon_lower == 0);
    for (int i = 0; i < M; i++) s[i] = tu_uniform(&st);
    CHECK(dp_audit_evaluate(s, in, M, 0, 0.05, 1e-5, 0.01, &r, &err) == 0);
    CHECK(fabs(r.auc - 0.5) < 0.06 && r.epsilon_lower < 0.5);
    /* a known small case: scores 4,3,2,1 with inclusion 1,0,1,0: pairs (in above out) 3 of 4 */
    double s4[4] = {4, 3, 2, 1};
    uint8_t in4[4] = {1, 0, 1, 0};
    CHECK(dp_audit_evaluate(s4, in4, 4, 0, 0.05, 0, 0.5, &r, &err) == 0);
    CHECK_CLOSE(r.auc, 0.75, 1e-12);
    CHECK_CLOSE(r.tpr_at_fpr, 1.0, 1e-12); /* threshold 2: TPR 1 at FPR 1/2 */
    CHECK(dp_audit_evaluate(s4, in4, 4, 0, 0.05, 0, 0.0, &r, &err) == 0);
    CHECK_CLOSE(r.tpr_at_fpr, 0.5, 1e-12);
    /* bad input */
    s4[2] = NAN;
    CHECK(dp_audit_evaluate(s4, in4, 4, 0, 0.05, 0, 0.1, &r, &err) != 0 && strstr(err.msg, "canary 2"));
    s4[2] = 2;
    CHECK(dp_audit_evaluate(s4, in4, 4, 5, 0.05, 0, 0.1, &r, &err) != 0 && strstr(err.msg, "guesses"));
    free(s);
    free(in);
}

int main(void) {
    test_reference();
    test_edges();
    test_evaluate();
    return tu_finish("test_audit");
}
