/* RDP accountant: Rényi DP of the Poisson-subsampled Gaussian (Mironov, Talwar and Zhang 2019),
 * composition over a history, and conversion to (ε, δ) with the improved (Balle et al. 2020) or the
 * classic (Abadi et al. 2016) bound. See docs/accountants.md. */
#include <math.h>

#include "core/common.h"
#include "dpformer/accountant.h"
#include "privacy/privacy_math.h"
#include "privacy/rdp.h"

size_t dp_rdp_default_orders(double *orders) {
    size_t n = 0;
    for (int x = 1; x <= 99; x++) orders[n++] = 1.0 + x / 10.0;
    for (int a = 12; a <= 63; a++) orders[n++] = a;
    return n;
}

/* log(e^x − 1) for x > 0. */
static double log_expm1(double x) { return x > 30 ? x + log1p(-exp(-x)) : log(expm1(x)); }

double rdp_log_a_int(double q, double sigma, double alpha) {
    /* A_α − 1 = Σ_{k>=2} C(α,k) q^k (1−q)^{α−k} (e^{(k²−k)/(2σ²)} − 1): the k = 0, 1 terms and the −1 parts
     * cancel the binomial identity exactly, so every term is positive and log A stays accurate even when
     * A − 1 is far below machine epsilon (tiny q, large σ). */
    int a = (int)alpha;
    double lq = log(q), l1q = log1p(-q), lga = lgamma(alpha + 1), inv2s2 = 1.0 / (2 * sigma * sigma);
    double acc = -INFINITY;
    for (int k = 2; k <= a; k++) {
        double lc = lga - lgamma(k + 1.0) - lgamma(alpha - k + 1.0);
        double t = lc + k * lq + (alpha - k) * l1q + log_expm1(((double)k * k - k) * inv2s2);
        /* (k² − k)/(2σ²) overflows for σ below ~1e-154: an infinite positive term, A = ∞ (and
         * pm_log_add(∞, ∞) would be NaN, which used to come out as RDP 0). */
        if (t == INFINITY) return INFINITY;
        acc = pm_log_add(acc, t);
    }
    if (acc == -INFINITY) return 0.0;
    return acc > 30 ? acc + log1p(exp(-acc)) : log1p(exp(acc));
}

/* The series, also returning the sum of the terms' magnitudes (to judge cancellation). */
static double log_a_frac_series(double q, double sigma, double alpha, double *log_abs_sum) {
    double lq = log(q), l1q = log1p(-q), inv2s2 = 1.0 / (2 * sigma * sigma);
    double z0 = sigma * sigma * (l1q - lq) + 0.5;
    double scale = 1.0 / (PM_SQRT2 * sigma);
    /* Signed running sum Σ sign·e^{t}, kept as sum·e^{ref} with ref the largest log term so far. */
    double ref = -INFINITY, sum = 0.0, abs_sum = 0.0;
    double lcoef = 0.0; /* log |C(α, i)| */
    int sign = 1;
    for (long i = 0; i < 100000000L; i++) {
        double di = (double)i, j = alpha - di;
        double ls0 = lcoef + di * lq + j * l1q + (di * di - di) * inv2s2 - PM_LN2 + pm_log_erfc((di - z0) * scale);
        double ls1 = lcoef + j * lq + di * l1q + (j * j - j) * inv2s2 - PM_LN2 + pm_log_erfc((z0 - j) * scale);
        double lmax = ls0 > ls1 ? ls0 : ls1;
        if (lmax == INFINITY) {
            /* Overflowing terms (σ below ~1e-154): A = ∞. The signed sum would turn into ∞ − ∞ = NaN,
             * never meet the stopping rule, and run the whole loop. */
            *log_abs_sum = INFINITY;
            return INFINITY;
        }
        if (isnan(lmax)) {
            /* No usable value: NaN makes the caller fall back on the integer order above. */
            *log_abs_sum = NAN;
            return NAN;
        }
        if (lmax > ref) {
            double r = exp(ref - lmax);
            sum *= r, abs_sum *= r;
            ref = lmax;
        }
        double t = exp(ls0 - ref) + exp(ls1 - ref);
        sum += sign * t;
        abs_sum += t;
        /* Each half of term i equals |C(α,i)| e^{α log(1−q) − z0²/(2σ²)} M(x) with M(x) = e^{x²/2} P(Z > x)
         * decreasing and x increasing in i, so past i = α + 1 the magnitudes decrease while the signs
         * alternate: the rest of the series is smaller than the last term. */
        if (di > alpha + 1 && sum > 0 && lmax < ref + log(sum) - 37.0) break;
        /* C(α, i+1) = C(α, i) (α − i) / (i + 1); a zero factor (integer α) ends the series exactly. */
        double f = alpha - di;
        if (f == 0) break;
        if (f < 0) sign = -sign;
        lcoef += log(fabs(f)) - log(di + 1);
    }
    *log_abs_sum = abs_sum > 0 ? ref + log(abs_sum) : -INFINITY;
    return sum > 0 ? ref + log(sum) : 0.0;
}

