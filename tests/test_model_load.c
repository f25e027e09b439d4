/* Loading a saved model (src/model/model_io.c) from a file and from memory, and refusing files whose
 * configuration asks for more than the file holds or than the machine has, before allocating it. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdlib.h>
#include <string.h>

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

int main(void) {
    test_file_and_buffer();
    test_config_larger_than_file();
    test_more_than_the_machine();
    return tu_finish("test_model_load");
}
