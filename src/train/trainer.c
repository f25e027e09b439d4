/* The recommendation task on the training loop (loop.h): its adapter — the privacy unit is a user
 * (the examples are the users with at least two training items, a chunk of them becomes their
 * left-padded training windows), validation NDCG@10 selects the kept epoch, the final evaluation
 * ranks the validation and test targets, checkpoints record the dataset's sizes and fingerprint —
 * and Re-Attention's item frequencies, a release with its own privacy cost before training (or a
 * public file), attached to the model once σ is known. dp_train, the configuration defaults and
 * checks. Batches run on trimmed windows (no compute on the padding; train/trim.h). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>

#include "core/common.h"
#include "dpformer/itemfreq.h"
#include "dpformer/reattention.h"
#include "dpformer/train.h"
#include "train/loop.h"
#include "train/noise_plan.h"
#include "train/task_common.h"

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

dp_run_settings dp_train_settings(const dp_train_config *c) {
    dp_run_settings s;
    memset(&s, 0, sizeof s);
    s.model = c->model;
    s.optim = c->optim;
    s.mode = c->dp.enabled ? DP_LOOP_DPSGD : DP_LOOP_NONPRIVATE;
    s.epochs = c->epochs;
    s.batch_size = c->batch_size;
    s.eval_every = c->eval_every;
    s.keep_last = c->keep_last;
    s.micro_batches = 1;
    s.seed = c->seed;
    s.dp = c->dp;
    s.out_dir = c->out_dir;
    s.checkpoint_every = c->checkpoint_every;
    s.keep_checkpoints = c->keep_checkpoints;
    return s;
}

/* ---- the adapter ---- */

typedef struct {
    const dp_dataset *ds;
    const dp_train_config *cfg;
    dp_train_result *res;
    int32_t *users, n_train; /* the users with a training target, in increasing order */
    int L;
    uint64_t data_fp;
    int have_fp;
    double *item_p;          /* Re-Attention's frequencies obtained before the plan (fresh run) */
} rec_task;

static void rec_init_order(void *st, int32_t *order) {
    rec_task *t = st;
    memcpy(order, t->users, sizeof(int32_t) * (size_t)t->n_train);
}

/* The training window of each user: the most recent L+1 training items, left-padded. */
static void rec_fill(void *st, const int64_t *ids, int B, int T, int32_t *tokens, int32_t *targets, int32_t *labels) {
    rec_task *t = st;
    (void)labels;
    for (int b = 0; b < B; b++) {
        const int32_t u = (int32_t)ids[b];
        dp_make_train_window(tokens + (size_t)b * T, targets + (size_t)b * T, t->ds->items + t->ds->offsets[u],
                             dp_split_history(t->ds, u, DP_SPLIT_TRAIN), T);
    }
}

/* The positions user u's training window uses: its targets (the window is left-padded). */
static int rec_length(void *st, int64_t id) {
    rec_task *t = st;
    const int64_t n = dp_split_history(t->ds, (int32_t)id, DP_SPLIT_TRAIN) - 1;
    return (int)DP_MAX((int64_t)1, DP_MIN(n, (int64_t)t->L));
}

static int rec_validate(void *st, dp_model *m, dp_loop_eval *out, dp_error *err) {
    rec_task *t = st;
    (void)err;
    dp_rank_metrics vm;
    dp_evaluate(m, t->ds, DP_SPLIT_VALID, t->cfg->exclude_seen, t->cfg->max_eval_users, &vm);
    out->score = vm.ndcg10;
    snprintf(out->json, sizeof out->json,
             ",\"valid_ndcg10\":%.6f,\"valid_hr10\":%.6f,\"valid_ndcg20\":%.6f,\"valid_hr20\":%.6f", vm.ndcg10, vm.hr10,
             vm.ndcg20, vm.hr20);
    snprintf(out->text, sizeof out->text, "valid NDCG@10 %.4f HR@10 %.4f", vm.ndcg10, vm.hr10);
    return 0;
}

/* The kept model on every user's validation and test target. */
static int rec_finish(void *st, dp_model *m, dp_loop_eval *out, dp_error *err) {
    rec_task *t = st;
    dp_train_result *res = t->res;
    (void)err;
    dp_evaluate(m, t->ds, DP_SPLIT_VALID, t->cfg->exclude_seen, 0, &res->valid);
    dp_evaluate(m, t->ds, DP_SPLIT_TEST, t->cfg->exclude_seen, 0, &res->test);
    out->score = res->valid.ndcg10;
    snprintf(out->json, sizeof out->json,
             ",\"valid_ndcg10\":%.6f,\"valid_hr10\":%.6f,\"test_ndcg10\":%.6f,\"test_hr10\":%.6f,\"test_ndcg20\":%.6f,"
             "\"test_hr20\":%.6f",
             res->valid.ndcg10, res->valid.hr10, res->test.ndcg10, res->test.hr10, res->test.ndcg20, res->test.hr20);
    return 0;
}

