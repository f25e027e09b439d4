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

/* A loop of less work than this (element operations) runs on the calling thread: a parallel region
 * costs a wake-up and a barrier (about 20 µs with sleeping threads on an idle machine, and up to a
 * scheduler time slice when another process holds the core a team thread needs), more than such a
 * loop. A DP step runs its layers on small groups of examples, so most of its loops are this small.
 * Results do not depend on it: every loop so guarded computes each output element on one thread. */
#define OPS_PAR_MIN_WORK 65536.0
#define OPS_PAR(work) ((double)(work) >= OPS_PAR_MIN_WORK)

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
/* ---- GPT-2's GELU, the tanh approximation (Hugging Face's gelu_new, PyTorch's approximate="tanh"):
 * 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))); the same argument order as the exact pair ---- */
void gelu_tanh_forward(real *out, const real *inp, long n);
void gelu_tanh_backward(real *dinp, const real *dout, const real *inp, long n);

/* ---- dropout with masks derived from (seed, index) by a counter-based hash, so the backward pass
 * regenerates the mask instead of storing it. p = drop probability; p = 0 is the identity. Element i
 * uses index idx0 + i: running one example of a batch on its own with idx0 = its offset reproduces
 * exactly the mask it had in the batch (the per-example reference of the privacy engine relies on it). ---- */
static inline int dp_dropout_keep(uint64_t seed, uint64_t idx, float p) {
    uint64_t z = seed ^ (idx * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0) >= (double)p;
}
/* out[n] = inp · keep / (1 − p)  (in place allowed). */
void dropout_forward(real *out, const real *inp, long n, float p, uint64_t seed, uint64_t idx0);
/* dinp[n] = dout · keep / (1 − p)  (overwrites; in place allowed). */
void dropout_backward(real *dinp, const real *dout, long n, float p, uint64_t seed, uint64_t idx0);

/* ---- masks of trimmed windows: the rows of a window that holds positions off .. off+T−1 of full
 * windows of L positions (left-padded sequences on a window trimmed to their longest, docs/training.md)
 * keep the masks they have in the full window. Sequence b of the batch is sequence slot[b] of the
 * logical batch (slot NULL: ex0 + b). With L = T, off = 0 and no slot, every op below equals its plain
 * twin (element i of the batch uses index ex0·T·C + i). ---- */
typedef struct dp_mask_window {
    int L, off, ex0;
    const int32_t *slot; /* [B] (host memory) or NULL */
} dp_mask_window;
/* The full-window row index of row t of sequence b (its C elements use indices row·C + c). */
static inline uint64_t dp_mask_seq(const dp_mask_window *w, int b) {
    return w->slot ? (uint64_t)w->slot[b] : (uint64_t)(w->ex0 + b);
}
static inline uint64_t dp_mask_row(const dp_mask_window *w, int b, int t) {
    return dp_mask_seq(w, b) * (uint64_t)w->L + (uint64_t)(w->off + t);
}
/* dropout_forward / dropout_backward (the same: the mask is its own adjoint) of x[B,T,C]. */
void dropout_window(real *out, const real *inp, int B, int T, int C, float p, uint64_t seed, const dp_mask_window *w);

/* out[n] = a[n] + b[n] (out may alias a or b): the residual connection. */
void add_into(real *out, const real *a, const real *b, long n);

/* ---- embedding: out[B,T,C] = E[ids[b,t]] + P[pos(b,t)] ----
 * from_first = 0: pos(b,t) = t, the window position (the recommender's left-padded windows);
 * from_first = 1: pos(b,t) = t − f_b, f_b the first non-padding position of sequence b (GPT-2: positions
 * count from each sequence's first token; padding rows before it use P[0]). For right-padded sequences
 * (f_b = 0) the two rules agree. Within one sequence the non-padding rows always have distinct
 * positions (the per-example position-gradient norm relies on it). */
void embedding_forward(real *out, const int32_t *ids, const real *E, const real *P, int B, int T, int C,
                       int from_first);
