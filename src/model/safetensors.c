/* Strict reading and atomic writing of safetensors files (see include/dpformer/safetensors.h and
 * docs/file-format.md). The JSON header is built and parsed with cJSON; tensor bytes are copied as
 * they are in memory, which is why a little-endian machine is required. */
#define _POSIX_C_SOURCE 200809L /* fileno, fstat */
#include "dpformer/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>

#include "core/common.h"

#if !defined(__BYTE_ORDER__) || !defined(__ORDER_LITTLE_ENDIAN__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c stores tensors as their in-memory bytes; the format is little-endian"
#endif
_Static_assert(sizeof(size_t) >= 8, "file offsets are handled as size_t");
_Static_assert(sizeof(float) == 4 && sizeof(double) == 8, "F32/F64 must match float/double");

/* Offsets and dimensions travel through JSON numbers, which cJSON keeps as doubles: every integer up
 * to 2^53 is exact, so larger values are refused on both sides. */
#define ST_MAX_INT 9007199254740992.0

static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I64", 8}, {"I32", 4},
    {"I16", 2}, {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},   {"U8", 1},   {"BOOL", 1},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

/* The table entry for a dtype name, so that read tensors point at static strings. */
static int dtype_index(const char *s) {
    if (!s) return -1;
    for (int i = 0; i < ST_NDTYPES; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) return i;
    return -1;
}

size_t dp_st_dtype_size(const char *dtype) {
    int k = dtype_index(dtype);
    return k < 0 ? 0 : st_dtypes[k].size;
}

int64_t dp_st_numel(const dp_st_tensor *t) {
    /* A zero dimension first: the product of the others might not fit in 64 bits. */
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] == 0) return 0;
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* Bytes of a tensor with the given shape, or -1 when a dimension is negative or the size passes the
 * limit of exactly representable offsets (then it cannot be stored anyway). */
static double shape_bytes(const int64_t *shape, int ndim, size_t elsize) {
    double bytes = (double)elsize;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return -1;
        if (shape[d] == 0) return 0; /* an empty tensor, whatever the other dimensions */
    }
    for (int d = 0; d < ndim; d++) {
        bytes *= (double)shape[d];
        if (bytes > ST_MAX_INT) return -1;
    }
    return bytes;
}

/* RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else
            return 0;
        if (n - i < (size_t)len) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (int k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        i += (size_t)len;
    }
    return 1;
}

static int str_valid(const char *s) { return utf8_valid((const unsigned char *)s, strlen(s)); }

/* ------------------------------------------------------------------------------------------------ */
/* Writing                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

/* A JSON number printed exactly (cJSON would print large doubles in exponent form). */
static cJSON *json_int(int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_CreateRaw(buf);
}

/* Check the caller's tensors and metadata, and build the padded header text. On success *out is a
 * malloc'd string of length *out_len (a multiple of 8) and the data section size is *data_len. */