double rdp_log_a_frac(double q, double sigma, double alpha) {
    double las;
    return log_a_frac_series(q, sigma, alpha, &las);
}

double dp_rdp_poisson_gaussian(double q, double sigma, double alpha) {
    if (!(q > 0 && q <= 1) || !(sigma > 0) || !isfinite(sigma) || !(alpha > 1) || !isfinite(alpha)) return NAN;
    if (q == 1) return alpha / (2 * sigma * sigma);
    /* σ above ~1e154: σ² overflows and the fractional series would meet ∞·0. The RDP without
     * subsampling, α/(2σ²), is an upper bound, and it is 0 in double. */
    if (isinf(sigma * sigma)) return 0.0;
    if (alpha == floor(alpha) && alpha <= 1e6) {
        double la = rdp_log_a_int(q, sigma, alpha);
        return la > 0 ? la / (alpha - 1) : 0.0;
    }
    double las, la = log_a_frac_series(q, sigma, alpha, &las);
    if (la == INFINITY) return INFINITY;
    /* When A − 1 is below ~1e-10 of the terms' magnitudes the signed series has lost most of its digits
     * (tiny q or huge σ). RDP is non-decreasing in α, so the accurate integer order above is a safe
     * stand-in; in this regime the conversion term dominates ε and nothing tighter is lost. */
    if (!(expm1(la) > 1e-10 * exp(las))) return dp_rdp_poisson_gaussian(q, sigma, ceil(alpha));
    return la / (alpha - 1);
}

static int check_orders(const double *orders, size_t n, dp_error *err) {
    if (n == 0) return dp_fail(err, "RDP orders: the order grid is empty");
    for (size_t i = 0; i < n; i++)
        if (!isfinite(orders[i]) || !(orders[i] > 1))
            return dp_fail(err, "RDP orders: every order must be a finite number > 1, got %g", orders[i]);
    return 0;
}

int dp_rdp_compute(const dp_history *h, const double *orders, size_t n, double *rdp, dp_error *err) {
    double def[DP_RDP_DEFAULT_N_ORDERS];
    if (!orders) n = dp_rdp_default_orders(def), orders = def;
    if (check_orders(orders, n, err)) return -1;
    for (size_t i = 0; i < n; i++) rdp[i] = 0.0;
    for (size_t e = 0; e < h->n; e++) {
        const dp_event *ev = &h->events[e];
        if (dp_event_check(ev, err)) return -1;
        if (ev->steps == 0) continue;
        for (size_t i = 0; i < n; i++) rdp[i] += (double)ev->steps * dp_rdp_poisson_gaussian(ev->sample_rate,
                                                                                   ev->noise_multiplier, orders[i]);
    }
    return 0;
}

static void set_best(dp_rdp_result *out, const double *orders, size_t n, size_t best) {
    out->best_index = best;
    out->best_order = orders[best];
    out->at_edge = n >= 2 && (best == 0 || best == n - 1);
}

