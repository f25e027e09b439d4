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

int dp_item_freq_load(double *p, const char *path, int32_t n_items, int64_t n_examples, dp_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return dp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    const double floor_p = 1.0 / (double)(n_examples > 0 ? n_examples : 1);
    p[0] = 1;
    for (int32_t i = 1; i <= n_items; i++) p[i] = floor_p;
    char line[4096];
    long ln = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            rc = dp_fail(err, "%s:%ld: line longer than %zu bytes", path, ln, sizeof line - 2);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = line, *end;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == 0 || *s == '\n' || *s == '\r') continue;
        errno = 0;
        long item = strtol(s, &end, 10);
        if (end == s || errno || item < 1 || item > n_items) {
            rc = dp_fail(err, "%s:%ld: item: expected an item id in 1..%d", path, ln, n_items);
            break;
        }
        s = end;
        double v = strtod(s, &end);
        if (end == s || !(v >= 0 && v <= 1)) {
            rc = dp_fail(err, "%s:%ld: fraction: expected a number in [0, 1]", path, ln);
            break;
        }
        for (s = end; *s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'; s++) {
        }
        if (*s) {
            rc = dp_fail(err, "%s:%ld: unexpected text after the fraction", path, ln);
            break;
        }
        p[item] = DP_MAX(floor_p, v);
    }
    if (!rc && ferror(f)) rc = dp_fail(err, "%s: read error", path);
    fclose(f);
    return rc;
}
