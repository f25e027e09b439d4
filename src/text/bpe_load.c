/* Reading a byte-level BPE vocabulary (API in dpformer/tokenizer.h, formats in docs/tokenizer.md):
 * OpenAI's encoder.json + vocab.bpe, Hugging Face's vocab.json + merges.txt (the same two formats
 * under other names) and Hugging Face's tokenizer.json. Every format is turned into one list of
 * (string, id) entries and one list of merges, and a single builder checks and indexes them, so the
 * rules (and the messages) are the same whatever the files. A vocabulary that could make the
 * tokenizer ambiguous or incomplete is refused whole: nothing is skipped or repaired. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>

#include "text/bpe_internal.h"

/* ---- small helpers ------------------------------------------------------------------------------- */

/* A vocabulary string for messages: at most ~40 bytes (cut at a character); control bytes and bytes
 * that are not UTF-8 written as \xNN. */
static const char *show(const char *s, size_t n, char *buf, size_t cap) {
    size_t o = 0, i = 0;
    while (i < n && o + 8 < cap && o < 40) {
        unsigned char c = (unsigned char)s[i];
        size_t k = 1;
        if (c >= 0x80) {
            size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            k = i + len <= n && bpe_utf8_valid_prefix((const unsigned char *)s + i, len) == len ? len : 0;
        }
        if (k == 0 || c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02X", c);
            i++;
            continue;
        }
        memcpy(buf + o, s + i, k);
        o += k;
        i += k;
    }
    if (i < n) o += (size_t)snprintf(buf + o, cap - o, "...");
    buf[o] = 0;
    return buf;
}
#define SHOW(s, n) show((s), (n), (char[96]){0}, 96)

/* ---- the common builder -------------------------------------------------------------------------- */

typedef struct {
    const char *s; /* the string (not owned; NUL-terminated or not) */
    size_t len;
    int32_t id;
    uint8_t added; /* from tokenizer.json's added_tokens */
    int64_t index; /* position in its list, for messages */
} vocab_entry;

typedef struct {
    const char *a, *b;
    size_t alen, blen;
    int64_t where; /* line number (text merges) or index (tokenizer.json) */
} merge_entry;

typedef struct {
    const char *vocab_name;  /* file of the vocabulary entries */
    const char *merges_name; /* file of the merges */
    int json;                /* tokenizer.json: entries are "model.vocab", "added_tokens[k]", "model.merges[k]" */
    vocab_entry *v;
    size_t nv, capv;
    merge_entry *m;
    size_t nm, capm;
} builder;

static void add_entry(builder *b, const char *s, size_t len, int32_t id, int added, int64_t index) {
    if (b->nv == b->capv) b->v = dp_realloc(b->v, (b->capv = b->capv ? 2 * b->capv : 1024) * sizeof *b->v);
    b->v[b->nv++] = (vocab_entry){s, len, id, (uint8_t)added, index};
}

static void add_merge(builder *b, const char *a, size_t alen, const char *c, size_t clen, int64_t where) {
    if (b->nm == b->capm) b->m = dp_realloc(b->m, (b->capm = b->capm ? 2 * b->capm : 1024) * sizeof *b->m);
    b->m[b->nm++] = (merge_entry){a, c, alen, clen, where};
}

/* "file: entry 'x'" / "file: added_tokens[3] 'x'" for messages about a vocabulary entry. */
static const char *entry_name(const builder *b, const vocab_entry *e, char *buf, size_t cap) {
    if (e->added) snprintf(buf, cap, "%s: added_tokens[%lld] '%s'", b->vocab_name, (long long)e->index, SHOW(e->s, e->len));
    else if (b->json) snprintf(buf, cap, "%s: model.vocab: entry '%s'", b->vocab_name, SHOW(e->s, e->len));
    else snprintf(buf, cap, "%s: entry '%s'", b->vocab_name, SHOW(e->s, e->len));
    return buf;
}
#define ENTRY(b, e) entry_name((b), (e), (char[200]){0}, 200)

