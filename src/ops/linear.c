/* Linear (fully connected) layer forward and backward on top of BLAS GEMM. Weight layout is
 * [out, in] (as PyTorch's nn.Linear), so the forward is inp · Wᵀ. */
#include <omp.h>

#include "ops/blas.h"
#include "ops/norm_plan.h"
#include "ops/ops.h"

void linear_forward(real *out, const real *inp, const real *w, const real *b, long N, int C, int OC) {
    if (N <= 0) return;
    if (b) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)N * OC))
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
#pragma omp parallel num_threads(nt) if (OPS_PAR((double)N * OC))
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

int ops_blas_serial_enter(double macs, int *omp_threads) {
    if (macs >= OPS_BLAS_SERIAL_MACS || omp_in_parallel()) return 0; /* inside a region BLAS runs on one thread */
    const int n = openblas_get_num_threads();
    if (n <= 1) return 0;
    *omp_threads = omp_get_max_threads();
    openblas_set_num_threads(1); /* (OpenBLAS's OpenMP build also sets the OpenMP thread count) */
    return n;
}

void ops_blas_serial_leave(int blas_threads, int omp_threads) {
    if (blas_threads <= 1) return;
    openblas_set_num_threads(blas_threads);
    omp_set_num_threads(omp_threads);
}

/* ---- per-example squared norms of the weight gradient (privacy engine) ---- */

/* Σ_tu X_tu Y_tu over the lower triangles of two symmetric n×n matrices (diagonal once, the rest twice). */
double ops_sym_dot(const real *X, const real *Y, int n) {
    double s = 0;
    for (int t = 0; t < n; t++) {
        s += 0.5 * (double)X[(size_t)t * n + t] * Y[(size_t)t * n + t];
        for (int u = 0; u < t; u++) s += (double)X[(size_t)t * n + u] * Y[(size_t)t * n + u];
    }
    return 2 * s;
}

void linear_per_example_sqnorm(double *sq, const real *G, const real *A, const int *lo, int B, int T, int Cin,
                               int Cout, int with_bias, dp_norm_method method) {
    long n_gram = 0, n_inst = 0;
    for (int b = 0; b < B; b++)
        if (T - lo[b] > 0) {
            if (linear_norm_uses_gram(T - lo[b], Cin, Cout, method)) n_gram++;
            else n_inst++;
        }
    norm_forms_count(DP_NORM_LAYER_LINEAR, Cin, Cout, n_gram, n_inst);
#pragma omp parallel
    {
        real *ga = NULL, *gg = NULL, *w = NULL;
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            int n = T - lo[b];
            if (n <= 0) continue;
            const real *Ab = A + ((size_t)b * T + lo[b]) * Cin, *Gb = G + ((size_t)b * T + lo[b]) * Cout;
            double s = 0;
            int gram = linear_norm_uses_gram(n, Cin, Cout, method);
            if (gram) {
                if (!ga) {
                    ga = dp_malloc(sizeof(real) * (size_t)T * T);
                    gg = dp_malloc(sizeof(real) * (size_t)T * T);
                }
                dp_syrk(CblasRowMajor, CblasLower, CblasNoTrans, n, Cin, 1, Ab, Cin, 0, ga, n);
                dp_syrk(CblasRowMajor, CblasLower, CblasNoTrans, n, Cout, 1, Gb, Cout, 0, gg, n);
                s = ops_sym_dot(ga, gg, n);
            } else {
                if (!w) w = dp_malloc(sizeof(real) * (size_t)Cin * Cout);
                dp_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cin, Cout, n, 1, Ab, Cin, Gb, Cout, 0, w, Cout);
                for (size_t i = 0; i < (size_t)Cin * Cout; i++) s += (double)w[i] * w[i];
            }
            if (with_bias) {
                for (int o = 0; o < Cout; o++) {
                    double c = 0;
                    for (int t = 0; t < n; t++) c += Gb[(size_t)t * Cout + o];
                    s += c * c;
                }
            }
            sq[b] += s;
        }
        free(ga);
        free(gg);
        free(w);
    }
}

void rows_scale_by_example(real *x, const double *c, int B, int T, int C) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * T * C))
    for (long r = 0; r < (long)B * T; r++) {
        real s = (real)c[r / T];
        real *row = x + r * C;
        for (int i = 0; i < C; i++) row[i] *= s;
    }
}
