/* CUDA backend parity of the element-wise and row ops (LayerNorm, GELU exact and tanh, dropout, add,
 * embedding with either position rule, the
 * classification head's pooling, representation clip and softmax cross-entropy, per-example row
 * scaling, the clipping engine's per-example reductions): each runs on the CPU (src/ops) and through
 * the CUDA backend's op table on the same random inputs; outputs that an op overwrites start as NaN on
 * the device, outputs it accumulates into start from the same random values on both sides. Relative
 * error 1e-5 (1e-4 for sums over many rows; 1e-6 for the per-example sums made in double). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dpformer/model.h"
#include "gpu_testutil.h"

static uint64_t rng = 20240611;
static const dp_backend *be;

#define TOL 1e-5
#define TOL_SUM 1e-4
#define TOL_D 1e-6

static real *dev(const real *h, size_t n) { return gt_to_dev(be, h, sizeof(real) * n); }
static int32_t *dev_ids(const int32_t *h, size_t n) { return gt_to_dev(be, h, sizeof(int32_t) * n); }

/* Compare n reals of device memory with the host reference. */
static void expect(const char *op, const char *what, int B, int T, int C, const real *d, const real *ref, size_t n,
                   double tol) {
    char name[128];
    snprintf(name, sizeof name, "%s %s (B=%d T=%d C=%d)", op, what, B, T, C);
    real *h = gt_to_host(be, d, n);
    GT_EXPECT(name, gt_rel_err(h, ref, n), tol);
    free(h);
}

/* Compare n doubles of device memory with the host reference. */
static void expect_d(const char *op, const char *what, int B, int T, int C, const double *d, const double *ref,
                     size_t n, double tol) {
    char name[128];
    snprintf(name, sizeof name, "%s %s (B=%d T=%d C=%d)", op, what, B, T, C);
    double *h = dp_malloc(sizeof(double) * (n ? n : 1));
    if (n) be->download(h, d, sizeof(double) * n);
    GT_EXPECT(name, gt_rel_err_d(h, ref, n), tol);
    free(h);
}

/* ids[B,T] in [0, V]: sequence b has a run of leading padding (none for b = 0), then random ids with
 * some zeros inside; if `empty_last`, the last sequence is all padding. */
static int32_t *random_ids(int B, int T, int V, int empty_last) {
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)B * T);
    for (int b = 0; b < B; b++) {
        int lead = b == 0 ? 0 : (int)(tu_uniform(&rng) * (T / 2 + 1));
        for (int t = 0; t < T; t++) {
            int32_t id = (int32_t)(tu_uniform(&rng) * (V + 1));
            if (id > V) id = V;
            if (t == lead && id == 0) id = 1; /* the first token after the padding is a token */
            ids[(size_t)b * T + t] = t < lead || (empty_last && b == B - 1) ? 0 : id;
        }
    }
    return ids;
}

