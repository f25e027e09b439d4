/* The training loop for next-item recommendation: mini-batches of users' training windows (shuffled
 * fixed-size batches without privacy; Poisson-sampled logical batches, per-example clipping, Gaussian
 * noise and accounting with DP-SGD), AdamW/SGD, per-epoch validation with model selection by NDCG@10,
 * JSON-lines metrics, progress on a terminal, and the final model saved with its configuration. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>

#include "core/common.h"
#include "dpformer/noise.h"
#include "dpformer/train.h"

dp_privacy_config dp_privacy_config_default(void) {
    dp_privacy_config p;
    memset(&p, 0, sizeof p);
    p.delta = 1e-6;
    p.max_grad_norm = 1.0;
    p.max_physical_batch = 256;
    p.clip_mode = DP_CLIP_AUTO;
    p.accountant = DP_ACCOUNTANT_RDP;
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
    return c;
}


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
    const dp_privacy_config *p = &c->dp;
    if (p->enabled) {
        if (!(p->max_grad_norm > 0)) return dp_fail(err, "max grad norm must be positive");
        if (!(p->delta > 0 && p->delta < 1)) return dp_fail(err, "delta must be in (0, 1)");
        if (!(p->sample_rate >= 0 && p->sample_rate <= 1)) return dp_fail(err, "sample rate must be in (0, 1]");
        if (p->target_epsilon < 0) return dp_fail(err, "target epsilon must be positive");
        if (!(p->noise_multiplier >= 0))
            return dp_fail(err, "noise multiplier must be non-negative");
        if (p->max_physical_batch < 1) return dp_fail(err, "max physical batch must be at least 1");
    }
    return dp_model_config_validate(&c->model, err);
}

/* State of one training run shared by the step functions. */
typedef struct {
    const dp_dataset *ds;
    const dp_train_config *cfg;
    dp_model *m;
    dp_optimizer *opt;
    int32_t *users, n_train;
    int L, cap;           /* window length; sequences per physical batch */
    int32_t *ids, *tgt;
    dp_real *w;
    double *el, *norms;
    int64_t step;
    /* DP-SGD */
    dp_rng *rng;
    dp_history hist;
    dp_accounting_options acc;
    double sigma, q, expected_batch;
    int64_t max_steps;    /* -1: no ε budget */
    int64_t *sample;
    int64_t n_clipped, n_seen;
    int64_t dp_steps;     /* DP-SGD steps taken */
} run_state;

static void fill_window(run_state *r, int b, int32_t u) {
    dp_make_train_window(r->ids + (size_t)b * r->L, r->tgt + (size_t)b * r->L, r->ds->items + r->ds->offsets[u],
                         dp_split_history(r->ds, u, DP_SPLIT_TRAIN), r->L);
}

static int check_finite(const double *el, int B, double *sum, int64_t step, dp_error *err) {
    double s = 0;
    *sum = 0;
    for (int b = 0; b < B; b++) s += el[b];
    if (!isfinite(s))
        return dp_fail(err, "non-finite loss at step %lld (learning rate too high?); stopped", (long long)step);
    *sum = s;
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
    dp_model_forward_backward(r->m, &bt, r->w, 1, dp_mix64(r->cfg->seed ^ dp_mix64((uint64_t)r->step)), r->el);
    if (check_finite(r->el, B, loss_sum, r->step, err)) return -1;
    dp_optimizer_step(r->opt, r->m);
    r->step++;
    return 0;
}

/* One DP-SGD step: a Poisson sample, processed in physical chunks; G = (Σ c_i g_i + σ C z) / (qN). */
static int step_private(run_state *r, int64_t *n_examples, double *loss_sum, dp_error *err) {
    const dp_privacy_config *p = &r->cfg->dp;
    int64_t nb = dp_poisson_sample(r->rng, r->q, r->n_train, r->sample, err);
    if (nb < 0) return -1;
    dp_model_zero_grad(r->m);
    const uint64_t dseed = dp_mix64(r->cfg->seed ^ dp_mix64((uint64_t)r->step));
    double ls = 0;
    for (int64_t s = 0; s < nb; s += r->cap) {
        int B = (int)DP_MIN((int64_t)r->cap, nb - s);
        for (int b = 0; b < B; b++) fill_window(r, b, r->users[r->sample[s + b]]);
        dp_batch bt = {B, r->L, r->ids, r->tgt, NULL};
        if (dp_clipped_grad(r->m, &bt, p->clip_mode, p->max_grad_norm, 1, dseed, (int)s, r->norms, r->el, err))
            return -1;
        double part = 0;
        if (check_finite(r->el, B, &part, r->step, err)) return -1;
        ls += part;
        for (int b = 0; b < B; b++) {
            r->n_clipped += r->norms[b] > p->max_grad_norm;
            if (!isfinite(r->norms[b]))
                return dp_fail(err, "non-finite gradient norm at step %lld; stopped", (long long)r->step);
        }
        r->n_seen += B;
    }
    dp_real *g = dp_model_grads(r->m);
    size_t np = dp_model_num_params(r->m);
    if (r->sigma > 0 && dp_noise_gaussian_add(r->rng, g, np, r->sigma * p->max_grad_norm, err)) return -1;
    const dp_real inv = (dp_real)(1.0 / r->expected_batch);
    for (size_t i = 0; i < np; i++) g[i] *= inv;
    dp_optimizer_step(r->opt, r->m);
    /* σ = 0 is no mechanism at all: nothing to account (and no guarantee, as the run says) */
    if (r->sigma > 0 && dp_history_add_poisson_gaussian(&r->hist, r->sigma, r->q, 1, err)) return -1;
    r->dp_steps++;
    r->step++;
    *n_examples = nb;
    *loss_sum = ls;
    return 0;
}

