/* Per-example clipping for DP-SGD: exact per-example gradient norms without per-example gradients
 * (ghost / phantom / auto, by book-keeping in one backward pass) and the one-example-at-a-time
 * reference (naive). The maths is in docs/privacy.md; the kernels are next to their ops in src/ops. */
#include <math.h>

#include "dpformer/privacy.h"
#include "model/model_internal.h"
#include "privacy/clip_fault.h"
#include "privacy/noise_internal.h"
#include "train/trim.h"

int dp_clip_mode_parse(const char *s, dp_clip_mode *mode) {
    if (strcmp(s, "auto") == 0) *mode = DP_CLIP_AUTO;
    else if (strcmp(s, "naive") == 0) *mode = DP_CLIP_NAIVE;
    else if (strcmp(s, "ghost") == 0) *mode = DP_CLIP_GHOST;
    else if (strcmp(s, "phantom") == 0) *mode = DP_CLIP_PHANTOM;
    else return -1;
    return 0;
}

const char *dp_clip_mode_name(dp_clip_mode mode) {
    switch (mode) {
    case DP_CLIP_AUTO: return "auto";
    case DP_CLIP_NAIVE: return "naive";
    case DP_CLIP_GHOST: return "ghost";
    case DP_CLIP_PHANTOM: return "phantom";
    }
    return "?";
}

int dp_clip_fault_skip_clipping = 0;

static double clip_factor(double norm, double C) {
    if (dp_clip_fault_skip_clipping) return 1.0; /* the audit's broken-engine control only */
    return DP_MIN(1.0, C / (norm + 1e-6));
}

/* ---------------- naive: one example at a time ---------------- */

static void clipped_grad_naive(dp_model *m, const dp_batch *bt, double C, int train, uint64_t seed, int ex0,
                               double *norms, double *losses) {
    const size_t np = m->n_params;
    real *acc = dp_alloc_aligned(sizeof(real) * np);
    memcpy(acc, m->grads, sizeof(real) * np);
    real one = 1;
    const int32_t *slot = m->slot;
    for (int b = 0; b < bt->B; b++) {
        dp_batch eb = dp_batch_slice(bt, b, 1);
        double loss = 0;
        memset(m->grads, 0, sizeof(real) * np);
        m->ex0 = ex0 + b;
        m->slot = slot ? slot + b : NULL;
        dp_model_forward_backward(m, &eb, &one, train, seed, &loss);
        double sq = 0;
        for (int k = 0; k < m->n_tensors; k++) { /* frozen tensors are not part of the clipped gradient */
            const dp_param_tensor *t = &m->tensors[k];
            if (m->frozen[k]) continue;
            for (size_t i = t->offset; i < t->offset + t->size; i++) sq += (double)m->grads[i] * m->grads[i];
        }
        double norm = sqrt(sq), c = clip_factor(norm, C);
        for (size_t i = 0; i < np; i++) acc[i] += (real)(c * m->grads[i]);
        if (norms) norms[b] = norm;
        if (losses) losses[b] = loss;
    }
    m->ex0 = 0;
    m->slot = slot;
    memcpy(m->grads, acc, sizeof(real) * np);
    free(acc);
}

/* ---------------- book-keeping: one backward pass ---------------- */
/* Written once for every backend: all per-example work goes through the model's backend (m->be);
 * only the B clip factors are formed on the host. A frozen tensor (model_set_frozen) adds nothing to
 * the per-example norms and gets no weight gradient: the backward pass still runs through its layer
 * (the trained layers below need the input gradient), but its norm and its weight GEMM are skipped. */

#define MAX_RECORDS 1024

typedef struct {
    real *dW, *db, *G;
    const real *A;
    int Cin, Cout;
} linear_record;

typedef struct {
    real *dw, *db;
    real *gw, *gb; /* [B, C] per-example gradients (the model's m->cw.ln buffers) */
} ln_record;

