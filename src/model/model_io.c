/* Saving and loading a model as a safetensors file: every parameter tensor in float32 under its name
 * (dpformer/model.h lists them) and the configuration as JSON in the metadata (docs/file-format.md).
 * A model with Re-Attention attached also stores that setting (metadata dpformer.reattention and the
 * F64 tensor reattention.item_freq), and loading such a file attaches it again. Every file written has
 * a checksum of each tensor and of the metadata (dpformer.checksums, as checkpoints have), verified
 * on loading when present. A folder given to dp_model_load is a Hugging Face model (hf.c). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <sys/stat.h>

#include "dpformer/reattention.h"
#include "dpformer/safetensors.h"
#include "model/model_internal.h"

#define FORMAT_VERSION "1"
#define KEY_REATT "dpformer.reattention"
#define TENSOR_REATT_FREQ "reattention.item_freq"

static void config_json(const dp_model_config *c, char *buf, size_t n) {
    snprintf(buf, n,
             "{\"n_items\":%d,\"max_len\":%d,\"d_model\":%d,\"n_heads\":%d,\"n_layers\":%d,\"d_ff\":%d,\"tied\":%s,"
             "\"causal\":%s,\"dropout\":%.9g,\"n_classes\":%d,\"pool\":\"%s\",\"rep_clip\":%.17g,\"tokenizer\":\"%s\","
             "\"family\":\"%s\",\"activation\":\"%s\",\"positions\":\"%s\"}",
             c->n_items, c->max_len, c->d_model, c->n_heads, c->n_layers, c->d_ff, c->tied ? "true" : "false",
             c->causal ? "true" : "false", c->dropout, c->n_classes, c->pool == DP_POOL_MEAN ? "mean" : "first",
             c->rep_clip, c->tokenizer, dp_model_family_name(c->family), dp_model_activation_name(c->activation),
             dp_model_positions_name(c->positions));
}

int dp_model_save(const dp_model *m, const char *path, const char *extra_meta, dp_error *err) {
    dp_reattention_config ra;
    const int with_ra = dp_model_get_reattention(m, &ra);
    /* The F64 frequencies go first, so that every tensor starts at a multiple of its element size. */
    const int first = with_ra ? 1 : 0, n = m->n_tensors + first;
    dp_st_tensor *t = dp_calloc((size_t)n, sizeof *t);
    float **bufs = dp_calloc((size_t)n, sizeof *bufs);
    /* the parameters as host memory (a copy from a device) */
    real *host = (real *)m->params;
    if (!model_on_host(m)) {
        host = dp_alloc_aligned(sizeof(real) * m->n_params);
        dp_model_read_params(m, host);
    }
    if (with_ra) {
        t[0].name = TENSOR_REATT_FREQ;
        t[0].dtype = "F64";
        t[0].ndim = 1;
        t[0].shape[0] = (int64_t)m->cfg.n_items + 1;
        t[0].data = ra.item_freq;
    }
    for (int i = first; i < n; i++) {
        const dp_param_tensor *pt = &m->tensors[i - first];
        t[i].name = pt->name;
        t[i].dtype = "F32";
        t[i].ndim = pt->ndim;
        t[i].shape[0] = pt->shape[0];
        t[i].shape[1] = pt->shape[1];
#ifdef DP_REAL_DOUBLE
        bufs[i] = dp_malloc(sizeof(float) * (pt->size ? pt->size : 1));
        for (size_t k = 0; k < pt->size; k++) bufs[i][k] = (float)host[pt->offset + k];
        t[i].data = bufs[i];
#else
        t[i].data = host + pt->offset;
#endif
    }
    char cfg[640], rcfg[256];
    config_json(&m->cfg, cfg, sizeof cfg);
    const char *keys[6] = {"format", "dpformer.format_version", "dpformer.config", "dpformer.run"};
    const char *vals[6] = {"pt", FORMAT_VERSION, cfg, extra_meta ? extra_meta : "{}"};
    int n_meta = 4;
    if (with_ra) {
        snprintf(rcfg, sizeof rcfg, "{\"kappa\":%.17g,\"sigma\":%.17g,\"batch_size\":%.17g,\"n_examples\":%" PRId64 "}",
                 ra.kappa, ra.sigma, ra.batch_size, ra.n_examples);
        keys[n_meta] = KEY_REATT;
        vals[n_meta++] = rcfg;
    }
    /* last: the checksums of every tensor and of the metadata above (docs/file-format.md#checksums) */
    char *sums = dp_st_checksums_json(t, n, keys, vals, n_meta);
    keys[n_meta] = DP_ST_KEY_CHECKSUMS;
    vals[n_meta++] = sums;
    int rc = dp_safetensors_write(path, t, n, keys, vals, n_meta, err);
    free(sums);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(t);
    if (host != m->params) free(host);
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
    /* family fields (absent in files written before the language models: the recommender's values) */
    const char *named[] = {"family", "activation", "positions"};
    int (*parse[])(const char *) = {dp_model_family_parse, dp_model_activation_parse, dp_model_positions_parse};
    int *dst[] = {&c->family, &c->activation, &c->positions};
    for (int k = 0; k < 3 && !bad; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, named[k]);
        if (!v) continue;
        int x = cJSON_IsString(v) ? parse[k](v->valuestring) : -1;
        if (x < 0) {
            cJSON_Delete(j);
            return dp_fail(err, "%s: metadata dpformer.config: field \"%s\": unknown value (expected %s)", path, named[k],
                           k == 0 ? "\"rec\" or \"gpt2\"" : k == 1 ? "\"gelu\" or \"gelu_tanh\"" : "\"window\" or \"from_first\"");
        }
        *dst[k] = x;
    }
    cJSON_Delete(j);
    if (bad) return dp_fail(err, "%s: metadata dpformer.config: malformed or missing field", path);
    return 0;
}