static void test_layernorm(int B, int T, int C) {
    long N = (long)B * T;
    size_t n = (size_t)N * C;
    real *x = gt_random(&rng, n, 1.5), *w = gt_random(&rng, C, 1.0), *b = gt_random(&rng, C, 1.0);
    for (size_t i = 0; i < n; i++) x[i] += (real)(0.7 + 0.1 * (double)(i / (size_t)C % 5)); /* row offsets */
    real *out = dp_malloc(sizeof(real) * n), *mean = dp_malloc(sizeof(real) * N), *rstd = dp_malloc(sizeof(real) * N);
    layernorm_forward(out, mean, rstd, x, w, b, N, C);
    real *dx = dev(x, n), *dw_ = dev(w, C), *db_ = dev(b, C);
    real *dout = gt_dev_poison(be, n), *dmean = gt_dev_poison(be, N), *drstd = gt_dev_poison(be, N);
    be->layernorm_forward(dout, dmean, drstd, dx, dw_, db_, N, C);
    expect("layernorm_forward", "out", B, T, C, dout, out, n, TOL);
    expect("layernorm_forward", "mean", B, T, C, dmean, mean, N, TOL);
    expect("layernorm_forward", "rstd", B, T, C, drstd, rstd, N, TOL);

    /* backward from the CPU's statistics (the same on both sides) */
    real *g = gt_random(&rng, n, 1.0), *dinp = gt_random(&rng, n, 1.0);
    real *gw = gt_random(&rng, C, 1.0), *gb = gt_random(&rng, C, 1.0);
    real *d_g = dev(g, n), *d_dinp = dev(dinp, n), *d_gw = dev(gw, C), *d_gb = dev(gb, C);
    be->upload(dmean, mean, sizeof(real) * N);
    be->upload(drstd, rstd, sizeof(real) * N);
    layernorm_backward(dinp, gw, gb, g, x, w, mean, rstd, N, C);
    be->layernorm_backward(d_dinp, d_gw, d_gb, d_g, dx, dw_, dmean, drstd, N, C);
    expect("layernorm_backward", "dinp (+=)", B, T, C, d_dinp, dinp, n, TOL);
    expect("layernorm_backward", "dw (+=)", B, T, C, d_gw, gw, C, TOL_SUM);
    expect("layernorm_backward", "db (+=)", B, T, C, d_gb, gb, C, TOL_SUM);
    /* dw, db NULL: dinp only (accumulating again onto the previous result) */
    layernorm_backward(dinp, NULL, NULL, g, x, w, mean, rstd, N, C);
    be->layernorm_backward(d_dinp, NULL, NULL, d_g, dx, dw_, dmean, drstd, N, C);
    expect("layernorm_backward", "dinp, dw=db=NULL", B, T, C, d_dinp, dinp, n, TOL);

    real *hp[] = {x, w, b, out, mean, rstd, g, dinp, gw, gb};
    for (size_t i = 0; i < sizeof hp / sizeof *hp; i++) free(hp[i]);
    real *dp[] = {dx, dw_, db_, dout, dmean, drstd, d_g, d_dinp, d_gw, d_gb};
    for (size_t i = 0; i < sizeof dp / sizeof *dp; i++) be->free(dp[i]);
}

static void test_gelu_dropout_add(int B, int T, int C) {
    long n = (long)B * T * C;
    real *x = gt_random(&rng, n, 2.0), *g = gt_random(&rng, n, 1.0), *y = gt_random(&rng, n, 1.0);
    real *out = dp_malloc(sizeof(real) * n);
    real *dx = dev(x, n), *dg = dev(g, n), *dy = dev(y, n), *dout = gt_dev_poison(be, n);

    gelu_forward(out, x, n);
    be->gelu_forward(dout, dx, n);
    expect("gelu_forward", "out", B, T, C, dout, out, n, TOL);
    be->free(dout);
    dout = gt_dev_poison(be, n);
    gelu_backward(out, g, x, n);
    be->gelu_backward(dout, dg, dx, n);
    expect("gelu_backward", "dinp", B, T, C, dout, out, n, TOL);
    be->free(dout);
    dout = gt_dev_poison(be, n);
    gelu_tanh_forward(out, x, n);
    be->gelu_tanh_forward(dout, dx, n);
    expect("gelu_tanh_forward", "out", B, T, C, dout, out, n, TOL);
    be->free(dout);
    dout = gt_dev_poison(be, n);
    gelu_tanh_backward(out, g, x, n);
    be->gelu_tanh_backward(dout, dg, dx, n);
    expect("gelu_tanh_backward", "dinp", B, T, C, dout, out, n, TOL);

    const uint64_t seed = 0x1234abcdull, idx0 = 1000003;
    float ps[] = {0.1f, 0.0f};
    for (int k = 0; k < 2; k++) {
        float p = ps[k];
        char what[64];
        be->free(dout);
        dout = gt_dev_poison(be, n);
        dropout_forward(out, x, n, p, seed, idx0);
        be->dropout_forward(dout, dx, n, p, seed, idx0);
        snprintf(what, sizeof what, "out, p=%g", p);
        expect("dropout_forward", what, B, T, C, dout, out, n, TOL);
        /* in place */
        real *dxi = dev(x, n);
        be->dropout_forward(dxi, dxi, n, p, seed, idx0);
        snprintf(what, sizeof what, "in place, p=%g", p);
        expect("dropout_forward", what, B, T, C, dxi, out, n, TOL);
        be->free(dxi);
        be->free(dout);
        dout = gt_dev_poison(be, n);
        dropout_backward(out, g, n, p, seed, idx0);
        be->dropout_backward(dout, dg, n, p, seed, idx0);
        snprintf(what, sizeof what, "dinp, p=%g", p);
        expect("dropout_backward", what, B, T, C, dout, out, n, TOL);
        real *dgi = dev(g, n);
        be->dropout_backward(dgi, dgi, n, p, seed, idx0);
        snprintf(what, sizeof what, "in place, p=%g", p);
        expect("dropout_backward", what, B, T, C, dgi, out, n, TOL);
        be->free(dgi);
    }

    add_into(out, x, y, n);
    be->free(dout);
    dout = gt_dev_poison(be, n);
    be->add(dout, dx, dy, n);
    expect("add", "out", B, T, C, dout, out, n, TOL);
    be->add(dx, dx, dy, n); /* out aliases a */
    expect("add", "out = a", B, T, C, dx, out, n, TOL);

    free(x);
    free(g);
    free(y);
    free(out);
    be->free(dx);
    be->free(dg);
    be->free(dy);
    be->free(dout);
}

