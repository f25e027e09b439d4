/* Tests of the safetensors reader and writer (src/model/safetensors.c): round trips, refusal of every
 * kind of damaged or malformed file, atomic replacement when writing fails, and a check of written
 * files by an independent parser (tests/safetensors_check.py, Python standard library only); the
 * checksums (dpformer.checksums) of model files and checkpoints; the atomic file writer and the
 * same-file test of src/core (used by every output of the command line). */
#define _POSIX_C_SOURCE 200809L
#include "dpformer/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "testutil.h"

static char g_dir[256];

/* g_dir/name in a rotating set of buffers: valid until three more calls. */
static const char *in_dir(const char *name) {
    static char bufs[4][512];
    static int k = 0;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
    return b;
}

static void write_raw(const char *path, const void *bytes, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp || (len && fwrite(bytes, 1, len, fp) != len) || fclose(fp) != 0) {
        fprintf(stderr, "cannot write test file %s\n", path);
        exit(2);
    }
}

/* Whole file into a malloc'd buffer (NULL if it cannot be read). */
static unsigned char *read_raw(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, fp) != (size_t)n) n = -1;
    fclose(fp);
    if (n < 0) {
        free(b);
        return NULL;
    }
    *len = (size_t)n;
    return b;
}

/* Entries in a folder, "." and ".." excluded (-1 if it cannot be listed). */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        chmod(path, 0700);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* A file made of an 8-byte length, the header text as given (no padding) and data bytes. */
static void craft(const char *path, uint64_t len_field, const char *header, const void *data, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *b = malloc(8 + hl + data_len + 1);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)(len_field >> (8 * k));
    memcpy(b + 8, header, hl);
    if (data_len) memcpy(b + 8 + hl, data, data_len);
    write_raw(path, b, 8 + hl + data_len);
    free(b);
}

/* The read of path must fail, leave *out NULL and give a message naming the file and containing
 * `what` (and `what2` if given). */
static void check_refused_at(const char *path, const char *what, const char *what2, int line) {
    dp_st_file *f = (dp_st_file *)&f; /* not NULL: the reader must reset it */
    dp_error err = {{0}};
    int rc = dp_safetensors_read(path, &f, &err);
    tu_checks++;
    if (rc == 0 || f != NULL || !strstr(err.msg, path) || (what && !strstr(err.msg, what)) ||
        (what2 && !strstr(err.msg, what2))) {
        tu_failures++;
        fprintf(stderr, "%s:%d: expected refusal containing \"%s\"%s%s%s, got rc=%d msg=\"%s\"\n", __FILE__, line,
                what ? what : "", what2 ? " and \"" : "", what2 ? what2 : "", what2 ? "\"" : "", rc, err.msg);
    }
    if (rc == 0) dp_st_close(f);
}
#define REFUSED(path, what) check_refused_at((path), (what), NULL, __LINE__)
#define REFUSED2(path, what, what2) check_refused_at((path), (what), (what2), __LINE__)

static int same_file(const char *path, const unsigned char *bytes, size_t len) {
    size_t n;
    unsigned char *b = read_raw(path, &n);
    int same = b && n == len && memcmp(b, bytes, len) == 0;
    free(b);
    return same;
}

/* ---------------------------------------------------------------------------------------------- */

static const float w_vals[6] = {0.5f, -1.25f, 3.0f, 1e-7f, -0.0f, 65504.0f};
static const int32_t i32_vals[8] = {7, -3, 0, 2147483647, -2147483647 - 1, 12, 13, -14};
static const int64_t i64_vals[3] = {INT64_MIN, 0, INT64_MAX};
static const uint8_t u8_vals[5] = {0, 1, 2, 254, 255};
static const double f64_vals[4] = {3.141592653589793, -2.718281828459045, 1e300, 5e-324};
static const float scalar_val = 42.0f;

/* Seven tensors; the U8 one puts the F64 one at an offset that is not a multiple of 8. */
static int sample_tensors(dp_st_tensor *t) {
    memset(t, 0, 7 * sizeof *t);
    t[0] = (dp_st_tensor){"w.f32", "F32", 2, {2, 3}, w_vals};
    t[1] = (dp_st_tensor){"counts.i32", "I32", 3, {2, 2, 2}, i32_vals};
    t[2] = (dp_st_tensor){"big.i64", "I64", 1, {3}, i64_vals};
    t[3] = (dp_st_tensor){"flag.u8", "U8", 1, {5}, u8_vals};
    t[4] = (dp_st_tensor){"x.f64", "F64", 1, {4}, f64_vals};
    t[5] = (dp_st_tensor){"scalar", "F32", 0, {0}, &scalar_val};
    t[6] = (dp_st_tensor){"empty", "F32", 2, {0, 3}, NULL};
    return 7;
}

static const char *meta_k[3] = {"format", "quote\"back\\slash", "unicode \xc3\xa9"};
static const char *meta_v[3] = {"dpformer", "line\nbreak\ttab", "h\xc3\xa9llo \xe2\x9c\x93"};

