/* GPT-2-family forward pass against an independent PyTorch implementation (tests/lm_torch_ref.py, in
 * float64): random-weight GPT-2 models written in the Hugging Face layout by the script (tied F32 with
 * the mask buffers; untied F16 with the "transformer." prefix) are loaded through dp_model_load, and
 * their logits at every position, per-example losses, and the perplexity of a text file (the library
 * and `dpformer eval-lm --json`) must agree within 1e-4 relative. Skipped (exit 77) when no python3
 * can import torch (Debian: python3-torch). */
#define _DEFAULT_SOURCE /* mkdtemp, popen */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpformer/lm.h"
#include "dpformer/safetensors.h"
#include "testutil.h"

#define TOL 1e-4

/* A python3 that imports torch: $DPFORMER_PYTHON, python3 on the PATH, or Debian's /usr/bin/python3
 * (where python3-torch installs, should another python3 come first on the PATH). */
static const char *find_python(void) {
    static const char *cands[3];
    cands[0] = getenv("DPFORMER_PYTHON");
    cands[1] = "python3";
    cands[2] = "/usr/bin/python3";
    for (int i = 0; i < 3; i++) {
        if (!cands[i]) continue;
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s -c 'import torch' > /dev/null 2>&1", cands[i]);
        if (system(cmd) == 0) return cands[i];
    }
    return NULL;
}

static const dp_st_tensor *need(const dp_st_file *f, const char *name) {
    const dp_st_tensor *t = dp_st_find(f, name);
    if (!t) {
        fprintf(stderr, "reference lacks %s\n", name);
        exit(1);
    }
    return t;
}

/* eval-lm's perplexity through the command line (NAN when it could not be run). */
static double cli_perplexity(const char *bin, const char *model, const char *dir) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' eval-lm --model '%s' --data '%s/data.txt' --tokenizer '%s/tok' --batch-size 3 --json",
             bin, model, dir, dir);
    FILE *p = popen(cmd, "r");
    if (!p) return NAN;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    int rc = pclose(p);
    cJSON *j = cJSON_Parse(buf);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "perplexity");
    double x = rc == 0 && cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (isnan(x)) fprintf(stderr, "eval-lm failed (status %d): %s\n", rc, buf);
    cJSON_Delete(j);
    return x;
}

