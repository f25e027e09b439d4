/* Flags shared by the commands that build and train a model (train, demo): model shape and
 * optimisation settings, and their conversion into the library's configuration structs. */
#ifndef DP_CLI_TRAIN_FLAGS_H
#define DP_CLI_TRAIN_FLAGS_H

#include "cli/args.h"
#include "dpformer/train.h"

typedef struct {
    int max_len, d_model, n_heads, n_layers, d_ff, untied, epochs, batch_size, eval_every, exclude_seen, threads;
    int no_progress, dp, seeded_noise, keep_last, select_best, max_physical_batch;
    double noise_multiplier, target_epsilon, delta, max_grad_norm, sample_rate;
    const char *clip_mode, *accountant;
    double dropout, lr, weight_decay, momentum, min_lr_ratio;
    int64_t warmup_steps, max_eval_users, seed;
    const char *optimizer, *schedule;
    int reattention, item_freq_cap;
    double reattention_scale, item_freq_noise;
    const char *item_freq;
    const char *device;
} train_flags;

#define TRAIN_FLAG_COUNT 39
void train_flags_defaults(train_flags *f);
/* Writes TRAIN_FLAG_COUNT specs pointing into f. */
void train_flags_specs(train_flags *f, arg_spec *out);
/* Fill cfg from the flags (model n_items is set by the caller). Returns 0, or 2 with a message. */
int train_flags_to_config(const char *cmd, const train_flags *f, dp_train_config *cfg);

/* Print the run's privacy statement (or "none"). */
void print_privacy(FILE *f, const dp_train_config *cfg, const dp_train_result *res);

#endif