typedef struct {
    dp_model *m;
    const dp_backend *be;
    const dp_batch *bt;
    dp_norm_method method;
    int B, T, C;
    int *lo;       /* [B] first non-padding position (backend memory) */
    double *sq;    /* [B] squared norms (backend memory) */
    linear_record lin[MAX_RECORDS];
    int n_lin;
    ln_record ln[MAX_RECORDS];
    int n_ln;
    real *G_in;    /* embedding input gradient [N, C] (model-owned) */
} bk_state;

static void sink_linear(void *ctx, real *dW, real *db, real *G, const real *A, int Cin, int Cout) {
    bk_state *s = ctx;
    if (model_frozen_at(s->m, s->m->grads, dW)) return; /* its bias is frozen with it (train-only parts) */
    s->be->linear_per_example_sqnorm(s->sq, G, A, s->lo, s->B, s->T, Cin, Cout, db != NULL, s->method);
    s->lin[s->n_lin++] = (linear_record){dW, db, G, A, Cin, Cout};
}

static void sink_layernorm(void *ctx, real *dw, real *db, const real *dout, const real *inp, const real *mean,
                           const real *rstd) {
    bk_state *s = ctx;
    const int B = s->B, C = s->C;
    const int i = s->n_ln++;
    ln_record *r = &s->ln[i];
    r->dw = dw;
    r->db = db;
    r->gw = s->m->cw.ln[2 * i];
    r->gb = s->m->cw.ln[2 * i + 1];
    if (model_frozen_at(s->m, s->m->grads, dw)) {
        r->dw = r->db = NULL; /* no norm, no gradient */
        return;
    }
    s->be->layernorm_per_example_grads(r->gw, r->gb, dout, inp, mean, rstd, s->lo, B, s->T, C);
    s->be->per_example_sqnorm_add(s->sq, r->gw, B, C);
    s->be->per_example_sqnorm_add(s->sq, r->gb, B, C);
}

static void sink_embedding(void *ctx, real *dE, real *dP, real *G_in) {
    bk_state *s = ctx;
    /* The input-side norm of E is added here; for a tied E the output side and the cross term are
     * added by the caller, which knows the classifier's contribution. */
    s->be->embedding_per_example_sqnorm(model_frozen_at(s->m, s->m->grads, dE) ? NULL : s->sq,
                                        model_frozen_at(s->m, s->m->grads, dP) ? NULL : s->sq, G_in, s->m->cur_ids,
                                        s->B, s->T, s->C);
    s->G_in = G_in;
}