/* The task's own settings, at the top level of the saved configuration (where they always were). */
static void rec_config_json(void *st, cJSON *o, dp_jw *w) {
    rec_task *t = st;
    (void)w;
    dp_jw_bool(o, "exclude_seen", t->cfg->exclude_seen);
    dp_jw_int(o, "max_eval_users", t->cfg->max_eval_users);
    dp_jw_str(o, "data", t->cfg->data_desc);
}

static void rec_dataset_json(void *st, cJSON *o) {
    rec_task *t = st;
    if (!t->have_fp) {
        t->data_fp = dp_dataset_fingerprint(t->ds);
        t->have_fp = 1;
    }
    char fp[17];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)t->data_fp);
    dp_jw_int(o, "users", t->ds->n_users);
    dp_jw_int(o, "items", t->ds->n_items);
    dp_jw_int(o, "interactions", t->ds->n_interactions);
    dp_jw_int(o, "train_users", t->n_train);
    dp_jw_str(o, "fingerprint", fp);
}

static char *rec_model_meta(void *st, const dp_loop_result *lr) {
    rec_task *t = st;
    const dp_train_config *cfg = t->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "data", cfg->data_desc ? cfg->data_desc : "");
    cJSON_AddNumberToObject(o, "epochs", lr->epochs_run);
    cJSON_AddNumberToObject(o, "best_epoch", lr->best_epoch);
    cJSON_AddNumberToObject(o, "seed", (double)cfg->seed);
    cJSON_AddNumberToObject(o, "valid_ndcg10", t->res->valid.ndcg10);
    cJSON_AddNumberToObject(o, "test_ndcg10", t->res->test.ndcg10);
    cJSON_AddBoolToObject(o, "private", cfg->dp.enabled);
    if (cfg->dp.enabled) {
        cJSON_AddStringToObject(o, "privacy_unit", "user (one training sequence)");
        dp_task_meta_privacy(o, lr);
        cJSON_AddNumberToObject(o, "max_grad_norm", cfg->dp.max_grad_norm);
        cJSON_AddStringToObject(o, "accountant", cfg->dp.accountant == DP_ACCOUNTANT_PLD ? "pld" : "rdp");
        cJSON_AddStringToObject(o, "clip_mode", dp_clip_mode_name(cfg->dp.clip_mode));
        cJSON_AddBoolToObject(o, "seeded_noise", cfg->dp.seeded_noise);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* p_i for Re-Attention, before the noise plan of a fresh run: from the public file, or released from
 * the training windows (the windows the run trains on) with the Gaussian mechanism, its event added
 * to the run's history. */
static int rec_before_plan(void *st, dp_loop_hook *h, dp_error *err) {
    rec_task *t = st;
    const dp_privacy_config *p = &t->cfg->dp;
    if (!p->reattention) return 0;
    const int32_t V = t->cfg->model.n_items;
    double *pr = dp_malloc(sizeof(double) * ((size_t)V + 1));
    if (p->item_freq_public) {
        if (dp_item_freq_load(pr, p->item_freq_public, V, t->n_train, err)) {
            free(pr);
            return -1;
        }
        fprintf(h->log, "privacy: Re-Attention item frequencies from the public file %s (not private data, no "
                        "privacy cost)\n", p->item_freq_public);
    } else {
        const int cap = p->item_freq_cap > 0 ? p->item_freq_cap : t->L;
        const int chunk = p->max_physical_batch;
        double *counts = dp_calloc((size_t)V + 1, sizeof(double));
        int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)chunk * t->L);
        int32_t *tgt = dp_malloc(sizeof(int32_t) * (size_t)chunk * t->L);
        int64_t *who = dp_malloc(sizeof(int64_t) * (size_t)chunk);
        for (int32_t s = 0; s < t->n_train; s += chunk) {
            int B = (int)DP_MIN((int32_t)chunk, t->n_train - s);
            for (int b = 0; b < B; b++) who[b] = h->order[s + b];
            rec_fill(t, who, B, t->L, ids, tgt, NULL);
            dp_item_presence_counts(counts, ids, B, t->L, V, cap);
        }
        free(ids);
        free(tgt);
        free(who);
        int rc = dp_item_freq_release(pr, counts, V, t->n_train, cap, p->item_freq_noise, h->rng, err);
        free(counts);
        if (rc || dp_history_add_gaussian(h->hist, p->item_freq_noise, 1, err)) {
            free(pr);
            return -1;
        }
        fprintf(h->log, "privacy: Re-Attention item frequencies released with the Gaussian mechanism (noise "
                        "multiplier %g, at most %d distinct items per user, L2 sensitivity %.3f); this release is "
                        "part of the run's epsilon\n", p->item_freq_noise, cap, sqrt((double)cap));
    }
    t->item_p = pr;
    return 0;
}

/* Re-Attention on the run's model: frequencies p_i, the σ in force, the expected batch, N = the
 * training users. A resumed run takes the frequencies it has used from its start from the
 * checkpoint: never released again (the history holds the one release). */
