/* Device names and selection: parsing `--device`, whether a device can run now, and the backend of a
 * device. Without the CUDA backend in the build (CMake DPFORMER_CUDA=OFF, and always in the
 * double-precision library), `cuda` is refused with a message that says so. */
#include "backend/backend.h"

int dp_device_parse(const char *s, dp_device *d) {
    if (strcmp(s, "cpu") == 0) *d = DP_DEVICE_CPU;
    else if (strcmp(s, "cuda") == 0) *d = DP_DEVICE_CUDA;
    else return -1;
    return 0;
}

const char *dp_device_name(dp_device d) { return d == DP_DEVICE_CUDA ? "cuda" : "cpu"; }

#ifndef DP_HAVE_CUDA
const dp_backend *dp_backend_cuda(dp_error *err) {
    dp_fail(err, "this dpformer was built without the CUDA backend (configure with -DDPFORMER_CUDA=ON where the CUDA "
                 "toolkit is installed)");
    return NULL;
}
int dp_built_with_cuda(void) { return 0; }
const char *dp_cuda_description(void) { return ""; }
size_t dp_cuda_memory_used(void) { return 0; }
double dp_cuda_sgemm_gflops(int n, int reps) {
    (void)n;
    (void)reps;
    return 0;
}
#endif

const dp_backend *dp_backend_of(dp_device device, dp_error *err) {
    return device == DP_DEVICE_CUDA ? dp_backend_cuda(err) : dp_backend_cpu();
}

int dp_device_check(dp_device d, dp_error *err) { return dp_backend_of(d, err) ? 0 : -1; }

const char *dp_device_description(dp_device d) {
    if (d == DP_DEVICE_CUDA) {
        dp_error err;
        return dp_backend_cuda(&err) ? dp_cuda_description() : "";
    }
    return "cpu";
}

void dp_device_synchronize(dp_device d) {
    dp_error err;
    const dp_backend *be = dp_backend_of(d, &err);
    if (be) be->synchronize();
}

size_t dp_device_memory_used(dp_device d) { return d == DP_DEVICE_CUDA ? dp_cuda_memory_used() : 0; }

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
    return d == DP_DEVICE_CUDA ? dp_cuda_sgemm_gflops(n, reps) : cpu_sgemm_gflops(n, reps);
}
