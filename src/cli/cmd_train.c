/* `dpformer train` and `dpformer eval`: train a recommender on a dataset file (with checkpoints,
 * resuming from them, and a graceful stop on SIGINT/SIGTERM), and evaluate a saved model with full
 * ranking next to the popularity baseline (with Re-Attention when the model file stores it). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "cli/train_checks.h"
#include "cli/train_flags.h"
#include "core/common.h"
#include "dpformer/checkpoint.h"
#include "dpformer/reattention.h"
#include "ops/ops.h"
#include "train/noise_plan.h"

static void print_summary(FILE *f, const char *what, const dp_rank_metrics *m) {
    fprintf(f, "  %-22s NDCG@10 %.4f  HR@10 %.4f  NDCG@20 %.4f  HR@20 %.4f  (%lld users)\n", what, m->ndcg10, m->hr10,
            m->ndcg20, m->hr20, (long long)m->n);
}

/* What the guarantee is and what it covers, stated only from what the accountant computed for the
 * steps that ran. */
void print_privacy(FILE *f, const dp_train_config *cfg, const dp_train_result *res) {
    if (!cfg->dp.enabled) {
        fprintf(f, "privacy: none (non-private training)\n");
        return;
    }
    if (res->noise_multiplier <= 0) {
        fprintf(f, "privacy: NONE -- noise multiplier 0 (clipping only); no differential privacy guarantee\n");
        return;
    }
    fprintf(f, "privacy: (epsilon = %.3f, delta = %g)-DP for each user (the privacy unit: one user's whole sequence),\n",
            res->epsilon, res->delta);
    fprintf(f, "  %s accountant, %lld DP-SGD steps with Poisson sampling q = %.5g (expected batch %.1f of %d users),\n",
            cfg->dp.accountant == DP_ACCOUNTANT_PLD ? "PLD" : "RDP", (long long)res->dp_steps, res->sample_rate,
            res->expected_batch, res->n_train_users);
    fprintf(f, "  noise multiplier %.4f, max grad norm %g, clip mode %s%s\n", res->noise_multiplier,
            cfg->dp.max_grad_norm, dp_clip_mode_name(cfg->dp.clip_mode),
            res->stopped_at_budget ? "; stopped early: the next step would exceed the target epsilon" : "");
    if (cfg->keep_last)
        fprintf(f, "  covers the model trained on the training prefixes; the last epoch is kept, so no choice looks at\n"
                   "  validation data (choosing by validation NDCG@10, --select-best, would not be covered)\n");
    else
        fprintf(f, "  covers the model trained on the training prefixes, but NOT the choice of the kept epoch: it was\n"
                   "  chosen by validation NDCG@10, which looks at each user's held-out validation item; this epsilon\n"
                   "  does not cover that (keeping the last epoch would: the default of train --dp)\n");
    if (cfg->dp.reattention) {
        if (cfg->dp.item_freq_public)
            fprintf(f, "  Re-Attention on (kappa %g), item frequencies from the public file %s (no privacy cost)\n",
                    cfg->dp.reattention_scale, cfg->dp.item_freq_public);
        else
            fprintf(f, "  Re-Attention on (kappa %g), item frequencies released with the Gaussian mechanism (noise\n"
                       "  multiplier %g); that release is included in this epsilon\n",
                    cfg->dp.reattention_scale, cfg->dp.item_freq_noise);
    }
    if (cfg->dp.seeded_noise)
        fprintf(f, "  WARNING: --seeded-noise: the noise is reproducible from the seed, so this run is NOT private\n");
}

