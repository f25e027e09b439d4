/* Checkpoint files of a training run of any task (include/dpformer/checkpoint.h, docs/checkpoints.md):
 * writing them atomically with a checksum of every part and keeping the newest K; reading one back and
 * verifying all of it before anything is used; choosing the newest valid file of a folder; and
 * deciding whether a run may continue from one with the given settings (every task's, here; a task's
 * own settings and data are checked by the task, the recommendation task's also here, where its
 * checkpoints were read before tasks were recorded).
 *
 * The file is a safetensors file: the tensors are raw arrays (parameters, optimiser buffers, best
 * parameters, the training order), the rest is JSON text in the metadata. Doubles in that JSON are
 * printed with 17 significant digits so that they read back bit for bit. */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700 /* realpath */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "dpformer/dist.h"
#include "dpformer/reattention.h"
#include "dpformer/safetensors.h"
#include "train/checkpoint_internal.h"

#define CKPT_PREFIX "ckpt-"
#define CKPT_SUFFIX ".safetensors"
#define REAL_DTYPE (sizeof(dp_real) == 4 ? "F32" : "F64")
#define NAME_CAP 160
#define KEY_CHECKSUMS DP_ST_KEY_CHECKSUMS
#define TENSOR_ITEM_FREQ "reattention.item_freq"

/* The tensor sets of a checkpoint, each with one tensor per model parameter tensor. */
enum { SET_PARAM = 0, SET_M1, SET_M2, SET_BEST, N_SETS };

static const char *set_prefix(int set, dp_optimizer_kind kind) {
    switch (set) {
    case SET_PARAM: return "param.";
    case SET_M1: return kind == DP_OPT_ADAMW ? "optim.exp_avg." : "optim.momentum_buffer.";
    case SET_M2: return "optim.exp_avg_sq.";
    default: return "best.";
    }
}

uint64_t dp_dataset_fingerprint(const dp_dataset *ds) {
    int64_t sizes[3] = {ds->n_users, ds->n_items, ds->n_interactions};
    uint64_t h = dp_fnv1a64(sizes, sizeof sizes, DP_FNV1A64_INIT);
    if (ds->offsets) h = dp_fnv1a64(ds->offsets, sizeof(int64_t) * ((size_t)ds->n_users + 1), h);
    if (ds->items) h = dp_fnv1a64(ds->items, sizeof(int32_t) * (size_t)ds->n_interactions, h);
    return h;
}

/* The checksums (metadata dpformer.checksums) are computed and verified by safetensors.c
 * (dp_st_checksums_json, dp_st_verify_checksums), the same for checkpoints and model files. */

/* ------------------------------------------------------------------------------------------------ */
/* JSON helpers                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

/* Writing: exact numbers as raw JSON; a non-finite double cannot be written and marks the writer bad. */
void dp_jw_num(dp_jw *w, cJSON *o, const char *k, double v) {
    char b[40];
    if (!isfinite(v)) {
        if (!w->bad) w->bad = k;
        snprintf(b, sizeof b, "null");
    } else {
        snprintf(b, sizeof b, "%.17g", v);
    }
    cJSON_AddItemToObject(o, k, cJSON_CreateRaw(b));
}

void dp_jw_int(cJSON *o, const char *k, int64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)v);
    cJSON_AddItemToObject(o, k, cJSON_CreateRaw(b));
}

void dp_jw_bool(cJSON *o, const char *k, int v) { cJSON_AddBoolToObject(o, k, v != 0); }

void dp_jw_str(cJSON *o, const char *k, const char *s) {
    if (s) cJSON_AddStringToObject(o, k, s);
    else cJSON_AddNullToObject(o, k);
}

/* Reading: the first problem is reported ("path: metadata KEY: field ...") and later reads are no-ops. */
int dp_jr_fail(dp_jr *r, const char *field, const char *what) {
    if (!r->bad) dp_fail(r->err, "%s: metadata %s: \"%s\" %s", r->path, r->key, field, what);
    r->bad = 1;
    return -1;
}

const cJSON *dp_jr_obj(dp_jr *r, const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsObject(v)) dp_jr_fail(r, k, "is missing or not an object");
    return cJSON_IsObject(v) ? v : NULL;
}

double dp_jr_num(dp_jr *r, const cJSON *o, const char *k) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        dp_jr_fail(r, k, "is missing or not a finite number");
        return 0;
    }
    return v->valuedouble;
}

int64_t dp_jr_int(dp_jr *r, const cJSON *o, const char *k, double lo, double hi) {
    double v = dp_jr_num(r, o, k);
    if (r->bad) return 0;
    if (v != floor(v) || v < lo || v > hi) {
        dp_jr_fail(r, k, "is not an integer in the allowed range");
        return 0;
    }
    return (int64_t)v;
}

int dp_jr_bool(dp_jr *r, const cJSON *o, const char *k) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    if (!cJSON_IsBool(v)) return dp_jr_fail(r, k, "is missing or not true/false"), 0;
    return cJSON_IsTrue(v);
}

/* A string, or NULL for JSON null when nullable. */
const char *dp_jr_str(dp_jr *r, const cJSON *o, const char *k, int nullable) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    if (nullable && cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsString(v)) return dp_jr_fail(r, k, "is missing or not a string"), NULL;
    return v->valuestring;
}

/* ------------------------------------------------------------------------------------------------ */
/* The run configuration and progress as JSON                                                       */
/* ------------------------------------------------------------------------------------------------ */

static const char *optimizer_name(dp_optimizer_kind k) { return k == DP_OPT_SGD ? "sgd" : "adamw"; }
static const char *schedule_name(dp_schedule_kind k) {
    return k == DP_SCHED_WARMUP ? "warmup" : k == DP_SCHED_COSINE ? "cosine" : "constant";
}
static const char *accountant_name(dp_accountant_kind k) { return k == DP_ACCOUNTANT_PLD ? "pld" : "rdp"; }

/* The settings every run has (dp_run_settings), as the object of dpformer.train_config; a task adds
 * its own keys next to them (recommendation: exclude_seen, max_eval_users, data at the top level, as
 * checkpoints wrote them before tasks were recorded). */
static cJSON *settings_to_json(dp_jw *w, const dp_run_settings *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON *m = cJSON_AddObjectToObject(o, "model");
    dp_jw_int(m, "n_items", c->model.n_items);
    dp_jw_int(m, "max_len", c->model.max_len);
    dp_jw_int(m, "d_model", c->model.d_model);
    dp_jw_int(m, "n_heads", c->model.n_heads);
    dp_jw_int(m, "n_layers", c->model.n_layers);
    dp_jw_int(m, "d_ff", c->model.d_ff);
    dp_jw_bool(m, "tied", c->model.tied);
    dp_jw_bool(m, "causal", c->model.causal);
    dp_jw_num(w, m, "dropout", c->model.dropout);
    if (c->model.n_classes) { /* a classifier (absent: a next-item model) */
        dp_jw_int(m, "n_classes", c->model.n_classes);
        dp_jw_str(m, "pool", c->model.pool == DP_POOL_MEAN ? "mean" : "first");
        dp_jw_num(w, m, "rep_clip", c->model.rep_clip);
        dp_jw_str(m, "tokenizer", c->model.tokenizer);
    }
    if (c->model.family || c->model.activation || c->model.positions) { /* absent: the recommender's */
        dp_jw_str(m, "family", dp_model_family_name(c->model.family));
        dp_jw_str(m, "activation", dp_model_activation_name(c->model.activation));
        dp_jw_str(m, "positions", dp_model_positions_name(c->model.positions));
    }
    cJSON *op = cJSON_AddObjectToObject(o, "optim");
    dp_jw_str(op, "kind", optimizer_name(c->optim.kind));
    dp_jw_num(w, op, "lr", c->optim.lr);
    dp_jw_num(w, op, "beta1", c->optim.beta1);
    dp_jw_num(w, op, "beta2", c->optim.beta2);
    dp_jw_num(w, op, "eps", c->optim.eps);
    dp_jw_num(w, op, "weight_decay", c->optim.weight_decay);
    dp_jw_num(w, op, "momentum", c->optim.momentum);
    dp_jw_str(op, "schedule", schedule_name(c->optim.schedule));
    dp_jw_int(op, "warmup_steps", c->optim.warmup_steps);
    dp_jw_int(op, "total_steps", c->optim.total_steps);
    dp_jw_num(w, op, "min_lr_ratio", c->optim.min_lr_ratio);
    dp_jw_str(o, "mode", dp_loop_mode_name(c->mode));
    dp_jw_int(o, "epochs", c->epochs);
    dp_jw_int(o, "batch_size", c->batch_size);
    dp_jw_int(o, "eval_every", c->eval_every);
    dp_jw_bool(o, "keep_last", c->keep_last);
    dp_jw_int(o, "micro_batches", c->micro_batches);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed); /* beyond 2^53: a string */
    dp_jw_str(o, "seed", seed);
    dp_jw_str(o, "out_dir", c->out_dir);
    cJSON *p = cJSON_AddObjectToObject(o, "dp");
    dp_jw_bool(p, "enabled", c->dp.enabled);
    dp_jw_num(w, p, "noise_multiplier", c->dp.noise_multiplier);
    dp_jw_num(w, p, "target_epsilon", c->dp.target_epsilon);
    dp_jw_num(w, p, "delta", c->dp.delta);
    dp_jw_num(w, p, "max_grad_norm", c->dp.max_grad_norm);
    dp_jw_num(w, p, "sample_rate", c->dp.sample_rate);
    dp_jw_int(p, "max_physical_batch", c->dp.max_physical_batch);
    dp_jw_str(p, "clip_mode", dp_clip_mode_name(c->dp.clip_mode));
    dp_jw_bool(p, "seeded_noise", c->dp.seeded_noise);
    dp_jw_str(p, "accountant", accountant_name(c->dp.accountant));
    dp_jw_bool(p, "reattention", c->dp.reattention);
    dp_jw_num(w, p, "reattention_scale", c->dp.reattention_scale);
    dp_jw_str(p, "item_freq_public", c->dp.item_freq_public);
    dp_jw_num(w, p, "item_freq_noise", c->dp.item_freq_noise);
    dp_jw_int(p, "item_freq_cap", c->dp.item_freq_cap);
    dp_jw_int(o, "checkpoint_every", c->checkpoint_every);
    dp_jw_int(o, "keep_checkpoints", c->keep_checkpoints);
    return o;
}

