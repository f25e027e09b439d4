/* The Hugging Face layout of GPT-2 models, in and out: a folder with config.json and model.safetensors
 * holding GPT-2's tensor names (GPT2LMHeadModel's, with or without its "transformer." prefix; Conv1D
 * weights stored [in, out]) is imported as a DP_FAMILY_GPT2 model of dpformer/model.h, and such a model
 * is exported to a folder that transformers' GPT2LMHeadModel.from_pretrained loads. Token t of the
 * vocabulary is item t + 1 of the model (row 0 of the embedding is padding), so the tensors move over
 * with one row added or removed and the Conv1D weights transposed: an F32 import followed by an export
 * gives the same tensor bytes. This is not a general Hugging Face loader: other architectures,
 * options that change GPT-2's computation, missing, misshapen or unexpected tensors are refused by
 * name (file and field or tensor). docs/lm.md describes the layout. */
#define _DEFAULT_SOURCE /* O_DIRECTORY, fsync */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpformer/lm.h"
#include "dpformer/safetensors.h"
#include "dpformer/tokenizer.h"
#include "model/model_internal.h"

#define HF_CONFIG "config.json"
#define HF_WEIGHTS "model.safetensors"

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = dp_malloc(n);
    snprintf(p, n, "%s%s%s", dir, (*dir && dir[strlen(dir) - 1] == '/') ? "" : "/", name);
    return p;
}

