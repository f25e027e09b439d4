/* The GPT-2 family (dpformer/lm.h) in double precision: finite-difference gradients of the tanh GELU,
 * of the embedding with positions counted from the first token, and of whole gpt2-family models (tied
 * and untied, right padding, a left-padded and a one-token example, repeated tokens, dropout); the
 * position and padding conventions (left- and right-padded copies of a sequence agree, extra padding
 * changes nothing, padding keys get no attention and padding rows no loss); every clipping mode
 * against the one-example-at-a-time oracle, tied and untied, with padding; σ = 0 with a huge clipping
 * norm equals the non-private gradient. Built against the double-precision library. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/lm.h"
#include "dpformer/noise.h"
#include "dpformer/privacy.h"
#include "dpformer/reattention.h"
#include "model/model_internal.h"
#include "ops/ops.h"
#include "testutil.h"

static uint64_t rng = 4242;

static void fill(real *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * tu_normal(&rng);
}

static double dot(const real *a, const real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Central differences of f over x against grad; the worst error relative to the largest entry. */
static double max_fd_error(double (*f)(void *), void *ctx, real *x, size_t n, const real *grad) {
    const double h = 1e-5;
    double worst = 0, gmax = 1e-12;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(grad[i]));
    for (size_t i = 0; i < n; i++) {
        double old = x[i];
        x[i] = old + h;
        double fp = f(ctx);
        x[i] = old - h;
        double fm = f(ctx);
        x[i] = old;
        worst = fmax(worst, fabs((fp - fm) / (2 * h) - grad[i]) / gmax);
    }
    return worst;
}
#define FD_TOL 1e-6

/* ---------------- ops ---------------- */

typedef struct {
    int which; /* 0 gelu tanh, 1 embedding */
    long n;
    int B, T, C, from_first;
    real *x, *out, *R, *E, *P;
    const int32_t *ids;
} opctx;

static double op_loss(void *v) {
    opctx *c = v;
    if (c->which == 0) {
        gelu_tanh_forward(c->out, c->x, c->n);
        return dot(c->out, c->R, (size_t)c->n);
    }
    embedding_forward(c->out, c->ids, c->E, c->P, c->B, c->T, c->C, c->from_first);
    return dot(c->out, c->R, (size_t)c->B * c->T * c->C);
}

static void test_gelu_tanh(void) {
    opctx c = {.which = 0, .n = 60};
    c.x = malloc(sizeof(real) * 60);
    c.out = malloc(sizeof(real) * 60);
    c.R = malloc(sizeof(real) * 60);
    fill(c.x, 60, 2.5);
    c.x[0] = 0;
    c.x[1] = -30; /* far tails: exp overflows to the limits */
    c.x[2] = 30;
    fill(c.R, 60, 1);
    real dx[60];
    gelu_tanh_backward(dx, c.R, c.x, 60);
    CHECK(max_fd_error(op_loss, &c, c.x, 60, dx) < FD_TOL);
    /* values: Hugging Face's gelu_new formula written out */
    op_loss(&c);
    double worst = 0;
    for (int i = 0; i < 60; i++) {
        double x = c.x[i], y = 0.5 * x * (1 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
        worst = fmax(worst, fabs(c.out[i] - y));
    }
    CHECK(worst < 1e-14);
    CHECK(c.out[1] == 0 || fabs(c.out[1]) < 1e-300); /* -30·σ(-huge) */
    CHECK_CLOSE(c.out[2], 30, 1e-15);
    /* the approximation is not the exact GELU (they differ by ~1.5e-4 at x = 1) */
    real one = 1, a, b;
    gelu_tanh_forward(&a, &one, 1);
    gelu_forward(&b, &one, 1);
    CHECK_CLOSE(a, 0.84119199060827680, 1e-14);
    CHECK(fabs(a - b) > 1e-4);
    free(c.x);
    free(c.out);
    free(c.R);
}

static void test_embedding_from_first(void) {
    opctx c = {.which = 1, .B = 3, .T = 5, .C = 3, .from_first = 1};
    /* left padding, right padding, both */
    static const int32_t ids[15] = {0, 0, 2, 3, 2, /**/ 1, 4, 0, 0, 0, /**/ 0, 3, 3, 1, 0};
    c.ids = ids;
    c.E = malloc(sizeof(real) * 15);
    c.P = malloc(sizeof(real) * 15);
    c.out = malloc(sizeof(real) * 45);
    c.R = malloc(sizeof(real) * 45);
    fill(c.E, 15, 1);
    fill(c.P, 15, 1);
    fill(c.R, 45, 1);
    op_loss(&c);
    /* row (b, t) is E[id] + P[t − first(b)] */
    static const int first[3] = {2, 0, 1};
    double worst = 0;
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < 5; t++) {
            const int r = b * 5 + t, pos = t >= first[b] ? t - first[b] : 0;
            for (int i = 0; i < 3; i++)
                worst = fmax(worst, fabs(c.out[r * 3 + i] - (c.E[ids[r] * 3 + i] + c.P[pos * 3 + i])));
        }
    CHECK(worst == 0);
    real dE[15] = {0}, dP[15] = {0};
    embedding_backward(dE, dP, c.R, ids, 3, 5, 3, 1);
    for (int i = 0; i < 3; i++) CHECK(dE[i] == 0); /* the padding row gets nothing */
    CHECK(max_fd_error(op_loss, &c, c.E + 3, 12, dE + 3) < FD_TOL);
    /* dP takes the non-padding rows only: the finite difference with the padding rows' R zeroed */
    for (int r = 0; r < 15; r++)
        if (!ids[r])
            for (int i = 0; i < 3; i++) c.R[r * 3 + i] = 0;
    CHECK(max_fd_error(op_loss, &c, c.P, 15, dP) < FD_TOL);
    /* positions 3 and 4 are used by sequence 0 only up to 2 (its three tokens): row 4 of dP is zero */
    for (int i = 0; i < 3; i++) CHECK(dP[12 + i] == 0);
    free(c.E);
    free(c.P);
    free(c.out);
    free(c.R);
}

