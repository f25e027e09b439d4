/* `dpformer demo-lm`: a short demonstration of language-model training: a tiny GPT-2-family model
 * trained non-privately and with DP-SGD on built-in sentences (or a text file, one example a line),
 * with the test perplexity of both next to the unigram model's, and the privacy statement. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/common.h"
#include "dpformer/lmtrain.h"
#include "ops/ops.h"

static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* n sentences of a small grammar, one a line. */
static char *builtin_text(int n, uint64_t seed, size_t *len) {
    static const char *const S[] = {"the cat", "the dog", "a bird", "my friend", "the old man", "a child"};
    static const char *const V[] = {"sat on", "looked at", "ran to", "walked past", "slept near"};
    static const char *const O[] = {"the mat", "the door", "a tree", "the house", "the river", "a red car"};
    size_t cap = (size_t)n * 96 + 1, k = 0;
    char *buf = dp_malloc(cap);
    for (int i = 0; i < n; i++) {
        k += (size_t)snprintf(buf + k, cap - k, "%s %s %s", S[next_u64(&seed) % 6], V[next_u64(&seed) % 5],
                              O[next_u64(&seed) % 6]);
        if (next_u64(&seed) % 10 < 3)
            k += (size_t)snprintf(buf + k, cap - k, " and then %s %s", V[next_u64(&seed) % 5], O[next_u64(&seed) % 6]);
        k += (size_t)snprintf(buf + k, cap - k, ".\n");
    }
    *len = k;
    return buf;
}

/* Examples [i0, i1) of a corpus as a corpus of their own (views are copied: the corpus owns its arrays). */
static void corpus_slice(const dp_lm_corpus *c, int64_t i0, int64_t i1, dp_lm_corpus *out) {
    memset(out, 0, sizeof *out);
    out->n = i1 - i0;
    out->offsets = dp_malloc(sizeof(int64_t) * ((size_t)out->n + 1));
    const int64_t t0 = c->offsets[i0], nt = c->offsets[i1] - t0;
    out->tokens = dp_malloc(sizeof(int32_t) * (size_t)(nt > 0 ? nt : 1));
    memcpy(out->tokens, c->tokens + t0, sizeof(int32_t) * (size_t)nt);
    for (int64_t i = 0; i <= out->n; i++) out->offsets[i] = c->offsets[i0 + i] - t0;
    for (int64_t i = 0; i < out->n; i++) {
        int len = (int)(out->offsets[i + 1] - out->offsets[i]);
        if (len > out->max_len) out->max_len = len;
    }
}

/* Perplexity of the unigram model of train's predicted tokens (maximum likelihood; a token unseen in
 * training counts once) on test's predicted tokens. */
static double unigram_perplexity(const dp_lm_corpus *train, const dp_lm_corpus *test, int32_t V) {
    double *cnt = calloc((size_t)V, sizeof(double)), n = 0, s = 0;
    int64_t m = 0;
    for (int64_t i = 0; i < train->n; i++)
        for (int64_t k = train->offsets[i] + 1; k < train->offsets[i + 1]; k++) cnt[train->tokens[k]]++, n++;
    for (int64_t i = 0; i < test->n; i++)
        for (int64_t k = test->offsets[i] + 1; k < test->offsets[i + 1]; k++, m++) {
            double c = cnt[test->tokens[k]];
            s += log((c > 0 ? c : 1) / n);
        }
    free(cnt);
    return exp(-s / (double)m);
}

