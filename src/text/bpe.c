/* GPT-2's byte-level BPE: encoding and decoding (API in dpformer/tokenizer.h, rules in
 * docs/tokenizer.md; the files are read in bpe_load.c).
 *
 * Encoding is OpenAI's encoder.py, step for step: the text is split into pre-tokens by GPT-2's
 * pattern, each pre-token's bytes become one token each (every byte has a token), and merges are
 * applied by rank until none applies. Three things make it fast without changing a single id:
 *   - an ASCII fast path decides most pre-tokens without PCRE2; it hands any position where a
 *     non-ASCII character could change the answer to the compiled pattern (the tests compare the
 *     two on every input they make);
 *   - the merge loop keeps its candidate pairs in a heap, O(n log n) in the pre-token length rather
 *     than encoder.py's O(n^2), with the same passes (all occurrences of the lowest-ranked pair,
 *     left to right, then the next rank), so even a pathological merge list gives encoder.py's ids;
 *   - a bounded cache maps pre-tokens already seen to their ids.
 * Invalid UTF-8 never stops encoding: the pattern runs on a copy where each invalid byte is a
 * control character, so it splits like a symbol, and the original bytes are what get encoded.
 * What it is not: a trainer of merges, a normaliser, or a general Hugging Face pipeline. */
#define _POSIX_C_SOURCE 200809L

#include "text/bpe_internal.h"

/* ---- GPT-2's byte map, UTF-8 --------------------------------------------------------------------- */

/* bytes_to_unicode(): the 188 printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for themselves;
 * the other 68 (0..0x20, 0x7F..0xA0, 0xAD), in increasing order, for U+0100 onwards. */
uint32_t bpe_byte_to_cp(unsigned b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    if (b <= 0x20) return 256 + b;
    if (b <= 0xA0) return 256 + 33 + (b - 0x7F);
    return 256 + 67; /* 0xAD */
}

int bpe_cp_to_byte(uint32_t cp) {
    if (cp < 256) return bpe_byte_to_cp(cp) == cp ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(cp - 256 - 33 + 0x7F);
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

/* Well-formed UTF-8 (Unicode table 3-7): no overlong forms, no surrogates, nothing above U+10FFFF. */
size_t bpe_utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return i;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
            if (i + 2 >= n || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0) != 0x80) return i;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
            if (i + 3 >= n || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return i;
            i += 4;
        } else {
            return i;
        }
    }
    return n;
}

/* ---- workers: match data, cache, scratch ---------------------------------------------------------- */

static void worker_init(const dp_bpe *t, bpe_worker *w, int cached) {
    w->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!w->md) abort();
    if (cached) { /* the arena at its bound at once: pages cost memory only once written, and it never moves */
        w->cache.slots = dp_calloc(BPE_CACHE_SLOTS, sizeof *w->cache.slots);
        w->cache.arena = dp_malloc(BPE_CACHE_MAX_ARENA);
        w->cache.cap = BPE_CACHE_MAX_ARENA;
    }
    w->ready = 1;
}

static void worker_release_scratch(bpe_worker *w) {
    free(w->copy);
    free(w->tok);
    free(w->prev);
    free(w->next);
    free(w->heap);
    free(w->pend);
    w->copy = NULL, w->copy_cap = 0;
    w->tok = NULL, w->prev = w->next = NULL, w->heap = w->pend = NULL, w->work_cap = 0;
}

static void worker_free(bpe_worker *w) {
    pcre2_match_data_free(w->md);
    free(w->cache.slots);
    free(w->cache.arena);
    worker_release_scratch(w);
    w->md = NULL;
    w->cache = (bpe_cache){0};
    w->ready = 0;
}

int bpe_prepare(dp_bpe *t, dp_error *err) {
    int code;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)BPE_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &code, &at,
                          NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return dp_fail(err, "pre-tokenisation pattern: PCRE2 cannot compile it at offset %zu: %s", (size_t)at, (char *)msg);
    }
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    for (int k = 0; k < BPE_WORKERS; k++) atomic_flag_clear(&t->workers[k].busy);
    return 0;
}

/* Take a free worker of the handle; if all are busy (more than BPE_WORKERS threads encoding at once),
 * make a temporary one without a cache in *tmp. */
