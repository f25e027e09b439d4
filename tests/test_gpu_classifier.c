/* GPU parity of the output layer (classifier_forward_backward: loss, dh, dW; chunked rows, skipped
 * rows, forward-only and partial calls) and of the privacy engine's per-example kernels
 * (linear_per_example_sqnorm in all three methods with and without bias, layernorm_per_example_grads,
 * embedding_per_example_sqnorm with repeated ids, padding and sq_emb == sq_pos) against the CPU ops on
 * random inputs, through the CUDA backend's table. Skipped (exit 77) without a GPU. */
#include "gpu_testutil.h"

static uint64_t rng = 0x5EEDC1A55u;

static void *host_copy(const void *src, size_t bytes) {
    void *d = dp_malloc(bytes ? bytes : 1);
    if (bytes) memcpy(d, src, bytes);
    return d;
}

static double *dev_to_host_d(const dp_backend *be, const double *d, size_t n) {
    double *h = dp_malloc(sizeof(double) * (n ? n : 1));
    if (n) be->download(h, d, sizeof(double) * n);
    return h;
}

/* ---------------- output layer ---------------- */

static void test_classifier(const dp_backend *be, long N, int C, int V) {
    char name[128];
    printf("classifier N=%ld C=%d V=%d\n", N, C, V);
    real *h = gt_random(&rng, (size_t)N * C, 1.0);
    real *W = gt_random(&rng, (size_t)(V + 1) * C, 2.0 / sqrt((double)C));
    real *dW0 = gt_random(&rng, (size_t)(V + 1) * C, 0.1);
    real *weight = dp_malloc(sizeof(real) * (size_t)N);
    int32_t *target = dp_malloc(sizeof(int32_t) * (size_t)N);
    long nskip = 0;
    for (long r = 0; r < N; r++) {
        int skip = tu_uniform(&rng) < 0.2 || r == N - 1;
        weight[r] = skip ? 0 : (real)(0.25 + 1.75 * tu_uniform(&rng));
        int y = 1 + (int)(tu_uniform(&rng) * V);
        target[r] = skip ? 0 : (y > V ? V : y); /* skipped rows: padding target, never read */
        nskip += skip;
    }

    /* CPU reference: full call, forward only, dh only */
    real *scr = dp_malloc(sizeof(real) * classifier_scratch_size(N, C, V));
    real *loss_c = dp_malloc(sizeof(real) * (size_t)N), *dh_c = dp_malloc(sizeof(real) * (size_t)N * C);
    real *dW_c = host_copy(dW0, sizeof(real) * (size_t)(V + 1) * C);
    classifier_forward_backward(loss_c, dh_c, dW_c, h, W, target, weight, N, C, V, scr);
    real *loss_f = dp_malloc(sizeof(real) * (size_t)N);
    classifier_forward_backward(loss_f, NULL, NULL, h, W, target, weight, N, C, V, scr);
    real *dh_o = dp_malloc(sizeof(real) * (size_t)N * C), *loss_o = dp_malloc(sizeof(real) * (size_t)N);
    classifier_forward_backward(loss_o, dh_o, NULL, h, W, target, weight, N, C, V, scr);
    free(scr);

    /* GPU */
    real *d_h = gt_to_dev(be, h, sizeof(real) * (size_t)N * C);
    real *d_W = gt_to_dev(be, W, sizeof(real) * (size_t)(V + 1) * C);
    real *d_w = gt_to_dev(be, weight, sizeof(real) * (size_t)N);
    int32_t *d_t = gt_to_dev(be, target, sizeof(int32_t) * (size_t)N);
    size_t nscr = be->classifier_scratch_size(N, C, V);
    real *d_scr = gt_dev_poison(be, nscr);
    real *d_loss = gt_dev_poison(be, (size_t)N), *d_dh = gt_dev_poison(be, (size_t)N * C);
    real *d_dW = gt_to_dev(be, dW0, sizeof(real) * (size_t)(V + 1) * C);
    be->classifier_forward_backward(d_loss, d_dh, d_dW, d_h, d_W, d_t, d_w, N, C, V, d_scr);
    real *loss_g = gt_to_host(be, d_loss, (size_t)N), *dh_g = gt_to_host(be, d_dh, (size_t)N * C);
    real *dW_g = gt_to_host(be, d_dW, (size_t)(V + 1) * C);
    snprintf(name, sizeof name, "loss (N=%ld V=%d)", N, V);
    GT_EXPECT(name, gt_rel_err(loss_g, loss_c, (size_t)N), 1e-4);
    snprintf(name, sizeof name, "dh (N=%ld V=%d)", N, V);
    GT_EXPECT(name, gt_rel_err(dh_g, dh_c, (size_t)N * C), 1e-4);
    snprintf(name, sizeof name, "dW accumulated (N=%ld V=%d)", N, V);
    GT_EXPECT(name, gt_rel_err(dW_g, dW_c, (size_t)(V + 1) * C), 1e-4);
    /* skipped rows: loss exactly 0, dh rows exactly 0; padding row 0 of dW untouched */
    long bad = 0;
    for (long r = 0; r < N; r++) {
        if (weight[r] != 0) continue;
        bad += loss_g[r] != 0;
        for (int i = 0; i < C; i++) bad += dh_g[(size_t)r * C + i] != 0;
    }
    CHECK(nskip > 0);
    CHECK(bad == 0);
    CHECK(memcmp(dW_g, dW0, sizeof(real) * (size_t)C) == 0);

    /* forward only: dh = dW = NULL */
    real *d_loss2 = gt_dev_poison(be, (size_t)N);
    be->classifier_forward_backward(d_loss2, NULL, NULL, d_h, d_W, d_t, d_w, N, C, V, d_scr);
    real *loss2_g = gt_to_host(be, d_loss2, (size_t)N);
    snprintf(name, sizeof name, "loss, forward only (N=%ld V=%d)", N, V);
    GT_EXPECT(name, gt_rel_err(loss2_g, loss_f, (size_t)N), 1e-4);

    /* dh without dW */
    real *d_loss3 = gt_dev_poison(be, (size_t)N), *d_dh3 = gt_dev_poison(be, (size_t)N * C);
    be->classifier_forward_backward(d_loss3, d_dh3, NULL, d_h, d_W, d_t, d_w, N, C, V, d_scr);
    real *loss3_g = gt_to_host(be, d_loss3, (size_t)N), *dh3_g = gt_to_host(be, d_dh3, (size_t)N * C);
    snprintf(name, sizeof name, "loss, dW NULL (N=%ld V=%d)", N, V);
    GT_EXPECT(name, gt_rel_err(loss3_g, loss_o, (size_t)N), 1e-4);
    snprintf(name, sizeof name, "dh, dW NULL (N=%ld V=%d)", N, V);
    GT_EXPECT(name, gt_rel_err(dh3_g, dh_o, (size_t)N * C), 1e-4);

    be->free(d_h);
    be->free(d_W);
    be->free(d_w);
    be->free(d_t);
    be->free(d_scr);
    be->free(d_loss);
    be->free(d_dh);
    be->free(d_dW);
    be->free(d_loss2);
    be->free(d_loss3);
    be->free(d_dh3);
    free(h);
    free(W);
    free(dW0);
    free(weight);
    free(target);
    free(loss_c);
    free(dh_c);
    free(dW_c);
    free(loss_f);
    free(dh_o);
    free(loss_o);
    free(loss_g);
    free(dh_g);
    free(dW_g);
    free(loss2_g);
    free(loss3_g);
    free(dh3_g);
}

