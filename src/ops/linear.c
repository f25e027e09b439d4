/* Linear (fully connected) layer forward and backward on top of BLAS GEMM. Weight layout is
 * [out, in] (as PyTorch's nn.Linear), so the forward is inp · Wᵀ. */
#include <omp.h>

#include "ops/blas.h"
#include "ops/ops.h"

void linear_forward(real *out, const real *inp, const real *w, const real *b, long N, int C, int OC) {
    if (N <= 0) return;
    if (b) {
#pragma omp parallel for schedule(static)
        for (long r = 0; r < N; r++) memcpy(out + r * OC, b, sizeof(real) * (size_t)OC);
    }
    dp_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, OC, C, 1, inp, C, w, C, b ? 1 : 0, out, OC);
}

void linear_backward_input(real *dinp, const real *dout, const real *w, long N, int C, int OC, int accumulate) {
    if (N <= 0) return;
    dp_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, C, OC, 1, dout, OC, w, C, accumulate ? 1 : 0, dinp, C);
}

void linear_backward_params(real *dw, real *db, const real *dout, const real *inp, long N, int C, int OC) {
    if (N <= 0) return;
    dp_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, (int)N, 1, dout, OC, inp, C, 1, dw, C);
    if (db) {
        /* Column sums in double: N can be large and the order must not depend on thread count. */
#pragma omp parallel for schedule(static)
        for (int o = 0; o < OC; o++) {
            double s = 0;
            for (long r = 0; r < N; r++) s += dout[r * OC + o];
            db[o] += (real)s;
        }
    }
}

void ops_set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}
