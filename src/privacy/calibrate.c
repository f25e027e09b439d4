/* One entry point for either accountant, and calibration: the smallest noise multiplier or the largest
 * step count meeting a target ε. Both search on an accountant that is monotone in the searched
 * quantity and only ever return a setting whose ε was computed and found within the target. */
#include <math.h>

#include "core/common.h"
#include "dpformer/accountant.h"

void dp_accounting_default_options(dp_accounting_options *o) {
    memset(o, 0, sizeof *o);
    o->accountant = DP_ACCOUNTANT_RDP;
    o->conversion = DP_CONVERSION_IMPROVED;
    o->orders = NULL;
    o->n_orders = 0;
    dp_pld_default_params(&o->pld);
    o->sigma_tolerance = 1e-6;
    o->epsilon_tolerance = 0.0;
}

int dp_epsilon(const dp_history *h, double delta, const dp_accounting_options *o, double *epsilon, dp_error *err) {
    dp_accounting_options def;
    if (!o) dp_accounting_default_options(&def), o = &def;
    if (o->accountant == DP_ACCOUNTANT_PLD) {
        dp_pld_result r;
        if (dp_pld_epsilon(h, delta, &o->pld, &r, err)) return -1;
        *epsilon = r.epsilon;
    } else {
        dp_rdp_result r;
        if (dp_rdp_epsilon(h, o->orders, o->n_orders, delta, o->conversion, &r, err)) return -1;
        *epsilon = r.epsilon;
    }
    return 0;
}

/* ε of prior + one more event; the prior is copied so the caller's history is untouched. */
static int eps_with_run(const dp_history *prior, double q, double sigma, int64_t steps, double delta,
                        const dp_accounting_options *o, double *eps, dp_error *err) {
    dp_history h;
    dp_history_init(&h);
    int rc = 0;
    for (size_t i = 0; prior && i < prior->n && !rc; i++) rc = dp_history_add(&h, &prior->events[i], err);
    if (!rc && steps > 0) rc = dp_history_add_poisson_gaussian(&h, sigma, q, steps, err);
    if (!rc) rc = dp_epsilon(&h, delta, o, eps, err);
    dp_history_free(&h);
    return rc;
}

static int check_target(double target, double delta, double q, dp_error *err) {
    if (!(target > 0) || !isfinite(target)) return dp_fail(err, "target epsilon must be a finite number > 0, got %g", target);
    if (!(delta > 0 && delta < 1)) return dp_fail(err, "delta must lie in (0, 1), got %g", delta);
    if (!(q > 0 && q <= 1)) return dp_fail(err, "sample rate must lie in (0, 1], got %g", q);
    return 0;
}

/* The prior's ε above the target: a message naming it (only called with a non-empty prior, since an
 * empty history has ε = 0). */
static int prior_exceeds(const dp_history *prior, double eps, double target, double delta, dp_error *err) {
    size_t n = prior ? prior->n : 0;
    return dp_fail(err, "the earlier events (%zu event%s, %lld steps) alone already spend epsilon = %.4g > target %.4g "
                        "at delta %g", n, n == 1 ? "" : "s", (long long)(prior ? dp_history_total_steps(prior) : 0),
                   eps, target, delta);
}

/* What the RDP conversion costs on its own at δ as the RDP tends to 0 (the best ε any noise can reach
 * with these orders). */
static double rdp_conversion_floor(const dp_accounting_options *o, double delta, double *max_order) {
    double def[DP_RDP_DEFAULT_N_ORDERS];
    const double *orders = o->orders;
    size_t n = o->n_orders;
    if (!orders) n = dp_rdp_default_orders(def), orders = def;
    double best = INFINITY;
    *max_order = 0;
    for (size_t i = 0; i < n; i++) {
        double a = orders[i], e;
        if (!(a > 1) || !isfinite(a)) continue;
        if (a > *max_order) *max_order = a;
        if (o->conversion == DP_CONVERSION_CLASSIC) e = -log(delta) / (a - 1);
        else e = log1p(-1 / a) - (log(delta) + log(a)) / (a - 1);
        if (e < best) best = e;
    }
    return best > 0 ? best : 0.0;
}

