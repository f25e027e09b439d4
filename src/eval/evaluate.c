/* Full-ranking evaluation of a model: for each user with a target in the split, score all items at
 * the last position of the history window and rank the target (rules in dpformer/data.h). The users
 * are scored in chunks of similar history length, each on a window as long as its longest history
 * (the last T positions of the left-padded window: the same scores without the padding, train/trim.h);
 * the metrics add the ranks up in user order. */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dpformer/train.h"
#include "train/trim.h"

static int cmp_key(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void dp_evaluate(dp_model *m, const dp_dataset *ds, dp_split split, int exclude_seen, int64_t max_users,
                 dp_rank_metrics *out) {
    memset(out, 0, sizeof *out);
    const dp_model_config *c = dp_model_config_of(m);
    const int L = c->max_len, Bmax = dp_model_max_batch(m);
    const int32_t V = c->n_items;
    /* the users evaluated (the first max_users with a target), then their order by window length */
    int64_t n = 0;
    int32_t *users = dp_malloc(sizeof(int32_t) * (size_t)(ds->n_users > 0 ? ds->n_users : 1));
    for (int32_t u = 0; u < ds->n_users && (max_users <= 0 || n < max_users); u++) {
        int64_t h = dp_split_history(ds, u, split);
        if (h < 0 || split == DP_SPLIT_TRAIN) continue;
        users[n++] = u;
    }
    int64_t *keys = dp_malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    int32_t *len = dp_malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    int32_t *size = dp_malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    for (int64_t k = 0; k < n; k++) {
        int64_t h = dp_split_history(ds, users[k], split);
        keys[k] = ((int64_t)DP_MAX((int64_t)1, DP_MIN(h, (int64_t)L)) << 32) | k;
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_key);
    for (int64_t k = 0; k < n; k++) len[k] = (int32_t)(keys[k] >> 32);
    const int64_t n_chunks = dp_trim_plan(len, n, Bmax, size);

    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)Bmax * L);
    int64_t *who = dp_malloc(sizeof(int64_t) * (size_t)Bmax);
    real *scores = dp_alloc_aligned(sizeof(real) * (size_t)Bmax * (V + 1));
    int64_t *ranks = dp_malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    for (int64_t ci = 0, k0 = 0; ci < n_chunks; k0 += size[ci++]) {
        const int B = size[ci], T = len[k0 + B - 1];
        for (int b = 0; b < B; b++) {
            who[b] = keys[k0 + b] & 0xffffffff;
            const int32_t u = users[who[b]];
            dp_make_eval_window(ids + (size_t)b * T, ds->items + ds->offsets[u], dp_split_history(ds, u, split), T);
        }
        dp_model_set_window_last(m, T);
        dp_model_score_last(m, ids, B, scores);
        dp_model_set_window_last(m, 0);
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++) {
            int32_t uu = users[who[b]];
            int64_t h = dp_split_history(ds, uu, split);
            const int32_t *seq = ds->items + ds->offsets[uu];
            ranks[who[b]] = dp_rank_of_target(scores + (size_t)b * (V + 1), V, seq[h], exclude_seen ? seq : NULL,
                                              exclude_seen ? h : 0);
        }
    }
    for (int64_t k = 0; k < n; k++) dp_metrics_add(out, ranks[k]);
    dp_metrics_finish(out);
    free(users);
    free(keys);
    free(len);
    free(size);
    free(ids);
    free(who);
    free(scores);
    free(ranks);
}
