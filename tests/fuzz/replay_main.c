/* Replays inputs through one fuzz target without libFuzzer: calls LLVMFuzzerTestOneInput once per
 * file named on the command line, and once per file of each folder named (in name order; hidden
 * files and subfolders are skipped). Every normal build links it with each tests/fuzz/fuzz_*.c, and
 * CTest replays the target's corpus tests/fuzz/corpus/<target>/ (seeds and crash reproducers), under
 * AddressSanitizer and UndefinedBehaviorSanitizer in the sanitizer build.
 *
 *   fuzz_data_replay tests/fuzz/corpus/fuzz_data [more folders or files]
 *
 * Each input is copied into a buffer of exactly its size, so that a read past the end is caught by
 * the sanitizers. Exit status 0 when every input ran; 1 when a path cannot be read or when there was
 * nothing to replay (a wrong path should not pass as an empty corpus). A finding aborts. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 12, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
        free(buf);
        return -1;
    }
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) abort();
    memcpy(exact, buf, n);
    free(buf);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int skip_entry(const struct dirent *e) { return e->d_name[0] != '.'; }

/* Files of a folder in name order; returns how many ran, or -1. */
static long run_dir(const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, skip_entry, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: %s: cannot list: %s\n", dir, strerror(errno));
        return -1;
    }
    long ran = 0;
    int fail = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (!fail && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path)) fail = 1;
            else ran++;
        }
        free(names[i]);
    }
    free(names);
    return fail ? -1 : ran;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FOLDER_OR_FILE...\n", argv[0]);
        return 1;
    }
    long total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        long ran = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : (run_file(argv[i]) ? -1 : 1);
        if (ran < 0) return 1;
        total += ran;
    }
    if (total == 0) {
        fprintf(stderr, "replay: no input found\n");
        return 1;
    }
    fprintf(stderr, "replay: %ld inputs, no finding\n", total);
    return 0;
}
