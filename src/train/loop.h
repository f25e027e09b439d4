/* The one training loop of every task, and the adapter interface through which a task plugs into it
 * (docs/training.md, "One training loop, task adapters"). Not part of the public API.
 *
 * The loop owns everything that is the same for every task: epochs; the order of the examples
 * (shuffled batches without privacy) or their Poisson sampling; physical chunks; DP-SGD steps
 * (per-example clipping through the privacy engine, noise once per step, division by the expected
 * batch) and DP-FP steps (M Poisson micro-batches, fresh representation noise for every chunk, M
 * mechanism events per step); the optimiser and its schedule; non-finite checks; the progress bar or
 * plain epoch lines; metrics.jsonl; checkpoints and exact resume; stop requests (signals); model
 * selection; the privacy accountant, its plan and privacy.json; saving the model.
 *
 * A task (dp_task) supplies the rest: how many training examples it has (the privacy unit), how a
 * chunk of them becomes a batch, how a model is validated after an epoch and evaluated at the end,
 * what its data and settings are (saved in checkpoints), what the model file's metadata records, and
 * any privacy event of its own before training. trainer.c (recommendation) and textcls.c (text
 * classification) are the two adapters; a new task adds an adapter and a command, not a loop. */
#ifndef DP_TRAIN_LOOP_H
#define DP_TRAIN_LOOP_H

#include <signal.h>
#include <stdio.h>
#include "train/checkpoint_internal.h"

/* A run's configuration: the saved settings and what the process running it adds. */
typedef struct {
    dp_run_settings s;         /* model (the one the loop creates), optimiser, mode, epochs, batch size,
                                  eval_every, keep_last, micro_batches, seed, privacy, out_dir, checkpoints */
    double sample_rate;        /* private modes: Poisson rate q of every mechanism event */
    int64_t steps_per_epoch;   /* private modes: logical steps of an epoch (non-private: ceil(n / batch)) */
    dp_device device;
    FILE *log;                 /* epoch and privacy lines (stderr if NULL) */
    int progress;              /* 1: a progress bar redrawn in place on log; 0: one plain line per epoch;
                                  -1: silent */
    volatile sig_atomic_t *stop; /* non-zero: stop at the next step boundary with a checkpoint */
    const char *checkpoint_dir;  /* NULL: no checkpoints */
    const char *checkpoint_extra;
    const dp_checkpoint *resume;
} dp_loop_config;

/* What validation or the final evaluation reports. */
typedef struct {
    double score;              /* selection score (higher is better) */
    char json[1024];           /* ",\"key\":value..." for the metrics line */
    char text[256];            /* for the epoch line, e.g. "valid NDCG@10 0.0054 HR@10 0.0127" */
} dp_loop_eval;

/* What the loop reports back (the task adds its metrics). */
typedef struct {
    int epochs_run, best_epoch;
    double first_train_loss, final_train_loss, seconds_per_epoch, examples_per_second, train_seconds;
    /* private runs: what the accountant computed for exactly the steps taken */
    double epsilon, delta, noise_multiplier, sample_rate, expected_batch;
    int64_t dp_steps, mechanism_events;
    int stopped_at_budget;
    int stopped_by;            /* the value *stop held when the run stopped (0: not stopped) */
    int64_t steps;             /* optimiser steps taken in all (across resumes) */
    int64_t resumed_from_step; /* -1: a fresh run */
    int resumes;
    char checkpoint[4096];     /* the newest checkpoint written, or resumed from ("" if none) */
} dp_loop_result;

/* What a task's privacy hooks see of a private run. */
typedef struct {
    dp_model *model;
    dp_rng *rng;               /* the run's generator (secure, or seeded) */
    dp_history *hist;          /* the accountant's history: a task may add events before the plan */
    double sigma, q, expected_batch; /* after the plan */
    const int32_t *order;      /* [n] the examples' ids */
    const dp_checkpoint *resume;
    FILE *log;
} dp_loop_hook;

/* Permutations of the shuffled order (epoch e's is a Fisher-Yates shuffle of e-1's, keyed by seed
 * and e). Both draw uniform permutations; the two tasks that predate the loop use different streams,
 * kept so that their seeded runs reproduce earlier results bit for bit. */
enum { DP_SHUFFLE_MIX64 = 0, DP_SHUFFLE_SPLITMIX64 = 1 };