/* "file:line: merge 'a b'" / "file: model.merges[k] 'a b'". */
static const char *merge_name(const builder *b, const merge_entry *m, char *buf, size_t cap) {
    char a[96], c[96];
    show(m->a, m->alen, a, sizeof a);
    show(m->b, m->blen, c, sizeof c);
    if (b->json) snprintf(buf, cap, "%s: model.merges[%lld] '%s %s'", b->merges_name, (long long)m->where, a, c);
    else snprintf(buf, cap, "%s:%lld: merge '%s %s'", b->merges_name, (long long)m->where, a, c);
    return buf;
}
#define MERGE(b, m) merge_name((b), (m), (char[240]){0}, 240)

static int32_t str_lookup(const dp_bpe *t, const char *s, size_t n) {
    for (uint32_t i = (uint32_t)bpe_hash_bytes(s, n) & t->str_mask;; i = (i + 1) & t->str_mask) {
        int32_t id = t->str_tab[i];
        if (id < 0) return -1;
        size_t len = t->str_off[id + 1] - t->str_off[id] - 1;
        if (len == n && memcmp(t->str + t->str_off[id], s, n) == 0) return id;
    }
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* UTF-8 encoding of code point cp into out (at most 4 bytes); returns the length. */
static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | ((cp >> 6) & 63)), out[2] = (char)(0x80 | (cp & 63)), 3;
    out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | ((cp >> 12) & 63));
    out[2] = (char)(0x80 | ((cp >> 6) & 63)), out[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Decode one code point of valid UTF-8 at s (the caller checked validity); *len gets its length. */
static uint32_t utf8_get(const unsigned char *s, size_t *len) {
    if (s[0] < 0x80) return *len = 1, s[0];
    if (s[0] < 0xE0) return *len = 2, (uint32_t)(s[0] & 31) << 6 | (s[1] & 63);
    if (s[0] < 0xF0) return *len = 3, (uint32_t)(s[0] & 15) << 12 | (uint32_t)(s[1] & 63) << 6 | (s[2] & 63);
    return *len = 4, (uint32_t)(s[0] & 7) << 18 | (uint32_t)(s[1] & 63) << 12 | (uint32_t)(s[2] & 63) << 6 | (s[3] & 63);
}

/* The bytes a byte-level string stands for, written to out (at most n bytes): each character is the
 * byte GPT-2's map gives it. Returns the number of bytes, or -1 if some character stands for no byte. */
static int64_t byte_decode(const char *s, size_t n, unsigned char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t k;
        int b = bpe_cp_to_byte(utf8_get((const unsigned char *)s + i, &k));
        if (b < 0) return -1;
        out[o++] = (unsigned char)b;
        i += k;
    }
    return (int64_t)o;
}

/* Special tokens longest text first (then by id), so that the first match at a position is the
 * longest: sorted as (length, id) pairs, since qsort has no context argument. */
static int cmp_len_id(const void *pa, const void *pb) {
    const int64_t *a = pa, *b = pb;
    if (a[0] != b[0]) return a[0] > b[0] ? -1 : 1;
    return (a[1] > b[1]) - (a[1] < b[1]);
}
static void sort_specials(dp_bpe *t) {
    int64_t *p = dp_malloc(2 * ((size_t)t->n_specials + 1) * sizeof *p);
    for (int32_t i = 0; i < t->n_specials; i++) {
        int32_t id = t->specials[i];
        p[2 * i] = t->bytes_off[id + 1] - t->bytes_off[id];
        p[2 * i + 1] = id;
    }
    qsort(p, (size_t)t->n_specials, 2 * sizeof *p, cmp_len_id);
    for (int32_t i = 0; i < t->n_specials; i++) t->specials[i] = (int32_t)p[2 * i + 1];
    free(p);
}

