/* Saving and loading a model as a safetensors file: every parameter tensor in float32 under its name
 * (dpformer/model.h lists them) and the configuration as JSON in the metadata (docs/file-format.md). */
#include <cjson/cJSON.h>
#include <math.h>

#include "dpformer/safetensors.h"
#include "model/model_internal.h"

#define FORMAT_VERSION "1"

static void config_json(const dp_model_config *c, char *buf, size_t n) {
    snprintf(buf, n,
             "{\"n_items\":%d,\"max_len\":%d,\"d_model\":%d,\"n_heads\":%d,\"n_layers\":%d,\"d_ff\":%d,\"tied\":%s,"
             "\"causal\":%s,\"dropout\":%.9g,\"n_classes\":%d,\"pool\":\"%s\",\"rep_clip\":%.17g,\"tokenizer\":\"%s\"}",
             c->n_items, c->max_len, c->d_model, c->n_heads, c->n_layers, c->d_ff, c->tied ? "true" : "false",
             c->causal ? "true" : "false", c->dropout, c->n_classes, c->pool == DP_POOL_MEAN ? "mean" : "first",
             c->rep_clip, c->tokenizer);
}

int dp_model_save(const dp_model *m, const char *path, const char *extra_meta, dp_error *err) {
    int n = m->n_tensors;
    dp_st_tensor *t = dp_calloc((size_t)n, sizeof *t);
    float **bufs = dp_calloc((size_t)n, sizeof *bufs);
    for (int i = 0; i < n; i++) {
        const dp_param_tensor *pt = &m->tensors[i];
        t[i].name = pt->name;
        t[i].dtype = "F32";
        t[i].ndim = pt->ndim;
        t[i].shape[0] = pt->shape[0];
        t[i].shape[1] = pt->shape[1];
#ifdef DP_REAL_DOUBLE
        bufs[i] = dp_malloc(sizeof(float) * (pt->size ? pt->size : 1));
        for (size_t k = 0; k < pt->size; k++) bufs[i][k] = (float)m->params[pt->offset + k];
        t[i].data = bufs[i];
#else
        t[i].data = m->params + pt->offset;
#endif
    }
    char cfg[640];
    config_json(&m->cfg, cfg, sizeof cfg);
    const char *keys[] = {"format", "dpformer.format_version", "dpformer.config", "dpformer.run"};
    const char *vals[] = {"pt", FORMAT_VERSION, cfg, extra_meta ? extra_meta : "{}"};
    int rc = dp_safetensors_write(path, t, n, keys, vals, 4, err);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(t);
    return rc;
}

static int json_int(const cJSON *o, const char *k, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2147483647.0) return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int json_bool(const cJSON *o, const char *k, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsBool(v)) return -1;
    *out = cJSON_IsTrue(v);
    return 0;
}

/* The configuration stored in the metadata (dpformer.config, a JSON object). */
static int parse_config(const char *path, const char *cs, dp_model_config *c, dp_error *err) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(cs, &end, 1);
    memset(c, 0, sizeof *c);
    int bad = !cJSON_IsObject(j);
    bad = bad || json_int(j, "n_items", &c->n_items) || json_int(j, "max_len", &c->max_len) ||
          json_int(j, "d_model", &c->d_model) || json_int(j, "n_heads", &c->n_heads) ||
          json_int(j, "n_layers", &c->n_layers) || json_int(j, "d_ff", &c->d_ff) || json_bool(j, "tied", &c->tied) ||
          json_bool(j, "causal", &c->causal);
    if (!bad) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "dropout");
        bad = !cJSON_IsNumber(d);
        if (!bad) c->dropout = (float)d->valuedouble;
    }
    /* task fields (absent in files of next-item models written before they existed) */
    if (!bad && cJSON_GetObjectItemCaseSensitive(j, "n_classes")) bad = json_int(j, "n_classes", &c->n_classes);
    if (!bad) {
        const cJSON *pl = cJSON_GetObjectItemCaseSensitive(j, "pool");
        if (pl && cJSON_IsString(pl) && strcmp(pl->valuestring, "mean") == 0) c->pool = DP_POOL_MEAN;
        else if (pl && !(cJSON_IsString(pl) && strcmp(pl->valuestring, "first") == 0)) bad = 1;
        const cJSON *rc = cJSON_GetObjectItemCaseSensitive(j, "rep_clip");
        if (rc && cJSON_IsNumber(rc)) c->rep_clip = rc->valuedouble;
        else if (rc) bad = 1;
        const cJSON *tk = cJSON_GetObjectItemCaseSensitive(j, "tokenizer"); /* absent before hashed words */
        if (tk && cJSON_IsString(tk) && strlen(tk->valuestring) < sizeof c->tokenizer)
            memcpy(c->tokenizer, tk->valuestring, strlen(tk->valuestring) + 1);
        else if (tk) bad = 1;
    }
    cJSON_Delete(j);
    if (bad) return dp_fail(err, "%s: metadata dpformer.config: malformed or missing field", path);
    return 0;
}

