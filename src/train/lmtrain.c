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
#include "dpformer/dist.h"
#include "dpformer/lmtrain.h"
#include "model/model_internal.h"
#include "train/loop.h"
#include "train/noise_plan.h"
#include "train/task_common.h"

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

/* ---- the starting point (--init) and the trained parts (--train-only) ---- */

static int is_random(const char *init) { return !init || strcmp(init, "random") == 0; }

int dp_lm_init_config(const char *path, int max_len, dp_model_config *cfg, dp_error *err) {
    /* the whole model is read (and dropped): a missing, misshapen or non-finite tensor is refused now,
     * before any output is touched, rather than once the run has started */
    dp_model *m = model_load_window(path, 0, 0, err);
    if (!m) return -1;
    *cfg = m->cfg;
    dp_model_free(m);
    if (cfg->family != DP_FAMILY_GPT2 || cfg->n_classes || !cfg->causal)
        return dp_fail(err, "%s: not a language model of the GPT-2 family (a %s model); train-lm starts only from a "
                            "causal gpt2-family next-token model",
                       path, cfg->n_classes ? "classification" : cfg->family != DP_FAMILY_GPT2 ? "recommendation" : "bidirectional");
    if (max_len > cfg->max_len)
        return dp_fail(err, "%s: the model has a context of %d positions; a context of %d cannot be trained from it", path,
                       cfg->max_len, max_len);
    if (max_len > 0) cfg->max_len = max_len;
    return 0;
}

/* The parts of --train-only: the two embeddings, the final LayerNorm, the untied head, and a flag per
 * block. */
typedef struct {
    int wte, wpe, ln_f, head;
    unsigned char *layer; /* [n_layers] */
} lm_parts;

static int parse_int(const char *s, const char *end, int *v) {
    if (s == end || end - s > 9) return -1;
    int x = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        x = 10 * x + (*p - '0');
    }
    *v = x;
    return 0;
}

#define PARTS_HELP "wte, wpe, embeddings, layers:A-B, layers, ln_f, head"

static int parse_parts(const char *spec, const dp_model_config *cfg, lm_parts *p, dp_error *err) {
    const int NL = cfg->n_layers;
    memset(p->layer, 0, (size_t)(NL > 0 ? NL : 1));
    p->wte = p->wpe = p->ln_f = p->head = 0;
    if (!spec || !*spec) return dp_fail(err, "--train-only: an empty list (the parts are " PARTS_HELP ")");
    for (const char *s = spec; ; ) {
        const char *e = strchr(s, ',');
        if (!e) e = s + strlen(s);
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        const char *f = e;
        while (f > s && (f[-1] == ' ' || f[-1] == '\t')) f--;
        const int n = (int)(f - s);
#define IS(w) (n == (int)strlen(w) && strncmp(s, w, (size_t)n) == 0)
        if (n == 0) return dp_fail(err, "--train-only \"%s\": an empty part (the parts are " PARTS_HELP ")", spec);
        if (IS("wte")) p->wte = 1;
        else if (IS("wpe")) p->wpe = 1;
        else if (IS("embeddings")) p->wte = p->wpe = 1;
        else if (IS("ln_f")) p->ln_f = 1;
        else if (IS("head")) p->head = 1;
        else if (IS("layers")) memset(p->layer, 1, (size_t)(NL > 0 ? NL : 1));
        else if (n > 7 && strncmp(s, "layers:", 7) == 0) {
            const char *a = s + 7, *dash = memchr(a, '-', (size_t)(f - a));
            int lo, hi;
            if (parse_int(a, dash ? dash : f, &lo) || (dash ? parse_int(dash + 1, f, &hi) : (hi = lo, 0)))
                return dp_fail(err, "--train-only: \"%.*s\": blocks are layers:A-B or layers:A (block numbers from 0)", n,
                               s);
            if (lo > hi) return dp_fail(err, "--train-only: \"%.*s\": the range is backwards (%d > %d)", n, s, lo, hi);
            if (hi >= NL)
                return dp_fail(err, "--train-only: \"%.*s\": the model has %d block%s (%s%d)", n, s, NL, NL == 1 ? "" : "s",
                               NL ? "layers:0-" : "none; ", NL ? NL - 1 : 0);
            memset(p->layer + lo, 1, (size_t)(hi - lo + 1));
        } else {
            return dp_fail(err, "--train-only: unknown part \"%.*s\" (the parts are " PARTS_HELP ")", n, s);
        }
#undef IS
        if (!*e) break;
        s = e + 1;
    }
    /* a tied head is the token embedding: naming either trains the one tensor */
    if (cfg->tied && (p->wte || p->head)) p->wte = p->head = 1;
    return 0;
}

