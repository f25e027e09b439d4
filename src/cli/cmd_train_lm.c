/* `dpformer train-lm`: train a GPT-2-family language model on a text file (one line = one example =
 * the privacy unit), non-private or with DP-SGD, with checkpoints, --resume and a graceful stop on
 * SIGINT/SIGTERM as `train`; dev perplexity per epoch, test perplexity at the end (docs/lm.md). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/task_flags.h"
#include "cli/train_flags.h"
#include "core/common.h"
#include "dpformer/checkpoint.h"
#include "dpformer/dist.h"
#include "dpformer/lmtrain.h"

#define TASK "language-model"

/* Texts of a file, encoded to the context: 0, or 2 after a message. */
static int load_corpus(const char *cmd, const char *flag, const char *path, const char *column, const dp_bpe *tok,
                       int32_t eot, int ctx, dp_lm_corpus *c, int64_t *n_empty) {
    dp_error err;
    dp_lm_texts tx;
    if (dp_lm_texts_load(&tx, path, column, &err)) {
        fprintf(stderr, "%s: %s: %s\n", cmd, flag, err.msg);
        return 2;
    }
    int rc = 0;
    if (tx.n == 0) {
        fprintf(stderr, "%s: %s %s has no text (%lld empty %s)\n", cmd, flag, path, (long long)tx.n_empty,
                column ? "fields" : "lines");
        rc = 2;
    } else if (dp_lm_corpus_encode(c, tok, eot, &tx, ctx, &err)) {
        fprintf(stderr, "%s: %s %s: %s\n", cmd, flag, path, err.msg);
        rc = 2;
    }
    if (n_empty) *n_empty = tx.n_empty;
    dp_lm_texts_free(&tx);
    return rc;
}

static char *extra_json(int threads, const char *device) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddStringToObject(o, "device", device);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void print_lm_privacy(FILE *f, const dp_lm_train_config *c, const dp_lm_train_result *r, int has_dev) {
    if (!c->dpsgd) {
        fprintf(f, "privacy: none (non-private training)\n");
        return;
    }
    if (r->noise_multiplier <= 0) {
        fprintf(f, "privacy: NONE -- noise multiplier 0; no differential privacy guarantee\n");
        return;
    }
    fprintf(f, "privacy: (epsilon = %.3f, delta = %g)-DP of the trained weights for each example: one line of the\n"
               "  training file. DP-SGD: %lld steps, Poisson q = %.5g, noise multiplier %.4f, max grad norm %g, %s "
               "accountant\n",
            r->epsilon, r->delta, (long long)r->dp_steps, r->sample_rate, r->noise_multiplier, c->dp.max_grad_norm,
            c->dp.accountant == DP_ACCOUNTANT_PLD ? "PLD" : "RDP");
    fprintf(f, "  a text spread over several lines is several privacy units: put each unit on one line\n");
    if (!has_dev)
        fprintf(f, "  the last epoch is kept (no dev set)\n");
    else if (c->keep_last)
        fprintf(f, "  the last epoch is kept, so no choice looks at the dev set\n");
    else
        fprintf(f, "  CAVEAT: the kept epoch was chosen by dev perplexity (--select-best); the dev texts that choice\n"
                   "  looks at are NOT covered by this epsilon\n");
    if (r->stopped_at_budget) fprintf(f, "  stopped early: the next step would exceed the target epsilon\n");
    if (c->dp.seeded_noise)
        fprintf(f, "  WARNING: --seeded-noise: the noise is reproducible from the seed, so this run is NOT private\n");
}