/* ---------------- whole models ---------------- */

static dp_model_config lm_config(int V, int L, int tied, float dropout) {
    dp_model_config c = dp_lm_config_default(V, L);
    c.d_model = 8;
    c.n_heads = 2;
    c.n_layers = 2;
    c.d_ff = 12;
    c.tied = tied;
    c.dropout = dropout;
    return c;
}

static dp_model *lm_model(int V, int L, int tied, float dropout, int max_batch, double scale) {
    dp_model_config c = lm_config(V, L, tied, dropout);
    dp_error e;
    dp_model *m = dp_model_create(&c, max_batch, 7, &e);
    if (!m) {
        fprintf(stderr, "%s\n", e.msg);
        return NULL;
    }
    real *p = dp_model_params(m);
    for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += scale * tu_normal(&rng);
    memset(m->p.E, 0, sizeof(real) * (size_t)c.d_model);
    if (!tied) memset(m->p.out_w, 0, sizeof(real) * (size_t)c.d_model);
    return m;
}

typedef struct {
    dp_model *m;
    dp_batch bt;
    real w[4];
    uint64_t seed;
} mctx;

static double model_loss(void *v) {
    mctx *c = v;
    double el[4];
    dp_model_forward(c->m, &c->bt, 1, c->seed, el);
    double s = 0;
    for (int b = 0; b < c->bt.B; b++) s += c->w[b] * el[b];
    return s;
}

/* Batches of LM examples: rows of token sequences → ids/targets with dp_lm_make_example (right
 * padding); `left` shifts example `left_row` to the right end (left padding) to exercise the position
 * rule. */
static void make_batch(int32_t *ids, int32_t *tgt, const int32_t *const *tok, const int *len, int B, int T,
                       int left_row) {
    for (int b = 0; b < B; b++) {
        dp_lm_make_example(ids + b * T, tgt + b * T, tok[b], len[b], T);
        if (b == left_row) {
            const int sh = T - len[b];
            for (int t = T - 1; t >= 0; t--) {
                ids[b * T + t] = t >= sh ? ids[b * T + t - sh] : 0;
                tgt[b * T + t] = t >= sh ? tgt[b * T + t - sh] : 0;
            }
        }
    }
}

