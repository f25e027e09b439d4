/* The noise plan of a private run, shared by the training loop and its tasks: σ and the budget of mechanism events
 * from the privacy settings (docs/privacy.md), and the checks that the CLI runs on it before anything
 * is trained or written. */
#ifndef DP_TRAIN_NOISE_PLAN_H
#define DP_TRAIN_NOISE_PLAN_H

#include <stdio.h>
#include "dpformer/textcls.h"
#include "dpformer/train.h"

/* With a target ε and σ: σ as given, *max_events = the most events (rate q) that fit within the target
 * after `prior` (may be NULL). With a target only: σ calibrated for `planned` events, *max_events =
 * planned. Otherwise σ as given and *max_events = -1 (no budget; σ = 0 is warned about). One line on
 * log says which; `unit` names the events in it ("steps", "mechanism events"). A budget of fewer than
 * `min_events` events (one training step's worth) is an error: such a run would train nothing and
 * still save a "private" model. */
int dp_noise_plan(const dp_privacy_config *p, double q, int64_t planned, int64_t min_events, const dp_history *prior,
                  const dp_accounting_options *acc, const char *unit, FILE *log, double *sigma, int64_t *max_events,
                  dp_error *err);

/* Whether dp_noise_plan can succeed with at least min_events events, without calibrating (at most three
 * accountant calls). On failure the message says why: the earlier events alone exceed the target, no
 * noise multiplier can meet it (with the reason: δ too small for the accountant), or the given σ allows
 * no step. Returns 0 if the plan is possible. */
int dp_noise_plan_check(const dp_privacy_config *p, double q, int64_t planned, int64_t min_events,
                        const dp_history *prior, const dp_accounting_options *acc, dp_error *err);

/* Poisson rate of a recommendation run: the given rate, or batch size / training users (at most 1). */
double dp_rec_sample_rate(const dp_privacy_config *p, int batch_size, int32_t n_train);
/* Poisson rate of a text run: the expected batch shared by `per_step` micro-batches, over n examples. */
double dp_text_sample_rate(int batch_size, int per_step, int64_t n);

/* dp_noise_plan_check for a fresh `dpformer train` / `train-text` run, from its configuration and data
 * exactly as the training loop will plan it (0 for a non-private or resumed run: a resumed run's plan is
 * made against its checkpoint's history). */
int dp_train_plan_check(const dp_dataset *ds, const dp_train_config *c, dp_error *err);
int dp_text_plan_check(const dp_text_train_config *c, int64_t n_train, dp_error *err);

/* The sampling plan of a private text run (textcls.c): the Poisson rate q of each micro-batch and the
 * steps of an epoch (N / batch-size in every mode); returns the mechanism events per step (M or 1). */
int dp_text_plan(const dp_text_train_config *c, int64_t n_train, double *q, int64_t *steps_per_epoch);

#endif