static void test_embedding(int B, int T, int C, int from_first) {
    const int V = 40; /* few ids: repeats */
    size_t N = (size_t)B * T, n = N * C;
    int32_t *ids = random_ids(B, T, V, 0);
    real *E = gt_random(&rng, (size_t)(V + 1) * C, 1.0), *P = gt_random(&rng, (size_t)T * C, 1.0);
    real *out = dp_malloc(sizeof(real) * n);
    int32_t *dids = dev_ids(ids, N);
    real *dE = dev(E, (size_t)(V + 1) * C), *dP = dev(P, (size_t)T * C), *dout = gt_dev_poison(be, n);
    embedding_forward(out, ids, E, P, B, T, C, from_first);
    be->embedding_forward(dout, dids, dE, dP, B, T, C, from_first);
    expect("embedding_forward", from_first ? "out, positions from the first token" : "out", B, T, C, dout, out, n, TOL);

    real *g = gt_random(&rng, n, 1.0), *dg = dev(g, n);
    /* accumulate into E and P themselves (random initial values, the same on both sides) */
    const char *what[] = {"dE, dP (+=)", "dE only (dP NULL)", "dP only (dE NULL)"};
    for (int k = 0; k < 3; k++) {
        real *hE = k == 2 ? NULL : E, *hP = k == 1 ? NULL : P;
        embedding_backward(hE, hP, g, ids, B, T, C, from_first);
        be->embedding_backward(k == 2 ? NULL : dE, k == 1 ? NULL : dP, dg, dids, B, T, C, from_first);
        char w[96];
        snprintf(w, sizeof w, "%s: dE%s", what[k], from_first ? " (positions from the first token)" : "");
        expect("embedding_backward", w, B, T, C, dE, E, (size_t)(V + 1) * C, TOL_SUM);
        snprintf(w, sizeof w, "%s: dP%s", what[k], from_first ? " (positions from the first token)" : "");
        expect("embedding_backward", w, B, T, C, dP, P, (size_t)T * C, TOL_SUM);
    }
    free(ids);
    free(E);
    free(P);
    free(out);
    free(g);
    be->free(dids);
    be->free(dE);
    be->free(dP);
    be->free(dout);
    be->free(dg);
}

