/* Finite-difference gradient checks in double precision: every op on its own (linear, LayerNorm,
 * GELU, dropout, embedding, attention with every mask, chunked classifier) and the whole model
 * (tied and untied output layer, causal and bidirectional, padding, repeated items, dropout on),
 * plus causality and the padding conventions. Built against the double-precision library. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/model.h"
#include "model/model_internal.h"
#include "ops/ops.h"
#include "testutil.h"

static uint64_t rng = 12345;

static void fill(real *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * tu_normal(&rng);
}

static double dot(const real *a, const real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Compare an analytic gradient with central differences of f over the coordinates of x.
 * Relative error per coordinate, normalised by the largest gradient entry (double precision
 * with h = 1e-5 gives ~1e-9; 1e-6 leaves room for the O(h²) truncation term). */
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
        double fd = (fp - fm) / (2 * h);
        double e = fabs(fd - grad[i]) / gmax;
        if (e > worst) worst = e;
    }
    return worst;
}
#define FD_TOL 1e-6

/* ---------------- per-op checks: loss = <R, op(x)> ---------------- */
enum { OP_LINEAR, OP_LN, OP_GELU, OP_DROPOUT, OP_ATTN, OP_EMB };
typedef struct {
    int op;
    long N;
    int C, OC, B, T, H, causal;
    float p;
    real *x, *w, *b, *out, *R, *mean, *rstd, *E, *P;
    int32_t *ids;
} opctx;

static double op_loss(void *vctx) {
    opctx *c = vctx;
    size_t nout = 0;
    switch (c->op) {
    case OP_LINEAR: linear_forward(c->out, c->x, c->w, c->b, c->N, c->C, c->OC); nout = (size_t)c->N * c->OC; break;
    case OP_LN: layernorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C); nout = (size_t)c->N * c->C; break;
    case OP_GELU: gelu_forward(c->out, c->x, c->N); nout = (size_t)c->N; break;
    case OP_DROPOUT: dropout_forward(c->out, c->x, c->N, c->p, 77, 5); nout = (size_t)c->N; break;
    case OP_ATTN: {
        real *att = malloc(sizeof(real) * (size_t)c->B * c->H * c->T * c->T);
        attention_forward(c->out, att, c->x, c->ids, c->causal, c->p, 99, 3, c->B, c->T, c->C, c->H);
        free(att);
        nout = (size_t)c->B * c->T * c->C;
        break;
    }
    case OP_EMB: embedding_forward(c->out, c->ids, c->E, c->P, c->B, c->T, c->C, 0); nout = (size_t)c->B * c->T * c->C; break;
    }
    return dot(c->out, c->R, nout);
}

static void test_linear(void) {
    opctx c = {.op = OP_LINEAR, .N = 7, .C = 5, .OC = 4};
    c.x = malloc(sizeof(real) * 35); c.w = malloc(sizeof(real) * 20); c.b = malloc(sizeof(real) * 4);
    c.out = malloc(sizeof(real) * 28); c.R = malloc(sizeof(real) * 28);
    fill(c.x, 35, 1); fill(c.w, 20, 1); fill(c.b, 4, 1); fill(c.R, 28, 1);
    real dx[35], dw[20] = {0}, db[4] = {0};
    linear_backward_input(dx, c.R, c.w, c.N, c.C, c.OC, 0);
    linear_backward_params(dw, db, c.R, c.x, c.N, c.C, c.OC);
    CHECK(max_fd_error(op_loss, &c, c.x, 35, dx) < FD_TOL);
    CHECK(max_fd_error(op_loss, &c, c.w, 20, dw) < FD_TOL);
    CHECK(max_fd_error(op_loss, &c, c.b, 4, db) < FD_TOL);
    /* accumulate flag adds to what is there */
    real dx2[35];
    for (int i = 0; i < 35; i++) dx2[i] = 1;
    linear_backward_input(dx2, c.R, c.w, c.N, c.C, c.OC, 1);
    CHECK_CLOSE(dx2[3], dx[3] + 1, 1e-12);
    free(c.x); free(c.w); free(c.b); free(c.out); free(c.R);
}

