/* No compute on padding (docs/training.md, "Trimmed windows"): left-padded windows run in chunks of
 * similar length, each on the last T positions of the window (T its longest sequence), every row with
 * its full-window position vector and dropout masks. Checked against the full windows, tied and untied,
 * dropout on and off, Re-Attention on and off:
 *  - the privacy engine in every clip mode (naive, ghost, phantom, auto): per-example norms, losses and
 *    the clipped sum (dp_clipped_grad_trimmed against dp_clipped_grad);
 *  - the non-private forward/backward on a length-sorted batch in chunks with mask slots (what the
 *    training loop does): losses and gradients;
 *  - item scores at the last position, and dp_evaluate's metrics against a full-window ranking;
 *  - training runs (non-private and DP-SGD with seeded noise) with trimming on and off;
 * and the controls that make these checks able to fail: a window that cuts items, and a trimmed window
 * without the position offset, change the results. The same file is built against the double library
 * (test_trim_f64.c) with a tolerance near 1e-12. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/privacy.h"
#include "dpformer/reattention.h"
#include "dpformer/train.h"
#include "model/model_internal.h"
#include "ops/ops.h"
#include "testutil.h"
#include "train/trim.h"

#ifndef TRIM_TEST_NAME
#define TRIM_TEST_NAME "test_trim"
#endif
#ifdef DP_REAL_DOUBLE
#define TOL 1e-12
#else
#define TOL 2e-5
#endif

static uint64_t rng = 1313;
enum { V = 30, L = 20, B = 8, D = 8 };
/* training lengths (targets) of the batch: all short of L, several chunks; 12 is the longest */
static const int LENS[B] = {3, 1, 7, 5, 2, 12, 4, 7};
static double freq[V + 1];

static dp_model *random_model(int tied, float dropout, int reatt) {
    dp_model_config c = dp_model_config_default(V, L);
    c.d_model = D;
    c.n_heads = 2;
    c.n_layers = 2;
    c.d_ff = 12;
    c.tied = tied;
    c.dropout = dropout;
    dp_error e;
    dp_model *m = dp_model_create(&c, B, 99, &e);
    real *p = dp_model_params(m);
    for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += 0.2 * tu_normal(&rng);
    memset(m->p.E, 0, sizeof(real) * D);
    if (!tied) memset(m->p.out_w, 0, sizeof(real) * D);
    if (reatt) {
        for (int i = 1; i <= V; i++) freq[i] = 0.9 / i;
        dp_reattention_config rc = dp_reattention_config_default();
        rc.enabled = 1;
        rc.kappa = 1;
        rc.sigma = 2;
        rc.batch_size = 4;
        rc.item_freq = freq;
        rc.n_examples = 50;
        CHECK(dp_model_set_reattention(m, &rc, &e) == 0);
    }
    return m;
}

/* Left-padded windows [B, L] with LENS[b] targets (repeated items are common). */
static void make_batch(int32_t *ids, int32_t *tgt) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) {
            const int k = b * L + t, active = t >= L - LENS[b];
            ids[k] = active ? 1 + (int)(tu_uniform(&rng) * 6) : 0;
            tgt[k] = active ? 1 + (int)(tu_uniform(&rng) * V) : 0;
        }
}

/* The last T positions of each window. */
static void cut(int32_t *dst, const int32_t *src, int T) {
    for (int b = 0; b < B; b++) memcpy(dst + (size_t)b * T, src + (size_t)b * L + (L - T), sizeof(int32_t) * T);
}

static double rel_diff(const real *a, const real *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den + 1e-300));
}

static double max_rel(const double *a, const double *b, int n) {
    double w = 0;
    for (int i = 0; i < n; i++) w = fmax(w, fabs(a[i] - b[i]) / fmax(1e-30, fabs(b[i])));
    return w;
}

/* ---- the privacy engine, every mode ---- */

