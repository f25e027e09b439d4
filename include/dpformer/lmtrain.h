/* dpformer public API: training a GPT-2-family language model (dpformer/lm.h) on texts, non-private or
 * with DP-SGD, on the training loop every task shares (docs/training.md; the command is
 * `dpformer train-lm`, docs/lm.md).
 *
 * The privacy unit is one example: one line of the training file (or one field of its column), as
 * dpformer/lm.h encodes it (<|endoftext|> + BPE(text) + <|endoftext|>, cut to the context). Its loss is
 * the mean cross-entropy over its predicted tokens; a step's objective is the mean over its examples.
 * Validation (selection) and the final evaluation report token-weighted perplexity (dp_lm_evaluate). */
#ifndef DPFORMER_LMTRAIN_H
#define DPFORMER_LMTRAIN_H

#include <signal.h>
#include <stdio.h>
#include "dpformer/backend.h"
#include "dpformer/lm.h"
#include "dpformer/train.h"

typedef struct {
    dp_model_config model;  /* family gpt2 (dp_lm_config_default, then the shape) */
    dp_optim_config optim;
    int dpsgd;              /* 0: non-private; 1: DP-SGD (per-example clipping, Gaussian noise) */
    int epochs, batch_size; /* DP-SGD: batch_size is the expected Poisson batch (q = batch / N) */
    dp_privacy_config dp;   /* DP-SGD; dp.sample_rate > 0 overrides q */
    uint64_t seed;
    int keep_last;          /* 1: keep the last epoch (the default under DP); 0: the best by dev perplexity */
    const char *out_dir;    /* metrics.jsonl, model.safetensors, privacy.json (NULL: nothing written) */
    dp_device device;
    FILE *log;              /* NULL: stderr */
    int progress;           /* 1: progress bar, 0: epoch lines, -1: silent */
    volatile sig_atomic_t *stop;
    const char *checkpoint_dir; /* NULL: no checkpoints */
    int64_t checkpoint_every;
    int keep_checkpoints;
    const char *checkpoint_extra;
    const dp_checkpoint *resume;
    /* what the run records of its inputs (checkpoints, model metadata) */
    const char *tokenizer_desc, *train_desc, *dev_desc, *test_desc, *column;
} dp_lm_train_config;

typedef struct {
    int epochs_run, best_epoch;
    int64_t n_train, truncated_train; /* training examples; those cut to the context */
    int64_t train_tokens;             /* tokens of the training examples (after truncation) */
    double first_train_loss, final_train_loss, seconds_per_epoch, examples_per_second, train_seconds;
    double tokens_per_second;         /* training tokens / s (examples/s × mean tokens per example) */
    int has_dev, has_test;
    dp_lm_eval_result dev, test;      /* the kept model's (has_dev / has_test) */
    double epsilon, delta, noise_multiplier, sample_rate;
    int64_t steps, dp_steps;
    int stopped_at_budget, stopped_by;
    int64_t resumed_from_step;
    int resumes;
    char checkpoint[4096];
} dp_lm_train_result;

/* GPT-2's shape with a small default (d 64, 2 layers, 2 heads, context 64, tied, dropout 0.1) and
 * the run's defaults (AdamW lr 1e-3, 3 epochs, batch 32, seed 1). */
dp_lm_train_config dp_lm_train_config_default(int32_t vocab_size);

/* Train on the training corpus (dp_lm_corpus_encode with max_tokens = the model's context); dev and
 * test may be NULL. Returns 0 (*out_model: the kept model), DP_TRAIN_STOPPED, or -1 with err. */
int dp_lm_train(const dp_lm_train_config *cfg, const dp_lm_corpus *train, const dp_lm_corpus *dev,
                const dp_lm_corpus *test, dp_model **out_model, dp_lm_train_result *res, dp_error *err);

/* A corpus's identity (sizes, offsets and tokens: the texts and the tokenizer together). */
uint64_t dp_lm_corpus_fingerprint(const dp_lm_corpus *c);

/* Resuming: the saved run's configuration (pointers into ck), and whether a checkpoint fits cfg and
 * these corpora. */
int dp_lm_checkpoint_config(const dp_checkpoint *ck, dp_lm_train_config *cfg, dp_error *err);
int dp_lm_check_resume(const dp_checkpoint *ck, const dp_lm_train_config *cfg, const dp_lm_corpus *train,
                       const dp_lm_corpus *dev, const dp_lm_corpus *test, dp_error *err);
/* A fresh DP-SGD run whose privacy budget allows no step (or whose σ cannot be calibrated): refused
 * before training (0 otherwise). */
int dp_lm_plan_check(const dp_lm_train_config *cfg, int64_t n_train, dp_error *err);

#endif
