/* Whole-model parity of the CUDA backend with the CPU backend: the same model (same initial
 * parameters) on both devices gives the same per-example losses, parameter gradients, item scores and
 * class logits, the same per-example norms and clipped gradient sums in every book-keeping clip mode
 * (tied and untied, with dropout), the same training curve over several steps, and survives moves
 * between devices. Float tolerances: the two backends sum in different orders. Skipped (exit 77)
 * without the CUDA backend or a GPU. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/privacy.h"
#include "gpu_testutil.h"
#include "model/model_internal.h"

static uint64_t rng = 11;

/* A left-padded recommendation batch (few distinct ids, so that items repeat) or, for classification,
 * right-padded token ids with labels. */
static void make_batch(int B, int L, int V, int K, int32_t *ids, int32_t *tgt, int32_t *lab) {
    for (int b = 0; b < B; b++) {
        int len = b == 0 ? L : 1 + (int)(tu_uniform(&rng) * L);
        for (int t = 0; t < L; t++) {
            int k = b * L + t, on = K ? t < len : t >= L - len;
            ids[k] = on ? 1 + (int)(tu_uniform(&rng) * (V < 40 ? V : 40)) : 0;
            tgt[k] = on ? 1 + (int)(tu_uniform(&rng) * V) : 0;
        }
        lab[b] = K ? (int)(tu_uniform(&rng) * K) : 0;
    }
}

static real *grads_of(dp_model *m) {
    real *g = dp_malloc(sizeof(real) * dp_model_num_params(m));
    dp_model_read_grads(m, g);
    return g;
}

/* Both devices: same losses and gradients of one forward+backward (dropout on). */
static void check_forward_backward(dp_model *cpu, dp_model *gpu, const dp_batch *bt, const char *what) {
    const int B = bt->B;
    size_t np = dp_model_num_params(cpu);
    double lc[64], lg[64];
    real w[64];
    for (int b = 0; b < B; b++) w[b] = (real)(0.5 + tu_uniform(&rng));
    dp_model_zero_grad(cpu);
    dp_model_zero_grad(gpu);
    dp_model_forward_backward(cpu, bt, w, 1, 5, lc);
    dp_model_forward_backward(gpu, bt, w, 1, 5, lg);
    char name[128];
    snprintf(name, sizeof name, "%s: per-example losses", what);
    GT_EXPECT(name, gt_rel_err_d(lg, lc, (size_t)B), 1e-5);
    real *gc = grads_of(cpu), *gg = grads_of(gpu);
    snprintf(name, sizeof name, "%s: all parameter gradients", what);
    GT_EXPECT(name, gt_rel_err(gg, gc, np), 1e-4);
    /* tensor by tensor, so that a wrong one is named */
    for (int i = 0; i < dp_model_num_tensors(cpu); i++) {
        const dp_param_tensor *t = dp_model_tensor(cpu, i);
        double e = gt_rel_err(gg + t->offset, gc + t->offset, t->size);
        if (e > 1e-4) {
            snprintf(name, sizeof name, "%s: gradient of %s", what, t->name);
            GT_EXPECT(name, e, 1e-4);
        }
    }
    free(gc);
    free(gg);
    /* evaluation pass (dropout off) */
    dp_model_forward(cpu, bt, 0, 0, lc);
    dp_model_forward(gpu, bt, 0, 0, lg);
    snprintf(name, sizeof name, "%s: evaluation losses", what);
    GT_EXPECT(name, gt_rel_err_d(lg, lc, (size_t)B), 1e-5);
}

