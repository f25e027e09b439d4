/* The CUDA backend: device memory, the cuBLAS handle, the linear layer on cuBLAS, and the table that
 * puts every cuda_<op> (elementwise.cu, attention.cu, classifier.cu, classifier_dp.cu, pernorm.cu,
 * noise.cu, optimizer.cu) behind the interface of src/backend/backend.h. Built as the module
 * libdpformer_cuda.so, which the library loads on the first request for the cuda device (device.c),
 * so that programs that never use a GPU neither load nor initialise the CUDA libraries. The first use
 * checks that a GPU is present; without one the backend is refused with the runtime's reason.
 * Matrix products run in float32 (cuBLAS default math, no TF32) so that results match the CPU
 * backend to float rounding. */
#include <stdarg.h>

#include "backend/cuda/cuda_common.h"

#include "backend/cuda/cuda_noise.h"

extern "C" {
#include "backend/backend.h"
}

/* ---------------- device, handle, scratch ---------------- */

/* The module has no access to the library's symbols: its own copy of dp_fail's formatting. */
static void fail(dp_error *err, const char *fmt, ...) {
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

static int g_state; /* 0 unchecked, 1 usable, -1 not */
static char g_reason[512];
static char g_desc[512];
static cublasHandle_t g_blas;

static int cuda_init(void) {
    if (g_state) return g_state;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n < 1) {
        snprintf(g_reason, sizeof g_reason, "no CUDA GPU is present (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "the runtime found 0 devices");
        (void)cudaGetLastError(); /* clear the sticky error of the failed query */
        g_state = -1;
        return g_state;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e == cudaSuccess) e = cudaSetDevice(0);
    if (e == cudaSuccess) e = cudaFree(0); /* create the context now, not inside the first timed op */
    if (e != cudaSuccess) {
        snprintf(g_reason, sizeof g_reason, "the CUDA GPU cannot be used (%s)", cudaGetErrorString(e));
        g_state = -1;
        return g_state;
    }
    if (cublasCreate(&g_blas) != CUBLAS_STATUS_SUCCESS) {
        snprintf(g_reason, sizeof g_reason, "cuBLAS could not be initialised on %s", prop.name);
        g_state = -1;
        return g_state;
    }
    CUBLAS_CHECK(cublasSetMathMode(g_blas, CUBLAS_DEFAULT_MATH)); /* float32 products: no TF32 unless asked for */
    int rt = 0;
    cudaRuntimeGetVersion(&rt);
    snprintf(g_desc, sizeof g_desc, "%s, %d SMs, %.0f GiB, compute %d.%d, CUDA runtime %d.%d", prop.name,
             prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0, prop.major, prop.minor, rt / 1000,
             (rt % 1000) / 10);
    g_state = 1;
    return g_state;
}

cublasHandle_t dp_cuda_blas(void) {
    if (cuda_init() != 1) {
        fprintf(stderr, "dpformer: internal error: CUDA op used without a GPU (%s)\n", g_reason);
        abort();
    }
    return g_blas;
}

static const char *description(void) { return cuda_init() == 1 ? g_desc : ""; }

/* A vector of ones on the device (grow-only), for bias gradients as one GEMV. */
static const float *ones(long n) {
    static float *buf;
    static long cap;
    if (n > cap) {
        long c = n > 2 * cap ? n : 2 * cap;
        float *h = (float *)malloc(sizeof(float) * (size_t)c);
        if (!h) {
            fprintf(stderr, "dpformer: out of memory at %s:%d\n", __FILE__, __LINE__);
            abort();
        }
        for (long i = 0; i < c; i++) h[i] = 1.0f;
        if (buf) CUDA_CHECK(cudaFree(buf));
        CUDA_CHECK(cudaMalloc((void **)&buf, sizeof(float) * (size_t)c));
        CUDA_CHECK(cudaMemcpy(buf, h, sizeof(float) * (size_t)c, cudaMemcpyHostToDevice));
        free(h);
        cap = c;
    }
    return buf;
}

/* ---------------- memory ---------------- */

static void *cu_alloc(size_t bytes, dp_error *err) {
    if (cuda_init() != 1) {
        fail(err, "%s", g_reason);
        return NULL;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        fail(err, "cannot allocate %.1f MiB of GPU memory (%.1f MiB free of %.1f): %s", bytes / 1048576.0,
                fr / 1048576.0, tot / 1048576.0, cudaGetErrorString(e));
        return NULL;
    }
    CUDA_CHECK(cudaMemset(p, 0, bytes ? bytes : 1));
    return p;
}
static void cu_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}
static void cu_zero(void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, 0));
}
static void cu_upload(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
static void cu_download(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
static void cu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
}
static void cu_copy_rows(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t rows) {
    if (rows && width) CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice, 0));
}
static void cu_synchronize(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

/* ---------------- linear layer (row-major on column-major cuBLAS) ----------------
 * A row-major [R, K] matrix is a column-major [K, R] one with leading dimension K. */

__global__ void bias_rows_kernel(float *out, const float *b, long N, int OC) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N * OC) out[i] = b[i % OC];
}

