/* dpformer public API: the Transformer model for next-item prediction (and, with the causal mask
 * off, sequence encoding), and through its family field the GPT-2 language models (dpformer/lm.h,
 * docs/lm.md): one forward and backward pass, configured. Conventions (docs/model.md):
 *  - item embedding E [V+1, d], row 0 = padding (kept at zero, never trained, never a candidate);
 *    learned positions P [L, d]; input x_t = E[s_t] + P[t] over a left-padded window of L positions;
 *  - n_layers pre-LN blocks x += Attn(LN1(x)); x += FFN(LN2(x)); final LayerNorm (eps 1e-5);
 *  - logits over items 1..V: z_t = LN_f(x_t) · Eᵀ (tied) or · Oᵀ with a separate O [V+1, d] (untied);
 *  - fused QKV projection with bias, 1/√d_h scaling, causal + key-padding masks; query rows at
 *    padding positions output zero and carry no loss; output projection with bias;
 *  - FFN d → d_ff → d with exact (erf) GELU; dropout on embeddings, attention probabilities and
 *    both residual branches;
 *  - per-example loss ℓ_b = mean cross-entropy over the example's non-padding targets.
 *  - sequence classification (n_classes = K): pooled final states (first token or mean) → linear head
 *    [K, d] + bias → softmax cross-entropy with one label per sequence; optional DP-FP clip + noise on
 *    the pooled representation.
 * Re-Attention (the attention correction for DP-SGD noise, off by default) is configured through
 * dpformer/reattention.h.
 * All parameters live in one contiguous array (and the gradients in another of the same layout). */
#ifndef DPFORMER_MODEL_H
#define DPFORMER_MODEL_H

#include "dpformer/backend.h"
#include "dpformer/common.h"

typedef struct {
    int32_t n_items; /* V */
    int max_len;     /* L: window length (positions) */
    int d_model;     /* d */
    int n_heads;
    int n_layers;
    int d_ff;        /* 0 means 4·d */
    int tied;        /* 1: output layer is the item embedding (default) */
    int causal;      /* 1: causal mask (recommendation); 0: bidirectional */
    float dropout;   /* rate for embeddings, attention probabilities and residual branches */
    /* Task. 0: next-item prediction (the output layer scores items 1..V at every position). K >= 2:
     * sequence classification into K classes: a pooled representation of the final hidden states
     * (`pool`) feeds a linear head [K, d] + bias; n_items is then the token vocabulary, and the model
     * must be untied (it has no item output layer). */
    int n_classes;
    int pool;        /* classification: DP_POOL_FIRST (first non-padding position) or DP_POOL_MEAN */
    double rep_clip; /* classification: DP-FP clip of the pooled representation's L2 norm, applied in
                        every pass, training and evaluation (0: off) */
    char tokenizer[32]; /* classification: the tokenizer whose ids the model reads, as a spec of
                           dpformer/text.h ("bytes", "words:H"; "" = bytes); stored in model files so that
                           evaluation encodes text as training did. Letters, digits and ':' only. The
                           model itself does not interpret it. */
    /* Family and the features it fixes. All zero (the default) is the recommender's model, which the
     * text classifier shares; DP_FAMILY_GPT2 is a GPT-2-style language model (dpformer/lm.h): token t of
     * a GPT-2 vocabulary of n_items tokens is item t + 1 (row 0 stays padding, so the tied output layer
     * and Phantom Clipping apply unchanged), sequences are right-padded, and it must be a causal
     * next-token model (n_classes 0) with positions DP_POS_FROM_FIRST. The activation is free in both
     * families (GPT-2 itself uses the tanh GELU). */
    int family;     /* DP_FAMILY_REC or DP_FAMILY_GPT2 */
    int activation; /* FFN activation: DP_ACT_GELU (exact, erf) or DP_ACT_GELU_TANH (GPT-2's gelu_new) */
    int positions;  /* DP_POS_WINDOW: window position t uses P[t] (the recommender's left-padded
                       windows: the most recent item always at P[L−1]); DP_POS_FROM_FIRST: positions
                       count from each sequence's first token (GPT-2; the same as DP_POS_WINDOW for
                       right-padded sequences) */
} dp_model_config;

