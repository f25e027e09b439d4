/* Text classification data: the TSV loader on small inputs (from memory and from files written here),
 * every malformed-input case (each must fail with "name:line: field: problem" and leave the dataset
 * empty), the byte-level tokenizer (ids, padding, truncation, round trips, no state learned from
 * data), length statistics, and, when $DPFORMER_DATA/sst2 exists, the real GLUE SST-2 files. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dpformer/text.h"
#include "testutil.h"

/* The vocabulary is a compile-time constant: nothing about it can depend on loaded data. */
_Static_assert(DP_TEXT_VOCAB == 259, "byte-level vocabulary: 3 special ids + 256 bytes");
_Static_assert(DP_TEXT_BYTE0 + 256 == DP_TEXT_VOCAB, "byte ids end at the vocabulary size");
_Static_assert(DP_TEXT_PAD == 0, "padding id is 0");

static char g_dir[256];
static char g_paths[256][512];
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

static int is_zeroed(const dp_text_dataset *ds) {
    return ds->n == 0 && ds->n_classes == 0 && !ds->labels && !ds->offsets && !ds->text && !ds->text_column;
}

/* Example i has this label and exactly this text. */
static int example_is(const dp_text_dataset *ds, int64_t i, int32_t label, const char *text) {
    size_t n = strlen(text);
    return i < ds->n && ds->labels[i] == label && dp_text_len(ds, i) == (int64_t)n &&
           memcmp(dp_text_ptr(ds, i), text, n) == 0;
}

/* Parse from memory; on failure show the message. */
static int parse(dp_text_dataset *ds, const char *s, long len, const dp_text_options *opt) {
    dp_error err = {{0}};
    int rc = dp_text_parse(ds, s, len < 0 ? strlen(s) : (size_t)len, "mem.tsv", opt, &err);
    if (rc) fprintf(stderr, "  unexpected error: %s\n", err.msg);
    return rc;
}

/* The message starts with "prefix" and contains phrase. */
static void check_msg(const char *msg, const char *prefix, const char *phrase) {
    int ok = strncmp(msg, prefix, strlen(prefix)) == 0 && (!phrase || strstr(msg, phrase));
    CHECK(ok);
    if (!ok) fprintf(stderr, "  expected '%s ... %s', got '%s'\n", prefix, phrase ? phrase : "", msg);
}

/* The input must be rejected, from memory and from a file, with "name:line: field:" (line 0: no line
 * number, "name: field:") and the phrase in the message, and leave the dataset zeroed. */
static void expect_error(const char *content, long len, const dp_text_options *opt, int line, const char *field,
                         const char *phrase) {
    size_t n = len < 0 ? strlen(content) : (size_t)len;
    char prefix[700];
    for (int from_file = 0; from_file < 2; from_file++) {
        char fname[32];
        snprintf(fname, sizeof fname, "bad%d.tsv", g_npaths);
        const char *name = from_file ? write_file(fname, content, (long)n) : "buf.tsv";
        dp_text_dataset ds;
        dp_error err = {{0}};
        int rc = from_file ? dp_text_load(&ds, name, opt, &err) : dp_text_parse(&ds, content, n, name, opt, &err);
        CHECK(rc != 0);
        CHECK(is_zeroed(&ds));
        if (line > 0) snprintf(prefix, sizeof prefix, "%s:%d: %s:", name, line, field);
        else snprintf(prefix, sizeof prefix, "%s: %s:", name, field);
        check_msg(err.msg, prefix, phrase);
        if (rc == 0) dp_text_dataset_free(&ds);
    }
}

/* ---- loader: valid inputs ----------------------------------------------------------------------- */

static void test_basic(void) {
    dp_text_dataset ds;
    if (parse(&ds, "label\tsentence\n0\thello world\n1\t  a \"quoted\" , text  \n", -1, NULL)) {
        CHECK(0);
        return;
    }
    CHECK(ds.n == 2 && ds.n_classes == 2);
    CHECK(example_is(&ds, 0, 0, "hello world"));
    CHECK(example_is(&ds, 1, 1, "a \"quoted\" , text")); /* quotes are ordinary bytes; spaces trimmed */
    CHECK(strcmp(ds.text_column, "sentence") == 0);
    CHECK(ds.offsets[0] == 0 && ds.offsets[2] == 11 + 17);
    int64_t counts[2];
    dp_text_label_counts(&ds, counts);
    CHECK(counts[0] == 1 && counts[1] == 1);
    dp_text_dataset_free(&ds);
    CHECK(is_zeroed(&ds));
    dp_text_dataset_free(&ds); /* freeing twice (after the reset) is harmless */
    dp_text_dataset_free(NULL);
}