static bpe_worker *worker_acquire(const dp_bpe *t, bpe_worker *tmp) {
    dp_bpe *m = (dp_bpe *)t; /* the workers are the handle's only mutable state, owned while taken */
    for (int k = 0; k < BPE_WORKERS; k++) {
        bpe_worker *w = &m->workers[k];
        if (!atomic_flag_test_and_set_explicit(&w->busy, memory_order_acquire)) {
            if (!w->ready) worker_init(t, w, 1);
            return w;
        }
    }
    memset(tmp, 0, sizeof *tmp);
    worker_init(t, tmp, 0);
    return tmp;
}

static void worker_return(bpe_worker *w, bpe_worker *tmp) {
    if (w == tmp) {
        worker_free(tmp);
        return;
    }
    if (w->work_cap > (1u << 16) || w->copy_cap > (1u << 20)) worker_release_scratch(w); /* after a huge input */
    atomic_flag_clear_explicit(&w->busy, memory_order_release);
}

static void reserve_work(bpe_worker *w, size_t n) {
    if (n <= w->work_cap) return;
    size_t c = DP_MAX(n, 2 * w->work_cap);
    w->tok = dp_realloc(w->tok, c * sizeof *w->tok);
    w->prev = dp_realloc(w->prev, c * sizeof *w->prev);
    w->next = dp_realloc(w->next, c * sizeof *w->next);
    w->heap = dp_realloc(w->heap, 3 * c * sizeof *w->heap);
    w->pend = dp_realloc(w->pend, 2 * c * sizeof *w->pend);
    w->work_cap = c;
}

static inline void push_id(dp_bpe_ids *out, int32_t id) {
    if (out->n == out->cap) out->ids = dp_realloc(out->ids, (out->cap = out->cap ? 2 * out->cap : 64) * sizeof *out->ids);
    out->ids[out->n++] = id;
}

/* ---- the merge loop ------------------------------------------------------------------------------- */

static void heap_push(uint64_t *h, size_t *n, uint64_t x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= x) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], x = h[--*n];
    size_t i = 0, m = *n;
    if (m == 0) return top;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= x) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

/* The ids of one pre-token p[0..n) (1 <= n < 2^32), appended to out. encoder.py's bpe(): repeatedly
 * take the lowest-ranked pair present and merge all its occurrences left to right (a pass), until no
 * pair has a merge. Here every candidate pair sits in a heap keyed (rank, position); a pass pops the
 * entries of one rank in position order, skipping those an earlier merge invalidated, and the pairs
 * its merges create wait in `pend` until the pass ends (as encoder.py rebuilds its pairs only between
 * passes). A pair's rank identifies it (no pair has two ranks), so an entry is still valid exactly when
 * the pair now at its position has its rank. */
static void bpe_merge(const dp_bpe *t, bpe_worker *w, const unsigned char *p, size_t n, dp_bpe_ids *out) {
    reserve_work(w, n);
    int32_t *tok = w->tok;
    uint32_t *prev = w->prev, *next = w->next;
    uint64_t *heap = w->heap, *pend = w->pend;
    size_t nh = 0, np = 0;
    uint32_t rank;
    int32_t id;
    for (size_t i = 0; i < n; i++) {
        tok[i] = t->byte_id[p[i]];
        prev[i] = i ? (uint32_t)(i - 1) : UINT32_MAX;
        next[i] = (uint32_t)(i + 1);
    }
    for (size_t i = 0; i + 1 < n; i++)
        if (bpe_merge_find(t, tok[i], tok[i + 1], &rank, &id)) heap_push(heap, &nh, (uint64_t)rank << 32 | i);
    uint64_t pass = UINT64_MAX; /* rank of the pass under way */
    for (;;) {
        if (nh == 0 || (np > 0 && heap[0] >> 32 != pass)) { /* the pass is over */
            if (np == 0) break;
            for (size_t k = 0; k < np; k++) heap_push(heap, &nh, pend[k]);
            np = 0;
            pass = UINT64_MAX;
            continue;
        }
        uint64_t top = heap_pop(heap, &nh);
        uint32_t r = (uint32_t)(top >> 32), pos = (uint32_t)top, nx;
        if (tok[pos] < 0 || (nx = next[pos]) >= n || !bpe_merge_find(t, tok[pos], tok[nx], &rank, &id) || rank != r)
            continue; /* stale */
        pass = r;
        tok[pos] = id;
        tok[nx] = -1;
        uint32_t nn = next[nx];
        next[pos] = nn;
        if (nn < n) prev[nn] = pos;
        int32_t unused;
        if (prev[pos] != UINT32_MAX && bpe_merge_find(t, tok[prev[pos]], id, &rank, &unused))
            pend[np++] = (uint64_t)rank << 32 | prev[pos];
        if (nn < n && bpe_merge_find(t, id, tok[nn], &rank, &unused)) pend[np++] = (uint64_t)rank << 32 | pos;
    }
    for (size_t i = 0; i < n; i = next[i]) push_id(out, tok[i]);
}