/* dE[V+1,C] += at rows ids (row 0, padding, gets nothing); dP[T,C] += at the positions of the
 * non-padding rows. dE or dP may be NULL. */
void embedding_backward(real *dE, real *dP, const real *dout, const int32_t *ids, int B, int T, int C,
                        int from_first);

/* ---- multi-head scaled dot-product attention ----
 * qkv[B,T,3C]: q = cols [0,C), k = [C,2C), v = [2C,3C); head h uses cols h·hd .. (h+1)·hd, hd = C/H.
 * ids[B,T]: positions with id 0 are padding: masked as keys, and their query rows output zeros.
 * causal: query t sees keys u ≤ t. att[B,H,T,T] receives the softmax probabilities (before dropout;
 * zero where masked). Dropout p on the probabilities with masks from (seed, index); sequence b is
 * masked as sequence ex0 + b of a larger batch. out[B,T,C]. */
void attention_forward(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                       uint64_t seed, int ex0, int B, int T, int C, int H);
/* Re-Attention (docs/reattention.md): the same attention with every visible logit corrected,
 *   l_tu = ⟨q_t, k_u⟩/√hd − kappa · ‖q_t‖² · kvar[b,h,u] / (2·hd),
 * before masking and softmax. kvar[B,H,T] is the noise variance of each position's key (per head);
 * qsq[B,H,T], if not NULL, gives the ‖q_t‖² to use instead of computing them from qkv (a caller holds
 * the correction fixed that way). The correction is a constant for the backward pass, so
 * attention_backward is unchanged (it only reads the stored probabilities). If vvar and ovar are not
 * NULL, ovar[b,h,t] = Σ_u p'_tu² vvar[b,h,u] (p' = the probabilities after dropout, the ones the output
 * uses; zero for padding query rows): the output's noise variance from the values'. ra == NULL is
 * exactly attention_forward. */
typedef struct attention_reatt {
    const real *kvar;
    const real *qsq;
    double kappa;
    const real *vvar;
    real *ovar;
} attention_reatt;
void attention_forward_ra(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                          uint64_t seed, int ex0, int B, int T, int C, int H, const attention_reatt *ra);
/* dqkv[B,T,3C] (overwrites) from dout[B,T,C]. */
void attention_backward(real *dqkv, const real *dout, const real *qkv, const real *att, const int32_t *ids,
                        int causal, float p, uint64_t seed, int ex0, int B, int T, int C, int H);
/* The pair on a trimmed window: the dropout mask of probability (t, u) of sequence b, head h is the one
 * of (off + t, off + u) of sequence seq(b) in full windows of w->L positions (w->ex0 unused). */
void attention_forward_window(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                              uint64_t seed, const dp_mask_window *w, int B, int T, int C, int H,
                              const attention_reatt *ra);
void attention_backward_window(real *dqkv, const real *dout, const real *qkv, const real *att, const int32_t *ids,
                               int causal, float p, uint64_t seed, const dp_mask_window *w, int B, int T, int C,
                               int H);

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

/* ---- per-example gradient norms (the privacy engine's kernels) ----
 * A batch holds B examples of T rows each; example b owns rows b·T + t for t in [lo[b], T) (lo[b] =
 * first non-padding position; rows before it are padding and have zero output gradients, so skipping
 * them is exact). Functions ADD squared norms into sq[B] (double). `method` chooses how a weight
 * gradient's norm is formed: Gram ("ghost": Σ_tu (AAᵀ)_tu (GGᵀ)_tu, cost n²(p+r)), instantiation
 * (‖AᵀG‖², cost n·p·r), or auto (the cheaper of the two for each example's n). All are exact. */
typedef enum { DP_NORM_AUTO = 0, DP_NORM_GRAM = 1, DP_NORM_INSTANTIATE = 2 } dp_norm_method;
/* Linear layer: sq[b] += ‖A_bᵀ G_b‖² (+ ‖Σ_t G_t‖² for the bias if with_bias). A[N,Cin], G[N,Cout]. */
void linear_per_example_sqnorm(double *sq, const real *G, const real *A, const int *lo, int B, int T, int Cin,
                               int Cout, int with_bias, dp_norm_method method);