static int load_data(const char *cmd, const char *path, const char *format, dp_dataset *ds) {
    dp_data_format fmt;
    if (dp_data_format_parse(format, &fmt)) {
        fprintf(stderr, "%s: --format: unknown format '%s' (auto, interactions, sequences, ml-dat, u.data)\n", cmd, format);
        return 2;
    }
    dp_error err;
    if (dp_dataset_load(ds, path, fmt, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        return 2;
    }
    return 0;
}

/* The flags as they were for the saved run, so that a flag not given on resume keeps its value.
 * freq_buf (cap bytes) holds the --item-freq value of a public frequency file. */
static void flags_from_config(train_flags *f, const dp_train_config *c, char *freq_buf, size_t cap) {
    f->max_len = c->model.max_len;
    f->d_model = c->model.d_model;
    f->n_heads = c->model.n_heads;
    f->n_layers = c->model.n_layers;
    f->d_ff = c->model.d_ff;
    f->untied = !c->model.tied;
    f->dropout = c->model.dropout;
    f->optimizer = c->optim.kind == DP_OPT_SGD ? "sgd" : "adamw";
    f->lr = c->optim.lr;
    f->weight_decay = c->optim.weight_decay;
    f->momentum = c->optim.momentum;
    f->schedule = c->optim.schedule == DP_SCHED_WARMUP ? "warmup" : c->optim.schedule == DP_SCHED_COSINE ? "cosine"
                                                                                                        : "constant";
    f->warmup_steps = c->optim.warmup_steps;
    f->min_lr_ratio = c->optim.min_lr_ratio;
    f->epochs = c->epochs;
    f->batch_size = c->batch_size;
    f->eval_every = c->eval_every;
    f->exclude_seen = c->exclude_seen;
    f->max_eval_users = c->max_eval_users;
    f->seed = (int64_t)c->seed;
    /* a DP run keeps the last epoch by default: a saved run that kept the best one had --select-best */
    f->keep_last = c->dp.enabled ? 0 : c->keep_last;
    f->select_best = c->dp.enabled && !c->keep_last;
    f->dp = c->dp.enabled;
    f->noise_multiplier = !c->dp.enabled ? -1 : c->dp.noise_multiplier > 0 ? c->dp.noise_multiplier
                                                : c->dp.target_epsilon > 0 ? -1 : 0;
    f->target_epsilon = c->dp.target_epsilon;
    f->delta = c->dp.delta;
    f->max_grad_norm = c->dp.max_grad_norm;
    f->sample_rate = c->dp.sample_rate;
    f->max_physical_batch = c->dp.max_physical_batch;
    f->clip_mode = dp_clip_mode_name(c->dp.clip_mode);
    f->accountant = c->dp.accountant == DP_ACCOUNTANT_PLD ? "pld" : "rdp";
    f->seeded_noise = c->dp.seeded_noise;
    f->reattention = c->dp.reattention;
    f->reattention_scale = c->dp.reattention_scale;
    f->item_freq_noise = c->dp.item_freq_noise;
    f->item_freq_cap = c->dp.item_freq_cap;
    if (c->dp.item_freq_public) {
        snprintf(freq_buf, cap, "public:%s", c->dp.item_freq_public);
        f->item_freq = freq_buf;
    }
}

/* What the command line adds to a checkpoint: the data format and the thread count. */
static void extra_from_checkpoint(const dp_checkpoint *ck, const char **format, int *threads, char *fmt_buf,
                                  size_t cap) {
    const char *x = dp_checkpoint_extra(ck);
    cJSON *j = x ? cJSON_Parse(x) : NULL;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "threads");
    if (cJSON_IsString(f)) {
        snprintf(fmt_buf, cap, "%s", f->valuestring);
        *format = fmt_buf;
    }
    if (cJSON_IsNumber(t) && t->valuedouble >= 0 && t->valuedouble <= 4096) *threads = (int)t->valuedouble;
    cJSON_Delete(j);
}

/* The files the run writes (OUT/metrics.jsonl, model.safetensors, privacy.json) may not be files it
 * reads (--data, --item-freq public:FILE), however the paths are spelled. */