/* Checks the entries and merges of b and builds the tokenizer. */
static dp_bpe *build(builder *b, const char *source, dp_error *err) {
    dp_bpe *t = dp_calloc(1, sizeof *t);
    vocab_entry **by_id = NULL;
    uint8_t *reachable = NULL;
    if (b->nv == 0) {
        dp_fail(err, "%s: the vocabulary is empty", b->vocab_name);
        goto fail;
    }
    /* ids: 0..n-1, each held by one string (an added token may repeat its vocabulary entry exactly) */
    int64_t max_id = -1;
    for (size_t i = 0; i < b->nv; i++) {
        if (b->v[i].len == 0) {
            dp_fail(err, "%s: an empty string is not a token", ENTRY(b, &b->v[i]));
            goto fail;
        }
        if (bpe_utf8_valid_prefix((const unsigned char *)b->v[i].s, b->v[i].len) != b->v[i].len) {
            dp_fail(err, "%s: the string is not valid UTF-8", ENTRY(b, &b->v[i]));
            goto fail;
        }
        if (b->v[i].id > max_id) max_id = b->v[i].id;
    }
    if ((uint64_t)max_id >= b->nv) {
        for (size_t i = 0; i < b->nv; i++)
            if (b->v[i].id == max_id) {
                dp_fail(err, "%s: id %lld leaves ids unused: with %zu entries the ids must be 0..%zu", ENTRY(b, &b->v[i]),
                        (long long)max_id, b->nv, b->nv - 1);
                goto fail;
            }
    }
    int32_t n = (int32_t)(max_id + 1);
    t->n = n;
    by_id = dp_calloc((size_t)n, sizeof *by_id);
    for (size_t i = 0; i < b->nv; i++) {
        vocab_entry *e = &b->v[i], *o = by_id[e->id];
        if (!o) {
            by_id[e->id] = e;
            continue;
        }
        if (e->added && !o->added && e->len == o->len && memcmp(e->s, o->s, e->len) == 0) {
            o->added = 1; /* the added token is this vocabulary entry */
            o->index = e->index;
            continue;
        }
        dp_fail(err, "%s: id %d is also the id of '%s'", ENTRY(b, e), e->id, SHOW(o->s, o->len));
        goto fail;
    }
    for (int32_t i = 0; i < n; i++)
        if (!by_id[i]) {
            dp_fail(err, "%s: no token has id %d (the %d ids must be 0..%d, each used once)", b->vocab_name, i, n, n - 1);
            goto fail;
        }
    /* strings: one blob, and the string -> id table; a string held by two ids is refused */
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) total += by_id[i]->len + 1;
    if (total >= UINT32_MAX) {
        dp_fail(err, "%s: the vocabulary strings take more than 4 GiB", b->vocab_name);
        goto fail;
    }
    t->str = dp_malloc(total);
    t->str_off = dp_malloc(((size_t)n + 1) * sizeof *t->str_off);
    t->str_mask = pow2_at_least(2 * (uint64_t)n) - 1;
    t->str_tab = dp_malloc(((size_t)t->str_mask + 1) * sizeof *t->str_tab);
    memset(t->str_tab, 0xff, ((size_t)t->str_mask + 1) * sizeof *t->str_tab);
    size_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        t->str_off[i] = (uint32_t)off;
        memcpy(t->str + off, by_id[i]->s, by_id[i]->len);
        off += by_id[i]->len;
        t->str[off++] = 0;
    }
    t->str_off[n] = (uint32_t)off;
    for (int32_t i = 0; i < n; i++) {
        const vocab_entry *e = by_id[i];
        uint32_t h = (uint32_t)bpe_hash_bytes(e->s, e->len) & t->str_mask;
        for (;; h = (h + 1) & t->str_mask) {
            int32_t o = t->str_tab[h];
            if (o < 0) {
                t->str_tab[h] = i;
                break;
            }
            if (t->str_off[o + 1] - t->str_off[o] - 1 == e->len && memcmp(t->str + t->str_off[o], e->s, e->len) == 0) {
                dp_fail(err, "%s: the string appears twice (ids %d and %d)", ENTRY(b, e), o, i);
                goto fail;
            }
        }
    }
    /* every byte has its token */
    for (int c = 0; c < 256; c++) {
        char s[4];
        size_t k = utf8_put(bpe_byte_to_cp((unsigned)c), s);
        t->byte_id[c] = str_lookup(t, s, k);
        if (t->byte_id[c] < 0) {
            dp_fail(err, "%s: no token for byte 0x%02X ('%.*s'): a byte-level vocabulary has one for each of the 256 bytes",
                    b->vocab_name, c, (int)k, s);
            goto fail;
        }
    }
    /* merges: parts and result in the vocabulary, parts made of byte characters, no pair twice */
    if (b->nm >= INT32_MAX) {
        dp_fail(err, "%s: too many merges (%zu)", b->merges_name, b->nm);
        goto fail;
    }
    t->n_merges = (int32_t)b->nm;
    t->merge_mask = pow2_at_least(2 * (uint64_t)b->nm + 2) - 1;
    t->merge_key = dp_malloc(((size_t)t->merge_mask + 1) * sizeof *t->merge_key);
    memset(t->merge_key, 0xff, ((size_t)t->merge_mask + 1) * sizeof *t->merge_key);
    t->merge_rank = dp_malloc(((size_t)t->merge_mask + 1) * sizeof *t->merge_rank);
    t->merge_id = dp_malloc(((size_t)t->merge_mask + 1) * sizeof *t->merge_id);
    reachable = dp_calloc((size_t)n, 1);
    for (int c = 0; c < 256; c++) reachable[t->byte_id[c]] = 1;
    size_t cat_cap = 0;
    char *cat = NULL;
    for (size_t r = 0; r < b->nm; r++) {
        const merge_entry *m = &b->m[r];
        int32_t ia = str_lookup(t, m->a, m->alen), ib = str_lookup(t, m->b, m->blen);
        if (ia < 0 || ib < 0) {
            dp_fail(err, "%s: '%s' is not in the vocabulary (%s)", MERGE(b, m), ia < 0 ? SHOW(m->a, m->alen) : SHOW(m->b, m->blen),
                    b->vocab_name);
            free(cat);
            goto fail;
        }
        for (int side = 0; side < 2; side++) {
            const char *s = side ? m->b : m->a;
            size_t len = side ? m->blen : m->alen;
            size_t i = 0;
            while (i < len) {
                size_t k;
                uint32_t cp = utf8_get((const unsigned char *)s + i, &k);
                if (bpe_cp_to_byte(cp) < 0) {
                    dp_fail(err, "%s: '%s' has a character (U+%04X) that stands for no byte, so no merge can make it",
                            MERGE(b, m), SHOW(s, len), (unsigned)cp);
                    free(cat);
                    goto fail;
                }
                i += k;
            }
        }
        if (m->alen + m->blen > cat_cap) cat = dp_realloc(cat, cat_cap = 2 * (m->alen + m->blen));
        memcpy(cat, m->a, m->alen);
        memcpy(cat + m->alen, m->b, m->blen);
        int32_t res = str_lookup(t, cat, m->alen + m->blen);
        if (res < 0) {
            dp_fail(err, "%s: the result '%s' is not in the vocabulary (%s)", MERGE(b, m), SHOW(cat, m->alen + m->blen),
                    b->vocab_name);
            free(cat);
            goto fail;
        }
        uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        uint32_t h = (uint32_t)dp_mix64(key) & t->merge_mask;
        while (t->merge_key[h] != UINT64_MAX && t->merge_key[h] != key) h = (h + 1) & t->merge_mask;
        if (t->merge_key[h] == key) {
            const merge_entry *f = &b->m[t->merge_rank[h]];
            if (b->json) dp_fail(err, "%s: the pair appears twice (first at model.merges[%lld])", MERGE(b, m), (long long)f->where);
            else dp_fail(err, "%s: the pair appears twice (first on line %lld)", MERGE(b, m), (long long)f->where);
            free(cat);
            goto fail;
        }
        t->merge_key[h] = key;
        t->merge_rank[h] = (uint32_t)r;
        t->merge_id[h] = res;
        reachable[res] = 1;
    }
    free(cat);
    /* the bytes of each id: a special token (unreachable by BPE, or added) stands for its text, any
     * other token for the bytes its characters map to */
    t->special = dp_calloc((size_t)n, 1);
    t->bytes_off = dp_malloc(((size_t)n + 1) * sizeof *t->bytes_off);
    t->bytes = dp_malloc(total);
    off = 0;
    for (int32_t i = 0; i < n; i++) {
        const vocab_entry *e = by_id[i];
        t->bytes_off[i] = (uint32_t)off;
        int64_t k = reachable[i] ? byte_decode(e->s, e->len, t->bytes + off) : -1;
        if (reachable[i] && k < 0) { /* cannot happen: merge parts were checked */
            dp_fail(err, "%s: internal error: a merge result with characters that stand for no byte", ENTRY(b, e));
            goto fail;
        }
        if (e->added && reachable[i] && ((size_t)k != e->len || memcmp(t->bytes + off, e->s, e->len) != 0)) {
            dp_fail(err, "%s: an added token that BPE also produces must stand for the same text (here '%s' as BPE output)",
                    ENTRY(b, e), SHOW((const char *)t->bytes + off, (size_t)k));
            goto fail;
        }
        if (!reachable[i] || e->added) {
            t->special[i] = 1;
            t->n_specials++;
            memcpy(t->bytes + off, e->s, e->len);
            k = (int64_t)e->len;
        }
        off += (size_t)k;
    }
    t->bytes_off[n] = (uint32_t)off;
    t->specials = dp_malloc(((size_t)t->n_specials + 1) * sizeof *t->specials);
    int32_t ns = 0;
    for (int32_t i = 0; i < n; i++)
        if (t->special[i]) {
            t->specials[ns++] = i;
            t->special_first[t->bytes[t->bytes_off[i]]] = 1;
        }
    sort_specials(t);
    t->source = strdup(source);
    if (!t->source) abort();
    if (bpe_prepare(t, err)) goto fail;
    free(by_id);
    free(reachable);
    return t;
