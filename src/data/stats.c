/* Dataset statistics for `dpformer data stats`: sizes, sequence-length quantiles and how long-tailed
 * the item popularity is (Gini coefficient, rare-item share, top-1% share). Definitions in
 * docs/data.md. */
#include <math.h>

#include "core/common.h"
#include "dpformer/data.h"

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank quantile of sorted v[0..n): the smallest value with at least a fraction p at or below. */
static int64_t quantile(const int64_t *v, int64_t n, double p) {
    int64_t k = (int64_t)ceil(p * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

void dp_dataset_stats(const dp_dataset *ds, dp_data_stats *st) {
    memset(st, 0, sizeof *st);
    int32_t nu = ds->n_users, V = ds->n_items;
    st->n_users = nu;
    st->n_items = V;
    st->n_interactions = ds->n_interactions;
    if (nu == 0 || V == 0) return;
    st->density = (double)ds->n_interactions / ((double)nu * (double)V);

    int64_t *len = dp_malloc((size_t)nu * sizeof *len);
    for (int32_t u = 0; u < nu; u++) {
        len[u] = dp_user_len(ds, u);
        if (len[u] >= 3) st->n_eval_users++;
    }
    qsort(len, (size_t)nu, sizeof *len, cmp_i64);
    st->len_mean = (double)ds->n_interactions / nu;
    st->len_min = len[0];
    st->len_p25 = quantile(len, nu, 0.25);
    st->len_p50 = quantile(len, nu, 0.50);
    st->len_p75 = quantile(len, nu, 0.75);
    st->len_p90 = quantile(len, nu, 0.90);
    st->len_p99 = quantile(len, nu, 0.99);
    st->len_max = len[nu - 1];
    free(len);

    /* count[i]: interactions on item i; users[i]: distinct users (last_user avoids double counting a
     * user who repeats an item). */
    int64_t *count = dp_calloc((size_t)V + 1, sizeof *count);
    int64_t *users = dp_calloc((size_t)V + 1, sizeof *users);
    int32_t *last_user = dp_malloc(((size_t)V + 1) * sizeof *last_user);
    for (int32_t i = 0; i <= V; i++) last_user[i] = -1;
    for (int32_t u = 0; u < nu; u++)
        for (int64_t k = ds->offsets[u]; k < ds->offsets[u + 1]; k++) {
            int32_t it = ds->items[k];
            count[it]++;
            if (last_user[it] != u) {
                last_user[it] = u;
                users[it]++;
            }
        }
    int64_t rare = 0;
    for (int32_t i = 1; i <= V; i++) rare += users[i] < 5;
    st->share_items_lt5_users = (double)rare / V;

    /* Gini of the V counts sorted ascending: sum_i (2i - V - 1) x_(i) / (V sum x), i = 1..V. */
    qsort(count + 1, (size_t)V, sizeof *count, cmp_i64);
    double total = (double)ds->n_interactions, acc = 0;
    for (int32_t i = 1; i <= V; i++) acc += (2.0 * i - V - 1.0) * (double)count[i];
    st->gini = total > 0 ? acc / ((double)V * total) : 0;
    int32_t top = (int32_t)ceil(0.01 * V);
    if (top < 1) top = 1;
    double top_sum = 0;
    for (int32_t i = V; i > V - top; i--) top_sum += (double)count[i];
    st->top1pct_share = total > 0 ? top_sum / total : 0;
    free(count);
    free(users);
    free(last_user);
}

void dp_data_stats_print(FILE *f, const dp_data_stats *st, int json) {
    if (json) {
        fprintf(f,
                "{\"users\": %d, \"items\": %d, \"interactions\": %lld, \"density\": %.6g, "
                "\"length\": {\"mean\": %.4f, \"min\": %lld, \"p25\": %lld, \"p50\": %lld, \"p75\": %lld, "
                "\"p90\": %lld, \"p99\": %lld, \"max\": %lld}, "
                "\"gini\": %.4f, \"share_items_lt5_users\": %.4f, \"top1pct_share\": %.4f, "
                "\"eval_users\": %d}\n",
                st->n_users, st->n_items, (long long)st->n_interactions, st->density, st->len_mean,
                (long long)st->len_min, (long long)st->len_p25, (long long)st->len_p50, (long long)st->len_p75,
                (long long)st->len_p90, (long long)st->len_p99, (long long)st->len_max, st->gini,
                st->share_items_lt5_users, st->top1pct_share, st->n_eval_users);
        return;
    }
    fprintf(f, "  users                        %d\n", st->n_users);
    fprintf(f, "  items                        %d\n", st->n_items);
    fprintf(f, "  interactions                 %lld\n", (long long)st->n_interactions);
    fprintf(f, "  density                      %.4f%%\n", 100.0 * st->density);
    fprintf(f, "  sequence length              mean %.2f  min %lld  p25 %lld  median %lld  p75 %lld  p90 %lld  p99 %lld  max %lld\n",
            st->len_mean, (long long)st->len_min, (long long)st->len_p25, (long long)st->len_p50,
            (long long)st->len_p75, (long long)st->len_p90, (long long)st->len_p99, (long long)st->len_max);
    fprintf(f, "  Gini of item counts          %.4f\n", st->gini);
    fprintf(f, "  items seen by < 5 users      %.2f%%\n", 100.0 * st->share_items_lt5_users);
    fprintf(f, "  interactions on top 1%% items %.2f%%\n", 100.0 * st->top1pct_share);
    fprintf(f, "  users with valid/test target %d (%.2f%%)\n", st->n_eval_users,
            st->n_users ? 100.0 * st->n_eval_users / st->n_users : 0.0);
}
