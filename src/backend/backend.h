/* The op interface between the model and the hardware. A backend is a table of the numerical ops of
 * src/ops/ops.h (same names, same argument order, same semantics) plus memory management; the model,
 * the privacy engine and the training loop are written once and call the numerical work through it.
 * Every pointer an op takes is memory of that backend (host memory for the CPU, device memory for
 * CUDA), including the int arrays (token ids, targets, first positions `lo`) and the double arrays of
 * per-example squared norms. The CPU backend (cpu_backend.c) is src/ops itself; the CUDA backend
 * (cuda/) re-implements each op with cuBLAS and its own kernels. Ops run in issue order on one
 * stream; `download` waits for the work before it. Not a public interface: include/dpformer/backend.h
 * has what users see (device names, availability). */
#ifndef DP_BACKEND_H
#define DP_BACKEND_H

#include "core/common.h"
#include "dpformer/backend.h"
#include "ops/ops.h"

typedef struct dp_backend {
    const char *name;
    dp_device device;

    /* ---- memory (bytes) ---- */
    /* Zero-initialised; NULL with err when it cannot be had (never aborts: device memory is finite). */
    void *(*alloc)(size_t bytes, dp_error *err);
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);
    /* Copy `rows` rows of `width` bytes from src (row pitch spitch bytes) to dst (pitch dpitch). */
    void (*copy_rows)(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t rows);
    /* Wait for every op issued so far (timing). */
    void (*synchronize)(void);

    /* ---- the ops of src/ops/ops.h ---- */
    void (*linear_forward)(real *out, const real *inp, const real *w, const real *b, long N, int C, int OC);
    void (*linear_backward_input)(real *dinp, const real *dout, const real *w, long N, int C, int OC, int accumulate);
    void (*linear_backward_params)(real *dw, real *db, const real *dout, const real *inp, long N, int C, int OC);
    void (*layernorm_forward)(real *out, real *mean, real *rstd, const real *inp, const real *w, const real *b, long N,
                              int C);
    void (*layernorm_backward)(real *dinp, real *dw, real *db, const real *dout, const real *inp, const real *w,
                               const real *mean, const real *rstd, long N, int C);
    void (*gelu_forward)(real *out, const real *inp, long n);
    void (*gelu_backward)(real *dinp, const real *dout, const real *inp, long n);
    void (*gelu_tanh_forward)(real *out, const real *inp, long n);
    void (*gelu_tanh_backward)(real *dinp, const real *dout, const real *inp, long n);
    void (*dropout_forward)(real *out, const real *inp, long n, float p, uint64_t seed, uint64_t idx0);
    void (*dropout_backward)(real *dinp, const real *dout, long n, float p, uint64_t seed, uint64_t idx0);
    /* out[n] = a[n] + b[n] (out may alias a or b). */
    void (*add)(real *out, const real *a, const real *b, long n);
    void (*embedding_forward)(real *out, const int32_t *ids, const real *E, const real *P, int B, int T, int C,
                              int from_first);
    void (*embedding_backward)(real *dE, real *dP, const real *dout, const int32_t *ids, int B, int T, int C,
                               int from_first);
    void (*attention_forward_ra)(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                                 uint64_t seed, int ex0, int B, int T, int C, int H, const attention_reatt *ra);
    void (*attention_backward)(real *dqkv, const real *dout, const real *qkv, const real *att, const int32_t *ids,
                               int causal, float p, uint64_t seed, int ex0, int B, int T, int C, int H);
    /* Trimmed windows with the masks of the full window (ops.h, dp_mask_window). Optional: NULL where a
     * backend has none; the model then trims only passes without dropout. */
    void (*dropout_window)(real *out, const real *inp, int B, int T, int C, float p, uint64_t seed,
                           const dp_mask_window *w);
    void (*attention_forward_window)(real *out, real *att, const real *qkv, const int32_t *ids, int causal, float p,
                                     uint64_t seed, const dp_mask_window *w, int B, int T, int C, int H,
                                     const attention_reatt *ra);
    void (*attention_backward_window)(real *dqkv, const real *dout, const real *qkv, const real *att,
                                      const int32_t *ids, int causal, float p, uint64_t seed,
                                      const dp_mask_window *w, int B, int T, int C, int H);
    size_t (*classifier_scratch_size)(long N, int C, int V);
    void (*classifier_forward_backward)(real *loss, real *dh, real *dW, const real *h, const real *W,
                                        const int32_t *target, const real *weight, long N, int C, int V,
                                        real *scratch);
    /* text classification head */
    void (*pool_forward)(real *pooled, const real *h, const int32_t *ids, int pool, int B, int T, int C);
    void (*pool_backward)(real *dh, const real *dpooled, const int32_t *ids, int pool, int B, int T, int C);
    void (*rep_clip_forward)(real *rep, real *scale, const real *x, const real *noise, double clip, int B, int C);
    void (*rep_clip_backward)(real *dx, const real *drep, const real *x, const real *scale, int B, int C);
    void (*softmax_xent)(real *loss, real *dz, const real *z, const int32_t *labels, const real *weight, int B, int K);

    /* ---- per-example gradient norms (the privacy engine's kernels); sq is double ---- */
    void (*linear_per_example_sqnorm)(double *sq, const real *G, const real *A, const int *lo, int B, int T, int Cin,
                                      int Cout, int with_bias, dp_norm_method method);
    void (*layernorm_per_example_grads)(real *gw, real *gb, const real *dout, const real *inp, const real *mean,
                                        const real *rstd, const int *lo, int B, int T, int C);
    void (*embedding_per_example_sqnorm)(double *sq_emb, double *sq_pos, const real *G, const int32_t *ids, int B,
                                         int T, int C);
    void (*rows_scale_by_example)(real *x, const double *c, int B, int T, int C);
    void (*per_example_sqnorm_add)(double *sq, const real *x, int B, int W);
    void (*per_example_dot_add)(double *sq, const real *X, const real *Y, const int *lo, int B, int T, int C,
                                double scale);
    void (*weighted_rows_sum)(real *dw, const real *x, const double *c, int B, int C);
    /* the output layer's two passes for the privacy engine (a device may use Gram form throughout;
     * `inst` is then returned NULL) */
    size_t (*classifier_dp_scratch_size)(int B, int T, int C, int V);
    long (*classifier_dp_chunk_rows)(int T, int V);
    void (*classifier_dp_pass1)(real *loss, real *dh, real *row_a, double *out_sq, real *Q, real **inst, const real *h,
                                const real *W, const int32_t *target, const real *weight, const int32_t *ids, int B,
                                int T, int C, int V, dp_norm_method method, real *scratch);
    void (*classifier_dp_pass2)(real *dW, const real *inst, const real *W, const int32_t *target, const real *weight,
                                const real *row_a, const double *c, int B, int T, int C, int V, dp_norm_method method,
                                real *scratch);
    long (*count_nonfinite)(const real *x, size_t n);
    /* DP-SGD noise (src/privacy/noise.c): x[0..n) += (or =) the Gaussian noise of one call under a
     * ChaCha20 key, value i depending only on (key, i); scale = σ (plain) or σ/2 (hardened). The
     * same values on every backend. */
    void (*noise_blocks)(real *x, size_t n, const uint32_t key[8], double scale, int hardened, int add);
    /* x[n] *= a (rounded once per value) */
    void (*vec_scale)(real *x, size_t n, double a);
    /* optimiser updates */
    void (*adamw_update)(real *p, real *m1, real *m2, const real *g, const unsigned char *decay, size_t n, double lr,
                         double b1, double b2, double bc1, double bc2, double eps, double wd);
    void (*sgd_update)(real *p, real *m1, const real *g, const unsigned char *decay, size_t n, double lr, double mu,
                       double wd);
} dp_backend;

/* The CPU backend (always there). */
const dp_backend *dp_backend_cpu(void);
/* The CUDA backend, or NULL with err when this build has none, its module cannot be loaded or no
 * usable GPU is present. */
const dp_backend *dp_backend_cuda(dp_error *err);

/* What the CUDA module (libdpformer_cuda.so, src/backend/cuda) exports through its one entry point
 * dp_cuda_module_entry(). abi identifies this header's layout of dp_backend: a module built from
 * another version is refused. */
#define DP_CUDA_MODULE_ABI ((int)(sizeof(dp_backend) * 1000 + 1))
typedef struct dp_cuda_module {
    int abi;
    const dp_backend *(*backend)(dp_error *err); /* NULL with err when no GPU can be used */
    const char *(*description)(void);            /* "" without a GPU */
    size_t (*memory_used)(void);                 /* total − free device memory */
    double (*sgemm_gflops)(int n, int reps);     /* cuBLAS float32 rate */
} dp_cuda_module;
/* The backend of a device (NULL with err as above). */
const dp_backend *dp_backend_of(dp_device device, dp_error *err);

#endif
