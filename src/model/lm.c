/* Language models of the GPT-2 family (dpformer/lm.h): texts and their tokens under the fixed example
 * convention, evaluation (token-weighted perplexity), the logits of every position, sampling and
 * generation. Everything runs the one model of model.c; nothing here computes a layer. docs/lm.md. */
#include <math.h>

#include "dpformer/lm.h"
#include "model/model_internal.h"

dp_model_config dp_lm_config_default(int32_t vocab_size, int n_ctx) {
    dp_model_config c = dp_model_config_default(vocab_size, n_ctx);
    c.family = DP_FAMILY_GPT2;
    c.activation = DP_ACT_GELU_TANH;
    c.positions = DP_POS_FROM_FIRST;
    c.d_model = 768;
    c.n_layers = 12;
    c.n_heads = 12;
    c.d_ff = 3072;
    c.tied = 1;
    c.causal = 1;
    c.dropout = 0.1f;
    return c;
}

/* ---------------- texts ---------------- */

static void *xrealloc(void *p, size_t bytes) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) {
        fprintf(stderr, "dpformer: out of memory (%zu bytes) at %s:%d\n", bytes, __FILE__, __LINE__);
        abort();
    }
    return q;
}

typedef struct {
    char *p;
    size_t n, cap;
} growbuf;

static void gb_add(growbuf *g, const char *s, size_t n) {
    if (g->n + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 4096;
        while (cap < g->n + n + 1) cap *= 2;
        g->p = xrealloc(g->p, cap);
        g->cap = cap;
    }
    memcpy(g->p + g->n, s, n);
    g->n += n;
}

static void ids_push(dp_bpe_ids *ids, int32_t v) {
    if (ids->n + 1 > ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 1024;
        ids->ids = xrealloc(ids->ids, sizeof(int32_t) * ids->cap);
    }
    ids->ids[ids->n++] = v;
}

typedef struct {
    growbuf text;
    int64_t *offsets;
    int64_t n, cap;
    int64_t n_empty;
} text_builder;

static void tb_add(text_builder *b, const char *s, size_t n) {
    if (n == 0) {
        b->n_empty++;
        return;
    }
    if (b->n + 2 > b->cap) {
        b->cap = b->cap ? 2 * b->cap : 1024;
        b->offsets = xrealloc(b->offsets, sizeof(int64_t) * (size_t)b->cap);
    }
    if (b->n == 0) b->offsets[0] = 0;
    gb_add(&b->text, s, n);
    b->offsets[++b->n] = (int64_t)b->text.n;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    if (a < b) return 0;
    for (size_t i = 0; i < b; i++) {
        char c = s[a - b + i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != suffix[i]) return 0;
    }
    return 1;
}

/* The next line [*b, *e) of [p, end) without its "\n" or "\r\n"; returns the position after it. */
static const char *next_line(const char *p, const char *end, const char **b, const char **e) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    *b = p;
    *e = le > p && le[-1] == '\r' ? le - 1 : le;
    return nl ? nl + 1 : end;
}

/* Header fields split by sep; returns the index of column `name`, or -1 with err listing them. */
static int tsv_header(const char *name, const char *b, const char *e, const char *column, int *n_fields,
                      dp_error *err) {
    int idx = -1, k = 0;
    const char *f = b;
    for (const char *p = b;; p++) {
        if (p == e || *p == '\t') {
            if ((size_t)(p - f) == strlen(column) && memcmp(f, column, (size_t)(p - f)) == 0 && idx < 0) idx = k;
            k++;
            f = p + 1;
            if (p == e) break;
        }
    }
    *n_fields = k;
    if (idx < 0) {
        char cols[256];
        size_t n = (size_t)(e - b) < sizeof cols - 1 ? (size_t)(e - b) : sizeof cols - 1;
        memcpy(cols, b, n);
        cols[n] = 0;
        for (size_t i = 0; i < n; i++)
            if (cols[i] == '\t') cols[i] = ',';
        return dp_fail(err, "%s:1: no column \"%s\" in the header (columns: %s%s)", name, column, cols,
                       n < (size_t)(e - b) ? "..." : "");
    }
    return idx;
}

