/* CUDA backend parity of the privacy engine's output-layer passes (classifier_dp_pass1 / pass2 of
 * src/ops/classifier.c, through the op table): random hidden states and weights, left-padded item ids
 * (recommendation) with next-item targets, some targets zeroed inside a sequence (skipped rows with a
 * non-zero id), an all-padding example, row weights 1/n_b as model_set_row_weights makes them, tied (Q)
 * and untied (Q NULL). Both sides group the examples as the privacy engine does (each by its own
 * backend's chunk rows), run pass 1, rescale row_weight and row_a by a random clip factor c_b in (0,1]
 * (on the host, identically), then pass 2. Compared: loss, dh, row_a (pass 1's), out_sq (from random
 * start values, and its increment), Q, and dW (from a random start, and its increment). Device outputs
 * start as NaN. One case is small enough in C that the CPU instantiates some examples' gradients
 * (DP_NORM_AUTO), so the GPU's Gram form is checked against both CPU forms. Relative error 1e-4. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_testutil.h"

static uint64_t rng = 20240917;
static const dp_backend *be;

#define TOL 1e-4

/* A random int in [lo, hi]. */
static int rand_int(int lo, int hi) {
    int v = lo + (int)(tu_uniform(&rng) * (hi - lo + 1));
    return v > hi ? hi : v;
}

typedef struct {
    int B, T, C, V;
    real *h, *W, *weight, *dW0;
    int32_t *ids, *target;
    double *sq0, *c;
} inputs;

typedef struct {
    real *loss, *dh, *row_a, *Q, *dW;
    double *out_sq;
} outputs;

/* ids: example b is left-padded from a random first position (0 for example 0, all padding for the last
 * of B > 2), items random in 1..V; target[t] = ids[t + 1] (a random item at the last position), 0 where
 * ids is 0 and at ~10% of the other positions; weights 1/n_b on the rows with a target. */
static void make_inputs(inputs *in, int B, int T, int C, int V) {
    const size_t N = (size_t)B * T;
    in->B = B;
    in->T = T;
    in->C = C;
    in->V = V;
    in->h = gt_random(&rng, N * C, 1.0);
    in->W = gt_random(&rng, (size_t)(V + 1) * C, 0.3);
    in->dW0 = gt_random(&rng, (size_t)(V + 1) * C, 1e-3);
    in->ids = dp_malloc(sizeof(int32_t) * N);
    in->target = dp_malloc(sizeof(int32_t) * N);
    in->weight = dp_malloc(sizeof(real) * N);
    in->sq0 = dp_malloc(sizeof(double) * (size_t)B);
    in->c = dp_malloc(sizeof(double) * (size_t)B);
    for (int b = 0; b < B; b++) {
        int32_t *id = in->ids + (size_t)b * T, *y = in->target + (size_t)b * T;
        int lo = b == 0 ? 0 : (B > 2 && b == B - 1) ? T : rand_int(0, T - 1);
        for (int t = 0; t < T; t++) id[t] = t < lo ? 0 : rand_int(1, V);
        int n = 0;
        for (int t = 0; t < T; t++) {
            y[t] = !id[t] ? 0 : t + 1 < T ? id[t + 1] : rand_int(1, V);
            if (y[t] && tu_uniform(&rng) < 0.1) y[t] = 0;
            n += y[t] != 0;
        }
        real w = n ? 1 / (real)n : 0;
        for (int t = 0; t < T; t++) in->weight[(size_t)b * T + t] = y[t] ? w : 0;
        in->sq0[b] = tu_uniform(&rng);
        in->c[b] = 1.0 - tu_uniform(&rng); /* (0, 1] */
    }
}

static void free_inputs(inputs *in) {
    free(in->h);
    free(in->W);
    free(in->dW0);
    free(in->ids);
    free(in->target);
    free(in->weight);
    free(in->sq0);
    free(in->c);
}