int cmd_train_lm(int argc, char **argv) {
    const char *cmd = "dpformer train-lm";
    dp_lm_train_config c = dp_lm_train_config_default(50257);
    lm_flags f;
    lm_flags_defaults(&f, &c);
    const char *train = NULL, *dev = NULL, *test = NULL, *out = "runs/lm", *init = "random", *train_only = NULL;
    int select_best = 0;
    int32_t saved_vocab = 0;
    dp_model_config saved_model = {0};
    ckpt_flags cf;
    ckpt_flags_defaults(&cf);
    dp_checkpoint *ck = NULL;
    char buf[2][32];
    dp_error err;
    int rc = ckpt_open_resume(cmd, TASK, argc, argv, &cf, &ck);
    if (rc) return rc;
    if (ck) {
        /* the saved run's settings are the flags' defaults: a flag not given keeps its value */
        dp_lm_train_config saved;
        if (dp_lm_checkpoint_config(ck, &saved, &err)) {
            fprintf(stderr, "%s: --resume: %s\n", cmd, err.msg);
            dp_checkpoint_free(ck);
            return 2;
        }
        saved_vocab = saved.model.n_items;
        saved_model = saved.model;
        train = saved.train_desc;
        dev = saved.dev_desc;
        test = saved.test_desc;
        f.tokenizer = saved.tokenizer_desc;
        f.column = saved.column;
        out = saved.out_dir;
        init = saved.init ? saved.init : "random";
        train_only = saved.train_only;
        f.r.max_len = saved.model.max_len;
        f.r.d_model = saved.model.d_model;
        f.r.n_heads = saved.model.n_heads;
        f.r.n_layers = saved.model.n_layers;
        f.r.d_ff = saved.model.d_ff;
        f.untied = !saved.model.tied;
        f.r.dropout = saved.model.dropout;
        f.r.lr = saved.optim.lr;
        f.r.wd = saved.optim.weight_decay;
        f.warmup = saved.optim.warmup_steps;
        f.min_lr_ratio = saved.optim.min_lr_ratio;
        c.optim = saved.optim;
        snprintf(buf[0], sizeof buf[0], "%s",
                 saved.optim.schedule == DP_SCHED_WARMUP ? "warmup" : saved.optim.schedule == DP_SCHED_COSINE ? "cosine"
                                                                                                          : "constant");
        f.schedule = buf[0];
        f.r.seed = (int64_t)saved.seed;
        f.dp = saved.dpsgd;
        task_resume_dp_flags(f.dp, saved.keep_last, &saved.dp, &f.r.sigma, &f.r.clip_mode, &f.r.accountant, &c.keep_last,
                             &select_best);
        c.epochs = saved.epochs;
        c.batch_size = saved.batch_size;
        c.dp = saved.dp;
        cJSON *x = task_resume_extra(ck, &f.r.threads);
        const cJSON *v;
        if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(x, "device"))) {
            snprintf(buf[1], sizeof buf[1], "%s", v->valuestring);
            f.device = buf[1];
        }
        cJSON_Delete(x);
    }
    arg_spec specs[] = {
        ARG_SM("train", &train, "FILE", "training text: one example (and privacy unit) a line; required"),
        ARG_SM("dev", &dev, "FILE", "dev text: perplexity per epoch; the best epoch is kept non-privately"),
        ARG_SM("test", &test, "FILE", "test text: perplexity of the kept model"),
        ARG_SM("column", &f.column, "NAME", "read the texts from this column of .tsv/.csv files with a header line"),
        ARG_SM("tokenizer", &f.tokenizer, "DIR", "GPT-2 BPE tokenizer files (encoder.json + vocab.bpe); required"),
        ARG_SM("init", &init, "random|DIR", "initial model: random (of the shape flags), or a model folder "
                                            "(Hugging Face layout) or dpformer model file whose shape and weights the "
                                            "run starts from"),
        ARG_SM("train-only", &train_only, "PARTS", "train only these parts, freeze the rest: a comma-separated list of "
                                                   "wte, wpe, embeddings, layers:A-B, layers, ln_f, head (tied: head "
                                                   "is wte); default: everything"),
        ARG_IR("max-len", &f.r.max_len, "context: tokens per example, <|endoftext|> on both sides included (longer "
                                      "ones are truncated and counted; with --init DIR: at most, and by default, "
                                      "the model's)", 2, 100000),
        LM_SHAPE_SPECS(&f),
        ARG_F("untied", &f.untied, "a separate output layer instead of the token embedding (with a tied --init model: "
                                    "untie it, the head starting as a copy of the embedding)"),
        LM_OPTIM_SPECS(&f, &c),
        ARG_F("keep-last", &c.keep_last, "keep the last epoch instead of the best by dev perplexity (the default "
                                         "with --dp, and without --dev)"),
        ARG_F("select-best", &select_best, "DP: keep the best epoch by dev perplexity; epsilon does NOT cover the dev "
                                           "texts that choice looks at"),
        ARG_F("dp", &f.dp, "DP-SGD: per-example clipping and Gaussian noise (privacy unit: one line)"),
        ARG_DR("noise-multiplier", &f.r.sigma, "sigma: gradient noise / max-grad-norm", 0, 1e6),
        ARG_DR("target-epsilon", &c.dp.target_epsilon, "calibrate sigma for the planned run (with --noise-multiplier: "
                                                       "stop before exceeding it)", 1e-6, 1e6),
        ARG_DR("delta", &c.dp.delta, "delta of the guarantee", 1e-300, 0.999999),
        LM_DP_SPECS(&f, &c),
        ARG_F("seeded-noise", &c.dp.seeded_noise, "reproducible noise from --seed (testing only: NOT private)"),
        ARG_SM("out", &out, "DIR", "output folder: metrics.jsonl, model.safetensors, privacy.json"),
        ARG_F("no-progress", &f.r.no_progress, "plain epoch lines instead of a progress bar"),
        {0}, {0}, {0}, {0}, {0},
    };
    int n = (int)(sizeof specs / sizeof specs[0]);
    ckpt_flags_specs(&cf, specs + n - CKPT_FLAG_COUNT);
    rc = args_parse(cmd, "Train a GPT-2-family language model on text, one example a line: non-private or DP-SGD\n"
                         "(--dp; the privacy unit is one line of the training file). Dev perplexity per epoch, test\n"
                         "perplexity at the end (token-weighted); checkpoints and --resume as in train (docs/lm.md).",
                    specs, n, argc, argv);
    if (rc) {
        dp_checkpoint_free(ck);
        return rc == 1 ? 0 : 2;
    }
    rc = 2;
    dp_bpe *tok = NULL;
    dp_lm_corpus tr = {0}, dv = {0}, te = {0};
    char *extra = NULL;
    if (!train || !f.tokenizer) {
        fprintf(stderr, "%s: --train and --tokenizer are required (see --help)\n", cmd);
        goto done;
    }
    const int from_model = strcmp(init, "random") != 0;
    dp_model_config icfg;
    if (from_model && !ck) {
        /* the shape is the model's: a shape flag may only repeat it */
        if (dp_lm_init_config(init, args_seen(specs, n, "max-len") ? f.r.max_len : 0, &icfg, &err)) {
            fprintf(stderr, "%s: --init: %s\n", cmd, err.msg);
            goto done;
        }
        const struct {
            const char *flag;
            int given, model;
        } shape[] = {{"d-model", f.r.d_model, icfg.d_model}, {"n-layers", f.r.n_layers, icfg.n_layers},
                     {"n-heads", f.r.n_heads, icfg.n_heads}, {"d-ff", f.r.d_ff ? f.r.d_ff : 4 * f.r.d_model, icfg.d_ff},
                     {"untied", f.untied, !icfg.tied}};
        for (size_t i = 0; i < sizeof shape / sizeof shape[0]; i++)
            if (args_seen(specs, n, shape[i].flag) && shape[i].given != shape[i].model) {
                if (i == 4) continue; /* --untied with a tied model: untying (the head starts as the embedding) */
                fprintf(stderr, "%s: --%s %d disagrees with the model of --init %s (%s %d); the shape comes from "
                                "--init: leave the shape flags out\n",
                        cmd, shape[i].flag, shape[i].given, init, shape[i].flag, shape[i].model);
                goto done;
            }
        f.r.max_len = icfg.max_len;
        f.r.d_model = icfg.d_model;
        f.r.n_layers = icfg.n_layers;
        f.r.n_heads = icfg.n_heads;
        f.r.d_ff = icfg.d_ff;
        if (!f.untied) f.untied = !icfg.tied;
        else if (icfg.tied && dp_dist_is_root())
            fprintf(stderr, "untying the head of --init %s: the output layer starts as a copy of the token embedding "
                            "and is trained as a tensor of its own (ghost or per-layer clipping apply)\n", init);
        if (!args_seen(specs, n, "dropout")) f.r.dropout = icfg.dropout;
    }
    if (ckpt_require_out(cmd, &cf, out) || task_check_outputs(cmd, out, train, dev, test)) goto done;
    if (c.keep_last && select_best) {
        fprintf(stderr, "%s: --keep-last and --select-best exclude each other\n", cmd);
        goto done;
    }
    if (f.dp && !select_best) c.keep_last = 1;
    if (!f.dp && select_best) {
        fprintf(stderr, "%s: --select-best is for --dp runs (non-private runs keep the best epoch by default)\n", cmd);
        goto done;
    }
    if (lm_flags_check(cmd, &f, specs, n, &c) || args_device(cmd, f.device, &c.device)) goto done;
    if (!(tok = dp_bpe_load(f.tokenizer, &err))) {
        fprintf(stderr, "%s: --tokenizer: %s\n", cmd, err.msg);
        goto done;
    }
    const int32_t eot = dp_bpe_token_id(tok, "<|endoftext|>");
    if (eot < 0) {
        fprintf(stderr, "%s: --tokenizer %s has no <|endoftext|> token, which every example starts and ends with\n", cmd,
                f.tokenizer);
        goto done;
    }
    dp_model_config mc = dp_lm_config_default(dp_bpe_vocab_size(tok), f.r.max_len);
    if (ck) mc = saved_model;             /* the run's activation, positions, ... (the flags below agree) */
    else if (from_model) mc = icfg;       /* the model's vocabulary, activation, ... too */
    lm_flags_shape(&f, &mc);
    if (ck) mc.n_items = saved_vocab; /* checked against the tokenizer below */

    if (mc.n_items < dp_bpe_vocab_size(tok)) {
        fprintf(stderr, "%s: --tokenizer %s has %d tokens, more than the run's vocabulary of %d\n", cmd, f.tokenizer,
                dp_bpe_vocab_size(tok), mc.n_items);
        goto done;
    }
    if (dp_model_config_validate(&mc, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        goto done;
    }
    lm_flags_config(&f, &mc, &c);
    c.out_dir = out;
    c.train_desc = train;
    c.dev_desc = dev;
    c.test_desc = test;
    c.init = from_model ? init : NULL;
    c.train_only = train_only;
    char parts[1024];
    int64_t n_trained = 0, n_total = 0;
    if (train_only && dp_lm_train_only(train_only, &mc, parts, sizeof parts, &n_trained, &n_total, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        goto done;
    }
    if (train_only && !parts[0]) c.train_only = train_only = NULL; /* every part: nothing frozen */
    c.checkpoint_dir = ckpt_flags_dir(&cf, out);
    c.checkpoint_every = cf.every;
    c.keep_checkpoints = cf.keep;
    c.checkpoint_extra = extra = extra_json(f.r.threads, f.device);
    c.resume = ck;

    int64_t n_empty = 0;
    if ((rc = load_corpus(cmd, "--train", train, f.column, tok, eot, f.r.max_len, &tr, &n_empty)) ||
        (dev && (rc = load_corpus(cmd, "--dev", dev, f.column, tok, eot, f.r.max_len, &dv, NULL))) ||
        (test && (rc = load_corpus(cmd, "--test", test, f.column, tok, eot, f.r.max_len, &te, NULL))))
        goto done;
    rc = 2;
    fprintf(stderr, "%s: %s training on %s: %lld examples (one a %s; %lld empty skipped), %lld tokens, %lld longer "
                    "than the context of %d truncated; model d %d, %d layers, %d heads, vocabulary %d\n",
            cmd, f.dp ? "dp-sgd" : "non-private", train, (long long)tr.n, f.column ? "field" : "line",
            (long long)n_empty, (long long)tr.offsets[tr.n], (long long)tr.n_truncated, f.r.max_len, f.r.d_model, f.r.n_layers,
            f.r.n_heads, mc.n_items);
    if ((ck && dp_lm_check_resume(ck, &c, &tr, dev ? &dv : NULL, test ? &te : NULL, &err)) ||
        dp_lm_plan_check(&c, tr.n, &err) || (c.checkpoint_dir && dp_checkpoint_check_dir(c.checkpoint_dir, ck, &err))) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        goto done;
    }
    if (ck) ckpt_print_resuming(cmd, ck, c.epochs);
    if (from_model)
        fprintf(stderr, "%s: %s the model of --init %s (%s head, context %d, dropout %g)\n", cmd,
                ck ? "the run started from" : "starting from", init, mc.tied ? "tied" : "untied", mc.max_len,
                (double)mc.dropout);
    if (train_only)
        fprintf(stderr, "%s: training only %s: %lld of %lld parameters (%.1f%%); the rest is frozen (no update, and no "
                        "part of the per-example norm that DP-SGD clips)%s\n",
                cmd, parts, (long long)n_trained, (long long)n_total, 100.0 * (double)n_trained / (double)n_total,
                mc.tied && strstr(parts, "wte") ? "; the head is tied to wte: both are trained, as one tensor"
                : mc.tied ? "; the head is tied to wte: both are frozen, as one tensor" : "");
    dp_model *m = NULL;
    dp_lm_train_result res;
    c.stop = cli_stop_install();
    rc = dp_lm_train(&c, &tr, dev ? &dv : NULL, test ? &te : NULL, &m, &res, &err);
    cli_stop_restore();
    if ((rc = ckpt_report(cmd, "train-lm", rc, res.stopped_by, err.msg, res.checkpoint, c.checkpoint_dir))) goto done;
    printf("%s: %d epochs (%.2f s per epoch), %.0f examples/s, %.0f tokens/s; kept epoch %d %s\n",
           f.dp ? "dp-sgd" : "non-private", res.epochs_run, res.seconds_per_epoch, res.examples_per_second,
           res.tokens_per_second, res.best_epoch,
           !dev ? "(the last; no dev set)" : c.keep_last ? "(the last)" : "by dev perplexity");
    printf("  train loss %.4f (first epoch %.4f); %lld examples, %lld truncated to %d tokens\n", res.final_train_loss,
           res.first_train_loss, (long long)tr.n, (long long)res.truncated_train, f.r.max_len);
    if (res.has_dev)
        printf("  dev perplexity  %.4f  (%lld examples, %lld predicted tokens)\n", res.dev.perplexity,
               (long long)dv.n, (long long)res.dev.predicted);
    if (res.has_init_dev)
        printf("  dev perplexity of the initial model (--init) %.4f\n", res.init_dev.perplexity);
    if (res.has_test)
        printf("  test perplexity %.4f  (%lld examples, %lld predicted tokens, %.0f tokens/s)\n", res.test.perplexity,
               (long long)te.n, (long long)res.test.predicted, res.test.tokens_per_s);
    print_lm_privacy(stdout, &c, &res, dev != NULL);
    printf("saved %s/model.safetensors and %s/metrics.jsonl%s\n", out, out, f.dp ? " and privacy.json" : "");
    if (f.dp)
        printf("privacy.json records the events, delta, accountant and epsilon: dpformer privacy --history "
               "%s/privacy.json recomputes it\n", out);
    if (c.checkpoint_dir && res.checkpoint[0]) printf("checkpoint %s\n", res.checkpoint);
    printf("model: %s/model.safetensors (dpformer export --hf DIR --model it: the Hugging Face layout)\n", out);
    dp_model_free(m);
    rc = 0;
done:
    free(extra);
    dp_bpe_free(tok);
    dp_lm_corpus_free(&tr);
    dp_lm_corpus_free(&dv);
    dp_lm_corpus_free(&te);
    dp_checkpoint_free(ck);
    return rc;
}
