/* Full-ranking metrics (rank of the target among all items, NDCG/HR@10/@20, MRR) and the popularity
 * baseline, following methods.md §6 and docs/data.md. Model-based evaluation lives in evaluate.c;
 * this file only turns scores into ranks and ranks into averages. */
#include <math.h>

#include "core/common.h"
#include "dpformer/data.h"

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Ties count in the target's favour (only strictly higher scores push it down), as in the protocol.
 * A NaN target score gets the worst rank, so a broken model can never look good; other NaN scores
 * compare false and are not counted. Returns -1 if target is not in 1..n_items. */
int64_t dp_rank_of_target(const dp_real *scores, int32_t n_items, int32_t target, const int32_t *exclude,
                          int64_t n_exclude) {
    if (target < 1 || target > n_items) return -1;
    const dp_real st = scores[target];
    int64_t n_candidates = n_items;
    int64_t higher = 0;
    for (int32_t i = 1; i <= n_items; i++) higher += scores[i] > st;
    if (!exclude || n_exclude <= 0) return isnan(st) ? n_candidates : 1 + higher;

    /* Excluded items that scored higher must be subtracted once each, even if the history repeats
     * them: collect them, sort, and count distinct ids. The same dedup gives the candidate count. */
    int32_t small[256];
    int32_t *ids = n_exclude <= 256 ? small : dp_malloc((size_t)n_exclude * sizeof *ids);
    int64_t m = 0;
    for (int64_t k = 0; k < n_exclude; k++) {
        int32_t e = exclude[k];
        if (e >= 1 && e <= n_items && e != target) ids[m++] = e;
    }
    qsort(ids, (size_t)m, sizeof *ids, cmp_i32);
    for (int64_t k = 0; k < m; k++) {
        if (k > 0 && ids[k] == ids[k - 1]) continue;
        n_candidates--;
        higher -= scores[ids[k]] > st;
    }
    if (ids != small) free(ids);
    return isnan(st) ? n_candidates : 1 + higher;
}

/* Ranks below 1 (an invalid target) count as a miss: the user is still in the average. */
void dp_metrics_add(dp_rank_metrics *m, int64_t rank) {
    m->n++;
    if (rank < 1) return;
    double dcg = 1.0 / log2((double)rank + 1.0);
    if (rank <= 10) {
        m->ndcg10 += dcg;
        m->hr10 += 1.0;
    }
    if (rank <= 20) {
        m->ndcg20 += dcg;
        m->hr20 += 1.0;
    }
    m->mrr += 1.0 / (double)rank;
}

void dp_metrics_finish(dp_rank_metrics *m) {
    if (m->n == 0) return;
    double n = (double)m->n;
    m->ndcg10 /= n;
    m->hr10 /= n;
    m->ndcg20 /= n;
    m->hr20 /= n;
    m->mrr /= n;
}

static int cmp_i64_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

/* Every user sees the same scores, so instead of scanning all V items per user the number of items
 * with a strictly higher count is read from the counts sorted in decreasing order (binary search);
 * excluded items are then subtracted once each (mark[] dedups repeats in a history). The result is
 * identical to dp_rank_of_target on the count vector (tests/test_metrics.c checks this). */
void dp_popularity_eval(const dp_dataset *ds, dp_split split, int exclude_seen, dp_rank_metrics *out) {
    memset(out, 0, sizeof *out);
    int32_t V = ds->n_items;
    if (split == DP_SPLIT_TRAIN || V == 0) return;
    int64_t *count = dp_calloc((size_t)V + 1, sizeof *count);
    for (int32_t u = 0; u < ds->n_users; u++) {
        int64_t h = dp_split_history(ds, u, DP_SPLIT_TRAIN);
        const int32_t *seq = ds->items + ds->offsets[u];
        for (int64_t k = 0; k < h; k++) count[seq[k]]++;
    }
    int64_t *sorted = dp_malloc((size_t)V * sizeof *sorted); /* counts of items 1..V, decreasing */
    memcpy(sorted, count + 1, (size_t)V * sizeof *sorted);
    qsort(sorted, (size_t)V, sizeof *sorted, cmp_i64_desc);
    int32_t *mark = dp_malloc(((size_t)V + 1) * sizeof *mark);
    for (int32_t i = 0; i <= V; i++) mark[i] = -1;

    for (int32_t u = 0; u < ds->n_users; u++) {
        int64_t h = dp_split_history(ds, u, split);
        if (h < 0) continue;
        const int32_t *seq = ds->items + ds->offsets[u];
        int32_t target = seq[h];
        int64_t c = count[target];
        /* first index whose count is <= c = number of items with a strictly higher count */
        size_t lo = 0, hi = (size_t)V;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (sorted[mid] > c) lo = mid + 1;
            else hi = mid;
        }
        int64_t higher = (int64_t)lo;
        if (exclude_seen) {
            mark[target] = u; /* the target is never excluded */
            for (int64_t k = 0; k < h; k++) {
                int32_t e = seq[k];
                if (mark[e] == u) continue;
                mark[e] = u;
                higher -= count[e] > c;
            }
        }
        dp_metrics_add(out, 1 + higher);
    }
    dp_metrics_finish(out);
    free(count);
    free(sorted);
    free(mark);
}
