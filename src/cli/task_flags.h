/* Flags of the text and language-model commands, each written once: `train-text` and `audit --task text`
 * share the text flags and their checks, `train-lm` and `audit --task lm` the language-model ones (the
 * audits train as the training commands do, with their flags); all four share the checks of the
 * accountant, the clip mode and the model shape, and the training commands what they take back from a
 * checkpoint on --resume and the check that no output overwrites an input. */
#ifndef DP_CLI_TASK_FLAGS_H
#define DP_CLI_TASK_FLAGS_H

#include <cjson/cJSON.h>

#include "cli/args.h"
#include "dpformer/checkpoint.h"
#include "dpformer/lmtrain.h"
#include "dpformer/textcls.h"

/* ---- shared by the text and language-model commands ---- */

/* The flags every text and language-model run has: model shape, optimiser, seed, threads, progress,
 * and the privacy settings that are names or the noise multiplier. */
typedef struct {
    int max_len, d_model, n_heads, n_layers, d_ff, threads, no_progress;
    double dropout, lr, wd, sigma; /* sigma: --noise-multiplier (-1: not given) */
    int64_t seed;
    const char *accountant, *clip_mode;
} task_run_flags;

/* The files a run writes into out (metrics.jsonl, model.safetensors, privacy.json), and out itself, may
 * not be one of its inputs (dev and test may be NULL). Returns 0, or 2 after a message. */
int task_check_outputs(const char *cmd, const char *out, const char *train, const char *dev, const char *test);

/* On --resume, the saved run's privacy settings as the flags' defaults: *sigma (-1 where the run
 * calibrated it to its target epsilon, as without --noise-multiplier), *clip_mode and *accountant, and
 * the model selection of a run that was private (priv: *select_best where it kept the best epoch) or not
 * (*keep_last as saved). */
void task_resume_dp_flags(int priv, int saved_keep_last, const dp_privacy_config *dp, double *sigma,
                          const char **clip_mode, const char **accountant, int *keep_last, int *select_best);
/* The checkpoint's command-line extras (a JSON object, or NULL; the caller cJSON_Deletes it), its
 * "threads" into *threads. */
cJSON *task_resume_extra(const dp_checkpoint *ck, int *threads);

/* ---- text classification (train-text, audit --task text) ---- */

typedef struct {
    task_run_flags r;
    const char *tokenizer, *pool;
    int classes, dp, dpfp;
} text_flags;

/* The defaults, from c (dp_text_train_config_default). */
void text_flags_defaults(text_flags *f, const dp_text_train_config *c);

/* The flag table's entries from --d-model to --threads (f's, and c's epochs and batch size). */
#define TEXT_MODEL_SPECS(f, c)                                                                                        \
    ARG_IR("d-model", &(f)->r.d_model, "encoder width", 1, 65536),                                                       \
    ARG_IR("n-heads", &(f)->r.n_heads, "attention heads", 1, 65536),                                                     \
    ARG_IR("n-layers", &(f)->r.n_layers, "encoder blocks", 0, 64),                                                       \
    ARG_IR("d-ff", &(f)->r.d_ff, "feed-forward width (0 = 4 x d-model)", 0, 1 << 20),                                    \
    ARG_S("pool", &(f)->pool, "pooled representation: first ([CLS] token) or mean"),                                   \
    ARG_DR("dropout", &(f)->r.dropout, "dropout rate", 0, 0.95),                                                         \
    ARG_DR("lr", &(f)->r.lr, "AdamW learning rate", 1e-12, 1e3),                                                         \
    ARG_DR("weight-decay", &(f)->r.wd, "AdamW weight decay of the weight matrices", 0, 10),                              \
    ARG_IR("epochs", &(c)->epochs, "epochs (N / batch-size steps each)", 1, 1000000),                                  \
    ARG_IR("batch-size", &(c)->batch_size, "examples per step (expected, under Poisson sampling)", 1, 1 << 20),        \
    ARG_LR("seed", &(f)->r.seed, "random seed (initialisation, order, dropout)", 0, 9.2e18),                             \
    ARG_IR("threads", &(f)->r.threads, "threads (0 = all cores)", 0, 4096)
/* --dp, --dpfp and --noise-multiplier. */
#define TEXT_MODE_SPECS(f)                                                                                            \
    ARG_F("dp", &(f)->dp, "DP-SGD: per-example clipping of the whole gradient (privacy unit: one sentence)"),          \
    ARG_F("dpfp", &(f)->dpfp, "DP-FP: clip and noise the pooled representation (epsilon does NOT cover the weights)"), \
    ARG_DR("noise-multiplier", &(f)->r.sigma,                                                                            \
           "sigma (DP-SGD: gradient noise / C; DP-FP: representation noise / dpfp-clip)", 0, 1e6)
/* From --max-grad-norm to --accountant. */
#define TEXT_DP_SPECS(f, c)                                                                                           \
    ARG_DR("max-grad-norm", &(c)->dp.max_grad_norm, "DP-SGD: per-example clipping norm", 1e-12, 1e12),                 \
    ARG_S("clip-mode", &(f)->r.clip_mode, "DP-SGD: auto, ghost, phantom or naive"),                                      \
    ARG_DR("dpfp-clip", &(c)->dpfp_clip, "DP-FP: clip norm of the pooled representation", 1e-12, 1e12),                \
    ARG_IR("micro-batches", &(c)->micro_batches, "DP-FP: independent Poisson micro-batches per step (M)", 1, 1 << 16), \
    ARG_IR("max-physical-batch", &(c)->dp.max_physical_batch, "DP: examples processed at once (memory bound)", 1,     \
           1 << 20),                                                                                                   \
    ARG_S("accountant", &(f)->r.accountant, "rdp or pld")