static void test_model_fd(int tied, float dropout) {
    const int V = 9, T = 7;
    dp_model *m = lm_model(V, T, tied, dropout, 4, 0.3);
    CHECK(m != NULL);
    if (!m) return;
    static const int32_t t0[] = {8, 2, 3, 2, 3, 8}, t1[] = {8, 0, 5, 1, 5, 0, 8}, t2[] = {8}, t3[] = {8, 4, 4, 8};
    const int32_t *tok[] = {t0, t1, t2, t3};
    const int len[] = {6, 7, 1, 4};
    int32_t ids[28], tgt[28];
    make_batch(ids, tgt, tok, len, 4, T, 3); /* example 3 left-padded */
    mctx c = {m, {4, T, ids, tgt, NULL}, {0.7, -0.4, 1.3, 0.9}, 42};
    dp_model_zero_grad(m);
    double el[4];
    dp_model_forward_backward(m, &c.bt, c.w, 1, c.seed, el);
    CHECK(el[2] == 0); /* one token: nothing to predict */
    CHECK_CLOSE(model_loss(&c), c.w[0] * el[0] + c.w[1] * el[1] + c.w[3] * el[3], 1e-12);
    real *p = dp_model_params(m), *g = dp_model_grads(m);
    for (int i = 0; i < dp_model_num_tensors(m); i++) {
        const dp_param_tensor *t = dp_model_tensor(m, i);
        size_t off = t->offset, n = t->size;
        if (strcmp(t->name, "item_emb.weight") == 0 || strcmp(t->name, "out.weight") == 0) {
            for (int k = 0; k < 8; k++) CHECK(g[off + k] == 0);
            off += 8; /* the padding row */
            n -= 8;
        }
        double e = max_fd_error(model_loss, &c, p + off, n, g + off);
        if (!(e < FD_TOL)) fprintf(stderr, "gpt2 family tensor %s (tied %d dropout %g): error %g\n", t->name, tied, dropout, e);
        CHECK(e < FD_TOL);
    }
    dp_model_free(m);
}

/* Positions from the first token and padding: the same sequence left-padded, right-padded, and in a
 * longer window has the same loss and the same gradient; padding keys get zero attention and padding
 * rows no loss. */
static void test_positions_and_padding(int tied) {
    const int V = 11, T = 9;
    dp_model *m = lm_model(V, T, tied, 0.0f, 2, 0.3);
    if (!m) return;
    static const int32_t seq[] = {10, 3, 7, 7, 1, 10};
    const int32_t *tok[] = {seq, seq};
    const int len[] = {6, 6};
    int32_t ids[18], tgt[18];
    make_batch(ids, tgt, tok, len, 2, T, 1); /* row 0 right-padded, row 1 left-padded */
    dp_batch bt = {2, T, ids, tgt, NULL};
    size_t np = dp_model_num_params(m);
    real *g2 = malloc(sizeof(real) * np), *g1 = malloc(sizeof(real) * np);
    double el[2];
    real w0[2] = {1, 0}, w1[2] = {0, 1};
    dp_model_forward(m, &bt, 0, 0, el); /* (a backward pass reports no loss for an example of weight 0) */
    CHECK_CLOSE(el[0], el[1], 1e-12);
    dp_model_zero_grad(m);
    dp_model_forward_backward(m, &bt, w0, 0, 0, NULL);
    /* padding keys: zero probability from every query of the right-padded row, in every layer and head */
    double leak = 0;
    for (int l = 0; l < 2; l++)
        for (int h = 0; h < 2; h++)
            for (int t = 0; t < T; t++)
                for (int u = 6; u < T; u++) leak = fmax(leak, fabs(m->a.att[l][((size_t)h * T + t) * T + u]));
    CHECK(leak == 0);
    for (int t = 6; t < T; t++) CHECK(m->a.row_loss[t] == 0); /* padding rows carry no loss */
    memcpy(g1, dp_model_grads(m), sizeof(real) * np);
    dp_model_zero_grad(m);
    dp_model_forward_backward(m, &bt, w1, 0, 0, NULL);
    memcpy(g2, dp_model_grads(m), sizeof(real) * np);
    double num = 0, den = 0;
    for (size_t i = 0; i < np; i++) {
        num += (g1[i] - g2[i]) * (g1[i] - g2[i]);
        den += g1[i] * g1[i];
    }
    CHECK(sqrt(num / den) < 1e-12);
    /* a shorter window without padding: the same loss */
    dp_model_set_window(m, 6);
    int32_t ids6[6], tgt6[6];
    dp_lm_make_example(ids6, tgt6, seq, 6, 6);
    dp_batch b6 = {1, 6, ids6, tgt6, NULL};
    double e6;
    dp_model_forward(m, &b6, 0, 0, &e6);
    dp_model_set_window(m, 0);
    CHECK_CLOSE(e6, el[0], 1e-12);
    /* the recommender's rule (window positions) would give the two copies different losses */
    m->cfg.positions = DP_POS_WINDOW;
    m->cfg.family = DP_FAMILY_REC;
    dp_model_forward(m, &bt, 0, 0, el);
    CHECK(fabs(el[0] - el[1]) > 1e-6);
    free(g1);
    free(g2);
    dp_model_free(m);
}

