/* `dpformer tokenize`: GPT-2's byte-level BPE (include/dpformer/tokenizer.h) as a filter. Reads lines
 * on stdin and writes one line per input line: text -> ids (space-separated), or with --decode ids ->
 * text; with --json every line is a JSON value (a string of text, an array of ids), which carries
 * text with newlines or any bytes. Bad input stops at the line, with "stdin:LINE: ..." and status 2.
 * This file only reads, parses and prints; the tokenizer is the library's. */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/common.h"
#include "dpformer/tokenizer.h"

#define CMD "dpformer tokenize"

/* ---- output ---------------------------------------------------------------------------------------- */

static void put_bytes(dp_bpe_text *o, const void *p, size_t n) {
    if (o->n + n + 1 > o->cap) {
        o->cap = DP_MAX(o->n + n + 1, 2 * o->cap);
        o->data = realloc(o->data, o->cap);
        if (!o->data) abort();
    }
    memcpy(o->data + o->n, p, n);
    o->n += n;
}
static void put_char(dp_bpe_text *o, char c) { put_bytes(o, &c, 1); }

static void put_int(dp_bpe_text *o, int32_t v) {
    char buf[12];
    int k = 12;
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    do buf[--k] = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) buf[--k] = '-';
    put_bytes(o, buf + k, (size_t)(12 - k));
}

/* Length of the maximal subpart of an ill-formed UTF-8 sequence at s[0] (Unicode's "U+FFFD
 * substitution of maximal subparts", what Python's errors='replace' does): the lead byte and the
 * continuation bytes that could still have completed it. */
static size_t maximal_subpart(const unsigned char *s, size_t n) {
    unsigned c = s[0], need, lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 1;
    size_t k = 1;
    if (k < n && s[k] >= lo && s[k] <= hi) k++;
    else return 1;
    while (k <= need && k < n && (s[k] & 0xC0) == 0x80) k++;
    return k;
}

/* Bytes as a JSON string: quote, backslash and control characters escaped, other text as UTF-8, and
 * each ill-formed part of bytes that are not UTF-8 as U+FFFD (JSON strings hold text only). */
static void put_json_string(dp_bpe_text *o, const unsigned char *s, size_t n) {
    put_char(o, '"');
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c >= 0x80) { /* a well-formed sequence is one whose maximal subpart is all of it */
            size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4, k = maximal_subpart(s + i, n - i);
            if (c >= 0xC2 && c <= 0xF4 && k == len) put_bytes(o, s + i, len);
            else put_bytes(o, "\xEF\xBF\xBD", 3);
            i += k;
            continue;
        }
        switch (c) {
        case '"': put_bytes(o, "\\\"", 2); break;
        case '\\': put_bytes(o, "\\\\", 2); break;
        case '\n': put_bytes(o, "\\n", 2); break;
        case '\r': put_bytes(o, "\\r", 2); break;
        case '\t': put_bytes(o, "\\t", 2); break;
        case '\b': put_bytes(o, "\\b", 2); break;
        case '\f': put_bytes(o, "\\f", 2); break;
        default:
            if (c < 0x20) {
                char u[8];
                snprintf(u, sizeof u, "\\u%04x", c);
                put_bytes(o, u, 6);
            } else {
                put_char(o, (char)c);
            }
        }
        i++;
    }
    put_char(o, '"');
}

/* ---- input ----------------------------------------------------------------------------------------- */

static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

static int hex4(const char *p, const char *e, unsigned *v) {
    if (e - p < 4) return -1;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
        if (d == 16) return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

/* One JSON string (and nothing else but white space) -> its bytes in *out (reset). Escapes as JSON has
 * them, \u0000 included; bytes that are not UTF-8 are taken as they are (the tokenizer encodes any
 * bytes). Returns NULL, or why it is not one. */
static const char *parse_json_string(const char *s, size_t n, dp_bpe_text *out) {
    const char *p = skip_ws(s, s + n), *e = s + n;
    out->n = 0;
    if (p == e || *p != '"') return "expected a JSON string (\"...\")";
    for (p++;;) {
        if (p == e) return "the string has no closing quote";
        unsigned char c = (unsigned char)*p++;
        if (c == '"') break;
        if (c < 0x20) return "a control character inside the string must be escaped (\\n, \\t, \\u00XX)";
        if (c != '\\') {
            put_char(out, (char)c);
            continue;
        }
        if (p == e) return "the string has no closing quote";
        char x = *p++;
        switch (x) {
        case '"': case '\\': case '/': put_char(out, x); break;
        case 'b': put_char(out, '\b'); break;
        case 'f': put_char(out, '\f'); break;
        case 'n': put_char(out, '\n'); break;
        case 'r': put_char(out, '\r'); break;
        case 't': put_char(out, '\t'); break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(p, e, &cp)) return "\\u needs four hexadecimal digits";
            p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return "a lone low surrogate \\uDC00..\\uDFFF is not a character";
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (e - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, e, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return "a high surrogate \\uD800..\\uDBFF must be followed by a low one";
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            char u[4];
            size_t k;
            if (cp < 0x80) u[0] = (char)cp, k = 1;
            else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 63)), k = 2;
            else if (cp < 0x10000)
                u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 63)), u[2] = (char)(0x80 | (cp & 63)), k = 3;
            else
                u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 63)), u[2] = (char)(0x80 | ((cp >> 6) & 63)),
                u[3] = (char)(0x80 | (cp & 63)), k = 4;
            put_bytes(out, u, k);
            break;
        }
        default: return "unknown escape (JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)";
        }
    }
    if (skip_ws(p, e) != e) return "text after the JSON string (one string a line)";
    return NULL;
}