static int file_exists(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    struct stat st;
    int ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

/* ---------------- config.json ---------------- */

/* An integer field: absent → *out unchanged and 0 (when optional), else -1 with err. */
static int cfg_int(const char *file, const cJSON *j, const char *key, int optional, long lo, long hi, int *out,
                   dp_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        if (optional) return 0;
        return dp_fail(err, "%s: field \"%s\" is missing", file, key);
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return dp_fail(err, "%s: field \"%s\" must be an integer", file, key);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return dp_fail(err, "%s: field \"%s\" is %.17g, outside [%ld, %ld]", file, key, v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return 0;
}

static int cfg_bool(const char *file, const cJSON *j, const char *key, int *out, dp_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return dp_fail(err, "%s: field \"%s\" must be true or false", file, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int cfg_num(const char *file, const cJSON *j, const char *key, double *out, dp_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return dp_fail(err, "%s: field \"%s\" must be a number", file, key);
    *out = v->valuedouble;
    return 0;
}

/* GPT2Config's fields that change the computation; every other field (token ids, generation and
 * summary settings, torch_dtype, ...) does not, and is ignored. */
static int parse_hf_config(const char *file, const char *text, size_t len, dp_model_config *c, dp_error *err) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return dp_fail(err, "%s: not a JSON object (malformed JSON?)", file);
    }
    int rc = -1;
    memset(c, 0, sizeof *c);
    c->family = DP_FAMILY_GPT2;
    c->positions = DP_POS_FROM_FIRST;
    c->causal = 1;
    c->tied = 1;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (!mt) {
        dp_fail(err, "%s: field \"model_type\" is missing (a GPT-2 model has \"gpt2\")", file);
        goto out;
    }
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "gpt2") != 0) {
        dp_fail(err, "%s: field \"model_type\" is %s%s%s: only GPT-2 models (\"gpt2\") are read", file,
                cJSON_IsString(mt) ? "\"" : "", cJSON_IsString(mt) ? mt->valuestring : "not a string",
                cJSON_IsString(mt) ? "\"" : "");
        goto out;
    }
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    if (arch && !cJSON_IsNull(arch)) {
        if (!cJSON_IsArray(arch)) {
            dp_fail(err, "%s: field \"architectures\" must be a list of names", file);
            goto out;
        }
        const cJSON *a;
        cJSON_ArrayForEach(a, arch) {
            if (!cJSON_IsString(a) ||
                (strcmp(a->valuestring, "GPT2LMHeadModel") != 0 && strcmp(a->valuestring, "GPT2Model") != 0)) {
                dp_fail(err, "%s: field \"architectures\": %s%s%s is not read (GPT2LMHeadModel or GPT2Model)", file,
                        cJSON_IsString(a) ? "\"" : "", cJSON_IsString(a) ? a->valuestring : "a non-string entry",
                        cJSON_IsString(a) ? "\"" : "");
                goto out;
            }
        }
    }
    int n_inner = 0;
    if (cfg_int(file, j, "vocab_size", 0, 1, 100000000, &c->n_items, err) ||
        cfg_int(file, j, "n_embd", 0, 1, 65536, &c->d_model, err) ||
        cfg_int(file, j, "n_layer", 0, 0, 1000, &c->n_layers, err) ||
        cfg_int(file, j, "n_head", 0, 1, 65536, &c->n_heads, err) ||
        cfg_int(file, j, "n_inner", 1, 1, 1 << 24, &n_inner, err))
        goto out;
    c->d_ff = n_inner;
    c->max_len = -1;
    if (cfg_int(file, j, "n_positions", 1, 1, 100000, &c->max_len, err)) goto out;
    if (c->max_len < 0 && cfg_int(file, j, "n_ctx", 0, 1, 100000, &c->max_len, err)) {
        dp_fail(err, "%s: field \"n_positions\" is missing", file);
        goto out;
    }
    if (c->d_model % c->n_heads != 0) {
        dp_fail(err, "%s: field \"n_embd\" (%d) is not divisible by \"n_head\" (%d)", file, c->d_model, c->n_heads);
        goto out;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "activation_function");
    c->activation = DP_ACT_GELU_TANH; /* GPT2Config's default, gelu_new */
    if (act && !cJSON_IsNull(act)) {
        const char *s = cJSON_IsString(act) ? act->valuestring : "";
        /* gelu_new, gelu_pytorch_tanh and gelu_fast are the same function, 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))) */
        if (strcmp(s, "gelu_new") == 0 || strcmp(s, "gelu_pytorch_tanh") == 0 || strcmp(s, "gelu_fast") == 0)
            c->activation = DP_ACT_GELU_TANH;
        else if (strcmp(s, "gelu") == 0)
            c->activation = DP_ACT_GELU;
        else {
            dp_fail(err, "%s: field \"activation_function\" is %s%s%s: only gelu_new (also gelu_pytorch_tanh, "
                         "gelu_fast) and gelu are supported", file, cJSON_IsString(act) ? "\"" : "",
                    cJSON_IsString(act) ? s : "not a string", cJSON_IsString(act) ? "\"" : "");
            goto out;
        }
    }
    double eps = 1e-5;
    if (cfg_num(file, j, "layer_norm_epsilon", &eps, err)) goto out;
    if (fabs(eps - DP_LN_EPS) > 1e-9 * DP_LN_EPS) {
        dp_fail(err, "%s: field \"layer_norm_epsilon\" is %g: dpformer's LayerNorm uses 1e-05 (GPT-2's value)", file, eps);
        goto out;
    }
    if (cfg_bool(file, j, "tie_word_embeddings", &c->tied, err)) goto out;
    /* options of GPT2Config that change the computation away from GPT-2's */
    int scale = 1, inv_layer = 0, cross = 0;
    if (cfg_bool(file, j, "scale_attn_weights", &scale, err) ||
        cfg_bool(file, j, "scale_attn_by_inverse_layer_idx", &inv_layer, err) ||
        cfg_bool(file, j, "add_cross_attention", &cross, err))
        goto out;
    if (!scale || inv_layer || cross) {
        dp_fail(err, "%s: field \"%s\" is %s: not supported (GPT-2 attention scales by 1/sqrt(head width) only, "
                     "without cross-attention)", file,
                !scale ? "scale_attn_weights" : inv_layer ? "scale_attn_by_inverse_layer_idx" : "add_cross_attention",
                !scale ? "false" : "true");
        goto out;
    }
    /* one dropout rate at every site: resid_pdrop (GPT2Config's default 0.1) */
    double p = 0.1;
    if (cfg_num(file, j, "resid_pdrop", &p, err)) goto out;
    if (!(p >= 0 && p < 1)) {
        dp_fail(err, "%s: field \"resid_pdrop\" must be in [0, 1) (got %g)", file, p);
        goto out;
    }
    c->dropout = (float)p;
    dp_error e2;
    if (dp_model_config_validate(c, &e2)) {
        dp_fail(err, "%s: %s", file, e2.msg);
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

/* ---------------- tensors ---------------- */

static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float element(const dp_st_tensor *t, size_t k) {
    if (t->dtype[0] == 'F' && t->dtype[1] == '3') return ((const float *)t->data)[k];
    uint16_t h;
    memcpy(&h, (const char *)t->data + 2 * k, 2);
    if (t->dtype[0] == 'B') { /* BF16: the high half of a float */
        uint32_t bits = (uint32_t)h << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    return half_to_float(h);
}

/* One tensor of the Hugging Face file and where it goes: our tensor `ours`, its HF shape [r, c] (c = 0
 * for a vector), whether HF stores it transposed (Conv1D [in, out] against our [out, in]), and whether
 * ours has the padding row in front (the vocabulary tables). */
typedef struct {
    char hf[96];
    char ours[64];
    int64_t rows, cols;
    int transposed, pad_row;
} hf_map;

/* The tensors of a configuration, in dpformer's order. Returns their number (map has room for
 * DP_MAX_TENSORS entries). prefix: "" or "transformer."; lm_head is never prefixed. */
static int hf_tensor_map(const dp_model_config *c, const char *prefix, hf_map *map) {
    const int64_t V = c->n_items, L = c->max_len, d = c->d_model, F = c->d_ff > 0 ? c->d_ff : 4 * (int64_t)c->d_model;
    int n = 0;
#define MAP(hfname, ourname, r, cc, tr, pad)                                                          \
    do {                                                                                             \
        hf_map *x = &map[n++];                                                                       \
        snprintf(x->hf, sizeof x->hf, "%s", hfname);                                                 \
        snprintf(x->ours, sizeof x->ours, "%s", ourname);                                            \
        x->rows = (r);                                                                               \
        x->cols = (cc);                                                                              \
        x->transposed = (tr);                                                                        \
        x->pad_row = (pad);                                                                          \
    } while (0)
    char h[96], o[64];
    snprintf(h, sizeof h, "%swte.weight", prefix);
    MAP(h, "item_emb.weight", V, d, 0, 1);
    snprintf(h, sizeof h, "%swpe.weight", prefix);
    MAP(h, "pos_emb.weight", L, d, 0, 0);
    for (int l = 0; l < c->n_layers; l++) {
        static const struct {
            const char *hf, *ours;
            int kind; /* 0 vector [d], 1 qkv w, 2 qkv b, 3 proj w, 4 fc w, 5 fc b, 6 fc2 w */
        } parts[] = {
            {"ln_1.weight", "ln1.weight", 0},       {"ln_1.bias", "ln1.bias", 0},
            {"attn.c_attn.weight", "attn.qkv.weight", 1}, {"attn.c_attn.bias", "attn.qkv.bias", 2},
            {"attn.c_proj.weight", "attn.proj.weight", 3}, {"attn.c_proj.bias", "attn.proj.bias", 0},
            {"ln_2.weight", "ln2.weight", 0},       {"ln_2.bias", "ln2.bias", 0},
            {"mlp.c_fc.weight", "ffn.fc1.weight", 4}, {"mlp.c_fc.bias", "ffn.fc1.bias", 5},
            {"mlp.c_proj.weight", "ffn.fc2.weight", 6}, {"mlp.c_proj.bias", "ffn.fc2.bias", 0},
        };
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
            snprintf(h, sizeof h, "%sh.%d.%s", prefix, l, parts[k].hf);
            snprintf(o, sizeof o, "layers.%d.%s", l, parts[k].ours);
            switch (parts[k].kind) {
            case 0: MAP(h, o, d, 0, 0, 0); break;
            case 1: MAP(h, o, d, 3 * d, 1, 0); break;
            case 2: MAP(h, o, 3 * d, 0, 0, 0); break;
            case 3: MAP(h, o, d, d, 1, 0); break;
            case 4: MAP(h, o, d, F, 1, 0); break;
            case 5: MAP(h, o, F, 0, 0, 0); break;
            default: MAP(h, o, F, d, 1, 0); break;
            }
        }
    }
    snprintf(h, sizeof h, "%sln_f.weight", prefix);
    MAP(h, "ln_f.weight", d, 0, 0, 0);
    snprintf(h, sizeof h, "%sln_f.bias", prefix);
    MAP(h, "ln_f.bias", d, 0, 0, 0);
    if (!c->tied) MAP("lm_head.weight", "out.weight", V, d, 0, 1);
#undef MAP
    return n;
}

static void shape_text(char *buf, size_t n, const dp_st_tensor *t) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int is_buffer_name(const char *name, const char *prefix) {
    /* h.{i}.attn.bias (the causal mask) and h.{i}.attn.masked_bias: buffers, not parameters */
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0 || strncmp(name + pl, "h.", 2) != 0) return 0;
    const char *p = name + pl + 2;
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') p++;
    return strcmp(p, ".attn.bias") == 0 || strcmp(p, ".attn.masked_bias") == 0;
}

static const dp_param_tensor *param_named(const dp_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* Every tensor of the file is either mapped, a buffer, or (tied) an lm_head.weight equal to wte. */
static int check_hf_tensors(const char *file, const dp_st_file *f, const dp_model_config *c, const char *prefix,
                            const hf_map *map, int n_map, dp_error *err) {
    for (int i = 0; i < n_map; i++) {
        const hf_map *x = &map[i];
        const dp_st_tensor *t = dp_st_find(f, x->hf);
        if (!t) return dp_fail(err, "%s: tensor %s is missing", file, x->hf);
        if (strcmp(t->dtype, "F32") != 0 && strcmp(t->dtype, "F16") != 0 && strcmp(t->dtype, "BF16") != 0)
            return dp_fail(err, "%s: tensor %s has dtype %s (F32, F16 or BF16 are read)", file, x->hf, t->dtype);
        int ok = x->cols ? (t->ndim == 2 && t->shape[0] == x->rows && t->shape[1] == x->cols)
                         : (t->ndim == 1 && t->shape[0] == x->rows);
        if (!ok) {
            char got[96];
            shape_text(got, sizeof got, t);
            if (x->cols)
                return dp_fail(err, "%s: tensor %s has shape %s, expected [%" PRId64 ", %" PRId64 "] (from config.json)",
                               file, x->hf, got, x->rows, x->cols);
            return dp_fail(err, "%s: tensor %s has shape %s, expected [%" PRId64 "] (from config.json)", file, x->hf,
                           got, x->rows);
        }
    }
    for (int i = 0; i < dp_st_count(f); i++) {
        const dp_st_tensor *t = dp_st_get(f, i);
        int known = is_buffer_name(t->name, prefix);
        for (int k = 0; k < n_map && !known; k++) known = strcmp(map[k].hf, t->name) == 0;
        if (!known && c->tied && strcmp(t->name, "lm_head.weight") == 0) {
            /* A tied model's output layer is wte; a copy is accepted when it is one. */
            char wte[64];
            snprintf(wte, sizeof wte, "%swte.weight", prefix);
            const dp_st_tensor *w = dp_st_find(f, wte);
            size_t n = (size_t)c->n_items * (size_t)c->d_model;
            int same = t->ndim == 2 && t->shape[0] == c->n_items && t->shape[1] == c->d_model;
            for (size_t k = 0; same && k < n; k++) same = element(t, k) == element(w, k);
            if (!same)
                return dp_fail(err, "%s: tensor lm_head.weight differs from %s, but config.json has tie_word_embeddings "
                                    "true (the output layer is the token embedding)", file, wte);
            known = 1;
        }
        if (!known)
            return dp_fail(err, "%s: unexpected tensor %s (not part of a GPT-2 language model%s)", file, t->name,
                           *prefix ? " with the transformer. prefix" : "");
    }
    return 0;
}

dp_model *model_hf_load(const char *dir, int max_batch, int max_len, dp_error *err) {
    char *cfg_path = path_join(dir, HF_CONFIG), *w_path = path_join(dir, HF_WEIGHTS);
    char *text = NULL;
    size_t len = 0;
    dp_st_file *f = NULL;
    dp_model *m = NULL;
    hf_map *map = NULL;
    dp_model_config c;
    if (!file_exists(dir, HF_CONFIG)) {
        dp_fail(err, "%s: a folder, but not a Hugging Face model folder: it has no " HF_CONFIG, dir);
        goto out;
    }
    if (dp_read_file(cfg_path, &text, &len, err) || parse_hf_config(cfg_path, text, len, &c, err)) goto out;
    if (!file_exists(dir, HF_WEIGHTS)) {
        if (file_exists(dir, "model.safetensors.index.json"))
            dp_fail(err, "%s: no " HF_WEIGHTS " but model.safetensors.index.json: sharded weights are not read "
                         "(save the model as one file)", dir);
        else if (file_exists(dir, "pytorch_model.bin"))
            dp_fail(err, "%s: no " HF_WEIGHTS " but pytorch_model.bin: only the safetensors format is read (save "
                         "with safe_serialization=True)", dir);
        else
            dp_fail(err, "%s: no " HF_WEIGHTS " next to " HF_CONFIG, dir);
        goto out;
    }
    if (dp_safetensors_read(w_path, &f, err)) goto out;
    const char *prefix = dp_st_find(f, "transformer.wte.weight") ? "transformer." : "";
    map = dp_calloc(DP_MAX_TENSORS, sizeof *map);
    if (12 * c.n_layers + 7 > DP_MAX_TENSORS) {
        dp_fail(err, "%s: field \"n_layer\" is %d: at most %d layers are supported", cfg_path, c.n_layers,
                (DP_MAX_TENSORS - 7) / 12);
        goto out;
    }
    const int n_map = hf_tensor_map(&c, prefix, map);
    if (check_hf_tensors(w_path, f, &c, prefix, map, n_map, err)) goto out;
    if (max_len > 0 && max_len < c.max_len) c.max_len = max_len;
    dp_error e2;
    if (!(m = max_batch > 0 ? dp_model_create(&c, max_batch, 0, &e2) : model_create_params_only(&c, &e2))) {
        dp_fail(err, "%s: %s", cfg_path, e2.msg);
        goto out;
    }
    for (int i = 0; i < n_map; i++) {
        const hf_map *x = &map[i];
        const dp_st_tensor *t = dp_st_find(f, x->hf);
        const dp_param_tensor *pt = param_named(m, x->ours);
        real *dst = m->params + pt->offset;
        const int64_t rows = x->transposed ? x->cols : x->rows, cols = x->cols ? (x->transposed ? x->rows : x->cols) : 1;
        /* our tensor is [rows (+1), cols]; a shorter window keeps the first rows of wpe */
        const int64_t use_rows = x->pad_row ? rows : (int64_t)(pt->size / (size_t)cols);
        if (x->pad_row) {
            memset(dst, 0, sizeof(real) * (size_t)cols);
            dst += cols;
        }
        for (int64_t r = 0; r < use_rows; r++)
            for (int64_t k = 0; k < cols; k++) {
                size_t src = x->transposed ? (size_t)k * (size_t)rows + (size_t)r : (size_t)r * (size_t)cols + (size_t)k;
                float v = element(t, src);
                if (!isfinite(v)) {
                    dp_fail(err, "%s: tensor %s holds a non-finite value at index %zu", w_path, x->hf, src);
                    dp_model_free(m);
                    m = NULL;
                    goto out;
                }
                dst[(size_t)r * (size_t)cols + (size_t)k] = (real)v;
            }
    }
out:
    free(map);
    dp_st_close(f);
    free(text);
    free(cfg_path);
    free(w_path);
    return m;
}

dp_model *dp_hf_import(const char *dir, int max_batch, dp_error *err) {
    if (max_batch < 1) {
        dp_fail(err, "%s: max_batch must be at least 1", dir);
        return NULL;
    }
    return model_hf_load(dir, max_batch, 0, err);
}

int model_hf_config(const char *dir, dp_model_config *cfg, dp_error *err) {
    if (!file_exists(dir, HF_CONFIG))
        return dp_fail(err, "%s: a folder, but not a Hugging Face model folder: it has no " HF_CONFIG, dir);
    char *path = path_join(dir, HF_CONFIG), *text;
    size_t len;
    int rc = dp_read_file(path, &text, &len, err);
    if (rc == 0) {
        rc = parse_hf_config(path, text, len, cfg, err);
        free(text);
    }
    if (rc == 0 && cfg->d_ff == 0) cfg->d_ff = 4 * cfg->d_model;
    free(path);
    return rc;
}

/* ---------------- export ---------------- */

/* Remove the files a failed export wrote into its temporary folder, then the folder. */
static void remove_tree_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char *p = path_join(dir, e->d_name);
            unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int dir_is_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d))) empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