static void settings_from_json(dp_jr *r, const cJSON *o, dp_run_settings *c) {
    dp_train_config d = dp_train_config_default();
    memset(c, 0, sizeof *c);
    c->model = d.model;
    c->optim = d.optim;
    c->dp = d.dp;
    const cJSON *m = dp_jr_obj(r, o, "model"), *op = dp_jr_obj(r, o, "optim"), *p = dp_jr_obj(r, o, "dp");
    if (r->bad) return;
    c->model.n_items = (int32_t)dp_jr_int(r, m, "n_items", 1, 2147483647.0);
    c->model.max_len = (int)dp_jr_int(r, m, "max_len", 1, 2147483647.0);
    c->model.d_model = (int)dp_jr_int(r, m, "d_model", 1, 2147483647.0);
    c->model.n_heads = (int)dp_jr_int(r, m, "n_heads", 1, 2147483647.0);
    c->model.n_layers = (int)dp_jr_int(r, m, "n_layers", 0, 2147483647.0);
    c->model.d_ff = (int)dp_jr_int(r, m, "d_ff", 0, 2147483647.0);
    c->model.tied = dp_jr_bool(r, m, "tied");
    c->model.causal = dp_jr_bool(r, m, "causal");
    c->model.dropout = (float)dp_jr_num(r, m, "dropout");
    if (m && cJSON_GetObjectItemCaseSensitive(m, "n_classes")) {
        c->model.n_classes = (int)dp_jr_int(r, m, "n_classes", 2, 2147483647.0);
        const char *pool = dp_jr_str(r, m, "pool", 0);
        if (pool && strcmp(pool, "mean") == 0) c->model.pool = DP_POOL_MEAN;
        else if (pool && strcmp(pool, "first") == 0) c->model.pool = DP_POOL_FIRST;
        else if (pool) dp_jr_fail(r, "pool", "is not first or mean");
        c->model.rep_clip = dp_jr_num(r, m, "rep_clip");
        const char *tok = dp_jr_str(r, m, "tokenizer", 0);
        if (tok && strlen(tok) >= sizeof c->model.tokenizer) dp_jr_fail(r, "tokenizer", "is too long");
        else if (tok) snprintf(c->model.tokenizer, sizeof c->model.tokenizer, "%s", tok);
    }
    /* family, activation, positions: absent in checkpoints of the recommender's model (and older ones) */
    const char *fam = m && cJSON_GetObjectItemCaseSensitive(m, "family") ? dp_jr_str(r, m, "family", 0) : NULL;
    if (fam && (c->model.family = dp_model_family_parse(fam)) < 0) dp_jr_fail(r, "family", "is not a known family");
    const char *act = m && cJSON_GetObjectItemCaseSensitive(m, "activation") ? dp_jr_str(r, m, "activation", 0) : NULL;
    if (act && (c->model.activation = dp_model_activation_parse(act)) < 0)
        dp_jr_fail(r, "activation", "is not a known activation");
    const char *pos = m && cJSON_GetObjectItemCaseSensitive(m, "positions") ? dp_jr_str(r, m, "positions", 0) : NULL;
    if (pos && (c->model.positions = dp_model_positions_parse(pos)) < 0)
        dp_jr_fail(r, "positions", "is not a known position scheme");
    const char *s = dp_jr_str(r, op, "kind", 0);
    if (s && dp_optimizer_kind_parse(s, &c->optim.kind)) dp_jr_fail(r, "kind", "is not a known optimizer");
    c->optim.lr = dp_jr_num(r, op, "lr");
    c->optim.beta1 = dp_jr_num(r, op, "beta1");
    c->optim.beta2 = dp_jr_num(r, op, "beta2");
    c->optim.eps = dp_jr_num(r, op, "eps");
    c->optim.weight_decay = dp_jr_num(r, op, "weight_decay");
    c->optim.momentum = dp_jr_num(r, op, "momentum");
    s = dp_jr_str(r, op, "schedule", 0);
    if (s && dp_schedule_kind_parse(s, &c->optim.schedule)) dp_jr_fail(r, "schedule", "is not a known schedule");
    c->optim.warmup_steps = dp_jr_int(r, op, "warmup_steps", 0, 9007199254740992.0);
    c->optim.total_steps = dp_jr_int(r, op, "total_steps", 0, 9007199254740992.0);
    c->optim.min_lr_ratio = dp_jr_num(r, op, "min_lr_ratio");
    c->epochs = (int)dp_jr_int(r, o, "epochs", 1, 2147483647.0);
    c->batch_size = (int)dp_jr_int(r, o, "batch_size", 1, 2147483647.0);
    c->eval_every = (int)dp_jr_int(r, o, "eval_every", 1, 2147483647.0);
    c->keep_last = dp_jr_bool(r, o, "keep_last");
    /* absent in checkpoints written before the mode and DP-FP were saved: DP-SGD or nothing, M = 1 */
    c->micro_batches = cJSON_GetObjectItemCaseSensitive(o, "micro_batches")
                           ? (int)dp_jr_int(r, o, "micro_batches", 1, 2147483647.0) : 1;
    s = dp_jr_str(r, o, "seed", 0);
    if (s) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-') dp_jr_fail(r, "seed", "is not a decimal integer");
        c->seed = (uint64_t)v;
    }
    c->out_dir = dp_jr_str(r, o, "out_dir", 1);
    c->dp.enabled = dp_jr_bool(r, p, "enabled");
    c->mode = c->dp.enabled ? DP_LOOP_DPSGD : DP_LOOP_NONPRIVATE;
    if (cJSON_GetObjectItemCaseSensitive(o, "mode")) {
        s = dp_jr_str(r, o, "mode", 0);
        int k = -1;
        for (int i = 0; s && i < 3; i++)
            if (strcmp(s, dp_loop_mode_name((dp_loop_mode)i)) == 0) k = i;
        if (s && k < 0) dp_jr_fail(r, "mode", "is not non-private, dp-sgd or dp-fp");
        else if (s && (k != DP_LOOP_NONPRIVATE) != c->dp.enabled) dp_jr_fail(r, "mode", "contradicts \"dp\": \"enabled\"");
        else if (s) c->mode = (dp_loop_mode)k;
    }
    c->dp.noise_multiplier = dp_jr_num(r, p, "noise_multiplier");
    c->dp.target_epsilon = dp_jr_num(r, p, "target_epsilon");
    c->dp.delta = dp_jr_num(r, p, "delta");
    c->dp.max_grad_norm = dp_jr_num(r, p, "max_grad_norm");
    c->dp.sample_rate = dp_jr_num(r, p, "sample_rate");
    c->dp.max_physical_batch = (int)dp_jr_int(r, p, "max_physical_batch", 1, 2147483647.0);
    s = dp_jr_str(r, p, "clip_mode", 0);
    if (s && dp_clip_mode_parse(s, &c->dp.clip_mode)) dp_jr_fail(r, "clip_mode", "is not a known clip mode");
    c->dp.seeded_noise = dp_jr_bool(r, p, "seeded_noise");
    s = dp_jr_str(r, p, "accountant", 0);
    if (s && strcmp(s, "rdp") == 0) c->dp.accountant = DP_ACCOUNTANT_RDP;
    else if (s && strcmp(s, "pld") == 0) c->dp.accountant = DP_ACCOUNTANT_PLD;
    else if (s) dp_jr_fail(r, "accountant", "is not rdp or pld");
    /* Re-Attention (absent in checkpoints written before it could be resumed: off) */
    if (p && cJSON_GetObjectItemCaseSensitive(p, "reattention")) {
        c->dp.reattention = dp_jr_bool(r, p, "reattention");
        c->dp.reattention_scale = dp_jr_num(r, p, "reattention_scale");
        c->dp.item_freq_public = dp_jr_str(r, p, "item_freq_public", 1);
        c->dp.item_freq_noise = dp_jr_num(r, p, "item_freq_noise");
        c->dp.item_freq_cap = (int)dp_jr_int(r, p, "item_freq_cap", 0, 2147483647.0);
        if (!r->bad && c->dp.reattention && !(c->dp.reattention_scale >= 0))
            dp_jr_fail(r, "reattention_scale", "is negative");
    }
    c->checkpoint_every = dp_jr_int(r, o, "checkpoint_every", 0, 9007199254740992.0);
    c->keep_checkpoints = (int)dp_jr_int(r, o, "keep_checkpoints", 1, 2147483647.0);
}

