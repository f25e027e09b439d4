/* Frozen parameters (train-lm --train-only, docs/lm.md) in double precision: with some tensors frozen,
 * every clipping mode (naive, ghost where the head is untied, phantom, auto) gives per-example norms
 * over the trained tensors only and their clipped gradient sum, as a one-example-at-a-time oracle
 * computes them from full per-example gradients restricted to the trained tensors (tied and untied;
 * the tied head frozen with the token embedding; padding); the optimiser leaves frozen values and
 * their moments untouched; the --train-only parser's canonical forms and refusals. Built against the
 * double-precision library. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/lm.h"
#include "dpformer/lmtrain.h"
#include "dpformer/privacy.h"
#include "dpformer/train.h"
#include "model/model_internal.h"
#include "testutil.h"

static uint64_t rng = 1717;

static dp_model *small_lm(int V, int T, int tied) {
    dp_model_config c = dp_lm_config_default(V, T);
    c.d_model = 8;
    c.n_heads = 2;
    c.n_layers = 3;
    c.d_ff = 12;
    c.tied = tied;
    c.dropout = 0;
    dp_error e;
    dp_model *m = dp_model_create(&c, 6, 5, &e);
    if (!m) {
        fprintf(stderr, "%s\n", e.msg);
        return NULL;
    }
    real *p = dp_model_params(m);
    for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += 0.2 * tu_normal(&rng);
    memset(m->p.E, 0, sizeof(real) * (size_t)c.d_model);
    if (!tied) memset(m->p.out_w, 0, sizeof(real) * (size_t)c.d_model);
    return m;
}

/* Five right-padded examples of varied lengths over few distinct tokens (repeats exercise the
 * embedding's grouping). */
static void lm_batch(int32_t *ids, int32_t *tgt, int B, int T, int V) {
    int32_t tok[32];
    for (int b = 0; b < B; b++) {
        int n = b == 0 ? T : 2 + (int)(tu_uniform(&rng) * (T - 1));
        if (n > T) n = T;
        tok[0] = V - 1;
        for (int t = 1; t < n; t++) tok[t] = (int32_t)(tu_uniform(&rng) * 5);
        dp_lm_make_example(ids + b * T, tgt + b * T, tok, n, T);
    }
}

/* Freeze the tensors whose names start with one of the prefixes (NULL-terminated). */
static void freeze(dp_model *m, const char *const *prefixes) {
    for (int i = 0; i < m->n_tensors; i++) {
        int f = 0;
        for (const char *const *p = prefixes; *p; p++) f |= strncmp(m->tensors[i].name, *p, strlen(*p)) == 0;
        model_set_frozen(m, i, f);
    }
}

/* Σ over the trained tensors of x·y. */
static double trained_dot(const dp_model *m, const real *x, const real *y) {
    double s = 0;
    for (int k = 0; k < m->n_tensors; k++) {
        if (m->frozen[k]) continue;
        for (size_t i = m->tensors[k].offset; i < m->tensors[k].offset + m->tensors[k].size; i++)
            s += (double)x[i] * y[i];
    }
    return s;
}

static void check_frozen_modes(int tied, const char *const *prefixes, const char *what) {
    const int V = 11, T = 7, B = 5;
    const double Cmax = 0.5;
    dp_model *m = small_lm(V, T, tied);
    if (!m) return;
    freeze(m, prefixes);
    CHECK(m->n_frozen > 0);
    int32_t ids[5 * 7], tgt[5 * 7];
    lm_batch(ids, tgt, B, T, V);
    dp_batch bt = {B, T, ids, tgt, NULL};
    const size_t np = dp_model_num_params(m);
    /* the oracle: each example's full gradient, its norm over the trained tensors, the clipped sum */
    real *ref = calloc(np, sizeof(real)), *full = malloc(sizeof(real) * np);
    double nref[5], nfull[5];
    real one = 1;
    for (int b = 0; b < B; b++) {
        dp_batch eb = dp_batch_slice(&bt, b, 1);
        double loss;
        dp_model_zero_grad(m);
        dp_model_forward_backward(m, &eb, &one, 0, 0, &loss);
        memcpy(full, dp_model_grads(m), sizeof(real) * np);
        nref[b] = sqrt(trained_dot(m, full, full));
        double all = 0;
        for (size_t i = 0; i < np; i++) all += (double)full[i] * full[i];
        nfull[b] = sqrt(all);
        const double c = fmin(1.0, Cmax / (nref[b] + 1e-6));
        for (size_t i = 0; i < np; i++) ref[i] += (real)(c * full[i]);
    }
    int smaller = 0;
    for (int b = 0; b < B; b++) smaller += nref[b] < nfull[b] * (1 - 1e-6);
    CHECK(smaller == B); /* the frozen tensors had gradient to leave out */
    double refsq = trained_dot(m, ref, ref);
    dp_clip_mode modes[] = {DP_CLIP_NAIVE, DP_CLIP_GHOST, DP_CLIP_PHANTOM, DP_CLIP_AUTO};
    for (int k = 0; k < 4; k++) {
        double norms[5], losses[5];
        dp_error e;
        dp_model_zero_grad(m);
        int rc = dp_clipped_grad(m, &bt, modes[k], Cmax, 0, 0, 0, norms, losses, &e);
        if (modes[k] == DP_CLIP_GHOST && tied) {
            CHECK(rc != 0);
            continue;
        }
        CHECK(rc == 0);
        double worst = 0;
        for (int b = 0; b < B; b++) worst = fmax(worst, fabs(norms[b] - nref[b]) / nref[b]);
        /* the clipped sum over the trained tensors (a frozen tensor's gradient is never used) */
        const real *g = dp_model_grads(m);
        for (size_t i = 0; i < np; i++) full[i] = g[i] - ref[i];
        double d = sqrt(trained_dot(m, full, full) / refsq);
        if (!(worst < 1e-10 && d < 1e-9))
            fprintf(stderr, "frozen %s, tied %d, mode %s: norms %g, clipped sum %g\n", what, tied,
                    dp_clip_mode_name(modes[k]), worst, d);
        CHECK(worst < 1e-10);
        CHECK(d < 1e-9);
    }
    free(ref);
    free(full);
    dp_model_free(m);
}