/* ---- the word cache ------------------------------------------------------------------------------- */

static void cache_clear(bpe_cache *c) {
    memset(c->slots, 0, BPE_CACHE_SLOTS * sizeof *c->slots);
    c->used = 0;
    c->entries = 0;
    c->clears++;
}

/* Store ids[0..k) for the pre-token p[0..n) (hash h, not present). Clears the cache when it is full
 * (an entry takes at most 256 + 4 * 255 bytes, far below the arena's size). */
static void cache_insert(bpe_cache *c, uint64_t h, const unsigned char *p, size_t n, const int32_t *ids, size_t k) {
    size_t need = ((n + 3) & ~(size_t)3) + 4 * k;
    if (c->entries >= BPE_CACHE_MAX_ENTRIES || c->used + need > BPE_CACHE_MAX_ARENA) cache_clear(c);
    uint32_t i = (uint32_t)h & (BPE_CACHE_SLOTS - 1);
    while (c->slots[i].hash) i = (i + 1) & (BPE_CACHE_SLOTS - 1);
    c->slots[i] = (bpe_cache_entry){h, (uint32_t)c->used, (uint16_t)n, (uint16_t)k};
    memcpy(c->arena + c->used, p, n);
    memcpy(c->arena + c->used + ((n + 3) & ~(size_t)3), ids, 4 * k);
    c->used += need;
    c->entries++;
}

/* The ids of one pre-token (its original bytes), appended to out. */
static void encode_piece(const dp_bpe *t, bpe_worker *w, const unsigned char *p, size_t n, dp_bpe_ids *out) {
    if (n == 1) {
        push_id(out, t->byte_id[p[0]]);
        return;
    }
    bpe_cache *c = &w->cache;
    if (!c->slots || n > BPE_CACHE_MAX_KEY) {
        bpe_merge(t, w, p, n, out);
        return;
    }
    uint64_t h = bpe_hash_bytes(p, n) | 1;
    for (uint32_t i = (uint32_t)h & (BPE_CACHE_SLOTS - 1);; i = (i + 1) & (BPE_CACHE_SLOTS - 1)) {
        const bpe_cache_entry *e = &c->slots[i];
        if (!e->hash) break;
        if (e->hash == h && e->klen == n && memcmp(c->arena + e->off, p, n) == 0) {
            if (out->cap - out->n < e->nids)
                out->ids = dp_realloc(out->ids, (out->cap = DP_MAX(2 * out->cap, out->n + e->nids)) * sizeof *out->ids);
            memcpy(out->ids + out->n, c->arena + e->off + ((n + 3) & ~(size_t)3), 4 * (size_t)e->nids);
            out->n += e->nids;
            c->hits++;
            return;
        }
    }
    c->misses++;
    size_t start = out->n;
    bpe_merge(t, w, p, n, out);
    cache_insert(c, h, p, n, out->ids + start, out->n - start);
}

/* ---- pre-tokenisation ----------------------------------------------------------------------------- */

/* Classes of the ASCII characters under the pattern: L letter (\p{L}), N digit (\p{N}), W white space
 * (White_Space), O anything else. */
static const char ASCII_CLASS[129] = "OOOOOOOOOWWWWWOOOOOOOOOOOOOOOOOOWOOOOOOOOOOOOOOONNNNNNNNNNOOOOOOOLLLLLLLLLLLLLLLLLLLLLLLLLLOOOOOO"
                                     "LLLLLLLLLLLLLLLLLLLLLLLLLLOOOOO";
#define CLASS(c) ((c) < 0x80 ? ASCII_CLASS[c] : 'X')

