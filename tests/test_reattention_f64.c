/* Re-Attention, double precision: (1) finite-difference check of the whole model's gradient with the
 * correction on. The gradient treats the correction κ‖q_t‖²v_u/(2d_h) as a constant, so the finite
 * differences are taken of the loss in which the correction terms are frozen at the base point (the
 * model's test hook: v_u and ‖q_t‖² of the last pass are reused); the test also shows that the
 * unfrozen loss has a different derivative, so the freeze is what is being checked. (2) Every
 * clipping mode against the one-example-at-a-time oracle with Re-Attention on (per-example norms
 * and clipped sums to 1e-10), and the oracle against a batch backward with one-hot example weights
 * (example b's correction must depend on example b alone). Built against the double-precision library. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/privacy.h"
#include "dpformer/reattention.h"
#include "model/model_internal.h"
#include "ops/ops.h"
#include "testutil.h"

static uint64_t rng = 4242;

/* Item frequencies of a long tail over V items (index 0 unused). */
static double freq[64];

static void set_reattention(dp_model *m, double sigma, double kappa) {
    int V = m->cfg.n_items;
    freq[0] = 0;
    for (int i = 1; i <= V; i++) freq[i] = 0.9 / i;
    dp_reattention_config rc = dp_reattention_config_default();
    rc.enabled = 1;
    rc.kappa = kappa;
    rc.sigma = sigma;
    rc.batch_size = 4;
    rc.item_freq = freq;
    rc.n_examples = 50;
    dp_error e;
    CHECK(dp_model_set_reattention(m, &rc, &e) == 0);
}

/* ---------------- (1) gradient with the correction as a constant ---------------- */

typedef struct {
    dp_model *m;
    dp_batch bt;
    real w[3];
    uint64_t seed;
} mctx;

static double model_loss(mctx *c) {
    double el[3];
    dp_model_forward(c->m, &c->bt, 1, c->seed, el);
    double s = 0;
    for (int b = 0; b < c->bt.B; b++) s += c->w[b] * el[b];
    return s;
}

/* Max over coordinates of |central difference − analytic| / max |analytic| (h = 1e-5; double precision
 * leaves ~1e-9, so 1e-6 bounds the O(h²) term with room, as in test_model_grad_f64). */
static double max_fd_error(mctx *c, real *x, size_t n, const real *grad) {
    const double h = 1e-5;
    double worst = 0, gmax = 1e-12;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(grad[i]));
    for (size_t i = 0; i < n; i++) {
        double old = x[i];
        x[i] = old + h;
        double fp = model_loss(c);
        x[i] = old - h;
        double fm = model_loss(c);
        x[i] = old;
        worst = fmax(worst, fabs((fp - fm) / (2 * h) - grad[i]) / gmax);
    }
    return worst;
}
#define FD_TOL 1e-6