static void test_layernorm(void) {
    opctx c = {.op = OP_LN, .N = 6, .C = 9};
    size_t n = 54;
    c.x = malloc(sizeof(real) * n); c.w = malloc(sizeof(real) * 9); c.b = malloc(sizeof(real) * 9);
    c.out = malloc(sizeof(real) * n); c.R = malloc(sizeof(real) * n);
    c.mean = malloc(sizeof(real) * 6); c.rstd = malloc(sizeof(real) * 6);
    fill(c.x, n, 2); fill(c.w, 9, 1); fill(c.b, 9, 1); fill(c.R, n, 1);
    op_loss(&c);
    real *dx = calloc(n, sizeof(real)), dw[9] = {0}, db[9] = {0};
    layernorm_backward(dx, dw, db, c.R, c.x, c.w, c.mean, c.rstd, c.N, c.C);
    CHECK(max_fd_error(op_loss, &c, c.x, n, dx) < FD_TOL);
    CHECK(max_fd_error(op_loss, &c, c.w, 9, dw) < FD_TOL);
    CHECK(max_fd_error(op_loss, &c, c.b, 9, db) < FD_TOL);
    free(dx); free(c.x); free(c.w); free(c.b); free(c.out); free(c.R); free(c.mean); free(c.rstd);
}

static void test_elementwise(void) {
    for (int op = OP_GELU; op <= OP_DROPOUT; op++) {
        opctx c = {.op = op, .N = 40, .p = 0.3f};
        c.x = malloc(sizeof(real) * 40); c.out = malloc(sizeof(real) * 40); c.R = malloc(sizeof(real) * 40);
        fill(c.x, 40, 2); fill(c.R, 40, 1);
        real dx[40];
        if (op == OP_GELU) gelu_backward(dx, c.R, c.x, 40);
        else dropout_backward(dx, c.R, 40, c.p, 77, 5);
        CHECK(max_fd_error(op_loss, &c, c.x, 40, dx) < FD_TOL);
        free(c.x); free(c.out); free(c.R);
    }
    /* GELU values: exact erf form, not the tanh approximation (they differ by ~1e-4 at x = 1). */
    real x[3] = {-1, 0.5, 2}, y[3];
    gelu_forward(y, x, 3);
    CHECK_CLOSE(y[0], -0.15865525393145707, 1e-12);
    CHECK_CLOSE(y[1], 0.34573123063700656, 1e-12);
    CHECK_CLOSE(y[2], 1.9544997361036416, 1e-12);
    /* dropout keeps about 1 − p and rescales */
    int kept = 0;
    for (int i = 0; i < 100000; i++) kept += dp_dropout_keep(5, (uint64_t)i, 0.25f);
    CHECK(fabs(kept / 100000.0 - 0.75) < 0.01);
}

