/* GPT-2 byte-level BPE (src/text/bpe.c, bpe_load.c): a tiny hand-made vocabulary written here in all
 * three file layouts (ids checked by hand, including a merge list where encoder.py's passes matter);
 * the fast pre-tokeniser against the PCRE2 pattern alone and the heap merge loop against a direct port
 * of encoder.py's bpe(), on random text; decode(encode(x)) == x for random bytes (invalid UTF-8
 * included); long pre-tokens; the cache; threads; every kind of bad file refused with the file named.
 * With ../shared/tokenizers (or $DPFORMER_TOKENIZERS): every line of gpt2/reference.jsonl exactly,
 * through encoder.json + vocab.bpe, vocab.json + merges.txt and a tokenizer.json made from them;
 * skipped with a message where the folder is absent (CI). */
#define _DEFAULT_SOURCE /* realpath, mkdtemp, symlink */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpformer/tokenizer.h"
#include "testutil.h"
#include "text/bpe_internal.h"

static char g_dir[256];

/* ---- files -------------------------------------------------------------------------------------- */

static void write_at(const char *dir, const char *name, const char *content, size_t len) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        exit(1);
    }
    if (len && fwrite(content, 1, len, f) != len) exit(1);
    fclose(f);
}

/* A fresh empty folder g_dir/name; returns its path (static buffer rotated among 4). */
static const char *fresh_dir(const char *name) {
    static char bufs[4][400];
    static int k = 0;
    char *p = bufs[k++ & 3];
    snprintf(p, 400, "%s/%s", g_dir, name);
    char cmd[500];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) exit(1);
    if (mkdir(p, 0700)) {
        perror(p);
        exit(1);
    }
    return p;
}

/* Growable string. */
typedef struct {
    char *s;
    size_t n, cap;
} str;
static void sadd(str *b, const char *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1);
        b->s = realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sputs(str *b, const char *p) { sadd(b, p, strlen(p)); }

/* JSON string of a UTF-8 string. */
static void sjson(str *b, const char *s) {
    sputs(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sadd(b, "\\", 1);
        sadd(b, s, 1);
    }
    sputs(b, "\"");
}

/* The vocabulary string of byte c (GPT-2's map), UTF-8. */
static const char *byte_str(int c) {
    static char buf[8][5];
    static int k = 0;
    char *o = buf[k++ & 7];
    uint32_t cp = bpe_byte_to_cp((unsigned)c);
    if (cp < 0x80) o[0] = (char)cp, o[1] = 0;
    else o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), o[2] = 0;
    return o;
}

/* ---- the tiny vocabulary -------------------------------------------------------------------------- */

/* ids 0..255: byte b has id b; then one token per merge, in merge order; then <|endoftext|>. The first
 * three merges are out of the usual order ("xab a" before "x ab" before "a b"): only encoder.py's
 * passes (all "a b" first, then the lower ranks the pass created) give "xabab" -> [xab, ab]; merging
 * each new pair at once would give [xaba, b]. */
static const char *const TINY_MERGES[][2] = {
    {"xab", "a"}, {"x", "ab"}, {"a", "b"}, {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"},
    {"Ġ", "w"}, {"o", "r"}, {"Ġw", "or"}, {"l", "d"}, {"Ġwor", "ld"}, {"Ġ", "Ġ"}, {"1", "2"},
};
#define TINY_N_MERGES ((int)(sizeof TINY_MERGES / sizeof TINY_MERGES[0]))
#define TINY_EOT (256 + TINY_N_MERGES)
#define TINY_VOCAB (TINY_EOT + 1)
enum { XABA = 256, XAB, AB, HE, LL, HELL, HELLO, GW, OR, GWOR, LD, GWORLD, GG, T12 };

/* The vocabulary JSON object; skip_byte >= 0 leaves that byte out; extra is spliced in before '}'. */
static void tiny_vocab_json(str *b, int skip_byte, const char *extra) {
    sputs(b, "{");
    int first = 1;
    char num[32];
    for (int c = 0; c < 256; c++) {
        if (c == skip_byte) continue;
        if (!first) sputs(b, ", ");
        first = 0;
        sjson(b, byte_str(c));
        snprintf(num, sizeof num, ": %d", c);
        sputs(b, num);
    }
    for (int m = 0; m < TINY_N_MERGES; m++) {
        sputs(b, ", ");
        char tok[64];
        snprintf(tok, sizeof tok, "%s%s", TINY_MERGES[m][0], TINY_MERGES[m][1]);
        sjson(b, tok);
        snprintf(num, sizeof num, ": %d", 256 + m);
        sputs(b, num);
    }
    snprintf(num, sizeof num, ", \"<|endoftext|>\": %d", TINY_EOT);
    sputs(b, num);
    if (extra) sputs(b, extra);
    sputs(b, "}");
}

static void tiny_merges_txt(str *b) {
    sputs(b, "#version: 0.2\n");
    for (int m = 0; m < TINY_N_MERGES; m++) {
        sputs(b, TINY_MERGES[m][0]);
        sputs(b, " ");
        sputs(b, TINY_MERGES[m][1]);
        sputs(b, "\n");
    }
}

/* tokenizer.json with the tiny vocabulary: merges alternately as "a b" and ["a", "b"]; added tokens
 * <|endoftext|> (its vocabulary entry) and <pad> (a new id). */
static void tiny_tokenizer_json(str *b, const char *model_extra, const char *root_extra) {
    char num[64];
    sputs(b, "{");
    if (root_extra) sputs(b, root_extra); /* first: cJSON finds the first of repeated keys */
    sputs(b, "\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [");
    snprintf(num, sizeof num, "{\"id\": %d, \"content\": \"<|endoftext|>\", \"special\": true}, ", TINY_EOT);
    sputs(b, num);
    snprintf(num, sizeof num, "{\"id\": %d, \"content\": \"<pad>\", \"special\": true}], ", TINY_VOCAB);
    sputs(b, num);
    sputs(b, "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
             "\"trim_offsets\": true, \"use_regex\": true}, \"post_processor\": {\"type\": \"ByteLevel\"}, "
             "\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {");
    if (model_extra) sputs(b, model_extra);
    sputs(b, "\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": \"\", "
             "\"end_of_word_suffix\": \"\", \"fuse_unk\": false, \"byte_fallback\": false, ");
    sputs(b, "\"vocab\": ");
    tiny_vocab_json(b, -1, NULL);
    sputs(b, ", \"merges\": [");
    for (int m = 0; m < TINY_N_MERGES; m++) {
        if (m) sputs(b, ", ");
        if (m % 2) {
            sputs(b, "[");
            sjson(b, TINY_MERGES[m][0]);
            sputs(b, ", ");
            sjson(b, TINY_MERGES[m][1]);
            sputs(b, "]");
        } else {
            char pair[64];
            snprintf(pair, sizeof pair, "%s %s", TINY_MERGES[m][0], TINY_MERGES[m][1]);
            sjson(b, pair);
        }
    }
    sputs(b, "]}}");
}

/* The tiny vocabulary in layout 0 (encoder.json + vocab.bpe), 1 (vocab.json + merges.txt) or 2
 * (tokenizer.json) in a fresh folder; returns the folder. */
static const char *write_tiny(int layout) {
    static const char *const names[] = {"tiny-openai", "tiny-hf", "tiny-json"};
    const char *dir = fresh_dir(names[layout]);
    str v = {0}, m = {0};
    if (layout == 2) {
        tiny_tokenizer_json(&v, NULL, NULL);
        write_at(dir, "tokenizer.json", v.s, v.n);
    } else {
        tiny_vocab_json(&v, -1, NULL);
        tiny_merges_txt(&m);
        write_at(dir, layout ? "vocab.json" : "encoder.json", v.s, v.n);
        write_at(dir, layout ? "merges.txt" : "vocab.bpe", m.s, m.n);
    }
    free(v.s);
    free(m.s);
    return dir;
}

/* ---- helpers ------------------------------------------------------------------------------------ */

static int ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static int encode_is(const dp_bpe *t, const char *text, unsigned flags, const int32_t *want, size_t n) {
    dp_bpe_ids ids = {0};
    dp_error err = {{0}};
    int ok = dp_bpe_encode(t, text, strlen(text), flags, &ids, &err) == 0 && ids_eq(ids.ids, ids.n, want, n);
    if (!ok) {
        fprintf(stderr, "  encode('%s'): got", text);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.ids[i]);
        fprintf(stderr, ", want");
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, " %s\n", err.msg);
    }
    free(ids.ids);
    return ok;
}
#define ENCODES(t, text, flags, ...)                                                          \
    do {                                                                                      \
        const int32_t want_[] = {__VA_ARGS__};                                                \
        CHECK(encode_is((t), (text), (flags), want_, sizeof want_ / sizeof want_[0]));        \
    } while (0)

