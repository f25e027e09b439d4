/* dpformer public API: Re-Attention, the attention correction for models trained with DP-SGD
 * (docs/reattention.md). Under DP-SGD noise a key with noise variance v_u inflates the expected
 * attention it receives by exp(‖q‖² v_u / (2 d_h)); rare items' embeddings are relatively noisier, so
 * a DP model is distracted toward the tail. With Re-Attention on, every forward pass of the model
 * (training, evaluation, scoring, and the privacy engine's) tracks one noise variance per position
 * and layer from the current parameters and the batch, and every attention logit becomes
 *   l_tu = ⟨q_t, k_u⟩/√d_h − κ · ‖q_t‖² · v_u / (2 d_h),
 * the correction being a constant for the gradient. Example b's correction depends only on example
 * b and the parameters, so per-example clipping stays exact. */
#ifndef DPFORMER_REATTENTION_H
#define DPFORMER_REATTENTION_H

#include "dpformer/common.h"
#include "dpformer/model.h"

typedef struct {
    int enabled;             /* 0: the plain model (bit-identical results) */
    double kappa;            /* scale of the correction, ≥ 0 (default 1) */
    double sigma;            /* the DP-SGD noise multiplier σ, ≥ 0 (0: no noise, no correction) */
    double batch_size;       /* the expected batch size B = qN of the run (> 0), not a realised size */
    const double *item_freq; /* [n_items + 1]: p_i = fraction of training examples that contain item i,
                              * in [0, 1]; index 0 (padding) unused. Private data: see docs/reattention.md.
                              * Copied by dp_model_set_reattention. */
    int64_t n_examples;      /* N, the number of training examples: p_i is clamped below at 1/N (≥ 1) */
} dp_reattention_config;

/* Disabled, κ = 1, everything else 0/NULL. */
dp_reattention_config dp_reattention_config_default(void);

/* Attach (or with cfg NULL or cfg->enabled 0, detach) Re-Attention. Checks the ranges and copies the
 * frequencies; the noise-to-signal ratios are r_i = σ / (B · max(p_i, 1/N)) for item rows and σ / B
 * for every other parameter. Can be called again at any time (e.g. with updated σ or frequencies).
 * Returns non-zero (with err) on an invalid configuration, leaving the model's setting unchanged. */
int dp_model_set_reattention(dp_model *m, const dp_reattention_config *cfg, dp_error *err);

/* The current setting (item_freq points to the model's copy, valid until the next set or free);
 * returns cfg->enabled. */
int dp_model_get_reattention(const dp_model *m, dp_reattention_config *cfg);

/* After a forward pass with Re-Attention on: the key noise variances v_u used in layer `layer`,
 * laid out [B, n_heads, L] for that pass's B (NULL if off or layer out of range). For diagnostics. */
const dp_real *dp_model_reattention_key_variance(const dp_model *m, int layer);

#endif