static void test_round_trip(void) {
    dp_st_tensor t[7];
    int n = sample_tensors(t);
    const char *path = in_dir("model.safetensors");
    dp_error err = {{0}};
    int rc = dp_safetensors_write(path, t, n, meta_k, meta_v, 3, &err);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "write: %s\n", err.msg);
        return;
    }
    /* Layout: header length a multiple of 8, padded with spaces, data size as expected. */
    size_t len;
    unsigned char *b = read_raw(path, &len);
    CHECK(b != NULL && len > 8);
    if (!b) return;
    uint64_t hl = 0;
    for (int k = 0; k < 8; k++) hl |= (uint64_t)b[k] << (8 * k);
    size_t data_bytes = sizeof w_vals + sizeof i32_vals + sizeof i64_vals + sizeof u8_vals + sizeof f64_vals + 4;
    CHECK(hl % 8 == 0);
    CHECK(len == 8 + hl + data_bytes);
    CHECK(b[8] == '{');
    size_t last = 8 + hl - 1;
    while (last > 8 && b[last] == ' ') last--;
    CHECK(b[last] == '}');
    CHECK(8 + hl - 1 - last < 8); /* padding is shorter than the alignment */
    free(b);

    dp_st_file *f = NULL;
    rc = dp_safetensors_read(path, &f, &err);
    CHECK(rc == 0 && f != NULL);
    if (rc) {
        fprintf(stderr, "read: %s\n", err.msg);
        return;
    }
    CHECK(dp_st_count(f) == n);
    for (int i = 0; i < n && i < dp_st_count(f); i++) {
        const dp_st_tensor *r = dp_st_get(f, i);
        CHECK(strcmp(r->name, t[i].name) == 0); /* order of the header is the order given */
        CHECK(strcmp(r->dtype, t[i].dtype) == 0);
        CHECK(r->ndim == t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) CHECK(r->shape[d] == t[i].shape[d]);
        CHECK(dp_st_numel(r) == dp_st_numel(&t[i]));
        size_t bytes = (size_t)dp_st_numel(r) * dp_st_dtype_size(r->dtype);
        if (bytes) CHECK(memcmp(r->data, t[i].data, bytes) == 0);
        CHECK(r->data != NULL && (uintptr_t)r->data % dp_st_dtype_size(r->dtype) == 0);
        CHECK(dp_st_find(f, t[i].name) == r);
    }
    const dp_st_tensor *x = dp_st_find(f, "x.f64");
    CHECK(x && ((const double *)x->data)[3] == 5e-324);
    const dp_st_tensor *s = dp_st_find(f, "scalar");
    CHECK(s && s->ndim == 0 && dp_st_numel(s) == 1 && *(const float *)s->data == 42.0f);
    CHECK(dp_st_numel(dp_st_find(f, "empty")) == 0);
    CHECK(dp_st_find(f, "nope") == NULL);
    CHECK(dp_st_get(f, -1) == NULL && dp_st_get(f, n) == NULL);
    CHECK(dp_st_meta_count(f) == 3);
    for (int i = 0; i < 3; i++) {
        const char *v = dp_st_meta(f, meta_k[i]);
        CHECK(v && strcmp(v, meta_v[i]) == 0);
        const char *val = NULL;
        const char *key = dp_st_meta_at(f, i, &val);
        CHECK(key && strcmp(key, meta_k[i]) == 0 && val == v);
    }
    CHECK(dp_st_meta(f, "missing") == NULL);
    CHECK(dp_st_meta_at(f, 3, NULL) == NULL);
    dp_st_close(f);

    /* The header alone: the same tensors and metadata, no data (what a caller looks at before loading). */
    f = NULL;
    rc = dp_safetensors_read_header(path, &f, &err);
    CHECK(rc == 0 && f != NULL && dp_st_count(f) == n && dp_st_meta_count(f) == 3);
    for (int i = 0; f && i < n && i < dp_st_count(f); i++) {
        const dp_st_tensor *r = dp_st_get(f, i);
        CHECK(strcmp(r->name, t[i].name) == 0 && strcmp(r->dtype, t[i].dtype) == 0 && r->data == NULL);
        CHECK(dp_st_numel(r) == dp_st_numel(&t[i]));
    }
    for (int i = 0; f && i < 3; i++) {
        const char *v = dp_st_meta(f, meta_k[i]);
        CHECK(v && strcmp(v, meta_v[i]) == 0);
    }
    dp_st_close(f);

    /* No metadata and no tensors is a valid (tiny) file too. */
    const char *p0 = in_dir("empty.safetensors");
    CHECK(dp_safetensors_write(p0, NULL, 0, NULL, NULL, 0, &err) == 0);
    f = NULL;
    CHECK(dp_safetensors_read(p0, &f, &err) == 0 && f && dp_st_count(f) == 0 && dp_st_meta_count(f) == 0);
    dp_st_close(f);

    /* Replacing an existing file works, and leaves nothing else in the folder. */
    int before = count_entries(g_dir);
    dp_st_tensor one = {"w.f32", "F32", 1, {6}, w_vals};
    CHECK(dp_safetensors_write(path, &one, 1, NULL, NULL, 0, &err) == 0);
    f = NULL;
    CHECK(dp_safetensors_read(path, &f, &err) == 0 && f && dp_st_count(f) == 1 && dp_st_meta_count(f) == 0);
    if (f) CHECK(dp_st_get(f, 0)->ndim == 1 && dp_st_get(f, 0)->shape[0] == 6);
    dp_st_close(f);
    CHECK(count_entries(g_dir) == before);
    unlink(p0);
}

