/* The Transformer: parameter layout, initialisation, forward and backward passes composed from the
 * ops of the model's backend (src/backend: the CPU kernels of src/ops, or CUDA). Written once for
 * every device; the backward visibly mirrors the forward in reverse. */
#include <math.h>
#include <stdio.h>

#include "model/model_internal.h"

dp_model_config dp_model_config_default(int32_t n_items, int max_len) {
    dp_model_config c = {0};
    c.n_items = n_items;
    c.max_len = max_len;
    c.d_model = 64;
    c.n_heads = 1;
    c.n_layers = 2;
    c.d_ff = 0;
    c.tied = 1;
    c.causal = 1;
    c.dropout = 0.2f;
    return c;
}

int dp_model_config_validate(const dp_model_config *c, dp_error *err) {
    if (c->n_items < 1) return dp_fail(err, "model: n_items must be at least 1 (got %d)", c->n_items);
    if (c->max_len < 1 || c->max_len > 100000) return dp_fail(err, "model: max_len must be in [1, 100000] (got %d)", c->max_len);
    if (c->d_model < 1 || c->d_model > 65536) return dp_fail(err, "model: d_model must be in [1, 65536] (got %d)", c->d_model);
    if (c->n_heads < 1 || c->d_model % c->n_heads != 0)
        return dp_fail(err, "model: d_model (%d) must be divisible by n_heads (%d)", c->d_model, c->n_heads);
    if (c->n_layers < 0 || c->n_layers > 1000) return dp_fail(err, "model: n_layers must be in [0, 1000] (got %d)", c->n_layers);
    if (c->d_ff < 0) return dp_fail(err, "model: d_ff must be positive (got %d)", c->d_ff);
    if (!(c->dropout >= 0 && c->dropout < 1)) return dp_fail(err, "model: dropout must be in [0, 1) (got %g)", c->dropout);
    if (c->n_classes != 0 && (c->n_classes < 2 || c->n_classes > 65536))
        return dp_fail(err, "model: n_classes must be 0 (next-item prediction) or in [2, 65536] (got %d)", c->n_classes);
    if (c->n_classes && c->tied)
        return dp_fail(err, "model: a classification model has no item output layer to tie its embedding to (use untied)");
    if (c->pool != DP_POOL_FIRST && c->pool != DP_POOL_MEAN) return dp_fail(err, "model: unknown pooling %d", c->pool);
    if (!(c->rep_clip >= 0 && c->rep_clip < 1e30)) return dp_fail(err, "model: rep_clip must be >= 0 (got %g)", c->rep_clip);
    if (c->rep_clip > 0 && !c->n_classes) return dp_fail(err, "model: rep_clip applies to classification models only");
    size_t tl = 0;
    while (tl < sizeof c->tokenizer && c->tokenizer[tl]) tl++;
    if (tl == sizeof c->tokenizer) return dp_fail(err, "model: tokenizer spec is not terminated");
    for (size_t k = 0; k < tl; k++) {
        char ch = c->tokenizer[k];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == ':'))
            return dp_fail(err, "model: tokenizer spec may hold only lower-case letters, digits and ':'");
    }
    if (tl && !c->n_classes) return dp_fail(err, "model: a tokenizer applies to classification models only");
    if (c->family != DP_FAMILY_REC && c->family != DP_FAMILY_GPT2) return dp_fail(err, "model: unknown family %d", c->family);
    if (c->activation != DP_ACT_GELU && c->activation != DP_ACT_GELU_TANH)
        return dp_fail(err, "model: unknown activation %d", c->activation);
    if (c->positions != DP_POS_WINDOW && c->positions != DP_POS_FROM_FIRST)
        return dp_fail(err, "model: unknown position rule %d", c->positions);
    if (c->family == DP_FAMILY_GPT2) {
        if (c->n_classes) return dp_fail(err, "model: a gpt2-family model is a language model (n_classes must be 0)");
        if (!c->causal) return dp_fail(err, "model: a gpt2-family model must be causal");
        if (c->positions != DP_POS_FROM_FIRST)
            return dp_fail(err, "model: a gpt2-family model counts positions from each sequence's first token "
                                "(positions from_first)");
    }
    return 0;
}

static const char *const FAMILY_NAMES[] = {"rec", "gpt2"};
static const char *const ACTIVATION_NAMES[] = {"gelu", "gelu_tanh"};
static const char *const POSITIONS_NAMES[] = {"window", "from_first"};