/* Whether tensor `name` of the model is trained. */
static int part_trained(const lm_parts *p, const char *name) {
    if (strcmp(name, "item_emb.weight") == 0) return p->wte;
    if (strcmp(name, "pos_emb.weight") == 0) return p->wpe;
    if (strncmp(name, "ln_f.", 5) == 0) return p->ln_f;
    if (strcmp(name, "out.weight") == 0) return p->head;
    if (strncmp(name, "layers.", 7) == 0) return p->layer[atoi(name + 7)];
    return 1;
}

static void canon_append(char *buf, size_t cap, size_t *len, const char *fmt, int a, int b) {
    if (*len >= cap) return;
    int k = snprintf(buf + *len, cap - *len, "%s", *len ? "," : "");
    *len += (size_t)(k > 0 ? k : 0);
    if (*len >= cap) return;
    k = snprintf(buf + *len, cap - *len, fmt, a, b);
    *len += (size_t)(k > 0 ? k : 0);
}

int dp_lm_train_only(const char *spec, const dp_model_config *cfg, char *canon, size_t cap, int64_t *trained,
                     int64_t *total, dp_error *err) {
    lm_parts p;
    p.layer = dp_calloc((size_t)(cfg->n_layers > 0 ? cfg->n_layers : 1), 1);
    dp_param_tensor *tt = dp_malloc(sizeof *tt * DP_MAX_TENSORS);
    int rc = parse_parts(spec, cfg, &p, err), nt = 0;
    if (!rc && (nt = dp_model_config_tensors(cfg, tt, err)) < 0) rc = -1;
    if (!rc) {
        int64_t tr = 0, all = 0;
        for (int i = 0; i < nt; i++) {
            all += (int64_t)tt[i].size;
            if (part_trained(&p, tt[i].name)) tr += (int64_t)tt[i].size;
        }
        if (trained) *trained = tr;
        if (total) *total = all;
        if (canon && cap) {
            size_t len = 0;
            canon[0] = 0;
            if (p.wte) canon_append(canon, cap, &len, "wte", 0, 0);
            if (p.wpe) canon_append(canon, cap, &len, "wpe", 0, 0);
            for (int l = 0; l < cfg->n_layers;) {
                if (!p.layer[l]) {
                    l++;
                    continue;
                }
                int h = l;
                while (h + 1 < cfg->n_layers && p.layer[h + 1]) h++;
                if (h == l) canon_append(canon, cap, &len, "layers:%d", l, 0);
                else canon_append(canon, cap, &len, "layers:%d-%d", l, h);
                l = h + 1;
            }
            if (p.ln_f) canon_append(canon, cap, &len, "ln_f", 0, 0);
            if (p.head) canon_append(canon, cap, &len, "head", 0, 0);
            if (len >= cap) rc = dp_fail(err, "--train-only: the list is too long");
            if (tr == all) canon[0] = 0; /* every part: nothing is frozen, as without the flag */
        }
    }
    free(tt);
    free(p.layer);
    return rc;
}