/* The recommendation run's configuration: the settings and its own keys. */
static void rec_config_from_json(dp_jr *r, const cJSON *o, const dp_run_settings *s, dp_train_config *c) {
    *c = dp_train_config_default();
    c->model = s->model;
    c->optim = s->optim;
    c->epochs = s->epochs;
    c->batch_size = s->batch_size;
    c->eval_every = s->eval_every;
    c->keep_last = s->keep_last;
    c->seed = s->seed;
    c->out_dir = s->out_dir;
    c->dp = s->dp;
    c->checkpoint_every = s->checkpoint_every;
    c->keep_checkpoints = s->keep_checkpoints;
    c->exclude_seen = dp_jr_bool(r, o, "exclude_seen");
    c->max_eval_users = dp_jr_int(r, o, "max_eval_users", 0, 9007199254740992.0);
    c->data_desc = dp_jr_str(r, o, "data", 1);
    if (!r->bad && s->mode == DP_LOOP_DPFP) dp_jr_fail(r, "mode", "dp-fp is not a recommendation mode");
}

static cJSON *progress_to_json(dp_jw *w, const dp_train_progress *g) {
    cJSON *o = cJSON_CreateObject();
    dp_jw_int(o, "epoch", g->epoch);
    dp_jw_int(o, "epoch_step", g->epoch_step);
    dp_jw_int(o, "step", g->step);
    dp_jw_int(o, "dp_steps", g->dp_steps);
    dp_jw_num(w, o, "loss_sum", g->loss_sum);
    dp_jw_int(o, "loss_n", g->loss_n);
    dp_jw_int(o, "n_clipped", g->n_clipped);
    dp_jw_int(o, "n_seen", g->n_seen);
    dp_jw_num(w, o, "epoch_seconds", g->epoch_seconds);
    dp_jw_int(o, "epochs_run", g->epochs_run);
    dp_jw_num(w, o, "train_time", g->train_time);
    dp_jw_num(w, o, "elapsed", g->elapsed);
    dp_jw_int(o, "examples", g->examples);
    dp_jw_num(w, o, "first_train_loss", g->first_train_loss);
    dp_jw_num(w, o, "final_train_loss", g->final_train_loss);
    dp_jw_int(o, "best_epoch", g->best_epoch);
    dp_jw_num(w, o, "best_ndcg", g->best_score); /* the validation score (NDCG@10 when the key was named) */
    dp_jw_bool(o, "stopped_at_budget", g->stopped_at_budget);
    dp_jw_bool(o, "complete", g->complete);
    dp_jw_int(o, "resumes", g->resumes);
    dp_jw_num(w, o, "sigma", g->sigma);
    dp_jw_num(w, o, "sample_rate", g->q);
    dp_jw_int(o, "max_steps", g->max_steps);
    return o;
}

static void progress_from_json(dp_jr *r, const cJSON *o, dp_train_progress *g) {
    const double big = 9007199254740992.0;
    memset(g, 0, sizeof *g);
    g->epoch = (int)dp_jr_int(r, o, "epoch", 1, 2147483647.0);
    g->epoch_step = dp_jr_int(r, o, "epoch_step", 0, big);
    g->step = dp_jr_int(r, o, "step", 0, big);
    g->dp_steps = dp_jr_int(r, o, "dp_steps", 0, big);
    g->loss_sum = dp_jr_num(r, o, "loss_sum");
    g->loss_n = dp_jr_int(r, o, "loss_n", 0, big);
    g->n_clipped = dp_jr_int(r, o, "n_clipped", 0, big);
    g->n_seen = dp_jr_int(r, o, "n_seen", 0, big);
    g->epoch_seconds = dp_jr_num(r, o, "epoch_seconds");
    g->epochs_run = (int)dp_jr_int(r, o, "epochs_run", 0, 2147483647.0);
    g->train_time = dp_jr_num(r, o, "train_time");
    g->elapsed = dp_jr_num(r, o, "elapsed");
    g->examples = dp_jr_int(r, o, "examples", 0, big);
    g->first_train_loss = dp_jr_num(r, o, "first_train_loss");
    g->final_train_loss = dp_jr_num(r, o, "final_train_loss");
    g->best_epoch = (int)dp_jr_int(r, o, "best_epoch", 0, 2147483647.0);
    g->best_score = dp_jr_num(r, o, "best_ndcg");
    g->stopped_at_budget = dp_jr_bool(r, o, "stopped_at_budget");
    g->complete = dp_jr_bool(r, o, "complete");
    g->resumes = (int)dp_jr_int(r, o, "resumes", 0, 2147483647.0);
    g->sigma = dp_jr_num(r, o, "sigma");
    g->q = dp_jr_num(r, o, "sample_rate");
    g->max_steps = dp_jr_int(r, o, "max_steps", -1, big);
    if (!r->bad && (g->epochs_run > g->epoch || g->best_epoch > g->epochs_run))
        dp_jr_fail(r, "epochs_run", "is inconsistent with \"epoch\" or \"best_epoch\"");
}

/* ------------------------------------------------------------------------------------------------ */
/* Writing                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

static int is_ckpt_name(const char *name, int64_t *step) {
    size_t n = strlen(name), lp = strlen(CKPT_PREFIX), ls = strlen(CKPT_SUFFIX);
    if (n <= lp + ls || strncmp(name, CKPT_PREFIX, lp) != 0 || strcmp(name + n - ls, CKPT_SUFFIX) != 0) return 0;
    int64_t v = 0;
    for (size_t i = lp; i < n - ls; i++) {
        if (name[i] < '0' || name[i] > '9' || v > (INT64_MAX - 9) / 10) return 0;
        v = v * 10 + (name[i] - '0');
    }
    if (step) *step = v;
    return 1;
}

/* A temporary file left by dp_safetensors_write for a checkpoint (".ckpt-<step>.safetensors.tmp-..."). */
static int is_ckpt_temp(const char *name) {
    return name[0] == '.' && strncmp(name + 1, CKPT_PREFIX, strlen(CKPT_PREFIX)) == 0 && strstr(name, ".tmp-") != NULL;
}

typedef struct {
    char *path;
    int64_t step;
} ckpt_entry;

static int entry_cmp(const void *a, const void *b) {
    const ckpt_entry *x = a, *y = b;
    return x->step < y->step ? 1 : x->step > y->step ? -1 : strcmp(x->path, y->path);
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = dp_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Checkpoint files of dir, newest first; with remove_temps, stale temporary files are deleted. */
static int list_entries(const char *dir, ckpt_entry **out, int *n_out, int remove_temps, dp_error *err) {
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return dp_fail(err, "%s: cannot read the checkpoint folder: %s", dir, strerror(errno));
    }
    int n = 0, cap = 0;
    ckpt_entry *e = NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t step;
        if (is_ckpt_name(de->d_name, &step)) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                ckpt_entry *ne = dp_malloc(sizeof *e * (size_t)cap);
                if (n) memcpy(ne, e, sizeof *e * (size_t)n);
                free(e);
                e = ne;
            }
            e[n].path = join(dir, de->d_name);
            e[n].step = step;
            n++;
        } else if (remove_temps && is_ckpt_temp(de->d_name)) {
            char *p = join(dir, de->d_name);
            (void)unlink(p);
            free(p);
        }
    }
    closedir(d);
    if (n > 1) qsort(e, (size_t)n, sizeof *e, entry_cmp);
    *out = e;
    *n_out = n;
    return 0;
}

static void free_entries(ckpt_entry *e, int n) {
    for (int i = 0; i < n; i++) free(e[i].path);
    free(e);
}

int dp_checkpoint_list(const char *dir, char ***paths, int *n, dp_error *err) {
    ckpt_entry *e;
    int k;
    *paths = NULL;
    *n = 0;
    if (list_entries(dir, &e, &k, 0, err)) return -1;
    char **p = dp_calloc((size_t)(k ? k : 1), sizeof *p);
    for (int i = 0; i < k; i++) p[i] = e[i].path;
    free(e);
    *paths = p;
    *n = k;
    return 0;
}

/* Keep the newest `keep` checkpoints (the one just written among them) and drop stale temporaries. */
static void rotate(const char *dir, int keep, const char *written) {
    ckpt_entry *e;
    int n;
    if (list_entries(dir, &e, &n, 1, NULL)) return;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        int mine = strcmp(e[i].path, written) == 0;
        if (mine || kept < keep - 1) {
            kept += !mine;
            continue;
        }
        (void)unlink(e[i].path);
    }
    free_entries(e, n);
}

