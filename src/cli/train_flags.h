/* Flags shared by the commands that build and train a model (train, demo, train-text): model shape and
 * optimisation settings and their conversion into the library's configuration structs; the checkpoint
 * flags and what `train` and `train-text` share around --resume, a stop and a failure. */
#ifndef DP_CLI_TRAIN_FLAGS_H
#define DP_CLI_TRAIN_FLAGS_H

#include "cli/args.h"
#include "dpformer/train.h"

typedef struct {
    int max_len, d_model, n_heads, n_layers, d_ff, untied, epochs, batch_size, eval_every, exclude_seen, threads;
    int no_progress, dp, seeded_noise, keep_last, select_best, max_physical_batch;
    double noise_multiplier, target_epsilon, delta, max_grad_norm, sample_rate;
    const char *clip_mode, *accountant;
    double dropout, lr, weight_decay, momentum, min_lr_ratio;
    int64_t warmup_steps, max_eval_users, seed;
    const char *optimizer, *schedule;
    int reattention, item_freq_cap;
    double reattention_scale, item_freq_noise;
    const char *item_freq;
    const char *device;
} train_flags;

#define TRAIN_FLAG_COUNT 39
void train_flags_defaults(train_flags *f);
/* Writes TRAIN_FLAG_COUNT specs pointing into f. */
void train_flags_specs(train_flags *f, arg_spec *out);
/* Fill cfg from the flags (model n_items is set by the caller). Returns 0, or 2 with a message. */
int train_flags_to_config(const char *cmd, const train_flags *f, dp_train_config *cfg);

/* Print the run's privacy statement (or "none"). */
void print_privacy(FILE *f, const dp_train_config *cfg, const dp_train_result *res);

/* ---- checkpoints and --resume (train, train-text) ---- */

typedef struct {
    const char *dir;          /* --checkpoint-dir (NULL: OUT/checkpoints) */
    int64_t every;            /* --checkpoint-every */
    int keep;                 /* --keep-checkpoints */
    int none;                 /* --no-checkpoints */
    const char *resume;       /* --resume DIR as given */
    char resume_dir[4096];    /* the checkpoint folder resumed from (DIR or DIR/checkpoints) */
    char default_dir[4096];
} ckpt_flags;

#define CKPT_FLAG_COUNT 5
void ckpt_flags_defaults(ckpt_flags *f);
/* Writes CKPT_FLAG_COUNT specs pointing into f. */
void ckpt_flags_specs(ckpt_flags *f, arg_spec *out);
/* --resume DIR among argv, looked up before the flags are parsed (the checkpoint supplies their
 * defaults): the newest valid checkpoint of DIR, or of DIR/checkpoints, into *ck, refused unless it is
 * of `task` (the message names the command that resumes it); f's checkpoint settings default to the
 * saved ones. Returns 0 (*ck NULL without --resume), or 2 after a message. */
int ckpt_open_resume(const char *cmd, const char *task, int argc, char **argv, ckpt_flags *f, dp_checkpoint **ck);
/* The run's outputs folder: NULL on resume when the checkpoints moved and --out was not given
 * (returns 2 after saying so), else 0. */
int ckpt_require_out(const char *cmd, const ckpt_flags *f, const char *out);
/* The checkpoint folder of a run writing to out (NULL with --no-checkpoints). */
const char *ckpt_flags_dir(ckpt_flags *f, const char *out);
/* "CMD: resuming from PATH (step N, ...)" on stderr. */
void ckpt_print_resuming(const char *cmd, const dp_checkpoint *ck, int epochs);
/* After training returned rc (0, DP_TRAIN_STOPPED or -1): for a stop, the message, how to resume
 * (`dpformer COMMAND --resume DIR`) and exit status 128 + the signal; for a failure, the message, the
 * newest good checkpoint and how to resume once fixed, and 1; 0 otherwise. */
int ckpt_report(const char *cmd, const char *command, int rc, int stopped_by, const char *msg, const char *newest,
                const char *ckpt_dir);

#endif