/* Set up DP-SGD: sampling rate, σ (calibrated for the planned steps when a target ε is given), the
 * step budget, the generator. */
static int setup_private(run_state *r, FILE *log, dp_error *err) {
    const dp_train_config *c = r->cfg;
    const dp_privacy_config *p = &c->dp;
    r->q = p->sample_rate > 0 ? p->sample_rate : DP_MIN(1.0, (double)c->batch_size / r->n_train);
    r->expected_batch = r->q * r->n_train;
    dp_history_init(&r->hist);
    dp_accounting_default_options(&r->acc);
    r->acc.accountant = p->accountant;
    /* An epoch is int(1/q) steps (as Opacus counts); the plan is exactly what the loop will run. */
    int64_t planned = (int64_t)c->epochs * DP_MAX((int64_t)1, dp_steps_for_epochs(1, r->q));
    r->max_steps = -1;
    if (p->target_epsilon > 0 && p->noise_multiplier > 0) {
        /* σ given and a budget: run until the next step would exceed the target */
        double eps;
        r->sigma = p->noise_multiplier;
        if (dp_max_steps(p->target_epsilon, p->delta, r->q, r->sigma, NULL, &r->acc, &r->max_steps, &eps, err))
            return -1;
        fprintf(log, "privacy: noise multiplier %.4f allows %lld steps (q %.5g) within epsilon %.3f at delta %g\n",
                r->sigma, (long long)r->max_steps, r->q, p->target_epsilon, p->delta);
    } else if (p->target_epsilon > 0) {
        double eps;
        if (dp_calibrate_sigma(p->target_epsilon, p->delta, r->q, planned, NULL, &r->acc, &r->sigma, &eps, err))
            return -1;
        r->max_steps = planned;
        fprintf(log, "privacy: calibrated noise multiplier %.4f for epsilon %.3f at delta %g over %lld steps (q %.5g)\n",
                r->sigma, eps, p->delta, (long long)planned, r->q);
    } else {
        r->sigma = p->noise_multiplier;
        if (r->sigma == 0)
            fprintf(log, "privacy: WARNING: noise multiplier 0 -- clipping only, NO differential privacy guarantee\n");
    }
    if (p->seeded_noise) {
        r->rng = dp_rng_create_seeded(dp_mix64(c->seed ^ 0xD9E8C7B6A5ull));
        fprintf(log, "privacy: WARNING: noise and sampling are reproducible from --seed; anyone who knows the seed "
                     "can remove the noise, so this run is NOT private (testing only)\n");
    } else {
        r->rng = dp_rng_create_secure(err);
        if (!r->rng) return -1;
    }
    r->sample = dp_malloc(sizeof(int64_t) * (size_t)r->n_train);
    r->norms = dp_malloc(sizeof(double) * (size_t)r->cap);
    return 0;
}

static double current_epsilon(run_state *r, dp_error *err) {
    double eps = 0;
    if (r->sigma <= 0) return INFINITY;
    if (dp_history_total_steps(&r->hist) == 0) return 0;
    if (dp_epsilon(&r->hist, r->cfg->dp.delta, &r->acc, &eps, err)) return NAN;
    return eps;
}

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

