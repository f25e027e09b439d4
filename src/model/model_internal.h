/* Internal layout of dp_model: named views into the flat parameter/gradient arrays and the saved
 * activations of the last forward pass. Shared by the model and (later) the privacy engine, which
 * reads the saved layer inputs and output gradients to compute per-example gradient norms. */
#ifndef DP_MODEL_INTERNAL_H
#define DP_MODEL_INTERNAL_H

#include "backend/backend.h"
#include "core/common.h"
#include "dpformer/model.h"

#define DP_MAX_TENSORS 1024 /* 12 per block + 7: up to 84 blocks (GPT-2 XL has 48) */

/* Pointers to one copy (parameters or gradients) of every tensor. */
typedef struct {
    real *ln1_w, *ln1_b;   /* [C] */
    real *qkv_w, *qkv_b;   /* [3C, C], [3C] */
    real *proj_w, *proj_b; /* [C, C], [C] */
    real *ln2_w, *ln2_b;   /* [C] */
    real *fc1_w, *fc1_b;   /* [F, C], [F] */
    real *fc2_w, *fc2_b;   /* [C, F], [C] */
} dp_layer_view;

typedef struct {
    real *E;            /* [V+1, C] item embedding */
    real *P;            /* [L, C] positions */
    dp_layer_view *layer; /* [n_layers] */
    real *lnf_w, *lnf_b; /* [C] */
    real *out_w;        /* [V+1, C]: == E when tied; NULL for a classification model */
    real *head_w, *head_b; /* classification: [K, C], [K] */
} dp_param_view;

/* Activations of the last forward pass, sized for max_batch sequences of L positions (N = B·L). */
typedef struct {
    real **res;          /* [n_layers+1][N, C]: residual stream entering each layer; res[n_layers] = final */
    real **ln1, **ln1_mean, **ln1_rstd; /* [N, C], [N], [N] */
    real **qkv;          /* [N, 3C] */
    real **att;          /* [B, H, L, L] softmax probabilities before dropout */
    real **atty;         /* [N, C] attention output before the projection */
    real **res_mid;      /* [N, C] residual after the attention branch */
    real **ln2, **ln2_mean, **ln2_rstd;
    real **fc1;          /* [N, F] before GELU */
    real **gelu;         /* [N, F] */
    real *lnf, *lnf_mean, *lnf_rstd; /* [N, C], [N], [N] */
    real *row_loss;      /* [N] cross-entropy per position */
    real *row_weight;    /* [N] loss weight per position */
    real *tmp;           /* [N, C] */
    /* gradient scratch */
    real *dres, *dtmp, *dln, *datty, *dh; /* [N, C] */
    real *dqkv;          /* [N, 3C] */
    real *dbig;          /* [N, F] */
    real *cls_scratch;   /* classifier chunk buffers */
    real *last;          /* [max_batch, C] last-position hidden states for scoring */
    /* classification head: pooled states, representation after the DP-FP clip (+ noise), clip
     * factors, logits and their loss gradient */
    real *pooled, *rep;  /* [max_batch, C] */
    real *rep_scale;     /* [max_batch] */
    real *head_z, *head_dz; /* [max_batch, K] */
} dp_activations;

/* Where the backward pass sends parameter gradients. NULL sink (the default): they are formed at once
 * (non-private training). The privacy engine installs a sink that instead records each layer's input
 * and output gradient, accumulates per-example squared norms, and forms the clipped gradient sum once
 * the clip factors are known (book-keeping: one backward pass, one GEMM per weight). */
typedef struct dp_grad_sink {
    void *ctx;
    /* weight [Cout, Cin] with gradient dW (+ bias db) of out = A·Wᵀ + b; G = ∂ℓ/∂out [N, Cout] may be
     * kept and modified by the sink until the end of the step. */
    void (*linear)(void *ctx, real *dW, real *db, real *G, const real *A, int Cin, int Cout);
    void (*layernorm)(void *ctx, real *dw, real *db, const real *dout, const real *inp, const real *mean,
                      const real *rstd);
    /* G_in = ∂ℓ/∂(E[ids] + P) [N, C] after the embedding dropout; may be modified. */
    void (*embedding)(void *ctx, real *dE, real *dP, real *G_in);
} dp_grad_sink;

/* Re-Attention state (reattention.c). The variance track is computed alongside the forward pass. */
typedef struct {
    int enabled;
    double kappa, sigma, batch_size;
    int64_t n_examples;
    double *freq;       /* [V+1] copy of the configured p_i */
    double *r2_item;    /* [V+1] r_i² = (σ / (B·max(p_i, 1/N)))², 0 at index 0 */
    double r2_dense;    /* (σ/B)² */
    real **kvar, **qsq; /* [n_layers][max_batch·H·T]: key variances and ‖q_t‖² of the last forward pass */
    real *v, *vb, *vc, *xsq; /* [max_batch·T] scratch: residual-stream track, temporaries, row norms */
    real *vvar, *ovar;  /* [max_batch·H·T] scratch: value variances, attention-output variances */
    int frozen;         /* tests: reuse kvar and qsq of the last pass instead of recomputing them, so that
                         * finite differences see the correction as the constant the backward pass uses */
} dp_reatt_state;

