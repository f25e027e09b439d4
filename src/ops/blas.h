/* Maps the library's `real` type onto the matching CBLAS routines (s* for float, d* for double). */
#ifndef DP_OPS_BLAS_H
#define DP_OPS_BLAS_H

#include <cblas.h>
#include "core/common.h"

#ifdef DP_REAL_DOUBLE
#define dp_gemm cblas_dgemm
#define dp_syrk cblas_dsyrk
#else
#define dp_gemm cblas_sgemm
#define dp_syrk cblas_ssyrk
#endif

#endif