static void test_pool(int B, int T, int C) {
    size_t n = (size_t)B * T * C;
    int32_t *ids = random_ids(B, T, 30, 1); /* the last sequence has no tokens */
    real *h = gt_random(&rng, n, 1.0), *gp = gt_random(&rng, (size_t)B * C, 1.0);
    real *pooled = dp_malloc(sizeof(real) * (size_t)B * C), *dh = dp_malloc(sizeof(real) * n);
    int32_t *dids = dev_ids(ids, (size_t)B * T);
    real *d_h = dev(h, n), *d_gp = dev(gp, (size_t)B * C);
    int pools[] = {DP_POOL_FIRST, DP_POOL_MEAN};
    for (int k = 0; k < 2; k++) {
        const char *pn = k == 0 ? "FIRST" : "MEAN";
        char w[64];
        real *d_pooled = gt_dev_poison(be, (size_t)B * C), *d_dh = gt_dev_poison(be, n);
        pool_forward(pooled, h, ids, pools[k], B, T, C);
        be->pool_forward(d_pooled, d_h, dids, pools[k], B, T, C);
        snprintf(w, sizeof w, "pooled, %s", pn);
        expect("pool_forward", w, B, T, C, d_pooled, pooled, (size_t)B * C, TOL);
        pool_backward(dh, gp, ids, pools[k], B, T, C);
        be->pool_backward(d_dh, d_gp, dids, pools[k], B, T, C);
        snprintf(w, sizeof w, "dh, %s", pn);
        expect("pool_backward", w, B, T, C, d_dh, dh, n, TOL);
        be->free(d_pooled);
        be->free(d_dh);
    }
    free(ids);
    free(h);
    free(gp);
    free(pooled);
    free(dh);
    be->free(dids);
    be->free(d_h);
    be->free(d_gp);
}

static void test_rep_clip(int B, int C) {
    size_t n = (size_t)B * C;
    real *x = gt_random(&rng, n, 1.0), *noise = gt_random(&rng, n, 0.3), *g = gt_random(&rng, n, 1.0);
    double *norm = dp_malloc(sizeof(double) * B), lo = INFINITY, hi = 0;
    for (int b = 0; b < B; b++) {
        double f = 0.5 + b, sq = 0; /* rows of growing norm */
        for (int i = 0; i < C; i++) {
            x[(size_t)b * C + i] *= (real)f;
            sq += (double)x[(size_t)b * C + i] * x[(size_t)b * C + i];
        }
        norm[b] = sqrt(sq);
        lo = fmin(lo, norm[b]);
        hi = fmax(hi, norm[b]);
    }
    double clips[] = {0.5 * (lo + hi), 0.0}; /* some rows clipped, some not; then no clipping */
    real *rep = dp_malloc(sizeof(real) * n), *scale = dp_malloc(sizeof(real) * B), *dx = dp_malloc(sizeof(real) * n);
    real *d_x = dev(x, n), *d_noise = dev(noise, n), *d_g = dev(g, n);
    for (int k = 0; k < 2; k++)
        for (int withnoise = 0; withnoise < 2; withnoise++) {
            char w[64];
            double clip = clips[k];
            int clipped = 0;
            for (int b = 0; b < B; b++) clipped += clip > 0 && norm[b] > clip;
            real *d_rep = gt_dev_poison(be, n), *d_scale = gt_dev_poison(be, B), *d_dx = gt_dev_poison(be, n);
            rep_clip_forward(rep, scale, x, withnoise ? noise : NULL, clip, B, C);
            be->rep_clip_forward(d_rep, d_scale, d_x, withnoise ? d_noise : NULL, clip, B, C);
            snprintf(w, sizeof w, "rep, clip=%.3g (%d/%d clipped), noise %s", clip, clipped, B,
                     withnoise ? "on" : "NULL");
            expect("rep_clip_forward", w, B, 1, C, d_rep, rep, n, TOL);
            snprintf(w, sizeof w, "scale, clip=%.3g", clip);
            expect("rep_clip_forward", w, B, 1, C, d_scale, scale, B, TOL);
            /* backward from the CPU's scale */
            be->upload(d_scale, scale, sizeof(real) * B);
            rep_clip_backward(dx, g, x, scale, B, C);
            be->rep_clip_backward(d_dx, d_g, d_x, d_scale, B, C);
            snprintf(w, sizeof w, "dx, clip=%.3g", clip);
            expect("rep_clip_backward", w, B, 1, C, d_dx, dx, n, TOL);
            be->free(d_rep);
            be->free(d_scale);
            be->free(d_dx);
        }
    free(x);
    free(noise);
    free(g);
    free(norm);
    free(rep);
    free(scale);
    free(dx);
    be->free(d_x);
    be->free(d_noise);
    be->free(d_g);
}

