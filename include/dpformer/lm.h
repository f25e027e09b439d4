/* dpformer public API: GPT-2-style language models, the DP_FAMILY_GPT2 configuration of the one model of
 * dpformer/model.h (there is no second forward or backward pass: the family fixes the tanh GELU,
 * positions counted from each sequence's first token, right padding and the token ↔ item map below).
 * Here: the example convention, texts and their tokens, evaluation (perplexity), next-token logits,
 * sampling and generation, and the Hugging Face layout in and out. docs/lm.md describes it all.
 *
 * Conventions (fixed for training and evaluation alike):
 *  - token t of the GPT-2 vocabulary is item t + 1 of the model; item 0 stays padding;
 *  - one text (a line of a file, or a TSV/CSV field) is one example, and the privacy unit of DP training:
 *    its tokens are <|endoftext|> + BPE(text) + <|endoftext|>, cut to the context (the first n_ctx);
 *  - an example of n tokens predicts its n − 1 tokens after the first; its loss (the engine's, the one
 *    clipped in DP training) is the mean cross-entropy over those;
 *  - perplexity over a set of examples = exp(total loss over all predicted tokens / their number), i.e.
 *    token-weighted, not the mean of the examples' losses. */
#ifndef DPFORMER_LM_H
#define DPFORMER_LM_H

#include <stdint.h>
#include "dpformer/common.h"
#include "dpformer/model.h"
#include "dpformer/tokenizer.h"

/* GPT-2 small's shape for a vocabulary of vocab_size tokens and n_ctx positions: family gpt2, tanh GELU,
 * positions from the first token, tied, causal, d 768, 12 layers, 12 heads, d_ff 3072, dropout 0.1. */
dp_model_config dp_lm_config_default(int32_t vocab_size, int n_ctx);

/* ---- texts and examples ---------------------------------------------------------------------------- */

static inline int32_t dp_lm_item_of_token(int32_t token) { return token + 1; }
static inline int32_t dp_lm_token_of_item(int32_t item) { return item - 1; }

/* Texts: the lines of a file (column NULL), or one column of a file with a header line — tab-separated
 * if its name ends in .tsv, comma-separated with RFC 4180 quoting (a quoted field may hold commas,
 * doubled quotes and line breaks) if it ends in .csv. Line ends (\n or \r\n) are not part of a text.
 * Empty texts (blank lines, empty fields) are not examples: they are skipped and counted in n_empty.
 * Text i is text[offsets[i] .. offsets[i+1]), any bytes. Errors name the file (and line, or column). */
typedef struct {
    int64_t n;
    int64_t *offsets; /* [n + 1] */
    char *text;
    int64_t n_empty;
} dp_lm_texts;
int dp_lm_texts_load(dp_lm_texts *tx, const char *path, const char *column, dp_error *err);
/* The same on a buffer; `name` stands for the file (its suffix decides TSV or CSV when column is set). */
int dp_lm_texts_parse(dp_lm_texts *tx, const char *name, const char *buf, size_t len, const char *column,
                      dp_error *err);
void dp_lm_texts_free(dp_lm_texts *tx);

/* Tokenised examples: example i has the tokens tokens[offsets[i] .. offsets[i+1]) (GPT-2 ids, at least
 * 2: <|endoftext|> + BPE(text) + <|endoftext|>, cut to max_tokens). */
typedef struct {
    int64_t n;
    int64_t *offsets; /* [n + 1] */
    int32_t *tokens;
    int64_t n_truncated; /* examples cut to max_tokens */
    int max_len;         /* the longest example, in tokens */
} dp_lm_corpus;
/* Encode every text (special tokens written in a text are ordinary text, so a text can never insert
 * a boundary). eot: the id of <|endoftext|> (dp_bpe_token_id). max_tokens >= 2. */
int dp_lm_corpus_encode(dp_lm_corpus *c, const dp_bpe *tok, int32_t eot, const dp_lm_texts *tx, int max_tokens,
                        dp_error *err);
void dp_lm_corpus_free(dp_lm_corpus *c);

/* One example as a batch row of T positions, right-padded: ids[t] = tokens[t] + 1 for t < n, 0 after;
 * targets[t] = tokens[t+1] + 1 for t < n − 1, 0 elsewhere (n ≤ T). Returns the number of predicted
 * tokens, n − 1 (0 when n < 2). */
int dp_lm_make_example(int32_t *ids, int32_t *targets, const int32_t *tokens, int n, int T);