static int clipped_grad_bookkeeping(dp_model *m, const dp_batch *bt, dp_clip_mode mode, double Cmax, int train,
                                    uint64_t seed, int ex0, double *norms, double *losses, dp_error *err) {
    const dp_model_config *cfg = &m->cfg;
    const dp_backend *be = m->be;
    if (mode == DP_CLIP_GHOST && cfg->tied)
        return dp_fail(err, "clip mode ghost cannot clip a tied item embedding exactly (its input and output uses "
                            "share rows, and the cross term is not a ghost norm); use --clip-mode phantom or auto, or "
                            "--untied");
    const int B = bt->B, T = bt->T, C = cfg->d_model, V = cfg->n_items;
    const long N = (long)B * T;
    dp_activations *a = &m->a;
    dp_error e2;
    if (model_alloc_keep(m, &e2)) return dp_fail(err, "per-example clipping on %s: %s", be->name, e2.msg);
    bk_state *s = dp_calloc(1, sizeof *s);
    s->m = m;
    s->be = be;
    s->bt = bt;
    s->method = mode == DP_CLIP_AUTO ? DP_NORM_AUTO : DP_NORM_GRAM;
    s->B = B;
    s->T = T;
    s->C = C;
    int *lo_host = dp_malloc(sizeof(int) * (size_t)B);
    for (int b = 0; b < B; b++) {
        int t = 0;
        while (t < T && bt->ids[(size_t)b * T + t] == 0) t++;
        lo_host[b] = t;
    }
    double *sq_host = dp_calloc((size_t)B, sizeof(double)), *c = dp_malloc(sizeof(double) * (size_t)B);
    s->lo = m->cw.lo;
    s->sq = m->cw.sq;
    double *c_dev = m->cw.c;
    const int K = cfg->n_classes;
    int *zeros = m->cw.zeros; /* the head's one row per example: lo = 0 */
    /* a frozen output layer (untied) or head, or a frozen tied embedding (which is the output layer):
     * its norm goes to a scratch array that nothing reads (cw.c, written only once the norms are
     * known), and its weight gradient is not formed */
    const int E_frozen = model_frozen_at(m, m->grads, m->g.E);
    const int out_frozen = K ? model_frozen_at(m, m->grads, m->g.head_w) : model_frozen_at(m, m->grads, m->g.out_w);
    double *out_sq = out_frozen ? m->cw.c : s->sq;
    real *row_a = m->cw.row_a, *Q = !K && cfg->tied && !E_frozen ? m->cw.Q : NULL, *inst = NULL;
    int rc = 0;
    real *cls_scratch = NULL;
    if (!K && !(cls_scratch = model_dp_scratch(m, &e2))) {
        rc = dp_fail(err, "per-example clipping on %s: %s", be->name, e2.msg);
        goto done;
    }
    be->upload(s->lo, lo_host, sizeof(int) * (size_t)B);
    be->zero(s->sq, sizeof(double) * (size_t)B);

    /* forward, then pass 1 of the output layer: loss, dh, the output-side norm (and for a tied
     * embedding the vectors of the cross term) */
    m->ex0 = ex0;
    model_forward_body(m, bt->ids, B, train, seed);
    if (K) {
        /* classification head: one row per example, so its norm is ‖dz_b‖²·(‖rep_b‖² + 1) */
        model_head_forward(m, bt, train, NULL);
        be->linear_per_example_sqnorm(out_sq, a->head_dz, a->rep, zeros, B, 1, C, K, 1, s->method);
        if (losses) {
            real *l = dp_malloc(sizeof(real) * (size_t)B);
            be->download(l, a->row_loss, sizeof(real) * (size_t)B);
            for (int b = 0; b < B; b++) losses[b] = l[b];
            free(l);
        }
        model_head_backward_input(m, bt);
    } else {
        model_set_row_weights(m, bt, NULL);
        model_use_targets(m, bt);
        be->classifier_dp_pass1(a->row_loss, a->dh, row_a, out_sq, Q, &inst, a->lnf, m->p.out_w, m->cur_targets,
                                a->row_weight, cfg->tied ? m->cur_ids : NULL, B, T, C, V, s->method, cls_scratch);
        model_collect_losses(m, bt, losses);
    }

    /* one backward pass; the sink records every layer and accumulates the per-example norms */
    dp_grad_sink sink = {s, sink_linear, sink_layernorm, sink_embedding};
    m->sink = &sink;
    model_backward_body(m, bt, train, seed);
    m->sink = NULL;
    m->ex0 = 0;

    /* cross term of the shared embedding: 2 Σ_t ⟨G_in,t, Q_t⟩ (it can be negative) */
    if (Q) be->per_example_dot_add(s->sq, s->G_in, Q, s->lo, B, T, C, 2.0);

    /* clip factors, then every weight gradient as one GEMM with rows scaled by c_b */
    be->download(sq_host, s->sq, sizeof(double) * (size_t)B);
    for (int b = 0; b < B; b++) {
        double norm = sqrt(DP_MAX(sq_host[b], 0.0)); /* rounding can leave a tiny negative total */
        c[b] = clip_factor(norm, Cmax);
        if (norms) norms[b] = norm;
    }
    be->upload(c_dev, c, sizeof(double) * (size_t)B);
    for (int i = 0; i < s->n_lin; i++) {
        linear_record *r = &s->lin[i];
        be->rows_scale_by_example(r->G, c_dev, B, T, r->Cout);
        be->linear_backward_params(r->dW, r->db, r->G, r->A, N, r->Cin, r->Cout);
    }
    for (int i = 0; i < s->n_ln; i++) {
        ln_record *r = &s->ln[i];
        if (!r->dw) continue; /* frozen */
        be->weighted_rows_sum(r->dw, r->gw, c_dev, B, C);
        be->weighted_rows_sum(r->db, r->gb, c_dev, B, C);
    }
    be->rows_scale_by_example(s->G_in, c_dev, B, T, C);
    be->embedding_backward(m->g.E, (real *)model_window_positions(m, m->g.P), s->G_in, m->cur_ids, B, T, C,
                           cfg->positions == DP_POS_FROM_FIRST);
    if (out_frozen) {
        /* nothing to form */
    } else if (K) {
        be->rows_scale_by_example(a->head_dz, c_dev, B, 1, K);
        be->linear_backward_params(m->g.head_w, m->g.head_b, a->head_dz, a->rep, B, C, K);
    } else {
        /* pass 2 of the output layer: its weight gradient with row weights c_b·w_r, from the logits
         * still in the chunk buffer */
        be->rows_scale_by_example(a->row_weight, c_dev, B, T, 1);
        be->rows_scale_by_example(row_a, c_dev, B, T, 1);
        be->classifier_dp_pass2(m->g.out_w, inst, m->p.out_w, m->cur_targets, a->row_weight, row_a, c_dev, B, T, C, V,
                                s->method, cls_scratch);
    }
    be->zero(m->g.E, sizeof(real) * (size_t)C);
    if (m->g.out_w && !cfg->tied) be->zero(m->g.out_w, sizeof(real) * (size_t)C);

done:
    free(inst); /* host memory of the CPU's instantiated gradients (NULL elsewhere) */
    free(c);
    free(sq_host);
    free(lo_host);
    free(s);
    return rc;
}