static int parse_tsv(text_builder *tb, const char *name, const char *p, const char *end, const char *column,
                     dp_error *err) {
    const char *b, *e;
    if (p == end) return dp_fail(err, "%s: empty file (a header line naming the columns is expected)", name);
    p = next_line(p, end, &b, &e);
    int nf, col = tsv_header(name, b, e, column, &nf, err);
    if (col < 0) return -1;
    for (int64_t lineno = 2; p < end; lineno++) {
        p = next_line(p, end, &b, &e);
        if (b == e) continue; /* a blank line is not a record */
        int k = 0;
        const char *f = b, *fb = NULL, *fe = NULL;
        for (const char *q = b;; q++) {
            if (q == e || *q == '\t') {
                if (k == col) {
                    fb = f;
                    fe = q;
                }
                k++;
                f = q + 1;
                if (q == e) break;
            }
        }
        if (k != nf)
            return dp_fail(err, "%s:%lld: %d tab-separated fields, the header has %d", name, (long long)lineno, k, nf);
        tb_add(tb, fb, (size_t)(fe - fb));
    }
    return 0;
}

/* RFC 4180: fields separated by commas, records by line breaks; a field that starts with a double
 * quote runs to the matching quote ("" inside stands for one) and may hold commas and line breaks. */
typedef struct {
    const char *p, *end;
    int64_t line;
} csv_reader;

/* Reads one record's fields into fields (a growbuf of NUL-separated values) with their count; returns 1
 * for a record, 0 at the end, -1 on error. */
static int csv_record(csv_reader *r, const char *name, growbuf *fields, int64_t **lens, int *cap, int *n_out,
                      int *blank, dp_error *err) {
    if (r->p >= r->end) return 0;
    fields->n = 0;
    int n = 0;
    *blank = 1;
    for (;;) {
        size_t start = fields->n;
        if (r->p < r->end && *r->p == '"') {
            *blank = 0;
            const int64_t open_line = r->line;
            r->p++;
            for (;;) {
                if (r->p >= r->end)
                    return dp_fail(err, "%s:%lld: unterminated quoted field (a closing \" is missing)", name,
                                   (long long)open_line);
                if (*r->p == '"') {
                    if (r->p + 1 < r->end && r->p[1] == '"') {
                        gb_add(fields, "\"", 1);
                        r->p += 2;
                        continue;
                    }
                    r->p++;
                    break;
                }
                if (*r->p == '\n') r->line++;
                gb_add(fields, r->p, 1);
                r->p++;
            }
            if (r->p < r->end && *r->p != ',' && *r->p != '\n' && !(*r->p == '\r' && r->p + 1 < r->end && r->p[1] == '\n') &&
                !(*r->p == '\r' && r->p + 1 == r->end))
                return dp_fail(err, "%s:%lld: text after a closing quote (a quoted field must end at a comma or the "
                                    "line end)", name, (long long)r->line);
        } else {
            const char *q = r->p;
            while (q < r->end && *q != ',' && *q != '\n') q++;
            const char *fe = q;
            if (fe > r->p && fe[-1] == '\r' && (q == r->end || *q == '\n')) fe--;
            if (fe > r->p) *blank = 0;
            gb_add(fields, r->p, (size_t)(fe - r->p));
            r->p = q;
        }
        if (n >= *cap) {
            *cap = *cap ? 2 * *cap : 16;
            *lens = xrealloc(*lens, sizeof(int64_t) * 2 * (size_t)*cap);
        }
        (*lens)[2 * n] = (int64_t)start;
        (*lens)[2 * n + 1] = (int64_t)(fields->n - start);
        n++;
        if (r->p < r->end && *r->p == ',') {
            *blank = 0;
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == '\r') r->p++;
        if (r->p < r->end && *r->p == '\n') {
            r->p++;
            r->line++;
        }
        break;
    }
    *n_out = n;
    return 1;
}

