/* Internal layout of dp_model: named views into the flat parameter/gradient arrays and the saved
 * activations of the last forward pass. Shared by the model and (later) the privacy engine, which
 * reads the saved layer inputs and output gradients to compute per-example gradient norms. */
#ifndef DP_MODEL_INTERNAL_H
#define DP_MODEL_INTERNAL_H

#include "core/common.h"
#include "dpformer/model.h"

#define DP_MAX_TENSORS 256

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
    real *out_w;        /* [V+1, C]: == E when tied */
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

struct dp_model {
    dp_model_config cfg;
    int max_batch;
    size_t n_params;
    real *params, *grads;
    dp_param_tensor tensors[DP_MAX_TENSORS];
    int n_tensors;
    dp_param_view p, g;
    dp_activations a;
    int last_B;
    int ex0;                 /* dropout masks of this batch are those of sequences ex0.. of a larger batch */
    const dp_grad_sink *sink; /* NULL: parameter gradients are formed during the backward pass */
    /* Per-layer output gradients kept for a sink (allocated on first use): [n_layers][N, 3C|C|F|C]. */
    real **keep_qkv, **keep_proj, **keep_fc1, **keep_fc2;
};

/* The parameter tensors of a configuration (names, shapes, offsets as dp_model_create lays them out)
 * without allocating a model, e.g. to check a file against its configuration before trusting the
 * sizes it asks for. out has room for DP_MAX_TENSORS entries. Returns their number, or -1 with err
 * when dp_model_create would refuse the configuration. */
int dp_model_config_tensors(const dp_model_config *cfg, dp_param_tensor *out, dp_error *err);

/* Pieces of the forward/backward pass shared with the privacy engine (model.c). */
void model_forward_body(dp_model *m, const int32_t *ids, int B, int train, uint64_t seed);
/* Row loss weights w_b / n_b from example weights (NULL = 1). */
void model_set_row_weights(dp_model *m, const dp_batch *bt, const real *example_weight);
void model_collect_losses(const dp_model *m, const dp_batch *bt, double *per_example_loss);
/* Backward from a->dh (the gradient w.r.t. the final LayerNorm output) down to the embeddings. */
void model_backward_body(dp_model *m, const dp_batch *bt, int train, uint64_t seed);
/* Allocate the per-layer kept gradients used when a sink is installed. */
void model_alloc_keep(dp_model *m);

#endif