static int build_header(const char *what, const dp_st_tensor *t, int n, const char *const *mk,
                        const char *const *mv, int n_meta, char **out, size_t *out_len, dp_error *err) {
    if (n < 0 || (n > 0 && !t)) return dp_fail(err, "%s: invalid tensor list (n = %d)", what, n);
    if (n_meta < 0 || (n_meta > 0 && (!mk || !mv)))
        return dp_fail(err, "%s: invalid metadata list (n_meta = %d)", what, n_meta);
    for (int i = 0; i < n_meta; i++) {
        if (!mk[i] || !mv[i]) return dp_fail(err, "%s: metadata entry %d has a NULL key or value", what, i);
        if (!str_valid(mk[i]) || !str_valid(mv[i]))
            return dp_fail(err, "%s: metadata entry \"%s\" is not valid UTF-8", what, mk[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(mk[i], mk[j]) == 0) return dp_fail(err, "%s: metadata key \"%s\" given twice", what, mk[i]);
    }
    double offset = 0;
    for (int i = 0; i < n; i++) {
        const dp_st_tensor *x = &t[i];
        if (!x->name || !x->name[0]) return dp_fail(err, "%s: tensor %d has no name", what, i);
        if (strcmp(x->name, "__metadata__") == 0)
            return dp_fail(err, "%s: \"__metadata__\" is reserved and cannot name a tensor", what);
        if (!str_valid(x->name)) return dp_fail(err, "%s: tensor %d: name is not valid UTF-8", what, i);
        for (int j = 0; j < i; j++)
            if (strcmp(x->name, t[j].name) == 0) return dp_fail(err, "%s: tensor \"%s\" given twice", what, x->name);
        size_t es = dp_st_dtype_size(x->dtype);
        if (!es) return dp_fail(err, "%s: tensor \"%s\": unknown dtype \"%s\"", what, x->name, x->dtype ? x->dtype : "(null)");
        if (x->ndim < 0 || x->ndim > DP_ST_MAX_DIMS)
            return dp_fail(err, "%s: tensor \"%s\": %d dimensions (0 to %d allowed)", what, x->name, x->ndim, DP_ST_MAX_DIMS);
        double b = shape_bytes(x->shape, x->ndim, es);
        if (b < 0) return dp_fail(err, "%s: tensor \"%s\": negative dimension or size too large", what, x->name);
        if (b > 0 && !x->data) return dp_fail(err, "%s: tensor \"%s\": data is NULL", what, x->name);
        offset += b;
        if (offset > ST_MAX_INT) return dp_fail(err, "%s: total tensor size too large", what);
    }

    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        ok = meta != NULL;
        for (int i = 0; ok && i < n_meta; i++) ok = cJSON_AddStringToObject(meta, mk[i], mv[i]) != NULL;
    }
    int64_t pos = 0;
    for (int i = 0; ok && i < n; i++) {
        const dp_st_tensor *x = &t[i];
        int64_t bytes = (int64_t)shape_bytes(x->shape, x->ndim, dp_st_dtype_size(x->dtype));
        cJSON *o = cJSON_AddObjectToObject(root, x->name);
        cJSON *dt = o ? cJSON_AddStringToObject(o, "dtype", st_dtypes[dtype_index(x->dtype)].name) : NULL;
        cJSON *shape = dt ? cJSON_AddArrayToObject(o, "shape") : NULL;
        cJSON *offs = shape ? cJSON_AddArrayToObject(o, "data_offsets") : NULL;
        ok = offs != NULL;
        for (int d = 0; ok && d < x->ndim; d++) ok = cJSON_AddItemToArray(shape, json_int(x->shape[d]));
        ok = ok && cJSON_AddItemToArray(offs, json_int(pos)) && cJSON_AddItemToArray(offs, json_int(pos + bytes));
        pos += bytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return dp_fail(err, "%s: out of memory building the header", what);
    /* Pad with spaces so that the data section starts at a multiple of 8 bytes from the file start. */
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    char *hdr = dp_malloc(padded + 1);
    memcpy(hdr, text, len);
    memset(hdr + len, ' ', padded - len);
    hdr[padded] = '\0';
    cJSON_free(text);
    *out = hdr;
    *out_len = padded;
    return 0;
}

static int write_bytes(FILE *fp, const void *p, size_t n, const char *what, dp_error *err) {
    if (n == 0) return 0;
    errno = 0;
    if (fwrite(p, 1, n, fp) != n)
        return dp_fail(err, "%s: write failed: %s", what, errno ? strerror(errno) : "short write");
    return 0;
}

/* Length, header and data, then fflush: every buffered byte has reached the kernel on success. */
static int encode(FILE *fp, const char *what, const char *hdr, size_t hlen, const dp_st_tensor *t, int n,
                  dp_error *err) {
    unsigned char len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)hlen >> (8 * k));
    if (write_bytes(fp, len8, 8, what, err) || write_bytes(fp, hdr, hlen, what, err)) return -1;
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)shape_bytes(t[i].shape, t[i].ndim, dp_st_dtype_size(t[i].dtype));
        if (write_bytes(fp, t[i].data, bytes, what, err)) return -1;
    }
    errno = 0;
    if (fflush(fp) != 0 || ferror(fp))
        return dp_fail(err, "%s: write failed: %s", what, errno ? strerror(errno) : "stream error");
    return 0;
}