static int parse_csv(text_builder *tb, const char *name, const char *p, const char *end, const char *column,
                     dp_error *err) {
    csv_reader r = {p, end, 1};
    growbuf fields = {0};
    int64_t *lens = NULL;
    int cap = 0, n = 0, blank, rc = -1, col = -1, nf = 0;
    if (p == end) {
        dp_fail(err, "%s: empty file (a header line naming the columns is expected)", name);
        goto out;
    }
    if (csv_record(&r, name, &fields, &lens, &cap, &n, &blank, err) < 0) goto out;
    nf = n;
    for (int k = 0; k < n && col < 0; k++)
        if ((size_t)lens[2 * k + 1] == strlen(column) && memcmp(fields.p + lens[2 * k], column, strlen(column)) == 0)
            col = k;
    if (col < 0) {
        growbuf list = {0};
        for (int k = 0; k < n && list.n < 200; k++) {
            if (k) gb_add(&list, ",", 1);
            gb_add(&list, fields.p + lens[2 * k], (size_t)lens[2 * k + 1]);
        }
        gb_add(&list, "", 1);
        dp_fail(err, "%s:1: no column \"%s\" in the header (columns: %s)", name, column, list.p);
        free(list.p);
        goto out;
    }
    for (;;) {
        int64_t line = r.line;
        int got = csv_record(&r, name, &fields, &lens, &cap, &n, &blank, err);
        if (got < 0) goto out;
        if (got == 0) break;
        if (blank && n == 1) continue; /* an empty line is not a record */
        if (n != nf) {
            dp_fail(err, "%s:%lld: %d comma-separated fields, the header has %d", name, (long long)line, n, nf);
            goto out;
        }
        tb_add(tb, fields.p + lens[2 * col], (size_t)lens[2 * col + 1]);
    }
    rc = 0;
out:
    free(fields.p);
    free(lens);
    return rc;
}

int dp_lm_texts_parse(dp_lm_texts *tx, const char *name, const char *buf, size_t len, const char *column,
                      dp_error *err) {
    memset(tx, 0, sizeof *tx);
    if (!name) name = "<memory>";
    const char *p = buf, *end = buf + len;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* a byte-order mark is not text */
    text_builder tb = {0};
    int rc = 0;
    if (!column) {
        const char *b, *e;
        while (p < end) {
            p = next_line(p, end, &b, &e);
            tb_add(&tb, b, (size_t)(e - b));
        }
    } else if (ends_with(name, ".tsv")) {
        rc = parse_tsv(&tb, name, p, end, column, err);
    } else if (ends_with(name, ".csv")) {
        rc = parse_csv(&tb, name, p, end, column, err);
    } else {
        rc = dp_fail(err, "%s: a column (\"%s\") can be read from a .tsv or .csv file only", name, column);
    }
    if (rc) {
        free(tb.text.p);
        free(tb.offsets);
        return -1;
    }
    tx->n = tb.n;
    tx->offsets = tb.offsets ? tb.offsets : dp_calloc(1, sizeof(int64_t));
    tx->text = tb.text.p ? tb.text.p : dp_calloc(1, 1);
    tx->n_empty = tb.n_empty;
    return 0;
}

int dp_lm_texts_load(dp_lm_texts *tx, const char *path, const char *column, dp_error *err) {
    char *buf;
    size_t len;
    memset(tx, 0, sizeof *tx);
    if (dp_read_file(path, &buf, &len, err)) return -1;
    int rc = dp_lm_texts_parse(tx, path, buf, len, column, err);
    free(buf);
    return rc;
}

void dp_lm_texts_free(dp_lm_texts *tx) {
    if (!tx) return;
    free(tx->offsets);
    free(tx->text);
    memset(tx, 0, sizeof *tx);
}

/* ---------------- tokens and examples ---------------- */

