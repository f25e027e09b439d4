/* CUDA twins of the row-wise and element-wise ops of src/ops: LayerNorm, exact and tanh GELU, hash-mask
 * dropout, add, the embedding lookup and its scatter-add, the sequence-classification head's pooling,
 * representation clip and softmax cross-entropy, and the privacy engine's per-example row scaling and
 * small reductions (squared norms, inner products, weighted row sums). Semantics (what accumulates,
 * what overwrites, NULL-able arguments) are those of ops.h. Row ops give a warp (LayerNorm) or a block
 * (the head, B rows; the per-example sums, one example) to a row; the head's and the privacy engine's
 * reductions run in double like the CPU code, LayerNorm's in float (two passes). */
#include "backend/cuda/cuda_common.h"

#include "dpformer/model.h"

#define EW_THREADS 256
#define EW_MAX_BLOCKS (1u << 20) /* grid-stride loops cover the rest */

static unsigned ew_blocks(long n) {
    unsigned b = dp_cuda_blocks(n, EW_THREADS);
    return b > EW_MAX_BLOCKS ? EW_MAX_BLOCKS : b;
}

#define GRID_STRIDE(i, n)                                                                      \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(n); \
         i += (size_t)gridDim.x * blockDim.x)

/* ---- reductions ---- */

__device__ __forceinline__ float warp_sum_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_max_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum (or max) over the block, returned to every thread. blockDim.x a multiple of 32, at most 1024;
 * every thread of the block must call it. sh: 32 doubles of shared memory. */
__device__ double block_sum_d(double v, double *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    v = warp_sum_d(v);
    __syncthreads(); /* sh may be reused by the caller */
    return v;
}

__device__ double block_max_d(double v, double *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max_d(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    v = warp_max_d(v);
    __syncthreads();
    return v;
}

/* ---- LayerNorm ---- */

#define LN_WARPS 8 /* rows per block, one warp each */

__global__ void layernorm_forward_kernel(real *out, real *mean, real *rstd, const real *inp, const real *w,
                                         const real *b, long N, int C) {
    long r = (long)blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= N) return; /* whole warp */
    const real *x = inp + (size_t)r * C;
    float s = 0;
    for (int i = lane; i < C; i += 32) s += x[i];
    float m = warp_sum_f(s) / (float)C;
    float v = 0;
    for (int i = lane; i < C; i += 32) {
        float d = x[i] - m;
        v += d * d;
    }
    v = warp_sum_f(v) / (float)C;
    float rs = (float)(1.0 / sqrt((double)v + DP_LN_EPS));
    real *o = out + (size_t)r * C;
    for (int i = lane; i < C; i += 32) o[i] = ((x[i] - m) * rs) * w[i] + b[i];
    if (lane == 0) {
        mean[r] = m;
        rstd[r] = rs;
    }
}

void cuda_layernorm_forward(real *out, real *mean, real *rstd, const real *inp, const real *w, const real *b, long N,
                            int C) {
    if (N <= 0 || C <= 0) return;
    unsigned blocks = (unsigned)((N + LN_WARPS - 1) / LN_WARPS);
    layernorm_forward_kernel<<<blocks, LN_WARPS * 32>>>(out, mean, rstd, inp, w, b, N, C);
    CUDA_CHECK_LAUNCH();
}

/* dinp += rstd·(dn − mean(dn) − x̂·mean(dn·x̂)), dn = dout∘w, one warp per row. */
__global__ void layernorm_backward_input_kernel(real *dinp, const real *dout, const real *inp, const real *w,
                                                const real *mean, const real *rstd, long N, int C) {
    long r = (long)blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= N) return;
    const real *x = inp + (size_t)r * C, *g = dout + (size_t)r * C;
    float m = mean[r], s = rstd[r];
    float sdn = 0, sdnxh = 0;
    for (int i = lane; i < C; i += 32) {
        float dn = g[i] * w[i];
        sdn += dn;
        sdnxh += dn * ((x[i] - m) * s);
    }
    sdn = warp_sum_f(sdn) / (float)C;
    sdnxh = warp_sum_f(sdnxh) / (float)C;
    real *dx = dinp + (size_t)r * C;
    for (int i = lane; i < C; i += 32) {
        float xh = (x[i] - m) * s;
        dx[i] += s * (g[i] * w[i] - sdn - xh * sdnxh);
    }
}

