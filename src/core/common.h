/* Internal helpers used by every source folder: the `real` type, checked allocation and file
 * opening that report where they failed, error formatting, and small numeric utilities. */
#ifndef DP_CORE_COMMON_H
#define DP_CORE_COMMON_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dpformer/common.h"

typedef dp_real real;

/* Allocation that aborts with file:line on failure (out of memory is not a recoverable user error). */
void *dp_malloc_check(size_t size, const char *file, int line);
void *dp_calloc_check(size_t n, size_t size, const char *file, int line);
#define dp_malloc(sz) dp_malloc_check((sz), __FILE__, __LINE__)
#define dp_calloc(n, sz) dp_calloc_check((n), (sz), __FILE__, __LINE__)
/* 64-byte aligned allocation for tensors (free with free()). Zero-initialised. */
void *dp_alloc_aligned_check(size_t size, const char *file, int line);
#define dp_alloc_aligned(sz) dp_alloc_aligned_check((sz), __FILE__, __LINE__)

/* Format an error message into err (if err is non-NULL). Returns -1 so callers can `return dp_fail(...)`. */
int dp_fail(dp_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Create a directory and its missing parents (like mkdir -p). Returns 0, or -1 with err. */
int dp_mkdir_p(const char *path, dp_error *err);

/* Wall-clock seconds (monotonic). */
double dp_now(void);

/* Peak resident set size of this process in bytes (0 if unknown). */
size_t dp_peak_rss(void);
/* Physical memory of the machine in bytes (0 if unknown). */
size_t dp_physical_memory(void);
/* The whole file at path in a malloc'd buffer (*out, *out_len; works for pipes too). Errors name the
 * file: "path: cannot open: ...", "path: cannot read: ...". */
int dp_read_file(const char *path, char **out, size_t *out_len, dp_error *err);

/* Lines of a text buffer, for the loaders: one trailing "\r" is stripped (CRLF files), a last line
 * without "\n" is accepted; a line longer than max_line bytes or with a carriage return inside is an
 * error "name:line: line: ...". Lines are never cut. */
typedef struct {
    const char *p, *end;
    const char *name;
    size_t max_line;
    int64_t lineno;
} dp_line_iter;
/* Returns 1 with [*b, *e) the next line, 0 at the end of the buffer, -1 on error (err filled). */
int dp_next_line(dp_line_iter *it, const char **b, const char **e, dp_error *err);

/* splitmix64: dp_mix64 hashes a 64-bit value (the finaliser applied to z + golden ratio);
 * dp_splitmix64 advances a state and returns the next value of its stream. The library's one small
 * non-cryptographic generator (initialisation, data order, dropout seeds, synthetic data). */
static inline uint64_t dp_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint64_t dp_splitmix64(uint64_t *s) {
    uint64_t z = dp_mix64(*s);
    *s += 0x9E3779B97F4A7C15ull;
    return z;
}

#define DP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DP_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