static int name_index(const char *const *names, int n, const char *s) {
    for (int i = 0; s && i < n; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}
const char *dp_model_family_name(int v) { return v >= 0 && v < 2 ? FAMILY_NAMES[v] : "?"; }
const char *dp_model_activation_name(int v) { return v >= 0 && v < 2 ? ACTIVATION_NAMES[v] : "?"; }
const char *dp_model_positions_name(int v) { return v >= 0 && v < 2 ? POSITIONS_NAMES[v] : "?"; }
int dp_model_family_parse(const char *s) { return name_index(FAMILY_NAMES, 2, s); }
int dp_model_activation_parse(const char *s) { return name_index(ACTIVATION_NAMES, 2, s); }
int dp_model_positions_parse(const char *s) { return name_index(POSITIONS_NAMES, 2, s); }

static int d_ff_of(const dp_model_config *c) { return c->d_ff > 0 ? c->d_ff : 4 * c->d_model; }

/* Walks every tensor in a fixed order. With `reg` set it appends the tensor to the table and
 * grows n_params; in both cases it points the view slot at base + offset. */
typedef struct {
    dp_model *m;
    real *base;
    int reg;
    int idx;
} layout_walk;

static void slot(layout_walk *w, real **dst, const char *name, int ndim, int64_t s0, int64_t s1, int decay) {
    dp_model *m = w->m;
    if (w->reg) {
        dp_param_tensor *t = &m->tensors[m->n_tensors++];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->offset = m->n_params;
        t->ndim = ndim;
        t->shape[0] = s0;
        t->shape[1] = ndim > 1 ? s1 : 1;
        t->size = (size_t)s0 * (size_t)(ndim > 1 ? s1 : 1);
        t->decay = decay;
        /* Keep every tensor 64-byte aligned for vector loads. */
        m->n_params += (t->size + 15) / 16 * 16;
    }
    if (dst) *dst = w->base ? w->base + m->tensors[w->idx].offset : NULL;
    w->idx++;
}

/* v may be NULL to only register the tensors (reg = 1): the table without any view. */
static void layout(dp_model *m, real *base, dp_param_view *v, int reg) {
    const dp_model_config *c = &m->cfg;
    int C = c->d_model, F = d_ff_of(c);
    int64_t V1 = (int64_t)c->n_items + 1;
    layout_walk w = {m, base, reg, 0};
    char nm[64];
    slot(&w, v ? &v->E : NULL, "item_emb.weight", 2, V1, C, 0);
    slot(&w, v ? &v->P : NULL, "pos_emb.weight", 2, c->max_len, C, 0);
    for (int l = 0; l < c->n_layers; l++) {
        dp_layer_view *L = v ? &v->layer[l] : NULL;
#define S(field, suffix, nd, a, b, dec) \
    snprintf(nm, sizeof nm, "layers.%d.%s", l, suffix); \
    slot(&w, L ? &L->field : NULL, nm, nd, a, b, dec)
        S(ln1_w, "ln1.weight", 1, C, 0, 0);
        S(ln1_b, "ln1.bias", 1, C, 0, 0);
        S(qkv_w, "attn.qkv.weight", 2, 3 * C, C, 1);
        S(qkv_b, "attn.qkv.bias", 1, 3 * C, 0, 0);
        S(proj_w, "attn.proj.weight", 2, C, C, 1);
        S(proj_b, "attn.proj.bias", 1, C, 0, 0);
        S(ln2_w, "ln2.weight", 1, C, 0, 0);
        S(ln2_b, "ln2.bias", 1, C, 0, 0);
        S(fc1_w, "ffn.fc1.weight", 2, F, C, 1);
        S(fc1_b, "ffn.fc1.bias", 1, F, 0, 0);
        S(fc2_w, "ffn.fc2.weight", 2, C, F, 1);
        S(fc2_b, "ffn.fc2.bias", 1, C, 0, 0);
#undef S
    }
    slot(&w, v ? &v->lnf_w : NULL, "ln_f.weight", 1, C, 0, 0);
    slot(&w, v ? &v->lnf_b : NULL, "ln_f.bias", 1, C, 0, 0);
    if (c->n_classes) {
        if (v) v->out_w = NULL;
        slot(&w, v ? &v->head_w : NULL, "head.weight", 2, c->n_classes, C, 1);
        slot(&w, v ? &v->head_b : NULL, "head.bias", 1, c->n_classes, 0, 0);
    } else if (c->tied) {
        if (v) v->out_w = v->E;
    } else {
        slot(&w, v ? &v->out_w : NULL, "out.weight", 2, V1, C, 1);
    }
}

/* Buffers come from the model's backend. A failed allocation (device memory is finite) is recorded
 * in m's allocation error and yields NULL; dp_model_create checks once at the end. */
static dp_error alloc_err;
static int alloc_failed;
static void *balloc(const dp_model *m, size_t bytes) {
    if (alloc_failed) return NULL;
    void *p = m->be->alloc(bytes ? bytes : 1, &alloc_err);
    if (!p) alloc_failed = 1;
    return p;
}
static real *alloc_real(const dp_model *m, size_t n) { return balloc(m, sizeof(real) * (n ? n : 1)); }
static void bfree(const dp_model *m, void *p) {
    if (p) m->be->free(p);
}

static void free_keep(dp_model *m);

static real **alloc_per_layer(const dp_model *m, int n_layers, size_t n) {
    real **a = dp_calloc((size_t)n_layers + 1, sizeof(real *));
    for (int l = 0; l < n_layers; l++) a[l] = alloc_real(m, n);
    return a;
}

static void free_per_layer(const dp_model *m, real **a, int n_layers) {
    if (!a) return;
    for (int l = 0; l < n_layers; l++) bfree(m, a[l]);
    free(a);
}


static double normal01(uint64_t *s) {
    double u1 = ((dp_splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (dp_splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void init_params(dp_model *m, uint64_t seed) {
    real *host = model_on_host(m) ? m->params : dp_alloc_aligned(sizeof(real) * m->n_params);
    uint64_t s = seed ^ 0x5DEECE66DULL;
    double resid_scale = 1.0 / sqrt(2.0 * (m->cfg.n_layers > 0 ? m->cfg.n_layers : 1));
    for (int i = 0; i < m->n_tensors; i++) {
        dp_param_tensor *t = &m->tensors[i];
        real *x = host + t->offset;
        const char *n = t->name;
        size_t len = strlen(n);
        int is_bias = len >= 4 && strcmp(n + len - 4, "bias") == 0;
        int is_ln = strstr(n, "ln") != NULL && !is_bias;
        if (is_bias) continue; /* zero */
        if (is_ln) {
            for (size_t k = 0; k < t->size; k++) x[k] = 1;
            continue;
        }
        double std = 0.02;
        if (strstr(n, "proj.weight") || strstr(n, "fc2.weight")) std *= resid_scale;
        for (size_t k = 0; k < t->size; k++) x[k] = (real)(std * normal01(&s));
    }
    /* The padding row carries no information. */
    memset(host + (m->p.E - m->params), 0, sizeof(real) * (size_t)m->cfg.d_model);
    if (m->p.out_w && !m->cfg.tied) memset(host + (m->p.out_w - m->params), 0, sizeof(real) * (size_t)m->cfg.d_model);
    if (host != m->params) {
        m->be->upload(m->params, host, sizeof(real) * m->n_params);
        free(host);
    }
}

/* Bytes dp_model_create allocates for the parameters, the gradients and the activations of batches
 * of B sequences (c->d_ff resolved). In double: an absurd configuration must not overflow the count.
 * Mirrors the allocations of dp_model_create; keep the two in step. */
static double model_bytes(const dp_model_config *c, size_t n_params, int B) {
    const double NL = c->n_layers, C = c->d_model, F = c->d_ff, T = c->max_len, H = c->n_heads;
    const double N = (double)B * T;
    double per_layer = 7 * N * C + 4 * N + (double)B * H * T * T + 2 * N * F;
    double singles = 10 * N * C + 4 * N + (NL > 0 ? N * F : 0) + (double)B * C +
                     (double)DP_MAX(classifier_scratch_size((long)N, c->d_model, c->n_items),
                                    classifier_dp_scratch_size(B, c->max_len, c->d_model, c->n_items));
    double reals = 2.0 * (double)n_params + (NL + 1) * N * C + NL * per_layer + singles;
    return reals * sizeof(real);
}

/* Validation of what dp_model_create is asked for, shared with dp_model_config_tensors. */
static int check_create(const dp_model_config *cfg, int max_batch, dp_error *err) {
    if (dp_model_config_validate(cfg, err)) return -1;
    if (max_batch < 1) return dp_fail(err, "model: max_batch must be at least 1");
    if (12 * cfg->n_layers + 7 > DP_MAX_TENSORS)
        return dp_fail(err, "model: at most %d layers are supported", (DP_MAX_TENSORS - 7) / 12);
    return 0;
}

int dp_model_config_tensors(const dp_model_config *cfg, dp_param_tensor *out, dp_error *err) {
    if (check_create(cfg, 1, err)) return -1;
    dp_model *m = dp_calloc(1, sizeof *m);
    m->cfg = *cfg;
    if (m->cfg.d_ff == 0) m->cfg.d_ff = 4 * cfg->d_model;
    layout(m, NULL, NULL, 1);
    int n = m->n_tensors;
    memcpy(out, m->tensors, (size_t)n * sizeof *out);
    free(m);
    return n;
}

dp_model *dp_model_create_on(const dp_model_config *cfg, int max_batch, uint64_t seed, dp_device device,
                             dp_error *err) {
    if (check_create(cfg, max_batch, err)) return NULL;
    const dp_backend *be = dp_backend_of(device, err);
    if (!be) return NULL;
    int NL = cfg->n_layers;
    dp_model *m = dp_calloc(1, sizeof *m);
    m->be = be;
    m->cfg = *cfg;
    m->full_len = cfg->max_len;
    if (m->cfg.d_ff == 0) m->cfg.d_ff = 4 * cfg->d_model;
    m->max_batch = max_batch;
    layout(m, NULL, NULL, 1);
    /* Refuse what cannot fit rather than fail (or be killed) half-way through the allocations: a
     * configuration read from a file can ask for anything. (Device memory is checked by the
     * allocations themselves, which fail cleanly.) */
    double need = model_bytes(&m->cfg, m->n_params, max_batch), have = (double)dp_physical_memory();
    if (model_on_host(m) && have > 0 && need > have) {
        dp_fail(err, "model: this configuration needs %.1f GiB for batches of %d sequences (parameters, gradients "
                "and activations), more than the %.1f GiB of memory of this machine", need / 1073741824.0, max_batch,
                have / 1073741824.0);
        free(m);
        return NULL;
    }
    alloc_failed = 0;
    m->p.layer = dp_calloc((size_t)(NL > 0 ? NL : 1), sizeof(dp_layer_view));
    m->g.layer = dp_calloc((size_t)(NL > 0 ? NL : 1), sizeof(dp_layer_view));
    m->params = alloc_real(m, m->n_params);
    m->grads = alloc_real(m, m->n_params);
    if (alloc_failed) goto fail;
    layout(m, m->params, &m->p, 0);
    layout(m, m->grads, &m->g, 0);
    init_params(m, seed);

    const int C = m->cfg.d_model, F = m->cfg.d_ff, T = m->cfg.max_len, H = m->cfg.n_heads, V = m->cfg.n_items;
    const size_t N = (size_t)max_batch * T;
    dp_activations *a = &m->a;
    a->res = dp_calloc((size_t)NL + 1, sizeof(real *));
    for (int l = 0; l <= NL; l++) a->res[l] = alloc_real(m, N * C);
    a->ln1 = alloc_per_layer(m, NL, N * C);
    a->ln1_mean = alloc_per_layer(m, NL, N);
    a->ln1_rstd = alloc_per_layer(m, NL, N);
    a->qkv = alloc_per_layer(m, NL, N * 3 * C);
    a->att = alloc_per_layer(m, NL, (size_t)max_batch * H * T * T);
    a->atty = alloc_per_layer(m, NL, N * C);
    a->res_mid = alloc_per_layer(m, NL, N * C);
    a->ln2 = alloc_per_layer(m, NL, N * C);
    a->ln2_mean = alloc_per_layer(m, NL, N);
    a->ln2_rstd = alloc_per_layer(m, NL, N);
    a->fc1 = alloc_per_layer(m, NL, N * F);
    a->gelu = alloc_per_layer(m, NL, N * F);
    a->lnf = alloc_real(m, N * C);
    a->lnf_mean = alloc_real(m, N);
    a->lnf_rstd = alloc_real(m, N);
    a->row_loss = alloc_real(m, N);
    a->row_weight = alloc_real(m, N);
    a->tmp = alloc_real(m, N * C);
    a->dres = alloc_real(m, N * C);
    a->dtmp = alloc_real(m, N * C);
    a->dln = alloc_real(m, N * C);
    a->datty = alloc_real(m, N * C);
    a->dh = alloc_real(m, N * C);
    a->dqkv = alloc_real(m, N * 3 * C);
    a->dbig = alloc_real(m, NL > 0 ? N * F : 0); /* d_ff is unused without layers */
    /* the plain output layer's chunks; the privacy engine grows it to its own size on first use
     * (model_dp_scratch), so that non-private runs do not hold the larger buffer */
    m->cls_scratch_reals = be->classifier_scratch_size((long)N, C, V);
    a->cls_scratch = alloc_real(m, m->cls_scratch_reals);
    a->last = alloc_real(m, (size_t)max_batch * C);
    const int K = m->cfg.n_classes > 0 ? m->cfg.n_classes : 1;
    a->pooled = alloc_real(m, (size_t)max_batch * C);
    a->rep = alloc_real(m, (size_t)max_batch * C);
    a->rep_scale = alloc_real(m, (size_t)max_batch);
    a->head_z = alloc_real(m, (size_t)max_batch * K);
    a->head_dz = alloc_real(m, (size_t)max_batch * K);
    if (model_on_host(m)) {
        m->host_row_weight = a->row_weight;
        m->host_row_loss = a->row_loss;
    } else {
        m->dev_ids = balloc(m, sizeof(int32_t) * N);
        m->dev_targets = balloc(m, sizeof(int32_t) * N);
        m->dev_labels = balloc(m, sizeof(int32_t) * (size_t)max_batch);
        m->dev_example_weight = alloc_real(m, (size_t)max_batch);
        m->dev_rep_noise = alloc_real(m, (size_t)max_batch * C);
        m->host_row_weight = dp_alloc_aligned(sizeof(real) * N);
        m->host_row_loss = dp_alloc_aligned(sizeof(real) * N);
    }
    if (alloc_failed) goto fail;
    return m;
fail:
    dp_fail(err, "model on %s: %s", be->name, alloc_err.msg);
    dp_model_free(m);
    return NULL;
}

dp_model *model_create_params_only(const dp_model_config *cfg, dp_error *err) {
    if (check_create(cfg, 1, err)) return NULL;
    const int NL = cfg->n_layers;
    dp_model *m = dp_calloc(1, sizeof *m);
    m->be = dp_backend_cpu();
    m->cfg = *cfg;
    m->full_len = cfg->max_len;
    if (m->cfg.d_ff == 0) m->cfg.d_ff = 4 * cfg->d_model;
    layout(m, NULL, NULL, 1);
    double have = (double)dp_physical_memory();
    if (have > 0 && (double)m->n_params * sizeof(real) > have) {
        dp_fail(err, "model: its %zu parameters need %.1f GiB, more than the %.1f GiB of memory of this machine",
                m->n_params, (double)m->n_params * sizeof(real) / 1073741824.0, have / 1073741824.0);
        free(m);
        return NULL;
    }
    m->p.layer = dp_calloc((size_t)(NL > 0 ? NL : 1), sizeof(dp_layer_view));
    m->g.layer = dp_calloc((size_t)(NL > 0 ? NL : 1), sizeof(dp_layer_view));
    m->params = dp_alloc_aligned(sizeof(real) * (m->n_params ? m->n_params : 1));
    layout(m, m->params, &m->p, 0);
    return m;
}

dp_model *dp_model_create(const dp_model_config *cfg, int max_batch, uint64_t seed, dp_error *err) {
    return dp_model_create_on(cfg, max_batch, seed, DP_DEVICE_CPU, err);
}

void dp_model_free(dp_model *m) {
    if (!m) return;
    int NL = m->cfg.n_layers;
    dp_activations *a = &m->a;
    if (a->res)
        for (int l = 0; l <= NL; l++) bfree(m, a->res[l]);
    free(a->res);
    free_per_layer(m, a->ln1, NL);
    free_per_layer(m, a->ln1_mean, NL);
    free_per_layer(m, a->ln1_rstd, NL);
    free_per_layer(m, a->qkv, NL);
    free_per_layer(m, a->att, NL);
    free_per_layer(m, a->atty, NL);
    free_per_layer(m, a->res_mid, NL);
    free_per_layer(m, a->ln2, NL);
    free_per_layer(m, a->ln2_mean, NL);
    free_per_layer(m, a->ln2_rstd, NL);
    free_per_layer(m, a->fc1, NL);
    free_per_layer(m, a->gelu, NL);
    real *singles[] = {a->lnf, a->lnf_mean, a->lnf_rstd, a->row_loss, a->row_weight, a->tmp, a->dres, a->dtmp,
                       a->dln, a->datty, a->dh, a->dqkv, a->dbig, a->cls_scratch, a->last,
                       a->pooled, a->rep, a->rep_scale, a->head_z, a->head_dz,
                       m->dev_example_weight, m->dev_rep_noise, m->dev_scores};
    for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++) bfree(m, singles[i]);
    bfree(m, m->dev_ids);
    bfree(m, m->dev_targets);
    bfree(m, m->dev_labels);
    if (!model_on_host(m)) {
        free(m->host_row_weight);
        free(m->host_row_loss);
    }
    free_keep(m);
    reatt_free(m);
    bfree(m, m->params);
    bfree(m, m->grads);
    free(m->p.layer);
    free(m->g.layer);
    free(m);
}

const dp_model_config *dp_model_config_of(const dp_model *m) { return &m->cfg; }
int dp_model_max_batch(const dp_model *m) { return m->max_batch; }
size_t dp_model_num_params(const dp_model *m) { return m->n_params; }
dp_real *dp_model_params(dp_model *m) { return m->params; }
dp_real *dp_model_grads(dp_model *m) { return m->grads; }
int dp_model_num_tensors(const dp_model *m) { return m->n_tensors; }
const dp_param_tensor *dp_model_tensor(const dp_model *m, int i) { return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL; }
void dp_model_zero_grad(dp_model *m) { m->be->zero(m->grads, sizeof(real) * m->n_params); }
dp_device dp_model_device(const dp_model *m) { return m->be->device; }
void dp_model_scale_grads(dp_model *m, double a) { m->be->vec_scale(m->grads, m->n_params, a); }
int dp_model_grads_finite(const dp_model *m) { return m->be->count_nonfinite(m->grads, m->n_params) == 0; }

void dp_model_read_params(const dp_model *m, dp_real *dst) {
    m->be->download(dst, m->params, sizeof(real) * m->n_params);
}
void dp_model_write_params(dp_model *m, const dp_real *src) { m->be->upload(m->params, src, sizeof(real) * m->n_params); }
void dp_model_read_grads(const dp_model *m, dp_real *dst) { m->be->download(dst, m->grads, sizeof(real) * m->n_params); }

int dp_model_set_device(dp_model *m, dp_device device, dp_error *err) {
    if (m->be->device == device) return 0;
    if (m->ra.enabled)
        return dp_fail(err, "model: Re-Attention is not available on device %s yet; run it on the cpu",
                       dp_device_name(device));
    model_set_window(m, 0);
    dp_model *n = dp_model_create_on(&m->cfg, m->max_batch, 0, device, err);
    if (!n) return -1;
    real *host = dp_alloc_aligned(sizeof(real) * m->n_params);
    dp_model_read_params(m, host);
    dp_model_write_params(n, host);
    dp_model_read_grads(m, host);
    n->be->upload(n->grads, host, sizeof(real) * m->n_params);
    free(host);
    /* swap the contents, so that the caller's handle now owns the new buffers */
    dp_model tmp = *m;
    *m = *n;
    *n = tmp;
    dp_model_free(n);
    return 0;
}

/* Independent dropout streams per (layer, site) from one per-step seed. */
static uint64_t site_seed(uint64_t seed, int layer, int site) {
    uint64_t s = seed ^ ((uint64_t)(layer + 1) << 32) ^ (uint64_t)(site + 1) * 0xD1B54A32D192ED03ull;
    return dp_splitmix64(&s);
}

const real *model_upload_reals(const dp_model *m, real *dev, const real *host, size_t n) {
    if (!host || model_on_host(m)) return host;
    m->be->upload(dev, host, sizeof(real) * n);
    return dev;
}

static const int32_t *upload_ints(const dp_model *m, int32_t *dev, const int32_t *host, size_t n) {
    if (!host || model_on_host(m)) return host;
    m->be->upload(dev, host, sizeof(int32_t) * n);
    return dev;
}

void model_use_targets(dp_model *m, const dp_batch *bt) {
    m->cur_targets = upload_ints(m, m->dev_targets, bt->targets, (size_t)bt->B * bt->T);
    m->cur_labels = upload_ints(m, m->dev_labels, bt->labels, (size_t)bt->B);
}

real *model_dp_scratch(dp_model *m, dp_error *err) {
    size_t need = m->be->classifier_dp_scratch_size(m->max_batch, m->full_len, m->cfg.d_model, m->cfg.n_items);
    if (need > m->cls_scratch_reals) {
        real *p = m->be->alloc(sizeof(real) * need, err);
        if (!p) return NULL;
        m->be->free(m->a.cls_scratch);
        m->a.cls_scratch = p;
        m->cls_scratch_reals = need;
    }
    return m->a.cls_scratch;
}

/* Frees what model_alloc_keep allocated (layer 0's kept gradients are aliases of scratch buffers). */
static void free_keep(dp_model *m) {
    const int NL = m->cfg.n_layers;
    real **keeps[] = {m->keep_qkv, m->keep_proj, m->keep_fc1, m->keep_fc2};
    for (int k = 0; k < 4; k++) {
        if (!keeps[k]) continue;
        for (int l = 1; l < NL; l++) bfree(m, keeps[k][l]);
        free(keeps[k]);
    }
    m->keep_qkv = m->keep_proj = m->keep_fc1 = m->keep_fc2 = NULL;
    void *cw[] = {m->cw.lo, m->cw.zeros, m->cw.sq, m->cw.c, m->cw.row_a, m->cw.Q};
    for (size_t i = 0; i < sizeof cw / sizeof cw[0]; i++) bfree(m, cw[i]);
    if (m->cw.ln)
        for (int i = 0; i < m->cw.n_ln; i++) bfree(m, m->cw.ln[i]);
    free(m->cw.ln);
    memset(&m->cw, 0, sizeof m->cw);
}

int model_alloc_keep(dp_model *m, dp_error *err) {
    if (m->keep_qkv) return 0;
    const int NL = m->cfg.n_layers, C = m->cfg.d_model, F = m->cfg.d_ff;
    const size_t N = (size_t)m->max_batch * m->full_len;
    real ***keeps[] = {&m->keep_qkv, &m->keep_proj, &m->keep_fc1, &m->keep_fc2};
    const size_t width[] = {(size_t)3 * C, (size_t)C, (size_t)F, (size_t)C};
    alloc_failed = 0;
    for (int k = 0; k < 4; k++) {
        *keeps[k] = dp_calloc((size_t)NL + 1, sizeof(real *));
        for (int l = 1; l < NL; l++) (*keeps[k])[l] = alloc_real(m, N * width[k]);
    }
    const size_t B = (size_t)m->max_batch;
    m->cw.lo = balloc(m, sizeof(int) * B);
    m->cw.zeros = balloc(m, sizeof(int) * B);
    m->cw.sq = balloc(m, sizeof(double) * B);
    m->cw.c = balloc(m, sizeof(double) * B);
    m->cw.row_a = alloc_real(m, N);
    m->cw.Q = alloc_real(m, N * C);
    m->cw.n_ln = 2 * (2 * NL + 1);
    m->cw.ln = dp_calloc((size_t)m->cw.n_ln, sizeof(real *));
    for (int i = 0; i < m->cw.n_ln; i++) m->cw.ln[i] = alloc_real(m, B * C);
    if (alloc_failed) {
        dp_fail(err, "%s", alloc_err.msg);
        free_keep(m);
        return -1;
    }
    /* Layer 0 is the last one the backward pass visits, so its kept gradients can live in scratch
     * buffers that a book-keeping backward pass does not otherwise use after it: dqkv and dtmp are
     * unused with a sink, tmp holds forward scratch only, and dbig's last use is layer 0's own GELU
     * backward, which writes its result in place. */
    if (NL > 0) {
        m->keep_qkv[0] = m->a.dqkv;
        m->keep_proj[0] = m->a.dtmp;
        m->keep_fc1[0] = m->a.dbig;
        m->keep_fc2[0] = m->a.tmp;
    }
    return 0;
}

int model_mask_window(const dp_model *m, dp_mask_window *w) {
    *w = (dp_mask_window){m->full_len, m->win_off, m->ex0, m->slot};
    return m->win_off > 0 || m->slot != NULL;
}

const real *model_window_positions(const dp_model *m, const real *P) {
    return m->cfg.positions == DP_POS_FROM_FIRST ? P : P + (size_t)m->win_off * m->cfg.d_model;
}

int model_window_ok(const dp_model *m, int train) {
    const dp_backend *be = m->be;
    return !train || !(m->cfg.dropout > 0) ||
           (be->dropout_window && be->attention_forward_window && be->attention_backward_window);
}

/* Dropout of x[B, T, C] in place (forward or backward: the mask is its own adjoint), with the masks of
 * the full window when the pass runs on a trimmed one (win). */
static void drop(const dp_model *m, int win, const dp_mask_window *mw, real *x, int B, float p, uint64_t seed,
                 uint64_t base) {
    const dp_backend *be = m->be;
    const int T = m->cfg.max_len, C = m->cfg.d_model;
    if (win) be->dropout_window(x, x, B, T, C, p, seed, mw);
    else be->dropout_forward(x, x, (long)B * T * C, p, seed, base);
}

static void drop_into(const dp_model *m, int win, const dp_mask_window *mw, real *out, const real *x, int B, float p,
                      uint64_t seed, uint64_t base) {
    const dp_backend *be = m->be;
    const int T = m->cfg.max_len, C = m->cfg.d_model;
    if (win) be->dropout_window(out, x, B, T, C, p, seed, mw);
    else be->dropout_backward(out, x, (long)B * T * C, p, seed, base);
}

/* Runs the blocks and the final LayerNorm: fills every saved activation and a->lnf. */
void model_forward_body(dp_model *m, const int32_t *host_ids, int B, int train, uint64_t seed) {
    const dp_model_config *c = &m->cfg;
    const dp_backend *be = m->be;
    const int C = c->d_model, F = c->d_ff, T = c->max_len, H = c->n_heads;
    const long N = (long)B * T;
    const float p = train ? c->dropout : 0.0f;
    const uint64_t base = (uint64_t)m->ex0 * T * C; /* mask index of this batch's first element */
    dp_mask_window mw;
    const int win = model_mask_window(m, &mw) && p > 0; /* a trimmed window keeps its full-window masks */
    dp_activations *a = &m->a;
    if (win && !model_window_ok(m, train)) {
        fprintf(stderr, "dpformer: internal error: a trimmed window with dropout on %s, which has no window masks\n",
                be->name);
        abort();
    }
    m->last_B = B;
    /* Re-Attention: its variance track runs alongside (frozen: the last pass's correction is reused) */
    const int ra = m->ra.enabled, track = ra && !m->ra.frozen;
    attention_reatt ra_args;
    const int32_t *ids = m->cur_ids = upload_ints(m, m->dev_ids, host_ids, (size_t)N);
    const int from_first = c->positions == DP_POS_FROM_FIRST;
    void (*gelu)(real *, const real *, long) = c->activation == DP_ACT_GELU_TANH ? be->gelu_tanh_forward : be->gelu_forward;
    be->embedding_forward(a->res[0], ids, m->p.E, model_window_positions(m, m->p.P), B, T, C, from_first);
    drop(m, win, &mw, a->res[0], B, p, site_seed(seed, -1, 0), base);
    if (track) reatt_track_input(m, ids, B, p, site_seed(seed, -1, 0), base);
    for (int l = 0; l < c->n_layers; l++) {
        const dp_layer_view *L = &m->p.layer[l];
        be->layernorm_forward(a->ln1[l], a->ln1_mean[l], a->ln1_rstd[l], a->res[l], L->ln1_w, L->ln1_b, N, C);
        be->linear_forward(a->qkv[l], a->ln1[l], L->qkv_w, L->qkv_b, N, C, 3 * C);
        if (ra) {
            if (track) reatt_track_keys(m, l, B);
            reatt_attention_args(m, l, &ra_args);
        }
        if (win)
            be->attention_forward_window(a->atty[l], a->att[l], a->qkv[l], ids, c->causal, p, site_seed(seed, l, 1), &mw,
                                         B, T, C, H, ra ? &ra_args : NULL);
        else
            be->attention_forward_ra(a->atty[l], a->att[l], a->qkv[l], ids, c->causal, p, site_seed(seed, l, 1), m->ex0,
                                     B, T, C, H, ra ? &ra_args : NULL);
        be->linear_forward(a->tmp, a->atty[l], L->proj_w, L->proj_b, N, C, C);
        drop(m, win, &mw, a->tmp, B, p, site_seed(seed, l, 2), base);
        be->add(a->res_mid[l], a->res[l], a->tmp, N * C);
        be->layernorm_forward(a->ln2[l], a->ln2_mean[l], a->ln2_rstd[l], a->res_mid[l], L->ln2_w, L->ln2_b, N, C);
        be->linear_forward(a->fc1[l], a->ln2[l], L->fc1_w, L->fc1_b, N, C, F);
        gelu(a->gelu[l], a->fc1[l], N * F);
        be->linear_forward(a->tmp, a->gelu[l], L->fc2_w, L->fc2_b, N, F, C);
        drop(m, win, &mw, a->tmp, B, p, site_seed(seed, l, 3), base);
        be->add(a->res[l + 1], a->res_mid[l], a->tmp, N * C);
        if (track && l < c->n_layers - 1) reatt_track_block(m, l, B, p, site_seed(seed, l, 2), site_seed(seed, l, 3), base);
    }
    be->layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->res[c->n_layers], m->p.lnf_w, m->p.lnf_b, N, C);
}

/* Row weights w_b / n_b for the loss positions of each example (n_b = its number of targets). */
void model_set_row_weights(dp_model *m, const dp_batch *bt, const real *example_weight) {
    const int T = bt->T;
    for (int b = 0; b < bt->B; b++) {
        int n = 0;
        for (int t = 0; t < T; t++) n += bt->targets[(size_t)b * T + t] != 0;
        real w = n ? (example_weight ? example_weight[b] : 1) / (real)n : 0;
        for (int t = 0; t < T; t++) m->host_row_weight[(size_t)b * T + t] = bt->targets[(size_t)b * T + t] ? w : 0;
    }
    model_upload_reals(m, m->a.row_weight, m->host_row_weight, (size_t)bt->B * T);
}

void model_collect_losses(const dp_model *m, const dp_batch *bt, double *per_example_loss) {
    if (!per_example_loss) return;
    const int T = bt->T;
    if (!model_on_host(m)) m->be->download(m->host_row_loss, m->a.row_loss, sizeof(real) * (size_t)bt->B * T);
    for (int b = 0; b < bt->B; b++) {
        double s = 0;
        int n = 0;
        for (int t = 0; t < T; t++) {
            size_t r = (size_t)b * T + t;
            if (bt->targets[r]) {
                s += m->host_row_loss[r];
                n++;
            }
        }
        per_example_loss[b] = n ? s / n : 0;
    }
}

void model_set_window(dp_model *m, int T) { model_set_window_at(m, T, 0); }
void dp_model_set_window(dp_model *m, int T) { model_set_window(m, T); }

void model_set_window_at(dp_model *m, int T, int off) {
    if (T >= 1 && off >= 0 && off <= m->full_len - T) {
        m->cfg.max_len = T;
        m->win_off = off;
    } else {
        m->cfg.max_len = m->full_len;
        m->win_off = 0;
    }
}

void dp_model_set_window_last(dp_model *m, int T) {
    if (T >= 1 && T <= m->full_len) model_set_window_at(m, T, m->full_len - T);
    else model_set_window_at(m, 0, 0);
}

void dp_model_set_mask_slots(dp_model *m, const int32_t *slot) { m->slot = slot; }

int dp_model_window_ok(const dp_model *m, int train) { return model_window_ok(m, train); }

static int check_batch(const dp_model *m, const dp_batch *bt) {
    if (bt->B < 0 || bt->B > m->max_batch || bt->T != m->cfg.max_len) {
        fprintf(stderr, "dpformer: internal error: batch %dx%d does not fit the model (max %dx%d)\n", bt->B, bt->T,
                m->max_batch, m->cfg.max_len);
        abort();
    }
    return bt->B > 0;
}

/* ---- classification head ---- */

void dp_model_set_rep_noise(dp_model *m, const dp_real *noise) { m->rep_noise = noise; }

void model_head_forward(dp_model *m, const dp_batch *bt, int train, const real *example_weight) {
    const dp_model_config *c = &m->cfg;
    const dp_backend *be = m->be;
    const int B = bt->B, C = c->d_model, K = c->n_classes;
    dp_activations *a = &m->a;
    model_use_targets(m, bt);
    const real *noise = train ? model_upload_reals(m, m->dev_rep_noise, m->rep_noise, (size_t)B * C) : NULL;
    const real *w = model_upload_reals(m, m->dev_example_weight, example_weight, (size_t)B);
    be->pool_forward(a->pooled, a->lnf, m->cur_ids, c->pool, B, c->max_len, C);
    be->rep_clip_forward(a->rep, a->rep_scale, a->pooled, noise, m->cfg.rep_clip, B, C);
    be->linear_forward(a->head_z, a->rep, m->p.head_w, m->p.head_b, B, C, K);
    be->softmax_xent(a->row_loss, a->head_dz, a->head_z, m->cur_labels, w, B, K);
}

void model_head_backward_input(dp_model *m, const dp_batch *bt) {
    const dp_model_config *c = &m->cfg;
    const dp_backend *be = m->be;
    const int B = bt->B, C = c->d_model, K = c->n_classes;
    dp_activations *a = &m->a;
    /* pooled and rep are free again once the head's input gradient is formed: reuse them */
    real *drep = a->tmp, *dpooled = a->last;
    be->linear_backward_input(drep, a->head_dz, m->p.head_w, B, C, K, 0);
    be->rep_clip_backward(dpooled, drep, a->pooled, a->rep_scale, B, C);
    be->pool_backward(a->dh, dpooled, m->cur_ids, c->pool, B, c->max_len, C);
}

void dp_model_class_logits(dp_model *m, const int32_t *ids, int B, dp_real *logits) {
    if (B <= 0 || !m->cfg.n_classes) return;
    const dp_backend *be = m->be;
    const int C = m->cfg.d_model, K = m->cfg.n_classes;
    model_forward_body(m, ids, B, 0, 0);
    be->pool_forward(m->a.pooled, m->a.lnf, m->cur_ids, m->cfg.pool, B, m->cfg.max_len, C);
    be->rep_clip_forward(m->a.rep, m->a.rep_scale, m->a.pooled, NULL, m->cfg.rep_clip, B, C);
    real *z = model_on_host(m) ? logits : m->a.head_z;
    be->linear_forward(z, m->a.rep, m->p.head_w, m->p.head_b, B, C, K);
    if (z != logits) be->download(logits, z, sizeof(real) * (size_t)B * K);
}

/* Per-example losses of a classification batch: row_loss[b] (host). */
static void head_losses(dp_model *m, int B, double *per_example_loss) {
    if (!per_example_loss) return;
    if (!model_on_host(m)) m->be->download(m->host_row_loss, m->a.row_loss, sizeof(real) * (size_t)B);
    for (int b = 0; b < B; b++) per_example_loss[b] = m->host_row_loss[b];
}

void dp_model_forward(dp_model *m, const dp_batch *bt, int train, uint64_t seed, double *per_example_loss) {
    if (!check_batch(m, bt)) return;
    const long N = (long)bt->B * bt->T;
    model_forward_body(m, bt->ids, bt->B, train, seed);
    if (m->cfg.n_classes) {
        model_head_forward(m, bt, train, NULL);
        head_losses(m, bt->B, per_example_loss);
        return;
    }
    /* Unit weights: only whether a row counts matters when no gradient is taken. */
    model_set_row_weights(m, bt, NULL);
    model_use_targets(m, bt);
    m->be->classifier_forward_backward(m->a.row_loss, NULL, NULL, m->a.lnf, m->p.out_w, m->cur_targets, m->a.row_weight,
                                       N, m->cfg.d_model, m->cfg.n_items, m->a.cls_scratch);
    model_collect_losses(m, bt, per_example_loss);
}

/* Parameter-gradient steps of the backward pass: immediate, or handed to the installed sink. */
static void grad_linear(dp_model *m, real *dW, real *db, real *G, const real *A, long N, int Cin, int Cout) {
    if (m->sink) m->sink->linear(m->sink->ctx, dW, db, G, A, Cin, Cout);
    else m->be->linear_backward_params(dW, db, G, A, N, Cin, Cout);
}

static void backward_layernorm(dp_model *m, real *dinp, real *dw, real *db, const real *dout, const real *inp,
                               const real *w, const real *mean, const real *rstd, long N, int C) {
    if (m->sink) {
        m->sink->layernorm(m->sink->ctx, dw, db, dout, inp, mean, rstd);
        m->be->layernorm_backward(dinp, NULL, NULL, dout, inp, w, mean, rstd, N, C);
    } else {
        m->be->layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    }
}

void model_backward_body(dp_model *m, const dp_batch *bt, int train, uint64_t seed) {
    const dp_model_config *c = &m->cfg;
    const dp_backend *be = m->be;
    const int B = bt->B, C = c->d_model, F = c->d_ff, T = c->max_len, H = c->n_heads;
    const long N = (long)B * T;
    const float p = train ? c->dropout : 0.0f;
    const uint64_t base = (uint64_t)m->ex0 * T * C;
    dp_mask_window mw;
    const int win = model_mask_window(m, &mw) && p > 0;
    const int32_t *ids = m->cur_ids; /* the forward pass's */
    dp_activations *a = &m->a;
    void (*gelu_backward)(real *, const real *, const real *, long) =
        c->activation == DP_ACT_GELU_TANH ? be->gelu_tanh_backward : be->gelu_backward;
    be->zero(a->dres, sizeof(real) * (size_t)N * C);
    backward_layernorm(m, a->dres, m->g.lnf_w, m->g.lnf_b, a->dh, a->res[c->n_layers], m->p.lnf_w, a->lnf_mean,
                       a->lnf_rstd, N, C);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const dp_layer_view *L = &m->p.layer[l];
        dp_layer_view *G = &m->g.layer[l];
        /* With a sink, each layer's output gradient goes to its own buffer: the sink keeps it. */
        real *g_fc2 = m->sink ? m->keep_fc2[l] : a->dtmp, *g_fc1 = m->sink ? m->keep_fc1[l] : a->dbig;
        real *g_proj = m->sink ? m->keep_proj[l] : a->dtmp, *g_qkv = m->sink ? m->keep_qkv[l] : a->dqkv;
        /* res[l+1] = res_mid + drop(fc2(gelu(fc1(ln2(res_mid))))) */
        drop_into(m, win, &mw, g_fc2, a->dres, B, p, site_seed(seed, l, 3), base);
        be->linear_backward_input(a->dbig, g_fc2, L->fc2_w, N, F, C, 0);
        grad_linear(m, G->fc2_w, G->fc2_b, g_fc2, a->gelu[l], N, F, C);
        gelu_backward(g_fc1, a->dbig, a->fc1[l], N * F);
        be->linear_backward_input(a->dln, g_fc1, L->fc1_w, N, C, F, 0);
        grad_linear(m, G->fc1_w, G->fc1_b, g_fc1, a->ln2[l], N, C, F);
        backward_layernorm(m, a->dres, G->ln2_w, G->ln2_b, a->dln, a->res_mid[l], L->ln2_w, a->ln2_mean[l],
                           a->ln2_rstd[l], N, C);
        /* res_mid = res[l] + drop(proj(attn(qkv(ln1(res[l]))))) */
        drop_into(m, win, &mw, g_proj, a->dres, B, p, site_seed(seed, l, 2), base);
        be->linear_backward_input(a->datty, g_proj, L->proj_w, N, C, C, 0);
        grad_linear(m, G->proj_w, G->proj_b, g_proj, a->atty[l], N, C, C);
        if (win)
            be->attention_backward_window(g_qkv, a->datty, a->qkv[l], a->att[l], ids, c->causal, p, site_seed(seed, l, 1),
                                          &mw, B, T, C, H);
        else
            be->attention_backward(g_qkv, a->datty, a->qkv[l], a->att[l], ids, c->causal, p, site_seed(seed, l, 1),
                                   m->ex0, B, T, C, H);
        be->linear_backward_input(a->dln, g_qkv, L->qkv_w, N, C, 3 * C, 0);
        grad_linear(m, G->qkv_w, G->qkv_b, g_qkv, a->ln1[l], N, C, 3 * C);
        backward_layernorm(m, a->dres, G->ln1_w, G->ln1_b, a->dln, a->res[l], L->ln1_w, a->ln1_mean[l], a->ln1_rstd[l],
                           N, C);
    }
    drop(m, win, &mw, a->dres, B, p, site_seed(seed, -1, 0), base);
    if (m->sink) m->sink->embedding(m->sink->ctx, m->g.E, m->g.P, a->dres);
    else
        be->embedding_backward(m->g.E, (real *)model_window_positions(m, m->g.P), a->dres, ids, B, T, C,
                               c->positions == DP_POS_FROM_FIRST);
    /* The padding rows are not parameters of the model in any meaningful sense. */
    be->zero(m->g.E, sizeof(real) * (size_t)C);
    if (m->g.out_w && !c->tied) be->zero(m->g.out_w, sizeof(real) * (size_t)C);
}

void dp_model_forward_backward(dp_model *m, const dp_batch *bt, const dp_real *example_weight, int train, uint64_t seed,
                               double *per_example_loss) {
    if (!check_batch(m, bt)) return;
    const dp_model_config *c = &m->cfg;
    const long N = (long)bt->B * bt->T;
    dp_activations *a = &m->a;
    model_forward_body(m, bt->ids, bt->B, train, seed);
    if (c->n_classes) {
        model_head_forward(m, bt, train, example_weight);
        head_losses(m, bt->B, per_example_loss);
        m->be->linear_backward_params(m->g.head_w, m->g.head_b, a->head_dz, a->rep, bt->B, c->d_model, c->n_classes);
        model_head_backward_input(m, bt);
        model_backward_body(m, bt, train, seed);
        return;
    }
    model_set_row_weights(m, bt, example_weight);
    model_use_targets(m, bt);
    m->be->classifier_forward_backward(a->row_loss, a->dh, m->g.out_w, a->lnf, m->p.out_w, m->cur_targets,
                                       a->row_weight, N, c->d_model, c->n_items, a->cls_scratch);
    model_collect_losses(m, bt, per_example_loss);
    model_backward_body(m, bt, train, seed);
}

void dp_model_score_last(dp_model *m, const int32_t *ids, int B, dp_real *scores) {
    if (B <= 0) return;
    if (m->cfg.n_classes) {
        fprintf(stderr, "dpformer: internal error: item scores asked of a classification model\n");
        abort();
    }
    const dp_backend *be = m->be;
    const int C = m->cfg.d_model, T = m->cfg.max_len, V1 = m->cfg.n_items + 1;
    model_forward_body(m, ids, B, 0, 0);
    be->copy_rows(m->a.last, sizeof(real) * C, m->a.lnf + (size_t)(T - 1) * C, sizeof(real) * (size_t)T * C,
                  sizeof(real) * C, (size_t)B);
    real *out = scores;
    if (!model_on_host(m)) {
        if (!m->dev_scores) {
            dp_error err;
            m->dev_scores = be->alloc(sizeof(real) * (size_t)m->max_batch * V1, &err);
            if (!m->dev_scores) {
                fprintf(stderr, "dpformer: %s (item scores on %s)\n", err.msg, be->name);
                exit(1);
            }
        }
        out = m->dev_scores;
    }
    be->linear_forward(out, m->a.last, m->p.out_w, NULL, B, C, V1);
    if (out != scores) be->download(scores, out, sizeof(real) * (size_t)B * V1);
}

double dp_model_step_flops(const dp_model_config *c, int B) {
    const double N = (double)B * c->max_len, C = c->d_model, F = c->d_ff > 0 ? c->d_ff : 4.0 * c->d_model;
    const double T = c->max_len, V = c->n_items;
    /* forward matmuls per layer: qkv, proj, fc1, fc2, and attention QKᵀ and AV (causal not discounted) */
    double layer_fwd = 2 * N * C * 3 * C + 2 * N * C * C + 2 * N * C * F * 2 + 2 * 2 * (double)B * T * T * C;
    double cls_fwd = c->n_classes ? 2.0 * B * C * c->n_classes : 2 * N * C * V;
    /* backward: two products per forward product (input and weight gradients) */
    return 3 * (c->n_layers * layer_fwd + cls_fwd);
}
