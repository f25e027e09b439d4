/* Internals of the byte-level BPE tokenizer (src/text/bpe.c: encoding, decoding; src/text/bpe_load.c:
 * reading and checking the files). Shared by the two files and by the tests, which compare the fast
 * pre-tokeniser with the PCRE2 pattern alone and the merge loop with a direct port of encoder.py. */
#ifndef DP_TEXT_BPE_INTERNAL_H
#define DP_TEXT_BPE_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdatomic.h>

#include "core/common.h"
#include "dpformer/tokenizer.h"

/* GPT-2's pre-tokenisation pattern, with \s spelled out as the Unicode White_Space property (what
 * Python's `regex` module, used by OpenAI's encoder.py, means by \s; PCRE2's \s would also match
 * U+180E). Compiled anchored: every match starts where the previous one ended. */
#define BPE_WS "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define BPE_PATTERN                                                                                      \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" BPE_WS "\\p{L}\\p{N}]+|[" BPE_WS "]+(?![^" BPE_WS \
    "])|[" BPE_WS "]+"

/* Invalid UTF-8 bytes are replaced by this byte in the copy the pattern runs on: a control character,
 * so an invalid byte splits like a symbol (neither letter, number nor space), as a lone surrogate from
 * Python's surrogateescape does. */
#define BPE_INVALID_STANDIN 0x01

/* The word cache of one worker: piece bytes -> ids, open addressing, cleared when full. */
#define BPE_CACHE_SLOTS (1u << 17)
#define BPE_CACHE_MAX_ENTRIES (1u << 16)
#define BPE_CACHE_MAX_KEY 255
#define BPE_CACHE_MAX_ARENA (8u << 20)
typedef struct {
    uint64_t hash; /* 0: empty slot */
    uint32_t off;  /* key bytes at arena + off, then (4-aligned) the ids */
    uint16_t klen, nids;
} bpe_cache_entry;
typedef struct {
    bpe_cache_entry *slots; /* [BPE_CACHE_SLOTS], NULL: caching off */
    unsigned char *arena;
    size_t used, cap;
    uint32_t entries;
    uint64_t hits, misses, clears; /* statistics (tests) */
} bpe_cache;

/* What one encoding call needs besides the vocabulary: PCRE2 match data, the cache and scratch space.
 * A handle has BPE_WORKERS of them, each taken by one call at a time. */
#define BPE_WORKERS 8
typedef struct {
    atomic_flag busy;
    int ready;
    pcre2_match_data *md;
    bpe_cache cache;
    unsigned char *copy; /* the sanitised copy of a text with invalid UTF-8 */
    size_t copy_cap;
    int32_t *tok;   /* merge loop: [n] token at each start position, -1 once merged into its left */
    uint32_t *prev; /* [n] start of the previous live token, UINT32_MAX for none */
    uint32_t *next; /* [n] start of the next live token, n for none */
    uint64_t *heap; /* [3n] candidate merges: rank << 32 | position */
    uint64_t *pend; /* [2n] merges that became possible during the current pass */
    size_t work_cap;
} bpe_worker;

struct dp_bpe {
    int32_t n;            /* vocabulary size: ids 0..n-1 */
    char *str;            /* vocabulary strings, NUL-separated: id i at str + str_off[i] */
    uint32_t *str_off;    /* [n + 1] */
    unsigned char *bytes; /* the bytes each id decodes to: id i is bytes[bytes_off[i] .. bytes_off[i+1]) */
    uint32_t *bytes_off;  /* [n + 1] */
    uint8_t *special;     /* [n] 1: special token */
    int32_t byte_id[256]; /* the token of each single byte */
    int32_t *str_tab;     /* string -> id: open addressing over ids, -1 empty */
    uint32_t str_mask;
    uint64_t *merge_key; /* (left << 32 | right) -> rank, result; UINT64_MAX empty */
    uint32_t *merge_rank;
    int32_t *merge_id;
    uint32_t merge_mask;
    int32_t n_merges;
    int32_t *specials; /* ids of the special tokens, longest text first (DP_BPE_ALLOW_SPECIAL) */
    int32_t n_specials;
    uint8_t special_first[256]; /* 1: some special token's text starts with this byte */
    pcre2_code *re;
    int jit;      /* the pattern is JIT-compiled */
    char *source; /* "dir/encoder.json + dir/vocab.bpe" */
    bpe_worker workers[BPE_WORKERS];
};

/* GPT-2's bytes_to_unicode: the code point that stands for byte b in vocabulary strings. */
uint32_t bpe_byte_to_cp(unsigned b);
/* The inverse: the byte a code point stands for, or -1 if it stands for none. */
int bpe_cp_to_byte(uint32_t cp);

/* Offset of the first byte of s[0..n) that is not part of a well-formed UTF-8 sequence, or n. */
size_t bpe_utf8_valid_prefix(const unsigned char *s, size_t n);

/* Last step of loading: compile the pattern into tok->re (JIT where available) and ready the workers.
 * 0, or -1 with err. */
int bpe_prepare(dp_bpe *tok, dp_error *err);

/* Hash of a byte string (the string -> id table, the word caches): 8 bytes at a time through
 * splitmix64's finaliser. */
static inline uint64_t bpe_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x243F6A8885A308D3ull ^ n, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = dp_mix64(h ^ w);
    }
    w = 0;
    memcpy(&w, s, n);
    return dp_mix64(h ^ w);
}

/* The merge of the pair (a, b): its rank and result, or 0 if there is none. */
static inline int bpe_merge_find(const dp_bpe *t, int32_t a, int32_t b, uint32_t *rank, int32_t *result) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = (uint32_t)dp_mix64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        uint64_t k = t->merge_key[i];
        if (k == key) {
            *rank = t->merge_rank[i];
            *result = t->merge_id[i];
            return 1;
        }
        if (k == UINT64_MAX) return 0;
    }
}

/* ---- hooks for the tests ------------------------------------------------------------------------ */

/* Split text[0..len) (valid UTF-8, or a sanitised copy) into pre-tokens: ends[k] is the end offset of
 * piece k; returns the number of pieces, or -1 on a PCRE2 error. fast = 0 uses the PCRE2 pattern for
 * every piece, 1 the ASCII fast path where it applies. *ends is malloc'd (free it). */
int64_t bpe_test_pretokenize(const dp_bpe *tok, const char *text, size_t len, int fast, size_t **ends);
/* BPE merges of one piece (its bytes), appended to *out, without the cache. */
void bpe_test_merge(const dp_bpe *tok, const char *piece, size_t len, dp_bpe_ids *out);
/* Cache statistics of worker 0. */
void bpe_test_cache_stats(const dp_bpe *tok, uint64_t *hits, uint64_t *misses, uint64_t *clears);

#endif