/* decode(encode(s)) == s. */
static int round_trips(const dp_bpe *t, const char *s, size_t n, unsigned flags) {
    dp_bpe_ids ids = {0};
    dp_bpe_text back = {0};
    dp_error err = {{0}};
    int ok = dp_bpe_encode(t, s, n, flags, &ids, &err) == 0;
    for (size_t i = 0; ok && i < ids.n; i++) ok = ids.ids[i] >= 0 && ids.ids[i] < dp_bpe_vocab_size(t);
    ok = ok && dp_bpe_decode(t, ids.ids, ids.n, 0, &back, &err) == 0 && back.n == n && memcmp(back.data, s, n) == 0;
    free(ids.ids);
    free(back.data);
    return ok;
}

/* encoder.py's bpe() over ids, written directly: find the lowest-ranked pair, merge all its
 * occurrences left to right, repeat. */
static void naive_bpe(const dp_bpe *t, const unsigned char *p, size_t n, dp_bpe_ids *out) {
    int32_t *w = malloc((n + 1) * sizeof *w), *nw = malloc((n + 1) * sizeof *nw);
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
    for (size_t i = 0; i < len; i++) {
        if (out->n == out->cap) out->ids = realloc(out->ids, (out->cap = out->cap ? 2 * out->cap : 64) * sizeof *out->ids);
        out->ids[out->n++] = w[i];
    }
    free(w);
    free(nw);
}

/* The copy of s the pattern runs on (invalid bytes replaced), malloc'd. */
static char *sanitised(const char *s, size_t n) {
    char *c = malloc(n + 1);
    memcpy(c, s, n);
    for (size_t i = bpe_utf8_valid_prefix((const unsigned char *)s, n); i < n;) {
        c[i++] = BPE_INVALID_STANDIN;
        i += bpe_utf8_valid_prefix((const unsigned char *)s + i, n - i);
    }
    return c;
}

/* Everything a text must satisfy: the fast pre-tokeniser splits it as the pattern does; encoding
 * equals the PCRE2 pieces through the direct port of bpe(); the heap loop equals the port on each
 * piece; decoding gives the text back. Returns 1 if all hold. */
static int check_text(const dp_bpe *t, const char *s, size_t n) {
    char *m = sanitised(s, n);
    size_t *e1 = NULL, *e2 = NULL;
    int64_t k1 = bpe_test_pretokenize(t, m, n, 1, &e1), k2 = bpe_test_pretokenize(t, m, n, 0, &e2);
    int ok = k1 >= 0 && k1 == k2 && memcmp(e1, e2, (size_t)k1 * sizeof *e1) == 0;
    dp_bpe_ids want = {0}, got = {0}, one = {0};
    size_t start = 0;
    for (int64_t k = 0; ok && k < k2; k++) {
        size_t before = want.n;
        naive_bpe(t, (const unsigned char *)s + start, e2[k] - start, &want);
        one.n = 0;
        bpe_test_merge(t, s + start, e2[k] - start, &one);
        ok = ids_eq(one.ids, one.n, want.ids + before, want.n - before);
        start = e2[k];
    }
    dp_error err = {{0}};
    ok = ok && dp_bpe_encode(t, s, n, 0, &got, &err) == 0 && ids_eq(got.ids, got.n, want.ids, want.n);
    ok = ok && round_trips(t, s, n, 0) && round_trips(t, s, n, DP_BPE_ALLOW_SPECIAL);
    if (!ok) {
        fprintf(stderr, "  text of %zu bytes fails:", n);
        for (size_t i = 0; i < n && i < 80; i++) fprintf(stderr, " %02x", (unsigned char)s[i]);
        fprintf(stderr, "\n");
    }
    free(m);
    free(e1);
    free(e2);
    free(want.ids);
    free(got.ids);
    free(one.ids);
    return ok;
}

/* Random text of at most maxlen bytes from pieces that exercise the pattern: ASCII classes,
 * contractions, white space of every kind, letters, numbers and symbols outside ASCII, emoji, and
 * (if invalid) bytes that are not UTF-8. */