struct dp_model {
    const dp_backend *be;    /* where every buffer below lives and every op runs (backend.h) */
    dp_model_config cfg;     /* cfg.max_len is the current window (model_set_window), at most full_len */
    int full_len;            /* the configuration's max_len: positional rows, buffer sizes */
    int max_batch;
    size_t n_params;
    real *params, *grads;
    dp_param_tensor tensors[DP_MAX_TENSORS];
    int n_tensors;
    dp_param_view p, g;
    dp_activations a;
    int last_B;
    int ex0;                 /* dropout masks of this batch are those of sequences ex0.. of a larger batch */
    int win_off;             /* the window holds full-window positions win_off .. win_off+max_len-1 */
    const int32_t *slot;     /* [B] or NULL: the masks of sequence b are those of sequence slot[b] (host) */
    const dp_grad_sink *sink; /* NULL: parameter gradients are formed during the backward pass */
    /* Tensors left out of training (model_set_frozen; partial fine-tuning, docs/lm.md): the optimiser
     * leaves their values and its state untouched, and the privacy engine leaves their per-example
     * gradients out of the clipped norm in every mode (the clip then bounds the trained parameters'
     * gradient only). frozen[i] is tensor i's flag; n_frozen counts the flags set (0: all trained). A
     * tied output layer is the embedding: frozen with it. */
    unsigned char frozen[DP_MAX_TENSORS];
    int n_frozen;
    /* Per-layer output gradients kept for a sink (allocated on first use): [n_layers][N, 3C|C|F|C]. */
    real **keep_qkv, **keep_proj, **keep_fc1, **keep_fc2;
    /* The privacy engine's per-step buffers (allocated with the kept gradients, once: on a GPU an
     * allocation per step would also synchronise the device): first positions and zeros [max_batch],
     * squared norms and clip factors [max_batch] (double), the output layer's row scales [N] and
     * cross-term vectors [N, C], and each layer norm's per-example weight and bias gradients
     * [2·(2·n_layers + 1)][max_batch, C]. */
    struct {
        int *lo, *zeros;
        double *sq, *c;
        real *row_a, *Q;
        real **ln;
        int n_ln;
    } cw;
    size_t cls_scratch_reals; /* size of a.cls_scratch */
    const real *rep_noise;   /* DP-FP noise [max_batch, C] for training passes, or NULL */
    dp_reatt_state ra;
    /* The current batch's integer inputs as the backend sees them (the batch's own arrays on the CPU;
     * uploaded copies [max_batch·L] on a device), set by model_forward_body / model_use_batch. */
    const int32_t *cur_ids, *cur_targets, *cur_labels;
    int32_t *dev_ids, *dev_targets, *dev_labels; /* device copies (NULL on the CPU) */
    /* Host staging for values computed or read on the host ([max_batch·L] reals; on the CPU they are
     * the activation buffers themselves): row weights going in, row losses coming out. */
    real *host_row_weight, *host_row_loss;
    real *dev_example_weight, *dev_rep_noise; /* [max_batch], [max_batch, C] (device only) */
    real *dev_scores;                         /* [max_batch, V+1] item scores (device only, on first use) */
};

/* Freeze (1) or train (0) tensor i. */
static inline void model_set_frozen(dp_model *m, int i, int frozen) {
    m->n_frozen += (frozen != 0) - (m->frozen[i] != 0);
    m->frozen[i] = frozen != 0;
}
/* Whether the tensor whose values (or gradients) start at x in the model's flat parameter (or
 * gradient) array is frozen; base is that array. Tensors are few: a scan suffices. */
static inline int model_frozen_at(const dp_model *m, const real *base, const real *x) {
    if (!m->n_frozen || !x) return 0;
    const size_t off = (size_t)(x - base);
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].offset == off) return m->frozen[i];
    return 0;
}

/* Whether the model's buffers are host memory (the CPU backend). */
static inline int model_on_host(const dp_model *m) { return m->be->device == DP_DEVICE_CPU; }
/* Make a batch's targets / labels (host arrays, either may be NULL) visible to the backend as
 * m->cur_targets / m->cur_labels (model_forward_body does the same for the ids). */
void model_use_targets(dp_model *m, const dp_batch *bt);
/* Backend copy of n host reals into dev (on the CPU: the host array itself; NULL stays NULL). */
const real *model_upload_reals(const dp_model *m, real *dev, const real *host, size_t n);

/* The parameter tensors of a configuration (names, shapes, offsets as dp_model_create lays them out)
 * without allocating a model, e.g. to check a file against its configuration before trusting the
 * sizes it asks for. out has room for DP_MAX_TENSORS entries. Returns their number, or -1 with err
 * when dp_model_create would refuse the configuration. */
int dp_model_config_tensors(const dp_model_config *cfg, dp_param_tensor *out, dp_error *err);

