/* Optimiser updates on the device: the CUDA twins of src/ops/optimizer.c (AdamW, SGD with momentum,
 * the gradient scale, the finiteness check),
 * one thread per parameter, every value's update computed in double and rounded once, as on the CPU. */
#include "backend/cuda/cuda_common.h"

__global__ void adamw_kernel(float *p, float *m1, float *m2, const float *g, const unsigned char *decay, size_t n,
                             double lr, double b1, double b2, double bc1, double bc2, double eps, double wd) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    double gi = g[i];
    double a = b1 * m1[i] + (1 - b1) * gi;
    double v = b2 * m2[i] + (1 - b2) * gi * gi;
    m1[i] = (float)a;
    m2[i] = (float)v;
    double upd = (a / bc1) / (sqrt(v / bc2) + eps);
    if (decay[i]) upd += wd * p[i];
    p[i] -= (float)(lr * upd);
}

__global__ void sgd_kernel(float *p, float *m1, const float *g, const unsigned char *decay, size_t n, double lr,
                           double mu, double wd) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    double gi = g[i] + (decay[i] ? wd * p[i] : 0);
    double v = mu * m1[i] + gi;
    m1[i] = (float)v;
    p[i] -= (float)(lr * v);
}

extern "C" void cuda_adamw_update(real *p, real *m1, real *m2, const real *g, const unsigned char *decay, size_t n,
                                  double lr, double b1, double b2, double bc1, double bc2, double eps, double wd) {
    if (!n) return;
    adamw_kernel<<<dp_cuda_blocks((long)n, 256), 256>>>(p, m1, m2, g, decay, n, lr, b1, b2, bc1, bc2, eps, wd);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_sgd_update(real *p, real *m1, const real *g, const unsigned char *decay, size_t n, double lr,
                                double mu, double wd) {
    if (!n) return;
    sgd_kernel<<<dp_cuda_blocks((long)n, 256), 256>>>(p, m1, g, decay, n, lr, mu, wd);
    CUDA_CHECK_LAUNCH();
}

__global__ void scale_kernel(float *x, size_t n, double a) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = (float)(a * x[i]);
}

extern "C" void cuda_vec_scale(real *x, size_t n, double a) {
    if (!n) return;
    scale_kernel<<<dp_cuda_blocks((long)n, 256), 256>>>(x, n, a);
    CUDA_CHECK_LAUNCH();
}

__global__ void nonfinite_kernel(const float *x, size_t n, unsigned long long *count) {
    unsigned long long bad = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        bad += !isfinite(x[i]);
    for (int o = 16; o > 0; o >>= 1) bad += __shfl_down_sync(0xffffffffu, bad, o);
    if ((threadIdx.x & 31) == 0 && bad) atomicAdd(count, bad);
}

extern "C" long cuda_count_nonfinite(const real *x, size_t n) {
    if (!n) return 0;
    static unsigned long long *count;
    if (!count) CUDA_CHECK(cudaMalloc((void **)&count, sizeof *count));
    CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof *count, 0));
    unsigned blocks = dp_cuda_blocks((long)n, 256);
    if (blocks > 4096) blocks = 4096;
    nonfinite_kernel<<<blocks, 256>>>(x, n, count);
    CUDA_CHECK_LAUNCH();
    unsigned long long h = 0;
    CUDA_CHECK(cudaMemcpy(&h, count, sizeof h, cudaMemcpyDeviceToHost));
    return (long)h;
}