enum { DP_POOL_FIRST = 0, DP_POOL_MEAN = 1 };
enum { DP_FAMILY_REC = 0, DP_FAMILY_GPT2 = 1 };
enum { DP_ACT_GELU = 0, DP_ACT_GELU_TANH = 1 };
enum { DP_POS_WINDOW = 0, DP_POS_FROM_FIRST = 1 };
/* Names of the three fields' values as model files store them ("rec", "gpt2"; "gelu", "gelu_tanh";
 * "window", "from_first"), and back (-1 for an unknown name). */
const char *dp_model_family_name(int family);
const char *dp_model_activation_name(int activation);
const char *dp_model_positions_name(int positions);
int dp_model_family_parse(const char *s);
int dp_model_activation_parse(const char *s);
int dp_model_positions_parse(const char *s);

/* A configuration with the papers' defaults (d 64, 2 layers, 1 head, tied, causal, dropout 0.2). */
dp_model_config dp_model_config_default(int32_t n_items, int max_len);
/* Check ranges (d divisible by heads, positive sizes, 0 ≤ dropout < 1, ...). */
int dp_model_config_validate(const dp_model_config *cfg, dp_error *err);

typedef struct dp_model dp_model;

/* Create a model able to run batches of up to max_batch sequences; parameters initialised from seed
 * (normal std 0.02 for matrices and embeddings, residual projections scaled by 1/√(2·n_layers),
 * LayerNorm weights 1, biases 0, padding row 0). Returns NULL (with err) on an invalid config. */
dp_model *dp_model_create(const dp_model_config *cfg, int max_batch, uint64_t seed, dp_error *err);
/* The same on a device (dpformer/backend.h): every buffer lives there and every op runs there. The
 * initial parameters are identical on every device. NULL with err if the device is not available or
 * its memory is too small. */
dp_model *dp_model_create_on(const dp_model_config *cfg, int max_batch, uint64_t seed, dp_device device,
                             dp_error *err);
/* Move a model to another device (parameters and gradients carried over; the handle stays valid).
 * On failure the model is unchanged. */
int dp_model_set_device(dp_model *m, dp_device device, dp_error *err);
dp_device dp_model_device(const dp_model *m);
void dp_model_free(dp_model *m);
const dp_model_config *dp_model_config_of(const dp_model *m);
int dp_model_max_batch(const dp_model *m);

/* Flat parameter and gradient arrays (same layout) and their named tensors. dp_model_params and
 * dp_model_grads return the model's own arrays, which are host memory only on the cpu device; the
 * read/write functions copy to and from host arrays of dp_model_num_params values on any device. */
size_t dp_model_num_params(const dp_model *m);
dp_real *dp_model_params(dp_model *m);
dp_real *dp_model_grads(dp_model *m);
void dp_model_read_params(const dp_model *m, dp_real *dst);
void dp_model_write_params(dp_model *m, const dp_real *src);
void dp_model_read_grads(const dp_model *m, dp_real *dst);
/* grads *= a (on the model's device). */
void dp_model_scale_grads(dp_model *m, double a);
/* Whether every gradient value is finite. */
int dp_model_grads_finite(const dp_model *m);
typedef struct {
    char name[64];
    size_t offset; /* into the flat arrays */
    size_t size;   /* number of elements */
    int ndim;
    int64_t shape[2];
    int decay;     /* weight decay applies (matrices that are not embeddings) */
} dp_param_tensor;
int dp_model_num_tensors(const dp_model *m);
const dp_param_tensor *dp_model_tensor(const dp_model *m, int i);
void dp_model_zero_grad(dp_model *m);

/* A batch: B sequences of length T = max_len; ids[B,T] padded with 0 (left-padded for next-item
 * prediction); targets[B,T] the next item at each position (0 = no loss at that position).
 * Classification models read labels[B] (classes 0..K-1) instead of targets. */
typedef struct {
    int B, T;
    const int32_t *ids;
    const int32_t *targets;
    const int32_t *labels;
} dp_batch;

/* Examples b0 .. b0+n-1 of a batch, as a batch. */
static inline dp_batch dp_batch_slice(const dp_batch *bt, int b0, int n) {
    dp_batch s = {n, bt->T, bt->ids + (size_t)b0 * bt->T, bt->targets ? bt->targets + (size_t)b0 * bt->T : NULL,
                  bt->labels ? bt->labels + b0 : NULL};
    return s;
}

/* Run the next passes on windows of T positions (1 <= T <= the max_len the model was created with;
 * T <= 0 restores it): batches then have T = that window, and only the first T positional rows are
 * used. For right-padded sequences whose tokens fit in T (language models, text classification) the
 * outputs, losses, gradients and per-example norms equal those of the full window, at the cost of the
 * shorter one. Meanwhile dp_model_config_of reports T as max_len; restore the full window before saving
 * or moving the model. */
