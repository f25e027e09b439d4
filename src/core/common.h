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
/* realloc that never returns NULL (exits with the place, as dp_malloc) */
void *dp_realloc_check(void *p, size_t size, const char *file, int line);
#define dp_realloc(p, sz) dp_realloc_check((p), (sz), __FILE__, __LINE__)
/* 64-byte aligned allocation for tensors (free with free()). Zero-initialised. */
void *dp_alloc_aligned_check(size_t size, const char *file, int line);
#define dp_alloc_aligned(sz) dp_alloc_aligned_check((sz), __FILE__, __LINE__)

/* Format an error message into err (if err is non-NULL). Returns -1 so callers can `return dp_fail(...)`. */
int dp_fail(dp_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Create a directory and its missing parents (like mkdir -p). Returns 0, or -1 with err. */
int dp_mkdir_p(const char *path, dp_error *err);

/* Replacing a file atomically: the new content goes to a temporary file in the same folder
 * (".<name>.tmp-<pid>-<n>"), which is flushed, fsync'ed and renamed over the file; then the folder is
 * fsync'ed. Until the rename the old file (if any) is untouched; a write that fails (a full disk,
 * EFBIG under a file-size limit, an I/O error) removes the temporary file and leaves the old one as it
 * was. A symbolic link at the path is followed (its target is replaced); a path that exists but is not
 * a regular file is refused. Every error message names the file as given ("path: write failed: ..."). */
typedef struct {
    FILE *f;          /* write the new content here */
    const char *name; /* the path as given, for messages */
    char *target;     /* the file replaced: the path, or a symbolic link's target */
    char *tmp;        /* the temporary file */
    char *dir;        /* the folder of both */
} dp_atomic_file;
/* Create the temporary file (with the old file's permissions, if it exists). */
int dp_atomic_open(dp_atomic_file *a, const char *path, dp_error *err);
/* Write n bytes, or fail with "name: write failed: <reason>". */
int dp_atomic_write(dp_atomic_file *a, const void *p, size_t n, dp_error *err);
/* Flush, fsync, rename into place, fsync the folder. With keep non-NULL the stream stays open and is
 * handed to the caller (*keep; it now writes to the file in place; fclose it); otherwise it is closed.
 * On failure the temporary file is removed. a's strings are freed either way. */
int dp_atomic_commit(dp_atomic_file *a, FILE **keep, dp_error *err);
/* Give up: close and remove the temporary file, free a's strings. */
void dp_atomic_abort(dp_atomic_file *a);
/* The whole of a file (len bytes) replaced atomically. */
int dp_write_file_atomic(const char *path, const void *data, size_t len, dp_error *err);

/* 1 if the two paths name the same file, however spelled (relative, through symbolic links, hard
 * links: same device and inode). A path that does not exist (yet) is compared by its folder's real
 * path and its name. 0 otherwise, or if neither can be resolved. */
int dp_same_file(const char *a, const char *b);

/* FNV-1a 64-bit hash of n bytes, continuing from h (start with DP_FNV1A64_INIT); the checksum of the
 * checkpoint and model files (also declared in dpformer/checkpoint.h). */
#ifndef DP_FNV1A64_INIT
#define DP_FNV1A64_INIT 0xcbf29ce484222325ull
#endif
uint64_t dp_fnv1a64(const void *data, size_t n, uint64_t h);

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
