/* Training loop of the text classifier: non-private minibatch training, DP-SGD (Poisson sampling,
 * exact per-example clipping of the whole gradient, Gaussian noise on the sum) and DP-FP (M Poisson
 * micro-batches per step, the pooled representation clipped and noised in the forward pass, an
 * ordinary optimizer step on the averaged gradient). The maths is in docs/dpfp.md and docs/privacy.md. */
#include <errno.h>
#include <math.h>

#include <cjson/cJSON.h>

#include "dpformer/noise.h"
#include "dpformer/textcls.h"
#include "model/model_internal.h"
#include "train/noise_plan.h"

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

/* ---- training ---- */

/* A stop request (cfg->stop set non-zero) seen at a step boundary is recorded in res. */
static int stop_requested(const dp_text_train_config *cfg, dp_text_train_result *res) {
    if (cfg->stop && *cfg->stop && !res->stopped_by) res->stopped_by = (int)*cfg->stop;
    return res->stopped_by != 0;
}

typedef struct {
    const dp_text_train_config *cfg;
    const dp_text_dataset *tr;
    dp_model *m;
    dp_optimizer *opt;
    int L, cap;
    int32_t *ids, *labels;
    dp_real *w, *noise;
    double *el, *norms;
    int64_t *order, *sample;
    int64_t *sorted;   /* [N] a logical batch sorted by length (for_chunks) */
    int32_t *ntok;     /* [N] tokens of each training example on the window ([CLS] included) */
    /* private modes */
    dp_rng *rng;
    dp_history hist;
    dp_accounting_options acc;
    double sigma, q;
    int64_t max_steps, steps;
} text_run;

/* Examples of one physical chunk: their ids on a window of T positions, and their labels. */
static void fill_batch(text_run *r, const int64_t *idx, int B, int T) {
    for (int b = 0; b < B; b++) {
        dp_text_encode_with(&r->cfg->tokenizer, r->tr, idx[b], T, r->ids + (size_t)b * T, NULL);
        r->labels[b] = r->tr->labels[idx[b]];
    }
}

/* Positions per physical chunk (examples x window) that length-sorted chunking aims for. */
#define CHUNK_POSITIONS 4096

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* One physical chunk: B examples idx[0..B) on a window of T positions, at offset `at` of the logical
 * batch (for the per-example dropout streams). */
typedef int (*chunk_fn)(text_run *r, const int64_t *idx, int B, int T, int at, void *ctx, dp_error *err);

/* Runs fn over the logical batch idx[0..n) in physical chunks of examples of similar length: sorted by
 * token count, each chunk at most cap examples and about CHUNK_POSITIONS positions, on a window as long
 * as its longest example (model_set_window). Sentences are right-padded and the encoder is
 * bidirectional, so this computes exactly what full-length windows would, without the padding: SST-2
 * training phrases average 10 tokens in a 48-token window. Which examples form the batch is unchanged
 * (the sampling, and so the privacy analysis, does not see the chunking). */
static int for_chunks(text_run *r, const int64_t *idx, int64_t n, chunk_fn fn, void *ctx, dp_error *err) {
    for (int64_t k = 0; k < n; k++) r->sorted[k] = ((int64_t)r->ntok[idx[k]] << 40) | idx[k];
    qsort(r->sorted, (size_t)n, sizeof *r->sorted, cmp_i64);
    for (int64_t k = 0; k < n; k++) r->sorted[k] &= ((int64_t)1 << 40) - 1;
    int rc = 0;
    for (int64_t s = 0; s < n && !rc;) {
        int B = 0, T = 1;
        while (s + B < n && B < r->cap) {
            int t = r->ntok[r->sorted[s + B]];
            if (B > 0 && (int64_t)(B + 1) * t > CHUNK_POSITIONS) break;
            T = t;
            B++;
        }
        model_set_window(r->m, T);
        fill_batch(r, r->sorted + s, B, T);
        rc = fn(r, r->sorted + s, B, T, (int)s, ctx, err);
        model_set_window(r->m, 0);
        s += B;
    }
    return rc;
}

