/* Dataset loaders: interactions, sequences, MovieLens ratings.dat and u.data (formats in data.h and
 * docs/data.md), plus format auto-detection, from a file or from a buffer already in memory.
 * The file is read whole and parsed line by line into (user, item, timestamp, file order) records,
 * which are then grouped per user and ordered chronologically. Every rejected input is reported as
 * "path:line: field: problem"; nothing is skipped silently except blank lines. This is not a
 * streaming reader: memory is about the file size plus 32 bytes per interaction. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>

#include "core/common.h"
#include "data/data_internal.h"
#include "dpformer/data.h"

#define MAX_ID 2147483647LL

/* ---- one parsed interaction ---------------------------------------------------------------- */

typedef struct {
    int64_t user;  /* raw user id */
    int64_t ts;    /* timestamp (0 in formats without one) */
    int64_t seq;   /* position in the file: the tie-break that keeps file order */
    int32_t item;  /* raw item id (fits: ids are checked to be <= 2^31-1) */
} record;

typedef struct {
    record *v;
    size_t n, cap;
} record_vec;

static void rec_push(record_vec *r, int64_t user, int32_t item, int64_t ts) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 4096;
        record *v = realloc(r->v, cap * sizeof *v);
        if (!v) {
            fprintf(stderr, "dpformer: out of memory reading a dataset (%zu interactions)\n", r->n);
            exit(EXIT_FAILURE);
        }
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n] = (record){user, ts, (int64_t)r->n, item};
    r->n++;
}

/* ---- reading the file ------------------------------------------------------------------------ */


static int is_space(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f'; }

static int is_blank(const char *b, const char *e) {
    for (; b < e; b++)
        if (!is_space(*b)) return 0;
    return 1;
}

/* Next whitespace-separated token in [*p, e); returns 0 when there is none. */
static int next_token(const char **p, const char *e, const char **tb, const char **te) {
    const char *s = *p;
    while (s < e && is_space(*s)) s++;
    if (s == e) {
        *p = s;
        return 0;
    }
    const char *t = s;
    while (t < e && !is_space(*t)) t++;
    *tb = s;
    *te = t;
    *p = t;
    return 1;
}

/* Next "::"-separated field of a ratings.dat line; returns 0 after the last one. */
static int next_dat_field(const char **p, const char *e, int *done, const char **tb, const char **te) {
    if (*done) return 0;
    const char *s = *p, *t = s;
    while (t < e && !(t + 1 < e && t[0] == ':' && t[1] == ':')) t++;
    *tb = s;
    *te = t;
    if (t < e) *p = t + 2;
    else *done = 1;
    return 1;
}

static int count_tokens(const char *b, const char *e) {
    int n = 0;
    const char *tb = NULL, *te = NULL;
    while (next_token(&b, e, &tb, &te)) n++;
    return n;
}

/* A printable copy of a token for messages (truncated): a byte-order mark shows as <U+FEFF>, other
 * bytes outside printable ASCII as \xNN, so the message says what is really in the file. */
static const char *show(const char *b, const char *e, char *buf, size_t cap) {
    size_t n = 0;
    const char *s = b;
    while (s < e && n + 12 < cap) {
        unsigned char c = (unsigned char)*s;
        if (e - s >= 3 && c == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF) {
            n += (size_t)snprintf(buf + n, cap - n, "<U+FEFF>");
            s += 3;
        } else if (c >= 32 && c < 127) {
            buf[n++] = (char)c;
            s++;
        } else {
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02X", c);
            s++;
        }
    }
    if (s < e) {
        buf[n++] = '.';
        buf[n++] = '.';
        buf[n++] = '.';
    }
    buf[n] = 0;
    return buf;
}

/* ---- field parsers: return 0 or fill err with "path:line: field: problem" --------------------- */

typedef struct {
    const char *path;
    int64_t lineno;
} where;

static int parse_id(where w, const char *field, const char *b, const char *e, int64_t *out, dp_error *err) {
    char tok[48];
    const char *s = b;
    int neg = 0;
    if (s < e && (*s == '-' || *s == '+')) {
        neg = *s == '-';
        s++;
    }
    if (s == e) goto not_int;
    int64_t v = 0;
    int big = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9') goto not_int;
        if (!big) {
            v = v * 10 + (*s - '0');
            if (v > MAX_ID) big = 1;
        }
    }
    if (neg && (v != 0 || big))
        return dp_fail(err, "%s:%lld: %s: %s is negative (ids must be 1..%lld)", w.path, (long long)w.lineno, field,
                       show(b, e, tok, sizeof tok), MAX_ID);
    if (big)
        return dp_fail(err, "%s:%lld: %s: %s is too large (ids must be 1..%lld)", w.path, (long long)w.lineno, field,
                       show(b, e, tok, sizeof tok), MAX_ID);
    if (v == 0)
        return dp_fail(err, "%s:%lld: %s: %s is not a valid id (ids must be 1..%lld; 0 is reserved)", w.path,
                       (long long)w.lineno, field, show(b, e, tok, sizeof tok), MAX_ID);
    *out = v;
    return 0;
not_int:
    return dp_fail(err, "%s:%lld: %s: '%s' is not an integer id", w.path, (long long)w.lineno, field,
                   show(b, e, tok, sizeof tok));
}

