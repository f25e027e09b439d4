/* `dpformer train-text` and `dpformer eval-text`: train a text classifier (non-private, DP-SGD or
 * DP-FP) on labelled TSV files — with checkpoints, --resume and a graceful stop on SIGINT/SIGTERM,
 * as `train` — and evaluate a saved one (docs/dpfp.md). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/task_flags.h"
#include "cli/train_flags.h"
#include "core/common.h"
#include "dpformer/checkpoint.h"
#include "dpformer/textcls.h"
#include "ops/ops.h"
#include "train/noise_plan.h"

/* The loader's advice speaks of its options; on the command line they are flags: name them. */
static void name_flags(char *msg, size_t cap) {
    static const char *const from[] = {"name the text column in the options",
                                       "accept raw bytes in the options"};
    static const char *const to[] = {"name it with --text-column", "accept raw bytes with --accept-invalid-utf8"};
    for (int k = 0; k < 2; k++) {
        char *at = strstr(msg, from[k]);
        if (!at) continue;
        char rest[1024];
        snprintf(rest, sizeof rest, "%s", at + strlen(from[k]));
        snprintf(at, cap - (size_t)(at - msg), "%s%s", to[k], rest);
    }
}

static int load_tsv(const char *cmd, const char *path, const dp_text_options *opt, dp_text_dataset *ds) {
    dp_error err;
    if (dp_text_load(ds, path, opt, &err)) {
        name_flags(err.msg, sizeof err.msg);
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        return 2;
    }
    return 0;
}

static void print_text_privacy(FILE *f, const dp_text_train_config *c, const dp_text_train_result *r, int has_dev) {
    if (c->mode == DP_TEXT_NONPRIVATE) {
        fprintf(f, "privacy: none (non-private training)\n");
        return;
    }
    if (r->noise_multiplier <= 0) {
        fprintf(f, "privacy: NONE -- noise multiplier 0; no differential privacy guarantee\n");
        return;
    }
    if (c->mode == DP_TEXT_DPSGD) {
        fprintf(f, "privacy: (epsilon = %.3f, delta = %g)-DP of the trained weights for each labelled sentence,\n",
                r->epsilon, r->delta);
        fprintf(f, "  DP-SGD: %lld steps, Poisson q = %.5g, noise multiplier %.4f, max grad norm %g, %s accountant\n",
                (long long)r->steps, r->sample_rate, r->noise_multiplier, c->dp.max_grad_norm,
                c->dp.accountant == DP_ACCOUNTANT_PLD ? "PLD" : "RDP");
    } else {
        fprintf(f, "privacy: DP-FP (epsilon = %.3f, delta = %g) for each labelled sentence, covering ONLY the noised\n"
                   "  pooled representations released during training. It does NOT cover the trained weights (their\n"
                   "  gradients come from the raw text) or the labels (they enter the loss unperturbed): this model has\n"
                   "  no example-level DP guarantee (docs/dpfp.md).\n",
                r->epsilon, r->delta);
        fprintf(f, "  %lld steps x %d micro-batches = %lld Poisson-subsampled Gaussian mechanisms, q = %.5g, noise\n"
                   "  multiplier %.4f, representation clip %g, %s accountant\n",
                (long long)r->steps, c->micro_batches, (long long)r->mechanism_events, r->sample_rate,
                r->noise_multiplier, c->dpfp_clip, c->dp.accountant == DP_ACCOUNTANT_PLD ? "PLD" : "RDP");
    }
    if (!has_dev)
        fprintf(f, "  the last epoch is kept (no dev set)\n");
    else if (c->keep_last)
        fprintf(f, "  the last epoch is kept, so no choice looks at the dev set (choosing by dev accuracy,\n"
                   "  --select-best, would not be covered for the dev sentences)\n");
    else
        fprintf(f, "  CAVEAT: the kept epoch was chosen by dev accuracy (--select-best); the dev sentences that\n"
                   "  choice looks at are NOT covered by this epsilon\n");
    if (r->stopped_at_budget) fprintf(f, "  stopped early: the next step would exceed the target epsilon\n");
    if (c->dp.seeded_noise)
        fprintf(f, "  WARNING: --seeded-noise: the noise is reproducible from the seed, so this run is NOT private\n");
}