static int check_loss(const double *el, int B, double *sum, dp_error *err) {
    double s = 0;
    for (int b = 0; b < B; b++) s += el[b];
    if (!isfinite(s)) return dp_fail(err, "non-finite loss (learning rate too high?); stopped");
    *sum += s;
    return 0;
}

typedef struct {
    double *loss;
    dp_real weight;   /* loss weight of each example */
    uint64_t dseed;
    int noise;        /* DP-FP: draw fresh representation noise for the chunk */
} chunk_ctx;

/* Forward and backward of a chunk (non-private and DP-FP), gradients accumulated. */
static int chunk_forward_backward(text_run *r, const int64_t *idx, int B, int T, int at, void *ctx, dp_error *err) {
    (void)idx;
    chunk_ctx *x = ctx;
    const dp_text_train_config *c = r->cfg;
    for (int b = 0; b < B; b++) r->w[b] = x->weight;
    if (x->noise) {
        if (dp_text_dpfp_noise(r->rng, r->noise, B, c->model.d_model, r->sigma, c->dpfp_clip, err)) return -1;
        dp_model_set_rep_noise(r->m, r->noise);
    }
    dp_batch bt = {B, T, r->ids, NULL, r->labels};
    r->m->ex0 = at;
    dp_model_forward_backward(r->m, &bt, r->w, 1, x->dseed, r->el);
    r->m->ex0 = 0;
    dp_model_set_rep_noise(r->m, NULL);
    return check_loss(r->el, B, x->loss, err);
}

static int step_nonprivate(text_run *r, const int64_t *idx, int B, double *loss, dp_error *err) {
    chunk_ctx x = {loss, (dp_real)(1.0 / B), dp_mix64(r->cfg->seed ^ dp_mix64((uint64_t)r->steps)), 0};
    dp_model_zero_grad(r->m);
    if (for_chunks(r, idx, B, chunk_forward_backward, &x, err)) return -1;
    dp_optimizer_step(r->opt, r->m);
    r->steps++;
    return 0;
}

/* Clipped per-example gradients of a chunk (DP-SGD), summed into the model's gradient. */
static int chunk_clipped(text_run *r, const int64_t *idx, int B, int T, int at, void *ctx, dp_error *err) {
    (void)idx;
    chunk_ctx *x = ctx;
    const dp_privacy_config *p = &r->cfg->dp;
    dp_batch bt = {B, T, r->ids, NULL, r->labels};
    if (dp_clipped_grad(r->m, &bt, p->clip_mode, p->max_grad_norm, 1, x->dseed, at, r->norms, r->el, err)) return -1;
    return check_loss(r->el, B, x->loss, err);
}

/* DP-SGD: G = (Σ_i clip_C(g_i) + σ C z) / (qN). */
static int step_dpsgd(text_run *r, int64_t *seen, double *loss, dp_error *err) {
    const dp_privacy_config *p = &r->cfg->dp;
    int64_t nb = dp_poisson_sample(r->rng, r->q, r->tr->n, r->sample, err);
    if (nb < 0) return -1;
    dp_model_zero_grad(r->m);
    chunk_ctx x = {loss, 1, dp_mix64(r->cfg->seed ^ dp_mix64((uint64_t)r->steps)), 0};
    if (for_chunks(r, r->sample, nb, chunk_clipped, &x, err)) return -1;
    dp_real *g = dp_model_grads(r->m);
    const size_t np = dp_model_num_params(r->m);
    if (r->sigma > 0 && dp_noise_gaussian_add(r->rng, g, np, r->sigma * p->max_grad_norm, err)) return -1;
    const dp_real inv = (dp_real)(1.0 / (r->q * (double)r->tr->n));
    for (size_t i = 0; i < np; i++) g[i] *= inv;
    dp_optimizer_step(r->opt, r->m);
    if (r->sigma > 0 && dp_history_add_poisson_gaussian(&r->hist, r->sigma, r->q, 1, err)) return -1;
    r->steps++;
    *seen += nb;
    return 0;
}