static int rec_after_plan(void *st, dp_loop_hook *h, dp_error *err) {
    rec_task *t = st;
    const dp_privacy_config *p = &t->cfg->dp;
    if (!p->reattention) return 0;
    const double *freq = t->item_p;
    if (h->resume) {
        if (!(freq = dp_ckpt_item_freq(h->resume)))
            return dp_fail(err, "%s: holds no Re-Attention item frequencies (tensor reattention.item_freq)",
                           dp_checkpoint_path(h->resume));
        fprintf(h->log, "privacy: Re-Attention item frequencies restored from the checkpoint (not released again)\n");
    }
    const dp_reattention_config ra = dp_ckpt_reattention(p->reattention_scale, h->sigma, h->expected_batch, freq,
                                                         t->n_train);
    if (dp_model_set_reattention(h->model, &ra, err)) return -1;
    fprintf(h->log, "privacy: Re-Attention on (kappa %g, sigma %.4f, expected batch %.1f)\n", ra.kappa, ra.sigma,
            ra.batch_size);
    return 0;
}

int dp_train(const dp_dataset *ds, const dp_train_config *cfg, dp_model **out_model, dp_train_result *res,
             dp_error *err) {
    memset(res, 0, sizeof *res);
    res->resumed_from_step = -1;
    *out_model = NULL;
    if (dp_train_check(ds, cfg, err)) return -1;
    if (cfg->resume && dp_checkpoint_check_resume(cfg->resume, ds, cfg, err)) return -1;
    rec_task t;
    memset(&t, 0, sizeof t);
    t.ds = ds;
    t.cfg = cfg;
    t.res = res;
    t.L = cfg->model.max_len;
    t.users = dp_malloc(sizeof(int32_t) * (size_t)(ds->n_users > 0 ? ds->n_users : 1));
    for (int32_t u = 0; u < ds->n_users; u++)
        if (dp_split_history(ds, u, DP_SPLIT_TRAIN) >= 2) t.users[t.n_train++] = u;
    res->n_train_users = t.n_train;

    dp_loop_config lc;
    memset(&lc, 0, sizeof lc);
    lc.s = dp_train_settings(cfg);
    if (cfg->dp.enabled) {
        /* as dp_train_plan_check plans it: an epoch is int(1/q) steps (as Opacus counts) */
        lc.sample_rate = dp_rec_sample_rate(&cfg->dp, cfg->batch_size, t.n_train);
        lc.steps_per_epoch = DP_MAX((int64_t)1, dp_steps_for_epochs(1, lc.sample_rate));
    }
    lc.device = cfg->device;
    lc.log = cfg->log;
    lc.progress = cfg->progress;
    lc.stop = cfg->stop;
    lc.checkpoint_dir = cfg->checkpoint_dir;
    lc.checkpoint_extra = cfg->checkpoint_extra;
    lc.resume = cfg->resume;

    char covers[DP_LEDGER_TEXT];
    snprintf(covers, sizeof covers, "the released model parameters, trained on the users' training prefixes%s",
             cfg->dp.reattention && !cfg->dp.item_freq_public ? ", and the released item frequencies (Re-Attention)"
                                                              : "");
    dp_task task = {
        .name = "recommendation",
        .command = "train",
        .unit = "user (one user's whole sequence)",
        .covers = covers,
        .covers_dpfp = "",
        .metric = "validation NDCG@10",
        .best_note = "looks at each user's held-out validation item",
        .valid_data = "validation data",
        .no_valid = "no validation set",
        .state = &t,
        .n = t.n_train,
        .init_order = rec_init_order,
        .fill = rec_fill,
        .trim_length = cfg->no_trim ? NULL : rec_length,
        .validate = rec_validate,
        .finish = rec_finish,
        .config_json = rec_config_json,
        .dataset_json = rec_dataset_json,
        .model_meta = rec_model_meta,
        .before_plan = rec_before_plan,
        .after_plan = rec_after_plan,
        .shuffle = DP_SHUFFLE_MIX64,
        .noise_salt = 0xD9E8C7B6A5ull,
        .scale_rounded = 0,
    };
    dp_loop_result lr;
    int rc = dp_loop_run(&lc, &task, out_model, &lr, err);
    res->epochs_run = lr.epochs_run;
    res->best_epoch = lr.best_epoch;
    res->first_train_loss = lr.first_train_loss;
    res->final_train_loss = lr.final_train_loss;
    res->seconds_per_epoch = lr.seconds_per_epoch;
    res->examples_per_second = lr.examples_per_second;
    res->epsilon = lr.epsilon;
    res->delta = lr.delta;
    res->noise_multiplier = lr.noise_multiplier;
    res->sample_rate = lr.sample_rate;
    res->expected_batch = lr.expected_batch;
    res->dp_steps = lr.dp_steps;
    res->stopped_at_budget = lr.stopped_at_budget;
    res->stopped_by = lr.stopped_by;
    res->steps = lr.steps;
    res->resumed_from_step = lr.resumed_from_step;
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", lr.checkpoint);
    free(t.users);
    free(t.item_p);
    return rc;
}
