/* The language-model task on the training loop (loop.h): its adapter — the privacy unit is one
 * example (one line of the training file); a chunk is a run of examples of similar length,
 * right-padded on a window as long as the longest (which is exact for right-padded causal sequences);
 * dev perplexity selects the kept epoch when there is a dev set; the final evaluation measures dev and
 * test perplexity (token-weighted, dp_lm_evaluate); checkpoints record the tokenizer and the corpora's
 * identities — and dp_lm_train, which runs it non-private or with DP-SGD. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/common.h"
#include "dpformer/checkpoint.h"
#include "dpformer/lmtrain.h"
#include "train/loop.h"
#include "train/noise_plan.h"

#define TASK_NAME "language-model"
#define PRIVACY_UNIT "one line of the training file (one example)"
#define COVERS "the trained weights (example-level DP)"

dp_lm_train_config dp_lm_train_config_default(int32_t vocab_size) {
    dp_lm_train_config c;
    memset(&c, 0, sizeof c);
    c.model = dp_lm_config_default(vocab_size, 64);
    c.model.d_model = 64;
    c.model.n_layers = 2;
    c.model.n_heads = 2;
    c.model.d_ff = 0;
    c.optim = dp_optim_config_default();
    c.optim.lr = 1e-3;
    c.epochs = 3;
    c.batch_size = 32;
    c.dp = dp_privacy_config_default();
    c.seed = 1;
    c.keep_checkpoints = 2;
    c.device = DP_DEVICE_CPU;
    return c;
}

uint64_t dp_lm_corpus_fingerprint(const dp_lm_corpus *c) {
    int64_t n = c->n;
    uint64_t h = dp_fnv1a64(&n, sizeof n, DP_FNV1A64_INIT);
    if (c->n > 0) {
        h = dp_fnv1a64(c->offsets, sizeof(int64_t) * ((size_t)c->n + 1), h);
        h = dp_fnv1a64(c->tokens, sizeof(int32_t) * (size_t)c->offsets[c->n], h);
    }
    return h;
}

static dp_run_settings lm_settings(const dp_lm_train_config *c) {
    dp_run_settings s;
    memset(&s, 0, sizeof s);
    s.model = c->model;
    s.optim = c->optim;
    s.mode = c->dpsgd ? DP_LOOP_DPSGD : DP_LOOP_NONPRIVATE;
    s.epochs = c->epochs;
    s.batch_size = c->batch_size;
    s.eval_every = 1;
    s.keep_last = c->keep_last;
    s.micro_batches = 1;
    s.seed = c->seed;
    s.dp = c->dp;
    s.dp.enabled = c->dpsgd;
    s.out_dir = c->out_dir;
    s.checkpoint_every = c->checkpoint_every;
    s.keep_checkpoints = c->keep_checkpoints;
    return s;
}

/* Poisson rate and steps per epoch of a DP-SGD run: q = batch / N unless given; an epoch is 1/q steps. */
static void lm_plan(const dp_lm_train_config *c, int64_t n, double *q, int64_t *steps_per_epoch) {
    *q = c->dp.sample_rate > 0 ? c->dp.sample_rate : dp_text_sample_rate(c->batch_size, 1, n);
    *steps_per_epoch = DP_MAX((int64_t)1, (int64_t)llround(1.0 / *q));
}

typedef struct len_id len_id;
typedef struct {
    const dp_lm_train_config *cfg;
    const dp_lm_corpus *tr, *dev, *test;
    dp_lm_train_result *res;
    struct len_id *sort; /* [N] lm_arrange's buffer */
} lm_task;

static int ex_len(const dp_lm_corpus *c, int64_t i) { return (int)(c->offsets[i + 1] - c->offsets[i]); }

static void lm_init_order(void *st, int32_t *order) {
    lm_task *t = st;
    for (int64_t i = 0; i < t->tr->n; i++) order[i] = (int32_t)i;
}

struct len_id {
    int len;
    int64_t id;
};

static int cmp_len(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return (x->len > y->len) - (x->len < y->len);
    return (x->id > y->id) - (x->id < y->id);
}

/* A logical batch sorted by length (then by index): chunks of similar lengths, little padding. The
 * batch's gradient is a sum over its examples, so their order does not change it (beyond rounding). */
