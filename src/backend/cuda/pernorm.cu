/* The CUDA twins of the privacy engine's per-example gradient kernels of src/ops (linear.c,
 * layernorm.c, embedding.c): per-example squared norms of a linear layer's weight (and bias) gradient
 * in Gram or instantiated form (batched cuBLAS GEMMs over examples, reductions in double), LayerNorm
 * per-example parameter gradients, and the embedding's per-example squared norms. Example b owns rows
 * b·T + t for t in [lo[b], T); rows before lo[b] are left out exactly (masked or not summed), whatever
 * they hold. Scratch is one grow-only device buffer of this file. */
#include <math.h>

#include "backend/cuda/cuda_common.h"

static_assert(sizeof(real) == sizeof(float), "the CUDA backend is single precision only");

#define PN_THREADS 256
/* Bound on the floats of one group of examples' GEMM buffers (256 MB); a single example that needs
 * more gets it (groups of one). */
#define PN_GROUP_FLOATS (64L << 20)
/* Blocks per example in a segmented reduction (at most). */
#define PN_MAX_PARTS 128
#define PN_MAX_GROUP 65535 /* gridDim.y */

/* ---------------- scratch: one grow-only device buffer ---------------- */

static char *pn_buf;
static size_t pn_cap;

/* At least `bytes` of device scratch. Growing waits for the work issued so far (which may still use
 * the old buffer) before freeing it. */
static char *pn_scratch(size_t bytes) {
    if (bytes > pn_cap) {
        size_t c = bytes > pn_cap + pn_cap / 2 ? bytes : pn_cap + pn_cap / 2;
        if (pn_buf) {
            CUDA_CHECK(cudaDeviceSynchronize());
            CUDA_CHECK(cudaFree(pn_buf));
            pn_buf = NULL;
            pn_cap = 0;
        }
        CUDA_CHECK(cudaMalloc((void **)&pn_buf, c));
        pn_cap = c;
    }
    return pn_buf;
}

