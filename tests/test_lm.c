/* GPT-2-family language models in single precision (dpformer/lm.h): the Hugging Face layout in and out
 * (an F32 folder imported and exported gives byte-identical tensors, with and without the
 * "transformer." prefix, tied and untied; F16 and BF16 read exactly; malformed folders refused naming
 * the file and the field or tensor), dpformer model files keep the family, texts from lines, TSV and
 * CSV (quotes, line breaks in fields, errors with their line), the example convention, evaluation
 * (token-weighted perplexity, independent of the batch size), logits of every position, sampling
 * (greedy, top-k, top-p, the softmax distribution, the seed) and generation. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpformer/lm.h"
#include "dpformer/safetensors.h"
#include "model/model_internal.h"
#include "testutil.h"

static uint64_t rng = 99;
static char root[256];

static void path(char *out, size_t n, const char *a, const char *b) { snprintf(out, n, "%s/%s", a, b); }

static void write_text(const char *p, const char *s) {
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        exit(1);
    }
    fwrite(s, 1, strlen(s), f);
    fclose(f);
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* ---------------- a tiny GPT-2 tokenizer: the 256 bytes, a few merges, <|endoftext|> ---------------- */

static int byte_char[256];

static void put_utf8(char **p, int cp) {
    if (cp < 0x80) *(*p)++ = (char)cp;
    else if (cp < 0x800) {
        *(*p)++ = (char)(0xC0 | (cp >> 6));
        *(*p)++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *(*p)++ = (char)(0xE0 | (cp >> 12));
        *(*p)++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *(*p)++ = (char)(0x80 | (cp & 0x3F));
    }
}

/* Vocabulary: byte b has id b; then he=256, ll=257, hell=258, hello=259, Ġw=260, or=261, Ġwor=262,
 * ld=263, Ġworld=264; <|endoftext|> = 265 (266 tokens). */
static const char *const MERGES[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"\xC4\xA0", "w"},
                                        {"o", "r"}, {"\xC4\xA0w", "or"}, {"l", "d"}, {"\xC4\xA0wor", "ld"}};
#define TOK_V 266
#define TOK_EOT 265

static void write_tokenizer(const char *dir) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_char[b] = printable ? b : 256 + n++;
    }
    char *json = malloc(1 << 16), *p = json;
    *p++ = '{';
    for (int b = 0; b < 256; b++) {
        *p++ = '"';
        if (byte_char[b] == '"' || byte_char[b] == '\\') *p++ = '\\';
        put_utf8(&p, byte_char[b]);
        p += sprintf(p, "\": %d, ", b);
    }
    for (int k = 0; k < 9; k++) p += sprintf(p, "\"%s%s\": %d, ", MERGES[k][0], MERGES[k][1], 256 + k);
    p += sprintf(p, "\"<|endoftext|>\": %d}", TOK_EOT);
    *p = 0;
    char f[512];
    path(f, sizeof f, dir, "encoder.json");
    write_text(f, json);
    p = json + sprintf(json, "#version: 0.2\n");
    for (int k = 0; k < 9; k++) p += sprintf(p, "%s %s\n", MERGES[k][0], MERGES[k][1]);
    path(f, sizeof f, dir, "vocab.bpe");
    write_text(f, json);
    free(json);
}

/* ---------------- Hugging Face folders written here ---------------- */

typedef struct {
    char name[96];
    const char *dtype;
    int ndim;
    int64_t shape[4];
    void *data; /* owned */
    size_t bytes;
} hft;

typedef struct {
    int V, L, d, nl, nh, F, tied, n_inner_null;
    const char *prefix, *dtype;
    int buffers; /* add h.{i}.attn.bias / masked_bias */
} hfspec;

static float randf(void) { return (float)(0.3 * tu_normal(&rng)); }

/* A random value of the dtype: F32 any float; F16 and BF16 random finite bit patterns. */
static void fill_tensor(hft *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    const size_t es = strcmp(t->dtype, "F32") == 0 ? 4 : 2;
    t->bytes = n * es;
    t->data = malloc(t->bytes ? t->bytes : 1);
    for (size_t k = 0; k < n; k++) {
        if (es == 4) {
            float v = randf();
            memcpy((char *)t->data + 4 * k, &v, 4);
        } else {
            uint16_t h;
            do h = (uint16_t)(dp_splitmix64(&rng) & 0xFFFF);
            while (strcmp(t->dtype, "F16") == 0 ? ((h >> 10) & 0x1F) == 0x1F || ((h >> 10) & 0x1F) > 17
                                                 : ((h >> 7) & 0xFF) == 0xFF || ((h >> 7) & 0xFF) > 130);
            memcpy((char *)t->data + 2 * k, &h, 2);
        }
    }
}

static int add_tensor(hft *t, int n, const char *name, const char *dtype, int ndim, int64_t s0, int64_t s1) {
    hft *x = &t[n];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->dtype = dtype;
    x->ndim = ndim;
    x->shape[0] = s0;
    x->shape[1] = s1;
    fill_tensor(x);
    return n + 1;
}

