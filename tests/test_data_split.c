/* The leave-one-out split (including users with fewer than 3 items) and the synthetic generator:
 * determinism in the seed, shape, a Zipf long tail, and transition structure that a sequence model
 * can learn but popularity cannot (checked with a first-order transition-count predictor). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dpformer/data.h"
#include "testutil.h"

static void test_split(void) {
    /* users of length 1, 2, 3, 5 */
    int32_t items[] = {1, 1, 2, 1, 2, 3, 1, 2, 3, 4, 5};
    int64_t offsets[] = {0, 1, 3, 6, 11};
    int64_t uraw[] = {1, 2, 3, 4}, iraw[] = {0, 1, 2, 3, 4, 5};
    dp_dataset ds = {4, 5, 11, offsets, items, iraw, uraw};
    CHECK(dp_split_history(&ds, 0, DP_SPLIT_TRAIN) == 1);
    CHECK(dp_split_history(&ds, 0, DP_SPLIT_VALID) == -1);
    CHECK(dp_split_history(&ds, 0, DP_SPLIT_TEST) == -1);
    CHECK(dp_split_history(&ds, 1, DP_SPLIT_TRAIN) == 2);
    CHECK(dp_split_history(&ds, 1, DP_SPLIT_VALID) == -1);
    CHECK(dp_split_history(&ds, 1, DP_SPLIT_TEST) == -1);
    CHECK(dp_split_history(&ds, 2, DP_SPLIT_TRAIN) == 1);
    CHECK(dp_split_history(&ds, 2, DP_SPLIT_VALID) == 1);
    CHECK(dp_split_history(&ds, 2, DP_SPLIT_TEST) == 2);
    CHECK(dp_split_history(&ds, 3, DP_SPLIT_TRAIN) == 3);
    CHECK(dp_split_history(&ds, 3, DP_SPLIT_VALID) == 3);
    CHECK(dp_split_history(&ds, 3, DP_SPLIT_TEST) == 4);
    /* the targets are the items right after the history: 4 (valid) and 5 (test) for the last user */
    CHECK(items[offsets[3] + dp_split_history(&ds, 3, DP_SPLIT_VALID)] == 4);
    CHECK(items[offsets[3] + dp_split_history(&ds, 3, DP_SPLIT_TEST)] == 5);

    dp_data_stats st;
    dp_dataset_stats(&ds, &st);
    CHECK(st.n_eval_users == 2 && st.len_min == 1 && st.len_max == 5 && st.len_p50 == 2);
    CHECK_CLOSE(st.len_mean, 11.0 / 4.0, 1e-12);
    CHECK_CLOSE(st.density, 11.0 / 20.0, 1e-12);
    /* counts 4, 3, 2, 1, 1 -> Gini = sum (2i - 6) x_(i) / (5 * 11) over ascending x = 16/55 */
    CHECK_CLOSE(st.gini, 16.0 / 55.0, 1e-12);
    CHECK_CLOSE(st.share_items_lt5_users, 1.0, 1e-12); /* only 4 users */
    CHECK_CLOSE(st.top1pct_share, 4.0 / 11.0, 1e-12);  /* top 1% of 5 items = 1 item */
}

static int same_dataset(const dp_dataset *a, const dp_dataset *b) {
    return a->n_users == b->n_users && a->n_items == b->n_items && a->n_interactions == b->n_interactions &&
           memcmp(a->offsets, b->offsets, ((size_t)a->n_users + 1) * sizeof *a->offsets) == 0 &&
           memcmp(a->items, b->items, (size_t)a->n_interactions * sizeof *a->items) == 0;
}

static void test_synthetic_shape(void) {
    dp_synth_config cfg = {500, 300, 4, 9, 1.1, 0.6, 123};
    dp_dataset a, b, c;
    dp_dataset_synthetic(&a, &cfg);
    dp_dataset_synthetic(&b, &cfg);
    cfg.seed = 124;
    dp_dataset_synthetic(&c, &cfg);
    CHECK(same_dataset(&a, &b));
    CHECK(!same_dataset(&a, &c));
    CHECK(a.n_users == 500 && a.n_items == 300 && a.offsets[0] == 0 && a.offsets[500] == a.n_interactions);
    int lens_ok = 1, ids_ok = 1, seen_min = 0, seen_max = 0;
    for (int32_t u = 0; u < a.n_users; u++) {
        int64_t n = dp_user_len(&a, u);
        lens_ok &= n >= 4 && n <= 9;
        seen_min |= n == 4;
        seen_max |= n == 9;
    }
    for (int64_t k = 0; k < a.n_interactions; k++) ids_ok &= a.items[k] >= 1 && a.items[k] <= 300;
    CHECK(lens_ok && ids_ok && seen_min && seen_max);
    CHECK(a.item_raw_ids[7] == 7 && a.user_raw_ids[0] == 1);
    dp_dataset_free(&a);
    dp_dataset_free(&b);
    dp_dataset_free(&c);
}