int dp_train(const dp_dataset *ds, const dp_train_config *cfg, dp_model **out_model, dp_train_result *res,
             dp_error *err) {
    memset(res, 0, sizeof *res);
    *out_model = NULL;
    if (dp_train_check(ds, cfg, err)) return -1;
    FILE *log = cfg->log ? cfg->log : stderr;
    const int priv = cfg->dp.enabled;
    run_state r;
    memset(&r, 0, sizeof r);
    r.ds = ds;
    r.cfg = cfg;
    r.L = cfg->model.max_len;
    r.cap = priv ? cfg->dp.max_physical_batch : cfg->batch_size;
    r.users = dp_malloc(sizeof(int32_t) * (size_t)(ds->n_users > 0 ? ds->n_users : 1));
    for (int32_t u = 0; u < ds->n_users; u++)
        if (dp_split_history(ds, u, DP_SPLIT_TRAIN) >= 2) r.users[r.n_train++] = u;
    res->n_train_users = r.n_train;
    int rc = 0;
    FILE *metrics = NULL;
    dp_real *best = NULL;
    if (r.n_train == 0) {
        rc = dp_fail(err, "no user has at least 2 training items (nothing to learn from)");
        goto out;
    }
    if (cfg->out_dir) {
        char path[4096];
        if ((rc = dp_mkdir_p(cfg->out_dir, err))) goto out;
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
        if (!(metrics = fopen(path, "w"))) {
            rc = dp_fail(err, "%s: cannot open for writing: %s", path, strerror(errno));
            goto out;
        }
    }
    if (!(r.m = dp_model_create(&cfg->model, r.cap, cfg->seed, err))) {
        rc = -1;
        goto out;
    }
    r.ids = dp_malloc(sizeof(int32_t) * (size_t)r.cap * r.L);
    r.tgt = dp_malloc(sizeof(int32_t) * (size_t)r.cap * r.L);
    r.w = dp_malloc(sizeof(dp_real) * (size_t)r.cap);
    r.el = dp_malloc(sizeof(double) * (size_t)r.cap);
    if (priv && (rc = setup_private(&r, log, err))) goto out;
    const int64_t steps_per_epoch = priv ? DP_MAX((int64_t)1, dp_steps_for_epochs(1, r.q))
                                         : (r.n_train + cfg->batch_size - 1) / cfg->batch_size;
    dp_optim_config oc = cfg->optim;
    if (oc.schedule == DP_SCHED_COSINE && oc.total_steps <= 0) oc.total_steps = steps_per_epoch * cfg->epochs;
    r.opt = dp_optimizer_create(&oc, r.m);

    const size_t np = dp_model_num_params(r.m);
    best = dp_malloc(sizeof(dp_real) * np);
    double best_ndcg = -1, t_start = dp_now(), train_time = 0;
    char ebuf[32];
    int64_t examples = 0;
    for (int epoch = 1; epoch <= cfg->epochs && rc == 0 && !res->stopped_at_budget; epoch++) {
        double t0 = dp_now(), loss_sum = 0;
        int64_t loss_n = 0;
        if (!priv) {
            shuffle(r.users, r.n_train, dp_mix64(cfg->seed * 1000003u + (uint64_t)epoch));
            for (int32_t s = 0; s < r.n_train && rc == 0; s += cfg->batch_size) {
                int B = (int)DP_MIN((int32_t)cfg->batch_size, r.n_train - s);
                double ls = 0;
                if ((rc = step_nonprivate(&r, s, B, &ls, err))) break;
                loss_sum += ls;
                loss_n += B;
                if (cfg->progress == 1)
                    progress_bar(log, epoch, cfg->epochs, (double)(s + B) / r.n_train, loss_sum / loss_n,
                                 loss_n / (dp_now() - t0));
            }
        } else {
            for (int64_t k = 0; k < steps_per_epoch && rc == 0; k++) {
                if (r.max_steps >= 0 && r.dp_steps >= r.max_steps) {
                    res->stopped_at_budget = 1;
                    break;
                }
                int64_t nb = 0;
                double ls = 0;
                if ((rc = step_private(&r, &nb, &ls, err))) break;
                loss_sum += ls;
                loss_n += nb;
                if (cfg->progress == 1)
                    progress_bar(log, epoch, cfg->epochs, (double)(k + 1) / steps_per_epoch,
                                 loss_n ? loss_sum / loss_n : 0, loss_n / (dp_now() - t0));
            }
        }
        if (rc) break;
        double epoch_time = dp_now() - t0;
        train_time += epoch_time;
        examples += loss_n;
        double train_loss = loss_n ? loss_sum / (double)loss_n : 0;
        if (epoch == 1) res->first_train_loss = train_loss;
        res->final_train_loss = train_loss;
        res->epochs_run = epoch;
        double eps = priv ? current_epsilon(&r, err) : 0;
        if (priv && isnan(eps)) {
            rc = -1;
            break;
        }
        int do_eval = epoch % cfg->eval_every == 0 || epoch == cfg->epochs || res->stopped_at_budget;
        dp_rank_metrics vm;
        memset(&vm, 0, sizeof vm);
        if (do_eval) {
            dp_evaluate(r.m, ds, DP_SPLIT_VALID, cfg->exclude_seen, cfg->max_eval_users, &vm);
            if (cfg->keep_last || vm.ndcg10 > best_ndcg) {
                best_ndcg = vm.ndcg10;
                res->best_epoch = epoch;
                memcpy(best, dp_model_params(r.m), sizeof(dp_real) * np);
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
        if (metrics) {
            fprintf(metrics, "{\"epoch\":%d,\"step\":%lld,\"train_loss\":%.6f,\"lr\":%.6g", epoch, (long long)r.step,
                    train_loss, dp_optimizer_lr(r.opt));
            if (do_eval)
                fprintf(metrics, ",\"valid_ndcg10\":%.6f,\"valid_hr10\":%.6f,\"valid_ndcg20\":%.6f,\"valid_hr20\":%.6f",
                        vm.ndcg10, vm.hr10, vm.ndcg20, vm.hr20);
            if (priv)
                fprintf(metrics, ",\"epsilon\":%s,\"delta\":%g,\"dp_steps\":%lld,\"examples\":%lld,\"clipped_fraction\":%.4f",
                        json_eps(eps, ebuf), cfg->dp.delta, (long long)r.dp_steps, (long long)loss_n,
                        r.n_seen ? (double)r.n_clipped / r.n_seen : 0.0);
            fprintf(metrics, ",\"epoch_seconds\":%.3f,\"elapsed_seconds\":%.3f,\"examples_per_second\":%.1f}\n",
                    epoch_time, dp_now() - t_start, loss_n / epoch_time);
            fflush(metrics);
        }
        r.n_clipped = r.n_seen = 0;
    }
    if (rc) goto out;
    memcpy(dp_model_params(r.m), best, sizeof(dp_real) * np);
    dp_evaluate(r.m, ds, DP_SPLIT_VALID, cfg->exclude_seen, 0, &res->valid);
    dp_evaluate(r.m, ds, DP_SPLIT_TEST, cfg->exclude_seen, 0, &res->test);
    res->seconds_per_epoch = train_time / res->epochs_run;
    res->examples_per_second = train_time > 0 ? examples / train_time : 0;
    if (priv) {
        res->epsilon = current_epsilon(&r, err);
        res->delta = cfg->dp.delta;
        res->noise_multiplier = r.sigma;
        res->sample_rate = r.q;
        res->expected_batch = r.expected_batch;
        res->dp_steps = r.dp_steps;
    }
    if (metrics) {
        fprintf(metrics,
                "{\"final\":true,\"best_epoch\":%d,\"valid_ndcg10\":%.6f,\"valid_hr10\":%.6f,\"test_ndcg10\":%.6f,"
                "\"test_hr10\":%.6f,\"test_ndcg20\":%.6f,\"test_hr20\":%.6f,\"seconds_per_epoch\":%.3f",
                res->best_epoch, res->valid.ndcg10, res->valid.hr10, res->test.ndcg10, res->test.hr10, res->test.ndcg20,
                res->test.hr20, res->seconds_per_epoch);
        if (priv)
            fprintf(metrics, ",\"epsilon\":%s,\"delta\":%g,\"noise_multiplier\":%.6f,\"sample_rate\":%.6g,\"dp_steps\":%lld",
                    json_eps(res->epsilon, ebuf), res->delta, res->noise_multiplier, res->sample_rate, (long long)res->dp_steps);
        fprintf(metrics, "}\n");
    }
    if (cfg->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", cfg->out_dir);
        char *meta = run_meta(cfg, res);
        rc = dp_model_save(r.m, path, meta, err);
        free(meta);
        if (rc == 0 && priv) {
            snprintf(path, sizeof path, "%s/privacy.json", cfg->out_dir);
            rc = dp_history_save(&r.hist, path, err);
        }
    }
out:
    if (metrics && fclose(metrics) != 0 && rc == 0) rc = dp_fail(err, "%s/metrics.jsonl: write failed", cfg->out_dir);
    free(r.users);
    free(best);
    free(r.ids);
    free(r.tgt);
    free(r.w);
    free(r.el);
    free(r.norms);
    free(r.sample);
    dp_rng_free(r.rng);
    if (priv) dp_history_free(&r.hist);
    dp_optimizer_free(r.opt);
    if (rc) {
        dp_model_free(r.m);
        return rc;
    }
    *out_model = r.m;
    return 0;
}
