/* `dpformer audit`: an empirical lower bound on ε from one training run (docs/audit.md). Plants
 * canaries (fresh outlier users), includes each with probability 1/2 (bits from the secure generator,
 * looked at only when scoring), trains with the given flags through the normal training code, scores
 * every canary by how much training lowered its loss, and reports the one-run lower bound, the
 * membership-inference AUC and TPR at low FPR, next to the accountant's ε, with a verdict. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/train_checks.h"
#include "cli/train_flags.h"
#include "core/common.h"
#include "dpformer/audit.h"
#include "train/noise_plan.h"

#define CMD "dpformer audit"

/* Exit status when the lower bound exceeds the accountant's ε: the implementation is broken. */
#define EXIT_VIOLATION 3

static int write_report(const char *path, const dp_audit_result *r, const dp_audit_canaries *c, const double *scores,
                        const dp_train_config *cfg, const dp_train_result *res, const char *verdict, double seconds,
                        int with_canaries, char **text_out, dp_error *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", "rec");
    if (cfg->dp.enabled && res->noise_multiplier > 0) cJSON_AddNumberToObject(o, "epsilon", res->epsilon);
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
    cJSON_AddNumberToObject(o, "noise_multiplier", cfg->dp.enabled ? res->noise_multiplier : 0);
    cJSON_AddNumberToObject(o, "max_grad_norm", cfg->dp.enabled ? cfg->dp.max_grad_norm : 0);
    cJSON_AddNumberToObject(o, "dp_steps", (double)(cfg->dp.enabled ? res->dp_steps : 0));
    cJSON_AddNumberToObject(o, "canary_length", c->len);
    cJSON_AddBoolToObject(o, "seeded", cfg->dp.seeded_noise != 0);
    cJSON_AddStringToObject(o, "verdict", verdict);
    cJSON_AddNumberToObject(o, "seconds", seconds);
    if (with_canaries) {
        cJSON *a = cJSON_AddArrayToObject(o, "canary_scores");
        cJSON *b = cJSON_AddArrayToObject(o, "canary_included");
        for (int32_t i = 0; i < c->m; i++) {
            cJSON_AddItemToArray(a, cJSON_CreateNumber(scores[i]));
            cJSON_AddItemToArray(b, cJSON_CreateNumber(c->included[i]));
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

int cmd_audit(int argc, char **argv) {
    train_flags tf;
    train_flags_defaults(&tf);
    tf.max_len = 20;
    tf.epochs = 4;
    tf.dropout = 0;
    tf.lr = 3e-3;
    tf.keep_last = 0;
    const char *task = "rec", *data = NULL, *format = "auto", *out = "runs/audit";
    int canaries = 1000, canary_len = 12, users = 4000, items = 1000, json = 0;
    int64_t guesses = 0;
    double significance = 0.05, fpr = 0.01;
    arg_spec specs[TRAIN_FLAG_COUNT + 14];
    train_flags_specs(&tf, specs);
    arg_spec extra[] = {
        ARG_SM("task", &task, "TASK", "what is trained and audited: rec (next-item recommendation)"),
        ARG_SM("data", &data, "FILE", "dataset the canaries join (default: a synthetic one, --users, --items)"),
        ARG_SM("format", &format, "FMT", "auto, interactions, sequences, ml-dat or u.data"),
        ARG_IR("users", &users, "synthetic users without --data", 10, 10000000),
        ARG_IR("items", &items, "synthetic items without --data", 10, 10000000),
        ARG_IR("canaries", &canaries, "canaries m, each included with probability 1/2", 2, 10000000),
        ARG_IR("canary-len", &canary_len, "items per canary (the last two are its validation and test items)", 3, 100000),
        ARG_DR("significance", &significance, "1 - confidence of the lower bound", 1e-12, 0.5),
        ARG_LR("guesses", &guesses, "guess only the top K scores (fixed in advance); 0: the halving grid m, m/2, "
                                    "..., 1 with a Bonferroni correction", 0, INT64_MAX),
        ARG_DR("fpr", &fpr, "false-positive rate at which the TPR is reported", 0, 1),
        ARG_F("json", &json, "print one JSON object instead of the report"),
        ARG_SM("out", &out, "DIR", "output folder: the trained model, metrics.jsonl, privacy.json, audit.json"),
        ARG_F("no-progress", &tf.no_progress, "plain epoch lines instead of a progress bar (as when stderr is not a terminal)"),
        ARG_F("keep-last", &tf.keep_last, "keep the last epoch (the default with --dp)"),
    };
    /* train_flags already has --keep-last, --no-progress: use its own entries instead of the extra ones */
    int n = TRAIN_FLAG_COUNT;
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        int dup = 0;
        for (int j = 0; j < TRAIN_FLAG_COUNT; j++) dup |= strcmp(specs[j].name, extra[i].name) == 0;
        if (!dup) specs[n++] = extra[i];
    }
    int rc = args_parse(CMD,
                        "Audit a training run: plant canaries (fresh outlier users, each included with probability\n"
                        "1/2 by the secure generator), train with the given flags, score every canary and report a\n"
                        "lower bound on epsilon at the chosen confidence (Steinke, Nasr, Jagielski 2023), the\n"
                        "membership-inference AUC and TPR at low FPR, next to the accountant's epsilon. Exit status 3\n"
                        "if the lower bound exceeds the accountant's epsilon. See docs/audit.md.",
                        specs, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (strcmp(task, "rec") != 0) {
        fprintf(stderr, CMD ": --task: unknown task '%s' (rec: next-item recommendation)\n", task);
        return 2;
    }
    if (guesses > canaries) {
        fprintf(stderr, CMD ": --guesses %lld is more than the %d canaries\n", (long long)guesses, canaries);
        return 2;
    }
    if (train_refuse_ignored_flags(CMD, &tf, specs, n, "DP flags need --dp")) return 2;
    dp_train_config cfg;
    if (train_flags_to_config(CMD, &tf, &cfg)) return 2;
    dp_error err;
    dp_dataset base;
    if (data) {
        dp_data_format fmt;
        if (dp_data_format_parse(format, &fmt)) {
            fprintf(stderr, CMD ": --format: unknown format '%s'\n", format);
            return 2;
        }
        if (dp_dataset_load(&base, data, fmt, &err)) {
            fprintf(stderr, CMD ": %s\n", err.msg);
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
    /* the inclusion bits: secret, from the secure generator (seeded only with --seeded-noise, for tests) */
    dp_rng *rng = cfg.dp.seeded_noise ? dp_rng_create_seeded(dp_mix64((uint64_t)tf.seed ^ 0x61756469745f6269ULL))
                                      : dp_rng_create_secure(&err);
    if (!rng) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        dp_dataset_free(&base);
        return 1;
    }
    dp_audit_canaries c;
    dp_dataset ds = {0};
    dp_model *m = NULL, *ref = NULL;
    double *scores = NULL;
    char *text = NULL;
    rc = 2;
    if (dp_audit_canaries_make(&c, canaries, canary_len, base.n_items, rng, &err) ||
        dp_audit_dataset(&base, &c, &ds, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        goto done;
    }
    cfg.model.n_items = ds.n_items;
    cfg.out_dir = out;
    cfg.data_desc = data ? data : "synthetic";
    if (dp_train_check(&ds, &cfg, &err) || dp_train_plan_check(&ds, &cfg, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        goto done;
    }
    if (train_check_item_freq_file(CMD, &cfg, ds.n_items)) goto done;
    if (!cfg.dp.enabled || (cfg.dp.noise_multiplier == 0 && cfg.dp.target_epsilon == 0))
        fprintf(stderr, CMD ": warning: this run has no privacy guarantee (%s): the audit measures how much it leaks\n",
                cfg.dp.enabled ? "noise multiplier 0" : "no --dp");
    if (cfg.dp.seeded_noise)
        fprintf(stderr, CMD ": warning: --seeded-noise: the noise and the inclusion bits come from --seed (for "
                        "tests; NOT private, and the bits are not secret)\n");
    fprintf(stderr, CMD ": %d users + %lld of %d canaries (%d items each) over %d items\n", base.n_users,
            (long long)(ds.n_users - base.n_users), canaries, canary_len, ds.n_items);
    const double t0 = dp_now();
    dp_train_result res;
    if (dp_train(&ds, &cfg, &m, &res, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    /* the reference: the same initialisation, untrained, on the trained model's device */
    if (!(ref = dp_model_create_on(&cfg.model, dp_model_max_batch(m), cfg.seed, cfg.device, &err))) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    scores = dp_malloc(sizeof(double) * (size_t)canaries);
    dp_audit_canary_scores(m, ref, &c, scores);
    dp_audit_result ar;
    const double delta = cfg.dp.enabled ? cfg.dp.delta : 1e-6;
    if (dp_audit_evaluate(scores, c.included, canaries, guesses, significance, delta, fpr, &ar, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    const int claim = cfg.dp.enabled && res.noise_multiplier > 0;
    const int violation = claim && ar.epsilon_lower > res.epsilon;
    char verdict[256];
    if (!claim)
        snprintf(verdict, sizeof verdict, "no privacy claim to test: the run leaks at least epsilon %.3f", ar.epsilon_lower);
    else if (violation)
        snprintf(verdict, sizeof verdict, "VIOLATION: the lower bound %.3f exceeds the accountant's epsilon %.3f",
                 ar.epsilon_lower, res.epsilon);
    else
        snprintf(verdict, sizeof verdict, "consistent: the lower bound %.3f does not exceed the accountant's epsilon %.3f",
                 ar.epsilon_lower, res.epsilon);
    char path[4096];
    snprintf(path, sizeof path, "%s/audit.json", out);
    if (write_report(path, &ar, &c, scores, &cfg, &res, verdict, dp_now() - t0, 1, NULL, &err) ||
        write_report(NULL, &ar, &c, scores, &cfg, &res, verdict, dp_now() - t0, 0, &text, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (json) {
        printf("%s\n", text);
    } else {
        printf("audit: %d canaries (%lld included, chosen by the %s generator), %d items each, task rec\n", canaries,
               (long long)ar.included, cfg.dp.seeded_noise ? "SEEDED" : "secure", canary_len);
        if (claim)
            printf("accountant: epsilon = %.3f at delta = %g (%lld DP-SGD steps, noise multiplier %.4g, max grad norm %g)\n",
                   res.epsilon, cfg.dp.delta, (long long)res.dp_steps, res.noise_multiplier, cfg.dp.max_grad_norm);
        else
            printf("accountant: no guarantee (%s)\n", cfg.dp.enabled ? "noise multiplier 0" : "non-private training");
        printf("lower bound: epsilon >= %.3f with %.0f%% confidence at delta = %g (top %lld guessed in, %lld correct; "
               "%lld guess set%s%s)\n",
               ar.epsilon_lower, 100 * (1 - significance), delta, (long long)ar.guesses, (long long)ar.correct,
               (long long)ar.hypotheses, ar.hypotheses > 1 ? "s" : "", ar.hypotheses > 1 ? ", Bonferroni" : "");
        printf("membership inference: AUC %.4f, TPR %.4f at FPR <= %g\n", ar.auc, ar.tpr_at_fpr, fpr);
        printf("verdict: %s\n", verdict);
        printf("saved %s/audit.json (with every canary's score and inclusion bit) and the run's outputs\n", out);
    }
    rc = violation ? EXIT_VIOLATION : 0;
done:
    free(text);
    free(scores);
    dp_model_free(ref);
    dp_model_free(m);
    dp_audit_canaries_free(&c);
    dp_dataset_free(&ds);
    dp_dataset_free(&base);
    dp_rng_free(rng);
    return rc;
}
