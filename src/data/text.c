/* Text classification data: the TSV loader (GLUE SST-2 layout: a header line naming tab-separated
 * columns, one labelled text per line) and the two tokenizers, byte-level and hashed words (API in
 * dpformer/text.h, rules in docs/text.md).
 * Parsing works on a buffer, so the same code serves files, pipes and in-memory input; every rejected
 * input is reported as "name:line: field: problem" and the whole input is refused (no partial load,
 * no silent truncation). Fields are not quoted (as GLUE's own reader): a quote is an ordinary byte.
 * Both tokenizers are deliberately fixed functions of the bytes: neither has a vocabulary fitted on the
 * training text, so neither can reveal which words occur in it. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>

#include "core/common.h"
#include "dpformer/text.h"

const char *const dp_text_default_text_columns[] = {"sentence", "content", NULL};

void dp_text_options_default(dp_text_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->label_column = "label";
    opt->text_column = NULL; /* the fallback list */
    opt->n_classes = DP_TEXT_DEFAULT_CLASSES;
    opt->max_line = DP_TEXT_MAX_LINE;
    opt->accept_invalid_utf8 = 0;
}

/* ---- small helpers ----------------------------------------------------------------------------- */

/* White space removed around fields: tabs separate fields and carriage returns are rejected, so
 * what can surround a field is space, vertical tab and form feed. */
static int is_trim_space(char c) { return c == ' ' || c == '\v' || c == '\f'; }

static void trim(const char **b, const char **e) {
    while (*b < *e && is_trim_space(**b)) (*b)++;
    while (*e > *b && is_trim_space((*e)[-1])) (*e)--;
}

/* A printable copy of [b, e) for messages: cut to fit, bytes outside printable ASCII shown as '?'. */
static const char *show(const char *b, const char *e, char *buf, size_t cap) {
    size_t n = 0;
    for (const char *s = b; s < e && n + 4 < cap; s++) buf[n++] = (*s >= 32 && *s < 127) ? *s : '?';
    if (b + n < e) {
        buf[n++] = '.';
        buf[n++] = '.';
        buf[n++] = '.';
    }
    buf[n] = 0;
    return buf;
}

/* Offset of the first byte of [s, s+n) that does not begin a well-formed UTF-8 sequence (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or n if the whole range is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;                  /* continuation bytes */
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c == 0xE0) k = 2, lo = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) k = 2;
        else if (c == 0xED) k = 2, hi = 0x9F;
        else if (c == 0xF0) k = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) k = 3;
        else if (c == 0xF4) k = 3, hi = 0x8F;
        else return i;
        if (n - i <= k) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return i;
        i += k + 1;
    }
    return n;
}

/* ---- lines and fields ------------------------------------------------------------------------- */


/* The field after *p in a line ending at e: [*fb, *fe) up to the next tab or the end; *p moves past it. */
static void next_field(const char **p, const char *e, const char **fb, const char **fe) {
    const char *s = *p;
    const char *tab = memchr(s, '\t', (size_t)(e - s));
    *fb = s;
    *fe = tab ? tab : e;
    *p = tab ? tab + 1 : e;
}

static int64_t count_fields(const char *b, const char *e) {
    int64_t n = 1;
    for (const char *s = b; (s = memchr(s, '\t', (size_t)(e - s))) != NULL; s++) n++;
    return n;
}

/* ---- parse state ------------------------------------------------------------------------------ */

typedef struct {
    const char *name;       /* for messages */
    const char *label_name; /* resolved column names */
    const char *text_name;
    int n_classes;
    int strict_utf8;
    int64_t n_cols;
    const char **col_b, **col_e; /* [n_cols] trimmed header names (point into the buffer) */
    int64_t label_col, text_col;
} parser;

/* The name of column j for messages: its header name, or "column N" if that is empty. */
static const char *col_label(const parser *ps, int64_t j, char *buf, size_t cap) {
    if (ps->col_b[j] == ps->col_e[j]) {
        snprintf(buf, cap, "column %lld", (long long)(j + 1));
        return buf;
    }
    return show(ps->col_b[j], ps->col_e[j], buf, cap);
}