fail:
    free(by_id);
    free(reachable);
    dp_bpe_free(t);
    return NULL;
}

/* ---- JSON ---------------------------------------------------------------------------------------- */

/* Parse a whole JSON text: a syntax error is reported with its line and column; NUL bytes and \u0000
 * escapes are refused (cJSON's strings end at a NUL, which would silently shorten a token). */
static cJSON *parse_json(const char *buf, size_t len, const char *name, dp_error *err) {
    const char *nul = memchr(buf, 0, len);
    if (nul) {
        dp_fail(err, "%s: NUL byte at offset %zu (not a JSON text)", name, (size_t)(nul - buf));
        return NULL;
    }
    for (size_t i = 0; i + 1 < len; i++)
        if (buf[i] == '\\') {
            if (buf[i + 1] == 'u' && i + 5 < len && memcmp(buf + i + 2, "0000", 4) == 0) {
                size_t line = 1;
                for (size_t j = 0; j < i; j++) line += buf[j] == '\n';
                dp_fail(err, "%s:%zu: the escape \\u0000 (a NUL character) cannot be part of a token", name, line);
                return NULL;
            }
            i++;
        }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (root && end) {
        while (end < buf + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
        if (end < buf + len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        size_t at = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : len;
        size_t line = 1, col = 1;
        for (size_t j = 0; j < at; j++) {
            if (buf[j] == '\n') line++, col = 1;
            else col++;
        }
        if (len == 0) dp_fail(err, "%s: empty file (expected a JSON object)", name);
        else dp_fail(err, "%s:%zu: JSON syntax error at column %zu (or text after the JSON value)", name, line, col);
        return NULL;
    }
    return root;
}

/* An id in a JSON number: an integer 0 .. 2^31 - 2. */
static int json_id(const cJSON *v, int32_t *id) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= INT32_MAX - 1) || d != floor(d)) return -1;
    *id = (int32_t)d;
    return 0;
}