static size_t random_text(uint64_t *rng, char *out, size_t maxlen, int invalid) {
    static const char *const pieces[] = {
        "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "'S", "don't", " ", "  ", "\t", "\n", "\r\n", "\v", "\f",
        "a", "Z", "hello", " world", "xabab", "held", "12", "123", " 42", "!!", "?", "...", "$", "_", "-", "é", "ß",
        "日本", "٣", "²", "½", "😀", "👍🏽", "\xcc\x81", "\xc2\x85", "\xc2\xa0", "\xe2\x80\x83", "\xe3\x80\x80",
        "\xe1\xa0\x8e", "\xe2\x80\xa8", "\xef\xbb\xbf", "\x1c", "\x1f", "\x01", "\x7f", "<|endoftext|>", "<pad>",
        "<|endoftext", "xab", "Ġ", "ll"};
    size_t np = sizeof pieces / sizeof pieces[0], n = 0;
    size_t parts = (size_t)(tu_uniform(rng) * 24);
    for (size_t k = 0; k < parts; k++) {
        double u = tu_uniform(rng);
        char buf[8];
        const char *p;
        size_t len;
        if (u < 0.6) {
            p = pieces[(size_t)(tu_uniform(rng) * np)];
            len = strlen(p);
        } else if (u < 0.85 || !invalid) {
            buf[0] = (char)(32 + (int)(tu_uniform(rng) * 95));
            p = buf, len = 1;
        } else {
            len = 1 + (size_t)(tu_uniform(rng) * 3);
            for (size_t i = 0; i < len; i++) buf[i] = (char)(0x80 + (int)(tu_uniform(rng) * 128));
            if (tu_uniform(rng) < 0.3) buf[0] = (char)(0xC0 + (int)(tu_uniform(rng) * 64));
            p = buf;
        }
        if (n + len > maxlen) break;
        memcpy(out + n, p, len);
        n += len;
    }
    return n;
}

/* ---- tests -------------------------------------------------------------------------------------- */

static void test_byte_map(void) {
    /* GPT-2's bytes_to_unicode: printable bytes stand for themselves, space is U+0120 'Ġ', newline
     * U+010A 'Ċ', 0x7F U+0121, soft hyphen U+0143; the map is a bijection onto 256 code points */
    CHECK(bpe_byte_to_cp('a') == 'a' && bpe_byte_to_cp('!') == '!' && bpe_byte_to_cp(0xE9) == 0xE9);
    CHECK(bpe_byte_to_cp(' ') == 0x120 && bpe_byte_to_cp('\n') == 0x10A && bpe_byte_to_cp(0) == 0x100);
    CHECK(bpe_byte_to_cp(0x7F) == 0x121 && bpe_byte_to_cp(0xA0) == 0x142 && bpe_byte_to_cp(0xAD) == 0x143);
    int seen[324] = {0}, ok = 1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = bpe_byte_to_cp((unsigned)b);
        ok &= cp < 324 && !seen[cp] && bpe_cp_to_byte(cp) == b;
        if (cp < 324) seen[cp] = 1;
    }
    CHECK(ok);
    CHECK(bpe_cp_to_byte(0x20) == -1 && bpe_cp_to_byte(0x144) == -1 && bpe_cp_to_byte(0x65E5) == -1);
    /* UTF-8 validity: overlong, surrogate, above U+10FFFF, cut sequences */
    CHECK(bpe_utf8_valid_prefix((const unsigned char *)"ab\xc3\xa9", 4) == 4);
    CHECK(bpe_utf8_valid_prefix((const unsigned char *)"a\xc0\x80", 3) == 1);
    CHECK(bpe_utf8_valid_prefix((const unsigned char *)"a\xed\xa0\x80", 4) == 1);
    CHECK(bpe_utf8_valid_prefix((const unsigned char *)"\xf4\x90\x80\x80", 4) == 0);
    CHECK(bpe_utf8_valid_prefix((const unsigned char *)"abcdefgh\xe2\x82", 10) == 8);
    CHECK(bpe_utf8_valid_prefix((const unsigned char *)"\xf0\x9f\x98\x80", 4) == 4);
}