static void check_clip(dp_model *cpu, dp_model *gpu, const dp_batch *bt, dp_clip_mode mode, const char *what) {
    const int B = bt->B;
    size_t np = dp_model_num_params(cpu);
    double nc[64], ng[64], lc[64], lg[64];
    dp_error e;
    dp_model_zero_grad(cpu);
    dp_model_zero_grad(gpu);
    /* C between the smallest and largest norms, so that some examples are clipped and some not */
    CHECK(dp_clipped_grad(cpu, bt, mode, 0.05, 1, 9, 0, nc, lc, &e) == 0);
    int rc = dp_clipped_grad(gpu, bt, mode, 0.05, 1, 9, 0, ng, lg, &e);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "%s: %s\n", what, e.msg);
        return;
    }
    char name[128];
    snprintf(name, sizeof name, "%s %s: per-example norms", what, dp_clip_mode_name(mode));
    GT_EXPECT(name, gt_rel_err_d(ng, nc, (size_t)B), 1e-4);
    snprintf(name, sizeof name, "%s %s: per-example losses", what, dp_clip_mode_name(mode));
    GT_EXPECT(name, gt_rel_err_d(lg, lc, (size_t)B), 1e-5);
    real *gc = grads_of(cpu), *gg = grads_of(gpu);
    snprintf(name, sizeof name, "%s %s: clipped gradient sum", what, dp_clip_mode_name(mode));
    GT_EXPECT(name, gt_rel_err(gg, gc, np), 1e-4);
    free(gc);
    free(gg);
}

static void recommender(const dp_backend *be, int tied) {
    (void)be;
    const int V = 700, L = 24, B = 12;
    dp_model_config c = dp_model_config_default(V, L);
    c.d_model = 64;
    c.n_heads = 2;
    c.n_layers = 2;
    c.tied = tied;
    c.dropout = 0.1f;
    dp_error e;
    dp_model *cpu = dp_model_create(&c, B, 3, &e), *gpu = dp_model_create_on(&c, B, 3, DP_DEVICE_CUDA, &e);
    CHECK(gpu != NULL);
    if (!gpu) {
        fprintf(stderr, "%s\n", e.msg);
        dp_model_free(cpu);
        return;
    }
    size_t np = dp_model_num_params(cpu);
    real *pc = dp_malloc(sizeof(real) * np), *pg = dp_malloc(sizeof(real) * np);
    dp_model_read_params(cpu, pc);
    dp_model_read_params(gpu, pg);
    CHECK(memcmp(pc, pg, sizeof(real) * np) == 0); /* the same initialisation on every device */
    int32_t ids[12 * 24], tgt[12 * 24], lab[12];
    make_batch(B, L, V, 0, ids, tgt, lab);
    dp_batch bt = {B, L, ids, tgt, NULL};
    const char *what = tied ? "recommender tied" : "recommender untied";
    check_forward_backward(cpu, gpu, &bt, what);
    /* item scores at the last position */
    real *sc = dp_malloc(sizeof(real) * B * (V + 1)), *sg = dp_malloc(sizeof(real) * B * (V + 1));
    dp_model_score_last(cpu, ids, B, sc);
    dp_model_score_last(gpu, ids, B, sg);
    GT_EXPECT(tied ? "recommender tied: item scores" : "recommender untied: item scores",
              gt_rel_err(sg, sc, (size_t)B * (V + 1)), 1e-5);
    check_clip(cpu, gpu, &bt, DP_CLIP_AUTO, what);
    check_clip(cpu, gpu, &bt, tied ? DP_CLIP_PHANTOM : DP_CLIP_GHOST, what);
    /* naive is the CPU reference only: refused on the GPU with a message */
    double nn[12];
    CHECK(dp_clipped_grad(gpu, &bt, DP_CLIP_NAIVE, 1.0, 1, 9, 0, nn, NULL, &e) != 0);
    /* a training curve: five SGD steps on both devices from the same start */
    double curve_c[5], curve_g[5];
    for (int k = 0; k < 5; k++) {
        double lc[12], lg[12];
        dp_model_zero_grad(cpu);
        dp_model_zero_grad(gpu);
        dp_model_forward_backward(cpu, &bt, NULL, 1, (uint64_t)k, lc);
        dp_model_forward_backward(gpu, &bt, NULL, 1, (uint64_t)k, lg);
        curve_c[k] = curve_g[k] = 0;
        for (int b = 0; b < B; b++) {
            curve_c[k] += lc[b] / B;
            curve_g[k] += lg[b] / B;
        }
        real *gc = grads_of(cpu), *gg = grads_of(gpu);
        dp_model_read_params(cpu, pc);
        dp_model_read_params(gpu, pg);
        for (size_t i = 0; i < np; i++) {
            pc[i] -= (real)0.5 * gc[i];
            pg[i] -= (real)0.5 * gg[i];
        }
        dp_model_write_params(cpu, pc);
        dp_model_write_params(gpu, pg);
        free(gc);
        free(gg);
    }
    GT_EXPECT(tied ? "recommender tied: 5-step loss curve" : "recommender untied: 5-step loss curve",
              gt_rel_err_d(curve_g, curve_c, 5), 1e-4);
    CHECK(curve_c[4] < curve_c[0]); /* it learns */
    /* moving between devices keeps the model */
    CHECK(dp_model_set_device(cpu, DP_DEVICE_CUDA, &e) == 0);
    CHECK(dp_model_device(cpu) == DP_DEVICE_CUDA);
    real *s2 = dp_malloc(sizeof(real) * B * (V + 1));
    dp_model_score_last(cpu, ids, B, s2);
    CHECK(dp_model_set_device(cpu, DP_DEVICE_CPU, &e) == 0);
    dp_model_score_last(cpu, ids, B, sc);
    GT_EXPECT("scores after moving cpu -> cuda -> cpu", gt_rel_err(s2, sc, (size_t)B * (V + 1)), 1e-5);
    free(s2);
    free(sc);
    free(sg);
    free(pc);
    free(pg);
    dp_model_free(cpu);
    dp_model_free(gpu);
}