static void check_clip(int tied, float dropout, int reatt) {
    int32_t ids[B * L], tgt[B * L];
    make_batch(ids, tgt);
    const dp_batch bt = {B, L, ids, tgt, NULL};
    const uint64_t seed = 4711;
    const int ex0 = 3;
    dp_error e;
    dp_model *m = random_model(tied, dropout, reatt);
    const size_t np = dp_model_num_params(m);
    real *ref = malloc(sizeof(real) * np);
    double n_ref[B], l_ref[B], n_trim[B], l_trim[B];
    /* a clipping norm between the smallest and the largest per-example norm: some are clipped */
    dp_model_zero_grad(m);
    CHECK(dp_clipped_grad(m, &bt, DP_CLIP_PHANTOM, 1e9, 1, seed, ex0, n_ref, l_ref, &e) == 0);
    double lo = INFINITY, hi = 0;
    for (int b = 0; b < B; b++) lo = fmin(lo, n_ref[b]), hi = fmax(hi, n_ref[b]);
    const double Cmax = sqrt(lo * hi);
    const dp_clip_mode modes[] = {DP_CLIP_NAIVE, DP_CLIP_GHOST, DP_CLIP_PHANTOM, DP_CLIP_AUTO};
    for (int k = 0; k < 4; k++) {
        const dp_clip_mode mode = modes[k];
        if (mode == DP_CLIP_GHOST && tied) continue; /* refused for tied embeddings, trimmed or not */
        dp_model_zero_grad(m);
        CHECK(dp_clipped_grad(m, &bt, mode, Cmax, 1, seed, ex0, n_ref, l_ref, &e) == 0);
        memcpy(ref, dp_model_grads(m), sizeof(real) * np);
        dp_model_zero_grad(m);
        CHECK(dp_clipped_grad_trimmed(m, &bt, mode, Cmax, 1, seed, ex0, n_trim, l_trim, &e) == 0);
        CHECK(m->cfg.max_len == L && m->win_off == 0 && m->slot == NULL); /* restored */
        const double dg = rel_diff(dp_model_grads(m), ref, np), dn = max_rel(n_trim, n_ref, B),
                     dl = max_rel(l_trim, l_ref, B);
        int clipped = 0;
        for (int b = 0; b < B; b++) clipped += n_ref[b] > Cmax;
        printf("clip %-7s tied %d dropout %.1f reattention %d: %d/%d clipped; trimmed vs full: norms %.2g, losses %.2g, "
               "clipped sum %.2g\n",
               dp_clip_mode_name(mode), tied, dropout, reatt, clipped, B, dn, dl, dg);
        CHECK(clipped > 0 && clipped < B);
        CHECK(dn <= TOL);
        CHECK(dl <= TOL);
        CHECK(dg <= TOL);
    }

    /* controls: a window that cuts the longest sequence's first items, and a trimmed window whose
     * positions start at 0 instead of L - T, change its norm and loss */
    const int longest = 5, Tc = LENS[longest] - 2;
    int32_t ci[B * L], ct[B * L];
    cut(ci, ids, Tc);
    cut(ct, tgt, Tc);
    dp_batch cb = {B, Tc, ci, ct, NULL};
    dp_model_zero_grad(m);
    CHECK(dp_clipped_grad(m, &bt, DP_CLIP_PHANTOM, Cmax, 1, seed, ex0, n_ref, l_ref, &e) == 0);
    dp_model_set_window_last(m, Tc);
    dp_model_zero_grad(m);
    CHECK(dp_clipped_grad(m, &cb, DP_CLIP_PHANTOM, Cmax, 1, seed, ex0, n_trim, l_trim, &e) == 0);
    dp_model_set_window_last(m, 0);
    printf("  cut window (T %d < %d items): norm %.6g vs %.6g, loss %.6g vs %.6g\n", Tc, LENS[longest],
           n_trim[longest], n_ref[longest], l_trim[longest], l_ref[longest]);
    CHECK(fabs(n_trim[longest] - n_ref[longest]) > 1e-3 * n_ref[longest]);
    CHECK(fabs(l_trim[longest] - l_ref[longest]) > 1e-4 * l_ref[longest]);
    CHECK(fabs(n_trim[0] - n_ref[0]) <= TOL * n_ref[0]); /* a sequence that fits is unchanged */
    const int Tf = LENS[longest];
    cut(ci, ids, Tf);
    cut(ct, tgt, Tf);
    cb.T = Tf;
    dp_model_set_window(m, Tf); /* positions 0 .. Tf-1: not those of the full window */
    dp_model_zero_grad(m);
    CHECK(dp_clipped_grad(m, &cb, DP_CLIP_PHANTOM, Cmax, 1, seed, ex0, n_trim, l_trim, &e) == 0);
    dp_model_set_window(m, 0);
    printf("  window without the position offset: loss %.6g vs %.6g\n", l_trim[0], l_ref[0]);
    CHECK(fabs(l_trim[0] - l_ref[0]) > 1e-4 * l_ref[0]);
    free(ref);
    dp_model_free(m);
}

