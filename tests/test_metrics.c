/* Full-ranking metrics against hand-computed values: the rank rule (ties favour the target),
 * exclusion of seen items (each excluded id once, the target never), NDCG/HR/MRR averages, and the
 * popularity baseline on a tiny dataset whose answer is worked out below; finally the fast popularity
 * path is compared with dp_rank_of_target on a synthetic dataset. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dpformer/data.h"
#include "testutil.h"

static void test_rank(void) {
    /* items 1..5; index 0 is padding and must be ignored even if it scores highest */
    dp_real s[] = {99, 0.5f, 0.9f, 0.5f, 0.1f, 0.7f};
    CHECK(dp_rank_of_target(s, 5, 1, NULL, 0) == 3); /* 0.9 and 0.7 are higher; the tie (item 3) is not */
    CHECK(dp_rank_of_target(s, 5, 3, NULL, 0) == 3);
    CHECK(dp_rank_of_target(s, 5, 2, NULL, 0) == 1);
    CHECK(dp_rank_of_target(s, 5, 4, NULL, 0) == 5);
    int32_t ex1[] = {2};
    CHECK(dp_rank_of_target(s, 5, 1, ex1, 1) == 2);
    int32_t ex2[] = {2, 2, 5, 1, 5}; /* repeats, and the target itself: never excluded */
    CHECK(dp_rank_of_target(s, 5, 1, ex2, 5) == 1);
    int32_t ex3[] = {4, 0, 6, -3}; /* lower-scoring item and out-of-range ids change nothing */
    CHECK(dp_rank_of_target(s, 5, 1, ex3, 4) == 3);
    CHECK(dp_rank_of_target(s, 5, 1, ex1, 0) == 3); /* n_exclude = 0 */
    CHECK(dp_rank_of_target(s, 5, 0, NULL, 0) == -1);
    CHECK(dp_rank_of_target(s, 5, 6, NULL, 0) == -1);
    /* a NaN target score is ranked last among the candidates */
    dp_real n[] = {0, 0.5f, NAN, 0.1f, 0.2f};
    CHECK(dp_rank_of_target(n, 4, 2, NULL, 0) == 4);
    int32_t ex4[] = {1, 3};
    CHECK(dp_rank_of_target(n, 4, 2, ex4, 2) == 2);
    /* many excluded ids (heap path of the dedup) */
    enum { V = 1000 };
    dp_real *big = malloc((V + 1) * sizeof *big);
    int32_t *ex = malloc(600 * sizeof *ex);
    for (int i = 0; i <= V; i++) big[i] = (dp_real)i; /* item i scores i: target 500 has rank 501 */
    CHECK(dp_rank_of_target(big, V, 500, NULL, 0) == 501);
    for (int k = 0; k < 600; k++) ex[k] = 700 + k % 300; /* items 700..999, each twice */
    CHECK(dp_rank_of_target(big, V, 500, ex, 600) == 201);
    free(big);
    free(ex);
}

static void test_metrics_avg(void) {
    dp_rank_metrics m;
    memset(&m, 0, sizeof m);
    int64_t ranks[] = {1, 2, 10, 11, 20, 21};
    for (int i = 0; i < 6; i++) dp_metrics_add(&m, ranks[i]);
    dp_metrics_finish(&m);
    CHECK(m.n == 6);
    /* (1 + 1/log2 3 + 1/log2 11) / 6 */
    CHECK_CLOSE(m.ndcg10, 0.31999909664822423, 1e-12);
    CHECK_CLOSE(m.hr10, 0.5, 1e-12);
    /* adds 1/log2 12 + 1/log2 21 */
    CHECK_CLOSE(m.ndcg20, 0.40443462903957134, 1e-12);
    CHECK_CLOSE(m.hr20, 5.0 / 6.0, 1e-12);
    CHECK_CLOSE(m.mrr, 0.2980880230880231, 1e-12);
    /* an empty average stays zero rather than becoming NaN */
    memset(&m, 0, sizeof m);
    dp_metrics_finish(&m);
    CHECK(m.n == 0 && m.ndcg10 == 0);
}

/* users (items in time order; | separates training prefix / valid target / test target):
 *   u0: 1 2 3 | 1 | 2     u1: 1 | 4 | 2     u2: 3 1 (fewer than 3 items: training only)
 *   u3: 2 2 | 5 | 3
 * training counts: item1 = 3, item2 = 3, item3 = 2, item4 = 0, item5 = 0. */
