/* Checked allocation, error formatting, clocks and memory statistics (see common.h). */
#define _DEFAULT_SOURCE /* _SC_PHYS_PAGES */
#include "core/common.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void *dp_malloc_check(size_t size, const char *file, int line) {
    void *p = malloc(size ? size : 1);
    if (!p) {
        fprintf(stderr, "dpformer: out of memory allocating %zu bytes at %s:%d\n", size, file, line);
        exit(EXIT_FAILURE);
    }
    return p;
}

void *dp_calloc_check(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "dpformer: out of memory allocating %zu x %zu bytes at %s:%d\n", n, size, file, line);
        exit(EXIT_FAILURE);
    }
    return p;
}

void *dp_alloc_aligned_check(size_t size, const char *file, int line) {
    size_t rounded = (size + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        fprintf(stderr, "dpformer: out of memory allocating %zu bytes at %s:%d\n", size, file, line);
        exit(EXIT_FAILURE);
    }
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

int dp_fail(dp_error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

double dp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t dp_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024u; /* Linux reports kilobytes */
}

size_t dp_physical_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (size_t)pages * (size_t)size : 0;
}

int dp_mkdir_p(const char *path, dp_error *err) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return dp_fail(err, "%s: invalid directory name", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return dp_fail(err, "%s: cannot create directory: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return dp_fail(err, "%s: exists and is not a directory", path);
    return 0;
}

int dp_read_file(const char *path, char **out, size_t *out_len, dp_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return dp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = dp_malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return dp_fail(err, "%s: out of memory reading the file", path);
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int saved = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return dp_fail(err, "%s: cannot read: %s", path, strerror(saved));
    }
    *out = buf;
    *out_len = n;
    return 0;
}

int dp_next_line(dp_line_iter *it, const char **b, const char **e, dp_error *err) {
    if (it->p >= it->end) return 0;
    const char *s = it->p;
    const char *nl = memchr(s, '\n', (size_t)(it->end - s));
    const char *t = nl ? nl : it->end;
    it->p = nl ? nl + 1 : it->end;
    it->lineno++;
    if (t > s && t[-1] == '\r') t--;
    if ((size_t)(t - s) > it->max_line)
        return dp_fail(err, "%s:%lld: line: %zu bytes, longer than the %zu-byte limit (lines are never cut; is this a "
                       "text file in the expected format?)", it->name, (long long)it->lineno, (size_t)(t - s),
                       it->max_line);
    if (memchr(s, '\r', (size_t)(t - s)))
        return dp_fail(err, "%s:%lld: line: carriage return inside the line (only \\n or \\r\\n line ends are "
                       "accepted)", it->name, (long long)it->lineno);
    *b = s;
    *e = t;
    return 1;
}