/* Cutting a valid file anywhere must be detected, with the region named in the message. */
static void test_truncation(void) {
    dp_st_tensor t[7];
    int n = sample_tensors(t);
    const char *path = in_dir("full.safetensors");
    const char *cut = in_dir("cut.safetensors");
    dp_error err = {{0}};
    CHECK(dp_safetensors_write(path, t, n, meta_k, meta_v, 3, &err) == 0);
    size_t len;
    unsigned char *b = read_raw(path, &len);
    if (!b) {
        CHECK(0);
        return;
    }
    uint64_t hl = 0;
    for (int k = 0; k < 8; k++) hl |= (uint64_t)b[k] << (8 * k);
    for (size_t l = 0; l < len; l++) {
        write_raw(cut, b, l);
        if (l < 8) REFUSED(cut, "too short");
        else if (l < 8 + hl) REFUSED(cut, "header length");
        else REFUSED(cut, "extend past the");
    }
    /* The header-only reader checks the tensors against the file's size too: a cut data section is refused. */
    write_raw(cut, b, len - 1);
    dp_st_file *hf = NULL;
    CHECK(dp_safetensors_read_header(cut, &hf, &err) != 0 && hf == NULL && strstr(err.msg, "extend past the"));
    /* One byte too many at the end is refused as well. */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, b, len);
    longer[len] = 0;
    write_raw(cut, longer, len + 1);
    REFUSED(cut, "extra bytes");
    free(longer);
    free(b);
    unlink(cut);
    unlink(path);
}

/* Random damage (a few bytes overwritten, header bytes favoured) must give either a clean refusal or a
 * file that reads back consistently; under the sanitizers this also shows that nothing is read out
 * of bounds. */
static void test_random_damage(void) {
    dp_st_tensor t[7];
    int n = sample_tensors(t);
    const char *path = in_dir("orig.safetensors");
    const char *dmg = in_dir("damaged.safetensors");
    dp_error err = {{0}};
    CHECK(dp_safetensors_write(path, t, n, meta_k, meta_v, 3, &err) == 0);
    size_t len;
    unsigned char *b = read_raw(path, &len);
    if (!b) {
        CHECK(0);
        return;
    }
    unsigned char *m = malloc(len);
    uint64_t rng = 12345;
    int refused = 0, accepted = 0, bad = 0;
    static const char pool[] = "{}[]\",:0123456789-.e \\u\xff\x80";
    for (int iter = 0; iter < 1500; iter++) {
        memcpy(m, b, len);
        int edits = 1 + (int)(tu_uniform(&rng) * 3);
        for (int e = 0; e < edits; e++) {
            size_t limit = tu_uniform(&rng) < 0.8 ? DP_MIN(len, (size_t)400) : len;
            size_t at = (size_t)(tu_uniform(&rng) * (double)limit);
            m[at] = tu_uniform(&rng) < 0.5 ? (unsigned char)pool[(int)(tu_uniform(&rng) * (sizeof pool - 1))]
                                           : (unsigned char)(tu_uniform(&rng) * 256);
        }
        write_raw(dmg, m, len);
        dp_st_file *f = (dp_st_file *)&f;
        err.msg[0] = 0;
        int rc = dp_safetensors_read(dmg, &f, &err);
        if (rc != 0) {
            refused++;
            if (f != NULL || !strstr(err.msg, dmg)) bad++;
            continue;
        }
        accepted++;
        /* Accepted: every tensor's bytes must lie inside the file's data and be readable. */
        uint64_t total = 0;
        for (int i = 0; i < dp_st_count(f); i++) {
            const dp_st_tensor *x = dp_st_get(f, i);
            size_t bytes = (size_t)dp_st_numel(x) * dp_st_dtype_size(x->dtype);
            volatile unsigned char sink = 0;
            for (size_t k = 0; k < bytes; k++) sink ^= ((const unsigned char *)x->data)[k];
            (void)sink;
            total += bytes;
        }
        uint64_t hl = 0;
        for (int k = 0; k < 8; k++) hl |= (uint64_t)m[k] << (8 * k);
        if (8 + hl + total != len) bad++;
        dp_st_close(f);
    }
    CHECK(bad == 0);
    printf("test_safetensors: random damage: %d refused, %d accepted\n", refused, accepted);
    CHECK(refused > 0 && accepted > 0); /* both outcomes occur, so the loop exercises both paths */
    free(m);
    free(b);
    unlink(dmg);
    unlink(path);
}

