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
    int keep_last;          /* keep the last epoch instead of the best by dev accuracy (without a dev
                               set the last epoch is always kept) */
    const char *out_dir;    /* if set: metrics.jsonl, model.safetensors, privacy.json */
    FILE *log;              /* epoch and privacy lines (NULL: stderr) */
    int progress;           /* 1: a progress bar on log (a terminal), redrawn within each epoch; 0: one
                               plain line per epoch; -1: silent */
    volatile sig_atomic_t *stop; /* when non-NULL and set non-zero (e.g. to a signal number by a
                               handler), the run stops at the next step boundary after writing a
                               checkpoint, and dp_text_train returns DP_TRAIN_STOPPED */
    /* The data files, recorded in checkpoints (a resume reloads them) and in nothing else. */
    const char *train_desc, *dev_desc, *test_desc;
    /* Checkpoints and resuming, as in dp_train_config (docs/checkpoints.md): with a folder, one is
     * written at every epoch end, every checkpoint_every steps, when the run is stopped and at its end. */
    const char *checkpoint_dir;   /* NULL: no checkpoints */
    int64_t checkpoint_every;     /* also every N optimiser steps (0: not) */
    int keep_checkpoints;         /* the newest K are kept (default 2) */
    const char *checkpoint_extra; /* optional JSON object text stored in every checkpoint; NULL: none */
    const dp_checkpoint *resume;  /* continue the run saved in this checkpoint (NULL: a fresh run) */
} dp_text_train_config;

/* Defaults: a 2-layer d-64 2-head encoder with L 128 and first-token pooling, AdamW lr 1e-3,
 * 3 epochs, batch 256, non-private; DP-FP C 1 and M 1; keep 2 checkpoints (none without a folder). */
dp_text_train_config dp_text_train_config_default(int n_classes);

typedef struct {
    int epochs_run, best_epoch;    /* best_epoch: the kept epoch */
    double dev_acc, test_acc;      /* of the kept model (NaN without a dev / test set) */
    double train_seconds, seconds_per_epoch, examples_per_second;
    double first_train_loss, final_train_loss;
    int64_t n_train, truncated_train;
    /* private modes */
    double epsilon, delta, noise_multiplier, sample_rate;
    int64_t mechanism_events;      /* DP-FP: events = M·steps */
    int64_t steps;                 /* optimiser steps taken in all (across resumes) */
    int stopped_at_budget;
    int stopped_by;                /* the value *cfg->stop held when the run stopped (0: it did not) */
    int64_t resumed_from_step;     /* -1: a fresh run */
    int resumes;                   /* how many times the run was resumed */
    char checkpoint[4096];         /* the newest checkpoint written, or resumed from ("" if none) */
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

/* Train on `train` (through the training loop every task shares: docs/training.md), choosing the
 * epoch by accuracy on `dev` (may be NULL: the last epoch is kept), and report accuracy on `test` (may
 * be NULL). *out_model receives the kept model (free with dp_model_free). Returns 0 on success,
 * DP_TRAIN_STOPPED when stopped through cfg->stop (err says where; no model is returned or saved),
 * -1 on error (err; res->checkpoint names the newest good checkpoint, if any). With cfg->resume, the
 * run continues from that checkpoint (dp_text_check_resume first). */
int dp_text_train(const dp_text_train_config *cfg, const dp_text_dataset *train, const dp_text_dataset *dev,
                  const dp_text_dataset *test, dp_model **out_model, dp_text_train_result *res, dp_error *err);

/* FNV-1a 64-bit hash of a loaded TSV dataset (sizes, labels, offsets, texts): its identity in
 * checkpoints. */
uint64_t dp_text_dataset_fingerprint(const dp_text_dataset *ds);

/* The configuration a text run was started (or last resumed) with, from its checkpoint
 * (dp_checkpoint_open_latest, dpformer/checkpoint.h): strings point into ck; resume is ck,
 * checkpoint_dir its folder, out_dir dp_checkpoint_out_dir(ck); log, progress and stop are left at
 * their defaults. -1 with err if ck is not a text-classification checkpoint. */
int dp_text_checkpoint_config(const dp_checkpoint *ck, dp_text_train_config *cfg, dp_error *err);

/* Can the text run saved in ck continue with cfg on these files? Refuses (message naming the file and
 * the setting) another task's checkpoint, other data (a train, dev or test file whose size or
 * fingerprint differs, or a dev / test set added or left out), another model (shape, tokenizer,
 * pooling, classes, dropout, DP-FP clip), and a change of what cannot change within a run: seed,
 * optimizer, batch size, mode, micro-batches, seeded noise, delta, accountant, keep-last; and fewer
 * epochs than already run. What may change: epochs, learning rate and schedule, weight decay, noise
 * multiplier, target epsilon, max grad norm, clip mode, max physical batch, output and checkpoint
 * settings. dp_text_train runs this check itself. */
int dp_text_check_resume(const dp_checkpoint *ck, const dp_text_train_config *cfg, const dp_text_dataset *train,
                         const dp_text_dataset *dev, const dp_text_dataset *test, dp_error *err);

#endif
