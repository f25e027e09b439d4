/* Dataset loaders on small files written here: every format, the re-indexing rule, chronological
 * ordering with ties, format detection, and every malformed-input case (which must fail with a
 * message "path:line: field: problem", never crash or truncate silently). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dpformer/data.h"
#include "testutil.h"

static char g_dir[256];
static char g_paths[64][512];
static int g_npaths = 0;

/* Writes `len` bytes (len < 0: strlen) to dir/name and returns the path. */
static const char *write_file(const char *name, const char *content, long len) {
    char *p = g_paths[g_npaths++];
    snprintf(p, 512, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        exit(1);
    }
    size_t n = len < 0 ? strlen(content) : (size_t)len;
    if (n && fwrite(content, 1, n, f) != n) exit(1);
    fclose(f);
    return p;
}

/* The user's items as raw ids, so expectations do not depend on the re-indexing. */
static int user_raw_seq_is(const dp_dataset *ds, int32_t u, const int64_t *raw, int n) {
    if (dp_user_len(ds, u) != n) return 0;
    for (int k = 0; k < n; k++)
        if (ds->item_raw_ids[ds->items[ds->offsets[u] + k]] != raw[k]) return 0;
    return 1;
}

/* A load that must succeed; on failure the message is shown and the calling test stops. */
#define LOAD_OK(path, fmt)                                         \
    do {                                                           \
        int rc_ = dp_dataset_load(&ds, (path), (fmt), &err);       \
        CHECK(rc_ == 0);                                           \
        if (rc_) {                                                 \
            fprintf(stderr, "  unexpected error: %s\n", err.msg); \
            return;                                                \
        }                                                          \
    } while (0)

static int is_zeroed(const dp_dataset *ds) {
    return ds->n_users == 0 && ds->n_items == 0 && ds->items == NULL && ds->offsets == NULL;
}

/* Load must fail, leave ds empty, and the message must start with "path:line: field:". */
static void expect_error(const char *name, const char *content, long len, dp_data_format fmt, int line,
                         const char *field, const char *phrase) {
    const char *path = write_file(name, content, len);
    dp_dataset ds;
    dp_error err = {{0}};
    int rc = dp_dataset_load(&ds, path, fmt, &err);
    CHECK(rc != 0);
    CHECK(is_zeroed(&ds));
    char prefix[700];
    snprintf(prefix, sizeof prefix, "%s:%d: %s:", path, line, field);
    int ok = strncmp(err.msg, prefix, strlen(prefix)) == 0 && (!phrase || strstr(err.msg, phrase));
    CHECK(ok);
    if (!ok) fprintf(stderr, "  expected '%s ... %s', got '%s'\n", prefix, phrase ? phrase : "", err.msg);
    if (rc == 0) dp_dataset_free(&ds);
}