static void test_attention(void) {
    for (int causal = 0; causal <= 1; causal++) {
        for (int withp = 0; withp <= 1; withp++) {
            opctx c = {.op = OP_ATTN, .B = 2, .T = 5, .C = 6, .H = 2, .causal = causal, .p = withp ? 0.3f : 0};
            size_t nq = (size_t)c.B * c.T * 3 * c.C, no = (size_t)c.B * c.T * c.C;
            int32_t ids[10] = {0, 0, 3, 1, 3, /**/ 2, 4, 4, 1, 5};
            c.ids = ids;
            c.x = malloc(sizeof(real) * nq); c.out = malloc(sizeof(real) * no); c.R = malloc(sizeof(real) * no);
            fill(c.x, nq, 1); fill(c.R, no, 1);
            real *att = malloc(sizeof(real) * (size_t)c.B * c.H * c.T * c.T), *dq = malloc(sizeof(real) * nq);
            attention_forward(c.out, att, c.x, ids, causal, c.p, 99, 3, c.B, c.T, c.C, c.H);
            attention_backward(dq, c.R, c.x, att, ids, causal, c.p, 99, 3, c.B, c.T, c.C, c.H);
            CHECK(max_fd_error(op_loss, &c, c.x, nq, dq) < FD_TOL);
            /* padding query rows output zero; padding keys get no gradient */
            for (int i = 0; i < c.C; i++) CHECK(c.out[i] == 0 && c.out[c.C + i] == 0);
            for (int i = 0; i < 3 * c.C; i++) CHECK(dq[i] == 0);
            /* probabilities of a real query sum to one (before dropout) */
            double s = 0;
            for (int u = 0; u < c.T; u++) s += att[3 * c.T + u];
            CHECK_CLOSE(s, 1.0, 1e-12);
            free(att); free(dq); free(c.x); free(c.out); free(c.R);
        }
    }
}

static void test_embedding(void) {
    opctx c = {.op = OP_EMB, .B = 2, .T = 4, .C = 3};
    int32_t ids[8] = {0, 2, 2, 1, 3, 1, 0, 2};
    c.ids = ids;
    c.E = malloc(sizeof(real) * 12); c.P = malloc(sizeof(real) * 12);
    c.out = malloc(sizeof(real) * 24); c.R = malloc(sizeof(real) * 24);
    fill(c.E, 12, 1); fill(c.P, 12, 1); fill(c.R, 24, 1);
    real dE[12] = {0}, dP[12] = {0};
    embedding_backward(dE, dP, c.R, ids, c.B, c.T, c.C, 0);
    real dE_fd[12];
    memcpy(dE_fd, dE, sizeof dE);
    /* the padding row is excluded by convention (its finite difference is not zero) */
    for (int i = 0; i < 3; i++) CHECK(dE[i] == 0);
    dE_fd[0] = dE_fd[1] = dE_fd[2] = 0;
    CHECK(max_fd_error(op_loss, &c, c.E + 3, 9, dE_fd + 3) < FD_TOL);
    /* dP excludes padding positions, so compare against the FD with padding rows' R zeroed */
    for (int r = 0; r < 8; r++)
        if (ids[r] == 0)
            for (int i = 0; i < 3; i++) c.R[r * 3 + i] = 0;
    CHECK(max_fd_error(op_loss, &c, c.P, 12, dP) < FD_TOL);
    free(c.E); free(c.P); free(c.out); free(c.R);
}

typedef struct {
    long N;
    int C, V;
    real *h, *W, *w, *loss, *scratch;
    int32_t *y;
} clsctx;

static double cls_loss(void *v) {
    clsctx *c = v;
    classifier_forward_backward(c->loss, NULL, NULL, c->h, c->W, c->y, c->w, c->N, c->C, c->V, c->scratch);
    return dot(c->loss, c->w, (size_t)c->N);
}