/* An id: an optional '-' and decimal digits, within int32 (the range against the vocabulary is the
 * decoder's check). Returns the end, or NULL. */
static const char *parse_id(const char *p, const char *e, int32_t *id) {
    int neg = p < e && *p == '-';
    if (neg) p++;
    int64_t v = 0;
    const char *d = p;
    while (p < e && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > 2147483648LL) return NULL;
    }
    if (p == d || (!neg && v > INT32_MAX)) return NULL;
    *id = (int32_t)(neg ? -v : v);
    return p;
}

/* Ids separated by white space (text mode), or a JSON array of integers (json). Returns NULL or why. */
static const char *parse_ids(const char *s, size_t n, int json, dp_bpe_ids *ids, char *why, size_t cap) {
    const char *p = s, *e = s + n;
    ids->n = 0;
    if (json) {
        p = skip_ws(p, e);
        if (p == e || *p != '[') return "expected a JSON array of ids ([15496, 995])";
        p = skip_ws(p + 1, e);
        if (p < e && *p == ']') p++;
        else
            for (;;) {
                int32_t id;
                const char *q = parse_id(p, e, &id);
                if (!q || (q < e && (*q == '.' || *q == 'e' || *q == 'E'))) {
                    snprintf(why, cap, "element %zu of the array is not an integer id", ids->n);
                    return why;
                }
                if (ids->n == ids->cap) {
                    ids->ids = realloc(ids->ids, (ids->cap = ids->cap ? 2 * ids->cap : 64) * sizeof *ids->ids);
                    if (!ids->ids) abort();
                }
                ids->ids[ids->n++] = id;
                p = skip_ws(q, e);
                if (p < e && *p == ',') {
                    p = skip_ws(p + 1, e);
                    continue;
                }
                if (p < e && *p == ']') {
                    p++;
                    break;
                }
                return "expected ',' or ']' in the array";
            }
        if (skip_ws(p, e) != e) return "text after the JSON array (one array a line)";
        return NULL;
    }
    for (;;) {
        while (p < e && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
        if (p == e) return NULL;
        int32_t id;
        const char *q = parse_id(p, e, &id);
        if (!q || (q < e && *q != ' ' && *q != '\t' && *q != '\r')) {
            const char *t = p;
            while (t < e && *t != ' ' && *t != '\t') t++;
            snprintf(why, cap, "'%.*s' is not a token id (expected integers separated by spaces)", (int)DP_MIN(t - p, 40), p);
            return why;
        }
        if (ids->n == ids->cap) {
            ids->ids = realloc(ids->ids, (ids->cap = ids->cap ? 2 * ids->cap : 64) * sizeof *ids->ids);
            if (!ids->ids) abort();
        }
        ids->ids[ids->n++] = id;
        p = q;
    }
}

/* ---- the command ----------------------------------------------------------------------------------- */

int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL;
    int decode = 0, json = 0, allow_special = 0, skip_special = 0, strict = 0, stats = 0;
    arg_spec specs[] = {
        ARG_S("tokenizer", &dir,
              "folder with tokenizer.json, vocab.json + merges.txt, or encoder.json + vocab.bpe (or a tokenizer.json file)"),
        ARG_F("decode", &decode, "read ids, write text (default: read text, write ids)"),
        ARG_F("json", &json, "each input and output line is JSON: a string of text, an array of ids"),
        ARG_F("allow-special", &allow_special,
              "encode: special tokens written in the text (<|endoftext|>) give their ids (default: they are ordinary text)"),
        ARG_F("skip-special", &skip_special, "decode: leave special tokens out of the text"),
        ARG_F("strict-utf8", &strict, "encode: refuse a line that is not valid UTF-8 (default: encode its bytes)"),
        ARG_F("stats", &stats, "at the end, print lines, bytes, tokens and the encoding speed to stderr"),
    };
    int nspecs = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse(CMD,
                        "GPT-2 byte-level BPE on stdin, one line at a time: text -> ids separated by spaces, or ids -> "
                        "text with\n--decode; with --json each line is a JSON string or a JSON array of ids. See "
                        "docs/tokenizer.md.",
                        specs, nspecs, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!dir) {
        fprintf(stderr, CMD ": --tokenizer is required (see --help)\n");
        return 2;
    }
    if (decode && (allow_special || strict)) {
        fprintf(stderr, CMD ": --%s applies to encoding, not to --decode\n", allow_special ? "allow-special" : "strict-utf8");
        return 2;
    }
    if (!decode && skip_special) {
        fprintf(stderr, CMD ": --skip-special applies to --decode\n");
        return 2;
    }
    dp_error err = {{0}};
    double t0 = dp_now();
    dp_bpe *tok = dp_bpe_load(dir, &err);
    if (!tok) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        return 2;
    }
    double t_load = dp_now() - t0, t_work = 0;
    unsigned flags = (allow_special ? DP_BPE_ALLOW_SPECIAL : 0) | (strict ? DP_BPE_STRICT_UTF8 : 0) |
                     (skip_special ? DP_BPE_SKIP_SPECIAL : 0);
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    char *line = NULL;
    size_t line_cap = 0, n_bytes = 0, n_tokens = 0;
    int64_t lineno = 0;
    ssize_t got;
    dp_bpe_ids ids = {0};
    dp_bpe_text text = {0}, out = {0};
    char why[160];
    rc = 0;
    while ((got = getline(&line, &line_cap, stdin)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n') len--;
        out.n = 0;
        const char *bad = NULL;
        if (!decode) {
            const char *s = line;
            if (json) {
                if ((bad = parse_json_string(line, len, &text))) goto bad_line;
                s = text.data ? text.data : "";
                len = text.n;
            }
            ids.n = 0;
            double t = dp_now();
            if (dp_bpe_encode(tok, s, len, flags, &ids, &err)) {
                bad = err.msg;
                goto bad_line;
            }
            t_work += dp_now() - t;
            n_bytes += len;
            n_tokens += ids.n;
            if (json) put_char(&out, '[');
            for (size_t i = 0; i < ids.n; i++) {
                if (i) put_char(&out, json ? ',' : ' ');
                put_int(&out, ids.ids[i]);
            }
            if (json) put_char(&out, ']');
        } else {
            if ((bad = parse_ids(line, len, json, &ids, why, sizeof why))) goto bad_line;
            text.n = 0;
            double t = dp_now();
            if (dp_bpe_decode(tok, ids.ids, ids.n, flags, &text, &err)) {
                bad = err.msg;
                goto bad_line;
            }
            t_work += dp_now() - t;
            n_bytes += text.n;
            n_tokens += ids.n;
            if (json) put_json_string(&out, (const unsigned char *)text.data, text.n);
            else put_bytes(&out, text.data, text.n);
        }
        put_char(&out, '\n');
        if (fwrite(out.data, 1, out.n, stdout) != out.n) {
            fprintf(stderr, CMD ": cannot write the output: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        continue;
    bad_line:
        fflush(stdout);
        fprintf(stderr, CMD ": stdin:%lld: %s\n", (long long)lineno, bad);
        rc = 2;
        break;
    }
    if (!rc && ferror(stdin)) {
        fprintf(stderr, CMD ": cannot read stdin: %s\n", strerror(errno));
        rc = 1;
    }
    if (fflush(stdout) != 0 && !rc) {
        fprintf(stderr, CMD ": cannot write the output: %s\n", strerror(errno));
        rc = 1;
    }
    if (stats && !rc)
        fprintf(stderr,
                CMD ": %lld lines, %zu bytes of text, %zu tokens (%.2f bytes/token); %s %.3f s = %.1f MB/s of text on one "
                    "thread; loading the tokenizer %.3f s (%s)\n",
                (long long)lineno, n_bytes, n_tokens, n_tokens ? (double)n_bytes / (double)n_tokens : 0.0,
                decode ? "decoding" : "encoding", t_work, t_work > 0 ? (double)n_bytes / t_work / 1e6 : 0.0, t_load,
                dp_bpe_source(tok));
    free(line);
    free(ids.ids);
    free(text.data);
    free(out.data);
    dp_bpe_free(tok);
    return rc;
}
