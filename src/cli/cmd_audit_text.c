/* `dpformer audit --task text`: the audit of docs/audit.md on a text classifier trained as
 * `dpformer train-text` trains it (dp_text_train, with the same flags: non-private, DP-SGD or DP-FP).
 * Canaries are sentences of random words with random labels; each canary's score is how much training
 * lowered its cross-entropy with its label. Under DP-FP the accountant's ε covers only the noised
 * representations, not the weights this audit attacks: the report says so, and a bound above that ε is
 * not a violation (exit 0). The flags are train-text's, without --dev, --test, model selection and
 * checkpoints (the last epoch is kept, as in any private run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/audit_cli.h"
#include "cli/task_flags.h"
#include "core/common.h"
#include "dpformer/audit.h"
#include "dpformer/textcls.h"
#include "train/noise_plan.h"

/* Tokens per canary when --canary-len is not given (at most the window without [CLS]). */
#define TEXT_CANARY_LEN 16

int cmd_audit_text(int argc, char **argv) {
    dp_text_train_config c = dp_text_train_config_default(2);
    text_flags f;
    text_flags_defaults(&f, &c);
    audit_opts ao;
    audit_opts_defaults(&ao, "runs/audit-text");
    const char *train = NULL, *label_col = NULL, *text_col = NULL;
    int invalid_utf8 = 0;
    dp_error err;
    arg_spec specs[] = {
        ARG_SM("train", &train, "FILE", "training TSV file the canaries join (required)"),
        ARG_SM("label-column", &label_col, "NAME", "header name of the label column (default label)"),
        ARG_SM("text-column", &text_col, "NAME", "header name of the text column (default sentence, else content)"),
        ARG_IR("classes", &f.classes, "number of classes K (labels 0..K-1; canary labels are uniform over them)", 2, 65536),
        ARG_F("accept-invalid-utf8", &invalid_utf8, "take text bytes as they are instead of refusing invalid UTF-8"),
        ARG_SM("tokenizer", &f.tokenizer, "SPEC", "bytes, words (hashed words, 16384 buckets) or words:BUCKETS"),
        ARG_IR("max-len", &f.r.max_len, "tokens per sentence ([CLS] + tokens)", 2, 100000),
        TEXT_MODEL_SPECS(&f, &c),
        TEXT_MODE_SPECS(&f),
        ARG_DR("target-epsilon", &c.dp.target_epsilon, "calibrate sigma for the planned run", 1e-6, 1e6),
        ARG_DR("delta", &c.dp.delta, "delta of the guarantee (and of the bound)", 1e-300, 0.999999),
        TEXT_DP_SPECS(&f, &c),
        ARG_F("seeded-noise", &c.dp.seeded_noise, "noise and inclusion bits from --seed (testing only: NOT private)"),
        ARG_F("no-progress", &f.r.no_progress, "plain epoch lines instead of a progress bar"),
        {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0},
    };
    const int n = (int)(sizeof specs / sizeof specs[0]);
    audit_specs(&ao, specs + n - AUDIT_SPEC_COUNT, "tokens per canary: random words (--tokenizer words) or bytes "
                                                   "(bytes); default 16, at most --max-len - 1");
    int rc = args_parse(AUDIT_CMD " --task text",
                        "Audit a text classifier trained as train-text trains it (non-private, --dp or --dpfp): plant\n"
                        "canaries (sentences of random words with random labels, each included with probability 1/2\n"
                        "by the secure generator), train, score every canary by how much training lowered its loss,\n"
                        "and report a lower bound on epsilon (Steinke, Nasr, Jagielski 2023), the membership-inference\n"
                        "AUC and TPR at low FPR, next to the accountant's epsilon. Exit status 3 if the bound exceeds\n"
                        "an epsilon that covers the weights (DP-SGD); DP-FP's epsilon does not. See docs/audit.md.",
                        specs, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (strcmp(ao.task, "text") != 0) { /* a later --task=... the pre-scan read differently: refuse */
        fprintf(stderr, AUDIT_CMD ": --task: unknown task '%s' (rec, text or lm)\n", ao.task);
        return 2;
    }
    if (audit_check_opts(&ao)) return 2;
    if (!train) {
        fprintf(stderr, AUDIT_CMD ": --task text needs --train FILE (a labelled TSV file the canaries join)\n");
        return 2;
    }
    /* the flags are checked as train-text checks them */
    if (text_flags_mode(AUDIT_CMD, &f, &c) || text_flags_check_privacy(AUDIT_CMD, &f, specs, n, &c) ||
        text_flags_config(AUDIT_CMD, &f, &c))
        return 2;
    if (!ao.canary_len) ao.canary_len = DP_MIN(TEXT_CANARY_LEN, f.r.max_len - 1);
    if (ao.canary_len > f.r.max_len - 1) {
        fprintf(stderr, AUDIT_CMD ": --canary-len %d: a canary must fit the window of --max-len %d ([CLS] + at most %d "
                        "tokens)\n", ao.canary_len, f.r.max_len, f.r.max_len - 1);
        return 2;
    }
    c.keep_last = 1; /* no dev set: the last epoch, in every mode */
    c.out_dir = ao.out;
    c.train_desc = train;

    dp_text_options opt;
    dp_text_options_default(&opt);
    opt.label_column = label_col;
    opt.text_column = text_col;
    opt.n_classes = f.classes;
    opt.accept_invalid_utf8 = invalid_utf8;
    dp_text_dataset base = {0}, ds = {0};
    dp_audit_text_canaries can = {0};
    dp_model *m = NULL, *ref = NULL;
    double *scores = NULL;
    dp_rng *rng = NULL;
    rc = 2;
    if (dp_text_load(&base, train, &opt, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        goto done;
    }
    if (!(rng = audit_rng(c.dp.seeded_noise, f.r.seed, 0x61756469745f7478ULL))) {
        rc = 1;
        goto done;
    }
    if (dp_audit_text_canaries_make(&can, ao.canaries, ao.canary_len, &c.tokenizer, f.classes, rng, &err) ||
        dp_audit_text_dataset(&base, &can, &ds, &err) || dp_text_plan_check(&c, ds.n, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        goto done;
    }
    const int no_noise = c.dp.noise_multiplier == 0 && c.dp.target_epsilon == 0;
    audit_warn(c.mode == DP_TEXT_NONPRIVATE ? "neither --dp nor --dpfp" : no_noise ? "noise multiplier 0" : NULL,
               c.mode != DP_TEXT_DPFP ? NULL
                                      : "note: DP-FP's epsilon covers only the noised representations released during "
                                        "training, not the trained weights this audit attacks; a bound above it is "
                                        "reported, not a violation",
               c.dp.seeded_noise);
    fprintf(stderr, AUDIT_CMD ": %lld sentences + %lld of %d canaries (%d tokens each, random labels over %d classes)\n",
            (long long)base.n, (long long)(ds.n - base.n), ao.canaries, ao.canary_len, f.classes);
    const double t0 = dp_now();
    dp_text_train_result res;
    if (dp_text_train(&c, &ds, NULL, NULL, &m, &res, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (!(ref = audit_reference(dp_model_config_of(m), m, c.seed, DP_DEVICE_CPU))) {
        rc = 1;
        goto done;
    }
    scores = dp_malloc(sizeof(double) * (size_t)ao.canaries);
    dp_audit_text_scores(m, ref, &c.tokenizer, &can, scores);
    char desc[96];
    snprintf(desc, sizeof desc, "%d %s each, random labels", ao.canary_len,
             c.tokenizer.kind == DP_TOKENIZER_WORDS ? "random words" : "random bytes");
    const int priv = c.mode != DP_TEXT_NONPRIVATE;
    audit_run run = {
        .task = "text",
        .mode = c.mode == DP_TEXT_DPSGD ? "dp-sgd" : c.mode == DP_TEXT_DPFP ? "dp-fp" : "non-private",
        .canary_desc = desc,
        .claim = priv && res.noise_multiplier > 0,
        .covers_weights = c.mode != DP_TEXT_DPFP,
        .epsilon = res.epsilon,
        .delta = priv ? c.dp.delta : 1e-6,
        .noise_multiplier = priv ? res.noise_multiplier : 0,
        .clip = c.mode == DP_TEXT_DPSGD ? c.dp.max_grad_norm : c.mode == DP_TEXT_DPFP ? c.dpfp_clip : 0,
        .dp_steps = priv ? res.steps : 0,
        .mechanism_events = c.mode == DP_TEXT_DPFP ? res.mechanism_events : 0,
        .seeded = c.dp.seeded_noise,
    };
    rc = audit_finish(&ao, &run, scores, can.included, ao.canaries, t0);
done:
    free(scores);
    dp_model_free(ref);
    dp_model_free(m);
    dp_audit_text_canaries_free(&can);
    dp_text_dataset_free(&ds);
    dp_text_dataset_free(&base);
    dp_rng_free(rng);
    return rc;
}
