/* The CUDA twins of src/ops/classifier.c's privacy-engine passes (classifier_dp_scratch_size,
 * classifier_dp_chunk_rows, classifier_dp_pass1, classifier_dp_pass2): the output layer's loss, dh,
 * per-example weight-gradient norms (and the tied embedding's cross-term vectors Q) in pass 1, and the
 * clipped weight gradient in pass 2 from the group's δ rows kept in the caller's scratch in between.
 * Gram form for every example (exact; `method` is not read; *inst is always NULL).
 *
 * The group's B examples keep all their T rows each, padding included (rows with weight 0 are skipped
 * as on the CPU: loss 0, row_a 0, δ row 0, h row copied as 0, so they add exactly nothing), which
 * makes every per-example product a strided-batched GEMM. Scratch layout (floats, each part 256-byte
 * aligned), for the N = B·T rows of the group:
 *   E  [N, V]   logits, then in place δ_r = row_a_r·exp(z_r − max_r) − w_r·onehot(target_r − 1)
 *   Hp [N, C]   h with skipped rows zeroed (pass 2 has no h argument); pass 2 scales it in place
 *   w1 [N]      the row weights of pass 1 (pass 2 forms δ' = (w'_r / w1_r)·δ_r)
 *   X  [B,T,T]  H_b H_bᵀ, then the gather M_b for Q
 *   Y  [B,T,T]  Δ_b Δ_bᵀ
 * Pass 1: logits (SGEMM), one kernel per row (max, Σ exp in double, loss, row_a, δ in place, Hp, w1),
 * dh = δ·W (SGEMM), X and Y (strided-batched SGEMMs), out_sq[b] += Σ_tu X_tu·Y_tu (double, a block
 * per example), and for Q: M_b[t,u] = δ_{b,u}[ids_t − 1] (0 where ids_t = 0), Q_b = M_b·Hp_b.
 * Pass 2: Hp_r *= w'_r / w1_r, then dW[1..V] += δᵀ·Hp (one SGEMM over the group's rows). With the
 * caller's rescaling w'_r = c_b·w_r, row_a'_r = c_b·row_a_r this is Σ_r w'_r (softmax − onehot)ᵀ h_r,
 * the CPU's result (row_a' itself is not needed: δ' = c_b·δ exactly).
 *
 * Grouping: any group of up to the B the scratch was sized for fits it (all T rows of every example
 * are stored), so cuda_classifier_dp_chunk_rows imposes no limit and the privacy engine runs one group
 * per batch (the fewest launches). The price is scratch for max_batch·T·V logits, e.g. 1.2 GB for
 * B 256 × T 50 × V 23,716, 0.4 GB for 16 × 128 × 50,257; a shape that does not fit the device fails at
 * model creation (allocation error), not here. */
#include <math.h>

#include "backend/cuda/cuda_common.h"

static_assert(sizeof(real) == sizeof(float), "the CUDA backend is single precision only");

#define CDP_THREADS 256
/* "No limit": larger than any batch's rows (one group per batch; see above). */
#define CDP_NO_LIMIT (1L << 40)
/* Bound on the elements of the output of one plain SGEMM over rows (larger ones go in row chunks). */
#define CDP_GEMM_ELEMS (1L << 30)

/* ---------------- scratch layout ---------------- */

typedef struct {
    size_t E, Hp, w1, X, Y, total; /* offsets and total, in floats */
} cdp_layout;

static size_t cdp_align(size_t floats) { return (floats + 63) & ~(size_t)63; }

