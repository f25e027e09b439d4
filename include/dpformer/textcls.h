/* dpformer public API: training and evaluating a text classifier (a bidirectional encoder over the
 * tokens of dpformer/text.h (bytes or hashed words), a pooled representation and a linear head) without privacy,
 * with DP-SGD (exact per-example clipping of the whole gradient) or with DP-FP (clipping and noise
 * on the pooled representation in the forward pass; docs/dpfp.md).
 *
 * What ε means differs between the two private modes, and the run says so wherever it prints ε:
 *  - DP-SGD: (ε, δ)-DP of the trained weights; the privacy unit is one labelled sentence.
 *  - DP-FP: ε bounds what the stream of noised representations reveals about the inputs; it does NOT
 *    cover the trained weights (their gradients come from the raw inputs) or the labels. */
#ifndef DPFORMER_TEXTCLS_H
#define DPFORMER_TEXTCLS_H

#include <signal.h>
#include <stdio.h>
#include "dpformer/noise.h"
#include "dpformer/text.h"
#include "dpformer/train.h"

typedef enum { DP_TEXT_NONPRIVATE = 0, DP_TEXT_DPSGD = 1, DP_TEXT_DPFP = 2 } dp_text_mode;
const char *dp_text_mode_name(dp_text_mode mode);

typedef struct {
    dp_model_config model;  /* n_items must be dp_tokenizer_vocab(&tokenizer) - 1, n_classes the data's
                               K, untied; model.tokenizer is set from `tokenizer` */
    dp_tokenizer tokenizer; /* bytes (default) or hashed words */
    dp_optim_config optim;
    dp_text_mode mode;
    int epochs;
    int batch_size;         /* examples per step (expected size under Poisson sampling); an epoch is
                               N / batch_size steps in every mode */
    /* DP-SGD and DP-FP: noise_multiplier or target_epsilon, delta, accountant, seeded_noise and
     * max_physical_batch; DP-SGD also max_grad_norm and clip_mode. sample_rate is derived. */
    dp_privacy_config dp;
    double dpfp_clip;       /* DP-FP: clip norm C of the pooled representation */
    int micro_batches;      /* DP-FP: M independent Poisson micro-batches per step (rate q = B/(M·N)) */
    uint64_t seed;
    int keep_last;          /* keep the last epoch instead of the best by dev accuracy */
    const char *out_dir;    /* if set: metrics.jsonl, model.safetensors, privacy.json */
    FILE *log;              /* progress and summary (NULL: stderr) */
    int progress;           /* 1: a progress line per epoch */
    volatile sig_atomic_t *stop; /* when non-NULL and set non-zero (e.g. by a SIGINT handler), training
                               stops after the current step: the partial epoch is evaluated like a
                               whole one, and the kept model, metrics and privacy history are written
                               as at the end of a run (ε covers the steps that ran) */
} dp_text_train_config;

/* Defaults: a 2-layer d-64 2-head encoder with L 128 and first-token pooling, AdamW lr 1e-3,
 * 3 epochs, batch 256, non-private; DP-FP C 1 and M 1. */
dp_text_train_config dp_text_train_config_default(int n_classes);

typedef struct {
    int epochs_run, best_epoch;
    double dev_acc, test_acc;      /* of the kept model (test_acc NaN without a test set) */
    double train_seconds, seconds_per_epoch;
    int64_t n_train, truncated_train;
    /* private modes */
    double epsilon, delta, noise_multiplier, sample_rate;
    int64_t steps, mechanism_events; /* DP-FP: events = M·steps */
    int stopped_at_budget;
    int stopped_by;                /* the value *cfg->stop held when the run stopped (0: it did not) */
} dp_text_train_result;

/* DP-FP noise for B pooled representations of width d: noise[B·d] = σ·clip·z, z ~ N(0, I), from rng (the
 * secure generator in private runs). */
int dp_text_dpfp_noise(dp_rng *rng, dp_real *noise, int B, int d, double sigma, double clip, dp_error *err);

/* The tokenizer a text classifier reads (its config's tokenizer spec; "" = bytes), checked against the
 * model's vocabulary. Returns 0, or non-zero with err. */
int dp_text_model_tokenizer(const dp_model *m, dp_tokenizer *t, dp_error *err);

/* Fraction of ds classified correctly by m (argmax of the logits; ties to the lower class), encoding
 * the text with the model's tokenizer. */
double dp_text_accuracy(dp_model *m, const dp_text_dataset *ds, dp_error *err);

/* Train on `train`, choosing the epoch by accuracy on `dev`, and report accuracy on `test` (may be
 * NULL). *out_model receives the kept model (free with dp_model_free). */
int dp_text_train(const dp_text_train_config *cfg, const dp_text_dataset *train, const dp_text_dataset *dev,
                  const dp_text_dataset *test, dp_model **out_model, dp_text_train_result *res, dp_error *err);

#endif