int dp_clipped_grad(dp_model *m, const dp_batch *bt, dp_clip_mode mode, double max_grad_norm, int train,
                    uint64_t dropout_seed, int ex0, double *norms, double *per_example_loss, dp_error *err) {
    if (!(max_grad_norm > 0)) return dp_fail(err, "max grad norm must be positive (got %g)", max_grad_norm);

    if (bt->B <= 0) return 0;
    if (bt->B > m->max_batch || bt->T != m->cfg.max_len)
        return dp_fail(err, "batch %dx%d does not fit the model (max %dx%d)", bt->B, bt->T, m->max_batch, m->cfg.max_len);
    if (mode == DP_CLIP_NAIVE) {
        if (!model_on_host(m))
            return dp_fail(err, "clip mode naive (the one-example-at-a-time reference) runs on the cpu only");
        clipped_grad_naive(m, bt, max_grad_norm, train, dropout_seed, ex0, norms, per_example_loss);
        return 0;
    }
    /* Book-keeping in groups of consecutive examples whose non-padding rows fit one output-layer chunk,
     * so that each group's logits stay resident from the norm pass to the weight gradient instead of
     * being recomputed (the cost that dominates a large-vocabulary step). Gradients add up across groups;
     * the result is the same up to rounding. */
    if (m->cfg.n_classes) /* no item output layer: one group */
        return clipped_grad_bookkeeping(m, bt, mode, max_grad_norm, train, dropout_seed, ex0, norms, per_example_loss,
                                        err);
    const int T = bt->T;
    const long cap = m->be->classifier_dp_chunk_rows(T, m->cfg.n_items);
    for (int b0 = 0; b0 < bt->B;) {
        long rows = 0;
        int b1 = b0;
        for (; b1 < bt->B; b1++) {
            long n = 0;
            for (int t = 0; t < T; t++) n += bt->targets[(size_t)b1 * T + t] != 0;
            if (rows + n > cap && b1 > b0) break;
            rows += n;
        }
        dp_batch sub = dp_batch_slice(bt, b0, b1 - b0);
        const int32_t *slot = m->slot;
        m->slot = slot ? slot + b0 : NULL;
        int rc = clipped_grad_bookkeeping(m, &sub, mode, max_grad_norm, train, dropout_seed, ex0 + b0,
                                          norms ? norms + b0 : NULL, per_example_loss ? per_example_loss + b0 : NULL, err);
        m->slot = slot;
        if (rc) return -1;
        b0 = b1;
    }
    return 0;
}