static void test_interactions(void) {
    /* user 3's lines are not contiguous: they are grouped in file order */
    const char *p = write_file("a.txt", "3 10\n3 20\n1 20\n1 30\n3 10\n", -1);
    dp_dataset ds;
    dp_error err;
    LOAD_OK(p, DP_FMT_INTERACTIONS);
    CHECK(ds.n_users == 2 && ds.n_items == 3 && ds.n_interactions == 5);
    /* users by raw id; items by first appearance walking users in that order, chronologically */
    CHECK(ds.user_raw_ids[0] == 1 && ds.user_raw_ids[1] == 3);
    CHECK(ds.item_raw_ids[1] == 20 && ds.item_raw_ids[2] == 30 && ds.item_raw_ids[3] == 10);
    int32_t want[] = {1, 2, 3, 1, 3};
    CHECK(memcmp(ds.items, want, sizeof want) == 0);
    CHECK(ds.offsets[0] == 0 && ds.offsets[1] == 2 && ds.offsets[2] == 5);
    dp_dataset_free(&ds);
    CHECK(is_zeroed(&ds));

    /* timestamps: chronological per user, ties in file order */
    p = write_file("b.txt", "1 5 100\n1 6 50\n2 5 1\n1 7 100\n1 8 50\n", -1);
    LOAD_OK(p, DP_FMT_INTERACTIONS);
    int64_t u1[] = {6, 8, 5, 7}, u2[] = {5};
    CHECK(ds.n_users == 2 && user_raw_seq_is(&ds, 0, u1, 4) && user_raw_seq_is(&ds, 1, u2, 1));
    CHECK(ds.items[0] == 1 && ds.items[4] == ds.items[2]); /* item 5 keeps one id across users */
    dp_dataset_free(&ds);

    /* the largest id is accepted; CRLF, blank lines and a last line without newline too */
    p = write_file("c.txt", "\r\n2147483647 2147483647\r\n  \n\t\n1 1\r\n1 2", -1);
    LOAD_OK(p, DP_FMT_INTERACTIONS);
    CHECK(ds.n_users == 2 && ds.n_interactions == 3 && ds.user_raw_ids[1] == 2147483647);
    int64_t c0[] = {1, 2};
    CHECK(user_raw_seq_is(&ds, 0, c0, 2));
    dp_dataset_free(&ds);

    /* a leading UTF-8 byte-order mark is not data; one elsewhere is named as such */
    p = write_file("bom.txt", "\xEF\xBB\xBF" "1 5\n1 6\n", -1);
    LOAD_OK(p, DP_FMT_INTERACTIONS);
    CHECK(ds.n_users == 1 && ds.n_interactions == 2 && ds.user_raw_ids[0] == 1);
    dp_dataset_free(&ds);
    expect_error("bom2.txt", "1 5\n\xEF\xBB\xBF" "1 6\n", -1, DP_FMT_INTERACTIONS, 2, "user", "<U+FEFF>1");
    expect_error("latin1.txt", "1 5\n1 \xE9\n", -1, DP_FMT_INTERACTIONS, 2, "item", "\\xE9");
}

static void test_sequences(void) {
    const char *p = write_file("s.txt", "2 4 5 6\r\n\r\n1 7 4\r\n3 4", -1);
    dp_dataset ds;
    dp_error err;
    LOAD_OK(p, DP_FMT_SEQUENCES);
    CHECK(ds.n_users == 3 && ds.n_items == 4 && ds.n_interactions == 6);
    int32_t want[] = {1, 2, 2, 3, 4, 2}; /* 7->1, 4->2, 5->3, 6->4 */
    CHECK(memcmp(ds.items, want, sizeof want) == 0);
    CHECK(ds.user_raw_ids[0] == 1 && ds.user_raw_ids[2] == 3);
    dp_dataset_free(&ds);
}

static void test_movielens(void) {
    /* u.data: order by time, ties by file order; ratings are not used */
    const char *p = write_file("u.data", "1\t10\t3\t200\n1\t11\t4\t100\n2\t10\t5\t100\n1\t12\t1\t200\n", -1);
    dp_dataset ds;
    dp_error err;
    LOAD_OK(p, DP_FMT_UDATA);
    int64_t a[] = {11, 10, 12}, b[] = {10};
    CHECK(ds.n_users == 2 && user_raw_seq_is(&ds, 0, a, 3) && user_raw_seq_is(&ds, 1, b, 1));
    dp_dataset_free(&ds);

    p = write_file("ratings.dat", "5::10::3::978300760\r\n5::11::4.5::978300700\r\n3::12::1::5\r\n5::13::2::978300760", -1);
    LOAD_OK(p, DP_FMT_ML_DAT);
    int64_t c[] = {12}, d[] = {11, 10, 13};
    CHECK(ds.n_users == 2 && ds.user_raw_ids[0] == 3 && user_raw_seq_is(&ds, 0, c, 1) && user_raw_seq_is(&ds, 1, d, 3));
    CHECK(ds.item_raw_ids[1] == 12 && ds.item_raw_ids[2] == 11);
    dp_dataset_free(&ds);
}