/* The metrics lines (text, one per line) as a JSON array of strings. */
static char *metrics_json(const char *text) {
    cJSON *a = cJSON_CreateArray();
    const char *p = text ? text : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = dp_malloc(len + 1);
        memcpy(line, p, len);
        line[len] = 0;
        if (len) cJSON_AddItemToArray(a, cJSON_CreateString(line));
        free(line);
        p += len + (nl ? 1 : 0);
    }
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

static char *print_and_free(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) abort();
    return s;
}

/* The same folder (the same device and inode), however it is spelled. */
static int same_dir(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The folder that holds dir ("runs/x" for "runs/x/checkpoints/"), as a malloc'd string: by name when
 * dir ends in a plain name, else through its real path; NULL if it cannot be resolved. */
static char *parent_of(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    const char *end = dir + n, *slash = NULL;
    for (const char *p = dir; p < end; p++)
        if (*p == '/') slash = p;
    const char *base = slash ? slash + 1 : dir;
    size_t blen = (size_t)(end - base);
    if (blen > 0 && !(blen == 1 && base[0] == '.') && !(blen == 2 && base[0] == '.' && base[1] == '.')) {
        size_t len = !slash ? 1 : slash == dir ? 1 : (size_t)(slash - dir);
        char *p = dp_malloc(len + 1);
        if (!slash) p[0] = '.';
        else memcpy(p, dir, len);
        p[len] = 0;
        return p;
    }
    char *real = realpath(dir, NULL);
    if (!real) return NULL;
    char *slash2 = strrchr(real, '/');
    if (slash2 == real) slash2[1] = 0; /* "/x": "/" */
    else if (slash2) *slash2 = 0;
    return real;
}

/* dir is the folder `parent`/<name> (compared as folders: device and inode). */
static int is_parent_of(const char *parent, const char *dir) {
    char *p = parent_of(dir);
    int same = p && same_dir(p, parent);
    free(p);
    return same;
}

int dp_ckpt_write(const char *dir, const dp_ckpt_source *s, char *path, size_t path_cap, dp_error *err) {
    const dp_run_settings *cfg = s->settings;
    const int nt = dp_model_num_tensors(s->m);
    const dp_real *arrays[N_SETS] = {dp_model_params(s->m), dp_optimizer_state(s->opt, 0), dp_optimizer_state(s->opt, 1),
                                     s->best};
    /* a model on a device: host copies of its parameters and optimiser state (checkpoints are
     * device-independent) */
    dp_real *host[3] = {NULL, NULL, NULL};
    if (dp_model_device(s->m) != DP_DEVICE_CPU) {
        const size_t np = dp_model_num_params(s->m);
        for (int k = 0; k < 3; k++) {
            if (!arrays[k]) continue;
            host[k] = dp_alloc_aligned(sizeof(dp_real) * np);
            if (k == 0) dp_model_read_params(s->m, host[k]);
            else dp_optimizer_read_state(s->opt, k - 1, host[k]);
            arrays[k] = host[k];
        }
    }
    int n = 0;
    dp_st_tensor *t = dp_calloc((size_t)(N_SETS * nt + 2), sizeof *t);
    char(*names)[NAME_CAP] = dp_calloc((size_t)(N_SETS * nt + 2), NAME_CAP);
    int rc = -1;
    char *mtext = NULL, *jcfg = NULL, *jpg = NULL, *jds = NULL, *jhist = NULL, *jsum = NULL, *jtask = NULL;
    if (cfg->dp.enabled && cfg->dp.reattention) {
        /* the frequencies the run uses (released once, or read from the public file), first: F64 at
         * the start of the data section keeps every tensor aligned to its element size */
        dp_reattention_config ra;
        if (!dp_model_get_reattention(s->m, &ra)) {
            dp_fail(err, "%s: refusing to write a checkpoint at step %lld: the run has Re-Attention on but the model "
                         "has no Re-Attention setting", dir, (long long)s->pg->step);
            goto out;
        }
        t[n] = (dp_st_tensor){.name = TENSOR_ITEM_FREQ, .dtype = "F64", .ndim = 1, .data = ra.item_freq};
        t[n].shape[0] = (int64_t)cfg->model.n_items + 1;
        n++;
    }
    for (int set = 0; set < N_SETS; set++) {
        if (!arrays[set]) continue;
        for (int i = 0; i < nt; i++) {
            const dp_param_tensor *pt = dp_model_tensor(s->m, i);
            const dp_real *v = arrays[set] + pt->offset;
            snprintf(names[n], NAME_CAP, "%s%s", set_prefix(set, cfg->optim.kind), pt->name);
            for (size_t k = 0; k < pt->size; k++)
                if (!isfinite(v[k])) {
                    dp_fail(err, "%s: refusing to write a checkpoint at step %lld: %s holds a non-finite value (index %zu)",
                            dir, (long long)s->pg->step, names[n], k);
                    goto out;
                }
            t[n] = (dp_st_tensor){.name = names[n], .dtype = REAL_DTYPE, .ndim = pt->ndim, .data = v};
            t[n].shape[0] = pt->shape[0];
            t[n].shape[1] = pt->shape[1];
            n++;
        }
    }
    t[n] = (dp_st_tensor){.name = "data.order", .dtype = "I32", .ndim = 1, .data = s->order};
    t[n].shape[0] = s->n_train;
    n++;

    /* where the run's outputs are relative to this folder, so that a resume of a copied or moved
     * run folder writes into the copy (dpformer.train_config "layout") */
    if (dp_mkdir_p(dir, err)) goto out;
    dp_jw w = {NULL};
    cJSON *jc = settings_to_json(&w, cfg);
    /* the task's own settings next to them */
    for (cJSON *it = s->task_config ? s->task_config->child : NULL; it; it = it->next)
        if (!cJSON_GetObjectItemCaseSensitive(jc, it->string)) cJSON_AddItemToObject(jc, it->string, cJSON_Duplicate(it, 1));
    cJSON *lay = cJSON_AddObjectToObject(jc, "layout");
    char *real_dir = realpath(dir, NULL);
    dp_jw_str(lay, "checkpoint_dir", real_dir);
    dp_jw_bool(lay, "out_dir_is_parent", cfg->out_dir && is_parent_of(cfg->out_dir, dir));
    free(real_dir);
    real_dir = cfg->out_dir ? realpath(cfg->out_dir, NULL) : NULL;
    dp_jw_str(lay, "out_dir", real_dir);
    free(real_dir);
    jcfg = print_and_free(jc);
    jpg = print_and_free(progress_to_json(&w, s->pg));
    if (w.bad) {
        dp_fail(err, "%s: refusing to write a checkpoint at step %lld: \"%s\" is not finite", dir, (long long)s->pg->step,
                w.bad);
        goto out;
    }
    /* the task's data identity, with the length of the order */
    cJSON *ds = s->dataset ? cJSON_Duplicate(s->dataset, 1) : cJSON_CreateObject();
    if (!cJSON_GetObjectItemCaseSensitive(ds, "train_examples")) dp_jw_int(ds, "train_examples", s->n_train);
    jds = print_and_free(ds);
    cJSON *jt = cJSON_CreateObject();
    dp_jw_str(jt, "name", s->task ? s->task : "recommendation");
    dp_jw_str(jt, "command", s->command ? s->command : "train");
    jtask = print_and_free(jt);
    mtext = metrics_json(s->metrics);
    char version[16], rng_hex[DP_RNG_STATE_HEX_LEN + 1];
    snprintf(version, sizeof version, "%d", DP_CHECKPOINT_VERSION);
    const char *keys[12], *vals[12];
    int nm = 0;
    keys[nm] = "dpformer.checkpoint_version", vals[nm++] = version;
    keys[nm] = "dpformer.task", vals[nm++] = jtask;
    keys[nm] = "dpformer.train_config", vals[nm++] = jcfg;
    keys[nm] = "dpformer.progress", vals[nm++] = jpg;
    keys[nm] = "dpformer.dataset", vals[nm++] = jds;
    keys[nm] = "dpformer.metrics", vals[nm++] = mtext;
    if (s->extra) keys[nm] = "dpformer.extra", vals[nm++] = s->extra;
    if (s->rng) {
        dp_rng_state_save_hex(s->rng, rng_hex);
        keys[nm] = "dpformer.rng", vals[nm++] = rng_hex;
    }
    if (s->hist) {
        cJSON *h = dp_history_to_cjson(s->hist);
        jhist = print_and_free(h);
        keys[nm] = "dpformer.privacy_history", vals[nm++] = jhist;
    }
    /* checksums last: over everything above and over each tensor */
    jsum = dp_st_checksums_json(t, n, keys, vals, nm);
    keys[nm] = KEY_CHECKSUMS, vals[nm++] = jsum;

    snprintf(path, path_cap, "%s/" CKPT_PREFIX "%012lld" CKPT_SUFFIX, dir, (long long)s->pg->step);
    if (dp_safetensors_write(path, t, n, keys, vals, nm, err)) goto out;
    /* Only now, with the new file durable, may older ones go. */
    rotate(dir, cfg->keep_checkpoints > 0 ? cfg->keep_checkpoints : 2, path);
    rc = 0;
out:
    cJSON_free(mtext);
    cJSON_free(jcfg);
    cJSON_free(jpg);
    cJSON_free(jds);
    cJSON_free(jtask);
    cJSON_free(jhist);
    free(jsum);
    free(names);
    free(t);
    for (int k = 0; k < 3; k++) free(host[k]);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Reading                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

struct dp_checkpoint {
    char *path, *dir;
    dp_st_file *f;
    cJSON *jcfg, *jpg, *jds, *jmetrics, *jtask;
    const char *task, *command; /* in jtask, or the recommendation task's */
    dp_run_settings set;       /* the settings every run has */
    dp_train_config cfg;       /* the recommendation task's configuration (task "recommendation" only) */
    dp_train_progress pg;
    dp_history hist;
    const char *rng_hex, *extra;
    uint64_t data_fp;
    int64_t users, items, interactions, train_users; /* train_users: the order's length, any task */
    int n_metrics;
    const char **metrics;
    const double *item_freq; /* Re-Attention's frequencies [n_items + 1] (in f), or NULL */
    char *out_dir;           /* where a resumed run writes its outputs (derive_out_dir), or NULL */
};

void dp_checkpoint_free(dp_checkpoint *c) {
    if (!c) return;
    free(c->path);
    free(c->dir);
    free(c->out_dir);
    dp_st_close(c->f);
    cJSON_Delete(c->jcfg);
    cJSON_Delete(c->jpg);
    cJSON_Delete(c->jds);
    cJSON_Delete(c->jmetrics);
    cJSON_Delete(c->jtask);
    dp_history_free(&c->hist);
    free(c->metrics);
    free(c);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = dp_malloc(n);
    memcpy(d, s, n);
    return d;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return dup_str(".");
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char *d = dp_malloc(len + 1);
    memcpy(d, path, len);
    d[len] = 0;
    return d;
}

/* The output folder of a run resumed from c, as the checkpoint folder is now (not as it was when the
 * run started: the run folder may have been copied or moved): with the default layout (the
 * checkpoints in OUT/checkpoints) the folder holding c's folder; with another checkpoint folder, the
 * run's output folder if the checkpoints are still where they were written, else unknown (NULL).
 * Checkpoints written before the layout was recorded: the default layout when the folder is called
 * "checkpoints", else the saved output folder. */
static void derive_out_dir(dp_checkpoint *c) {
    const cJSON *lay = cJSON_GetObjectItemCaseSensitive(c->jcfg, "layout");
    const cJSON *par = cJSON_GetObjectItemCaseSensitive(lay, "out_dir_is_parent");
    if (cJSON_IsTrue(par)) {
        c->out_dir = parent_of(c->dir);
        return;
    }
    if (cJSON_IsBool(par)) {
        const cJSON *cd = cJSON_GetObjectItemCaseSensitive(lay, "checkpoint_dir");
        const cJSON *od = cJSON_GetObjectItemCaseSensitive(lay, "out_dir");
        char *real = realpath(c->dir, NULL);
        int stayed = real && cJSON_IsString(cd) && strcmp(real, cd->valuestring) == 0;
        free(real);
        if (stayed && cJSON_IsString(od)) c->out_dir = dup_str(od->valuestring);
        else if (stayed && c->set.out_dir) c->out_dir = dup_str(c->set.out_dir);
        return;
    }
    size_t n = strlen(c->dir);
    while (n > 1 && c->dir[n - 1] == '/') n--;
    const size_t k = strlen("checkpoints");
    if (n >= k && strncmp(c->dir + n - k, "checkpoints", k) == 0 && (n == k || c->dir[n - k - 1] == '/'))
        c->out_dir = parent_of(c->dir);
    else if (c->set.out_dir)
        c->out_dir = dup_str(c->set.out_dir);
}

static cJSON *parse_meta(const dp_checkpoint *c, const char *key, int required, dp_error *err, int *bad) {
    const char *v = dp_st_meta(c->f, key);
    if (!v) {
        if (required) {
            dp_fail(err, "%s: metadata %s is missing", c->path, key);
            *bad = 1;
        }
        return NULL;
    }
    cJSON *j = cJSON_Parse(v);
    if (!j) {
        dp_fail(err, "%s: metadata %s is not valid JSON", c->path, key);
        *bad = 1;
    }
    return j;
}

static int verify_checksums(dp_checkpoint *c, dp_error *err) {
    if (!dp_st_meta(c->f, KEY_CHECKSUMS))
        return dp_fail(err, "%s: metadata %s is missing (not a complete checkpoint)", c->path, KEY_CHECKSUMS);
    return dp_st_verify_checksums(c->f, c->path, err) == 1 ? 0 : -1;
}

/* Every tensor the configuration calls for, with its shape and dtype, finite; nothing else. */
static int verify_tensors(dp_checkpoint *c, dp_error *err) {
    dp_error e2;
    dp_model *m = dp_model_create(&c->set.model, 1, 0, &e2);
    if (!m) return dp_fail(err, "%s: metadata dpformer.train_config: model: %s", c->path, e2.msg);
    int rc = -1, expected = 1;
    const int nt = dp_model_num_tensors(m);
    for (int set = 0; set < N_SETS; set++) {
        if (set == SET_M2 && c->set.optim.kind != DP_OPT_ADAMW) continue;
        if (set == SET_BEST && c->pg.best_epoch == 0) continue;
        for (int i = 0; i < nt; i++, expected++) {
            const dp_param_tensor *pt = dp_model_tensor(m, i);
            char name[NAME_CAP];
            snprintf(name, sizeof name, "%s%s", set_prefix(set, c->set.optim.kind), pt->name);
            const dp_st_tensor *t = dp_st_find(c->f, name);
            if (!t) {
                dp_fail(err, "%s: tensor %s is missing", c->path, name);
                goto out;
            }
            if (strcmp(t->dtype, REAL_DTYPE) != 0) {
                dp_fail(err, "%s: tensor %s has dtype %s; this build keeps parameters as %s", c->path, name, t->dtype,
                        REAL_DTYPE);
                goto out;
            }
            if (t->ndim != pt->ndim || t->shape[0] != pt->shape[0] || (pt->ndim > 1 && t->shape[1] != pt->shape[1])) {
                dp_fail(err, "%s: tensor %s has a shape that does not match the saved model configuration", c->path, name);
                goto out;
            }
            const dp_real *v = t->data;
            for (size_t k = 0; k < pt->size; k++)
                if (!isfinite(v[k])) {
                    dp_fail(err, "%s: tensor %s holds a non-finite value at index %zu", c->path, name, k);
                    goto out;
                }
        }
    }
    const dp_st_tensor *o = dp_st_find(c->f, "data.order");
    if (!o || strcmp(o->dtype, "I32") != 0 || o->ndim != 1 || o->shape[0] != c->train_users) {
        dp_fail(err, "%s: tensor data.order is missing or is not I32 [%lld]", c->path, (long long)c->train_users);
        goto out;
    }
    if (c->set.dp.enabled && c->set.dp.reattention) {
        const int64_t V1 = (int64_t)c->set.model.n_items + 1;
        const dp_st_tensor *q = dp_st_find(c->f, TENSOR_ITEM_FREQ);
        if (!q || strcmp(q->dtype, "F64") != 0 || q->ndim != 1 || q->shape[0] != V1) {
            dp_fail(err, "%s: tensor " TENSOR_ITEM_FREQ " is missing or is not F64 [%lld] (the run has Re-Attention on)",
                    c->path, (long long)V1);
            goto out;
        }
        const double *p = q->data;
        for (int64_t i = 0; i < V1; i++)
            if (!(p[i] >= 0 && p[i] <= 1)) {
                dp_fail(err, "%s: tensor " TENSOR_ITEM_FREQ ": value at index %lld is %g, not a frequency in [0, 1]",
                        c->path, (long long)i, p[i]);
                goto out;
            }
        c->item_freq = p;
        expected++;
    }
    if (dp_st_count(c->f) != expected) {
        dp_fail(err, "%s: has %d tensors, the saved configuration calls for %d", c->path, dp_st_count(c->f), expected);
        goto out;
    }
    rc = 0;
out:
    dp_model_free(m);
    return rc;
}

dp_checkpoint *dp_checkpoint_read(const char *path, dp_error *err) {
    dp_checkpoint *c = dp_calloc(1, sizeof *c);
    c->path = dup_str(path);
    c->dir = dir_of(path);
    dp_history_init(&c->hist);
    if (dp_safetensors_read(path, &c->f, err)) goto fail;
    const char *ver = dp_st_meta(c->f, "dpformer.checkpoint_version");
    char want[16];
    snprintf(want, sizeof want, "%d", DP_CHECKPOINT_VERSION);
    if (!ver) {
        dp_fail(err, "%s: not a dpformer checkpoint (metadata dpformer.checkpoint_version missing)", path);
        goto fail;
    }
    if (strcmp(ver, want) != 0) {
        dp_fail(err, "%s: checkpoint format version %.20s is not supported (this build reads %s)", path, ver, want);
        goto fail;
    }
    if (verify_checksums(c, err)) goto fail;
    int bad = 0;
    c->jcfg = parse_meta(c, "dpformer.train_config", 1, err, &bad);
    if (!bad) c->jpg = parse_meta(c, "dpformer.progress", 1, err, &bad);
    if (!bad) c->jds = parse_meta(c, "dpformer.dataset", 1, err, &bad);
    if (!bad) c->jmetrics = parse_meta(c, "dpformer.metrics", 1, err, &bad);
    if (!bad) c->jtask = parse_meta(c, "dpformer.task", 0, err, &bad);
    if (bad) goto fail;
    /* the task (absent: written before tasks were recorded, by the recommendation trainer) */
    dp_jr r = {path, "dpformer.task", err, 0};
    c->task = "recommendation";
    c->command = "train";
    if (c->jtask) {
        c->task = dp_jr_str(&r, c->jtask, "name", 0);
        c->command = dp_jr_str(&r, c->jtask, "command", 0);
        if (!r.bad && (!c->task[0] || !c->command[0] || strpbrk(c->command, " \t\n'\"")))
            dp_jr_fail(&r, "command", "is not a command name");
    }
    const int rec = !r.bad && strcmp(c->task, "recommendation") == 0;
    r.key = "dpformer.train_config";
    if (!r.bad) settings_from_json(&r, c->jcfg, &c->set);
    if (!r.bad && rec) rec_config_from_json(&r, c->jcfg, &c->set, &c->cfg);
    r.key = "dpformer.progress";
    if (!r.bad) progress_from_json(&r, c->jpg, &c->pg);
    r.key = "dpformer.dataset";
    if (!r.bad && rec) {
        c->users = dp_jr_int(&r, c->jds, "users", 0, 2147483647.0);
        c->items = dp_jr_int(&r, c->jds, "items", 0, 2147483647.0);
        c->interactions = dp_jr_int(&r, c->jds, "interactions", 0, 9007199254740992.0);
        c->train_users = dp_jr_int(&r, c->jds, "train_users", 1, 2147483647.0);
        const char *fp = dp_jr_str(&r, c->jds, "fingerprint", 0);
        char *end = NULL;
        if (fp) c->data_fp = strtoull(fp, &end, 16);
        if (fp && (strlen(fp) != 16 || *end)) dp_jr_fail(&r, "fingerprint", "is not 16 hex digits");
    }
    if (!r.bad && cJSON_GetObjectItemCaseSensitive(c->jds, "train_examples")) {
        int64_t n = dp_jr_int(&r, c->jds, "train_examples", 1, 2147483647.0);
        if (!r.bad && rec && n != c->train_users) dp_jr_fail(&r, "train_examples", "differs from \"train_users\"");
        c->train_users = n;
    } else if (!r.bad && !rec) {
        dp_jr_fail(&r, "train_examples", "is missing");
    }
    if (r.bad) goto fail;
    derive_out_dir(c);
    if (!cJSON_IsArray(c->jmetrics)) {
        dp_fail(err, "%s: metadata dpformer.metrics is not an array", path);
        goto fail;
    }
    c->n_metrics = cJSON_GetArraySize(c->jmetrics);
    c->metrics = dp_calloc((size_t)(c->n_metrics ? c->n_metrics : 1), sizeof *c->metrics);
    int i = 0;
    for (const cJSON *e = c->jmetrics->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '\n')) {
            dp_fail(err, "%s: metadata dpformer.metrics: entry %d is not a one-line string", path, i);
            goto fail;
        }
        c->metrics[i] = e->valuestring;
    }
    if (c->n_metrics != c->pg.epochs_run) {
        dp_fail(err, "%s: metadata dpformer.metrics has %d lines for %d completed epochs", path, c->n_metrics,
                c->pg.epochs_run);
        goto fail;
    }
    c->extra = dp_st_meta(c->f, "dpformer.extra");
    if (c->set.dp.enabled) {
        dp_error e2;
        c->rng_hex = dp_st_meta(c->f, "dpformer.rng");
        if (!c->rng_hex) {
            dp_fail(err, "%s: metadata dpformer.rng is missing (needed by a private run)", path);
            goto fail;
        }
        dp_rng *probe = dp_rng_state_restore_hex(c->rng_hex, &e2);
        if (!probe) {
            dp_fail(err, "%s: metadata dpformer.rng: %s", path, e2.msg);
            goto fail;
        }
        dp_rng_free(probe);
        const char *h = dp_st_meta(c->f, "dpformer.privacy_history");
        if (!h) {
            dp_fail(err, "%s: metadata dpformer.privacy_history is missing (needed by a private run)", path);
            goto fail;
        }
        if (dp_history_from_json(&c->hist, h, &e2)) {
            dp_fail(err, "%s: metadata dpformer.privacy_history: %s", path, e2.msg);
            goto fail;
        }
    }
    if (verify_tensors(c, err)) goto fail;
    return c;
fail:
    dp_checkpoint_free(c);
    return NULL;
}