/* Σ_tu X_tu Y_tu for symmetric n×n X, Y of which only the lower triangles are set. */
double ops_sym_dot(const real *X, const real *Y, int n);
/* Scale every row of example b of x[B·T, C] by c[b] (in place). */
void rows_scale_by_example(real *x, const double *c, int B, int T, int C);
/* LayerNorm per-example parameter gradients: gw[b,C] = Σ_t dout ∘ x̂, gb[b,C] = Σ_t dout. */
void layernorm_per_example_grads(real *gw, real *gb, const real *dout, const real *inp, const real *mean,
                                 const real *rstd, const int *lo, int B, int T, int C);
/* Embedding lookup: sq_emb[b] += ‖Σ_t e_{ids_t} G_tᵀ‖² (positions with equal ids add up; id 0 skipped);
 * sq_pos[b] += Σ_t ‖G_t‖² over non-padding positions (the position embedding). Either may be NULL. */
void embedding_per_example_sqnorm(double *sq_emb, double *sq_pos, const real *G, const int32_t *ids, int B, int T,
                                  int C);

/* Small reductions of the clipping engine (per_example.c), each example's values in double:
 * sq[b] += ‖x[b, 0..W)‖² for x[B, W]; */
void per_example_sqnorm_add(double *sq, const real *x, int B, int W);
/* sq[b] += scale · Σ_{t = lo[b]}^{T−1} ⟨X[b·T + t, :], Y[b·T + t, :]⟩ for X, Y [B·T, C]; */
void per_example_dot_add(double *sq, const real *X, const real *Y, const int *lo, int B, int T, int C, double scale);
/* dw[i] += Σ_b c[b] · x[b, i] for x[B, C] (the clipped sum of per-example vectors). */
void weighted_rows_sum(real *dw, const real *x, const double *c, int B, int C);

/* Output layer for the privacy engine, for a group of examples whose non-padding rows fit in one chunk
 * (at most classifier_dp_chunk_rows(T, V) rows; the caller groups examples so, and more is an internal
 * error): the logits stay in scratch between the two passes instead of being recomputed.
 * Pass 1: the loss and dh of classifier_forward_backward (no weight gradient), plus for every example b
 * (rows b·T ..):
 *   out_sq[b] += ‖Σ_r δ_r h_rᵀ‖²  (the output-layer part of the per-example weight-gradient norm),
 *   row_a[r]   = w_r / Σ_v exp(z_rv − max_r)  (the row scale pass 2 needs; 0 for skipped rows),
 *   if Q != NULL (tied embedding): Q[b·T + t, :] = Σ_r δ_r[ids_t] h_r for input positions t with
 *   ids_t ≠ 0 (0 elsewhere), so that the cross term of the shared embedding is 2 Σ_t ⟨G_in,t, Q_t⟩.
 * δ_r = weight[r]·(softmax(z_r) − onehot(target_r)). scratch: classifier_dp_scratch_size(...) reals. */
size_t classifier_dp_scratch_size(int B, int T, int C, int V);
long classifier_dp_chunk_rows(int T, int V);
void classifier_dp_pass1(real *loss, real *dh, real *row_a, double *out_sq, real *Q, real **inst, const real *h,
                         const real *W, const int32_t *target, const real *weight, const int32_t *ids, int B, int T,
                         int C, int V, dp_norm_method method, real *scratch);
/* Whether an example of n rows gets its output-layer norm in Gram form (else its per-example gradient
 * D_b = Σ_u δ_u h_uᵀ [V, C] is instantiated; pass 1 returns those in *inst, in example order, for pass 2;
 * free() it after pass 2). */