static void test_line_ends(void) {
    dp_text_dataset ds;
    /* CRLF everywhere, last line without a line end */
    if (!parse(&ds, "label\tsentence\r\n1\tfirst one\r\n0\tsecond", -1, NULL)) {
        CHECK(ds.n == 2 && example_is(&ds, 0, 1, "first one") && example_is(&ds, 1, 0, "second"));
        dp_text_dataset_free(&ds);
    } else CHECK(0);
    /* LF, no final line end */
    if (!parse(&ds, "label\tsentence\n1\tx", -1, NULL)) {
        CHECK(ds.n == 1 && example_is(&ds, 0, 1, "x"));
        dp_text_dataset_free(&ds);
    } else CHECK(0);
    /* empty lines (in the middle, and at the end, CRLF too) are skipped */
    if (!parse(&ds, "label\tsentence\n\n1\ta\r\n\r\n0\tb\n\n\n", -1, NULL)) {
        CHECK(ds.n == 2 && example_is(&ds, 0, 1, "a") && example_is(&ds, 1, 0, "b"));
        dp_text_dataset_free(&ds);
    } else CHECK(0);
    /* a UTF-8 byte order mark before the header is not part of the first column name */
    if (!parse(&ds, "\xEF\xBB\xBFlabel\tsentence\n1\tok\n", -1, NULL)) {
        CHECK(ds.n == 1 && example_is(&ds, 0, 1, "ok"));
        dp_text_dataset_free(&ds);
    } else CHECK(0);
}

static void test_columns(void) {
    dp_text_dataset ds;
    /* column order swapped */
    if (!parse(&ds, "sentence\tlabel\nswapped columns\t1\n", -1, NULL)) {
        CHECK(ds.n == 1 && example_is(&ds, 0, 1, "swapped columns"));
        dp_text_dataset_free(&ds);
    } else CHECK(0);
    /* fallback text column "content" (GLUE SST-2 test.tsv) */
    if (!parse(&ds, "label\tcontent\n0\tfrom content\n", -1, NULL)) {
        CHECK(ds.n == 1 && example_is(&ds, 0, 0, "from content") && strcmp(ds.text_column, "content") == 0);
        dp_text_dataset_free(&ds);
    } else CHECK(0);
    /* both present: "sentence" comes first in the fallback list */
    if (!parse(&ds, "content\tlabel\tsentence\nC\t1\tS\n", -1, NULL)) {
        CHECK(ds.n == 1 && example_is(&ds, 0, 1, "S") && strcmp(ds.text_column, "sentence") == 0);
        dp_text_dataset_free(&ds);
    } else CHECK(0);
    CHECK(strcmp(dp_text_default_text_columns[0], "sentence") == 0);
    CHECK(strcmp(dp_text_default_text_columns[1], "content") == 0 && dp_text_default_text_columns[2] == NULL);
    /* named columns, extra columns, spaces around header names and labels, 3 classes */
    dp_text_options opt = {0};
    opt.label_column = "polarity";
    opt.text_column = "text";
    opt.n_classes = 3;
    if (!parse(&ds, "index\t text \tpolarity\n7\tgood\t 2 \n8\tbad\t0\n9\tso-so\t+1\n", -1, &opt)) {
        CHECK(ds.n == 3 && ds.n_classes == 3 && strcmp(ds.text_column, "text") == 0);
        CHECK(example_is(&ds, 0, 2, "good") && example_is(&ds, 1, 0, "bad") && example_is(&ds, 2, 1, "so-so"));
        int64_t counts[3];
        dp_text_label_counts(&ds, counts);
        CHECK(counts[0] == 1 && counts[1] == 1 && counts[2] == 1);
        dp_text_dataset_free(&ds);
    } else CHECK(0);
    /* an explicit text column gets no fallback: "sentence" is not used when "text" is asked for */
    opt = (dp_text_options){0};
    opt.text_column = "text";
    expect_error("label\tsentence\n0\tx\n", -1, &opt, 1, "header", "'text'");
    /* dp_text_options_default gives the same result as NULL options */
    dp_text_options_default(&opt);
    CHECK(strcmp(opt.label_column, "label") == 0 && opt.text_column == NULL && opt.n_classes == 2 &&
          opt.max_line == DP_TEXT_MAX_LINE && opt.accept_invalid_utf8 == 0);
    if (!parse(&ds, "label\tsentence\n1\tdefaults\n", -1, &opt)) {
        CHECK(ds.n == 1 && example_is(&ds, 0, 1, "defaults"));
        dp_text_dataset_free(&ds);
    } else CHECK(0);
}

static void test_from_file(void) {
    const char *content = "label\tsentence\r\n0\tthe same bytes\r\n1\tcrème brûlée , 日本語\r\n";
    const char *path = write_file("ok.tsv", content, -1);
    dp_text_dataset a, b;
    dp_error err;
    int rc = dp_text_load(&a, path, NULL, &err);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "  unexpected error: %s\n", err.msg);
        return;
    }
    if (parse(&b, content, -1, NULL)) {
        CHECK(0);
        dp_text_dataset_free(&a);
        return;
    }
    CHECK(a.n == 2 && b.n == 2 && a.offsets[2] == b.offsets[2]);
    CHECK(memcmp(a.text, b.text, (size_t)a.offsets[2]) == 0 && memcmp(a.labels, b.labels, 2 * sizeof(int32_t)) == 0);
    CHECK(example_is(&a, 1, 1, "crème brûlée , 日本語"));
    dp_text_dataset_free(&a);
    dp_text_dataset_free(&b);
}

