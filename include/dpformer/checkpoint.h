/* dpformer public API: checkpoints of a training run, and resuming from them.
 *
 * A checkpoint is one safetensors file, `ckpt-<step, 12 digits>.safetensors`, in a checkpoint folder.
 * It holds everything needed to continue the run exactly where it was (docs/checkpoints.md):
 *   tensors   param.<name>, the parameters; optim.exp_avg.<name> and optim.exp_avg_sq.<name> (AdamW)
 *             or optim.momentum_buffer.<name> (SGD); best.<name>, the parameters of the best
 *             validated epoch so far; data.order (I32), the training examples (users, sentences) in
 *             their current order; reattention.item_freq (F64), the item frequencies of a run with
 *             Re-Attention;
 *   metadata  the task (recommendation, text-classification) and the command that resumes it, the
 *             run configuration, the position (step, epoch, steps into the epoch, partial epoch
 *             sums), the random generator state (private runs), the privacy accountant's full event
 *             history, the best-epoch state, the metrics.jsonl lines written so far, the identity of
 *             the data (sizes and fingerprints), a format version, and an FNV-1a 64-bit checksum of
 *             every tensor and of the metadata and tensor table.
 * Files are written atomically (dp_safetensors_write) and the newest K are kept; an older file is
 * deleted only after the new one is durable. dp_train (dpformer/train.h) and dp_text_train
 * (dpformer/textcls.h) write them when cfg->checkpoint_dir is set and resume from cfg->resume.
 *
 * Typical resume:
 *   dp_checkpoint *ck = dp_checkpoint_open_latest(dir, stderr, &err);   // newest valid file
 *   dp_train_config cfg = dp_checkpoint_train_config(ck);             // the saved configuration
 *   cfg.epochs = 30;                                                   // what may change, changed
 *   if (dp_checkpoint_check_resume(ck, &ds, &cfg, &err)) ...           // refuses what may not
 *   dp_train(&ds, &cfg, &model, &res, &err);
 *   dp_checkpoint_free(ck);                                            // after dp_train returns */
#ifndef DPFORMER_CHECKPOINT_H
#define DPFORMER_CHECKPOINT_H

#include <stdio.h>
#include "dpformer/accountant.h"
#include "dpformer/data.h"
#include "dpformer/train.h"

/* Version written in the metadata key dpformer.checkpoint_version; a reader refuses other versions. */
#define DP_CHECKPOINT_VERSION 1

/* Read one checkpoint file and verify it completely: safetensors structure, format version, every
 * checksum, the tensor set against the saved model configuration, finite values, the metadata's
 * JSON. Returns NULL with a message naming the file and the problem. */
dp_checkpoint *dp_checkpoint_read(const char *path, dp_error *err);

/* The newest checkpoint of dir that reads and verifies. Newer files that fail are reported on log
 * (one warning each, naming the file and the problem; log may be NULL) and renamed to
 * `<name>.invalid` so that they leave the rotation; they are never deleted. Returns NULL with err if
 * dir holds no checkpoint or none is valid (nothing is renamed then). */
dp_checkpoint *dp_checkpoint_open_latest(const char *dir, FILE *log, dp_error *err);

void dp_checkpoint_free(dp_checkpoint *c);

/* Paths of the checkpoint files in dir (names ckpt-<digits>.safetensors), newest (highest step)
 * first. *paths is a malloc'd array of malloc'd strings (free each, then the array); *n may be 0.
 * Returns 0, or -1 with err if dir cannot be read (a missing dir gives 0 files). */
int dp_checkpoint_list(const char *dir, char ***paths, int *n, dp_error *err);

/* May a run (resuming `resume`, or a fresh one when it is NULL) write its checkpoints into dir? Yes (0)
 * when dir is the folder of `resume`, absent, empty, or holds only checkpoints of a run that finished
 * (a fresh run replaces them). No (-1, with a message saying to resume or remove them) when it holds
 * checkpoints of a run that did not finish or whose newest cannot be read, or when dir is not a
 * folder. Touches nothing: a run checks this before it starts. */
int dp_checkpoint_check_dir(const char *dir, const dp_checkpoint *resume, dp_error *err);