/* --dp or --dpfp (not both) into c->mode. Returns 0, or 2 after a message. */
int text_flags_mode(const char *cmd, const text_flags *f, dp_text_train_config *c);
/* The privacy flags against c->mode: a private mode needs --target-epsilon or --noise-multiplier; a flag
 * of another mode is refused, naming it; --noise-multiplier 0 meets no target. Returns 0, or 2 after a
 * message. */
int text_flags_check_privacy(const char *cmd, const text_flags *f, const arg_spec *specs, int n,
                             const dp_text_train_config *c);
/* The tokenizer, pooling, accountant, clip mode and model shape into c, with the optimiser, seed,
 * progress and privacy settings of the flags; sets the thread count. Returns 0, or 2 after a message. */
int text_flags_config(const char *cmd, const text_flags *f, dp_text_train_config *c);

/* ---- language models (train-lm, audit --task lm) ---- */

typedef struct {
    task_run_flags r;
    const char *tokenizer, *column, *schedule, *device;
    int untied, dp;
    double min_lr_ratio;
    int64_t warmup;
} lm_flags;

/* The defaults, from c (dp_lm_train_config_default). */
void lm_flags_defaults(lm_flags *f, const dp_lm_train_config *c);

/* --d-model, --n-heads, --n-layers and --d-ff. */
#define LM_SHAPE_SPECS(f)                                                                                             \
    ARG_IR("d-model", &(f)->r.d_model, "width", 1, 65536),                                                               \
    ARG_IR("n-heads", &(f)->r.n_heads, "attention heads", 1, 65536),                                                     \
    ARG_IR("n-layers", &(f)->r.n_layers, "transformer blocks", 0, 256),                                                  \
    ARG_IR("d-ff", &(f)->r.d_ff, "feed-forward width (0 = 4 x d-model)", 0, 1 << 20)
/* From --dropout to --device (f's, and c's epochs and batch size). */
#define LM_OPTIM_SPECS(f, c)                                                                                          \
    ARG_DR("dropout", &(f)->r.dropout, "dropout rate", 0, 0.95),                                                         \
    ARG_DR("lr", &(f)->r.lr, "AdamW learning rate", 1e-12, 1e3),                                                         \
    ARG_DR("weight-decay", &(f)->r.wd, "AdamW weight decay of the weight matrices", 0, 10),                              \
    ARG_S("schedule", &(f)->schedule, "learning-rate schedule: constant, warmup or cosine"),                           \
    ARG_LR("warmup-steps", &(f)->warmup, "linear warm-up steps (warmup, cosine)", 0, 1e12),                            \
    ARG_DR("min-lr-ratio", &(f)->min_lr_ratio, "cosine: final lr as a fraction of --lr", 0, 1),                        \
    ARG_IR("epochs", &(c)->epochs, "epochs (N / batch-size steps each)", 1, 1000000),                                  \
    ARG_IR("batch-size", &(c)->batch_size, "examples per step (expected, under Poisson sampling)", 1, 1 << 20),        \
    ARG_LR("seed", &(f)->r.seed, "random seed (initialisation, order, dropout)", 0, 9.2e18),                             \
    ARG_IR("threads", &(f)->r.threads, "threads (0 = all cores)", 0, 4096),                                              \
    ARG_S("device", &(f)->device, "where the model runs: cpu or cuda")
/* From --max-grad-norm to --accountant. */
#define LM_DP_SPECS(f, c)                                                                                             \
    ARG_DR("max-grad-norm", &(c)->dp.max_grad_norm, "per-example clipping norm", 1e-12, 1e12),                         \
    ARG_S("clip-mode", &(f)->r.clip_mode, "auto, ghost, phantom or naive"),                                              \
    ARG_DR("sample-rate", &(c)->dp.sample_rate, "Poisson rate q (default: batch-size / examples)", 1e-12, 1),           \
    ARG_IR("max-physical-batch", &(c)->dp.max_physical_batch, "DP: examples processed at once (memory bound)", 1,     \
           1 << 20),                                                                                                   \
    ARG_S("accountant", &(f)->r.accountant, "rdp or pld")

/* The privacy flags (--dp needs --target-epsilon or --noise-multiplier; without --dp they are refused,
 * naming one; --noise-multiplier 0 meets no target), then the accountant, clip mode and schedule into c
 * and the model shape. Returns 0, or 2 after a message. */
int lm_flags_check(const char *cmd, const lm_flags *f, const arg_spec *specs, int n, dp_lm_train_config *c);
/* The shape flags into mc (d_model, heads, layers, d_ff, tied, dropout). */
void lm_flags_shape(const lm_flags *f, dp_model_config *mc);
/* The model mc and the flags' privacy, optimiser, seed, progress, tokenizer and column settings into c;
 * sets the thread count. */
void lm_flags_config(const lm_flags *f, const dp_model_config *mc, dp_lm_train_config *c);

#endif