static void test_malformed(void) {
    const char *p = in_dir("bad.safetensors");
    const float two[3] = {1.5f, -2.5f, 7.0f};
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

    /* The crafting helper itself makes readable files (so that the refusals below mean something). */
    craft(p, strlen(good), good, two, 8);
    dp_st_file *f = NULL;
    dp_error err = {{0}};
    CHECK(dp_safetensors_read(p, &f, &err) == 0);
    if (f) {
        const dp_st_tensor *a = dp_st_find(f, "a");
        CHECK(a && ((const float *)a->data)[1] == -2.5f);
        dp_st_close(f);
    } else {
        fprintf(stderr, "control file refused: %s\n", err.msg);
    }
    /* Unpadded headers and extra JSON whitespace, as other writers may produce, are accepted. */
    const char *spaced = "{ \"a\" : {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}\n";
    craft(p, strlen(spaced), spaced, two, 8);
    f = NULL;
    CHECK(dp_safetensors_read(p, &f, &err) == 0);
    dp_st_close(f);
    craft(p, 2, "{}", NULL, 0);
    f = NULL;
    CHECK(dp_safetensors_read(p, &f, &err) == 0 && dp_st_count(f) == 0);
    dp_st_close(f);

    /* Header length. */
    craft(p, UINT64_MAX, good, two, 8);
    REFUSED(p, "exceeds");
    craft(p, DP_ST_MAX_HEADER + 1, good, two, 8);
    REFUSED(p, "exceeds");
    craft(p, strlen(good) + 9, good, two, 8);
    REFUSED(p, "header length");
    craft(p, 0, good, two, 8);
    REFUSED(p, "too small");
    craft(p, 1, good, two, 8);
    REFUSED(p, "too small");
    craft(p, strlen(good) - 1, good, two, 8); /* the JSON is cut short by one byte */
    REFUSED(p, "not valid JSON");

    /* JSON structure. */
    const struct {
        const char *header;
        size_t data;
        const char *what, *what2;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "not valid JSON", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],}}", 8, "not valid JSON", NULL},
        {"[1,2]", 0, "does not start with '{'", NULL},
        {"{\"a\":1} x", 0, "unexpected bytes", NULL},
        {"{\"a\":1}{}", 0, "unexpected bytes", NULL},
        {"{\"\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "UTF-8", NULL},
        {"{\"a\":5}", 0, "\"a\": entry is not a JSON object", NULL},
        {"{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "empty name", NULL},
        /* dtype */
        {"{\"a\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype \"F17\"", "\"a\""},
        {"{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype", "\"a\""},
        {"{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is not a string", "\"a\""},
        /* fields */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing \"data_offsets\"", "\"a\""},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing \"dtype\"", "\"a\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unknown field \"x\"", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "appears twice", NULL},
        /* shape */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]", "\"a\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "shape[0]", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "shape[0]", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "shape is not an array", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "9 dimensions", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
         "need inf bytes", NULL},
        /* sizes and offsets */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12 bytes", "\"a\""},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "need 16 bytes", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "extend past", "\"a\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "before begin", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "two non-negative integers", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "two non-negative integers", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "two non-negative integers", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 8, "two non-negative integers", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"b\":0}}}", 8, "two non-negative integers", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "\"b\" (bytes 4 to 8) overlaps tensor \"a\"", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         8, "overlaps", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[2,2]}}",
         4, "overlaps", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, "belong to no tensor", "\"b\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "belong to no tensor", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "extra bytes", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "tensor \"a\" appears twice", NULL},
        /* metadata */
        {"{\"__metadata__\":{\"k\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "metadata \"k\" is not a string", NULL},
        {"{\"__metadata__\":[\"k\"],\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "\"__metadata__\" is not a JSON object", NULL},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice", NULL},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "metadata key \"k\" appears twice", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char zeros[16] = {0};
        craft(p, strlen(cases[i].header), cases[i].header, zeros, cases[i].data);
        check_refused_at(p, cases[i].what, cases[i].what2, __LINE__ * 1000 + (int)i);
    }

    /* Deep nesting must be refused by the parser, not overflow the stack. */
    size_t depth = 5000;
    char *deep = malloc(2 * depth + 16);
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"a\":");
    for (size_t i = 0; i < depth; i++) deep[k++] = '[';
    for (size_t i = 0; i < depth; i++) deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = '\0';
    craft(p, strlen(deep), deep, NULL, 0);
    REFUSED(p, "not valid JSON");
    free(deep);

    /* Not a file at all. */
    REFUSED(in_dir("does-not-exist.safetensors"), "cannot open");
    REFUSED(g_dir, "not a regular file");
    unlink(p);
}

