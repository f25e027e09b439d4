/* The CPU backend: the ops of src/ops (OpenBLAS + OpenMP) behind the interface of backend.h, and
 * host memory. Built in both precisions. */
#include "backend/backend.h"
#include "privacy/noise_internal.h"

static void *cpu_alloc(size_t bytes, dp_error *err) {
    (void)err; /* host allocation failure aborts with file:line (out of memory is not a user error) */
    return dp_alloc_aligned(bytes ? bytes : 1);
}
static void cpu_free(void *p) { free(p); }
static void cpu_zero(void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}
static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
}
static void cpu_copy_rows(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t rows) {
    for (size_t r = 0; r < rows; r++) memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
}
static void cpu_synchronize(void) {}

static const dp_backend cpu_backend = {
    .name = "cpu",
    .device = DP_DEVICE_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .copy_rows = cpu_copy_rows,
    .synchronize = cpu_synchronize,
    .linear_forward = linear_forward,
    .linear_backward_input = linear_backward_input,
    .linear_backward_params = linear_backward_params,
    .layernorm_forward = layernorm_forward,
    .layernorm_backward = layernorm_backward,
    .gelu_forward = gelu_forward,
    .gelu_backward = gelu_backward,
    .gelu_tanh_forward = gelu_tanh_forward,
    .gelu_tanh_backward = gelu_tanh_backward,
    .dropout_forward = dropout_forward,
    .dropout_backward = dropout_backward,
    .add = add_into,
    .embedding_forward = embedding_forward,
    .embedding_backward = embedding_backward,
    .attention_forward_ra = attention_forward_ra,
    .attention_backward = attention_backward,
    .dropout_window = dropout_window,
    .attention_forward_window = attention_forward_window,
    .attention_backward_window = attention_backward_window,
    .classifier_scratch_size = classifier_scratch_size,
    .classifier_forward_backward = classifier_forward_backward,
    .pool_forward = pool_forward,
    .pool_backward = pool_backward,
    .rep_clip_forward = rep_clip_forward,
    .rep_clip_backward = rep_clip_backward,
    .softmax_xent = softmax_xent,
    .linear_per_example_sqnorm = linear_per_example_sqnorm,
    .layernorm_per_example_grads = layernorm_per_example_grads,
    .embedding_per_example_sqnorm = embedding_per_example_sqnorm,
    .rows_scale_by_example = rows_scale_by_example,
    .per_example_sqnorm_add = per_example_sqnorm_add,
    .per_example_dot_add = per_example_dot_add,
    .weighted_rows_sum = weighted_rows_sum,
    .classifier_dp_scratch_size = classifier_dp_scratch_size,
    .classifier_dp_chunk_rows = classifier_dp_chunk_rows,
    .classifier_dp_pass1 = classifier_dp_pass1,
    .classifier_dp_pass2 = classifier_dp_pass2,
    .count_nonfinite = count_nonfinite,
    .noise_blocks = noise_blocks,
    .vec_scale = vec_scale,
    .adamw_update = adamw_update,
    .sgd_update = sgd_update,
};

const dp_backend *dp_backend_cpu(void) { return &cpu_backend; }