static void test_softmax_xent(int B, int K) {
    size_t n = (size_t)B * K;
    real *z = gt_random(&rng, n, 3.0), *wt = gt_random(&rng, B, 1.0);
    int32_t *labels = dp_malloc(sizeof(int32_t) * B);
    for (int b = 0; b < B; b++) {
        labels[b] = (int32_t)(tu_uniform(&rng) * K);
        if (labels[b] >= K) labels[b] = K - 1;
    }
    real *loss = dp_malloc(sizeof(real) * B), *dz = dp_malloc(sizeof(real) * n);
    real *d_z = dev(z, n), *d_wt = dev(wt, B);
    int32_t *d_labels = dev_ids(labels, B);
    for (int k = 0; k < 3; k++) { /* weight NULL; weight; dz NULL */
        const char *cs = k == 0 ? "weight NULL" : k == 1 ? "weight" : "dz NULL";
        char w[64];
        real *d_loss = gt_dev_poison(be, B), *d_dz = gt_dev_poison(be, n);
        softmax_xent(loss, k == 2 ? NULL : dz, z, labels, k == 1 ? wt : NULL, B, K);
        be->softmax_xent(d_loss, k == 2 ? NULL : d_dz, d_z, d_labels, k == 1 ? d_wt : NULL, B, K);
        snprintf(w, sizeof w, "loss, K=%d, %s", K, cs);
        expect("softmax_xent", w, B, 1, K, d_loss, loss, B, TOL);
        if (k < 2) {
            snprintf(w, sizeof w, "dz, K=%d, %s", K, cs);
            expect("softmax_xent", w, B, 1, K, d_dz, dz, n, TOL);
        }
        be->free(d_loss);
        be->free(d_dz);
    }
    free(z);
    free(wt);
    free(labels);
    free(loss);
    free(dz);
    be->free(d_z);
    be->free(d_wt);
    be->free(d_labels);
}

static void test_rows_scale(int B, int T, int C) {
    size_t n = (size_t)B * T * C;
    real *x = gt_random(&rng, n, 1.0);
    double *c = dp_malloc(sizeof(double) * B);
    for (int b = 0; b < B; b++) c[b] = 0.1 + tu_uniform(&rng);
    real *d_x = dev(x, n);
    double *d_c = gt_to_dev(be, c, sizeof(double) * B);
    rows_scale_by_example(x, c, B, T, C);
    be->rows_scale_by_example(d_x, d_c, B, T, C);
    expect("rows_scale_by_example", "x (in place)", B, T, C, d_x, x, n, TOL);
    free(x);
    free(c);
    be->free(d_x);
    be->free(d_c);
}

/* The clipping engine's reductions: per_example_sqnorm_add over rows of width C and T·C,
 * per_example_dot_add with first positions lo[b] from 0 to T (b = 0 starts at 0, the last example at T:
 * no rows), scale 2, and weighted_rows_sum over widths C and T·C; sq and dw start from the same random
 * values on both sides, and B = 0 leaves them alone. */
