/* Full-ranking evaluation of a model: for each user with a target in the split, score all items at
 * the last position of the history window and rank the target (rules in dpformer/data.h). */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dpformer/train.h"

void dp_evaluate(dp_model *m, const dp_dataset *ds, dp_split split, int exclude_seen, int64_t max_users,
                 dp_rank_metrics *out) {
    memset(out, 0, sizeof *out);
    const dp_model_config *c = dp_model_config_of(m);
    const int L = c->max_len, Bmax = dp_model_max_batch(m);
    const int32_t V = c->n_items;
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)Bmax * L);
    int32_t *users = dp_malloc(sizeof(int32_t) * (size_t)Bmax);
    real *scores = dp_alloc_aligned(sizeof(real) * (size_t)Bmax * (V + 1));
    int64_t *ranks = dp_malloc(sizeof(int64_t) * (size_t)Bmax);
    int64_t done = 0;
    int32_t u = 0;
    while (u < ds->n_users && (max_users <= 0 || done < max_users)) {
        int B = 0;
        for (; u < ds->n_users && B < Bmax && (max_users <= 0 || done + B < max_users); u++) {
            int64_t h = dp_split_history(ds, u, split);
            if (h < 0 || split == DP_SPLIT_TRAIN) continue;
            dp_make_eval_window(ids + (size_t)B * L, ds->items + ds->offsets[u], h, L);
            users[B++] = u;
        }
        if (B == 0) break;
        dp_model_score_last(m, ids, B, scores);
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++) {
            int32_t uu = users[b];
            int64_t h = dp_split_history(ds, uu, split);
            const int32_t *seq = ds->items + ds->offsets[uu];
            ranks[b] = dp_rank_of_target(scores + (size_t)b * (V + 1), V, seq[h], exclude_seen ? seq : NULL,
                                         exclude_seen ? h : 0);
        }
        for (int b = 0; b < B; b++) dp_metrics_add(out, ranks[b]);
        done += B;
    }
    dp_metrics_finish(out);
    free(ids);
    free(users);
    free(scores);
    free(ranks);
}