static void lm_arrange(void *st, int64_t *ids, int64_t n) {
    lm_task *t = st;
    for (int64_t i = 0; i < n; i++) t->sort[i] = (len_id){ex_len(t->tr, ids[i]), ids[i]};
    qsort(t->sort, (size_t)n, sizeof *t->sort, cmp_len);
    for (int64_t i = 0; i < n; i++) ids[i] = t->sort[i].id;
}

/* Positions per physical chunk (examples x window) that length-sorted chunking aims for. */
#define CHUNK_POSITIONS 4096

static int lm_chunk(void *st, const int64_t *ids, int64_t n, int cap, int *T) {
    lm_task *t = st;
    int B = 0;
    *T = 2;
    while (B < n && B < cap) {
        int len = ex_len(t->tr, ids[B]);
        if (B > 0 && (int64_t)(B + 1) * len > CHUNK_POSITIONS) break;
        if (len > *T) *T = len;
        B++;
    }
    return B;
}

static void lm_fill(void *st, const int64_t *ids, int B, int T, int32_t *tokens, int32_t *targets, int32_t *labels) {
    lm_task *t = st;
    (void)labels;
    for (int b = 0; b < B; b++)
        dp_lm_make_example(tokens + (size_t)b * T, targets + (size_t)b * T, t->tr->tokens + t->tr->offsets[ids[b]],
                           ex_len(t->tr, ids[b]), T);
}

static int lm_validate(void *st, dp_model *m, dp_loop_eval *out, dp_error *err) {
    lm_task *t = st;
    dp_lm_eval_result r;
    if (dp_lm_evaluate(m, t->dev, &r, err)) return -1;
    out->score = -r.loss; /* lower perplexity is better */
    snprintf(out->json, sizeof out->json, ",\"dev_perplexity\":%.6f,\"dev_loss\":%.6f", r.perplexity, r.loss);
    snprintf(out->text, sizeof out->text, "dev ppl %.2f", r.perplexity);
    return 0;
}

static int lm_finish(void *st, dp_model *m, dp_loop_eval *out, dp_error *err) {
    lm_task *t = st;
    int len = 0;
    if (t->dev) {
        if (dp_lm_evaluate(m, t->dev, &t->res->dev, err)) return -1;
        t->res->has_dev = 1;
        len += snprintf(out->json + len, sizeof out->json - (size_t)len, ",\"dev_perplexity\":%.6f,\"dev_loss\":%.6f",
                        t->res->dev.perplexity, t->res->dev.loss);
    }
    if (t->test) {
        if (dp_lm_evaluate(m, t->test, &t->res->test, err)) return -1;
        t->res->has_test = 1;
        len += snprintf(out->json + len, sizeof out->json - (size_t)len,
                        ",\"test_perplexity\":%.6f,\"test_loss\":%.6f,\"test_tokens\":%lld,\"eval_tokens_per_s\":%.1f",
                        t->res->test.perplexity, t->res->test.loss, (long long)t->res->test.predicted,
                        t->res->test.tokens_per_s);
    }
    snprintf(out->json + len, sizeof out->json - (size_t)len, ",\"truncated_train\":%lld",
             (long long)t->res->truncated_train);
    return 0;
}

static void lm_config_json(void *st, cJSON *o, dp_jw *w) {
    lm_task *t = st;
    const dp_lm_train_config *c = t->cfg;
    (void)w;
    cJSON *x = cJSON_AddObjectToObject(o, "lm");
    dp_jw_str(x, "tokenizer", c->tokenizer_desc);
    dp_jw_str(x, "train", c->train_desc);
    dp_jw_str(x, "dev", c->dev_desc);
    dp_jw_str(x, "test", c->test_desc);
    dp_jw_str(x, "column", c->column);
}

static void corpus_json(cJSON *o, const char *key, const char *desc, const dp_lm_corpus *c) {
    if (!c) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    cJSON *f = cJSON_AddObjectToObject(o, key);
    char fp[17];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)dp_lm_corpus_fingerprint(c));
    dp_jw_str(f, "file", desc);
    dp_jw_int(f, "examples", c->n);
    dp_jw_int(f, "tokens", c->n ? c->offsets[c->n] : 0);
    dp_jw_str(f, "fingerprint", fp);
}