/* Writing that fails must leave the previous file as it was and no temporary file behind. */
static void test_write_failures(void) {
    dp_error err = {{0}};
    char target[512];
    snprintf(target, sizeof target, "%s", in_dir("keep.safetensors"));
    dp_st_tensor one = {"w", "F32", 1, {6}, w_vals};
    CHECK(dp_safetensors_write(target, &one, 1, NULL, NULL, 0, &err) == 0);
    size_t old_len;
    unsigned char *old = read_raw(target, &old_len);
    CHECK(old != NULL);
    if (!old) return;
    int entries = count_entries(g_dir);

    /* Invalid input is refused before anything is written. */
    float big[4096];
    memset(big, 0, sizeof big);
    dp_st_tensor bad[2] = {{"w", "F32", 1, {6}, w_vals}, {"w", "F32", 1, {6}, w_vals}};
    err.msg[0] = 0;
    CHECK(dp_safetensors_write(target, bad, 2, NULL, NULL, 0, &err) != 0 && strstr(err.msg, "given twice"));
    bad[1] = (dp_st_tensor){"v", "F33", 1, {6}, w_vals};
    CHECK(dp_safetensors_write(target, bad, 2, NULL, NULL, 0, &err) != 0 && strstr(err.msg, "unknown dtype"));
    bad[1] = (dp_st_tensor){"__metadata__", "F32", 1, {6}, w_vals};
    CHECK(dp_safetensors_write(target, bad, 2, NULL, NULL, 0, &err) != 0 && strstr(err.msg, "reserved"));
    bad[1] = (dp_st_tensor){"v", "F32", 2, {6, -1}, w_vals};
    CHECK(dp_safetensors_write(target, bad, 2, NULL, NULL, 0, &err) != 0 && strstr(err.msg, "negative"));
    bad[1] = (dp_st_tensor){"v", "F32", 9, {1, 1, 1, 1, 1, 1, 1, 1}, w_vals};
    CHECK(dp_safetensors_write(target, bad, 2, NULL, NULL, 0, &err) != 0 && strstr(err.msg, "dimensions"));
    bad[1] = (dp_st_tensor){"v", "F32", 1, {6}, NULL};
    CHECK(dp_safetensors_write(target, bad, 2, NULL, NULL, 0, &err) != 0 && strstr(err.msg, "NULL"));
    bad[1] = (dp_st_tensor){"", "F32", 1, {6}, w_vals};
    CHECK(dp_safetensors_write(target, bad, 2, NULL, NULL, 0, &err) != 0 && strstr(err.msg, "no name"));
    bad[1] = (dp_st_tensor){"\xc3(", "F32", 1, {6}, w_vals};
    CHECK(dp_safetensors_write(target, bad, 2, NULL, NULL, 0, &err) != 0 && strstr(err.msg, "UTF-8"));
    const char *dk[2] = {"k", "k"}, *dv[2] = {"1", "2"};
    CHECK(dp_safetensors_write(target, &one, 1, dk, dv, 2, &err) != 0 && strstr(err.msg, "given twice"));
    CHECK(same_file(target, old, old_len));
    CHECK(count_entries(g_dir) == entries);

    /* A folder that does not exist. */
    const char *nodir = in_dir("no-such-folder/m.safetensors");
    err.msg[0] = 0;
    CHECK(dp_safetensors_write(nodir, &one, 1, NULL, NULL, 0, &err) != 0);
    CHECK(strstr(err.msg, nodir) != NULL);
    CHECK(access(in_dir("no-such-folder"), F_OK) != 0);
    /* A path naming a folder, and a trailing slash. */
    CHECK(dp_safetensors_write(g_dir, &one, 1, NULL, NULL, 0, &err) != 0 && strstr(err.msg, "not a regular file"));
    CHECK(dp_safetensors_write(in_dir("x/"), &one, 1, NULL, NULL, 0, &err) != 0);
    CHECK(count_entries(g_dir) == entries);

    /* A folder that cannot be written to (permissions do not stop root, so skipped then). */
    if (geteuid() != 0) {
        const char *ro = in_dir("readonly");
        CHECK(mkdir(ro, 0700) == 0);
        const char *inside = in_dir("readonly/m.safetensors");
        CHECK(dp_safetensors_write(inside, &one, 1, NULL, NULL, 0, &err) == 0);
        size_t l0;
        unsigned char *b0 = read_raw(inside, &l0);
        CHECK(chmod(ro, 0500) == 0);
        dp_st_tensor two = {"w", "F32", 1, {3}, w_vals};
        CHECK(dp_safetensors_write(inside, &two, 1, NULL, NULL, 0, &err) != 0);
        CHECK(strstr(err.msg, "temporary file") != NULL);
        CHECK(b0 && same_file(inside, b0, l0));
        CHECK(count_entries(ro) == 1);
        chmod(ro, 0700);
        free(b0);
        remove_tree(ro);
    } else {
        printf("test_safetensors: running as root; the read-only folder case is skipped\n");
    }

    /* A full disk, simulated with a file size limit: the temporary file cannot grow past 4 KiB, so the
     * 16 KiB tensor fails part-way, and the old (smaller) file must survive. */
    struct rlimit saved;
    if (getrlimit(RLIMIT_FSIZE, &saved) == 0) {
        struct rlimit lim = saved;
        lim.rlim_cur = 4096;
        void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            dp_st_tensor large = {"w", "F32", 1, {4096}, big};
            err.msg[0] = 0;
            int rc = dp_safetensors_write(target, &large, 1, NULL, NULL, 0, &err);
            setrlimit(RLIMIT_FSIZE, &saved);
            CHECK(rc != 0);
            CHECK(strstr(err.msg, "write failed") != NULL);
            CHECK(same_file(target, old, old_len));
            CHECK(count_entries(g_dir) == entries);
            /* With the limit lifted the same write succeeds. */
            CHECK(dp_safetensors_write(in_dir("large.safetensors"), &large, 1, NULL, NULL, 0, &err) == 0);
            unlink(in_dir("large.safetensors"));
        } else {
            printf("test_safetensors: cannot lower RLIMIT_FSIZE; the full-disk case is skipped\n");
        }
        signal(SIGXFSZ, old_handler);
    }

    /* /dev/full: the target itself is refused (it is not a regular file and must not be replaced), and
     * writing the encoding to it as a stream reports the error of the final flush. */
    struct stat st;
    if (stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode)) {
        err.msg[0] = 0;
        CHECK(dp_safetensors_write("/dev/full", &one, 1, NULL, NULL, 0, &err) != 0);
        CHECK(strstr(err.msg, "not a regular file") != NULL);
        struct stat st2;
        CHECK(stat("/dev/full", &st2) == 0 && S_ISCHR(st2.st_mode) && st2.st_rdev == st.st_rdev);
        FILE *fp = fopen("/dev/full", "wb");
        if (fp) {
            err.msg[0] = 0;
            CHECK(dp_safetensors_write_stream(fp, "/dev/full", &one, 1, NULL, NULL, 0, &err) != 0);
            CHECK(strstr(err.msg, "/dev/full: write failed") != NULL);
            fclose(fp);
        }
    } else {
        printf("test_safetensors: /dev/full is not available; that case is skipped\n");
    }

    /* A symbolic link: the file it points to is replaced, the link stays. */
    const char *link = in_dir("link.safetensors");
    if (symlink("keep.safetensors", link) == 0) {
        dp_st_tensor three = {"w", "F32", 1, {3}, w_vals};
        CHECK(dp_safetensors_write(link, &three, 1, NULL, NULL, 0, &err) == 0);
        struct stat ls;
        CHECK(lstat(link, &ls) == 0 && S_ISLNK(ls.st_mode));
        dp_st_file *f = NULL;
        int rc = dp_safetensors_read(target, &f, &err);
        if (rc) fprintf(stderr, "read through link: %s\n", err.msg);
        CHECK(rc == 0 && f && dp_st_get(f, 0)->shape[0] == 3);
        dp_st_close(f);
        unlink(link);
    }
    free(old);
    unlink(target);
}

