/* Fuzz target for the byte-level BPE tokenizer (src/text/bpe_load.c, bpe.c). The first input byte
 * picks what the rest is (its two low bits) and the encoding flags (bit 2: allow special tokens,
 * bit 3: strict UTF-8):
 *   0: a vocabulary JSON object, a NUL byte, a merges text, a NUL byte, a text to encode with it;
 *   1: a tokenizer.json text, a NUL byte, a text to encode with it;
 *   2 or 3: a text, encoded with a small built-in vocabulary (whose merges are out of order, so that
 *      encoder.py's passes matter).
 * A refused file must be named at the start of the message. A loaded tokenizer must keep its
 * promises: every id's string looks up to that id; every text encodes to ids in range that decode back
 * to exactly the text (or, under strict UTF-8, is refused only if it is not UTF-8, naming the byte); the
 * fast pre-tokeniser splits as the PCRE2 pattern does; the heap merge loop gives encoder.py's ids. */
#include "dpformer/tokenizer.h"
#include "fuzz.h"
#include "text/bpe_internal.h"

/* encoder.py's bpe() over ids (quadratic: used on short pieces only). */
static void naive_bpe(const dp_bpe *t, const unsigned char *p, size_t n, int32_t *w) {
    int32_t *nw = malloc((n + 1) * sizeof *nw);
    size_t len = n;
    for (size_t i = 0; i < n; i++) w[i] = t->byte_id[p[i]];
    for (;;) {
        uint32_t best = UINT32_MAX, r;
        int32_t a = -1, b = -1, res = -1, id;
        for (size_t i = 0; i + 1 < len; i++)
            if (bpe_merge_find(t, w[i], w[i + 1], &r, &id) && r < best) best = r, a = w[i], b = w[i + 1], res = id;
        if (best == UINT32_MAX) break;
        size_t k = 0;
        for (size_t i = 0; i < len;) {
            if (i + 1 < len && w[i] == a && w[i + 1] == b) nw[k++] = res, i += 2;
            else nw[k++] = w[i++];
        }
        memcpy(w, nw, k * sizeof *w);
        len = k;
    }
    w[len] = -1; /* end marker */
    free(nw);
}

static void check_tokenizer(const dp_bpe *t, const char *text, size_t n, unsigned flags) {
    int32_t v = dp_bpe_vocab_size(t);
    FUZZ_CHECK(v >= 256);
    for (int32_t i = 0; i < v; i++) FUZZ_CHECK(dp_bpe_token_id(t, dp_bpe_token(t, i)) == i);
    dp_bpe_ids ids = {0};
    dp_bpe_text back = {0};
    dp_error err = {{0}};
    size_t valid = bpe_utf8_valid_prefix((const unsigned char *)text, n);
    if (dp_bpe_encode(t, text, n, flags, &ids, &err) != 0) {
        /* only strict UTF-8 refuses, only invalid text, naming its first invalid byte (special tokens
         * are valid UTF-8, so they never hide one) */
        size_t at = SIZE_MAX;
        FUZZ_CHECK((flags & DP_BPE_STRICT_UTF8) && valid < n && ids.n == 0);
        FUZZ_CHECK(sscanf(err.msg, "invalid UTF-8 at byte %zu", &at) == 1 && at == valid);
        free(ids.ids);
        return;
    }
    FUZZ_CHECK(!(flags & DP_BPE_STRICT_UTF8) || valid == n);
    for (size_t i = 0; i < ids.n; i++) FUZZ_CHECK(ids.ids[i] >= 0 && ids.ids[i] < v);
    FUZZ_CHECK(dp_bpe_decode(t, ids.ids, ids.n, 0, &back, &err) == 0);
    FUZZ_CHECK(back.n == n && (n == 0 || memcmp(back.data, text, n) == 0));
    /* the pattern on the sanitised text: fast path == PCRE2; each piece: heap loop == encoder.py */
    char *m = malloc(n + 1);
    memcpy(m, text, n);
    for (size_t i = valid; i < n;) {
        m[i++] = BPE_INVALID_STANDIN;
        i += bpe_utf8_valid_prefix((const unsigned char *)text + i, n - i);
    }
    size_t *e1 = NULL, *e2 = NULL;
    int64_t k1 = bpe_test_pretokenize(t, m, n, 1, &e1), k2 = bpe_test_pretokenize(t, m, n, 0, &e2);
    FUZZ_CHECK(k1 >= 0 && k1 == k2 && memcmp(e1, e2, (size_t)k1 * sizeof *e1) == 0);
    size_t start = 0;
    for (int64_t k = 0; k < k2; k++) {
        size_t len = e2[k] - start;
        if (len <= 256) {
            int32_t want[258];
            dp_bpe_ids got = {0};
            naive_bpe(t, (const unsigned char *)text + start, len, want);
            bpe_test_merge(t, text + start, len, &got);
            size_t j = 0;
            while (want[j] >= 0) j++;
            FUZZ_CHECK(got.n == j && memcmp(got.ids, want, j * sizeof *want) == 0);
            free(got.ids);
        }
        start = e2[k];
    }
    free(m);
    free(e1);
    free(e2);
    free(ids.ids);
    free(back.data);
}

