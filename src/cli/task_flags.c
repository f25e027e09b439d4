/* Flags and checks shared by the text and language-model commands (see task_flags.h): train-text and
 * `audit --task text`, train-lm and `audit --task lm`. */
#include "cli/task_flags.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "ops/ops.h"

/* ---- shared by the text and language-model commands ---- */

int task_check_outputs(const char *cmd, const char *out, const char *train, const char *dev, const char *test) {
    const char *inputs[3] = {train, dev, test}, *in_flag[3] = {"--train", "--dev", "--test"};
    const char *outputs[3] = {"metrics.jsonl", "model.safetensors", "privacy.json"};
    for (int i = 0; i < 3; i++) {
        char path[4200];
        for (int k = 0; inputs[i] && k < 4; k++) {
            if (k < 3) snprintf(path, sizeof path, "%s/%s", out, outputs[k]);
            if (dp_same_file(k < 3 ? path : out, inputs[i])) {
                fprintf(stderr, "%s: %s: the output would overwrite the input %s %s; choose another --out\n", cmd,
                        k < 3 ? path : out, in_flag[i], inputs[i]);
                return 2;
            }
        }
    }
    return 0;
}

void task_resume_dp_flags(int priv, int saved_keep_last, const dp_privacy_config *dp, double *sigma,
                          const char **clip_mode, const char **accountant, int *keep_last, int *select_best) {
    /* a private run keeps the last epoch by default: a saved run that kept the best one had --select-best */
    *keep_last = priv ? 0 : saved_keep_last;
    *select_best = priv && !saved_keep_last;
    *sigma = !priv ? -1 : dp->noise_multiplier > 0 ? dp->noise_multiplier : dp->target_epsilon > 0 ? -1 : 0;
    *clip_mode = dp_clip_mode_name(dp->clip_mode);
    *accountant = dp->accountant == DP_ACCOUNTANT_PLD ? "pld" : "rdp";
}

cJSON *task_resume_extra(const dp_checkpoint *ck, int *threads) {
    cJSON *x = dp_checkpoint_extra(ck) ? cJSON_Parse(dp_checkpoint_extra(ck)) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(x, "threads");
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 4096) *threads = (int)v->valuedouble;
    return x;
}

/* The defaults of a task whose default model is mc and learning rate lr. */
static void run_flags_defaults(task_run_flags *r, const dp_model_config *mc, double lr) {
    r->max_len = mc->max_len;
    r->d_model = mc->d_model;
    r->n_heads = mc->n_heads;
    r->n_layers = mc->n_layers;
    r->dropout = mc->dropout;
    r->lr = lr;
    r->sigma = -1;
    r->seed = 1;
    r->accountant = "rdp";
    r->clip_mode = "auto";
}

static int check_sigma_zero(const task_run_flags *r, const char *cmd, const dp_privacy_config *p) {
    if (!(r->sigma == 0 && p->target_epsilon > 0)) return 0;
    fprintf(stderr, "%s: --noise-multiplier 0 gives no privacy, so no --target-epsilon can be met\n", cmd);
    return 2;
}

/* --accountant and --clip-mode into p. Returns 0, or 2 after a message. */
static int parse_dp_names(const task_run_flags *r, const char *cmd, dp_privacy_config *p) {
    if (strcmp(r->accountant, "rdp") == 0) p->accountant = DP_ACCOUNTANT_RDP;
    else if (strcmp(r->accountant, "pld") == 0) p->accountant = DP_ACCOUNTANT_PLD;
    else {
        fprintf(stderr, "%s: --accountant: unknown accountant '%s' (rdp or pld)\n", cmd, r->accountant);
        return 2;
    }
    if (dp_clip_mode_parse(r->clip_mode, &p->clip_mode)) {
        fprintf(stderr, "%s: --clip-mode: unknown mode '%s' (auto, ghost, phantom or naive)\n", cmd, r->clip_mode);
        return 2;
    }
    return 0;
}

static int check_heads(const task_run_flags *r, const char *cmd) {
    if (r->d_model % r->n_heads == 0) return 0;
    fprintf(stderr, "%s: --d-model %d is not divisible by --n-heads %d\n", cmd, r->d_model, r->n_heads);
    return 2;
}

/* The settings every run takes from r: the noise multiplier, seed, progress and thread count. */
static void run_flags_apply(const task_run_flags *r, dp_privacy_config *p, uint64_t *seed, int *progress) {
    p->noise_multiplier = r->sigma > 0 ? r->sigma : 0;
    *seed = (uint64_t)r->seed;
    *progress = r->no_progress ? 0 : (isatty(fileno(stderr)) ? 1 : 0);
    ops_set_threads(r->threads);
}

/* ---- text classification ---- */

void text_flags_defaults(text_flags *f, const dp_text_train_config *c) {
    memset(f, 0, sizeof *f);
    run_flags_defaults(&f->r, &c->model, c->optim.lr);
    f->tokenizer = "bytes";
    f->pool = "first";
    f->classes = 2;
}

int text_flags_mode(const char *cmd, const text_flags *f, dp_text_train_config *c) {
    if (f->dp && f->dpfp) {
        fprintf(stderr, "%s: choose one of --dp (DP-SGD) and --dpfp\n", cmd);
        return 2;
    }
    c->mode = f->dp ? DP_TEXT_DPSGD : f->dpfp ? DP_TEXT_DPFP : DP_TEXT_NONPRIVATE;
    return 0;
}