static void test_gradient(int tied, int causal, float dropout) {
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
    real *p = dp_model_params(m);
    for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += 0.3 * tu_normal(&rng);
    memset(m->p.E, 0, sizeof(real) * cfg.d_model);
    if (!tied) memset(m->p.out_w, 0, sizeof(real) * cfg.d_model);
    static const int32_t ids[18] = {0, 0, 3, 5, 3, 9, /**/ 1, 2, 1, 2, 1, 8, /**/ 0, 0, 0, 0, 6, 4};
    static const int32_t tgt[18] = {0, 0, 5, 3, 9, 2, /**/ 2, 1, 2, 1, 8, 7, /**/ 0, 0, 0, 0, 4, 8};
    mctx c = {m, {3, 6, ids, tgt, NULL}, {0.7, -0.4, 1.3}, 42};

    const double L_plain = model_loss(&c);
    set_reattention(m, 0.5, 1.0);
    const double L_ra = model_loss(&c);
    /* the correction is not negligible at this σ: it moves the loss and spans a range of variances */
    CHECK(fabs(L_ra - L_plain) > 1e-3 * fabs(L_plain));
    double kmin = 1e300, kmax = 0;
    const real *kv = dp_model_reattention_key_variance(m, 0);
    for (int i = 0; i < 3 * 2 * 6; i++) {
        if (ids[(i / 12) * 6 + i % 6] == 0) continue;
        kmin = fmin(kmin, kv[i]);
        kmax = fmax(kmax, kv[i]);
    }
    CHECK(kmax > 5 * kmin);

    dp_model_zero_grad(m);
    double el[3];
    dp_model_forward_backward(m, &c.bt, c.w, 1, c.seed, el);
    CHECK_CLOSE(c.w[0] * el[0] + c.w[1] * el[1] + c.w[2] * el[2], L_ra, 1e-12);
    real *g = dp_model_grads(m);

    /* freeze the correction at the base point: the same loss there, exactly */
    m->ra.frozen = 1;
    CHECK(model_loss(&c) == L_ra);
    for (int i = 0; i < dp_model_num_tensors(m); i++) {
        const dp_param_tensor *t = dp_model_tensor(m, i);
        size_t off = t->offset, n = t->size;
        if (strcmp(t->name, "item_emb.weight") == 0 || strcmp(t->name, "out.weight") == 0) {
            off += cfg.d_model; /* padding row excluded by convention */
            n -= cfg.d_model;
        }
        double e = max_fd_error(&c, p + off, n, g + off);
        if (!(e < FD_TOL))
            fprintf(stderr, "tensor %s (tied %d causal %d dropout %g): error %g\n", t->name, tied, causal, dropout, e);
        CHECK(e < FD_TOL);
    }
    /* unfrozen, the loss's derivative also goes through v_u and ‖q_t‖² (which the gradient leaves out
     * by design): the item embedding's finite differences then disagree clearly */
    m->ra.frozen = 0;
    const dp_param_tensor *te = dp_model_tensor(m, 0);
    double e_unfrozen = max_fd_error(&c, p + te->offset + cfg.d_model, te->size - cfg.d_model, g + te->offset + cfg.d_model);
    printf("tied %d causal %d dropout %.2f: loss %.6f (plain %.6f), key variance range [%.3g, %.3g], "
           "unfrozen FD disagreement on item_emb %.3g\n", tied, causal, dropout, L_ra, L_plain, kmin, kmax, e_unfrozen);
    CHECK(e_unfrozen > 1e-4);
    dp_model_free(m);
}

/* ---------------- (2) clipping modes against the oracle ---------------- */

static double rel_diff(const real *a, const real *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den + 1e-300));
}

