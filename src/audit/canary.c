/* Canaries of the recommendation audit (dpformer/audit.h): drawing them and their inclusion bits,
 * the audit's training data (the base users plus the included canaries), and the membership score of
 * every canary under the trained model. */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dpformer/audit.h"
#include "dpformer/train.h"

int dp_audit_canaries_make(dp_audit_canaries *c, int32_t m, int len, int32_t n_items, dp_rng *rng, dp_error *err) {
    memset(c, 0, sizeof *c);
    if (m < 2) return dp_fail(err, "canaries: need at least 2 (got %d)", (int)m);
    if (len < 3) return dp_fail(err, "canary length: need at least 3 items (got %d)", len);
    if (n_items < 2) return dp_fail(err, "canaries: the catalogue has %d item(s)", (int)n_items);
    c->m = m;
    c->len = len;
    c->items = dp_malloc(sizeof(int32_t) * (size_t)m * (size_t)len);
    c->included = dp_malloc((size_t)m);
    for (size_t i = 0; i < (size_t)m * (size_t)len; i++) c->items[i] = 1 + (int32_t)dp_rng_below(rng, (uint64_t)n_items);
    for (int32_t i = 0; i < m; i++) c->included[i] = (uint8_t)(dp_rng_u64(rng) & 1);
    return 0;
}

void dp_audit_canaries_free(dp_audit_canaries *c) {
    if (!c) return;
    free(c->items);
    free(c->included);
    memset(c, 0, sizeof *c);
}

int dp_audit_dataset(const dp_dataset *base, const dp_audit_canaries *c, dp_dataset *out, dp_error *err) {
    memset(out, 0, sizeof *out);
    int64_t n_in = 0, max_raw = 0;
    for (int32_t i = 0; i < c->m; i++) n_in += c->included[i];
    for (int32_t u = 0; u < base->n_users; u++)
        if (base->user_raw_ids[u] > max_raw) max_raw = base->user_raw_ids[u];
    if ((int64_t)base->n_users + n_in > INT32_MAX)
        return dp_fail(err, "canaries: %lld users and %lld canaries are too many", (long long)base->n_users,
                       (long long)n_in);
    const int64_t ni = base->n_interactions + n_in * c->len;
    out->n_users = base->n_users + (int32_t)n_in;
    out->n_items = base->n_items;
    out->n_interactions = ni;
    out->offsets = dp_malloc(sizeof(int64_t) * ((size_t)out->n_users + 1));
    out->items = dp_malloc(sizeof(int32_t) * (size_t)(ni > 0 ? ni : 1));
    out->user_raw_ids = dp_malloc(sizeof(int64_t) * (size_t)(out->n_users > 0 ? out->n_users : 1));
    out->item_raw_ids = dp_malloc(sizeof(int64_t) * ((size_t)base->n_items + 1));
    memcpy(out->offsets, base->offsets, sizeof(int64_t) * ((size_t)base->n_users + 1));
    memcpy(out->items, base->items, sizeof(int32_t) * (size_t)base->n_interactions);
    memcpy(out->user_raw_ids, base->user_raw_ids, sizeof(int64_t) * (size_t)base->n_users);
    memcpy(out->item_raw_ids, base->item_raw_ids, sizeof(int64_t) * ((size_t)base->n_items + 1));
    int32_t u = base->n_users;
    int64_t pos = base->n_interactions;
    for (int32_t i = 0; i < c->m; i++) {
        if (!c->included[i]) continue;
        memcpy(out->items + pos, c->items + (size_t)i * c->len, sizeof(int32_t) * (size_t)c->len);
        pos += c->len;
        out->user_raw_ids[u] = max_raw + 1 + i;
        out->offsets[++u] = pos;
    }
    return 0;
}

/* Losses of canaries [i0, i0 + n) over their training windows under m. */
static void window_losses(dp_model *m, const dp_audit_canaries *c, int32_t i0, int n, int32_t *ids, int32_t *tg,
                          double *loss) {
    const int L = dp_model_config_of(m)->max_len;
    for (int b = 0; b < n; b++) {
        const int32_t *seq = c->items + (size_t)(i0 + b) * c->len;
        /* the training prefix: everything but the validation and test items (docs/data.md) */
        dp_make_train_window(ids + (size_t)b * L, tg + (size_t)b * L, seq, c->len - 2, L);
    }
    dp_batch bt = {n, L, ids, tg, NULL};
    dp_model_forward(m, &bt, 0, 0, loss);
}

void dp_audit_canary_scores(dp_model *trained, dp_model *reference, const dp_audit_canaries *c, double *scores) {
    const int L = dp_model_config_of(trained)->max_len;
    int B = dp_model_max_batch(trained);
    if (dp_model_max_batch(reference) < B) B = dp_model_max_batch(reference);
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)B * L), *tg = dp_malloc(sizeof(int32_t) * (size_t)B * L);
    double *lt = dp_malloc(sizeof(double) * (size_t)B), *lr = dp_malloc(sizeof(double) * (size_t)B);
    for (int32_t i0 = 0; i0 < c->m; i0 += B) {
        int n = c->m - i0 < B ? (int)(c->m - i0) : B;
        window_losses(trained, c, i0, n, ids, tg, lt);
        window_losses(reference, c, i0, n, ids, tg, lr);
        for (int b = 0; b < n; b++) scores[i0 + b] = lr[b] - lt[b];
    }
    free(ids);
    free(tg);
    free(lt);
    free(lr);
}
