/* Fuzz target for the dataset loaders (src/data/load.c) through dp_dataset_parse. The first byte of
 * the input picks the format and the file name (byte % 8, see CASES: format detection looks at both),
 * the rest is the file. A dataset that is accepted must satisfy everything dp_dataset promises, and its
 * statistics must be computable; a refused file must come with a message naming it. */
#include "dpformer/data.h"

#include "fuzz.h"

static const struct {
    dp_data_format fmt;
    const char *name;
} CASES[8] = {
    {DP_FMT_AUTO, "data.txt"},          /* '0': detection by field counts */
    {DP_FMT_AUTO, "u.data"},            /* '1': detection by name */
    {DP_FMT_AUTO, "sequences.txt"},     /* '2' */
    {DP_FMT_AUTO, "interactions.txt"},  /* '3' */
    {DP_FMT_INTERACTIONS, "data.txt"},  /* '4' */
    {DP_FMT_SEQUENCES, "data.txt"},     /* '5' */
    {DP_FMT_ML_DAT, "ratings.dat"},     /* '6' */
    {DP_FMT_UDATA, "u.data"},           /* '7' */
};

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void check_dataset(const dp_dataset *ds, size_t size) {
    FUZZ_CHECK(ds->n_users >= 1 && ds->n_items >= 1 && ds->n_interactions >= 1);
    FUZZ_CHECK((size_t)ds->n_interactions <= size); /* every interaction takes at least two bytes */
    FUZZ_CHECK(ds->offsets[0] == 0 && ds->offsets[ds->n_users] == ds->n_interactions);
    for (int32_t u = 0; u < ds->n_users; u++) {
        FUZZ_CHECK(dp_user_len(ds, u) >= 1);
        FUZZ_CHECK(ds->user_raw_ids[u] >= 1 && (u == 0 || ds->user_raw_ids[u] > ds->user_raw_ids[u - 1]));
        int64_t n = dp_user_len(ds, u);
        FUZZ_CHECK(dp_split_history(ds, u, DP_SPLIT_TRAIN) == (n < 3 ? n : n - 2));
        FUZZ_CHECK(dp_split_history(ds, u, DP_SPLIT_TEST) == (n < 3 ? -1 : n - 1));
    }
    /* Items are numbered 1..V in order of first appearance. */
    int32_t seen = 0;
    for (int64_t k = 0; k < ds->n_interactions; k++) {
        int32_t it = ds->items[k];
        FUZZ_CHECK(it >= 1 && it <= seen + 1);
        if (it == seen + 1) seen++;
    }
    FUZZ_CHECK(seen == ds->n_items);
    /* Raw item ids are valid ids, all different. */
    int64_t *raw = malloc((size_t)ds->n_items * sizeof *raw);
    if (!raw) abort();
    memcpy(raw, ds->item_raw_ids + 1, (size_t)ds->n_items * sizeof *raw);
    qsort(raw, (size_t)ds->n_items, sizeof *raw, cmp_i64);
    for (int32_t i = 0; i < ds->n_items; i++) FUZZ_CHECK(raw[i] >= 1 && raw[i] <= INT32_MAX && (i == 0 || raw[i] > raw[i - 1]));
    free(raw);

    dp_data_stats st;
    dp_dataset_stats(ds, &st);
    FUZZ_CHECK(st.n_users == ds->n_users && st.n_items == ds->n_items);
    FUZZ_CHECK(st.len_min >= 1 && st.len_min <= st.len_p50 && st.len_p50 <= st.len_max);
    FUZZ_CHECK(st.len_max <= ds->n_interactions);
    FUZZ_CHECK(st.gini >= 0 && st.gini < 1 && st.top1pct_share > 0 && st.top1pct_share <= 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *name = CASES[data[0] % 8].name;
    dp_data_format fmt = CASES[data[0] % 8].fmt, used = DP_FMT_AUTO;
    dp_dataset ds;
    dp_error err = {{0}};
    if (dp_dataset_parse(&ds, name, (const char *)data + 1, size - 1, fmt, &used, &err) == 0) {
        FUZZ_CHECK(used != DP_FMT_AUTO && (fmt == DP_FMT_AUTO || used == fmt));
        check_dataset(&ds, size - 1);
        dp_dataset_free(&ds);
    } else {
        FUZZ_CHECK_ERROR(err.msg, name);
        FUZZ_CHECK(ds.offsets == NULL && ds.items == NULL); /* nothing half-built is left behind */
    }
    return 0;
}
