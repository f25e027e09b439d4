#define _DEFAULT_SOURCE
/* Training-side tests in single precision: optimisers and schedules against hand computation,
 * training/evaluation windows, determinism given the seed, save/load round trip, the vectorised exp,
 * and the learning test (on synthetic data the model must beat popularity by a wide margin). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dpformer/train.h"
#include "model/model_internal.h"
#include "ops/ops.h"
#include "testutil.h"

static dp_model *tiny_model(uint64_t seed) {
    dp_model_config c = dp_model_config_default(20, 8);
    c.d_model = 8;
    c.n_heads = 2;
    c.n_layers = 1;
    c.dropout = 0;
    dp_error e;
    return dp_model_create(&c, 4, seed, &e);
}

static void test_optimizers(void) {
    dp_model *m = tiny_model(3);
    size_t n = dp_model_num_params(m);
    real *p = dp_model_params(m), *g = dp_model_grads(m);
    real *p0 = malloc(sizeof(real) * n);
    for (size_t i = 0; i < n; i++) g[i] = (real)(0.01 * ((int)(i % 7) - 3));
    memcpy(p0, p, sizeof(real) * n);
    dp_optim_config oc = dp_optim_config_default();
    oc.lr = 0.1;
    oc.weight_decay = 0.5;
    dp_optimizer *o = dp_optimizer_create(&oc, m);
    dp_optimizer_step(o, m);
    /* first AdamW step: m̂ = g, v̂ = g², update = lr·(g/(|g|+eps) + wd·p if decayed) */
    const dp_param_tensor *qkv = NULL, *ln = NULL;
    for (int i = 0; i < dp_model_num_tensors(m); i++) {
        const dp_param_tensor *t = dp_model_tensor(m, i);
        if (strstr(t->name, "qkv.weight")) qkv = t;
        if (strstr(t->name, "ln1.weight")) ln = t;
    }
    CHECK(qkv && qkv->decay && ln && !ln->decay);
    for (size_t k = 0; k < 5; k++) {
        size_t i = qkv->offset + k;
        double gi = g[i], exp_upd = (gi != 0 ? gi / (fabs(gi) + 1e-8) : 0) + 0.5 * p0[i];
        CHECK_CLOSE(p[i], p0[i] - 0.1 * exp_upd, 1e-5);
        size_t j = ln->offset + k;
        double gj = g[j], exp_upd2 = gj != 0 ? gj / (fabs(gj) + 1e-8) : 0;
        CHECK_CLOSE(p[j], p0[j] - 0.1 * exp_upd2, 1e-5);
    }
    /* padding row stays zero */
    for (int k = 0; k < 8; k++) CHECK(m->p.E[k] == 0);
    dp_optimizer_free(o);

    /* SGD with momentum, two steps: v1 = g, v2 = μ g + g */
    memcpy(p, p0, sizeof(real) * n);
    dp_optim_config sc = dp_optim_config_default();
    sc.kind = DP_OPT_SGD;
    sc.lr = 0.5;
    sc.momentum = 0.9;
    o = dp_optimizer_create(&sc, m);
    dp_optimizer_step(o, m);
    dp_optimizer_step(o, m);
    size_t i = ln->offset + 2;
    CHECK_CLOSE(p[i], p0[i] - 0.5 * (g[i] + 1.9 * g[i]), 1e-6);
    dp_optimizer_free(o);

    /* schedules */
    dp_optim_config wc = dp_optim_config_default();
    wc.lr = 1.0;
    wc.schedule = DP_SCHED_COSINE;
    wc.warmup_steps = 10;
    wc.total_steps = 110;
    wc.min_lr_ratio = 0.1;
    o = dp_optimizer_create(&wc, m);
    CHECK_CLOSE(dp_optimizer_lr(o), 0.1, 1e-12); /* step 1 of 10 warm-up steps */
    for (int s = 0; s < 9; s++) dp_optimizer_step(o, m);
    CHECK_CLOSE(dp_optimizer_lr(o), 1.0, 1e-12); /* step 10 */
    for (int s = 0; s < 50; s++) dp_optimizer_step(o, m);
    CHECK_CLOSE(dp_optimizer_lr(o), 0.1 + 0.9 * 0.5 * (1 + cos(3.141592653589793 * 0.5)), 1e-9); /* halfway */
    for (int s = 0; s < 60; s++) dp_optimizer_step(o, m);
    CHECK_CLOSE(dp_optimizer_lr(o), 0.1, 1e-12); /* past the end: floor */
    dp_optimizer_free(o);
    free(p0);
    dp_model_free(m);
}