static void classifier(void) {
    const int V = 300, L = 20, B = 10, K = 3;
    dp_model_config c = dp_model_config_default(V, L);
    c.d_model = 48;
    c.n_heads = 3;
    c.n_layers = 2;
    c.tied = 0;
    c.causal = 0;
    c.n_classes = K;
    c.pool = DP_POOL_MEAN;
    c.rep_clip = 0.5; /* DP-FP: clip (and noise) on the pooled representation */
    c.dropout = 0.1f;
    dp_error e;
    dp_model *cpu = dp_model_create(&c, B, 4, &e), *gpu = dp_model_create_on(&c, B, 4, DP_DEVICE_CUDA, &e);
    CHECK(gpu != NULL);
    if (!gpu) {
        fprintf(stderr, "%s\n", e.msg);
        dp_model_free(cpu);
        return;
    }
    int32_t ids[10 * 20], tgt[10 * 20], lab[10];
    make_batch(B, L, V, K, ids, tgt, lab);
    dp_batch bt = {B, L, ids, NULL, lab};
    real *noise = gt_random(&rng, (size_t)B * c.d_model, 0.1);
    dp_model_set_rep_noise(cpu, noise);
    dp_model_set_rep_noise(gpu, noise);
    check_forward_backward(cpu, gpu, &bt, "classifier (DP-FP clip + noise)");
    dp_model_set_rep_noise(cpu, NULL);
    dp_model_set_rep_noise(gpu, NULL);
    real zc[10 * 3], zg[10 * 3];
    dp_model_class_logits(cpu, ids, B, zc);
    dp_model_class_logits(gpu, ids, B, zg);
    GT_EXPECT("classifier: class logits", gt_rel_err(zg, zc, (size_t)B * K), 1e-5);
    check_clip(cpu, gpu, &bt, DP_CLIP_AUTO, "classifier");
    check_clip(cpu, gpu, &bt, DP_CLIP_GHOST, "classifier");
    free(noise);
    dp_model_free(cpu);
    dp_model_free(gpu);
}

int main(void) {
    const dp_backend *be = gt_cuda_or_skip("test_gpu_model");
    if (!be) return GT_SKIP;
    printf("device: %s\n", dp_device_description(DP_DEVICE_CUDA));
    recommender(be, 1);
    recommender(be, 0);
    classifier();
    return tu_finish("test_gpu_model");
}