static void free_outputs(outputs *o) {
    free(o->loss);
    free(o->dh);
    free(o->row_a);
    free(o->Q);
    free(o->dW);
    free(o->out_sq);
}

/* The end of the group starting at b0, as dp_clipped_grad forms it: consecutive examples whose rows
 * with a target fit `cap` (at least one example). */
static int group_end(const int32_t *target, int B, int T, int b0, long cap) {
    long rows = 0;
    int b1 = b0;
    for (; b1 < B; b1++) {
        long n = 0;
        for (int t = 0; t < T; t++) n += target[(size_t)b1 * T + t] != 0;
        if (rows + n > cap && b1 > b0) break;
        rows += n;
    }
    return b1;
}

static void alloc_outputs(outputs *o, const inputs *in, int tied) {
    const size_t N = (size_t)in->B * in->T, nW = (size_t)(in->V + 1) * in->C;
    o->loss = dp_malloc(sizeof(real) * N);
    o->dh = dp_malloc(sizeof(real) * N * in->C);
    o->row_a = dp_malloc(sizeof(real) * N);
    o->Q = tied ? dp_malloc(sizeof(real) * N * in->C) : NULL;
    o->dW = dp_malloc(sizeof(real) * nW);
    o->out_sq = dp_malloc(sizeof(double) * (size_t)in->B);
}

/* The CPU functions, in groups of classifier_dp_chunk_rows. */
static void run_cpu(const inputs *in, int tied, outputs *o) {
    const int B = in->B, T = in->T, C = in->C, V = in->V;
    const size_t N = (size_t)B * T, nW = (size_t)(V + 1) * C;
    alloc_outputs(o, in, tied);
    memcpy(o->dW, in->dW0, sizeof(real) * nW);
    memcpy(o->out_sq, in->sq0, sizeof(double) * (size_t)B);
    real *weight = dp_malloc(sizeof(real) * N), *row_a = dp_malloc(sizeof(real) * N);
    memcpy(weight, in->weight, sizeof(real) * N);
    real *scratch = dp_malloc(sizeof(real) * classifier_dp_scratch_size(B, T, C, V));
    const long cap = classifier_dp_chunk_rows(T, V);
    int groups = 0;
    for (int b0 = 0; b0 < B; groups++) {
        const int b1 = group_end(in->target, B, T, b0, cap), nb = b1 - b0;
        const size_t off = (size_t)b0 * T;
        real *inst = NULL;
        classifier_dp_pass1(o->loss + off, o->dh + off * C, row_a + off, o->out_sq + b0, tied ? o->Q + off * C : NULL,
                            &inst, in->h + off * C, in->W, in->target + off, weight + off,
                            tied ? in->ids + off : NULL, nb, T, C, V, DP_NORM_AUTO, scratch);
        memcpy(o->row_a + off, row_a + off, sizeof(real) * (size_t)nb * T);
        rows_scale_by_example(weight + off, in->c + b0, nb, T, 1);
        rows_scale_by_example(row_a + off, in->c + b0, nb, T, 1);
        classifier_dp_pass2(o->dW, inst, in->W, in->target + off, weight + off, row_a + off, in->c + b0, nb, T, C, V,
                            DP_NORM_AUTO, scratch);
        free(inst);
        b0 = b1;
    }
    printf("  cpu: %d group(s) of at most %ld rows\n", groups, cap);
    free(scratch);
    free(weight);
    free(row_a);
}

/* The CUDA backend through the op table, in groups of its classifier_dp_chunk_rows; the rescaling of
 * row_weight and row_a between the passes is done on the host (as on the CPU side) and uploaded. */