/* ---- the non-private pass as the training loop runs it: length-sorted chunks with mask slots ---- */

static void check_forward_backward(int tied, float dropout, int reatt) {
    int32_t ids[B * L], tgt[B * L], ci[B * L], ct[B * L], slot[B];
    make_batch(ids, tgt);
    const dp_batch bt = {B, L, ids, tgt, NULL};
    const uint64_t seed = 99;
    dp_model *m = random_model(tied, dropout, reatt);
    const size_t np = dp_model_num_params(m);
    real w[B], cw[B], *ref = malloc(sizeof(real) * np);
    double l_ref[B], l_trim[B], lc[B];
    for (int b = 0; b < B; b++) w[b] = (real)(0.5 + 0.1 * b);
    dp_model_zero_grad(m);
    m->ex0 = 2;
    dp_model_forward_backward(m, &bt, w, 1, seed, l_ref);
    memcpy(ref, dp_model_grads(m), sizeof(real) * np);
    /* sorted by length (then place), one chunk per length; chunk rows keep the masks of place ex0 + b */
    int order[B];
    for (int b = 0; b < B; b++) order[b] = b;
    for (int i = 1; i < B; i++)
        for (int j = i; j > 0 && LENS[order[j]] < LENS[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    dp_model_zero_grad(m);
    int chunks = 0;
    for (int k0 = 0; k0 < B;) {
        int k1 = k0;
        while (k1 < B && LENS[order[k1]] == LENS[order[k0]]) k1++;
        const int n = k1 - k0, T = LENS[order[k0]];
        for (int k = 0; k < n; k++) {
            const int b = order[k0 + k];
            memcpy(ci + (size_t)k * T, ids + (size_t)b * L + (L - T), sizeof(int32_t) * T);
            memcpy(ct + (size_t)k * T, tgt + (size_t)b * L + (L - T), sizeof(int32_t) * T);
            slot[k] = 2 + b;
            cw[k] = w[b];
        }
        dp_batch cb = {n, T, ci, ct, NULL};
        dp_model_set_window_last(m, T);
        dp_model_set_mask_slots(m, slot);
        dp_model_forward_backward(m, &cb, cw, 1, seed, lc);
        dp_model_set_mask_slots(m, NULL);
        dp_model_set_window_last(m, 0);
        for (int k = 0; k < n; k++) l_trim[order[k0 + k]] = lc[k];
        chunks++;
        k0 = k1;
    }
    m->ex0 = 0;
    const double dg = rel_diff(dp_model_grads(m), ref, np), dl = max_rel(l_trim, l_ref, B);
    printf("forward/backward tied %d dropout %.1f reattention %d, %d chunks: losses %.2g, gradients %.2g\n", tied,
           dropout, reatt, chunks, dl, dg);
    CHECK(dl <= TOL);
    CHECK(dg <= TOL);
    free(ref);
    dp_model_free(m);
}

/* ---- item scores, and dp_evaluate against a full-window ranking ---- */

static void check_scores(int reatt) {
    int32_t ids[B * L], tgt[B * L], ci[B * L];
    make_batch(ids, tgt);
    dp_model *m = random_model(1, 0.2f, reatt);
    const size_t n = (size_t)B * (V + 1);
    real *full = malloc(sizeof(real) * n), *trim = malloc(sizeof(real) * n);
    dp_model_score_last(m, ids, B, full);
    const int T = LENS[5];
    cut(ci, ids, T);
    dp_model_set_window_last(m, T);
    dp_model_score_last(m, ci, B, trim);
    dp_model_set_window_last(m, 0);
    const double d = rel_diff(trim, full, n);
    printf("scores reattention %d: trimmed (T %d) vs full %.2g\n", reatt, T, d);
    CHECK(d <= TOL);
    cut(ci, ids, T - 3);
    dp_model_set_window_last(m, T - 3);
    dp_model_score_last(m, ci, B, trim);
    dp_model_set_window_last(m, 0);
    const double dc = rel_diff(trim + 5 * (V + 1), full + 5 * (V + 1), V + 1);
    printf("  cut window (T %d): the longest sequence's scores differ by %.2g\n", T - 3, dc);
    CHECK(dc > 1e-3);
    free(full);
    free(trim);
    dp_model_free(m);
}

static dp_dataset synthetic(int users) {
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    sc.n_users = users;
    sc.n_items = 60;
    sc.max_len = 40;
    dp_dataset ds;
    dp_dataset_synthetic(&ds, &sc);
    return ds;
}

static void check_evaluate(void) {
    dp_dataset ds = synthetic(300);
    dp_model_config c = dp_model_config_default(ds.n_items, 32);
    c.d_model = 16;
    c.n_heads = 2;
    dp_error e;
    dp_model *m = dp_model_create(&c, 32, 5, &e);
    real *p = dp_model_params(m);
    for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += 0.3 * tu_normal(&rng);
    memset(m->p.E, 0, sizeof(real) * 16);
    const int Lm = 32, V1 = ds.n_items + 1;
    int32_t *ids = malloc(sizeof(int32_t) * Lm);
    real *s = malloc(sizeof(real) * V1);
    for (int excl = 0; excl < 2; excl++) {
        dp_rank_metrics ref, got;
        memset(&ref, 0, sizeof ref);
        int64_t lens[3] = {0, 0, 0};
        for (int32_t u = 0; u < ds.n_users; u++) {
            int64_t h = dp_split_history(&ds, u, DP_SPLIT_TEST);
            if (h < 0) continue;
            lens[h < 8 ? 0 : h < Lm ? 1 : 2]++;
            const int32_t *seq = ds.items + ds.offsets[u];
            dp_make_eval_window(ids, seq, h, Lm);
            dp_model_score_last(m, ids, 1, s);
            dp_metrics_add(&ref, dp_rank_of_target(s, ds.n_items, seq[h], excl ? seq : NULL, excl ? h : 0));
        }
        dp_metrics_finish(&ref);
        dp_evaluate(m, &ds, DP_SPLIT_TEST, excl, 0, &got);
        printf("evaluate (exclude seen %d; histories <8: %lld, <L: %lld, >=L: %lld): NDCG@10 %.6f vs full windows "
               "%.6f, HR@10 %.6f vs %.6f\n",
               excl, (long long)lens[0], (long long)lens[1], (long long)lens[2], got.ndcg10, ref.ndcg10, got.hr10,
               ref.hr10);
        CHECK(lens[0] > 0 && lens[1] > 0 && lens[2] > 0);
        CHECK(got.n == ref.n && got.n > 0);
        CHECK_CLOSE(got.ndcg10, ref.ndcg10, 1e-12);
        CHECK_CLOSE(got.hr10, ref.hr10, 1e-12);
        CHECK_CLOSE(got.ndcg20, ref.ndcg20, 1e-12);
    }
    free(ids);
    free(s);
    dp_model_free(m);
    dp_dataset_free(&ds);
}

/* ---- whole training runs, trimming on and off ---- */

static void check_training(int dp, int reatt) {
    dp_dataset ds = synthetic(200);
    dp_train_config c = dp_train_config_default();
    c.model = dp_model_config_default(ds.n_items, 24);
    c.model.d_model = 16;
    c.model.n_heads = 2;
    c.model.dropout = 0.2f;
    c.optim.lr = 1e-2;
    c.epochs = 2;
    c.batch_size = 40;
    c.progress = -1;
    c.seed = 11;
    c.keep_last = 1;
    c.max_eval_users = 50;
    if (dp) {
        c.dp.enabled = 1;
        c.dp.noise_multiplier = 0.8;
        c.dp.max_grad_norm = 0.5;
        c.dp.max_physical_batch = 16; /* several physical chunks per step */
        c.dp.seeded_noise = 1;
        c.dp.reattention = reatt;
    }
    dp_model *m[2];
    dp_train_result r[2];
    dp_error e;
    for (int k = 0; k < 2; k++) {
        c.no_trim = k;
        CHECK(dp_train(&ds, &c, &m[k], &r[k], &e) == 0);
        if (!m[k]) {
            fprintf(stderr, "%s\n", e.msg);
            return;
        }
    }
    const size_t np = dp_model_num_params(m[0]);
    const double d = rel_diff(dp_model_params(m[0]), dp_model_params(m[1]), np);
    printf("training %s%s, dropout 0.2: trimmed vs full windows: parameters %.2g, final loss %.8f vs %.8f, test "
           "NDCG@10 %.6f vs %.6f\n",
           dp ? "DP-SGD" : "non-private", reatt ? " + Re-Attention" : "", d, r[0].final_train_loss,
           r[1].final_train_loss, r[0].test.ndcg10, r[1].test.ndcg10);
    /* every step's sums in another order: rounding differences that training carries along */
    CHECK(d <= 1000 * TOL);
    CHECK_CLOSE(r[0].final_train_loss, r[1].final_train_loss, 1000 * TOL);
    CHECK(r[0].dp_steps == r[1].dp_steps && r[0].epsilon == r[1].epsilon);
    dp_model_free(m[0]);
    dp_model_free(m[1]);
    dp_dataset_free(&ds);
}

/* ---- the chunk plan ---- */

static void check_plan(void) {
    int32_t len[10] = {1, 1, 2, 2, 2, 3, 9, 9, 10, 50}, size[10];
    dp_trim_chunk_cost = 1;
    int64_t nc = dp_trim_plan(len, 10, 4, size);
    CHECK(nc == 6); /* 1 1 | 2 2 2 | 3 | 9 9 | 10 | 50 */
    CHECK(size[0] == 2 && size[1] == 3 && size[2] == 1 && size[3] == 2 && size[4] == 1 && size[5] == 1);
    dp_trim_chunk_cost = 1000;
    nc = dp_trim_plan(len, 10, 4, size);
    CHECK(nc == 3); /* as few chunks as cap allows: 4 4 2 */
    int32_t one = 5;
    CHECK(dp_trim_plan(&one, 1, 4, size) == 1 && size[0] == 1);
    int32_t w[4] = {0, 0, 3, 4};
    CHECK(dp_trim_used(w, 4) == 2);
    int32_t z[4] = {0, 0, 0, 0};
    CHECK(dp_trim_used(z, 4) == 1);
}

int main(void) {
    check_plan();
    dp_trim_chunk_cost = 1; /* a chunk per distinct length: the most reordering and trimming */
    for (int tied = 1; tied >= 0; tied--)
        for (int reatt = 0; reatt < 2; reatt++) {
            check_clip(tied, 0.0f, reatt);
            check_clip(tied, 0.2f, reatt);
        }
    check_forward_backward(1, 0.2f, 0);
    check_forward_backward(1, 0.2f, 1);
    check_forward_backward(0, 0.0f, 0);
    check_scores(0);
    check_scores(1);
    check_evaluate();
    dp_trim_chunk_cost = 16;
    check_training(0, 0);
    check_training(1, 0);
    check_training(1, 1);
    return tu_finish(TRIM_TEST_NAME);
}
