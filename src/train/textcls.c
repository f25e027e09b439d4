/* The text-classification task on the training loop (loop.h): its adapter — the privacy unit is a
 * labelled sentence; a chunk is a run of sentences of similar length on a window as long as the
 * longest (so that short phrases do not pay for the full window); dev accuracy selects the kept epoch
 * when there is a dev set; the final evaluation measures dev and test accuracy; checkpoints record the
 * tokenizer and the train, dev and test files' identities — and dp_text_train, which runs it
 * non-private, with DP-SGD or with DP-FP (docs/dpfp.md), evaluation, and resuming text runs. */
#include <errno.h>
#include <math.h>

#include <cjson/cJSON.h>

#include "core/common.h"
#include "dpformer/checkpoint.h"
#include "dpformer/noise.h"
#include "dpformer/textcls.h"
#include "train/loop.h"
#include "train/noise_plan.h"
#include "train/task_common.h"

const char *dp_text_mode_name(dp_text_mode mode) {
    switch (mode) {
    case DP_TEXT_NONPRIVATE: return "non-private";
    case DP_TEXT_DPSGD: return "dp-sgd";
    case DP_TEXT_DPFP: return "dp-fp";
    }
    return "?";
}

dp_text_train_config dp_text_train_config_default(int n_classes) {
    dp_text_train_config c;
    memset(&c, 0, sizeof c);
    c.model = dp_model_config_default(DP_TEXT_VOCAB - 1, 128);
    c.model.n_heads = 2;
    c.model.tied = 0;
    c.model.causal = 0;
    c.model.dropout = 0.1f;
    c.model.n_classes = n_classes;
    c.model.pool = DP_POOL_FIRST;
    c.optim = dp_optim_config_default();
    c.mode = DP_TEXT_NONPRIVATE;
    c.epochs = 3;
    c.batch_size = 256;
    c.dp = dp_privacy_config_default();
    c.dpfp_clip = 1;
    c.micro_batches = 1;
    c.seed = 1;
    c.keep_checkpoints = 2;
    return c;
}

/* ---- evaluation ---- */

#define EVAL_BATCH 256

int dp_text_model_tokenizer(const dp_model *m, dp_tokenizer *t, dp_error *err) {
    const dp_model_config *c = dp_model_config_of(m);
    if (!c->n_classes) return dp_fail(err, "model is not a classifier");
    if (dp_tokenizer_parse(c->tokenizer, t, err)) return -1;
    if (c->n_items != dp_tokenizer_vocab(t) - 1)
        return dp_fail(err, "model: %d token ids, but tokenizer %s has %d", (int)c->n_items + 1,
                       c->tokenizer[0] ? c->tokenizer : "bytes", (int)dp_tokenizer_vocab(t));
    return 0;
}

double dp_text_accuracy(dp_model *m, const dp_text_dataset *ds, dp_error *err) {
    const dp_model_config *c = dp_model_config_of(m);
    dp_tokenizer tok;
    if (dp_text_model_tokenizer(m, &tok, err)) return NAN;
    const int L = c->max_len, K = c->n_classes, cap = DP_MIN(EVAL_BATCH, dp_model_max_batch(m));
    if (!K) return dp_fail(err, "model is not a classifier"), NAN;
    if (ds->n_classes > K) return dp_fail(err, "data has %d classes, the model %d", ds->n_classes, K), NAN;
    if (ds->n == 0) return dp_fail(err, "no examples to evaluate"), NAN;
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)cap * L);
    dp_real *z = dp_malloc(sizeof(dp_real) * (size_t)cap * K);
    int64_t correct = 0;
    for (int64_t s = 0; s < ds->n; s += cap) {
        int B = (int)DP_MIN((int64_t)cap, ds->n - s);
        for (int b = 0; b < B; b++) dp_text_encode_with(&tok, ds, s + b, L, ids + (size_t)b * L, NULL);
        dp_model_class_logits(m, ids, B, z);
        for (int b = 0; b < B; b++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (z[(size_t)b * K + k] > z[(size_t)b * K + best]) best = k;
            correct += best == ds->labels[s + b];
        }
    }
    free(ids);
    free(z);
    return (double)correct / (double)ds->n;
}

int dp_text_dpfp_noise(dp_rng *rng, dp_real *noise, int B, int d, double sigma, double clip, dp_error *err) {
    return dp_noise_gaussian_fill(rng, noise, (size_t)B * (size_t)d, sigma * clip, err);
}