static int outputs_are_not_inputs(const dp_train_config *c, dp_error *err) {
    const char *inputs[2] = {c->data_desc, c->dp.item_freq_public}, *flag[2] = {"--data", "--item-freq"};
    const char *names[3] = {"metrics.jsonl", "model.safetensors", "privacy.json"};
    char path[4200];
    for (int i = 0; i < 2; i++) {
        if (!inputs[i] || !c->out_dir) continue;
        if (dp_same_file(c->out_dir, inputs[i]))
            return dp_fail(err, "--out %s is the input file %s (%s); choose another output folder", c->out_dir,
                           inputs[i], flag[i]);
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "%s/%s", c->out_dir, names[k]);
            if (dp_same_file(path, inputs[i]))
                return dp_fail(err, "%s: the output would overwrite the input %s %s; choose another --out", path,
                               flag[i], inputs[i]);
        }
    }
    return 0;
}

int cmd_train(int argc, char **argv) {
    const char *cmd = "dpformer train";
    train_flags tf;
    train_flags_defaults(&tf);
    ckpt_flags cf;
    ckpt_flags_defaults(&cf);
    const char *data = NULL, *format = "auto", *out = "runs/train";
    int rc;
    char fmt_buf[64], freq_buf[4200];
    dp_error err;
    dp_checkpoint *ck = NULL;
    if ((rc = ckpt_open_resume(cmd, "recommendation", argc, argv, &cf, &ck))) return rc;
    if (ck) {
        dp_train_config saved = dp_checkpoint_train_config(ck);
        flags_from_config(&tf, &saved, freq_buf, sizeof freq_buf);
        data = saved.data_desc;
        /* the run folder where the checkpoints are now (a copy or a move continues there); NULL when
         * that cannot be told: then --out must say */
        out = saved.out_dir;
        extra_from_checkpoint(ck, &format, &tf.threads, fmt_buf, sizeof fmt_buf);
    }
    int no_trim = 0;
    arg_spec specs[TRAIN_FLAG_COUNT + 5 + CKPT_FLAG_COUNT];
    train_flags_specs(&tf, specs);
    arg_spec extra[] = {
        ARG_SM("data", &data, "FILE", "dataset file (required; on --resume, the checkpoint's)"),
        ARG_SM("format", &format, "FMT", "auto, interactions, sequences, ml-dat or u.data"),
        ARG_SM("out", &out, "DIR", "output folder for metrics.jsonl and model.safetensors"),
        ARG_F("no-progress", &tf.no_progress, "plain epoch lines instead of a progress bar (as when stderr is not a terminal)"),
        ARG_F("no-trim", &no_trim, "run every batch on full windows of max-len positions (the default trims each chunk "
                                   "of similar-length sequences to its longest: the same results, faster)"),
    };
    memcpy(specs + TRAIN_FLAG_COUNT, extra, sizeof extra);
    ckpt_flags_specs(&cf, specs + TRAIN_FLAG_COUNT + 5);
    int n = TRAIN_FLAG_COUNT + 5 + CKPT_FLAG_COUNT;
    rc = args_parse(cmd,
                    "Train a Transformer recommender (non-private, or DP-SGD with --dp) on a dataset; checkpoints and\n"
                    "--resume: see docs/checkpoints.md. Stops at the next step boundary on SIGINT/SIGTERM (exit 130/143).",
                    specs, n, argc, argv);
    if (rc) {
        dp_checkpoint_free(ck);
        return rc == 1 ? 0 : 2;
    }
    if (!data) {
        fprintf(stderr, "%s: --data is required (see --help)\n", cmd);
        dp_checkpoint_free(ck);
        return 2;
    }
    if (ckpt_require_out(cmd, &cf, out)) {
        dp_checkpoint_free(ck);
        return 2;
    }
    dp_train_config cfg;
    if (train_refuse_ignored_flags(cmd, &tf, specs, n, "DP flags need --dp") ||
        train_flags_to_config(cmd, &tf, &cfg)) {
        dp_checkpoint_free(ck);
        return 2;
    }
    dp_dataset ds;
    if ((rc = load_data(cmd, data, format, &ds))) {
        if (ck) fprintf(stderr, "%s: (the checkpoint's dataset; give --data if the file has moved)\n", cmd);
        dp_checkpoint_free(ck);
        return rc;
    }
    /* a resumed run takes its frequencies from the checkpoint and does not read the file again */
    if (!ck && (rc = train_check_item_freq_file(cmd, &cfg, ds.n_items))) {
        dp_checkpoint_free(ck);
        dp_dataset_free(&ds);
        return rc;
    }
    cfg.model.n_items = ds.n_items;
    cfg.no_trim = no_trim;
    cfg.out_dir = out;
    cfg.data_desc = data;
    cfg.checkpoint_dir = ckpt_flags_dir(&cf, out);
    cfg.checkpoint_every = cf.every;
    cfg.keep_checkpoints = cf.keep;
    char extra_json[160];
    snprintf(extra_json, sizeof extra_json, "{\"format\":\"%.32s\",\"threads\":%d}", format, tf.threads);
    cfg.checkpoint_extra = extra_json;
    cfg.resume = ck;
    fprintf(stderr, "%s: %d users, %d items, %lld interactions from %s\n", cmd, ds.n_users, ds.n_items,
            (long long)ds.n_interactions, data);
    dp_model *m = NULL;
    dp_train_result res;
    rc = 2;
    /* bad settings or data, a checkpoint that does not fit them, or unfinished checkpoints in the way:
     * usage errors, nothing trained */
    if (dp_train_check(&ds, &cfg, &err) || (ck && dp_checkpoint_check_resume(ck, &ds, &cfg, &err)) ||
        outputs_are_not_inputs(&cfg, &err) || dp_train_plan_check(&ds, &cfg, &err) ||
        (cfg.checkpoint_dir && dp_checkpoint_check_dir(cfg.checkpoint_dir, ck, &err))) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        goto done;
    }
    if (ck) ckpt_print_resuming(cmd, ck, cfg.epochs);
    cfg.stop = cli_stop_install();
    rc = dp_train(&ds, &cfg, &m, &res, &err);
    cli_stop_restore();
    if ((rc = ckpt_report(cmd, "train", rc, res.stopped_by, err.msg, res.checkpoint, cfg.checkpoint_dir))) goto done;
    dp_rank_metrics pop;
    dp_popularity_eval(&ds, DP_SPLIT_TEST, cfg.exclude_seen, &pop);
    printf("trained %d epochs (%.2f s/epoch, %.0f examples/s); kept epoch %d %s\n", res.epochs_run,
           res.seconds_per_epoch, res.examples_per_second, res.best_epoch,
           cfg.keep_last ? "(the last)" : "by validation NDCG@10");
    printf("ranking: full, over all %d items, seen items %s\n", ds.n_items, cfg.exclude_seen ? "excluded" : "included");
    print_summary(stdout, "validation", &res.valid);
    print_summary(stdout, "test", &res.test);
    print_summary(stdout, "test, popularity", &pop);
    print_privacy(stdout, &cfg, &res);
    printf("saved %s/model.safetensors and %s/metrics.jsonl%s\n", out, out, cfg.dp.enabled ? " and privacy.json" : "");
    if (cfg.dp.enabled)
        printf("privacy.json records the events, delta, accountant and epsilon: dpformer privacy --history "
               "%s/privacy.json recomputes it\n", out);
    if (cfg.checkpoint_dir && res.checkpoint[0]) printf("checkpoint %s\n", res.checkpoint);
    rc = 0;
