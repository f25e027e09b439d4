/* dpformer public API: optimisers, learning-rate schedules, batching, evaluation and the training
 * loop for next-item recommendation. */
#ifndef DPFORMER_TRAIN_H
#define DPFORMER_TRAIN_H

#include <stdio.h>
#include "dpformer/common.h"
#include "dpformer/data.h"
#include "dpformer/model.h"

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
typedef struct {
    dp_model_config model;
    dp_optim_config optim;
    int epochs;
    int batch_size;
    int eval_every;        /* evaluate on validation every k epochs (and after the last) */
    int exclude_seen;      /* exclude history items from the ranking */
    int64_t max_eval_users; /* 0 = all */
    uint64_t seed;
    const char *out_dir;   /* metrics.jsonl and model.safetensors are written here (NULL: nothing) */
    const char *data_desc; /* recorded in metrics and the saved model */
    int progress;          /* 1: progress bar on stderr; 0: one plain line per epoch; -1: silent */
    FILE *log;             /* where epoch lines go (stderr if NULL) */
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
} dp_train_result;

/* Train on the leave-one-out training prefixes of ds; select the epoch by validation NDCG@10; report
 * validation and test metrics of that model. *out_model receives the trained model (caller frees). */
int dp_train(const dp_dataset *ds, const dp_train_config *cfg, dp_model **out_model, dp_train_result *res,
             dp_error *err);

#endif