int classifier_example_uses_gram(int n, int C, dp_norm_method method);
/* One example's part of pass 1, for its n rows with δ_u = a_u e_u − w_u onehot(y_u) (e[n,V], a, w, y
 * per row; the unnormalised exponentials and their scale, so δ is never written out): returns
 * ‖Σ_u δ_u h_uᵀ‖² for h[n,C] and, if Q != NULL, fills Q[T,C] with Q_t = Σ_u δ_u[ids_t − 1] h_u (zero
 * where ids_t = 0). With a = 1 and w = 0, e is δ itself. work: classifier_example_work_size reals. If the
 * gradient is instantiated and D_out != NULL, it is left in D_out [V, C]. */
size_t classifier_example_work_size(int T, int C, int V);
double classifier_example_sqnorm(real *Q, const real *e, const real *a, const real *w, const int32_t *y, const real *h,
                                 const int32_t *ids, int n, int T, int C, int V, dp_norm_method method, real *work,
                                 real *D_out);
/* Pass 2, right after pass 1 on the same group (scratch untouched since): dW[V+1,C] +=
 * Σ_r weight[r]·(softmax(z_r) − onehot(target_r))ᵀ h_r, where the caller has rescaled weight[r] and
 * row_a[r] by the example's clip factor c[b] > 0 (so the zero rows are those of pass 1): one GEMM per
 * run of Gram-form examples from the logits still in the chunk buffer, plus c[b]·D_b for the examples
 * whose gradient pass 1 instantiated (inst, as returned by pass 1; same method). */
void classifier_dp_pass2(real *dW, const real *inst, const real *W, const int32_t *target, const real *weight,
                         const real *row_a, const double *c, int B, int T, int C, int V, dp_norm_method method,
                         real *scratch);

/* ---- sequence classification head (text classification) ----
 * h[B,T,C] final hidden states, ids[B,T] (0 = padding, anywhere in the window). */
/* pooled[B,C] (pool: DP_POOL_FIRST or DP_POOL_MEAN of dpformer/model.h): the first non-padding position's state (FIRST) or the mean over non-padding positions
 * (MEAN); zeros for a sequence without tokens. */
void pool_forward(real *pooled, const real *h, const int32_t *ids, int pool, int B, int T, int C);
/* dh[B,T,C] (overwrites) from dpooled[B,C]. */
void pool_backward(real *dh, const real *dpooled, const int32_t *ids, int pool, int B, int T, int C);
/* DP-FP: rep[b] = x[b]·s_b + noise[b] with s_b = min(1, clip/‖x[b]‖) (clip <= 0: s_b = 1; noise may be
 * NULL). scale[B] receives s_b. In place (rep == x) is not allowed. */
void rep_clip_forward(real *rep, real *scale, const real *x, const real *noise, double clip, int B, int C);
/* dx[B,C] (overwrites) from drep: the noise is an additive constant; where s_b < 1 the Jacobian of
 * the clip is s_b (I − x xᵀ/‖x‖²), else the identity. */
void rep_clip_backward(real *dx, const real *drep, const real *x, const real *scale, int B, int C);
/* loss[b] = logsumexp(z_b) − z_b[labels_b]; dz[B,K] = weight_b·(softmax(z_b) − onehot(labels_b)) if
 * dz != NULL (weight NULL: 1). */
void softmax_xent(real *loss, real *dz, const real *z, const int32_t *labels, const real *weight, int B, int K);

/* exp over an array: out[i] = exp(in[i]) (in place allowed). Single precision uses a polynomial
 * kernel (AVX-512 where available) with relative error below 3e-7 (a few ulp) and inputs clamped to [−87, 88];
 * double precision uses libm (the gradient checks want full accuracy). */
void vexp(real *out, const real *in, long n);
/* In place z[i] = exp(z[i] − shift); returns Σ z[i] accumulated in double. The softmax kernel. */
double vexp_shift_sum(real *z, long n, real shift);

/* ---- Re-Attention variance propagation (variance.c; rules in docs/reattention.md) ----
 * A variance track holds one scalar per row (position): the mean variance of the coordinates of that
 * row's noise under DP-SGD. Per-head tracks are laid out [B,H,T]; a row track [N] is the H = 1 case.
 * Every rule writes its output array, which may alias its input row track (for var_linear_heads only
 * when H = 1). */
