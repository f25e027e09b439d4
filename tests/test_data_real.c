/* The loaders on the real datasets in $DPFORMER_DATA (../shared/data): counts against the dataset
 * documentation, chronological ordering of MovieLens checked by an independent reader, load time, and
 * the popularity baseline against the published reference values (docs: reference-values). Skipped,
 * with a message, when the folder is missing. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dpformer/data.h"
#include "testutil.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int load(dp_dataset *ds, const char *rel, dp_data_format fmt, double *seconds) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tu_data_dir(), rel);
    dp_error err;
    double t = now();
    int rc = dp_dataset_load(ds, path, fmt, &err);
    if (seconds) *seconds = now() - t;
    if (rc) fprintf(stderr, "%s\n", err.msg);
    CHECK(rc == 0);
    return rc;
}

static void amazon_games(void) {
    dp_dataset ds;
    double secs;
    if (load(&ds, "amazon-games/interactions.txt", DP_FMT_AUTO, &secs)) return;
    printf("amazon-games: loaded in %.3f s\n", secs);
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(secs < 1.0);
#endif
    /* README: 31,013 users, ~23,715 items, 287,107 interactions */
    CHECK(ds.n_users == 31013 && ds.n_items == 23715 && ds.n_interactions == 287107);
    /* the file's first lines are user 1: 6393, 13504, 14087 (ids are 1-based, users in order) */
    CHECK(ds.user_raw_ids[0] == 1 && ds.user_raw_ids[ds.n_users - 1] == 31013);
    CHECK(ds.items[0] == 1 && ds.items[1] == 2 && ds.item_raw_ids[1] == 6393 && ds.item_raw_ids[2] == 13504);

    /* reference-values: popularity test NDCG@10 0.0098, HR@10 0.0189 without excluding seen items.
     * Tolerance 0.0005 absolute: the value depends only on the split and the tie rule, which are
     * fixed, so anything beyond rounding means a different convention. */
    dp_rank_metrics m;
    dp_popularity_eval(&ds, DP_SPLIT_TEST, 0, &m);
    printf("amazon-games popularity test: NDCG@10 %.4f HR@10 %.4f NDCG@20 %.4f HR@20 %.4f MRR %.4f (%lld users)\n",
           m.ndcg10, m.hr10, m.ndcg20, m.hr20, m.mrr, (long long)m.n);
    CHECK(m.n == 30901);
    CHECK(fabs(m.ndcg10 - 0.0098) < 0.0005);
    CHECK(fabs(m.hr10 - 0.0189) < 0.0005);
    dp_rank_metrics mx;
    dp_popularity_eval(&ds, DP_SPLIT_TEST, 1, &mx);
    printf("amazon-games popularity test, seen excluded: NDCG@10 %.4f HR@10 %.4f\n", mx.ndcg10, mx.hr10);
    CHECK(mx.ndcg10 >= m.ndcg10 && mx.hr10 >= m.hr10); /* excluding can only move a target up */

    dp_data_stats st;
    dp_dataset_stats(&ds, &st);
    CHECK(st.gini > 0.5 && st.n_eval_users == 30901);
    CHECK_CLOSE(st.density, 287107.0 / (31013.0 * 23715.0), 1e-12);
    dp_dataset_free(&ds);
}

static void amazon_sequences(void) {
    dp_dataset ds;
    if (load(&ds, "amazon-beauty/sequences.txt", DP_FMT_AUTO, NULL) == 0) {
        CHECK(ds.n_users == 22363 && ds.n_items == 12101 && ds.n_interactions == 198502);
        /* its raw ids are already numbered by first appearance, so re-indexing is the identity */
        int identity = 1;
        for (int32_t i = 1; i <= ds.n_items; i++) identity &= ds.item_raw_ids[i] == i;
        CHECK(identity);
        dp_rank_metrics m;
        dp_popularity_eval(&ds, DP_SPLIT_TEST, 0, &m);
        printf("amazon-beauty popularity test: NDCG@10 %.4f HR@10 %.4f\n", m.ndcg10, m.hr10);
        CHECK(fabs(m.ndcg10 - 0.0055) < 0.0005); /* reference-values: 0.0055 / 0.0120 */
        CHECK(fabs(m.hr10 - 0.0120) < 0.0005);
        dp_dataset_free(&ds);
    }
    if (load(&ds, "amazon-toys/sequences.txt", DP_FMT_SEQUENCES, NULL) == 0) {
        CHECK(ds.n_users == 19412);
        dp_dataset_free(&ds);
    }
}

typedef struct {
    int64_t user, item, ts, line;
} row;

static int row_cmp(const void *a, const void *b) {
    const row *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* MovieLens 100K, compared with an independent fscanf reader sorting by (user, time, line). */
static void movielens(void) {
    dp_dataset ds;
    if (load(&ds, "ml-100k/u.data", DP_FMT_AUTO, NULL)) return;
    CHECK(ds.n_users == 943 && ds.n_items == 1682 && ds.n_interactions == 100000);
    char path[1024];
    snprintf(path, sizeof path, "%s/ml-100k/u.data", tu_data_dir());
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) return;
    row *r = malloc(100000 * sizeof *r);
    long long u, i, rating, ts;
    int64_t n = 0;
    while (n < 100000 && fscanf(f, "%lld %lld %lld %lld", &u, &i, &rating, &ts) == 4) {
        r[n] = (row){u, i, ts, n};
        n++;
    }
    fclose(f);
    CHECK(n == 100000);
    qsort(r, (size_t)n, sizeof *r, row_cmp);
    int same = n == ds.n_interactions;
    for (int64_t k = 0; same && k < n; k++) same = ds.item_raw_ids[ds.items[k]] == r[k].item;
    for (int32_t v = 0; same && v < ds.n_users; v++) same = ds.user_raw_ids[v] == r[ds.offsets[v]].user;
    CHECK(same);
    free(r);
    dp_dataset_free(&ds);
}

int main(void) {
    struct stat sb;
    if (stat(tu_data_dir(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        printf("test_data_real: dataset folder %s not found; skipped\n", tu_data_dir());
        return tu_finish("test_data_real (skipped)");
    }
    amazon_games();
    amazon_sequences();
    movielens();
    return tu_finish("test_data_real");
}