int dp_text_dpfp_noise(dp_rng *rng, dp_real *noise, int B, int d, double sigma, double clip, dp_error *err) {
    return dp_noise_gaussian_fill(rng, noise, (size_t)B * (size_t)d, sigma * clip, err);
}

/* DP-FP: M micro-batches, each a Poisson sample whose pooled representations are clipped to C and
 * noised with fresh σC z; G = average over micro-batches of their mean-loss gradients (each normalised
 * by the expected micro-batch size qN); no per-example gradient clipping, no gradient noise. */
static int step_dpfp(text_run *r, int64_t *seen, double *loss, dp_error *err) {
    const dp_text_train_config *c = r->cfg;
    const int M = c->micro_batches;
    dp_model_zero_grad(r->m);
    for (int j = 0; j < M; j++) {
        int64_t nb = dp_poisson_sample(r->rng, r->q, r->tr->n, r->sample, err);
        if (nb < 0) return -1;
        chunk_ctx x = {loss, (dp_real)(1.0 / (M * r->q * (double)r->tr->n)),
                       dp_mix64(c->seed ^ dp_mix64((uint64_t)r->steps * 1024 + (uint64_t)j)), r->sigma > 0};
        if (for_chunks(r, r->sample, nb, chunk_forward_backward, &x, err)) return -1;
        *seen += nb;
    }
    dp_optimizer_step(r->opt, r->m);
    if (r->sigma > 0 && dp_history_add_poisson_gaussian(&r->hist, r->sigma, r->q, M, err)) return -1;
    r->steps++;
    return 0;
}

/* σ (calibrated for the planned mechanism events when a target ε is given), the step budget and the
 * generator. DP-FP runs M events per step. */
static int setup_private(text_run *r, int64_t planned_steps, FILE *log, dp_error *err) {
    const dp_text_train_config *c = r->cfg;
    const dp_privacy_config *p = &c->dp;
    const int per_step = c->mode == DP_TEXT_DPFP ? c->micro_batches : 1;
    const int64_t planned = planned_steps * per_step;
    dp_history_init(&r->hist);
    dp_accounting_default_options(&r->acc);
    r->acc.accountant = p->accountant;
    int64_t max_events;
    if (dp_noise_plan(p, r->q, planned, per_step, NULL, &r->acc, "mechanism events", log, &r->sigma, &max_events, err))
        return -1;
    r->max_steps = max_events < 0 ? -1 : max_events / per_step;
    if (c->mode == DP_TEXT_DPFP)
        fprintf(log, "privacy: DP-FP -- epsilon covers the noised representations released during training; it does "
                     "NOT cover the trained weights or the labels (docs/dpfp.md)\n");
    if (p->seeded_noise) {
        r->rng = dp_rng_create_seeded(dp_mix64(c->seed ^ 0x7E57C1A55ull));
        fprintf(log, "privacy: WARNING: noise and sampling are reproducible from the seed: this run is NOT private "
                     "(testing only)\n");
    } else if (!(r->rng = dp_rng_create_secure(err))) {
        return -1;
    }
    return 0;
}

static double run_epsilon(const text_run *r, dp_error *err) {
    double eps = 0;
    if (r->sigma <= 0) return INFINITY;
    if (dp_history_total_steps(&r->hist) == 0) return 0;
    if (dp_epsilon(&r->hist, r->cfg->dp.delta, &r->acc, &eps, err)) return NAN;
    return eps;
}

static const char *coverage(dp_text_mode mode) {
    return mode == DP_TEXT_DPFP ? "the noised pooled representations released during training (NOT the trained "
                                  "weights, NOT the labels)"
                                : "the trained weights (example-level DP)";
}

