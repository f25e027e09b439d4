/* Private helpers of src/data: a small open-addressing hash map from positive 64-bit ids to 64-bit
 * values, used to re-index raw ids and to find users repeated in a sequences file. */
#ifndef DP_DATA_INTERNAL_H
#define DP_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t *keys; /* [cap]; 0 marks an empty slot, so keys must be > 0 */
    int64_t *vals; /* [cap] */
    size_t cap, n; /* cap is a power of two, kept at least twice n */
} dp_idmap;

/* Pointer to the value of key, or NULL if absent. An empty (zero-initialised) map is valid. */
int64_t *dp_idmap_get(const dp_idmap *m, int64_t key);
/* Insert or overwrite; returns a pointer to the stored value (valid until the next put). */
int64_t *dp_idmap_put(dp_idmap *m, int64_t key, int64_t val);
void dp_idmap_free(dp_idmap *m);

#endif
