/* The noise plan of a private run: calibration to a target ε, or the event budget of a given σ; and
 * the check, before a run starts, that the plan allows at least one training step. */
#include <math.h>

#include "core/common.h"
#include "train/noise_plan.h"

static const char *acc_label(const dp_accounting_options *acc) {
    return acc && acc->accountant == DP_ACCOUNTANT_PLD ? "PLD" : "RDP";
}

/* "one step" or "one step (M mechanism events)" */
static void one_step(int64_t min_events, char *buf, size_t cap) {
    if (min_events <= 1) snprintf(buf, cap, "one step");
    else snprintf(buf, cap, "one step (%lld mechanism events)", (long long)min_events);
}

int dp_noise_plan_check(const dp_privacy_config *p, double q, int64_t planned, int64_t min_events,
                        const dp_history *prior, const dp_accounting_options *acc, dp_error *err) {
    if (!(p->target_epsilon > 0)) return 0;
    if (min_events < 1) min_events = 1;
    if (!(p->noise_multiplier > 0)) /* σ calibrated: some σ must meet the target over the planned events */
        return dp_calibrate_feasible(p->target_epsilon, p->delta, q, planned, prior, acc, err);
    /* σ given: even an infinite σ must allow a step, and then this σ must allow one */
    if (dp_calibrate_feasible(p->target_epsilon, p->delta, q, min_events, prior, acc, err)) return -1;
    dp_history h;
    dp_history_init(&h);
    int rc = 0;
    for (size_t i = 0; prior && i < prior->n && !rc; i++) rc = dp_history_add(&h, &prior->events[i], err);
    if (!rc) rc = dp_history_add_poisson_gaussian(&h, p->noise_multiplier, q, min_events, err);
    double eps = 0;
    if (!rc) rc = dp_epsilon(&h, p->delta, acc, &eps, err);
    dp_history_free(&h);
    if (rc) return -1;
    if (eps > p->target_epsilon) {
        char what[64];
        one_step(min_events, what, sizeof what);
        return dp_fail(err, "noise multiplier %g allows no training step within target epsilon %g at delta %g: %s at "
                            "sample rate %.5g%s already gives epsilon %.4g (%s accountant); raise the noise "
                            "multiplier or the target epsilon (nothing was trained)",
                       p->noise_multiplier, p->target_epsilon, p->delta, what, q,
                       prior && prior->n ? " after the earlier events" : "", eps, acc_label(acc));
    }
    return 0;
}

int dp_noise_plan(const dp_privacy_config *p, double q, int64_t planned, int64_t min_events, const dp_history *prior,
                  const dp_accounting_options *acc, const char *unit, FILE *log, double *sigma, int64_t *max_events,
                  dp_error *err) {
    double eps;
    *max_events = -1;
    if (min_events < 1) min_events = 1;
    if (p->target_epsilon > 0 && p->noise_multiplier > 0) {
        /* σ given and a budget: run until the next event would exceed the target */
        *sigma = p->noise_multiplier;
        if (dp_max_steps(p->target_epsilon, p->delta, q, *sigma, prior, acc, max_events, &eps, err)) return -1;
        if (*max_events < min_events) {
            char what[64];
            one_step(min_events, what, sizeof what);
            return dp_fail(err, "noise multiplier %g allows no training step within target epsilon %g at delta %g "
                                "(%s at sample rate %.5g exceeds it); raise the noise multiplier or the target "
                                "epsilon", *sigma, p->target_epsilon, p->delta, what, q);
        }
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

double dp_rec_sample_rate(const dp_privacy_config *p, int batch_size, int32_t n_train) {
    return p->sample_rate > 0 ? p->sample_rate : DP_MIN(1.0, (double)batch_size / n_train);
}

double dp_text_sample_rate(int batch_size, int per_step, int64_t n) {
    return DP_MIN(1.0, (double)batch_size / ((double)per_step * (double)n));
}

int dp_train_plan_check(const dp_dataset *ds, const dp_train_config *c, dp_error *err) {
    const dp_privacy_config *p = &c->dp;
    if (!p->enabled || c->resume) return 0;
    int32_t n_train = 0;
    for (int32_t u = 0; u < ds->n_users; u++) n_train += dp_split_history(ds, u, DP_SPLIT_TRAIN) >= 2;
    if (n_train == 0) return 0; /* refused by dp_train_check */
    /* as dp_train (trainer.c) plans it */
    const double q = dp_rec_sample_rate(p, c->batch_size, n_train);
    const int64_t per_epoch = DP_MAX((int64_t)1, dp_steps_for_epochs(1, q));
    dp_accounting_options acc;
    dp_accounting_default_options(&acc);
    acc.accountant = p->accountant;
    dp_history prior;
    dp_history_init(&prior);
    int rc = 0;
    if (p->reattention && !p->item_freq_public && p->item_freq_noise > 0) /* the frequency release comes first */
        rc = dp_history_add_gaussian(&prior, p->item_freq_noise, 1, err);
    if (!rc) rc = dp_noise_plan_check(p, q, (int64_t)c->epochs * per_epoch, 1, prior.n ? &prior : NULL, &acc, err);
    dp_history_free(&prior);
    return rc;
}

int dp_text_plan_check(const dp_text_train_config *c, int64_t n_train, dp_error *err) {
    if (c->mode == DP_TEXT_NONPRIVATE || n_train < 1 || c->batch_size < 1 || c->resume) return 0;
    /* as dp_text_train plans it */
    double q;
    int64_t per_epoch;
    const int per_step = dp_text_plan(c, n_train, &q, &per_epoch);
    dp_accounting_options acc;
    dp_accounting_default_options(&acc);
    acc.accountant = c->dp.accountant;
    return dp_noise_plan_check(&c->dp, q, per_epoch * c->epochs * per_step, per_step, NULL, &acc, err);
}