static void test_windows(void) {
    int32_t ids[5], tg[5];
    int32_t seq[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(dp_make_train_window(ids, tg, seq, 3, 5) == 2);
    int32_t e1[5] = {0, 0, 0, 1, 2}, t1[5] = {0, 0, 0, 2, 3};
    CHECK(memcmp(ids, e1, sizeof e1) == 0 && memcmp(tg, t1, sizeof t1) == 0);
    CHECK(dp_make_train_window(ids, tg, seq, 8, 5) == 5); /* the most recent L+1 = 6 items: 3..8 */
    int32_t e2[5] = {3, 4, 5, 6, 7}, t2[5] = {4, 5, 6, 7, 8};
    CHECK(memcmp(ids, e2, sizeof e2) == 0 && memcmp(tg, t2, sizeof t2) == 0);
    CHECK(dp_make_train_window(ids, tg, seq, 1, 5) == 0);
    dp_make_eval_window(ids, seq, 7, 5);
    int32_t e3[5] = {3, 4, 5, 6, 7};
    CHECK(memcmp(ids, e3, sizeof e3) == 0);
    dp_make_eval_window(ids, seq, 2, 5);
    int32_t e4[5] = {0, 0, 0, 1, 2};
    CHECK(memcmp(ids, e4, sizeof e4) == 0);
}

static void test_vexp(void) {
    static real x[4096], y[4096];
    double worst = 0;
    for (int i = 0; i < 4096; i++) x[i] = (real)(-87.0 + 175.0 * i / 4095.0);
    vexp(y, x, 4096);
    for (int i = 0; i < 4096; i++) worst = fmax(worst, fabs(y[i] / exp((double)x[i]) - 1));
    CHECK(worst < 3e-7);
    for (int i = 0; i < 4096; i++) x[i] = (real)(-30.0 * i / 4095.0);
    double ref = 0;
    for (int i = 0; i < 4096; i++) ref += exp((double)x[i] - 1.5);
    double s = vexp_shift_sum(x, 4096, 1.5f);
    CHECK_CLOSE(s, ref, 1e-6);
    CHECK_CLOSE(x[0], exp(-1.5), 1e-6);
    /* NaN and infinities: NaN propagates (a diverging run must be detected), ±inf saturate */
    real sp[20];
    for (int i = 0; i < 20; i++) sp[i] = 0;
    sp[3] = NAN;
    sp[17] = NAN; /* one in the vector part, one in the scalar tail */
    sp[5] = -INFINITY;
    vexp(sp, sp, 20);
    CHECK(isnan(sp[3]) && isnan(sp[17]));
    CHECK(sp[5] >= 0 && sp[5] < 1e-37);
    CHECK(sp[0] == 1);
}

/* The single-precision GELU (vectorised erf) against the double-precision formula. */
static void test_gelu_float(void) {
    static real x[2000], y[2000], g[2000], one[2000];
    for (int i = 0; i < 2000; i++) {
        x[i] = (real)(-8.0 + 16.0 * i / 1999.0);
        one[i] = 1;
    }
    gelu_forward(y, x, 2000);
    gelu_backward(g, one, x, 2000);
    double wf = 0, wb = 0;
    for (int i = 0; i < 2000; i++) {
        double xd = x[i], cdf = 0.5 * (1 + erf(xd / sqrt(2.0))), pdf = exp(-0.5 * xd * xd) / sqrt(2 * M_PI);
        wf = fmax(wf, fabs(y[i] - xd * cdf));
        wb = fmax(wb, fabs(g[i] - (cdf + xd * pdf)));
    }
    printf("float GELU: max abs error %.2e (forward), %.2e (derivative)\n", wf, wb);
    CHECK(wf < 2e-6);
    CHECK(wb < 2e-6);
}

static dp_train_config small_config(const dp_dataset *ds) {
    dp_train_config c = dp_train_config_default();
    c.model = dp_model_config_default(ds->n_items, 16);
    c.model.d_model = 32;
    c.model.dropout = 0.1f;
    c.optim.lr = 3e-3;
    c.epochs = 4;
    c.batch_size = 64;
    c.progress = -1;
    c.seed = 11;
    return c;
}

static void test_learning_and_determinism(void) {
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    sc.n_users = 1500;
    sc.n_items = 300;
    sc.max_len = 25;
    dp_dataset ds;
    dp_dataset_synthetic(&ds, &sc);
    dp_train_config c = small_config(&ds);
    char dir[] = "/tmp/dpformer_train_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    c.out_dir = dir;
    dp_model *m = NULL, *m2 = NULL;
    dp_train_result r, r2;
    dp_error e;
    CHECK(dp_train(&ds, &c, &m, &r, &e) == 0);
    dp_rank_metrics pop;
    dp_popularity_eval(&ds, DP_SPLIT_TEST, 0, &pop);
    printf("learning: loss %.3f -> %.3f, test NDCG@10 %.4f vs popularity %.4f\n", r.first_train_loss,
           r.final_train_loss, r.test.ndcg10, pop.ndcg10);
    CHECK(r.final_train_loss < r.first_train_loss - 0.3);
    CHECK(r.test.ndcg10 > 2.0 * pop.ndcg10);
    CHECK(r.valid.ndcg10 > 2.0 * pop.ndcg10);

    /* same seed, same result to the bit (no output folder this time) */
    c.out_dir = NULL;
    CHECK(dp_train(&ds, &c, &m2, &r2, &e) == 0);
    CHECK(memcmp(dp_model_params(m), dp_model_params(m2), sizeof(real) * dp_model_num_params(m)) == 0);
    CHECK(r.test.ndcg10 == r2.test.ndcg10);
    dp_model_free(m2);
    /* another seed gives another model */
    c.seed = 12;
    c.epochs = 1;
    CHECK(dp_train(&ds, &c, &m2, &r2, &e) == 0);
    CHECK(memcmp(dp_model_params(m), dp_model_params(m2), sizeof(real) * dp_model_num_params(m)) != 0);
    dp_model_free(m2);

    /* saved model: reload gives identical scores; the metrics file has one line per epoch + final */
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    dp_model *ld = dp_model_load(path, 8, &e);
    CHECK(ld != NULL);
    if (ld) {
        int32_t ids[2 * 16] = {0};
        for (int i = 0; i < 32; i++) ids[i] = i < 5 ? 0 : 1 + (i * 37) % 300;
        real *s1 = malloc(sizeof(real) * 2 * 301), *s2 = malloc(sizeof(real) * 2 * 301);
        dp_model_score_last(m, ids, 2, s1);
        dp_model_score_last(ld, ids, 2, s2);
        CHECK(memcmp(s1, s2, sizeof(real) * 2 * 301) == 0);
        free(s1);
        free(s2);
        dp_model_free(ld);
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    int lines = 0;
    char buf[2048];
    while (f && fgets(buf, sizeof buf, f)) lines++;
    if (f) fclose(f);
    CHECK(lines == c.epochs + 4); /* 4 epochs of the first run + the final line */
    /* a model whose file is cut short is refused, with the file named */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(truncate(path, 100) == 0);
    CHECK(dp_model_load(path, 8, &e) == NULL && strstr(e.msg, path) != NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    dp_model_free(m);
    dp_dataset_free(&ds);
}

static void test_bad_config(void) {
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    sc.n_users = 50;
    sc.n_items = 30;
    dp_dataset ds;
    dp_dataset_synthetic(&ds, &sc);
    dp_train_config c = small_config(&ds);
    dp_model *m;
    dp_train_result r;
    dp_error e;
    c.model.n_heads = 3; /* 32 not divisible by 3 */
    CHECK(dp_train(&ds, &c, &m, &r, &e) != 0 && strstr(e.msg, "divisible") != NULL);
    c = small_config(&ds);
    c.model.n_items = 7;
    CHECK(dp_train(&ds, &c, &m, &r, &e) != 0);
    c = small_config(&ds);
    c.optim.lr = 1e30; /* diverges: must stop with a clear error, not train on NaN */
    c.optim.kind = DP_OPT_SGD;
    c.epochs = 2;
    CHECK(dp_train(&ds, &c, &m, &r, &e) != 0 && strstr(e.msg, "non-finite") != NULL);
    dp_dataset_free(&ds);
}

int main(void) {
    test_optimizers();
    test_windows();
    test_vexp();
    test_gelu_float();
    test_learning_and_determinism();
    test_bad_config();
    return tu_finish("test_train");
}