static void test_per_example_reductions(int B, int T, int C) {
    size_t N = (size_t)B * T, n = N * C;
    real *X = gt_random(&rng, n, 1.0), *Y = gt_random(&rng, n, 1.0), *dw = gt_random(&rng, n, 1.0);
    double *sq = dp_malloc(sizeof(double) * B), *c = dp_malloc(sizeof(double) * B);
    int *lo = dp_malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++) {
        sq[b] = 0.5 + tu_uniform(&rng);
        c[b] = 0.1 + tu_uniform(&rng);
        lo[b] = b == 0 ? 0 : b == B - 1 ? T : (int)(tu_uniform(&rng) * T);
    }
    real *d_X = dev(X, n), *d_Y = dev(Y, n), *d_dw = dev(dw, n);
    double *d_sq = gt_to_dev(be, sq, sizeof(double) * B), *d_c = gt_to_dev(be, c, sizeof(double) * B);
    int *d_lo = gt_to_dev(be, lo, sizeof(int) * B);
    const int widths[] = {C, T * C};
    char w[64];

    for (int k = 0; k < 2; k++) {
        per_example_sqnorm_add(sq, X, B, widths[k]);
        be->per_example_sqnorm_add(d_sq, d_X, B, widths[k]);
        snprintf(w, sizeof w, "sq (+=), W=%d", widths[k]);
        expect_d("per_example_sqnorm_add", w, B, T, C, d_sq, sq, B, TOL_D);
    }
    per_example_dot_add(sq, X, Y, lo, B, T, C, 2.0);
    be->per_example_dot_add(d_sq, d_X, d_Y, d_lo, B, T, C, 2.0);
    expect_d("per_example_dot_add", "sq (+=), scale 2, lo 0..T", B, T, C, d_sq, sq, B, TOL_D);
    for (int k = 0; k < 2; k++) {
        weighted_rows_sum(dw, X, c, B, widths[k]);
        be->weighted_rows_sum(d_dw, d_X, d_c, B, widths[k]);
        snprintf(w, sizeof w, "dw (+=), W=%d", widths[k]);
        expect("weighted_rows_sum", w, B, T, C, d_dw, dw, (size_t)widths[k], TOL);
    }
    /* B = 0: nothing to do, nothing touched (compared with the device's own values before) */
    be->download(sq, d_sq, sizeof(double) * B);
    be->download(dw, d_dw, sizeof(real) * C);
    be->per_example_sqnorm_add(d_sq, d_X, 0, C);
    be->per_example_dot_add(d_sq, d_X, d_Y, d_lo, 0, T, C, 2.0);
    be->weighted_rows_sum(d_dw, d_X, d_c, 0, C);
    expect_d("per_example_*_add", "B=0: sq unchanged", B, T, C, d_sq, sq, B, 0.0);
    expect("weighted_rows_sum", "B=0: dw unchanged", B, T, C, d_dw, dw, (size_t)C, 0.0);

    free(X);
    free(Y);
    free(dw);
    free(sq);
    free(c);
    free(lo);
    be->free(d_X);
    be->free(d_Y);
    be->free(d_dw);
    be->free(d_sq);
    be->free(d_c);
    be->free(d_lo);
}

static void run_case(int B, int T, int C) {
    printf("B=%d T=%d C=%d\n", B, T, C);
    test_layernorm(B, T, C);
    test_gelu_dropout_add(B, T, C);
    test_embedding(B, T, C, 0);
    test_embedding(B, T, C, 1);
    test_pool(B, T, C);
    test_rep_clip(B * 2, C);
    test_softmax_xent(B * 2, 5);
    test_softmax_xent(B, C);
    test_rows_scale(B, T, C);
    test_per_example_reductions(B, T, C);
}

int main(void) {
    be = gt_cuda_or_skip("test_gpu_elementwise");
    if (!be) return GT_SKIP;
    run_case(3, 17, 96);
    run_case(10, 500, 256); /* N = 5000 rows */
    run_case(2, 5, 33);     /* sizes off the warp width */
    return tu_finish("test_gpu_elementwise");
}
