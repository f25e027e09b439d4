/* The one-run audit bound (Steinke, Nasr and Jagielski 2023) and the membership-inference statistics
 * of canary scores: see dpformer/audit.h and docs/audit.md. Binomial tails are summed in log space
 * from lgamma, exact to about 1e-12 relative for the sizes an audit uses (m up to millions). */
#include "dpformer/audit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

/* log P[X = j] for X ~ Binomial(n, q), 0 < q < 1. */
static double log_pmf(int64_t n, int64_t j, double lq, double l1q) {
    return lgamma((double)n + 1) - lgamma((double)j + 1) - lgamma((double)(n - j) + 1) + (double)j * lq +
           (double)(n - j) * l1q;
}

/* P[X >= k] for X ~ Binomial(n, q): the terms summed from the largest one down, in log space. */
static double binom_sf(int64_t n, int64_t k, double q) {
    if (k <= 0) return 1.0;
    if (k > n) return 0.0;
    if (q >= 1) return 1.0;
    if (q <= 0) return 0.0;
    const double lq = log(q), l1q = log1p(-q);
    /* the mode is floor((n + 1) q): the terms decrease away from it on both sides */
    int64_t mode = (int64_t)floor(((double)n + 1) * q);
    if (mode > n) mode = n;
    const int64_t start = k > mode ? k : mode;
    const double top = log_pmf(n, start, lq, l1q);
    double s = 0;
    for (int64_t j = start; j <= n; j++) {
        double t = exp(log_pmf(n, j, lq, l1q) - top);
        s += t;
        if (t < 1e-18 * s) break;
    }
    for (int64_t j = start - 1; j >= k; j--) {
        double t = exp(log_pmf(n, j, lq, l1q) - top);
        s += t;
        if (t < 1e-18 * s) break;
    }
    double r = exp(top + log(s));
    return r > 1 ? 1 : r;
}

double dp_audit_p_value(int64_t m, int64_t r, int64_t v, double eps, double delta) {
    if (v <= 0) return 1.0;
    const double q = 1.0 / (1.0 + exp(-eps)); /* e^ε / (1 + e^ε) */
    const double beta = binom_sf(r, v, q);
    if (delta <= 0) return beta;
    /* α = max_i P[v - i <= X < v] / i: the window below v grows one term at a time */
    const double lq = log(q), l1q = log1p(-q);
    double window = 0, alpha = 0;
    for (int64_t i = 1; i <= v; i++) {
        double t = exp(log_pmf(r, v - i, lq, l1q));
        window += t;
        double a = window / (double)i;
        if (a > alpha) alpha = a;
        /* below the mode the terms only shrink: once they no longer move the window, a/i only falls */
        if ((double)(v - i) < q * (double)r && t < 1e-18 * window) break;
    }
    double p = beta + alpha * delta * 2.0 * (double)m;
    return p < 1 ? p : 1;
}

static int check_counts(int64_t m, int64_t r, int64_t v, double significance, double delta, dp_error *err) {
    if (m < 1) return dp_fail(err, "canaries: need at least 1 (got %lld)", (long long)m);
    if (r < 0 || r > m) return dp_fail(err, "guesses: must lie in 0..%lld (got %lld)", (long long)m, (long long)r);
    if (v < 0 || v > r) return dp_fail(err, "correct: must lie in 0..%lld (got %lld)", (long long)r, (long long)v);
    if (!(significance > 0 && significance < 1))
        return dp_fail(err, "significance: must lie in (0, 1) (got %g)", significance);
    if (!(delta >= 0 && delta < 1)) return dp_fail(err, "delta: must lie in [0, 1) (got %g)", delta);
    return 0;
}

/* The largest ε >= eps_lo with p-value <= significance, or eps_lo if there is none. The p-value grows
 * with ε (q does, and with it every tail and window of the binomial). */
static double lower_bound_from(double eps_lo, int64_t m, int64_t r, int64_t v, double significance,
                               double delta) {
    if (dp_audit_p_value(m, r, v, eps_lo, 0) > significance) return eps_lo; /* δ only adds to it */
    if (dp_audit_p_value(m, r, v, eps_lo, delta) > significance) return eps_lo;
    double lo = eps_lo, hi = eps_lo > 0.5 ? 2 * eps_lo : 1.0;
    while (dp_audit_p_value(m, r, v, hi, delta) <= significance) {
        lo = hi;
        hi *= 2;
        if (hi > 1e4) return lo; /* v = r with a tiny significance: the bound is astronomically large */
    }
    while (hi - lo > 1e-7) {
        double mid = 0.5 * (lo + hi);
        if (dp_audit_p_value(m, r, v, mid, delta) <= significance) lo = mid;
        else hi = mid;
    }
    return lo;
}

