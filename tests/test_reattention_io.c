/* Re-Attention in model files (src/model/model_io.c): a model saved with Re-Attention attached loads
 * back with the same setting (κ, σ, B, N and bit-identical frequencies) and the same outputs, which
 * differ from the same model without the correction; files without the setting load as before; and
 * files whose setting is broken (metadata without the tensor, a tensor of the wrong dtype or shape, a
 * frequency outside [0, 1] or NaN, malformed JSON, an extra tensor without the metadata) are refused
 * with a message naming the file and the field. The file is also checked by the independent reader
 * tests/safetensors_check.py when python3 is there. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dpformer/reattention.h"
#include "dpformer/safetensors.h"
#include "model/model_internal.h"
#include "testutil.h"

enum { V = 30, L = 8, B = 3 };

static const char *PATH = "test_reattention_io.safetensors";
static const char *BAD = "test_reattention_io_bad.safetensors";

static dp_model *make_model(void) {
    dp_model_config cfg = dp_model_config_default(V, L);
    cfg.d_model = 16;
    cfg.n_heads = 2;
    cfg.n_layers = 2;
    cfg.d_ff = 24;
    cfg.dropout = 0.1f;
    dp_error err;
    dp_model *m = dp_model_create(&cfg, B, 11, &err);
    uint64_t s = 5;
    dp_real *p = dp_model_params(m);
    for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += (dp_real)(0.3 * tu_normal(&s));
    return m;
}

static const int32_t ids[B * L] = {0, 0, 3, 5, 3, 9, 1, 2, /**/ 1, 2, 29, 2, 30, 7, 1, 28, /**/ 0, 0, 0, 0, 0, 6, 27, 4};
static const int32_t tgt[B * L] = {0, 0, 5, 3, 9, 1, 2, 7, /**/ 2, 29, 2, 30, 7, 1, 28, 3, /**/ 0, 0, 0, 0, 0, 27, 4, 11};

/* Scores of the last position and the per-example losses of an evaluation pass. */
static void outputs(dp_model *m, dp_real *scores, double *loss) {
    dp_model_score_last(m, ids, B, scores);
    dp_model_forward(m, &(dp_batch){B, L, ids, tgt, NULL}, 0, 0, loss);
}

/* Copy the file at src to dst with one change: tensor `drop` left out, tensor `swap_name` replaced by
 * `swap`, metadata `key` given value `val` (NULL: removed). Any of them may be NULL. */
