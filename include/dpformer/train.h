/* dpformer public API: optimisers, learning-rate schedules, batching, evaluation and the training
 * loop for next-item recommendation. */
#ifndef DPFORMER_TRAIN_H
#define DPFORMER_TRAIN_H

#include <signal.h>
#include <stdio.h>
#include "dpformer/accountant.h"
#include "dpformer/common.h"
#include "dpformer/data.h"
#include "dpformer/model.h"
#include "dpformer/privacy.h"

/* ---- optimisers and schedules ---- */
typedef enum { DP_OPT_ADAMW = 0, DP_OPT_SGD } dp_optimizer_kind;
typedef enum { DP_SCHED_CONSTANT = 0, DP_SCHED_WARMUP, DP_SCHED_COSINE } dp_schedule_kind;
typedef struct {
    dp_optimizer_kind kind;
    double lr;
    double beta1, beta2, eps;  /* AdamW */
    double weight_decay;       /* decoupled (AdamW) or L2 (SGD); only tensors marked `decay` */
    double momentum;           /* SGD */
    dp_schedule_kind schedule;
    int64_t warmup_steps;      /* linear warm-up from 0 (warmup and cosine) */
    int64_t total_steps;       /* cosine: decays to min_lr_ratio·lr at total_steps */
    double min_lr_ratio;
} dp_optim_config;
dp_optim_config dp_optim_config_default(void); /* AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0 */
int dp_optimizer_kind_parse(const char *s, dp_optimizer_kind *k);
int dp_schedule_kind_parse(const char *s, dp_schedule_kind *k);

typedef struct dp_optimizer dp_optimizer;
dp_optimizer *dp_optimizer_create(const dp_optim_config *cfg, const dp_model *m);
void dp_optimizer_free(dp_optimizer *o);
/* Learning rate the next step will use. */
double dp_optimizer_lr(const dp_optimizer *o);
int64_t dp_optimizer_step_count(const dp_optimizer *o);
/* The optimiser's state, for checkpoints: which = 0 gives the first-moment (AdamW) or momentum (SGD)
 * buffer, which = 1 the second-moment buffer (AdamW; NULL for SGD); each holds dp_model_num_params
 * values in the layout of the parameters. dp_optimizer_set_step_count restores the step count (which
 * drives the schedule and AdamW's bias correction). */
dp_real *dp_optimizer_state(dp_optimizer *o, int which);
/* The same state as host arrays on any device (the model's): copies out and in; return -1 where
 * dp_optimizer_state would return NULL. */
int dp_optimizer_read_state(const dp_optimizer *o, int which, dp_real *dst);
int dp_optimizer_write_state(dp_optimizer *o, int which, const dp_real *src);
void dp_optimizer_set_step_count(dp_optimizer *o, int64_t t);
/* One update of the model's parameters from its gradient array. The padding row of the item
 * embedding (and of an untied output layer) stays zero. */
void dp_optimizer_step(dp_optimizer *o, dp_model *m);

/* ---- batching (the training protocol of docs/model.md) ---- */
/* Training window of one sequence: its last L+1 items give inputs (first L) and next-item targets,
 * left-padded to L. ids/targets: [L]. Returns the number of targets (0 if len < 2). */
int dp_make_train_window(int32_t *ids, int32_t *targets, const int32_t *seq, int64_t len, int L);
/* Evaluation window: the last L items of the history, left-padded. */
void dp_make_eval_window(int32_t *ids, const int32_t *history, int64_t len, int L);

/* ---- evaluation: full ranking at the last position ---- */
/* Rank every user with a target in `split` (all of them, or the first max_users if > 0). */
void dp_evaluate(dp_model *m, const dp_dataset *ds, dp_split split, int exclude_seen, int64_t max_users,
                 dp_rank_metrics *out);

/* ---- the training loop ---- */

/* A checkpoint read back from disk (dpformer/checkpoint.h). */
typedef struct dp_checkpoint dp_checkpoint;

/* DP-SGD settings (docs/privacy.md). The privacy unit is one training example: in recommendation, one
 * user's whole sequence. */
typedef struct {
    int enabled;
    double noise_multiplier;  /* σ (0 with target_epsilon > 0: calibrate σ) */
    double target_epsilon;    /* > 0: ε never exceeds it; σ calibrated for the planned steps, or, if
                                 noise_multiplier > 0, training stops before the step that would exceed it */
    double delta;
    double max_grad_norm;     /* C */
    double sample_rate;       /* Poisson rate q; 0: batch_size / (number of training users) */
    int max_physical_batch;   /* examples per physical chunk of a logical batch */
    dp_clip_mode clip_mode;
    int seeded_noise;         /* 1: noise and sampling from --seed (reproducible, NOT private) */
    dp_accountant_kind accountant;
    /* Re-Attention (docs/reattention.md): debiased attention for the noise this run adds. Needs the
     * item frequencies p_i: from item_freq_public (a file of `item fraction` lines), or released from
     * the training windows with the Gaussian mechanism (noise multiplier item_freq_noise, at most
     * item_freq_cap distinct items per example; 0: the window length), whose cost enters the run's ε. */
    int reattention;
    double reattention_scale; /* κ (default 1) */
    const char *item_freq_public;
    double item_freq_noise;   /* σ_f (default 10) */
    int item_freq_cap;
} dp_privacy_config;
dp_privacy_config dp_privacy_config_default(void); /* off; δ 1e-6, C 1, auto, RDP, physical 256 */