static cdp_layout cdp_layout_of(int B, int T, int C, int V) {
    const size_t N = (size_t)(B > 0 ? B : 1) * (size_t)(T > 0 ? T : 1);
    const size_t TT = (size_t)(T > 0 ? T : 1) * (size_t)(T > 0 ? T : 1);
    cdp_layout L;
    L.E = 0;
    L.Hp = L.E + cdp_align(N * (size_t)(V > 0 ? V : 1));
    L.w1 = L.Hp + cdp_align(N * (size_t)(C > 0 ? C : 1));
    L.X = L.w1 + cdp_align(N);
    L.Y = L.X + cdp_align((size_t)(B > 0 ? B : 1) * TT);
    L.total = L.Y + cdp_align((size_t)(B > 0 ? B : 1) * TT);
    return L;
}

extern "C" size_t cuda_classifier_dp_scratch_size(int B, int T, int C, int V) {
    return cdp_layout_of(B, T, C, V).total;
}

extern "C" long cuda_classifier_dp_chunk_rows(int T, int V) {
    (void)T;
    (void)V;
    return CDP_NO_LIMIT;
}

/* ---------------- block reductions ---------------- */

__device__ __forceinline__ float cdp_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double cdp_warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Block-wide max / sum (blockDim.x a multiple of 32, at most 1024); every thread gets the result. */
static __device__ float cdp_block_max(float v) {
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = cdp_warp_max(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : -INFINITY;
        v = cdp_warp_max(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}
static __device__ double cdp_block_sum(double v) {
    __shared__ double sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = cdp_warp_sum(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : 0.0;
        v = cdp_warp_sum(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

/* ---------------- kernels ---------------- */

/* One block per row r of the group (z = E + r·V holds its logits). Skipped rows (weight 0; target not
 * read): loss 0, row_a 0, δ row 0, Hp row 0, w1 0. Others, as the CPU (Σ in double):
 *   loss = max + log Σ_v exp(z_v − max) − z_{y}, a = weight / Σ, z_v ← a·exp(z_v − max) − weight·[v = y]
 * with y = target − 1; row_a = a, Hp row = h row, w1 = weight. */
static __global__ void cdp_rows(float *E, float *Hp, float *w1, float *loss, float *row_a, const float *h,
                                const int32_t *target, const float *weight, int C, int V) {
    const long r = blockIdx.x;
    float *zr = E + (size_t)r * V;
    float *hp = Hp + (size_t)r * C;
    const float w = weight[r];
    if (w == 0.0f) {
        for (int v = threadIdx.x; v < V; v += blockDim.x) zr[v] = 0.0f;
        for (int i = threadIdx.x; i < C; i += blockDim.x) hp[i] = 0.0f;
        if (threadIdx.x == 0) {
            loss[r] = 0.0f;
            row_a[r] = 0.0f;
            w1[r] = 0.0f;
        }
        return;
    }
    const float *hr = h + (size_t)r * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) hp[i] = hr[i];
    const int y = target[r] - 1;
    float zy = 0.0f;
    if (threadIdx.x == 0) zy = zr[y]; /* read before the row is overwritten (the reductions sync) */
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, zr[v]);
    mx = cdp_block_max(mx);
    double s = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float e = expf(zr[v] - mx);
        zr[v] = e;
        s += (double)e;
    }
    const double sum = cdp_block_sum(s);
    const float a = (float)((double)w / sum);
    if (threadIdx.x == 0) {
        loss[r] = (float)((double)mx + log(sum) - (double)zy);
        row_a[r] = a;
        w1[r] = w;
    }
    /* same partition of v as the exp pass: each thread rescales the values it wrote */
    for (int v = threadIdx.x; v < V; v += blockDim.x) zr[v] = a * zr[v] - (v == y ? w : 0.0f);
}

/* sq[b] += Σ_{t,u} X_b[t,u]·Y_b[t,u] in double, X_b, Y_b the [T,T] blocks of example b. One block per
 * example. */
static __global__ void cdp_gram_dot(double *sq, const float *X, const float *Y, long TT) {
    const int b = blockIdx.x;
    const float *x = X + (size_t)b * TT, *y = Y + (size_t)b * TT;
    double s = 0.0;
    for (long e = threadIdx.x; e < TT; e += blockDim.x) s += (double)x[e] * (double)y[e];
    s = cdp_block_sum(s);
    if (threadIdx.x == 0) sq[b] += s;
}

/* M[b,t,u] = δ_{b·T+u}[ids[b·T+t] − 1], 0 where ids is 0 (or outside 1..V). One thread per entry. */
static __global__ void cdp_gather(float *M, const float *E, const int32_t *ids, int T, int V, long n) {
    const long e = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n) return;
    const long TT = (long)T * T;
    const long b = e / TT;
    const int t = (int)((e / T) % T), u = (int)(e % T);
    const int32_t id = ids[b * T + t];
    M[e] = id > 0 && id <= V ? E[((size_t)b * T + u) * V + (id - 1)] : 0.0f;
}

/* Hp[r,:] *= weight[r] / w1[r] (in double, rounded once; 0 for rows skipped in pass 1). One thread per
 * element. */
static __global__ void cdp_rescale(float *Hp, const float *w1, const float *weight, int C, long n) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const long r = i / C;
    const float w = w1[r];
    const float s = w != 0.0f ? (float)((double)weight[r] / (double)w) : 0.0f;
    Hp[i] *= s;
}