done:
    dp_model_free(m);
    dp_dataset_free(&ds);
    dp_checkpoint_free(ck);
    return rc;
}

/* Memory an allocation can have: the machine's, or less under a limit on the address space (0: unknown). */
static double available_memory(void) {
    double have = (double)dp_physical_memory();
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (have == 0 || (double)rl.rlim_cur < have))
        have = (double)rl.rlim_cur;
    return have;
}

/* A model file, or a checkpoint file (its parameters at its step, or with best those of its best
 * validated epoch so far), for batches of B users. */
static dp_model *load_model_or_checkpoint(const char *path, int best, int B, char *what, size_t cap, dp_error *err) {
    what[0] = 0;
    if (!dp_checkpoint_is_file(path)) {
        if (best) {
            dp_fail(err, "%s: --best needs a checkpoint file (ckpt-*.safetensors); a model file holds one set of "
                         "parameters", path);
            return NULL;
        }
        return dp_model_load(path, B, err);
    }
    dp_checkpoint *ck = dp_checkpoint_read(path, err);
    dp_model *m = NULL;
    if (ck && strcmp(dp_checkpoint_task(ck), "recommendation") != 0)
        dp_fail(err, "%s: a checkpoint of a %s run, not of dpformer train", path, dp_checkpoint_task(ck));
    else if (ck && (m = dp_checkpoint_model(ck, best, B, err))) {
        if (best)
            snprintf(what, cap, "checkpoint of step %lld: the parameters of its best validated epoch so far",
                     (long long)dp_checkpoint_step(ck));
        else
            snprintf(what, cap, "checkpoint of step %lld (%d epoch(s) completed): the parameters at that step",
                     (long long)dp_checkpoint_step(ck), dp_checkpoint_epochs_done(ck));
    }
    dp_checkpoint_free(ck);
    return m;
}

