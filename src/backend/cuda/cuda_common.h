/* Shared by the CUDA backend's .cu files: checked CUDA/cuBLAS calls (an error is an internal error
 * that names the file and line and aborts: the inputs were validated before any op runs), the
 * library's cuBLAS handle and its scratch, launch-size helpers. C++ (nvcc) only. */
#ifndef DP_CUDA_COMMON_H
#define DP_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_ops.h"

#define CUDA_CHECK(call)                                                                                   \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "dpformer: internal error: CUDA: %s at %s:%d (%s)\n", cudaGetErrorString(e_), \
                    __FILE__, __LINE__, #call);                                                            \
            abort();                                                                                       \
        }                                                                                                  \
    } while (0)

/* After every kernel launch: a bad launch configuration is reported here, at its source. */
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#define CUBLAS_CHECK(call)                                                                                 \
    do {                                                                                                   \
        cublasStatus_t s_ = (call);                                                                        \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                 \
            fprintf(stderr, "dpformer: internal error: cuBLAS status %d at %s:%d (%s)\n", (int)s_, __FILE__, \
                    __LINE__, #call);                                                                      \
            abort();                                                                                       \
        }                                                                                                  \
    } while (0)

/* The library's cuBLAS handle (created on first use, default stream, float32 math unless the
 * precision was switched). */
cublasHandle_t dp_cuda_blas(void);

/* Blocks of `threads` covering n items. */
static inline unsigned dp_cuda_blocks(long n, int threads) {
    long b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b);
}

/* The dropout keep decision of ops.h's dp_dropout_keep, bit for bit, on the device. */
__device__ __forceinline__ int dp_dropout_keep_dev(uint64_t seed, uint64_t idx, float p) {
    uint64_t z = seed ^ (idx * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0) >= (double)p;
}

#endif