/* Input: v[b·T+t] = r2_item[s_t]·ms(E[s_t]) + r2_dense·ms(P[t]), ms = mean square of the row; the
 * padding item (id 0) contributes nothing. */
void var_embedding(real *v, const int32_t *ids, const real *E, const real *P, const double *r2_item, double r2_dense,
                   int B, int T, int C);
/* LayerNorm with its statistics held constant: vout[r] = vin[r] · mean(w²) · rstd[r]² (rstd² = 1/(var+eps)). */
void var_layernorm(real *vout, const real *vin, const real *rstd, const real *w, long N, int C);
/* xsq[r] = ‖x_r‖² for x[N,C]. */
void row_sqnorm(real *xsq, const real *x, long N, int C);
/* Statistics of W[OC,C]: *wsq_per_out = ‖W‖²_F / OC, *ms = ‖W‖²_F / (OC·C). */
void var_linear_stats(double *wsq_per_out, double *ms, const real *w, int OC, int C);
/* Linear rule for H output blocks (heads) of a layer with C inputs: for rows r = b·T + t,
 *   vout[b,h,t] = vin[r]·a[h] + r2_dense·m[h]·(xsq[r] + C·vin[r])
 * with a[h], m[h] the var_linear_stats of block h. H = 1 gives a row track [N]. */
void var_linear_heads(real *vout, const real *vin, const real *xsq, const double *a, const double *m, double r2_dense,
                      int B, int T, int H, int C);
/* The linear rule for a whole weight W[OC,C] applied to x[N,C]: vout[N] (convenience for tests). */
void var_linear(real *vout, const real *vin, const real *x, const real *w, long N, int C, int OC, double r2_dense);
/* GELU (delta method): vout[r] = vin[r] · mean_k GELU'(x[r,k])², x[N,F] the pre-activations. */
void var_gelu(real *vout, const real *vin, const real *x, long N, int F);
/* mean_k GELU'(x[r,k])² for every row (the GELU rule's factor). */
void gelu_deriv_sq_rowmean(real *out, const real *x, long N, int F);
/* Dropout of x[N,C] with the masks of dropout_forward(…, p, seed, idx0), in place:
 * v[r] *= mean_k (keep_rk / (1−p))². p = 0: unchanged. */
void var_dropout(real *v, long N, int C, float p, uint64_t seed, uint64_t idx0);
/* var_dropout of the rows of a trimmed window [B,T] (the masks of dropout_window). */
void var_dropout_window(real *v, int B, int T, int C, float p, uint64_t seed, const dp_mask_window *w);
/* vout[b·T+t] = mean_h vh[b,h,t] (concatenated heads of equal width). */
void var_heads_mean(real *vout, const real *vh, int B, int T, int H);
/* qsq[b,h,t] = ‖q_{b,t,h}‖² from the query columns of qkv[B,T,3C]. */
void attention_query_sqnorm(real *qsq, const real *qkv, int B, int T, int C, int H);

/* ---- optimiser updates over the flat parameter array (optimizer.c); decay[i] = 1 where weight decay
 * applies; bc1, bc2 = the bias corrections 1 − β^t ---- */
/* Number of non-finite values (NaN, ±inf) in x[n]. */
long count_nonfinite(const real *x, size_t n);
/* x[n] *= a (in double, rounded once). */
void vec_scale(real *x, size_t n, double a);
void adamw_update(real *p, real *m1, real *m2, const real *g, const unsigned char *decay, size_t n, double lr,
                  double b1, double b2, double bc1, double bc2, double eps, double wd);
void sgd_update(real *p, real *m1, const real *g, const unsigned char *decay, size_t n, double lr, double mu,
                double wd);

/* Switch the library's BLAS/OpenMP threads (0 = leave the default). */
void ops_set_threads(int n);

#endif
