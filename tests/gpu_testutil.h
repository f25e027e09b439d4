/* Helpers for the GPU parity tests (tests/test_gpu_*.c): the CUDA backend or a skip, device copies of
 * host arrays, poisoned outputs, and the relative error ‖x − ref‖ / ‖ref‖ that every comparison uses.
 * Header-only so that each test stays one file. A GPU test exits 77 (CTest: skipped) when this build
 * has no CUDA backend or no GPU is present. */
#ifndef DP_GPU_TESTUTIL_H
#define DP_GPU_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "testutil.h"

#define GT_SKIP 77

/* The CUDA backend, or NULL after printing why the test is skipped. */
static inline const dp_backend *gt_cuda_or_skip(const char *test) {
    dp_error err = {{0}};
    const dp_backend *be = dp_backend_cuda(&err);
    if (!be) printf("%s: SKIPPED: %s\n", test, err.msg);
    return be;
}

/* A host array of n normal(0, scale) values. */
static inline real *gt_random(uint64_t *s, size_t n, double scale) {
    real *x = dp_malloc(sizeof(real) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = (real)(scale * tu_normal(s));
    return x;
}

/* A device copy of n bytes of host memory. */
static inline void *gt_to_dev(const dp_backend *be, const void *host, size_t bytes) {
    dp_error err = {{0}};
    void *d = be->alloc(bytes ? bytes : 1, &err);
    if (!d) {
        fprintf(stderr, "device allocation of %zu bytes failed: %s\n", bytes, err.msg);
        exit(1);
    }
    if (bytes) be->upload(d, host, bytes);
    return d;
}

/* A device buffer of n reals filled with NaN (outputs must overwrite every element they own). */
static inline real *gt_dev_poison(const dp_backend *be, size_t n) {
    real *h = dp_malloc(sizeof(real) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    real *d = gt_to_dev(be, h, sizeof(real) * n);
    free(h);
    return d;
}

/* A host copy of n reals of device memory (free() it). */
static inline real *gt_to_host(const dp_backend *be, const real *d, size_t n) {
    real *h = dp_malloc(sizeof(real) * (n ? n : 1));
    if (n) be->download(h, d, sizeof(real) * n);
    return h;
}

/* ‖x − ref‖ / ‖ref‖ (‖x − ref‖ if ref is 0); NaN anywhere gives +inf. */
static inline double gt_rel_err(const real *x, const real *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != x[i] || ref[i] != ref[i]) return INFINITY;
        double d = (double)x[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static inline double gt_rel_err_d(const double *x, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != x[i] || ref[i] != ref[i]) return INFINITY;
        double d = x[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Record one comparison: prints "name: rel err" and counts a failure above tol. */
#define GT_EXPECT(name, err, tol)                                                                      \
    do {                                                                                               \
        double e_ = (err);                                                                             \
        tu_checks++;                                                                                   \
        int ok_ = e_ <= (tol);                                                                         \
        if (!ok_) tu_failures++;                                                                       \
        printf("  %-44s rel err %.3e (tol %.0e) %s\n", (name), e_, (double)(tol), ok_ ? "ok" : "FAIL"); \
    } while (0)

#endif