int dp_safetensors_write_stream(FILE *fp, const char *what, const dp_st_tensor *t, int n,
                                const char *const *meta_keys, const char *const *meta_vals, int n_meta,
                                dp_error *err) {
    if (!what) what = "(stream)";
    if (!fp) return dp_fail(err, "%s: no stream to write to", what);
    char *hdr;
    size_t hlen;
    if (build_header(what, t, n, meta_keys, meta_vals, n_meta, &hdr, &hlen, err)) return -1;
    int rc = encode(fp, what, hdr, hlen, t, n, err);
    free(hdr);
    return rc;
}

int dp_safetensors_write(const char *path, const dp_st_tensor *t, int n, const char *const *meta_keys,
                         const char *const *meta_vals, int n_meta, dp_error *err) {
    if (!path || !path[0]) return dp_fail(err, "safetensors: empty output path");
    /* Validate everything before touching the disk. */
    char *hdr;
    size_t hlen;
    if (build_header(path, t, n, meta_keys, meta_vals, n_meta, &hdr, &hlen, err)) return -1;
    /* temporary file, fsync, rename, folder fsync (core/common.h); a failed write removes it */
    dp_atomic_file a;
    int rc = -1;
    if (dp_atomic_open(&a, path, err) == 0) {
        if (encode(a.f, path, hdr, hlen, t, n, err)) dp_atomic_abort(&a);
        else rc = dp_atomic_commit(&a, NULL, err);
    }
    free(hdr);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Checksums                                                                                        */
/* ------------------------------------------------------------------------------------------------ */

static void hex64(uint64_t v, char out[17]) { snprintf(out, 17, "%016llx", (unsigned long long)v); }

/* The metadata hash covers every metadata pair but the checksums themselves (key NUL value NUL, in
 * file order) and the tensor table (name NUL dtype NUL dims as "d0,d1," NUL, in file order), so that
 * a change of a shape or a dtype in the header is caught even where the structure stays valid. The
 * tensors come from t (n of them) or, when t is NULL, from the file f. */
static uint64_t meta_hash(int n_meta, const char *const *keys, const char *const *vals, const dp_st_tensor *t,
                          const dp_st_file *f, int n) {
    uint64_t h = DP_FNV1A64_INIT;
    for (int i = 0; i < n_meta; i++) {
        if (strcmp(keys[i], DP_ST_KEY_CHECKSUMS) == 0) continue;
        h = dp_fnv1a64(keys[i], strlen(keys[i]) + 1, h);
        h = dp_fnv1a64(vals[i], strlen(vals[i]) + 1, h);
    }
    for (int i = 0; i < n; i++) {
        const dp_st_tensor *x = t ? &t[i] : dp_st_get(f, i);
        h = dp_fnv1a64(x->name, strlen(x->name) + 1, h);
        h = dp_fnv1a64(x->dtype, strlen(x->dtype) + 1, h);
        for (int d = 0; d < x->ndim; d++) {
            char b[32];
            int len = snprintf(b, sizeof b, "%lld,", (long long)x->shape[d]);
            h = dp_fnv1a64(b, (size_t)len, h);
        }
        h = dp_fnv1a64("", 1, h);
    }
    return h;
}

uint64_t dp_st_tensor_checksum(const dp_st_tensor *t) {
    double bytes = shape_bytes(t->shape, t->ndim, dp_st_dtype_size(t->dtype));
    if (!(bytes > 0) || !t->data) return DP_FNV1A64_INIT;
    return dp_fnv1a64(t->data, (size_t)bytes, DP_FNV1A64_INIT);
}

char *dp_st_checksums_json(const dp_st_tensor *t, int n, const char *const *meta_keys, const char *const *meta_vals,
                           int n_meta) {
    cJSON *cs = cJSON_CreateObject();
    char hx[17];
    cJSON_AddStringToObject(cs, "algorithm", "fnv1a64");
    hex64(meta_hash(n_meta, meta_keys, meta_vals, t, NULL, n), hx);
    cJSON_AddStringToObject(cs, "metadata", hx);
    cJSON *tsum = cJSON_AddObjectToObject(cs, "tensors");
    for (int i = 0; i < n; i++) {
        hex64(dp_st_tensor_checksum(&t[i]), hx);
        cJSON_AddStringToObject(tsum, t[i].name, hx);
    }
    char *s = cJSON_PrintUnformatted(cs);
    cJSON_Delete(cs);
    if (!s) abort();
    char *out = dp_malloc(strlen(s) + 1);
    strcpy(out, s);
    cJSON_free(s);
    return out;
}

int dp_st_verify_checksums(const dp_st_file *f, const char *path, dp_error *err) {
    const char *v = dp_st_meta(f, DP_ST_KEY_CHECKSUMS);
    if (!v) return 0;
    cJSON *cs = cJSON_Parse(v);
    int rc = -1;
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(cs, "algorithm");
    const cJSON *mh = cJSON_GetObjectItemCaseSensitive(cs, "metadata");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(cs, "tensors");
    if (!cs || !cJSON_IsString(alg) || strcmp(alg->valuestring, "fnv1a64") != 0 || !cJSON_IsString(mh) ||
        !cJSON_IsObject(th)) {
        dp_fail(err, "%s: metadata " DP_ST_KEY_CHECKSUMS " is malformed (corrupted?)", path);
        goto out;
    }
    const int n = dp_st_count(f), nm = dp_st_meta_count(f);
    const char **keys = dp_malloc(sizeof *keys * (size_t)(nm ? nm : 1));
    const char **vals = dp_malloc(sizeof *vals * (size_t)(nm ? nm : 1));
    for (int i = 0; i < nm; i++) keys[i] = dp_st_meta_at(f, i, &vals[i]);
    char hx[17];
    hex64(meta_hash(nm, keys, vals, NULL, f, n), hx);
    free(keys);
    free(vals);
    if (strcmp(hx, mh->valuestring) != 0) {
        dp_fail(err, "%s: metadata checksum mismatch (stored %.16s, computed %s): the header or metadata is corrupted",
                path, mh->valuestring, hx);
        goto out;
    }
    if (cJSON_GetArraySize(th) != n) {
        dp_fail(err, "%s: the checksum table lists %d tensors but the file has %d (corrupted?)", path,
                cJSON_GetArraySize(th), n);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const dp_st_tensor *t = dp_st_get(f, i);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(th, t->name);
        if (!cJSON_IsString(e)) {
            dp_fail(err, "%s: tensor %s has no checksum (corrupted?)", path, t->name);
            goto out;
        }
        hex64(dp_st_tensor_checksum(t), hx);
        if (strcmp(hx, e->valuestring) != 0) {
            dp_fail(err, "%s: tensor %s: checksum mismatch (stored %.16s, computed %s): its data is corrupted", path,
                    t->name, e->valuestring, hx);
            goto out;
        }
    }
    rc = 1;
out:
    cJSON_Delete(cs);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Reading                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

struct dp_st_file {
    cJSON *root;            /* parsed header: tensor names and metadata strings point into it */
    int n;
    dp_st_tensor *t;
    int n_meta;
    const char **meta_keys, **meta_vals;
    unsigned char *data;    /* the data section, 64-byte aligned */
    void **copies;          /* aligned copies of tensors whose offset is not a multiple of their element */
    int n_copies;
};

void dp_st_close(dp_st_file *f) {
    if (!f) return;
    cJSON_Delete(f->root);
    free(f->t);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->data);
    for (int i = 0; i < f->n_copies; i++) free(f->copies[i]);
    free(f->copies);
    free(f);
}

int dp_st_count(const dp_st_file *f) { return f ? f->n : 0; }

const dp_st_tensor *dp_st_get(const dp_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const dp_st_tensor *dp_st_find(const dp_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *dp_st_meta(const dp_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

int dp_st_meta_count(const dp_st_file *f) { return f ? f->n_meta : 0; }

const char *dp_st_meta_at(const dp_st_file *f, int i, const char **val) {
    if (!f || i < 0 || i >= f->n_meta) return NULL;
    if (val) *val = f->meta_vals[i];
    return f->meta_keys[i];
}

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int json_uint(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != floor(d)) return 0;
    *v = (uint64_t)d;
    return 1;
}

/* Per tensor, during validation: its offsets, for the coverage check. */
typedef struct {
    uint64_t begin, end;
    int index;
} st_span;

static int span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp((*(const dp_st_tensor *const *)a)->name, (*(const dp_st_tensor *const *)b)->name);
}

/* Parse one tensor entry of the header into x and its span. */
static int parse_entry(const char *path, const cJSON *e, dp_st_tensor *x, st_span *sp, uint64_t data_len,
                       dp_error *err) {
    const char *name = e->string;
    if (!name[0]) return dp_fail(err, "%s: a tensor has an empty name", path);
    if (!cJSON_IsObject(e)) return dp_fail(err, "%s: tensor \"%s\": entry is not a JSON object", path, name);
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *k = e->child; k; k = k->next) {
        const cJSON **slot = strcmp(k->string, "dtype") == 0 ? &dtype
                             : strcmp(k->string, "shape") == 0 ? &shape
                             : strcmp(k->string, "data_offsets") == 0 ? &offs
                                                                       : NULL;
        if (!slot) return dp_fail(err, "%s: tensor \"%s\": unknown field \"%s\"", path, name, k->string);
        if (*slot) return dp_fail(err, "%s: tensor \"%s\": field \"%s\" appears twice", path, name, k->string);
        *slot = k;
    }
    if (!dtype || !shape || !offs)
        return dp_fail(err, "%s: tensor \"%s\": missing \"%s\"", path, name,
                       !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!cJSON_IsString(dtype)) return dp_fail(err, "%s: tensor \"%s\": dtype is not a string", path, name);
    int di = dtype_index(dtype->valuestring);
    if (di < 0) return dp_fail(err, "%s: tensor \"%s\": unknown dtype \"%s\"", path, name, dtype->valuestring);
    if (!cJSON_IsArray(shape)) return dp_fail(err, "%s: tensor \"%s\": shape is not an array", path, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > DP_ST_MAX_DIMS)
        return dp_fail(err, "%s: tensor \"%s\": %d dimensions (at most %d supported)", path, name, nd, DP_ST_MAX_DIMS);
    memset(x, 0, sizeof *x);
    x->name = name;
    x->dtype = st_dtypes[di].name;
    x->ndim = nd;
    int d = 0;
    for (const cJSON *s = shape->child; s; s = s->next, d++) {
        uint64_t v;
        if (!json_uint(s, &v))
            return dp_fail(err, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", path, name, d);
        x->shape[d] = (int64_t)v;
    }
    uint64_t b, en;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &b) ||
        !json_uint(offs->child->next, &en))
        return dp_fail(err, "%s: tensor \"%s\": data_offsets must be two non-negative integers [begin, end]", path, name);
    if (en < b) return dp_fail(err, "%s: tensor \"%s\": data_offsets end %llu is before begin %llu", path, name,
                               (unsigned long long)en, (unsigned long long)b);
    if (en > data_len)
        return dp_fail(err, "%s: tensor \"%s\": data_offsets [%llu, %llu] extend past the %llu-byte data section "
                       "(truncated file?)", path, name, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)data_len);
    double want = shape_bytes(x->shape, nd, st_dtypes[di].size);
    if (want < 0 || (uint64_t)want != en - b)
        return dp_fail(err, "%s: tensor \"%s\": shape and dtype %s need %.0f bytes but data_offsets give %llu", path,
                       name, x->dtype, want < 0 ? INFINITY : want, (unsigned long long)(en - b));
    sp->begin = b;
    sp->end = en;
    return 0;
}