/* The file's tensors against the ones the configuration defines (plus `extra`: the Re-Attention
 * frequencies, checked by reattention_from_file): same number, and each present as F32 with the
 * expected shape. Done before anything is allocated, so that the parameter memory a
 * configuration asks for is memory whose contents the file actually holds. */
static int check_tensors(const char *path, const dp_st_file *f, const dp_model_config *c, int extra, dp_error *err) {
    dp_param_tensor *want = dp_calloc(DP_MAX_TENSORS, sizeof *want);
    dp_error e2;
    int n = dp_model_config_tensors(c, want, &e2), rc = -1;
    if (n < 0) {
        dp_fail(err, "%s: metadata dpformer.config: %s", path, e2.msg);
        goto out;
    }
    if (dp_st_count(f) != n + extra) {
        dp_fail(err, "%s: has %d tensors, the configuration needs %d%s", path, dp_st_count(f), n + extra,
                extra ? " (with " TENSOR_REATT_FREQ ")" : "");
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

/* The Re-Attention setting stored with a model: the metadata dpformer.reattention (rs, a JSON object
 * with kappa, sigma, batch_size, n_examples) and the tensor reattention.item_freq (F64 [n_items + 1],
 * every value finite and in [0, 1]). cfg->item_freq points into the file. */
static int reattention_from_file(const char *path, const dp_st_file *f, const char *rs, int32_t n_items,
                                 dp_reattention_config *cfg, dp_error *err) {
    *cfg = dp_reattention_config_default();
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(rs, &end, 1);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return dp_fail(err, "%s: metadata " KEY_REATT ": not a JSON object (malformed JSON?)", path);
    }
    const char *bad = NULL;
    const char *fields[] = {"kappa", "sigma", "batch_size", "n_examples"};
    double v[4] = {0};
    for (int i = 0; i < 4 && !bad; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, fields[i]);
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)) bad = fields[i];
        else v[i] = x->valuedouble;
    }
    cJSON_Delete(j);
    if (bad)
        return dp_fail(err, "%s: metadata " KEY_REATT ": field \"%s\" is missing or not a finite number", path, bad);
    if (!(v[0] >= 0))
        return dp_fail(err, "%s: metadata " KEY_REATT ": field \"kappa\" must be >= 0 (got %g)", path, v[0]);
    if (!(v[1] >= 0))
        return dp_fail(err, "%s: metadata " KEY_REATT ": field \"sigma\" must be >= 0 (got %g)", path, v[1]);
    if (!(v[2] > 0))
        return dp_fail(err, "%s: metadata " KEY_REATT ": field \"batch_size\" must be > 0 (got %g)", path, v[2]);
    if (v[3] != floor(v[3]) || v[3] < 1 || v[3] > 9007199254740992.0)
        return dp_fail(err, "%s: metadata " KEY_REATT ": field \"n_examples\" must be an integer >= 1 (got %g)", path,
                       v[3]);
    const dp_st_tensor *t = dp_st_find(f, TENSOR_REATT_FREQ);
    if (!t) return dp_fail(err, "%s: tensor " TENSOR_REATT_FREQ " is missing (metadata " KEY_REATT " needs it)", path);
    const int64_t V1 = (int64_t)n_items + 1;
    if (strcmp(t->dtype, "F64") != 0 || t->ndim != 1 || t->shape[0] != V1) {
        char got[64];
        if (t->ndim == 1) snprintf(got, sizeof got, "%s [%" PRId64 "]", t->dtype, t->shape[0]);
        else snprintf(got, sizeof got, "%s with %d dimensions", t->dtype, t->ndim);
        return dp_fail(err, "%s: tensor " TENSOR_REATT_FREQ " must be F64 [%" PRId64 "] (n_items + 1); it is %s", path,
                       V1, got);
    }
    const double *p = t->data;
    for (int64_t i = 0; i < V1; i++)
        if (!(p[i] >= 0 && p[i] <= 1))
            return dp_fail(err, "%s: tensor " TENSOR_REATT_FREQ ": value at index %" PRId64 " is %g, not a frequency in "
                                "[0, 1]", path, i, p[i]);
    cfg->enabled = 1;
    cfg->kappa = v[0];
    cfg->sigma = v[1];
    cfg->batch_size = v[2];
    cfg->n_examples = (int64_t)v[3];
    cfg->item_freq = p;
    return 0;
}