static void test_limits_and_utf8_option(void) {
    dp_text_dataset ds;
    dp_text_options opt = {0};
    opt.max_line = 16; /* "1\tabcdefghijklmn" is exactly 16 bytes (the line end does not count) */
    if (!parse(&ds, "label\tsentence\r\n1\tabcdefghijklmn\r\n", -1, &opt)) {
        CHECK(ds.n == 1 && example_is(&ds, 0, 1, "abcdefghijklmn"));
        dp_text_dataset_free(&ds);
    } else CHECK(0);
    expect_error("label\tsentence\n1\tabcdefghijklmno\n", -1, &opt, 2, "line", "17 bytes, longer than the 16-byte");
    /* invalid UTF-8 accepted as bytes when asked */
    opt = (dp_text_options){0};
    opt.accept_invalid_utf8 = 1;
    if (!parse(&ds, "label\tsentence\n0\tcaf\xE9 \xFF\xC0\xAF\n", -1, &opt)) {
        CHECK(ds.n == 1 && example_is(&ds, 0, 0, "caf\xE9 \xFF\xC0\xAF"));
        dp_text_dataset_free(&ds);
    } else CHECK(0);
    /* ...but NUL is refused even then */
    expect_error("label\tsentence\n0\ta\0b\n", 21, &opt, 2, "sentence", "NUL");
    /* valid UTF-8 of every length, including the largest code point, is accepted by default */
    if (!parse(&ds, "label\tsentence\n1\t$ \xC2\xA2 \xE2\x82\xAC \xF0\x90\x8D\x88 \xF4\x8F\xBF\xBF\n", -1, NULL)) {
        CHECK(ds.n == 1);
        dp_text_dataset_free(&ds);
    } else CHECK(0);
}

/* ---- loader: every malformed input -------------------------------------------------------------- */

