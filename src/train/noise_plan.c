/* The noise plan of a private run: calibration to a target ε, or the event budget of a given σ. */
#include "train/noise_plan.h"

int dp_noise_plan(const dp_privacy_config *p, double q, int64_t planned, const dp_history *prior,
                  const dp_accounting_options *acc, const char *unit, FILE *log, double *sigma, int64_t *max_events,
                  dp_error *err) {
    double eps;
    *max_events = -1;
    if (p->target_epsilon > 0 && p->noise_multiplier > 0) {
        /* σ given and a budget: run until the next event would exceed the target */
        *sigma = p->noise_multiplier;
        if (dp_max_steps(p->target_epsilon, p->delta, q, *sigma, prior, acc, max_events, &eps, err)) return -1;
        fprintf(log, "privacy: noise multiplier %.4f allows %lld %s (q %.5g) within epsilon %.3f at delta %g\n", *sigma,
                (long long)*max_events, unit, q, p->target_epsilon, p->delta);
    } else if (p->target_epsilon > 0) {
        if (dp_calibrate_sigma(p->target_epsilon, p->delta, q, planned, prior, acc, sigma, &eps, err)) return -1;
        *max_events = planned;
        fprintf(log, "privacy: calibrated noise multiplier %.4f for epsilon %.3f at delta %g over %lld %s (q %.5g)\n",
                *sigma, eps, p->delta, (long long)planned, unit, q);
    } else {
        *sigma = p->noise_multiplier;
        if (*sigma == 0) fprintf(log, "privacy: WARNING: noise multiplier 0 -- clipping only, NO differential privacy guarantee\n");
    }
    return 0;
}
