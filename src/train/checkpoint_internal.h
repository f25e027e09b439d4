/* Between the training loop (loop.c), its task adapters (trainer.c, textcls.c) and the checkpoint
 * files (checkpoint.c): the settings every run has, the progress counters a checkpoint saves, what the
 * loop hands over to write one, what it takes back on resume, and the exact-JSON helpers with which a
 * task adds its own settings and data identity. Not part of the public API. */
#ifndef DP_TRAIN_CHECKPOINT_INTERNAL_H
#define DP_TRAIN_CHECKPOINT_INTERNAL_H

#include <cjson/cJSON.h>
#include "dpformer/checkpoint.h"
#include "dpformer/noise.h"
#include "dpformer/reattention.h"

/* What the training loop does in a step (docs/training.md). */
typedef enum { DP_LOOP_NONPRIVATE = 0, DP_LOOP_DPSGD = 1, DP_LOOP_DPFP = 2 } dp_loop_mode;
const char *dp_loop_mode_name(dp_loop_mode mode); /* "non-private", "dp-sgd", "dp-fp" */

/* The settings every task's run has: saved in every checkpoint (metadata dpformer.train_config, next
 * to the task's own settings) and compared on resume by dp_ckpt_check_settings. */
typedef struct {
    dp_model_config model;
    dp_optim_config optim;
    dp_loop_mode mode;
    int epochs, batch_size, eval_every, keep_last, micro_batches;
    uint64_t seed;
    dp_privacy_config dp;    /* dp.enabled = (mode != DP_LOOP_NONPRIVATE) */
    const char *out_dir;
    int64_t checkpoint_every;
    int keep_checkpoints;
} dp_run_settings;

/* The recommendation task's settings (trainer.c). */
dp_run_settings dp_train_settings(const dp_train_config *c);

/* Where a run stands at a step boundary. Every field is saved exactly (doubles with 17 digits). */
typedef struct {
    int epoch;               /* the epoch in progress (1-based); after an epoch's end, the next one */
    int64_t epoch_step;      /* steps taken in it */
    int64_t step;            /* optimiser steps taken */
    int64_t dp_steps;        /* private steps taken (DP-SGD or DP-FP) */
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
    double best_score;       /* its validation score as used for selection (saved as "best_ndcg") */
    int stopped_at_budget;
    int complete;            /* 1: the training loop has finished */
    int resumes;             /* how many times the run was resumed */
    /* private runs: the σ, q and step budget in force */
    double sigma, q;
    int64_t max_steps;       /* -1: no budget */
} dp_train_progress;

/* What a checkpoint is written from. */
typedef struct {
    const char *task;        /* the task's name and the command that resumes it (metadata dpformer.task) */
    const char *command;
    const dp_run_settings *settings;
    cJSON *task_config;      /* the task's own settings, added to the saved configuration (may be NULL) */
    cJSON *dataset;          /* the data identity (an object; the loop adds "train_examples") */
    const char *extra;       /* the caller's JSON object (dpformer.extra), or NULL */
    dp_model *m;
    dp_optimizer *opt;
    const int32_t *order;    /* [n_train] the training examples' ids in their current order */
    int32_t n_train;
    const dp_real *best;     /* parameters of the best epoch, or NULL (none validated yet) */
    const dp_train_progress *pg;
    const dp_rng *rng;       /* private runs only */
    const dp_history *hist;  /* private runs only */
    const char *metrics;     /* the metrics.jsonl epoch lines written so far */
} dp_ckpt_source;

/* Write ckpt-<step>.safetensors into dir (created if needed), atomically, then delete all but the
 * newest settings->keep_checkpoints files and stale temporary files. The path written goes to path.
 * With DP-SGD and Re-Attention on, the model's item frequencies (dp_model_get_reattention) are saved
 * too. Refuses (writes nothing) if a parameter or optimiser value is not finite. */
int dp_ckpt_write(const char *dir, const dp_ckpt_source *s, char *path, size_t path_cap, dp_error *err);

/* The saved task ("recommendation" for checkpoints written before tasks were recorded) and the
 * command that resumes it ("dpformer train"). */