/* The entries of a vocabulary object {"string": id, ...}. `field` names it in messages. */
static int read_vocab_object(builder *b, const cJSON *obj, const char *field, dp_error *err) {
    if (!cJSON_IsObject(obj))
        return dp_fail(err, "%s: %s must be a JSON object mapping each token to its id", b->vocab_name, field);
    int64_t k = 0;
    for (const cJSON *c = obj->child; c; c = c->next, k++) {
        int32_t id;
        const char *s = c->string ? c->string : "";
        if (json_id(c, &id)) {
            char *v = cJSON_PrintUnformatted(c);
            dp_fail(err, "%s: %s%sentry '%s': the id must be an integer 0..2147483646, got %.40s", b->vocab_name, b->json ? field : "",
                    b->json ? ": " : "", SHOW(s, strlen(s)), v ? v : "?");
            free(v);
            return -1;
        }
        add_entry(b, s, strlen(s), id, 0, k);
    }
    return 0;
}

/* ---- the formats --------------------------------------------------------------------------------- */

/* Merges text (vocab.bpe / merges.txt): an optional first line "#version...", then one merge a line,
 * "a b" (one space), rank = order; CRLF accepted; empty lines only at the end. */
static int read_merges_text(builder *b, const char *buf, size_t len, dp_error *err) {
    const char *p = buf, *end = buf + len;
    int64_t line = 0;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        const char *next = e < end ? e + 1 : end;
        line++;
        const char *le = e;
        if (le > p && le[-1] == '\r') le--;
        if (line == 1 && le - p >= 8 && memcmp(p, "#version", 8) == 0) {
            p = next;
            continue;
        }
        if (le == p) { /* an empty line: only blank lines may follow */
            for (const char *q = next; q < end; q++)
                if (*q != '\n' && *q != '\r')
                    return dp_fail(err, "%s:%lld: empty line among the merges (each line must be 'a b')", b->merges_name,
                                   (long long)line);
            break;
        }
        const char *sp = memchr(p, ' ', (size_t)(le - p));
        if (!sp || sp == p || sp + 1 == le || memchr(sp + 1, ' ', (size_t)(le - sp - 1)))
            return dp_fail(err, "%s:%lld: expected two tokens separated by one space, got '%s'", b->merges_name, (long long)line,
                           SHOW(p, (size_t)(le - p)));
        if (bpe_utf8_valid_prefix((const unsigned char *)p, (size_t)(le - p)) != (size_t)(le - p))
            return dp_fail(err, "%s:%lld: the line is not valid UTF-8", b->merges_name, (long long)line);
        add_merge(b, p, (size_t)(sp - p), sp + 1, (size_t)(le - sp - 1), line);
        p = next;
    }
    return 0;
}