double dp_audit_epsilon_lower_bound(int64_t m, int64_t r, int64_t v, double significance, double delta,
                                    dp_error *err) {
    if (check_counts(m, r, v, significance, delta, err)) return -1;
    return lower_bound_from(0, m, r, v, significance, delta);
}

typedef struct {
    double score;
    uint8_t in;
} scored;

static int by_score_desc(const void *a, const void *b) {
    double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

int dp_audit_evaluate(const double *scores, const uint8_t *included, int64_t m, int64_t guesses,
                      double significance, double delta, double fpr, dp_audit_result *out, dp_error *err) {
    memset(out, 0, sizeof *out);
    if (check_counts(m, guesses > 0 ? guesses : 0, 0, significance, delta, err)) return -1;
    if (!(fpr >= 0 && fpr <= 1)) return dp_fail(err, "fpr: must lie in [0, 1] (got %g)", fpr);
    scored *s = dp_malloc(sizeof *s * (size_t)m);
    int64_t n_in = 0;
    for (int64_t i = 0; i < m; i++) {
        if (!isfinite(scores[i])) {
            free(s);
            return dp_fail(err, "score of canary %lld: not a finite number", (long long)i);
        }
        s[i].score = scores[i];
        s[i].in = included[i] != 0;
        n_in += s[i].in;
    }
    qsort(s, (size_t)m, sizeof *s, by_score_desc);
    const int64_t n_out = m - n_in;
    out->canaries = m;
    out->included = n_in;
    out->significance = significance;
    out->delta = delta;
    out->fpr = fpr;

    /* Walk the thresholds from the top: after each group of tied scores, k canaries are guessed "in",
     * tp of them correctly. AUC (Mann-Whitney, ties one half) and TPR at FPR <= fpr on the way. */
    int64_t tp = 0, fp = 0;
    double auc_pairs = 0, best_tpr = 0;
    for (int64_t i = 0; i < m;) {
        int64_t j = i, gin = 0, gout = 0;
        while (j < m && s[j].score == s[i].score) gin += s[j].in, gout += !s[j].in, j++;
        /* pairs (in, out) with the in above the out: every out in this group is below tp earlier ins,
         * and ties within the group count one half */
        auc_pairs += (double)gout * (double)tp + 0.5 * (double)gin * (double)gout;
        tp += gin;
        fp += gout;
        if (n_out > 0 && n_in > 0 && (double)fp <= fpr * (double)n_out && (double)tp / (double)n_in > best_tpr)
            best_tpr = (double)tp / (double)n_in;
        i = j;
    }
    /* The guess sets: the top k scores, for k fixed before the inclusion bits are looked at (the
     * order of tied scores comes from the sort, which compares scores only). Either the one k given,
     * or the halving grid k = ceil(m / 2^j) (m, m/2, m/4, ..., 1): log2(m) + 1 sets, a small
     * Bonferroni factor, and within a factor 2 of any k. */
    int64_t ks[64], nk = 0;
    if (guesses > 0) ks[nk++] = guesses;
    else
        for (int64_t k = m;; k = (k + 1) / 2) {
            ks[nk++] = k;
            if (k == 1) break;
        }
    out->hypotheses = nk;
    const double sig = significance / (double)nk;
    double best = 0;
    for (int64_t h = nk - 1; h >= 0; h--) { /* from the smallest k: the most precise guesses first */
        const int64_t k = ks[h];
        int64_t v = 0;
        for (int64_t i = 0; i < k; i++) v += s[i].in;
        /* a guess set whose precision is no better than the best bound's q cannot beat it */
        if (best > 0 && (double)v / (double)k <= 1.0 / (1.0 + exp(-best))) continue;
        double e = lower_bound_from(best, m, k, v, sig, delta);
        if (e > best || out->guesses == 0) {
            if (e > best) best = e;
            out->guesses = k;
            out->correct = v;
        }
    }
    out->epsilon_lower = best;
    out->auc = n_in > 0 && n_out > 0 ? auc_pairs / ((double)n_in * (double)n_out) : 0.5;
    out->tpr_at_fpr = best_tpr;
    free(s);
    return 0;
}