/* The model for batches of B users on the device, or NULL after a message; when only the batch is too
 * large to fit, the message names --batch-size. */
static dp_model *load_eval_model(const char *cmd, const char *path, int best, int B, dp_device device, char *what,
                                 size_t cap, dp_error *err) {
    dp_model *m = load_model_or_checkpoint(path, best, B, what, cap, err);
    if (m && !dp_model_set_device(m, device, err)) return m;
    dp_model_free(m);
    dp_model *one = NULL;
    dp_error e1;
    if (B > 1 && (one = load_model_or_checkpoint(path, best, 1, what, cap, &e1)) && !dp_model_set_device(one, device, &e1))
        fprintf(stderr, "%s: --batch-size: %s; lower --batch-size (default 256)\n", cmd, err->msg);
    else
        fprintf(stderr, "%s: %s\n", cmd, err->msg);
    dp_model_free(one);
    return NULL;
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "dpformer eval";
    const char *model = NULL, *data = NULL, *format = "auto", *split = "test", *device_s = "cpu";
    int exclude_seen = 0, json = 0, batch = 256, threads = 0, best = 0;
    arg_spec specs[] = {
        ARG_SM("model", &model, "FILE", "model.safetensors written by dpformer train or demo, or a checkpoint file of "
                                        "dpformer train (its parameters at that step) (required)"),
        ARG_F("best", &best, "with a checkpoint: the parameters of its best validated epoch so far"),
        ARG_SM("data", &data, "FILE", "the dataset the model was trained on (required)"),
        ARG_SM("format", &format, "FMT", "auto, interactions, sequences, ml-dat or u.data"),
        ARG_S("split", &split, "valid or test"),
        ARG_F("exclude-seen", &exclude_seen, "exclude a user's history items from the ranking"),
        ARG_IR("batch-size", &batch, "users scored at once (memory: batch x items x 4 bytes for the scores)", 1, 1 << 20),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
        ARG_S("device", &device_s, "where the model runs: cpu or cuda"),
        ARG_F("json", &json, "print one JSON object"),
    };
    int rc = args_parse(cmd, "Evaluate a saved model with full ranking (NDCG/HR@10/20) and the popularity baseline.",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!model || !data) {
        fprintf(stderr, "%s: --model and --data are required (see --help)\n", cmd);
        return 2;
    }
    dp_split sp;
    if (strcmp(split, "valid") == 0) sp = DP_SPLIT_VALID;
    else if (strcmp(split, "test") == 0) sp = DP_SPLIT_TEST;
    else {
        fprintf(stderr, "%s: --split: expected valid or test, got '%s'\n", cmd, split);
        return 2;
    }
    dp_device device;
    if ((rc = args_device(cmd, device_s, &device))) return rc;
    ops_set_threads(threads);
    dp_dataset ds;
    if ((rc = load_data(cmd, data, format, &ds))) return rc;
    /* more users at once than the dataset has buys nothing: a larger --batch-size only costs memory */
    const int B = batch < ds.n_users ? batch : ds.n_users > 0 ? ds.n_users : 1;
    const double score_bytes = (double)B * ((double)ds.n_items + 1) * sizeof(dp_real), have = available_memory();
    if (have > 0 && score_bytes > have) {
        fprintf(stderr, "%s: --batch-size %d: scoring %d users at once needs %.1f GiB for their item scores (%d x %d "
                        "items x %zu bytes), more than the %.1f GiB of memory available; lower --batch-size "
                        "(default 256)\n", cmd, batch, B, score_bytes / 1073741824.0, B, ds.n_items + 1,
                sizeof(dp_real), have / 1073741824.0);
        dp_dataset_free(&ds);
        return 2;
    }
    dp_error err;
    char what[160];
    dp_model *m = load_eval_model(cmd, model, best, B, device, what, sizeof what, &err);
    if (!m) {
        dp_dataset_free(&ds);
        return 2;
    }
    const dp_model_config *mc = dp_model_config_of(m);
    if (mc->n_classes) {
        fprintf(stderr, "%s: %s is a text classifier (%d classes, written by dpformer train-text), not a next-item "
                        "model: evaluate it with dpformer eval-text --model %s --data FILE.tsv\n",
                cmd, model, mc->n_classes, model);
        dp_model_free(m);
        dp_dataset_free(&ds);
        return 2;
    }
    if (dp_model_config_of(m)->n_items != ds.n_items) {
        fprintf(stderr, "%s: %s has %d items but %s has %d: not the dataset it was trained on\n", cmd, model,
                dp_model_config_of(m)->n_items, data, ds.n_items);
        dp_model_free(m);
        dp_dataset_free(&ds);
        return 2;
    }
    dp_reattention_config ra;
    const int with_ra = dp_model_get_reattention(m, &ra);
    dp_rank_metrics mm, pop;
    dp_evaluate(m, &ds, sp, exclude_seen, 0, &mm);
    dp_popularity_eval(&ds, sp, exclude_seen, &pop);
    if (json) {
        printf("{\"split\":\"%s\",\"exclude_seen\":%s,\"users\":%lld,\"ndcg10\":%.6f,\"hr10\":%.6f,\"ndcg20\":%.6f,"
               "\"hr20\":%.6f,\"popularity_ndcg10\":%.6f,\"popularity_hr10\":%.6f,\"reattention\":%s,"
               "\"parameters\":\"%s\"}\n",
               split, exclude_seen ? "true" : "false", (long long)mm.n, mm.ndcg10, mm.hr10, mm.ndcg20, mm.hr20,
               pop.ndcg10, pop.hr10, with_ra ? "true" : "false",
               !what[0] ? "model" : best ? "checkpoint-best" : "checkpoint-step");
    } else {
        printf("%s on %s, split %s, full ranking over %d items, seen items %s\n", model, data, split, ds.n_items,
               exclude_seen ? "excluded" : "included");
        if (what[0]) printf("%s\n", what);
        if (with_ra)
            printf("Re-Attention on (kappa %g, sigma %.4f, expected batch %.1f, %lld training examples), from the "
                   "model file\n", ra.kappa, ra.sigma, ra.batch_size, (long long)ra.n_examples);
        print_summary(stdout, "model", &mm);
        print_summary(stdout, "popularity", &pop);
    }
    dp_model_free(m);
    dp_dataset_free(&ds);
    return 0;
}