/* ---------------- clipping engine against the oracle ---------------- */

static double rel_diff(const real *a, const real *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den + 1e-300));
}

/* Five LM examples of varied lengths (right padding; one left-padded), few distinct tokens. */
static void random_lm_batch(int32_t *ids, int32_t *tgt, int B, int T, int V) {
    int32_t tok[32];
    for (int b = 0; b < B; b++) {
        int n = b == 0 ? T : 2 + (int)(tu_uniform(&rng) * (T - 1));
        if (n > T) n = T;
        tok[0] = V - 1; /* <|endoftext|> */
        for (int t = 1; t < n; t++) tok[t] = (int32_t)(tu_uniform(&rng) * (V < 5 ? V : 5));
        dp_lm_make_example(ids + b * T, tgt + b * T, tok, n, T);
        if (b == B - 1 && n < T) { /* left-padded: positions from the first token still apply */
            const int sh = T - n;
            for (int t = T - 1; t >= 0; t--) {
                ids[b * T + t] = t >= sh ? ids[b * T + t - sh] : 0;
                tgt[b * T + t] = t >= sh ? tgt[b * T + t - sh] : 0;
            }
        }
    }
}

static void check_modes(int tied, float dropout, double Cmax, int T) {
    const int V = 13, B = 5;
    dp_model *m = lm_model(V, T, tied, dropout, 6, 0.2);
    if (!m) return;
    int32_t ids[5 * 24], tgt[5 * 24];
    random_lm_batch(ids, tgt, B, T, V);
    dp_batch bt = {B, T, ids, tgt, NULL};
    const size_t np = dp_model_num_params(m);
    real *ref = malloc(sizeof(real) * np);
    double nref[5], nalt[5], lref[5], lalt[5];
    dp_error e;
    dp_model_zero_grad(m);
    CHECK(dp_clipped_grad(m, &bt, DP_CLIP_NAIVE, Cmax, 1, 77, 3, nref, lref, &e) == 0);
    memcpy(ref, dp_model_grads(m), sizeof(real) * np);
    dp_clip_mode modes[] = {DP_CLIP_GHOST, DP_CLIP_PHANTOM, DP_CLIP_AUTO};
    for (int k = 0; k < 3; k++) {
        dp_model_zero_grad(m);
        int rc = dp_clipped_grad(m, &bt, modes[k], Cmax, 1, 77, 3, nalt, lalt, &e);
        if (modes[k] == DP_CLIP_GHOST && tied) {
            CHECK(rc != 0 && strstr(e.msg, "tied") != NULL);
            continue;
        }
        CHECK(rc == 0);
        double worst = 0;
        for (int b = 0; b < B; b++) {
            worst = fmax(worst, fabs(nalt[b] - nref[b]) / nref[b]);
            CHECK_CLOSE(lalt[b], lref[b], 1e-12);
        }
        double d = rel_diff(dp_model_grads(m), ref, np);
        if (!(worst < 1e-10 && d < 1e-10))
            fprintf(stderr, "gpt2 family, mode %s tied %d T %d: norms %g, sum %g\n", dp_clip_mode_name(modes[k]), tied, T,
                    worst, d);
        CHECK(worst < 1e-10);
        CHECK(d < 1e-10);
    }
    int clipped = 0;
    for (int b = 0; b < B; b++) clipped += nref[b] > Cmax;
    if (Cmax < 1) CHECK(clipped > 0);
    free(ref);
    dp_model_free(m);
}

