/* Canaries of the text-classification and language-model audits (dpformer/audit.h): random sentences
 * with random labels, and random token sequences; the audit's training data (the base examples plus
 * the included canaries); and each canary's membership score, the drop of its loss from an untrained
 * model with the same initialisation to the trained one. Nothing here trains: the audit trains
 * through dp_text_train / dp_lm_train, the code path of train-text and train-lm. */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dpformer/audit.h"

/* ---- text classification ---- */

/* One random word of 3..8 lower-case letters into out (no terminator); returns its length. */
static int random_word(dp_rng *rng, char *out) {
    const int n = 3 + (int)dp_rng_below(rng, 6);
    for (int k = 0; k < n; k++) out[k] = (char)('a' + dp_rng_below(rng, 26));
    return n;
}

int dp_audit_text_canaries_make(dp_audit_text_canaries *c, int32_t m, int len, const dp_tokenizer *tok,
                                int n_classes, dp_rng *rng, dp_error *err) {
    memset(c, 0, sizeof *c);
    if (m < 2) return dp_fail(err, "canaries: need at least 2 (got %d)", (int)m);
    if (len < 1) return dp_fail(err, "canary length: need at least 1 token (got %d)", len);
    if (n_classes < 2) return dp_fail(err, "canaries: need at least 2 classes (got %d)", n_classes);
    const int words = tok && tok->kind == DP_TOKENIZER_WORDS;
    /* words: len words of at most 8 letters and a space each; bytes: exactly len bytes */
    const size_t cap = words ? (size_t)len * 9 : (size_t)len + 9;
    c->m = m;
    c->len = len;
    c->n_classes = n_classes;
    c->offsets = dp_malloc(sizeof(int64_t) * ((size_t)m + 1));
    c->text = dp_malloc(cap * (size_t)m);
    c->labels = dp_malloc(sizeof(int32_t) * (size_t)m);
    c->included = dp_malloc((size_t)m);
    int64_t pos = 0;
    c->offsets[0] = 0;
    for (int32_t i = 0; i < m; i++) {
        char *s = c->text + pos;
        int64_t n = 0;
        for (int w = 0; words ? w < len : n < len; w++) {
            if (w > 0) s[n++] = ' ';
            n += random_word(rng, s + n);
        }
        if (!words) {
            n = len; /* cut to len bytes; a cut may leave a trailing space, which the loader would strip */
            if (s[n - 1] == ' ') s[n - 1] = (char)('a' + dp_rng_below(rng, 26));
        }
        pos += n;
        c->offsets[i + 1] = pos;
        c->labels[i] = (int32_t)dp_rng_below(rng, (uint64_t)n_classes);
    }
    for (int32_t i = 0; i < m; i++) c->included[i] = (uint8_t)(dp_rng_u64(rng) & 1);
    return 0;
}

void dp_audit_text_canaries_free(dp_audit_text_canaries *c) {
    if (!c) return;
    free(c->offsets);
    free(c->text);
    free(c->labels);
    free(c->included);
    memset(c, 0, sizeof *c);
}