/* ---------------- the passes ---------------- */

/* Rows per plain SGEMM over rows with V outputs each. */
static long cdp_gemm_rows(int V) {
    long r = CDP_GEMM_ELEMS / (V > 0 ? V : 1);
    return r < 1 ? 1 : r;
}

/* Row-major ↔ cuBLAS column-major: a row-major [R,K] matrix is a column-major [K,R] one with ld K.
 *   logits z[N,V] = h[N,C]·Wcᵀ        ⇔ zᵀ[V,N]   = (Wc as [C,V])ᵀ · (h as [C,N])
 *   dh[N,C]       = δ[N,V]·Wc[V,C]    ⇔ dhᵀ[C,N]  = (Wc as [C,V]) · (δ as [V,N])
 *   dWc[V,C]     += δᵀ[V,N]·Hp[N,C]   ⇔ dWcᵀ[C,V] += (Hp as [C,N]) · (δ as [V,N])ᵀ
 *   X_b[T,T]      = H_b H_bᵀ          ⇔ (H_b as [C,T])ᵀ · (H_b as [C,T])   (symmetric)
 *   Y_b[T,T]      = Δ_b Δ_bᵀ          ⇔ (Δ_b as [V,T])ᵀ · (Δ_b as [V,T])   (symmetric)
 *   Q_b[T,C]      = M_b[T,T]·Hp_b[T,C] ⇔ Q_bᵀ[C,T] = (Hp_b as [C,T]) · (M_b as [T,T] = M_bᵀ) */
