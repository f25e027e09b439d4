/* Item frequencies for Re-Attention: distinct-presence counts with the per-example cap, the Gaussian
 * release (exact at σ_f = 0, noise std σ_f·√cap on the counts, floor 1/N), public frequency files and
 * their errors (file:line: field; an empty file refused). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "dpformer/itemfreq.h"
#include "testutil.h"

static void counts(void) {
    /* 3 windows of L 6: repeats count once; the cap keeps the latest distinct items */
    const int32_t ids[18] = {0, 0, 2, 3, 2, 2, /**/ 1, 2, 3, 4, 5, 1, /**/ 0, 0, 0, 0, 0, 0};
    double c[7] = {0};
    dp_item_presence_counts(c, ids, 3, 6, 6, 100);
    const double want[7] = {0, 1, 2, 2, 1, 1, 0};
    for (int i = 1; i <= 6; i++) CHECK(c[i] == want[i]);
    double c2[7] = {0};
    dp_item_presence_counts(c2, ids, 3, 6, 6, 2); /* window 1 keeps 2,3; window 2 keeps 1,5 */
    const double want2[7] = {0, 1, 1, 1, 0, 1, 0};
    for (int i = 1; i <= 6; i++) CHECK(c2[i] == want2[i]);
}

static void release(void) {
    const int V = 20000;
    const int64_t N = 1000000;
    double *c = calloc(V + 1, sizeof(double)), *p = malloc(sizeof(double) * (V + 1));
    for (int i = 1; i <= V; i++) c[i] = 1000 + i % 7;
    dp_error err;
    CHECK(dp_item_freq_release(p, c, V, N, 4, 0, NULL, &err) == 0);
    for (int i = 1; i <= V; i++) CHECK(p[i] == c[i] / N);
    dp_rng *r = dp_rng_create_seeded(5);
    CHECK(dp_item_freq_release(p, c, V, N, 4, 3.0, r, &err) == 0);
    double s = 0, s2 = 0;
    for (int i = 1; i <= V; i++) {
        double d = p[i] * N - c[i];
        s += d;
        s2 += d * d;
    }
    double sd = sqrt(s2 / V - (s / V) * (s / V));
    CHECK(fabs(sd - 6.0) < 6.0 * 0.03); /* σ_f √cap = 3 · 2; 20,000 draws: standard error 0.5 % */
    /* the floor: tiny counts never give p below 1/N */
    for (int i = 1; i <= V; i++) c[i] = 0;
    CHECK(dp_item_freq_release(p, c, V, N, 4, 3.0, r, &err) == 0);
    int at_floor = 0;
    for (int i = 1; i <= V; i++) {
        CHECK(p[i] >= 1.0 / N);
        at_floor += p[i] == 1.0 / N;
    }
    CHECK(at_floor > V / 3);
    CHECK(dp_item_freq_release(p, c, V, 0, 4, 1, r, &err) != 0);
    CHECK(dp_item_freq_release(p, c, V, N, 0, 1, r, &err) != 0);
    dp_rng_free(r);
    free(c);
    free(p);
}

static int load_text(const char *text, double *p, dp_error *err) {
    char path[] = "/tmp/dpformer-itemfreq-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    int rc = dp_item_freq_load(p, path, 5, 100, err);
    remove(path);
    return rc;
}

static void load(void) {
    double p[6];
    dp_error err;
    CHECK(load_text("# public frequencies\n1 0.5\n3 0.25   # comment\n\n5 0.0001\r\n", p, &err) == 0);
    CHECK(p[1] == 0.5 && p[3] == 0.25);
    CHECK(p[2] == 0.01 && p[4] == 0.01 && p[5] == 0.01); /* unlisted and tiny: the floor 1/N */
    CHECK(load_text("1 0.5\n7 0.1\n", p, &err) != 0 && strstr(err.msg, ":2: item") != NULL);
    CHECK(load_text("1 1.5\n", p, &err) != 0 && strstr(err.msg, ":1: fraction") != NULL);
    CHECK(load_text("1 0.5 x\n", p, &err) != 0 && strstr(err.msg, ":1:") != NULL);
    CHECK(load_text("abc\n", p, &err) != 0 && strstr(err.msg, ":1: item: 'abc'") != NULL);
    /* every error names the file, the line and the field */
    CHECK(load_text("1 0.5\n1.5\n", p, &err) != 0 && strstr(err.msg, ":2: item: '1.5'") != NULL);
    CHECK(load_text("1 0.5\n2\n", p, &err) != 0 && strstr(err.msg, ":2: fraction: missing") != NULL);
    CHECK(load_text("1 0.5x\n", p, &err) != 0 && strstr(err.msg, ":1: fraction: '0.5x'") != NULL);
    CHECK(load_text("1 0.5 x\n", p, &err) != 0 && strstr(err.msg, ":1: fields: unexpected 'x'") != NULL);
    CHECK(load_text("1 0.5\n\n1 0.25\n", p, &err) != 0 && strstr(err.msg, ":3: item: 1 is already listed on line 1"));
    CHECK(load_text("1 nan\n", p, &err) != 0 && strstr(err.msg, ":1: fraction") != NULL);
    /* a file without any entry is refused, not taken as "every item at the floor" */
    CHECK(load_text("", p, &err) != 0 && strstr(err.msg, "file: no `item fraction` lines") != NULL);
    CHECK(load_text("# only a comment\n\n  \n", p, &err) != 0 && strstr(err.msg, "only blank lines and comments"));
    /* a byte-order mark starts the file (accepted); elsewhere it is shown by name, not as raw bytes */
    CHECK(load_text("\xEF\xBB\xBF" "2 0.5\n", p, &err) == 0 && p[2] == 0.5);
    CHECK(load_text("1 0.5\n\xEF\xBB\xBF" "2 0.5\n", p, &err) != 0 && strstr(err.msg, ":2: item: '<U+FEFF>2'") != NULL);
    CHECK(load_text("\xE9 0.5\n", p, &err) != 0 && strstr(err.msg, "'\\xE9'") != NULL);
    CHECK(dp_item_freq_load(p, "/nonexistent/freq.txt", 5, 100, &err) != 0 && strstr(err.msg, "cannot open") != NULL);
}

int main(void) {
    counts();
    release();
    load();
    return tu_finish("test_itemfreq");
}
