/* Dataset helpers that do not read files: the id hash map of data_internal.h and the leave-one-out
 * split (methods.md §6, docs/data.md). */
#include "core/common.h"
#include "data/data_internal.h"
#include "dpformer/data.h"

/* splitmix64 finaliser: raw ids are often consecutive, so they need mixing before masking. */
static size_t slot_of(int64_t key, size_t cap) { return (size_t)dp_mix64((uint64_t)key) & (cap - 1); }

int64_t *dp_idmap_get(const dp_idmap *m, int64_t key) {
    if (m->cap == 0) return NULL;
    for (size_t s = slot_of(key, m->cap);; s = (s + 1) & (m->cap - 1)) {
        if (m->keys[s] == key) return &m->vals[s];
        if (m->keys[s] == 0) return NULL;
    }
}

static void idmap_grow(dp_idmap *m) {
    size_t cap = m->cap ? 2 * m->cap : 1024;
    int64_t *keys = dp_calloc(cap, sizeof *keys), *vals = dp_malloc(cap * sizeof *vals);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == 0) continue;
        size_t s = slot_of(m->keys[i], cap);
        while (keys[s]) s = (s + 1) & (cap - 1);
        keys[s] = m->keys[i];
        vals[s] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
}

int64_t *dp_idmap_put(dp_idmap *m, int64_t key, int64_t val) {
    if (2 * (m->n + 1) > m->cap) idmap_grow(m);
    size_t s = slot_of(key, m->cap);
    while (m->keys[s] != 0 && m->keys[s] != key) s = (s + 1) & (m->cap - 1);
    if (m->keys[s] == 0) {
        m->keys[s] = key;
        m->n++;
    }
    m->vals[s] = val;
    return &m->vals[s];
}

void dp_idmap_free(dp_idmap *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

int64_t dp_split_history(const dp_dataset *ds, int32_t u, dp_split split) {
    int64_t n = dp_user_len(ds, u);
    switch (split) {
    case DP_SPLIT_TRAIN: return n < 3 ? n : n - 2;
    case DP_SPLIT_VALID: return n < 3 ? -1 : n - 2;
    case DP_SPLIT_TEST: return n < 3 ? -1 : n - 1;
    }
    return -1;
}
