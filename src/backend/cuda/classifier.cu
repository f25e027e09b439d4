/* The CUDA twin of src/ops/classifier.c's classifier_forward_backward: output layer + softmax
 * cross-entropy over the V candidates (rows 1..V of W[V+1,C]) in chunks of rows, so that only the
 * logits of one chunk [R,V] exist at a time (in the caller's scratch). Per chunk: one SGEMM for the
 * logits, one kernel (a block per row) for max, Σ exp, the loss and, in place, the logits' gradient
 * weight·(softmax − onehot), then one SGEMM each for dh and dW. Rows with weight 0 are skipped as on
 * the CPU: loss 0 and a zero gradient row, so the GEMMs add nothing for them. */
#include <math.h>

#include "backend/cuda/cuda_common.h"

static_assert(sizeof(real) == sizeof(float), "the CUDA backend is single precision only");

/* Logits per chunk: 64M (256 MB of scratch in float). Fewer, larger chunks keep the GEMMs efficient. */
#define CLS_CHUNK_LOGITS (64L << 20)
#define CLS_THREADS 256

static long cls_chunk_rows(long N, int V) {
    long r = CLS_CHUNK_LOGITS / (V > 0 ? V : 1);
    if (r < 1) r = 1;
    long n = N > 0 ? N : 1;
    return r < n ? r : n;
}

extern "C" size_t cuda_classifier_scratch_size(long N, int C, int V) {
    (void)C;
    return (size_t)cls_chunk_rows(N, V) * (size_t)(V > 0 ? V : 1);
}

__device__ __forceinline__ float cls_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double cls_warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Block-wide max / sum (blockDim.x a multiple of 32, at most 1024); every thread gets the result. */
__device__ float cls_block_max(float v) {
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = cls_warp_max(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : -INFINITY;
        v = cls_warp_max(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}
__device__ double cls_block_sum(double v) {
    __shared__ double sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = cls_warp_sum(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : 0.0;
        v = cls_warp_sum(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

/* One block per row j of the chunk (global row r = r0 + j) of z[nr,V] (the logits):
 *   loss[r] = max + log Σ_v exp(z_v − max) − z_{target−1}   (Σ in double, as the CPU)
 * and, if grads, z_v ← a·exp(z_v − max) − weight·[v = target−1] with a = weight / Σ (the gradient of
 * weight·loss with respect to the logits). Skipped rows (weight 0): loss 0, gradient row 0; their
 * target is not read. */
__global__ void cls_xent_rows(float *z, float *loss, const int32_t *target, const float *weight, long r0, int V,
                              int grads) {
    const long r = r0 + blockIdx.x;
    float *zr = z + (size_t)blockIdx.x * V;
    const float w = weight[r];
    if (w == 0.0f) {
        if (threadIdx.x == 0) loss[r] = 0.0f;
        if (grads)
            for (int v = threadIdx.x; v < V; v += blockDim.x) zr[v] = 0.0f;
        return;
    }
    const int y = target[r] - 1;
    float zy = 0.0f;
    if (threadIdx.x == 0) zy = zr[y]; /* read before the row is overwritten (the reductions sync) */
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, zr[v]);
    mx = cls_block_max(mx);
    double s = 0.0;
    if (grads) {
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            float e = expf(zr[v] - mx);
            zr[v] = e;
            s += (double)e;
        }
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) s += (double)expf(zr[v] - mx);
    }
    const double sum = cls_block_sum(s);
    if (threadIdx.x == 0) {
        double l = (double)mx + log(sum);
        loss[r] = (float)(l - (double)zy);
    }
    if (grads) {
        const float a = (float)((double)w / sum);
        /* same partition of v as the exp pass: each thread rescales the values it wrote */
        for (int v = threadIdx.x; v < V; v += blockDim.x) zr[v] = a * zr[v] - (v == y ? w : 0.0f);
    }
}

/* Row-major ↔ cuBLAS column-major: a row-major [R,K] matrix is a column-major [K,R] one with ld K.
 *   logits z[nr,V] = h_c[nr,C]·Wcᵀ      ⇔ zᵀ[V,nr]  = (Wc as [C,V])ᵀ · (h_c as [C,nr])
 *   dh_c[nr,C]     = δ[nr,V]·Wc[V,C]    ⇔ dhᵀ[C,nr] = (Wc as [C,V]) · (δ as [V,nr])
 *   dWc[V,C]      += δᵀ[V,nr]·h_c[nr,C] ⇔ dWᵀ[C,V] += (h_c as [C,nr]) · (δ as [V,nr])ᵀ */
extern "C" void cuda_classifier_forward_backward(real *loss, real *dh, real *dW, const real *h, const real *W,
                                                 const int32_t *target, const real *weight, long N, int C, int V,
                                                 real *scratch) {
    if (N <= 0 || V <= 0) return;
    cublasHandle_t hb = dp_cuda_blas();
    const float *Wc = W + C; /* candidate rows 1..V */
    float *dWc = dW ? dW + C : NULL;
    const long R = cls_chunk_rows(N, V);
    float *z = scratch;
    const int grads = dh != NULL || dWc != NULL;
    const float one = 1.0f, zero = 0.0f;
    for (long r0 = 0; r0 < N; r0 += R) {
        const int nr = (int)(N - r0 < R ? N - r0 : R);
        const float *hc = h + (size_t)r0 * C;
        CUBLAS_CHECK(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, V, nr, C, &one, Wc, C, hc, C, &zero, z, V));
        cls_xent_rows<<<nr, CLS_THREADS>>>(z, loss, target, weight, r0, V, grads);
        CUDA_CHECK_LAUNCH();
        if (dh)
            CUBLAS_CHECK(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, C, nr, V, &one, Wc, C, z, V, &zero,
                                     dh + (size_t)r0 * C, C));
        if (dWc) CUBLAS_CHECK(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_T, C, V, nr, &one, hc, C, z, V, &one, dWc, C));
    }
}