int dp_rdp_to_epsilon(const double *orders, const double *rdp, size_t n, double delta, dp_conversion conv,
                      dp_rdp_result *out, dp_error *err) {
    if (!(delta > 0 && delta < 1)) return dp_fail(err, "delta must lie in (0, 1), got %g", delta);
    if (check_orders(orders, n, err)) return -1;
    double best_eps = INFINITY;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        double a = orders[i], r = rdp[i] > 0 ? rdp[i] : 0.0, eps;
        if (isnan(r)) continue;
        if (conv == DP_CONVERSION_CLASSIC) {
            eps = r - log(delta) / (a - 1);
        } else if (delta * delta + expm1(-r) > 0) {
            /* δ >= sqrt(1 − e^{−KL}) >= TV distance, and KL <= RDP(α): (0, δ)-DP outright. */
            eps = 0.0;
        } else {
            eps = r + log1p(-1 / a) - (log(delta) + log(a)) / (a - 1);
        }
        if (eps < best_eps) best_eps = eps, best = i;
    }
    out->epsilon = best_eps > 0 ? best_eps : 0.0;
    out->delta = delta;
    set_best(out, orders, n, best);
    return 0;
}

int dp_rdp_to_delta(const double *orders, const double *rdp, size_t n, double epsilon, dp_conversion conv,
                    dp_rdp_result *out, dp_error *err) {
    if (!(epsilon >= 0) || !isfinite(epsilon)) return dp_fail(err, "epsilon must be a finite number >= 0, got %g", epsilon);
    if (check_orders(orders, n, err)) return -1;
    double best_ld = INFINITY;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        double a = orders[i], r = rdp[i] > 0 ? rdp[i] : 0.0, ld;
        if (isnan(r)) continue;
        if (conv == DP_CONVERSION_CLASSIC) {
            ld = (a - 1) * (r - epsilon);
        } else {
            ld = (a - 1) * (r - epsilon + log1p(-1 / a)) - log(a);
            double kl = r == 0 ? -INFINITY : 0.5 * log(-expm1(-r));
            if (kl < ld) ld = kl;
        }
        if (ld < best_ld) best_ld = ld, best = i;
    }
    out->epsilon = epsilon;
    out->delta = best_ld < 0 ? exp(best_ld) : 1.0;
    set_best(out, orders, n, best);
    return 0;
}

int dp_rdp_epsilon(const dp_history *h, const double *orders, size_t n, double delta, dp_conversion conv,
                   dp_rdp_result *out, dp_error *err) {
    double def[DP_RDP_DEFAULT_N_ORDERS];
    if (!orders) n = dp_rdp_default_orders(def), orders = def;
    if (!(delta > 0 && delta < 1)) return dp_fail(err, "delta must lie in (0, 1), got %g", delta);
    double *rdp = dp_malloc((n ? n : 1) * sizeof *rdp);
    int rc = dp_rdp_compute(h, orders, n, rdp, err);
    if (!rc) rc = dp_rdp_to_epsilon(orders, rdp, n, delta, conv, out, err);
    /* Nothing released: ε = 0 at any δ. The conversion alone would not say so when δ² underflows
     * (δ below ~1e-154: its (0, δ) test compares δ² = 0 with the RDP) or with the classic conversion,
     * and report the conversion's cost (11.06 at δ = 1e-300) as if something had been spent. */
    if (!rc && dp_history_total_steps(h) == 0) out->epsilon = 0.0;
    free(rdp);
    return rc;
}

int dp_rdp_delta(const dp_history *h, const double *orders, size_t n, double epsilon, dp_conversion conv,
                 dp_rdp_result *out, dp_error *err) {
    double def[DP_RDP_DEFAULT_N_ORDERS];
    if (!orders) n = dp_rdp_default_orders(def), orders = def;
    if (!(epsilon >= 0) || !isfinite(epsilon)) return dp_fail(err, "epsilon must be a finite number >= 0, got %g", epsilon);
    double *rdp = dp_malloc((n ? n : 1) * sizeof *rdp);
    int rc = dp_rdp_compute(h, orders, n, rdp, err);
    if (!rc) rc = dp_rdp_to_delta(orders, rdp, n, epsilon, conv, out, err);
    free(rdp);
    return rc;
}