/* dw[c] += Σ_r dout·x̂, db[c] += Σ_r dout: a block of 32 columns × LN_PR_ROWS row lanes sums a strided
 * share of the rows, reduces it in shared memory and adds it with one atomic per column. */
#define LN_PR_ROWS 8
__global__ void layernorm_backward_params_kernel(real *dw, real *db, const real *dout, const real *inp,
                                                 const real *mean, const real *rstd, long N, int C) {
    __shared__ float shw[LN_PR_ROWS][33], shb[LN_PR_ROWS][33];
    int tx = threadIdx.x, ty = threadIdx.y;
    int c = blockIdx.x * 32 + tx;
    float aw = 0, ab = 0;
    if (c < C) {
        for (long r = (long)blockIdx.y * LN_PR_ROWS + ty; r < N; r += (long)gridDim.y * LN_PR_ROWS) {
            size_t k = (size_t)r * C + c;
            float g = dout[k];
            aw += g * ((inp[k] - mean[r]) * rstd[r]);
            ab += g;
        }
    }
    shw[ty][tx] = aw;
    shb[ty][tx] = ab;
    __syncthreads();
    if (ty == 0 && c < C) {
        for (int j = 1; j < LN_PR_ROWS; j++) {
            aw += shw[j][tx];
            ab += shb[j][tx];
        }
        if (dw) atomicAdd(dw + c, aw);
        if (db) atomicAdd(db + c, ab);
    }
}

void cuda_layernorm_backward(real *dinp, real *dw, real *db, const real *dout, const real *inp, const real *w,
                             const real *mean, const real *rstd, long N, int C) {
    if (N <= 0 || C <= 0) return;
    unsigned blocks = (unsigned)((N + LN_WARPS - 1) / LN_WARPS);
    layernorm_backward_input_kernel<<<blocks, LN_WARPS * 32>>>(dinp, dout, inp, w, mean, rstd, N, C);
    CUDA_CHECK_LAUNCH();
    if (dw || db) {
        long gy = (N + 16 * LN_PR_ROWS - 1) / (16 * LN_PR_ROWS); /* about 16 rows per thread, */
        if (gy > 1024) gy = 1024;                               /* more for large N */
        dim3 grid((unsigned)((C + 31) / 32), (unsigned)gy);
        dim3 block(32, LN_PR_ROWS);
        layernorm_backward_params_kernel<<<grid, block>>>(dw, db, dout, inp, mean, rstd, N, C);
        CUDA_CHECK_LAUNCH();
    }
}

/* ---- exact GELU: x·Φ(x) = 0.5·x·(1 + erf(x/√2)); normcdff keeps Φ accurate in the lower tail ---- */

#define INV_SQRT2PI_F 0.39894228040143267794f

__global__ void gelu_forward_kernel(real *out, const real *inp, long n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        out[i] = x * normcdff(x);
    }
}

__global__ void gelu_backward_kernel(real *dinp, const real *dout, const real *inp, long n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        float cdf = normcdff(x), pdf = INV_SQRT2PI_F * expf(-0.5f * x * x);
        dinp[i] = dout[i] * (cdf + x * pdf);
    }
}

void cuda_gelu_forward(real *out, const real *inp, long n) {
    if (n <= 0) return;
    gelu_forward_kernel<<<ew_blocks(n), EW_THREADS>>>(out, inp, n);
    CUDA_CHECK_LAUNCH();
}

void cuda_gelu_backward(real *dinp, const real *dout, const real *inp, long n) {
    if (n <= 0) return;
    gelu_backward_kernel<<<ew_blocks(n), EW_THREADS>>>(dinp, dout, inp, n);
    CUDA_CHECK_LAUNCH();
}

/* ---- GPT-2's GELU (tanh approximation) as x·σ(2u), u = √(2/π)(x + 0.044715x³), like the CPU ---- */

#define GELU_TANH_K_F 0.79788456080286535588f
#define GELU_TANH_A_F 0.044715f

__device__ __forceinline__ float gelu_tanh_sigma(float x) {
    float u2 = 2.0f * GELU_TANH_K_F * (x + GELU_TANH_A_F * x * x * x);
    return 1.0f / (1.0f + expf(-u2));
}