static void run_gpu(const inputs *in, int tied, outputs *o) {
    const int B = in->B, T = in->T, C = in->C, V = in->V;
    const size_t N = (size_t)B * T, nW = (size_t)(V + 1) * C;
    alloc_outputs(o, in, tied);
    real *d_h = gt_to_dev(be, in->h, sizeof(real) * N * C);
    real *d_W = gt_to_dev(be, in->W, sizeof(real) * nW);
    real *d_dW = gt_to_dev(be, in->dW0, sizeof(real) * nW);
    real *d_weight = gt_to_dev(be, in->weight, sizeof(real) * N);
    int32_t *d_ids = gt_to_dev(be, in->ids, sizeof(int32_t) * N);
    int32_t *d_target = gt_to_dev(be, in->target, sizeof(int32_t) * N);
    double *d_sq = gt_to_dev(be, in->sq0, sizeof(double) * (size_t)B);
    double *d_c = gt_to_dev(be, in->c, sizeof(double) * (size_t)B);
    real *d_loss = gt_dev_poison(be, N), *d_dh = gt_dev_poison(be, N * C), *d_row_a = gt_dev_poison(be, N);
    real *d_Q = tied ? gt_dev_poison(be, N * C) : NULL;
    real *d_scratch = gt_dev_poison(be, be->classifier_dp_scratch_size(B, T, C, V));
    real *weight = dp_malloc(sizeof(real) * N);
    memcpy(weight, in->weight, sizeof(real) * N);
    const long cap = be->classifier_dp_chunk_rows(T, V);
    CHECK(cap >= T);
    int groups = 0;
    for (int b0 = 0; b0 < B; groups++) {
        const int b1 = group_end(in->target, B, T, b0, cap), nb = b1 - b0;
        const size_t off = (size_t)b0 * T, nr = (size_t)nb * T;
        static real sentinel;
        real *inst = &sentinel; /* must come back NULL */
        be->classifier_dp_pass1(d_loss + off, d_dh + off * C, d_row_a + off, d_sq + b0, tied ? d_Q + off * C : NULL,
                                &inst, d_h + off * C, d_W, d_target + off, d_weight + off, tied ? d_ids + off : NULL,
                                nb, T, C, V, DP_NORM_AUTO, d_scratch);
        CHECK(inst == NULL);
        be->download(o->row_a + off, d_row_a + off, sizeof(real) * nr);
        real *a = dp_malloc(sizeof(real) * nr);
        memcpy(a, o->row_a + off, sizeof(real) * nr);
        rows_scale_by_example(a, in->c + b0, nb, T, 1);
        rows_scale_by_example(weight + off, in->c + b0, nb, T, 1);
        be->upload(d_row_a + off, a, sizeof(real) * nr);
        be->upload(d_weight + off, weight + off, sizeof(real) * nr);
        free(a);
        be->classifier_dp_pass2(d_dW, NULL, d_W, d_target + off, d_weight + off, d_row_a + off, d_c + b0, nb, T, C, V,
                                DP_NORM_AUTO, d_scratch);
        b0 = b1;
    }
    printf("  gpu: %d group(s) (chunk rows %ld)\n", groups, cap);
    be->download(o->loss, d_loss, sizeof(real) * N);
    be->download(o->dh, d_dh, sizeof(real) * N * C);
    be->download(o->out_sq, d_sq, sizeof(double) * (size_t)B);
    if (tied) be->download(o->Q, d_Q, sizeof(real) * N * C);
    be->download(o->dW, d_dW, sizeof(real) * nW);
    free(weight);
    void *dp[] = {d_h, d_W, d_dW, d_weight, d_ids, d_target, d_sq, d_c, d_loss, d_dh, d_row_a, d_Q, d_scratch};
    for (size_t i = 0; i < sizeof dp / sizeof *dp; i++)
        if (dp[i]) be->free(dp[i]);
}

