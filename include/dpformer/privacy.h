/* dpformer public API: the DP-SGD engine's per-example clipping.
 * For a batch, computes every example's gradient norm ‖∇ℓ_i‖ over all trainable parameters together
 * (flat clipping) and the clipped sum Σ_i c_i ∇ℓ_i with c_i = min(1, C / (‖∇ℓ_i‖ + 1e-6)), exactly,
 * by one of four methods (docs/privacy.md):
 *   naive    one backward pass per example, materialising each per-example gradient (the reference);
 *   ghost    one backward pass; Gram-form ("ghost") norms for linear layers and the output layer,
 *            grouped-id norms for embeddings; refuses a tied output layer (it cannot see the cross term);
 *   phantom  ghost plus the exact norm of the shared (tied) item embedding with its cross term;
 *   auto     as phantom, choosing per layer and example the cheaper exact form (Gram or instantiation).
 * Noise is not added here (see the trainer): this is the deterministic part that users can verify. */
#ifndef DPFORMER_PRIVACY_H
#define DPFORMER_PRIVACY_H

#include "dpformer/common.h"
#include "dpformer/model.h"
#include "dpformer/noise.h"

typedef enum { DP_CLIP_AUTO = 0, DP_CLIP_NAIVE, DP_CLIP_GHOST, DP_CLIP_PHANTOM } dp_clip_mode;
int dp_clip_mode_parse(const char *s, dp_clip_mode *mode);
const char *dp_clip_mode_name(dp_clip_mode mode);

/* Adds Σ_i c_i ∇ℓ_i to the model's gradient array (zero it first for a fresh sum; physical chunks of a
 * logical batch accumulate). ℓ_i is example i's loss (mean cross-entropy over its targets). norms[B]
 * receives ‖∇ℓ_i‖ (before clipping) and per_example_loss[B] the losses (either may be NULL). Dropout
 * masks are those of sequences ex0.. of the logical batch. Returns non-zero (with err) if the mode
 * cannot handle the model (ghost with a tied output layer). */
int dp_clipped_grad(dp_model *m, const dp_batch *bt, dp_clip_mode mode, double max_grad_norm, int train,
                    uint64_t dropout_seed, int ex0, double *norms, double *per_example_loss, dp_error *err);

/* dp_clipped_grad of a batch of LEFT-padded windows (the recommender's) without compute on the padding:
 * the examples are taken in chunks of similar length, each on the last T positions of the window, T
 * its longest sequence (dp_model_set_window_last), every example with its own dropout masks. Norms,
 * losses and the clipped sum are those of dp_clipped_grad on the full windows, in the batch's order
 * (up to the rounding of sums taken in another order). */
int dp_clipped_grad_trimmed(dp_model *m, const dp_batch *bt, dp_clip_mode mode, double max_grad_norm, int train,
                            uint64_t dropout_seed, int ex0, double *norms, double *per_example_loss, dp_error *err);

/* grads += σ·z over every parameter, on the model's device, from the generator's ChaCha20 stream
 * (dpformer/noise.h): the same values as dp_noise_gaussian_add on the host array would give, on any
 * device. */
int dp_add_grad_noise(dp_model *m, dp_rng *rng, double sigma, dp_error *err);

#endif
