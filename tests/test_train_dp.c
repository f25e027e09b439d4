/* DP-SGD training loop: with σ = 0, a huge clipping norm and q = 1 it reproduces non-private
 * full-batch training (physical chunks included); the reported ε is the accountant's for exactly the
 * steps taken; a target ε is met by calibration and, with a fixed σ, training stops before the step
 * that would exceed it; empty Poisson batches are steps like any other; ghost refuses tied models. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/train.h"
#include "testutil.h"

static dp_dataset data(int users) {
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    sc.n_users = users;
    sc.n_items = 60;
    sc.max_len = 12;
    dp_dataset ds;
    dp_dataset_synthetic(&ds, &sc);
    return ds;
}

static dp_train_config base(const dp_dataset *ds) {
    dp_train_config c = dp_train_config_default();
    c.model = dp_model_config_default(ds->n_items, 8);
    c.model.d_model = 16;
    c.model.n_heads = 2;
    c.model.dropout = 0;
    c.optim.lr = 1e-2;
    c.optim.kind = DP_OPT_SGD;
    c.optim.momentum = 0;
    c.epochs = 3;
    c.progress = -1;
    c.seed = 3;
    c.keep_last = 1;
    return c;
}

static void test_reduces_to_nonprivate(void) {
    dp_dataset ds = data(120);
    dp_train_config np = base(&ds);
    np.batch_size = 1000; /* one full batch per epoch */
    dp_model *m1, *m2;
    dp_train_result r1, r2;
    dp_error e;
    CHECK(dp_train(&ds, &np, &m1, &r1, &e) == 0);
    dp_train_config pc = np;
    pc.dp.enabled = 1;
    pc.dp.noise_multiplier = 0;
    pc.dp.max_grad_norm = 1e9;
    pc.dp.sample_rate = 1.0;
    pc.dp.max_physical_batch = 32; /* several physical chunks per logical step */
    pc.dp.seeded_noise = 1;
    CHECK(dp_train(&ds, &pc, &m2, &r2, &e) == 0);
    if (!m2) { fprintf(stderr, "%s\n", e.msg); return; }
    size_t n = dp_model_num_params(m1);
    const dp_real *a = dp_model_params(m1), *b = dp_model_params(m2);
    double num = 0, den = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)a[i] * a[i];
    }
    dp_model *m0 = dp_model_create(&np.model, 1, np.seed, &e);
    for (size_t i = 0; i < n; i++) moved += ((double)a[i] - dp_model_params(m0)[i]) * ((double)a[i] - dp_model_params(m0)[i]);
    printf("sigma 0, C huge, q 1: relative parameter difference %.3g (training moved them by %.3g)\n", sqrt(num / den),
           sqrt(moved / den));
    CHECK(sqrt(moved / den) > 1e-3);     /* training did something */
    CHECK(sqrt(num / den) < 1e-5);       /* and DP-SGD without noise or clipping did the same */
    CHECK(r2.dp_steps == 3);
    dp_model_free(m0);
    dp_model_free(m1);
    dp_model_free(m2);
    dp_dataset_free(&ds);
}

static void test_accounting(void) {
    dp_dataset ds = data(400);
    dp_train_config c = base(&ds);
    c.dp.enabled = 1;
    c.dp.target_epsilon = 3;
    c.dp.delta = 1e-5;
    c.batch_size = 40;
    c.dp.seeded_noise = 1;
    dp_model *m;
    dp_train_result r;
    dp_error e;
    CHECK(dp_train(&ds, &c, &m, &r, &e) == 0);
    dp_model_free(m);
    /* ε of exactly the steps taken, recomputed independently from (σ, q, steps) */
    dp_history h;
    dp_history_init(&h);
    CHECK(dp_history_add_poisson_gaussian(&h, r.noise_multiplier, r.sample_rate, r.dp_steps, &e) == 0);
    double eps;
    CHECK(dp_epsilon(&h, 1e-5, NULL, &eps, &e) == 0);
    CHECK_CLOSE(r.epsilon, eps, 1e-12);
    CHECK(r.epsilon <= 3.0 && r.epsilon > 2.9); /* calibrated: just under the target */
    CHECK(r.dp_steps == (int64_t)c.epochs * (int64_t)(1.0 / r.sample_rate));
    dp_history_free(&h);

    /* a fixed σ and a budget: stop before the step that would exceed it */
    c.dp.target_epsilon = 2;
    c.dp.noise_multiplier = 1.5;
    c.epochs = 50;
    CHECK(dp_train(&ds, &c, &m, &r, &e) == 0);
    dp_model_free(m);
    CHECK(r.stopped_at_budget == 1);
    CHECK(r.epsilon <= 2.0);
    dp_history_init(&h);
    CHECK(r.dp_steps > 5);
    CHECK(dp_history_add_poisson_gaussian(&h, 1.5, r.sample_rate, r.dp_steps + 1, &e) == 0);
    CHECK(dp_epsilon(&h, 1e-5, NULL, &eps, &e) == 0);
    CHECK(eps > 2.0); /* one more step would have exceeded it */
    dp_history_free(&h);
    dp_dataset_free(&ds);
}

static void test_empty_batches_and_refusals(void) {
    dp_dataset ds = data(30);
    dp_train_config c = base(&ds);
    c.dp.enabled = 1;
    c.dp.noise_multiplier = 1.0;
    c.dp.sample_rate = 0.02; /* E[batch] = 0.6: most steps are empty */
    c.dp.seeded_noise = 1;
    c.epochs = 1;
    dp_model *m;
    dp_train_result r;
    dp_error e;
    CHECK(dp_train(&ds, &c, &m, &r, &e) == 0);
    CHECK(r.dp_steps == 50);
    dp_model_free(m);
    c.dp.clip_mode = DP_CLIP_GHOST; /* tied by default */
    CHECK(dp_train(&ds, &c, &m, &r, &e) != 0 && strstr(e.msg, "tied") != NULL);
    c.model.tied = 0;
    CHECK(dp_train(&ds, &c, &m, &r, &e) == 0);
    dp_model_free(m);
    dp_dataset_free(&ds);
}

int main(void) {
    test_reduces_to_nonprivate();
    test_accounting();
    test_empty_batches_and_refusals();
    return tu_finish("test_train_dp");
}
