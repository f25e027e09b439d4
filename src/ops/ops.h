/* Numerical kernels of the Transformer: forward/backward pairs with llm.c-style argument order
 * (outputs first, then inputs, then sizes). Every buffer is row-major; its shape is given in the
 * comment as [dims]. N is the number of token rows (B*T). These functions are the unit a GPU backend
 * re-implements; the model (src/model) only composes them. Backward functions ACCUMULATE (+=) into
 * parameter gradients; whether they accumulate into input gradients is stated per function.
 * Compiled with real = float (libdpformer) and real = double (gradient-check build). */
#ifndef DP_OPS_H
#define DP_OPS_H

#include <stdint.h>
#include "core/common.h"

/* ---- linear layer: out[N,OC] = inp[N,C] · W[OC,C]ᵀ + b[OC]  (b may be NULL) ---- */
void linear_forward(real *out, const real *inp, const real *w, const real *b, long N, int C, int OC);
/* dinp[N,C] (+)= dout[N,OC] · W[OC,C]; accumulates if `accumulate`, else overwrites. */
void linear_backward_input(real *dinp, const real *dout, const real *w, long N, int C, int OC, int accumulate);
/* dw[OC,C] += dout[N,OC]ᵀ · inp[N,C];  db[OC] += Σ_rows dout (db may be NULL). */
void linear_backward_params(real *dw, real *db, const real *dout, const real *inp, long N, int C, int OC);

/* ---- LayerNorm over the last dimension, eps 1e-5 ---- */
#define DP_LN_EPS 1e-5
/* out[N,C], mean[N], rstd[N] from inp[N,C], weight[C], bias[C]. */
void layernorm_forward(real *out, real *mean, real *rstd, const real *inp, const real *w, const real *b, long N, int C);
/* dinp[N,C] += ...; dw[C] += ...; db[C] += ... (dw, db may be NULL). */
void layernorm_backward(real *dinp, real *dw, real *db, const real *dout, const real *inp, const real *w,
                        const real *mean, const real *rstd, long N, int C);

/* ---- exact GELU: 0.5·x·(1 + erf(x/√2)) ---- */
void gelu_forward(real *out, const real *inp, long n);
/* dinp[n] = dout · GELU'(inp)  (overwrites). */
void gelu_backward(real *dinp, const real *dout, const real *inp, long n);

/* ---- dropout with masks derived from (seed, index) by a counter-based hash, so the backward pass
 * regenerates the mask instead of storing it. p = drop probability; p = 0 is the identity. ---- */
static inline int dp_dropout_keep(uint64_t seed, uint64_t idx, float p) {
    uint64_t z = seed ^ (idx * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0) >= (double)p;
}
/* out[n] = inp · keep / (1 − p)  (in place allowed). */
void dropout_forward(real *out, const real *inp, long n, float p, uint64_t seed);
/* dinp[n] = dout · keep / (1 − p)  (overwrites; in place allowed). */
void dropout_backward(real *dinp, const real *dout, long n, float p, uint64_t seed);

/* ---- embedding: out[B,T,C] = E[ids[b,t]] + P[t] ---- */
void embedding_forward(real *out, const int32_t *ids, const real *E, const real *P, int B, int T, int C);
/* dE[V+1,C] += at rows ids (row 0, padding, gets nothing); dP[T,C] += over non-padding positions.
 * dE or dP may be NULL. */
void embedding_backward(real *dE, real *dP, const real *dout, const int32_t *ids, int B, int T, int C);

/* ---- multi-head scaled dot-product attention ----
 * qkv[B,T,3C]: q = cols [0,C), k = [C,2C), v = [2C,3C); head h uses cols h·hd .. (h+1)·hd, hd = C/H.
 * ids[B,T]: positions with id 0 are padding: masked as keys, and their query rows output zeros.
 * causal: query t sees keys u ≤ t. att[B,H,T,T] receives the softmax probabilities (before dropout;
 * zero where masked). Dropout p on the probabilities with masks from (seed, index). out[B,T,C]. */
void attention_forward(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                       uint64_t seed, int B, int T, int C, int H);
/* dqkv[B,T,3C] (overwrites) from dout[B,T,C]. */
void attention_backward(real *dqkv, const real *dout, const real *qkv, const real *att, const int32_t *ids,
                        int causal, float p, uint64_t seed, int B, int T, int C, int H);

/* ---- output layer with softmax cross-entropy, computed in row chunks so that the full [N,V] logits
 * never exist. Candidates are the rows 1..V of W[V+1,C] (row 0 = padding, never a candidate).
 * Rows r with weight[r] == 0 are skipped (loss[r] = 0). For the others:
 *   loss[r] = logsumexp_v(h_r·W_v) − h_r·W_{target[r]}
 * and, if dh != NULL, the gradient of Σ_r weight[r]·loss[r]:
 *   dh[N,C] (overwrites, zero for skipped rows) and dW[V+1,C] += (rows 1..V).
 * scratch: at least classifier_scratch_size(N, C, V) reals. */
size_t classifier_scratch_size(long N, int C, int V);
/* Logits per chunk (default 16M; 0 restores it). Tests lower it to exercise chunking. Not thread-safe:
 * set it before any model runs. */
void classifier_set_chunk_logits(long n);
void classifier_forward_backward(real *loss, real *dh, real *dW, const real *h, const real *W, const int32_t *target,
                                 const real *weight, long N, int C, int V, real *scratch);

/* exp over an array: out[i] = exp(in[i]) (in place allowed). Single precision uses a polynomial
 * kernel (AVX-512 where available) with relative error below 3e-7 (a few ulp) and inputs clamped to [−87, 88];
 * double precision uses libm (the gradient checks want full accuracy). */
void vexp(real *out, const real *in, long n);
/* In place z[i] = exp(z[i] − shift); returns Σ z[i] accumulated in double. The softmax kernel. */
double vexp_shift_sum(real *z, long n, real shift);

/* Switch the library's BLAS/OpenMP threads (0 = leave the default). */
void ops_set_threads(int n);

#endif
