/* Fuzz target for the safetensors reader (src/model/safetensors.c) through
 * dp_safetensors_read_buffer: the input is the file. An accepted file is walked completely (every
 * tensor's bytes, its alignment, every metadata pair, lookups by name and key), then written back
 * with dp_safetensors_write_stream and read again, which must give the same tensors and metadata. A
 * refused file must come with a message naming it. */
#define _POSIX_C_SOURCE 200809L
#include "dpformer/safetensors.h"

#include "fuzz.h"

#define NAME "model.safetensors"

/* Reads every byte of every tensor (the sanitizers catch any that lies outside the data). */
static unsigned walk(const dp_st_file *f) {
    unsigned sum = 0;
    int n = dp_st_count(f);
    FUZZ_CHECK(n >= 0 && dp_st_get(f, -1) == NULL && dp_st_get(f, n) == NULL);
    for (int i = 0; i < n; i++) {
        const dp_st_tensor *t = dp_st_get(f, i);
        FUZZ_CHECK(t && t->name && t->name[0] && strcmp(t->name, "__metadata__") != 0);
        FUZZ_CHECK(dp_st_find(f, t->name) == t); /* names are unique */
        size_t es = dp_st_dtype_size(t->dtype);
        FUZZ_CHECK(es > 0 && t->ndim >= 0 && t->ndim <= DP_ST_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++) FUZZ_CHECK(t->shape[d] >= 0);
        int64_t numel = dp_st_numel(t);
        FUZZ_CHECK(numel >= 0);
        FUZZ_CHECK(numel == 0 || (t->data && (uintptr_t)t->data % es == 0));
        const unsigned char *p = t->data;
        for (int64_t k = 0; k < numel * (int64_t)es; k++) sum += p[k];
    }
    int nm = dp_st_meta_count(f);
    FUZZ_CHECK(nm >= 0 && dp_st_meta_at(f, nm, NULL) == NULL);
    for (int i = 0; i < nm; i++) {
        const char *val = NULL, *key = dp_st_meta_at(f, i, &val);
        FUZZ_CHECK(key && val && dp_st_meta(f, key) == val);
        sum += (unsigned)strlen(key) + (unsigned)strlen(val);
    }
    return sum;
}

/* Writes f back and reads the result: the same tensors (order, dtype, shape, bytes) and metadata. */
static void round_trip(const dp_st_file *f) {
    int n = dp_st_count(f), nm = dp_st_meta_count(f);
    dp_st_tensor *t = calloc((size_t)n + 1, sizeof *t);
    const char **keys = calloc((size_t)nm + 1, sizeof *keys), **vals = calloc((size_t)nm + 1, sizeof *vals);
    if (!t || !keys || !vals) abort();
    for (int i = 0; i < n; i++) t[i] = *dp_st_get(f, i);
    for (int i = 0; i < nm; i++) keys[i] = dp_st_meta_at(f, i, &vals[i]);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) abort();
    dp_error err;
    int wrote = dp_safetensors_write_stream(mem, "(memory)", t, n, keys, vals, nm, &err);
    fclose(mem);
    /* Everything the reader accepts, the writer can write. */
    if (wrote != 0) fprintf(stderr, "write failed: %s\n", err.msg);
    FUZZ_CHECK(wrote == 0);
    dp_st_file *g = NULL;
    int read = dp_safetensors_read_buffer("(memory)", buf, len, &g, &err);
    if (read != 0) fprintf(stderr, "reading back failed: %s\n", err.msg);
    FUZZ_CHECK(read == 0);
    FUZZ_CHECK(dp_st_count(g) == n && dp_st_meta_count(g) == nm);
    for (int i = 0; i < n; i++) {
        const dp_st_tensor *a = dp_st_get(f, i), *b = dp_st_get(g, i);
        FUZZ_CHECK(strcmp(a->name, b->name) == 0 && strcmp(a->dtype, b->dtype) == 0 && a->ndim == b->ndim);
        FUZZ_CHECK(memcmp(a->shape, b->shape, sizeof a->shape[0] * (size_t)a->ndim) == 0);
        size_t bytes = (size_t)dp_st_numel(a) * dp_st_dtype_size(a->dtype);
        FUZZ_CHECK(bytes == 0 || memcmp(a->data, b->data, bytes) == 0);
    }
    for (int i = 0; i < nm; i++) {
        const char *va, *vb, *ka = dp_st_meta_at(f, i, &va), *kb = dp_st_meta_at(g, i, &vb);
        FUZZ_CHECK(strcmp(ka, kb) == 0 && strcmp(va, vb) == 0);
    }
    dp_st_close(g);
    free(buf);
    free(t);
    free(keys);
    free(vals);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dp_st_file *f = NULL;
    dp_error err = {{0}};
    if (dp_safetensors_read_buffer(NAME, data, size, &f, &err) == 0) {
        FUZZ_CHECK(f != NULL);
        volatile unsigned sink = walk(f);
        (void)sink;
        round_trip(f);
        dp_st_close(f);
    } else {
        FUZZ_CHECK(f == NULL);
        FUZZ_CHECK_ERROR(err.msg, NAME);
    }
    return 0;
}
