/* The one training loop of every task (loop.h, docs/training.md): epochs of shuffled batches without
 * privacy, of Poisson-sampled logical batches with DP-SGD (per-example clipping, Gaussian noise once
 * per step, accounting) or DP-FP (M micro-batches whose pooled representations the model clips and
 * noises, M mechanism events per step); physical chunks of each batch as the task arranges them;
 * AdamW/SGD; per-epoch validation with model selection; progress on a terminal or plain epoch lines;
 * JSON-lines metrics; checkpoints at step boundaries from which a resumed run continues bit for bit
 * (with seeded randomness) as the uninterrupted run would have; stop requests; privacy.json and the
 * model file at the end. The task supplies its examples and evaluation through a dp_task. */
#define _POSIX_C_SOURCE 200809L
#include "train/loop.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>

#include "core/common.h"
#include "dpformer/dist.h"
#include "dpformer/noise.h"
#include "privacy/rng_internal.h"
#include "model/model_internal.h"
#include "train/noise_plan.h"
#include "train/trim.h"

const char *dp_loop_mode_name(dp_loop_mode mode) {
    switch (mode) {
    case DP_LOOP_NONPRIVATE: return "non-private";
    case DP_LOOP_DPSGD: return "dp-sgd";
    case DP_LOOP_DPFP: return "dp-fp";
    }
    return "?";
}

const char *dp_loop_json_eps(double eps, char buf[32]) {
    if (!isfinite(eps)) return "null";
    snprintf(buf, 32, "%.6f", eps);
    return buf;
}

/* Epoch e's order is this permutation of the previous epoch's, drawn from a generator seeded with
 * (seed, e): the generator has no state between epochs, so the current order is all a checkpoint
 * needs to keep. */