__global__ void gelu_tanh_forward_kernel(real *out, const real *inp, long n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        out[i] = x * gelu_tanh_sigma(x);
    }
}

__global__ void gelu_tanh_backward_kernel(real *dinp, const real *dout, const real *inp, long n) {
    GRID_STRIDE(i, n) {
        float x = inp[i], s = gelu_tanh_sigma(x);
        float du2 = 2.0f * GELU_TANH_K_F * (1.0f + 3.0f * GELU_TANH_A_F * x * x);
        dinp[i] = dout[i] * (s + x * s * (1.0f - s) * du2);
    }
}

void cuda_gelu_tanh_forward(real *out, const real *inp, long n) {
    if (n <= 0) return;
    gelu_tanh_forward_kernel<<<ew_blocks(n), EW_THREADS>>>(out, inp, n);
    CUDA_CHECK_LAUNCH();
}

void cuda_gelu_tanh_backward(real *dinp, const real *dout, const real *inp, long n) {
    if (n <= 0) return;
    gelu_tanh_backward_kernel<<<ew_blocks(n), EW_THREADS>>>(dinp, dout, inp, n);
    CUDA_CHECK_LAUNCH();
}

/* ---- dropout (masks bit-identical to the CPU's: element i uses index idx0 + i) ---- */

__global__ void dropout_kernel(real *out, const real *inp, long n, float p, real scale, uint64_t seed,
                               uint64_t idx0) {
    GRID_STRIDE(i, n) out[i] = dp_dropout_keep_dev(seed, idx0 + (uint64_t)i, p) ? inp[i] * scale : (real)0;
}

void cuda_dropout_forward(real *out, const real *inp, long n, float p, uint64_t seed, uint64_t idx0) {
    if (n <= 0) return;
    if (p <= 0) {
        if (out != inp) CUDA_CHECK(cudaMemcpyAsync(out, inp, sizeof(real) * (size_t)n, cudaMemcpyDeviceToDevice, 0));
        return;
    }
    real scale = (real)(1.0 / (1.0 - p));
    dropout_kernel<<<ew_blocks(n), EW_THREADS>>>(out, inp, n, p, scale, seed, idx0);
    CUDA_CHECK_LAUNCH();
}

void cuda_dropout_backward(real *dinp, const real *dout, long n, float p, uint64_t seed, uint64_t idx0) {
    cuda_dropout_forward(dinp, dout, n, p, seed, idx0); /* the mask is its own adjoint */
}

/* ---- add ---- */