/* A field must hold no NUL byte and, unless disabled, be valid UTF-8. */
static int check_bytes(const parser *ps, int64_t lineno, const char *field, const char *b, const char *e,
                       dp_error *err) {
    const char *nul = memchr(b, '\0', (size_t)(e - b));
    if (nul)
        return dp_fail(err, "%s:%lld: %s: NUL byte at byte %lld of the field (a binary or UTF-16 file? text must be "
                       "UTF-8)", ps->name, (long long)lineno, field, (long long)(nul - b + 1));
    if (ps->strict_utf8) {
        size_t at = utf8_invalid_at((const unsigned char *)b, (size_t)(e - b));
        if (at < (size_t)(e - b))
            return dp_fail(err, "%s:%lld: %s: invalid UTF-8 at byte %zu of the field (0x%02X); convert the file to "
                           "UTF-8 (e.g. iconv -f latin1 -t utf-8) or accept raw bytes in the options",
                           ps->name, (long long)lineno, field, at + 1, (unsigned)(unsigned char)b[at]);
    }
    return 0;
}

/* An integer label in 0..K-1, surrounding spaces allowed. */
static int parse_label(const parser *ps, int64_t lineno, const char *field, const char *b, const char *e,
                       int32_t *out, dp_error *err) {
    char tok[48];
    trim(&b, &e);
    if (b == e)
        return dp_fail(err, "%s:%lld: %s: empty (expected an integer class 0..%d)", ps->name, (long long)lineno, field,
                       ps->n_classes - 1);
    const char *s = b;
    int neg = 0;
    if (*s == '-' || *s == '+') neg = *s++ == '-';
    if (s == e) goto not_int;
    int64_t v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9') goto not_int;
        if (v <= INT_MAX) v = v * 10 + (*s - '0'); /* stops growing once out of any class range */
    }
    if ((neg && v != 0) || v >= ps->n_classes)
        return dp_fail(err, "%s:%lld: %s: %s is out of range (labels must be integers 0..%d for %d classes)", ps->name,
                       (long long)lineno, field, show(b, e, tok, sizeof tok), ps->n_classes - 1, ps->n_classes);
    *out = (int32_t)v;
    return 0;
not_int:
    return dp_fail(err, "%s:%lld: %s: '%s' is not an integer (labels must be integers 0..%d)", ps->name,
                   (long long)lineno, field, show(b, e, tok, sizeof tok), ps->n_classes - 1);
}

/* Does [b, e) look like a label value (so that a header line is probably a data line)? */
static int looks_like_integer(const char *b, const char *e) {
    trim(&b, &e);
    if (b < e && (*b == '-' || *b == '+')) b++;
    if (b == e) return 0;
    for (; b < e; b++)
        if (*b < '0' || *b > '9') return 0;
    return 1;
}

/* Index of the column named `want` (-1 if absent); two columns with that name are an error (-2). */
static int64_t find_column(const parser *ps, const char *want, dp_error *err) {
    size_t wl = strlen(want);
    int64_t found = -1;
    for (int64_t j = 0; j < ps->n_cols; j++) {
        if ((size_t)(ps->col_e[j] - ps->col_b[j]) != wl || memcmp(ps->col_b[j], want, wl) != 0) continue;
        if (found >= 0) {
            dp_fail(err, "%s:1: header: column '%s' appears twice (columns %lld and %lld)", ps->name, want,
                    (long long)(found + 1), (long long)(j + 1));
            return -2;
        }
        found = j;
    }
    return found;
}

/* "'a', 'b', 'c'" (cut with "..." when long) for messages. */
static void list_columns(const parser *ps, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int64_t j = 0; j < ps->n_cols && n + 8 < cap; j++) {
        char nm[48];
        int w = snprintf(buf + n, cap - n, "%s'%s'", j ? ", " : "", show(ps->col_b[j], ps->col_e[j], nm, sizeof nm));
        if (w < 0 || (size_t)w >= cap - n) {
            snprintf(buf + (cap > 4 ? cap - 4 : 0), cap > 4 ? 4 : cap, "...");
            return;
        }
        n += (size_t)w;
    }
}