/* ---------------- per-example norms ---------------- */

/* Starting values of an accumulated sq[]: of the size of what is added (so that overwriting instead of
 * adding shows), and non-zero where nothing is added. */
static double *sq_start(const double *added, int B) {
    double *s = dp_malloc(sizeof(double) * (size_t)B);
    for (int b = 0; b < B; b++) s[b] = added[b] * (0.5 + tu_uniform(&rng)) + 1.0 + tu_uniform(&rng);
    return s;
}

static const char *method_name(dp_norm_method m) {
    return m == DP_NORM_AUTO ? "auto" : m == DP_NORM_GRAM ? "gram" : "instantiate";
}

/* lo[] as given; A and G hold non-zero values in the padding rows too (both sides must ignore them). */
static void test_linear_norms(const dp_backend *be, int B, int T, int Cin, int Cout, const int *lo) {
    char name[160];
    printf("linear_per_example_sqnorm B=%d T=%d Cin=%d Cout=%d\n", B, T, Cin, Cout);
    size_t N = (size_t)B * T;
    real *A = gt_random(&rng, N * Cin, 1.0), *G = gt_random(&rng, N * Cout, 1.0);
    real *d_A = gt_to_dev(be, A, sizeof(real) * N * Cin), *d_G = gt_to_dev(be, G, sizeof(real) * N * Cout);
    int *d_lo = gt_to_dev(be, lo, sizeof(int) * (size_t)B);
    double *zero = dp_calloc((size_t)B, sizeof(double));
    for (int m = 0; m < 3; m++)
        for (int wb = 0; wb < 2; wb++) {
            dp_norm_method method = (dp_norm_method)m;
            double *ref0 = host_copy(zero, sizeof(double) * (size_t)B);
            linear_per_example_sqnorm(ref0, G, A, lo, B, T, Cin, Cout, wb, method);
            double *sq0 = sq_start(ref0, B);
            double *ref = host_copy(sq0, sizeof(double) * (size_t)B);
            linear_per_example_sqnorm(ref, G, A, lo, B, T, Cin, Cout, wb, method);
            double *d_sq = gt_to_dev(be, sq0, sizeof(double) * (size_t)B);
            be->linear_per_example_sqnorm(d_sq, d_G, d_A, d_lo, B, T, Cin, Cout, wb, method);
            double *got = dev_to_host_d(be, d_sq, (size_t)B);
            snprintf(name, sizeof name, "linear sq %s bias=%d (T=%d %dx%d)", method_name(method), wb, T, Cin, Cout);
            GT_EXPECT(name, gt_rel_err_d(got, ref, (size_t)B), 1e-4);
            for (int b = 0; b < B; b++)
                if (lo[b] >= T) CHECK(got[b] == sq0[b]); /* an example without rows adds nothing */
            be->free(d_sq);
            free(ref0);
            free(sq0);
            free(ref);
            free(got);
        }
    be->free(d_A);
    be->free(d_G);
    be->free(d_lo);
    free(A);
    free(G);
    free(zero);
}