void dp_model_set_window(dp_model *m, int T);

/* The same for left-padded sequences (the recommender's windows): the next passes run on the LAST T
 * positions of the full window, each row with the position vector and the dropout masks it has there
 * (dp_model_window_ok says whether the backend can do the masks). For sequences of at most T items the
 * losses, gradients, per-example norms and scores equal those of the full window; a shorter T cuts
 * items and changes them. T <= 0 restores the full window (as dp_model_set_window does). */
void dp_model_set_window_last(dp_model *m, int T);
/* Whether the backend can run trimmed windows of a pass: always without dropout (train = 0, or a
 * dropout-free model); with dropout where it has the window masks (the CPU). */
int dp_model_window_ok(const dp_model *m, int train);
/* Dropout masks by example: sequence b of the next batches has the masks of sequence slot[b] of the
 * logical batch (in the full window) instead of those of sequence ex0 + b (the privacy engine's and
 * the training loop's offset): a batch processed in another order, e.g. sorted by length, keeps every
 * example's masks. slot: host memory [B] the caller keeps until reset with NULL. */
void dp_model_set_mask_slots(dp_model *m, const int32_t *slot);

/* Forward pass only. Writes each example's loss ℓ_b to per_example_loss[B] (0 for an example with
 * no target). `train` enables dropout with masks derived from dropout_seed. */
void dp_model_forward(dp_model *m, const dp_batch *batch, int train, uint64_t dropout_seed, double *per_example_loss);

/* Forward and backward: grads += ∇ Σ_b w_b ℓ_b (w = example_weight[B]). Also writes per_example_loss. */
void dp_model_forward_backward(dp_model *m, const dp_batch *batch, const dp_real *example_weight, int train,
                               uint64_t dropout_seed, double *per_example_loss);

/* Scores of every item (index 0 = padding, meaningless) at the last position of each sequence:
 * scores[B, V+1]. Dropout off. */
void dp_model_score_last(dp_model *m, const int32_t *ids, int B, dp_real *scores);

/* Classification models: class logits [B, K] of each sequence (dropout off; the DP-FP clip, if set,
 * applies, its noise does not). */
void dp_model_class_logits(dp_model *m, const int32_t *ids, int B, dp_real *logits);

/* DP-FP (docs/dpfp.md): in training passes, add noise [B, d] (owned by the caller, already scaled,
 * e.g. σ·rep_clip·z; NULL: none) to the clipped pooled representation of example b of the next
 * batches. Evaluation passes never add noise. */
void dp_model_set_rep_noise(dp_model *m, const dp_real *noise);

/* Save parameters (float32) and the configuration to a safetensors file (docs/file-format.md);
 * extra_meta: optional JSON object text stored under the metadata key "dpformer.run". With
 * Re-Attention on (dpformer/reattention.h), its setting is stored too (metadata dpformer.reattention,
 * F64 tensor reattention.item_freq). Atomic. */
int dp_model_save(const dp_model *m, const char *path, const char *extra_meta, dp_error *err);
/* Load a model saved by dp_model_save, able to run batches of up to max_batch sequences. The file's
 * tensors are checked against its configuration before anything is allocated, and a configuration
 * that needs more memory than the machine has is refused (NULL with err naming the file). A stored
 * Re-Attention setting is checked (err names the field) and attached to the model.
 * `path` may also be a folder in the Hugging Face layout (config.json + model.safetensors of a GPT-2
 * model), which is imported as a DP_FAMILY_GPT2 model (dpformer/lm.h, docs/lm.md). */
dp_model *dp_model_load(const char *path, int max_batch, dp_error *err);
/* The configuration of a model file or Hugging Face folder (the one dp_model_load would build, d_ff
 * resolved), without loading its parameters. */
int dp_model_file_config(const char *path, dp_model_config *cfg, dp_error *err);
/* The same from the contents of a file already in memory; `name` stands for the file in messages. */
dp_model *dp_model_load_buffer(const char *name, const void *data, size_t len, int max_batch, dp_error *err);

/* Model FLOPs of one forward+backward over a full batch of B·T positions (2·m·n·k for every matrix
 * product, attention included; element-wise work not counted). */
double dp_model_step_flops(const dp_model_config *cfg, int B);

#endif