/* An optimiser step: frozen values and moments do not move; trained ones do. */
static void test_optimizer(int tied) {
    dp_model *m = small_lm(11, 7, tied);
    if (!m) return;
    const char *const pre[] = {"item_emb.", "layers.1.", NULL};
    freeze(m, pre);
    const size_t np = dp_model_num_params(m);
    real *before = malloc(sizeof(real) * np), *g = dp_model_grads(m);
    memcpy(before, dp_model_params(m), sizeof(real) * np);
    for (int kind = 0; kind < 2; kind++) {
        dp_optim_config oc = dp_optim_config_default();
        oc.kind = kind ? DP_OPT_SGD : DP_OPT_ADAMW;
        oc.weight_decay = 0.1;
        dp_optimizer *o = dp_optimizer_create(&oc, m);
        for (int step = 0; step < 2; step++) {
            for (size_t i = 0; i < np; i++) g[i] = tu_normal(&rng);
            dp_optimizer_step(o, m);
        }
        const real *p = dp_model_params(m), *m1 = dp_optimizer_state(o, 0);
        int frozen_moved = 0, trained_still = 0, moments = 0;
        for (int k = 0; k < m->n_tensors; k++) {
            const dp_param_tensor *t = &m->tensors[k];
            for (size_t i = t->offset; i < t->offset + t->size; i++) {
                if (m->frozen[k]) {
                    frozen_moved += p[i] != before[i];
                    moments += m1[i] != 0;
                } else if (!(strcmp(t->name, "out.weight") == 0 && i < t->offset + 8)) { /* the padding row */
                    trained_still += p[i] == before[i];
                }
            }
        }
        CHECK(frozen_moved == 0);
        CHECK(moments == 0);
        CHECK(trained_still == 0);
        memcpy(before, p, sizeof(real) * np);
        dp_optimizer_free(o);
    }
    free(before);
    dp_model_free(m);
}

static void test_spec(void) {
    dp_model_config c = dp_lm_config_default(50, 16);
    c.d_model = 8;
    c.n_heads = 2;
    c.n_layers = 12;
    c.d_ff = 0;
    char canon[256];
    int64_t tr = 0, all = 0;
    dp_error e;
    CHECK(dp_lm_train_only("layers:8-11, ln_f,layers:7,head", &c, canon, sizeof canon, &tr, &all, &e) == 0);
    CHECK(strcmp(canon, "wte,layers:7-11,ln_f,head") == 0); /* tied: head is wte */
    CHECK(tr > 0 && tr < all);
    CHECK(dp_lm_train_only("embeddings,layers", &c, canon, sizeof canon, &tr, &all, &e) == 0);
    CHECK(strcmp(canon, "wte,wpe,layers:0-11,head") == 0);
    CHECK(dp_lm_train_only("wpe,ln_f", &c, canon, sizeof canon, &tr, &all, &e) == 0);
    CHECK(strcmp(canon, "wpe,ln_f") == 0);
    CHECK(tr == 16 * 8 + 2 * 8);
    c.tied = 0;
    CHECK(dp_lm_train_only("head,layers:3,layers:5", &c, canon, sizeof canon, NULL, NULL, &e) == 0);
    CHECK(strcmp(canon, "layers:3,layers:5,head") == 0);
    CHECK(dp_lm_train_only("wte,wpe,layers,ln_f,head", &c, canon, sizeof canon, &tr, &all, &e) == 0);
    CHECK(tr == all);
    CHECK(canon[0] == 0); /* every part: as without the flag */
    const char *bad[][2] = {{"", "empty"},         {"wte,,head", "empty part"}, {"lm_head", "unknown part \"lm_head\""},
                            {"layers:12", "12 blocks"}, {"layers:3-1", "backwards"}, {"layers:a-b", "layers:A-B"},
                            {"layers:-1", "layers:A-B"}, {"layers:2-", "layers:A-B"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = dp_lm_train_only(bad[i][0], &c, canon, sizeof canon, NULL, NULL, &e);
        CHECK(rc != 0);
        if (rc == 0 || !strstr(e.msg, bad[i][1])) fprintf(stderr, "spec \"%s\": %s\n", bad[i][0], rc ? e.msg : "accepted");
        if (rc) CHECK(strstr(e.msg, bad[i][1]) != NULL);
    }
}

int main(void) {
    const char *const emb[] = {"item_emb.", NULL};            /* tied: the head too */
    const char *const mid[] = {"pos_emb.", "layers.1.", "ln_f.", NULL};
    const char *const low[] = {"item_emb.", "pos_emb.", "layers.0.", "layers.1.", NULL};
    const char *const head[] = {"out.", "layers.2.", NULL}; /* untied only */
    for (int tied = 0; tied < 2; tied++) {
        check_frozen_modes(tied, emb, "wte");
        check_frozen_modes(tied, mid, "wpe,layers.1,ln_f");
        check_frozen_modes(tied, low, "embeddings,layers.0-1");
        if (!tied) check_frozen_modes(tied, head, "head,layers.2");
        test_optimizer(tied);
    }
    test_spec();
    return tu_finish("test_lm_freeze_f64");
}