/* The built-in vocabulary: the 256 bytes (id = byte), then one token per merge, then <|endoftext|>. */
static const dp_bpe *builtin(void) {
    static dp_bpe *t = NULL;
    if (t) return t;
    static const char *const merges[][2] = {{"xab", "a"}, {"x", "ab"}, {"a", "b"}, {"h", "e"}, {"l", "l"}, {"he", "ll"},
                                            {"hell", "o"}, {"Ġ", "w"}, {"o", "r"}, {"Ġw", "or"}, {"Ġ", "Ġ"}, {"ĠĠ", "ĠĠ"},
                                            {"1", "2"}, {"'", "s"}, {"Ã", "©"}};
    size_t nm = sizeof merges / sizeof merges[0];
    char *v = malloc(16384), *mt = malloc(1024);
    size_t o = 0, om = 0;
    v[o++] = '{';
    for (unsigned c = 0; c < 256; c++) {
        uint32_t cp = bpe_byte_to_cp(c);
        char s[8];
        if (cp == '"' || cp == '\\') s[0] = '\\', s[1] = (char)cp, s[2] = 0;
        else if (cp < 0x80) s[0] = (char)cp, s[1] = 0;
        else s[0] = (char)(0xC0 | cp >> 6), s[1] = (char)(0x80 | (cp & 63)), s[2] = 0;
        o += (size_t)snprintf(v + o, 16384 - o, "%s\"%s\": %u", c ? ", " : "", s, c);
    }
    for (size_t k = 0; k < nm; k++) {
        o += (size_t)snprintf(v + o, 16384 - o, ", \"%s%s\": %zu", merges[k][0], merges[k][1], 256 + k);
        om += (size_t)snprintf(mt + om, 1024 - om, "%s %s\n", merges[k][0], merges[k][1]);
    }
    o += (size_t)snprintf(v + o, 16384 - o, ", \"<|endoftext|>\": %zu}", 256 + nm);
    dp_error err = {{0}};
    t = dp_bpe_from_vocab_merges(v, o, "builtin.json", mt, om, "builtin.txt", &err);
    if (!t) {
        fprintf(stderr, "fuzz_bpe: the built-in vocabulary: %s\n", err.msg);
        abort();
    }
    free(v);
    free(mt);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned mode = data[0] & 3;
    unsigned flags = (data[0] & 4 ? DP_BPE_ALLOW_SPECIAL : 0) | (data[0] & 8 ? DP_BPE_STRICT_UTF8 : 0);
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    if (mode >= 2) {
        check_tokenizer(builtin(), p, (size_t)(end - p), flags);
        return 0;
    }
    const char *z1 = memchr(p, 0, (size_t)(end - p));
    const char *a_end = z1 ? z1 : end, *b = z1 ? z1 + 1 : end;
    dp_error err = {{0}};
    dp_bpe *t;
    const char *text, *text_end = end;
    if (mode == 0) {
        const char *z2 = memchr(b, 0, (size_t)(end - b));
        const char *b_end = z2 ? z2 : end;
        text = z2 ? z2 + 1 : end;
        t = dp_bpe_from_vocab_merges(p, (size_t)(a_end - p), "vocab.json", b, (size_t)(b_end - b), "merges.txt", &err);
        if (!t) {
            int named = strncmp(err.msg, "vocab.json", 10) == 0 || strncmp(err.msg, "merges.txt", 10) == 0;
            FUZZ_CHECK(named && (err.msg[10] == ':') && err.msg[11] != 0);
        }
    } else {
        text = b;
        t = dp_bpe_from_tokenizer_json(p, (size_t)(a_end - p), "tokenizer.json", &err);
        if (!t) FUZZ_CHECK_ERROR(err.msg, "tokenizer.json");
    }
    if (t) {
        check_tokenizer(t, text, (size_t)(text_end - text), flags);
        dp_bpe_free(t);
    }
    return 0;
}
