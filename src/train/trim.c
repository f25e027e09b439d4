/* Chunk plans for trimmed windows (trim.h). */
#include "train/trim.h"

#include <math.h>

#include "core/common.h"

int dp_trim_chunk_cost = DP_TRIM_CHUNK_COST;

int dp_trim_used(const int32_t *ids, int L) {
    int f = 0;
    while (f < L - 1 && ids[f] == 0) f++;
    return L - f;
}

int64_t dp_trim_plan(const int32_t *len, int64_t n, int cap, int32_t *size) {
    if (n <= 0) return 0;
    if (cap < 1) cap = 1;
    /* best[i] = the least cost of sequences i..n-1; cut[i] = the size of the first chunk of that plan.
     * A chunk i..j-1 costs (j - i)·len[j-1] + the fixed cost (lengths are sorted). */
    double *best = dp_malloc(sizeof(double) * (size_t)(n + 1));
    int32_t *cut = dp_malloc(sizeof(int32_t) * (size_t)n);
    best[n] = 0;
    for (int64_t i = n - 1; i >= 0; i--) {
        double b = INFINITY;
        int32_t k = 1;
        const int64_t jmax = DP_MIN(n, i + cap);
        for (int64_t j = i + 1; j <= jmax; j++) {
            const double c = (double)(j - i) * len[j - 1] + dp_trim_chunk_cost + best[j];
            if (c < b) { /* strict: among equal costs the smaller first chunk */
                b = c;
                k = (int32_t)(j - i);
            }
        }
        best[i] = b;
        cut[i] = k;
    }
    int64_t nc = 0;
    for (int64_t i = 0; i < n; i += cut[i]) size[nc++] = cut[i];
    free(best);
    free(cut);
    return nc;
}

int dp_trim_next(dp_trim_plan_state *p, const int64_t *ids, int64_t n, int cap, int (*length)(void *st, int64_t id),
                 void *st, int *T) {
    if (!(ids == p->at && ids + n == p->end && p->next < p->n_chunks)) {
        if (n > p->cap_n) {
            p->size = dp_realloc(p->size, sizeof(int32_t) * (size_t)n);
            p->len = dp_realloc(p->len, sizeof(int32_t) * (size_t)n);
            p->cap_n = n;
        }
        for (int64_t k = 0; k < n; k++) p->len[k] = length(st, ids[k]);
        p->n_chunks = dp_trim_plan(p->len, n, cap, p->size);
        p->next = 0;
        p->end = ids + n;
    }
    const int B = p->size[p->next++];
    *T = 1;
    for (int b = 0; b < B; b++) *T = DP_MAX(*T, length(st, ids[b]));
    p->at = ids + B;
    return B;
}

void dp_trim_plan_free(dp_trim_plan_state *p) {
    free(p->size);
    free(p->len);
    memset(p, 0, sizeof *p);
}