const char *dp_ckpt_command(const dp_checkpoint *c);
/* The folder c was read from. */
const char *dp_ckpt_dir(const dp_checkpoint *c);
/* The saved progress, generator state (hex; NULL for a non-private run) and metrics lines. */
const dp_train_progress *dp_ckpt_progress(const dp_checkpoint *c);
const char *dp_ckpt_rng_hex(const dp_checkpoint *c);
int dp_ckpt_metrics_count(const dp_checkpoint *c);
const char *dp_ckpt_metrics_line(const dp_checkpoint *c, int i);
/* The settings stored in the checkpoint (before any change on resume), and the configuration and
 * dataset objects as saved, for the task to read its own keys from. */
const dp_run_settings *dp_ckpt_settings(const dp_checkpoint *c);
const cJSON *dp_ckpt_config_json(const dp_checkpoint *c);
const cJSON *dp_ckpt_dataset_json(const dp_checkpoint *c);
/* Re-Attention's item frequencies p_i [n_items + 1] as the run used them (tensor reattention.item_freq,
 * verified to lie in [0, 1]), or NULL when the saved run has Re-Attention off. */
const double *dp_ckpt_item_freq(const dp_checkpoint *c);

/* Can the run saved in c continue with the settings `now`? Refuses (message naming the file and the
 * setting) another model shape or configuration, another seed, optimizer (and AdamW constants),
 * batch size, mode, seeded noise, delta or accountant, a change of model selection (keep-last), of
 * the micro-batches of DP-FP, and fewer epochs than already run. A task checks its own settings and
 * its data after this. */
int dp_ckpt_check_settings(const dp_checkpoint *c, const dp_run_settings *now, dp_error *err);
/* The task of c is `task`; else a message saying which command resumes it. */
int dp_ckpt_check_task(const dp_checkpoint *c, const char *task, dp_error *err);
/* Refusal messages in the form of dp_ckpt_check_settings: "PATH: cannot resume with WHAT NOW: the
 * checkpoint has SAVED (WHY)"; 0 when equal. */
int dp_ckpt_differs_i(const dp_checkpoint *c, const char *what, const char *why, long long saved, long long now,
                      dp_error *err);
int dp_ckpt_differs_d(const dp_checkpoint *c, const char *what, const char *why, double saved, double now,
                      dp_error *err);
int dp_ckpt_differs_s(const dp_checkpoint *c, const char *what, const char *why, const char *saved, const char *now,
                      dp_error *err);

/* Copy the saved tensors into a model and optimiser created from the same configuration (after
 * the resume checks): parameters, optimiser buffers and step count, the training order
 * ([n_train], checked to be a permutation of the ids in `order`) and, if saved, the best parameters
 * (*has_best). */
int dp_ckpt_restore(const dp_checkpoint *c, dp_model *m, dp_optimizer *opt, int32_t *order, int32_t n_train,
                    dp_real *best, int *has_best, dp_error *err);

/* ---- exact JSON: what a task uses to save and read its own settings ---- */

/* Writing: numbers exactly (17 digits); a non-finite double marks the writer bad (checkpoints refuse
 * to be written then). */
typedef struct {
    const char *bad; /* first field that could not be written */
} dp_jw;
void dp_jw_num(dp_jw *w, cJSON *o, const char *k, double v);
void dp_jw_int(cJSON *o, const char *k, int64_t v);
void dp_jw_bool(cJSON *o, const char *k, int v);
void dp_jw_str(cJSON *o, const char *k, const char *s); /* NULL: JSON null */

/* Reading: the first problem is reported as "PATH: metadata KEY: "field" problem" and later reads
 * are no-ops (they return 0 / NULL). */
typedef struct {
    const char *path, *key;
    dp_error *err;
    int bad;
} dp_jr;
int dp_jr_fail(dp_jr *r, const char *field, const char *what);
const cJSON *dp_jr_obj(dp_jr *r, const cJSON *o, const char *k);
double dp_jr_num(dp_jr *r, const cJSON *o, const char *k);
int64_t dp_jr_int(dp_jr *r, const cJSON *o, const char *k, double lo, double hi);
int dp_jr_bool(dp_jr *r, const cJSON *o, const char *k);
const char *dp_jr_str(dp_jr *r, const cJSON *o, const char *k, int nullable);

/* Re-Attention as a recommendation run sets it up: scale kappa, the σ in force, the expected batch qN,
 * the item frequencies and the N training users (trainer.c at the start of a run, dp_checkpoint_model
 * from a checkpoint). */
dp_reattention_config dp_ckpt_reattention(double kappa, double sigma, double expected_batch, const double *freq,
                                          int64_t n);

#endif