/* privacy.json: the events, and how the printed ε was computed and what it is about, so that
 * `dpformer privacy --history privacy.json` recomputes it alone. */
static int save_ledger(const text_run *r, const dp_text_train_result *res, int has_dev, const char *path,
                       dp_error *err) {
    const dp_text_train_config *c = r->cfg;
    dp_privacy_ledger l;
    dp_ledger_init(&l);
    dp_ledger_set_accounting(&l, &r->acc, c->dp.delta, res->epsilon);
    snprintf(l.command, sizeof l.command, "train-text");
    snprintf(l.mechanism, sizeof l.mechanism, "%s", dp_text_mode_name(c->mode));
    snprintf(l.privacy_unit, sizeof l.privacy_unit, "one labelled training sentence");
    snprintf(l.epsilon_covers, sizeof l.epsilon_covers, "%s", coverage(c->mode));
    snprintf(l.model_selection, sizeof l.model_selection, "%s",
             !has_dev ? "last epoch (no dev set)"
             : c->keep_last ? "last epoch (no selection on the dev set)"
                            : "best epoch by dev accuracy (the dev sentences it looks at are not covered)");
    l.selection_covered = !has_dev || c->keep_last;
    if (r->sigma <= 0)
        snprintf(l.warning, sizeof l.warning, "noise multiplier 0: NO differential privacy guarantee");
    else if (c->dp.seeded_noise)
        snprintf(l.warning, sizeof l.warning, "seeded noise: reproducible from the seed, so this run is NOT private");
    int rc = dp_ledger_save(&r->hist, &l, path, err);
    dp_ledger_free(&l);
    return rc;
}

static char *run_meta(const dp_text_train_config *c, const dp_text_train_result *res) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", "text-classification");
    cJSON_AddStringToObject(o, "mode", dp_text_mode_name(c->mode));
    char spec[DP_TOKENIZER_SPEC_MAX];
    dp_tokenizer_spec(&c->tokenizer, spec, sizeof spec);
    cJSON_AddStringToObject(o, "tokenizer", spec);
    cJSON_AddNumberToObject(o, "epochs", res->epochs_run);
    cJSON_AddNumberToObject(o, "best_epoch", res->best_epoch);
    if (res->stopped_by) cJSON_AddNumberToObject(o, "stopped_by_signal", res->stopped_by);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON_AddNumberToObject(o, "dev_accuracy", res->dev_acc);
    if (isfinite(res->test_acc)) cJSON_AddNumberToObject(o, "test_accuracy", res->test_acc);
    if (c->mode != DP_TEXT_NONPRIVATE) {
        cJSON_AddStringToObject(o, "privacy_unit", "one labelled sentence");
        cJSON_AddStringToObject(o, "epsilon_covers", coverage(c->mode));
        if (isfinite(res->epsilon)) cJSON_AddNumberToObject(o, "epsilon", res->epsilon);
        else cJSON_AddNullToObject(o, "epsilon");
        cJSON_AddNumberToObject(o, "delta", res->delta);
        cJSON_AddNumberToObject(o, "noise_multiplier", res->noise_multiplier);
        cJSON_AddNumberToObject(o, "sample_rate", res->sample_rate);
        cJSON_AddNumberToObject(o, "steps", (double)res->steps);
        cJSON_AddNumberToObject(o, "mechanism_events", (double)res->mechanism_events);
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
                        dp_error *err) {
    if (!c->model.n_classes) return dp_fail(err, "text classification needs a model with n_classes >= 2");
    if (c->tokenizer.kind == DP_TOKENIZER_WORDS &&
        (c->tokenizer.buckets < 1 || c->tokenizer.buckets > DP_TEXT_MAX_BUCKETS))
        return dp_fail(err, "hashed-word tokenizer: buckets must be in 1..%d", DP_TEXT_MAX_BUCKETS);
    if (c->model.n_items != dp_tokenizer_vocab(&c->tokenizer) - 1)
        return dp_fail(err, "the model's vocabulary (%d ids) must be the tokenizer's (%d)", (int)c->model.n_items + 1,
                       (int)dp_tokenizer_vocab(&c->tokenizer));
    if (tr->n_classes > c->model.n_classes || (dev && dev->n_classes > c->model.n_classes))
        return dp_fail(err, "the data declare %d classes, the model has %d", tr->n_classes, c->model.n_classes);
    if (tr->n < 1) return dp_fail(err, "no training examples");
    if (tr->n >= ((int64_t)1 << 40)) return dp_fail(err, "at most 2^40 training examples are supported");
    if (c->epochs < 1 || c->batch_size < 1) return dp_fail(err, "epochs and batch size must be at least 1");
    if (c->mode == DP_TEXT_DPFP && (c->micro_batches < 1 || !(c->dpfp_clip > 0)))
        return dp_fail(err, "DP-FP needs micro_batches >= 1 and a positive representation clip");
    if (c->mode != DP_TEXT_NONPRIVATE) {
        const dp_privacy_config *p = &c->dp;
        if (!(p->delta > 0 && p->delta < 1)) return dp_fail(err, "delta must be in (0, 1)");
        if (!(p->target_epsilon > 0) && !(p->noise_multiplier >= 0))
            return dp_fail(err, "a private run needs a target epsilon or a noise multiplier");
        if (p->max_physical_batch < 1) return dp_fail(err, "max physical batch must be at least 1");
        if (c->mode == DP_TEXT_DPSGD && !(p->max_grad_norm > 0)) return dp_fail(err, "max grad norm must be positive");
    }
    return dp_model_config_validate(&c->model, err);
}

