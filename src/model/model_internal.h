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
};

#endif