/* A signed 64-bit integer (Unix time in seconds or any monotone clock). */
static int parse_ts(where w, const char *b, const char *e, int64_t *out, dp_error *err) {
    char tok[48];
    const char *s = b;
    int neg = 0;
    if (s < e && (*s == '-' || *s == '+')) {
        neg = *s == '-';
        s++;
    }
    if (s == e) goto bad;
    uint64_t v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9') goto bad;
        if (v > (UINT64_C(9223372036854775807) - (uint64_t)(*s - '0')) / 10)
            return dp_fail(err, "%s:%lld: timestamp: %s does not fit in 64 bits", w.path, (long long)w.lineno,
                           show(b, e, tok, sizeof tok));
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
bad:
    return dp_fail(err, "%s:%lld: timestamp: '%s' is not an integer", w.path, (long long)w.lineno,
                   show(b, e, tok, sizeof tok));
}

/* Ratings are checked to be numbers ("4", "4.5") and otherwise ignored: the protocol uses every
 * rated item as an interaction, whatever the rating. */
static int parse_rating(where w, const char *b, const char *e, dp_error *err) {
    char tok[48];
    const char *s = b;
    int digits = 0;
    if (s < e && (*s == '-' || *s == '+')) s++;
    while (s < e && *s >= '0' && *s <= '9') s++, digits++;
    if (s < e && *s == '.') {
        s++;
        while (s < e && *s >= '0' && *s <= '9') s++, digits++;
    }
    if (s != e || digits == 0)
        return dp_fail(err, "%s:%lld: rating: '%s' is not a number", w.path, (long long)w.lineno,
                       show(b, e, tok, sizeof tok));
    return 0;
}

/* ---- per-format line parsers ---------------------------------------------------------------- */

typedef struct {
    dp_data_format fmt;
    int n_fields;      /* interactions: 2 or 3, fixed by the first data line */
    int64_t first_line; /* line that fixed n_fields */
    dp_idmap seen_users; /* sequences: user -> line of its first occurrence */
} parse_state;

static int parse_interactions(parse_state *st, where w, const char *b, const char *e, record_vec *r, dp_error *err) {
    int n = count_tokens(b, e);
    if (n != 2 && n != 3)
        return dp_fail(err, "%s:%lld: fields: expected 2 or 3 fields (user item [timestamp]), found %d", w.path,
                       (long long)w.lineno, n);
    if (st->n_fields == 0) {
        st->n_fields = n;
        st->first_line = w.lineno;
    } else if (n != st->n_fields) {
        return dp_fail(err, "%s:%lld: fields: found %d fields but line %lld has %d (timestamps must be given on every "
                       "line or on none)", w.path, (long long)w.lineno, n, (long long)st->first_line, st->n_fields);
    }
    const char *p = b, *tb = NULL, *te = NULL;
    int64_t user, item, ts = 0;
    next_token(&p, e, &tb, &te);
    if (parse_id(w, "user", tb, te, &user, err)) return -1;
    next_token(&p, e, &tb, &te);
    if (parse_id(w, "item", tb, te, &item, err)) return -1;
    if (n == 3) {
        next_token(&p, e, &tb, &te);
        if (parse_ts(w, tb, te, &ts, err)) return -1;
    }
    rec_push(r, user, (int32_t)item, ts);
    return 0;
}