static void test_errors(void) {
    dp_text_dataset ds;
    dp_error err = {{0}};
    /* missing file, and a directory */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/does-not-exist.tsv", g_dir);
    CHECK(dp_text_load(&ds, missing, NULL, &err) != 0 && is_zeroed(&ds));
    char prefix[700];
    snprintf(prefix, sizeof prefix, "%s:", missing);
    check_msg(err.msg, prefix, "cannot open");
    CHECK(dp_text_load(&ds, g_dir, NULL, &err) != 0 && is_zeroed(&ds));
    CHECK(strstr(err.msg, g_dir) != NULL);
    /* NULL buffer, default name */
    CHECK(dp_text_parse(&ds, NULL, 0, NULL, NULL, &err) != 0);
    check_msg(err.msg, "<memory>: file:", "empty");
    CHECK(dp_text_parse(&ds, "x", 1, "e.tsv", NULL, NULL) != 0); /* err may be NULL */

    /* empty inputs */
    expect_error("", 0, NULL, 0, "file", "empty");
    expect_error("\n\r\n\n", -1, NULL, 0, "file", "empty");
    expect_error("\xEF\xBB\xBF", -1, NULL, 0, "file", "empty");
    expect_error("label\tsentence\n", -1, NULL, 0, "file", "no examples");
    expect_error("label\tsentence", -1, NULL, 0, "file", "no examples");
    expect_error("label\tsentence\n\n\n", -1, NULL, 0, "file", "no examples");
    /* header problems */
    expect_error("0\thello\n1\tworld\n", -1, NULL, 1, "header", "looks like data");
    expect_error("\nlabel\tsentence\n0\tx\n", -1, NULL, 1, "header", "first line is empty");
    expect_error("lab\tsentence\n0\tx\n", -1, NULL, 1, "header", "'label'");
    expect_error("label\ttext\n0\tx\n", -1, NULL, 1, "header", "'sentence', 'content'");
    expect_error("label\tsentence\tlabel\n0\tx\t1\n", -1, NULL, 1, "header", "appears twice");
    expect_error("label\tsentence\t\xFF\n0\tx\t1\n", -1, NULL, 1, "header (column 3)", "invalid UTF-8");
    dp_text_options same = {0};
    same.text_column = "label";
    expect_error("label\tsentence\n0\tx\n", -1, &same, 1, "header", "same column");
    /* options */
    dp_text_options one = {0};
    one.n_classes = 1;
    expect_error("label\tsentence\n0\tx\n", -1, &one, 0, "options", "at least 2");
    dp_text_options empty_name = {0};
    empty_name.label_column = "";
    expect_error("label\tsentence\n0\tx\n", -1, &empty_name, 0, "options", "empty");
    /* wrong number of fields */
    expect_error("label\tsentence\n0\tok\n1\ta\tb\n", -1, NULL, 3, "fields", "found 3");
    expect_error("label\tsentence\n0\tok\n1\n", -1, NULL, 3, "fields", "found 1");
    expect_error("label\tsentence\n  \n", -1, NULL, 2, "fields", "found 1"); /* spaces only: not empty */
    /* labels */
    expect_error("label\tsentence\n0\tok\npos\tx\n", -1, NULL, 3, "label", "not an integer");
    expect_error("label\tsentence\n1.0\tx\n", -1, NULL, 2, "label", "not an integer");
    expect_error("label\tsentence\n-\tx\n", -1, NULL, 2, "label", "not an integer");
    expect_error("label\tsentence\n \tx\n", -1, NULL, 2, "label", "empty");
    expect_error("label\tsentence\n2\tx\n", -1, NULL, 2, "label", "out of range");
    expect_error("label\tsentence\n-1\tx\n", -1, NULL, 2, "label", "out of range");
    expect_error("label\tsentence\n99999999999999999999999\tx\n", -1, NULL, 2, "label", "out of range");
    dp_text_options named = {0};
    named.label_column = "y";
    named.n_classes = 5;
    expect_error("y\tsentence\n4\tok\n5\tx\n", -1, &named, 3, "y", "0..4");
    /* empty text after trimming */
    expect_error("label\tsentence\n0\t\n", -1, NULL, 2, "sentence", "empty");
    expect_error("label\tsentence\n0\t   \v \n", -1, NULL, 2, "sentence", "empty");
    expect_error("sentence\tlabel\n\t1\n", -1, NULL, 2, "sentence", "empty");
    /* line numbers count skipped empty lines and CRLF lines */
    expect_error("label\tsentence\r\n\r\n1\tok\r\n\n2\tx\r\n", -1, NULL, 5, "label", "out of range");
    /* overlong line: default limit, and reported even without a final line end */
    {
        size_t big = (size_t)DP_TEXT_MAX_LINE + 1;
        char *s = malloc(big + 32);
        memcpy(s, "label\tsentence\n1\t", 17);
        memset(s + 17, 'a', big - 2);
        expect_error(s, (long)(17 + big - 2), NULL, 2, "line", "1048576-byte limit");
        free(s);
    }
    /* invalid UTF-8: a Latin-1 byte, an overlong form, a surrogate, a cut sequence, beyond U+10FFFF */
    expect_error("label\tsentence\n0\tcaf\xE9 au lait\n", -1, NULL, 2, "sentence", "invalid UTF-8 at byte 4");
    expect_error("label\tsentence\n0\t\xC0\xAF\n", -1, NULL, 2, "sentence", "invalid UTF-8");
    expect_error("label\tsentence\n0\tx\xED\xA0\x80\n", -1, NULL, 2, "sentence", "invalid UTF-8");
    expect_error("label\tsentence\n0\tx \xE2\x82\n", -1, NULL, 2, "sentence", "invalid UTF-8");
    expect_error("label\tsentence\n0\t\xF4\x90\x80\x80\n", -1, NULL, 2, "sentence", "invalid UTF-8");
    expect_error("label\tsentence\n0\t\xF0\x8F\xBF\xBF\n", -1, NULL, 2, "sentence", "invalid UTF-8");
    expect_error("label\tsentence\n\xFF\tx\n", -1, NULL, 2, "label", "invalid UTF-8");
    /* embedded NUL: in the text, in the label, in the header */
    expect_error("label\tsentence\n0\tab\0cd\n", 23, NULL, 2, "sentence", "NUL byte at byte 3");
    expect_error("label\tsentence\n0\0\tx\n", 20, NULL, 2, "label", "NUL");
    expect_error("l\0a\0b\0e\0l\0\n", 11, NULL, 1, "header (column 1)", "NUL");
    /* a carriage return inside a line */
    expect_error("label\tsentence\n0\tone\rtwo\n", -1, NULL, 2, "line", "carriage return");
    /* an unnamed extra column is named by its position */
    expect_error("label\tsentence\t\n0\tx\t\xFF\n", -1, NULL, 2, "column 3", "invalid UTF-8");
}

/* ---- tokenizer ------------------------------------------------------------------------------------ */

static int ids_equal(const int32_t *a, const int32_t *b, int n) { return memcmp(a, b, (size_t)n * sizeof *a) == 0; }

