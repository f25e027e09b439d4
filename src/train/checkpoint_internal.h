/* Between the training loop (trainer.c) and the checkpoint files (checkpoint.c): the run's progress
 * counters that a checkpoint saves, what the loop hands over to write one, and what it takes back
 * on resume. Not part of the public API. */
#ifndef DP_TRAIN_CHECKPOINT_INTERNAL_H
#define DP_TRAIN_CHECKPOINT_INTERNAL_H

#include "dpformer/checkpoint.h"
#include "dpformer/noise.h"

/* Where a run stands at a step boundary. Every field is saved exactly (doubles with 17 digits). */
typedef struct {
    int epoch;               /* the epoch in progress (1-based); after an epoch's end, the next one */
    int64_t epoch_step;      /* steps taken in it */
    int64_t step;            /* optimiser steps taken */
    int64_t dp_steps;        /* DP-SGD steps taken */
    /* the epoch in progress, so far */
    double loss_sum;
    int64_t loss_n, n_clipped, n_seen;
    double epoch_seconds;
    /* the run so far */
    int epochs_run;          /* completed epochs (= metrics.jsonl epoch lines) */
    double train_time, elapsed;
    int64_t examples;
    double first_train_loss, final_train_loss;
    int best_epoch;          /* 0: no epoch validated yet */
    double best_ndcg;        /* its validation NDCG@10 as used for selection */
    int stopped_at_budget;
    int complete;            /* 1: the training loop has finished */
    int resumes;             /* how many times the run was resumed */
    /* DP-SGD: the σ, q and step budget in force */
    double sigma, q;
    int64_t max_steps;       /* -1: no budget */
} dp_train_progress;

/* What a checkpoint is written from. */
typedef struct {
    const dp_train_config *cfg;
    uint64_t data_fp;
    const dp_dataset *ds;
    dp_model *m;
    dp_optimizer *opt;
    const int32_t *order;    /* [n_train] training users in their current order */
    int32_t n_train;
    const dp_real *best;     /* parameters of the best epoch, or NULL (none validated yet) */
    const dp_train_progress *pg;
    const dp_rng *rng;       /* DP-SGD only */
    const dp_history *hist;  /* DP-SGD only */
    const char *metrics;     /* the metrics.jsonl epoch lines written so far */
} dp_ckpt_source;

/* Write ckpt-<step>.safetensors into dir (created if needed), atomically, then delete all but the
 * newest cfg->keep_checkpoints files and stale temporary files. The path written goes to path.
 * With DP-SGD and Re-Attention on, the model's item frequencies (dp_model_get_reattention) are saved
 * too. Refuses (writes nothing) if a parameter or optimiser value is not finite. */
int dp_ckpt_write(const char *dir, const dp_ckpt_source *s, char *path, size_t path_cap, dp_error *err);

/* The saved progress, generator state (hex; NULL for a non-private run) and metrics lines. */
const dp_train_progress *dp_ckpt_progress(const dp_checkpoint *c);
const char *dp_ckpt_rng_hex(const dp_checkpoint *c);
int dp_ckpt_metrics_count(const dp_checkpoint *c);
const char *dp_ckpt_metrics_line(const dp_checkpoint *c, int i);
/* The configuration stored in the checkpoint (before any change on resume). */
const dp_train_config *dp_ckpt_saved_config(const dp_checkpoint *c);
/* Re-Attention's item frequencies p_i [n_items + 1] as the run used them (tensor reattention.item_freq,
 * verified to lie in [0, 1]), or NULL when the saved run has Re-Attention off. */
const double *dp_ckpt_item_freq(const dp_checkpoint *c);

/* Copy the saved tensors into a model and optimiser created from the same configuration (after
 * dp_checkpoint_check_resume): parameters, optimiser buffers and step count, the training order
 * ([n_train], checked to be a permutation of it) and, if saved, the best parameters (*has_best). */
int dp_ckpt_restore(const dp_checkpoint *c, dp_model *m, dp_optimizer *opt, int32_t *order, int32_t n_train,
                    dp_real *best, int *has_best, dp_error *err);

#endif