static int cmp_key(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int dp_clipped_grad_trimmed(dp_model *m, const dp_batch *bt, dp_clip_mode mode, double max_grad_norm, int train,
                            uint64_t dropout_seed, int ex0, double *norms, double *per_example_loss, dp_error *err) {
    const int B = bt->B, L = bt->T;
    /* (a backend without the window masks runs passes with dropout on the full windows) */
    if (B <= 0 || L != m->full_len || m->win_off || !bt->targets || m->cfg.n_classes || !model_window_ok(m, train))
        return dp_clipped_grad(m, bt, mode, max_grad_norm, train, dropout_seed, ex0, norms, per_example_loss, err);
    /* examples by length (then place); chunk k's rows are the last T positions of its windows */
    int64_t *keys = dp_malloc(sizeof(int64_t) * (size_t)B);
    int32_t *len = dp_malloc(sizeof(int32_t) * (size_t)B), *size = dp_malloc(sizeof(int32_t) * (size_t)B);
    int32_t *slot = dp_malloc(sizeof(int32_t) * (size_t)B);
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)B * L), *tgt = dp_malloc(sizeof(int32_t) * (size_t)B * L);
    double *nb = dp_malloc(sizeof(double) * (size_t)B), *lb = dp_malloc(sizeof(double) * (size_t)B);
    for (int b = 0; b < B; b++) keys[b] = ((int64_t)dp_trim_used(bt->ids + (size_t)b * L, L) << 32) | b;
    qsort(keys, (size_t)B, sizeof *keys, cmp_key);
    for (int b = 0; b < B; b++) len[b] = (int32_t)(keys[b] >> 32);
    const int64_t n_chunks = dp_trim_plan(len, B, B, size);
    const int32_t *outer = m->slot;
    int rc = 0;
    for (int64_t ci = 0, k0 = 0; ci < n_chunks && !rc; k0 += size[ci++]) {
        const int n = size[ci], T = len[k0 + n - 1];
        for (int k = 0; k < n; k++) {
            const int b = (int)(keys[k0 + k] & 0xffffffff);
            slot[k] = outer ? outer[b] : ex0 + b;
            memcpy(ids + (size_t)k * T, bt->ids + (size_t)b * L + (L - T), sizeof(int32_t) * (size_t)T);
            memcpy(tgt + (size_t)k * T, bt->targets + (size_t)b * L + (L - T), sizeof(int32_t) * (size_t)T);
        }
        dp_batch sub = {n, T, ids, tgt, NULL};
        model_set_window_at(m, T, L - T);
        m->slot = slot;
        rc = dp_clipped_grad(m, &sub, mode, max_grad_norm, train, dropout_seed, 0, nb, lb, err);
        for (int k = 0; k < n && !rc; k++) {
            const int b = (int)(keys[k0 + k] & 0xffffffff);
            if (norms) norms[b] = nb[k];
            if (per_example_loss) per_example_loss[b] = lb[k];
        }
    }
    m->slot = outer;
    model_set_window_at(m, 0, 0);
    free(keys);
    free(len);
    free(size);
    free(slot);
    free(ids);
    free(tgt);
    free(nb);
    free(lb);
    return rc;
}

int dp_add_grad_noise(dp_model *m, dp_rng *rng, double sigma, dp_error *err) {
    return dp_noise_gaussian_add_backend(rng, m->be, m->grads, m->n_params, sigma, err);
}