static void test_layernorm_grads(const dp_backend *be, int B, int T, int C, const int *lo) {
    char name[128];
    printf("layernorm_per_example_grads B=%d T=%d C=%d\n", B, T, C);
    size_t N = (size_t)B * T;
    real *dout = gt_random(&rng, N * C, 1.0), *inp = gt_random(&rng, N * C, 2.0);
    real *mean = gt_random(&rng, N, 0.5), *rstd = dp_malloc(sizeof(real) * N);
    for (size_t r = 0; r < N; r++) rstd[r] = (real)(0.5 + 1.5 * tu_uniform(&rng));
    real *gw_c = dp_malloc(sizeof(real) * (size_t)B * C), *gb_c = dp_malloc(sizeof(real) * (size_t)B * C);
    layernorm_per_example_grads(gw_c, gb_c, dout, inp, mean, rstd, lo, B, T, C);
    real *d_dout = gt_to_dev(be, dout, sizeof(real) * N * C), *d_inp = gt_to_dev(be, inp, sizeof(real) * N * C);
    real *d_mean = gt_to_dev(be, mean, sizeof(real) * N), *d_rstd = gt_to_dev(be, rstd, sizeof(real) * N);
    int *d_lo = gt_to_dev(be, lo, sizeof(int) * (size_t)B);
    real *d_gw = gt_dev_poison(be, (size_t)B * C), *d_gb = gt_dev_poison(be, (size_t)B * C);
    be->layernorm_per_example_grads(d_gw, d_gb, d_dout, d_inp, d_mean, d_rstd, d_lo, B, T, C);
    real *gw = gt_to_host(be, d_gw, (size_t)B * C), *gb = gt_to_host(be, d_gb, (size_t)B * C);
    snprintf(name, sizeof name, "layernorm per-example gw (T=%d C=%d)", T, C);
    GT_EXPECT(name, gt_rel_err(gw, gw_c, (size_t)B * C), 1e-5);
    snprintf(name, sizeof name, "layernorm per-example gb (T=%d C=%d)", T, C);
    GT_EXPECT(name, gt_rel_err(gb, gb_c, (size_t)B * C), 1e-5);
    be->free(d_dout);
    be->free(d_inp);
    be->free(d_mean);
    be->free(d_rstd);
    be->free(d_lo);
    be->free(d_gw);
    be->free(d_gb);
    free(dout);
    free(inp);
    free(mean);
    free(rstd);
    free(gw_c);
    free(gb_c);
    free(gw);
    free(gb);
}