/* Reads the header [b, e) (line 1): splits the column names, finds the label and text columns. */
static int parse_header(parser *ps, const char *b, const char *e, const char *text_column, dp_error *err) {
    if (b == e)
        return dp_fail(err, "%s:1: header: the first line is empty; it must name the columns (e.g. "
                       "'label<TAB>sentence')", ps->name);
    ps->n_cols = count_fields(b, e);
    ps->col_b = dp_malloc((size_t)ps->n_cols * sizeof *ps->col_b);
    ps->col_e = dp_malloc((size_t)ps->n_cols * sizeof *ps->col_e);
    const char *p = b;
    for (int64_t j = 0; j < ps->n_cols; j++) {
        char field[48];
        next_field(&p, e, &ps->col_b[j], &ps->col_e[j]);
        snprintf(field, sizeof field, "header (column %lld)", (long long)(j + 1));
        if (check_bytes(ps, 1, field, ps->col_b[j], ps->col_e[j], err)) return -1;
        trim(&ps->col_b[j], &ps->col_e[j]);
    }

    ps->label_col = find_column(ps, ps->label_name, err);
    if (ps->label_col == -2) return -1;
    ps->text_col = -1;
    if (text_column) {
        ps->text_name = text_column;
        ps->text_col = find_column(ps, text_column, err);
        if (ps->text_col == -2) return -1;
    } else {
        for (int k = 0; dp_text_default_text_columns[k] && ps->text_col == -1; k++) {
            ps->text_name = dp_text_default_text_columns[k];
            ps->text_col = find_column(ps, ps->text_name, err);
            if (ps->text_col == -2) return -1;
        }
    }

    char cols[256], tok[48];
    if (ps->label_col < 0 && ps->text_col < 0 && looks_like_integer(ps->col_b[0], ps->col_e[0]))
        return dp_fail(err, "%s:1: header: missing (the first line looks like data: first field '%s'); the first "
                       "line must name the columns, e.g. 'label<TAB>sentence'",
                       ps->name, show(ps->col_b[0], ps->col_e[0], tok, sizeof tok));
    list_columns(ps, cols, sizeof cols);
    if (ps->label_col < 0)
        return dp_fail(err, "%s:1: header: no column named '%s' for the labels (the header has %s)", ps->name,
                       ps->label_name, cols);
    if (ps->text_col < 0) {
        if (text_column)
            return dp_fail(err, "%s:1: header: no column named '%s' for the text (the header has %s)", ps->name,
                           text_column, cols);
        char tried[128];
        size_t n = 0;
        tried[0] = 0;
        for (int k = 0; dp_text_default_text_columns[k] && n < sizeof tried; k++)
            n += (size_t)snprintf(tried + n, sizeof tried - n, "%s'%s'", k ? ", " : "",
                                  dp_text_default_text_columns[k]);
        return dp_fail(err, "%s:1: header: no text column: none of %s (the header has %s); name the text column in "
                       "the options", ps->name, tried, cols);
    }
    if (ps->label_col == ps->text_col)
        return dp_fail(err, "%s:1: header: the label and text columns are the same column ('%s')", ps->name,
                       ps->label_name);
    return 0;
}

/* One data line [b, e): checks every field, appends the label and the trimmed text. */
static int parse_row(parser *ps, int64_t lineno, const char *b, const char *e, dp_text_dataset *ds, dp_error *err) {
    int64_t nf = count_fields(b, e);
    if (nf != ps->n_cols)
        return dp_fail(err, "%s:%lld: fields: expected %lld tab-separated fields (as in the header), found %lld",
                       ps->name, (long long)lineno, (long long)ps->n_cols, (long long)nf);
    const char *p = b, *fb = NULL, *fe = NULL;
    int32_t label = 0;
    for (int64_t j = 0; j < ps->n_cols; j++) {
        char field[64];
        next_field(&p, e, &fb, &fe);
        col_label(ps, j, field, sizeof field);
        if (check_bytes(ps, lineno, field, fb, fe, err)) return -1;
        if (j == ps->label_col && parse_label(ps, lineno, field, fb, fe, &label, err)) return -1;
        if (j == ps->text_col) {
            trim(&fb, &fe);
            if (fb == fe)
                return dp_fail(err, "%s:%lld: %s: empty text (after removing surrounding spaces)", ps->name,
                               (long long)lineno, field);
            int64_t at = ds->offsets[ds->n];
            memcpy(ds->text + at, fb, (size_t)(fe - fb));
            ds->offsets[ds->n + 1] = at + (int64_t)(fe - fb);
        }
    }
    ds->labels[ds->n] = label;
    ds->n++;
    return 0;
}