/* What the command line adds to a text run's checkpoint: how the files are read, and the thread count. */
static char *extra_json(int threads, const char *label_col, const char *text_col, int classes, int invalid_utf8) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "threads", threads);
    if (label_col) cJSON_AddStringToObject(o, "label_column", label_col);
    if (text_col) cJSON_AddStringToObject(o, "text_column", text_col);
    cJSON_AddNumberToObject(o, "classes", classes);
    cJSON_AddBoolToObject(o, "accept_invalid_utf8", invalid_utf8);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int cmd_train_text(int argc, char **argv) {
    const char *cmd = "dpformer train-text";
    dp_text_train_config c = dp_text_train_config_default(2);
    text_flags f;
    text_flags_defaults(&f, &c);
    const char *train = NULL, *dev = NULL, *test = NULL, *out = "runs/text", *label_col = NULL, *text_col = NULL;
    int invalid_utf8 = 0, select_best = 0;
    ckpt_flags cf;
    ckpt_flags_defaults(&cf);
    dp_checkpoint *ck = NULL;
    char tok_buf[DP_TOKENIZER_SPEC_MAX], col_buf[2][256];
    dp_error err;
    int rc = ckpt_open_resume(cmd, "text-classification", argc, argv, &cf, &ck);
    if (rc) return rc;
    if (ck) {
        /* the saved run's settings are the flags' defaults: a flag not given keeps its value */
        dp_text_train_config saved;
        if (dp_text_checkpoint_config(ck, &saved, &err)) {
            fprintf(stderr, "%s: --resume: %s\n", cmd, err.msg);
            dp_checkpoint_free(ck);
            return 2;
        }
        train = saved.train_desc;
        dev = saved.dev_desc;
        test = saved.test_desc;
        out = saved.out_dir;
        dp_tokenizer_spec(&saved.tokenizer, tok_buf, sizeof tok_buf);
        f.tokenizer = tok_buf;
        f.r.max_len = saved.model.max_len;
        f.r.d_model = saved.model.d_model;
        f.r.n_heads = saved.model.n_heads;
        f.r.n_layers = saved.model.n_layers;
        f.r.d_ff = saved.model.d_ff;
        f.pool = saved.model.pool == DP_POOL_MEAN ? "mean" : "first";
        f.r.dropout = saved.model.dropout;
        f.classes = saved.model.n_classes;
        f.r.lr = saved.optim.lr;
        f.r.wd = saved.optim.weight_decay;
        f.r.seed = (int64_t)saved.seed;
        f.dp = saved.mode == DP_TEXT_DPSGD;
        f.dpfp = saved.mode == DP_TEXT_DPFP;
        task_resume_dp_flags(saved.mode != DP_TEXT_NONPRIVATE, saved.keep_last, &saved.dp, &f.r.sigma, &f.r.clip_mode,
                             &f.r.accountant, &c.keep_last, &select_best);
        c.epochs = saved.epochs;
        c.batch_size = saved.batch_size;
        c.dp = saved.dp;
        c.dpfp_clip = saved.dpfp_clip;
        c.micro_batches = saved.micro_batches;
        cJSON *x = task_resume_extra(ck, &f.r.threads);
        const cJSON *v;
        if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(x, "label_column"))) {
            snprintf(col_buf[0], sizeof col_buf[0], "%s", v->valuestring);
            label_col = col_buf[0];
        }
        if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(x, "text_column"))) {
            snprintf(col_buf[1], sizeof col_buf[1], "%s", v->valuestring);
            text_col = col_buf[1];
        }
        if (cJSON_IsBool(v = cJSON_GetObjectItemCaseSensitive(x, "accept_invalid_utf8"))) invalid_utf8 = cJSON_IsTrue(v);
        cJSON_Delete(x);
    }
    arg_spec specs[] = {
        ARG_SM("train", &train, "FILE", "training TSV file (required; on --resume, the checkpoint's)"),
        ARG_SM("dev", &dev, "FILE", "dev TSV file: accuracy per epoch, the best epoch is kept (without it: the last)"),
        ARG_SM("test", &test, "FILE", "test TSV file: accuracy of the kept model"),
        ARG_SM("label-column", &label_col, "NAME", "header name of the label column (default label)"),
        ARG_SM("text-column", &text_col, "NAME", "header name of the text column (default sentence, else content)"),
        ARG_IR("classes", &f.classes, "number of classes K (labels 0..K-1)", 2, 65536),
        ARG_F("accept-invalid-utf8", &invalid_utf8, "take text bytes as they are instead of refusing invalid UTF-8"),
        ARG_SM("tokenizer", &f.tokenizer, "SPEC", "bytes, words (hashed words, 16384 buckets) or words:BUCKETS; none is fitted on data"),
        ARG_IR("max-len", &f.r.max_len, "tokens per sentence ([CLS] + tokens; longer ones are truncated and counted)", 2, 100000),
        TEXT_MODEL_SPECS(&f, &c),
        ARG_F("keep-last", &c.keep_last, "keep the last epoch instead of the best by dev accuracy (the default with "
                                         "--dp / --dpfp, and without --dev)"),
        ARG_F("select-best", &select_best, "DP: keep the best epoch by dev accuracy instead of the last; epsilon does "
                                           "NOT cover the dev sentences that choice looks at"),
        TEXT_MODE_SPECS(&f),
        ARG_DR("target-epsilon", &c.dp.target_epsilon, "calibrate sigma for the planned run (with --noise-multiplier: stop before exceeding it)", 1e-6, 1e6),
        ARG_DR("delta", &c.dp.delta, "delta of the guarantee", 1e-300, 0.999999),
        TEXT_DP_SPECS(&f, &c),
        ARG_F("seeded-noise", &c.dp.seeded_noise, "reproducible noise from --seed (testing only: NOT private)"),
        ARG_SM("out", &out, "DIR", "output folder: metrics.jsonl, model.safetensors, privacy.json"),
        ARG_F("no-progress", &f.r.no_progress, "plain epoch lines instead of a progress bar (as when stderr is not a terminal)"),
        {0}, {0}, {0}, {0}, {0},
    };
    int n = (int)(sizeof specs / sizeof specs[0]);
    ckpt_flags_specs(&cf, specs + n - CKPT_FLAG_COUNT);
    rc = args_parse(cmd, "Train a text classifier (bidirectional encoder over bytes or hashed words) on labelled\n"
                         "TSV files: non-private, DP-SGD (--dp) or DP-FP (--dpfp); see docs/dpfp.md and docs/text.md.\n"
                         "Checkpoints and --resume as in train (docs/checkpoints.md). Stops at the next step boundary on\n"
                         "SIGINT/SIGTERM (exit 130/143).",
                    specs, n, argc, argv);
    if (rc) {
        dp_checkpoint_free(ck);
        return rc == 1 ? 0 : 2;
    }
    rc = 2;
    dp_text_dataset tr = {0}, dv = {0}, te = {0};
    char *extra = NULL;
    if (!train) {
        fprintf(stderr, "%s: --train is required (see --help)\n", cmd);
        goto done;
    }
    if (ckpt_require_out(cmd, &cf, out) || task_check_outputs(cmd, out, train, dev, test)) goto done;
    if (ck) { /* one mode flag given on resume replaces the saved one (and is refused below if it differs) */
        if (args_seen(specs, n, "dpfp") && !args_seen(specs, n, "dp")) f.dp = 0;
        if (args_seen(specs, n, "dp") && !args_seen(specs, n, "dpfp")) f.dpfp = 0;
    }
    if (text_flags_mode(cmd, &f, &c)) goto done;
    if (c.keep_last && select_best) {
        fprintf(stderr, "%s: --keep-last and --select-best exclude each other (on --resume, the run's saved choice "
                        "counts as given: model selection cannot change within a run)\n", cmd);
        goto done;
    }
    /* Under DP the last epoch is kept unless --select-best (the dev set is not covered by epsilon). */
    if (c.mode != DP_TEXT_NONPRIVATE && !select_best) c.keep_last = 1;
    if (text_flags_check_privacy(cmd, &f, specs, n, &c) || text_flags_config(cmd, &f, &c)) goto done;
    c.out_dir = out;
    c.train_desc = train;
    c.dev_desc = dev;
    c.test_desc = test;
    c.checkpoint_dir = ckpt_flags_dir(&cf, out);
    c.checkpoint_every = cf.every;
    c.keep_checkpoints = cf.keep;
    c.checkpoint_extra = extra = extra_json(f.r.threads, label_col, text_col, f.classes, invalid_utf8);
    c.resume = ck;

    dp_text_options opt;
    dp_text_options_default(&opt);
    opt.label_column = label_col;
    opt.text_column = text_col;
    opt.n_classes = f.classes;
    opt.accept_invalid_utf8 = invalid_utf8;
    const char *which = ck ? " (the checkpoint's file; give the flag if it has moved)" : "";
    if ((rc = load_tsv(cmd, train, &opt, &tr))) {
        if (ck) fprintf(stderr, "%s: --train%s\n", cmd, which);
        goto done;
    }
    if (dev && (rc = load_tsv(cmd, dev, &opt, &dv))) {
        if (ck) fprintf(stderr, "%s: --dev%s\n", cmd, which);
        goto done;
    }
    if (test && (rc = load_tsv(cmd, test, &opt, &te))) {
        if (ck) fprintf(stderr, "%s: --test%s\n", cmd, which);
        goto done;
    }
    rc = 2;
    char spec[DP_TOKENIZER_SPEC_MAX];
    dp_tokenizer_spec(&c.tokenizer, spec, sizeof spec);
    fprintf(stderr, "%s: %s training on %s (%lld sentences, %d classes), tokenizer %s, max length %d\n", cmd,
            dp_text_mode_name(c.mode), train, (long long)tr.n, f.classes, spec, f.r.max_len);
    dp_model *m = NULL;
    dp_text_train_result res;
    /* a checkpoint that does not fit, a privacy budget that allows no step, unfinished checkpoints in the
     * way: bad input, refused before anything is trained or written */
    if ((ck && dp_text_check_resume(ck, &c, &tr, dev ? &dv : NULL, test ? &te : NULL, &err)) ||
        dp_text_plan_check(&c, tr.n, &err) ||
        (c.checkpoint_dir && dp_checkpoint_check_dir(c.checkpoint_dir, ck, &err))) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        goto done;
    }
    if (ck) ckpt_print_resuming(cmd, ck, c.epochs);
    c.stop = cli_stop_install();
    rc = dp_text_train(&c, &tr, dev ? &dv : NULL, test ? &te : NULL, &m, &res, &err);
    cli_stop_restore();
    if ((rc = ckpt_report(cmd, "train-text", rc, res.stopped_by, err.msg, res.checkpoint, c.checkpoint_dir))) goto done;
    printf("%s: %d epochs (%.2f s per epoch), %.0f examples/s; kept epoch %d %s\n", dp_text_mode_name(c.mode),
           res.epochs_run, res.seconds_per_epoch, res.examples_per_second, res.best_epoch,
           !dev ? "(the last; no dev set)" : c.keep_last ? "(the last)" : "by dev accuracy");
    if (dev) printf("  dev accuracy  %.4f  (%lld sentences)\n", res.dev_acc, (long long)dv.n);
    if (test) printf("  test accuracy %.4f  (%lld sentences)\n", res.test_acc, (long long)te.n);
    print_text_privacy(stdout, &c, &res, dev != NULL);
    printf("saved %s/model.safetensors and %s/metrics.jsonl%s\n", out, out,
           c.mode != DP_TEXT_NONPRIVATE ? " and privacy.json" : "");
    if (c.mode != DP_TEXT_NONPRIVATE)
        printf("privacy.json records the events, delta, accountant and epsilon: dpformer privacy --history "
               "%s/privacy.json recomputes it\n", out);
    if (c.checkpoint_dir && res.checkpoint[0]) printf("checkpoint %s\n", res.checkpoint);
    printf("model: %s/model.safetensors\n", out);
    dp_model_free(m);
    rc = 0;