int dp_calibrate_feasible(double target, double delta, double q, int64_t steps, const dp_history *prior,
                          const dp_accounting_options *o, dp_error *err) {
    dp_accounting_options def;
    if (!o) dp_accounting_default_options(&def), o = &def;
    if (check_target(target, delta, q, err)) return -1;
    if (steps < 0 || steps > DP_MAX_STEPS) return dp_fail(err, "steps must lie in [0, 2^53], got %lld", (long long)steps);
    double eps;
    /* The prior alone (σ → ∞ for the new run) is the best that any σ can do. */
    if (eps_with_run(prior, q, 1.0, 0, delta, o, &eps, err)) return -1;
    if (eps > target) return prior_exceeds(prior, eps, target, delta, err);
    if (steps == 0) return 0;
    if (eps_with_run(prior, q, DP_CALIBRATE_MAX_SIGMA, steps, delta, o, &eps, err)) return -1;
    if (eps <= target) return 0;
    char why[200] = "";
    if (o->accountant == DP_ACCOUNTANT_PLD) {
        if (!isfinite(eps))
            snprintf(why, sizeof why, "; delta %g is not above the mass the PLD accountant truncates (at least %g), so "
                                      "epsilon is infinite at any noise: raise delta", delta,
                     0.5 * o->pld.tail_mass_truncation);
    } else {
        double amax, floor_eps = rdp_conversion_floor(o, delta, &amax);
        if (floor_eps >= 0.5 * target)
            snprintf(why, sizeof why, "; at this delta the conversion from RDP to (epsilon, delta) alone costs %.4g "
                                      "with orders up to %g: raise delta, widen the orders or use the PLD accountant",
                     floor_eps, amax);
    }
    return dp_fail(err, "no noise multiplier can meet target epsilon %.4g at delta %g over %lld step%s (sample rate "
                        "%.4g) with the %s accountant: even sigma = %g gives epsilon %.4g%s", target, delta,
                   (long long)steps, steps == 1 ? "" : "s", q, o->accountant == DP_ACCOUNTANT_PLD ? "PLD" : "RDP",
                   DP_CALIBRATE_MAX_SIGMA, eps, why);
}

int dp_calibrate_sigma(double target, double delta, double q, int64_t steps, const dp_history *prior,
                       const dp_accounting_options *o, double *sigma_out, double *eps_out, dp_error *err) {
    dp_accounting_options def;
    if (!o) dp_accounting_default_options(&def), o = &def;
    if (check_target(target, delta, q, err)) return -1;
    if (steps < 0 || steps > DP_MAX_STEPS) return dp_fail(err, "steps must lie in [0, 2^53], got %lld", (long long)steps);
    if (!(o->sigma_tolerance >= 0) || !(o->epsilon_tolerance >= 0))
        return dp_fail(err, "calibration tolerances must be >= 0");
    double eps;
    if (dp_calibrate_feasible(target, delta, q, steps, prior, o, err)) return -1;
    double lo = 0, hi = 10, eps_hi = INFINITY;
    for (;;) {
        if (eps_with_run(prior, q, hi, steps, delta, o, &eps_hi, err)) return -1;
        if (eps_hi <= target) break;
        lo = hi;
        hi *= 2;
        /* not reached: dp_calibrate_feasible found ε <= target at DP_CALIBRATE_MAX_SIGMA = 10 · 2^16 */
        if (hi > DP_CALIBRATE_MAX_SIGMA) return dp_fail(err, "no noise multiplier up to %g reaches epsilon %.4g",
                                                        DP_CALIBRATE_MAX_SIGMA, target);
    }
    double stol = o->sigma_tolerance > 0 ? o->sigma_tolerance : 1e-12;
    while (hi - lo > stol * hi) {
        if (o->epsilon_tolerance > 0 && target - eps_hi <= o->epsilon_tolerance) break;
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (eps_with_run(prior, q, mid, steps, delta, o, &eps, err)) return -1;
        /* Opacus moves the upper end only on a strict improvement; ε == target also qualifies here, since the
         * promise is ε <= target. */
        if (eps <= target) hi = mid, eps_hi = eps;
        else lo = mid;
    }
    *sigma_out = hi;
    if (eps_out) *eps_out = eps_hi;
    return 0;
}

int dp_max_steps(double target, double delta, double q, double sigma, const dp_history *prior,
                 const dp_accounting_options *o, int64_t *steps_out, double *eps_out, dp_error *err) {
    if (check_target(target, delta, q, err)) return -1;
    if (!(sigma > 0) || !isfinite(sigma)) return dp_fail(err, "noise multiplier must be a finite number > 0, got %g", sigma);
    double eps;
    if (eps_with_run(prior, q, sigma, 0, delta, o, &eps, err)) return -1;
    if (eps > target) return prior_exceeds(prior, eps, target, delta, err);
    double eps_lo = eps;
    int64_t lo = 0, hi = 1; /* invariant: ε(lo) <= target; ε(hi) > target once found */
    for (;;) {
        if (eps_with_run(prior, q, sigma, hi, delta, o, &eps, err)) return -1;
        if (eps > target) break;
        lo = hi, eps_lo = eps;
        if (hi >= DP_MAX_STEPS / 2)
            return dp_fail(err, "more than 2^52 steps fit in epsilon %.4g; the budget is effectively unlimited", target);
        hi *= 2;
    }
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (eps_with_run(prior, q, sigma, mid, delta, o, &eps, err)) return -1;
        if (eps <= target) lo = mid, eps_lo = eps;
        else hi = mid;
    }
    *steps_out = lo;
    if (eps_out) *eps_out = eps_lo;
    return 0;
}

int64_t dp_steps_for_epochs(double epochs, double q) {
    if (!(epochs >= 0) || !isfinite(epochs) || !(q > 0 && q <= 1)) return -1;
    double s = floor(epochs / q);
    if (s > (double)DP_MAX_STEPS) return -1;
    return (int64_t)s;
}