static int only_line_ends(const char *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (b[i] != '\n' && b[i] != '\r') return 0;
    return 1;
}

/* Shrink a buffer to its used size; keeps the larger one if that fails. */
static void *shrink(void *p, size_t used) {
    void *q = realloc(p, used ? used : 1);
    return q ? q : p;
}

int dp_text_parse(dp_text_dataset *ds, const char *buf, size_t len, const char *name, const dp_text_options *opt,
                  dp_error *err) {
    memset(ds, 0, sizeof *ds);
    if (!name) name = "<memory>";
    dp_text_options o;
    dp_text_options_default(&o);
    if (opt) {
        if (opt->label_column) o.label_column = opt->label_column;
        o.text_column = opt->text_column;
        if (opt->n_classes) o.n_classes = opt->n_classes;
        if (opt->max_line) o.max_line = opt->max_line;
        o.accept_invalid_utf8 = opt->accept_invalid_utf8;
    }
    if (o.n_classes < 2)
        return dp_fail(err, "%s: options: the number of classes must be at least 2 (got %d)", name, o.n_classes);
    if (!*o.label_column || (o.text_column && !*o.text_column))
        return dp_fail(err, "%s: options: column names must not be empty", name);
    if (len == 0 || !buf)
        return dp_fail(err, "%s: file: empty (expected a header line, e.g. 'label<TAB>sentence', then one example "
                       "per line)", name);

    /* A UTF-8 byte order mark (written by some editors) is not part of the first column's name. */
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) buf += 3, len -= 3;

    parser ps = {name, o.label_column, NULL, o.n_classes, !o.accept_invalid_utf8, 0, NULL, NULL, -1, -1};
    dp_line_iter it = {buf, buf + len, name, o.max_line, 0};
    const char *b = NULL, *e = NULL;
    int rc = dp_next_line(&it, &b, &e, err);
    if (rc < 0) return -1;
    if (rc == 0 || (b == e && only_line_ends(buf, len)))
        return dp_fail(err, "%s: file: empty (no header line, no examples; expected e.g. 'label<TAB>sentence' "
                       "then one example per line)", name);
    if (parse_header(&ps, b, e, o.text_column, err)) goto fail;

    /* Upper bounds: one example per remaining line, and the texts are no longer than the input. */
    int64_t max_rows = 1;
    for (const char *s = it.p; s < it.end && (s = memchr(s, '\n', (size_t)(it.end - s))) != NULL; s++) max_rows++;
    ds->labels = dp_malloc((size_t)max_rows * sizeof *ds->labels);
    ds->offsets = dp_malloc(((size_t)max_rows + 1) * sizeof *ds->offsets);
    ds->text = dp_malloc(len);
    ds->offsets[0] = 0;
    ds->n_classes = o.n_classes;

    while ((rc = dp_next_line(&it, &b, &e, err)) != 0) {
        if (rc < 0) goto fail;
        if (b == e) continue; /* empty lines (e.g. a blank last line) are skipped */
        if (parse_row(&ps, it.lineno, b, e, ds, err)) goto fail;
    }
    if (ds->n == 0) {
        dp_fail(err, "%s: file: no examples after the header line", name);
        goto fail;
    }
    ds->labels = shrink(ds->labels, (size_t)ds->n * sizeof *ds->labels);
    ds->offsets = shrink(ds->offsets, ((size_t)ds->n + 1) * sizeof *ds->offsets);
    ds->text = shrink(ds->text, (size_t)ds->offsets[ds->n]);
    size_t tl = strlen(ps.text_name);
    ds->text_column = dp_malloc(tl + 1);
    memcpy(ds->text_column, ps.text_name, tl + 1);
    free(ps.col_b);
    free(ps.col_e);
    return 0;
fail:
    free(ps.col_b);
    free(ps.col_e);
    dp_text_dataset_free(ds);
    return -1;
}

int dp_text_load(dp_text_dataset *ds, const char *path, const dp_text_options *opt, dp_error *err) {
    memset(ds, 0, sizeof *ds);
    char *buf = NULL;
    size_t len = 0;
    if (dp_read_file(path, &buf, &len, err)) return -1;
    int rc = dp_text_parse(ds, buf, len, path, opt, err);
    free(buf);
    return rc;
}

