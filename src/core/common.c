/* Checked allocation, error formatting, clocks and memory statistics (see common.h). */
#define _DEFAULT_SOURCE /* _SC_PHYS_PAGES, realpath, fchmod */
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
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

void *dp_realloc_check(void *p, size_t size, const char *file, int line) {
    void *q = realloc(p, size ? size : 1);
    if (!q) {
        fprintf(stderr, "dpformer: out of memory reallocating %zu bytes at %s:%d\n", size, file, line);
        exit(EXIT_FAILURE);
    }
    return q;
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

uint64_t dp_fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = dp_malloc(n);
    memcpy(d, s, n);
    return d;
}

/* Folder part of path ("." when it has none, "/" for "/x"). */
static char *folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return dup_string(".");
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char *d = dp_malloc(len + 1);
    memcpy(d, path, len);
    d[len] = '\0';
    return d;
}

static void atomic_free(dp_atomic_file *a) {
    free(a->target);
    free(a->tmp);
    free(a->dir);
    a->target = a->tmp = a->dir = NULL;
    a->f = NULL;
}

int dp_atomic_open(dp_atomic_file *a, const char *path, dp_error *err) {
    memset(a, 0, sizeof *a);
    a->name = path ? path : "";
    if (!path || !path[0]) return dp_fail(err, "empty output path");
    if (path[strlen(path) - 1] == '/') return dp_fail(err, "%s: is a directory name, not a file name", path);
    struct stat st;
    int exists = 0;
    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode)) {
            /* replace what the link points to, not the link itself */
            a->target = realpath(path, NULL);
            if (!a->target) return dp_fail(err, "%s: cannot resolve symbolic link: %s", path, strerror(errno));
            if (stat(a->target, &st) != 0) {
                int e = errno;
                atomic_free(a);
                return dp_fail(err, "%s: %s", path, strerror(e));
            }
        }
        if (!S_ISREG(st.st_mode)) {
            atomic_free(a);
            return dp_fail(err, "%s: exists and is not a regular file; refusing to replace it", path);
        }
        exists = 1;
    } else if (errno != ENOENT) {
        return dp_fail(err, "%s: %s", path, strerror(errno));
    }
    if (!a->target) a->target = dup_string(path);
    a->dir = folder_of(a->target);
    /* a hidden temporary file next to the target, so that rename() stays within one file system */
    const char *slash = strrchr(a->target, '/');
    const char *base = slash ? slash + 1 : a->target;
    size_t cap = strlen(a->dir) + strlen(base) + 64;
    a->tmp = dp_malloc(cap);
    static _Atomic unsigned counter = 0;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(a->tmp, cap, "%s/.%s.tmp-%ld-%u", a->dir, base, (long)getpid(), counter++);
        fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int e = errno;
        dp_fail(err, "%s: cannot create a temporary file in %s: %s", path, a->dir, strerror(e));
        atomic_free(a);
        return -1;
    }
    if (exists) (void)fchmod(fd, st.st_mode & 07777); /* keep the old file's permissions */
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        int e = errno;
        close(fd);
        unlink(a->tmp);
        dp_fail(err, "%s: %s", path, strerror(e));
        atomic_free(a);
        return -1;
    }
    return 0;
}

int dp_atomic_write(dp_atomic_file *a, const void *p, size_t n, dp_error *err) {
    if (n == 0) return 0;
    errno = 0;
    if (fwrite(p, 1, n, a->f) != n)
        return dp_fail(err, "%s: write failed: %s", a->name, errno ? strerror(errno) : "short write");
    return 0;
}

void dp_atomic_abort(dp_atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    atomic_free(a);
}

int dp_atomic_commit(dp_atomic_file *a, FILE **keep, dp_error *err) {
    if (keep) *keep = NULL;
    errno = 0;
    if (fflush(a->f) != 0 || ferror(a->f)) {
        dp_fail(err, "%s: write failed: %s", a->name, errno ? strerror(errno) : "stream error");
        dp_atomic_abort(a);
        return -1;
    }
    if (fsync(fileno(a->f)) != 0) {
        dp_fail(err, "%s: fsync failed: %s", a->name, strerror(errno));
        dp_atomic_abort(a);
        return -1;
    }
    if (!keep) {
        FILE *closing = a->f;
        a->f = NULL;
        if (fclose(closing) != 0) {
            dp_fail(err, "%s: closing the file failed: %s", a->name, strerror(errno));
            dp_atomic_abort(a);
            return -1;
        }
    }
    if (rename(a->tmp, a->target) != 0) {
        dp_fail(err, "%s: cannot move the new file into place: %s", a->name, strerror(errno));
        dp_atomic_abort(a);
        return -1;
    }
    /* Make the rename itself durable. Some file systems cannot sync a folder (EINVAL): the file is in
     * place either way, so only a real I/O error is reported. */
    int rc = 0, dfd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int bad = fsync(dfd) != 0 && errno != EINVAL && errno != EROFS;
        int e = errno;
        close(dfd);
        if (bad) rc = dp_fail(err, "%s: written, but syncing its folder %s failed: %s", a->name, a->dir, strerror(e));
    }
    if (keep && rc == 0) *keep = a->f;
    else if (keep) fclose(a->f);
    atomic_free(a);
    return rc;
}

int dp_write_file_atomic(const char *path, const void *data, size_t len, dp_error *err) {
    dp_atomic_file a;
    if (dp_atomic_open(&a, path, err)) return -1;
    if (dp_atomic_write(&a, data, len, err)) {
        dp_atomic_abort(&a);
        return -1;
    }
    return dp_atomic_commit(&a, NULL, err);
}

/* The real path of a file, or for one that does not exist, its folder's real path and its name. */
static char *canonical(const char *p) {
    char *r = realpath(p, NULL);
    if (r) return r;
    if (errno != ENOENT) return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    char *copy = dp_malloc(n + 1);
    memcpy(copy, p, n);
    copy[n] = 0;
    char *dir = folder_of(copy), *rd = realpath(dir, NULL);
    const char *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    char *out = NULL;
    if (rd && strcmp(base, ".") != 0 && strcmp(base, "..") != 0) {
        size_t len = strlen(rd) + strlen(base) + 2;
        out = dp_malloc(len);
        snprintf(out, len, "%s/%s", strcmp(rd, "/") == 0 ? "" : rd, base);
    }
    free(rd);
    free(dir);
    free(copy);
    return out;
}

int dp_same_file(const char *a, const char *b) {
    if (!a || !b || !a[0] || !b[0]) return 0;
    struct stat sa, sb;
    int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
    if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (ea != eb) return 0; /* one exists, the other does not */
    char *ca = canonical(a), *cb = canonical(b);
    int same = ca && cb && strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return same;
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