dp_bpe *dp_bpe_from_vocab_merges(const char *vocab_json, size_t vocab_len, const char *vocab_name, const char *merges,
                                 size_t merges_len, const char *merges_name, dp_error *err) {
    builder b = {.vocab_name = vocab_name ? vocab_name : "vocab.json", .merges_name = merges_name ? merges_name : "merges.txt"};
    dp_bpe *t = NULL;
    cJSON *root = parse_json(vocab_json, vocab_len, b.vocab_name, err);
    if (!root) return NULL;
    if (read_vocab_object(&b, root, "the file", err) == 0 && read_merges_text(&b, merges, merges_len, err) == 0) {
        char source[1024];
        snprintf(source, sizeof source, "%s + %s", b.vocab_name, b.merges_name);
        t = build(&b, source, err);
    }
    cJSON_Delete(root);
    free(b.v);
    free(b.m);
    return t;
}

/* tokenizer.json: the parts that change the ids must be what GPT-2's tokenizer is; anything else is
 * refused by name rather than ignored (a normaliser, another pre-tokeniser, BPE options). */
static int check_tokenizer_json(const cJSON *root, const char *name, dp_error *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return dp_fail(err, "%s: no \"model\" object (not a tokenizers JSON file?)", name);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        return dp_fail(err, "%s: model.type is %s, not \"BPE\" (only byte-level BPE models are read)", name,
                       cJSON_IsString(type) ? type->valuestring : "not a string");
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(model, "dropout")) && !cJSON_IsNull(x) && !(cJSON_IsNumber(x) && x->valuedouble == 0))
        return dp_fail(err, "%s: model.dropout: BPE dropout is not supported (must be null)", name);
    static const char *const empty_str[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++)
        if ((x = cJSON_GetObjectItemCaseSensitive(model, empty_str[i])) && !cJSON_IsNull(x) &&
            !(cJSON_IsString(x) && x->valuestring[0] == 0))
            return dp_fail(err, "%s: model.%s is not supported (must be empty or null)", name, empty_str[i]);
    static const char *const false_flags[] = {"byte_fallback", "ignore_merges"};
    for (int i = 0; i < 2; i++)
        if ((x = cJSON_GetObjectItemCaseSensitive(model, false_flags[i])) && !cJSON_IsFalse(x) && !cJSON_IsNull(x))
            return dp_fail(err, "%s: model.%s: only false is supported (GPT-2's value)", name, false_flags[i]);
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "normalizer")) && !cJSON_IsNull(x)) {
        const cJSON *nt = cJSON_GetObjectItemCaseSensitive(x, "type");
        return dp_fail(err, "%s: normalizer %s is not supported (GPT-2 has none: must be null)", name,
                       cJSON_IsString(nt) ? nt->valuestring : "(unnamed)");
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pre, "type");
    if (!cJSON_IsObject(pre) || !cJSON_IsString(pt) || strcmp(pt->valuestring, "ByteLevel") != 0)
        return dp_fail(err, "%s: pre_tokenizer must be {\"type\": \"ByteLevel\", ...} (GPT-2's), got %s", name,
                       cJSON_IsString(pt) ? pt->valuestring : cJSON_IsNull(pre) || !pre ? "none" : "another value");
    if ((x = cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")) && cJSON_IsTrue(x))
        return dp_fail(err, "%s: pre_tokenizer.add_prefix_space true is not supported (GPT-2 uses false)", name);
    if ((x = cJSON_GetObjectItemCaseSensitive(pre, "use_regex")) && cJSON_IsFalse(x))
        return dp_fail(err, "%s: pre_tokenizer.use_regex false is not supported (GPT-2 splits with its pattern)", name);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(dec, "type");
    if (dec && !cJSON_IsNull(dec) && !(cJSON_IsString(dt) && strcmp(dt->valuestring, "ByteLevel") == 0))
        return dp_fail(err, "%s: decoder %s is not supported (must be ByteLevel or null)", name,
                       cJSON_IsString(dt) ? dt->valuestring : "(unnamed)");
    return 0;
}

dp_bpe *dp_bpe_from_tokenizer_json(const char *json, size_t len, const char *name, dp_error *err) {
    builder b = {.vocab_name = name ? name : "tokenizer.json", .merges_name = name ? name : "tokenizer.json", .json = 1};
    dp_bpe *t = NULL;
    cJSON *root = parse_json(json, len, b.vocab_name, err);
    if (!root) return NULL;
    if (!cJSON_IsObject(root)) {
        dp_fail(err, "%s: expected a JSON object (a tokenizers JSON file)", b.vocab_name);
        goto done;
    }
    if (check_tokenizer_json(root, b.vocab_name, err)) goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (read_vocab_object(&b, cJSON_GetObjectItemCaseSensitive(model, "vocab"), "model.vocab", err)) goto done;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added)) {
        if (!cJSON_IsArray(added)) {
            dp_fail(err, "%s: added_tokens must be an array", b.vocab_name);
            goto done;
        }
        int64_t k = 0;
        for (const cJSON *a = added->child; a; a = a->next, k++) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id"), *content = cJSON_GetObjectItemCaseSensitive(a, "content");
            int32_t v;
            if (!cJSON_IsObject(a) || !cJSON_IsString(content) || json_id(id, &v)) {
                dp_fail(err, "%s: added_tokens[%lld]: expected {\"id\": integer 0..2147483646, \"content\": string, ...}",
                        b.vocab_name, (long long)k);
                goto done;
            }
            add_entry(&b, content->valuestring, strlen(content->valuestring), v, 1, k);
        }
    }
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) {
        dp_fail(err, "%s: model.merges must be an array of \"a b\" strings or [\"a\", \"b\"] pairs", b.vocab_name);
        goto done;
    }
    int64_t k = 0;
    for (const cJSON *m = merges->child; m; m = m->next, k++) {
        const char *a = NULL, *c = NULL;
        size_t alen = 0, clen = 0;
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring, *sp = strchr(s, ' ');
            if (sp && sp != s && sp[1] && !strchr(sp + 1, ' ')) a = s, alen = (size_t)(sp - s), c = sp + 1, clen = strlen(c);
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            a = m->child->valuestring, alen = strlen(a), c = m->child->next->valuestring, clen = strlen(c);
            if (!alen || !clen) a = NULL;
        }
        if (!a) {
            char *v = cJSON_PrintUnformatted(m);
            dp_fail(err, "%s: model.merges[%lld]: expected \"a b\" (two tokens, one space) or [\"a\", \"b\"], got %s",
                    b.vocab_name, (long long)k, v ? SHOW(v, strlen(v)) : "?");
            free(v);
            goto done;
        }
        add_merge(&b, a, alen, c, clen, k);
    }
    t = build(&b, b.vocab_name, err);