static int copy_file(const char *src, const char *dst, dp_error *err) {
    char *data;
    size_t n;
    if (dp_read_file(src, &data, &n, err)) return -1;
    int rc = dp_write_file_atomic(dst, data, n, err);
    free(data);
    return rc;
}

/* The tokenizer's files, under the names Hugging Face's GPT-2 tokenizers read (OpenAI's encoder.json and
 * vocab.bpe are the same formats as vocab.json and merges.txt), plus its configuration files if any. */
static int copy_tokenizer(const char *src, const char *tmp, dp_error *err) {
    struct stat st;
    if (stat(src, &st) == 0 && S_ISREG(st.st_mode)) { /* a tokenizer.json under any name */
        char *dst = path_join(tmp, "tokenizer.json");
        int rc = copy_file(src, dst, err);
        free(dst);
        return rc;
    }
    static const char *const pairs[][2] = {
        {"tokenizer.json", "tokenizer.json"}, {"vocab.json", "vocab.json"},   {"merges.txt", "merges.txt"},
        {"tokenizer_config.json", "tokenizer_config.json"}, {"special_tokens_map.json", "special_tokens_map.json"},
    };
    int have_pair = file_exists(src, "vocab.json") && file_exists(src, "merges.txt");
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        if (!file_exists(src, pairs[i][0])) continue;
        if (!have_pair && (strcmp(pairs[i][0], "vocab.json") == 0 || strcmp(pairs[i][0], "merges.txt") == 0)) continue;
        char *s = path_join(src, pairs[i][0]), *d = path_join(tmp, pairs[i][1]);
        int rc = copy_file(s, d, err);
        free(s);
        free(d);
        if (rc) return -1;
    }
    if (!have_pair && file_exists(src, "encoder.json") && file_exists(src, "vocab.bpe")) {
        static const char *const oa[][2] = {{"encoder.json", "vocab.json"}, {"vocab.bpe", "merges.txt"}};
        for (int i = 0; i < 2; i++) {
            char *s = path_join(src, oa[i][0]), *d = path_join(tmp, oa[i][1]);
            int rc = copy_file(s, d, err);
            free(s);
            free(d);
            if (rc) return -1;
        }
    }
    return 0;
}