/* The end of the pre-token starting at s[i], decided from ASCII characters alone, or 0 when a
 * non-ASCII character ('X') could change it. The pattern's alternatives, in order: a contraction;
 * an optional space then letters, digits or other characters; white space not followed by a non-space
 * (all of it at the end of the text, all but its last character before a non-space); white space. */
static size_t fast_end(const unsigned char *s, size_t n, size_t i) {
    unsigned c = s[i];
    if (c == '\'' && i + 1 < n) {
        unsigned c1 = s[i + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
        if (i + 2 < n && (((c1 == 'r' || c1 == 'v') && s[i + 2] == 'e') || (c1 == 'l' && s[i + 2] == 'l'))) return i + 3;
    }
    char k = CLASS(c);
    size_t j = i + 1;
    if (c == ' ' && j < n) {
        char k1 = CLASS(s[j]);
        if (k1 == 'X') return 0;
        if (k1 != 'W') k = k1, j++;
    }
    if (k == 'X') return 0;
    while (j < n && CLASS(s[j]) == k) j++;
    if (j < n && CLASS(s[j]) == 'X') return 0;
    if (k != 'W' || j == n) return j;
    return j - i >= 2 ? j - 1 : j;
}

/* The end of the pre-token starting at s[i] by the compiled pattern; 0 on a PCRE2 error. */
static size_t pattern_end(const dp_bpe *t, bpe_worker *w, const unsigned char *s, size_t n, size_t i, int *code) {
    int rc = t->jit ? pcre2_jit_match(t->re, s, n, i, PCRE2_NO_UTF_CHECK, w->md, NULL)
                    : pcre2_match(t->re, s, n, i, PCRE2_NO_UTF_CHECK, w->md, NULL);
    *code = rc;
    if (rc <= 0) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
    return ov[0] == i && ov[1] > i ? ov[1] : 0;
}

static int pattern_error(dp_error *err, int code, size_t at) {
    PCRE2_UCHAR msg[256];
    if (code < 0) pcre2_get_error_message(code, msg, sizeof msg);
    else snprintf((char *)msg, sizeof msg, "no match");
    return dp_fail(err, "pre-tokenisation failed at byte %zu: PCRE2: %s", at, (char *)msg);
}

/* The text the pattern runs on (*m): s itself if it is valid UTF-8, else a copy in which each byte
 * that is not part of a well-formed sequence is BPE_INVALID_STANDIN (same length, same offsets).
 * Fails with err for invalid UTF-8 under DP_BPE_STRICT_UTF8. */
static int pattern_text(bpe_worker *w, const unsigned char *s, size_t n, unsigned flags, size_t base,
                        const unsigned char **m, dp_error *err) {
    size_t v = bpe_utf8_valid_prefix(s, n);
    *m = s;
    if (v == n) return 0;
    if (flags & DP_BPE_STRICT_UTF8) return dp_fail(err, "invalid UTF-8 at byte %zu (0x%02X)", base + v, s[v]);
    if (n > w->copy_cap) w->copy = dp_realloc(w->copy, w->copy_cap = DP_MAX(n, 2 * w->copy_cap));
    memcpy(w->copy, s, n);
    for (size_t i = v; i < n;) {
        w->copy[i++] = BPE_INVALID_STANDIN;
        i += bpe_utf8_valid_prefix(s + i, n - i);
    }
    *m = w->copy;
    return 0;
}

/* Encode s[0..n), a part of the text without special tokens that starts at byte `base` of it. */
static int encode_segment(const dp_bpe *t, bpe_worker *w, const unsigned char *s, size_t n, unsigned flags, size_t base,
                          dp_bpe_ids *out, dp_error *err) {
    const unsigned char *m;
    if (pattern_text(w, s, n, flags, base, &m, err)) return -1;
    for (size_t i = 0; i < n;) {
        size_t e = fast_end(m, n, i);
        if (!e) {
            int code;
            if (!(e = pattern_end(t, w, m, n, i, &code))) return pattern_error(err, code, base + i);
        }
        if (e - i >= UINT32_MAX)
            return dp_fail(err, "a single pre-token of %zu bytes at byte %zu (the limit is 4 GiB)", e - i, base + i);
        encode_piece(t, w, s + i, e - i, out);
        i = e;
    }
    return 0;
}

/* The special token whose text starts s[0..n) (the longest), or -1. */
static int32_t special_at(const dp_bpe *t, const unsigned char *s, size_t n) {
    for (int32_t k = 0; k < t->n_specials; k++) {
        int32_t id = t->specials[k];
        size_t len = t->bytes_off[id + 1] - t->bytes_off[id];
        if (len <= n && memcmp(t->bytes + t->bytes_off[id], s, len) == 0) return id;
    }
    return -1;
}

int dp_bpe_encode(const dp_bpe *t, const char *text, size_t len, unsigned flags, dp_bpe_ids *out, dp_error *err) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n0 = out->n, start = 0;
    bpe_worker tmp, *w = worker_acquire(t, &tmp);
    int rc = 0;
    if ((flags & DP_BPE_ALLOW_SPECIAL) && t->n_specials > 0) {
        for (size_t i = 0; i < len && !rc; i++) {
            if (!t->special_first[s[i]]) continue;
            int32_t id = special_at(t, s + i, len - i);
            if (id < 0) continue;
            rc = encode_segment(t, w, s + start, i - start, flags, start, out, err);
            push_id(out, id);
            i += t->bytes_off[id + 1] - t->bytes_off[id] - 1;
            start = i + 1;
        }
    }
    if (!rc) rc = encode_segment(t, w, s + start, len - start, flags, start, out, err);
    worker_return(w, &tmp);
    if (rc) out->n = n0;
    return rc;
}

