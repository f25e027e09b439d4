/* Loading a saved model (src/model/model_io.c) from a file and from memory, and refusing files whose
 * configuration asks for more than the file holds or than the machine has, before allocating it; the
 * checksums of a saved model: a flipped weight bit or a changed metadata value is refused naming the
 * file (and the tensor), a file without checksums still loads with a one-line note. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "dpformer/model.h"
#include "dpformer/safetensors.h"
#include "testutil.h"

static dp_model_config tiny(void) {
    dp_model_config c = dp_model_config_default(5, 4);
    c.d_model = 4;
    c.n_heads = 2;
    c.n_layers = 1;
    return c;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

/* A file holding the given tensors of model m under the configuration text cfg. */
static void write_with_config(const char *path, const dp_model *m, int n_tensors, const char *cfg) {
    dp_st_tensor t[8] = {{0}};
    float *bufs[8] = {0};
    if (n_tensors > 8) abort();
    for (int i = 0; i < n_tensors; i++) {
        const dp_param_tensor *pt = dp_model_tensor(m, i);
        bufs[i] = calloc(pt->size ? pt->size : 1, sizeof(float));
        t[i] = (dp_st_tensor){pt->name, "F32", pt->ndim, {pt->shape[0], pt->shape[1]}, bufs[i]};
    }
    const char *keys[] = {"dpformer.format_version", "dpformer.config"}, *vals[] = {"1", cfg};
    dp_error err;
    CHECK(dp_safetensors_write(path, t, n_tensors, keys, vals, 2, &err) == 0);
    for (int i = 0; i < n_tensors; i++) free(bufs[i]);
}

static void test_file_and_buffer(void) {
    dp_model_config c = tiny();
    dp_error err;
    dp_model *m = dp_model_create(&c, 2, 7, &err);
    const char *path = "test_model_load.safetensors";
    CHECK(m && dp_model_save(m, path, NULL, &err) == 0);
    dp_model *a = dp_model_load(path, 2, &err);
    size_t len = 0;
    unsigned char *bytes = read_all(path, &len);
    dp_model *b = bytes ? dp_model_load_buffer("saved", bytes, len, 2, &err) : NULL;
    CHECK(a && b);
    if (a && b) {
        size_t n = dp_model_num_params(m);
        CHECK(memcmp(dp_model_params(a), dp_model_params(m), n * sizeof(dp_real)) == 0);
        CHECK(memcmp(dp_model_params(b), dp_model_params(m), n * sizeof(dp_real)) == 0);
    }
    /* A buffer cut short is refused under the name given for it. */
    CHECK(dp_model_load_buffer("saved", bytes, len - 1, 2, &err) == NULL && strncmp(err.msg, "saved: ", 7) == 0);
    free(bytes);
    dp_model_free(a), dp_model_free(b), dp_model_free(m);
    remove(path);
}

static void test_config_larger_than_file(void) {
    dp_model_config c = tiny();
    dp_error err;
    dp_model *m = dp_model_create(&c, 1, 1, &err);
    const char *path = "test_model_load_big.safetensors";
    /* 2^31 - 2 items of width 65536 (512 TiB of parameters), with a tiny model's two first tensors. */
    write_with_config(path, m, 2,
                      "{\"n_items\":2147483646,\"max_len\":4,\"d_model\":65536,\"n_heads\":1,\"n_layers\":1,"
                      "\"d_ff\":0,\"tied\":true,\"causal\":true,\"dropout\":0.1}");
    size_t rss0 = dp_peak_rss();
    CHECK(dp_model_load(path, 1, &err) == NULL && strstr(err.msg, path) && strstr(err.msg, "has 2 tensors"));
    /* The right number of tensors (no layers), with the tiny shapes: refused on the first shape. */
    dp_model_config c0 = c;
    c0.n_layers = 0;
    dp_model *m0 = dp_model_create(&c0, 1, 1, &err);
    write_with_config(path, m0, dp_model_num_tensors(m0),
                      "{\"n_items\":2147483646,\"max_len\":4,\"d_model\":65536,\"n_heads\":1,\"n_layers\":0,"
                      "\"d_ff\":0,\"tied\":true,\"causal\":true,\"dropout\":0.1}");
    CHECK(dp_model_load(path, 1, &err) == NULL && strstr(err.msg, "tensor item_emb.weight has dtype F32 and a shape"));
    CHECK(dp_peak_rss() < rss0 + ((size_t)256 << 20));
    /* No layers and d_ff = 2^31 - 1: d_ff is unused, so the model loads without its (8 GiB) buffer. */
    char cfg[256];
    snprintf(cfg, sizeof cfg,
             "{\"n_items\":5,\"max_len\":4,\"d_model\":4,\"n_heads\":2,\"n_layers\":0,\"d_ff\":%d,\"tied\":true,"
             "\"causal\":true,\"dropout\":0.1}", INT_MAX);
    write_with_config(path, m0, dp_model_num_tensors(m0), cfg);
    dp_model *ld = dp_model_load(path, 1, &err);
    CHECK(ld != NULL);
    CHECK(dp_peak_rss() < rss0 + ((size_t)256 << 20));
    dp_model_free(ld), dp_model_free(m0), dp_model_free(m);
    remove(path);
}

static void test_more_than_the_machine(void) {
    /* Attention probabilities alone: 20 layers of 65536 heads x 100000^2 positions. */
    dp_model_config c = dp_model_config_default(1000, 100000);
    c.d_model = 65536;
    c.n_heads = 65536;
    c.n_layers = 20;
    dp_error err;
    CHECK(dp_model_create(&c, 1, 0, &err) == NULL && strstr(err.msg, "GiB of memory of this machine"));
}

