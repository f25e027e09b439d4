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
    /* The starting point: NULL (or "random") for the seeded random initialisation of `model`; else a
     * model folder in the Hugging Face layout or a dpformer model file (dp_model_load reads either)
     * whose parameters start a fresh run. `model` must then be its configuration with the context cut
     * to the run's (dp_lm_init_config); only the dropout rate may differ. A resumed run restores the
     * checkpoint's parameters and never reads it. */
    const char *init;
    /* The trained parts (dp_lm_train_only); NULL: every parameter. The others are frozen: no update, no
     * optimiser state, and no part of the per-example gradient norm that DP-SGD clips. */
    const char *train_only;
} dp_lm_train_config;

typedef struct {
    int epochs_run, best_epoch;
    int64_t n_train, truncated_train; /* training examples; those cut to the context */
    int64_t train_tokens;             /* tokens of the training examples (after truncation) */
    double first_train_loss, final_train_loss, seconds_per_epoch, examples_per_second, train_seconds;
    double tokens_per_second;         /* training tokens / s (examples/s × mean tokens per example) */
    int has_dev, has_test;
    dp_lm_eval_result dev, test;      /* the kept model's (has_dev / has_test) */
    int has_init_dev;                 /* a run from --init with a dev set: */
    dp_lm_eval_result init_dev;       /* the initial model's dev perplexity (before any step) */
    double epsilon, delta, noise_multiplier, sample_rate;
    int64_t steps, dp_steps;
    int stopped_at_budget, stopped_by;
    int64_t resumed_from_step;
    int resumes;
    char checkpoint[4096];
} dp_lm_train_result;

/* --init: the configuration of the model at `path` (a Hugging Face folder or a dpformer model file),
 * as a run that starts from it has it: a causal gpt2-family next-token model whose context is cut to
 * max_len positions (its first max_len position rows; 0: the model's whole context; more than the
 * model has: refused). Returns 0, or -1 with err naming the file. */
int dp_lm_init_config(const char *path, int max_len, dp_model_config *cfg, dp_error *err);

/* --train-only: the parts of a model of configuration cfg that are trained, as a comma-separated list
 * of
 *   wte          the token embedding (with a tied head: the head too: one tensor)
 *   wpe          the position embedding
 *   embeddings   wte and wpe
 *   layers:A-B   transformer blocks A to B (counted from 0, both included; layers:A is one block), every
 *                tensor of each (LayerNorms, attention, feed-forward, biases)
 *   layers       every block
 *   ln_f         the final LayerNorm
 *   head         the output layer (untied); with a tied head, the token embedding wte (one tensor)
 * Writes the canonical form (the parts in the order above, block ranges merged; a tied model lists
 * wte and head together; "" when every part is listed, which is training without the flag) to canon[cap], and the number of trained parameter values to *trained (of
 * *total); either may be NULL. Returns 0, or -1 with err naming the bad part. */
int dp_lm_train_only(const char *spec, const dp_model_config *cfg, char *canon, size_t cap, int64_t *trained,
                     int64_t *total, dp_error *err);

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