/* Once the run is known to start: the same check, then the checkpoints of a finished run in dir are
 * deleted (a note written to log, which may be NULL). -1 with err if the check fails or a file cannot
 * be deleted. dp_train calls it only after the data, the configuration, the model and the privacy
 * set-up are in order, so that a run that cannot start leaves a previous run's files as they were. */
int dp_checkpoint_prepare_dir(const char *dir, const dp_checkpoint *resume, FILE *log, dp_error *err);

/* What a checkpoint holds. */
const char *dp_checkpoint_path(const dp_checkpoint *c);
int64_t dp_checkpoint_step(const dp_checkpoint *c);       /* optimiser steps taken */
int dp_checkpoint_epochs_done(const dp_checkpoint *c);    /* completed epochs (metrics lines) */
int64_t dp_checkpoint_epoch_step(const dp_checkpoint *c); /* steps taken in the epoch in progress */
int dp_checkpoint_complete(const dp_checkpoint *c);       /* 1: written at the end of the run */
/* The task of the run: "recommendation" (dp_train) or "text-classification" (dp_text_train). */
const char *dp_checkpoint_task(const dp_checkpoint *c);
/* The caller's JSON object stored through cfg->checkpoint_extra, or NULL. */
const char *dp_checkpoint_extra(const dp_checkpoint *c);
/* The privacy accountant's history (empty for a non-private run). */
const dp_history *dp_checkpoint_history(const dp_checkpoint *c);

/* Where a run resumed from c writes its outputs (metrics.jsonl, model.safetensors, privacy.json): the
 * run folder as the checkpoints are found now, not as it was when the run started, so that a copied
 * or moved run folder is continued in place. With the default layout (checkpoints in
 * OUT/checkpoints), the folder holding c's folder. With a checkpoint folder elsewhere, the run's
 * output folder as long as the checkpoints have not moved; NULL once they have (the caller must say
 * where the outputs go) or when the run wrote none. Points into c. */
const char *dp_checkpoint_out_dir(const dp_checkpoint *c);

/* The configuration the run was started (or last resumed) with (a recommendation run's; for a text
 * run see dp_text_checkpoint_config in dpformer/textcls.h). Strings point into c; resume is c,
 * checkpoint_dir the folder c was read from, out_dir dp_checkpoint_out_dir(c); progress, log and stop
 * are left at their defaults. */
dp_train_config dp_checkpoint_train_config(const dp_checkpoint *c);

/* Does path look like a checkpoint file: a safetensors file whose metadata has
 * dpformer.checkpoint_version? 1 yes; 0 otherwise, unreadable files included (their reader says why). */
int dp_checkpoint_is_file(const char *path);

/* The model of the run saved in c, on the CPU, for batches of up to max_batch examples, with the
 * parameters the run had at the checkpoint's step (best = 0), or those of the best validated epoch so
 * far (best = 1: an error naming the file if no epoch has been validated yet). A Re-Attention run's
 * model gets the item frequencies, σ and expected batch it trained with. NULL with err on failure. */
dp_model *dp_checkpoint_model(const dp_checkpoint *c, int best, int max_batch, dp_error *err);

/* Can the run saved in c continue with cfg on ds? Refuses (message naming the file and the setting)
 * a checkpoint of another task, a different dataset (sizes or fingerprint), a different model shape,
 * and a change of any setting
 * that cannot change within a run: seed, optimizer, batch size, sample rate, DP on/off, seeded noise,
 * delta, accountant, keep-last, exclude-seen, max-eval-users, Re-Attention on/off and its scale, item
 * frequency source, noise and cap; and fewer epochs than already run.
 * What may change: epochs, learning rate and schedule, weight decay, momentum, eval-every, noise
 * multiplier, target epsilon, max grad norm, max physical batch, clip mode, output and checkpoint
 * settings. dp_train runs this check itself. */
int dp_checkpoint_check_resume(const dp_checkpoint *c, const dp_dataset *ds, const dp_train_config *cfg,
                               dp_error *err);

/* FNV-1a 64-bit hash of the dataset's sizes, offsets and item arrays (the loaded, re-indexed form). */
uint64_t dp_dataset_fingerprint(const dp_dataset *ds);

/* FNV-1a 64-bit hash of n bytes, continuing from h (start with DP_FNV1A64_INIT). */
#define DP_FNV1A64_INIT 0xcbf29ce484222325ull
uint64_t dp_fnv1a64(const void *data, size_t n, uint64_t h);

#endif
