/* Device names and selection: parsing `--device`, whether a device can run now, the backend of a
 * device, and loading the CUDA backend's module. Without the CUDA backend in the build (CMake
 * DPFORMER_CUDA=OFF, and always in the double-precision library), `cuda` is refused with a message
 * that says so. */
#define _POSIX_C_SOURCE 200809L
#include "backend/backend.h"

int dp_device_parse(const char *s, dp_device *d) {
    if (strcmp(s, "cpu") == 0) *d = DP_DEVICE_CPU;
    else if (strcmp(s, "cuda") == 0) *d = DP_DEVICE_CUDA;
    else return -1;
    return 0;
}

const char *dp_device_name(dp_device d) { return d == DP_DEVICE_CUDA ? "cuda" : "cpu"; }

/* ---- the CUDA module ----
 * The CUDA backend lives in libdpformer_cuda.so (CMake target dpformer_cuda), loaded with dlopen on the
 * first request for the cuda device: a program that never asks for it does not load the CUDA libraries
 * at all (cuBLAS alone maps hundreds of MB and takes a noticeable time to load). It is looked for in
 * $DPFORMER_CUDA_MODULE (a path), next to the running executable (a build folder), in the library
 * folder it was installed to, and on the loader's search path. */

#ifdef DP_REAL_DOUBLE
static const dp_cuda_module *cuda_module(dp_error *err) {
    dp_fail(err, "the CUDA backend runs in single precision only (this is the double-precision library)");
    return NULL;
}
#else
#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#ifndef DP_CUDA_MODULE_INSTALL_DIR
#define DP_CUDA_MODULE_INSTALL_DIR "/usr/local/lib"
#endif
#define MODULE_NAME "libdpformer_cuda.so"

static void *try_open(const char *path, char *why, size_t cap) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h && why[0] == 0) {
        const char *e = dlerror();
        snprintf(why, cap, "%.400s", e ? e : path);
    }
    return h;
}

static const dp_cuda_module *cuda_module(dp_error *err) {
    static const dp_cuda_module *mod;
    static int tried;
    static char reason[DP_ERRLEN];
    if (!tried) {
        tried = 1;
        char why[DP_ERRLEN] = "", path[PATH_MAX + 64];
        void *h = NULL;
        const char *env = getenv("DPFORMER_CUDA_MODULE");
        if (env && env[0]) h = try_open(env, why, sizeof why);
        if (!h) {
            char exe[PATH_MAX];
            ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
            if (n > 0) {
                exe[n] = 0;
                char *slash = strrchr(exe, '/');
                if (slash) {
                    *slash = 0;
                    snprintf(path, sizeof path, "%s/" MODULE_NAME, exe);
                    if (access(path, F_OK) == 0) h = try_open(path, why, sizeof why);
                }
            }
        }
        if (!h) {
            snprintf(path, sizeof path, "%s/" MODULE_NAME, DP_CUDA_MODULE_INSTALL_DIR);
            if (access(path, F_OK) == 0) h = try_open(path, why, sizeof why);
        }
        if (!h) h = try_open(MODULE_NAME, why, sizeof why);
        const dp_cuda_module *(*entry)(void) = NULL;
        if (h) *(void **)&entry = dlsym(h, "dp_cuda_module_entry");
        if (!h)
            snprintf(reason, sizeof reason, "the CUDA backend module %s could not be loaded (%.400s)", MODULE_NAME, why);
        else if (!entry || !entry())
            snprintf(reason, sizeof reason, "%s is not a dpformer CUDA backend module", MODULE_NAME);
        else if (entry()->abi != DP_CUDA_MODULE_ABI)
            snprintf(reason, sizeof reason, "%s was built from another version of dpformer (interface %d, this "
                     "library %d)", MODULE_NAME, entry()->abi, DP_CUDA_MODULE_ABI);
        else
            mod = entry();
    }
    if (!mod) dp_fail(err, "%s", reason);
    return mod;
}
#endif

const dp_backend *dp_backend_cuda(dp_error *err) {
#ifndef DP_HAVE_CUDA
    dp_fail(err, "this dpformer was built without the CUDA backend (configure with -DDPFORMER_CUDA=ON where the CUDA "
                 "toolkit is installed)");
    return NULL;
#else
    const dp_cuda_module *mod = cuda_module(err);
    return mod ? mod->backend(err) : NULL;
#endif
}

int dp_built_with_cuda(void) {
#ifdef DP_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

/* The module's queries, or the answers of a machine without it. */
static const dp_cuda_module *cuda_if_usable(void) {
    dp_error err;
    return dp_backend_cuda(&err) ? cuda_module(&err) : NULL;
}

const dp_backend *dp_backend_of(dp_device device, dp_error *err) {
    return device == DP_DEVICE_CUDA ? dp_backend_cuda(err) : dp_backend_cpu();
}

int dp_device_check(dp_device d, dp_error *err) { return dp_backend_of(d, err) ? 0 : -1; }

const char *dp_device_description(dp_device d) {
    if (d == DP_DEVICE_CUDA) {
        const dp_cuda_module *mod = cuda_if_usable();
        return mod ? mod->description() : "";
    }
    return "cpu";
}

void dp_device_synchronize(dp_device d) {
    dp_error err;
    const dp_backend *be = dp_backend_of(d, &err);
    if (be) be->synchronize();
}

size_t dp_device_memory_used(dp_device d) {
    const dp_cuda_module *mod = d == DP_DEVICE_CUDA ? cuda_if_usable() : NULL;
    return mod ? mod->memory_used() : 0;
}

/* Best-of-reps rate of a square single-precision GEMM on the host (OpenBLAS). */
static double cpu_sgemm_gflops(int n, int reps) {
    real *a = dp_alloc_aligned(sizeof(real) * (size_t)n * n), *b = dp_alloc_aligned(sizeof(real) * (size_t)n * n),
         *c = dp_alloc_aligned(sizeof(real) * (size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (real)((i % 13) * 0.01 + 0.01);
        b[i] = (real)((i % 7) * 0.02 + 0.01);
    }
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = dp_now();
        linear_backward_input(c, a, b, n, n, n, 0); /* c = a · b, an n×n×n product */
        double t = dp_now() - t0;
        if (r > 0 && t < best) best = t; /* the first call warms caches and threads */
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

double dp_device_sgemm_gflops(dp_device d, int n, int reps) {
    if (d == DP_DEVICE_CPU) return cpu_sgemm_gflops(n, reps);
    const dp_cuda_module *mod = cuda_if_usable();
    return mod ? mod->sgemm_gflops(n, reps) : 0;
}
