/* Optimisers (AdamW, SGD with momentum) as one flat loop over the contiguous parameter array, and
 * the learning-rate schedules. Per-tensor weight-decay flags come from the model's tensor table. */
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "dpformer/train.h"
#include "model/model_internal.h"

struct dp_optimizer {
    const dp_backend *be; /* the model's: the state lives and the update runs where the parameters are */
    dp_optim_config cfg;
    size_t n;
    real *m1, *m2;        /* Adam moments or SGD momentum buffer (m1) */
    unsigned char *decay; /* [n] 1 where weight decay applies */
    int64_t t;            /* steps taken */
};

dp_optim_config dp_optim_config_default(void) {
    dp_optim_config c = {0};
    c.kind = DP_OPT_ADAMW;
    c.lr = 1e-3;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.weight_decay = 0;
    c.momentum = 0.9;
    c.schedule = DP_SCHED_CONSTANT;
    c.min_lr_ratio = 0;
    return c;
}

int dp_optimizer_kind_parse(const char *s, dp_optimizer_kind *k) {
    if (strcmp(s, "adamw") == 0 || strcmp(s, "adam") == 0) *k = DP_OPT_ADAMW;
    else if (strcmp(s, "sgd") == 0) *k = DP_OPT_SGD;
    else return -1;
    return 0;
}

int dp_schedule_kind_parse(const char *s, dp_schedule_kind *k) {
    if (strcmp(s, "constant") == 0) *k = DP_SCHED_CONSTANT;
    else if (strcmp(s, "warmup") == 0) *k = DP_SCHED_WARMUP;
    else if (strcmp(s, "cosine") == 0) *k = DP_SCHED_COSINE;
    else return -1;
    return 0;
}

dp_optimizer *dp_optimizer_create(const dp_optim_config *cfg, const dp_model *m) {
    dp_optimizer *o = dp_calloc(1, sizeof *o);
    o->cfg = *cfg;
    o->be = m->be;
    o->n = m->n_params;
    unsigned char *decay = dp_calloc(o->n, 1);
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].decay) memset(decay + m->tensors[i].offset, 1, m->tensors[i].size);
    if (model_on_host(m)) {
        o->m1 = dp_alloc_aligned(sizeof(real) * o->n);
        o->m2 = dp_alloc_aligned(sizeof(real) * o->n);
        o->decay = decay;
        return o;
    }
    dp_error err;
    o->m1 = o->be->alloc(sizeof(real) * o->n, &err);
    o->m2 = o->m1 ? o->be->alloc(sizeof(real) * o->n, &err) : NULL;
    o->decay = o->m2 ? o->be->alloc(o->n, &err) : NULL;
    if (!o->decay) {
        /* no error channel in this interface: device memory for the optimiser state is part of what a
         * run needs before it starts, so this happens at start-up, before anything is written */
        fprintf(stderr, "dpformer: optimiser state on %s: %s\n", o->be->name, err.msg);
        exit(1);
    }
    o->be->upload(o->decay, decay, o->n);
    free(decay);
    return o;
}

void dp_optimizer_free(dp_optimizer *o) {
    if (!o) return;
    if (o->be->device == DP_DEVICE_CPU) {
        free(o->m1);
        free(o->m2);
        free(o->decay);
    } else {
        o->be->free(o->m1);
        o->be->free(o->m2);
        o->be->free(o->decay);
    }
    free(o);
}

int64_t dp_optimizer_step_count(const dp_optimizer *o) { return o->t; }

dp_real *dp_optimizer_state(dp_optimizer *o, int which) {
    if (which == 0) return o->m1;
    return which == 1 && o->cfg.kind == DP_OPT_ADAMW ? o->m2 : NULL;
}

void dp_optimizer_set_step_count(dp_optimizer *o, int64_t t) { o->t = t; }

int dp_optimizer_read_state(const dp_optimizer *o, int which, dp_real *dst) {
    const real *s = dp_optimizer_state((dp_optimizer *)o, which);
    if (!s) return -1;
    o->be->download(dst, s, sizeof(real) * o->n);
    return 0;
}

int dp_optimizer_write_state(dp_optimizer *o, int which, const dp_real *src) {
    real *s = dp_optimizer_state(o, which);
    if (!s) return -1;
    o->be->upload(s, src, sizeof(real) * o->n);
    return 0;
}

double dp_optimizer_lr(const dp_optimizer *o) {
    const dp_optim_config *c = &o->cfg;
    double step = (double)o->t + 1; /* the step about to be taken, 1-based */
    if (c->schedule == DP_SCHED_CONSTANT) return c->lr;
    if (c->warmup_steps > 0 && step <= (double)c->warmup_steps) return c->lr * step / (double)c->warmup_steps;
    if (c->schedule == DP_SCHED_WARMUP) return c->lr;
    double span = (double)(c->total_steps - c->warmup_steps);
    double prog = span > 0 ? (step - (double)c->warmup_steps) / span : 1.0;
    if (prog > 1) prog = 1;
    double floor = c->min_lr_ratio * c->lr;
    return floor + (c->lr - floor) * 0.5 * (1 + cos(3.14159265358979323846 * prog));
}

/* The update of the flat range [a, b) of every array. */
static void update_range(dp_optimizer *o, dp_model *m, size_t a, size_t b, double lr) {
    const dp_optim_config *c = &o->cfg;
    if (b <= a) return;
    if (c->kind == DP_OPT_ADAMW) {
        const double b1 = c->beta1, b2 = c->beta2;
        o->be->adamw_update(m->params + a, o->m1 + a, o->m2 + a, m->grads + a, o->decay + a, b - a, lr, b1, b2,
                            1 - pow(b1, (double)o->t), 1 - pow(b2, (double)o->t), c->eps, c->weight_decay);
    } else {
        o->be->sgd_update(m->params + a, o->m1 + a, m->grads + a, o->decay + a, b - a, lr, c->momentum,
                          c->weight_decay);
    }
}

void dp_optimizer_step(dp_optimizer *o, dp_model *m) {
    const double lr = dp_optimizer_lr(o);
    o->t++;
    if (!m->n_frozen) {
        update_range(o, m, 0, o->n, lr);
    } else {
        /* frozen tensors (model_set_frozen): neither their values nor their moments move; the trained
         * tensors are updated in runs of adjacent ones (a tensor's range reaches the next tensor's
         * offset, its alignment padding included) */
        size_t a = 0;
        int open = 0;
        for (int i = 0; i < m->n_tensors; i++) {
            const size_t off = m->tensors[i].offset;
            if (m->frozen[i] && open) update_range(o, m, a, off, lr);
            if (!m->frozen[i] && !open) a = off;
            open = !m->frozen[i];
        }
        if (open) update_range(o, m, a, o->n, lr);
    }
    /* The padding rows never move (their gradients are zero, but weight decay or momentum must not
     * move them either). */
    m->be->zero(m->p.E, sizeof(real) * (size_t)m->cfg.d_model);
    if (m->p.out_w && !m->cfg.tied) m->be->zero(m->p.out_w, sizeof(real) * (size_t)m->cfg.d_model);
}
