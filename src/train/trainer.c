/* The training loop for next-item recommendation: mini-batches of users' training windows (shuffled
 * fixed-size batches without privacy; Poisson-sampled logical batches, per-example clipping, Gaussian
 * noise and accounting with DP-SGD), AdamW/SGD, per-epoch validation with model selection by NDCG@10,
 * JSON-lines metrics, progress on a terminal, and the final model saved with its configuration.
 * Checkpoints (checkpoint.c) are written at step boundaries; a resumed run restores every piece of
 * state the loop carries from one step to the next, so that with seeded randomness it continues
 * bit for bit as the uninterrupted run would have. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>

#include "core/common.h"
#include "dpformer/itemfreq.h"
#include "dpformer/noise.h"
#include "dpformer/reattention.h"
#include "dpformer/train.h"
#include "train/checkpoint_internal.h"
#include "train/noise_plan.h"

dp_privacy_config dp_privacy_config_default(void) {
    dp_privacy_config p;
    memset(&p, 0, sizeof p);
    p.delta = 1e-6;
    p.max_grad_norm = 1.0;
    p.max_physical_batch = 256;
    p.clip_mode = DP_CLIP_AUTO;
    p.accountant = DP_ACCOUNTANT_RDP;
    p.reattention_scale = 1;
    p.item_freq_noise = 10;
    return p;
}

dp_train_config dp_train_config_default(void) {
    dp_train_config c;
    memset(&c, 0, sizeof c);
    c.model = dp_model_config_default(0, 50);
    c.optim = dp_optim_config_default();
    c.epochs = 20;
    c.batch_size = 256;
    c.eval_every = 1;
    c.seed = 1;
    c.progress = 0;
    c.dp = dp_privacy_config_default();
    c.keep_checkpoints = 2;
    return c;
}

/* Epoch e's order is this permutation of the previous epoch's, drawn from a generator seeded with
 * (seed, e): the generator has no state between epochs, so the current order is all a checkpoint
 * needs to keep. */