typedef struct len_id len_id;
typedef struct {
    const dp_lm_train_config *cfg;
    const dp_lm_corpus *tr, *dev, *test;
    dp_lm_train_result *res;
    struct len_id *sort; /* [N] lm_arrange's buffer */
    char train_only[1024]; /* the canonical --train-only ("" : every parameter is trained) */
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

static int lm_chunk(void *st, const int64_t *ids, int64_t n, int cap, int *T) {
    lm_task *t = st;
    int B = 0;
    *T = 2;
    while (B < n && B < cap) {
        int len = ex_len(t->tr, ids[B]);
        if (B > 0 && (int64_t)(B + 1) * len > DP_CHUNK_POSITIONS) break;
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
    if (t->res->has_init_dev)
        len += snprintf(out->json + len, sizeof out->json - (size_t)len,
                        ",\"init_dev_perplexity\":%.6f,\"init_dev_loss\":%.6f", t->res->init_dev.perplexity,
                        t->res->init_dev.loss);
    snprintf(out->json + len, sizeof out->json - (size_t)len, ",\"truncated_train\":%lld",
             (long long)t->res->truncated_train);
    return 0;
}

/* Whether two configurations describe the same model (the dropout rate aside: a fine-tuning run may
 * change it), and the first difference in words. */
static int same_model(const dp_model_config *a, const dp_model_config *b, char *why, size_t cap) {
#define F(field, name)                                                                                                \
    if (a->field != b->field) {                                                                                        \
        snprintf(why, cap, "%s %d, the run's %d", name, (int)a->field, (int)b->field);                                 \
        return 0;                                                                                                      \
    }
    F(family, "family") F(n_items, "vocabulary") F(max_len, "context") F(d_model, "d_model") F(n_layers, "layers")
    F(n_heads, "heads") F(d_ff, "d_ff") F(tied, "tied") F(activation, "activation") F(positions, "positions")
    F(causal, "causal") F(n_classes, "classes")
#undef F
    return 1;
}

/* A fresh run from --init: the model's parameters replace the random initialisation. */
static int lm_init_params(void *st, dp_model *m, dp_error *err) {
    lm_task *t = st;
    const char *path = t->cfg->init;
    if (is_random(path)) return 0;
    dp_model *src = model_load_window(path, 0, t->cfg->model.max_len, err);
    if (!src) return -1;
    char why[160];
    dp_model_config want = m->cfg;
    if (want.d_ff == 0) want.d_ff = 4 * want.d_model;
    /* untying (--untied with a tied --init model): the run's head starts as a copy of the token
     * embedding, as libraries that cannot clip a tied embedding do with GPT-2 */
    const int untie = src->cfg.tied && !want.tied;
    dp_model_config have = src->cfg;
    if (untie) have.tied = 0;
    int rc = 0;
    if (!same_model(&have, &want, why, sizeof why) ||
        (!untie && dp_model_num_params(src) != dp_model_num_params(m)))
        rc = dp_fail(err, "%s: another model than the run's: %s (the shape comes from --init; leave the shape "
                          "flags out)", path, why);
    if (!rc) {
        /* the layouts agree up to the untied head, which comes last (model.c) */
        const size_t n_all = (size_t)dp_model_num_params(m);
        dp_real *buf = dp_alloc_aligned(sizeof(dp_real) * n_all);
        memset(buf, 0, sizeof(dp_real) * n_all);
        dp_model_read_params(src, buf);
        if (untie) {
            const dp_param_tensor *emb = dp_model_tensor(m, 0), *head = dp_model_tensor(m, dp_model_num_tensors(m) - 1);
            if (strcmp(emb->name, "item_emb.weight") != 0 || strcmp(head->name, "out.weight") != 0 ||
                head->size != emb->size || head->offset < (size_t)dp_model_num_params(src))
                rc = dp_fail(err, "%s: cannot untie this model's head (unexpected layout)", path);
            else
                memcpy(buf + head->offset, buf + emb->offset, sizeof(dp_real) * (size_t)emb->size);
        }
        if (!rc) dp_model_write_params(m, buf);
        free(buf);
    }
    dp_model_free(src);
    /* where fine-tuning starts: the initial model's dev perplexity (eval-lm of the --init model on the
     * dev set gives the same) */
    if (!rc && t->dev) {
        if (dp_lm_evaluate(m, t->dev, &t->res->init_dev, err)) return -1;
        t->res->has_init_dev = 1;
        if (dp_dist_is_root()) /* with several processes, one line */
            fprintf(t->cfg->log ? t->cfg->log : stderr, "initial model (--init %s): dev perplexity %.4f\n", path,
                    t->res->init_dev.perplexity);
    }
    return rc;
}

/* Every run with --train-only: the tensors of the parts not listed are frozen. */
static int lm_freeze(void *st, dp_model *m, dp_error *err) {
    lm_task *t = st;
    if (!t->train_only[0]) return 0;
    lm_parts p;
    p.layer = dp_calloc((size_t)(m->cfg.n_layers > 0 ? m->cfg.n_layers : 1), 1);
    int rc = parse_parts(t->train_only, &m->cfg, &p, err);
    for (int i = 0; !rc && i < m->n_tensors; i++) model_set_frozen(m, i, !part_trained(&p, m->tensors[i].name));
    free(p.layer);
    return rc;
}

static void lm_config_json(void *st, cJSON *o, dp_jw *w) {
    lm_task *t = st;
    const dp_lm_train_config *c = t->cfg;
    cJSON *x = cJSON_AddObjectToObject(o, "lm");
    dp_jw_str(x, "tokenizer", c->tokenizer_desc);
    dp_jw_str(x, "train", c->train_desc);
    dp_jw_str(x, "dev", c->dev_desc);
    dp_jw_str(x, "test", c->test_desc);
    dp_jw_str(x, "column", c->column);
    dp_jw_str(x, "init", is_random(c->init) ? "random" : c->init);
    dp_jw_str(x, "train_only", t->train_only[0] ? t->train_only : NULL);
    if (t->res->has_init_dev && isfinite(t->res->init_dev.perplexity)) { /* so that a resumed run reports it too */
        dp_jw_num(w, x, "init_dev_perplexity", t->res->init_dev.perplexity);
        dp_jw_num(w, x, "init_dev_loss", t->res->init_dev.loss);
    }
}

static void corpus_json(cJSON *o, const char *key, const char *desc, const dp_lm_corpus *c) {
    dp_task_file_json(o, key, desc, c != NULL, c ? c->n : 0, "tokens", c && c->n ? c->offsets[c->n] : 0,
                      c ? dp_lm_corpus_fingerprint(c) : 0);
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
    cJSON_AddStringToObject(o, "init", is_random(c->init) ? "random" : c->init);
    if (t->train_only[0]) cJSON_AddStringToObject(o, "train_only", t->train_only);
    if (t->res->has_dev) cJSON_AddNumberToObject(o, "dev_perplexity", t->res->dev.perplexity);
    if (t->res->has_test) cJSON_AddNumberToObject(o, "test_perplexity", t->res->test.perplexity);
    if (c->dpsgd) {
        cJSON_AddStringToObject(o, "privacy_unit", PRIVACY_UNIT);
        cJSON_AddStringToObject(o, "epsilon_covers", COVERS);
        dp_task_meta_privacy(o, lr);
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
    if (c->train_only && dp_lm_train_only(c->train_only, &c->model, NULL, 0, NULL, NULL, err)) return -1;
    if (c->checkpoint_every < 0) return dp_fail(err, "checkpoint-every must be 0 or more steps");
    if (c->checkpoint_dir && c->keep_checkpoints < 1) return dp_fail(err, "keep-checkpoints must be at least 1");
    if (c->dpsgd) {
        if (dp_task_check_privacy(&c->dp, 1, err)) return -1;
        if (c->dp.sample_rate < 0 || c->dp.sample_rate > 1) return dp_fail(err, "sample rate must be in (0, 1]");
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

/* The saved file of a role ("train", "dev", "test") against the one given now. */
static int check_file(const dp_checkpoint *ck, const char *role, const dp_lm_corpus *now, dp_error *err) {
    return dp_task_check_file(ck, role, now != NULL, now ? now->n : 0, now ? dp_lm_corpus_fingerprint(now) : 0,
                              "examples", " (other texts, another tokenizer or another context)", err);
}

/* A string of the checkpoint's "lm" settings; NULL when absent or null (checkpoints written before the
 * setting existed: random initialisation, every parameter trained). */
static const char *saved_lm_str(const dp_checkpoint *ck, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(dp_ckpt_config_json(ck), "lm");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(x, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int dp_lm_check_resume(const dp_checkpoint *ck, const dp_lm_train_config *cfg, const dp_lm_corpus *train,
                       const dp_lm_corpus *dev, const dp_lm_corpus *test, dp_error *err) {
    if (dp_ckpt_check_task(ck, TASK_NAME, err)) return -1;
    const dp_run_settings now = lm_settings(cfg);
    if (dp_ckpt_check_settings(ck, &now, err)) return -1;
    /* the starting point is in the checkpoint's parameters; a different --init would claim another */
    const char *init = saved_lm_str(ck, "init");
    if (!(is_random(init) && is_random(cfg->init)) && !(init && cfg->init && strcmp(init, cfg->init) == 0))
        return dp_fail(err, "%s: the run started from --init %s; cannot resume with --init %s", dp_checkpoint_path(ck),
                       init ? init : "random", cfg->init ? cfg->init : "random");
    /* the frozen parts must stay frozen: otherwise the run would not be the one the checkpoint began */
    const char *only = saved_lm_str(ck, "train_only");
    char canon[1024] = "";
    if (cfg->train_only && dp_lm_train_only(cfg->train_only, &cfg->model, canon, sizeof canon, NULL, NULL, err))
        return -1;
    if (strcmp(only ? only : "", canon) != 0)
        return dp_fail(err, "%s: the run trains %s; cannot resume with --train-only %s", dp_checkpoint_path(ck),
                       only ? only : "every parameter", canon[0] ? canon : "(every parameter)");
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
    cfg->init = saved_lm_str(ck, "init");
    cfg->train_only = saved_lm_str(ck, "train_only");
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
    lm_task t = {cfg, train, dev, test, res, dp_malloc(sizeof(len_id) * (size_t)N), ""};
    if (cfg->train_only && dp_lm_train_only(cfg->train_only, &cfg->model, t.train_only, sizeof t.train_only, NULL,
                                            NULL, err)) {
        free(t.sort);
        return -1;
    }
    res->n_train = N;
    if (cfg->resume) { /* the initial model's dev perplexity, as the fresh run measured it */
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(dp_ckpt_config_json(cfg->resume), "lm");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(x, "init_dev_perplexity");
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(x, "init_dev_loss");
        if (cJSON_IsNumber(p) && cJSON_IsNumber(l)) {
            res->has_init_dev = 1;
            res->init_dev.perplexity = p->valuedouble;
            res->init_dev.loss = l->valuedouble;
        }
    }
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
        .init_params = lm_init_params,
        .freeze = lm_freeze,
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