static void test_tiny(void) {
    dp_bpe *t[3];
    for (int layout = 0; layout < 3; layout++) {
        dp_error err = {{0}};
        t[layout] = dp_bpe_load(write_tiny(layout), &err);
        CHECK(t[layout] != NULL);
        if (!t[layout]) {
            fprintf(stderr, "  tiny layout %d: %s\n", layout, err.msg);
            return;
        }
    }
    CHECK(strstr(dp_bpe_source(t[0]), "encoder.json + ") && strstr(dp_bpe_source(t[1]), "vocab.json + ") &&
          strstr(dp_bpe_source(t[2]), "tokenizer.json"));
    for (int layout = 0; layout < 3; layout++) {
        const dp_bpe *k = t[layout];
        CHECK(dp_bpe_vocab_size(k) == TINY_VOCAB + (layout == 2));
        CHECK(dp_bpe_n_merges(k) == TINY_N_MERGES);
        CHECK(dp_bpe_token_id(k, "<|endoftext|>") == TINY_EOT && dp_bpe_is_special(k, TINY_EOT));
        CHECK(dp_bpe_token_id(k, "Ġworld") == GWORLD && !dp_bpe_is_special(k, GWORLD));
        CHECK(dp_bpe_token_id(k, "Ġ") == ' ' && dp_bpe_token_id(k, " ") == -1 && dp_bpe_token_id(k, "nope") == -1);
        CHECK(strcmp(dp_bpe_token(k, GWOR), "Ġwor") == 0 && dp_bpe_token(k, -1) == NULL && dp_bpe_token(k, 1 << 30) == NULL);
        CHECK(!dp_bpe_is_special(k, 'a') && !dp_bpe_is_special(k, -5));
        ENCODES(k, "hello world", 0, HELLO, GWORLD);
        ENCODES(k, "held", 0, HE, LD);
        ENCODES(k, "xabab", 0, XAB, AB); /* encoder.py's passes (not [xaba, b]) */
        ENCODES(k, "xaba", 0, XABA);
        ENCODES(k, "  world", 0, ' ', GWORLD);     /* white space before a word keeps one space for it */
        ENCODES(k, "hello   ", 0, HELLO, GG, ' '); /* trailing white space: one piece "   " */
        ENCODES(k, "he's", 0, HE, '\'', 's');
        ENCODES(k, "1234", 0, T12, '3', '4');
        ENCODES(k, "<|endoftext|>", 0, '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>');
        ENCODES(k, "hello<|endoftext|> world", DP_BPE_ALLOW_SPECIAL, HELLO, TINY_EOT, GWORLD);
        ENCODES(k, "<|endoftext|><|endoftext|>", DP_BPE_ALLOW_SPECIAL, TINY_EOT, TINY_EOT);
        ENCODES(k, "<|endoftext", DP_BPE_ALLOW_SPECIAL, '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't');
        ENCODES(k, "", 0, );
        {
            dp_bpe_ids none = {0};
            dp_error e0 = {{0}};
            CHECK(dp_bpe_encode(k, NULL, 0, DP_BPE_STRICT_UTF8 | DP_BPE_ALLOW_SPECIAL, &none, &e0) == 0 && none.n == 0);
            dp_bpe_text empty = {0};
            CHECK(dp_bpe_decode(k, NULL, 0, 0, &empty, &e0) == 0 && empty.n == 0 && empty.data && empty.data[0] == 0);
            free(empty.data);
        }
        if (layout == 2) {
            ENCODES(k, "<pad>hello", DP_BPE_ALLOW_SPECIAL, TINY_VOCAB, HELLO);
            CHECK(dp_bpe_is_special(k, TINY_VOCAB));
        }
        /* decode: specials give their text, or nothing with DP_BPE_SKIP_SPECIAL */
        int32_t ids[] = {HELLO, TINY_EOT, GWORLD};
        dp_bpe_text out = {0};
        dp_error err = {{0}};
        CHECK(dp_bpe_decode(k, ids, 3, 0, &out, &err) == 0 && strcmp(out.data, "hello<|endoftext|> world") == 0);
        out.n = 0;
        CHECK(dp_bpe_decode(k, ids, 3, DP_BPE_SKIP_SPECIAL, &out, &err) == 0 && strcmp(out.data, "hello world") == 0);
        /* an unknown id is an error that names it and its position, and leaves the output as it was */
        int32_t bad[] = {HELLO, TINY_VOCAB + 1};
        out.n = 0;
        CHECK(dp_bpe_decode(k, bad, 2, 0, &out, &err) != 0 && out.n == 0);
        CHECK(strstr(err.msg, "at position 1 is not in the vocabulary") != NULL);
        int32_t neg = -1;
        CHECK(dp_bpe_decode(k, &neg, 1, 0, &out, &err) != 0 && strstr(err.msg, "id -1 at position 0"));
        free(out.data);
        /* strict UTF-8: refused with the byte offset, output unchanged; default: encoded and reversible */
        dp_bpe_ids o = {0};
        CHECK(dp_bpe_encode(k, "ok", 2, 0, &o, &err) == 0 && o.n == 2);
        CHECK(dp_bpe_encode(k, "abc\xe9z", 5, DP_BPE_STRICT_UTF8, &o, &err) != 0 && o.n == 2);
        CHECK(strcmp(err.msg, "invalid UTF-8 at byte 3 (0xE9)") == 0);
        CHECK(dp_bpe_encode(k, "<|endoftext|>\xff", 14, DP_BPE_STRICT_UTF8 | DP_BPE_ALLOW_SPECIAL, &o, &err) != 0 &&
              strstr(err.msg, "at byte 13 (0xFF)"));
        CHECK(round_trips(k, "abc\xe9z", 5, 0));
        free(o.ids);
    }
    /* invalid bytes split like symbols: "\xe9" between letters is a piece of its own */
    ENCODES(t[0], "he\xe9he", 0, HE, 0xE9, HE);
    ENCODES(t[0], "he \xe9\xe9!he", 0, HE, ' ', 0xE9, 0xE9, '!', HE);
    /* random texts: all three layouts agree, and every property of check_text holds */
    uint64_t rng = 7;
    char buf[512];
    int ok = 1, same = 1;
    for (int i = 0; i < 3000; i++) {
        size_t n = random_text(&rng, buf, sizeof buf, i % 2);
        ok &= check_text(t[0], buf, n);
        dp_bpe_ids a = {0}, b = {0};
        dp_error err;
        dp_bpe_encode(t[0], buf, n, DP_BPE_ALLOW_SPECIAL, &a, &err);
        dp_bpe_encode(t[1], buf, n, DP_BPE_ALLOW_SPECIAL, &b, &err);
        same &= ids_eq(a.ids, a.n, b.ids, b.n);
        b.n = 0;
        dp_bpe_encode(t[2], buf, n, 0, &b, &err);
        a.n = 0;
        dp_bpe_encode(t[0], buf, n, 0, &a, &err);
        same &= ids_eq(a.ids, a.n, b.ids, b.n);
        free(a.ids);
        free(b.ids);
    }
    CHECK(ok);
    CHECK(same);
    for (int i = 0; i < 3; i++) dp_bpe_free(t[i]);
}

/* Random merge lists over a few letters, in any order (so passes matter): the heap loop equals the
 * direct port on random words. */
static void test_random_merges(void) {
    uint64_t rng = 11;
    int ok = 1;
    for (int trial = 0; trial < 40; trial++) {
        /* tokens: the 256 bytes, then random concatenations of existing tokens over "abc" */
        const char *letters[] = {"a", "b", "c"};
        char toks[64][40];
        int nt = 3;
        for (int k = 0; k < 3; k++) strcpy(toks[k], letters[k]);
        str v = {0}, m = {0};
        sputs(&m, "#version: 0.2\n");
        for (int k = 0; k < 40 && nt < 64; k++) {
            int a = (int)(tu_uniform(&rng) * nt), b = (int)(tu_uniform(&rng) * nt);
            char cat[80];
            snprintf(cat, sizeof cat, "%s%s", toks[a], toks[b]);
            if (strlen(cat) > 30) continue;
            char line[100];
            snprintf(line, sizeof line, "%s %s\n", toks[a], toks[b]);
            if (strstr(m.s, line)) continue; /* no pair twice */
            int known = 0;
            for (int j = 0; j < nt; j++) known |= strcmp(toks[j], cat) == 0;
            if (!known) strcpy(toks[nt++], cat); /* else a second merge with the same result: allowed */
            sputs(&m, line);
        }
        /* shuffle the merge lines after the header: ranks in any order */
        char *lines[64];
        int nl = 0;
        for (char *p = strchr(m.s, '\n') + 1; *p; p = strchr(p, '\n') + 1) lines[nl++] = p;
        str sh = {0};
        sputs(&sh, "#version: 0.2\n");
        for (int i = nl - 1; i > 0; i--) {
            int j = (int)(tu_uniform(&rng) * (i + 1));
            char *x = lines[i];
            lines[i] = lines[j];
            lines[j] = x;
        }
        for (int i = 0; i < nl; i++) sadd(&sh, lines[i], (size_t)(strchr(lines[i], '\n') - lines[i] + 1));
        sputs(&v, "{");
        char num[32];
        for (int c = 0; c < 256; c++) {
            if (c) sputs(&v, ", ");
            sjson(&v, byte_str(c));
            snprintf(num, sizeof num, ": %d", c);
            sputs(&v, num);
        }
        int id = 256;
        for (int k = 3; k < nt; k++) {
            sputs(&v, ", ");
            sjson(&v, toks[k]);
            snprintf(num, sizeof num, ": %d", id++);
            sputs(&v, num);
        }
        sputs(&v, "}");
        dp_error err = {{0}};
        dp_bpe *t = dp_bpe_from_vocab_merges(v.s, v.n, "r.json", sh.s, sh.n, "r.txt", &err);
        CHECK(t != NULL);
        if (!t) {
            fprintf(stderr, "  random merges: %s\n", err.msg);
            free(v.s), free(m.s), free(sh.s);
            continue;
        }
        for (int w = 0; w < 200; w++) {
            char word[64];
            size_t n = 1 + (size_t)(tu_uniform(&rng) * 60);
            for (size_t i = 0; i < n; i++) word[i] = "abc"[(int)(tu_uniform(&rng) * 3)];
            dp_bpe_ids a = {0}, b = {0};
            naive_bpe(t, (const unsigned char *)word, n, &a);
            bpe_test_merge(t, word, n, &b);
            ok &= ids_eq(a.ids, a.n, b.ids, b.n);
            free(a.ids);
            free(b.ids);
        }
        dp_bpe_free(t);
        free(v.s), free(m.s), free(sh.s);
    }
    CHECK(ok);
}

/* Long inputs: one pre-token of 2 MB (heap loop), long white space before non-ASCII (PCRE2 on a long
 * run), long non-ASCII letters, invalid bytes: each encodes, decodes back, and is not slow. */
static void test_long(void) {
    dp_error err = {{0}};
    dp_bpe *t = dp_bpe_load(write_tiny(0), &err);
    if (!t) return;
    size_t n = 2u << 20;
    char *s = malloc(n + 8);
    double t0 = dp_now();
    memset(s, 'a', n);
    CHECK(round_trips(t, s, n, 0));
    for (size_t i = 0; i < n; i++) s[i] = "ab"[i % 2];
    dp_bpe_ids ids = {0};
    CHECK(dp_bpe_encode(t, s, n, 0, &ids, &err) == 0 && ids.n == n / 2 && ids.ids[0] == AB && ids.ids[ids.n - 1] == AB);
    memset(s, ' ', n);
    memcpy(s + n - 2, "\xc2\xa0", 2); /* U+00A0 is white space too: one piece */
    CHECK(round_trips(t, s, n, 0));
    memcpy(s + n - 2, "\xc3\xa9", 2); /* é: a letter after n-2 spaces: n-3 spaces, then " é" */
    ids.n = 0;
    CHECK(dp_bpe_encode(t, s, n, 0, &ids, &err) == 0 && ids.n == (n - 3) / 2 + 1 + 3);
    for (size_t i = 0; i + 1 < n; i += 2) memcpy(s + i, "\xc3\xa9", 2);
    CHECK(round_trips(t, s, n, 0));
    for (size_t i = 0; i < n; i++) s[i] = (char)(0x80 + (i * 7919) % 128);
    CHECK(round_trips(t, s, n, 0));
    double dt = dp_now() - t0;
    CHECK(dt < 30);
    if (dt >= 30) fprintf(stderr, "  long inputs took %.1f s\n", dt);
    free(ids.ids);
    free(s);
    dp_bpe_free(t);
}

/* Threads: more threads than workers encode at once and all get the single-threaded ids. */
typedef struct {
    const dp_bpe *t;
    const char *text;
    size_t n;
    const dp_bpe_ids *want;
    int ok;
} thread_job;
static void *encode_thread(void *p) {
    thread_job *j = p;
    j->ok = 1;
    for (int r = 0; r < 20; r++) {
        dp_bpe_ids ids = {0};
        dp_error err;
        j->ok &= dp_bpe_encode(j->t, j->text, j->n, 0, &ids, &err) == 0 && ids_eq(ids.ids, ids.n, j->want->ids, j->want->n);
        free(ids.ids);
    }
    return NULL;
}
static void check_threads(const dp_bpe *t, const char *text, size_t n) {
    dp_bpe_ids want = {0};
    dp_error err;
    CHECK(dp_bpe_encode(t, text, n, 0, &want, &err) == 0);
    enum { NT = BPE_WORKERS + 4 };
    pthread_t th[NT];
    thread_job jobs[NT];
    for (int i = 0; i < NT; i++) {
        jobs[i] = (thread_job){t, text, n, &want, 0};
        CHECK(pthread_create(&th[i], NULL, encode_thread, &jobs[i]) == 0);
    }
    int ok = 1;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        ok &= jobs[i].ok;
    }
    CHECK(ok);
    free(want.ids);
}