/* ---- decoding ------------------------------------------------------------------------------------- */

int dp_bpe_decode(const dp_bpe *t, const int32_t *ids, size_t n, unsigned flags, dp_bpe_text *out, dp_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n)
            return dp_fail(err, "id %d at position %zu is not in the vocabulary (ids 0..%d)", id, i, t->n - 1);
        if (!((flags & DP_BPE_SKIP_SPECIAL) && t->special[id])) total += t->bytes_off[id + 1] - t->bytes_off[id];
    }
    if (out->n + total + 1 > out->cap)
        out->data = dp_realloc(out->data, out->cap = DP_MAX(out->n + total + 1, 2 * out->cap));
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if ((flags & DP_BPE_SKIP_SPECIAL) && t->special[id]) continue;
        size_t k = t->bytes_off[id + 1] - t->bytes_off[id];
        memcpy(out->data + out->n, t->bytes + t->bytes_off[id], k);
        out->n += k;
    }
    out->data[out->n] = 0;
    return 0;
}

/* ---- the rest ------------------------------------------------------------------------------------- */

void dp_bpe_free(dp_bpe *t) {
    if (!t) return;
    for (int k = 0; k < BPE_WORKERS; k++)
        if (t->workers[k].ready) worker_free(&t->workers[k]);
    pcre2_code_free(t->re);
    free(t->str);
    free(t->str_off);
    free(t->bytes);
    free(t->bytes_off);
    free(t->special);
    free(t->str_tab);
    free(t->merge_key);
    free(t->merge_rank);
    free(t->merge_id);
    free(t->specials);
    free(t->source);
    free(t);
}

int64_t bpe_test_pretokenize(const dp_bpe *t, const char *text, size_t len, int fast, size_t **ends) {
    const unsigned char *s = (const unsigned char *)text;
    bpe_worker tmp, *w = worker_acquire(t, &tmp);
    size_t k = 0, cap = 16;
    *ends = dp_malloc(cap * sizeof **ends);
    for (size_t i = 0; i < len;) {
        size_t e = fast ? fast_end(s, len, i) : 0;
        int code;
        if (!e && !(e = pattern_end(t, w, s, len, i, &code))) {
            worker_return(w, &tmp);
            return -1;
        }
        if (k == cap) *ends = dp_realloc(*ends, (cap *= 2) * sizeof **ends);
        (*ends)[k++] = e;
        i = e;
    }
    worker_return(w, &tmp);
    return (int64_t)k;
}

void bpe_test_merge(const dp_bpe *t, const char *piece, size_t len, dp_bpe_ids *out) {
    bpe_worker tmp, *w = worker_acquire(t, &tmp);
    bpe_merge(t, w, (const unsigned char *)piece, len, out);
    worker_return(w, &tmp);
}

void bpe_test_cache_stats(const dp_bpe *t, uint64_t *hits, uint64_t *misses, uint64_t *clears) {
    *hits = t->workers[0].cache.hits;
    *misses = t->workers[0].cache.misses;
    *clears = t->workers[0].cache.clears;
}