/* Where the bytes come from: an open file, or a buffer already in memory (fp NULL). */
typedef struct {
    FILE *fp;
    const unsigned char *buf;
    size_t len, pos;
} st_source;

/* Up to n bytes into dst; returns how many were read. */
static size_t src_read(st_source *src, void *dst, size_t n) {
    if (src->fp) return fread(dst, 1, n, src->fp);
    size_t k = DP_MIN(n, src->len - src->pos);
    if (k) memcpy(dst, src->buf + src->pos, k);
    src->pos += k;
    return k;
}

/* Everything after the 8-byte length: parse and check the header, then (unless header_only) load the
 * data section. */
static int read_body(const char *path, st_source *src, uint64_t file_size, int header_only, dp_st_file *f,
                     dp_error *err) {
    unsigned char len8[8];
    if (file_size < 8)
        return dp_fail(err, "%s: file is %llu bytes, too short for the 8-byte header length (not a safetensors "
                       "file, or truncated)", path, (unsigned long long)file_size);
    if (src_read(src, len8, 8) != 8) return dp_fail(err, "%s: cannot read the header length", path);
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++) hlen |= (uint64_t)len8[k] << (8 * k);
    if (hlen > DP_ST_MAX_HEADER)
        return dp_fail(err, "%s: header length %llu exceeds the %llu-byte limit (not a safetensors file?)", path,
                       (unsigned long long)hlen, (unsigned long long)DP_ST_MAX_HEADER);
    if (hlen > file_size - 8)
        return dp_fail(err, "%s: header length %llu is more than the %llu bytes that follow it (truncated file?)",
                       path, (unsigned long long)hlen, (unsigned long long)(file_size - 8));
    if (hlen < 2) return dp_fail(err, "%s: header length %llu is too small for a JSON object", path,
                                 (unsigned long long)hlen);
    uint64_t data_len = file_size - 8 - hlen;

    char *hdr = dp_malloc((size_t)hlen + 1);
    if (src_read(src, hdr, (size_t)hlen) != hlen) {
        free(hdr);
        return dp_fail(err, "%s: file ended inside the header", path);
    }
    hdr[hlen] = '\0';
    if (hdr[0] != '{') {
        free(hdr);
        return dp_fail(err, "%s: header does not start with '{' (not a safetensors file?)", path);
    }
    if (!utf8_valid((const unsigned char *)hdr, (size_t)hlen)) {
        free(hdr);
        return dp_fail(err, "%s: header is not valid UTF-8", path);
    }
    const char *end = NULL;
    f->root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!f->root) {
        size_t at = end && end >= hdr && end <= hdr + hlen ? (size_t)(end - hdr) : 0;
        free(hdr);
        return dp_fail(err, "%s: header is not valid JSON (error near byte %zu of the header)", path, at);
    }
    for (const char *p = end; p < hdr + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            size_t at = (size_t)(p - hdr);
            free(hdr);
            return dp_fail(err, "%s: unexpected bytes after the JSON header (at byte %zu of the header)", path, at);
        }
    free(hdr);
    if (!cJSON_IsObject(f->root)) return dp_fail(err, "%s: header is not a JSON object", path);

    int n_entries = cJSON_GetArraySize(f->root);
    f->t = dp_calloc((size_t)n_entries, sizeof *f->t);
    st_span *spans = dp_calloc((size_t)n_entries, sizeof *spans);
    const cJSON *meta = NULL;
    int rc = -1;
    for (const cJSON *e = f->root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (meta) {
                dp_fail(err, "%s: \"__metadata__\" appears twice", path);
                goto out;
            }
            if (!cJSON_IsObject(e)) {
                dp_fail(err, "%s: \"__metadata__\" is not a JSON object", path);
                goto out;
            }
            meta = e;
            continue;
        }
        if (parse_entry(path, e, &f->t[f->n], &spans[f->n], data_len, err)) goto out;
        spans[f->n].index = f->n;
        f->n++;
    }
    if (meta) {
        int nm = cJSON_GetArraySize(meta);
        f->meta_keys = dp_calloc((size_t)nm, sizeof *f->meta_keys);
        f->meta_vals = dp_calloc((size_t)nm, sizeof *f->meta_vals);
        for (const cJSON *m = meta->child; m; m = m->next) {
            if (!cJSON_IsString(m)) {
                dp_fail(err, "%s: metadata \"%s\" is not a string", path, m->string);
                goto out;
            }
            for (int j = 0; j < f->n_meta; j++)
                if (strcmp(f->meta_keys[j], m->string) == 0) {
                    dp_fail(err, "%s: metadata key \"%s\" appears twice", path, m->string);
                    goto out;
                }
            f->meta_keys[f->n_meta] = m->string;
            f->meta_vals[f->n_meta] = m->valuestring;
            f->n_meta++;
        }
    }
    /* Duplicate names: JSON allows repeated keys, safetensors does not. Sorting keeps this fast. */
    if (f->n > 1) {
        const dp_st_tensor **byname = dp_malloc((size_t)f->n * sizeof *byname);
        for (int i = 0; i < f->n; i++) byname[i] = &f->t[i];
        qsort(byname, (size_t)f->n, sizeof *byname, name_cmp);
        const char *dup = NULL;
        for (int i = 1; i < f->n && !dup; i++)
            if (strcmp(byname[i]->name, byname[i - 1]->name) == 0) dup = byname[i]->name;
        free(byname);
        if (dup) {
            dp_fail(err, "%s: tensor \"%s\" appears twice in the header", path, dup);
            goto out;
        }
    }
    /* The tensors must tile the data section exactly: no overlap, no gap, nothing left over. */
    qsort(spans, (size_t)f->n, sizeof *spans, span_cmp);
    uint64_t covered = 0;
    for (int i = 0; i < f->n; i++) {
        if (spans[i].begin < covered) {
            dp_fail(err, "%s: tensor \"%s\" (bytes %llu to %llu) overlaps tensor \"%s\"", path,
                    f->t[spans[i].index].name, (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end,
                    f->t[spans[i - 1].index].name);
            goto out;
        }
        if (spans[i].begin > covered) {
            dp_fail(err, "%s: bytes %llu to %llu of the data section belong to no tensor (gap before \"%s\")", path,
                    (unsigned long long)covered, (unsigned long long)spans[i].begin, f->t[spans[i].index].name);
            goto out;
        }
        covered = spans[i].end;
    }
    if (covered != data_len) {
        dp_fail(err, "%s: the data section has %llu bytes but the tensors account for %llu (extra bytes at the end)",
                path, (unsigned long long)data_len, (unsigned long long)covered);
        goto out;
    }
    if (header_only) {
        rc = 0;
        goto out;
    }

    f->data = dp_alloc_aligned((size_t)data_len);
    if (data_len && src_read(src, f->data, (size_t)data_len) != data_len) {
        dp_fail(err, "%s: file ended inside the data section (changed while being read?)", path);
        goto out;
    }
    f->copies = dp_calloc((size_t)(f->n ? f->n : 1), sizeof *f->copies);
    for (int i = 0; i < f->n; i++) {
        const st_span *s = &spans[i];
        dp_st_tensor *x = &f->t[s->index];
        size_t es = dp_st_dtype_size(x->dtype);
        if (s->begin % es == 0) {
            x->data = f->data + s->begin;
        } else {
            /* Another writer may pack tensors without alignment: give the caller an aligned copy. */
            void *c = dp_alloc_aligned((size_t)(s->end - s->begin));
            memcpy(c, f->data + s->begin, (size_t)(s->end - s->begin));
            f->copies[f->n_copies++] = c;
            x->data = c;
        }
    }
    rc = 0;
out:
    free(spans);
    return rc;
}

