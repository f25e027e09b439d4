/* `dpformer audit`: an empirical lower bound on ε from one training run (docs/audit.md). Plants
 * canaries, includes each with probability 1/2 (bits from the secure generator, looked at only when
 * scoring), trains with the given flags through the normal training code, scores every canary by how
 * much training lowered its loss, and reports the one-run lower bound, the membership-inference AUC
 * and TPR at low FPR, next to the accountant's ε, with a verdict. Here: the recommendation task
 * (fresh outlier users, trained by dp_train), the dispatch on --task, and what every task shares
 * (audit_cli.h: the audit's flags, the inclusion bits' generator, the warnings, the reference model and
 * audit_finish); text and lm are cmd_audit_text.c and cmd_audit_lm.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/audit_cli.h"
#include "cli/commands.h"
#include "cli/train_checks.h"
#include "cli/train_flags.h"
#include "core/common.h"
#include "dpformer/audit.h"
#include "train/noise_plan.h"

void audit_opts_defaults(audit_opts *o, const char *out) {
    memset(o, 0, sizeof *o);
    o->task = "rec";
    o->out = out;
    o->canaries = 1000;
    o->significance = 0.05;
    o->fpr = 0.01;
}

void audit_specs(audit_opts *o, arg_spec *specs, const char *canary_len_help) {
    arg_spec s[AUDIT_SPEC_COUNT] = {
        ARG_SM("task", &o->task, "TASK", "what is trained and audited: rec (next-item recommendation, the default), "
                                         "text (train-text) or lm (train-lm); --task T --help lists T's flags"),
        ARG_IR("canaries", &o->canaries, "canaries m, each included with probability 1/2", 2, 10000000),
        ARG_IR("canary-len", &o->canary_len, canary_len_help, 1, 100000),
        ARG_DR("significance", &o->significance, "1 - confidence of the lower bound", 1e-12, 0.5),
        ARG_LR("guesses", &o->guesses, "guess only the top K scores (fixed in advance); 0: the halving grid m, m/2, "
                                       "..., 1 with a Bonferroni correction", 0, INT64_MAX),
        ARG_DR("fpr", &o->fpr, "false-positive rate at which the TPR is reported", 0, 1),
        ARG_F("json", &o->json, "print one JSON object instead of the report"),
        ARG_SM("out", &o->out, "DIR", "output folder: the trained model, metrics.jsonl, privacy.json, audit.json"),
    };
    memcpy(specs, s, sizeof s);
}

int audit_check_opts(const audit_opts *o) {
    if (o->guesses > o->canaries) {
        fprintf(stderr, AUDIT_CMD ": --guesses %lld is more than the %d canaries\n", (long long)o->guesses, o->canaries);
        return 2;
    }
    return 0;
}

dp_rng *audit_rng(int seeded, int64_t seed, uint64_t salt) {
    dp_error err;
    dp_rng *rng = seeded ? dp_rng_create_seeded(dp_mix64((uint64_t)seed ^ salt)) : dp_rng_create_secure(&err);
    if (!rng) fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
    return rng;
}

void audit_warn(const char *no_guarantee, const char *note, int seeded) {
    if (no_guarantee)
        fprintf(stderr, AUDIT_CMD ": warning: this run has no privacy guarantee (%s): the audit measures how much it "
                        "leaks\n", no_guarantee);
    if (note) fprintf(stderr, AUDIT_CMD ": %s\n", note);
    if (seeded)
        fprintf(stderr, AUDIT_CMD ": warning: --seeded-noise: the noise and the inclusion bits come from --seed (for "
                        "tests; NOT private, and the bits are not secret)\n");
}

dp_model *audit_reference(const dp_model_config *mc, const dp_model *m, uint64_t seed, dp_device device) {
    dp_error err;
    dp_model *ref = dp_model_create_on(mc, dp_model_max_batch(m), seed, device, &err);
    if (!ref) fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
    return ref;
}

static int write_report(const char *path, const dp_audit_result *r, const audit_run *run, const double *scores,
                        const uint8_t *included, int64_t m, int canary_len, const char *verdict, double seconds,
                        int with_canaries, char **text_out, dp_error *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", run->task);
    cJSON_AddStringToObject(o, "mode", run->mode);
    if (run->claim) cJSON_AddNumberToObject(o, "epsilon", run->epsilon);
    else cJSON_AddNullToObject(o, "epsilon");
    cJSON_AddNumberToObject(o, "delta", r->delta);
    cJSON_AddNumberToObject(o, "epsilon_lower_bound", r->epsilon_lower);
    cJSON_AddNumberToObject(o, "confidence", 1 - r->significance);
    cJSON_AddNumberToObject(o, "canaries", (double)r->canaries);
    cJSON_AddNumberToObject(o, "included", (double)r->included);
    cJSON_AddNumberToObject(o, "guesses", (double)r->guesses);
    cJSON_AddNumberToObject(o, "correct", (double)r->correct);
    cJSON_AddNumberToObject(o, "hypotheses", (double)r->hypotheses);
    cJSON_AddNumberToObject(o, "auc", r->auc);
    cJSON_AddNumberToObject(o, "tpr_at_fpr", r->tpr_at_fpr);
    cJSON_AddNumberToObject(o, "fpr", r->fpr);
    cJSON_AddNumberToObject(o, "noise_multiplier", run->noise_multiplier);
    cJSON_AddNumberToObject(o, "max_grad_norm", strcmp(run->mode, "dp-sgd") == 0 ? run->clip : 0);
    if (strcmp(run->mode, "dp-fp") == 0) {
        cJSON_AddNumberToObject(o, "dpfp_clip", run->clip);
        cJSON_AddNumberToObject(o, "mechanism_events", (double)run->mechanism_events);
    }
    cJSON_AddNumberToObject(o, "dp_steps", (double)run->dp_steps);
    /* what the accountant's ε covers, and what the audit attacked: they differ under DP-FP */
    cJSON_AddStringToObject(o, "epsilon_covers", !run->claim ? "nothing (no guarantee)"
                                                 : run->covers_weights ? "the trained weights"
                                                                       : "the noised representations only");
    cJSON_AddStringToObject(o, "audited", "the trained weights (black-box: each canary's loss)");
    cJSON_AddNumberToObject(o, "canary_length", canary_len);
    cJSON_AddBoolToObject(o, "seeded", run->seeded != 0);
    cJSON_AddStringToObject(o, "verdict", verdict);
    cJSON_AddNumberToObject(o, "seconds", seconds);
    if (with_canaries) {
        cJSON *a = cJSON_AddArrayToObject(o, "canary_scores");
        cJSON *b = cJSON_AddArrayToObject(o, "canary_included");
        for (int64_t i = 0; i < m; i++) {
            cJSON_AddItemToArray(a, cJSON_CreateNumber(scores[i]));
            cJSON_AddItemToArray(b, cJSON_CreateNumber(included[i]));
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int rc = 0;
    if (path) {
        size_t n = strlen(s);
        s[n] = '\n'; /* the terminator's place: written with its length, then restored */
        rc = dp_write_file_atomic(path, s, n + 1, err);
        s[n] = 0;
    }
    if (text_out) *text_out = s;
    else free(s);
    return rc;
}

int audit_finish(const audit_opts *o, const audit_run *run, const double *scores, const uint8_t *included,
                 int64_t m, double t0) {
    dp_error err;
    dp_audit_result ar;
    if (dp_audit_evaluate(scores, included, m, o->guesses, o->significance, run->delta, o->fpr, &ar, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        return 1;
    }
    const int exceeds = run->claim && ar.epsilon_lower > run->epsilon;
    const int violation = exceeds && run->covers_weights;
    char verdict[512];
    if (!run->claim)
        snprintf(verdict, sizeof verdict, "no privacy claim to test: the run leaks at least epsilon %.3f", ar.epsilon_lower);
    else if (violation)
        snprintf(verdict, sizeof verdict, "VIOLATION: the lower bound %.3f exceeds the accountant's epsilon %.3f",
                 ar.epsilon_lower, run->epsilon);
    else if (run->covers_weights)
        snprintf(verdict, sizeof verdict, "consistent: the lower bound %.3f does not exceed the accountant's epsilon %.3f",
                 ar.epsilon_lower, run->epsilon);
    else if (exceeds)
        snprintf(verdict, sizeof verdict, "not covered: the trained weights leak at least epsilon %.3f, more than the "
                                          "DP-FP epsilon %.3f, which covers only the noised representations, not the "
                                          "weights (no violation of that claim)",
                 ar.epsilon_lower, run->epsilon);
    else
        snprintf(verdict, sizeof verdict, "not covered: the trained weights leak at least epsilon %.3f; the DP-FP "
                                          "epsilon %.3f covers only the noised representations, not the weights",
                 ar.epsilon_lower, run->epsilon);
    char path[4096], *text = NULL;
    snprintf(path, sizeof path, "%s/audit.json", o->out);
    const int len = o->canary_len;
    if (write_report(path, &ar, run, scores, included, m, len, verdict, dp_now() - t0, 1, NULL, &err) ||
        write_report(NULL, &ar, run, scores, included, m, len, verdict, dp_now() - t0, 0, &text, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        free(text);
        return 1;
    }
    if (o->json) {
        printf("%s\n", text);
    } else {
        printf("audit: %lld canaries (%lld included, chosen by the %s generator), %s, task %s\n", (long long)m,
               (long long)ar.included, run->seeded ? "SEEDED" : "secure", run->canary_desc, run->task);
        if (!run->claim)
            printf("accountant: no guarantee (%s)\n",
                   strcmp(run->mode, "non-private") != 0 ? "noise multiplier 0" : "non-private training");
        else if (strcmp(run->mode, "dp-fp") == 0)
            printf("accountant: epsilon = %.3f at delta = %g for the noised representations ONLY, not the weights "
                   "(DP-FP: %lld steps, %lld mechanism events, noise multiplier %.4g, representation clip %g)\n",
                   run->epsilon, run->delta, (long long)run->dp_steps, (long long)run->mechanism_events,
                   run->noise_multiplier, run->clip);
        else
            printf("accountant: epsilon = %.3f at delta = %g (%lld DP-SGD steps, noise multiplier %.4g, max grad norm %g)\n",
                   run->epsilon, run->delta, (long long)run->dp_steps, run->noise_multiplier, run->clip);
        printf("lower bound: epsilon >= %.3f with %.0f%% confidence at delta = %g (top %lld guessed in, %lld correct; "
               "%lld guess set%s%s)\n",
               ar.epsilon_lower, 100 * (1 - o->significance), run->delta, (long long)ar.guesses, (long long)ar.correct,
               (long long)ar.hypotheses, ar.hypotheses > 1 ? "s" : "", ar.hypotheses > 1 ? ", Bonferroni" : "");
        printf("membership inference: AUC %.4f, TPR %.4f at FPR <= %g\n", ar.auc, ar.tpr_at_fpr, o->fpr);
        printf("verdict: %s\n", verdict);
        printf("saved %s/audit.json (with every canary's score and inclusion bit) and the run's outputs\n", o->out);
    }
    free(text);
    return violation ? AUDIT_EXIT_VIOLATION : 0;
}

/* The task named on the command line (--task T or --task=T; the last one counts), or "rec". */
static const char *find_task(int argc, char **argv) {
    const char *t = "rec";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--task") == 0 && i + 1 < argc) t = argv[++i];
        else if (strncmp(argv[i], "--task=", 7) == 0) t = argv[i] + 7;
    }
    return t;
}

int cmd_audit(int argc, char **argv) {
    const char *task = find_task(argc, argv);
    if (strcmp(task, "text") == 0) return cmd_audit_text(argc, argv);
    if (strcmp(task, "lm") == 0) return cmd_audit_lm(argc, argv);
    train_flags tf;
    train_flags_defaults(&tf);
    tf.max_len = 20;
    tf.epochs = 4;
    tf.dropout = 0;
    tf.lr = 3e-3;
    tf.keep_last = 0;
    audit_opts ao;
    audit_opts_defaults(&ao, "runs/audit");
    ao.canary_len = 12;
    const char *data = NULL, *format = "auto";
    int users = 4000, items = 1000;
    arg_spec specs[TRAIN_FLAG_COUNT + AUDIT_SPEC_COUNT + 6];
    train_flags_specs(&tf, specs);
    arg_spec extra[AUDIT_SPEC_COUNT + 6] = {
        ARG_SM("data", &data, "FILE", "dataset the canaries join (default: a synthetic one, --users, --items)"),
        ARG_SM("format", &format, "FMT", "auto, interactions, sequences, ml-dat or u.data"),
        ARG_IR("users", &users, "synthetic users without --data", 10, 10000000),
        ARG_IR("items", &items, "synthetic items without --data", 10, 10000000),
        ARG_F("no-progress", &tf.no_progress, "plain epoch lines instead of a progress bar (as when stderr is not a terminal)"),
        ARG_F("keep-last", &tf.keep_last, "keep the last epoch (the default with --dp)"),
    };
    audit_specs(&ao, extra + 6, "items per canary (the last two are its validation and test items; at least 3)");
    /* train_flags already has --keep-last, --no-progress: use its own entries instead of the extra ones */
    int n = TRAIN_FLAG_COUNT;
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        int dup = 0;
        for (int j = 0; j < TRAIN_FLAG_COUNT; j++) dup |= strcmp(specs[j].name, extra[i].name) == 0;
        if (!dup) specs[n++] = extra[i];
    }
    int rc = args_parse(AUDIT_CMD,
                        "Audit a training run: plant canaries (fresh outlier users, each included with probability\n"
                        "1/2 by the secure generator), train with the given flags, score every canary and report a\n"
                        "lower bound on epsilon at the chosen confidence (Steinke, Nasr, Jagielski 2023), the\n"
                        "membership-inference AUC and TPR at low FPR, next to the accountant's epsilon. Exit status 3\n"
                        "if the lower bound exceeds the accountant's epsilon. These are the flags of --task rec (those\n"
                        "of train); --task text --help and --task lm --help list the others. See docs/audit.md.",
                        specs, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (strcmp(ao.task, "rec") != 0) {
        fprintf(stderr, AUDIT_CMD ": --task: unknown task '%s' (rec: next-item recommendation, text: text "
                        "classification, lm: language model)\n", ao.task);
        return 2;
    }
    if (ao.canary_len < 3) {
        fprintf(stderr, AUDIT_CMD ": --canary-len %d: a recommendation canary needs at least 3 items (training "
                        "prefix, validation and test item)\n", ao.canary_len);
        return 2;
    }
    if (audit_check_opts(&ao)) return 2;
    if (train_refuse_ignored_flags(AUDIT_CMD, &tf, specs, n, "DP flags need --dp")) return 2;
    dp_train_config cfg;
    if (train_flags_to_config(AUDIT_CMD, &tf, &cfg)) return 2;
    dp_error err;
    dp_dataset base;
    if (data) {
        dp_data_format fmt;
        if (dp_data_format_parse(format, &fmt)) {
            fprintf(stderr, AUDIT_CMD ": --format: unknown format '%s'\n", format);
            return 2;
        }
        if (dp_dataset_load(&base, data, fmt, &err)) {
            fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
            return 2;
        }
    } else {
        dp_synth_config sc;
        dp_synth_config_default(&sc);
        sc.n_users = users;
        sc.n_items = items;
        sc.seed = (uint64_t)tf.seed;
        dp_dataset_synthetic(&base, &sc);
    }
    dp_rng *rng = audit_rng(cfg.dp.seeded_noise, tf.seed, 0x61756469745f6269ULL);
    if (!rng) {
        dp_dataset_free(&base);
        return 1;
    }
    dp_audit_canaries c;
    dp_dataset ds = {0};
    dp_model *m = NULL, *ref = NULL;
    double *scores = NULL;
    const int canaries = ao.canaries, canary_len = ao.canary_len;
    rc = 2;
    if (dp_audit_canaries_make(&c, canaries, canary_len, base.n_items, rng, &err) ||
        dp_audit_dataset(&base, &c, &ds, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        goto done;
    }
    cfg.model.n_items = ds.n_items;
    cfg.out_dir = ao.out;
    cfg.data_desc = data ? data : "synthetic";
    if (dp_train_check(&ds, &cfg, &err) || dp_train_plan_check(&ds, &cfg, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        goto done;
    }
    if (train_check_item_freq_file(AUDIT_CMD, &cfg, ds.n_items)) goto done;
    const int no_noise = cfg.dp.noise_multiplier == 0 && cfg.dp.target_epsilon == 0;
    audit_warn(!cfg.dp.enabled ? "no --dp" : no_noise ? "noise multiplier 0" : NULL, NULL, cfg.dp.seeded_noise);
    fprintf(stderr, AUDIT_CMD ": %d users + %lld of %d canaries (%d items each) over %d items\n", base.n_users,
            (long long)(ds.n_users - base.n_users), canaries, canary_len, ds.n_items);
    const double t0 = dp_now();
    dp_train_result res;
    if (dp_train(&ds, &cfg, &m, &res, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (!(ref = audit_reference(&cfg.model, m, cfg.seed, cfg.device))) {
        rc = 1;
        goto done;
    }
    scores = dp_malloc(sizeof(double) * (size_t)canaries);
    dp_audit_canary_scores(m, ref, &c, scores);
    char desc[64];
    snprintf(desc, sizeof desc, "%d items each", canary_len);
    audit_run run = {
        .task = "rec",
        .mode = !cfg.dp.enabled ? "non-private" : "dp-sgd",
        .canary_desc = desc,
        .claim = cfg.dp.enabled && res.noise_multiplier > 0,
        .covers_weights = 1,
        .epsilon = res.epsilon,
        .delta = cfg.dp.enabled ? cfg.dp.delta : 1e-6,
        .noise_multiplier = cfg.dp.enabled ? res.noise_multiplier : 0,
        .clip = cfg.dp.enabled ? cfg.dp.max_grad_norm : 0,
        .dp_steps = cfg.dp.enabled ? res.dp_steps : 0,
        .seeded = cfg.dp.seeded_noise,
    };
    rc = audit_finish(&ao, &run, scores, c.included, canaries, t0);
done:
    free(scores);
    dp_model_free(ref);
    dp_model_free(m);
    dp_audit_canaries_free(&c);
    dp_dataset_free(&ds);
    dp_dataset_free(&base);
    dp_rng_free(rng);
    return rc;
}