int text_flags_check_privacy(const char *cmd, const text_flags *f, const arg_spec *specs, int n,
                             const dp_text_train_config *c) {
    if (c->mode != DP_TEXT_NONPRIVATE && f->r.sigma < 0 && c->dp.target_epsilon == 0) {
        fprintf(stderr, "%s: --%s needs --target-epsilon or --noise-multiplier\n", cmd, f->dp ? "dp" : "dpfp");
        return 2;
    }
    /* a flag of another mode would be ignored: refused, naming it and the mode it belongs to */
    static const char *const dp_any[] = {"noise-multiplier", "target-epsilon", "delta", "accountant",
                                         "max-physical-batch", "seeded-noise", NULL};
    static const char *const dpsgd[] = {"max-grad-norm", "clip-mode", NULL};
    static const char *const dpfp_only[] = {"dpfp-clip", "micro-batches", NULL};
    const char *x;
    if (c->mode == DP_TEXT_NONPRIVATE && (x = args_first_seen(specs, n, dp_any))) {
        fprintf(stderr, "%s: --%s is a privacy flag: privacy flags need --dp or --dpfp\n", cmd, x);
        return 2;
    }
    if (c->mode != DP_TEXT_DPSGD && (x = args_first_seen(specs, n, dpsgd))) {
        fprintf(stderr, "%s: --%s is a DP-SGD flag: DP-SGD flags need --dp%s\n", cmd, x,
                f->dpfp ? " (this run is DP-FP, whose clip norm is --dpfp-clip)" : "");
        return 2;
    }
    if (c->mode != DP_TEXT_DPFP && (x = args_first_seen(specs, n, dpfp_only))) {
        fprintf(stderr, "%s: --%s is a DP-FP flag: DP-FP flags need --dpfp%s\n", cmd, x,
                f->dp ? " (this run is DP-SGD, whose clip norm is --max-grad-norm)" : "");
        return 2;
    }
    return check_sigma_zero(&f->r, cmd, &c->dp);
}

int text_flags_config(const char *cmd, const text_flags *f, dp_text_train_config *c) {
    dp_error err;
    if (dp_tokenizer_parse(f->tokenizer, &c->tokenizer, &err)) {
        fprintf(stderr, "%s: --tokenizer: %s\n", cmd, err.msg);
        return 2;
    }
    if (strcmp(f->pool, "first") == 0) c->model.pool = DP_POOL_FIRST;
    else if (strcmp(f->pool, "mean") == 0) c->model.pool = DP_POOL_MEAN;
    else {
        fprintf(stderr, "%s: --pool: unknown pooling '%s' (first or mean)\n", cmd, f->pool);
        return 2;
    }
    if (parse_dp_names(&f->r, cmd, &c->dp) || check_heads(&f->r, cmd)) return 2;
    c->model.n_items = dp_tokenizer_vocab(&c->tokenizer) - 1;
    c->dp.enabled = c->mode != DP_TEXT_NONPRIVATE;
    c->model.max_len = f->r.max_len;
    c->model.d_model = f->r.d_model;
    c->model.n_heads = f->r.n_heads;
    c->model.n_layers = f->r.n_layers;
    c->model.d_ff = f->r.d_ff;
    c->model.dropout = (float)f->r.dropout;
    c->model.n_classes = f->classes;
    c->optim.lr = f->r.lr;
    c->optim.weight_decay = f->r.wd;
    run_flags_apply(&f->r, &c->dp, &c->seed, &c->progress);
    return 0;
}

/* ---- language models ---- */

void lm_flags_defaults(lm_flags *f, const dp_lm_train_config *c) {
    memset(f, 0, sizeof *f);
    run_flags_defaults(&f->r, &c->model, c->optim.lr);
    f->schedule = "constant";
    f->device = "cpu";
    f->min_lr_ratio = c->optim.min_lr_ratio;
}

int lm_flags_check(const char *cmd, const lm_flags *f, const arg_spec *specs, int n, dp_lm_train_config *c) {
    if (f->dp && f->r.sigma < 0 && c->dp.target_epsilon == 0) {
        fprintf(stderr, "%s: --dp needs --target-epsilon or --noise-multiplier\n", cmd);
        return 2;
    }
    static const char *const dp_any[] = {"noise-multiplier", "target-epsilon", "delta", "accountant", "max-grad-norm",
                                         "clip-mode", "sample-rate", "max-physical-batch", "seeded-noise", NULL};
    const char *x;
    if (!f->dp && (x = args_first_seen(specs, n, dp_any))) {
        fprintf(stderr, "%s: --%s is a privacy flag: privacy flags need --dp\n", cmd, x);
        return 2;
    }
    if (check_sigma_zero(&f->r, cmd, &c->dp) || parse_dp_names(&f->r, cmd, &c->dp)) return 2;
    if (dp_schedule_kind_parse(f->schedule, &c->optim.schedule)) {
        fprintf(stderr, "%s: --schedule: unknown schedule '%s' (constant, warmup or cosine)\n", cmd, f->schedule);
        return 2;
    }
    return check_heads(&f->r, cmd);
}

void lm_flags_shape(const lm_flags *f, dp_model_config *mc) {
    mc->d_model = f->r.d_model;
    mc->n_heads = f->r.n_heads;
    mc->n_layers = f->r.n_layers;
    mc->d_ff = f->r.d_ff;
    mc->tied = !f->untied;
    mc->dropout = (float)f->r.dropout;
}

void lm_flags_config(const lm_flags *f, const dp_model_config *mc, dp_lm_train_config *c) {
    c->model = *mc;
    c->dpsgd = f->dp;
    c->dp.enabled = f->dp;
    c->optim.lr = f->r.lr;
    c->optim.weight_decay = f->r.wd;
    c->optim.warmup_steps = f->warmup;
    c->optim.min_lr_ratio = f->min_lr_ratio;
    c->tokenizer_desc = f->tokenizer;
    c->column = f->column;
    run_flags_apply(&f->r, &c->dp, &c->seed, &c->progress);
}