/* ‖(x − x0) − (ref − x0)‖ / ‖ref − x0‖ in double (the increment over the start values). */
static double incr_err(const real *x, const real *ref, const real *x0, size_t n) {
    double *a = dp_malloc(sizeof(double) * n), *b = dp_malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) {
        a[i] = (double)x[i] - (double)x0[i];
        b[i] = (double)ref[i] - (double)x0[i];
    }
    double e = gt_rel_err_d(a, b, n);
    free(a);
    free(b);
    return e;
}
static double incr_err_d(const double *x, const double *ref, const double *x0, size_t n) {
    double *a = dp_malloc(sizeof(double) * n), *b = dp_malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) {
        a[i] = x[i] - x0[i];
        b[i] = ref[i] - x0[i];
    }
    double e = gt_rel_err_d(a, b, n);
    free(a);
    free(b);
    return e;
}

static void run_case(int B, int T, int C, int V, int tied) {
    char cfg[128], name[192];
    snprintf(cfg, sizeof cfg, "(B=%d T=%d C=%d V=%d %s)", B, T, C, V, tied ? "tied" : "untied");
    printf("%s\n", cfg);
    inputs in;
    make_inputs(&in, B, T, C, V);
    outputs cpu, gpu;
    run_cpu(&in, tied, &cpu);
    run_gpu(&in, tied, &gpu);
    const size_t N = (size_t)B * T, nW = (size_t)(V + 1) * C;
#define EXPECT(what, err)                                    \
    do {                                                     \
        snprintf(name, sizeof name, "%s %s", (what), cfg);   \
        GT_EXPECT(name, (err), TOL);                         \
    } while (0)
    EXPECT("loss", gt_rel_err(gpu.loss, cpu.loss, N));
    EXPECT("dh", gt_rel_err(gpu.dh, cpu.dh, N * C));
    EXPECT("row_a", gt_rel_err(gpu.row_a, cpu.row_a, N));
    EXPECT("out_sq", gt_rel_err_d(gpu.out_sq, cpu.out_sq, (size_t)B));
    EXPECT("out_sq increment", incr_err_d(gpu.out_sq, cpu.out_sq, in.sq0, (size_t)B));
    if (tied) EXPECT("Q", gt_rel_err(gpu.Q, cpu.Q, N * C));
    EXPECT("dW", gt_rel_err(gpu.dW, cpu.dW, nW));
    EXPECT("dW increment", incr_err(gpu.dW, cpu.dW, in.dW0, nW));
#undef EXPECT
    /* skipped rows: exactly zero loss, dh, row_a (and Q rows at padding ids) */
    int zero_ok = 1;
    for (size_t r = 0; r < N; r++) {
        if (in.weight[r] == 0) {
            zero_ok &= gpu.loss[r] == 0 && gpu.row_a[r] == 0;
            for (int i = 0; i < C; i++) zero_ok &= gpu.dh[r * C + i] == 0;
        }
        if (tied && in.ids[r] == 0)
            for (int i = 0; i < C; i++) zero_ok &= gpu.Q[r * C + i] == 0;
    }
    CHECK(zero_ok);
    free_outputs(&cpu);
    free_outputs(&gpu);
    free_inputs(&in);
}

int main(void) {
    be = gt_cuda_or_skip("test_gpu_classifier_dp");
    if (!be) return GT_SKIP;

    for (int tied = 0; tied <= 1; tied++) {
        run_case(3, 17, 64, 1000, tied);
        /* C small against T: the CPU instantiates the longer examples' gradients */
        run_case(4, 40, 16, 500, tied);
        /* recommendation scale (the CPU works through it in several groups) */
        run_case(64, 50, 64, 23716, tied);
    }

    /* B = 0 is a no-op that still returns inst NULL */
    static real sentinel;
    real *inst = &sentinel;
    be->classifier_dp_pass1(NULL, NULL, NULL, NULL, NULL, &inst, NULL, NULL, NULL, NULL, NULL, 0, 17, 64, 1000,
                            DP_NORM_AUTO, NULL);
    CHECK(inst == NULL);
    be->classifier_dp_pass2(NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 17, 64, 1000, DP_NORM_AUTO, NULL);
    be->synchronize();

    return tu_finish("test_gpu_classifier_dp");
}