done:
    cJSON_Delete(root);
    free(b.v);
    free(b.m);
    return t;
}

/* ---- files --------------------------------------------------------------------------------------- */

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static dp_bpe *load_pair(const char *vocab_path, const char *merges_path, dp_error *err) {
    char *v = NULL, *m = NULL;
    size_t vn = 0, mn = 0;
    dp_bpe *t = NULL;
    if (dp_read_file(vocab_path, &v, &vn, err) == 0 && dp_read_file(merges_path, &m, &mn, err) == 0)
        t = dp_bpe_from_vocab_merges(v, vn, vocab_path, m, mn, merges_path, err);
    free(v);
    free(m);
    return t;
}

static dp_bpe *load_tokenizer_json(const char *path, dp_error *err) {
    char *j = NULL;
    size_t n = 0;
    if (dp_read_file(path, &j, &n, err)) return NULL;
    dp_bpe *t = dp_bpe_from_tokenizer_json(j, n, path, err);
    free(j);
    return t;
}

dp_bpe *dp_bpe_load(const char *path, dp_error *err) {
    struct stat st;
    if (stat(path, &st) != 0) {
        dp_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISREG(st.st_mode)) {
        size_t n = strlen(path);
        if (n >= 5 && strcmp(path + n - 5, ".json") == 0) return load_tokenizer_json(path, err);
        dp_fail(err, "%s: not a folder or a tokenizer.json file (give the folder holding the tokenizer files)", path);
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        dp_fail(err, "%s: not a folder", path);
        return NULL;
    }
    size_t n = strlen(path) + 32;
    char *p[5];
    static const char *const names[5] = {"tokenizer.json", "vocab.json", "merges.txt", "encoder.json", "vocab.bpe"};
    int have[5];
    for (int i = 0; i < 5; i++) {
        p[i] = dp_malloc(n);
        snprintf(p[i], n, "%s/%s", path, names[i]);
        have[i] = is_file(p[i]);
    }
    dp_bpe *t = NULL;
    if (have[0]) t = load_tokenizer_json(p[0], err);
    else if (have[1] && have[2]) t = load_pair(p[1], p[2], err);
    else if (have[3] && have[4]) t = load_pair(p[3], p[4], err);
    else if (have[1] != have[2] || have[3] != have[4]) {
        int i = have[1] != have[2] ? (have[1] ? 1 : 2) : (have[3] ? 3 : 4);
        int other = i == 1 ? 2 : i == 2 ? 1 : i == 3 ? 4 : 3;
        dp_fail(err, "%s: has %s but no %s (the two go together)", path, names[i], names[other]);
    } else
        dp_fail(err, "%s: no tokenizer files: expected tokenizer.json, vocab.json + merges.txt, or encoder.json + vocab.bpe",
                path);
    for (int i = 0; i < 5; i++) free(p[i]);
    return t;
}

/* ---- the vocabulary ------------------------------------------------------------------------------- */

int32_t dp_bpe_vocab_size(const dp_bpe *t) { return t->n; }
int32_t dp_bpe_n_merges(const dp_bpe *t) { return t->n_merges; }
int32_t dp_bpe_token_id(const dp_bpe *t, const char *token) { return token ? str_lookup(t, token, strlen(token)) : -1; }
const char *dp_bpe_token(const dp_bpe *t, int32_t id) { return id >= 0 && id < t->n ? t->str + t->str_off[id] : NULL; }
int dp_bpe_is_special(const dp_bpe *t, int32_t id) { return id >= 0 && id < t->n && t->special[id]; }
const char *dp_bpe_source(const dp_bpe *t) { return t->source; }