dp_checkpoint *dp_checkpoint_open_latest(const char *dir, FILE *log, dp_error *err) {
    ckpt_entry *e;
    int n;
    if (list_entries(dir, &e, &n, 0, err)) return NULL;
    if (n == 0) {
        struct stat st;
        if (stat(dir, &st) != 0)
            dp_fail(err, "%s: does not exist", dir);
        else
            dp_fail(err, "%s: no checkpoint files (" CKPT_PREFIX "<step>" CKPT_SUFFIX ") in this folder", dir);
        free(e);
        return NULL;
    }
    dp_error *why = dp_calloc((size_t)n, sizeof *why);
    dp_checkpoint *c = NULL;
    int found = -1;
    for (int i = 0; i < n && !c; i++) {
        c = dp_checkpoint_read(e[i].path, &why[i]);
        if (c) found = i;
    }
    if (!c) {
        if (n == 1) dp_fail(err, "no valid checkpoint in %s: %s", dir, why[0].msg);
        else dp_fail(err, "none of the %d checkpoints in %s is valid; the newest: %s", n, dir, why[0].msg);
    } else {
        for (int i = 0; i < found; i++) {
            size_t len = strlen(e[i].path) + 16;
            char *aside = dp_malloc(len);
            snprintf(aside, len, "%s.invalid", e[i].path);
            int moved = rename(e[i].path, aside) == 0;
            if (log)
                fprintf(log, "warning: skipping invalid checkpoint %s (%s)%s%s\n", e[i].path, why[i].msg,
                        moved ? "; moved aside to " : "; could not move it aside", moved ? aside : "");
            free(aside);
        }
        if (found > 0 && log) fprintf(log, "warning: resuming from the previous checkpoint, %s\n", c->path);
    }
    free(why);
    free_entries(e, n);
    return c;
}

