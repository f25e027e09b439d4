/* Turning user sequences into model inputs: left-padded training and evaluation windows. */
#include <string.h>

#include "dpformer/train.h"

int dp_make_train_window(int32_t *ids, int32_t *targets, const int32_t *seq, int64_t len, int L) {
    memset(ids, 0, sizeof(int32_t) * (size_t)L);
    memset(targets, 0, sizeof(int32_t) * (size_t)L);
    if (len < 2) return 0;
    int64_t take = len < (int64_t)L + 1 ? len : (int64_t)L + 1; /* the most recent L+1 items */
    const int32_t *s = seq + (len - take);
    int n = (int)(take - 1);
    for (int j = 0; j < n; j++) {
        ids[L - n + j] = s[j];
        targets[L - n + j] = s[j + 1];
    }
    return n;
}

void dp_make_eval_window(int32_t *ids, const int32_t *history, int64_t len, int L) {
    memset(ids, 0, sizeof(int32_t) * (size_t)L);
    int64_t n = len < L ? len : L;
    memcpy(ids + (L - n), history + (len - n), sizeof(int32_t) * (size_t)n);
}
