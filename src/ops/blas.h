/* Maps the library's `real` type onto the matching CBLAS routines (s* for float, d* for double), and
 * runs a small product called outside a parallel region on the calling thread: OpenBLAS would start
 * its threads for it, a parallel region that costs more than the product (see OPS_PAR_MIN_WORK). The
 * choice depends on the shape and the thread count only, so seeded runs stay reproducible. */
#ifndef DP_OPS_BLAS_H
#define DP_OPS_BLAS_H

#include <cblas.h>
#include "core/common.h"

/* Products of fewer multiply-adds run on one thread (4M multiply-adds: under 0.1 ms on one core at the
 * ~100 GFLOP/s per core that `bench step` measures on the 2-core AMD EPYC machines). */
#define OPS_BLAS_SERIAL_MACS 4194304.0

/* If a product of `macs` multiply-adds should run on one thread, switches BLAS to one thread and
 * returns BLAS's thread count to restore (*omp_threads: OpenMP's), else 0; leave restores both. */
int ops_blas_serial_enter(double macs, int *omp_threads);
void ops_blas_serial_leave(int blas_threads, int omp_threads);

#ifdef DP_REAL_DOUBLE
#define DP_CBLAS_GEMM cblas_dgemm
#define DP_CBLAS_SYRK cblas_dsyrk
#else
#define DP_CBLAS_GEMM cblas_sgemm
#define DP_CBLAS_SYRK cblas_ssyrk
#endif

#define dp_gemm(order, ta, tb, M, N, K, ...)                                                                   \
    do {                                                                                                       \
        int omp_ = 0;                                                                                          \
        const int blas_ = ops_blas_serial_enter((double)(M) * (double)(N) * (double)(K), &omp_);               \
        DP_CBLAS_GEMM(order, ta, tb, M, N, K, __VA_ARGS__);                                                    \
        ops_blas_serial_leave(blas_, omp_);                                                                    \
    } while (0)

#define dp_syrk(order, uplo, trans, N, K, ...)                                                                 \
    do {                                                                                                       \
        int omp_ = 0;                                                                                          \
        const int blas_ = ops_blas_serial_enter(0.5 * (double)(N) * (double)(N) * (double)(K), &omp_);         \
        DP_CBLAS_SYRK(order, uplo, trans, N, K, __VA_ARGS__);                                                  \
        ops_blas_serial_leave(blas_, omp_);                                                                    \
    } while (0)

#endif