static void check_modes(int tied, int layers, int heads, float dropout, double Cmax, int L) {
    enum { V = 11, B = 5 };
    dp_model_config cfg = dp_model_config_default(V, L);
    cfg.d_model = 8;
    cfg.n_heads = heads;
    cfg.n_layers = layers;
    cfg.d_ff = 12;
    cfg.tied = tied;
    cfg.dropout = dropout;
    dp_error e;
    dp_model *m = dp_model_create(&cfg, 6, 99, &e);
    real *p = dp_model_params(m);
    for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += 0.2 * tu_normal(&rng);
    memset(m->p.E, 0, sizeof(real) * 8);
    if (!tied) memset(m->p.out_w, 0, sizeof(real) * 8);
    set_reattention(m, 0.5, 1.3);

    int32_t ids[B * 24], tgt[B * 24];
    for (int b = 0; b < B; b++) {
        int len = b == 0 ? L : (b == 1 ? 1 : 1 + (int)(tu_uniform(&rng) * L));
        for (int t = 0; t < L; t++) {
            int k = b * L + t, active = t >= L - len;
            ids[k] = active ? 1 + (int)(tu_uniform(&rng) * V) : 0;
            tgt[k] = active ? 1 + (int)(tu_uniform(&rng) * V) : 0;
        }
    }
    dp_batch bt = {B, L, ids, tgt, NULL};
    size_t np = dp_model_num_params(m);
    real *ref = malloc(sizeof(real) * np);
    double nref[B], nalt[B], lref[B], lalt[B];
    const uint64_t seed = 77;
    const int ex0 = 3;

    /* the oracle: one example at a time */
    dp_model_zero_grad(m);
    CHECK(dp_clipped_grad(m, &bt, DP_CLIP_NAIVE, Cmax, 1, seed, ex0, nref, lref, &e) == 0);
    memcpy(ref, dp_model_grads(m), sizeof(real) * np);

    /* the oracle's per-example gradients equal a batch backward with one-hot weights */
    {
        m->ex0 = ex0;
        real *sum = calloc(np, sizeof(real));
        real w[B];
        double worst = 0;
        for (int i = 0; i < B; i++) {
            for (int b = 0; b < B; b++) w[b] = b == i;
            dp_model_zero_grad(m);
            dp_model_forward_backward(m, &bt, w, 1, seed, NULL);
            double sq = 0;
            for (size_t k = 0; k < np; k++) sq += m->grads[k] * m->grads[k];
            worst = fmax(worst, fabs(sqrt(sq) - nref[i]) / nref[i]);
            double c = fmin(1.0, Cmax / (sqrt(sq) + 1e-6));
            for (size_t k = 0; k < np; k++) sum[k] += c * m->grads[k];
        }
        m->ex0 = 0;
        CHECK(worst < 1e-10);
        CHECK(rel_diff(sum, ref, np) < 1e-10);
        free(sum);
    }

    dp_clip_mode modes[] = {DP_CLIP_GHOST, DP_CLIP_PHANTOM, DP_CLIP_AUTO};
    for (int k = 0; k < 3; k++) {
        dp_model_zero_grad(m);
        int rc = dp_clipped_grad(m, &bt, modes[k], Cmax, 1, seed, ex0, nalt, lalt, &e);
        if (modes[k] == DP_CLIP_GHOST && tied) {
            CHECK(rc != 0);
            continue;
        }
        CHECK(rc == 0);
        double worst = 0;
        for (int b = 0; b < B; b++) {
            worst = fmax(worst, fabs(nalt[b] - nref[b]) / nref[b]);
            CHECK_CLOSE(lalt[b], lref[b], 1e-12);
        }
        double d = rel_diff(dp_model_grads(m), ref, np);
        printf("reattention on, mode %-7s tied %d layers %d heads %d dropout %.1f L %d: norm rel err %.2g, sum rel err %.2g\n",
               dp_clip_mode_name(modes[k]), tied, layers, heads, dropout, L, worst, d);
        CHECK(worst < 1e-10);
        CHECK(d < 1e-10);
    }
    /* the correction is active (the losses differ from the plain model's) and clipping is active */
    double lplain[B];
    dp_reattention_config off = dp_reattention_config_default();
    dp_model_set_reattention(m, &off, &e);
    dp_model_zero_grad(m);
    dp_clipped_grad(m, &bt, DP_CLIP_NAIVE, Cmax, 1, seed, ex0, NULL, lplain, &e);
    double dl = 0;
    for (int b = 0; b < B; b++) dl = fmax(dl, fabs(lplain[b] - lref[b]));
    CHECK(dl > 1e-4);
    int clipped = 0;
    for (int b = 0; b < B; b++) clipped += nref[b] > Cmax;
    if (Cmax < 1) CHECK(clipped > 0);
    free(ref);
    dp_model_free(m);
}

int main(void) {
    test_gradient(1, 1, 0.0f);
    test_gradient(0, 1, 0.25f);
    test_gradient(1, 0, 0.25f);
    check_modes(1, 2, 2, 0.0f, 0.05, 7);
    check_modes(0, 2, 2, 0.0f, 0.05, 7);
    check_modes(1, 2, 1, 0.3f, 0.05, 7);
    check_modes(0, 2, 2, 0.2f, 0.5, 7);
    check_modes(1, 1, 2, 0.1f, 0.05, 20);
    check_modes(1, 3, 1, 0.0f, 1e6, 9);
    return tu_finish("test_reattention_f64");
}