/* Sums used by the independent check: plain and position-weighted (so that order matters too). */
static void sums_f64(const double *v, size_t n, double *s, double *ws) {
    *s = *ws = 0;
    for (size_t i = 0; i < n; i++) {
        *s += v[i];
        *ws += (double)(i + 1) * v[i];
    }
}

static int run_check(const char *cmd) {
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_python_check(void) {
    if (run_check("python3 -c 'import json, struct, array' >/dev/null 2>&1") != 0) {
        printf("test_safetensors: python3 not found; the independent parser check is skipped\n");
        return;
    }
    char script[1024];
    const char *src = getenv("DPFORMER_SOURCE_DIR");
    if (src && *src) {
        snprintf(script, sizeof script, "%s/tests/safetensors_check.py", src);
    } else { /* CMake passes absolute source paths: the script sits next to this file */
        snprintf(script, sizeof script, "%s", __FILE__);
        char *slash = strrchr(script, '/');
        if (slash) strcpy(slash + 1, "safetensors_check.py");
    }
    if (access(script, R_OK) != 0) {
        printf("test_safetensors: %s not found; the independent parser check is skipped\n", script);
        return;
    }
    float emb[12];
    int64_t ids[5];
    uint8_t mask[7];
    double h[2] = {0.1, -2.5};
    int32_t scalar = -17;
    for (int i = 0; i < 12; i++) emb[i] = 0.25f * (float)i - 1.0f;
    for (int i = 0; i < 5; i++) ids[i] = (int64_t)i * 1000000007 - 3;
    for (int i = 0; i < 7; i++) mask[i] = (uint8_t)(i % 3);
    dp_st_tensor t[5] = {
        {"emb", "F32", 2, {3, 4}, emb}, {"ids", "I64", 1, {5}, ids},  {"mask", "U8", 1, {7}, mask},
        {"h", "F64", 1, {2}, h},        {"n", "I32", 0, {0}, &scalar},
    };
    const char *mk[2] = {"model", "step"}, *mv[2] = {"sasrec", "12"};
    const char *path = in_dir("py.safetensors");
    dp_error err = {{0}};
    CHECK(dp_safetensors_write(path, t, 5, mk, mv, 2, &err) == 0);

    double v[12], s[5], ws[5];
    for (int i = 0; i < 12; i++) v[i] = emb[i];
    sums_f64(v, 12, &s[0], &ws[0]);
    for (int i = 0; i < 5; i++) v[i] = (double)ids[i];
    sums_f64(v, 5, &s[1], &ws[1]);
    for (int i = 0; i < 7; i++) v[i] = mask[i];
    sums_f64(v, 7, &s[2], &ws[2]);
    sums_f64(h, 2, &s[3], &ws[3]);
    v[0] = scalar;
    sums_f64(v, 1, &s[4], &ws[4]);
    const char *shapes[5] = {"3x4", "5", "7", "2", "scalar"};
    char cmd[4096];
    int k = snprintf(cmd, sizeof cmd, "python3 '%s' '%s'", script, path);
    for (int i = 0; i < 5; i++)
        k += snprintf(cmd + k, sizeof cmd - (size_t)k, " --tensor %s %s %s %.17g %.17g", t[i].name, t[i].dtype,
                      shapes[i], s[i], ws[i]);
    k += snprintf(cmd + k, sizeof cmd - (size_t)k, " --meta model sasrec --meta step 12");
    CHECK(run_check(cmd) == 0);

    /* The checker must be able to fail: a wrong value, a wrong shape, a missing tensor. */
    char wrong[8192];
    snprintf(wrong, sizeof wrong, "%s --tensor extra F32 1 0 0 2>/dev/null", cmd);
    CHECK(run_check(wrong) == 1);
    k = snprintf(wrong, sizeof wrong, "python3 '%s' '%s'", script, path);
    for (int i = 0; i < 5; i++)
        k += snprintf(wrong + k, sizeof wrong - (size_t)k, " --tensor %s %s %s %.17g %.17g", t[i].name, t[i].dtype,
                      i == 0 ? "4x3" : shapes[i], s[i] + (i == 3 ? 1e-3 : 0), ws[i]);
    snprintf(wrong + k, sizeof wrong - (size_t)k, " --meta model sasrec --meta step 12 2>/dev/null");
    CHECK(run_check(wrong) == 1);
    /* And it refuses a damaged file on its own. */
    size_t len;
    unsigned char *b = read_raw(path, &len);
    if (b) {
        write_raw(path, b, len - 1);
        free(b);
        snprintf(wrong, sizeof wrong, "%s 2>/dev/null", cmd);
        CHECK(run_check(wrong) == 1);
    }
    unlink(path);
}

/* ---- checksums ---- */

static void test_checksums(void) {
    const char *path = in_dir("sums.safetensors");
    dp_error err = {{0}};
    double f64[3] = {1.5, -2.0, 1e300};
    int32_t i32[4] = {1, 2, 3, -4};
    dp_st_tensor t[2] = {{"a", "F64", 1, {3}, f64}, {"b", "I32", 2, {2, 2}, i32}};
    const char *mk[3] = {"x", "y"}, *mv[3] = {"1", "{\"z\":2}"};
    char *sums = dp_st_checksums_json(t, 2, mk, mv, 2);
    CHECK(sums && strstr(sums, "\"algorithm\":\"fnv1a64\"") && strstr(sums, "\"tensors\":{\"a\":\""));
    /* the tensor hash is FNV-1a 64 of the bytes, as dp_fnv1a64 computes it */
    char want[32];
    snprintf(want, sizeof want, "\"a\":\"%016llx\"", (unsigned long long)dp_fnv1a64(f64, sizeof f64, DP_FNV1A64_INIT));
    CHECK(strstr(sums, want) != NULL);
    CHECK(dp_st_tensor_checksum(&t[1]) == dp_fnv1a64(i32, sizeof i32, DP_FNV1A64_INIT));
    mk[2] = DP_ST_KEY_CHECKSUMS, mv[2] = sums;
    CHECK(dp_safetensors_write(path, t, 2, mk, mv, 3, &err) == 0);
    dp_st_file *f = NULL;
    CHECK(dp_safetensors_read(path, &f, &err) == 0 && dp_st_verify_checksums(f, path, &err) == 1);
    dp_st_close(f);
    /* a data byte changed: the tensor is named */
    size_t len = 0;
    unsigned char *b = read_raw(path, &len);
    CHECK(b != NULL);
    if (b) {
        b[len - 1] ^= 0x10; /* in b, the last tensor */
        write_raw(path, b, len);
        f = NULL;
        CHECK(dp_safetensors_read(path, &f, &err) == 0);
        CHECK(f && dp_st_verify_checksums(f, path, &err) == -1 && strstr(err.msg, path) &&
              strstr(err.msg, "tensor b: checksum mismatch"));
        dp_st_close(f);
        free(b);
    }
    /* a metadata value or a shape changed: the metadata hash */
    mv[0] = "2";
    CHECK(dp_safetensors_write(path, t, 2, mk, mv, 3, &err) == 0);
    f = NULL;
    CHECK(dp_safetensors_read(path, &f, &err) == 0 && dp_st_verify_checksums(f, path, &err) == -1 &&
          strstr(err.msg, "metadata checksum mismatch"));
    dp_st_close(f);
    mv[0] = "1";
    t[1].shape[0] = 4, t[1].shape[1] = 1;
    CHECK(dp_safetensors_write(path, t, 2, mk, mv, 3, &err) == 0);
    f = NULL;
    CHECK(dp_safetensors_read(path, &f, &err) == 0 && dp_st_verify_checksums(f, path, &err) == -1 &&
          strstr(err.msg, "metadata checksum mismatch"));
    dp_st_close(f);
    /* a malformed value, and no value at all */
    mv[2] = "{\"algorithm\":\"crc32\"}";
    CHECK(dp_safetensors_write(path, t, 2, mk, mv, 3, &err) == 0);
    f = NULL;
    CHECK(dp_safetensors_read(path, &f, &err) == 0 && dp_st_verify_checksums(f, path, &err) == -1 &&
          strstr(err.msg, "malformed"));
    dp_st_close(f);
    CHECK(dp_safetensors_write(path, t, 2, mk, mv, 2, &err) == 0);
    f = NULL;
    CHECK(dp_safetensors_read(path, &f, &err) == 0 && dp_st_verify_checksums(f, path, &err) == 0);
    dp_st_close(f);
    free(sums);
    unlink(path);
}

/* ---- the atomic writer and the same-file test (src/core) ---- */

static void test_atomic_and_same_file(void) {
    dp_error err = {{0}};
    char path[512], other[512], slink[512], hard[512], dots[600];
    snprintf(path, sizeof path, "%s", in_dir("text.txt"));
    snprintf(other, sizeof other, "%s", in_dir("other.txt"));
    snprintf(slink, sizeof slink, "%s", in_dir("text-link.txt"));
    snprintf(hard, sizeof hard, "%s", in_dir("text-hard.txt"));
    int entries = count_entries(g_dir);
    CHECK(dp_write_file_atomic(path, "old\n", 4, &err) == 0 && same_file(path, (const unsigned char *)"old\n", 4));
    CHECK(dp_write_file_atomic(path, "newer\n", 6, &err) == 0 && same_file(path, (const unsigned char *)"newer\n", 6));
    CHECK(count_entries(g_dir) == entries + 1);
    /* kept open after the rename: later writes go to the file in place */
    dp_atomic_file a;
    FILE *kept = NULL;
    CHECK(dp_atomic_open(&a, other, &err) == 0 && dp_atomic_write(&a, "a\n", 2, &err) == 0);
    CHECK(access(other, F_OK) != 0); /* not there before the commit */
    CHECK(dp_atomic_commit(&a, &kept, &err) == 0 && kept != NULL);
    if (kept) {
        fputs("b\n", kept);
        fclose(kept);
    }
    CHECK(same_file(other, (const unsigned char *)"a\nb\n", 4));
    /* abandoned: nothing is left, the old file stays */
    CHECK(dp_atomic_open(&a, path, &err) == 0 && dp_atomic_write(&a, "x", 1, &err) == 0);
    dp_atomic_abort(&a);
    CHECK(same_file(path, (const unsigned char *)"newer\n", 6) && count_entries(g_dir) == entries + 2);
    /* past a file-size limit (SIGXFSZ ignored, as the command line does): the write fails naming the
     * file and the cause, the temporary file is removed, the old file stays */
    struct rlimit saved;
    if (getrlimit(RLIMIT_FSIZE, &saved) == 0) {
        struct rlimit lim = saved;
        lim.rlim_cur = 4096;
        void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            static char big[8192];
            memset(big, 'x', sizeof big);
            int rc = dp_write_file_atomic(path, big, sizeof big, &err);
            setrlimit(RLIMIT_FSIZE, &saved);
            CHECK(rc != 0 && strstr(err.msg, path) && strstr(err.msg, "write failed: File too large"));
            CHECK(same_file(path, (const unsigned char *)"newer\n", 6) && count_entries(g_dir) == entries + 2);
        }
        signal(SIGXFSZ, old_handler);
    }
    /* the same file however spelled; a file that does not exist yet by its folder and name */
    CHECK(dp_same_file(path, path) && !dp_same_file(path, other));
    snprintf(dots, sizeof dots, "%s/./../%s/text.txt", g_dir, strrchr(g_dir, '/') + 1);
    CHECK(dp_same_file(dots, path));
    CHECK(symlink("text.txt", slink) == 0 && dp_same_file(slink, path));
    CHECK(link(path, hard) == 0 && dp_same_file(hard, path) && dp_same_file(path, hard));
    snprintf(dots, sizeof dots, "%s/./../%s/new.txt", g_dir, strrchr(g_dir, '/') + 1);
    CHECK(dp_same_file(dots, in_dir("new.txt")) && !dp_same_file(in_dir("new.txt"), path));
    CHECK(!dp_same_file(in_dir("new.txt"), in_dir("new2.txt")));
    unlink(slink);
    unlink(hard);
    unlink(path);
    unlink(other);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/dp_st_test_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "cannot create a temporary folder: %s\n", strerror(errno));
        return 2;
    }
    test_round_trip();
    test_truncation();
    test_random_damage();
    test_malformed();
    test_write_failures();
    test_checksums();
    test_atomic_and_same_file();
    test_python_check();
    remove_tree(g_dir);
    return tu_finish("test_safetensors");
}