void dp_text_dataset_free(dp_text_dataset *ds) {
    if (!ds) return;
    free(ds->labels);
    free(ds->offsets);
    free(ds->text);
    free(ds->text_column);
    memset(ds, 0, sizeof *ds);
}

/* ---- statistics -------------------------------------------------------------------------------- */

void dp_text_label_counts(const dp_text_dataset *ds, int64_t *counts) {
    for (int k = 0; k < ds->n_classes; k++) counts[k] = 0;
    for (int64_t i = 0; i < ds->n; i++) counts[ds->labels[i]]++;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank quantile of sorted v[0..n) at pct percent, in integers (no rounding surprises). */
static int64_t quantile_pct(const int64_t *v, int64_t n, int64_t pct) {
    int64_t k = (pct * n + 99) / 100;
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

void dp_text_lengths(const dp_text_dataset *ds, dp_text_length_stats *st) {
    memset(st, 0, sizeof *st);
    if (ds->n <= 0) return;
    int64_t *len = dp_malloc((size_t)ds->n * sizeof *len);
    for (int64_t i = 0; i < ds->n; i++) len[i] = dp_text_len(ds, i);
    qsort(len, (size_t)ds->n, sizeof *len, cmp_i64);
    st->n = ds->n;
    st->mean = (double)ds->offsets[ds->n] / (double)ds->n;
    st->min = len[0];
    st->p50 = quantile_pct(len, ds->n, 50);
    st->p90 = quantile_pct(len, ds->n, 90);
    st->p95 = quantile_pct(len, ds->n, 95);
    st->p99 = quantile_pct(len, ds->n, 99);
    st->max = len[ds->n - 1];
    free(len);
}

/* ---- tokenizer ------------------------------------------------------------------------------- */

int dp_text_encode_bytes(const char *s, size_t len, int L, int32_t *ids_out, int *truncated) {
    if (L < 1) return -1;
    size_t keep = DP_MIN(len, (size_t)L - 1);
    ids_out[0] = DP_TEXT_CLS;
    for (size_t k = 0; k < keep; k++) ids_out[1 + k] = DP_TEXT_BYTE0 + (int32_t)(unsigned char)s[k];
    for (size_t k = 1 + keep; k < (size_t)L; k++) ids_out[k] = DP_TEXT_PAD;
    if (truncated) *truncated = len > keep;
    return (int)(1 + keep);
}

int dp_text_encode(const dp_text_dataset *ds, int64_t i, int L, int32_t *ids_out, int *truncated) {
    return dp_text_encode_with(NULL, ds, i, L, ids_out, truncated);
}

int64_t dp_text_count_truncated(const dp_text_dataset *ds, int L) { return dp_text_count_truncated_with(NULL, ds, L); }

int64_t dp_text_decode(const int32_t *ids, int64_t n, char *out, size_t cap) {
    int64_t m = 0;
    for (int64_t k = 0; k < n; k++) {
        int32_t id = ids[k];
        if (id < 0 || id >= DP_TEXT_VOCAB) {
            if (cap) out[0] = 0;
            return -1;
        }
        if (id < DP_TEXT_BYTE0) continue; /* PAD, CLS, SEP carry no bytes */
        if ((uint64_t)m + 1 < cap) ((unsigned char *)out)[m] = (unsigned char)(id - DP_TEXT_BYTE0);
        m++;
    }
    if (cap) out[(uint64_t)m < cap ? (size_t)m : cap - 1] = 0;
    return m;
}

/* ---- hashed words and the tokenizer choice ------------------------------------------------------- */

int dp_tokenizer_parse(const char *spec, dp_tokenizer *t, dp_error *err) {
    t->kind = DP_TOKENIZER_BYTES;
    t->buckets = 0;
    if (!spec || !*spec || strcmp(spec, "bytes") == 0) return 0;
    if (strcmp(spec, "words") == 0) {
        t->kind = DP_TOKENIZER_WORDS;
        t->buckets = DP_TEXT_DEFAULT_BUCKETS;
        return 0;
    }
    if (strncmp(spec, "words:", 6) == 0) {
        const char *p = spec + 6;
        char *end = NULL;
        errno = 0;
        long long h = (*p >= '0' && *p <= '9') ? strtoll(p, &end, 10) : -1;
        if (h < 1 || h > DP_TEXT_MAX_BUCKETS || errno || !end || *end)
            return dp_fail(err, "tokenizer '%s': the number of buckets must be an integer in 1..%d", spec,
                           DP_TEXT_MAX_BUCKETS);
        t->kind = DP_TOKENIZER_WORDS;
        t->buckets = (int32_t)h;
        return 0;
    }
    return dp_fail(err, "unknown tokenizer '%s' (bytes, words or words:BUCKETS)", spec);
}

void dp_tokenizer_spec(const dp_tokenizer *t, char *buf, size_t cap) {
    if (t && t->kind == DP_TOKENIZER_WORDS) snprintf(buf, cap, "words:%d", (int)t->buckets);
    else snprintf(buf, cap, "bytes");
}

int32_t dp_tokenizer_vocab(const dp_tokenizer *t) {
    return t && t->kind == DP_TOKENIZER_WORDS ? DP_TEXT_WORD0 + t->buckets : DP_TEXT_VOCAB;
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

int32_t dp_text_word_id(const char *w, size_t len, int32_t buckets) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, 64 bit */
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)w[k];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 0x100000001b3ULL;
    }
    return DP_TEXT_WORD0 + (int32_t)(h % (uint64_t)buckets);
}