static void test_encode_basic(void) {
    int32_t ids[8];
    int tr = -1;
    CHECK(dp_text_encode_bytes("ab", 2, 6, ids, &tr) == 3 && tr == 0);
    const int32_t want[6] = {DP_TEXT_CLS, DP_TEXT_BYTE0 + 'a', DP_TEXT_BYTE0 + 'b', 0, 0, 0};
    CHECK(ids_equal(ids, want, 6)); /* [CLS], bytes, then padding on the right */
    /* exactly fits: L - 1 bytes */
    CHECK(dp_text_encode_bytes("abc", 3, 4, ids, &tr) == 4 && tr == 0 && ids[3] == DP_TEXT_BYTE0 + 'c');
    /* truncated: the first L - 1 bytes are kept */
    CHECK(dp_text_encode_bytes("abcd", 4, 3, ids, &tr) == 3 && tr == 1);
    CHECK(ids[0] == DP_TEXT_CLS && ids[1] == DP_TEXT_BYTE0 + 'a' && ids[2] == DP_TEXT_BYTE0 + 'b');
    /* L = 1: only [CLS] */
    CHECK(dp_text_encode_bytes("a", 1, 1, ids, &tr) == 1 && tr == 1 && ids[0] == DP_TEXT_CLS);
    /* empty text: [CLS] and padding */
    CHECK(dp_text_encode_bytes(NULL, 0, 4, ids, &tr) == 1 && tr == 0 && ids[1] == 0 && ids[3] == 0);
    /* invalid window */
    ids[0] = 77;
    CHECK(dp_text_encode_bytes("a", 1, 0, ids, &tr) == -1 && ids[0] == 77);
    CHECK(dp_text_encode_bytes("a", 1, 2, ids, NULL) == 2); /* truncated may be NULL */
    /* every byte value has its own id DP_TEXT_BYTE0 + b, never a special id */
    char all[256];
    for (int b = 0; b < 256; b++) all[b] = (char)(unsigned char)b;
    int32_t big[258];
    CHECK(dp_text_encode_bytes(all, 256, 258, big, &tr) == 257 && tr == 0 && big[257] == DP_TEXT_PAD);
    int ok = 1;
    for (int b = 0; b < 256; b++) ok &= big[1 + b] == DP_TEXT_BYTE0 + b && big[1 + b] < DP_TEXT_VOCAB;
    CHECK(ok);
}

static void test_round_trip(void) {
    uint64_t rng = 12345;
    int ok = 1;
    char src[400], out[400];
    int32_t ids[512];
    for (int t = 0; t < 500; t++) {
        size_t n = (size_t)(tu_uniform(&rng) * 400);
        for (size_t k = 0; k < n; k++) src[k] = (char)(unsigned char)(tu_uniform(&rng) * 256);
        int L = (int)n + 1 + (int)(tu_uniform(&rng) * 20);
        int tr = -1;
        int used = dp_text_encode_bytes(src, n, L, ids, &tr);
        int64_t m = dp_text_decode(ids, L, out, sizeof out);
        ok &= used == (int)n + 1 && tr == 0 && m == (int64_t)n && memcmp(src, out, n) == 0 && out[n] == 0;
        /* truncated: the decoded text is the first L - 1 bytes */
        if (n > 2) {
            int Lt = 1 + (int)(tu_uniform(&rng) * (double)(n - 1)); /* 1 .. n-1 bytes kept... */
            used = dp_text_encode_bytes(src, n, Lt, ids, &tr);
            m = dp_text_decode(ids, Lt, out, sizeof out);
            ok &= tr == 1 && used == Lt && m == Lt - 1 && memcmp(src, out, (size_t)m) == 0;
        }
    }
    CHECK(ok);
    /* UTF-8 text */
    const char *utf8 = "crème brûlée — 日本語 😀 naïve";
    size_t n = strlen(utf8);
    int tr;
    CHECK(dp_text_encode_bytes(utf8, n, 64, ids, &tr) == (int)n + 1 && tr == 0);
    CHECK(dp_text_decode(ids, 64, out, sizeof out) == (int64_t)n && strcmp(out, utf8) == 0);
    /* SEP and padding carry no bytes */
    int32_t with_sep[5] = {DP_TEXT_CLS, DP_TEXT_BYTE0 + 'h', DP_TEXT_SEP, DP_TEXT_BYTE0 + 'i', DP_TEXT_PAD};
    CHECK(dp_text_decode(with_sep, 5, out, sizeof out) == 2 && strcmp(out, "hi") == 0);
    /* a small output buffer: cut like snprintf, full length returned */
    CHECK(dp_text_encode_bytes("hello", 5, 8, ids, &tr) == 6);
    CHECK(dp_text_decode(ids, 8, out, 3) == 5 && strcmp(out, "he") == 0);
    CHECK(dp_text_decode(ids, 8, NULL, 0) == 5);
    /* ids outside the vocabulary */
    int32_t bad[2] = {DP_TEXT_BYTE0, DP_TEXT_VOCAB};
    CHECK(dp_text_decode(bad, 2, out, sizeof out) == -1 && out[0] == 0);
    bad[1] = -1;
    CHECK(dp_text_decode(bad, 2, out, sizeof out) == -1);
}