extern "C" void cuda_linear_forward(real *out, const real *inp, const real *w, const real *b, long N, int C, int OC) {
    if (N <= 0) return;
    float beta = 0.0f, alpha = 1.0f;
    if (b) {
        bias_rows_kernel<<<dp_cuda_blocks(N * OC, 256), 256>>>(out, b, N, OC);
        CUDA_CHECK_LAUNCH();
        beta = 1.0f;
    }
    /* outᵀ[OC, N] = W[OC, C] (col-major [C, OC], transposed) · inpᵀ[C, N] */
    CUBLAS_CHECK(cublasSgemm(dp_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, OC, (int)N, C, &alpha, w, C, inp, C, &beta, out,
                             OC));
}

extern "C" void cuda_linear_backward_input(real *dinp, const real *dout, const real *w, long N, int C, int OC,
                                           int accumulate) {
    if (N <= 0) return;
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    /* dinpᵀ[C, N] = Wᵀ (col-major [C, OC]) · doutᵀ[OC, N] */
    CUBLAS_CHECK(cublasSgemm(dp_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_N, C, (int)N, OC, &alpha, w, C, dout, OC, &beta,
                             dinp, C));
}

extern "C" void cuda_linear_backward_params(real *dw, real *db, const real *dout, const real *inp, long N, int C,
                                            int OC) {
    if (N <= 0) return;
    float alpha = 1.0f, beta = 1.0f;
    /* dWᵀ[C, OC] (col-major view of row-major dW[OC, C]) += inpᵀ[C, N] · dout[N, OC] */
    CUBLAS_CHECK(cublasSgemm(dp_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_T, C, OC, (int)N, &alpha, inp, C, dout, OC, &beta,
                             dw, C));
    /* db[OC] += doutᵀ (col-major [OC, N]) · 1 */
    if (db)
        CUBLAS_CHECK(cublasSgemv(dp_cuda_blas(), CUBLAS_OP_N, OC, (int)N, &alpha, dout, OC, ones(N), 1, &beta, db, 1));
}

static size_t memory_used(void) {
    size_t fr = 0, tot = 0;
    if (cuda_init() != 1 || cudaMemGetInfo(&fr, &tot) != cudaSuccess) return 0;
    return tot - fr;
}