/* The demo's dataset: long-tailed, and the transitions carry most of the signal. */
static void test_synthetic_structure(void) {
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    dp_dataset ds;
    dp_dataset_synthetic(&ds, &cfg);
    dp_data_stats st;
    dp_dataset_stats(&ds, &st);
    printf("synthetic (demo defaults): %d users, %d items, %lld interactions, Gini %.3f, top-1%% share %.3f\n",
           st.n_users, st.n_items, (long long)st.n_interactions, st.gini, st.top1pct_share);
    CHECK(st.gini > 0.5);
    CHECK(st.top1pct_share > 0.1);

    /* the most frequent item a; P(b | previous = a) for its most frequent successor b vs P(b) */
    int32_t V = ds.n_items;
    int64_t *count = calloc((size_t)V + 1, sizeof *count), *next = calloc((size_t)V + 1, sizeof *next);
    for (int64_t k = 0; k < ds.n_interactions; k++) count[ds.items[k]]++;
    int32_t a = 1;
    for (int32_t i = 2; i <= V; i++)
        if (count[i] > count[a]) a = i;
    int64_t n_after_a = 0;
    for (int32_t u = 0; u < ds.n_users; u++)
        for (int64_t k = ds.offsets[u] + 1; k < ds.offsets[u + 1]; k++)
            if (ds.items[k - 1] == a) {
                next[ds.items[k]]++;
                n_after_a++;
            }
    int32_t b = 1;
    for (int32_t i = 2; i <= V; i++)
        if (next[i] > next[b]) b = i;
    double p_cond = (double)next[b] / (double)n_after_a, p_marg = (double)count[b] / (double)ds.n_interactions;
    printf("most frequent item %d: P(next = %d | %d) = %.3f vs P(%d) = %.4f\n", a, b, a, p_cond, b, p_marg);
    CHECK(p_cond > 0.15);
    CHECK(p_cond > 5 * p_marg);

    /* a first-order transition-count model (counts on training prefixes) against popularity, on test */
    float *T = calloc((size_t)(V + 1) * (size_t)(V + 1), sizeof *T);
    dp_real *score = malloc(((size_t)V + 1) * sizeof *score);
    for (int32_t u = 0; u < ds.n_users; u++) {
        const int32_t *q = ds.items + ds.offsets[u];
        for (int64_t k = 1; k < dp_split_history(&ds, u, DP_SPLIT_TRAIN); k++) T[(size_t)q[k - 1] * (V + 1) + q[k]] += 1;
    }
    dp_rank_metrics markov, pop;
    memset(&markov, 0, sizeof markov);
    for (int32_t u = 0; u < ds.n_users; u++) {
        int64_t h = dp_split_history(&ds, u, DP_SPLIT_TEST);
        if (h < 1) continue;
        const int32_t *q = ds.items + ds.offsets[u];
        for (int32_t i = 0; i <= V; i++) score[i] = T[(size_t)q[h - 1] * (V + 1) + i];
        dp_metrics_add(&markov, dp_rank_of_target(score, V, q[h], NULL, 0));
    }
    dp_metrics_finish(&markov);
    dp_popularity_eval(&ds, DP_SPLIT_TEST, 0, &pop);
    printf("test NDCG@10: popularity %.4f, first-order transition counts %.4f\n", pop.ndcg10, markov.ndcg10);
    CHECK(pop.ndcg10 < 0.2);
    CHECK(markov.ndcg10 > 0.4);
    CHECK(markov.ndcg10 > 3 * pop.ndcg10);
    free(T);
    free(score);
    free(count);
    free(next);
    dp_dataset_free(&ds);
}

int main(void) {
    test_split();
    test_synthetic_shape();
    test_synthetic_structure();
    return tu_finish("test_data_split");
}
