/* dpformer public API: GPT-2's byte-level BPE tokenizer, for language models compatible with GPT-2's
 * vocabulary. Loads the published files (OpenAI's encoder.json + vocab.bpe, Hugging Face's
 * vocab.json + merges.txt or tokenizer.json), encodes any bytes to ids exactly as OpenAI's encoder.py
 * does for valid UTF-8, and decodes ids back to the exact bytes.
 * This is not the text-classification tokenizer of dpformer/text.h (bytes, hashed words), which has
 * no vocabulary at all; a BPE vocabulary is a fixed public file here, never fitted on private text.
 * Formats, special tokens, invalid UTF-8 and the `dpformer tokenize` command: docs/tokenizer.md. */
#ifndef DPFORMER_TOKENIZER_H
#define DPFORMER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "dpformer/common.h"

/* A loaded vocabulary with its merges, the compiled pre-tokenisation pattern and its caches.
 * Immutable after loading, apart from internal caches that are safe to share (see dp_bpe_encode). */
typedef struct dp_bpe dp_bpe;

/* ---- loading ------------------------------------------------------------------------------------ */

/* Load from `path`: a folder holding (the first found of) tokenizer.json, vocab.json + merges.txt, or
 * encoder.json + vocab.bpe; or a path to a tokenizer.json file itself. Returns NULL with err set on
 * failure; every message names the file, and the line or the JSON entry where there is one
 * ("gpt2/vocab.bpe:7: merge 'Ġ x': 'x' is not in the vocabulary (gpt2/encoder.json)"). The
 * vocabulary is checked whole: ids 0..n-1 each used once, no string twice, a token for each of the
 * 256 bytes, every merge's parts and result in the vocabulary, no merge twice. */
dp_bpe *dp_bpe_load(const char *path, dp_error *err);

/* The same from buffers in memory (need not be NUL-terminated): a vocabulary JSON object (string ->
 * id) with a merges text, or a tokenizer.json text. The names stand for the files in messages. */
dp_bpe *dp_bpe_from_vocab_merges(const char *vocab_json, size_t vocab_len, const char *vocab_name, const char *merges,
                                 size_t merges_len, const char *merges_name, dp_error *err);
dp_bpe *dp_bpe_from_tokenizer_json(const char *json, size_t len, const char *name, dp_error *err);

void dp_bpe_free(dp_bpe *tok);

/* ---- encoding and decoding ---------------------------------------------------------------------- */

/* A growable array of ids: start from {0} (or reuse one; calls append), free(ids.ids) when done. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} dp_bpe_ids;

/* A growable byte string: start from {0}, free(text.data) when done. data[n] is always a NUL (after
 * a successful call), which makes text without NUL bytes usable as a C string. */
typedef struct {
    char *data;
    size_t n, cap;
} dp_bpe_text;

/* Flags of dp_bpe_encode / dp_bpe_decode. */
enum {
    /* encode: recognise special tokens (e.g. "<|endoftext|>") written in the text and give their ids.
     * Without it (the default) special tokens are ordinary text: "<|endoftext|>" is 7 tokens, so text
     * from users can never inject a document boundary. */
    DP_BPE_ALLOW_SPECIAL = 1,
    /* encode: refuse text that is not valid UTF-8 ("invalid UTF-8 at byte 12 (0xE9)") instead of
     * encoding its bytes (the default; see docs/tokenizer.md for how invalid bytes are split). */
    DP_BPE_STRICT_UTF8 = 2,
    /* decode: leave special tokens out of the text. */
    DP_BPE_SKIP_SPECIAL = 4,
};

/* Append the ids of text[0..len) (any bytes) to *out. Returns 0, or non-zero with err set (only with
 * DP_BPE_STRICT_UTF8 on invalid UTF-8, or for a single pre-token of 4 GiB or more); on failure *out
 * keeps its earlier ids. Any number of threads may encode with one handle at once: up to 8 at a time
 * use the handle's word caches, more encode correctly without a cache (slower). */
int dp_bpe_encode(const dp_bpe *tok, const char *text, size_t len, unsigned flags, dp_bpe_ids *out, dp_error *err);

/* Append the bytes that ids[0..n) stand for to *out: the exact inverse of dp_bpe_encode, for any bytes
 * (special tokens give their text, e.g. "<|endoftext|>"). Returns 0, or non-zero with err set for an
 * id outside the vocabulary ("id 50257 at position 3 is not in the vocabulary (ids 0..50256)"); *out
 * then keeps its earlier bytes. Thread-safe. */
int dp_bpe_decode(const dp_bpe *tok, const int32_t *ids, size_t n, unsigned flags, dp_bpe_text *out, dp_error *err);

/* ---- the vocabulary ----------------------------------------------------------------------------- */

/* Number of ids (50,257 for GPT-2); ids are 0 .. size-1. */
int32_t dp_bpe_vocab_size(const dp_bpe *tok);
/* Number of merges (50,000 for GPT-2). */
int32_t dp_bpe_n_merges(const dp_bpe *tok);
/* The id of a token given as written in the vocabulary ("<|endoftext|>" -> 50256, "Ġthe" -> 262), or
 * -1 if there is none. */
int32_t dp_bpe_token_id(const dp_bpe *tok, const char *token);
/* The vocabulary string of an id (NUL-terminated, owned by tok), or NULL outside the vocabulary. */
const char *dp_bpe_token(const dp_bpe *tok, int32_t id);
/* 1 if id is a special token: one that BPE never produces (a vocabulary entry that is neither a byte
 * nor the result of a merge, like GPT-2's "<|endoftext|>", or an added token of tokenizer.json). */
int dp_bpe_is_special(const dp_bpe *tok, int32_t id);
/* Which files were loaded, e.g. "gpt2/encoder.json + gpt2/vocab.bpe" (owned by tok). */
const char *dp_bpe_source(const dp_bpe *tok);

#endif