/* Whether dir may take the checkpoints of a run (resuming `resume`, or a fresh one): 0 when it is the
 * resumed run's folder, absent, empty or holds only a finished run's checkpoints (*n_finished of them,
 * listed in *e); -1 with err otherwise. Touches nothing. */
static int check_dir(const char *dir, const dp_checkpoint *resume, ckpt_entry **e, int *n, dp_error *err) {
    *e = NULL;
    *n = 0;
    if (resume && same_dir(dir, resume->dir)) return 0;
    struct stat st;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
        return dp_fail(err, "%s: exists and is not a directory (the checkpoint folder)", dir);
    if (list_entries(dir, e, n, 0, err)) return -1;
    if (*n == 0) return 0;
    dp_error why;
    dp_checkpoint *c = dp_checkpoint_read((*e)[0].path, &why);
    int rc = 0;
    if (!c) {
        rc = dp_fail(err, "%s holds checkpoints of another run and the newest cannot be read (%s); resume from the "
                          "folder (which falls back to an older checkpoint) or remove them first", dir, why.msg);
    } else if (!c->pg.complete) {
        rc = dp_fail(err, "%s holds checkpoints of another run that did not finish (newest: %s, step %lld); "
                          "resume it (dpformer %s --resume %s) or remove them first", dir, (*e)[0].path,
                     (long long)c->pg.step, c->command, dir);
    }
    dp_checkpoint_free(c);
    if (rc) {
        free_entries(*e, *n);
        *e = NULL;
        *n = 0;
    }
    return rc;
}

int dp_checkpoint_check_dir(const char *dir, const dp_checkpoint *resume, dp_error *err) {
    ckpt_entry *e;
    int n;
    /* data-parallel: rank 0 writes the checkpoints, so rank 0 alone checks the folder (another rank
     * would find rank 0's new checkpoints there and take them for an unfinished run) */
    if (!dp_dist_is_root()) return 0;
    if (check_dir(dir, resume, &e, &n, err)) return -1;
    free_entries(e, n);
    return 0;
}