uint64_t dp_text_dataset_fingerprint(const dp_text_dataset *ds) {
    int64_t sizes[2] = {ds->n, ds->n_classes};
    uint64_t h = dp_fnv1a64(sizes, sizeof sizes, DP_FNV1A64_INIT);
    if (ds->n > 0) {
        h = dp_fnv1a64(ds->labels, sizeof(int32_t) * (size_t)ds->n, h);
        h = dp_fnv1a64(ds->offsets, sizeof(int64_t) * ((size_t)ds->n + 1), h);
        h = dp_fnv1a64(ds->text, (size_t)ds->offsets[ds->n], h);
    }
    return h;
}

/* ---- training: the task on the loop ---- */

#define TASK_NAME "text-classification"
#define PRIVACY_UNIT "one labelled training sentence"

static const char *coverage(dp_text_mode mode) {
    return mode == DP_TEXT_DPFP ? "the noised pooled representations released during training (NOT the trained "
                                  "weights, NOT the labels)"
                                : "the trained weights (example-level DP)";
}

/* The settings of a text run as the loop (and its checkpoints) see them. */
static dp_run_settings text_settings(const dp_text_train_config *c) {
    dp_run_settings s;
    memset(&s, 0, sizeof s);
    s.model = c->model;
    s.model.rep_clip = c->mode == DP_TEXT_DPFP ? c->dpfp_clip : 0;
    dp_tokenizer_spec(&c->tokenizer, s.model.tokenizer, sizeof s.model.tokenizer);
    s.optim = c->optim;
    s.mode = (dp_loop_mode)c->mode;
    s.epochs = c->epochs;
    s.batch_size = c->batch_size;
    s.eval_every = 1;
    s.keep_last = c->keep_last;
    s.micro_batches = c->mode == DP_TEXT_DPFP ? c->micro_batches : 1;
    s.seed = c->seed;
    s.dp = c->dp;
    s.dp.enabled = c->mode != DP_TEXT_NONPRIVATE;
    s.out_dir = c->out_dir;
    s.checkpoint_every = c->checkpoint_every;
    s.keep_checkpoints = c->keep_checkpoints;
    return s;
}

typedef struct {
    const dp_text_train_config *cfg;
    const dp_text_dataset *tr, *dev, *test;
    dp_text_train_result *res;
    int32_t *ntok;     /* [N] tokens of each training example on the window ([CLS] included) */
} text_task;