int dp_lm_corpus_encode(dp_lm_corpus *c, const dp_bpe *tok, int32_t eot, const dp_lm_texts *tx, int max_tokens,
                        dp_error *err) {
    memset(c, 0, sizeof *c);
    if (max_tokens < 2) return dp_fail(err, "language model: a context of at least 2 tokens is needed (got %d)", max_tokens);
    if (eot < 0 || eot >= dp_bpe_vocab_size(tok))
        return dp_fail(err, "language model: the tokenizer has no <|endoftext|> token (%s)", dp_bpe_source(tok));
    dp_bpe_ids ids = {0};
    c->offsets = dp_malloc(sizeof(int64_t) * (size_t)(tx->n + 1));
    c->offsets[0] = 0;
    for (int64_t i = 0; i < tx->n; i++) {
        const size_t start = ids.n;
        /* <|endoftext|> + BPE(text) + <|endoftext|>: the boundaries are put here, never read from the text */
        ids_push(&ids, eot);
        dp_error e2;
        if (dp_bpe_encode(tok, tx->text + tx->offsets[i], (size_t)(tx->offsets[i + 1] - tx->offsets[i]), 0, &ids, &e2)) {
            dp_fail(err, "text %lld: %s", (long long)i + 1, e2.msg);
            goto fail;
        }
        ids_push(&ids, eot);
        if (ids.n - start > (size_t)max_tokens) {
            ids.n = start + (size_t)max_tokens;
            c->n_truncated++;
        }
        c->offsets[i + 1] = (int64_t)ids.n;
        if ((int)(ids.n - start) > c->max_len) c->max_len = (int)(ids.n - start);
    }
    c->n = tx->n;
    c->tokens = ids.ids ? ids.ids : dp_calloc(1, sizeof(int32_t));
    return 0;
fail:
    free(ids.ids);
    free(c->offsets);
    memset(c, 0, sizeof *c);
    return -1;
}

void dp_lm_corpus_free(dp_lm_corpus *c) {
    if (!c) return;
    free(c->offsets);
    free(c->tokens);
    memset(c, 0, sizeof *c);
}

int dp_lm_make_example(int32_t *ids, int32_t *targets, const int32_t *tokens, int n, int T) {
    if (n > T) n = T;
    for (int t = 0; t < T; t++) {
        ids[t] = t < n ? tokens[t] + 1 : 0;
        targets[t] = t + 1 < n ? tokens[t + 1] + 1 : 0;
    }
    return n > 1 ? n - 1 : 0;
}

/* ---------------- evaluation ---------------- */

typedef struct {
    int64_t idx;
    int len;
} ex_len;