int dp_checkpoint_prepare_dir(const char *dir, const dp_checkpoint *resume, FILE *log, dp_error *err) {
    ckpt_entry *e;
    int n;
    if (check_dir(dir, resume, &e, &n, err)) return -1;
    int rc = 0, removed = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (unlink(e[i].path) == 0 || errno == ENOENT) removed++;
        else rc = dp_fail(err, "%s: cannot remove this checkpoint of another, finished run: %s", e[i].path,
                          strerror(errno));
    }
    if (removed && log) fprintf(log, "removed %d checkpoint(s) of another, finished run from %s\n", removed, dir);
    free_entries(e, n);
    return rc;
}

const char *dp_checkpoint_path(const dp_checkpoint *c) { return c->path; }
const char *dp_checkpoint_out_dir(const dp_checkpoint *c) { return c->out_dir; }
int64_t dp_checkpoint_step(const dp_checkpoint *c) { return c->pg.step; }
int dp_checkpoint_epochs_done(const dp_checkpoint *c) { return c->pg.epochs_run; }
int64_t dp_checkpoint_epoch_step(const dp_checkpoint *c) { return c->pg.epoch_step; }
int dp_checkpoint_complete(const dp_checkpoint *c) { return c->pg.complete; }
const char *dp_checkpoint_extra(const dp_checkpoint *c) { return c->extra; }
const dp_history *dp_checkpoint_history(const dp_checkpoint *c) { return &c->hist; }
const dp_train_progress *dp_ckpt_progress(const dp_checkpoint *c) { return &c->pg; }
const char *dp_ckpt_rng_hex(const dp_checkpoint *c) { return c->rng_hex; }
int dp_ckpt_metrics_count(const dp_checkpoint *c) { return c->n_metrics; }
const char *dp_ckpt_metrics_line(const dp_checkpoint *c, int i) { return c->metrics[i]; }
const dp_run_settings *dp_ckpt_settings(const dp_checkpoint *c) { return &c->set; }
const cJSON *dp_ckpt_config_json(const dp_checkpoint *c) { return c->jcfg; }
const cJSON *dp_ckpt_dataset_json(const dp_checkpoint *c) { return c->jds; }
const double *dp_ckpt_item_freq(const dp_checkpoint *c) { return c->item_freq; }
const char *dp_checkpoint_task(const dp_checkpoint *c) { return c->task; }
const char *dp_ckpt_command(const dp_checkpoint *c) { return c->command; }
const char *dp_ckpt_dir(const dp_checkpoint *c) { return c->dir; }

dp_train_config dp_checkpoint_train_config(const dp_checkpoint *c) {
    dp_train_config cfg = c->cfg;
    cfg.checkpoint_dir = c->dir;
    cfg.out_dir = c->out_dir;
    cfg.checkpoint_extra = c->extra;
    cfg.resume = c;
    return cfg;
}

int dp_checkpoint_is_file(const char *path) {
    dp_st_file *f = NULL;
    dp_error e;
    if (dp_safetensors_read_header(path, &f, &e)) return 0;
    const int yes = dp_st_meta(f, "dpformer.checkpoint_version") != NULL;
    dp_st_close(f);
    return yes;
}

dp_reattention_config dp_ckpt_reattention(double kappa, double sigma, double expected_batch, const double *freq,
                                          int64_t n) {
    dp_reattention_config ra = dp_reattention_config_default();
    ra.enabled = 1;
    ra.kappa = kappa;
    ra.sigma = sigma;
    ra.batch_size = expected_batch;
    ra.item_freq = freq;
    ra.n_examples = n;
    return ra;
}

static int restore_arrays(const dp_checkpoint *c, dp_model *m, dp_real **arrays, int *has_best, dp_error *err);

dp_model *dp_checkpoint_model(const dp_checkpoint *c, int best, int max_batch, dp_error *err) {
    if (best && c->pg.best_epoch <= 0) {
        dp_fail(err, "%s: no epoch has been validated yet, so there are no best parameters (step %lld)", c->path,
                (long long)c->pg.step);
        return NULL;
    }
    if (c->set.dp.reattention && !c->item_freq) {
        dp_fail(err, "%s: holds no Re-Attention item frequencies (tensor " TENSOR_ITEM_FREQ ")", c->path);
        return NULL;
    }
    dp_model *m = dp_model_create(&c->set.model, max_batch, c->set.seed, err);
    if (!m) return NULL;
    dp_real *arrays[N_SETS] = {NULL};
    arrays[best ? SET_BEST : SET_PARAM] = dp_model_params(m);
    int has_best;
    /* Re-Attention as the run set it up (rec_after_plan in trainer.c): the σ in force, qN, N */
    const dp_reattention_config ra = dp_ckpt_reattention(c->set.dp.reattention_scale, c->pg.sigma,
                                                         c->pg.q * (double)c->train_users, c->item_freq,
                                                         c->train_users);
    if (restore_arrays(c, m, arrays, &has_best, err) ||
        (c->set.dp.reattention && dp_model_set_reattention(m, &ra, err))) {
        dp_model_free(m);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------------------------------------------ */
/* Resuming                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

int dp_ckpt_differs_i(const dp_checkpoint *c, const char *what, const char *why, long long saved, long long now,
                      dp_error *err) {
    if (saved == now) return 0;
    return dp_fail(err, "%s: cannot resume with %s %lld: the checkpoint has %lld (%s)", c->path, what, now, saved, why);
}

int dp_ckpt_differs_d(const dp_checkpoint *c, const char *what, const char *why, double saved, double now,
                      dp_error *err) {
    if (saved == now) return 0;
    return dp_fail(err, "%s: cannot resume with %s %.10g: the checkpoint has %.10g (%s)", c->path, what, now, saved, why);
}

int dp_ckpt_differs_s(const dp_checkpoint *c, const char *what, const char *why, const char *saved, const char *now,
                      dp_error *err) {
    if (strcmp(saved, now) == 0) return 0;
    return dp_fail(err, "%s: cannot resume with %s %s: the checkpoint has %s (%s)", c->path, what, now, saved, why);
}

static const char *mode_label(dp_loop_mode m) {
    return m == DP_LOOP_DPSGD ? "DP-SGD" : m == DP_LOOP_DPFP ? "DP-FP" : "non-private";
}

int dp_ckpt_check_task(const dp_checkpoint *c, const char *task, dp_error *err) {
    if (strcmp(c->task, task) == 0) return 0;
    return dp_fail(err, "%s: a checkpoint of a %s run, not of %s: resume it with dpformer %s --resume %s", c->path,
                   c->task, task, c->command, c->dir);
}

int dp_ckpt_check_settings(const dp_checkpoint *c, const dp_run_settings *now, dp_error *err) {
    const dp_run_settings *s = &c->set;
    const char *shape = "the model shape cannot change on resume";
    const char *model = "the model configuration cannot change on resume";
    const char *run = "it cannot change within a run";
    if (dp_ckpt_differs_s(c, "mode", run, mode_label(s->mode), mode_label(now->mode), err)) return -1;
    if (dp_ckpt_differs_i(c, "n-items", shape, s->model.n_items, now->model.n_items, err) ||
        dp_ckpt_differs_i(c, "max-len", shape, s->model.max_len, now->model.max_len, err) ||
        dp_ckpt_differs_i(c, "d-model", shape, s->model.d_model, now->model.d_model, err) ||
        dp_ckpt_differs_i(c, "n-heads", shape, s->model.n_heads, now->model.n_heads, err) ||
        dp_ckpt_differs_i(c, "n-layers", shape, s->model.n_layers, now->model.n_layers, err) ||
        dp_ckpt_differs_i(c, "d-ff", shape, s->model.d_ff, now->model.d_ff, err) ||
        dp_ckpt_differs_s(c, "output layer", shape, s->model.tied ? "tied" : "untied", now->model.tied ? "tied" : "untied",
                          err) ||
        dp_ckpt_differs_i(c, "causal", shape, s->model.causal, now->model.causal, err) ||
        dp_ckpt_differs_i(c, "classes", shape, s->model.n_classes, now->model.n_classes, err) ||
        dp_ckpt_differs_s(c, "family", model, dp_model_family_name(s->model.family),
                          dp_model_family_name(now->model.family), err) ||
        dp_ckpt_differs_s(c, "activation", model, dp_model_activation_name(s->model.activation),
                          dp_model_activation_name(now->model.activation), err) ||
        dp_ckpt_differs_s(c, "positions", model, dp_model_positions_name(s->model.positions),
                          dp_model_positions_name(now->model.positions), err) ||
        dp_ckpt_differs_d(c, "dropout", model, s->model.dropout, now->model.dropout, err) ||
        dp_ckpt_differs_s(c, "pool", model, s->model.pool == DP_POOL_MEAN ? "mean" : "first",
                          now->model.pool == DP_POOL_MEAN ? "mean" : "first", err) ||
        dp_ckpt_differs_d(c, "representation clip", model, s->model.rep_clip, now->model.rep_clip, err) ||
        dp_ckpt_differs_s(c, "tokenizer", model, s->model.tokenizer[0] ? s->model.tokenizer : "bytes",
                          now->model.tokenizer[0] ? now->model.tokenizer : "bytes", err))
        return -1;
    if (s->seed != now->seed)
        return dp_fail(err, "%s: cannot resume with seed %llu: the checkpoint has %llu (%s)", c->path,
                       (unsigned long long)now->seed, (unsigned long long)s->seed, run);
    if (dp_ckpt_differs_s(c, "optimizer", "the optimiser state is specific to it", optimizer_name(s->optim.kind),
                          optimizer_name(now->optim.kind), err) ||
        dp_ckpt_differs_d(c, "AdamW beta1", run, s->optim.beta1, now->optim.beta1, err) ||
        dp_ckpt_differs_d(c, "AdamW beta2", run, s->optim.beta2, now->optim.beta2, err) ||
        dp_ckpt_differs_d(c, "AdamW eps", run, s->optim.eps, now->optim.eps, err) ||
        dp_ckpt_differs_i(c, "batch-size", "it defines the epochs' steps", s->batch_size, now->batch_size, err) ||
        dp_ckpt_differs_i(c, "keep-last", "model selection cannot change within a run", s->keep_last, now->keep_last,
                          err))
        return -1;
    if (s->mode == DP_LOOP_DPFP &&
        dp_ckpt_differs_i(c, "micro-batches", "they define the steps and the accounting", s->micro_batches,
                          now->micro_batches, err))
        return -1;
    if (s->dp.enabled &&
        (dp_ckpt_differs_s(c, "noise", "secure and seeded noise cannot be mixed in one run",
                           s->dp.seeded_noise ? "seeded" : "secure", now->dp.seeded_noise ? "seeded" : "secure", err) ||
         dp_ckpt_differs_d(c, "delta", "the guarantee of the whole run is stated at one delta", s->dp.delta,
                           now->dp.delta, err) ||
         dp_ckpt_differs_s(c, "accountant", "the run's epsilon is computed by one accountant",
                           accountant_name(s->dp.accountant), accountant_name(now->dp.accountant), err)))
        return -1;
    if (now->epochs < c->pg.epochs_run)
        return dp_fail(err, "%s: cannot resume with epochs %d: the run has already completed %d epochs", c->path,
                       now->epochs, c->pg.epochs_run);
    if (c->pg.epoch_step > 0 && now->epochs < c->pg.epoch)
        return dp_fail(err, "%s: cannot resume with epochs %d: the checkpoint is inside epoch %d", c->path, now->epochs,
                       c->pg.epoch);
    return 0;
}

int dp_checkpoint_check_resume(const dp_checkpoint *c, const dp_dataset *ds, const dp_train_config *cfg,
                               dp_error *err) {
    if (dp_ckpt_check_task(c, "recommendation", err)) return -1;
    int32_t n_train = 0;
    for (int32_t u = 0; u < ds->n_users; u++) n_train += dp_split_history(ds, u, DP_SPLIT_TRAIN) >= 2;
    uint64_t fp = dp_dataset_fingerprint(ds);
    if (c->users != ds->n_users || c->items != ds->n_items || c->interactions != ds->n_interactions ||
        c->train_users != n_train || c->data_fp != fp)
        return dp_fail(err, "%s: written for another dataset: %lld users, %lld items, %lld interactions, fingerprint "
                            "%016llx; this one has %d users, %d items, %lld interactions, fingerprint %016llx",
                       c->path, (long long)c->users, (long long)c->items, (long long)c->interactions,
                       (unsigned long long)c->data_fp, ds->n_users, ds->n_items, (long long)ds->n_interactions,
                       (unsigned long long)fp);
    const dp_run_settings now = dp_train_settings(cfg);
    if (dp_ckpt_check_settings(c, &now, err)) return -1;
    const dp_train_config *s = &c->cfg;
    if (dp_ckpt_differs_i(c, "exclude-seen", "model selection cannot change within a run", s->exclude_seen,
                          cfg->exclude_seen, err) ||
        dp_ckpt_differs_i(c, "max-eval-users", "model selection cannot change within a run", s->max_eval_users,
                          cfg->max_eval_users, err))
        return -1;
    if (s->dp.enabled && dp_ckpt_differs_d(c, "sample-rate", "it defines the epochs' steps and the accounting",
                                           s->dp.sample_rate, cfg->dp.sample_rate, err))
        return -1;
    if (s->dp.enabled && (s->dp.reattention || cfg->dp.reattention)) {
        /* the frequencies were released (or read) once, at the start of the run, and are in the
         * checkpoint: a resume uses them as they are */
        const char *ra = "Re-Attention's setting cannot change within a run";
        const char *kept = "the frequencies of the run are kept in the checkpoint, never released again";
        char src_s[4200], src_n[4200];
        snprintf(src_s, sizeof src_s, "%s%s", s->dp.item_freq_public ? "public:" : "private",
                 s->dp.item_freq_public ? s->dp.item_freq_public : "");
        snprintf(src_n, sizeof src_n, "%s%s", cfg->dp.item_freq_public ? "public:" : "private",
                 cfg->dp.item_freq_public ? cfg->dp.item_freq_public : "");
        if (dp_ckpt_differs_s(c, "reattention", ra, s->dp.reattention ? "on" : "off", cfg->dp.reattention ? "on" : "off",
                              err) ||
            dp_ckpt_differs_d(c, "reattention-scale", ra, s->dp.reattention_scale, cfg->dp.reattention_scale, err) ||
            dp_ckpt_differs_s(c, "item-freq", kept, src_s, src_n, err) ||
            dp_ckpt_differs_d(c, "item-freq-noise", kept, s->dp.item_freq_noise, cfg->dp.item_freq_noise, err) ||
            dp_ckpt_differs_i(c, "item-freq-cap", kept, s->dp.item_freq_cap, cfg->dp.item_freq_cap, err))
            return -1;
    }
    return 0;
}