static char *config_text(const dp_model_config *c, int32_t eot) {
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
    cJSON_AddStringToObject(j, "model_type", "gpt2");
    cJSON_AddNumberToObject(j, "vocab_size", c->n_items);
    cJSON_AddNumberToObject(j, "n_positions", c->max_len);
    cJSON_AddNumberToObject(j, "n_ctx", c->max_len);
    cJSON_AddNumberToObject(j, "n_embd", c->d_model);
    cJSON_AddNumberToObject(j, "n_layer", c->n_layers);
    cJSON_AddNumberToObject(j, "n_head", c->n_heads);
    if (c->d_ff > 0 && c->d_ff != 4 * c->d_model) cJSON_AddNumberToObject(j, "n_inner", c->d_ff);
    else cJSON_AddNullToObject(j, "n_inner");
    cJSON_AddStringToObject(j, "activation_function", c->activation == DP_ACT_GELU_TANH ? "gelu_new" : "gelu");
    /* printed with the float's shortest decimal form, so 0.1f reads back as 0.1 */
    char p[32];
    snprintf(p, sizeof p, "%.9g", (double)c->dropout);
    double pd = strtod(p, NULL);
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(p, sizeof p, "%.*g", digits, (double)c->dropout);
        if ((float)strtod(p, NULL) == c->dropout) {
            pd = strtod(p, NULL);
            break;
        }
    }
    cJSON_AddNumberToObject(j, "resid_pdrop", pd);
    cJSON_AddNumberToObject(j, "embd_pdrop", pd);
    cJSON_AddNumberToObject(j, "attn_pdrop", pd);
    cJSON_AddNumberToObject(j, "layer_norm_epsilon", DP_LN_EPS);
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    cJSON_AddBoolToObject(j, "scale_attn_weights", 1);
    cJSON_AddBoolToObject(j, "scale_attn_by_inverse_layer_idx", 0);
    cJSON_AddBoolToObject(j, "reorder_and_upcast_attn", 0);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied);
    cJSON_AddBoolToObject(j, "use_cache", 1);
    cJSON_AddNumberToObject(j, "bos_token_id", eot);
    cJSON_AddNumberToObject(j, "eos_token_id", eot);
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