static int parse_sequence(parse_state *st, where w, const char *b, const char *e, record_vec *r, dp_error *err) {
    const char *p = b, *tb = NULL, *te = NULL;
    int64_t user, item;
    next_token(&p, e, &tb, &te); /* the line is not blank, so there is a first token */
    if (parse_id(w, "user", tb, te, &user, err)) return -1;
    int64_t *first = dp_idmap_get(&st->seen_users, user);
    if (first)
        return dp_fail(err, "%s:%lld: user: user %lld already has a sequence on line %lld (one line per user)", w.path,
                       (long long)w.lineno, (long long)user, (long long)*first);
    dp_idmap_put(&st->seen_users, user, w.lineno);
    int col = 1;
    while (next_token(&p, e, &tb, &te)) {
        char field[32];
        col++;
        snprintf(field, sizeof field, "item (column %d)", col);
        if (parse_id(w, field, tb, te, &item, err)) return -1;
        rec_push(r, user, (int32_t)item, 0);
    }
    if (col == 1)
        return dp_fail(err, "%s:%lld: fields: user %lld has no items (expected: user item item ...)", w.path,
                       (long long)w.lineno, (long long)user);
    return 0;
}

static int parse_udata(where w, const char *b, const char *e, record_vec *r, dp_error *err) {
    int n = count_tokens(b, e);
    if (n != 4)
        return dp_fail(err, "%s:%lld: fields: expected 4 fields (user item rating timestamp), found %d", w.path,
                       (long long)w.lineno, n);
    const char *p = b, *tb = NULL, *te = NULL;
    int64_t user, item, ts;
    next_token(&p, e, &tb, &te);
    if (parse_id(w, "user", tb, te, &user, err)) return -1;
    next_token(&p, e, &tb, &te);
    if (parse_id(w, "item", tb, te, &item, err)) return -1;
    next_token(&p, e, &tb, &te);
    if (parse_rating(w, tb, te, err)) return -1;
    next_token(&p, e, &tb, &te);
    if (parse_ts(w, tb, te, &ts, err)) return -1;
    rec_push(r, user, (int32_t)item, ts);
    return 0;
}

static int parse_mldat(where w, const char *b, const char *e, record_vec *r, dp_error *err) {
    const char *fb[5], *fe[5];
    const char *p = b;
    int n = 0, done = 0;
    const char *tb = NULL, *te = NULL;
    while (next_dat_field(&p, e, &done, &tb, &te)) {
        if (n < 5) {
            fb[n] = tb;
            fe[n] = te;
        }
        n++;
    }
    if (n != 4)
        return dp_fail(err, "%s:%lld: fields: expected 4 '::'-separated fields (user::item::rating::timestamp), found %d",
                       w.path, (long long)w.lineno, n);
    int64_t user, item, ts;
    if (parse_id(w, "user", fb[0], fe[0], &user, err)) return -1;
    if (parse_id(w, "item", fb[1], fe[1], &item, err)) return -1;
    if (parse_rating(w, fb[2], fe[2], err)) return -1;
    if (parse_ts(w, fb[3], fe[3], &ts, err)) return -1;
    rec_push(r, user, (int32_t)item, ts);
    return 0;
}

/* ---- format names and detection ------------------------------------------------------------ */

static const char *FORMAT_NAMES[] = {"auto", "interactions", "sequences", "ml-dat", "u.data"};