static void check_variant(const char *dir, const char *name, dp_bpe *tok) {
    char model[600], ref[600];
    snprintf(model, sizeof model, "%s/%s", dir, name);
    snprintf(ref, sizeof ref, "%s/ref_%s.safetensors", dir, name);
    dp_st_file *f = NULL;
    dp_error e;
    if (dp_safetensors_read(ref, &f, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        CHECK(0);
        return;
    }
    const dp_st_tensor *tt = need(f, "tokens"), *tl = need(f, "lengths"), *tz = need(f, "logits"), *tlo = need(f, "losses");
    const int B = (int)tt->shape[0], T = (int)tt->shape[1], V = (int)tz->shape[2];
    const int32_t *tokens = tt->data, *lengths = tl->data;
    const float *zref = tz->data;
    const double *lref = tlo->data;
    dp_model *m = dp_model_load(model, B, &e);
    if (!m) fprintf(stderr, "%s\n", e.msg);
    CHECK(m != NULL);
    if (!m) {
        dp_st_close(f);
        return;
    }
    CHECK(dp_model_config_of(m)->n_items == V);
    /* logits of every position */
    int *len = malloc(sizeof(int) * (size_t)B);
    for (int b = 0; b < B; b++) len[b] = lengths[b];
    dp_real *z = malloc(sizeof(dp_real) * (size_t)B * T * V);
    CHECK(dp_lm_logits(m, tokens, len, B, T, z, &e) == 0);
    double zmax = 0, dmax = 0, worst_rel = 0;
    for (size_t k = 0; k < (size_t)B * T * V; k++) {
        zmax = fmax(zmax, fabs(zref[k]));
        dmax = fmax(dmax, fabs(z[k] - zref[k]));
        worst_rel = fmax(worst_rel, fabs(z[k] - zref[k]) / fmax(1.0, fabs(zref[k])));
    }
    /* per-example losses through the engine (the mean over the predicted tokens) */
    int32_t *ids = calloc((size_t)B * T, sizeof(int32_t)), *tgt = calloc((size_t)B * T, sizeof(int32_t));
    for (int b = 0; b < B; b++) dp_lm_make_example(ids + (size_t)b * T, tgt + (size_t)b * T, tokens + (size_t)b * T, len[b], T);
    dp_batch bt = {B, T, ids, tgt, NULL};
    double *loss = malloc(sizeof(double) * (size_t)B), lworst = 0;
    dp_model_forward(m, &bt, 0, 0, loss);
    for (int b = 0; b < B; b++) lworst = fmax(lworst, fabs(loss[b] - lref[b]) / fabs(lref[b]));
    /* the perplexity of the whole file: the library, and the command line */
    const double ppl_ref = strtod(dp_st_meta(f, "perplexity"), NULL);
    dp_lm_texts tx;
    dp_lm_corpus c;
    dp_lm_eval_result r = {0};
    char data[600];
    snprintf(data, sizeof data, "%s/data.txt", dir);
    CHECK(dp_lm_texts_load(&tx, data, NULL, &e) == 0);
    CHECK(dp_lm_corpus_encode(&c, tok, 256, &tx, dp_model_config_of(m)->max_len, &e) == 0);
    CHECK(dp_lm_evaluate(m, &c, &r, &e) == 0);
    CHECK(r.predicted == strtoll(dp_st_meta(f, "predicted"), NULL, 10));
    const char *bin = getenv("DPFORMER_BIN");
    double ppl_cli = bin ? cli_perplexity(bin, model, dir) : NAN;
    printf("%-6s logits: max |diff| %.3g (max |logit| %.3g, max elementwise rel %.3g); losses max rel %.3g; "
           "perplexity %.6f vs torch %.6f (rel %.3g), eval-lm %.6f\n", name, dmax, zmax, worst_rel, lworst,
           r.perplexity, ppl_ref, fabs(r.perplexity - ppl_ref) / ppl_ref, ppl_cli);
    CHECK(dmax <= TOL * zmax);
    CHECK(worst_rel <= TOL);
    CHECK(lworst <= TOL);
    CHECK(fabs(r.perplexity - ppl_ref) <= TOL * ppl_ref);
    if (bin) CHECK(fabs(ppl_cli - ppl_ref) <= TOL * ppl_ref);
    dp_lm_corpus_free(&c);
    dp_lm_texts_free(&tx);
    free(len);
    free(z);
    free(ids);
    free(tgt);
    free(loss);
    dp_model_free(m);
    dp_st_close(f);
}

int main(void) {
    const char *py = find_python();
    if (!py) {
        printf("test_lm_torch: skipped: no python3 here can import torch (Debian: apt-get install python3-torch)\n");
        return 77;
    }
    const char *src = getenv("DPFORMER_SOURCE_DIR") ? getenv("DPFORMER_SOURCE_DIR") : "..";
    char dir[256];
    snprintf(dir, sizeof dir, "%s/dpformer-test-lm-torch-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s '%s/tests/lm_torch_ref.py' '%s'", py, src, dir);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "test_lm_torch: %s failed (status %d)\n", cmd, rc);
        return 1;
    }
    char tokdir[300];
    snprintf(tokdir, sizeof tokdir, "%s/tok", dir);
    dp_error e;
    dp_bpe *tok = dp_bpe_load(tokdir, &e);
    CHECK(tok != NULL);
    if (tok) {
        check_variant(dir, "tied", tok);
        check_variant(dir, "untied", tok);
        dp_bpe_free(tok);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_lm_torch");
}