static void test_threads_and_cache(void) {
    dp_error err = {{0}};
    dp_bpe *t = dp_bpe_load(write_tiny(1), &err);
    if (!t) return;
    uint64_t rng = 5;
    str text = {0};
    char buf[256];
    for (int i = 0; i < 2000; i++) {
        size_t n = random_text(&rng, buf, sizeof buf, 1);
        sadd(&text, buf, n);
    }
    check_threads(t, text.s, text.n);
    /* the cache: a second encoding hits; more distinct words than it holds clear it, and the ids stay
     * those of the merge loop */
    dp_bpe_free(t);
    t = dp_bpe_load(write_tiny(1), &err);
    dp_bpe_ids a = {0}, b = {0};
    uint64_t h0, m0, c0, h1, m1, c1;
    dp_bpe_encode(t, "hello world world", 17, 0, &a, &err);
    bpe_test_cache_stats(t, &h0, &m0, &c0);
    CHECK(m0 == 2 && h0 == 1 && c0 == 0);
    str many = {0};
    for (uint32_t i = 0; i < BPE_CACHE_MAX_ENTRIES + 5000; i++) {
        char w[16];
        int k = 0;
        w[k++] = ' ';
        for (uint32_t x = i; k < 6; x /= 26) w[k++] = (char)('a' + x % 26);
        sadd(&many, w, (size_t)k);
    }
    a.n = 0;
    CHECK(dp_bpe_encode(t, many.s, many.n, 0, &a, &err) == 0);
    bpe_test_cache_stats(t, &h1, &m1, &c1);
    CHECK(c1 >= 1);
    b.n = 0;
    CHECK(dp_bpe_encode(t, many.s, many.n, 0, &b, &err) == 0 && ids_eq(a.ids, a.n, b.ids, b.n));
    CHECK(check_text(t, many.s, 6000));
    free(a.ids);
    free(b.ids);
    free(many.s);
    free(text.s);
    dp_bpe_free(t);
}

