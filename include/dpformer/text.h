/* dpformer public API: datasets for text classification (GLUE SST-2 style) and the byte-level
 * tokenizer that turns them into token ids for a bidirectional encoder.
 * The loader reads a tab-separated file with a header line naming the columns; the tokenizer is a
 * fixed function of the bytes. Formats, options and rules are described in docs/text.md. */
#ifndef DPFORMER_TEXT_H
#define DPFORMER_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include "dpformer/common.h"

/* ---- loading --------------------------------------------------------------------------------- */

/* Default longest accepted line in bytes (without its line end); a longer line is an error. */
#define DP_TEXT_MAX_LINE (1 << 20)
/* Default number of classes (binary sentiment). */
#define DP_TEXT_DEFAULT_CLASSES 2

/* The text columns tried, in this order, when dp_text_options.text_column is NULL: GLUE SST-2 names
 * it "sentence" in train.tsv, some copies name it "content". NULL-terminated. */
extern const char *const dp_text_default_text_columns[];

/* Loader options. A zero-initialised struct (or a NULL pointer) means all defaults. */
typedef struct {
    const char *label_column; /* header name of the label column; NULL -> "label" */
    const char *text_column;  /* header name of the text column; NULL -> the first of
                                 dp_text_default_text_columns present in the header */
    int n_classes;            /* K: labels must be integers 0..K-1; 0 -> DP_TEXT_DEFAULT_CLASSES */
    size_t max_line;          /* longest line in bytes; 0 -> DP_TEXT_MAX_LINE */
    int accept_invalid_utf8;  /* 0 (default): a field that is not valid UTF-8 is an error;
                                 1: bytes are taken as they are (the tokenizer is byte-level) */
} dp_text_options;

/* N labelled texts. Text i is the bytes text[offsets[i] .. offsets[i+1]) (no terminator, no NUL
 * inside, never empty, leading/trailing spaces removed). */
typedef struct {
    int64_t n;           /* number of examples */
    int n_classes;       /* K: every label is in 0..K-1 */
    int32_t *labels;     /* [n] */
    int64_t *offsets;    /* [n + 1] byte offsets into text; offsets[0] = 0 */
    char *text;          /* [offsets[n]] all texts back to back */
    char *text_column;   /* name of the column the texts were read from (NUL-terminated copy) */
} dp_text_dataset;

void dp_text_options_default(dp_text_options *opt);

/* Parse a TSV held in memory (buf need not be NUL-terminated). `name` stands for the file in error
 * messages (NULL -> "<memory>"). Returns 0, or non-zero with "name:line: field: problem" in err and
 * *ds left empty (zeroed); nothing is ever skipped or truncated silently except empty lines. */
int dp_text_parse(dp_text_dataset *ds, const char *buf, size_t len, const char *name, const dp_text_options *opt,
                  dp_error *err);
/* Read the file `path` whole and parse it with dp_text_parse (works on pipes too). */
int dp_text_load(dp_text_dataset *ds, const char *path, const dp_text_options *opt, dp_error *err);
void dp_text_dataset_free(dp_text_dataset *ds);

static inline int64_t dp_text_len(const dp_text_dataset *ds, int64_t i) { return ds->offsets[i + 1] - ds->offsets[i]; }
static inline const char *dp_text_ptr(const dp_text_dataset *ds, int64_t i) { return ds->text + ds->offsets[i]; }

/* counts[k] = number of examples with label k, for k in 0..n_classes-1. */
void dp_text_label_counts(const dp_text_dataset *ds, int64_t *counts);

/* Byte lengths of the texts (without [CLS]). Quantiles use the nearest-rank rule: the smallest
 * length with at least that fraction of examples at or below it. All zero for an empty dataset. */
typedef struct {
    int64_t n;
    double mean;
    int64_t min, p50, p90, p95, p99, max;
} dp_text_length_stats;
void dp_text_lengths(const dp_text_dataset *ds, dp_text_length_stats *st);

/* ---- tokenizer --------------------------------------------------------------------------------- */

/* The tokenizer has no state learned from data: ids are a fixed function of the bytes, so it
 * releases nothing about the (private) training text. Token ids: */
#define DP_TEXT_PAD 0   /* padding (right side of a window) */
#define DP_TEXT_CLS 1   /* first token of every window; its output is the pooled representation */
#define DP_TEXT_SEP 2   /* reserved as a separator (sentence pairs); the single-text encoding never emits it */
#define DP_TEXT_BYTE0 3 /* byte value b has id DP_TEXT_BYTE0 + b */
#define DP_TEXT_VOCAB 259 /* vocabulary size: 3 special ids + 256 byte values */