static int by_len_desc(const void *a, const void *b) {
    const ex_len *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int dp_lm_evaluate(dp_model *m, const dp_lm_corpus *c, dp_lm_eval_result *r, dp_error *err) {
    memset(r, 0, sizeof *r);
    const int full = m->full_len, Bmax = m->max_batch;
    if (m->cfg.n_classes) return dp_fail(err, "language model evaluation: the model is a classifier");
    if (c->max_len > full)
        return dp_fail(err, "language model evaluation: an example has %d tokens, the model's window %d", c->max_len, full);
    for (int64_t k = 0; k < c->offsets[c->n]; k++)
        if (c->tokens[k] < 0 || c->tokens[k] >= m->cfg.n_items)
            return dp_fail(err, "language model evaluation: token id %d is outside the model's vocabulary (0..%d)",
                           c->tokens[k], m->cfg.n_items - 1);
    ex_len *order = dp_malloc(sizeof(ex_len) * (size_t)(c->n > 0 ? c->n : 1));
    for (int64_t i = 0; i < c->n; i++) order[i] = (ex_len){i, (int)(c->offsets[i + 1] - c->offsets[i])};
    qsort(order, (size_t)c->n, sizeof *order, by_len_desc); /* similar lengths together: little padding */
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)Bmax * full), *tgt = dp_malloc(sizeof(int32_t) * (size_t)Bmax * full);
    double *losses = dp_malloc(sizeof(double) * (size_t)Bmax);
    double t0 = dp_now(), sum_example = 0;
    for (int64_t i0 = 0; i0 < c->n; i0 += Bmax) {
        const int B = (int)DP_MIN((int64_t)Bmax, c->n - i0);
        const int T = order[i0].len; /* the batch's longest */
        for (int b = 0; b < B; b++) {
            const ex_len *e = &order[i0 + b];
            r->predicted += dp_lm_make_example(ids + (size_t)b * T, tgt + (size_t)b * T, c->tokens + c->offsets[e->idx],
                                               e->len, T);
            r->tokens += e->len;
        }
        model_set_window(m, T);
        dp_batch bt = {B, T, ids, tgt, NULL};
        dp_model_forward(m, &bt, 0, 0, losses);
        /* the row losses (host copies after the forward pass) summed over the predicted tokens */
        for (size_t k = 0; k < (size_t)B * T; k++)
            if (tgt[k]) r->total_loss += m->host_row_loss[k];
        for (int b = 0; b < B; b++) sum_example += losses[b];
    }
    model_set_window(m, 0);
    dp_device_synchronize(dp_model_device(m));
    r->seconds = dp_now() - t0;
    r->examples = c->n;
    r->loss = r->predicted ? r->total_loss / (double)r->predicted : 0;
    r->perplexity = exp(r->loss);
    r->mean_example_loss = c->n ? sum_example / (double)c->n : 0;
    r->tokens_per_s = r->seconds > 0 ? (double)r->tokens / r->seconds : 0;
    free(order);
    free(ids);
    free(tgt);
    free(losses);
    return 0;
}

int dp_lm_logits(dp_model *m, const int32_t *tokens, const int *lengths, int B, int T, dp_real *logits,
                 dp_error *err) {
    const int V = m->cfg.n_items, C = m->cfg.d_model;
    if (m->cfg.n_classes) return dp_fail(err, "logits: the model is a classifier");
    if (B < 1 || B > m->max_batch || T < 1 || T > m->full_len)
        return dp_fail(err, "logits: %d sequences of %d positions do not fit the model (at most %d of %d)", B, T,
                       m->max_batch, m->full_len);
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)B * T);
    for (int b = 0; b < B; b++) {
        if (lengths[b] < 1 || lengths[b] > T) {
            free(ids);
            return dp_fail(err, "logits: sequence %d has length %d (1..%d)", b, lengths[b], T);
        }
        for (int t = 0; t < T; t++) {
            int32_t tok = t < lengths[b] ? tokens[(size_t)b * T + t] : -1;
            if (t < lengths[b] && (tok < 0 || tok >= V)) {
                free(ids);
                return dp_fail(err, "logits: token id %d is outside the vocabulary (0..%d)", tok, V - 1);
            }
            ids[(size_t)b * T + t] = tok + 1; /* padding: 0 */
        }
    }
    const dp_backend *be = m->be;
    const size_t rows = (size_t)B * T, V1 = (size_t)V + 1;
    dp_error e2;
    real *z = be->alloc(sizeof(real) * rows * V1, &e2);
    if (!z) {
        free(ids);
        return dp_fail(err, "logits on %s: %s", be->name, e2.msg);
    }
    model_set_window(m, T);
    model_forward_body(m, ids, B, 0, 0);
    be->linear_forward(z, m->a.lnf, m->p.out_w, NULL, (long)rows, C, (int)V1);
    model_set_window(m, 0);
    real *host = model_on_host(m) ? z : dp_malloc(sizeof(real) * rows * V1);
    if (host != z) be->download(host, z, sizeof(real) * rows * V1);
    for (size_t r = 0; r < rows; r++) {
        const int b = (int)(r / (size_t)T), t = (int)(r % (size_t)T);
        dp_real *dst = logits + r * (size_t)V;
        if (t < lengths[b]) memcpy(dst, host + r * V1 + 1, sizeof(real) * (size_t)V);
        else memset(dst, 0, sizeof(real) * (size_t)V);
    }
    if (host != z) free(host);
    be->free(z);
    free(ids);
    return 0;
}