static void test_detect(void) {
    dp_data_format f = DP_FMT_AUTO;
    dp_error err;
    const char *names[] = {"auto", "interactions", "sequences", "ml-dat", "u.data"};
    for (int i = 0; i < 5; i++) {
        CHECK(dp_data_format_parse(names[i], &f) == 0 && (int)f == i);
        CHECK(strcmp(dp_data_format_name(f), names[i]) == 0);
    }
    CHECK(dp_data_format_parse("csv", &f) != 0);

    struct {
        const char *name, *content;
        dp_data_format want;
    } cases[] = {
        {"x.dat", "\n1::2::5::100\n", DP_FMT_ML_DAT},
        {"u.data", "1 2\n", DP_FMT_UDATA},
        {"my_sequences.txt", "1 2\n2 3\n", DP_FMT_SEQUENCES},
        {"my_interactions.txt", "1 2 3 4\n", DP_FMT_INTERACTIONS},
        {"plain1.txt", "1 2\n1 3 5\n", DP_FMT_INTERACTIONS},
        {"plain2.txt", "1 2\n2 3 4 5\n", DP_FMT_SEQUENCES},
        {"plain3.txt", "1\t2\t5\t100\n2\t3\t4\t101\n", DP_FMT_UDATA},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = write_file(cases[i].name, cases[i].content, -1);
        f = DP_FMT_AUTO;
        CHECK(dp_data_format_detect(p, &f, &err) == 0);
        CHECK(f == cases[i].want);
        if (f != cases[i].want) fprintf(stderr, "  %s detected as %s\n", cases[i].name, dp_data_format_name(f));
    }
    /* auto in dp_dataset_load gives the same result as an explicit format */
    const char *p = write_file("auto_sequences.txt", "1 3 4 5\n2 4\n", -1);
    dp_dataset ds;
    LOAD_OK(p, DP_FMT_AUTO);
    CHECK(ds.n_users == 2 && ds.n_interactions == 4);
    dp_dataset_free(&ds);
    dp_data_format used = DP_FMT_AUTO;
    CHECK(dp_dataset_load_detected(&ds, p, DP_FMT_AUTO, &used, &err) == 0 && used == DP_FMT_SEQUENCES);
    dp_dataset_free(&ds);
    CHECK(dp_dataset_load_detected(&ds, p, DP_FMT_INTERACTIONS, &used, &err) != 0 && used == DP_FMT_INTERACTIONS);
}

static void test_file_errors(void) {
    dp_dataset ds;
    dp_error err = {{0}};
    char missing[600];
    snprintf(missing, sizeof missing, "%s/does-not-exist.txt", g_dir);
    CHECK(dp_dataset_load(&ds, missing, DP_FMT_AUTO, &err) != 0);
    CHECK(strstr(err.msg, missing) && strstr(err.msg, "cannot open"));
    CHECK(is_zeroed(&ds));
    CHECK(dp_dataset_load(&ds, g_dir, DP_FMT_INTERACTIONS, &err) != 0); /* a directory */
    CHECK(strstr(err.msg, g_dir) != NULL);

    const char *p = write_file("empty.txt", "", 0);
    for (int fmt = 0; fmt <= DP_FMT_UDATA; fmt++) {
        CHECK(dp_dataset_load(&ds, p, (dp_data_format)fmt, &err) != 0);
        CHECK(strstr(err.msg, p) && strstr(err.msg, "empty"));
    }
    p = write_file("blank.txt", "\n \r\n\t\n", -1);
    CHECK(dp_dataset_load(&ds, p, DP_FMT_INTERACTIONS, &err) != 0);
    CHECK(strstr(err.msg, p) && strstr(err.msg, "no interactions"));
    CHECK(dp_data_format_detect(p, &(dp_data_format){0}, &err) != 0);
}