static void test_classifier(void) {
    clsctx c = {.N = 9, .C = 4, .V = 7};
    c.h = malloc(sizeof(real) * 36); c.W = malloc(sizeof(real) * 32); c.w = malloc(sizeof(real) * 9);
    c.loss = malloc(sizeof(real) * 9); c.y = malloc(sizeof(int32_t) * 9);
    c.scratch = malloc(sizeof(real) * classifier_scratch_size(c.N, c.C, c.V));
    fill(c.h, 36, 1); fill(c.W, 32, 1);
    for (int r = 0; r < 9; r++) {
        c.w[r] = r % 4 == 0 ? 0 : 0.1 * (r + 1);
        c.y[r] = 1 + r % 7;
    }
    real dh[36], dW[32] = {0};
    classifier_forward_backward(c.loss, dh, dW, c.h, c.W, c.y, c.w, c.N, c.C, c.V, c.scratch);
    CHECK(max_fd_error(cls_loss, &c, c.h, 36, dh) < FD_TOL);
    CHECK(max_fd_error(cls_loss, &c, c.W, 32, dW) < FD_TOL);
    for (int i = 0; i < 4; i++) CHECK(dW[i] == 0); /* padding row is never a candidate */
    CHECK(c.loss[0] == 0 && c.loss[4] == 0);
    /* loss against a direct evaluation (recomputed: the FD loop left the last perturbed loss) */
    cls_loss(&c);
    double z[7], mx = -1e300, s = 0;
    for (int v = 0; v < 7; v++) {
        z[v] = dot(c.h + 4, c.W + 4 * (v + 1), 4);
        mx = fmax(mx, z[v]);
    }
    for (int v = 0; v < 7; v++) s += exp(z[v] - mx);
    CHECK_CLOSE(c.loss[1], mx + log(s) - z[c.y[1] - 1], 1e-12);
    free(c.h); free(c.W); free(c.w); free(c.loss); free(c.y); free(c.scratch);

    /* Chunking: with V large the rows are processed in several chunks; results must not change. */
    classifier_set_chunk_logits(1L << 22);
    clsctx d = {.N = 150, .C = 3, .V = 70000};
    d.h = malloc(sizeof(real) * 450); d.W = malloc(sizeof(real) * 3 * 70001); d.w = malloc(sizeof(real) * 150);
    d.loss = malloc(sizeof(real) * 150); d.y = malloc(sizeof(int32_t) * 150);
    d.scratch = malloc(sizeof(real) * classifier_scratch_size(d.N, d.C, d.V));
    CHECK(classifier_scratch_size(d.N, d.C, d.V) < (size_t)d.N * d.V); /* really chunked */
    fill(d.h, 450, 1); fill(d.W, 3 * 70001, 1);
    for (int r = 0; r < 150; r++) {
        d.w[r] = 1;
        d.y[r] = 1 + (r * 7919) % 70000;
    }
    real *dh2 = malloc(sizeof(real) * 450);
    classifier_forward_backward(d.loss, dh2, NULL, d.h, d.W, d.y, d.w, d.N, d.C, d.V, d.scratch);
    double worst = 0;
    for (int r = 0; r < 150; r += 37) {
        double mx2 = -1e300, s2 = 0, g[3] = {0};
        double *zz = malloc(sizeof(double) * 70000);
        for (int v = 0; v < 70000; v++) {
            zz[v] = dot(d.h + 3 * r, d.W + 3 * (v + 1), 3);
            mx2 = fmax(mx2, zz[v]);
        }
        for (int v = 0; v < 70000; v++) s2 += exp(zz[v] - mx2);
        for (int v = 0; v < 70000; v++) {
            double pr = exp(zz[v] - mx2) / s2 - (v == d.y[r] - 1);
            for (int i = 0; i < 3; i++) g[i] += pr * d.W[3 * (v + 1) + i];
        }
        worst = fmax(worst, fabs(d.loss[r] - (mx2 + log(s2) - zz[d.y[r] - 1])));
        for (int i = 0; i < 3; i++) worst = fmax(worst, fabs(dh2[3 * r + i] - g[i]));
        free(zz);
    }
    CHECK(worst < 1e-10);
    classifier_set_chunk_logits(0);
    free(dh2); free(d.h); free(d.W); free(d.w); free(d.loss); free(d.y); free(d.scratch);
}

/* ---------------- whole model ---------------- */
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