/* The tokenizer has no state learned from data: encoding a text gives the same ids before any dataset
 * is loaded, after loading one, and after loading a different one; and an example's ids are those of
 * its bytes, whatever else the dataset holds. */
static void test_no_learned_state(void) {
    const char *probe = "an unusual probe sentence , zyzzyva";
    size_t n = strlen(probe);
    enum { L = 48 };
    int32_t before[L], after_a[L], after_b[L], expect[L];
    expect[0] = DP_TEXT_CLS;
    for (size_t k = 0; k < n; k++) expect[1 + k] = DP_TEXT_BYTE0 + (unsigned char)probe[k];
    for (size_t k = 1 + n; k < L; k++) expect[k] = DP_TEXT_PAD;

    CHECK(dp_text_encode_bytes(probe, n, L, before, NULL) == (int)n + 1);
    dp_text_dataset a, b;
    if (parse(&a, "label\tsentence\n0\tzyzzyva zyzzyva zyzzyva\n1\tan unusual probe sentence , zyzzyva\n", -1,
              NULL)) {
        CHECK(0);
        return;
    }
    CHECK(dp_text_encode_bytes(probe, n, L, after_a, NULL) == (int)n + 1);
    if (parse(&b, "label\tsentence\n1\tan unusual probe sentence , zyzzyva\n0\tcompletely different words\n"
                  "0\t\xE6\x97\xA5\xE6\x9C\xAC\n", -1, NULL)) {
        CHECK(0);
        dp_text_dataset_free(&a);
        return;
    }
    CHECK(dp_text_encode_bytes(probe, n, L, after_b, NULL) == (int)n + 1);
    CHECK(ids_equal(before, expect, L) && ids_equal(after_a, expect, L) && ids_equal(after_b, expect, L));
    /* the same sentence in two datasets, at different positions, encodes identically */
    int32_t ia[L], ib[L];
    int ta = -1, tb = -1;
    CHECK(dp_text_encode(&a, 1, L, ia, &ta) == (int)n + 1 && dp_text_encode(&b, 0, L, ib, &tb) == (int)n + 1);
    CHECK(ids_equal(ia, expect, L) && ids_equal(ib, expect, L) && ta == 0 && tb == 0);
    /* out-of-range example or window */
    CHECK(dp_text_encode(&a, 2, L, ia, NULL) == -1 && dp_text_encode(&a, -1, L, ia, NULL) == -1);
    CHECK(dp_text_encode(&a, 0, 0, ia, NULL) == -1);
    dp_text_dataset_free(&a);
    dp_text_dataset_free(&b);
}

/* The hashed-word tokenizer: spec parsing, vocabulary, splitting and case folding, the pinned hash
 * (model files depend on it), truncation, and no state learned from any dataset. */
