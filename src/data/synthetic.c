/* Synthetic long-tailed interaction sequences for the demo and the tests.
 * Item popularity follows a Zipf law; on top of it every item has 2 or 3 preferred successors, and
 * with probability p_transition the next item is the successor of the current item selected by the
 * previous item (a second-order rule a sequence model can learn and a popularity ranking cannot);
 * otherwise it is a fresh Zipf draw. Successors are drawn from a flattened Zipf law (exponent s/2) so
 * that the transitions keep the catalogue long-tailed without making the targets mostly popular
 * items. Everything is a function of the seed (the library's splitmix64 stream; no rand()). */
#include <math.h>

#include "core/common.h"
#include "dpformer/data.h"


static double unif(uint64_t *s) { return (double)(dp_splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }

/* Uniform integer in [0, n) (n small, so the modulo bias is below 2^-32). */
static uint64_t below(uint64_t *s, uint64_t n) { return dp_splitmix64(s) % n; }

/* cdf[k] = P(rank <= k+1) for a Zipf law with exponent s over V ranks. */
static double *zipf_cdf(int32_t V, double s) {
    double *cdf = dp_malloc((size_t)V * sizeof *cdf), acc = 0;
    for (int32_t k = 0; k < V; k++) cdf[k] = acc += pow((double)k + 1.0, -s);
    for (int32_t k = 0; k < V; k++) cdf[k] /= acc;
    cdf[V - 1] = 1.0;
    return cdf;
}

/* A rank in [0, V) drawn from cdf by binary search. */
static int32_t draw(const double *cdf, int32_t V, uint64_t *rng) {
    double x = unif(rng);
    int32_t lo = 0, hi = V - 1;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] > x) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

void dp_synth_config_default(dp_synth_config *cfg) {
    /* The values `dpformer demo` uses with its default flags. Measured with them: Gini 0.79,
     * popularity test NDCG@10 0.15, a first-order transition-count model 0.68 (test_data_split.c). */
    cfg->n_users = 6000;
    cfg->n_items = 1000;
    cfg->min_len = 5;
    cfg->max_len = 40;
    cfg->zipf_s = 1.1;
    cfg->p_transition = 0.7;
    cfg->seed = 1;
}

#define MAX_SUCC 3

void dp_dataset_synthetic(dp_dataset *ds, const dp_synth_config *cfg) {
    memset(ds, 0, sizeof *ds);
    int32_t V = cfg->n_items > 2 ? cfg->n_items : 2, nu = cfg->n_users > 0 ? cfg->n_users : 0;
    int min_len = cfg->min_len > 1 ? cfg->min_len : 1;
    int max_len = cfg->max_len > min_len ? cfg->max_len : min_len;
    uint64_t rng = cfg->seed;

    /* item_of[r]: the item with popularity rank r (a seeded permutation, so ids carry no order) */
    int32_t *item_of = dp_malloc((size_t)V * sizeof *item_of);
    for (int32_t r = 0; r < V; r++) item_of[r] = r + 1;
    for (int32_t r = V - 1; r > 0; r--) {
        int32_t j = (int32_t)below(&rng, (uint64_t)r + 1), t = item_of[r];
        item_of[r] = item_of[j];
        item_of[j] = t;
    }
    double *cdf = zipf_cdf(V, cfg->zipf_s);
    double *flat = zipf_cdf(V, 0.5 * cfg->zipf_s);

    /* succ[i][0..n_succ[i]): preferred successors of item i, never i itself */
    int32_t(*succ)[MAX_SUCC] = dp_malloc(((size_t)V + 1) * sizeof *succ);
    uint8_t *n_succ = dp_malloc((size_t)V + 1);
    for (int32_t i = 1; i <= V; i++) {
        n_succ[i] = (uint8_t)(2 + below(&rng, 2));
        for (int j = 0; j < n_succ[i]; j++) {
            int32_t s;
            do s = item_of[draw(flat, V, &rng)];
            while (s == i);
            succ[i][j] = s;
        }
    }

    ds->n_users = nu;
    ds->n_items = V;
    ds->offsets = dp_malloc(((size_t)nu + 1) * sizeof *ds->offsets);
    ds->user_raw_ids = dp_malloc((size_t)(nu ? nu : 1) * sizeof *ds->user_raw_ids);
    ds->item_raw_ids = dp_malloc(((size_t)V + 1) * sizeof *ds->item_raw_ids);
    for (int32_t i = 0; i <= V; i++) ds->item_raw_ids[i] = i;
    int64_t *lens = dp_malloc((size_t)(nu ? nu : 1) * sizeof *lens), total = 0;
    ds->offsets[0] = 0;
    for (int32_t u = 0; u < nu; u++) {
        lens[u] = min_len + (int64_t)below(&rng, (uint64_t)(max_len - min_len + 1));
        total += lens[u];
        ds->offsets[u + 1] = total;
        ds->user_raw_ids[u] = u + 1;
    }
    ds->n_interactions = total;
    ds->items = dp_malloc((size_t)(total ? total : 1) * sizeof *ds->items);
    for (int32_t u = 0; u < nu; u++) {
        int32_t *seq = ds->items + ds->offsets[u];
        int32_t prev = 0, cur = item_of[draw(cdf, V, &rng)];
        seq[0] = cur;
        for (int64_t t = 1; t < lens[u]; t++) {
            int32_t next;
            if (unif(&rng) < cfg->p_transition) {
                /* the previous item picks which successor: a fixed hash, learnable from two items */
                uint32_t h = (uint32_t)prev * 0x9E3779B1u;
                next = succ[cur][(h >> 16) % n_succ[cur]];
            } else {
                next = item_of[draw(cdf, V, &rng)];
            }
            seq[t] = next;
            prev = cur;
            cur = next;
        }
    }
    free(lens);
    free(item_of);
    free(cdf);
    free(flat);
    free(succ);
    free(n_succ);
}