static int make_tensors(const hfspec *s, hft *t) {
    const int64_t d = s->d, F = s->F, V = s->V, L = s->L;
    int n = 0;
    char nm[96];
#define T2(suffix, a, b)                                                  \
    do {                                                                  \
        snprintf(nm, sizeof nm, "%s%s", s->prefix, suffix);               \
        n = add_tensor(t, n, nm, s->dtype, 2, a, b);                      \
    } while (0)
#define T1(suffix, a)                                                     \
    do {                                                                  \
        snprintf(nm, sizeof nm, "%s%s", s->prefix, suffix);               \
        n = add_tensor(t, n, nm, s->dtype, 1, a, 0);                      \
    } while (0)
    T2("wte.weight", V, d);
    T2("wpe.weight", L, d);
    for (int l = 0; l < s->nl; l++) {
        char b[64];
#define L1(part, a) (snprintf(b, sizeof b, "h.%d.%s", l, part), b)
        T1(L1("ln_1.weight", 0), d);
        T1(L1("ln_1.bias", 0), d);
        T2(L1("attn.c_attn.weight", 0), d, 3 * d);
        T1(L1("attn.c_attn.bias", 0), 3 * d);
        T2(L1("attn.c_proj.weight", 0), d, d);
        T1(L1("attn.c_proj.bias", 0), d);
        T1(L1("ln_2.weight", 0), d);
        T1(L1("ln_2.bias", 0), d);
        T2(L1("mlp.c_fc.weight", 0), d, F);
        T1(L1("mlp.c_fc.bias", 0), F);
        T2(L1("mlp.c_proj.weight", 0), F, d);
        T1(L1("mlp.c_proj.bias", 0), d);
        if (s->buffers) {
            snprintf(nm, sizeof nm, "%sh.%d.attn.bias", s->prefix, l);
            hft *x = &t[n];
            n = add_tensor(t, n, nm, "F32", 2, 1, 1);
            free(x->data);
            x->ndim = 4;
            x->shape[0] = x->shape[1] = 1;
            x->shape[2] = x->shape[3] = L;
            x->bytes = (size_t)(L * L) * 4;
            x->data = calloc((size_t)(L * L), 4);
            snprintf(nm, sizeof nm, "%sh.%d.attn.masked_bias", s->prefix, l);
            x = &t[n];
            n = add_tensor(t, n, nm, "F32", 1, 1, 0);
            x->ndim = 0;
        }
#undef L1
    }
    T1("ln_f.weight", d);
    T1("ln_f.bias", d);
    if (!s->tied) n = add_tensor(t, n, "lm_head.weight", s->dtype, 2, V, d);
#undef T1
#undef T2
    return n;
}

/* config.json for a spec; `extra` (", \"key\": value, ...") adds fields or replaces the defaults. */
static void config_text(char *buf, size_t n, const hfspec *s, const char *extra) {
    char inner[32], kv[16][96];
    if (s->n_inner_null) snprintf(inner, sizeof inner, "null");
    else snprintf(inner, sizeof inner, "%d", s->F);
    int k = 0;
    snprintf(kv[k++], 96, "\"architectures\": [\"GPT2LMHeadModel\"]");
    snprintf(kv[k++], 96, "\"model_type\": \"gpt2\"");
    snprintf(kv[k++], 96, "\"vocab_size\": %d", s->V);
    snprintf(kv[k++], 96, "\"n_positions\": %d", s->L);
    snprintf(kv[k++], 96, "\"n_ctx\": %d", s->L);
    snprintf(kv[k++], 96, "\"n_embd\": %d", s->d);
    snprintf(kv[k++], 96, "\"n_layer\": %d", s->nl);
    snprintf(kv[k++], 96, "\"n_head\": %d", s->nh);
    snprintf(kv[k++], 96, "\"n_inner\": %s", inner);
    snprintf(kv[k++], 96, "\"activation_function\": \"gelu_new\"");
    snprintf(kv[k++], 96, "\"resid_pdrop\": 0.1, \"embd_pdrop\": 0.1, \"attn_pdrop\": 0.1");
    snprintf(kv[k++], 96, "\"layer_norm_epsilon\": 1e-05");
    snprintf(kv[k++], 96, "\"bos_token_id\": %d, \"eos_token_id\": %d", s->V - 1, s->V - 1);
    snprintf(kv[k++], 96, "\"tie_word_embeddings\": %s", s->tied ? "true" : "false");
    size_t len = (size_t)snprintf(buf, n, "{\"initializer_range\": 0.02");
    for (int i = 0; i < k; i++) {
        char key[64];
        const char *q = strchr(kv[i] + 1, '"');
        snprintf(key, sizeof key, "%.*s", (int)(q - kv[i] + 1), kv[i]);
        if (extra && strstr(extra, key)) continue; /* replaced */
        len += (size_t)snprintf(buf + len, n - len, ", %s", kv[i]);
    }
    snprintf(buf + len, n - len, "%s}", extra ? extra : "");
}

static void write_folder(const char *dir, const char *config, const hft *t, int n) {
    mkdir(dir, 0777);
    char p[512];
    path(p, sizeof p, dir, "config.json");
    write_text(p, config);
    dp_st_tensor *st = calloc((size_t)n, sizeof *st);
    for (int i = 0; i < n; i++) {
        st[i].name = t[i].name;
        st[i].dtype = t[i].dtype;
        st[i].ndim = t[i].ndim;
        for (int k = 0; k < t[i].ndim; k++) st[i].shape[k] = t[i].shape[k];
        st[i].data = t[i].data;
    }
    const char *keys[] = {"format"}, *vals[] = {"pt"};
    dp_error e;
    path(p, sizeof p, dir, "model.safetensors");
    if (dp_safetensors_write(p, st, n, keys, vals, 1, &e)) fprintf(stderr, "%s\n", e.msg);
    free(st);
}

