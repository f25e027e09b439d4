/* The noise plan of a private run, shared by the training loops: σ and the budget of mechanism events
 * from the privacy settings (docs/privacy.md). */
#ifndef DP_TRAIN_NOISE_PLAN_H
#define DP_TRAIN_NOISE_PLAN_H

#include <stdio.h>
#include "dpformer/train.h"

/* With a target ε and σ: σ as given, *max_events = the most events (rate q) that fit within the target
 * after `prior` (may be NULL). With a target only: σ calibrated for `planned` events, *max_events =
 * planned. Otherwise σ as given and *max_events = -1 (no budget; σ = 0 is warned about). One line on
 * log says which; `unit` names the events in it ("steps", "mechanism events"). */
int dp_noise_plan(const dp_privacy_config *p, double q, int64_t planned, const dp_history *prior,
                  const dp_accounting_options *acc, const char *unit, FILE *log, double *sigma, int64_t *max_events,
                  dp_error *err);

#endif