static void text_init_order(void *st, int32_t *order) {
    text_task *t = st;
    for (int64_t i = 0; i < t->tr->n; i++) order[i] = (int32_t)i;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A logical batch sorted by token count (then by index), so that chunks hold sentences of similar
 * length. Sentences are right-padded and the encoder is bidirectional, so a chunk on a window as long
 * as its longest sentence computes exactly what full-length windows would, without the padding: SST-2
 * training phrases average 10 tokens in a 48-token window. Which examples form the batch is unchanged
 * (the sampling, and so the privacy analysis, does not see the chunking). */
static void text_arrange(void *st, int64_t *ids, int64_t n) {
    text_task *t = st;
    for (int64_t k = 0; k < n; k++) ids[k] = ((int64_t)t->ntok[ids[k]] << 40) | ids[k];
    qsort(ids, (size_t)n, sizeof *ids, cmp_i64);
    for (int64_t k = 0; k < n; k++) ids[k] &= ((int64_t)1 << 40) - 1;
}

/* At most cap sentences and about DP_CHUNK_POSITIONS positions, on a window as long as the longest. */
static int text_chunk(void *st, const int64_t *ids, int64_t n, int cap, int *T) {
    text_task *t = st;
    int B = 0;
    *T = 1;
    while (B < n && B < cap) {
        int len = t->ntok[ids[B]];
        if (B > 0 && (int64_t)(B + 1) * len > DP_CHUNK_POSITIONS) break;
        *T = len;
        B++;
    }
    return B;
}

static void text_fill(void *st, const int64_t *ids, int B, int T, int32_t *tokens, int32_t *targets, int32_t *labels) {
    text_task *t = st;
    (void)targets;
    for (int b = 0; b < B; b++) {
        dp_text_encode_with(&t->cfg->tokenizer, t->tr, ids[b], T, tokens + (size_t)b * T, NULL);
        labels[b] = t->tr->labels[ids[b]];
    }
}

static int text_validate(void *st, dp_model *m, dp_loop_eval *out, dp_error *err) {
    text_task *t = st;
    double acc = dp_text_accuracy(m, t->dev, err);
    if (isnan(acc)) return -1;
    out->score = acc;
    snprintf(out->json, sizeof out->json, ",\"dev_accuracy\":%.6f", acc);
    snprintf(out->text, sizeof out->text, "dev acc %.4f", acc);
    return 0;
}

/* The kept model's dev and test accuracy (those the run has). */
static int text_finish(void *st, dp_model *m, dp_loop_eval *out, dp_error *err) {
    text_task *t = st;
    int len = 0;
    if (t->dev) {
        if (isnan(t->res->dev_acc = dp_text_accuracy(m, t->dev, err))) return -1;
        len += snprintf(out->json + len, sizeof out->json - (size_t)len, ",\"dev_accuracy\":%.6f", t->res->dev_acc);
    }
    if (t->test) {
        if (isnan(t->res->test_acc = dp_text_accuracy(m, t->test, err))) return -1;
        snprintf(out->json + len, sizeof out->json - (size_t)len, ",\"test_accuracy\":%.6f", t->res->test_acc);
    }
    return 0;
}

static void text_config_json(void *st, cJSON *o, dp_jw *w) {
    text_task *t = st;
    const dp_text_train_config *c = t->cfg;
    cJSON *x = cJSON_AddObjectToObject(o, "text");
    dp_jw_num(w, x, "dpfp_clip", c->dpfp_clip);
    dp_jw_str(x, "train", c->train_desc);
    dp_jw_str(x, "dev", c->dev_desc);
    dp_jw_str(x, "test", c->test_desc);
}

static void file_json(cJSON *o, const char *key, const char *desc, const dp_text_dataset *ds) {
    dp_task_file_json(o, key, desc, ds != NULL, ds ? ds->n : 0, "classes", ds ? ds->n_classes : 0,
                      ds ? dp_text_dataset_fingerprint(ds) : 0);
}

static void text_dataset_json(void *st, cJSON *o) {
    text_task *t = st;
    file_json(o, "train", t->cfg->train_desc, t->tr);
    file_json(o, "dev", t->cfg->dev_desc, t->dev);
    file_json(o, "test", t->cfg->test_desc, t->test);
}

static char *text_model_meta(void *st, const dp_loop_result *lr) {
    text_task *t = st;
    const dp_text_train_config *c = t->cfg;
    const dp_text_train_result *res = t->res;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", TASK_NAME);
    cJSON_AddStringToObject(o, "mode", dp_text_mode_name(c->mode));
    char spec[DP_TOKENIZER_SPEC_MAX];
    dp_tokenizer_spec(&c->tokenizer, spec, sizeof spec);
    cJSON_AddStringToObject(o, "tokenizer", spec);
    cJSON_AddNumberToObject(o, "epochs", lr->epochs_run);
    cJSON_AddNumberToObject(o, "best_epoch", lr->best_epoch);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    if (t->dev) cJSON_AddNumberToObject(o, "dev_accuracy", res->dev_acc);
    if (t->test) cJSON_AddNumberToObject(o, "test_accuracy", res->test_acc);
    if (c->mode != DP_TEXT_NONPRIVATE) {
        cJSON_AddStringToObject(o, "privacy_unit", "one labelled sentence");
        cJSON_AddStringToObject(o, "epsilon_covers", coverage(c->mode));
        dp_task_meta_privacy(o, lr);
        cJSON_AddNumberToObject(o, "mechanism_events", (double)lr->mechanism_events);
        if (c->mode == DP_TEXT_DPFP) {
            cJSON_AddNumberToObject(o, "dpfp_clip", c->dpfp_clip);
            cJSON_AddNumberToObject(o, "micro_batches", c->micro_batches);
        } else {
            cJSON_AddNumberToObject(o, "max_grad_norm", c->dp.max_grad_norm);
        }
        cJSON_AddStringToObject(o, "accountant", c->dp.accountant == DP_ACCOUNTANT_PLD ? "pld" : "rdp");
        cJSON_AddBoolToObject(o, "seeded_noise", c->dp.seeded_noise);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int check_config(const dp_text_train_config *c, const dp_text_dataset *tr, const dp_text_dataset *dev,
                        const dp_text_dataset *test, dp_error *err) {
    if (!c->model.n_classes) return dp_fail(err, "text classification needs a model with n_classes >= 2");
    if (c->tokenizer.kind == DP_TOKENIZER_WORDS &&
        (c->tokenizer.buckets < 1 || c->tokenizer.buckets > DP_TEXT_MAX_BUCKETS))
        return dp_fail(err, "hashed-word tokenizer: buckets must be in 1..%d", DP_TEXT_MAX_BUCKETS);
    if (c->model.n_items != dp_tokenizer_vocab(&c->tokenizer) - 1)
        return dp_fail(err, "the model's vocabulary (%d ids) must be the tokenizer's (%d)", (int)c->model.n_items + 1,
                       (int)dp_tokenizer_vocab(&c->tokenizer));
    const dp_text_dataset *all[3] = {tr, dev, test};
    for (int k = 0; k < 3; k++)
        if (all[k] && all[k]->n_classes > c->model.n_classes)
            return dp_fail(err, "the data declare %d classes, the model has %d", all[k]->n_classes, c->model.n_classes);
    if (tr->n < 1) return dp_fail(err, "no training examples");
    if (tr->n > INT32_MAX) return dp_fail(err, "at most 2^31 - 1 training examples are supported");
    if (c->epochs < 1 || c->batch_size < 1) return dp_fail(err, "epochs and batch size must be at least 1");
    if (c->checkpoint_every < 0) return dp_fail(err, "checkpoint-every must be 0 or more steps");
    if (c->checkpoint_dir && c->keep_checkpoints < 1) return dp_fail(err, "keep-checkpoints must be at least 1");
    if (c->mode == DP_TEXT_DPFP && (c->micro_batches < 1 || !(c->dpfp_clip > 0)))
        return dp_fail(err, "DP-FP needs micro_batches >= 1 and a positive representation clip");
    if (c->mode != DP_TEXT_NONPRIVATE && dp_task_check_privacy(&c->dp, c->mode == DP_TEXT_DPSGD, err)) return -1;
    dp_model_config mc = text_settings(c).model;
    return dp_model_config_validate(&mc, err);
}

/* ---- resuming a text run ---- */

/* The saved file of a role ("train", "dev", "test") against the one given now. */
static int check_file(const dp_checkpoint *ck, const char *role, const dp_text_dataset *now, dp_error *err) {
    return dp_task_check_file(ck, role, now != NULL, now ? now->n : 0, now ? dp_text_dataset_fingerprint(now) : 0,
                              "sentences", "", err);
}

int dp_text_check_resume(const dp_checkpoint *ck, const dp_text_train_config *cfg, const dp_text_dataset *train,
                         const dp_text_dataset *dev, const dp_text_dataset *test, dp_error *err) {
    if (dp_ckpt_check_task(ck, TASK_NAME, err)) return -1;
    if (check_file(ck, "train", train, err) || check_file(ck, "dev", dev, err) || check_file(ck, "test", test, err))
        return -1;
    const dp_run_settings now = text_settings(cfg);
    return dp_ckpt_check_settings(ck, &now, err);
}

int dp_text_checkpoint_config(const dp_checkpoint *ck, dp_text_train_config *cfg, dp_error *err) {
    if (dp_ckpt_check_task(ck, TASK_NAME, err)) return -1;
    const dp_run_settings *s = dp_ckpt_settings(ck);
    *cfg = dp_text_train_config_default(s->model.n_classes);
    if (dp_tokenizer_parse(s->model.tokenizer[0] ? s->model.tokenizer : "bytes", &cfg->tokenizer, err)) return -1;
    cfg->model = s->model;
    cfg->model.rep_clip = 0;
    cfg->optim = s->optim;
    cfg->mode = (dp_text_mode)s->mode;
    cfg->epochs = s->epochs;
    cfg->batch_size = s->batch_size;
    cfg->dp = s->dp;
    cfg->micro_batches = s->micro_batches;
    cfg->seed = s->seed;
    cfg->keep_last = s->keep_last;
    cfg->checkpoint_every = s->checkpoint_every;
    cfg->keep_checkpoints = s->keep_checkpoints;
    dp_jr r = {dp_checkpoint_path(ck), "dpformer.train_config", err, 0};
    const cJSON *x = dp_jr_obj(&r, dp_ckpt_config_json(ck), "text");
    cfg->dpfp_clip = dp_jr_num(&r, x, "dpfp_clip");
    cfg->train_desc = dp_jr_str(&r, x, "train", 1);
    cfg->dev_desc = dp_jr_str(&r, x, "dev", 1);
    cfg->test_desc = dp_jr_str(&r, x, "test", 1);
    if (r.bad) return -1;
    cfg->out_dir = dp_checkpoint_out_dir(ck);
    cfg->checkpoint_dir = dp_ckpt_dir(ck);
    cfg->checkpoint_extra = dp_checkpoint_extra(ck);
    cfg->resume = ck;
    return 0;
}

int dp_text_plan(const dp_text_train_config *c, int64_t n_train, double *q, int64_t *steps_per_epoch) {
    const int per_step = c->mode == DP_TEXT_DPFP ? c->micro_batches : 1;
    *q = dp_text_sample_rate(c->batch_size, per_step, n_train);
    /* an epoch is N / batch-size steps in every mode: the same examples per epoch in expectation */
    *steps_per_epoch = DP_MAX((int64_t)1, n_train / c->batch_size);
    return per_step;
}

int dp_text_train(const dp_text_train_config *cfg, const dp_text_dataset *train, const dp_text_dataset *dev,
                  const dp_text_dataset *test, dp_model **out_model, dp_text_train_result *res, dp_error *err) {
    memset(res, 0, sizeof *res);
    res->test_acc = NAN;
    res->dev_acc = NAN;
    res->resumed_from_step = -1;
    *out_model = NULL;
    if (check_config(cfg, train, dev, test, err)) return -1;
    if (cfg->resume && dp_text_check_resume(cfg->resume, cfg, train, dev, test, err)) return -1;
    FILE *log = cfg->log ? cfg->log : stderr;
    const int64_t N = train->n;
    text_task t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.tr = train;
    t.dev = dev;
    t.test = test;
    t.res = res;
    res->n_train = N;
    /* each sentence's tokens on the window ([CLS] included): the chunking's lengths and the truncation count */
    const int L = cfg->model.max_len;
    t.ntok = dp_malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++) {
        int64_t n = 1 + dp_tokenizer_count(&cfg->tokenizer, dp_text_ptr(train, i), (size_t)dp_text_len(train, i));
        t.ntok[i] = (int32_t)DP_MIN((int64_t)L, n);
        res->truncated_train += n > L;
    }
    if (cfg->progress >= 0)
        fprintf(log, "data: %lld training sentences (%lld longer than %d tokens are truncated)%s\n", (long long)N,
                (long long)res->truncated_train, L, dev ? "" : "; no dev set: the last epoch is kept");

    dp_loop_config lc;
    memset(&lc, 0, sizeof lc);
    lc.s = text_settings(cfg);
    if (cfg->mode != DP_TEXT_NONPRIVATE) dp_text_plan(cfg, N, &lc.sample_rate, &lc.steps_per_epoch);
    lc.log = log;
    lc.progress = cfg->progress;
    lc.stop = cfg->stop;
    lc.checkpoint_dir = cfg->checkpoint_dir;
    lc.checkpoint_extra = cfg->checkpoint_extra;
    lc.resume = cfg->resume;
    dp_task task = {
        .name = TASK_NAME,
        .command = "train-text",
        .unit = PRIVACY_UNIT,
        .covers = coverage(DP_TEXT_DPSGD),
        .covers_dpfp = coverage(DP_TEXT_DPFP),
        .metric = dev ? "dev accuracy" : NULL,
        .best_note = "the dev sentences it looks at are not covered",
        .valid_data = "the dev set",
        .no_valid = "no dev set",
        .state = &t,
        .n = (int32_t)N,
        .init_order = text_init_order,
        .arrange = text_arrange,
        .chunk = text_chunk,
        .fill = text_fill,
        .validate = text_validate,
        .finish = text_finish,
        .config_json = text_config_json,
        .dataset_json = text_dataset_json,
        .model_meta = text_model_meta,
        .shuffle = DP_SHUFFLE_SPLITMIX64,
        .noise_salt = 0x7E57C1A55ull,
        .scale_rounded = 1,
    };
    dp_loop_result lr;
    int rc = dp_loop_run(&lc, &task, out_model, &lr, err);
    res->epochs_run = lr.epochs_run;
    res->best_epoch = lr.best_epoch;
    res->train_seconds = lr.train_seconds;
    res->seconds_per_epoch = lr.seconds_per_epoch;
    res->examples_per_second = lr.examples_per_second;
    res->first_train_loss = lr.first_train_loss;
    res->final_train_loss = lr.final_train_loss;
    if (cfg->mode != DP_TEXT_NONPRIVATE) {
        res->epsilon = lr.epsilon;
        res->delta = lr.delta;
        res->noise_multiplier = lr.noise_multiplier;
        res->sample_rate = lr.sample_rate;
        res->mechanism_events = lr.mechanism_events;
    }
    res->steps = lr.steps;
    res->stopped_at_budget = lr.stopped_at_budget;
    res->stopped_by = lr.stopped_by;
    res->resumed_from_step = lr.resumed_from_step;
    res->resumes = lr.resumes;
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", lr.checkpoint);
    free(t.ntok);
    return rc;
}