static size_t pn_align(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

/* ---------------- block reductions ---------------- */

__device__ __forceinline__ double pn_warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Block-wide sum (blockDim.x a multiple of 32); every thread gets the result. */
__device__ double pn_block_sum(double v) {
    __shared__ double sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = pn_warp_sum(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : 0.0;
        v = pn_warp_sum(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

/* ---------------- linear layer ---------------- */

/* The CPU's choice (linear.c): Gram form iff n·(Cin + Cout) < Cin·Cout, in double. */
static int pn_gram_rule(int n, int Cin, int Cout, dp_norm_method method) {
    return method == DP_NORM_GRAM || (method == DP_NORM_AUTO && (double)n * (Cin + Cout) < (double)Cin * Cout);
}

/* The example of group slot i: idx[i] if a list is given, else base + i. */
__device__ __forceinline__ int pn_example(const int *idx, int base, int i) { return idx ? idx[i] : base + i; }

/* Packs the rows of the group's examples: Ap[i,t,:] = A[b·T + t, :] and Gp[i,t,:] = G[b·T + t, :] for
 * t ≥ lo[b], zero for t < lo[b] (b the example of slot i). One block per (slot, t). */
__global__ void pn_pack(float *Ap, float *Gp, const float *A, const float *G, const int *lo, const int *idx, int base,
                        int T, int Cin, int Cout) {
    const int i = blockIdx.x / T, t = blockIdx.x % T;
    const int b = pn_example(idx, base, i);
    const int keep = t >= lo[b];
    const size_t src = (size_t)b * T + t, dst = (size_t)i * T + t;
    for (int c = threadIdx.x; c < Cin; c += blockDim.x) Ap[dst * Cin + c] = keep ? A[src * Cin + c] : 0.0f;
    for (int c = threadIdx.x; c < Cout; c += blockDim.x) Gp[dst * Cout + c] = keep ? G[src * Cout + c] : 0.0f;
}

/* part[i·P + p] = Σ X_e·Y_e over block p's share of slot i's segment of L elements (X, Y with stride L).
 * gramT > 0: the segment is a [T,T] matrix (T = gramT) and only entries with both t, u ≥ lo[b] count. */
__global__ void pn_seg_dot(double *part, const float *X, const float *Y, long L, int gramT, const int *lo,
                           const int *idx, int base) {
    const int i = blockIdx.y, p = blockIdx.x, P = gridDim.x;
    const float *x = X + (size_t)i * L, *y = Y + (size_t)i * L;
    double s = 0.0;
    if (gramT > 0) {
        const int T = gramT, l0 = lo[pn_example(idx, base, i)];
        for (long e = (long)p * blockDim.x + threadIdx.x; e < L; e += (long)P * blockDim.x) {
            const int t = (int)(e / T), u = (int)(e % T);
            if (t >= l0 && u >= l0) s += (double)x[e] * (double)y[e];
        }
    } else {
        for (long e = (long)p * blockDim.x + threadIdx.x; e < L; e += (long)P * blockDim.x)
            s += (double)x[e] * (double)y[e];
    }
    s = pn_block_sum(s);
    if (threadIdx.x == 0) part[(size_t)i * P + p] = s;
}

/* sq[b] += Σ_p part[i·P + p] (+ bias[b]) for the n slots of a group (each example once). */
__global__ void pn_seg_finish(double *sq, const double *part, int P, const double *bias, const int *idx, int base,
                              int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int b = pn_example(idx, base, i);
    double s = 0.0;
    for (int p = 0; p < P; p++) s += part[(size_t)i * P + p];
    if (bias) s += bias[b];
    sq[b] += s;
}

/* bias[b] = ‖Σ_{t ≥ lo[b]} G[b·T + t, :]‖² (double). One block per example. */
__global__ void pn_bias_sqnorm(double *bias, const float *G, const int *lo, int T, int Cout) {
    const int b = blockIdx.x;
    const int l0 = lo[b];
    double s = 0.0;
    for (int o = threadIdx.x; o < Cout; o += blockDim.x) {
        double c = 0.0;
        for (int t = l0; t < T; t++) c += (double)G[((size_t)b * T + t) * Cout + o];
        s += c * c;
    }
    s = pn_block_sum(s);
    if (threadIdx.x == 0) bias[b] = s;
}

/* Floats of GEMM buffers per example of a group. */
static size_t pn_per_example(int gram, int packed, int T, int Cin, int Cout) {
    size_t rows = packed ? (size_t)T * ((size_t)Cin + Cout) : 0;
    return rows + (gram ? 2 * (size_t)T * T : (size_t)Cin * Cout);
}

static int pn_group_size(size_t per, int count) {
    long g = (long)(PN_GROUP_FLOATS / (long)(per > 0 ? per : 1));
    if (g < 1) g = 1;
    if (g > count) g = count;
    if (g > PN_MAX_GROUP) g = PN_MAX_GROUP;
    return (int)(g < 1 ? 1 : g);
}

static int pn_parts(long L) {
    long p = L / (PN_THREADS * 16L);
    if (p < 1) p = 1;
    if (p > PN_MAX_PARTS) p = PN_MAX_PARTS;
    return (int)p;
}

/* The examples idx[0..count) (device list; NULL: 0..count−1) in one form, in groups of at most gmax:
 * sq[b] += the weight-gradient norm (+ bias[b]). work: gmax·pn_per_example floats; part: gmax·P
 * doubles. Gram form without a list reads A and G in place (all T rows, the reduction keeps t, u ≥
 * lo[b]); otherwise rows are packed (rows before lo[b] zeroed). */
static void pn_run(double *sq, const float *G, const float *A, const int *lo, const int *idx, int count, int gram,
                   int T, int Cin, int Cout, const double *bias, float *work, double *part, int gmax) {
    cublasHandle_t hb = dp_cuda_blas();
    const float one = 1.0f, zero = 0.0f;
    const int packed = !gram || idx != NULL;
    float *Ap = work, *Gp = work + (size_t)gmax * T * Cin;
    float *out = packed ? work + (size_t)gmax * T * ((size_t)Cin + Cout) : work;
    const long L = gram ? (long)T * T : (long)Cin * Cout;
    const int P = pn_parts(L);
    for (int k0 = 0; k0 < count; k0 += gmax) {
        const int n = count - k0 < gmax ? count - k0 : gmax;
        const int *gidx = idx ? idx + k0 : NULL;
        const float *Ab, *Gb;
        long long sA, sG;
        if (packed) {
            pn_pack<<<(unsigned)((long)n * T), PN_THREADS>>>(Ap, Gp, A, G, lo, gidx, k0, T, Cin, Cout);
            CUDA_CHECK_LAUNCH();
            Ab = Ap;
            Gb = Gp;
        } else {
            Ab = A + (size_t)k0 * T * Cin;
            Gb = G + (size_t)k0 * T * Cout;
        }
        sA = (long long)T * Cin;
        sG = (long long)T * Cout;
        if (gram) {
            /* X_i = A_i A_iᵀ, Y_i = G_i G_iᵀ [T,T] (symmetric, so the layout does not matter):
             * column-major (t,u) = Σ_c A[t,c] A[u,c] with A_i as a column-major [Cin,T] matrix, ld Cin. */
            float *X = out, *Y = out + (size_t)gmax * T * T;
            const long long sX = (long long)T * T;
            CUBLAS_CHECK(cublasSgemmStridedBatched(hb, CUBLAS_OP_T, CUBLAS_OP_N, T, T, Cin, &one, Ab, Cin, sA, Ab, Cin,
                                                   sA, &zero, X, T, sX, n));
            CUBLAS_CHECK(cublasSgemmStridedBatched(hb, CUBLAS_OP_T, CUBLAS_OP_N, T, T, Cout, &one, Gb, Cout, sG, Gb,
                                                   Cout, sG, &zero, Y, T, sX, n));
            pn_seg_dot<<<dim3((unsigned)P, (unsigned)n), PN_THREADS>>>(part, X, Y, L, T, lo, gidx, k0);
            CUDA_CHECK_LAUNCH();
        } else {
            /* W_i = A_iᵀ G_i [Cin,Cout] row-major = column-major [Cout,Cin] (ld Cout):
             * (o,c) = Σ_t G[t,o] A[t,c] = (G_i as [Cout,T]) · (A_i as [Cin,T])ᵀ. Rows before lo are zero. */
            float *Wb = out;
            const long long sW = (long long)Cin * Cout;
            CUBLAS_CHECK(cublasSgemmStridedBatched(hb, CUBLAS_OP_N, CUBLAS_OP_T, Cout, Cin, T, &one, Gb, Cout, sG, Ab,
                                                   Cin, sA, &zero, Wb, Cout, sW, n));
            pn_seg_dot<<<dim3((unsigned)P, (unsigned)n), PN_THREADS>>>(part, Wb, Wb, L, 0, lo, gidx, k0);
            CUDA_CHECK_LAUNCH();
        }
        pn_seg_finish<<<dp_cuda_blocks(n, PN_THREADS), PN_THREADS>>>(sq, part, P, bias, gidx, k0, n);
        CUDA_CHECK_LAUNCH();
    }
}

extern "C" void cuda_linear_per_example_sqnorm(double *sq, const real *G, const real *A, const int *lo, int B, int T,
                                               int Cin, int Cout, int with_bias, dp_norm_method method) {
    if (B <= 0 || T <= 0) return;
    /* The CPU's rule is monotone in n = T − lo[b] ∈ [1, T]: when it gives the same answer for 1 and T it
     * gives it for every example and lo need not be read here; otherwise lo comes to the host (one
     * synchronisation) and the examples are split into two lists. */
    const int g1 = pn_gram_rule(1, Cin, Cout, method), gT = pn_gram_rule(T, Cin, Cout, method);
    int *hidx = NULL, ngram = 0, ninst = 0;
    if (g1 != gT) {
        hidx = (int *)malloc(sizeof(int) * (size_t)B);
        int *hlo = (int *)malloc(sizeof(int) * (size_t)B);
        if (!hidx || !hlo) {
            fprintf(stderr, "dpformer: out of memory at %s:%d\n", __FILE__, __LINE__);
            abort();
        }
        CUDA_CHECK(cudaMemcpy(hlo, lo, sizeof(int) * (size_t)B, cudaMemcpyDeviceToHost));
        for (int b = 0; b < B; b++) {
            int n = T - hlo[b];
            if (n > 0 && pn_gram_rule(n, Cin, Cout, method)) hidx[ngram++] = b;
        }
        for (int b = 0; b < B; b++) {
            int n = T - hlo[b];
            if (n > 0 && !pn_gram_rule(n, Cin, Cout, method)) hidx[ngram + ninst++] = b;
        }
        free(hlo);
    } else if (gT) {
        ngram = B;
    } else {
        ninst = B;
    }
    const int listed = hidx != NULL;
    /* scratch: bias[B] doubles, idx[B] ints, partial sums, GEMM buffers */
    size_t per_g = pn_per_example(1, listed, T, Cin, Cout), per_i = pn_per_example(0, 1, T, Cin, Cout);
    int gg = ngram ? pn_group_size(per_g, ngram) : 0, gi = ninst ? pn_group_size(per_i, ninst) : 0;
    size_t work_floats = DP_MAX((size_t)gg * per_g, (size_t)gi * per_i);
    size_t part_doubles = (size_t)DP_MAX(gg, gi) * PN_MAX_PARTS;
    size_t off_idx = pn_align(sizeof(double) * (size_t)B);
    size_t off_part = off_idx + pn_align(sizeof(int) * (size_t)B);
    size_t off_work = off_part + pn_align(sizeof(double) * (part_doubles ? part_doubles : 1));
    char *base = pn_scratch(off_work + sizeof(float) * (work_floats ? work_floats : 1));
    double *bias = with_bias ? (double *)base : NULL;
    int *didx = listed ? (int *)(base + off_idx) : NULL;
    double *part = (double *)(base + off_part);
    float *work = (float *)(base + off_work);
    if (listed && ngram + ninst > 0)
        CUDA_CHECK(cudaMemcpy(didx, hidx, sizeof(int) * (size_t)(ngram + ninst), cudaMemcpyHostToDevice));
    free(hidx);
    if (bias) {
        pn_bias_sqnorm<<<(unsigned)B, PN_THREADS>>>(bias, G, lo, T, Cout);
        CUDA_CHECK_LAUNCH();
    }
    if (ngram) pn_run(sq, G, A, lo, didx, ngram, 1, T, Cin, Cout, bias, work, part, gg);
    if (ninst) pn_run(sq, G, A, lo, didx ? didx + ngram : NULL, ninst, 0, T, Cin, Cout, bias, work, part, gi);
}

/* ---------------- LayerNorm ---------------- */

/* gw[b,i] = Σ_{t ≥ lo[b]} dout·((inp − mean)·rstd), gb[b,i] = Σ dout, in float in the CPU's order and
 * rounding (no fused multiply-add). One thread per (b, i). */
__global__ void pn_ln_grads(float *gw, float *gb, const float *dout, const float *inp, const float *mean,
                            const float *rstd, const int *lo, int T, int C, int nbc) {
    const int b = blockIdx.x / nbc, i = (blockIdx.x % nbc) * blockDim.x + threadIdx.x;
    if (i >= C) return;
    float w = 0.0f, s = 0.0f;
    for (int t = lo[b]; t < T; t++) {
        const size_t r = (size_t)b * T + t;
        const float g = dout[r * C + i];
        const float xh = __fmul_rn(__fsub_rn(inp[r * C + i], mean[r]), rstd[r]);
        w = __fadd_rn(w, __fmul_rn(g, xh));
        s = __fadd_rn(s, g);
    }
    gw[(size_t)b * C + i] = w;
    gb[(size_t)b * C + i] = s;
}

extern "C" void cuda_layernorm_per_example_grads(real *gw, real *gb, const real *dout, const real *inp,
                                                 const real *mean, const real *rstd, const int *lo, int B, int T,
                                                 int C) {
    if (B <= 0 || C <= 0) return;
    const int nbc = (int)dp_cuda_blocks(C, PN_THREADS);
    pn_ln_grads<<<(unsigned)((long)B * nbc), PN_THREADS>>>(gw, gb, dout, inp, mean, rstd, lo, T, C, nbc);
    CUDA_CHECK_LAUNCH();
}

/* ---------------- embedding ---------------- */

/* One block per example b. sq_pos[b] += Σ_{t: id_t ≠ 0} ‖G_t‖²; sq_emb[b] += Σ over distinct ids v ≠ 0 of
 * ‖Σ_{t: id_t = v} G_t‖². The non-padding positions are ordered by (id, t) into order[b·T ..] (each
 * position's rank counted directly), so that each column is one pass over runs of equal ids. The two
 * results are added by one thread, sq_pos first: sq_emb == sq_pos is allowed (as on the CPU). */
__global__ void pn_emb_sqnorm(double *sq_emb, double *sq_pos, const float *G, const int32_t *ids, int *order_all,
                              int T, int C) {
    __shared__ int s_n;
    const int b = blockIdx.x;
    const int32_t *id = ids + (size_t)b * T;
    const float *Gb = G + (size_t)b * T * C;
    double se = 0.0, sp = 0.0;
    if (sq_emb) {
        int *order = order_all + (size_t)b * T;
        if (threadIdx.x == 0) s_n = 0;
        __syncthreads();
        for (int t = threadIdx.x; t < T; t += blockDim.x) {
            const int32_t v = id[t];
            if (!v) continue;
            int rank = 0;
            for (int u = 0; u < T; u++) {
                const int32_t w = id[u];
                rank += w != 0 && (w < v || (w == v && u < t));
            }
            order[rank] = t;
            atomicAdd(&s_n, 1);
        }
        __syncthreads(); /* order (global) and s_n complete and visible to the block */
        const int n = s_n;
        for (int i = threadIdx.x; i < C; i += blockDim.x) {
            double acc = 0.0;
            int32_t cur = 0;
            for (int k = 0; k < n; k++) {
                const int t = order[k];
                const int32_t v = id[t];
                if (v != cur) {
                    se += acc * acc;
                    acc = 0.0;
                    cur = v;
                }
                const double g = (double)Gb[(size_t)t * C + i];
                acc += g;
                sp += g * g;
            }
            se += acc * acc;
        }
    } else if (sq_pos) {
        for (int i = threadIdx.x; i < C; i += blockDim.x)
            for (int t = 0; t < T; t++)
                if (id[t]) {
                    const double g = (double)Gb[(size_t)t * C + i];
                    sp += g * g;
                }
    }
    se = pn_block_sum(se);
    sp = pn_block_sum(sp);
    if (threadIdx.x == 0) {
        if (sq_pos) sq_pos[b] += sp;
        if (sq_emb) sq_emb[b] += se;
    }
}

extern "C" void cuda_embedding_per_example_sqnorm(double *sq_emb, double *sq_pos, const real *G, const int32_t *ids,
                                                  int B, int T, int C) {
    if (B <= 0 || T <= 0 || (!sq_emb && !sq_pos)) return;
    int *order = sq_emb ? (int *)pn_scratch(sizeof(int) * (size_t)B * T) : NULL;
    pn_emb_sqnorm<<<(unsigned)B, PN_THREADS>>>(sq_emb, sq_pos, G, ids, order, T, C);
    CUDA_CHECK_LAUNCH();
}