done:
    free(extra);
    dp_text_dataset_free(&tr);
    dp_text_dataset_free(&dv);
    dp_text_dataset_free(&te);
    dp_checkpoint_free(ck);
    return rc;
}

int cmd_eval_text(int argc, char **argv) {
    const char *cmd = "dpformer eval-text";
    const char *model = NULL, *data = NULL, *label_col = NULL, *text_col = NULL;
    int invalid_utf8 = 0, threads = 0;
    arg_spec specs[] = {
        ARG_SM("model", &model, "FILE", "saved classifier (model.safetensors of train-text; required)"),
        ARG_SM("data", &data, "FILE", "labelled TSV file (required)"),
        ARG_SM("label-column", &label_col, "NAME", "header name of the label column (default label)"),
        ARG_SM("text-column", &text_col, "NAME", "header name of the text column (default sentence, else content)"),
        ARG_F("accept-invalid-utf8", &invalid_utf8, "take text bytes as they are instead of refusing invalid UTF-8"),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
    };
    int n = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse(cmd, "Accuracy of a saved text classifier on a labelled TSV file.", specs, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!model || !data) {
        fprintf(stderr, "%s: --model and --data are required (see --help)\n", cmd);
        return 2;
    }
    ops_set_threads(threads);
    dp_error err;
    dp_model *m = dp_model_load(model, 256, &err);
    if (!m) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        return 2;
    }
    const dp_model_config *mc = dp_model_config_of(m);
    dp_tokenizer tok;
    if (!mc->n_classes) {
        fprintf(stderr, "%s: %s is a next-item model (%d items, written by dpformer train or demo), not a text "
                        "classifier: evaluate it with dpformer eval --model %s --data FILE\n",
                cmd, model, mc->n_items, model);
        dp_model_free(m);
        return 2;
    }
    if (dp_text_model_tokenizer(m, &tok, &err)) {
        fprintf(stderr, "%s: %s: not a text classifier (train it with dpformer train-text): %s\n", cmd, model, err.msg);
        dp_model_free(m);
        return 2;
    }
    dp_text_options opt;
    dp_text_options_default(&opt);
    opt.label_column = label_col;
    opt.text_column = text_col;
    opt.n_classes = mc->n_classes;
    opt.accept_invalid_utf8 = invalid_utf8;
    dp_text_dataset ds = {0};
    if ((rc = load_tsv(cmd, data, &opt, &ds))) {
        dp_model_free(m);
        return rc;
    }
    double acc = dp_text_accuracy(m, &ds, &err);
    if (acc != acc) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        rc = 1;
    } else {
        char spec[DP_TOKENIZER_SPEC_MAX];
        dp_tokenizer_spec(&tok, spec, sizeof spec);
        printf("accuracy %.4f  (%lld sentences, %lld truncated at %d tokens, tokenizer %s)\n", acc, (long long)ds.n,
               (long long)dp_text_count_truncated_with(&tok, &ds, mc->max_len), mc->max_len, spec);
    }
    dp_text_dataset_free(&ds);
    dp_model_free(m);
    return rc;
}