/* Encode len bytes of s into a window of L ids (L >= 1): [CLS], then the bytes, truncated to the first
 * L-1 bytes, then DP_TEXT_PAD up to L (right padding). *truncated (if non-NULL) is set to 1 when
 * bytes were dropped, else 0. Returns the number of non-padding ids (1 + kept bytes), or -1 if L < 1
 * (nothing written). Truncation cuts at a byte, which may fall inside a multi-byte UTF-8 character. */
int dp_text_encode_bytes(const char *s, size_t len, int L, int32_t *ids_out, int *truncated);
/* dp_text_encode_bytes on example i of ds. Returns -1 if i is out of range or L < 1. */
int dp_text_encode(const dp_text_dataset *ds, int64_t i, int L, int32_t *ids_out, int *truncated);
/* Number of examples whose encoding is truncated at window length L (byte length > L-1); -1 if L < 1. */
int64_t dp_text_count_truncated(const dp_text_dataset *ds, int L);

/* Inverse of the encoding: writes the bytes of ids[0..n) (special ids PAD, CLS, SEP skipped) into out,
 * at most cap-1 of them, followed by a NUL (if cap > 0), like snprintf. Returns the full decoded
 * length (which may be >= cap: the output was cut), or -1 if an id is outside 0..DP_TEXT_VOCAB-1. */
int64_t dp_text_decode(const int32_t *ids, int64_t n, char *out, size_t cap);

/* ---- tokenizers ---------------------------------------------------------------------------------
 * Two tokenizers, neither fitted on data (so neither releases anything about the training text):
 *  - bytes:    the byte-level encoding above (vocabulary DP_TEXT_VOCAB);
 *  - words:H   hashed words: the text is split at ASCII whitespace, ASCII letters are lower-cased, and
 *              each word w gets id DP_TEXT_WORD0 + (FNV-1a-64(w) mod H). Different words may share an
 *              id (a collision); no vocabulary is stored or learned. Vocabulary DP_TEXT_WORD0 + H.
 *              Made for text that is already split into words and punctuation (GLUE SST-2 is);
 *              punctuation attached to a word makes a different word.
 * Both start a window with [CLS] and pad on the right with DP_TEXT_PAD. */
typedef enum { DP_TOKENIZER_BYTES = 0, DP_TOKENIZER_WORDS = 1 } dp_tokenizer_kind;
typedef struct {
    dp_tokenizer_kind kind;
    int32_t buckets; /* words: H, 1 <= H <= DP_TEXT_MAX_BUCKETS; bytes: 0 */
} dp_tokenizer;
#define DP_TEXT_WORD0 3                  /* first word id */
#define DP_TEXT_DEFAULT_BUCKETS 16384    /* H of "words" without ":H" */
#define DP_TEXT_MAX_BUCKETS (1 << 24)
#define DP_TOKENIZER_SPEC_MAX 32         /* longest spec string, with its NUL */

/* Parse "bytes", "words" or "words:H" (NULL or "" -> bytes). Returns 0, or non-zero with err. */
int dp_tokenizer_parse(const char *spec, dp_tokenizer *t, dp_error *err);
/* The spec string of t ("bytes" or "words:H") into buf (cap >= DP_TOKENIZER_SPEC_MAX). */
void dp_tokenizer_spec(const dp_tokenizer *t, char *buf, size_t cap);
/* Vocabulary size (ids 0..vocab-1), i.e. the model's n_items + 1. */
int32_t dp_tokenizer_vocab(const dp_tokenizer *t);

/* Id of one word under words:H (the word's bytes as given; ASCII letters are lower-cased here). */
int32_t dp_text_word_id(const char *w, size_t len, int32_t buckets);
/* Encode len bytes of s with the hashed-word tokenizer into a window of L ids: [CLS], the first L-1
 * words, padding. *truncated (if non-NULL) is 1 when words were dropped. Returns the number of
 * non-padding ids, or -1 if L < 1 or buckets is out of range (nothing written). */
int dp_text_encode_words(const char *s, size_t len, int32_t buckets, int L, int32_t *ids_out, int *truncated);
/* Number of tokens (without [CLS]) that t makes of s. */
int64_t dp_tokenizer_count(const dp_tokenizer *t, const char *s, size_t len);
/* Encode with t (NULL: bytes); same contract as dp_text_encode_bytes / dp_text_encode_words. */
int dp_tokenizer_encode(const dp_tokenizer *t, const char *s, size_t len, int L, int32_t *ids_out, int *truncated);
/* dp_tokenizer_encode on example i of ds; -1 if i is out of range or L < 1. */
int dp_text_encode_with(const dp_tokenizer *t, const dp_text_dataset *ds, int64_t i, int L, int32_t *ids_out,
                        int *truncated);
/* Number of examples of ds that t truncates at window length L; -1 if L < 1. */
int64_t dp_text_count_truncated_with(const dp_tokenizer *t, const dp_text_dataset *ds, int L);

#endif