static void test_field_errors(void) {
    const dp_data_format I = DP_FMT_INTERACTIONS, S = DP_FMT_SEQUENCES, U = DP_FMT_UDATA, M = DP_FMT_ML_DAT;
    expect_error("e1.txt", "1 2\n1 abc\n", -1, I, 2, "item", "not an integer");
    expect_error("e2.txt", "1 2\nx 5\n", -1, I, 2, "user", "not an integer");
    expect_error("e3.txt", "1 -5\n", -1, I, 1, "item", "negative");
    expect_error("e4.txt", "1 2\n\n0 5\n", -1, I, 3, "user", "not a valid id");
    expect_error("e5.txt", "1 2147483648\n", -1, I, 1, "item", "too large");
    expect_error("e6.txt", "99999999999999999999999 1\n", -1, I, 1, "user", "too large");
    expect_error("e7.txt", "1 2 3 4\n", -1, I, 1, "fields", "found 4");
    expect_error("e8.txt", "1\n", -1, I, 1, "fields", "found 1");
    expect_error("e9.txt", "1 2 100\n1 3\n", -1, I, 2, "fields", "line 1");
    expect_error("e10.txt", "1 2 100\n1 3 1e5\n", -1, I, 2, "timestamp", "not an integer");
    expect_error("e11.txt", "1 2.0\n", -1, I, 1, "item", "not an integer");
    expect_error("e12.txt", "1 2\r3 4\n", -1, I, 1, "line", "carriage return");
    static const char nul_line[] = "1 2\n1 3\0\n";
    expect_error("e13.txt", nul_line, (long)sizeof nul_line - 1, I, 2, "item", "not an integer");
    /* sequences */
    expect_error("e20.txt", "1 2 3\n2 4\n1 5 6\n", -1, S, 3, "user", "line 1");
    expect_error("e21.txt", "1 2 3\n2\n", -1, S, 2, "fields", "no items");
    expect_error("e22.txt", "1 2 x 4\n", -1, S, 1, "item (column 3)", "not an integer");
    expect_error("e23.txt", "1 2 0\n", -1, S, 1, "item (column 3)", "not a valid id");
    /* MovieLens */
    expect_error("e30.data", "1\t2\t3\n", -1, U, 1, "fields", "found 3");
    expect_error("e31.data", "1\t2\tgood\t100\n", -1, U, 1, "rating", "not a number");
    expect_error("e32.data", "1\t2\t3\t100\n1\t2\t3\tnow\n", -1, U, 2, "timestamp", "not an integer");
    expect_error("e33.dat", "1::2::3\n", -1, M, 1, "fields", "found 3");
    expect_error("e34.dat", "1::2::3::4::5\n", -1, M, 1, "fields", "found 5");
    expect_error("e35.dat", "1::2::3::4\n1:: 2::3::4\n", -1, M, 2, "item", "not an integer");
    expect_error("e36.dat", "-1::2::3::4\n", -1, M, 1, "user", "negative");

    /* an overlong line is reported, not split into several records */
    size_t n = DP_DATA_MAX_LINE + 16;
    char *big = malloc(n + 16);
    memcpy(big, "1 2\n", 4);
    memset(big + 4, '7', n);
    big[4] = '1';
    big[5] = ' ';
    memcpy(big + 4 + n, "\n1 3\n", 5);
    expect_error("e40.txt", big, (long)(n + 9), I, 2, "line", "limit");
    expect_error("e41.txt", big, (long)(n + 9), S, 2, "line", "limit");
    /* a line of exactly the limit is fine (sequences: one user with many items) */
    size_t m = DP_DATA_MAX_LINE;
    memset(big, ' ', m);
    big[0] = '9';
    for (size_t k = 2; k + 2 < m; k += 8) memcpy(big + k, "12345", 5);
    big[m] = '\n';
    const char *p = write_file("ok_long.txt", big, (long)m + 1);
    free(big);
    dp_dataset ds;
    dp_error err;
    LOAD_OK(p, S);
    CHECK(ds.n_users == 1 && ds.n_items == 1 && ds.n_interactions == (int64_t)((m - 4) / 8 + 1));
    dp_dataset_free(&ds);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/dpformer-loaders-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_interactions();
    test_sequences();
    test_movielens();
    test_detect();
    test_file_errors();
    test_field_errors();
    for (int i = 0; i < g_npaths; i++) unlink(g_paths[i]);
    rmdir(g_dir);
    return tu_finish("test_data_loaders");
}