/* Best-of-reps float32 SGEMM rate (random-looking, non-zero inputs), timed with events. */
static double sgemm_gflops(int n, int reps) {
    if (cuda_init() != 1) return 0;
    size_t bytes = sizeof(float) * (size_t)n * n;
    float *a, *b, *c, *h = (float *)malloc(bytes);
    if (!h) return 0;
    for (size_t i = 0; i < (size_t)n * n; i++) h[i] = (float)((i * 2654435761u % 1000) * 1e-3 - 0.5);
    CUDA_CHECK(cudaMalloc((void **)&a, bytes));
    CUDA_CHECK(cudaMalloc((void **)&b, bytes));
    CUDA_CHECK(cudaMalloc((void **)&c, bytes));
    CUDA_CHECK(cudaMemcpy(a, h, bytes, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(b, h, bytes, cudaMemcpyHostToDevice));
    free(h);
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    float alpha = 1, beta = 0, best = 1e30f;
    for (int r = 0; r < reps + 1; r++) {
        CUDA_CHECK(cudaEventRecord(e0, 0));
        CUBLAS_CHECK(cublasSgemm(g_blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, n, b, n, &beta, c, n));
        CUDA_CHECK(cudaEventRecord(e1, 0));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (r > 0 && ms < best) best = ms;
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    CUDA_CHECK(cudaFree(c));
    return 2.0 * n * n * (double)n / (best * 1e-3) / 1e9;
}

/* ---------------- the table ---------------- */

static dp_backend make_table(void) {
    dp_backend t;
    memset(&t, 0, sizeof t);
    t.name = "cuda";
    t.device = DP_DEVICE_CUDA;
    t.alloc = cu_alloc;
    t.free = cu_free;
    t.zero = cu_zero;
    t.upload = cu_upload;
    t.download = cu_download;
    t.copy = cu_copy;
    t.copy_rows = cu_copy_rows;
    t.synchronize = cu_synchronize;
    t.linear_forward = cuda_linear_forward;
    t.linear_backward_input = cuda_linear_backward_input;
    t.linear_backward_params = cuda_linear_backward_params;
    t.layernorm_forward = cuda_layernorm_forward;
    t.layernorm_backward = cuda_layernorm_backward;
    t.gelu_forward = cuda_gelu_forward;
    t.gelu_backward = cuda_gelu_backward;
    t.gelu_tanh_forward = cuda_gelu_tanh_forward;
    t.gelu_tanh_backward = cuda_gelu_tanh_backward;
    t.dropout_forward = cuda_dropout_forward;
    t.dropout_backward = cuda_dropout_backward;
    t.add = cuda_add;
    t.embedding_forward = cuda_embedding_forward;
    t.embedding_backward = cuda_embedding_backward;
    t.attention_forward_ra = cuda_attention_forward_ra;
    t.attention_backward = cuda_attention_backward;
    t.classifier_scratch_size = cuda_classifier_scratch_size;
    t.classifier_forward_backward = cuda_classifier_forward_backward;
    t.pool_forward = cuda_pool_forward;
    t.pool_backward = cuda_pool_backward;
    t.rep_clip_forward = cuda_rep_clip_forward;
    t.rep_clip_backward = cuda_rep_clip_backward;
    t.softmax_xent = cuda_softmax_xent;
    t.linear_per_example_sqnorm = cuda_linear_per_example_sqnorm;
    t.layernorm_per_example_grads = cuda_layernorm_per_example_grads;
    t.embedding_per_example_sqnorm = cuda_embedding_per_example_sqnorm;
    t.rows_scale_by_example = cuda_rows_scale_by_example;
    t.per_example_sqnorm_add = cuda_per_example_sqnorm_add;
    t.per_example_dot_add = cuda_per_example_dot_add;
    t.weighted_rows_sum = cuda_weighted_rows_sum;
    t.classifier_dp_scratch_size = cuda_classifier_dp_scratch_size;
    t.classifier_dp_chunk_rows = cuda_classifier_dp_chunk_rows;
    t.classifier_dp_pass1 = cuda_classifier_dp_pass1;
    t.classifier_dp_pass2 = cuda_classifier_dp_pass2;
    t.count_nonfinite = cuda_count_nonfinite;
    t.noise_blocks = cuda_noise_blocks;
    t.vec_scale = cuda_vec_scale;
    t.adamw_update = cuda_adamw_update;
    t.sgd_update = cuda_sgd_update;
    return t;
}

static const dp_backend *backend(dp_error *err) {
    static dp_backend table;
    if (cuda_init() != 1) {
        fail(err, "%s", g_reason);
        return NULL;
    }
    if (!table.name) table = make_table();
    return &table;
}

/* The module's one entry point, found by name with dlsym. */
extern "C" __attribute__((visibility("default"))) const dp_cuda_module *dp_cuda_module_entry(void) {
    static const dp_cuda_module mod = {DP_CUDA_MODULE_ABI, backend, description, memory_used, sgemm_gflops};
    return &mod;
}