static int read_path(const char *path, int header_only, dp_st_file **out, dp_error *err) {
    if (out) *out = NULL;
    if (!path || !out) return dp_fail(err, "safetensors: no file given");
    FILE *fp = fopen(path, "rb");
    if (!fp) return dp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        int e = errno;
        fclose(fp);
        return dp_fail(err, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(fp);
        return dp_fail(err, "%s: not a regular file", path);
    }
    dp_st_file *f = dp_calloc(1, sizeof *f);
    st_source src = {fp, NULL, 0, 0};
    int rc = read_body(path, &src, (uint64_t)st.st_size, header_only, f, err);
    fclose(fp);
    if (rc) {
        dp_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int dp_safetensors_read(const char *path, dp_st_file **out, dp_error *err) { return read_path(path, 0, out, err); }

int dp_safetensors_read_header(const char *path, dp_st_file **out, dp_error *err) {
    return read_path(path, 1, out, err);
}

int dp_safetensors_read_buffer(const char *name, const void *data, size_t len, dp_st_file **out, dp_error *err) {
    if (out) *out = NULL;
    if (!name) name = "(buffer)";
    if (!out || (!data && len)) return dp_fail(err, "%s: no buffer given", name);
    dp_st_file *f = dp_calloc(1, sizeof *f);
    st_source src = {NULL, data, len, 0};
    int rc = read_body(name, &src, (uint64_t)len, 0, f, err);
    if (rc) {
        dp_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}