int dp_data_format_parse(const char *name, dp_data_format *fmt) {
    for (int i = 0; i < 5; i++)
        if (name && strcmp(name, FORMAT_NAMES[i]) == 0) {
            *fmt = (dp_data_format)i;
            return 0;
        }
    return -1;
}

const char *dp_data_format_name(dp_data_format fmt) {
    return (unsigned)fmt < 5 ? FORMAT_NAMES[fmt] : "unknown";
}

/* Rules, in order (docs/data.md): "::" in the first data line -> ml-dat; file named u.data -> u.data;
 * a name containing "sequence" / "interaction" -> that format; otherwise the field counts of the first
 * 1000 data lines: all 4 -> u.data, all 2 or 3 -> interactions, anything else -> sequences. */
static int detect_buffer(const char *path, const char *buf, size_t len, dp_data_format *fmt, dp_error *err) {
    dp_line_iter it = {buf, buf + len, path, DP_DATA_MAX_LINE, 0};
    const char *b = NULL, *e = NULL;
    int rc, n_lines = 0, all4 = 1, all23 = 1, first_dat = -1;
    while (n_lines < 1000 && (rc = dp_next_line(&it, &b, &e, err)) != 0) {
        if (rc < 0) return -1;
        if (is_blank(b, e)) continue;
        if (first_dat < 0) {
            first_dat = 0;
            for (const char *s = b; s + 1 < e; s++)
                if (s[0] == ':' && s[1] == ':') first_dat = 1;
        }
        int n = count_tokens(b, e);
        all4 &= n == 4;
        all23 &= n == 2 || n == 3;
        n_lines++;
    }
    if (n_lines == 0) return dp_fail(err, "%s: file: empty (no interactions)", path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (first_dat == 1) *fmt = DP_FMT_ML_DAT;
    else if (strcmp(base, "u.data") == 0) *fmt = DP_FMT_UDATA;
    else if (strstr(base, "sequence")) *fmt = DP_FMT_SEQUENCES;
    else if (strstr(base, "interaction")) *fmt = DP_FMT_INTERACTIONS;
    else if (all4) *fmt = DP_FMT_UDATA;
    else if (all23) *fmt = DP_FMT_INTERACTIONS;
    else *fmt = DP_FMT_SEQUENCES;
    return 0;
}

int dp_data_format_detect(const char *path, dp_data_format *fmt, dp_error *err) {
    char *buf;
    size_t len;
    if (dp_read_file(path, &buf, &len, err)) return -1;
    int rc = detect_buffer(path, buf, len, fmt, err);
    free(buf);
    return rc;
}

/* ---- grouping and re-indexing ---------------------------------------------------------------- */

static int rec_cmp(const void *a, const void *b) {
    const record *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Users ordered by raw id (user index u = rank of its raw id); each user's items by timestamp, ties
 * by file order; items numbered 1..V in order of first appearance in that ordering. */
static void build(dp_dataset *ds, record_vec *r) {
    int sorted = 1;
    for (size_t i = 1; i < r->n && sorted; i++) sorted = rec_cmp(&r->v[i - 1], &r->v[i]) <= 0;
    if (!sorted) qsort(r->v, r->n, sizeof *r->v, rec_cmp);

    int32_t n_users = 0;
    for (size_t i = 0; i < r->n; i++)
        if (i == 0 || r->v[i].user != r->v[i - 1].user) n_users++;
    ds->n_users = n_users;
    ds->n_interactions = (int64_t)r->n;
    ds->offsets = dp_malloc(((size_t)n_users + 1) * sizeof *ds->offsets);
    ds->user_raw_ids = dp_malloc((size_t)(n_users ? n_users : 1) * sizeof *ds->user_raw_ids);
    ds->items = dp_malloc((r->n ? r->n : 1) * sizeof *ds->items);

    dp_idmap items = {0};
    size_t raw_cap = 1024;
    int64_t *raw = dp_malloc(raw_cap * sizeof *raw);
    raw[0] = 0;
    int32_t n_items = 0, u = -1;
    for (size_t i = 0; i < r->n; i++) {
        if (i == 0 || r->v[i].user != r->v[i - 1].user) {
            u++;
            ds->offsets[u] = (int64_t)i;
            ds->user_raw_ids[u] = r->v[i].user;
        }
        int64_t *id = dp_idmap_get(&items, r->v[i].item);
        if (!id) {
            n_items++;
            if ((size_t)n_items >= raw_cap) {
                raw_cap *= 2;
                int64_t *nr = realloc(raw, raw_cap * sizeof *raw);
                if (!nr) {
                    fprintf(stderr, "dpformer: out of memory re-indexing items\n");
                    exit(EXIT_FAILURE);
                }
                raw = nr;
            }
            raw[n_items] = r->v[i].item;
            id = dp_idmap_put(&items, r->v[i].item, n_items);
        }
        ds->items[i] = (int32_t)*id;
    }
    ds->offsets[n_users] = (int64_t)r->n;
    ds->n_items = n_items;
    ds->item_raw_ids = raw;
    dp_idmap_free(&items);
}

int dp_dataset_load(dp_dataset *ds, const char *path, dp_data_format fmt, dp_error *err) {
    return dp_dataset_load_detected(ds, path, fmt, NULL, err);
}

int dp_dataset_load_detected(dp_dataset *ds, const char *path, dp_data_format fmt, dp_data_format *used,
                             dp_error *err) {
    memset(ds, 0, sizeof *ds);
    char *buf;
    size_t len;
    if (dp_read_file(path, &buf, &len, err)) return -1;
    int rc = dp_dataset_parse(ds, path, buf, len, fmt, used, err);
    free(buf);
    return rc;
}

int dp_dataset_parse(dp_dataset *ds, const char *name, const char *buf, size_t len, dp_data_format fmt,
                     dp_data_format *used, dp_error *err) {
    memset(ds, 0, sizeof *ds);
    /* A UTF-8 byte-order mark (written by some editors and spreadsheet exports) is not data. */
    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB && (unsigned char)buf[2] == 0xBF) {
        buf += 3;
        len -= 3;
    }
    if (len == 0) return dp_fail(err, "%s: file: empty (no interactions)", name);
    if (fmt == DP_FMT_AUTO && detect_buffer(name, buf, len, &fmt, err)) return -1;
    if ((unsigned)fmt > DP_FMT_UDATA) return dp_fail(err, "%s: format: unknown format %d", name, (int)fmt);
    if (used) *used = fmt;

    parse_state st = {fmt, 0, 0, {0}};
    record_vec r = {0};
    dp_line_iter it = {buf, buf + len, name, DP_DATA_MAX_LINE, 0};
    const char *b = NULL, *e = NULL;
    int rc, fail = 0;
    while ((rc = dp_next_line(&it, &b, &e, err)) != 0) {
        if (rc < 0) {
            fail = 1;
            break;
        }
        if (is_blank(b, e)) continue;
        where w = {name, it.lineno};
        switch (fmt) {
        case DP_FMT_INTERACTIONS: fail = parse_interactions(&st, w, b, e, &r, err) != 0; break;
        case DP_FMT_SEQUENCES: fail = parse_sequence(&st, w, b, e, &r, err) != 0; break;
        case DP_FMT_ML_DAT: fail = parse_mldat(w, b, e, &r, err) != 0; break;
        case DP_FMT_UDATA: fail = parse_udata(w, b, e, &r, err) != 0; break;
        default: fail = 1; break;
        }
        if (fail) break;
    }
    dp_idmap_free(&st.seen_users);
    if (!fail && r.n == 0) {
        fail = 1;
        dp_fail(err, "%s: file: no interactions (%lld lines, all blank)", name, (long long)it.lineno);
    }
    if (!fail) build(ds, &r);
    free(r.v);
    return fail ? -1 : 0;
}

void dp_dataset_free(dp_dataset *ds) {
    if (!ds) return;
    free(ds->offsets);
    free(ds->items);
    free(ds->item_raw_ids);
    free(ds->user_raw_ids);
    memset(ds, 0, sizeof *ds);
}