/* ids[B,T] with few distinct values (repeats) and padding: leading, scattered, everywhere. */
static int32_t *make_ids(int B, int T, int nid) {
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t v = 1 + (int32_t)(tu_uniform(&rng) * nid);
            if (v > nid) v = nid;
            switch (b % 5) {
            case 1: v = t < T / 3 ? 0 : v; break;              /* leading padding */
            case 2: v = b == 2 ? 0 : v; break;                 /* example 2: all padding */
            case 3: v = tu_uniform(&rng) < 0.3 ? 0 : v; break; /* padding anywhere */
            case 4: v = 3; break;                              /* one id repeated everywhere */
            default: break;
            }
            ids[(size_t)b * T + t] = v;
        }
    return ids;
}

static void test_embedding_norms(const dp_backend *be, int B, int T, int C, int nid) {
    char name[128];
    printf("embedding_per_example_sqnorm B=%d T=%d C=%d ids 1..%d\n", B, T, C, nid);
    size_t N = (size_t)B * T;
    real *G = gt_random(&rng, N * C, 1.0);
    int32_t *ids = make_ids(B, T, nid);
    real *d_G = gt_to_dev(be, G, sizeof(real) * N * C);
    int32_t *d_ids = gt_to_dev(be, ids, sizeof(int32_t) * N);
    double *zero = dp_calloc((size_t)B, sizeof(double));
    double *e0 = host_copy(zero, sizeof(double) * (size_t)B), *p0 = host_copy(zero, sizeof(double) * (size_t)B);
    embedding_per_example_sqnorm(e0, p0, G, ids, B, T, C);
    /* the same start for both sides; the CPU adds in double exactly as the GPU up to summation order */
    double *se0 = sq_start(e0, B), *sp0 = sq_start(p0, B);
    for (int variant = 0; variant < 4; variant++) {
        /* 0: both; 1: sq_pos NULL; 2: sq_emb NULL; 3: sq_emb == sq_pos */
        double *re = host_copy(se0, sizeof(double) * (size_t)B), *rp = host_copy(sp0, sizeof(double) * (size_t)B);
        double *d_e = gt_to_dev(be, se0, sizeof(double) * (size_t)B);
        double *d_p = gt_to_dev(be, sp0, sizeof(double) * (size_t)B);
        const char *what = variant == 0   ? "both"
                           : variant == 1 ? "sq_pos NULL"
                           : variant == 2 ? "sq_emb NULL"
                                          : "aliased";
        if (variant == 0) {
            embedding_per_example_sqnorm(re, rp, G, ids, B, T, C);
            be->embedding_per_example_sqnorm(d_e, d_p, d_G, d_ids, B, T, C);
        } else if (variant == 1) {
            embedding_per_example_sqnorm(re, NULL, G, ids, B, T, C);
            be->embedding_per_example_sqnorm(d_e, NULL, d_G, d_ids, B, T, C);
        } else if (variant == 2) {
            embedding_per_example_sqnorm(NULL, rp, G, ids, B, T, C);
            be->embedding_per_example_sqnorm(NULL, d_p, d_G, d_ids, B, T, C);
        } else {
            embedding_per_example_sqnorm(re, re, G, ids, B, T, C);
            be->embedding_per_example_sqnorm(d_e, d_e, d_G, d_ids, B, T, C);
        }
        double *ge = dev_to_host_d(be, d_e, (size_t)B), *gp = dev_to_host_d(be, d_p, (size_t)B);
        snprintf(name, sizeof name, "embedding sq_emb, %s (T=%d)", what, T);
        GT_EXPECT(name, gt_rel_err_d(ge, re, (size_t)B), 1e-9);
        snprintf(name, sizeof name, "embedding sq_pos, %s (T=%d)", what, T);
        GT_EXPECT(name, gt_rel_err_d(gp, rp, (size_t)B), 1e-9);
        CHECK(ge[2] == se0[2] && gp[2] == sp0[2]); /* the all-padding example adds nothing */
        be->free(d_e);
        be->free(d_p);
        free(re);
        free(rp);
        free(ge);
        free(gp);
    }
    be->free(d_G);
    be->free(d_ids);
    free(G);
    free(ids);
    free(zero);
    free(e0);
    free(p0);
    free(se0);
    free(sp0);
}

