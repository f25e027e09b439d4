/* Maps the library's `real` type onto the matching CBLAS routines (sgemm for float, dgemm for double). */
#ifndef DP_OPS_BLAS_H
#define DP_OPS_BLAS_H

#include <cblas.h>
#include "core/common.h"

#ifdef DP_REAL_DOUBLE
#define dp_gemm cblas_dgemm
#else
#define dp_gemm cblas_sgemm
#endif

#endif