static void shuffle(int32_t *a, int32_t n, uint64_t seed, int stream) {
    uint64_t s = seed;
    for (int32_t i = n - 1; i > 0; i--) {
        uint64_t v;
        if (stream == DP_SHUFFLE_SPLITMIX64) {
            v = dp_splitmix64(&s);
        } else {
            s = dp_mix64(s);
            v = s;
        }
        int32_t j = (int32_t)(v % (uint64_t)(i + 1));
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void progress_bar(FILE *f, int epoch, int epochs, double frac, double loss, double rate) {
    char bar[31];
    int k = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < k ? '#' : '.';
    bar[30] = 0;
    fprintf(f, "\r  epoch %d/%d [%s] %3.0f%%  loss %.4f  %.0f ex/s ", epoch, epochs, bar, 100 * frac, loss, rate);
    fflush(f);
}

/* The metrics.jsonl epoch lines written so far, which every checkpoint carries. */
typedef struct {
    char *s;
    size_t len, cap;
} text_buf;

static void text_append(text_buf *b, const char *s) {
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        size_t cap = DP_MAX(2 * b->cap, b->len + n + 1 + 1024);
        b->s = dp_realloc(b->s, cap);
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

/* State of one training run shared by the step functions. */
typedef struct {
    const dp_loop_config *cfg;
    const dp_run_settings *s;
    const dp_task *task;
    dp_loop_result *res;
    FILE *log;
    dp_model *m;
    dp_optimizer *opt;
    int32_t *order, n;       /* the training examples' ids, in the current epoch's order */
    int L, cap;              /* full window; examples per physical chunk */
    int classify;            /* the model reads labels (else next-item targets) */
    int32_t *tok, *tgt, *lab;
    dp_real *w;
    dp_real *noise;          /* DP-FP: [noise_cap, d_model] the noise rows of the micro-batch in progress */
    int64_t noise_cap;       /* examples the noise buffer holds (grown to the largest micro-batch) */
    double *el, *norms;
    int64_t *batch;          /* [n] the logical batch in progress (ids) */
    int32_t *slot;           /* [n] the place whose dropout masks batch[k] takes: trimmed windows, its place
                              * in the batch as drawn; the task's chunks on shorter windows, k (its place in
                              * a full window); NULL: the chunk's own masks */
    int64_t *keys;           /* [n] scratch of the length sort */
    dp_trim_plan_state plan; /* trimmed windows: the chunks of the batch in progress */
    int trim;                /* trimmed windows (the task has them and the backend can run them) */
    dp_train_progress pg;    /* everything a checkpoint saves besides tensors */
    dp_real *best;           /* parameters of the best validated epoch (valid when has_best) */
    int has_best;
    FILE *metrics;
    text_buf mtext;
    double t_run, elapsed0;  /* clock at the start of this process's part of the run; time before it */
    double t_epoch;          /* clock when this process started (or resumed) the epoch in progress */
    int ckpt_fresh;          /* the newest checkpoint holds exactly the current state */
    int stop_sig;            /* the signal that stopped the run (any process's, with several) */
    int64_t steps_per_epoch;
    int per_step;            /* mechanism events per private step: M (DP-FP) or 1 */
    /* private modes */
    dp_rng *rng;
    dp_history hist;
    dp_accounting_options acc;
    double expected_batch;
    int64_t *sample;
} run_state;

static int priv(const run_state *r) { return r->s->mode != DP_LOOP_NONPRIVATE; }

/* Steps are numbered from 1 in messages: "step 12" is the twelfth update. */
static int check_finite(const double *el, int B, double *sum, int64_t step, dp_error *err) {
    double s = 0;
    *sum = 0;
    for (int b = 0; b < B; b++) s += el[b];
    if (!isfinite(s))
        return dp_fail(err, "non-finite loss at step %lld (learning rate too high?); stopped", (long long)step + 1);
    *sum = s;
    return 0;
}

/* Before the update: a non-finite gradient would make every parameter it touches non-finite. */
static int check_grads(run_state *r, dp_error *err) {
    if (!dp_model_grads_finite(r->m))
        return dp_fail(err, "non-finite gradient at step %lld (learning rate too high?); stopped",
                       (long long)r->pg.step + 1);
    return 0;
}

/* How the chunks of a logical batch are computed. */
enum { CHUNK_PLAIN = 0, CHUNK_CLIPPED, CHUNK_REP_NOISE };

/* The part r->batch[off .. off+n) of the logical batch in physical chunks, as the task arranges them;
 * gradients accumulate in the model. CHUNK_PLAIN and CHUNK_REP_NOISE: forward and backward with every
 * example's loss weighted by `weight` (CHUNK_REP_NOISE: DP-FP, the example at place k of the arranged
 * batch gets the noise row r->noise[k], drawn for the whole micro-batch by draw_rep_noise).
 * CHUNK_CLIPPED: the privacy engine's clipped per-example gradient sum. Each chunk's examples are at
 * offset `s` of the logical batch for their dropout streams and noise rows. *loss += the examples'
 * losses; *n_clipped += clipped examples (CHUNK_CLIPPED). */
static int run_chunks(run_state *r, int64_t off, int64_t n, int how, dp_real weight, uint64_t dseed, double *loss,
                      int64_t *n_clipped, dp_error *err) {
    const dp_task *t = r->task;
    const dp_privacy_config *p = &r->s->dp;
    for (int64_t s = off; s < off + n;) {
        int T = r->L, B;
        if (r->trim) {
            B = dp_trim_next(&r->plan, r->batch + s, off + n - s, r->cap, t->trim_length, t->state, &T);
            model_set_window_at(r->m, T, r->L - T);
            dp_model_set_mask_slots(r->m, r->slot + s);
        } else {
            B = t->chunk ? t->chunk(t->state, r->batch + s, off + n - s, r->cap, &T)
                         : (int)DP_MIN((int64_t)r->cap, off + n - s);
            model_set_window(r->m, T);
            /* the masks of place s + b in a full window, whatever window this chunk runs on: they do not
             * depend on how the batch is cut into chunks or shared among processes */
            if (r->slot && T < r->L) dp_model_set_mask_slots(r->m, r->slot + s);
        }
        t->fill(t->state, r->batch + s, B, T, r->tok, r->tgt, r->lab);
        dp_batch bt = {B, T, r->tok, r->classify ? NULL : r->tgt, r->classify ? r->lab : NULL};
        int rc = 0;
        if (how == CHUNK_CLIPPED) {
            rc = dp_clipped_grad(r->m, &bt, p->clip_mode, p->max_grad_norm, 1, dseed, (int)s, r->norms, r->el, err);
        } else {
            for (int b = 0; b < B; b++) r->w[b] = weight;
            if (how == CHUNK_REP_NOISE) dp_model_set_rep_noise(r->m, r->noise + (size_t)s * (size_t)r->s->model.d_model);
            r->m->ex0 = (int)s;
            dp_model_forward_backward(r->m, &bt, r->w, 1, dseed, r->el);
            r->m->ex0 = 0;
            dp_model_set_rep_noise(r->m, NULL);
        }
        model_set_window(r->m, 0);
        dp_model_set_mask_slots(r->m, NULL);
        if (rc) return -1;
        double part = 0;
        if (check_finite(r->el, B, &part, r->pg.step, err)) return -1;
        *loss += part;
        if (how == CHUNK_CLIPPED)
            for (int b = 0; b < B; b++) {
                *n_clipped += r->norms[b] > p->max_grad_norm;
                if (!isfinite(r->norms[b]))
                    return dp_fail(err, "non-finite gradient norm at step %lld; stopped", (long long)r->pg.step + 1);
            }
        s += B;
    }
    return 0;
}

static int cmp_key(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The logical batch r->batch[0..n) in the order its chunks take it: sorted by window length (then by
 * place) for trimmed windows, r->slot[k] the place of the k-th in the batch as drawn (which fixes its
 * dropout masks); else as the task arranges it. Which examples form the batch is unchanged (the
 * sampling, and so the privacy analysis, does not see the order). */
static void arrange_batch(run_state *r, int64_t n) {
    const dp_task *t = r->task;
    r->plan.at = NULL; /* a new batch: its chunks are planned anew */
    if (!r->trim) {
        if (t->arrange) t->arrange(t->state, r->batch, n);
        return;
    }
    for (int64_t k = 0; k < n; k++) r->keys[k] = ((int64_t)t->trim_length(t->state, r->batch[k]) << 32) | k;
    qsort(r->keys, (size_t)n, sizeof *r->keys, cmp_key);
    for (int64_t k = 0; k < n; k++) {
        r->slot[k] = (int32_t)(r->keys[k] & 0xffffffff);
        r->keys[k] = r->batch[r->slot[k]];
    }
    memcpy(r->batch, r->keys, sizeof(int64_t) * (size_t)n);
}

/* DP-FP: the representation noise σ·clip·z of a whole micro-batch of nb examples, one row of d_model
 * values per example in the order of the arranged batch, drawn in one call from the run's generator.
 * Every rank draws the same rows (the generator is shared) and uses those of its shard, so each
 * example's noise is the same whatever the number of ranks and however the batch is cut into chunks,
 * and the generator stays in step on every rank. An empty micro-batch draws nothing. */
static int draw_rep_noise(run_state *r, int64_t nb, dp_error *err) {
    const size_t d = (size_t)r->s->model.d_model;
    if (nb > r->noise_cap) {
        if (r->noise) dp_secure_wipe(r->noise, sizeof(dp_real) * (size_t)r->noise_cap * d); /* secret */
        free(r->noise);
        r->noise_cap = DP_MAX(nb, 2 * r->noise_cap);
        r->noise = dp_malloc(sizeof(dp_real) * (size_t)r->noise_cap * d);
    }
    return dp_noise_gaussian_fill(r->rng, r->noise, (size_t)nb * d, r->pg.sigma * r->s->model.rep_clip, err);
}

/* Data parallelism (dpformer/dist.h): after each rank has run its part of a batch, agree on failure
 * (a rank that failed makes every rank fail, instead of leaving the others waiting), then add the
 * gradients, the loss sum and the clipped count of all ranks (in rank order, in double). With one
 * process: nothing but `rc`. */
static int combine(run_state *r, int rc, double *loss, int64_t *n_clipped, dp_error *err) {
    if (dp_dist_size() == 1) return rc;
    double v[3] = {rc ? 1.0 : 0.0, *loss, n_clipped ? (double)*n_clipped : 0};
    dp_error e2;
    if (dp_dist_sum_f64(v, 3, &e2)) return dp_fail(err, "%s", e2.msg);
    if (rc) return -1;
    if (v[0] > 0) return dp_fail(err, "another process of the job failed at step %lld (its message is above)",
                                 (long long)r->pg.step + 1);
    *loss = v[1];
    if (n_clipped) *n_clipped = (int64_t)v[2];
    if (dp_dist_sum_real(dp_model_grads(r->m), dp_model_num_params(r->m), &e2)) return dp_fail(err, "%s", e2.msg);
    return 0;
}

/* One non-private step on order[s .. s+B): mean loss over the batch. */
static int step_nonprivate(run_state *r, int32_t s, int B, double *loss_sum, dp_error *err) {
    for (int b = 0; b < B; b++) r->batch[b] = r->order[s + b];
    dp_model_zero_grad(r->m);
    *loss_sum = 0;
    arrange_batch(r, B);
    int64_t lo, hi;
    dp_dist_shard(B, dp_dist_rank(), dp_dist_size(), &lo, &hi);
    int rc = run_chunks(r, lo, hi - lo, CHUNK_PLAIN, (dp_real)(1.0 / B),
                        dp_mix64(r->s->seed ^ dp_mix64((uint64_t)r->pg.step)), loss_sum, NULL, err);
    if (combine(r, rc, loss_sum, NULL, err) || check_grads(r, err)) return -1;
    dp_optimizer_step(r->opt, r->m);
    r->pg.step++;
    return 0;
}

/* A Poisson sample of the examples into r->batch (ids). */
static int64_t poisson_batch(run_state *r, dp_error *err) {
    int64_t nb = dp_poisson_sample(r->rng, r->pg.q, r->n, r->sample, err);
    for (int64_t k = 0; k < nb; k++) r->batch[k] = r->order[r->sample[k]];
    return nb;
}

/* One DP-SGD step: a Poisson sample, processed in physical chunks; G = (Σ c_i g_i + σ C z) / (qN).
 * One DP-FP step: M Poisson micro-batches (rate q each) whose pooled representations are clipped and
 * noised in the forward pass; G = the average over micro-batches of their loss gradients, each
 * normalised by the expected micro-batch size qN; no gradient clipping, no gradient noise. */
static int step_private(run_state *r, int64_t *n_examples, double *loss_sum, dp_error *err) {
    const dp_privacy_config *p = &r->s->dp;
    dp_train_progress *g = &r->pg;
    double ls = 0;
    int64_t n_clipped = 0, seen = 0;
    dp_model_zero_grad(r->m);
    if (r->s->mode == DP_LOOP_DPSGD) {
        int64_t nb = poisson_batch(r, err);
        if (nb < 0) return -1;
        const uint64_t dseed = dp_mix64(r->s->seed ^ dp_mix64((uint64_t)g->step));
        /* every rank drew the same sample (the generator is shared); each clips its part of it */
        arrange_batch(r, nb);
        int64_t lo, hi;
        dp_dist_shard(nb, dp_dist_rank(), dp_dist_size(), &lo, &hi);
        int rc = run_chunks(r, lo, hi - lo, CHUNK_CLIPPED, 1, dseed, &ls, &n_clipped, err);
        /* the clipped sums of all ranks added in rank order; then every rank adds the same noise draw
         * (the same generator) to the same sum: the noise is drawn once, whatever the number of ranks */
        if (combine(r, rc, &ls, &n_clipped, err)) return -1;
        /* noise and scaling where the gradients are (the same noise values on every device) */
        if (g->sigma > 0 && dp_add_grad_noise(r->m, r->rng, g->sigma * p->max_grad_norm, err)) return -1;
        const double inv = 1.0 / r->expected_batch;
        dp_model_scale_grads(r->m, r->task->scale_rounded ? (double)(dp_real)inv : inv);
        seen = nb;
    } else {
        const int M = r->s->micro_batches;
        const dp_real weight = (dp_real)(1.0 / (M * g->q * (double)r->n));
        const int how = g->sigma > 0 ? CHUNK_REP_NOISE : CHUNK_PLAIN;
        int rc = 0;
        for (int j = 0; j < M && !rc; j++) {
            /* every rank draws the same micro-batch and the same noise rows (the shared generator), then
             * runs its shard of them; a rank that fails stops here and says so in combine() below (the
             * micro-batches make no collective calls, so the others do not wait for it) */
            int64_t nb = poisson_batch(r, err);
            if (nb < 0) return -1;
            const uint64_t dseed = dp_mix64(r->s->seed ^ dp_mix64((uint64_t)g->step * 1024 + (uint64_t)j));
            arrange_batch(r, nb);
            if (how == CHUNK_REP_NOISE && draw_rep_noise(r, nb, err)) return -1;
            int64_t lo, hi;
            dp_dist_shard(nb, dp_dist_rank(), dp_dist_size(), &lo, &hi);
            rc = run_chunks(r, lo, hi - lo, how, weight, dseed, &ls, NULL, err);
            seen += nb;
        }
        /* the M micro-batch gradients (and losses) of all ranks added once, in rank order */
        if (combine(r, rc, &ls, NULL, err)) return -1;
    }
    if (check_grads(r, err)) return -1;
    dp_optimizer_step(r->opt, r->m);
    /* σ = 0 is no mechanism at all: nothing to account (and no guarantee, as the run says) */
    if (g->sigma > 0 && dp_history_add_poisson_gaussian(&r->hist, g->sigma, g->q, r->per_step, err)) return -1;
    g->n_clipped += n_clipped;
    g->n_seen += seen;
    g->dp_steps++;
    g->step++;
    *n_examples = seen;
    *loss_sum = ls;
    return 0;
}

static double current_epsilon(run_state *r, dp_error *err) {
    double eps = 0;
    if (r->pg.sigma <= 0) return INFINITY;
    if (dp_history_total_steps(&r->hist) == 0) return 0;
    if (dp_epsilon(&r->hist, r->s->dp.delta, &r->acc, &eps, err)) return NAN;
    return eps;
}

static const char *step_name(const run_state *r) { return r->s->mode == DP_LOOP_DPFP ? "DP-FP" : "DP-SGD"; }

/* σ and the step budget of a resumed run. With the DP settings unchanged they are the saved ones
 * (the run continues exactly); otherwise they are computed anew against the full history, so that a
 * target ε holds for the whole run, all resumes included. A DP-FP step is M mechanism events. */
static int resume_privacy(run_state *r, dp_error *err) {
    const dp_loop_config *c = r->cfg;
    const dp_privacy_config *p = &r->s->dp;
    const dp_run_settings *old = dp_ckpt_settings(c->resume);
    dp_train_progress *g = &r->pg;
    FILE *log = r->log;
    const int64_t M = r->per_step;
    dp_error e2;
    const int calibrating = p->target_epsilon > 0 && !(p->noise_multiplier > 0);
    const int same = old->dp.noise_multiplier == p->noise_multiplier && old->dp.target_epsilon == p->target_epsilon &&
                     (old->epochs == r->s->epochs || !calibrating);
    int64_t remaining = 0;
    if (g->epoch <= r->s->epochs)
        remaining = (int64_t)(r->s->epochs - g->epoch + 1) * r->steps_per_epoch - g->epoch_step;
    if (remaining < 0) remaining = 0;
    g->stopped_at_budget = 0; /* decided again against the budget in force */
    if (same) {
        /* keep the saved σ and budget */
    } else if (p->target_epsilon > 0 && p->noise_multiplier > 0) {
        int64_t more;
        double eps;
        g->sigma = p->noise_multiplier;
        if (dp_max_steps(p->target_epsilon, p->delta, g->q, g->sigma, &r->hist, &r->acc, &more, &eps, &e2))
            return dp_fail(err, "%s: resuming with noise multiplier %g and target epsilon %g: %s",
                           dp_checkpoint_path(c->resume), g->sigma, p->target_epsilon, e2.msg);
        more /= M;
        g->max_steps = g->dp_steps + more;
        fprintf(log, "privacy: resumed with noise multiplier %.4f: %lld more steps fit within epsilon %.3f at delta %g "
                     "(the %lld steps already taken included)\n",
                g->sigma, (long long)more, p->target_epsilon, p->delta, (long long)g->dp_steps);
    } else if (p->target_epsilon > 0) {
        if (remaining > 0) {
            double eps;
            if (dp_calibrate_sigma(p->target_epsilon, p->delta, g->q, remaining * M, &r->hist, &r->acc, &g->sigma, &eps,
                                   &e2))
                return dp_fail(err, "%s: resuming with target epsilon %g: %s", dp_checkpoint_path(c->resume),
                               p->target_epsilon, e2.msg);
            fprintf(log, "privacy: recalibrated noise multiplier %.4f for epsilon %.3f at delta %g over the remaining "
                         "%lld steps (after the %lld steps already taken)\n",
                    g->sigma, eps, p->delta, (long long)remaining, (long long)g->dp_steps);
        }
        g->max_steps = g->dp_steps + remaining;
    } else {
        g->sigma = p->noise_multiplier;
        g->max_steps = -1;
        fprintf(log, "privacy: resumed with noise multiplier %.4f, no target epsilon\n", g->sigma);
    }
    if (g->sigma == 0)
        fprintf(log, "privacy: WARNING: noise multiplier 0 -- clipping only, NO differential privacy guarantee\n");
    double eps = current_epsilon(r, &e2);
    if (isfinite(eps))
        fprintf(log, "privacy: resumed after %lld %s steps (%zu event%s in the history), epsilon so far %.3f\n",
                (long long)g->dp_steps, step_name(r), r->hist.n, r->hist.n == 1 ? "" : "s", eps);
    return 0;
}

/* With several processes, every rank continues with root's generator (key and position): the same
 * Poisson samples and the same noise everywhere, so the replicas stay identical and the noise of a
 * step is one draw (docs/distributed.md). */
static int share_rng(run_state *r, dp_error *err) {
    if (dp_dist_size() == 1) return 0;
    return dp_rng_share(&r->rng, 0, dp_dist_broadcast, err);
}

static dp_loop_hook make_hook(run_state *r) {
    dp_loop_hook h = {r->m, r->rng, &r->hist, r->pg.sigma, r->pg.q, r->expected_batch, r->order, r->cfg->resume, r->log};
    return h;
}

/* Set up a private run: sampling rate, σ (calibrated for the planned mechanism events when a target
 * ε is given), the step budget, the generator; on resume, the saved history and generator instead.
 * The task's own privacy events come before the plan, and its use of σ after it. */
static int setup_private(run_state *r, dp_error *err) {
    const dp_loop_config *c = r->cfg;
    const dp_privacy_config *p = &r->s->dp;
    const dp_task *t = r->task;
    dp_train_progress *g = &r->pg;
    FILE *log = r->log;
    g->q = c->sample_rate;
    r->expected_batch = g->q * r->n;
    r->per_step = r->s->mode == DP_LOOP_DPFP ? r->s->micro_batches : 1;
    dp_history_init(&r->hist);
    dp_accounting_default_options(&r->acc);
    r->acc.accountant = p->accountant;
    r->sample = dp_malloc(sizeof(int64_t) * (size_t)r->n);
    r->norms = dp_malloc(sizeof(double) * (size_t)r->cap);
    r->steps_per_epoch = DP_MAX((int64_t)1, c->steps_per_epoch);
    if (c->resume) {
        const dp_history *h = dp_checkpoint_history(c->resume);
        /* the saved events exactly as they are (appending merges only the steps that follow) */
        for (size_t i = 0; i < h->n; i++) {
            if (r->hist.n == r->hist.cap) {
                size_t cap = r->hist.cap ? 2 * r->hist.cap : 8;
                r->hist.events = dp_realloc(r->hist.events, cap * sizeof *r->hist.events);
                r->hist.cap = cap;
            }
            r->hist.events[r->hist.n++] = h->events[i];
        }
        dp_error e2;
        /* seeded: the exact continuation; secure: a new key from getrandom (no key is ever saved) */
        r->rng = dp_rng_state_restore_hex(dp_ckpt_rng_hex(c->resume), &e2);
        if (!r->rng) return dp_fail(err, "%s: random generator: %s", dp_checkpoint_path(c->resume), e2.msg);
        if (p->seeded_noise)
            fprintf(log, "privacy: WARNING: seeded noise: the generator continues from its saved state; this run is "
                         "NOT private (testing only)\n");
        else
            fprintf(log, "privacy: secure noise: the generator was re-keyed from getrandom on resume (the noise "
                         "after the resume is fresh, as the analysis assumes)\n");
        if (share_rng(r, err) || resume_privacy(r, err)) return -1;
    } else {
        if (p->seeded_noise) {
            r->rng = dp_rng_create_seeded(dp_mix64(r->s->seed ^ t->noise_salt));
            fprintf(log, "privacy: WARNING: noise and sampling are reproducible from --seed; anyone who knows the "
                         "seed can remove the noise, so this run is NOT private (testing only)\n");
        } else {
            r->rng = dp_rng_create_secure(err);
            if (!r->rng) return -1;
        }
        if (share_rng(r, err)) return -1;
        /* the task's own releases (e.g. Re-Attention's item frequencies): events before any step */
        if (t->before_plan) {
            dp_loop_hook h = make_hook(r);
            if (t->before_plan(t->state, &h, err)) return -1;
        }
        const dp_history *prior = r->hist.n ? &r->hist : NULL;
        const int64_t planned = (int64_t)r->s->epochs * r->steps_per_epoch;
        int64_t max_events;
        if (dp_noise_plan(p, g->q, planned * r->per_step, r->per_step, prior, &r->acc,
                          r->per_step > 1 ? "mechanism events" : "steps", log, &g->sigma, &max_events, err))
            return -1;
        g->max_steps = max_events < 0 ? -1 : max_events / r->per_step;
    }
    if (r->s->mode == DP_LOOP_DPFP)
        fprintf(log, "privacy: DP-FP -- epsilon covers %s (docs/dpfp.md)\n", t->covers_dpfp);
    if (t->after_plan) {
        dp_loop_hook h = make_hook(r);
        if (t->after_plan(t->state, &h, err)) return -1;
    }
    return 0;
}

static int budget_exhausted(const run_state *r) { return r->pg.max_steps >= 0 && r->pg.dp_steps >= r->pg.max_steps; }

/* A stop request (a signal) counts when any process of the job received one: every rank asks at the
 * same step boundaries, so the job stops as one. */
static int stop_requested(run_state *r) {
    int64_t sig = r->cfg->stop ? (int64_t)*r->cfg->stop : 0;
    if (dp_dist_size() > 1) {
        int64_t v[2] = {sig, sig > 0};
        dp_error e2;
        if (dp_dist_sum_i64(v, 2, &e2) == 0 && v[1] > 0 && sig == 0) sig = v[0] / v[1];
        if (sig && !r->stop_sig) r->stop_sig = (int)sig;
    } else if (sig) {
        r->stop_sig = (int)sig;
    }
    return sig != 0;
}

static const char *covers(const run_state *r) {
    return r->s->mode == DP_LOOP_DPFP ? r->task->covers_dpfp : r->task->covers;
}

static int selection_covered(const run_state *r) { return r->s->keep_last || !r->task->metric; }

/* How the kept epoch was chosen, in words (privacy.json's model_selection and the final metrics line). */
static void selection_text(const run_state *r, char *buf, size_t cap) {
    const dp_task *t = r->task;
    if (!t->metric) snprintf(buf, cap, "last epoch (%s)", t->no_valid);
    else if (r->s->keep_last) snprintf(buf, cap, "last epoch (no selection on %s)", t->valid_data);
    else snprintf(buf, cap, "best epoch by %s (%s)", t->metric, t->best_note);
}

/* privacy.json: the events, and how the printed ε was computed (δ, accountant and its settings, the ε
 * itself) and what it is about, so that `dpformer privacy --history privacy.json` recomputes it alone. */
static int save_ledger(run_state *r, const char *path, dp_error *err) {
    const dp_privacy_config *p = &r->s->dp;
    const dp_task *t = r->task;
    dp_privacy_ledger l;
    dp_ledger_init(&l);
    dp_ledger_set_accounting(&l, &r->acc, p->delta, r->res->epsilon);
    snprintf(l.command, sizeof l.command, "%s", t->command);
    snprintf(l.mechanism, sizeof l.mechanism, "%s", dp_loop_mode_name(r->s->mode));
    snprintf(l.privacy_unit, sizeof l.privacy_unit, "%s", t->unit);
    snprintf(l.epsilon_covers, sizeof l.epsilon_covers, "%s", covers(r));
    selection_text(r, l.model_selection, sizeof l.model_selection);
    l.selection_covered = selection_covered(r);
    if (r->pg.sigma <= 0)
        snprintf(l.warning, sizeof l.warning, "noise multiplier 0: clipping only, NO differential privacy guarantee");
    else if (p->seeded_noise)
        snprintf(l.warning, sizeof l.warning, "seeded noise: reproducible from the seed, so this run is NOT private");
    int rc = dp_ledger_save(&r->hist, &l, path, err);
    dp_ledger_free(&l);
    return rc;
}

/* Write a checkpoint of the current state (nothing without a checkpoint folder). A failure leaves the
 * previous checkpoint as it was, and the message says so. */
static int write_checkpoint(run_state *r, dp_error *err) {
    const dp_loop_config *c = r->cfg;
    const dp_task *t = r->task;
    if (!c->checkpoint_dir) return 0;
    const double now = dp_now();
    dp_train_progress pg = r->pg;
    pg.elapsed = r->elapsed0 + now - r->t_run;
    if (pg.epoch_step > 0) pg.epoch_seconds += now - r->t_epoch;
    dp_jw w = {NULL};
    cJSON *tc = cJSON_CreateObject(), *ds = cJSON_CreateObject();
    if (t->config_json) t->config_json(t->state, tc, &w);
    if (t->dataset_json) t->dataset_json(t->state, ds);
    dp_ckpt_source s = {t->name, t->command, r->s, tc, ds, c->checkpoint_extra, r->m, r->opt, r->order, r->n,
                        r->has_best ? r->best : NULL, &pg, priv(r) ? r->rng : NULL, priv(r) ? &r->hist : NULL,
                        r->mtext.s ? r->mtext.s : ""};
    char path[4096];
    dp_error e2;
    int rc = w.bad ? dp_fail(&e2, "%s: refusing to write a checkpoint at step %lld: \"%s\" is not finite",
                             c->checkpoint_dir, (long long)pg.step, w.bad)
                   : dp_ckpt_write(c->checkpoint_dir, &s, path, sizeof path, &e2);
    cJSON_Delete(tc);
    cJSON_Delete(ds);
    if (rc) {
        if (r->res->checkpoint[0])
            return dp_fail(err, "%s; the previous checkpoint %s is intact", e2.msg, r->res->checkpoint);
        return dp_fail(err, "%s", e2.msg);
    }
    snprintf(r->res->checkpoint, sizeof r->res->checkpoint, "%s", path);
    r->ckpt_fresh = 1;
    return 0;
}

static int periodic_checkpoint(run_state *r, dp_error *err) {
    int64_t every = r->s->checkpoint_every;
    if (every > 0 && r->pg.step % every == 0) return write_checkpoint(r, err);
    return 0;
}

/* Stopped through cfg->stop at a step boundary: make sure a checkpoint holds this state. */
static int stop_run(run_state *r, dp_error *err) {
    const dp_loop_config *c = r->cfg;
    if (c->checkpoint_dir && !r->ckpt_fresh && write_checkpoint(r, err)) return -1;
    r->res->stopped_by = r->stop_sig;
    r->res->steps = r->pg.step;
    if (c->checkpoint_dir)
        dp_fail(err, "stopped after step %lld (epoch %d, %lld steps into it); checkpoint %s", (long long)r->pg.step,
                r->pg.epoch, (long long)r->pg.epoch_step, r->res->checkpoint);
    else
        dp_fail(err, "stopped after step %lld (epoch %d); no checkpoint folder, so the progress is not saved",
                (long long)r->pg.step, r->pg.epoch);
    return DP_TRAIN_STOPPED;
}

/* The end of an epoch: validation, model selection, the epoch line (log and metrics), counters. */
static int end_epoch(run_state *r, dp_error *err) {
    const dp_run_settings *s = r->s;
    const dp_task *t = r->task;
    const int epoch = r->pg.epoch;
    dp_train_progress *g = &r->pg;
    FILE *log = r->log;
    const double epoch_time = g->epoch_seconds + (dp_now() - r->t_epoch);
    const int64_t loss_n = g->loss_n;
    const double train_loss = loss_n ? g->loss_sum / (double)loss_n : 0;
    g->train_time += epoch_time;
    g->examples += loss_n;
    if (epoch == 1) g->first_train_loss = train_loss;
    g->final_train_loss = train_loss;
    g->epochs_run = epoch;
    double eps = priv(r) ? current_epsilon(r, err) : 0;
    if (priv(r) && isnan(eps)) return -1;
    const int validated = t->metric && (epoch % s->eval_every == 0 || epoch == s->epochs || g->stopped_at_budget);
    dp_loop_eval ve;
    memset(&ve, 0, sizeof ve);
    if (validated) {
        if (t->validate(t->state, r->m, &ve, err)) return -1;
        if (s->keep_last || ve.score > g->best_score) {
            g->best_score = ve.score;
            g->best_epoch = epoch;
            dp_model_read_params(r->m, r->best);
            r->has_best = 1;
        }
    }
    if (r->cfg->progress == 1) fprintf(log, "\r%*s\r", 90, "");
    if (r->cfg->progress >= 0) {
        fprintf(log, "epoch %d/%d  loss %.4f", epoch, s->epochs, train_loss);
        if (validated && ve.text[0]) fprintf(log, "  %s", ve.text);
        if (priv(r)) fprintf(log, "  eps %.3f", eps);
        fprintf(log, "  %.1fs  %.0f ex/s\n", epoch_time, loss_n / epoch_time);
        fflush(log);
    }
    char line[4096], part[512], ebuf[32];
    int len = snprintf(line, sizeof line, "{\"epoch\":%d,\"step\":%lld,\"train_loss\":%.6f,\"lr\":%.6g", epoch,
                       (long long)g->step, train_loss, dp_optimizer_lr(r->opt));
    if (validated) len += snprintf(line + len, sizeof line - (size_t)len, "%s", ve.json);
    if (priv(r)) {
        snprintf(part, sizeof part, ",\"epsilon\":%s,\"delta\":%g,\"dp_steps\":%lld,\"examples\":%lld",
                 dp_loop_json_eps(eps, ebuf), s->dp.delta, (long long)g->dp_steps, (long long)loss_n);
        len += snprintf(line + len, sizeof line - (size_t)len, "%s", part);
        if (s->mode == DP_LOOP_DPSGD)
            snprintf(part, sizeof part, ",\"clipped_fraction\":%.4f", g->n_seen ? (double)g->n_clipped / g->n_seen : 0.0);
        else
            snprintf(part, sizeof part, ",\"mechanism_events\":%lld", (long long)dp_history_total_steps(&r->hist));
        len += snprintf(line + len, sizeof line - (size_t)len, "%s", part);
    }
    snprintf(line + len, sizeof line - (size_t)len,
             ",\"epoch_seconds\":%.3f,\"elapsed_seconds\":%.3f,\"examples_per_second\":%.1f}\n", epoch_time,
             r->elapsed0 + dp_now() - r->t_run, loss_n / epoch_time);
    text_append(&r->mtext, line);
    if (r->metrics) {
        fputs(line, r->metrics);
        fflush(r->metrics);
    }
    g->epoch++;
    g->epoch_step = 0;
    g->loss_sum = 0;
    g->loss_n = g->n_clipped = g->n_seen = 0;
    g->epoch_seconds = 0;
    r->ckpt_fresh = 0;
    return 0;
}

/* After a step: the counters, the progress bar, and (unless it was the epoch's last step, which is
 * followed by the epoch-end checkpoint) a periodic checkpoint and a stop request. Returns 0, -1, or
 * DP_TRAIN_STOPPED. */
static int after_step(run_state *r, double ls, int64_t n, double frac, int last, double t0, int64_t n0, dp_error *err) {
    dp_train_progress *g = &r->pg;
    g->loss_sum += ls;
    g->loss_n += n;
    g->epoch_step++;
    r->ckpt_fresh = 0;
    if (r->cfg->progress == 1)
        progress_bar(r->log, g->epoch, r->s->epochs, frac, g->loss_n ? g->loss_sum / g->loss_n : 0,
                     (g->loss_n - n0) / (dp_now() - t0));
    if (!last && periodic_checkpoint(r, err)) return -1;
    if (!last && stop_requested(r)) return stop_run(r, err);
    return 0;
}

/* One epoch's steps, from where the progress says the epoch stands. Returns 0, -1 on error, or
 * DP_TRAIN_STOPPED. A stop is honoured before the epoch starts (before its shuffle) and after each of
 * its steps but the last (after the last one, at the epoch's end): the states a checkpoint can hold. */
static int run_epoch_steps(run_state *r, dp_error *err) {
    const dp_run_settings *s = r->s;
    dp_train_progress *g = &r->pg;
    const double t0 = dp_now();
    const int64_t n0 = g->loss_n;
    int rc;
    if (stop_requested(r)) return stop_run(r, err);
    if (!priv(r)) {
        const int64_t bs = s->batch_size;
        if (g->epoch_step == 0)
            shuffle(r->order, r->n, dp_mix64(s->seed * 1000003u + (uint64_t)g->epoch), r->task->shuffle);
        for (int64_t k = g->epoch_step * bs; k < r->n; k += bs) {
            int B = (int)DP_MIN(bs, (int64_t)r->n - k);
            double ls = 0;
            if (step_nonprivate(r, (int32_t)k, B, &ls, err)) return -1;
            if ((rc = after_step(r, ls, B, (double)(k + B) / r->n, k + B >= r->n, t0, n0, err))) return rc;
        }
        return 0;
    }
    while (g->epoch_step < r->steps_per_epoch) {
        if (budget_exhausted(r)) {
            g->stopped_at_budget = 1;
            break;
        }
        int64_t nb = 0;
        double ls = 0;
        if (step_private(r, &nb, &ls, err)) return -1;
        const int last = g->epoch_step + 1 >= r->steps_per_epoch;
        if ((rc = after_step(r, ls, nb, (double)(g->epoch_step + 1) / r->steps_per_epoch, last, t0, n0, err)))
            return rc;
    }
    /* the budget ends the run here: say so now, so that this epoch is validated */
    if (!g->stopped_at_budget && g->epoch < s->epochs && budget_exhausted(r)) g->stopped_at_budget = 1;
    return 0;
}

/* Before anything else: can the run write where it is asked to? Nothing is touched here (an output
 * folder that exists must be a folder; the checkpoint folder must not hold another run's unfinished
 * checkpoints); the outputs of an earlier run go only once the run is known to start (open_metrics). */
static int check_outputs(const dp_loop_config *cfg, dp_error *err) {
    struct stat st;
    if (cfg->s.out_dir && stat(cfg->s.out_dir, &st) == 0 && !S_ISDIR(st.st_mode))
        return dp_fail(err, "%s: exists and is not a directory (the output folder)", cfg->s.out_dir);
    return cfg->checkpoint_dir ? dp_checkpoint_check_dir(cfg->checkpoint_dir, cfg->resume, err) : 0;
}

/* The run is known to start (data, configuration, model, privacy set-up and any resume all in
 * order): only now are the files of an earlier run in the same folders replaced, and only those this
 * run replaces. metrics.jsonl is replaced atomically by the lines this run starts from (a resumed run:
 * the checkpoint's, so that no epoch is lost or written twice; a fresh run: none) and kept open for
 * the epochs' lines; the checkpoints of an earlier, finished run in the checkpoint folder are deleted
 * (not before the new metrics file is complete on disk: a failure in between leaves everything as it
 * was). model.safetensors and privacy.json stay until this run writes its own, atomically, at its end. */
static int open_metrics(run_state *r, dp_error *err) {
    const dp_loop_config *cfg = r->cfg;
    const char *out = r->s->out_dir;
    if (cfg->resume) {
        for (int i = 0; i < dp_ckpt_metrics_count(cfg->resume); i++) {
            text_append(&r->mtext, dp_ckpt_metrics_line(cfg->resume, i));
            text_append(&r->mtext, "\n");
        }
    }
    dp_atomic_file mf;
    char path[4096];
    if (out) {
        if (dp_mkdir_p(out, err)) return -1;
        snprintf(path, sizeof path, "%s/metrics.jsonl", out);
        if (dp_atomic_open(&mf, path, err)) return -1;
        if (dp_atomic_write(&mf, r->mtext.s ? r->mtext.s : "", r->mtext.len, err)) {
            dp_atomic_abort(&mf);
            return -1;
        }
    }
    if (cfg->checkpoint_dir && dp_checkpoint_prepare_dir(cfg->checkpoint_dir, cfg->resume, r->log, err)) {
        if (out) dp_atomic_abort(&mf);
        return -1;
    }
    return out ? dp_atomic_commit(&mf, &r->metrics, err) : 0;
}

/* After a resume from a checkpoint that is not the newest of the checkpoint folder (possible through
 * the library, not through the commands), the newer files belong to an abandoned continuation: they
 * are renamed aside so that a later resume cannot pick them up. */
static void supersede_newer(run_state *r) {
    char **paths;
    int n;
    if (!r->cfg->checkpoint_dir || dp_checkpoint_list(r->cfg->checkpoint_dir, &paths, &n, NULL)) return;
    const int64_t from = dp_checkpoint_step(r->cfg->resume);
    for (int i = 0; i < n; i++) {
        const char *b = strrchr(paths[i], '/');
        b = b ? b + 1 : paths[i];
        if (strtoll(b + strlen("ckpt-"), NULL, 10) > from) {
            size_t len = strlen(paths[i]) + 16;
            char *aside = dp_malloc(len);
            snprintf(aside, len, "%s.superseded", paths[i]);
            if (rename(paths[i], aside) == 0)
                fprintf(r->log, "warning: %s is newer than the checkpoint resumed from; moved aside to %s\n", paths[i],
                        aside);
            free(aside);
        }
        free(paths[i]);
    }
    free(paths);
}

static void json_string(FILE *f, const char *s) {
    cJSON *v = cJSON_CreateString(s);
    char *t = cJSON_PrintUnformatted(v);
    fputs(t ? t : "\"\"", f);
    cJSON_free(t);
    cJSON_Delete(v);
}

/* The end of the run: the kept model's final evaluation, the final metrics line, the model file and
 * privacy.json. */
static int finish_run(run_state *r, dp_error *err) {
    const dp_run_settings *s = r->s;
    const dp_task *t = r->task;
    dp_loop_result *res = r->res;
    dp_model_write_params(r->m, r->best);
    res->epochs_run = r->pg.epochs_run;
    res->best_epoch = r->pg.best_epoch;
    res->first_train_loss = r->pg.first_train_loss;
    res->final_train_loss = r->pg.final_train_loss;
    res->stopped_at_budget = r->pg.stopped_at_budget;
    res->steps = r->pg.step;
    res->resumes = r->pg.resumes;
    dp_loop_eval fe;
    memset(&fe, 0, sizeof fe);
    if (t->finish(t->state, r->m, &fe, err)) return -1;
    res->train_seconds = r->pg.train_time;
    res->seconds_per_epoch = res->epochs_run ? r->pg.train_time / res->epochs_run : 0;
    res->examples_per_second = r->pg.train_time > 0 ? r->pg.examples / r->pg.train_time : 0;
    char ebuf[32];
    if (priv(r)) {
        res->epsilon = current_epsilon(r, err);
        res->delta = s->dp.delta;
        res->noise_multiplier = r->pg.sigma;
        res->sample_rate = r->pg.q;
        res->expected_batch = r->expected_batch;
        res->dp_steps = r->pg.dp_steps;
        res->mechanism_events = dp_history_total_steps(&r->hist);
    }
    if (r->metrics) {
        fprintf(r->metrics, "{\"final\":true,\"best_epoch\":%d%s,\"seconds_per_epoch\":%.3f", res->best_epoch, fe.json,
                res->seconds_per_epoch);
        char sel[DP_LEDGER_TEXT];
        selection_text(r, sel, sizeof sel);
        fprintf(r->metrics, ",\"model_selection\":");
        json_string(r->metrics, sel);
        if (priv(r)) {
            fprintf(r->metrics, ",\"epsilon\":%s,\"delta\":%g,\"noise_multiplier\":%.6f,\"sample_rate\":%.6g,\"dp_steps\":%lld",
                    dp_loop_json_eps(res->epsilon, ebuf), res->delta, res->noise_multiplier, res->sample_rate,
                    (long long)res->dp_steps);
            if (s->mode == DP_LOOP_DPFP) fprintf(r->metrics, ",\"mechanism_events\":%lld", (long long)res->mechanism_events);
            fprintf(r->metrics, ",\"epsilon_covers\":");
            json_string(r->metrics, covers(r));
            fprintf(r->metrics, ",\"selection_covered\":%s", selection_covered(r) ? "true" : "false");
        }
        if (r->pg.resumes > 0) fprintf(r->metrics, ",\"resumes\":%d", r->pg.resumes);
        fprintf(r->metrics, "}\n");
    }
    if (s->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", s->out_dir);
        char *meta = t->model_meta ? t->model_meta(t->state, res) : NULL;
        int rc = dp_model_save(r->m, path, meta, err);
        free(meta);
        if (rc) return -1;
        if (priv(r)) {
            snprintf(path, sizeof path, "%s/privacy.json", s->out_dir);
            if (save_ledger(r, path, err)) return -1;
        }
    }
    return 0;
}

int dp_loop_run(const dp_loop_config *cfg, const dp_task *task, dp_model **out_model, dp_loop_result *res,
                dp_error *err) {
    memset(res, 0, sizeof *res);
    res->resumed_from_step = -1;
    *out_model = NULL;
    const dp_checkpoint *ck = cfg->resume;
    /* With several processes (mpirun), rank 0 writes every output and prints; the others compute. */
    dp_loop_config rank_cfg = *cfg;
    FILE *devnull = NULL;
    if (dp_dist_size() > 1) {
        if (cfg->device != DP_DEVICE_CPU)
            return dp_fail(err, "--device %s with more than one process is not supported yet", dp_device_name(cfg->device));
        if (!dp_dist_is_root()) {
            rank_cfg.s.out_dir = NULL;
            rank_cfg.checkpoint_dir = NULL;
            rank_cfg.progress = -1;
            devnull = fopen("/dev/null", "w");
            rank_cfg.log = devnull;
        }
        cfg = &rank_cfg;
    }
    if (check_outputs(cfg, err)) {
        if (devnull) fclose(devnull);
        return -1;
    }
    run_state r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.s = &cfg->s;
    r.task = task;
    r.res = res;
    r.log = cfg->log ? cfg->log : stderr;
    r.L = cfg->s.model.max_len;
    r.classify = cfg->s.model.n_classes > 0;
    r.cap = cfg->s.mode != DP_LOOP_NONPRIVATE ? cfg->s.dp.max_physical_batch : cfg->s.batch_size;
    r.n = task->n;
    r.order = dp_malloc(sizeof(int32_t) * (size_t)(r.n > 0 ? r.n : 1));
    r.batch = dp_malloc(sizeof(int64_t) * (size_t)(r.n > 0 ? r.n : 1));
    if (task->trim_length) {
        r.slot = dp_malloc(sizeof(int32_t) * (size_t)(r.n > 0 ? r.n : 1));
        r.keys = dp_malloc(sizeof(int64_t) * (size_t)(r.n > 0 ? r.n : 1));
    }
    task->init_order(task->state, r.order);
    r.pg.epoch = 1;
    r.pg.best_score = -1;
    r.pg.max_steps = -1;
    if (ck) {
        r.pg = *dp_ckpt_progress(ck);
        r.pg.resumes++;
        r.pg.complete = 0;
        res->resumed_from_step = r.pg.step;
        snprintf(res->checkpoint, sizeof res->checkpoint, "%s", dp_checkpoint_path(ck));
    }
    int rc = 0;
    if (r.n < 1) {
        rc = dp_fail(err, "no training examples (nothing to learn from)");
        goto out;
    }
    if (!(r.m = dp_model_create_on(&cfg->s.model, r.cap, cfg->s.seed, cfg->device, err))) {
        rc = -1;
        goto out;
    }
    /* a backend without the window masks runs training passes with dropout on full windows */
    r.trim = task->trim_length && model_window_ok(r.m, 1);
    /* a task that chunks on shorter windows (right padding): every example keeps the dropout masks of its
     * place in a full window (on a backend without the window masks, those of the chunk's window) */
    if (!r.trim && task->chunk && cfg->s.model.dropout > 0 && model_window_ok(r.m, 1)) {
        free(r.slot);
        r.slot = dp_malloc(sizeof(int32_t) * (size_t)(r.n > 0 ? r.n : 1));
        for (int32_t k = 0; k < r.n; k++) r.slot[k] = k;
    }
    /* the task's starting point (fresh runs: a resumed run restores the checkpoint's parameters below)
     * and its frozen tensors (every run: they are not saved in the checkpoint's tensors) */
    if (!ck && task->init_params && (rc = task->init_params(task->state, r.m, err))) goto out;
    if (task->freeze && (rc = task->freeze(task->state, r.m, err))) goto out;
    r.tok = dp_malloc(sizeof(int32_t) * (size_t)r.cap * r.L);
    r.tgt = dp_malloc(sizeof(int32_t) * (size_t)r.cap * r.L);
    r.lab = dp_malloc(sizeof(int32_t) * (size_t)r.cap);
    r.w = dp_malloc(sizeof(dp_real) * (size_t)r.cap);
    r.el = dp_malloc(sizeof(double) * (size_t)r.cap);
    r.steps_per_epoch = (r.n + cfg->s.batch_size - 1) / cfg->s.batch_size;
    if (priv(&r) && (rc = setup_private(&r, err))) goto out;
    dp_optim_config oc = cfg->s.optim;
    if (oc.schedule == DP_SCHED_COSINE && oc.total_steps <= 0) oc.total_steps = r.steps_per_epoch * cfg->s.epochs;
    r.opt = dp_optimizer_create(&oc, r.m);
    const size_t np = dp_model_num_params(r.m);
    r.best = dp_alloc_aligned(sizeof(dp_real) * np);
    if (ck && (rc = dp_ckpt_restore(ck, r.m, r.opt, r.order, r.n, r.best, &r.has_best, err))) goto out;
    /* the run starts: only now may the files of an earlier run go (open_metrics) */
    if ((rc = open_metrics(&r, err))) goto out;
    if (ck) supersede_newer(&r);

    r.t_run = dp_now();
    r.elapsed0 = r.pg.elapsed;
    while (r.pg.epoch <= cfg->s.epochs && !r.pg.stopped_at_budget) {
        /* a resumed run whose budget was spent at an epoch's end: nothing more to run */
        if (priv(&r) && r.pg.epoch_step == 0 && r.pg.epochs_run > 0 && budget_exhausted(&r)) {
            r.pg.stopped_at_budget = 1;
            break;
        }
        r.t_epoch = dp_now();
        if ((rc = run_epoch_steps(&r, err))) goto out;
        if ((rc = end_epoch(&r, err))) goto out;
        const int more = r.pg.epoch <= cfg->s.epochs && !r.pg.stopped_at_budget;
        /* the end of the run is followed by the final checkpoint; a stop that comes after the last
         * step lets the run finish (the rest is validation and saving) */
        if (more && (rc = write_checkpoint(&r, err))) goto out;
        if (more && stop_requested(&r)) {
            rc = stop_run(&r, err);
            goto out;
        }
    }
    /* never validated (no validation set, or nothing left to do): keep the last parameters; without a
     * validation set always, also when a finished run was resumed with more epochs (the kept
     * parameters its checkpoint holds are those of its own last epoch) */
    if (!r.has_best || !task->metric) {
        dp_model_read_params(r.m, r.best);
        r.pg.best_epoch = r.pg.epochs_run;
        r.has_best = 1;
    }
    r.pg.complete = 1;
    if ((rc = write_checkpoint(&r, err))) goto out;
    rc = finish_run(&r, err);
out:
    if (r.metrics && fclose(r.metrics) != 0 && rc == 0)
        rc = dp_fail(err, "%s/metrics.jsonl: write failed", cfg->s.out_dir);
    free(r.order);
    free(r.batch);
    free(r.slot);
    free(r.keys);
    dp_trim_plan_free(&r.plan);
    free(r.best);
    free(r.tok);
    free(r.tgt);
    free(r.lab);
    free(r.w);
    free(r.el);
    free(r.norms);
    if (r.noise) dp_secure_wipe(r.noise, sizeof(dp_real) * (size_t)r.noise_cap * (size_t)cfg->s.model.d_model);
    free(r.noise);
    free(r.sample);
    free(r.mtext.s);
    dp_rng_free(r.rng);
    if (priv(&r)) dp_history_free(&r.hist);
    dp_optimizer_free(r.opt);
    if (devnull) fclose(devnull);
    if (r.m) dp_model_set_rep_noise(r.m, NULL);
    if (rc) {
        if (res->stopped_by == 0) res->steps = r.pg.step;
        dp_model_free(r.m);
        return rc;
    }
    *out_model = r.m;
    return 0;
}
