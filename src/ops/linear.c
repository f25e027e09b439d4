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

/* db[OC] += Σ_rows dout[N,OC]. Each thread sums a fixed block of rows (contiguous, cache friendly)
 * in double; the blocks are then added in order, so the result depends only on the thread count. */
static void bias_grad(real *db, const real *dout, long N, int OC) {
    int nt = omp_get_max_threads();
    double *part = dp_calloc((size_t)nt * OC, sizeof(double));
#pragma omp parallel num_threads(nt)
    {
        int id = omp_get_thread_num(), n = omp_get_num_threads();
        long lo = N * id / n, hi = N * (id + 1) / n;
        double *acc = part + (size_t)id * OC;
        for (long r = lo; r < hi; r++)
            for (int o = 0; o < OC; o++) acc[o] += dout[r * OC + o];
    }
    for (int t = 0; t < nt; t++)
        for (int o = 0; o < OC; o++) db[o] += (real)part[(size_t)t * OC + o];
    free(part);
}

void linear_backward_params(real *dw, real *db, const real *dout, const real *inp, long N, int C, int OC) {
    if (N <= 0) return;
    dp_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, (int)N, 1, dout, OC, inp, C, 1, dw, C);
    if (db) bias_grad(db, dout, N, OC);
}

void ops_set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}