static void rewrite(const char *src, const char *dst, const char *drop, const dp_st_tensor *swap, const char *key,
                    const char *val) {
    dp_st_file *f = NULL;
    dp_error err;
    if (dp_safetensors_read(src, &f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    int n = dp_st_count(f), nm = dp_st_meta_count(f), k = 0, km = 0;
    dp_st_tensor *t = calloc((size_t)n + 1, sizeof *t);
    const char **mk = calloc((size_t)nm + 1, sizeof *mk), **mv = calloc((size_t)nm + 1, sizeof *mv);
    for (int i = 0; i < n; i++) {
        const dp_st_tensor *x = dp_st_get(f, i);
        if (drop && strcmp(x->name, drop) == 0) continue;
        t[k++] = swap && strcmp(x->name, swap->name) == 0 ? *swap : *x;
    }
    for (int i = 0; i < nm; i++) {
        const char *v, *name = dp_st_meta_at(f, i, &v);
        if (key && strcmp(name, key) == 0) {
            if (!val) continue;
            v = val;
        }
        mk[km] = name, mv[km++] = v;
    }
    CHECK(dp_safetensors_write(dst, t, k, mk, mv, km, &err) == 0);
    free(t);
    free(mk);
    free(mv);
    dp_st_close(f);
}

/* dp_model_load of `path` must fail with a message containing the file name and `want`. */
static void refused(const char *path, const char *want) {
    dp_error err = {{0}};
    dp_model *m = dp_model_load(path, B, &err);
    CHECK(m == NULL);
    int ok = m == NULL && strstr(err.msg, path) && strstr(err.msg, want);
    if (!ok) fprintf(stderr, "expected a refusal naming %s and \"%s\", got: %s\n", path, want, m ? "(loaded)" : err.msg);
    CHECK(ok);
    dp_model_free(m);
}

static int python_check(const char *path) {
    if (system("python3 -c 'import json, struct, array' >/dev/null 2>&1") != 0) {
        printf("test_reattention_io: python3 not found; the independent reader check is skipped\n");
        return -1;
    }
    char script[1024], cmd[4096];
    const char *src = getenv("DPFORMER_SOURCE_DIR");
    if (src && *src) snprintf(script, sizeof script, "%s/tests/safetensors_check.py", src);
    else {
        snprintf(script, sizeof script, "%s", __FILE__);
        char *slash = strrchr(script, '/');
        if (slash) strcpy(slash + 1, "safetensors_check.py");
    }
    if (access(script, R_OK) != 0) return -1;
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' | grep '^reattention.item_freq F64 \\[%d\\]' >/dev/null", script, path, V + 1);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
}

int main(void) {
    dp_model *m = make_model();
    double freq[V + 1];
    uint64_t s = 77;
    freq[0] = 0;
    for (int i = 1; i <= V; i++) freq[i] = tu_uniform(&s) * tu_uniform(&s); /* skewed toward 0 */
    freq[V] = 1.0;
    freq[V - 1] = 0;
    freq[3] = 0.1 + 3e-17; /* a value whose last bits matter */
    dp_reattention_config rc = dp_reattention_config_default();
    rc.enabled = 1;
    rc.kappa = 0.7 + 1e-12;
    rc.sigma = 1.2345678901234567;
    rc.batch_size = 12.3456789;
    rc.item_freq = freq;
    rc.n_examples = 987;
    dp_error err;
    CHECK(dp_model_set_reattention(m, &rc, &err) == 0);
    dp_real s_orig[B * (V + 1)], s_load[B * (V + 1)], s_plain[B * (V + 1)];
    double l_orig[B], l_load[B], l_plain[B];
    outputs(m, s_orig, l_orig);
    CHECK(dp_model_save(m, PATH, "{}", &err) == 0);

    /* loaded: the same setting, bit for bit, and the same outputs */
    dp_model *a = dp_model_load(PATH, B, &err);
    CHECK(a != NULL);
    if (!a) fprintf(stderr, "%s\n", err.msg);
    if (a) {
        dp_reattention_config got;
        CHECK(dp_model_get_reattention(a, &got) == 1);
        CHECK(got.kappa == rc.kappa && got.sigma == rc.sigma && got.batch_size == rc.batch_size);
        CHECK(got.n_examples == rc.n_examples);
        CHECK(got.item_freq && memcmp(got.item_freq, freq, sizeof freq) == 0);
        outputs(a, s_load, l_load);
        CHECK(memcmp(s_load, s_orig, sizeof s_orig) == 0);
        CHECK(memcmp(l_load, l_orig, sizeof l_orig) == 0);
        /* detached, the same parameters give other outputs: a loader that dropped the setting fails above */
        CHECK(dp_model_set_reattention(a, NULL, &err) == 0);
        outputs(a, s_plain, l_plain);
        double d = 0;
        for (int b = 0; b < B; b++) d = fmax(d, fabs(l_plain[b] - l_orig[b]));
        CHECK(d > 1e-4);
        CHECK(memcmp(s_plain, s_orig, sizeof s_orig) != 0);
        /* saving the detached model writes no setting, and it loads without one (as before) */
        CHECK(dp_model_save(a, BAD, NULL, &err) == 0);
        dp_model *p = dp_model_load(BAD, B, &err);
        dp_reattention_config none;
        CHECK(p && dp_model_get_reattention(p, &none) == 0);
        dp_st_file *f = NULL;
        CHECK(dp_safetensors_read(BAD, &f, &err) == 0 && dp_st_find(f, "reattention.item_freq") == NULL &&
              dp_st_meta(f, "dpformer.reattention") == NULL && dp_st_count(f) == dp_model_num_tensors(m));
        dp_st_close(f);
        dp_model_free(p);
    }
    dp_model_free(a);

    /* from memory too */
    FILE *fp = fopen(PATH, "rb");
    unsigned char *bytes = malloc(1 << 20);
    size_t len = fp ? fread(bytes, 1, 1 << 20, fp) : 0;
    if (fp) fclose(fp);
    dp_model *b = dp_model_load_buffer("buf", bytes, len, B, &err);
    dp_reattention_config got;
    CHECK(b && dp_model_get_reattention(b, &got) == 1 && memcmp(got.item_freq, freq, sizeof freq) == 0);
    free(bytes);
    dp_model_free(b);

    /* the file as stored: the metadata text and the F64 tensor first */
    dp_st_file *f = NULL;
    CHECK(dp_safetensors_read(PATH, &f, &err) == 0);
    const char *meta = f ? dp_st_meta(f, "dpformer.reattention") : NULL;
    CHECK(meta && strstr(meta, "\"n_examples\":987") && strstr(meta, "\"sigma\":1.2345678901234567"));
    const dp_st_tensor *t0 = f ? dp_st_get(f, 0) : NULL;
    CHECK(t0 && strcmp(t0->name, "reattention.item_freq") == 0 && strcmp(t0->dtype, "F64") == 0 && t0->ndim == 1 &&
          t0->shape[0] == V + 1);
    dp_st_close(f);
    int py = python_check(PATH);
    if (py >= 0) CHECK(py == 0);

    /* broken files */
    rewrite(PATH, BAD, "reattention.item_freq", NULL, NULL, NULL);
    refused(BAD, "tensor reattention.item_freq is missing");
    float f32[V + 1];
    for (int i = 0; i <= V; i++) f32[i] = (float)freq[i];
    dp_st_tensor sw = {"reattention.item_freq", "F32", 1, {V + 1}, f32};
    rewrite(PATH, BAD, NULL, &sw, NULL, NULL);
    refused(BAD, "tensor reattention.item_freq must be F64 [31]");
    sw = (dp_st_tensor){"reattention.item_freq", "F64", 1, {V}, freq};
    rewrite(PATH, BAD, NULL, &sw, NULL, NULL);
    refused(BAD, "tensor reattention.item_freq must be F64 [31]");
    sw = (dp_st_tensor){"reattention.item_freq", "F64", 2, {1, V + 1}, freq};
    rewrite(PATH, BAD, NULL, &sw, NULL, NULL);
    refused(BAD, "tensor reattention.item_freq must be F64 [31]");
    double badf[V + 1];
    memcpy(badf, freq, sizeof badf);
    badf[12] = 1.0000001;
    sw = (dp_st_tensor){"reattention.item_freq", "F64", 1, {V + 1}, badf};
    rewrite(PATH, BAD, NULL, &sw, NULL, NULL);
    refused(BAD, "reattention.item_freq: value at index 12");
    badf[12] = NAN;
    rewrite(PATH, BAD, NULL, &sw, NULL, NULL);
    refused(BAD, "reattention.item_freq: value at index 12");
    badf[12] = freq[12];
    badf[0] = -0.5;
    rewrite(PATH, BAD, NULL, &sw, NULL, NULL);
    refused(BAD, "reattention.item_freq: value at index 0");
    rewrite(PATH, BAD, NULL, NULL, "dpformer.reattention", "{\"kappa\":1,\"sigma\":1,\"batch_size\":4,");
    refused(BAD, "metadata dpformer.reattention");
    rewrite(PATH, BAD, NULL, NULL, "dpformer.reattention", "{\"kappa\":1,\"sigma\":1,\"n_examples\":10}");
    refused(BAD, "metadata dpformer.reattention: field \"batch_size\"");
    rewrite(PATH, BAD, NULL, NULL, "dpformer.reattention", "{\"kappa\":-1,\"sigma\":1,\"batch_size\":4,\"n_examples\":10}");
    refused(BAD, "metadata dpformer.reattention: field \"kappa\"");
    rewrite(PATH, BAD, NULL, NULL, "dpformer.reattention", "{\"kappa\":1,\"sigma\":1,\"batch_size\":4,\"n_examples\":2.5}");
    refused(BAD, "metadata dpformer.reattention: field \"n_examples\"");
    rewrite(PATH, BAD, NULL, NULL, "dpformer.reattention", "[1,2]");
    refused(BAD, "metadata dpformer.reattention");
    /* the tensor without the metadata: one tensor too many, as for any other stray tensor */
    rewrite(PATH, BAD, NULL, NULL, "dpformer.reattention", NULL);
    refused(BAD, "tensors, the configuration needs");

    dp_model_free(m);
    remove(PATH);
    remove(BAD);
    return tu_finish("test_reattention_io");
}