/* ---- evaluation and logits ------------------------------------------------------------------------- */

typedef struct {
    int64_t examples;
    int64_t tokens;          /* every token of every example (the positions run through the model) */
    int64_t predicted;       /* tokens predicted: Σ (n − 1) */
    double total_loss;       /* Σ over predicted tokens of −log p (nats) */
    double loss;             /* total_loss / predicted */
    double perplexity;       /* exp(loss) */
    double mean_example_loss; /* mean over examples of their own mean loss (the DP training objective) */
    double seconds;          /* wall-clock time of the forward passes */
    double tokens_per_s;     /* tokens / seconds */
} dp_lm_eval_result;

/* Perplexity of a gpt2-family model (or any next-item model read as one) over a corpus: batches of up
 * to the model's max_batch examples, grouped by length, each run on a window of its longest example
 * (no dropout). Examples longer than the model's window are refused. */
int dp_lm_evaluate(dp_model *m, const dp_lm_corpus *c, dp_lm_eval_result *r, dp_error *err);

/* The logits of every position of B right-padded sequences of GPT-2 token ids (tokens[b·T + t] for
 * t < lengths[b]; 1 <= lengths[b] <= T <= the model's window): logits[B, T, V] over the V tokens
 * (rows past an example's length are zero). B <= the model's max_batch. No dropout. */
int dp_lm_logits(dp_model *m, const int32_t *tokens, const int *lengths, int B, int T, dp_real *logits,
                 dp_error *err);

/* ---- sampling and generation ----------------------------------------------------------------------- */

typedef struct {
    double temperature; /* 0: greedy (the most likely token, the lowest id on ties) */
    int top_k;          /* keep the k most likely tokens (0: all) */
    double top_p;       /* then the smallest set whose probability reaches top_p (1: all) */
    uint64_t seed;      /* the generator's seed (splitmix64): the same seed, the same text */
    int32_t n_tokens;   /* generate: draw among ids 0..n_tokens-1 only (0: the model's whole vocabulary),
                           e.g. the tokenizer's size when the model's vocabulary is padded beyond it */
} dp_lm_sampling;

/* A token drawn from logits[V] (temperature, then top-k, then top-p, as Hugging Face's generate orders
 * them); *state is the generator's state (start it at the seed). logits is left unchanged. */
int32_t dp_lm_sample(const dp_real *logits, int32_t V, const dp_lm_sampling *s, uint64_t *state);

/* Generate up to max_new tokens after the prompt (GPT-2 ids; n_prompt >= 1; the caller puts
 * <|endoftext|> in front, as training examples start), appending them to *out; stops after emitting
 * `stop` (not appended; -1: never). Each step runs the model on the last window-many tokens (no key/value
 * cache): positions count from the first token kept. */
int dp_lm_generate(dp_model *m, const int32_t *prompt, int n_prompt, int max_new, const dp_lm_sampling *s,
                   int32_t stop, dp_bpe_ids *out, dp_error *err);

/* ---- loading and the Hugging Face layout ----------------------------------------------------------- */

/* dp_model_load (a dpformer model file or a Hugging Face folder) with the window limited to max_len
 * positions (0: the model's whole context): the first max_len rows of the position table are kept and
 * the activations are sized for max_len, which is all that evaluation and generation of sequences of
 * up to max_len tokens use. Such a model is for running, not for saving as the original.
 * max_batch 0 (with max_len 0): the parameters only, on the cpu, without gradients or activations (the
 * model cannot run): enough for dp_hf_export or dp_model_save, at the memory of the parameters. */
dp_model *dp_lm_load(const char *path, int max_batch, int max_len, dp_error *err);

/* Import a Hugging Face GPT-2 folder: config.json (model_type gpt2) + model.safetensors with GPT-2's
 * tensor names (optionally prefixed "transformer."; lm_head.weight when untied; the attention mask
 * buffers are ignored), in F32, F16 or BF16. What dp_model_load does for a folder. */
dp_model *dp_hf_import(const char *dir, int max_batch, dp_error *err);

/* Export a gpt2-family model to the folder `dir` (which must not exist or be empty): config.json,
 * model.safetensors (F32, GPT2LMHeadModel's names) and, with tokenizer (a folder or file dp_bpe_load
 * reads, of the model's vocabulary size), its files under Hugging Face's names. Written to a temporary
 * folder next to dir and renamed into place: dir appears complete or not at all. */
int dp_hf_export(const dp_model *m, const char *dir, const char *tokenizer, dp_error *err);

#endif