int dp_audit_text_dataset(const dp_text_dataset *base, const dp_audit_text_canaries *c, dp_text_dataset *out,
                          dp_error *err) {
    memset(out, 0, sizeof *out);
    if (c->n_classes > base->n_classes)
        return dp_fail(err, "canaries: %d classes, the data %d", c->n_classes, base->n_classes);
    int64_t n_in = 0, bytes = base->offsets[base->n];
    for (int32_t i = 0; i < c->m; i++)
        if (c->included[i]) n_in++, bytes += c->offsets[i + 1] - c->offsets[i];
    const int64_t n = base->n + n_in;
    out->n = n;
    out->n_classes = base->n_classes;
    out->labels = dp_malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    out->offsets = dp_malloc(sizeof(int64_t) * ((size_t)n + 1));
    out->text = dp_malloc((size_t)(bytes > 0 ? bytes : 1));
    const char *col = base->text_column ? base->text_column : "sentence";
    out->text_column = dp_malloc(strlen(col) + 1);
    memcpy(out->text_column, col, strlen(col) + 1);
    memcpy(out->labels, base->labels, sizeof(int32_t) * (size_t)base->n);
    memcpy(out->offsets, base->offsets, sizeof(int64_t) * ((size_t)base->n + 1));
    memcpy(out->text, base->text, (size_t)base->offsets[base->n]);
    int64_t k = base->n, pos = base->offsets[base->n];
    for (int32_t i = 0; i < c->m; i++) {
        if (!c->included[i]) continue;
        const int64_t len = c->offsets[i + 1] - c->offsets[i];
        memcpy(out->text + pos, c->text + c->offsets[i], (size_t)len);
        pos += len;
        out->labels[k] = c->labels[i];
        out->offsets[++k] = pos;
    }
    return 0;
}

/* Cross-entropy of canaries [i0, i0 + n) with their labels under m. ids[n, L], lab[n]. */
static void text_losses(dp_model *m, const dp_tokenizer *tok, const dp_audit_text_canaries *c, int32_t i0, int n,
                        int32_t *ids, int32_t *lab, double *loss) {
    const int L = dp_model_config_of(m)->max_len;
    for (int b = 0; b < n; b++) {
        const int32_t i = i0 + b;
        dp_tokenizer_encode(tok, c->text + c->offsets[i], (size_t)(c->offsets[i + 1] - c->offsets[i]), L,
                            ids + (size_t)b * L, NULL);
        lab[b] = c->labels[i];
    }
    dp_batch bt = {n, L, ids, NULL, lab};
    dp_model_forward(m, &bt, 0, 0, loss);
}

void dp_audit_text_scores(dp_model *trained, dp_model *reference, const dp_tokenizer *tok,
                          const dp_audit_text_canaries *c, double *scores) {
    const int L = dp_model_config_of(trained)->max_len;
    const int B = DP_MIN(dp_model_max_batch(trained), dp_model_max_batch(reference));
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)B * L), *lab = dp_malloc(sizeof(int32_t) * (size_t)B);
    double *lt = dp_malloc(sizeof(double) * (size_t)B), *lr = dp_malloc(sizeof(double) * (size_t)B);
    for (int32_t i0 = 0; i0 < c->m; i0 += B) {
        const int n = (int)DP_MIN((int64_t)B, (int64_t)c->m - i0);
        text_losses(trained, tok, c, i0, n, ids, lab, lt);
        text_losses(reference, tok, c, i0, n, ids, lab, lr);
        for (int b = 0; b < n; b++) scores[i0 + b] = lr[b] - lt[b];
    }
    free(ids);
    free(lab);
    free(lt);
    free(lr);
}

/* ---- language models ---- */

int dp_audit_lm_canaries_make(dp_audit_lm_canaries *c, int32_t m, int len, int32_t n_tokens, int32_t eot,
                              dp_rng *rng, dp_error *err) {
    memset(c, 0, sizeof *c);
    if (m < 2) return dp_fail(err, "canaries: need at least 2 (got %d)", (int)m);
    if (len < 1) return dp_fail(err, "canary length: need at least 1 token (got %d)", len);
    if (n_tokens < 2 || eot < 0 || eot >= n_tokens)
        return dp_fail(err, "canaries: a vocabulary of %d tokens with <|endoftext|> = %d", (int)n_tokens, (int)eot);
    const int n = len + 2;
    c->m = m;
    c->len = len;
    c->tokens = dp_malloc(sizeof(int32_t) * (size_t)m * (size_t)n);
    c->included = dp_malloc((size_t)m);
    for (int32_t i = 0; i < m; i++) {
        int32_t *t = c->tokens + (size_t)i * n;
        t[0] = t[n - 1] = eot;
        for (int k = 1; k <= len; k++) {
            int32_t v = (int32_t)dp_rng_below(rng, (uint64_t)(n_tokens - 1));
            t[k] = v >= eot ? v + 1 : v; /* uniform over every token but <|endoftext|> */
        }
    }
    for (int32_t i = 0; i < m; i++) c->included[i] = (uint8_t)(dp_rng_u64(rng) & 1);
    return 0;
}

