/* Item frequencies for Re-Attention: presence counts over training windows, their release with the
 * Gaussian mechanism (sensitivity √cap), and public frequencies read from a file. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/common.h"
#include "dpformer/itemfreq.h"

void dp_item_presence_counts(double *counts, const int32_t *ids, int64_t n, int L, int32_t n_items, int cap) {
    int32_t *seen = dp_malloc(sizeof(int32_t) * (size_t)(L > 0 ? L : 1));
    for (int64_t w = 0; w < n; w++) {
        const int32_t *x = ids + (size_t)w * L;
        int k = 0;
        for (int t = L - 1; t >= 0 && k < cap; t--) {
            int32_t id = x[t];
            if (id <= 0 || id > n_items) continue;
            int dup = 0;
            for (int j = 0; j < k && !dup; j++) dup = seen[j] == id;
            if (dup) continue;
            seen[k++] = id;
            counts[id] += 1;
        }
    }
    free(seen);
}

int dp_item_freq_release(double *p, const double *counts, int32_t n_items, int64_t n_examples, int cap, double sigma_f,
                         dp_rng *rng, dp_error *err) {
    if (n_examples < 1) return dp_fail(err, "item frequencies need at least one training example");
    if (cap < 1) return dp_fail(err, "item frequency cap must be at least 1 (got %d)", cap);
    if (!(sigma_f >= 0)) return dp_fail(err, "item frequency noise multiplier must be >= 0 (got %g)", sigma_f);
    double *noisy = dp_malloc(sizeof(double) * ((size_t)n_items + 1));
    for (int32_t i = 0; i <= n_items; i++) noisy[i] = counts[i];
    if (sigma_f > 0 && dp_noise_gaussian_add_f64(rng, noisy + 1, (size_t)n_items, sigma_f * sqrt((double)cap), err)) {
        free(noisy);
        return -1;
    }
    const double floor_p = 1.0 / (double)n_examples;
    p[0] = 1;
    for (int32_t i = 1; i <= n_items; i++) p[i] = DP_MIN(1.0, DP_MAX(floor_p, noisy[i] / (double)n_examples));
    free(noisy);
    return 0;
}

/* A printable copy of [b, e) for messages: cut to fit, a byte-order mark shown as U+FEFF, other bytes
 * outside printable ASCII as \xNN. */
static const char *show(const char *b, const char *e, char *buf, size_t cap) {
    size_t n = 0;
    const unsigned char *s = (const unsigned char *)b;
    while (s < (const unsigned char *)e && n + 12 < cap) {
        if (e - (const char *)s >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) {
            n += (size_t)snprintf(buf + n, cap - n, "<U+FEFF>");
            s += 3;
        } else if (*s >= 32 && *s < 127) {
            buf[n++] = (char)*s++;
        } else {
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02X", *s++);
        }
    }
    if (s < (const unsigned char *)e) n += (size_t)snprintf(buf + n, cap - n, "...");
    buf[n] = 0;
    return buf;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int dp_item_freq_load(double *p, const char *path, int32_t n_items, int64_t n_examples, dp_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return dp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    const double floor_p = 1.0 / (double)(n_examples > 0 ? n_examples : 1);
    p[0] = 1;
    for (int32_t i = 1; i <= n_items; i++) p[i] = floor_p;
    long *listed = dp_calloc((size_t)n_items + 1, sizeof(long)); /* line where each item was given, 0: not */
    char line[4096], tok[64];
    long ln = 0, entries = 0;
    int rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        ln++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            rc = dp_fail(err, "%s:%ld: line: longer than %zu bytes (expected `item fraction`)", path, ln, sizeof line - 2);
            break;
        }
        char *s = line, *end;
        /* a UTF-8 byte-order mark (U+FEFF) at the start of the file is not part of the first line */
        if (ln == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
            s += 3;
        char *hash = strchr(s, '#');
        if (hash) *hash = 0;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == 0 || *s == '\n' || *s == '\r') continue;
        for (end = s; *end && !is_blank(*end); end++) {
        }
        errno = 0;
        char *iend;
        long item = strtol(s, &iend, 10);
        if (iend != end || errno || item < 1 || item > n_items) {
            rc = dp_fail(err, "%s:%ld: item: '%s' is not an item id in 1..%d", path, ln, show(s, end, tok, sizeof tok),
                         n_items);
            break;
        }
        if (listed[item]) {
            rc = dp_fail(err, "%s:%ld: item: %ld is already listed on line %ld", path, ln, item, listed[item]);
            break;
        }
        for (s = end; *s == ' ' || *s == '\t'; s++) {
        }
        for (end = s; *end && !is_blank(*end); end++) {
        }
        if (s == end) {
            rc = dp_fail(err, "%s:%ld: fraction: missing (expected `item fraction`, the fraction in [0, 1])", path, ln);
            break;
        }
        char *fend;
        double v = strtod(s, &fend);
        if (fend != end || !(v >= 0 && v <= 1)) {
            rc = dp_fail(err, "%s:%ld: fraction: '%s' is not a number in [0, 1]", path, ln, show(s, end, tok, sizeof tok));
            break;
        }
        for (s = end; is_blank(*s); s++) {
        }
        if (*s) {
            for (end = s; *end && !is_blank(*end); end++) {
            }
            rc = dp_fail(err, "%s:%ld: fields: unexpected '%s' after the fraction (expected `item fraction`)", path, ln,
                         show(s, end, tok, sizeof tok));
            break;
        }
        listed[item] = ln;
        p[item] = DP_MAX(floor_p, v);
        entries++;
    }
    if (!rc && ferror(f)) rc = dp_fail(err, "%s: cannot read: %s", path, strerror(errno));
    if (!rc && entries == 0)
        rc = dp_fail(err, "%s: file: no `item fraction` lines (%s); public frequencies need at least one item", path,
                     ln ? "only blank lines and comments" : "the file is empty");
    fclose(f);
    free(listed);
    return rc;
}