static void test_model(int tied, int causal, float dropout) {
    dp_model_config cfg = dp_model_config_default(9, 6);
    cfg.d_model = 8;
    cfg.n_heads = 2;
    cfg.n_layers = 2;
    cfg.d_ff = 12;
    cfg.tied = tied;
    cfg.causal = causal;
    cfg.dropout = dropout;
    dp_error err;
    dp_model *m = dp_model_create(&cfg, 3, 7, &err);
    CHECK(m != NULL);
    if (!m) return;
    /* Larger random parameters than the default init so that every path matters numerically. */
    real *p = dp_model_params(m);
    for (int i = 0; i < dp_model_num_tensors(m); i++) {
        const dp_param_tensor *t = dp_model_tensor(m, i);
        for (size_t k = 0; k < t->size; k++) p[t->offset + k] += 0.3 * tu_normal(&rng);
    }
    memset(m->p.E, 0, sizeof(real) * cfg.d_model);
    /* left padding, repeated items, an example with a single target, and one fully padded row */
    static const int32_t ids[18] = {0, 0, 3, 5, 3, 9, /**/ 1, 2, 1, 2, 1, 2, /**/ 0, 0, 0, 0, 0, 4};
    static const int32_t tgt[18] = {0, 0, 5, 3, 9, 2, /**/ 2, 1, 2, 1, 2, 7, /**/ 0, 0, 0, 0, 0, 8};
    mctx c = {m, {3, 6, ids, tgt, NULL}, {0.7, -0.4, 1.3}, 42};
    dp_model_zero_grad(m);
    double el[3];
    dp_model_forward_backward(m, &c.bt, c.w, 1, c.seed, el);
    double L = model_loss(&c);
    CHECK_CLOSE(L, c.w[0] * el[0] + c.w[1] * el[1] + c.w[2] * el[2], 1e-12);
    real *g = dp_model_grads(m);
    for (int i = 0; i < dp_model_num_tensors(m); i++) {
        const dp_param_tensor *t = dp_model_tensor(m, i);
        size_t off = t->offset, n = t->size;
        if (strcmp(t->name, "item_emb.weight") == 0 || strcmp(t->name, "out.weight") == 0) {
            off += cfg.d_model; /* padding row excluded by convention */
            n -= cfg.d_model;
            for (int k = 0; k < cfg.d_model; k++) CHECK(g[t->offset + k] == 0);
        }
        double e = max_fd_error(model_loss, &c, p + off, n, g + off);
        if (!(e < FD_TOL)) fprintf(stderr, "tensor %s (tied %d causal %d dropout %g): error %g\n", t->name, tied, causal, dropout, e);
        CHECK(e < FD_TOL);
    }
    /* Causality: changing future items never changes earlier outputs. */
    if (causal) {
        dp_model_forward(m, &c.bt, 0, 0, NULL);
        size_t nrow = (size_t)3 * 6 * cfg.d_model;
        real *before = malloc(sizeof(real) * nrow);
        memcpy(before, m->a.lnf, sizeof(real) * nrow);
        int32_t ids2[18];
        memcpy(ids2, ids, sizeof ids2);
        ids2[4] = 7;
        ids2[5] = 1; /* positions 4,5 of example 0 */
        ids2[11] = 6; /* position 5 of example 1 */
        dp_batch b2 = {3, 6, ids2, tgt, NULL};
        dp_model_forward(m, &b2, 0, 0, NULL);
        double diff_past = 0, diff_future = 0;
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 6; t++)
                for (int k = 0; k < cfg.d_model; k++) {
                    size_t r = ((size_t)b * 6 + t) * cfg.d_model + k;
                    double d = fabs(m->a.lnf[r] - before[r]);
                    if ((b == 0 && t < 4) || (b == 1 && t < 5)) diff_past = fmax(diff_past, d);
                    else diff_future = fmax(diff_future, d);
                }
        CHECK(diff_past == 0);
        CHECK(diff_future > 1e-6); /* the check itself can see a change */
        free(before);
    }
    dp_model_free(m);
}

/* Sequence classification: bidirectional encoder, pooling (first token / mean), head, and the DP-FP
 * clip of the pooled representation with its noise held fixed (two examples clipped, one not). */
