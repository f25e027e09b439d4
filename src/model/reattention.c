/* Re-Attention in the model: the configuration (include/dpformer/reattention.h) and the variance
 * track that model_forward_body runs alongside its layers, composed from the per-op rules of
 * src/ops/variance.c. The track of example b uses only example b's activations and the parameters
 * (no reduction over the batch), so a one-example pass reproduces exactly what the example got in
 * its batch, as the privacy engine's per-example reference requires. docs/reattention.md has the rules. */
#include <math.h>

#include "dpformer/reattention.h"
#include "model/model_internal.h"
#include "ops/ops.h"

dp_reattention_config dp_reattention_config_default(void) {
    dp_reattention_config c = {0};
    c.kappa = 1.0;
    return c;
}

static real *alloc_real(size_t n) { return dp_alloc_aligned(sizeof(real) * (n ? n : 1)); }

static void alloc_state(dp_model *m) {
    dp_reatt_state *s = &m->ra;
    if (s->freq) return;
    const int NL = m->cfg.n_layers, H = m->cfg.n_heads, T = m->full_len;
    const size_t V1 = (size_t)m->cfg.n_items + 1, N = (size_t)m->max_batch * T, NH = N * (size_t)H;
    s->freq = dp_calloc(V1, sizeof(double));
    s->r2_item = dp_calloc(V1, sizeof(double));
    s->kvar = dp_calloc((size_t)NL + 1, sizeof(real *));
    s->qsq = dp_calloc((size_t)NL + 1, sizeof(real *));
    for (int l = 0; l < NL; l++) {
        s->kvar[l] = alloc_real(NH);
        s->qsq[l] = alloc_real(NH);
    }
    s->v = alloc_real(N);
    s->vb = alloc_real(N);
    s->vc = alloc_real(N);
    s->xsq = alloc_real(N);
    s->vvar = alloc_real(NH);
    s->ovar = alloc_real(NH);
}

void reatt_free(dp_model *m) {
    dp_reatt_state *s = &m->ra;
    if (!s->freq) return;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        free(s->kvar[l]);
        free(s->qsq[l]);
    }
    free(s->kvar);
    free(s->qsq);
    real *singles[] = {s->v, s->vb, s->vc, s->xsq, s->vvar, s->ovar};
    for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++) free(singles[i]);
    free(s->freq);
    free(s->r2_item);
    memset(s, 0, sizeof *s);
}

int dp_model_set_reattention(dp_model *m, const dp_reattention_config *c, dp_error *err) {
    if (!c || !c->enabled) {
        m->ra.enabled = 0;
        return 0;
    }
    if (!model_on_host(m))
        return dp_fail(err, "reattention: not available on device %s yet (its variance track runs on the cpu only)",
                       m->be->name);
    /* The variance rules (docs/reattention.md) are those of the exact GELU and window positions. */
    if (m->cfg.activation != DP_ACT_GELU || m->cfg.positions != DP_POS_WINDOW)
        return dp_fail(err, "reattention: defined for models with the exact GELU and window positions (the "
                            "recommender's); this model has activation %s and positions %s",
                       dp_model_activation_name(m->cfg.activation), dp_model_positions_name(m->cfg.positions));
    if (!(c->kappa >= 0 && isfinite(c->kappa))) return dp_fail(err, "reattention: kappa must be finite and >= 0 (got %g)", c->kappa);
    if (!(c->sigma >= 0 && isfinite(c->sigma)))
        return dp_fail(err, "reattention: noise multiplier must be finite and >= 0 (got %g)", c->sigma);
    if (!(c->batch_size > 0 && isfinite(c->batch_size)))
        return dp_fail(err, "reattention: expected batch size must be positive (got %g)", c->batch_size);
    if (c->n_examples < 1)
        return dp_fail(err, "reattention: number of training examples must be at least 1 (got %lld)", (long long)c->n_examples);
    if (!c->item_freq) return dp_fail(err, "reattention: item frequencies are required");
    const int32_t V = m->cfg.n_items;
    for (int32_t i = 1; i <= V; i++) {
        double p = c->item_freq[i];
        if (!(p >= 0 && p <= 1)) return dp_fail(err, "reattention: item %d: frequency must be in [0, 1] (got %g)", i, p);
    }
    alloc_state(m);
    dp_reatt_state *s = &m->ra;
    s->kappa = c->kappa;
    s->sigma = c->sigma;
    s->batch_size = c->batch_size;
    s->n_examples = c->n_examples;
    const double floor_p = 1.0 / (double)c->n_examples, rd = c->sigma / c->batch_size;
    s->r2_dense = rd * rd;
    s->freq[0] = 0;
    s->r2_item[0] = 0; /* the padding row is not a parameter: no noise */
    for (int32_t i = 1; i <= V; i++) {
        s->freq[i] = c->item_freq[i];
        double r = c->sigma / (c->batch_size * DP_MAX(c->item_freq[i], floor_p));
        s->r2_item[i] = r * r;
    }
    s->enabled = 1;
    return 0;
}

int dp_model_get_reattention(const dp_model *m, dp_reattention_config *c) {
    const dp_reatt_state *s = &m->ra;
    *c = dp_reattention_config_default();
    if (!s->freq) return 0;
    c->enabled = s->enabled;
    c->kappa = s->kappa;
    c->sigma = s->sigma;
    c->batch_size = s->batch_size;
    c->item_freq = s->freq;
    c->n_examples = s->n_examples;
    return c->enabled;
}