/* ---------------- sampling and generation ---------------- */

typedef struct {
    double p;
    int32_t id;
} tok_prob;

static int by_prob_desc(const void *a, const void *b) {
    const tok_prob *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

int32_t dp_lm_sample(const dp_real *logits, int32_t V, const dp_lm_sampling *s, uint64_t *state) {
    if (V < 1) return -1;
    if (!(s->temperature > 0)) { /* greedy */
        int32_t best = 0;
        for (int32_t v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        return best;
    }
    tok_prob *tp = dp_malloc(sizeof(tok_prob) * (size_t)V);
    double mx = -INFINITY;
    for (int32_t v = 0; v < V; v++) mx = fmax(mx, (double)logits[v] / s->temperature);
    for (int32_t v = 0; v < V; v++) tp[v] = (tok_prob){exp((double)logits[v] / s->temperature - mx), v};
    qsort(tp, (size_t)V, sizeof *tp, by_prob_desc);
    int32_t n = V;
    if (s->top_k > 0 && s->top_k < n) n = s->top_k;
    double total = 0;
    for (int32_t k = 0; k < n; k++) total += tp[k].p;
    if (s->top_p > 0 && s->top_p < 1) { /* the smallest prefix whose probability reaches top_p */
        double acc = 0;
        int32_t keep = 0;
        while (keep < n) {
            acc += tp[keep++].p / total;
            if (acc >= s->top_p) break;
        }
        n = keep;
        total = 0;
        for (int32_t k = 0; k < n; k++) total += tp[k].p;
    }
    double u = (double)(dp_splitmix64(state) >> 11) * (1.0 / 9007199254740992.0) * total, acc = 0;
    int32_t pick = tp[n - 1].id;
    for (int32_t k = 0; k < n; k++) {
        acc += tp[k].p;
        if (u < acc) {
            pick = tp[k].id;
            break;
        }
    }
    free(tp);
    return pick;
}

int dp_lm_generate(dp_model *m, const int32_t *prompt, int n_prompt, int max_new, const dp_lm_sampling *s,
                   int32_t stop, dp_bpe_ids *out, dp_error *err) {
    const int V = m->cfg.n_items, W = m->full_len;
    if (m->cfg.n_classes) return dp_fail(err, "generate: the model is a classifier");
    if (n_prompt < 1) return dp_fail(err, "generate: the prompt has no tokens");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return dp_fail(err, "generate: prompt token %d (id %d) is outside the model's vocabulary (0..%d)", i,
                           prompt[i], V - 1);
    const size_t cap = (size_t)n_prompt + (size_t)(max_new > 0 ? max_new : 0);
    int32_t *ctx = dp_malloc(sizeof(int32_t) * cap), *ids = dp_malloc(sizeof(int32_t) * (size_t)W);
    dp_real *scores = dp_malloc(sizeof(dp_real) * ((size_t)V + 1));
    memcpy(ctx, prompt, sizeof(int32_t) * (size_t)n_prompt);
    size_t n = (size_t)n_prompt;
    uint64_t state = s->seed;
    for (int step = 0; step < max_new; step++) {
        const int T = (int)DP_MIN(n, (size_t)W); /* the last W tokens */
        for (int t = 0; t < T; t++) ids[t] = ctx[n - (size_t)T + (size_t)t] + 1;
        model_set_window(m, T);
        dp_model_score_last(m, ids, 1, scores);
        const int32_t next = dp_lm_sample(scores + 1, s->n_tokens > 0 && s->n_tokens < V ? s->n_tokens : V, s, &state);
        if (next == stop) break;
        ctx[n++] = next;
        ids_push(out, next);
    }
    model_set_window(m, 0);
    free(ctx);
    free(ids);
    free(scores);
    return 0;
}

dp_model *dp_lm_load(const char *path, int max_batch, int max_len, dp_error *err) {
    return model_load_window(path, max_batch, max_len, err);
}