typedef struct {
    dp_model_config model;
    dp_optim_config optim;
    int epochs;
    int batch_size;
    int eval_every;        /* evaluate on validation every k epochs (and after the last) */
    int exclude_seen;      /* exclude history items from the ranking */
    int keep_last;         /* keep the last epoch instead of the best by validation NDCG@10 */
    int64_t max_eval_users; /* 0 = all */
    uint64_t seed;
    const char *out_dir;   /* metrics.jsonl and model.safetensors are written here (NULL: nothing) */
    const char *data_desc; /* recorded in metrics and the saved model */
    int progress;          /* 1: progress bar on stderr; 0: one plain line per epoch; -1: silent */
    FILE *log;             /* where epoch lines go (stderr if NULL) */
    dp_privacy_config dp;
    /* Checkpoints (docs/checkpoints.md). With a folder, one is written at every epoch end, every
     * checkpoint_every steps, when the run is stopped through `stop`, and at the end of the run. */
    const char *checkpoint_dir;   /* NULL: no checkpoints */
    int64_t checkpoint_every;     /* also every N optimiser steps (0: not) */
    int keep_checkpoints;         /* the newest K are kept (default 2) */
    const char *checkpoint_extra; /* optional JSON object text stored in every checkpoint (the caller's
                                     own settings, e.g. the data format); NULL: none */
    const dp_checkpoint *resume;  /* continue the run saved in this checkpoint (NULL: a fresh run) */
    dp_device device;             /* where the model runs (cpu by default); checkpoints and the saved model
                                     are device-independent, so a run may resume on another device */
    volatile sig_atomic_t *stop;  /* when non-NULL and set non-zero (e.g. to a signal number by a
                                     handler), the run stops at the next step boundary after writing a
                                     checkpoint, and dp_train returns DP_TRAIN_STOPPED */
    int no_trim;                  /* 1: every batch on full windows of max_len positions (0, the default:
                                     batches sorted by length, each chunk on a window as long as its
                                     longest sequence; the same losses and gradients, docs/training.md) */
} dp_train_config;
dp_train_config dp_train_config_default(void);

typedef struct {
    int epochs_run;
    int best_epoch;          /* epoch whose parameters were kept (best validation NDCG@10) */
    dp_rank_metrics valid;   /* of the kept model */
    dp_rank_metrics test;    /* of the kept model */
    double final_train_loss;
    double first_train_loss;
    double seconds_per_epoch;
    double examples_per_second;
    /* DP-SGD runs: what the accountant computed for exactly the steps taken */
    double epsilon, delta, noise_multiplier, sample_rate, expected_batch;
    int64_t dp_steps;
    int stopped_at_budget;   /* 1 if training stopped early because the next step would exceed ε */
    int32_t n_train_users;
    int stopped_by;          /* the value *cfg->stop held when the run stopped (0: not stopped) */
    int64_t steps;           /* optimiser steps taken in all (across resumes) */
    int64_t resumed_from_step; /* -1: a fresh run */
    char checkpoint[4096];   /* the newest checkpoint written, or resumed from ("" if none) */
} dp_train_result;

/* Train on the leave-one-out training prefixes of ds; select the epoch by validation NDCG@10; report
 * validation and test metrics of that model (all users; max_eval_users limits only the per-epoch
 * validation). *out_model receives the trained model (caller frees). With cfg->dp.enabled, DP-SGD:
 * Poisson sampling, per-example clipping, Gaussian noise once per logical step, accounting. Note that
 * choosing the epoch by validation uses the validation targets; they are not part of the training
 * prefixes, and docs/privacy.md says what the guarantee covers. */
/* Check a configuration against a dataset without training (ranges, item count, DP settings, at least
 * one user with a training target). dp_train runs the same checks first. */
int dp_train_check(const dp_dataset *ds, const dp_train_config *cfg, dp_error *err);
/* Returns 0 on success, DP_TRAIN_STOPPED when stopped through cfg->stop (err says where; no model is
 * returned), -1 on error (err; res->checkpoint names the newest good checkpoint, if any). */
#define DP_TRAIN_STOPPED 1
int dp_train(const dp_dataset *ds, const dp_train_config *cfg, dp_model **out_model, dp_train_result *res,
             dp_error *err);

#endif