static void test_words(void) {
    dp_tokenizer t;
    dp_error err;
    CHECK(dp_tokenizer_parse(NULL, &t, &err) == 0 && t.kind == DP_TOKENIZER_BYTES);
    CHECK(dp_tokenizer_parse("", &t, &err) == 0 && t.kind == DP_TOKENIZER_BYTES && dp_tokenizer_vocab(&t) == DP_TEXT_VOCAB);
    CHECK(dp_tokenizer_parse("words", &t, &err) == 0 && t.kind == DP_TOKENIZER_WORDS &&
          t.buckets == DP_TEXT_DEFAULT_BUCKETS && dp_tokenizer_vocab(&t) == DP_TEXT_WORD0 + DP_TEXT_DEFAULT_BUCKETS);
    const char *bad[] = {"words:0", "words:", "words:x", "words:12a", "words:-5", "words:99999999999", "word",
                         "Words", "bytes:3", "words:16777217"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        err.msg[0] = 0;
        CHECK(dp_tokenizer_parse(bad[k], &t, &err) != 0 && strstr(err.msg, bad[k]) != NULL);
    }
    char spec[DP_TOKENIZER_SPEC_MAX];
    CHECK(dp_tokenizer_parse("words:1000", &t, &err) == 0 && t.buckets == 1000);
    dp_tokenizer_spec(&t, spec, sizeof spec);
    CHECK(strcmp(spec, "words:1000") == 0);
    dp_tokenizer t2;
    CHECK(dp_tokenizer_parse(spec, &t2, &err) == 0 && t2.kind == t.kind && t2.buckets == t.buckets);
    dp_tokenizer_spec(NULL, spec, sizeof spec);
    CHECK(strcmp(spec, "bytes") == 0);

    /* FNV-1a-64 of "a" is 0xaf63dc4c8601ec8c; of "movie" 0x2703fa92fbc5c30f */
    CHECK(dp_text_word_id("a", 1, 1 << 24) == DP_TEXT_WORD0 + 0x01ec8c);
    CHECK(dp_text_word_id("movie", 5, 16384) == DP_TEXT_WORD0 + (int32_t)(0x2703fa92fbc5c30fULL % 16384));
    CHECK(dp_text_word_id("MoVie", 5, 16384) == dp_text_word_id("movie", 5, 16384));
    CHECK(dp_text_word_id("movies", 6, 16384) != dp_text_word_id("movie", 5, 16384));

    enum { L = 8 };
    int32_t ids[L];
    int tr = -1;
    const char *s = "  Hello\tworld  hello ,\n";
    CHECK(dp_text_encode_words(s, strlen(s), 1000, L, ids, &tr) == 5 && tr == 0);
    CHECK(ids[0] == DP_TEXT_CLS && ids[1] == ids[3] && ids[1] != ids[2] && ids[4] == dp_text_word_id(",", 1, 1000));
    CHECK(ids[1] == dp_text_word_id("hello", 5, 1000) && ids[5] == DP_TEXT_PAD && ids[7] == DP_TEXT_PAD);
    int in_range = 1;
    for (int k = 1; k < 5; k++) in_range &= ids[k] >= DP_TEXT_WORD0 && ids[k] < DP_TEXT_WORD0 + 1000;
    CHECK(in_range);
    CHECK(dp_tokenizer_count(&t, s, strlen(s)) == 4);
    /* truncation: the first L-1 words are kept, and it is reported */
    CHECK(dp_text_encode_words("a b c d e f g h i", 17, 1000, 4, ids, &tr) == 4 && tr == 1);
    CHECK(ids[3] == dp_text_word_id("c", 1, 1000));
    CHECK(dp_text_encode_words("a b c", 5, 1000, 4, ids, &tr) == 4 && tr == 0);
    CHECK(dp_text_encode_words("a", 1, 1000, 1, ids, &tr) == 1 && tr == 1 && ids[0] == DP_TEXT_CLS);
    CHECK(dp_text_encode_words("   ", 3, 1000, 3, ids, &tr) == 1 && tr == 0 && ids[1] == DP_TEXT_PAD);
    ids[0] = 77;
    CHECK(dp_text_encode_words("a", 1, 0, 3, ids, &tr) == -1 && ids[0] == 77);
    CHECK(dp_text_encode_words("a", 1, 1000, 0, ids, &tr) == -1 && ids[0] == 77);
    /* a single bucket maps every word to the same id */
    CHECK(dp_text_encode_words("x yy zzz", 8, 1, L, ids, NULL) == 4 && ids[1] == DP_TEXT_WORD0 && ids[3] == DP_TEXT_WORD0);

    /* no learned state: a probe encodes the same before and after loading datasets with other words */
    const char *probe = "an unusual probe sentence , zyzzyva";
    int32_t before[L], after[L], in_ds[L];
    CHECK(dp_tokenizer_encode(&t, probe, strlen(probe), L, before, NULL) == 7);
    dp_text_dataset a;
    if (parse(&a, "label\tsentence\n0\tzyzzyva zyzzyva\n1\tan unusual probe sentence , zyzzyva\n", -1, NULL)) {
        CHECK(0);
        return;
    }
    CHECK(dp_tokenizer_encode(&t, probe, strlen(probe), L, after, NULL) == 7);
    CHECK(dp_text_encode_with(&t, &a, 1, L, in_ds, &tr) == 7 && tr == 0);
    CHECK(ids_equal(before, after, L) && ids_equal(before, in_ds, L));
    CHECK(dp_text_encode_with(&t, &a, 2, L, in_ds, &tr) == -1);
    /* truncation counts by words, not bytes */
    CHECK(dp_text_count_truncated_with(&t, &a, 3) == 1 && dp_text_count_truncated_with(&t, &a, 7) == 0);
    CHECK(dp_text_count_truncated_with(NULL, &a, 7) == 2); /* byte-level: both texts exceed 6 bytes */
    CHECK(dp_text_count_truncated_with(&t, &a, 0) == -1);
    /* the byte-level tokenizer through the same entry point */
    CHECK(dp_text_encode_with(NULL, &a, 0, L, in_ds, &tr) == L && tr == 1 && in_ds[1] == DP_TEXT_BYTE0 + 'z');
    dp_text_dataset_free(&a);
}

