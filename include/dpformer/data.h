/* dpformer public API: datasets for sequential recommendation.
 * A dataset is a list of users, each with a chronological sequence of items re-indexed to 1..V
 * (0 is the padding id). Loaders read the formats below; the leave-one-out split and full-ranking
 * metrics follow the protocol in docs/data.md. */
#ifndef DPFORMER_DATA_H
#define DPFORMER_DATA_H

#include <stdio.h>
#include "dpformer/common.h"

typedef enum {
    DP_FMT_AUTO = 0,     /* guess from the file name and first line */
    DP_FMT_INTERACTIONS, /* `user item [timestamp]` per line; without timestamps, file order per user */
    DP_FMT_SEQUENCES,    /* `user item item ...` per line, chronological */
    DP_FMT_ML_DAT,       /* MovieLens ratings.dat: `user::item::rating::timestamp` */
    DP_FMT_UDATA,        /* MovieLens u.data: `user<TAB>item<TAB>rating<TAB>timestamp` */
} dp_data_format;

typedef struct {
    int32_t n_users;
    int32_t n_items;        /* V: items are 1..V */
    int64_t n_interactions;
    int64_t *offsets;       /* [n_users + 1]: user u's items are items[offsets[u] .. offsets[u+1]) */
    int32_t *items;         /* [n_interactions] re-indexed item ids in 1..V, chronological per user */
    int64_t *item_raw_ids;  /* [n_items + 1]: original id of each item (index 0 unused) */
    int64_t *user_raw_ids;  /* [n_users]: original id of each user */
} dp_dataset;

/* "auto", "interactions", "sequences", "ml-dat", "u.data" -> format. Returns 0 if known. */
int dp_data_format_parse(const char *name, dp_data_format *fmt);
const char *dp_data_format_name(dp_data_format fmt);
/* The format DP_FMT_AUTO resolves to for this file (rules in docs/data.md). Returns non-zero with a
 * message in err if the file cannot be read or has no data line. */
int dp_data_format_detect(const char *path, dp_data_format *fmt, dp_error *err);
/* Longest accepted line in bytes; a longer line is an error, never split. */
#define DP_DATA_MAX_LINE (1 << 20)

/* Load a dataset. Errors (missing file, empty file, non-numeric field, id out of range, overlong
 * line, ...) return non-zero with "path:line: field: problem" in err. CRLF line ends are accepted. */
int dp_dataset_load(dp_dataset *ds, const char *path, dp_data_format fmt, dp_error *err);
/* As dp_dataset_load, and stores the format actually used in *used (the detected one for
 * DP_FMT_AUTO). Reads the file once, so it also works on pipes. */
int dp_dataset_load_detected(dp_dataset *ds, const char *path, dp_data_format fmt, dp_data_format *used,
                             dp_error *err);
/* The same parser on the contents of a file already in memory (len bytes of buf, which need not end
 * in a NUL). `name` stands for the file: it starts every error message, and DP_FMT_AUTO uses it as
 * the file name in its rules. */
int dp_dataset_parse(dp_dataset *ds, const char *name, const char *buf, size_t len, dp_data_format fmt,
                     dp_data_format *used, dp_error *err);
void dp_dataset_free(dp_dataset *ds);
static inline int64_t dp_user_len(const dp_dataset *ds, int32_t u) { return ds->offsets[u + 1] - ds->offsets[u]; }

/* Synthetic long-tailed sequences for the demo and tests: Zipf item popularity, and next items that
 * follow learnable transitions (each item has a few preferred successors). Deterministic in seed. */
typedef struct {
    int32_t n_users, n_items;
    int min_len, max_len;   /* sequence length range */
    double zipf_s;          /* Zipf exponent of item popularity (e.g. 1.1) */
    double p_transition;    /* probability that the next item follows the structured transition */
    uint64_t seed;
} dp_synth_config;
void dp_dataset_synthetic(dp_dataset *ds, const dp_synth_config *cfg);
/* The parameters of the demo's dataset (`dpformer data stats --synthetic` prints its statistics). */
void dp_synth_config_default(dp_synth_config *cfg);

/* Leave-one-out split: for a user with n >= 3 items the last item is the test target, the
 * second-to-last the validation target, the first n-2 the training prefix; users with fewer than 3
 * items are training-only. */
typedef enum { DP_SPLIT_TRAIN = 0, DP_SPLIT_VALID, DP_SPLIT_TEST } dp_split;
/* Length of the history visible for `split`: TRAIN -> training prefix length (n-2, or n if n < 3);
 * VALID -> n-2; TEST -> n-1. Returns -1 if the user has no target in that split (n < 3). The target
 * of VALID/TEST is the item right after the history. */
int64_t dp_split_history(const dp_dataset *ds, int32_t u, dp_split split);

/* Dataset statistics (`dpformer data stats`). */
typedef struct {
    int32_t n_users, n_items;
    int64_t n_interactions;
    double density;               /* interactions / (users * items) */
    double len_mean;
    int64_t len_min, len_p25, len_p50, len_p75, len_p90, len_p99, len_max;
    double gini;                  /* Gini coefficient of item interaction counts (0 = uniform) */
    double share_items_lt5_users; /* fraction of items seen by fewer than 5 distinct users */
    double top1pct_share;         /* fraction of interactions on the 1% most popular items */
    int32_t n_eval_users;         /* users with >= 3 items (have validation and test targets) */
} dp_data_stats;
void dp_dataset_stats(const dp_dataset *ds, dp_data_stats *st);
void dp_data_stats_print(FILE *f, const dp_data_stats *st, int json);

/* Full-ranking metrics. rank = 1 + number of candidate items scoring strictly higher than the target.
 * scores is indexed by item id (index 0 ignored). If exclude is non-NULL the n_exclude item ids in it
 * are not candidates (the target itself is never excluded). */
int64_t dp_rank_of_target(const dp_real *scores, int32_t n_items, int32_t target, const int32_t *exclude,
                          int64_t n_exclude);
typedef struct {
    double ndcg10, hr10, ndcg20, hr20; /* averages after dp_metrics_finish; sums before */
    double mrr;
    int64_t n;                          /* number of ranked users */
} dp_rank_metrics;
void dp_metrics_add(dp_rank_metrics *m, int64_t rank);
void dp_metrics_finish(dp_rank_metrics *m);

/* Popularity baseline: every user gets the same scores, the item counts in the training prefixes. */
void dp_popularity_eval(const dp_dataset *ds, dp_split split, int exclude_seen, dp_rank_metrics *out);

#endif