__global__ void add_kernel(real *out, const real *a, const real *b, long n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

void cuda_add(real *out, const real *a, const real *b, long n) {
    if (n <= 0) return;
    add_kernel<<<ew_blocks(n), EW_THREADS>>>(out, a, b, n);
    CUDA_CHECK_LAUNCH();
}

/* ---- embedding ---- */

/* The position row of window position t of a sequence (ids_b its ids), as embedding.c's position_of:
 * t, or t − (first non-padding position) with from_first (a short scan: right-padded sequences, the
 * language models' layout, start with a token). */
__device__ __forceinline__ int emb_position(const int32_t *ids_b, int t, int from_first) {
    if (!from_first) return t;
    int f = 0;
    while (f < t && ids_b[f] == 0) f++;
    return t - f;
}

__global__ void embedding_forward_kernel(real *out, const int32_t *ids, const real *E, const real *P, int T, int C,
                                         int from_first, long n) {
    GRID_STRIDE(k, n) {
        size_t r = k / (size_t)C, i = k % (size_t)C;
        int t = (int)(r % (size_t)T);
        int pos = emb_position(ids + (r - (size_t)t), t, from_first);
        out[k] = E[(size_t)ids[r] * C + i] + P[(size_t)pos * C + i];
    }
}

void cuda_embedding_forward(real *out, const int32_t *ids, const real *E, const real *P, int B, int T, int C,
                            int from_first) {
    long n = (long)B * T * C;
    if (B <= 0 || T <= 0 || C <= 0) return;
    embedding_forward_kernel<<<ew_blocks(n), EW_THREADS>>>(out, ids, E, P, T, C, from_first, n);
    CUDA_CHECK_LAUNCH();
}

/* dE rows of the ids (ids repeat: atomics), row 0 (padding) gets nothing. */
__global__ void embedding_backward_dE_kernel(real *dE, const real *dout, const int32_t *ids, int C, long n) {
    GRID_STRIDE(k, n) {
        size_t r = k / (size_t)C, i = k % (size_t)C;
        int32_t id = ids[r];
        if (id != 0) atomicAdd(dE + (size_t)id * C + i, dout[k]);
    }
}

/* dP[p, i] += Σ_b over the non-padding row of sequence b at position p (window position p, or p + f_b
 * with from_first), in the CPU's order (b ascending), one thread per element. */
__global__ void embedding_backward_dP_kernel(real *dP, const real *dout, const int32_t *ids, int B, int T, int C,
                                             int from_first) {
    GRID_STRIDE(k, (size_t)T * C) {
        size_t p = k / (size_t)C;
        real acc = dP[k];
        for (int b = 0; b < B; b++) {
            const int32_t *ids_b = ids + (size_t)b * T;
            size_t t = p;
            if (from_first) {
                size_t f = 0;
                while (f < (size_t)T && ids_b[f] == 0) f++;
                t = p + f;
                if (t >= (size_t)T) continue;
            }
            size_t r = (size_t)b * T + t;
            if (ids[r] != 0) acc += dout[r * C + (k % (size_t)C)];
        }
        dP[k] = acc;
    }
}

void cuda_embedding_backward(real *dE, real *dP, const real *dout, const int32_t *ids, int B, int T, int C,
                             int from_first) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    if (dE) {
        long n = (long)B * T * C;
        embedding_backward_dE_kernel<<<ew_blocks(n), EW_THREADS>>>(dE, dout, ids, C, n);
        CUDA_CHECK_LAUNCH();
    }
    if (dP) {
        embedding_backward_dP_kernel<<<ew_blocks((long)T * C), EW_THREADS>>>(dP, dout, ids, B, T, C, from_first);
        CUDA_CHECK_LAUNCH();
    }
}

/* ---- pooling of the classification head: one block per sequence ---- */

/* The number of non-padding positions of sequence b and the first of them (T if none), to every
 * thread of the block. */
__device__ void seq_tokens(const int32_t *id, int T, int *n_out, int *first_out) {
    __shared__ int sn, sfirst;
    if (threadIdx.x == 0) {
        sn = 0;
        sfirst = T;
    }
    __syncthreads();
    int n = 0, first = T;
    for (int t = threadIdx.x; t < T; t += blockDim.x)
        if (id[t] != 0) {
            n++;
            if (t < first) first = t;
        }
    if (n) {
        atomicAdd(&sn, n);
        atomicMin(&sfirst, first);
    }
    __syncthreads();
    *n_out = sn;
    *first_out = sfirst;
}

__global__ void pool_forward_kernel(real *pooled, const real *h, const int32_t *ids, int pool, int T, int C) {
    int b = blockIdx.x, n, first;
    const int32_t *id = ids + (size_t)b * T;
    seq_tokens(id, T, &n, &first);
    real *o = pooled + (size_t)b * C;
    const real *hb = h + (size_t)b * T * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        real v = 0;
        if (pool == DP_POOL_FIRST) {
            if (first < T) v = hb[(size_t)first * C + i];
        } else {
            for (int t = 0; t < T; t++)
                if (id[t] != 0) v += hb[(size_t)t * C + i]; /* t ascending, as on the CPU */
            if (n) v /= (real)n;
        }
        o[i] = v;
    }
}

__global__ void pool_backward_kernel(real *dh, const real *dpooled, const int32_t *ids, int pool, int T, int C) {
    int b = blockIdx.x, n, first;
    const int32_t *id = ids + (size_t)b * T;
    seq_tokens(id, T, &n, &first);
    const real *g = dpooled + (size_t)b * C;
    real *d = dh + (size_t)b * T * C;
    size_t TC = (size_t)T * C;
    for (size_t k = threadIdx.x; k < TC; k += blockDim.x) {
        int t = (int)(k / (size_t)C), i = (int)(k % (size_t)C);
        real v = 0;
        if (pool == DP_POOL_FIRST) {
            if (t == first) v = g[i];
        } else if (id[t] != 0) {
            v = g[i] / (real)n;
        }
        d[k] = v;
    }
}