int main(void) {
    const dp_backend *be = gt_cuda_or_skip("test_gpu_classifier");
    if (!be) return GT_SKIP;

    /* output layer: one chunk (N = 3·17) and several chunks with a short last one (N = 256·50, V = 10⁴) */
    test_classifier(be, 3 * 17, 64, 1000);
    test_classifier(be, 3 * 17, 128, 1000);
    test_classifier(be, 256 * 50, 128, 10000);

    /* linear: AUTO mixes both forms across examples (n < Cin·Cout/(Cin+Cout) = 32 is Gram) */
    const int lo1[8] = {0, 48, 5, 17, 30, 40, 47, 20};
    test_linear_norms(be, 8, 48, 64, 64, lo1);
    /* AUTO: Gram for every n ≤ T */
    const int lo2[5] = {0, 16, 3, 15, 9};
    test_linear_norms(be, 5, 16, 256, 384, lo2);
    /* AUTO: instantiation except n = 1; tiny widths */
    const int lo3[6] = {0, 32, 33, 1, 20, 7};
    test_linear_norms(be, 6, 33, 3, 2, lo3);
    /* reductions in several blocks per example, mixed forms (n < 76.8 is Gram) */
    const int lo4[4] = {0, 30, 99, 100};
    test_linear_norms(be, 4, 100, 128, 192, lo4);
    /* instantiated gradients of 1024×1024: more than one group of examples */
    int lo5[70];
    for (int b = 0; b < 70; b++) lo5[b] = b % 9; /* 0..8 (8 = T: no rows) */
    test_linear_norms(be, 70, 8, 1024, 1024, lo5);

    const int lo6[6] = {0, 20, 7, 19, 1, 12};
    test_layernorm_grads(be, 6, 20, 96, lo6);
    const int lo7[3] = {300, 0, 123};
    test_layernorm_grads(be, 3, 300, 300, lo7);

    test_embedding_norms(be, 6, 40, 48, 7);
    test_embedding_norms(be, 5, 300, 40, 50);

    return tu_finish("test_gpu_classifier");
}
