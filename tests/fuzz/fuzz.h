/* Shared by the fuzz targets in tests/fuzz: the libFuzzer entry point every target defines, and the
 * checks a target makes on what a parser returns. A failed check aborts, which libFuzzer (and the
 * replay driver under the sanitizers) reports like a crash: a parser broke one of its promises. */
#ifndef DP_FUZZ_H
#define DP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* A refusal must say why, starting with the name of the file (the library's "file: problem" form). */
#define FUZZ_CHECK_ERROR(msg, name)                                                           \
    do {                                                                                      \
        size_t n_ = strlen(name);                                                             \
        FUZZ_CHECK(strncmp((msg), (name), n_) == 0 && (msg)[n_] == ':' && (msg)[n_ + 1] != 0); \
    } while (0)

/* The input as a NUL-terminated string (free with free()): for parsers that take C strings. An
 * embedded NUL simply ends the string early, as it would for the parser's callers. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#endif