/* The file's tensors against the ones the configuration defines: same number, and each present as
 * F32 with the expected shape. Done before anything is allocated, so that the parameter memory a
 * configuration asks for is memory whose contents the file actually holds. */
static int check_tensors(const char *path, const dp_st_file *f, const dp_model_config *c, dp_error *err) {
    dp_param_tensor *want = dp_calloc(DP_MAX_TENSORS, sizeof *want);
    dp_error e2;
    int n = dp_model_config_tensors(c, want, &e2), rc = -1;
    if (n < 0) {
        dp_fail(err, "%s: metadata dpformer.config: %s", path, e2.msg);
        goto out;
    }
    if (dp_st_count(f) != n) {
        dp_fail(err, "%s: has %d tensors, the configuration needs %d", path, dp_st_count(f), n);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const dp_param_tensor *pt = &want[i];
        const dp_st_tensor *t = dp_st_find(f, pt->name);
        if (!t) {
            dp_fail(err, "%s: tensor %s is missing", path, pt->name);
            goto out;
        }
        if (strcmp(t->dtype, "F32") != 0 || t->ndim != pt->ndim || t->shape[0] != pt->shape[0] ||
            (pt->ndim > 1 && t->shape[1] != pt->shape[1])) {
            dp_fail(err, "%s: tensor %s has dtype %s and a shape that does not match the configuration", path, pt->name,
                    t->dtype);
            goto out;
        }
    }
    rc = 0;
out:
    free(want);
    return rc;
}

/* A model from a safetensors file already read and validated; path names it in messages. */
static dp_model *load_from(const char *path, const dp_st_file *f, int max_batch, dp_error *err) {
    const char *ver = dp_st_meta(f, "dpformer.format_version"), *cs = dp_st_meta(f, "dpformer.config");
    if (!ver || !cs) {
        dp_fail(err, "%s: not a dpformer model (metadata dpformer.config / dpformer.format_version missing)", path);
        return NULL;
    }
    if (strcmp(ver, FORMAT_VERSION) != 0) {
        dp_fail(err, "%s: model format version %s is not supported (this build reads %s)", path, ver, FORMAT_VERSION);
        return NULL;
    }
    dp_model_config c;
    if (parse_config(path, cs, &c, err) || check_tensors(path, f, &c, err)) return NULL;
    dp_error e2;
    dp_model *m = dp_model_create(&c, max_batch, 0, &e2);
    if (!m) {
        dp_fail(err, "%s: metadata dpformer.config: %s", path, e2.msg);
        return NULL;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const dp_param_tensor *pt = &m->tensors[i];
        const float *src = dp_st_find(f, pt->name)->data;
        for (size_t k = 0; k < pt->size; k++) {
            if (!isfinite(src[k])) {
                dp_fail(err, "%s: tensor %s holds a non-finite value at index %zu", path, pt->name, k);
                dp_model_free(m);
                return NULL;
            }
            m->params[pt->offset + k] = (real)src[k];
        }
    }
    return m;
}

dp_model *dp_model_load(const char *path, int max_batch, dp_error *err) {
    dp_st_file *f = NULL;
    if (dp_safetensors_read(path, &f, err)) return NULL;
    dp_model *m = load_from(path, f, max_batch, err);
    dp_st_close(f);
    return m;
}

dp_model *dp_model_load_buffer(const char *name, const void *data, size_t len, int max_batch, dp_error *err) {
    dp_st_file *f = NULL;
    if (!name) name = "(buffer)";
    if (dp_safetensors_read_buffer(name, data, len, &f, err)) return NULL;
    dp_model *m = load_from(name, f, max_batch, err);
    dp_st_close(f);
    return m;
}