/* ---- bad files ---------------------------------------------------------------------------------- */

/* Loading dir must fail with a message that starts with dir/file and contains phrase. */
static void expect_load_error(const char *dir, const char *file, const char *phrase) {
    dp_error err = {{0}};
    dp_bpe *t = dp_bpe_load(dir, &err);
    char prefix[600];
    if (*file) snprintf(prefix, sizeof prefix, "%s/%s", dir, file);
    else snprintf(prefix, sizeof prefix, "%s:", dir);
    int ok = !t && strncmp(err.msg, prefix, strlen(prefix)) == 0 && strstr(err.msg, phrase) != NULL;
    CHECK(ok);
    if (!ok) fprintf(stderr, "  expected '%s ... %s', got '%s'\n", prefix, phrase, t ? "(loaded)" : err.msg);
    dp_bpe_free(t);
}

/* A pair layout with this vocabulary and merges text. */
static const char *write_pair(const char *vocab, const char *merges) {
    const char *dir = fresh_dir("bad");
    write_at(dir, "encoder.json", vocab, strlen(vocab));
    write_at(dir, "vocab.bpe", merges, strlen(merges));
    return dir;
}

static void test_bad_files(void) {
    str v = {0}, m = {0};
    tiny_vocab_json(&v, -1, NULL);
    tiny_merges_txt(&m);
    const char *good_v = v.s, *good_m = m.s;
    /* the vocabulary */
    expect_load_error(write_pair("{\"a\": 0,", good_m), "encoder.json:1:", "JSON syntax error at column");
    expect_load_error(write_pair("{\"a\": 0}\n{\"b\": 1}", good_m), "encoder.json:2:", "JSON syntax error");
    expect_load_error(write_pair("", good_m), "encoder.json", "empty file");
    expect_load_error(write_pair("[1, 2]", good_m), "encoder.json", "must be a JSON object");
    expect_load_error(write_pair("{}", good_m), "encoder.json", "the vocabulary is empty");
    str x = {0};
    tiny_vocab_json(&x, -1, ", \"zz\": 1.5");
    expect_load_error(write_pair(x.s, good_m), "encoder.json", "entry 'zz': the id must be an integer");
    x.n = 0;
    tiny_vocab_json(&x, -1, ", \"zz\": -3");
    expect_load_error(write_pair(x.s, good_m), "encoder.json", "entry 'zz': the id must be an integer");
    x.n = 0;
    tiny_vocab_json(&x, -1, ", \"zz\": \"7\"");
    expect_load_error(write_pair(x.s, good_m), "encoder.json", "entry 'zz': the id must be an integer");
    x.n = 0;
    tiny_vocab_json(&x, -1, ", \"zz\": 5");
    expect_load_error(write_pair(x.s, good_m), "encoder.json", "id 5 is also the id of");
    x.n = 0;
    tiny_vocab_json(&x, -1, ", \"zz\": 100000");
    expect_load_error(write_pair(x.s, good_m), "encoder.json", "leaves ids unused");
    x.n = 0;
    char dup[64];
    snprintf(dup, sizeof dup, ", \"hello\": %d", TINY_VOCAB);
    tiny_vocab_json(&x, -1, dup);
    expect_load_error(write_pair(x.s, good_m), "encoder.json", "the string appears twice");
    x.n = 0;
    tiny_vocab_json(&x, 'A', ", \"zz\": 65");
    expect_load_error(write_pair(x.s, good_m), "encoder.json", "no token for byte 0x41");
    x.n = 0;
    tiny_vocab_json(&x, -1, ", \"a\\u0000b\": 300");
    expect_load_error(write_pair(x.s, good_m), "encoder.json:1:", "\\u0000");
    x.n = 0;
    tiny_vocab_json(&x, -1, ", \"\": 300");
    expect_load_error(write_pair(x.s, good_m), "encoder.json", "an empty string is not a token");
    x.n = 0;
    tiny_vocab_json(&x, -1, ", \"\xff\": 300");
    expect_load_error(write_pair(x.s, good_m), "encoder.json", "not valid UTF-8");
    /* the merges: line numbers count the #version line */
    expect_load_error(write_pair(good_v, "#version: 0.2\nh e\nll\n"), "vocab.bpe:3:", "expected two tokens separated by one space");
    expect_load_error(write_pair(good_v, "h  e\n"), "vocab.bpe:1:", "expected two tokens");
    expect_load_error(write_pair(good_v, "h e x\n"), "vocab.bpe:1:", "expected two tokens");
    expect_load_error(write_pair(good_v, "#version: 0.2\nh e\nhe zz\n"), "vocab.bpe:3: merge 'he zz'",
                      "'zz' is not in the vocabulary");
    expect_load_error(write_pair(good_v, "h e\nq z\n"), "vocab.bpe:2: merge 'q z'", "the result 'qz' is not in the vocabulary");
    expect_load_error(write_pair(good_v, "h e\nl l\nh e\n"), "vocab.bpe:3: merge 'h e'", "appears twice (first on line 1)");
    expect_load_error(write_pair(good_v, "h e\n\nl l\n"), "vocab.bpe:2:", "empty line");
    expect_load_error(write_pair(good_v, "h e\n<|endoftext|> a\n"), "vocab.bpe:2:", "the result '<|endoftext|>a' is not");
    expect_load_error(write_pair(good_v, "h e\nhe \xc2\xa0\n"), "vocab.bpe:2:", "'\xc2\xa0' is not in the vocabulary");
    /* blank lines at the end and CRLF are fine */
    {
        dp_error err;
        dp_bpe *t = dp_bpe_load(write_pair(good_v, "#version: 0.2\r\nh e\r\nl l\r\n\n\n"), &err);
        CHECK(t && dp_bpe_n_merges(t) == 2);
        dp_bpe_free(t);
    }
    /* folders */
    expect_load_error(fresh_dir("empty"), "", "no tokenizer files");
    const char *half = fresh_dir("half");
    write_at(half, "vocab.json", good_v, strlen(good_v));
    expect_load_error(half, "", "has vocab.json but no merges.txt");
    dp_error err;
    CHECK(dp_bpe_load("/nonexistent/tok", &err) == NULL && strstr(err.msg, "/nonexistent/tok: cannot open"));
    /* tokenizer.json */
    struct {
        const char *model_extra, *root_extra, *phrase;
    } cases[] = {
        {"\"type\": \"WordPiece\", ", NULL, "model.type is WordPiece"},
        {"\"dropout\": 0.1, ", NULL, "model.dropout"},
        {"\"continuing_subword_prefix\": \"##\", ", NULL, "continuing_subword_prefix"},
        {"\"byte_fallback\": true, ", NULL, "byte_fallback"},
        {"\"ignore_merges\": true, ", NULL, "ignore_merges"},
        {NULL, "\"normalizer\": {\"type\": \"NFC\"}, ", "normalizer NFC is not supported"},
        {NULL, "\"pre_tokenizer\": {\"type\": \"Whitespace\"}, ", "pre_tokenizer must be"},
        {NULL, "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true}, ", "add_prefix_space"},
        {NULL, "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": false}, ", "use_regex"},
        {NULL, "\"decoder\": {\"type\": \"WordPiece\"}, ", "decoder WordPiece"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        str j = {0};
        tiny_tokenizer_json(&j, cases[i].model_extra, cases[i].root_extra);
        const char *dir = fresh_dir("badjson");
        write_at(dir, "tokenizer.json", j.s, j.n);
        expect_load_error(dir, "tokenizer.json", cases[i].phrase);
        free(j.s);
    }
    {
        str j = {0};
        tiny_tokenizer_json(&j, NULL, NULL);
        char *p = strstr(j.s, "\"<pad>\"");
        memcpy(p, "\"hell\" ", 7); /* an added token that is a vocabulary string under another id */
        const char *dir = fresh_dir("badjson");
        write_at(dir, "tokenizer.json", j.s, j.n);
        expect_load_error(dir, "tokenizer.json", "the string appears twice");
        j.n = 0;
        tiny_tokenizer_json(&j, NULL, NULL);
        char from[32], to[32], want[64];
        snprintf(from, sizeof from, "\"id\": %d,", TINY_EOT);
        snprintf(to, sizeof to, "\"id\": %d,", HELL); /* added <|endoftext|> on the id of "hell" */
        snprintf(want, sizeof want, "id %d is also the id of 'hell'", HELL);
        p = strstr(j.s, from);
        CHECK(p != NULL && strlen(from) == strlen(to));
        if (p) memcpy(p, to, strlen(to));
        write_at(dir, "tokenizer.json", j.s, j.n);
        expect_load_error(dir, "tokenizer.json: added_tokens[0] '<|endoftext|>'", want);
        j.n = 0;
        tiny_tokenizer_json(&j, NULL, NULL);
        p = strstr(j.s, "[\"x\", \"ab\"]");
        CHECK(p != NULL);
        if (p) memcpy(p, "[\"x\", 1234]", 11);
        write_at(dir, "tokenizer.json", j.s, j.n);
        expect_load_error(dir, "tokenizer.json: model.merges[1]", "expected \"a b\"");
        j.n = 0;
        tiny_tokenizer_json(&j, NULL, NULL);
        p = strstr(j.s, "\"added_tokens\": [");
        memcpy(p, "\"added_tokens\": 7, ", 19);
        memset(p + 19, ' ', strchr(p, ']') + 1 - (p + 19) + 1);
        write_at(dir, "tokenizer.json", j.s, j.n);
        expect_load_error(dir, "tokenizer.json", "added_tokens must be an array");
        write_at(dir, "tokenizer.json", "{\"model\": 3}", 12);
        expect_load_error(dir, "tokenizer.json", "no \"model\" object");
        write_at(dir, "tokenizer.json", "[]", 2);
        expect_load_error(dir, "tokenizer.json", "expected a JSON object");
        write_at(dir, "tokenizer.json", "{\"a\"\0: 1}", 9);
        expect_load_error(dir, "tokenizer.json", "NUL byte at offset 4");
        /* a path to the tokenizer.json file itself loads it; another kind of file is refused */
        j.n = 0;
        tiny_tokenizer_json(&j, NULL, NULL);
        write_at(dir, "tokenizer.json", j.s, j.n);
        char path[600];
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        dp_bpe *t = dp_bpe_load(path, &err);
        CHECK(t && dp_bpe_vocab_size(t) == TINY_VOCAB + 1);
        dp_bpe_free(t);
        write_at(dir, "notes.txt", "x", 1);
        snprintf(path, sizeof path, "%s/notes.txt", dir);
        CHECK(dp_bpe_load(path, &err) == NULL && strstr(err.msg, "not a folder or a tokenizer.json file"));
        free(j.s);
    }
    free(x.s);
    free(v.s);
    free(m.s);
}

/* ---- GPT-2 itself ------------------------------------------------------------------------------- */

static const char *tokenizers_dir(char *buf, size_t cap) {
    const char *d = getenv("DPFORMER_TOKENIZERS");
    if (d && *d) return d;
    const char *src = getenv("DPFORMER_SOURCE_DIR");
    snprintf(buf, cap, "%s/../shared/tokenizers", src && *src ? src : ".");
    return buf;
}

/* Every line of reference.jsonl through tokenizer t; returns the number that match. */
static int check_reference(const dp_bpe *t, const char *ref, int *total) {
    FILE *f = fopen(ref, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    int good = 0;
    *total = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text"), *ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
        if (!cJSON_IsString(text) || !cJSON_IsArray(ids)) {
            cJSON_Delete(j);
            continue;
        }
        (*total)++;
        dp_bpe_ids got = {0};
        dp_error err;
        int ok = dp_bpe_encode(t, text->valuestring, strlen(text->valuestring), 0, &got, &err) == 0 &&
                 got.n == (size_t)cJSON_GetArraySize(ids);
        size_t i = 0;
        for (const cJSON *x = ids->child; ok && x; x = x->next, i++) ok = x->valueint == got.ids[i];
        if (!ok && *total - good <= 5) fprintf(stderr, "  reference mismatch: %s", line);
        if (ok && check_text(t, text->valuestring, strlen(text->valuestring))) good++;
        free(got.ids);
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    return good;
}

/* A tokenizer.json equivalent to encoder.json + vocab.bpe (merges as pairs if as_pairs). */
static int make_gpt2_tokenizer_json(const char *gpt2, const char *out_dir, int as_pairs) {
    char p[600];
    char *v, *m;
    size_t vn, mn;
    dp_error err;
    snprintf(p, sizeof p, "%s/encoder.json", gpt2);
    if (dp_read_file(p, &v, &vn, &err)) return -1;
    snprintf(p, sizeof p, "%s/vocab.bpe", gpt2);
    if (dp_read_file(p, &m, &mn, &err)) return -1;
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *pre = cJSON_CreateObject(), *dec = cJSON_CreateObject();
    cJSON *added = cJSON_CreateArray(), *eot = cJSON_CreateObject(), *merges = cJSON_CreateArray();
    cJSON_AddNumberToObject(eot, "id", 50256);
    cJSON_AddStringToObject(eot, "content", "<|endoftext|>");
    cJSON_AddBoolToObject(eot, "special", 1);
    cJSON_AddItemToArray(added, eot);
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddItemToObject(model, "vocab", cJSON_ParseWithLength(v, vn));
    char *s = m, *end = m + mn;
    s = strchr(s, '\n') + 1; /* #version */
    while (s < end) {
        char *e = memchr(s, '\n', (size_t)(end - s));
        if (!e) e = end;
        if (e > s) {
            char *sp = memchr(s, ' ', (size_t)(e - s));
            if (as_pairs) {
                cJSON *pair = cJSON_CreateArray();
                *sp = 0;
                *e = 0;
                cJSON_AddItemToArray(pair, cJSON_CreateString(s));
                cJSON_AddItemToArray(pair, cJSON_CreateString(sp + 1));
                cJSON_AddItemToArray(merges, pair);
            } else {
                *e = 0;
                cJSON_AddItemToArray(merges, cJSON_CreateString(s));
            }
        }
        s = e + 1;
    }
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    char *text = cJSON_PrintUnformatted(root);
    write_at(out_dir, "tokenizer.json", text, strlen(text));
    free(text);
    cJSON_Delete(root);
    free(v);
    free(m);
    return 0;
}

static void test_gpt2(void) {
    char buf[600], gpt2[700], ref[800];
    const char *dir = tokenizers_dir(buf, sizeof buf);
    snprintf(gpt2, sizeof gpt2, "%s/gpt2", dir);
    snprintf(ref, sizeof ref, "%s/reference.jsonl", gpt2);
    if (access(ref, R_OK) != 0) {
        printf("test_bpe: skipped: GPT-2 reference checks (%s not found; set DPFORMER_TOKENIZERS)\n", ref);
        return;
    }
    dp_error err = {{0}};
    double t0 = dp_now();
    dp_bpe *t = dp_bpe_load(gpt2, &err);
    double t_load = dp_now() - t0;
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    printf("test_bpe: GPT-2 vocabulary loaded in %.3f s (%s)\n", t_load, t->jit ? "PCRE2 JIT" : "PCRE2 without JIT");
    CHECK(dp_bpe_vocab_size(t) == 50257 && dp_bpe_n_merges(t) == 50000);
    CHECK(dp_bpe_token_id(t, "<|endoftext|>") == 50256 && dp_bpe_is_special(t, 50256));
    CHECK(dp_bpe_token_id(t, "Ġthe") == 262 && t->n_specials == 1);
    int total = 0, good = check_reference(t, ref, &total);
    printf("test_bpe: gpt2/reference.jsonl (encoder.json + vocab.bpe): %d of %d lines exact\n", good, total);
    CHECK(total == 230 && good == total);
    /* <|endoftext|>: text by default, the id when allowed */
    ENCODES(t, "<|endoftext|>", 0, 27, 91, 437, 1659, 5239, 91, 29);
    ENCODES(t, "Hello<|endoftext|> world", DP_BPE_ALLOW_SPECIAL, 15496, 50256, 995);
    ENCODES(t, "Hello world", 0, 15496, 995);
    /* random text and bytes on the real vocabulary */
    uint64_t rng = 3;
    char text[512];
    int ok = 1;
    for (int i = 0; i < 2000; i++) ok &= check_text(t, text, random_text(&rng, text, sizeof text, i % 2));
    CHECK(ok);
    check_threads(t, "The quick brown fox jumps over the lazy dog. Don't panic! 日本語 123", 67);
    dp_bpe_free(t);
    /* the same files under Hugging Face's names, and as tokenizer.json (merges as strings, as pairs) */
    const char *hf = fresh_dir("gpt2-hf");
    char a[800], b[800], abs_gpt2[4096];
    if (realpath(gpt2, abs_gpt2) && strlen(abs_gpt2) < sizeof gpt2) strcpy(gpt2, abs_gpt2); /* for symbolic links */
    snprintf(a, sizeof a, "%s/encoder.json", gpt2), snprintf(b, sizeof b, "%s/vocab.json", hf);
    CHECK(symlink(a, b) == 0);
    snprintf(a, sizeof a, "%s/vocab.bpe", gpt2), snprintf(b, sizeof b, "%s/merges.txt", hf);
    CHECK(symlink(a, b) == 0);
    const char *layouts[3] = {hf, fresh_dir("gpt2-json"), fresh_dir("gpt2-json-pairs")};
    CHECK(make_gpt2_tokenizer_json(gpt2, layouts[1], 0) == 0 && make_gpt2_tokenizer_json(gpt2, layouts[2], 1) == 0);
    for (int k = 0; k < 3; k++) {
        t = dp_bpe_load(layouts[k], &err);
        CHECK(t != NULL);
        if (!t) {
            fprintf(stderr, "  %s\n", err.msg);
            continue;
        }
        good = check_reference(t, ref, &total);
        static const char *const what[] = {"vocab.json + merges.txt", "tokenizer.json, merges as \"a b\"",
                                           "tokenizer.json, merges as [a, b]"};
        printf("test_bpe: gpt2/reference.jsonl (%s): %d of %d lines exact\n", what[k], good, total);
        CHECK(total == 230 && good == total && dp_bpe_vocab_size(t) == 50257);
        ENCODES(t, "Hello<|endoftext|> world", DP_BPE_ALLOW_SPECIAL, 15496, 50256, 995);
        dp_bpe_free(t);
    }
    /* BERT's tokenizer.json is WordPiece: refused by name */
    snprintf(a, sizeof a, "%s/bert-base-uncased/tokenizer.json", dir);
    if (access(a, R_OK) == 0) {
        t = dp_bpe_load(a, &err);
        CHECK(!t && strstr(err.msg, "model.type is WordPiece"));
        dp_bpe_free(t);
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s/dpformer-bpe-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror(g_dir);
        return 1;
    }
    test_byte_map();
    test_tiny();
    test_random_merges();
    test_long();
    test_threads_and_cache();
    test_bad_files();
    test_gpt2();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "test_bpe: could not remove %s\n", g_dir);
    return tu_finish("test_bpe");
}