static void test_popularity(void) {
    int32_t items[] = {1, 2, 3, 1, 2, 1, 4, 2, 3, 1, 2, 2, 5, 3};
    int64_t offsets[] = {0, 5, 8, 10, 14};
    int64_t uraw[] = {1, 2, 3, 4}, iraw[] = {0, 1, 2, 3, 4, 5};
    dp_dataset ds = {4, 5, 14, offsets, items, iraw, uraw};
    dp_rank_metrics m;

    /* test, no exclusion: u0 target 2 (ties item 1) rank 1; u1 rank 1; u3 target 3 below 1, 2: rank 3 */
    dp_popularity_eval(&ds, DP_SPLIT_TEST, 0, &m);
    CHECK(m.n == 3);
    CHECK_CLOSE(m.ndcg10, (2.0 + 0.5) / 3.0, 1e-12);
    CHECK_CLOSE(m.hr10, 1.0, 1e-12);
    CHECK_CLOSE(m.mrr, (2.0 + 1.0 / 3.0) / 3.0, 1e-12);
    /* test, excluding seen: u3 has seen item 2, so its target 3 is only below item 1: rank 2 */
    dp_popularity_eval(&ds, DP_SPLIT_TEST, 1, &m);
    CHECK(m.n == 3);
    CHECK_CLOSE(m.ndcg10, 0.8769765845238192, 1e-12);
    CHECK_CLOSE(m.mrr, 2.5 / 3.0, 1e-12);
    /* valid, no exclusion: u0 target 1 rank 1; u1 target 4 and u3 target 5 (count 0) rank 4 */
    dp_popularity_eval(&ds, DP_SPLIT_VALID, 0, &m);
    CHECK(m.n == 3);
    CHECK_CLOSE(m.ndcg10, 0.6204510387155954, 1e-12);
    CHECK_CLOSE(m.mrr, 1.5 / 3.0, 1e-12);
    /* valid, excluding seen: u0 rank 1 (2, 3 seen); u1 rank 3 (1 seen); u3 rank 3 (2 seen) */
    dp_popularity_eval(&ds, DP_SPLIT_VALID, 1, &m);
    CHECK_CLOSE(m.ndcg10, 2.0 / 3.0, 1e-12);
    CHECK_CLOSE(m.hr20, 1.0, 1e-12);
    /* the training split has no targets */
    dp_popularity_eval(&ds, DP_SPLIT_TRAIN, 0, &m);
    CHECK(m.n == 0 && m.ndcg10 == 0);
}

/* The binary-search path of dp_popularity_eval equals ranking the count vector user by user. */
static void test_popularity_matches_rank(void) {
    dp_synth_config cfg = {300, 200, 2, 12, 1.0, 0.5, 7};
    dp_dataset ds;
    dp_dataset_synthetic(&ds, &cfg);
    dp_real *score = calloc((size_t)ds.n_items + 1, sizeof *score);
    for (int32_t u = 0; u < ds.n_users; u++)
        for (int64_t k = 0; k < dp_split_history(&ds, u, DP_SPLIT_TRAIN); k++) score[ds.items[ds.offsets[u] + k]] += 1;
    for (int split = DP_SPLIT_VALID; split <= DP_SPLIT_TEST; split++)
        for (int ex = 0; ex <= 1; ex++) {
            dp_rank_metrics fast, ref;
            memset(&ref, 0, sizeof ref);
            dp_popularity_eval(&ds, (dp_split)split, ex, &fast);
            for (int32_t u = 0; u < ds.n_users; u++) {
                int64_t h = dp_split_history(&ds, u, (dp_split)split);
                if (h < 0) continue;
                const int32_t *seq = ds.items + ds.offsets[u];
                dp_metrics_add(&ref, dp_rank_of_target(score, ds.n_items, seq[h], ex ? seq : NULL, h));
            }
            dp_metrics_finish(&ref);
            CHECK(fast.n == ref.n && ref.n > 200);
            CHECK_CLOSE(fast.ndcg10, ref.ndcg10, 1e-12);
            CHECK_CLOSE(fast.hr20, ref.hr20, 1e-12);
            CHECK_CLOSE(fast.mrr, ref.mrr, 1e-12);
        }
    free(score);
    dp_dataset_free(&ds);
}

int main(void) {
    test_rank();
    test_metrics_avg();
    test_popularity();
    test_popularity_matches_rank();
    return tu_finish("test_metrics");
}
