/* Output layer + softmax cross-entropy over all V items, fused and computed in chunks of rows so that
 * the [N,V] logits of a batch never exist at once (only [R,V] for a chunk of R rows). Each chunk is
 * three GEMMs (logits, input gradient, weight gradient) around one pass of exp over the logits. */
#include <math.h>

#include "ops/blas.h"
#include "ops/ops.h"

/* Rows per chunk: about 16M logits (64 MB in float). Each chunk's GEMMs re-pack the [V,C] weight,
 * so fewer, larger chunks run closer to the GEMM peak; measured on the Amazon-Games shape
 * (V 23,716): 4M logits 1.87 s/step, 16M 1.56 s, 64M 1.64 s (docs/benchmarks.md). */
static long chunk_logits = 16L << 20;

void classifier_set_chunk_logits(long n) { chunk_logits = n > 0 ? n : (16L << 20); }

static long chunk_rows(int V) {
    long r = chunk_logits / (V > 0 ? V : 1);
    if (r < 16) r = 16;
    if (r > 8192) r = 8192;
    return r;
}

size_t classifier_scratch_size(long N, int C, int V) {
    long R = DP_MIN(chunk_rows(V), N > 0 ? N : 1);
    return (size_t)R * V + 2 * (size_t)R * C;
}

void classifier_forward_backward(real *loss, real *dh, real *dW, const real *h, const real *W, const int32_t *target,
                                 const real *weight, long N, int C, int V, real *scratch) {
    const real *Wc = W + C; /* candidate rows 1..V */
    real *dWc = dW ? dW + C : NULL;
    long R = DP_MIN(chunk_rows(V), N > 0 ? N : 1);
    real *z = scratch, *hp = scratch + (size_t)R * V, *dhp = hp + (size_t)R * C;
    long *active = dp_malloc(sizeof(long) * (size_t)(N > 0 ? N : 1));
    long na = 0;
    for (long r = 0; r < N; r++) {
        loss[r] = 0;
        if (weight[r] != 0) active[na++] = r;
    }
    if (dh) memset(dh, 0, sizeof(real) * (size_t)N * C);
    for (long s = 0; s < na; s += R) {
        long nr = DP_MIN(R, na - s);
        for (long j = 0; j < nr; j++) memcpy(hp + j * C, h + active[s + j] * C, sizeof(real) * (size_t)C);
        dp_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, V, C, 1, hp, C, Wc, C, 0, z, V);
#pragma omp parallel for schedule(static)
        for (long j = 0; j < nr; j++) {
            long r = active[s + j];
            real *zr = z + j * V;
            int y = target[r] - 1;
            real zy = zr[y], mx = zr[0];
#pragma omp simd reduction(max : mx)
            for (int v = 1; v < V; v++) mx = zr[v] > mx ? zr[v] : mx;
            double sum = vexp_shift_sum(zr, V, mx);
            loss[r] = (real)((double)mx + log(sum) - (double)zy);
            if (dh || dW) {
                real sc = (real)((double)weight[r] / sum);
#pragma omp simd
                for (int v = 0; v < V; v++) zr[v] *= sc;
                zr[y] -= weight[r];
            }
        }
        if (dh) {
            dp_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, C, V, 1, z, V, Wc, C, 0, dhp, C);
            for (long j = 0; j < nr; j++) memcpy(dh + active[s + j] * C, dhp + j * C, sizeof(real) * (size_t)C);
        }
        if (dWc) dp_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, (int)nr, 1, z, V, hp, C, 1, dWc, C);
    }
    free(active);
}