/* Words of s (maximal runs of non-space bytes), hashed into ids[0..] (if ids is non-NULL). Stops when
 * a word beyond the first stop_after is found (stop_after < 0: never) and then returns stop_after + 1;
 * otherwise returns the number of words. */
static int64_t for_words(const char *s, size_t len, int64_t stop_after, int32_t buckets, int32_t *ids) {
    int64_t n = 0;
    size_t k = 0;
    while (k < len) {
        while (k < len && is_space((unsigned char)s[k])) k++;
        if (k == len) break;
        size_t a = k;
        while (k < len && !is_space((unsigned char)s[k])) k++;
        if (n == stop_after) return n + 1; /* one more word exists than fits */
        if (ids) ids[n] = dp_text_word_id(s + a, k - a, buckets);
        n++;
    }
    return n;
}

int dp_text_encode_words(const char *s, size_t len, int32_t buckets, int L, int32_t *ids_out, int *truncated) {
    if (L < 1 || buckets < 1 || buckets > DP_TEXT_MAX_BUCKETS) return -1;
    ids_out[0] = DP_TEXT_CLS;
    int64_t seen = for_words(s, len, (int64_t)L - 1, buckets, ids_out + 1);
    int64_t keep = DP_MIN(seen, (int64_t)L - 1);
    for (int64_t k = 1 + keep; k < L; k++) ids_out[k] = DP_TEXT_PAD;
    if (truncated) *truncated = seen > keep;
    return (int)(1 + keep);
}

int64_t dp_tokenizer_count(const dp_tokenizer *t, const char *s, size_t len) {
    if (t && t->kind == DP_TOKENIZER_WORDS) return for_words(s, len, -1, 1, NULL);
    return (int64_t)len;
}

int dp_tokenizer_encode(const dp_tokenizer *t, const char *s, size_t len, int L, int32_t *ids_out, int *truncated) {
    if (t && t->kind == DP_TOKENIZER_WORDS) return dp_text_encode_words(s, len, t->buckets, L, ids_out, truncated);
    return dp_text_encode_bytes(s, len, L, ids_out, truncated);
}

int dp_text_encode_with(const dp_tokenizer *t, const dp_text_dataset *ds, int64_t i, int L, int32_t *ids_out,
                        int *truncated) {
    if (i < 0 || i >= ds->n || L < 1) return -1;
    return dp_tokenizer_encode(t, dp_text_ptr(ds, i), (size_t)dp_text_len(ds, i), L, ids_out, truncated);
}

int64_t dp_text_count_truncated_with(const dp_tokenizer *t, const dp_text_dataset *ds, int L) {
    if (L < 1) return -1;
    int64_t n = 0;
    for (int64_t i = 0; i < ds->n; i++)
        n += dp_tokenizer_count(t, dp_text_ptr(ds, i), (size_t)dp_text_len(ds, i)) > (int64_t)L - 1;
    return n;
}