/* A model from a safetensors file already read and validated; path names it in messages. The
 * checksums, when the file has them, are verified before the model is handed over (after the checks of
 * the configuration, shapes and values, whose messages say more about a file built wrongly); a file
 * without them (written before they existed, or by another tool) is loaded with a note on `note` (if
 * not NULL). */
static dp_model *load_from(const char *path, const dp_st_file *f, int max_batch, int max_len, FILE *note,
                           dp_error *err) {
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
    const char *rs = dp_st_meta(f, KEY_REATT);
    dp_reattention_config ra;
    if (parse_config(path, cs, &c, err) || (rs && reattention_from_file(path, f, rs, c.n_items, &ra, err)) ||
        check_tensors(path, f, &c, rs != NULL, err))
        return NULL;
    /* a shorter window keeps the first max_len positional rows (the prefix of pos_emb.weight) */
    if (max_len > 0 && max_len < c.max_len) c.max_len = max_len;
    dp_error e2;
    dp_model *m = max_batch > 0 ? dp_model_create(&c, max_batch, 0, &e2) : model_create_params_only(&c, &e2);
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
    if (rs && dp_model_set_reattention(m, &ra, &e2)) {
        dp_fail(err, "%s: metadata " KEY_REATT ": %s", path, e2.msg);
        dp_model_free(m);
        return NULL;
    }
    const int sums = dp_st_verify_checksums(f, path, err);
    if (sums < 0) {
        dp_model_free(m);
        return NULL;
    }
    if (sums == 0 && note)
        fprintf(note, "note: %s has no checksums (metadata " DP_ST_KEY_CHECKSUMS "; written by an older dpformer or "
                      "another tool): its data cannot be verified\n", path);
    return m;
}

dp_model *model_load_window(const char *path, int max_batch, int max_len, dp_error *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return model_hf_load(path, max_batch, max_len, err);
    dp_st_file *f = NULL;
    if (dp_safetensors_read(path, &f, err)) return NULL;
    dp_model *m = load_from(path, f, max_batch, max_len, stderr, err);
    dp_st_close(f);
    return m;
}

dp_model *dp_model_load(const char *path, int max_batch, dp_error *err) {
    if (max_batch < 1) {
        dp_fail(err, "%s: max_batch must be at least 1", path);
        return NULL;
    }
    return model_load_window(path, max_batch, 0, err);
}

int dp_model_file_config(const char *path, dp_model_config *cfg, dp_error *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return model_hf_config(path, cfg, err);
    dp_st_file *f = NULL;
    if (dp_safetensors_read(path, &f, err)) return -1;
    const char *ver = dp_st_meta(f, "dpformer.format_version"), *cs = dp_st_meta(f, "dpformer.config");
    int rc = -1;
    if (!ver || !cs) dp_fail(err, "%s: not a dpformer model (metadata dpformer.config / dpformer.format_version missing)", path);
    else if (strcmp(ver, FORMAT_VERSION) != 0)
        dp_fail(err, "%s: model format version %s is not supported (this build reads %s)", path, ver, FORMAT_VERSION);
    else rc = parse_config(path, cs, cfg, err);
    if (rc == 0 && cfg->d_ff == 0) cfg->d_ff = 4 * cfg->d_model;
    dp_st_close(f);
    return rc;
}

dp_model *dp_model_load_buffer(const char *name, const void *data, size_t len, int max_batch, dp_error *err) {
    dp_st_file *f = NULL;
    if (!name) name = "(buffer)";
    if (max_batch < 1) {
        dp_fail(err, "%s: max_batch must be at least 1", name);
        return NULL;
    }
    if (dp_safetensors_read_buffer(name, data, len, &f, err)) return NULL;
    dp_model *m = load_from(name, f, max_batch, 0, NULL, err);
    dp_st_close(f);
    return m;
}