/* σ = 0 and a clipping norm no example reaches: the private gradient is the non-private one. */
static void test_no_noise_equals_nonprivate(int tied) {
    const int V = 13, T = 8, B = 5;
    dp_model *m = lm_model(V, T, tied, 0.1f, 6, 0.2);
    if (!m) return;
    int32_t ids[40], tgt[40];
    random_lm_batch(ids, tgt, B, T, V);
    dp_batch bt = {B, T, ids, tgt, NULL};
    const size_t np = dp_model_num_params(m);
    real *ref = malloc(sizeof(real) * np), w[5] = {1, 1, 1, 1, 1};
    dp_model_zero_grad(m);
    dp_model_forward_backward(m, &bt, w, 1, 5, NULL);
    memcpy(ref, dp_model_grads(m), sizeof(real) * np);
    dp_error e;
    dp_rng *r = dp_rng_create_seeded(1);
    dp_model_zero_grad(m);
    CHECK(dp_clipped_grad(m, &bt, DP_CLIP_AUTO, 1e12, 1, 5, 0, NULL, NULL, &e) == 0);
    CHECK(dp_add_grad_noise(m, r, 0.0, &e) == 0);
    CHECK(rel_diff(dp_model_grads(m), ref, np) < 1e-12);
    dp_rng_free(r);
    free(ref);
    dp_model_free(m);
}

static void test_config_rules(void) {
    dp_error e;
    dp_model_config c = lm_config(9, 6, 1, 0);
    CHECK(dp_model_config_validate(&c, &e) == 0);
    c.causal = 0;
    CHECK(dp_model_config_validate(&c, &e) != 0 && strstr(e.msg, "causal"));
    c = lm_config(9, 6, 1, 0);
    c.positions = DP_POS_WINDOW;
    CHECK(dp_model_config_validate(&c, &e) != 0 && strstr(e.msg, "from_first"));
    c = lm_config(9, 6, 0, 0);
    c.n_classes = 3;
    CHECK(dp_model_config_validate(&c, &e) != 0);
    c = lm_config(9, 6, 1, 0);
    c.activation = 7;
    CHECK(dp_model_config_validate(&c, &e) != 0 && strstr(e.msg, "activation"));
    /* Re-Attention's variance rules are the recommender's: refused for the family */
    dp_model *m = lm_model(9, 6, 1, 0, 1, 0);
    double freq[10] = {0};
    dp_reattention_config ra = dp_reattention_config_default();
    ra.enabled = 1;
    ra.sigma = 1;
    ra.batch_size = 4;
    ra.item_freq = freq;
    ra.n_examples = 10;
    CHECK(dp_model_set_reattention(m, &ra, &e) != 0 && strstr(e.msg, "gelu_tanh"));
    dp_model_free(m);
    CHECK(strcmp(dp_model_family_name(DP_FAMILY_GPT2), "gpt2") == 0);
    CHECK(dp_model_family_parse("gpt2") == DP_FAMILY_GPT2 && dp_model_family_parse("llama") == -1);
    CHECK(dp_model_activation_parse("gelu_tanh") == DP_ACT_GELU_TANH);
    CHECK(dp_model_positions_parse("from_first") == DP_POS_FROM_FIRST);
}

int main(void) {
    test_gelu_tanh();
    test_embedding_from_first();
    test_config_rules();
    test_model_fd(1, 0.0f);
    test_model_fd(0, 0.0f);
    test_model_fd(1, 0.25f);
    test_positions_and_padding(1);
    test_positions_and_padding(0);
    check_modes(1, 0.0f, 0.05, 7);
    check_modes(0, 0.0f, 0.05, 7);
    check_modes(1, 0.2f, 0.05, 9);
    check_modes(0, 0.3f, 1e6, 9); /* nothing clipped */
    check_modes(1, 0.1f, 0.05, 20); /* long enough for auto to instantiate the output layer's gradient */
    classifier_set_chunk_logits(13 * 9); /* several groups of examples, each one output-layer chunk */
    check_modes(1, 0.0f, 0.05, 8);
    classifier_set_chunk_logits(0);
    test_no_noise_equals_nonprivate(1);
    test_no_noise_equals_nonprivate(0);
    return tu_finish("test_lm_f64");
}