void cuda_pool_forward(real *pooled, const real *h, const int32_t *ids, int pool, int B, int T, int C) {
    if (B <= 0 || C <= 0) return;
    if (T <= 0) {
        CUDA_CHECK(cudaMemsetAsync(pooled, 0, sizeof(real) * (size_t)B * C, 0));
        return;
    }
    pool_forward_kernel<<<(unsigned)B, 128>>>(pooled, h, ids, pool, T, C);
    CUDA_CHECK_LAUNCH();
}

void cuda_pool_backward(real *dh, const real *dpooled, const int32_t *ids, int pool, int B, int T, int C) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    pool_backward_kernel<<<(unsigned)B, EW_THREADS>>>(dh, dpooled, ids, pool, T, C);
    CUDA_CHECK_LAUNCH();
}

/* ---- DP-FP representation clip: one block per example, norms in double as on the CPU ---- */

#define HEAD_THREADS 128

__global__ void rep_clip_forward_kernel(real *rep, real *scale, const real *x, const real *noise, double clip,
                                        int C) {
    __shared__ double sh[32];
    int b = blockIdx.x;
    const real *xb = x + (size_t)b * C;
    double s = 1;
    if (clip > 0) { /* uniform over the block */
        double sq = 0;
        for (int i = threadIdx.x; i < C; i += blockDim.x) sq += (double)xb[i] * xb[i];
        double norm = sqrt(block_sum_d(sq, sh));
        if (norm > clip) s = clip / norm;
    }
    if (threadIdx.x == 0) scale[b] = (real)s;
    real *r = rep + (size_t)b * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        r[i] = (real)(s * xb[i]) + (noise ? noise[(size_t)b * C + i] : (real)0);
}

__global__ void rep_clip_backward_kernel(real *dx, const real *drep, const real *x, const real *scale, int C) {
    __shared__ double sh[32];
    int b = blockIdx.x;
    const real *xb = x + (size_t)b * C, *g = drep + (size_t)b * C;
    real *d = dx + (size_t)b * C;
    real sb = scale[b];
    if (sb >= 1) { /* uniform over the block */
        for (int i = threadIdx.x; i < C; i += blockDim.x) d[i] = g[i];
        return;
    }
    double sq = 0, xg = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        sq += (double)xb[i] * xb[i];
        xg += (double)xb[i] * g[i];
    }
    sq = block_sum_d(sq, sh);
    xg = block_sum_d(xg, sh);
    double s = sb, k = xg / sq;
    for (int i = threadIdx.x; i < C; i += blockDim.x) d[i] = (real)(s * (g[i] - k * xb[i]));
}

void cuda_rep_clip_forward(real *rep, real *scale, const real *x, const real *noise, double clip, int B, int C) {
    if (B <= 0) return;
    rep_clip_forward_kernel<<<(unsigned)B, HEAD_THREADS>>>(rep, scale, x, noise, clip, C);
    CUDA_CHECK_LAUNCH();
}

void cuda_rep_clip_backward(real *dx, const real *drep, const real *x, const real *scale, int B, int C) {
    if (B <= 0 || C <= 0) return;
    rep_clip_backward_kernel<<<(unsigned)B, HEAD_THREADS>>>(dx, drep, x, scale, C);
    CUDA_CHECK_LAUNCH();
}

/* ---- softmax cross-entropy over K classes: one block per example, in double as on the CPU ---- */

__global__ void softmax_xent_kernel(real *loss, real *dz, const real *z, const int32_t *labels, const real *weight,
                                    int K) {
    __shared__ double sh[32];
    int b = blockIdx.x;
    const real *zb = z + (size_t)b * K;
    double mx = -INFINITY;
    for (int k = threadIdx.x; k < K; k += blockDim.x) mx = fmax(mx, (double)zb[k]);
    mx = block_max_d(mx, sh);
    double sum = 0;
    for (int k = threadIdx.x; k < K; k += blockDim.x) sum += exp((double)zb[k] - mx);
    sum = block_sum_d(sum, sh);
    double lse = mx + log(sum);
    int y = labels[b];
    if (threadIdx.x == 0) loss[b] = (real)(lse - zb[y]);
    if (!dz) return;
    double w = weight ? (double)weight[b] : 1.0;
    for (int k = threadIdx.x; k < K; k += blockDim.x)
        dz[(size_t)b * K + k] = (real)(w * (exp((double)zb[k] - lse) - (k == y ? 1.0 : 0.0)));
}

