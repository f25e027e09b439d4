/* The language-model commands over dpformer/lm.h: `dpformer eval-lm` (perplexity of a GPT-2-family
 * model on a text file, one line = one example), `dpformer generate` (a prompt and its sampled or
 * greedy continuation) and `dpformer export --hf` (a model to the Hugging Face layout). This file reads
 * flags and prints; the conventions and the computation are the library's (docs/lm.md). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/common.h"
#include "dpformer/lm.h"
#include "dpformer/tokenizer.h"
#include "ops/ops.h"

/* The model's configuration, checked to be a language model: 0, or 2 after a message. */
static int lm_model_config(const char *cmd, const char *path, dp_model_config *c) {
    dp_error err;
    if (dp_model_file_config(path, c, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        return 2;
    }
    if (c->n_classes) {
        fprintf(stderr, "%s: %s is a text classifier (%d classes), not a language model\n", cmd, path, c->n_classes);
        return 2;
    }
    if (c->family != DP_FAMILY_GPT2) {
        fprintf(stderr, "%s: %s is a model of family %s (a recommender over item ids), not a GPT-2-family language "
                        "model\n", cmd, path, dp_model_family_name(c->family));
        return 2;
    }
    return 0;
}

/* The tokenizer and its <|endoftext|>, checked against the model's vocabulary: 0, or 2 after a message. */
static int lm_tokenizer(const char *cmd, const char *path, const dp_model_config *c, dp_bpe **tok, int32_t *eot) {
    dp_error err;
    if (!(*tok = dp_bpe_load(path, &err))) {
        fprintf(stderr, "%s: --tokenizer: %s\n", cmd, err.msg);
        return 2;
    }
    *eot = dp_bpe_token_id(*tok, "<|endoftext|>");
    if (*eot < 0) {
        fprintf(stderr, "%s: --tokenizer %s (%s) has no <|endoftext|> token, which every example starts and ends with\n",
                cmd, path, dp_bpe_source(*tok));
    } else if (dp_bpe_vocab_size(*tok) > c->n_items) {
        fprintf(stderr, "%s: --tokenizer %s has %d tokens, more than the model's vocabulary of %d: not the model's "
                        "tokenizer\n", cmd, dp_bpe_source(*tok), dp_bpe_vocab_size(*tok), c->n_items);
    } else {
        return 0;
    }
    dp_bpe_free(*tok);
    *tok = NULL;
    return 2;
}

static dp_model *lm_load(const char *cmd, const char *path, int B, int window, dp_device device) {
    dp_error err;
    dp_model *m = dp_lm_load(path, B, window, &err);
    if (!m || dp_model_set_device(m, device, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        dp_model_free(m);
        return NULL;
    }
    return m;
}

int cmd_eval_lm(int argc, char **argv) {
    const char *cmd = "dpformer eval-lm";
    const char *model = NULL, *data = NULL, *tokenizer = NULL, *column = NULL, *device_s = "cpu";
    int max_len = 0, batch = 8, threads = 0, json = 0;
    arg_spec specs[] = {
        ARG_SM("model", &model, "PATH", "a GPT-2-family model: dpformer model file or Hugging Face folder (required)"),
        ARG_SM("data", &data, "FILE", "text, one example a line (blank lines skipped); .tsv/.csv with --column (required)"),
        ARG_SM("tokenizer", &tokenizer, "DIR", "the model's GPT-2 BPE tokenizer files (required)"),
        ARG_SM("column", &column, "NAME", "read the texts from this column of a .tsv or .csv file with a header line"),
        ARG_IR("max-len", &max_len, "tokens per example, <|endoftext|> on both sides included (0 = the model's context)", 0, 100000),
        ARG_IR("batch-size", &batch, "examples run at once", 1, 4096),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
        ARG_S("device", &device_s, "where the model runs: cpu or cuda"),
        ARG_F("json", &json, "print one JSON object"),
    };
    int rc = args_parse(cmd,
                        "Perplexity of a language model on a text file: each line is one example, <|endoftext|> + text +\n"
                        "<|endoftext|>, and every token after the first is predicted (docs/lm.md).",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!model || !data || !tokenizer) {
        fprintf(stderr, "%s: --model, --data and --tokenizer are required (see --help)\n", cmd);
        return 2;
    }
    dp_device device;
    if ((rc = args_device(cmd, device_s, &device))) return rc;
    ops_set_threads(threads);
    dp_model_config mc;
    if ((rc = lm_model_config(cmd, model, &mc))) return rc;
    if (max_len > mc.max_len) {
        fprintf(stderr, "%s: --max-len %d is longer than the model's context of %d positions\n", cmd, max_len, mc.max_len);
        return 2;
    }
    if (max_len == 1) {
        fprintf(stderr, "%s: --max-len 1 leaves no token to predict (at least 2)\n", cmd);
        return 2;
    }
    const int limit = max_len > 0 ? max_len : mc.max_len;
    dp_bpe *tok;
    int32_t eot;
    if ((rc = lm_tokenizer(cmd, tokenizer, &mc, &tok, &eot))) return rc;
    dp_error err;
    dp_lm_texts tx;
    dp_lm_corpus corpus = {0};
    dp_model *m = NULL;
    if (dp_lm_texts_load(&tx, data, column, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        dp_bpe_free(tok);
        return 2;
    }
    rc = 2;
    if (tx.n == 0) {
        fprintf(stderr, "%s: %s has no text (%lld empty %s)\n", cmd, data, (long long)tx.n_empty,
                column ? "fields" : "lines");
        goto out;
    }
    if (dp_lm_corpus_encode(&corpus, tok, eot, &tx, limit, &err)) {
        fprintf(stderr, "%s: %s: %s\n", cmd, data, err.msg);
        goto out;
    }
    /* the window the batches need: the longest example */
    const int B = (int)DP_MIN((int64_t)batch, corpus.n);
    if (!(m = lm_load(cmd, model, B, corpus.max_len, device))) goto out;
    dp_lm_eval_result r;
    if (dp_lm_evaluate(m, &corpus, &r, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        goto out;
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, "data", data);
        if (column) cJSON_AddStringToObject(j, "column", column);
        cJSON_AddNumberToObject(j, "examples", (double)r.examples);
        cJSON_AddNumberToObject(j, "empty_skipped", (double)tx.n_empty);
        cJSON_AddNumberToObject(j, "truncated", (double)corpus.n_truncated);
        cJSON_AddNumberToObject(j, "max_len", limit);
        cJSON_AddNumberToObject(j, "tokens", (double)r.tokens);
        cJSON_AddNumberToObject(j, "predicted_tokens", (double)r.predicted);
        cJSON_AddNumberToObject(j, "loss", r.loss);
        cJSON_AddNumberToObject(j, "perplexity", r.perplexity);
        cJSON_AddNumberToObject(j, "mean_example_loss", r.mean_example_loss);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cJSON_AddNumberToObject(j, "tokens_per_s", r.tokens_per_s);
        cJSON_AddStringToObject(j, "device", dp_device_name(device));
        char *s = cJSON_PrintUnformatted(j);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
    } else {
        printf("%s on %s%s%s: %lld examples", model, data, column ? ", column " : "", column ? column : "",
               (long long)r.examples);
        if (tx.n_empty)
            printf(" (%lld empty %s%s skipped)", (long long)tx.n_empty, column ? "field" : "line", tx.n_empty > 1 ? "s" : "");
        if (corpus.n_truncated) printf(", %lld cut to %d tokens", (long long)corpus.n_truncated, limit);
        printf(", %lld tokens, %lld predicted\n", (long long)r.tokens, (long long)r.predicted);
        printf("loss %.4f nats/token, perplexity %.4f (mean loss per example %.4f)\n", r.loss, r.perplexity,
               r.mean_example_loss);
        printf("%.0f tokens/s (%.2f s on %s)\n", r.tokens_per_s, r.seconds, dp_device_name(device));
    }
    rc = 0;
out:
    dp_model_free(m);
    dp_lm_corpus_free(&corpus);
    dp_lm_texts_free(&tx);
    dp_bpe_free(tok);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    const char *cmd = "dpformer generate";
    const char *model = NULL, *tokenizer = NULL, *prompt = NULL, *device_s = "cpu";
    int max_tokens = 50, top_k = 0, threads = 0;
    int64_t seed = 0;
    double temperature = 1.0, top_p = 1.0;
    arg_spec specs[] = {
        ARG_SM("model", &model, "PATH", "a GPT-2-family model: dpformer model file or Hugging Face folder (required)"),
        ARG_SM("tokenizer", &tokenizer, "DIR", "the model's GPT-2 BPE tokenizer files (required)"),
        ARG_SM("prompt", &prompt, "TEXT", "the text to continue (required; may be empty)"),
        ARG_IR("max-tokens", &max_tokens, "tokens to generate at most (generation also stops at <|endoftext|>)", 0, 1000000),
        ARG_LR("seed", &seed, "sampling seed: the same seed gives the same text", 0, 9.2e18),
        ARG_DR("temperature", &temperature, "softmax temperature; 0 = greedy (the most likely token)", 0, 1000),
        ARG_IR("top-k", &top_k, "sample among the k most likely tokens (0 = all)", 0, 100000000),
        ARG_DR("top-p", &top_p, "then among the most likely tokens whose probability reaches p (1 = all)", 1e-9, 1),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
        ARG_S("device", &device_s, "where the model runs: cpu or cuda"),
    };
    int rc = args_parse(cmd,
                        "Continue a prompt with a language model and print the prompt and its continuation. The model\n"
                        "reads <|endoftext|> + the prompt, as every training example starts (docs/lm.md).",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!model || !tokenizer || !prompt) {
        fprintf(stderr, "%s: --model, --tokenizer and --prompt are required (see --help)\n", cmd);
        return 2;
    }
    if (temperature == 0) {
        static const char *const sampling_only[] = {"top-k", "top-p", "seed", NULL};
        const char *f = args_first_seen(specs, (int)(sizeof specs / sizeof specs[0]), sampling_only);
        if (f) {
            fprintf(stderr, "%s: --%s applies to sampling; --temperature 0 is greedy decoding, which would ignore it\n",
                    cmd, f);
            return 2;
        }
    }
    dp_device device;
    if ((rc = args_device(cmd, device_s, &device))) return rc;
    ops_set_threads(threads);
    dp_model_config mc;
    if ((rc = lm_model_config(cmd, model, &mc))) return rc;
    dp_bpe *tok;
    int32_t eot;
    if ((rc = lm_tokenizer(cmd, tokenizer, &mc, &tok, &eot))) return rc;
    dp_error err;
    dp_bpe_ids ids = {0}, outs = {0};
    dp_bpe_text text = {0};
    dp_model *m = NULL;
    rc = 2;
    ids.ids = dp_malloc(sizeof(int32_t));
    ids.cap = 1;
    ids.ids[ids.n++] = eot;
    if (dp_bpe_encode(tok, prompt, strlen(prompt), 0, &ids, &err)) {
        fprintf(stderr, "%s: --prompt: %s\n", cmd, err.msg);
        goto out;
    }
    /* the window the generation needs, at most the model's context (older tokens slide out of it) */
    const int64_t need = (int64_t)ids.n + max_tokens;
    const int window = (int)DP_MIN(need, (int64_t)mc.max_len);
    if (!(m = lm_load(cmd, model, 1, window, device))) goto out;
    dp_lm_sampling s = {temperature, top_k, top_p, (uint64_t)seed, dp_bpe_vocab_size(tok)};
    if (dp_lm_generate(m, ids.ids, (int)ids.n, max_tokens, &s, eot, &outs, &err) ||
        dp_bpe_decode(tok, outs.ids, outs.n, 0, &text, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        rc = 1;
        goto out;
    }
    fwrite(prompt, 1, strlen(prompt), stdout);
    fwrite(text.data, 1, text.n, stdout);
    fputc('\n', stdout);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    dp_model_free(m);
    free(ids.ids);
    free(outs.ids);
    free(text.data);
    dp_bpe_free(tok);
    return rc;
}

int cmd_export(int argc, char **argv) {
    const char *cmd = "dpformer export";
    const char *model = NULL, *hf = NULL, *tokenizer = NULL;
    arg_spec specs[] = {
        ARG_SM("hf", &hf, "DIR", "write the Hugging Face layout to this new folder (required)"),
        ARG_SM("model", &model, "PATH", "a GPT-2-family model: dpformer model file or Hugging Face folder (required)"),
        ARG_SM("tokenizer", &tokenizer, "DIR", "copy these GPT-2 tokenizer files into the folder (Hugging Face names)"),
    };
    int rc = args_parse(cmd,
                        "Export a GPT-2-family language model to the Hugging Face layout: config.json, model.safetensors\n"
                        "(float32) and the tokenizer files, loadable with GPT2LMHeadModel.from_pretrained (docs/lm.md).",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!model || !hf) {
        fprintf(stderr, "%s: --hf and --model are required (see --help)\n", cmd);
        return 2;
    }
    dp_model_config mc;
    if ((rc = lm_model_config(cmd, model, &mc))) return rc;
    dp_error err;
    /* refusals first (status 2), so that a failure of the export itself is a failure to write (status 1) */
    if (tokenizer) {
        dp_bpe *tok = dp_bpe_load(tokenizer, &err);
        if (!tok) {
            fprintf(stderr, "%s: --tokenizer: %s\n", cmd, err.msg);
            return 2;
        }
        const int32_t tv = dp_bpe_vocab_size(tok);
        dp_bpe_free(tok);
        if (tv != mc.n_items) {
            fprintf(stderr, "%s: --tokenizer %s has %d tokens, the model's vocabulary %d: not the model's tokenizer\n",
                    cmd, tokenizer, tv, mc.n_items);
            return 2;
        }
    }
    struct stat st;
    if (stat(hf, &st) == 0 && !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: --hf %s exists and is not a folder\n", cmd, hf);
        return 2;
    }
    DIR *d = opendir(hf);
    if (d) {
        struct dirent *e;
        int empty = 1;
        while (empty && (e = readdir(d))) empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
        closedir(d);
        if (!empty) {
            fprintf(stderr, "%s: --hf %s exists and is not empty (the export writes a new folder; remove it or choose "
                            "another)\n", cmd, hf);
            return 2;
        }
    }
    dp_model *m = dp_lm_load(model, 0, 0, &err); /* the parameters only */
    if (!m) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        return 2;
    }
    /* the parameters as Hugging Face counts them: without the padding rows */
    size_t n = 0;
    for (int i = 0; i < dp_model_num_tensors(m); i++) n += dp_model_tensor(m, i)->size;
    n -= (size_t)mc.d_model * (mc.tied ? 1 : 2);
    rc = 0;
    if (dp_hf_export(m, hf, tokenizer, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        rc = 1;
    } else {
        printf("wrote %s: config.json, model.safetensors (%zu parameters, float32)%s\n", hf, n,
               tokenizer ? ", tokenizer files" : "");
    }
    dp_model_free(m);
    return rc;
}