const dp_real *dp_model_reattention_key_variance(const dp_model *m, int layer) {
    if (!m->ra.enabled || layer < 0 || layer >= m->cfg.n_layers) return NULL;
    return m->ra.kvar[layer];
}

/* ---------------- the track, alongside model_forward_body ---------------- */

/* The dropout rule with the masks of the pass (those of the full window on a trimmed one). */
static void track_dropout(const dp_model *m, real *v, int B, float p, uint64_t seed, uint64_t base) {
    dp_mask_window w;
    const int T = m->cfg.max_len, C = m->cfg.d_model;
    if (model_mask_window(m, &w)) var_dropout_window(v, B, T, C, p, seed, &w);
    else var_dropout(v, (long)B * T, C, p, seed, base);
}

void reatt_track_input(dp_model *m, const int32_t *ids, int B, float p, uint64_t seed, uint64_t base) {
    const int C = m->cfg.d_model, T = m->cfg.max_len;
    var_embedding(m->ra.v, ids, m->p.E, model_window_positions(m, m->p.P), m->ra.r2_item, m->ra.r2_dense, B, T, C);
    track_dropout(m, m->ra.v, B, p, seed, base);
}

/* The linear rule's weight statistics for each head's block of rows starting at row0 of W[·, C]. */
static void head_stats(double *a, double *ms, const real *w, int row0, int H, int hd, int C) {
    for (int h = 0; h < H; h++) var_linear_stats(&a[h], &ms[h], w + (size_t)(row0 + h * hd) * C, hd, C);
}

void reatt_track_keys(dp_model *m, int l, int B) {
    const dp_model_config *c = &m->cfg;
    const int C = c->d_model, T = c->max_len, H = c->n_heads, hd = C / H;
    const long N = (long)B * T;
    dp_reatt_state *s = &m->ra;
    const dp_layer_view *L = &m->p.layer[l];
    double *a = dp_malloc(sizeof(double) * 2 * (size_t)H), *ms = a + H;
    /* LayerNorm 1, then the key block of the fused projection, head by head */
    var_layernorm(s->vb, s->v, m->a.ln1_rstd[l], L->ln1_w, N, C);
    row_sqnorm(s->xsq, m->a.ln1[l], N, C);
    head_stats(a, ms, L->qkv_w, C, H, hd, C);
    var_linear_heads(s->kvar[l], s->vb, s->xsq, a, ms, s->r2_dense, B, T, H, C);
    if (l < c->n_layers - 1) { /* the value block, for the attention output's track */
        head_stats(a, ms, L->qkv_w, 2 * C, H, hd, C);
        var_linear_heads(s->vvar, s->vb, s->xsq, a, ms, s->r2_dense, B, T, H, C);
    }
    attention_query_sqnorm(s->qsq[l], m->a.qkv[l], B, T, C, H);
    free(a);
}

void reatt_attention_args(dp_model *m, int l, attention_reatt *ra) {
    dp_reatt_state *s = &m->ra;
    int track = !s->frozen && l < m->cfg.n_layers - 1;
    ra->kvar = s->kvar[l];
    ra->qsq = s->qsq[l];
    ra->kappa = s->kappa;
    ra->vvar = track ? s->vvar : NULL;
    ra->ovar = track ? s->ovar : NULL;
}

static void add_in_place(real *v, const real *x, long n) {
    for (long i = 0; i < n; i++) v[i] += x[i];
}

void reatt_track_block(dp_model *m, int l, int B, float p, uint64_t seed_proj, uint64_t seed_ffn, uint64_t base) {
    const dp_model_config *c = &m->cfg;
    const int C = c->d_model, F = c->d_ff, T = c->max_len, H = c->n_heads;
    const long N = (long)B * T;
    dp_reatt_state *s = &m->ra;
    const dp_layer_view *L = &m->p.layer[l];
    dp_activations *act = &m->a;
    double a, ms;
    /* attention output (heads concatenated: the mean of the heads' tracks), output projection,
     * residual dropout, residual */
    var_heads_mean(s->vb, s->ovar, B, T, H);
    row_sqnorm(s->xsq, act->atty[l], N, C);
    var_linear_stats(&a, &ms, L->proj_w, C, C);
    var_linear_heads(s->vc, s->vb, s->xsq, &a, &ms, s->r2_dense, 1, (int)N, 1, C);
    track_dropout(m, s->vc, B, p, seed_proj, base);
    add_in_place(s->v, s->vc, N);
    /* LayerNorm 2, fc1, GELU, fc2, residual dropout, residual */
    var_layernorm(s->vb, s->v, act->ln2_rstd[l], L->ln2_w, N, C);
    row_sqnorm(s->xsq, act->ln2[l], N, C);
    var_linear_stats(&a, &ms, L->fc1_w, F, C);
    var_linear_heads(s->vc, s->vb, s->xsq, &a, &ms, s->r2_dense, 1, (int)N, 1, C);
    var_gelu(s->vc, s->vc, act->fc1[l], N, F);
    row_sqnorm(s->xsq, act->gelu[l], N, F);
    var_linear_stats(&a, &ms, L->fc2_w, C, F);
    var_linear_heads(s->vb, s->vc, s->xsq, &a, &ms, s->r2_dense, 1, (int)N, 1, F);
    track_dropout(m, s->vb, B, p, seed_ffn, base);
    add_in_place(s->v, s->vb, N);
}