extern "C" void cuda_classifier_dp_pass1(real *loss, real *dh, real *row_a, double *out_sq, real *Q, real **inst,
                                         const real *h, const real *W, const int32_t *target, const real *weight,
                                         const int32_t *ids, int B, int T, int C, int V, dp_norm_method method,
                                         real *scratch) {
    (void)method;
    if (inst) *inst = NULL;
    if (B <= 0 || T <= 0 || C <= 0 || V <= 0) return;
    cublasHandle_t hb = dp_cuda_blas();
    const cdp_layout L = cdp_layout_of(B, T, C, V);
    float *E = scratch + L.E, *Hp = scratch + L.Hp, *w1 = scratch + L.w1, *X = scratch + L.X, *Y = scratch + L.Y;
    const float *Wc = W + C; /* candidate rows 1..V */
    const long N = (long)B * T, R = cdp_gemm_rows(V);
    const float one = 1.0f, zero = 0.0f;

    for (long r0 = 0; r0 < N; r0 += R) {
        const int nr = (int)(N - r0 < R ? N - r0 : R);
        CUBLAS_CHECK(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, V, nr, C, &one, Wc, C, h + (size_t)r0 * C, C, &zero,
                                 E + (size_t)r0 * V, V));
    }
    cdp_rows<<<(unsigned)N, CDP_THREADS>>>(E, Hp, w1, loss, row_a, h, target, weight, C, V);
    CUDA_CHECK_LAUNCH();
    for (long r0 = 0; r0 < N; r0 += R) {
        const int nr = (int)(N - r0 < R ? N - r0 : R);
        CUBLAS_CHECK(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, C, nr, V, &one, Wc, C, E + (size_t)r0 * V, V, &zero,
                                 dh + (size_t)r0 * C, C));
    }

    /* per-example norms in Gram form: ‖Δ_bᵀ H_b‖² = Σ_tu (H_b H_bᵀ)_tu (Δ_b Δ_bᵀ)_tu */
    const long long sH = (long long)T * C, sE = (long long)T * V, sX = (long long)T * T;
    CUBLAS_CHECK(cublasSgemmStridedBatched(hb, CUBLAS_OP_T, CUBLAS_OP_N, T, T, C, &one, Hp, C, sH, Hp, C, sH, &zero, X,
                                           T, sX, B));
    CUBLAS_CHECK(cublasSgemmStridedBatched(hb, CUBLAS_OP_T, CUBLAS_OP_N, T, T, V, &one, E, V, sE, E, V, sE, &zero, Y,
                                           T, sX, B));
    cdp_gram_dot<<<(unsigned)B, CDP_THREADS>>>(out_sq, X, Y, (long)sX);
    CUDA_CHECK_LAUNCH();

    /* tied embedding: Q_b[t,:] = Σ_u δ_u[ids_t − 1] h_u (X is free again: the stream orders the reuse) */
    if (Q) {
        if (!ids) {
            CUDA_CHECK(cudaMemsetAsync(Q, 0, sizeof(float) * (size_t)N * C, 0));
        } else {
            const long n = (long)B * sX;
            cdp_gather<<<dp_cuda_blocks(n, CDP_THREADS), CDP_THREADS>>>(X, E, ids, T, V, n);
            CUDA_CHECK_LAUNCH();
            CUBLAS_CHECK(cublasSgemmStridedBatched(hb, CUBLAS_OP_N, CUBLAS_OP_N, C, T, T, &one, Hp, C, sH, X, T, sX,
                                                   &zero, Q, C, sH, B));
        }
    }
}

extern "C" void cuda_classifier_dp_pass2(real *dW, const real *inst, const real *W, const int32_t *target,
                                         const real *weight, const real *row_a, const double *c, int B, int T, int C,
                                         int V, dp_norm_method method, real *scratch) {
    (void)inst;
    (void)W;
    (void)target;
    (void)row_a;
    (void)c;
    (void)method;
    if (B <= 0 || T <= 0 || C <= 0 || V <= 0) return;
    cublasHandle_t hb = dp_cuda_blas();
    const cdp_layout L = cdp_layout_of(B, T, C, V);
    const float *E = scratch + L.E;
    float *Hp = scratch + L.Hp;
    const float *w1 = scratch + L.w1;
    float *dWc = dW + C;
    const long N = (long)B * T, R = cdp_gemm_rows(V);
    const float one = 1.0f;

    /* δ'_r = (w'_r / w1_r)·δ_r, folded into the small operand */
    const long n = N * C;
    cdp_rescale<<<dp_cuda_blocks(n, CDP_THREADS), CDP_THREADS>>>(Hp, w1, weight, C, n);
    CUDA_CHECK_LAUNCH();
    for (long r0 = 0; r0 < N; r0 += R) {
        const int nr = (int)(N - r0 < R ? N - r0 : R);
        CUBLAS_CHECK(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_T, C, V, nr, &one, Hp + (size_t)r0 * C, C,
                                 E + (size_t)r0 * V, V, &one, dWc, C));
    }
}