static void shuffle(int64_t *a, int64_t n, uint64_t seed) {
    uint64_t s = seed;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(dp_splitmix64(&s) % (uint64_t)(i + 1));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

int dp_text_train(const dp_text_train_config *cfg, const dp_text_dataset *train, const dp_text_dataset *dev,
                  const dp_text_dataset *test, dp_model **out_model, dp_text_train_result *res, dp_error *err) {
    memset(res, 0, sizeof *res);
    res->test_acc = NAN;
    *out_model = NULL;
    if (check_config(cfg, train, dev, err)) return -1;
    FILE *log = cfg->log ? cfg->log : stderr;
    const int priv = cfg->mode != DP_TEXT_NONPRIVATE;
    const int64_t N = train->n;
    text_run r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.tr = train;
    r.L = cfg->model.max_len;
    r.cap = priv ? cfg->dp.max_physical_batch : cfg->batch_size;
    res->n_train = N;
    /* each sentence's tokens on the window ([CLS] included): the chunking's lengths and the truncation count */
    r.ntok = dp_malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++) {
        int64_t n = 1 + dp_tokenizer_count(&cfg->tokenizer, dp_text_ptr(train, i), (size_t)dp_text_len(train, i));
        r.ntok[i] = (int32_t)DP_MIN((int64_t)r.L, n);
        res->truncated_train += n > r.L;
    }
    fprintf(log, "data: %lld training sentences (%lld longer than %d tokens are truncated)%s\n", (long long)N,
            (long long)res->truncated_train, r.L, dev ? "" : "; no dev set: the last epoch is kept");
    int rc = 0;
    FILE *metrics = NULL;
    dp_real *best = NULL;
    char path[4096];
    if (cfg->out_dir) {
        if ((rc = dp_mkdir_p(cfg->out_dir, err))) goto out;
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
        if (!(metrics = fopen(path, "w"))) {
            rc = dp_fail(err, "%s: cannot open for writing: %s", path, strerror(errno));
            goto out;
        }
    }
    dp_model_config mc = cfg->model;
    mc.rep_clip = cfg->mode == DP_TEXT_DPFP ? cfg->dpfp_clip : 0;
    dp_tokenizer_spec(&cfg->tokenizer, mc.tokenizer, sizeof mc.tokenizer);
    if (!(r.m = dp_model_create(&mc, r.cap, cfg->seed, err))) {
        rc = -1;
        goto out;
    }
    r.ids = dp_malloc(sizeof(int32_t) * (size_t)r.cap * r.L);
    r.labels = dp_malloc(sizeof(int32_t) * (size_t)r.cap);
    r.w = dp_malloc(sizeof(dp_real) * (size_t)r.cap);
    r.noise = dp_malloc(sizeof(dp_real) * (size_t)r.cap * cfg->model.d_model);
    r.el = dp_malloc(sizeof(double) * (size_t)r.cap);
    r.norms = dp_malloc(sizeof(double) * (size_t)r.cap);
    r.order = dp_malloc(sizeof(int64_t) * (size_t)N);
    r.sample = dp_malloc(sizeof(int64_t) * (size_t)N);
    r.sorted = dp_malloc(sizeof(int64_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++) r.order[i] = i;
    const int64_t steps_per_epoch = DP_MAX((int64_t)1, N / cfg->batch_size);
    if (priv) {
        const int per_step = cfg->mode == DP_TEXT_DPFP ? cfg->micro_batches : 1;
        r.q = dp_text_sample_rate(cfg->batch_size, per_step, N); /* as dp_text_plan_check plans it */
        if ((rc = setup_private(&r, steps_per_epoch * cfg->epochs, log, err))) goto out;
    }
    dp_optim_config oc = cfg->optim;
    if (oc.schedule == DP_SCHED_COSINE && oc.total_steps <= 0) oc.total_steps = steps_per_epoch * cfg->epochs;
    r.opt = dp_optimizer_create(&oc, r.m);
    const size_t np = dp_model_num_params(r.m);
    best = dp_malloc(sizeof(dp_real) * np);
    double best_acc = -1, t_start = dp_now();
    for (int epoch = 1; epoch <= cfg->epochs && !res->stopped_at_budget && !res->stopped_by; epoch++) {
        double t0 = dp_now(), loss = 0;
        int64_t seen = 0;
        if (!priv) {
            shuffle(r.order, N, dp_mix64(cfg->seed * 1000003u + (uint64_t)epoch));
            for (int64_t s = 0; s < N && !stop_requested(cfg, res); s += cfg->batch_size) {
                int B = (int)DP_MIN((int64_t)cfg->batch_size, N - s);
                if ((rc = step_nonprivate(&r, r.order + s, B, &loss, err))) goto out;
                seen += B;
            }
        } else {
            for (int64_t k = 0; k < steps_per_epoch && !stop_requested(cfg, res); k++) {
                if (r.max_steps >= 0 && r.steps >= r.max_steps) {
                    res->stopped_at_budget = r.max_steps < steps_per_epoch * cfg->epochs;
                    break;
                }
                rc = cfg->mode == DP_TEXT_DPSGD ? step_dpsgd(&r, &seen, &loss, err) : step_dpfp(&r, &seen, &loss, err);
                if (rc) goto out;
            }
        }
        double secs = dp_now() - t0;
        res->epochs_run = epoch;
        double acc = dev ? dp_text_accuracy(r.m, dev, err) : NAN;
        if (dev && isnan(acc)) {
            rc = -1;
            goto out;
        }
        double eps = priv ? run_epsilon(&r, err) : 0;
        if (priv && isnan(eps)) {
            rc = -1;
            goto out;
        }
        int keep = cfg->keep_last || !dev || acc > best_acc;
        if (keep) {
            best_acc = dev ? acc : NAN;
            res->best_epoch = epoch;
            memcpy(best, dp_model_params(r.m), sizeof(dp_real) * np);
        }
        if (cfg->progress || !metrics)
            fprintf(log, "epoch %d/%d  loss %.4f  dev acc %.4f%s  %.1f s%s\n", epoch, cfg->epochs,
                    seen ? loss / (double)seen : 0.0, acc, priv ? "" : "", secs, keep ? "  (kept)" : "");
        if (priv && (cfg->progress || !metrics)) fprintf(log, "          epsilon %.4f (delta %g)\n", eps, cfg->dp.delta);
        if (metrics) {
            fprintf(metrics, "{\"epoch\":%d,\"train_loss\":%.6f,\"dev_accuracy\":%.6f,\"seconds\":%.3f,\"examples\":%lld",
                    epoch, seen ? loss / (double)seen : 0.0, dev ? acc : -1.0, secs, (long long)seen);
            if (res->stopped_by) fprintf(metrics, ",\"partial\":true,\"stopped_by\":%d", res->stopped_by);
            if (priv) {
                if (isfinite(eps)) fprintf(metrics, ",\"epsilon\":%.6f", eps);
                else fprintf(metrics, ",\"epsilon\":null");
                fprintf(metrics, ",\"steps\":%lld", (long long)r.steps);
            }
            fprintf(metrics, "}\n");
            fflush(metrics);
        }
    }
    res->train_seconds = dp_now() - t_start;
    res->seconds_per_epoch = res->train_seconds / DP_MAX(1, res->epochs_run);
    memcpy(dp_model_params(r.m), best, sizeof(dp_real) * np);
    res->dev_acc = best_acc;
    if (test && isnan(res->test_acc = dp_text_accuracy(r.m, test, err))) {
        rc = -1;
        goto out;
    }
    if (priv) {
        res->epsilon = run_epsilon(&r, err);
        res->delta = cfg->dp.delta;
        res->noise_multiplier = r.sigma;
        res->sample_rate = r.q;
        res->steps = r.steps;
        res->mechanism_events = dp_history_total_steps(&r.hist);
        fprintf(log, "privacy: %s, epsilon %.4f at delta %g (%s accountant, %lld steps, %lld mechanism events, q %.5g, "
                     "sigma %.4f); privacy unit: one labelled sentence; epsilon covers %s\n",
                dp_text_mode_name(cfg->mode), res->epsilon, res->delta,
                cfg->dp.accountant == DP_ACCOUNTANT_PLD ? "PLD" : "RDP", (long long)res->steps,
                (long long)res->mechanism_events, res->sample_rate, res->noise_multiplier, coverage(cfg->mode));
        if (res->stopped_at_budget)
            fprintf(log, "privacy: stopped after %lld steps: one more would exceed epsilon %.3f\n", (long long)r.steps,
                    cfg->dp.target_epsilon);
        if (cfg->out_dir) {
            snprintf(path, sizeof path, "%s/privacy.json", cfg->out_dir);
            if ((rc = save_ledger(&r, res, dev != NULL, path, err))) goto out;
        }
    }
    if (cfg->out_dir) {
        char *meta = run_meta(cfg, res);
        snprintf(path, sizeof path, "%s/model.safetensors", cfg->out_dir);
        rc = dp_model_save(r.m, path, meta, err);
        free(meta);
        if (rc) goto out;
    }
    dp_model_set_rep_noise(r.m, NULL); /* the noise buffer is freed below */
    *out_model = r.m;
    r.m = NULL;
out:
    if (metrics) fclose(metrics);
    free(best);
    dp_model_free(r.m);
    dp_optimizer_free(r.opt);
    dp_rng_free(r.rng);
    if (priv) dp_history_free(&r.hist);
    free(r.ids);
    free(r.labels);
    free(r.w);
    free(r.noise);
    free(r.el);
    free(r.norms);
    free(r.sorted);
    free(r.ntok);
    free(r.order);
    free(r.sample);
    return rc;
}