void dp_audit_lm_canaries_free(dp_audit_lm_canaries *c) {
    if (!c) return;
    free(c->tokens);
    free(c->included);
    memset(c, 0, sizeof *c);
}

int dp_audit_lm_corpus(const dp_lm_corpus *base, const dp_audit_lm_canaries *c, dp_lm_corpus *out, dp_error *err) {
    memset(out, 0, sizeof *out);
    const int n = c->len + 2;
    int64_t n_in = 0;
    for (int32_t i = 0; i < c->m; i++) n_in += c->included[i];
    if (base->n + n_in > INT32_MAX)
        return dp_fail(err, "canaries: %lld examples and %lld canaries are too many", (long long)base->n,
                       (long long)n_in);
    const int64_t tokens = base->offsets[base->n] + n_in * n;
    out->n = base->n + n_in;
    out->offsets = dp_malloc(sizeof(int64_t) * ((size_t)out->n + 1));
    out->tokens = dp_malloc(sizeof(int32_t) * (size_t)(tokens > 0 ? tokens : 1));
    out->n_truncated = base->n_truncated;
    out->max_len = n_in > 0 ? DP_MAX(base->max_len, n) : base->max_len;
    memcpy(out->offsets, base->offsets, sizeof(int64_t) * ((size_t)base->n + 1));
    memcpy(out->tokens, base->tokens, sizeof(int32_t) * (size_t)base->offsets[base->n]);
    int64_t k = base->n, pos = base->offsets[base->n];
    for (int32_t i = 0; i < c->m; i++) {
        if (!c->included[i]) continue;
        memcpy(out->tokens + pos, c->tokens + (size_t)i * n, sizeof(int32_t) * (size_t)n);
        pos += n;
        out->offsets[++k] = pos;
    }
    return 0;
}

/* Losses of canaries [i0, i0 + n) under m on its window. ids, tg: [n, L]. */
static void lm_losses(dp_model *m, const dp_audit_lm_canaries *c, int32_t i0, int n, int32_t *ids, int32_t *tg,
                      double *loss) {
    const int L = dp_model_config_of(m)->max_len, len = c->len + 2;
    for (int b = 0; b < n; b++)
        dp_lm_make_example(ids + (size_t)b * L, tg + (size_t)b * L, c->tokens + (size_t)(i0 + b) * len, len, L);
    dp_batch bt = {n, L, ids, tg, NULL};
    dp_model_forward(m, &bt, 0, 0, loss);
}

void dp_audit_lm_scores(dp_model *trained, dp_model *reference, const dp_audit_lm_canaries *c, double *scores) {
    const int L = dp_model_config_of(trained)->max_len;
    const int B = DP_MIN(dp_model_max_batch(trained), dp_model_max_batch(reference));
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)B * L), *tg = dp_malloc(sizeof(int32_t) * (size_t)B * L);
    double *lt = dp_malloc(sizeof(double) * (size_t)B), *lr = dp_malloc(sizeof(double) * (size_t)B);
    for (int32_t i0 = 0; i0 < c->m; i0 += B) {
        const int n = (int)DP_MIN((int64_t)B, (int64_t)c->m - i0);
        lm_losses(trained, c, i0, n, ids, tg, lt);
        lm_losses(reference, c, i0, n, ids, tg, lr);
        for (int b = 0; b < n; b++) scores[i0 + b] = lr[b] - lt[b];
    }
    free(ids);
    free(tg);
    free(lt);
    free(lr);
}