static int restore_order(const dp_checkpoint *c, dp_optimizer *opt, int32_t *order, int32_t n_train, dp_error *err);

int dp_ckpt_restore(const dp_checkpoint *c, dp_model *m, dp_optimizer *opt, int32_t *order, int32_t n_train,
                    dp_real *best, int *has_best, dp_error *err) {
    dp_real *arrays[N_SETS] = {dp_model_params(m), dp_optimizer_state(opt, 0), dp_optimizer_state(opt, 1), best};
    /* a model on a device: restore into host copies, then move them there */
    const int on_device = dp_model_device(m) != DP_DEVICE_CPU;
    const size_t np = dp_model_num_params(m);
    dp_real *host[3] = {NULL, NULL, NULL};
    for (int k = 0; on_device && k < 3; k++)
        if (arrays[k]) arrays[k] = host[k] = dp_alloc_aligned(sizeof(dp_real) * np);
    int rc = restore_arrays(c, m, arrays, has_best, err);
    if (!rc && on_device) {
        dp_model_write_params(m, host[0]);
        for (int k = 1; k < 3; k++)
            if (host[k]) dp_optimizer_write_state(opt, k - 1, host[k]);
    }
    for (int k = 0; k < 3; k++) free(host[k]);
    if (rc) return rc;
    return restore_order(c, opt, order, n_train, err);
}

static int restore_arrays(const dp_checkpoint *c, dp_model *m, dp_real **arrays, int *has_best, dp_error *err) {
    const int nt = dp_model_num_tensors(m);
    *has_best = c->pg.best_epoch > 0;
    for (int set = 0; set < N_SETS; set++) {
        if (!arrays[set] || (set == SET_BEST && !*has_best)) continue;
        for (int i = 0; i < nt; i++) {
            const dp_param_tensor *pt = dp_model_tensor(m, i);
            char name[NAME_CAP];
            snprintf(name, sizeof name, "%s%s", set_prefix(set, c->set.optim.kind), pt->name);
            const dp_st_tensor *t = dp_st_find(c->f, name);
            if (!t || dp_st_numel(t) != (int64_t)pt->size) return dp_fail(err, "%s: tensor %s is missing", c->path, name);
            memcpy(arrays[set] + pt->offset, t->data, sizeof(dp_real) * pt->size);
        }
    }
    return 0;
}

static int restore_order(const dp_checkpoint *c, dp_optimizer *opt, int32_t *order, int32_t n_train, dp_error *err) {
    dp_optimizer_set_step_count(opt, c->pg.step);
    /* the order must be a permutation of the training examples' ids (given in increasing order in `order`) */
    const dp_st_tensor *t = dp_st_find(c->f, "data.order");
    if (!t || dp_st_numel(t) != n_train) return dp_fail(err, "%s: tensor data.order does not match the dataset", c->path);
    const int32_t *saved = t->data;
    int32_t max_user = n_train ? order[n_train - 1] : 0;
    unsigned char *seen = dp_calloc((size_t)max_user + 1, 1);
    int ok = 1;
    for (int32_t i = 0; i < n_train && ok; i++) {
        int32_t u = saved[i];
        ok = u >= 0 && u <= max_user && !seen[u];
        if (ok) seen[u] = 1;
    }
    for (int32_t i = 0; i < n_train && ok; i++) ok = seen[order[i]];
    free(seen);
    if (!ok) return dp_fail(err, "%s: tensor data.order is not an order of this dataset's training examples", c->path);
    memcpy(order, saved, sizeof(int32_t) * (size_t)n_train);
    return 0;
}
