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

int dp_calibrate_sigma(double target, double delta, double q, int64_t steps, const dp_history *prior,
                       const dp_accounting_options *o, double *sigma_out, double *eps_out, dp_error *err) {
    dp_accounting_options def;
    if (!o) dp_accounting_default_options(&def), o = &def;
    if (check_target(target, delta, q, err)) return -1;
    if (steps < 0 || steps > DP_MAX_STEPS) return dp_fail(err, "steps must lie in [0, 2^53], got %lld", (long long)steps);
    if (!(o->sigma_tolerance >= 0) || !(o->epsilon_tolerance >= 0))
        return dp_fail(err, "calibration tolerances must be >= 0");
    double eps;
    /* The prior alone (σ → ∞ for the new run) is the best that any σ can do. */
    if (eps_with_run(prior, q, 1.0, 0, delta, o, &eps, err)) return -1;
    if (eps > target)
        return dp_fail(err, "the earlier events alone already spend epsilon = %.4g > target %.4g", eps, target);
    double lo = 0, hi = 10, eps_hi = INFINITY;
    for (;;) {
        if (eps_with_run(prior, q, hi, steps, delta, o, &eps_hi, err)) return -1;
        if (eps_hi <= target) break;
        lo = hi;
        hi *= 2;
        if (hi > 1e6) return dp_fail(err, "no noise multiplier up to 1e6 reaches epsilon %.4g", target);
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
    if (eps > target)
        return dp_fail(err, "the earlier events alone already spend epsilon = %.4g > target %.4g", eps, target);
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