static void lm_dataset_json(void *st, cJSON *o) {
    lm_task *t = st;
    corpus_json(o, "train", t->cfg->train_desc, t->tr);
    corpus_json(o, "dev", t->cfg->dev_desc, t->dev);
    corpus_json(o, "test", t->cfg->test_desc, t->test);
}

static char *lm_model_meta(void *st, const dp_loop_result *lr) {
    lm_task *t = st;
    const dp_lm_train_config *c = t->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", TASK_NAME);
    cJSON_AddStringToObject(o, "mode", c->dpsgd ? "dp-sgd" : "non-private");
    if (c->tokenizer_desc) cJSON_AddStringToObject(o, "tokenizer", c->tokenizer_desc);
    cJSON_AddNumberToObject(o, "epochs", lr->epochs_run);
    cJSON_AddNumberToObject(o, "best_epoch", lr->best_epoch);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    if (t->res->has_dev) cJSON_AddNumberToObject(o, "dev_perplexity", t->res->dev.perplexity);
    if (t->res->has_test) cJSON_AddNumberToObject(o, "test_perplexity", t->res->test.perplexity);
    if (c->dpsgd) {
        cJSON_AddStringToObject(o, "privacy_unit", PRIVACY_UNIT);
        cJSON_AddStringToObject(o, "epsilon_covers", COVERS);
        if (isfinite(lr->epsilon)) cJSON_AddNumberToObject(o, "epsilon", lr->epsilon);
        else cJSON_AddNullToObject(o, "epsilon");
        cJSON_AddNumberToObject(o, "delta", lr->delta);
        cJSON_AddNumberToObject(o, "noise_multiplier", lr->noise_multiplier);
        cJSON_AddNumberToObject(o, "sample_rate", lr->sample_rate);
        cJSON_AddNumberToObject(o, "steps", (double)lr->dp_steps);
        cJSON_AddNumberToObject(o, "max_grad_norm", c->dp.max_grad_norm);
        cJSON_AddStringToObject(o, "accountant", c->dp.accountant == DP_ACCOUNTANT_PLD ? "pld" : "rdp");
        cJSON_AddBoolToObject(o, "seeded_noise", c->dp.seeded_noise);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int check_config(const dp_lm_train_config *c, const dp_lm_corpus *tr, const dp_lm_corpus *dev,
                        const dp_lm_corpus *test, dp_error *err) {
    if (c->model.family != DP_FAMILY_GPT2 || c->model.n_classes || !c->model.causal)
        return dp_fail(err, "language-model training needs a causal gpt2-family next-token model");
    if (tr->n < 1) return dp_fail(err, "no training examples");
    if (tr->n > INT32_MAX) return dp_fail(err, "at most 2^31 - 1 training examples are supported");
    const dp_lm_corpus *all[3] = {tr, dev, test};
    for (int k = 0; k < 3; k++) {
        if (!all[k]) continue;
        if (all[k]->max_len > c->model.max_len)
            return dp_fail(err, "an example has %d tokens, more than the context of %d", all[k]->max_len,
                           c->model.max_len);
        for (int64_t i = 0; i < all[k]->offsets[all[k]->n]; i++)
            if (all[k]->tokens[i] < 0 || all[k]->tokens[i] >= c->model.n_items)
                return dp_fail(err, "token id %d is outside the model's vocabulary (0..%d)", all[k]->tokens[i],
                               c->model.n_items - 1);
    }
    if (c->epochs < 1 || c->batch_size < 1) return dp_fail(err, "epochs and batch size must be at least 1");
    if (c->checkpoint_every < 0) return dp_fail(err, "checkpoint-every must be 0 or more steps");
    if (c->checkpoint_dir && c->keep_checkpoints < 1) return dp_fail(err, "keep-checkpoints must be at least 1");
    if (c->dpsgd) {
        const dp_privacy_config *p = &c->dp;
        if (!(p->delta > 0 && p->delta < 1)) return dp_fail(err, "delta must be in (0, 1)");
        if (!(p->target_epsilon > 0) && !(p->noise_multiplier >= 0))
            return dp_fail(err, "a private run needs a target epsilon or a noise multiplier");
        if (p->max_physical_batch < 1) return dp_fail(err, "max physical batch must be at least 1");
        if (!(p->max_grad_norm > 0)) return dp_fail(err, "max grad norm must be positive");
        if (p->sample_rate < 0 || p->sample_rate > 1) return dp_fail(err, "sample rate must be in (0, 1]");
    }
    return dp_model_config_validate(&c->model, err);
}

int dp_lm_plan_check(const dp_lm_train_config *c, int64_t n_train, dp_error *err) {
    if (!c->dpsgd || n_train < 1 || c->batch_size < 1 || c->resume) return 0;
    double q;
    int64_t per_epoch;
    lm_plan(c, n_train, &q, &per_epoch);
    dp_accounting_options acc;
    dp_accounting_default_options(&acc);
    acc.accountant = c->dp.accountant;
    return dp_noise_plan_check(&c->dp, q, per_epoch * c->epochs, 1, NULL, &acc, err);
}

/* ---- resuming ---- */

static int check_file(const dp_checkpoint *ck, const char *role, const dp_lm_corpus *now, dp_error *err) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(dp_ckpt_dataset_json(ck), role);
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(f, "fingerprint");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(f, "examples");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(f, "file");
    const char *saved_file = cJSON_IsString(file) ? file->valuestring : "?";
    if (!cJSON_IsObject(f)) {
        if (!now) return 0;
        return dp_fail(err, "%s: the run had no %s set; cannot resume with one (%lld examples)", dp_checkpoint_path(ck),
                       role, (long long)now->n);
    }
    if (!now)
        return dp_fail(err, "%s: the run had a %s set (%s, %.0f examples); give it again to resume",
                       dp_checkpoint_path(ck), role, saved_file, cJSON_IsNumber(n) ? n->valuedouble : 0.0);
    char have[17];
    snprintf(have, sizeof have, "%016llx", (unsigned long long)dp_lm_corpus_fingerprint(now));
    if (!cJSON_IsString(fp) || strcmp(fp->valuestring, have) != 0 || !cJSON_IsNumber(n) || n->valuedouble != (double)now->n)
        return dp_fail(err, "%s: written for another dataset: %s set %s, %.0f examples, fingerprint %s; this one has "
                            "%lld examples, fingerprint %s (other texts, another tokenizer or another context)",
                       dp_checkpoint_path(ck), role, saved_file, cJSON_IsNumber(n) ? n->valuedouble : 0.0,
                       cJSON_IsString(fp) ? fp->valuestring : "?", (long long)now->n, have);
    return 0;
}

int dp_lm_check_resume(const dp_checkpoint *ck, const dp_lm_train_config *cfg, const dp_lm_corpus *train,
                       const dp_lm_corpus *dev, const dp_lm_corpus *test, dp_error *err) {
    if (dp_ckpt_check_task(ck, TASK_NAME, err)) return -1;
    const dp_run_settings now = lm_settings(cfg);
    if (dp_ckpt_check_settings(ck, &now, err)) return -1;
    if (check_file(ck, "train", train, err) || check_file(ck, "dev", dev, err) || check_file(ck, "test", test, err))
        return -1;
    const dp_run_settings *s = dp_ckpt_settings(ck);
    if (s->dp.enabled && dp_ckpt_differs_d(ck, "sample-rate", "it defines the epochs' steps and the accounting",
                                           s->dp.sample_rate, cfg->dp.sample_rate, err))
        return -1;
    return 0;
}

int dp_lm_checkpoint_config(const dp_checkpoint *ck, dp_lm_train_config *cfg, dp_error *err) {
    if (dp_ckpt_check_task(ck, TASK_NAME, err)) return -1;
    const dp_run_settings *s = dp_ckpt_settings(ck);
    *cfg = dp_lm_train_config_default(s->model.n_items);
    cfg->model = s->model;
    cfg->optim = s->optim;
    cfg->dpsgd = s->mode == DP_LOOP_DPSGD;
    cfg->epochs = s->epochs;
    cfg->batch_size = s->batch_size;
    cfg->dp = s->dp;
    cfg->seed = s->seed;
    cfg->keep_last = s->keep_last;
    cfg->checkpoint_every = s->checkpoint_every;
    cfg->keep_checkpoints = s->keep_checkpoints;
    dp_jr r = {dp_checkpoint_path(ck), "dpformer.train_config", err, 0};
    const cJSON *x = dp_jr_obj(&r, dp_ckpt_config_json(ck), "lm");
    cfg->tokenizer_desc = dp_jr_str(&r, x, "tokenizer", 1);
    cfg->train_desc = dp_jr_str(&r, x, "train", 1);
    cfg->dev_desc = dp_jr_str(&r, x, "dev", 1);
    cfg->test_desc = dp_jr_str(&r, x, "test", 1);
    cfg->column = dp_jr_str(&r, x, "column", 1);
    if (r.bad) return -1;
    cfg->out_dir = dp_checkpoint_out_dir(ck);
    cfg->checkpoint_dir = dp_ckpt_dir(ck);
    cfg->checkpoint_extra = dp_checkpoint_extra(ck);
    cfg->resume = ck;
    return 0;
}

/* ---- training ---- */

int dp_lm_train(const dp_lm_train_config *cfg, const dp_lm_corpus *train, const dp_lm_corpus *dev,
                const dp_lm_corpus *test, dp_model **out_model, dp_lm_train_result *res, dp_error *err) {
    memset(res, 0, sizeof *res);
    res->resumed_from_step = -1;
    *out_model = NULL;
    if (check_config(cfg, train, dev, test, err)) return -1;
    if (cfg->resume && dp_lm_check_resume(cfg->resume, cfg, train, dev, test, err)) return -1;
    FILE *log = cfg->log ? cfg->log : stderr;
    const int64_t N = train->n;
    lm_task t = {cfg, train, dev, test, res, dp_malloc(sizeof(len_id) * (size_t)N)};
    res->n_train = N;
    res->truncated_train = train->n_truncated;
    res->train_tokens = train->offsets[N];

    dp_loop_config lc;
    memset(&lc, 0, sizeof lc);
    lc.s = lm_settings(cfg);
    if (cfg->dpsgd) lm_plan(cfg, N, &lc.sample_rate, &lc.steps_per_epoch);
    lc.device = cfg->device;
    lc.log = log;
    lc.progress = cfg->progress;
    lc.stop = cfg->stop;
    lc.checkpoint_dir = cfg->checkpoint_dir;
    lc.checkpoint_extra = cfg->checkpoint_extra;
    lc.resume = cfg->resume;
    dp_task task = {
        .name = TASK_NAME,
        .command = "train-lm",
        .unit = PRIVACY_UNIT,
        .covers = COVERS,
        .covers_dpfp = COVERS,
        .metric = dev ? "dev perplexity" : NULL,
        .best_note = "the dev texts it looks at are not covered",
        .valid_data = "the dev set",
        .no_valid = "no dev set",
        .state = &t,
        .n = (int32_t)N,
        .init_order = lm_init_order,
        .arrange = lm_arrange,
        .chunk = lm_chunk,
        .fill = lm_fill,
        .validate = lm_validate,
        .finish = lm_finish,
        .config_json = lm_config_json,
        .dataset_json = lm_dataset_json,
        .model_meta = lm_model_meta,
    };
    dp_loop_result lr;
    int rc = dp_loop_run(&lc, &task, out_model, &lr, err);
    res->epochs_run = lr.epochs_run;
    res->best_epoch = lr.best_epoch;
    res->train_seconds = lr.train_seconds;
    res->seconds_per_epoch = lr.seconds_per_epoch;
    res->examples_per_second = lr.examples_per_second;
    res->tokens_per_second = lr.examples_per_second * (double)res->train_tokens / (double)N;
    res->first_train_loss = lr.first_train_loss;
    res->final_train_loss = lr.final_train_loss;
    if (cfg->dpsgd) {
        res->epsilon = lr.epsilon;
        res->delta = lr.delta;
        res->noise_multiplier = lr.noise_multiplier;
        res->sample_rate = lr.sample_rate;
        res->dp_steps = lr.dp_steps;
    }
    res->steps = lr.steps;
    res->stopped_at_budget = lr.stopped_at_budget;
    res->stopped_by = lr.stopped_by;
    res->resumed_from_step = lr.resumed_from_step;
    res->resumes = lr.resumes;
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", lr.checkpoint);
    free(t.sort);
    return rc;
}