static void test_classification(int pool, double clip) {
    dp_model_config cfg = dp_model_config_default(9, 6);
    cfg.d_model = 8;
    cfg.n_heads = 2;
    cfg.n_layers = 2;
    cfg.d_ff = 12;
    cfg.tied = 0;
    cfg.causal = 0;
    cfg.dropout = 0.25f;
    cfg.n_classes = 3;
    cfg.pool = pool;
    cfg.rep_clip = clip;
    dp_error err;
    dp_model *m = dp_model_create(&cfg, 3, 7, &err);
    CHECK(m != NULL);
    if (!m) return;
    real *p = dp_model_params(m);
    for (int i = 0; i < dp_model_num_tensors(m); i++) {
        const dp_param_tensor *t = dp_model_tensor(m, i);
        for (size_t k = 0; k < t->size; k++) p[t->offset + k] += 0.3 * tu_normal(&rng);
    }
    memset(m->p.E, 0, sizeof(real) * cfg.d_model);
    real noise[3 * 8];
    fill(noise, 24, 0.3);
    dp_model_set_rep_noise(m, noise);
    /* right padding (text), repeated tokens, a one-token sequence */
    static const int32_t ids[18] = {1, 4, 5, 4, 0, 0, /**/ 1, 2, 3, 2, 3, 9, /**/ 1, 0, 0, 0, 0, 0};
    static const int32_t lab[3] = {2, 0, 1};
    mctx c = {m, {3, 6, ids, NULL, lab}, {0.7, -0.4, 1.3}, 42};
    dp_model_zero_grad(m);
    double el[3];
    dp_model_forward_backward(m, &c.bt, c.w, 1, c.seed, el);
    if (clip > 0) {
        int clipped = 0;
        for (int b = 0; b < 3; b++) {
            double sq = 0;
            for (int i = 0; i < 8; i++) sq += (m->a.rep[b * 8 + i] - noise[b * 8 + i]) * (m->a.rep[b * 8 + i] - noise[b * 8 + i]);
            CHECK(sqrt(sq) <= clip * (1 + 1e-12)); /* the clipped representation never exceeds C */
            clipped += m->a.rep_scale[b] < 1;
        }
        if (!(clipped >= 1 && clipped <= 2)) {
            fprintf(stderr, "pooled norms:");
            for (int b = 0; b < 3; b++) fprintf(stderr, " %g", clip / m->a.rep_scale[b]);
            fprintf(stderr, "\n");
        }
        CHECK(clipped >= 1 && clipped <= 2); /* both branches of the clip are exercised */
    }
    double L = model_loss(&c);
    CHECK_CLOSE(L, c.w[0] * el[0] + c.w[1] * el[1] + c.w[2] * el[2], 1e-12);
    real *g = dp_model_grads(m);
    for (int i = 0; i < dp_model_num_tensors(m); i++) {
        const dp_param_tensor *t = dp_model_tensor(m, i);
        size_t off = t->offset, n = t->size;
        if (strcmp(t->name, "item_emb.weight") == 0) {
            off += cfg.d_model;
            n -= cfg.d_model;
        }
        double e = max_fd_error(model_loss, &c, p + off, n, g + off);
        if (!(e < FD_TOL)) fprintf(stderr, "classification tensor %s (pool %d clip %g): error %g\n", t->name, pool, clip, e);
        CHECK(e < FD_TOL);
    }
    dp_model_free(m);
}

int main(void) {
    test_linear();
    test_layernorm();
    test_elementwise();
    test_attention();
    test_embedding();
    test_classifier();
    test_model(1, 1, 0);
    test_model(0, 1, 0);
    test_model(1, 0, 0);
    test_model(1, 1, 0.25f);
    test_model(0, 0, 0.25f);
    test_classification(DP_POOL_FIRST, 0);
    test_classification(DP_POOL_MEAN, 0);
    test_classification(DP_POOL_FIRST, 2.9);
    test_classification(DP_POOL_MEAN, 2.4);
    return tu_finish("test_model_grad_f64");
}