int cmd_demo_lm(int argc, char **argv) {
    const char *cmd = "dpformer demo-lm";
    const char *tokenizer = "../shared/tokenizers/gpt2", *text = NULL;
    int n = 2000, epochs = 3, threads = 0, max_len = 24;
    double eps = 8;
    int64_t seed = 1;
    arg_spec specs[] = {
        ARG_SM("tokenizer", &tokenizer, "DIR", "GPT-2 BPE tokenizer files (default ../shared/tokenizers/gpt2)"),
        ARG_SM("text", &text, "FILE", "text, one example a line, instead of the built-in sentences (e.g. "
                                      "../shared/data/tinyshakespeare/input.txt)"),
        ARG_IR("examples", &n, "examples used in all (80% train, 10% dev, 10% test)", 30, 10000000),
        ARG_IR("epochs", &epochs, "epochs of each run", 1, 1000),
        ARG_IR("max-len", &max_len, "context (tokens per example)", 4, 1024),
        ARG_DR("target-epsilon", &eps, "epsilon of the DP-SGD run (delta = 1e-6)", 0.01, 1e6),
        ARG_LR("seed", &seed, "random seed", 0, 9.2e18),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
    };
    int rc = args_parse(cmd, "Train a tiny GPT-2-family language model non-privately and with DP-SGD on built-in\n"
                             "sentences (or --text FILE) and compare their test perplexity with the unigram model's.",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    ops_set_threads(threads);
    dp_error err;
    dp_bpe *tok = dp_bpe_load(tokenizer, &err);
    if (!tok) {
        fprintf(stderr, "%s: --tokenizer: %s\n", cmd, err.msg);
        return 2;
    }
    const int32_t eot = dp_bpe_token_id(tok, "<|endoftext|>");
    dp_lm_texts tx = {0};
    dp_lm_corpus all = {0}, tr = {0}, dv = {0}, te = {0};
    rc = 2;
    if (eot < 0) {
        fprintf(stderr, "%s: --tokenizer %s has no <|endoftext|> token\n", cmd, tokenizer);
        goto done;
    }
    if (text) {
        if (dp_lm_texts_load(&tx, text, NULL, &err)) {
            fprintf(stderr, "%s: --text: %s\n", cmd, err.msg);
            goto done;
        }
    } else {
        size_t len;
        char *buf = builtin_text(n, (uint64_t)seed, &len);
        int r = dp_lm_texts_parse(&tx, "built-in", buf, len, NULL, &err);
        free(buf);
        if (r) {
            fprintf(stderr, "%s: %s\n", cmd, err.msg);
            goto done;
        }
    }
    if (tx.n < 30) {
        fprintf(stderr, "%s: %lld examples: at least 30 are needed\n", cmd, (long long)tx.n);
        goto done;
    }
    if (dp_lm_corpus_encode(&all, tok, eot, &tx, max_len, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        goto done;
    }
    const int64_t N = DP_MIN((int64_t)n, all.n), n_tr = N * 8 / 10, n_dv = N / 10;
    corpus_slice(&all, 0, n_tr, &tr);
    corpus_slice(&all, n_tr, n_tr + n_dv, &dv);
    corpus_slice(&all, n_tr + n_dv, N, &te);
    const int32_t V = dp_bpe_vocab_size(tok);
    const double uni = unigram_perplexity(&tr, &te, V);
    printf("data: %s, %lld train / %lld dev / %lld test examples (one a line), context %d tokens\n",
           text ? text : "built-in sentences", (long long)tr.n, (long long)dv.n, (long long)te.n, max_len);
    printf("model: GPT-2 family, d 32, 1 layer, 2 heads, vocabulary %d (GPT-2's)\n\n", V);
    dp_lm_train_result res[2];
    for (int k = 0; k < 2; k++) {
        dp_lm_train_config c = dp_lm_train_config_default(V);
        c.model.max_len = max_len;
        c.model.d_model = 32;
        c.model.n_layers = 1;
        c.model.n_heads = 2;
        c.model.dropout = 0;
        c.optim.lr = 1e-2;
        c.epochs = epochs;
        c.seed = (uint64_t)seed;
        c.progress = 0;
        c.batch_size = 16;
        if (k == 1) {
            c.dpsgd = 1;
            c.dp.enabled = 1;
            c.dp.target_epsilon = eps;
            c.dp.delta = 1e-6;
            c.dp.max_grad_norm = 1;
            c.dp.max_physical_batch = 64;
            c.batch_size = 128;
            c.keep_last = 1;
        }
        fprintf(stderr, "%s training:\n", k ? "DP-SGD" : "non-private");
        dp_model *m = NULL;
        if (dp_lm_plan_check(&c, tr.n, &err) || dp_lm_train(&c, &tr, &dv, &te, &m, &res[k], &err)) {
            fprintf(stderr, "%s: %s\n", cmd, err.msg);
            rc = 1;
            goto done;
        }
        dp_model_free(m);
    }
    printf("test perplexity (token-weighted, %lld predicted tokens):\n", (long long)res[0].test.predicted);
    printf("  unigram model of the training tokens  %10.2f\n", uni);
    printf("  non-private                           %10.2f   (%.0f tokens/s)\n", res[0].test.perplexity,
           res[0].tokens_per_second);
    printf("  DP-SGD                                %10.2f   (%.0f tokens/s)\n", res[1].test.perplexity,
           res[1].tokens_per_second);
    printf("privacy of the DP-SGD model: (epsilon = %.2f, delta = %g)-DP for each example, one line of the training\n"
           "  text: %lld steps, Poisson q = %.4f, noise multiplier %.3f, max grad norm 1 (RDP accountant)\n",
           res[1].epsilon, res[1].delta, (long long)res[1].dp_steps, res[1].sample_rate, res[1].noise_multiplier);
    printf("the non-private model has no privacy guarantee. Train your own: dpformer train-lm (docs/lm.md)\n");
    rc = 0;
done:
    dp_lm_texts_free(&tx);
    dp_lm_corpus_free(&all);
    dp_lm_corpus_free(&tr);
    dp_lm_corpus_free(&dv);
    dp_lm_corpus_free(&te);
    dp_bpe_free(tok);
    return rc;
}
