/* The CUDA backend's ops: each cuda_<op> is the twin of <op> in src/ops/ops.h (same arguments in the
 * same order, same semantics, same accumulate/overwrite rules), on device pointers. The table in
 * cuda_backend.cu puts them behind the interface of src/backend/backend.h. Single precision only
 * (the double-precision build has no CUDA backend). All work goes to the default stream. */
#ifndef DP_CUDA_OPS_H
#define DP_CUDA_OPS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/common.h"
#include "ops/ops.h"

/* linear (cuda_backend.cu, cuBLAS) */
void cuda_linear_forward(real *out, const real *inp, const real *w, const real *b, long N, int C, int OC);
void cuda_linear_backward_input(real *dinp, const real *dout, const real *w, long N, int C, int OC, int accumulate);
void cuda_linear_backward_params(real *dw, real *db, const real *dout, const real *inp, long N, int C, int OC);

/* elementwise.cu */
void cuda_layernorm_forward(real *out, real *mean, real *rstd, const real *inp, const real *w, const real *b, long N,
                            int C);
void cuda_layernorm_backward(real *dinp, real *dw, real *db, const real *dout, const real *inp, const real *w,
                             const real *mean, const real *rstd, long N, int C);
void cuda_gelu_forward(real *out, const real *inp, long n);
void cuda_gelu_backward(real *dinp, const real *dout, const real *inp, long n);
void cuda_gelu_tanh_forward(real *out, const real *inp, long n);
void cuda_gelu_tanh_backward(real *dinp, const real *dout, const real *inp, long n);
void cuda_dropout_forward(real *out, const real *inp, long n, float p, uint64_t seed, uint64_t idx0);
void cuda_dropout_backward(real *dinp, const real *dout, long n, float p, uint64_t seed, uint64_t idx0);
void cuda_add(real *out, const real *a, const real *b, long n);
void cuda_embedding_forward(real *out, const int32_t *ids, const real *E, const real *P, int B, int T, int C,
                            int from_first);
void cuda_embedding_backward(real *dE, real *dP, const real *dout, const int32_t *ids, int B, int T, int C,
                             int from_first);
void cuda_pool_forward(real *pooled, const real *h, const int32_t *ids, int pool, int B, int T, int C);
void cuda_pool_backward(real *dh, const real *dpooled, const int32_t *ids, int pool, int B, int T, int C);
void cuda_rep_clip_forward(real *rep, real *scale, const real *x, const real *noise, double clip, int B, int C);
void cuda_rep_clip_backward(real *dx, const real *drep, const real *x, const real *scale, int B, int C);
void cuda_softmax_xent(real *loss, real *dz, const real *z, const int32_t *labels, const real *weight, int B, int K);
void cuda_rows_scale_by_example(real *x, const double *c, int B, int T, int C);
void cuda_per_example_sqnorm_add(double *sq, const real *x, int B, int W);
void cuda_per_example_dot_add(double *sq, const real *X, const real *Y, const int *lo, int B, int T, int C,
                              double scale);
void cuda_weighted_rows_sum(real *dw, const real *x, const double *c, int B, int C);

/* attention.cu */
void cuda_attention_forward_ra(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                               uint64_t seed, int ex0, int B, int T, int C, int H, const attention_reatt *ra);
void cuda_attention_backward(real *dqkv, const real *dout, const real *qkv, const real *att, const int32_t *ids,
                             int causal, float p, uint64_t seed, int ex0, int B, int T, int C, int H);

/* classifier.cu */
size_t cuda_classifier_scratch_size(long N, int C, int V);
void cuda_classifier_forward_backward(real *loss, real *dh, real *dW, const real *h, const real *W,
                                      const int32_t *target, const real *weight, long N, int C, int V, real *scratch);

/* classifier_dp.cu: the output layer's passes for the privacy engine (Gram form; inst returned NULL) */
size_t cuda_classifier_dp_scratch_size(int B, int T, int C, int V);
long cuda_classifier_dp_chunk_rows(int T, int V);
void cuda_classifier_dp_pass1(real *loss, real *dh, real *row_a, double *out_sq, real *Q, real **inst, const real *h,
                              const real *W, const int32_t *target, const real *weight, const int32_t *ids, int B,
                              int T, int C, int V, dp_norm_method method, real *scratch);
void cuda_classifier_dp_pass2(real *dW, const real *inst, const real *W, const int32_t *target, const real *weight,
                              const real *row_a, const double *c, int B, int T, int C, int V, dp_norm_method method,
                              real *scratch);

/* optimizer.cu */
void cuda_vec_scale(real *x, size_t n, double a);
long cuda_count_nonfinite(const real *x, size_t n);
void cuda_adamw_update(real *p, real *m1, real *m2, const real *g, const unsigned char *decay, size_t n, double lr,
                       double b1, double b2, double bc1, double bc2, double eps, double wd);
void cuda_sgd_update(real *p, real *m1, const real *g, const unsigned char *decay, size_t n, double lr, double mu,
                     double wd);

/* pernorm.cu: per-example gradient norms */
void cuda_linear_per_example_sqnorm(double *sq, const real *G, const real *A, const int *lo, int B, int T, int Cin,
                                    int Cout, int with_bias, dp_norm_method method);
void cuda_layernorm_per_example_grads(real *gw, real *gb, const real *dout, const real *inp, const real *mean,
                                      const real *rstd, const int *lo, int B, int T, int C);
void cuda_embedding_per_example_sqnorm(double *sq_emb, double *sq_pos, const real *G, const int32_t *ids, int B,
                                       int T, int C);

#ifdef __cplusplus
}
#endif

#endif