/* dp_model_load with the window limited to max_len positions (0: the file's): the model keeps the
 * first max_len rows of the positional embedding, which is all that sequences of up to max_len
 * tokens use (right-padded, or with positions from the first token), and its activations are sized
 * for that window. Loading for evaluation or generation only: such a model is not the file's model.
 * max_batch 0: a model of parameters only (model_create_params_only), for converting files. */
dp_model *model_load_window(const char *path, int max_batch, int max_len, dp_error *err);
/* The Hugging Face import behind it, for a folder (hf.c), and its reading of config.json. */
dp_model *model_hf_load(const char *dir, int max_batch, int max_len, dp_error *err);
int model_hf_config(const char *dir, dp_model_config *cfg, dp_error *err);
/* A model of parameters only (zero), on the cpu: no gradients, no activations, so it cannot run; its
 * parameters can be read, written and saved (file conversion). */
dp_model *model_create_params_only(const dp_model_config *cfg, dp_error *err);

/* Run the next passes on windows of T positions, 1 <= T <= full_len (the first T positional rows);
 * T <= 0 restores the full window. For right-padded inputs whose tokens all fit in T (bidirectional
 * classification), outputs, per-example losses, gradients and per-example gradient norms equal those
 * at the full window: positions past an example's last token neither influence nor receive anything
 * (padded keys are masked, padded query rows output zero, pooling skips them). Meanwhile the
 * configuration reports T as max_len: restore the full window before saving, evaluating at full
 * length, or handing the model to other code. */
void model_set_window(dp_model *m, int T);

/* A window of T positions that are positions off .. off+T-1 of the full window: for left-padded
 * sequences of at most T items, off = full_len − T (dp_model_set_window_last). Every row keeps its
 * full-window position vector and (through the mask window below) its full-window dropout masks, so
 * outputs, losses, gradients and per-example norms equal those of the full window. Invalid T or off:
 * the full window. */
void model_set_window_at(dp_model *m, int T, int off);
/* The current pass's mask geometry; returns 1 when masks must come from the window ops (a trimmed
 * left window or per-example slots), 0 when the plain ops with index ex0·T·C are exact. */
int model_mask_window(const dp_model *m, dp_mask_window *w);
/* The positional rows the window's row 0 starts at (P of the window rule shifted by win_off). */
const real *model_window_positions(const dp_model *m, const real *P);
/* Whether the backend can run trimmed windows of a pass (train: with the model's dropout). */
int model_window_ok(const dp_model *m, int train);

/* Pieces of the forward/backward pass shared with the privacy engine (model.c). */
/* ids: host array [B, L]; the backend's copy becomes m->cur_ids for this pass and the backward. */
void model_forward_body(dp_model *m, const int32_t *ids, int B, int train, uint64_t seed);
/* Row loss weights w_b / n_b from example weights (NULL = 1). */
void model_set_row_weights(dp_model *m, const dp_batch *bt, const real *example_weight);
void model_collect_losses(const dp_model *m, const dp_batch *bt, double *per_example_loss);
/* Backward from a->dh (the gradient w.r.t. the final LayerNorm output) down to the embeddings. */
void model_backward_body(dp_model *m, const dp_batch *bt, int train, uint64_t seed);
/* Classification head forward: pooled → clip (+ noise when train) → logits; row_loss[b] = the loss of
 * example b; head_dz = ∂(Σ_b w_b ℓ_b)/∂logits (example_weight NULL: 1). */
void model_head_forward(dp_model *m, const dp_batch *bt, int train, const real *example_weight);
/* From head_dz: a->dh (the gradient w.r.t. the final hidden states) through head, clip and pooling. */
void model_head_backward_input(dp_model *m, const dp_batch *bt);
/* The output layer's scratch at the privacy engine's size (grown on first use); NULL with err if the
 * backend's memory cannot hold it. */
real *model_dp_scratch(dp_model *m, dp_error *err);
/* Allocate the per-layer kept gradients used when a sink is installed, and the privacy engine's
 * buffers (m->cw). */
int model_alloc_keep(dp_model *m, dp_error *err);

/* Re-Attention's variance track inside model_forward_body (reattention.c); called only when enabled
 * and not frozen. seed arguments are the dropout seeds of the sites they follow; base is the mask
 * index of the batch's first element. */
struct attention_reatt;
/* After the input embedding and its dropout: the track of the residual stream. */
void reatt_track_input(dp_model *m, const int32_t *ids, int B, float p, uint64_t seed, uint64_t base);
/* After layer l's QKV projection: its key variances and query norms (and, if the track continues past
 * layer l, the value variances). */
void reatt_track_keys(dp_model *m, int l, int B);
/* The correction for layer l's attention (frozen or not); fills *ra. */
void reatt_attention_args(dp_model *m, int l, struct attention_reatt *ra);
/* After layer l's block (attention branch and FFN): the residual stream's track entering layer l+1. */
void reatt_track_block(dp_model *m, int l, int B, float p, uint64_t seed_proj, uint64_t seed_ffn, uint64_t base);
void reatt_free(dp_model *m);

#endif