static void free_tensors(hft *t, int n) {
    for (int i = 0; i < n; i++) free(t[i].data);
}

static const hft *find(const hft *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return &t[i];
    return NULL;
}

/* An independent F16 → float (the formula, through ldexp). */
static float f16_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (float)(s ? -v : v);
}

static float value_of(const hft *t, size_t k) {
    if (strcmp(t->dtype, "F32") == 0) return ((const float *)t->data)[k];
    uint16_t h;
    memcpy(&h, (const char *)t->data + 2 * k, 2);
    if (strcmp(t->dtype, "F16") == 0) return f16_ref(h);
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Every parameter of m against the Hugging Face tensors it came from (exact). */
static void check_params(dp_model *m, const hfspec *s, const hft *t, int n) {
    const int d = s->d;
    char nm[96];
    int bad = 0;
    /* wte → item_emb rows 1..V; row 0 zero */
    snprintf(nm, sizeof nm, "%swte.weight", s->prefix);
    const hft *wte = find(t, n, nm);
    for (int k = 0; k < d; k++) bad += m->p.E[k] != 0;
    for (size_t k = 0; k < (size_t)s->V * d; k++) bad += m->p.E[d + k] != value_of(wte, k);
    /* c_attn [d, 3d] → qkv [3d, d] transposed */
    for (int l = 0; l < s->nl; l++) {
        snprintf(nm, sizeof nm, "%sh.%d.attn.c_attn.weight", s->prefix, l);
        const hft *ca = find(t, n, nm);
        for (int o = 0; o < 3 * d; o++)
            for (int i = 0; i < d; i++) bad += m->p.layer[l].qkv_w[o * d + i] != value_of(ca, (size_t)i * 3 * d + o);
        snprintf(nm, sizeof nm, "%sh.%d.mlp.c_proj.weight", s->prefix, l);
        const hft *cp = find(t, n, nm);
        for (int o = 0; o < d; o++)
            for (int i = 0; i < s->F; i++) bad += m->p.layer[l].fc2_w[o * s->F + i] != value_of(cp, (size_t)i * d + o);
        snprintf(nm, sizeof nm, "%sh.%d.ln_2.bias", s->prefix, l);
        const hft *lb = find(t, n, nm);
        for (int i = 0; i < d; i++) bad += m->p.layer[l].ln2_b[i] != value_of(lb, (size_t)i);
    }
    if (!s->tied) {
        const hft *lm = find(t, n, "lm_head.weight");
        for (size_t k = 0; k < (size_t)s->V * d; k++) bad += m->p.out_w[d + k] != value_of(lm, k);
    }
    CHECK(bad == 0);
}

/* The tensors of an exported file equal (byte for byte) those of the original F32 folder. */
static void check_export_bytes(const char *export_dir, const hfspec *s, const hft *t, int n) {
    char p[512];
    path(p, sizeof p, export_dir, "model.safetensors");
    dp_st_file *f = NULL;
    dp_error e;
    CHECK(dp_safetensors_read(p, &f, &e) == 0);
    if (!f) return;
    CHECK(dp_st_meta(f, "format") && strcmp(dp_st_meta(f, "format"), "pt") == 0);
    int matched = 0, bad = 0;
    const size_t pl = strlen(s->prefix);
    for (int i = 0; i < n; i++) {
        const char *base = t[i].name + pl;
        if (strstr(base, "attn.bias") && !strstr(base, "c_attn") && !strstr(base, "c_proj")) continue; /* buffers */
        if (strstr(base, "masked_bias")) continue;
        char nm[128];
        if (strcmp(t[i].name, "lm_head.weight") == 0) snprintf(nm, sizeof nm, "lm_head.weight");
        else snprintf(nm, sizeof nm, "transformer.%s", base);
        const dp_st_tensor *x = dp_st_find(f, nm);
        if (!x) {
            fprintf(stderr, "export lacks %s\n", nm);
            bad++;
            continue;
        }
        int same = strcmp(x->dtype, "F32") == 0 && x->ndim == t[i].ndim;
        for (int k = 0; same && k < x->ndim; k++) same = x->shape[k] == t[i].shape[k];
        same = same && memcmp(x->data, t[i].data, t[i].bytes) == 0;
        if (!same) fprintf(stderr, "export: tensor %s differs\n", nm);
        bad += !same;
        matched++;
    }
    CHECK(bad == 0);
    CHECK(dp_st_count(f) == matched); /* nothing else in the file */
    dp_st_close(f);
}

static void test_roundtrip(const hfspec *s) {
    hft t[256];
    int n = make_tensors(s, t);
    char cfg[2048], in[300], out[300], out2[300];
    config_text(cfg, sizeof cfg, s, NULL);
    snprintf(in, sizeof in, "%s/in_%s_%d_%s", root, s->dtype, s->tied, *s->prefix ? "p" : "np");
    snprintf(out, sizeof out, "%s/out_%s_%d_%s", root, s->dtype, s->tied, *s->prefix ? "p" : "np");
    snprintf(out2, sizeof out2, "%s/out2_%s_%d_%s", root, s->dtype, s->tied, *s->prefix ? "p" : "np");
    write_folder(in, cfg, t, n);
    dp_error e;
    dp_model *m = dp_model_load(in, 2, &e);
    if (!m) fprintf(stderr, "%s\n", e.msg);
    CHECK(m != NULL);
    if (!m) {
        free_tensors(t, n);
        return;
    }
    const dp_model_config *c = dp_model_config_of(m);
    CHECK(c->family == DP_FAMILY_GPT2 && c->activation == DP_ACT_GELU_TANH && c->positions == DP_POS_FROM_FIRST);
    CHECK(c->n_items == s->V && c->max_len == s->L && c->d_model == s->d && c->n_layers == s->nl && c->n_heads == s->nh);
    CHECK(c->d_ff == s->F && c->tied == s->tied && c->causal == 1);
    CHECK(fabs(c->dropout - 0.1) < 1e-7);
    check_params(m, s, t, n);
    CHECK(dp_hf_export(m, out, NULL, &e) == 0);
    if (strcmp(s->dtype, "F32") == 0) check_export_bytes(out, s, t, n);
    /* the export reads back to the same parameters, and exports again to the same file */
    dp_model *m2 = dp_model_load(out, 1, &e);
    CHECK(m2 != NULL);
    if (m2) {
        CHECK(dp_model_num_params(m2) == dp_model_num_params(m));
        CHECK(memcmp(dp_model_params(m2), dp_model_params(m), sizeof(real) * dp_model_num_params(m)) == 0);
        CHECK(dp_hf_export(m2, out2, NULL, &e) == 0);
        char a[400], b[400], *da, *db;
        size_t la, lb;
        path(a, sizeof a, out, "model.safetensors");
        path(b, sizeof b, out2, "model.safetensors");
        CHECK(dp_read_file(a, &da, &la, &e) == 0 && dp_read_file(b, &db, &lb, &e) == 0);
        CHECK(la == lb && memcmp(da, db, la) == 0);
        free(da);
        free(db);
        path(a, sizeof a, out, "config.json");
        path(b, sizeof b, out2, "config.json");
        CHECK(dp_read_file(a, &da, &la, &e) == 0 && dp_read_file(b, &db, &lb, &e) == 0);
        CHECK(la == lb && memcmp(da, db, la) == 0);
        CHECK(strstr(da, "\"gelu_new\"") && strstr(da, "\"model_type\":\t\"gpt2\""));
        free(da);
        free(db);
        dp_model_free(m2);
    }
    /* an export never replaces a folder with contents */
    CHECK(dp_hf_export(m, out, NULL, &e) != 0 && strstr(e.msg, "not empty"));
    dp_model_free(m);
    free_tensors(t, n);
}

/* ---------------- malformed folders ---------------- */

typedef struct {
    const char *what, *extra_config, *config_replace; /* config: extra fields appended, or whole text */
    const char *drop, *rename_from, *rename_to, *add_name;
    int misshape;    /* transpose the shape of h.0.attn.c_attn.weight */
    int bad_dtype;   /* h.0.ln_1.weight as I32 */
    int nan;         /* a NaN in wpe */
    int lm_head_diff; /* tied, with an lm_head.weight that differs */
    const char *expect1, *expect2;
} bad_case;

static void test_malformed(void) {
    const hfspec s = {TOK_V, 8, 8, 1, 2, 32, 1, 1, "", "F32", 0};
    static const bad_case cases[] = {
        {"model_type", NULL, "{\"model_type\": \"llama\", \"vocab_size\": 266}", NULL, NULL, NULL, NULL, 0, 0, 0, 0,
         "config.json", "\"model_type\" is \"llama\""},
        {"no model_type", NULL, "{\"vocab_size\": 266}", NULL, NULL, NULL, NULL, 0, 0, 0, 0, "config.json", "model_type"},
        {"architecture", ", \"architectures\": [\"GPT2ForSequenceClassification\"]", NULL, NULL, NULL, NULL, NULL, 0,
         0, 0, 0, "config.json", "GPT2ForSequenceClassification"},
        {"n_embd missing", NULL,
         "{\"model_type\": \"gpt2\", \"vocab_size\": 266, \"n_positions\": 8, \"n_layer\": 1, \"n_head\": 2}", NULL,
         NULL, NULL, NULL, 0, 0, 0, 0, "config.json", "\"n_embd\" is missing"},
        {"n_head", NULL,
         "{\"model_type\": \"gpt2\", \"vocab_size\": 266, \"n_positions\": 8, \"n_embd\": 8, \"n_layer\": 1, \"n_head\": 3}",
         NULL, NULL, NULL, NULL, 0, 0, 0, 0, "config.json", "divisible"},
        {"activation", ", \"activation_function\": \"relu\"", NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, "config.json",
         "activation_function"},
        {"eps", ", \"layer_norm_epsilon\": 1e-6", NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, "config.json",
         "layer_norm_epsilon"},
        {"inverse layer", ", \"scale_attn_by_inverse_layer_idx\": true", NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0,
         "config.json", "scale_attn_by_inverse_layer_idx"},
        {"type", ", \"n_layer\": \"one\"", NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, "config.json", "\"n_layer\""},
        {"missing tensor", NULL, NULL, "h.0.mlp.c_fc.bias", NULL, NULL, NULL, 0, 0, 0, 0, "model.safetensors",
         "h.0.mlp.c_fc.bias is missing"},
        {"misshapen", NULL, NULL, NULL, NULL, NULL, NULL, 1, 0, 0, 0, "model.safetensors",
         "h.0.attn.c_attn.weight has shape [24, 8], expected [8, 24]"},
        {"dtype", NULL, NULL, NULL, NULL, NULL, NULL, 0, 1, 0, 0, "model.safetensors", "h.0.ln_1.weight has dtype I32"},
        {"unexpected", NULL, NULL, NULL, NULL, NULL, "score.weight", 0, 0, 0, 0, "model.safetensors",
         "unexpected tensor score.weight"},
        {"mixed prefix", NULL, NULL, NULL, "h.0.ln_2.bias", "transformer.h.0.ln_2.bias", NULL, 0, 0, 0, 0,
         "model.safetensors", "h.0.ln_2.bias is missing"},
        {"nan", NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 1, 0, "model.safetensors", "wpe.weight holds a non-finite"},
        {"lm_head differs", NULL, NULL, NULL, NULL, NULL, "lm_head.weight", 0, 0, 0, 1, "model.safetensors",
         "lm_head.weight differs from wte.weight"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const bad_case *bc = &cases[k];
        hft t[64];
        int n = make_tensors(&s, t);
        char cfg[2048], dir[300];
        if (bc->config_replace) snprintf(cfg, sizeof cfg, "%s", bc->config_replace);
        else config_text(cfg, sizeof cfg, &s, bc->extra_config);
        for (int i = 0; i < n; i++) {
            if (bc->drop && strcmp(t[i].name, bc->drop) == 0) {
                free(t[i].data);
                t[i] = t[--n];
                i--;
                continue;
            }
            if (bc->rename_from && strcmp(t[i].name, bc->rename_from) == 0)
                snprintf(t[i].name, sizeof t[i].name, "%s", bc->rename_to);
            if (bc->misshape && strcmp(t[i].name, "h.0.attn.c_attn.weight") == 0) {
                int64_t a = t[i].shape[0];
                t[i].shape[0] = t[i].shape[1];
                t[i].shape[1] = a;
            }
            if (bc->bad_dtype && strcmp(t[i].name, "h.0.ln_1.weight") == 0) t[i].dtype = "I32";
            if (bc->nan && strcmp(t[i].name, "wpe.weight") == 0) ((float *)t[i].data)[5] = NAN;
        }
        if (bc->add_name) {
            n = add_tensor(t, n, bc->add_name, "F32", 2, TOK_V, 8);
            if (!bc->lm_head_diff) {
                t[n - 1].shape[0] = 2;
            }
        }
        snprintf(dir, sizeof dir, "%s/bad%zu", root, k);
        write_folder(dir, cfg, t, n);
        dp_error e;
        dp_model *m = dp_model_load(dir, 1, &e);
        CHECK(m == NULL);
        if (m) {
            fprintf(stderr, "malformed case '%s' was accepted\n", bc->what);
            dp_model_free(m);
        } else if (!strstr(e.msg, bc->expect1) || !strstr(e.msg, bc->expect2) || !strstr(e.msg, dir)) {
            fprintf(stderr, "malformed case '%s': message '%s' lacks '%s' / '%s'\n", bc->what, e.msg, bc->expect1,
                    bc->expect2);
            CHECK(0);
        }
        free_tensors(t, n);
    }
    /* folders without the files */
    char dir[300], p[400];
    dp_error e;
    snprintf(dir, sizeof dir, "%s/empty", root);
    mkdir(dir, 0777);
    CHECK(dp_model_load(dir, 1, &e) == NULL && strstr(e.msg, "no config.json"));
    char cfg[2048];
    config_text(cfg, sizeof cfg, &s, NULL);
    path(p, sizeof p, dir, "config.json");
    write_text(p, cfg);
    CHECK(dp_model_load(dir, 1, &e) == NULL && strstr(e.msg, "no model.safetensors"));
    path(p, sizeof p, dir, "pytorch_model.bin");
    write_text(p, "x");
    CHECK(dp_model_load(dir, 1, &e) == NULL && strstr(e.msg, "pytorch_model.bin"));
    path(p, sizeof p, dir, "config.json");
    write_text(p, "{\"model_type\": ");
    CHECK(dp_model_load(dir, 1, &e) == NULL && strstr(e.msg, "config.json") && strstr(e.msg, "JSON"));
}

/* ---------------- dpformer model files keep the family ---------------- */

static dp_model_config tiny_lm(int V, int L, int tied) {
    dp_model_config c = dp_lm_config_default(V, L);
    c.d_model = 16;
    c.n_heads = 2;
    c.n_layers = 2;
    c.d_ff = 0;
    c.tied = tied;
    c.dropout = 0;
    return c;
}

static dp_model *random_lm(int V, int L, int tied, int B) {
    dp_model_config c = tiny_lm(V, L, tied);
    dp_error e;
    dp_model *m = dp_model_create(&c, B, 3, &e);
    real *p = dp_model_params(m);
    for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += (real)(0.2 * tu_normal(&rng));
    memset(m->p.E, 0, sizeof(real) * 16);
    if (!tied) memset(m->p.out_w, 0, sizeof(real) * 16);
    return m;
}

static void test_model_file(void) {
    dp_model *m = random_lm(TOK_V, 12, 0, 1);
    char p[300];
    path(p, sizeof p, root, "lm.safetensors");
    dp_error e;
    CHECK(dp_model_save(m, p, NULL, &e) == 0);
    dp_model_config c;
    CHECK(dp_model_file_config(p, &c, &e) == 0);
    CHECK(c.family == DP_FAMILY_GPT2 && c.activation == DP_ACT_GELU_TANH && c.positions == DP_POS_FROM_FIRST);
    CHECK(c.d_ff == 64 && c.tied == 0);
    dp_model *m2 = dp_model_load(p, 1, &e);
    CHECK(m2 && dp_model_config_of(m2)->family == DP_FAMILY_GPT2 && dp_model_config_of(m2)->d_ff == 64 &&
          dp_model_config_of(m2)->activation == DP_ACT_GELU_TANH && dp_model_config_of(m2)->positions == DP_POS_FROM_FIRST);
    if (m2) CHECK(memcmp(dp_model_params(m2), dp_model_params(m), sizeof(real) * dp_model_num_params(m)) == 0);
    dp_model_free(m2);
    /* a shorter window keeps the first positional rows; the parameters-only load runs nothing */
    dp_model *m3 = dp_lm_load(p, 2, 5, &e);
    CHECK(m3 && dp_model_config_of(m3)->max_len == 5 && memcmp(m3->p.P, m->p.P, sizeof(real) * 5 * 16) == 0);
    dp_model_free(m3);
    dp_model *m4 = dp_lm_load(p, 0, 0, &e);
    CHECK(m4 && !m4->grads && dp_model_config_of(m4)->max_len == 12);
    if (m4) CHECK(memcmp(dp_model_params(m4), dp_model_params(m), sizeof(real) * dp_model_num_params(m)) == 0);
    dp_model_free(m4);
    /* export of a dpformer file; a recommender is refused */
    char out[300];
    path(out, sizeof out, root, "lm_export");
    CHECK(dp_hf_export(m, out, NULL, &e) == 0);
    dp_model *m5 = dp_model_load(out, 1, &e);
    CHECK(m5 && memcmp(dp_model_params(m5), dp_model_params(m), sizeof(real) * dp_model_num_params(m)) == 0);
    dp_model_free(m5);
    dp_model_free(m);
    dp_model_config rc = dp_model_config_default(20, 6);
    dp_model *r = dp_model_create(&rc, 1, 1, &e);
    path(out, sizeof out, root, "rec_export");
    CHECK(dp_hf_export(r, out, NULL, &e) != 0 && strstr(e.msg, "family rec"));
    dp_model_free(r);
}

/* ---------------- texts ---------------- */

static void test_texts(void) {
    dp_lm_texts tx;
    dp_error e;
    const char *lines = "\xEF\xBB\xBFhello world\r\n\nsecond line\n\r\n  spaced  \nlast";
    CHECK(dp_lm_texts_parse(&tx, "a.txt", lines, strlen(lines), NULL, &e) == 0);
    CHECK(tx.n == 4 && tx.n_empty == 2);
    CHECK(tx.offsets[1] == 11 && memcmp(tx.text, "hello world", 11) == 0);
    CHECK(memcmp(tx.text + tx.offsets[1], "second line", 11) == 0 && memcmp(tx.text + tx.offsets[2], "  spaced  ", 10) == 0);
    CHECK(tx.offsets[4] - tx.offsets[3] == 4 && memcmp(tx.text + tx.offsets[3], "last", 4) == 0);
    dp_lm_texts_free(&tx);

    const char *tsv = "id\tsentence\tlabel\n1\tgood movie\t1\n\n2\t\t0\n3\tbad\t0\r\n";
    CHECK(dp_lm_texts_parse(&tx, "d.tsv", tsv, strlen(tsv), "sentence", &e) == 0);
    CHECK(tx.n == 2 && tx.n_empty == 1 && memcmp(tx.text, "good moviebad", 13) == 0);
    dp_lm_texts_free(&tx);
    CHECK(dp_lm_texts_parse(&tx, "d.tsv", tsv, strlen(tsv), "text", &e) != 0 && strstr(e.msg, "d.tsv:1") &&
          strstr(e.msg, "id,sentence,label"));
    const char *tsv_bad = "a\tb\nx\ty\nonly\n";
    CHECK(dp_lm_texts_parse(&tx, "e.tsv", tsv_bad, strlen(tsv_bad), "b", &e) != 0 && strstr(e.msg, "e.tsv:3"));

    const char *csv = "label,text\r\n1,\"quoted, with comma\"\r\n0,\"two\nlines and \"\"quotes\"\"\"\n1,plain\n\n0,\n";
    CHECK(dp_lm_texts_parse(&tx, "f.csv", csv, strlen(csv), "text", &e) == 0);
    CHECK(tx.n == 3 && tx.n_empty == 1);
    const char *want[] = {"quoted, with comma", "two\nlines and \"quotes\"", "plain"};
    for (int i = 0; i < 3 && tx.n == 3; i++)
        CHECK((size_t)(tx.offsets[i + 1] - tx.offsets[i]) == strlen(want[i]) &&
              memcmp(tx.text + tx.offsets[i], want[i], strlen(want[i])) == 0);
    dp_lm_texts_free(&tx);
    const char *csv_open = "text\n\"never closed\nmore\n";
    CHECK(dp_lm_texts_parse(&tx, "g.csv", csv_open, strlen(csv_open), "text", &e) != 0 && strstr(e.msg, "g.csv:2") &&
          strstr(e.msg, "unterminated"));
    const char *csv_after = "text\n\"a\"b\n";
    CHECK(dp_lm_texts_parse(&tx, "h.csv", csv_after, strlen(csv_after), "text", &e) != 0 && strstr(e.msg, "h.csv:2"));
    const char *csv_fields = "a,text\n1,x\n1,2,3\n";
    CHECK(dp_lm_texts_parse(&tx, "i.csv", csv_fields, strlen(csv_fields), "text", &e) != 0 && strstr(e.msg, "i.csv:3"));
    CHECK(dp_lm_texts_parse(&tx, "j.txt", "x\n", 2, "text", &e) != 0 && strstr(e.msg, ".tsv or .csv"));
}

/* ---------------- examples, evaluation, logits ---------------- */

static void test_examples_and_eval(dp_bpe *tok) {
    int32_t ids[6], tgt[6];
    static const int32_t toks[] = {265, 259, 264, 265};
    CHECK(dp_lm_make_example(ids, tgt, toks, 4, 6) == 3);
    static const int32_t want_ids[] = {266, 260, 265, 266, 0, 0}, want_tgt[] = {260, 265, 266, 0, 0, 0};
    CHECK(memcmp(ids, want_ids, sizeof ids) == 0 && memcmp(tgt, want_tgt, sizeof tgt) == 0);

    const char *text = "hello world\nhello hello hello world world\nx\n\n<|endoftext|>\nworld";
    dp_lm_texts tx;
    dp_lm_corpus c;
    dp_error e;
    CHECK(dp_lm_texts_parse(&tx, "t.txt", text, strlen(text), NULL, &e) == 0);
    CHECK(dp_lm_corpus_encode(&c, tok, TOK_EOT, &tx, 6, &e) == 0);
    CHECK(c.n == 5 && c.n_truncated == 2 && c.max_len == 6 && c.offsets[5] == 24);
    static const int32_t ex0[] = {265, 259, 264, 265};
    CHECK(c.offsets[1] == 4 && memcmp(c.tokens, ex0, sizeof ex0) == 0);
    /* the special token written in a text is text (7 tokens), never a boundary: cut to 6 */
    CHECK(c.offsets[4] - c.offsets[3] == 6 && c.tokens[c.offsets[3] + 1] == '<');

    /* evaluation: token-weighted, whatever the batch size */
    dp_model *m1 = random_lm(TOK_V, 6, 1, 1), *m3 = random_lm(TOK_V, 6, 1, 3);
    dp_model_write_params(m3, dp_model_params(m1));
    dp_lm_eval_result r1, r3;
    CHECK(dp_lm_evaluate(m1, &c, &r1, &e) == 0 && dp_lm_evaluate(m3, &c, &r3, &e) == 0);
    CHECK(r1.examples == 5 && r1.predicted == c.offsets[5] - 5 && r1.tokens == c.offsets[5]);
    CHECK_CLOSE(r3.perplexity, r1.perplexity, 1e-5);
    /* against per-example losses: Σ n_b ℓ_b / Σ n_b */
    double tot = 0, mean = 0;
    int64_t np = 0;
    for (int64_t i = 0; i < c.n; i++) {
        const int n = (int)(c.offsets[i + 1] - c.offsets[i]);
        int32_t id[6], tg[6];
        dp_lm_make_example(id, tg, c.tokens + c.offsets[i], n, 6);
        dp_batch bt = {1, 6, id, tg, NULL};
        double l;
        dp_model_forward(m1, &bt, 0, 0, &l);
        tot += l * (n - 1);
        mean += l / (double)c.n;
        np += n - 1;
    }
    CHECK_CLOSE(r1.loss, tot / (double)np, 1e-5);
    CHECK_CLOSE(r1.perplexity, exp(tot / (double)np), 1e-5);
    CHECK_CLOSE(r1.mean_example_loss, mean, 1e-5);
    CHECK(fabs(r1.loss - r1.mean_example_loss) > 1e-4); /* the two conventions really differ here */

    /* logits of every position, against the last-position scores of each prefix */
    int lens[3] = {4, 6, 2};
    int32_t seqs[18] = {265, 259, 264, 265, 0, 0, /**/ 265, 1, 2, 3, 4, 5, /**/ 265, 100, 0, 0, 0, 0};
    real *lg = malloc(sizeof(real) * 18 * TOK_V), *sc = malloc(sizeof(real) * (TOK_V + 1));
    CHECK(dp_lm_logits(m3, seqs, lens, 3, 6, lg, &e) == 0);
    double worst = 0;
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < lens[b]; t++) {
            int32_t pre[6];
            for (int k = 0; k <= t; k++) pre[k] = seqs[b * 6 + k] + 1;
            model_set_window(m1, t + 1);
            dp_model_score_last(m1, pre, 1, sc);
            model_set_window(m1, 0);
            for (int v = 0; v < TOK_V; v++) worst = fmax(worst, fabs(lg[(b * 6 + t) * TOK_V + v] - sc[v + 1]));
        }
    CHECK(worst < 1e-4);
    CHECK(lg[(0 * 6 + 5) * TOK_V + 3] == 0); /* past the length */
    seqs[1] = TOK_V;
    CHECK(dp_lm_logits(m3, seqs, lens, 3, 6, lg, &e) != 0 && strstr(e.msg, "outside the vocabulary"));

    /* greedy generation follows the argmax of the logits */
    dp_lm_sampling greedy = {0, 0, 1, 0, 0};
    dp_bpe_ids out = {0};
    int32_t prompt[2] = {265, 259};
    CHECK(dp_lm_generate(m1, prompt, 2, 4, &greedy, -1, &out, &e) == 0 && out.n == 4);
    int32_t ctx[6] = {265, 259};
    int ok = 1;
    for (int s = 0; s < 4; s++) {
        int len = 2 + s;
        CHECK(dp_lm_logits(m1, ctx, &len, 1, len, lg, &e) == 0);
        const real *z = lg + (size_t)(len - 1) * TOK_V;
        int32_t best = 0;
        for (int v = 1; v < TOK_V; v++)
            if (z[v] > z[best]) best = v;
        ok &= best == out.ids[s];
        ctx[len] = best;
    }
    CHECK(ok);
    /* the window slides past the model's context: still runs */
    out.n = 0;
    CHECK(dp_lm_generate(m1, prompt, 2, 10, &greedy, -1, &out, &e) == 0 && out.n == 10);
    /* sampling limited to the first 100 ids (a tokenizer smaller than the model's vocabulary) */
    dp_lm_sampling lim = {1.0, 0, 1, 9, 100};
    out.n = 0;
    CHECK(dp_lm_generate(m1, prompt, 2, 30, &lim, -1, &out, &e) == 0 && out.n == 30);
    int below = 1;
    for (size_t k = 0; k < out.n; k++) below &= out.ids[k] < 100;
    CHECK(below);
    /* a stop token ends it without being emitted */
    out.n = 0;
    CHECK(dp_lm_generate(m1, prompt, 2, 4, &greedy, ctx[2], &out, &e) == 0 && out.n == 0);
    free(out.ids);
    free(lg);
    free(sc);
    dp_model_free(m1);
    dp_model_free(m3);
    dp_lm_corpus_free(&c);
    dp_lm_texts_free(&tx);
}

static void test_sampling(void) {
    real z[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    dp_lm_sampling g = {0, 0, 1, 0, 0};
    uint64_t st = 1;
    CHECK(dp_lm_sample(z, 5, &g, &st) == 1); /* ties: the lowest id */
    dp_lm_sampling k1 = {1.0, 1, 1, 0, 0}, p0 = {1.0, 0, 1e-6, 0, 0};
    CHECK(dp_lm_sample(z, 5, &k1, &st) == 1 && dp_lm_sample(z, 5, &p0, &st) == 1);
    /* the softmax distribution at temperature 1 (20,000 draws: each frequency within 0.015) */
    dp_lm_sampling s = {1.0, 0, 1, 0, 0};
    int count[5] = {0};
    st = 7;
    for (int i = 0; i < 20000; i++) count[dp_lm_sample(z, 5, &s, &st)]++;
    double Z = 0;
    for (int v = 0; v < 5; v++) Z += exp(z[v]);
    for (int v = 0; v < 5; v++) CHECK(fabs(count[v] / 20000.0 - exp(z[v]) / Z) < 0.015);
    /* top-k 2: only the two best; top-p 0.5: the smallest set reaching half the mass (ids 1 and 3) */
    dp_lm_sampling k2 = {1.0, 2, 1, 0, 0}, pp = {1.0, 0, 0.5, 0, 0};
    int other = 0;
    for (int i = 0; i < 2000; i++) {
        int32_t a = dp_lm_sample(z, 5, &k2, &st), b = dp_lm_sample(z, 5, &pp, &st);
        other += (a != 1 && a != 3) + (b != 1 && b != 3);
    }
    CHECK(other == 0);
    /* the same seed, the same draws */
    uint64_t s1 = 123, s2 = 123;
    int same = 1;
    for (int i = 0; i < 50; i++) same &= dp_lm_sample(z, 5, &s, &s1) == dp_lm_sample(z, 5, &s, &s2);
    CHECK(same);
}

int main(void) {
    snprintf(root, sizeof root, "%s/dpformer-test-lm-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char tokdir[300];
    path(tokdir, sizeof tokdir, root, "tok");
    mkdir(tokdir, 0777);
    write_tokenizer(tokdir);
    dp_error e;
    dp_bpe *tok = dp_bpe_load(tokdir, &e);
    if (!tok) fprintf(stderr, "%s\n", e.msg);
    CHECK(tok && dp_bpe_vocab_size(tok) == TOK_V && dp_bpe_token_id(tok, "<|endoftext|>") == TOK_EOT);

    const hfspec specs[] = {
        {TOK_V, 10, 8, 2, 2, 32, 1, 1, "", "F32", 1},               /* tied, no prefix, mask buffers */
        {TOK_V, 10, 8, 2, 2, 20, 0, 0, "transformer.", "F32", 0},   /* untied, prefix, n_inner set */
        {TOK_V, 10, 8, 1, 2, 32, 1, 1, "transformer.", "F16", 1},
        {TOK_V, 10, 8, 1, 1, 16, 0, 0, "", "BF16", 0},
    };
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) test_roundtrip(&specs[k]);
    /* the exporter copies a tokenizer under Hugging Face's names, checked against the vocabulary */
    {
        dp_model *m = random_lm(TOK_V, 8, 1, 1);
        char out[300], p[400];
        path(out, sizeof out, root, "with_tok");
        CHECK(dp_hf_export(m, out, tokdir, &e) == 0);
        path(p, sizeof p, out, "vocab.json");
        dp_bpe *t2 = dp_bpe_load(out, &e);
        CHECK(access(p, F_OK) == 0 && t2 && dp_bpe_vocab_size(t2) == TOK_V);
        dp_bpe_free(t2);
        dp_model_free(m);
        m = random_lm(TOK_V + 1, 8, 1, 1);
        path(out, sizeof out, root, "with_tok2");
        CHECK(dp_hf_export(m, out, tokdir, &e) != 0 && strstr(e.msg, "266 tokens"));
        CHECK(access(out, F_OK) != 0); /* nothing left behind */
        dp_model_free(m);
    }
    test_malformed();
    test_model_file();
    test_texts();
    if (tok) test_examples_and_eval(tok);
    test_sampling();
    dp_bpe_free(tok);
    rm_rf(root);
    return tu_finish("test_lm");
}