typedef struct dp_task {
    /* ---- names ---- */
    const char *name;          /* saved in checkpoints ("recommendation", "text-classification") */
    const char *command;       /* the command, as privacy.json records it ("train"), and as resume
                                  messages name it ("dpformer train") */
    const char *unit;          /* the privacy unit, e.g. "user (one user's whole sequence)" */
    const char *covers;        /* what ε covers under DP-SGD */
    const char *covers_dpfp;   /* under DP-FP */
    const char *metric;        /* the selection metric ("validation NDCG@10"); NULL: no validation set,
                                  the last epoch is kept and no selection is claimed */
    /* privacy.json's model_selection: "best epoch by METRIC (BEST_NOTE)", "last epoch (no selection on
     * VALID_DATA)", "last epoch (NO_VALID)" */
    const char *best_note;     /* "looks at each user's held-out validation item" */
    const char *valid_data;    /* "validation data" */
    const char *no_valid;      /* "no validation set" */

    /* ---- the examples ---- */
    void *state;               /* passed to every callback */
    int32_t n;                 /* training examples (privacy units) */
    /* their ids in their initial order, increasing (what fill reads; a resume checks the saved order
     * is a permutation of them) */
    void (*init_order)(void *st, int32_t *order);
    /* a logical batch in the order its chunks take it (NULL: as sampled) */
    void (*arrange)(void *st, int64_t *ids, int64_t n);
    /* the next chunk of ids[0..n): its size B (1..cap) and window T (NULL: min(cap, n) on the model's
     * window); right-padded examples run on the first T positions, each with the dropout masks of its
     * place in the batch in a full window (where the backend has the window masks) */
    int (*chunk)(void *st, const int64_t *ids, int64_t n, int cap, int *T);
    /* Left-padded windows (the recommender's): the positions example id's window uses (1..L). When
     * set, arrange and chunk are not used: the loop sorts each batch by this length, cuts it into
     * chunks of similar length (train/trim.h) and runs each on the last T positions of the window, T
     * its longest (model_set_window_at), every example with the dropout masks of its place in the
     * batch as drawn (dp_model_set_mask_slots): the same losses and gradients as full windows, without
     * the padding. NULL: full windows (or the task's own chunking). */
    int (*trim_length)(void *st, int64_t id);
    /* tokens [B, T] and, by the model's kind, targets [B, T] or labels [B] of a chunk */
    void (*fill)(void *st, const int64_t *ids, int B, int T, int32_t *tokens, int32_t *targets, int32_t *labels);

    /* ---- evaluation ---- */
    /* after an epoch (when metric is set): the score that selects the kept epoch, a JSON fragment and
     * the epoch line's text */
    int (*validate)(void *st, dp_model *m, dp_loop_eval *out, dp_error *err);
    /* the kept model at the end: the final metrics line's fragment (test metrics, ...) */
    int (*finish)(void *st, dp_model *m, dp_loop_eval *out, dp_error *err);

    /* ---- what is saved ---- */
    /* the task's own settings (added to the saved configuration) and its data identity; on resume
     * the task compares them itself (before the loop runs) */
    void (*config_json)(void *st, cJSON *cfg, dp_jw *w);
    void (*dataset_json)(void *st, cJSON *ds);
    /* the model file's metadata dpformer.run: a malloc'd JSON object text */
    char *(*model_meta)(void *st, const dp_loop_result *res);

    /* ---- privacy events of the task (may be NULL) ---- */
    /* a fresh private run, after the generator is made and before σ is planned (events added to
     * h->hist count in the plan and in ε) */
    int (*before_plan)(void *st, dp_loop_hook *h, dp_error *err);
    /* every private run, once σ is in force (fresh or resumed) */
    int (*after_plan)(void *st, dp_loop_hook *h, dp_error *err);

    /* ---- the model's starting point and its trained parts (may be NULL) ---- */
    /* a fresh run, once the model is created (with the seeded random initialisation): the initial
     * parameters, e.g. a pretrained model's (a resumed run takes the checkpoint's instead) */
    int (*init_params)(void *st, dp_model *m, dp_error *err);
    /* every run, fresh or resumed, once the model is created: which tensors are frozen
     * (model_set_frozen; the optimiser and the privacy engine then leave them out) */
    int (*freeze)(void *st, dp_model *m, dp_error *err);

    /* ---- reproducing earlier seeded runs bit for bit (a new task leaves these 0) ---- */
    int shuffle;               /* DP_SHUFFLE_* */
    uint64_t noise_salt;       /* the seeded generator's key is mix64(seed ^ noise_salt) */
    int scale_rounded;         /* DP-SGD: multiply by 1/(qN) rounded to dp_real (else in double) */
} dp_task;

/* Train. Returns 0 (*out_model: the kept model, caller frees), DP_TRAIN_STOPPED (stopped through
 * cfg->stop; err says where; no model, no model file), or -1 with err (res->checkpoint names the
 * newest good checkpoint, if any). The caller has checked the configuration and, on resume, that
 * the checkpoint fits it (dp_ckpt_check_settings and the task's own checks). */
int dp_loop_run(const dp_loop_config *cfg, const dp_task *task, dp_model **out_model, dp_loop_result *res,
                dp_error *err);

/* A metrics/meta helper: ε as JSON text (a number, or null when there is no guarantee). */
const char *dp_loop_json_eps(double eps, char buf[32]);

#endif