int dp_hf_export(const dp_model *m, const char *out_dir, const char *tokenizer, dp_error *err) {
    const dp_model_config *c = &m->cfg;
    if (c->family != DP_FAMILY_GPT2)
        return dp_fail(err, "export: the model is of family %s; only GPT-2-family language models export to the "
                            "Hugging Face layout", dp_model_family_name(c->family));
    if (m->cfg.max_len != m->full_len)
        return dp_fail(err, "export: internal error: the model runs on a shortened window");
    int32_t eot = c->n_items - 1; /* GPT-2's convention: <|endoftext|> is the last id */
    if (tokenizer) {
        dp_bpe *tok = dp_bpe_load(tokenizer, err);
        if (!tok) return -1;
        int32_t tv = dp_bpe_vocab_size(tok), e = dp_bpe_token_id(tok, "<|endoftext|>");
        dp_bpe_free(tok);
        if (tv != c->n_items)
            return dp_fail(err, "export: --tokenizer %s has %d tokens, the model's vocabulary %d", tokenizer, tv,
                           c->n_items);
        if (e >= 0) eot = e;
    }
    struct stat st;
    if (stat(out_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return dp_fail(err, "%s: exists and is not a folder", out_dir);
        if (!dir_is_empty(out_dir))
            return dp_fail(err, "%s: exists and is not empty (an export writes a new folder; remove it or choose "
                                "another)", out_dir);
    }
    /* everything goes to a temporary folder next to out_dir, renamed into place once complete */
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') n--;
    size_t base = n; /* the last component starts at final + base */
    while (base > 0 && out_dir[base - 1] != '/') base--;
    char *final = dp_malloc(n + 1), *parent = dp_malloc(n + 2), *tmp = dp_malloc(2 * n + 64);
    memcpy(final, out_dir, n);
    final[n] = 0;
    if (base == 0) snprintf(parent, n + 2, ".");
    else snprintf(parent, n + 2, "%.*s", (int)(base > 1 ? base - 1 : 1), out_dir);
    static int counter;
    snprintf(tmp, 2 * n + 64, "%s/.%s.tmp-%ld-%d", parent, final + base, (long)getpid(), counter++);
    if (dp_mkdir_p(parent, err) || (mkdir(tmp, 0777) != 0 && dp_fail(err, "%s: cannot create a folder: %s", tmp,
                                                                      strerror(errno)))) {
        free(final);
        free(parent);
        free(tmp);
        return -1;
    }

    int rc = -1;
    hf_map *map = dp_calloc(DP_MAX_TENSORS, sizeof *map);
    const int n_map = hf_tensor_map(c, "transformer.", map);
    dp_st_tensor *t = dp_calloc((size_t)n_map, sizeof *t);
    float **bufs = dp_calloc((size_t)n_map, sizeof *bufs);
    real *host = dp_alloc_aligned(sizeof(real) * m->n_params);
    dp_model_read_params(m, host);
    for (int i = 0; i < n_map; i++) {
        const hf_map *x = &map[i];
        const dp_param_tensor *pt = param_named(m, x->ours);
        const real *src = host + pt->offset + (x->pad_row ? (size_t)c->d_model : 0);
        const int64_t rows = x->rows, cols = x->cols ? x->cols : 1;
        float *b = bufs[i] = dp_malloc(sizeof(float) * (size_t)(rows * cols > 0 ? rows * cols : 1));
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++)
                b[(size_t)r * (size_t)cols + (size_t)k] =
                    (float)(x->transposed ? src[(size_t)k * (size_t)rows + (size_t)r] : src[(size_t)r * (size_t)cols + (size_t)k]);
        t[i].name = x->hf;
        t[i].dtype = "F32";
        t[i].ndim = x->cols ? 2 : 1;
        t[i].shape[0] = rows;
        t[i].shape[1] = x->cols;
        t[i].data = b;
    }
    char *cfg_path = path_join(tmp, HF_CONFIG), *w_path = path_join(tmp, HF_WEIGHTS);
    char *cfg = config_text(c, eot);
    const char *keys[] = {"format"}, *vals[] = {"pt"}; /* transformers requires the "pt" format tag */
    if (dp_safetensors_write(w_path, t, n_map, keys, vals, 1, err) ||
        dp_write_file_atomic(cfg_path, cfg, strlen(cfg), err) || (tokenizer && copy_tokenizer(tokenizer, tmp, err)))
        goto fail;
    if (rename(tmp, final) != 0) {
        dp_fail(err, "%s: cannot move the exported folder into place: %s", final, strerror(errno));
        goto fail;
    }
    int dfd = open(parent, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
    goto done;
fail:
    remove_tree_flat(tmp);
done:
    free(final);
    free(parent);
    free(tmp);
    free(cfg);
    free(cfg_path);
    free(w_path);
    for (int i = 0; i < n_map; i++) free(bufs[i]);
    free(bufs);
    free(t);
    free(map);
    free(host);
    return rc;
}
