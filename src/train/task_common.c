/* Helpers the task adapters of the training loop share (see task_common.h). */
#include "train/task_common.h"

#include <math.h>
#include <string.h>

#include "core/common.h"

void dp_task_meta_privacy(cJSON *o, const dp_loop_result *lr) {
    if (isfinite(lr->epsilon)) cJSON_AddNumberToObject(o, "epsilon", lr->epsilon);
    else cJSON_AddNullToObject(o, "epsilon");
    cJSON_AddNumberToObject(o, "delta", lr->delta);
    cJSON_AddNumberToObject(o, "noise_multiplier", lr->noise_multiplier);
    cJSON_AddNumberToObject(o, "sample_rate", lr->sample_rate);
    cJSON_AddNumberToObject(o, "steps", (double)lr->dp_steps);
}

int dp_task_check_privacy(const dp_privacy_config *p, int dpsgd, dp_error *err) {
    if (!(p->delta > 0 && p->delta < 1)) return dp_fail(err, "delta must be in (0, 1)");
    if (!(p->target_epsilon > 0) && !(p->noise_multiplier >= 0))
        return dp_fail(err, "a private run needs a target epsilon or a noise multiplier");
    if (p->max_physical_batch < 1) return dp_fail(err, "max physical batch must be at least 1");
    if (dpsgd && !(p->max_grad_norm > 0)) return dp_fail(err, "max grad norm must be positive");
    return 0;
}

void dp_task_file_json(cJSON *o, const char *key, const char *desc, int present, int64_t n, const char *count_key,
                       int64_t count, uint64_t fingerprint) {
    if (!present) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    cJSON *f = cJSON_AddObjectToObject(o, key);
    char fp[17];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)fingerprint);
    dp_jw_str(f, "file", desc);
    dp_jw_int(f, "examples", n);
    dp_jw_int(f, count_key, count);
    dp_jw_str(f, "fingerprint", fp);
}

int dp_task_check_file(const dp_checkpoint *ck, const char *role, int present, int64_t n, uint64_t fingerprint,
                       const char *unit, const char *hint, dp_error *err) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(dp_ckpt_dataset_json(ck), role);
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(f, "fingerprint");
    const cJSON *saved_n = cJSON_GetObjectItemCaseSensitive(f, "examples");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(f, "file");
    const char *saved_file = cJSON_IsString(file) ? file->valuestring : "?";
    const double n_saved = cJSON_IsNumber(saved_n) ? saved_n->valuedouble : 0.0;
    if (!cJSON_IsObject(f)) {
        if (!present) return 0;
        return dp_fail(err, "%s: the run had no %s set; cannot resume with one (%lld %s)", dp_checkpoint_path(ck), role,
                       (long long)n, unit);
    }
    if (!present)
        return dp_fail(err, "%s: the run had a %s set (%s, %.0f %s); give it again to resume", dp_checkpoint_path(ck),
                       role, saved_file, n_saved, unit);
    char have[17];
    snprintf(have, sizeof have, "%016llx", (unsigned long long)fingerprint);
    if (!cJSON_IsString(fp) || strcmp(fp->valuestring, have) != 0 || !cJSON_IsNumber(saved_n) ||
        saved_n->valuedouble != (double)n)
        return dp_fail(err, "%s: written for another dataset: %s set %s, %.0f %s, fingerprint %s; this one has %lld %s, "
                            "fingerprint %s%s",
                       dp_checkpoint_path(ck), role, saved_file, n_saved, unit, cJSON_IsString(fp) ? fp->valuestring : "?",
                       (long long)n, unit, have, hint);
    return 0;
}