void cuda_softmax_xent(real *loss, real *dz, const real *z, const int32_t *labels, const real *weight, int B, int K) {
    if (B <= 0 || K <= 0) return;
    softmax_xent_kernel<<<(unsigned)B, HEAD_THREADS>>>(loss, dz, z, labels, weight, K);
    CUDA_CHECK_LAUNCH();
}

/* ---- per-example row scaling: x[b·T + t, :] *= c[b] ---- */

__global__ void rows_scale_kernel(real *x, const double *c, int T, int C, long n) {
    GRID_STRIDE(k, n) {
        size_t r = k / (size_t)C;
        x[k] *= (real)c[r / (size_t)T];
    }
}

void cuda_rows_scale_by_example(real *x, const double *c, int B, int T, int C) {
    long n = (long)B * T * C;
    if (B <= 0 || T <= 0 || C <= 0) return;
    rows_scale_kernel<<<ew_blocks(n), EW_THREADS>>>(x, c, T, C, n);
    CUDA_CHECK_LAUNCH();
}

/* ---- small reductions of the clipping engine: per-example sums in double, as on the CPU ---- */

#define PE_THREADS 256

/* sq[b] += ‖x[b, 0..W)‖²: one block per example. */
__global__ void per_example_sqnorm_add_kernel(double *sq, const real *x, int W) {
    __shared__ double sh[32];
    int b = blockIdx.x;
    const real *xb = x + (size_t)b * W;
    double s = 0;
    for (int i = threadIdx.x; i < W; i += blockDim.x) s += (double)xb[i] * xb[i];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) sq[b] += s;
}

void cuda_per_example_sqnorm_add(double *sq, const real *x, int B, int W) {
    if (B <= 0 || W <= 0) return;
    per_example_sqnorm_add_kernel<<<(unsigned)B, PE_THREADS>>>(sq, x, W);
    CUDA_CHECK_LAUNCH();
}

/* sq[b] += scale·Σ_{t ≥ lo[b]} ⟨X[b·T + t, :], Y[b·T + t, :]⟩: one block per example over its rows
 * lo[b] .. T−1, which are contiguous. */
__global__ void per_example_dot_add_kernel(double *sq, const real *X, const real *Y, const int *lo, int T, int C,
                                           double scale) {
    __shared__ double sh[32];
    int b = blockIdx.x;
    int t0 = lo[b] < 0 ? 0 : lo[b];
    size_t k0 = ((size_t)b * T + (size_t)t0) * C, k1 = ((size_t)b + 1) * T * C;
    double s = 0;
    for (size_t k = k0 + threadIdx.x; k < k1; k += blockDim.x) s += (double)X[k] * Y[k];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) sq[b] += scale * s;
}

void cuda_per_example_dot_add(double *sq, const real *X, const real *Y, const int *lo, int B, int T, int C,
                              double scale) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    per_example_dot_add_kernel<<<(unsigned)B, PE_THREADS>>>(sq, X, Y, lo, T, C, scale);
    CUDA_CHECK_LAUNCH();
}

/* dw[i] += Σ_b c[b]·x[b, i]: one thread per column (a warp reads consecutive columns of a row), the
 * sum over b ascending in double, added once. */
__global__ void weighted_rows_sum_kernel(real *dw, const real *x, const double *c, int B, int C) {
    GRID_STRIDE(i, C) {
        double acc = 0;
        for (int b = 0; b < B; b++) acc += c[b] * x[(size_t)b * C + i];
        dw[i] += (real)acc;
    }
}

void cuda_weighted_rows_sum(real *dw, const real *x, const double *c, int B, int C) {
    if (B <= 0 || C <= 0) return;
    weighted_rows_sum_kernel<<<ew_blocks(C), EW_THREADS>>>(dw, x, c, B, C);
    CUDA_CHECK_LAUNCH();
}