/* Truncation counts and the length distribution on texts of 1..20 bytes. */
static void test_truncation_and_lengths(void) {
    char buf[1024];
    size_t p = (size_t)snprintf(buf, sizeof buf, "label\tsentence\n");
    for (int len = 20; len >= 1; len--) { /* file order does not matter */
        p += (size_t)snprintf(buf + p, sizeof buf - p, "%d\t", len % 2);
        memset(buf + p, 'a' + len, (size_t)len);
        p += (size_t)len;
        buf[p++] = '\n';
    }
    dp_text_dataset ds;
    if (parse(&ds, buf, (long)p, NULL)) {
        CHECK(0);
        return;
    }
    CHECK(ds.n == 20);
    CHECK(dp_text_count_truncated(&ds, 11) == 10); /* lengths 11..20 do not fit in [CLS] + 10 bytes */
    CHECK(dp_text_count_truncated(&ds, 21) == 0 && dp_text_count_truncated(&ds, 20) == 1);
    CHECK(dp_text_count_truncated(&ds, 1) == 20 && dp_text_count_truncated(&ds, 0) == -1);
    /* the count agrees with what dp_text_encode reports */
    int32_t ids[12];
    int64_t seen = 0;
    int pad_ok = 1;
    for (int64_t i = 0; i < ds.n; i++) {
        int tr = -1;
        int used = dp_text_encode(&ds, i, 12, ids, &tr);
        seen += tr;
        for (int k = used; k < 12; k++) pad_ok &= ids[k] == DP_TEXT_PAD;
        for (int k = 1; k < used; k++) pad_ok &= ids[k] >= DP_TEXT_BYTE0;
    }
    CHECK(seen == dp_text_count_truncated(&ds, 12) && seen == 9 && pad_ok);
    dp_text_length_stats st;
    dp_text_lengths(&ds, &st);
    CHECK(st.n == 20 && st.min == 1 && st.max == 20 && st.p50 == 10 && st.p90 == 18 && st.p95 == 19 &&
          st.p99 == 20);
    CHECK_CLOSE(st.mean, 10.5, 1e-12);
    dp_text_dataset_free(&ds);
    dp_text_lengths(&ds, &st); /* empty dataset */
    CHECK(st.n == 0 && st.max == 0);
    CHECK(dp_text_count_truncated(&ds, 4) == 0);
}

/* ---- the real GLUE SST-2 files ---------------------------------------------------------------------- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sst2_file(const char *dir, const char *file, int64_t expected_rows) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    dp_text_dataset ds;
    dp_error err;
    double t = now();
    int rc = dp_text_load(&ds, path, NULL, &err);
    double secs = now() - t;
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK(ds.n == expected_rows);
    CHECK(ds.n_classes == 2);
    int64_t counts[2];
    dp_text_label_counts(&ds, counts);
    int labels_ok = 1;
    for (int64_t i = 0; i < ds.n; i++) labels_ok &= ds.labels[i] == 0 || ds.labels[i] == 1;
    CHECK(labels_ok && counts[0] > 0 && counts[1] > 0 && counts[0] + counts[1] == ds.n);
    CHECK(strcmp(ds.text_column, "sentence") == 0 || strcmp(ds.text_column, "content") == 0);
    /* every example round-trips through the tokenizer at a window that holds it */
    dp_text_length_stats st;
    dp_text_lengths(&ds, &st);
    int L = (int)st.max + 1;
    int32_t *ids = malloc((size_t)L * sizeof *ids);
    char *out = malloc((size_t)L + 1);
    int rt_ok = 1;
    for (int64_t i = 0; i < ds.n; i++) {
        int tr = -1;
        dp_text_encode(&ds, i, L, ids, &tr);
        int64_t m = dp_text_decode(ids, L, out, (size_t)L + 1);
        rt_ok &= tr == 0 && m == dp_text_len(&ds, i) && memcmp(out, dp_text_ptr(&ds, i), (size_t)m) == 0;
    }
    CHECK(rt_ok);
    CHECK(dp_text_count_truncated(&ds, L) == 0 && dp_text_count_truncated(&ds, (int)st.p95 + 1) <= ds.n / 20);
    printf("sst2/%s: %lld examples (text column '%s', labels 0: %lld, 1: %lld) in %.3f s; bytes mean %.1f, "
           "p50 %lld, p95 %lld, max %lld; truncated at L=64: %lld, L=128: %lld\n",
           file, (long long)ds.n, ds.text_column, (long long)counts[0], (long long)counts[1], secs, st.mean,
           (long long)st.p50, (long long)st.p95, (long long)st.max, (long long)dp_text_count_truncated(&ds, 64),
           (long long)dp_text_count_truncated(&ds, 128));
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(secs < 1.0);
#endif
    free(ids);
    free(out);
    dp_text_dataset_free(&ds);
}

static void test_sst2(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/sst2", tu_data_dir());
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        printf("test_text: %s not found; real SST-2 checks skipped\n", dir);
        return;
    }
    /* counts from the dataset documentation: 67,349 training phrases, 872 dev, 1,821 test sentences */
    sst2_file(dir, "train.tsv", 67349);
    sst2_file(dir, "dev.tsv", 872);
    sst2_file(dir, "test.tsv", 1821);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/dpformer-text-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_basic();
    test_line_ends();
    test_columns();
    test_from_file();
    test_limits_and_utf8_option();
    test_errors();
    test_encode_basic();
    test_round_trip();
    test_no_learned_state();
    test_words();
    test_truncation_and_lengths();
    test_sst2();
    for (int i = 0; i < g_npaths; i++) unlink(g_paths[i]);
    rmdir(g_dir);
    return tu_finish("test_text");
}