/* stderr of fn() (at most cap - 1 bytes) into buf. */
static void capture_stderr(void (*fn)(void *), void *arg, char *buf, size_t cap) {
    const char *tmp = "test_model_load_stderr.txt";
    fflush(stderr);
    int saved = dup(2), fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (saved < 0 || fd < 0 || dup2(fd, 2) < 0) abort();
    close(fd);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t n = 0;
    unsigned char *b = read_all(tmp, &n);
    n = b ? (n < cap - 1 ? n : cap - 1) : 0;
    if (b) memcpy(buf, b, n);
    buf[n] = 0;
    free(b);
    remove(tmp);
}

typedef struct {
    const char *path;
    dp_model *m;
    dp_error err;
} load_call;

static void do_load(void *arg) {
    load_call *c = arg;
    c->m = dp_model_load(c->path, 2, &c->err);
}

static void test_checksums(void) {
    dp_model_config c = tiny();
    dp_error err;
    dp_model *m = dp_model_create(&c, 2, 3, &err);
    const char *path = "test_model_load_sums.safetensors", *bad = "test_model_load_bad.safetensors";
    CHECK(m && dp_model_save(m, path, "{\"note\":\"x\"}", &err) == 0);
    /* written with its checksums, verified silently */
    dp_st_file *f = NULL;
    CHECK(dp_safetensors_read(path, &f, &err) == 0 && dp_st_meta(f, DP_ST_KEY_CHECKSUMS) != NULL);
    CHECK(f && dp_st_verify_checksums(f, path, &err) == 1);
    char out[2048];
    load_call lc = {path, NULL, {{0}}};
    capture_stderr(do_load, &lc, out, sizeof out);
    CHECK(lc.m != NULL && out[0] == 0);
    dp_model_free(lc.m);

    /* one bit of one weight flipped (the value stays finite): refused, naming the file and the tensor */
    size_t len = 0;
    unsigned char *b = read_all(path, &len);
    uint64_t hlen = 0;
    for (int k = 0; b && k < 8; k++) hlen |= (uint64_t)b[k] << (8 * k);
    const dp_st_tensor *t1 = f ? dp_st_find(f, "pos_emb.weight") : NULL;
    CHECK(b && t1);
    if (b && t1) {
        /* pos_emb.weight comes right after item_emb.weight ([V+1, d] floats) in the data section */
        size_t at = 8 + (size_t)hlen + sizeof(float) * (size_t)(c.n_items + 1) * (size_t)c.d_model + 4;
        b[at] ^= 0x01;
        FILE *w = fopen(bad, "wb");
        CHECK(w && fwrite(b, 1, len, w) == len);
        if (w) fclose(w);
        dp_model *x = dp_model_load(bad, 2, &err);
        CHECK(x == NULL && strstr(err.msg, bad) && strstr(err.msg, "tensor pos_emb.weight: checksum mismatch"));
        if (x) fprintf(stderr, "a flipped weight bit was accepted\n");
        dp_model_free(x);
    }
    free(b);

    /* a metadata value changed (the file structure stays valid): refused as well */
    int nm = f ? dp_st_meta_count(f) : 0, n = f ? dp_st_count(f) : 0;
    const char **mk = calloc((size_t)nm + 1, sizeof *mk), **mv = calloc((size_t)nm + 1, sizeof *mv);
    dp_st_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    for (int i = 0; i < nm; i++) {
        mk[i] = dp_st_meta_at(f, i, &mv[i]);
        if (strcmp(mk[i], "dpformer.run") == 0) mv[i] = "{\"note\":\"y\"}";
    }
    for (int i = 0; i < n; i++) ts[i] = *dp_st_get(f, i);
    CHECK(dp_safetensors_write(bad, ts, n, mk, mv, nm, &err) == 0);
    dp_model *x = dp_model_load(bad, 2, &err);
    CHECK(x == NULL && strstr(err.msg, bad) && strstr(err.msg, "metadata checksum mismatch"));
    dp_model_free(x);

    /* the same file without the checksum key (an older dpformer, another writer): it loads, with a
     * one-line note on stderr naming the file */
    int k = 0;
    for (int i = 0; i < nm; i++)
        if (strcmp(mk[i], DP_ST_KEY_CHECKSUMS) != 0) mk[k] = mk[i], mv[k++] = strcmp(mk[i], "dpformer.run") ? mv[i] : "{}";
    CHECK(dp_safetensors_write(bad, ts, n, mk, mv, k, &err) == 0);
    lc = (load_call){bad, NULL, {{0}}};
    capture_stderr(do_load, &lc, out, sizeof out);
    CHECK(lc.m != NULL);
    CHECK(strncmp(out, "note: ", 6) == 0 && strstr(out, bad) && strstr(out, "no checksums") &&
          strchr(out, '\n') == out + strlen(out) - 1);
    if (lc.m) CHECK(memcmp(dp_model_params(lc.m), dp_model_params(m), dp_model_num_params(m) * sizeof(dp_real)) == 0);
    dp_model_free(lc.m);
    free(mk);
    free(mv);
    free(ts);
    dp_st_close(f);
    dp_model_free(m);
    remove(path);
    remove(bad);
}

int main(void) {
    test_checksums();
    test_file_and_buffer();
    test_config_larger_than_file();
    test_more_than_the_machine();
    return tu_finish("test_model_load");
}
