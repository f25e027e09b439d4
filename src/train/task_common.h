/* Helpers the task adapters of the training loop share (trainer.c: recommendation, textcls.c: text
 * classification, lmtrain.c: language models): the privacy fields of the model file's metadata, the
 * checks of a private run's settings, and the identity of a data file in a checkpoint and its check on
 * resume. Not part of the public API. */
#ifndef DP_TRAIN_TASK_COMMON_H
#define DP_TRAIN_TASK_COMMON_H

#include <cjson/cJSON.h>
#include "train/loop.h"

/* Positions per physical chunk (examples x window) that length-sorted chunking aims for. */
#define DP_CHUNK_POSITIONS 4096

/* The model metadata of a private run: epsilon (null without a guarantee), delta, noise_multiplier,
 * sample_rate and steps, as the loop computed them. */
void dp_task_meta_privacy(cJSON *o, const dp_loop_result *lr);

/* The settings of a private run: delta in (0, 1), a target epsilon or a noise multiplier, a physical
 * batch of at least 1 and, under DP-SGD (dpsgd), a positive max grad norm. Returns 0, or -1 with err. */
int dp_task_check_privacy(const dp_privacy_config *p, int dpsgd, dp_error *err);

/* A data file's identity in a checkpoint's dataset record, under key: JSON null when the run has no such
 * file (present 0), else its description, its n examples, count_key's count and its fingerprint. */
void dp_task_file_json(cJSON *o, const char *key, const char *desc, int present, int64_t n, const char *count_key,
                       int64_t count, uint64_t fingerprint);
/* On resume, the saved file of a role ("train", "dev", "test") against the one given now (present: n
 * examples with this fingerprint). unit names the examples in messages ("sentences"); hint ends the
 * message of a mismatch ("" or " (why)"). Returns 0, or -1 with err. */
int dp_task_check_file(const dp_checkpoint *ck, const char *role, int present, int64_t n, uint64_t fingerprint,
                       const char *unit, const char *hint, dp_error *err);

#endif