static void shuffle(int32_t *a, int32_t n, uint64_t seed) {
    uint64_t s = seed;
    for (int32_t i = n - 1; i > 0; i--) {
        s = dp_mix64(s);
        int32_t j = (int32_t)(s % (uint64_t)(i + 1));
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

int dp_train_check(const dp_dataset *ds, const dp_train_config *c, dp_error *err) {
    int32_t n = 0;
    for (int32_t u = 0; u < ds->n_users && n == 0; u++) n += dp_split_history(ds, u, DP_SPLIT_TRAIN) >= 2;
    if (n == 0) return dp_fail(err, "no user has at least 2 training items (nothing to learn from)");
    if (c->epochs < 1) return dp_fail(err, "epochs must be at least 1");
    if (c->batch_size < 1) return dp_fail(err, "batch size must be at least 1");
    if (c->eval_every < 1) return dp_fail(err, "eval-every must be at least 1");
    if (!(c->optim.lr > 0)) return dp_fail(err, "learning rate must be positive");
    if (c->model.n_items != ds->n_items)
        return dp_fail(err, "model has %d items but the dataset has %d", c->model.n_items, ds->n_items);
    if (c->checkpoint_every < 0) return dp_fail(err, "checkpoint-every must be 0 or more steps");
    if (c->checkpoint_dir && c->keep_checkpoints < 1) return dp_fail(err, "keep-checkpoints must be at least 1");
    const dp_privacy_config *p = &c->dp;
    if (p->enabled) {
        if (!(p->max_grad_norm > 0)) return dp_fail(err, "max grad norm must be positive");
        if (!(p->delta > 0 && p->delta < 1)) return dp_fail(err, "delta must be in (0, 1)");
        if (!(p->sample_rate >= 0 && p->sample_rate <= 1)) return dp_fail(err, "sample rate must be in (0, 1]");
        if (p->target_epsilon < 0) return dp_fail(err, "target epsilon must be positive");
        if (!(p->noise_multiplier >= 0))
            return dp_fail(err, "noise multiplier must be non-negative");
        if (p->max_physical_batch < 1) return dp_fail(err, "max physical batch must be at least 1");
        if (p->reattention) {
            if (!(p->reattention_scale >= 0)) return dp_fail(err, "Re-Attention scale must be >= 0");
            if (!p->item_freq_public && !(p->item_freq_noise > 0))
                return dp_fail(err, "privately released item frequencies need a positive noise multiplier");
            if (p->item_freq_cap < 0) return dp_fail(err, "item frequency cap must be >= 0");
        }
    } else if (p->reattention) {
        return dp_fail(err, "Re-Attention corrects the noise of DP-SGD: it needs DP training (--dp)");
    }
    return dp_model_config_validate(&c->model, err);
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
        char *ns = realloc(b->s, cap);
        if (!ns) {
            fprintf(stderr, "dpformer: out of memory keeping the metrics lines\n");
            exit(EXIT_FAILURE);
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

/* State of one training run shared by the step functions. */
typedef struct {
    const dp_dataset *ds;
    const dp_train_config *cfg;
    dp_train_result *res;
    FILE *log;
    dp_model *m;
    dp_optimizer *opt;
    int32_t *users, n_train; /* training users, in the current epoch's order */
    int L, cap;              /* window length; sequences per physical batch */
    int32_t *ids, *tgt;
    dp_real *w;
    double *el, *norms;
    dp_train_progress pg;    /* everything a checkpoint saves besides tensors */
    dp_real *best;           /* parameters of the best validated epoch (valid when has_best) */
    int has_best;
    FILE *metrics;
    text_buf mtext;
    uint64_t data_fp;
    double t_run, elapsed0;  /* clock at the start of this process's part of the run; time before it */
    double t_epoch;          /* clock when this process started (or resumed) the epoch in progress */
    int ckpt_fresh;          /* the newest checkpoint holds exactly the current state */
    int64_t steps_per_epoch;
    /* DP-SGD */
    dp_rng *rng;
    dp_history hist;
    dp_accounting_options acc;
    double expected_batch;
    int64_t *sample;
} run_state;

static void fill_window(run_state *r, int b, int32_t u) {
    dp_make_train_window(r->ids + (size_t)b * r->L, r->tgt + (size_t)b * r->L, r->ds->items + r->ds->offsets[u],
                         dp_split_history(r->ds, u, DP_SPLIT_TRAIN), r->L);
}

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

/* One non-private step on users[s .. s+B): mean loss over the batch. */
static int step_nonprivate(run_state *r, int32_t s, int B, double *loss_sum, dp_error *err) {
    for (int b = 0; b < B; b++) {
        fill_window(r, b, r->users[s + b]);
        r->w[b] = (dp_real)(1.0 / B);
    }
    dp_batch bt = {B, r->L, r->ids, r->tgt, NULL};
    dp_model_zero_grad(r->m);
    dp_model_forward_backward(r->m, &bt, r->w, 1, dp_mix64(r->cfg->seed ^ dp_mix64((uint64_t)r->pg.step)), r->el);
    if (check_finite(r->el, B, loss_sum, r->pg.step, err) || check_grads(r, err)) return -1;
    dp_optimizer_step(r->opt, r->m);
    r->pg.step++;
    return 0;
}

/* One DP-SGD step: a Poisson sample, processed in physical chunks; G = (Σ c_i g_i + σ C z) / (qN). */
static int step_private(run_state *r, int64_t *n_examples, double *loss_sum, dp_error *err) {
    const dp_privacy_config *p = &r->cfg->dp;
    dp_train_progress *g = &r->pg;
    int64_t nb = dp_poisson_sample(r->rng, g->q, r->n_train, r->sample, err);
    if (nb < 0) return -1;
    dp_model_zero_grad(r->m);
    const uint64_t dseed = dp_mix64(r->cfg->seed ^ dp_mix64((uint64_t)g->step));
    double ls = 0;
    int64_t n_clipped = 0;
    for (int64_t s = 0; s < nb; s += r->cap) {
        int B = (int)DP_MIN((int64_t)r->cap, nb - s);
        for (int b = 0; b < B; b++) fill_window(r, b, r->users[r->sample[s + b]]);
        dp_batch bt = {B, r->L, r->ids, r->tgt, NULL};
        if (dp_clipped_grad(r->m, &bt, p->clip_mode, p->max_grad_norm, 1, dseed, (int)s, r->norms, r->el, err))
            return -1;
        double part = 0;
        if (check_finite(r->el, B, &part, g->step, err)) return -1;
        ls += part;
        for (int b = 0; b < B; b++) {
            n_clipped += r->norms[b] > p->max_grad_norm;
            if (!isfinite(r->norms[b]))
                return dp_fail(err, "non-finite gradient norm at step %lld; stopped", (long long)g->step + 1);
        }
    }
    /* noise and scaling where the gradients are (the same noise values on every device) */
    if (g->sigma > 0 && dp_add_grad_noise(r->m, r->rng, g->sigma * p->max_grad_norm, err)) return -1;
    dp_model_scale_grads(r->m, 1.0 / r->expected_batch);
    if (check_grads(r, err)) return -1;
    dp_optimizer_step(r->opt, r->m);
    /* σ = 0 is no mechanism at all: nothing to account (and no guarantee, as the run says) */
    if (g->sigma > 0 && dp_history_add_poisson_gaussian(&r->hist, g->sigma, g->q, 1, err)) return -1;
    g->n_clipped += n_clipped;
    g->n_seen += nb;
    g->dp_steps++;
    g->step++;
    *n_examples = nb;
    *loss_sum = ls;
    return 0;
}

static double current_epsilon(run_state *r, dp_error *err) {
    double eps = 0;
    if (r->pg.sigma <= 0) return INFINITY;
    if (dp_history_total_steps(&r->hist) == 0) return 0;
    if (dp_epsilon(&r->hist, r->cfg->dp.delta, &r->acc, &eps, err)) return NAN;
    return eps;
}

/* σ and the step budget of a resumed run. With the DP settings unchanged they are the saved ones
 * (the run continues exactly); otherwise they are computed anew against the full history, so that a
 * target ε holds for the whole run, all resumes included. */
static int resume_privacy(run_state *r, dp_error *err) {
    const dp_train_config *c = r->cfg;
    const dp_privacy_config *p = &c->dp;
    const dp_train_config *old = dp_ckpt_saved_config(c->resume);
    dp_train_progress *g = &r->pg;
    FILE *log = r->log;
    dp_error e2;
    const int calibrating = p->target_epsilon > 0 && !(p->noise_multiplier > 0);
    const int same = old->dp.noise_multiplier == p->noise_multiplier && old->dp.target_epsilon == p->target_epsilon &&
                     (old->epochs == c->epochs || !calibrating);
    int64_t remaining = 0;
    if (g->epoch <= c->epochs) remaining = (int64_t)(c->epochs - g->epoch + 1) * r->steps_per_epoch - g->epoch_step;
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
        g->max_steps = g->dp_steps + more;
        fprintf(log, "privacy: resumed with noise multiplier %.4f: %lld more steps fit within epsilon %.3f at delta %g "
                     "(the %lld steps already taken included)\n",
                g->sigma, (long long)more, p->target_epsilon, p->delta, (long long)g->dp_steps);
    } else if (p->target_epsilon > 0) {
        if (remaining > 0) {
            double eps;
            if (dp_calibrate_sigma(p->target_epsilon, p->delta, g->q, remaining, &r->hist, &r->acc, &g->sigma, &eps, &e2))
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
        fprintf(log, "privacy: resumed after %lld DP-SGD steps (%zu event%s in the history), epsilon so far %.3f\n",
                (long long)g->dp_steps, r->hist.n, r->hist.n == 1 ? "" : "s", eps);
    return 0;
}

static int item_frequencies(run_state *r, double **out, dp_error *err);
static int attach_reattention(run_state *r, const double *item_p, dp_error *err);

/* Set up DP-SGD: sampling rate, σ (calibrated for the planned steps when a target ε is given), the
 * step budget, the generator; on resume, the saved history and generator instead. */
static int setup_private(run_state *r, dp_error *err) {
    const dp_train_config *c = r->cfg;
    const dp_privacy_config *p = &c->dp;
    dp_train_progress *g = &r->pg;
    FILE *log = r->log;
    g->q = dp_rec_sample_rate(p, c->batch_size, r->n_train); /* as dp_train_plan_check plans it */
    r->expected_batch = g->q * r->n_train;
    dp_history_init(&r->hist);
    dp_accounting_default_options(&r->acc);
    r->acc.accountant = p->accountant;
    r->sample = dp_malloc(sizeof(int64_t) * (size_t)r->n_train);
    r->norms = dp_malloc(sizeof(double) * (size_t)r->cap);
    /* An epoch is int(1/q) steps (as Opacus counts); the plan is exactly what the loop will run. */
    r->steps_per_epoch = DP_MAX((int64_t)1, dp_steps_for_epochs(1, g->q));
    if (c->resume) {
        const dp_history *h = dp_checkpoint_history(c->resume);
        /* the saved events exactly as they are (appending merges only the steps that follow) */
        for (size_t i = 0; i < h->n; i++) {
            if (r->hist.n == r->hist.cap) {
                size_t cap = r->hist.cap ? 2 * r->hist.cap : 8;
                dp_event *e = realloc(r->hist.events, cap * sizeof *e);
                if (!e) return dp_fail(err, "privacy history: out of memory");
                r->hist.events = e;
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
        if (resume_privacy(r, err)) return -1;
        if (!p->reattention) return 0;
        /* the frequencies the run has used from its start: never released again (the history holds
         * the one release), only attached with the σ now in force */
        const double *freq = dp_ckpt_item_freq(c->resume);
        if (!freq)
            return dp_fail(err, "%s: holds no Re-Attention item frequencies (tensor reattention.item_freq)",
                           dp_checkpoint_path(c->resume));
        fprintf(log, "privacy: Re-Attention item frequencies restored from the checkpoint (not released again)\n");
        return attach_reattention(r, freq, err);
    }
    if (p->seeded_noise) {
        r->rng = dp_rng_create_seeded(dp_mix64(c->seed ^ 0xD9E8C7B6A5ull));
        fprintf(log, "privacy: WARNING: noise and sampling are reproducible from --seed; anyone who knows the seed "
                     "can remove the noise, so this run is NOT private (testing only)\n");
    } else {
        r->rng = dp_rng_create_secure(err);
        if (!r->rng) return -1;
    }
    /* Re-Attention's item frequencies: a private release is an event of the run, before any step */
    double *item_p = NULL;
    if (p->reattention && item_frequencies(r, &item_p, err)) return -1;
    const dp_history *prior = r->hist.n ? &r->hist : NULL;
    int64_t planned = (int64_t)c->epochs * r->steps_per_epoch;
    if (dp_noise_plan(p, g->q, planned, 1, prior, &r->acc, "steps", log, &g->sigma, &g->max_steps, err)) {
        free(item_p);
        return -1;
    }
    if (p->reattention) {
        int rc = attach_reattention(r, item_p, err);
        free(item_p);
        if (rc) return -1;
    }
    return 0;
}

/* Re-Attention on the run's model: frequencies p_i, the σ in force, the expected batch, N = the
 * training users. */
static int attach_reattention(run_state *r, const double *item_p, dp_error *err) {
    dp_reattention_config ra = dp_reattention_config_default();
    ra.enabled = 1;
    ra.kappa = r->cfg->dp.reattention_scale;
    ra.sigma = r->pg.sigma;
    ra.batch_size = r->expected_batch;
    ra.item_freq = item_p;
    ra.n_examples = r->n_train;
    if (dp_model_set_reattention(r->m, &ra, err)) return -1;
    fprintf(r->log, "privacy: Re-Attention on (kappa %g, sigma %.4f, expected batch %.1f)\n", ra.kappa, ra.sigma,
            ra.batch_size);
    return 0;
}

/* p_i for Re-Attention: from the public file, or released from the training windows (the windows the
 * run trains on) with the Gaussian mechanism, its event added to the run's history. */
static int item_frequencies(run_state *r, double **out, dp_error *err) {
    const dp_privacy_config *p = &r->cfg->dp;
    const int32_t V = r->cfg->model.n_items;
    double *pr = dp_malloc(sizeof(double) * ((size_t)V + 1));
    *out = NULL;
    if (p->item_freq_public) {
        if (dp_item_freq_load(pr, p->item_freq_public, V, r->n_train, err)) {
            free(pr);
            return -1;
        }
        fprintf(r->log, "privacy: Re-Attention item frequencies from the public file %s (not private data, no "
                        "privacy cost)\n", p->item_freq_public);
    } else {
        const int cap = p->item_freq_cap > 0 ? p->item_freq_cap : r->L;
        double *counts = dp_calloc((size_t)V + 1, sizeof(double));
        for (int32_t s = 0; s < r->n_train; s += r->cap) {
            int B = (int)DP_MIN((int32_t)r->cap, r->n_train - s);
            for (int b = 0; b < B; b++) fill_window(r, b, r->users[s + b]);
            dp_item_presence_counts(counts, r->ids, B, r->L, V, cap);
        }
        int rc = dp_item_freq_release(pr, counts, V, r->n_train, cap, p->item_freq_noise, r->rng, err);
        free(counts);
        if (rc || dp_history_add_gaussian(&r->hist, p->item_freq_noise, 1, err)) {
            free(pr);
            return -1;
        }
        fprintf(r->log, "privacy: Re-Attention item frequencies released with the Gaussian mechanism (noise "
                        "multiplier %g, at most %d distinct items per user, L2 sensitivity %.3f); this release is "
                        "part of the run's epsilon\n", p->item_freq_noise, cap, sqrt((double)cap));
    }
    *out = pr;
    return 0;
}

static int budget_exhausted(const run_state *r) { return r->pg.max_steps >= 0 && r->pg.dp_steps >= r->pg.max_steps; }

static int stop_requested(const run_state *r) { return r->cfg->stop && *r->cfg->stop; }

/* ε as JSON: a number, or null when there is no guarantee (σ = 0: ε is infinite). */
static const char *json_eps(double eps, char *buf) {
    if (!isfinite(eps)) return "null";
    snprintf(buf, 32, "%.6f", eps);
    return buf;
}

static char *run_meta(const dp_train_config *cfg, const dp_train_result *res) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "data", cfg->data_desc ? cfg->data_desc : "");
    cJSON_AddNumberToObject(o, "epochs", res->epochs_run);
    cJSON_AddNumberToObject(o, "best_epoch", res->best_epoch);
    cJSON_AddNumberToObject(o, "seed", (double)cfg->seed);
    cJSON_AddNumberToObject(o, "valid_ndcg10", res->valid.ndcg10);
    cJSON_AddNumberToObject(o, "test_ndcg10", res->test.ndcg10);
    cJSON_AddBoolToObject(o, "private", cfg->dp.enabled);
    if (cfg->dp.enabled) {
        cJSON_AddStringToObject(o, "privacy_unit", "user (one training sequence)");
        if (isfinite(res->epsilon)) cJSON_AddNumberToObject(o, "epsilon", res->epsilon);
        else cJSON_AddNullToObject(o, "epsilon");
        cJSON_AddNumberToObject(o, "delta", res->delta);
        cJSON_AddNumberToObject(o, "noise_multiplier", res->noise_multiplier);
        cJSON_AddNumberToObject(o, "sample_rate", res->sample_rate);
        cJSON_AddNumberToObject(o, "steps", (double)res->dp_steps);
        cJSON_AddNumberToObject(o, "max_grad_norm", cfg->dp.max_grad_norm);
        cJSON_AddStringToObject(o, "accountant", cfg->dp.accountant == DP_ACCOUNTANT_PLD ? "pld" : "rdp");
        cJSON_AddStringToObject(o, "clip_mode", dp_clip_mode_name(cfg->dp.clip_mode));
        cJSON_AddBoolToObject(o, "seeded_noise", cfg->dp.seeded_noise);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* privacy.json: the events, and how the printed ε was computed (δ, accountant and its settings, the ε
 * itself) and what it is about, so that `dpformer privacy --history privacy.json` recomputes it alone. */
static int save_ledger(run_state *r, const char *path, dp_error *err) {
    const dp_train_config *cfg = r->cfg;
    const dp_privacy_config *p = &cfg->dp;
    dp_privacy_ledger l;
    dp_ledger_init(&l);
    dp_ledger_set_accounting(&l, &r->acc, p->delta, r->res->epsilon);
    snprintf(l.command, sizeof l.command, "train");
    snprintf(l.mechanism, sizeof l.mechanism, "dp-sgd");
    snprintf(l.privacy_unit, sizeof l.privacy_unit, "user (one user's whole sequence)");
    snprintf(l.epsilon_covers, sizeof l.epsilon_covers,
             "the released model parameters, trained on the users' training prefixes%s",
             p->reattention && !p->item_freq_public ? ", and the released item frequencies (Re-Attention)" : "");
    snprintf(l.model_selection, sizeof l.model_selection, "%s",
             cfg->keep_last ? "last epoch (no selection on validation data)"
                            : "best epoch by validation NDCG@10 (looks at each user's held-out validation item)");
    l.selection_covered = cfg->keep_last != 0;
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
    const dp_train_config *c = r->cfg;
    if (!c->checkpoint_dir) return 0;
    const double now = dp_now();
    dp_train_progress pg = r->pg;
    pg.elapsed = r->elapsed0 + now - r->t_run;
    if (pg.epoch_step > 0) pg.epoch_seconds += now - r->t_epoch;
    dp_ckpt_source s = {c,         r->data_fp, r->ds, r->m, r->opt, r->users, r->n_train, r->has_best ? r->best : NULL,
                        &pg,       c->dp.enabled ? r->rng : NULL, c->dp.enabled ? &r->hist : NULL,
                        r->mtext.s ? r->mtext.s : ""};
    char path[4096];
    dp_error e2;
    if (dp_ckpt_write(c->checkpoint_dir, &s, path, sizeof path, &e2)) {
        if (r->res->checkpoint[0])
            return dp_fail(err, "%s; the previous checkpoint %s is intact", e2.msg, r->res->checkpoint);
        return dp_fail(err, "%s", e2.msg);
    }
    snprintf(r->res->checkpoint, sizeof r->res->checkpoint, "%s", path);
    r->ckpt_fresh = 1;
    return 0;
}

static int periodic_checkpoint(run_state *r, dp_error *err) {
    int64_t every = r->cfg->checkpoint_every;
    if (every > 0 && r->pg.step % every == 0) return write_checkpoint(r, err);
    return 0;
}

/* Stopped through cfg->stop at a step boundary: make sure a checkpoint holds this state. */
static int stop_run(run_state *r, dp_error *err) {
    const dp_train_config *c = r->cfg;
    if (c->checkpoint_dir && !r->ckpt_fresh && write_checkpoint(r, err)) return -1;
    r->res->stopped_by = (int)*c->stop;
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
    const dp_train_config *cfg = r->cfg;
    const int priv = cfg->dp.enabled, epoch = r->pg.epoch;
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
    double eps = priv ? current_epsilon(r, err) : 0;
    if (priv && isnan(eps)) return -1;
    int do_eval = epoch % cfg->eval_every == 0 || epoch == cfg->epochs || g->stopped_at_budget;
    dp_rank_metrics vm;
    memset(&vm, 0, sizeof vm);
    if (do_eval) {
        dp_evaluate(r->m, r->ds, DP_SPLIT_VALID, cfg->exclude_seen, cfg->max_eval_users, &vm);
        if (cfg->keep_last || vm.ndcg10 > g->best_ndcg) {
            g->best_ndcg = vm.ndcg10;
            g->best_epoch = epoch;
            dp_model_read_params(r->m, r->best);
            r->has_best = 1;
        }
    }
    if (cfg->progress == 1) fprintf(log, "\r%*s\r", 90, "");
    if (cfg->progress >= 0) {
        fprintf(log, "epoch %d/%d  loss %.4f", epoch, cfg->epochs, train_loss);
        if (do_eval) fprintf(log, "  valid NDCG@10 %.4f HR@10 %.4f", vm.ndcg10, vm.hr10);
        if (priv) fprintf(log, "  eps %.3f", eps);
        fprintf(log, "  %.1fs  %.0f ex/s\n", epoch_time, loss_n / epoch_time);
        fflush(log);
    }
    char line[1024], part[512], ebuf[32];
    int len = snprintf(line, sizeof line, "{\"epoch\":%d,\"step\":%lld,\"train_loss\":%.6f,\"lr\":%.6g", epoch,
                       (long long)g->step, train_loss, dp_optimizer_lr(r->opt));
    if (do_eval) {
        snprintf(part, sizeof part, ",\"valid_ndcg10\":%.6f,\"valid_hr10\":%.6f,\"valid_ndcg20\":%.6f,\"valid_hr20\":%.6f",
                 vm.ndcg10, vm.hr10, vm.ndcg20, vm.hr20);
        len += snprintf(line + len, sizeof line - (size_t)len, "%s", part);
    }
    if (priv) {
        snprintf(part, sizeof part, ",\"epsilon\":%s,\"delta\":%g,\"dp_steps\":%lld,\"examples\":%lld,\"clipped_fraction\":%.4f",
                 json_eps(eps, ebuf), cfg->dp.delta, (long long)g->dp_steps, (long long)loss_n,
                 g->n_seen ? (double)g->n_clipped / g->n_seen : 0.0);
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

/* One epoch's steps, from where the progress says the epoch stands. Returns 0, -1 on error, or
 * DP_TRAIN_STOPPED. A stop is honoured before the epoch starts (before its shuffle) and after each of
 * its steps but the last (after the last one, at the epoch's end): the states a checkpoint can hold. */
static int run_epoch_steps(run_state *r, dp_error *err) {
    const dp_train_config *cfg = r->cfg;
    dp_train_progress *g = &r->pg;
    const int epoch = g->epoch;
    const double t0 = dp_now();
    const int64_t n0 = g->loss_n;
    if (stop_requested(r)) return stop_run(r, err);
    if (!cfg->dp.enabled) {
        const int64_t bs = cfg->batch_size;
        if (g->epoch_step == 0) shuffle(r->users, r->n_train, dp_mix64(cfg->seed * 1000003u + (uint64_t)epoch));
        for (int64_t s = g->epoch_step * bs; s < r->n_train; s += bs) {
            int B = (int)DP_MIN(bs, (int64_t)r->n_train - s);
            double ls = 0;
            if (step_nonprivate(r, (int32_t)s, B, &ls, err)) return -1;
            g->loss_sum += ls;
            g->loss_n += B;
            g->epoch_step++;
            r->ckpt_fresh = 0;
            if (cfg->progress == 1)
                progress_bar(r->log, epoch, cfg->epochs, (double)(s + B) / r->n_train, g->loss_sum / g->loss_n,
                             (g->loss_n - n0) / (dp_now() - t0));
            /* the epoch's last step is followed by the epoch-end checkpoint */
            if (s + B < r->n_train && periodic_checkpoint(r, err)) return -1;
            if (s + B < r->n_train && stop_requested(r)) return stop_run(r, err);
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
        g->loss_sum += ls;
        g->loss_n += nb;
        g->epoch_step++;
        r->ckpt_fresh = 0;
        if (cfg->progress == 1)
            progress_bar(r->log, epoch, cfg->epochs, (double)g->epoch_step / r->steps_per_epoch,
                         g->loss_n ? g->loss_sum / g->loss_n : 0, (g->loss_n - n0) / (dp_now() - t0));
        if (g->epoch_step < r->steps_per_epoch && periodic_checkpoint(r, err)) return -1;
        if (g->epoch_step < r->steps_per_epoch && stop_requested(r)) return stop_run(r, err);
    }
    /* the budget ends the run here: say so now, so that this epoch is validated */
    if (!g->stopped_at_budget && epoch < cfg->epochs && budget_exhausted(r)) g->stopped_at_budget = 1;
    return 0;
}

/* Before anything else: can the run write where it is asked to? Nothing is touched here (an output
 * folder that exists must be a folder; the checkpoint folder must not hold another run's unfinished
 * checkpoints); the outputs of an earlier run go only once the run is known to start (open_metrics). */
static int check_outputs(const dp_train_config *cfg, const dp_checkpoint *ck, dp_error *err) {
    struct stat st;
    if (cfg->out_dir && stat(cfg->out_dir, &st) == 0 && !S_ISDIR(st.st_mode))
        return dp_fail(err, "%s: exists and is not a directory (the output folder)", cfg->out_dir);
    return cfg->checkpoint_dir ? dp_checkpoint_check_dir(cfg->checkpoint_dir, ck, err) : 0;
}

/* The run is known to start (data, configuration, model, privacy set-up and any resume all in
 * order): only now are the files of an earlier run in the same folders replaced, and only those this
 * run replaces. metrics.jsonl is replaced atomically by the lines this run starts from (a resumed run:
 * the checkpoint's, so that no epoch is lost or written twice; a fresh run: none) and kept open for
 * the epochs' lines; the checkpoints of an earlier, finished run in the checkpoint folder are deleted
 * (not before the new metrics file is complete on disk: a failure in between leaves everything as it
 * was). model.safetensors and privacy.json stay until this run writes its own, atomically, at its end. */
static int open_metrics(run_state *r, dp_error *err) {
    const dp_train_config *cfg = r->cfg;
    if (cfg->resume) {
        for (int i = 0; i < dp_ckpt_metrics_count(cfg->resume); i++) {
            text_append(&r->mtext, dp_ckpt_metrics_line(cfg->resume, i));
            text_append(&r->mtext, "\n");
        }
    }
    dp_atomic_file mf;
    char path[4096];
    if (cfg->out_dir) {
        if (dp_mkdir_p(cfg->out_dir, err)) return -1;
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
        if (dp_atomic_open(&mf, path, err)) return -1;
        if (dp_atomic_write(&mf, r->mtext.s ? r->mtext.s : "", r->mtext.len, err)) {
            dp_atomic_abort(&mf);
            return -1;
        }
    }
    if (cfg->checkpoint_dir && dp_checkpoint_prepare_dir(cfg->checkpoint_dir, cfg->resume, r->log, err)) {
        if (cfg->out_dir) dp_atomic_abort(&mf);
        return -1;
    }
    return cfg->out_dir ? dp_atomic_commit(&mf, &r->metrics, err) : 0;
}

/* After a resume from a checkpoint that is not the newest of the checkpoint folder (possible through
 * the library, not through dpformer train), the newer files belong to an abandoned continuation:
 * they are renamed aside so that a later resume cannot pick them up. */
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

int dp_train(const dp_dataset *ds, const dp_train_config *cfg, dp_model **out_model, dp_train_result *res,
             dp_error *err) {
    memset(res, 0, sizeof *res);
    res->resumed_from_step = -1;
    *out_model = NULL;
    if (dp_train_check(ds, cfg, err)) return -1;
    const dp_checkpoint *ck = cfg->resume;
    FILE *log = cfg->log ? cfg->log : stderr;
    if (ck && dp_checkpoint_check_resume(ck, ds, cfg, err)) return -1;
    if (check_outputs(cfg, ck, err)) return -1;
    const int priv = cfg->dp.enabled;
    run_state r;
    memset(&r, 0, sizeof r);
    r.ds = ds;
    r.cfg = cfg;
    r.res = res;
    r.log = log;
    r.L = cfg->model.max_len;
    r.cap = priv ? cfg->dp.max_physical_batch : cfg->batch_size;
    r.users = dp_malloc(sizeof(int32_t) * (size_t)(ds->n_users > 0 ? ds->n_users : 1));
    for (int32_t u = 0; u < ds->n_users; u++)
        if (dp_split_history(ds, u, DP_SPLIT_TRAIN) >= 2) r.users[r.n_train++] = u;
    res->n_train_users = r.n_train;
    r.pg.epoch = 1;
    r.pg.best_ndcg = -1;
    r.pg.max_steps = -1;
    if (ck) {
        r.pg = *dp_ckpt_progress(ck);
        r.pg.resumes++;
        r.pg.complete = 0;
        res->resumed_from_step = r.pg.step;
        snprintf(res->checkpoint, sizeof res->checkpoint, "%s", dp_checkpoint_path(ck));
    }
    int rc = 0;
    if (r.n_train == 0) {
        rc = dp_fail(err, "no user has at least 2 training items (nothing to learn from)");
        goto out;
    }
    if (!(r.m = dp_model_create_on(&cfg->model, r.cap, cfg->seed, cfg->device, err))) {
        rc = -1;
        goto out;
    }
    r.ids = dp_malloc(sizeof(int32_t) * (size_t)r.cap * r.L);
    r.tgt = dp_malloc(sizeof(int32_t) * (size_t)r.cap * r.L);
    r.w = dp_malloc(sizeof(dp_real) * (size_t)r.cap);
    r.el = dp_malloc(sizeof(double) * (size_t)r.cap);
    if (cfg->checkpoint_dir) r.data_fp = dp_dataset_fingerprint(ds);
    r.steps_per_epoch = (r.n_train + cfg->batch_size - 1) / cfg->batch_size;
    if (priv && (rc = setup_private(&r, err))) goto out;
    dp_optim_config oc = cfg->optim;
    if (oc.schedule == DP_SCHED_COSINE && oc.total_steps <= 0) oc.total_steps = r.steps_per_epoch * cfg->epochs;
    r.opt = dp_optimizer_create(&oc, r.m);
    const size_t np = dp_model_num_params(r.m);
    r.best = dp_alloc_aligned(sizeof(dp_real) * np);
    if (ck && (rc = dp_ckpt_restore(ck, r.m, r.opt, r.users, r.n_train, r.best, &r.has_best, err))) goto out;
    /* the run starts: only now may the files of an earlier run go (open_metrics) */
    if ((rc = open_metrics(&r, err))) goto out;
    if (ck) supersede_newer(&r);

    r.t_run = dp_now();
    r.elapsed0 = r.pg.elapsed;
    while (r.pg.epoch <= cfg->epochs && !r.pg.stopped_at_budget) {
        /* a resumed run whose budget was spent at an epoch's end: nothing more to run */
        if (priv && r.pg.epoch_step == 0 && r.pg.epochs_run > 0 && budget_exhausted(&r)) {
            r.pg.stopped_at_budget = 1;
            break;
        }
        r.t_epoch = dp_now();
        if ((rc = run_epoch_steps(&r, err))) goto out;
        if ((rc = end_epoch(&r, err))) goto out;
        const int more = r.pg.epoch <= cfg->epochs && !r.pg.stopped_at_budget;
        /* the end of the run is followed by the final checkpoint; a stop that comes after the last
         * step lets the run finish (the rest is validation and saving) */
        if (more && (rc = write_checkpoint(&r, err))) goto out;
        if (more && stop_requested(&r)) {
            rc = stop_run(&r, err);
            goto out;
        }
    }
    if (!r.has_best) { /* never validated (a resumed run with nothing left to do): keep the last parameters */
        dp_model_read_params(r.m, r.best);
        r.pg.best_epoch = r.pg.epochs_run;
        r.has_best = 1;
    }
    r.pg.complete = 1;
    if ((rc = write_checkpoint(&r, err))) goto out;

    dp_model_write_params(r.m, r.best);
    res->epochs_run = r.pg.epochs_run;
    res->best_epoch = r.pg.best_epoch;
    res->first_train_loss = r.pg.first_train_loss;
    res->final_train_loss = r.pg.final_train_loss;
    res->stopped_at_budget = r.pg.stopped_at_budget;
    res->steps = r.pg.step;
    dp_evaluate(r.m, ds, DP_SPLIT_VALID, cfg->exclude_seen, 0, &res->valid);
    dp_evaluate(r.m, ds, DP_SPLIT_TEST, cfg->exclude_seen, 0, &res->test);
    res->seconds_per_epoch = res->epochs_run ? r.pg.train_time / res->epochs_run : 0;
    res->examples_per_second = r.pg.train_time > 0 ? r.pg.examples / r.pg.train_time : 0;
    char ebuf[32];
    if (priv) {
        res->epsilon = current_epsilon(&r, err);
        res->delta = cfg->dp.delta;
        res->noise_multiplier = r.pg.sigma;
        res->sample_rate = r.pg.q;
        res->expected_batch = r.expected_batch;
        res->dp_steps = r.pg.dp_steps;
    }
    if (r.metrics) {
        fprintf(r.metrics,
                "{\"final\":true,\"best_epoch\":%d,\"valid_ndcg10\":%.6f,\"valid_hr10\":%.6f,\"test_ndcg10\":%.6f,"
                "\"test_hr10\":%.6f,\"test_ndcg20\":%.6f,\"test_hr20\":%.6f,\"seconds_per_epoch\":%.3f",
                res->best_epoch, res->valid.ndcg10, res->valid.hr10, res->test.ndcg10, res->test.hr10, res->test.ndcg20,
                res->test.hr20, res->seconds_per_epoch);
        if (priv)
            fprintf(r.metrics, ",\"epsilon\":%s,\"delta\":%g,\"noise_multiplier\":%.6f,\"sample_rate\":%.6g,\"dp_steps\":%lld",
                    json_eps(res->epsilon, ebuf), res->delta, res->noise_multiplier, res->sample_rate, (long long)res->dp_steps);
        if (r.pg.resumes > 0) fprintf(r.metrics, ",\"resumes\":%d", r.pg.resumes);
        fprintf(r.metrics, "}\n");
    }
    if (cfg->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", cfg->out_dir);
        char *meta = run_meta(cfg, res);
        rc = dp_model_save(r.m, path, meta, err);
        free(meta);
        if (rc == 0 && priv) {
            snprintf(path, sizeof path, "%s/privacy.json", cfg->out_dir);
            rc = save_ledger(&r, path, err);
        }
    }
out:
    if (r.metrics && fclose(r.metrics) != 0 && rc == 0) rc = dp_fail(err, "%s/metrics.jsonl: write failed", cfg->out_dir);
    free(r.users);
    free(r.best);
    free(r.ids);
    free(r.tgt);
    free(r.w);
    free(r.el);
    free(r.norms);
    free(r.sample);
    free(r.mtext.s);
    dp_rng_free(r.rng);
    if (priv) dp_history_free(&r.hist);
    dp_optimizer_free(r.opt);
    if (rc) {
        if (res->stopped_by == 0) res->steps = r.pg.step;
        dp_model_free(r.m);
        return rc;
    }
    *out_model = r.m;
    return 0;
}
