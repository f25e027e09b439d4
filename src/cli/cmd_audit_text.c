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
#include <unistd.h>

#include "cli/args.h"
#include "cli/audit_cli.h"
#include "core/common.h"
#include "dpformer/audit.h"
#include "dpformer/textcls.h"
#include "ops/ops.h"
#include "train/noise_plan.h"

/* Tokens per canary when --canary-len is not given (at most the window without [CLS]). */
#define TEXT_CANARY_LEN 16

int cmd_audit_text(int argc, char **argv) {
    dp_text_train_config c = dp_text_train_config_default(2);
    audit_opts ao;
    audit_opts_defaults(&ao, "runs/audit-text");
    const char *train = NULL, *pool = "first", *label_col = NULL, *text_col = NULL, *accountant = "rdp";
    const char *clip_mode = "auto", *tokenizer = "bytes";
    int max_len = c.model.max_len, d_model = c.model.d_model, n_heads = c.model.n_heads, n_layers = c.model.n_layers;
    int d_ff = 0, classes = 2, dp = 0, dpfp = 0, threads = 0, no_progress = 0, invalid_utf8 = 0;
    double dropout = c.model.dropout, lr = c.optim.lr, wd = 0, sigma = -1;
    int64_t seed = 1;
    dp_error err;
    arg_spec specs[] = {
        ARG_SM("train", &train, "FILE", "training TSV file the canaries join (required)"),
        ARG_SM("label-column", &label_col, "NAME", "header name of the label column (default label)"),
        ARG_SM("text-column", &text_col, "NAME", "header name of the text column (default sentence, else content)"),
        ARG_IR("classes", &classes, "number of classes K (labels 0..K-1; canary labels are uniform over them)", 2, 65536),
        ARG_F("accept-invalid-utf8", &invalid_utf8, "take text bytes as they are instead of refusing invalid UTF-8"),
        ARG_SM("tokenizer", &tokenizer, "SPEC", "bytes, words (hashed words, 16384 buckets) or words:BUCKETS"),
        ARG_IR("max-len", &max_len, "tokens per sentence ([CLS] + tokens)", 2, 100000),
        ARG_IR("d-model", &d_model, "encoder width", 1, 65536),
        ARG_IR("n-heads", &n_heads, "attention heads", 1, 65536),
        ARG_IR("n-layers", &n_layers, "encoder blocks", 0, 64),
        ARG_IR("d-ff", &d_ff, "feed-forward width (0 = 4 x d-model)", 0, 1 << 20),
        ARG_S("pool", &pool, "pooled representation: first ([CLS] token) or mean"),
        ARG_DR("dropout", &dropout, "dropout rate", 0, 0.95),
        ARG_DR("lr", &lr, "AdamW learning rate", 1e-12, 1e3),
        ARG_DR("weight-decay", &wd, "AdamW weight decay of the weight matrices", 0, 10),
        ARG_IR("epochs", &c.epochs, "epochs (N / batch-size steps each)", 1, 1000000),
        ARG_IR("batch-size", &c.batch_size, "examples per step (expected, under Poisson sampling)", 1, 1 << 20),
        ARG_LR("seed", &seed, "random seed (initialisation, order, dropout)", 0, 9.2e18),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
        ARG_F("dp", &dp, "DP-SGD: per-example clipping of the whole gradient (privacy unit: one sentence)"),
        ARG_F("dpfp", &dpfp, "DP-FP: clip and noise the pooled representation (epsilon does NOT cover the weights)"),
        ARG_DR("noise-multiplier", &sigma, "sigma (DP-SGD: gradient noise / C; DP-FP: representation noise / dpfp-clip)", 0, 1e6),
        ARG_DR("target-epsilon", &c.dp.target_epsilon, "calibrate sigma for the planned run", 1e-6, 1e6),
        ARG_DR("delta", &c.dp.delta, "delta of the guarantee (and of the bound)", 1e-300, 0.999999),
        ARG_DR("max-grad-norm", &c.dp.max_grad_norm, "DP-SGD: per-example clipping norm", 1e-12, 1e12),
        ARG_S("clip-mode", &clip_mode, "DP-SGD: auto, ghost, phantom or naive"),
        ARG_DR("dpfp-clip", &c.dpfp_clip, "DP-FP: clip norm of the pooled representation", 1e-12, 1e12),
        ARG_IR("micro-batches", &c.micro_batches, "DP-FP: independent Poisson micro-batches per step (M)", 1, 1 << 16),
        ARG_IR("max-physical-batch", &c.dp.max_physical_batch, "DP: examples processed at once (memory bound)", 1, 1 << 20),
        ARG_S("accountant", &accountant, "rdp or pld"),
        ARG_F("seeded-noise", &c.dp.seeded_noise, "noise and inclusion bits from --seed (testing only: NOT private)"),
        ARG_F("no-progress", &no_progress, "plain epoch lines instead of a progress bar"),
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
    if (dp && dpfp) {
        fprintf(stderr, AUDIT_CMD ": choose one of --dp (DP-SGD) and --dpfp\n");
        return 2;
    }
    c.mode = dp ? DP_TEXT_DPSGD : dpfp ? DP_TEXT_DPFP : DP_TEXT_NONPRIVATE;
    if (c.mode != DP_TEXT_NONPRIVATE && sigma < 0 && c.dp.target_epsilon == 0) {
        fprintf(stderr, AUDIT_CMD ": --%s needs --target-epsilon or --noise-multiplier\n", dp ? "dp" : "dpfp");
        return 2;
    }
    {
        /* a flag of another mode would be ignored: refused, naming it, as train-text does */
        static const char *const dp_any[] = {"noise-multiplier", "target-epsilon", "delta", "accountant",
                                             "max-physical-batch", "seeded-noise", NULL};
        static const char *const dpsgd[] = {"max-grad-norm", "clip-mode", NULL};
        static const char *const dpfp_only[] = {"dpfp-clip", "micro-batches", NULL};
        const char *x;
        if (c.mode == DP_TEXT_NONPRIVATE && (x = args_first_seen(specs, n, dp_any))) {
            fprintf(stderr, AUDIT_CMD ": --%s is a privacy flag: privacy flags need --dp or --dpfp\n", x);
            return 2;
        }
        if (c.mode != DP_TEXT_DPSGD && (x = args_first_seen(specs, n, dpsgd))) {
            fprintf(stderr, AUDIT_CMD ": --%s is a DP-SGD flag: DP-SGD flags need --dp%s\n", x,
                    dpfp ? " (this run is DP-FP, whose clip norm is --dpfp-clip)" : "");
            return 2;
        }
        if (c.mode != DP_TEXT_DPFP && (x = args_first_seen(specs, n, dpfp_only))) {
            fprintf(stderr, AUDIT_CMD ": --%s is a DP-FP flag: DP-FP flags need --dpfp%s\n", x,
                    dp ? " (this run is DP-SGD, whose clip norm is --max-grad-norm)" : "");
            return 2;
        }
    }
    if (sigma == 0 && c.dp.target_epsilon > 0) {
        fprintf(stderr, AUDIT_CMD ": --noise-multiplier 0 gives no privacy, so no --target-epsilon can be met\n");
        return 2;
    }
    if (dp_tokenizer_parse(tokenizer, &c.tokenizer, &err)) {
        fprintf(stderr, AUDIT_CMD ": --tokenizer: %s\n", err.msg);
        return 2;
    }
    if (strcmp(pool, "first") == 0) c.model.pool = DP_POOL_FIRST;
    else if (strcmp(pool, "mean") == 0) c.model.pool = DP_POOL_MEAN;
    else {
        fprintf(stderr, AUDIT_CMD ": --pool: unknown pooling '%s' (first or mean)\n", pool);
        return 2;
    }
    if (strcmp(accountant, "rdp") == 0) c.dp.accountant = DP_ACCOUNTANT_RDP;
    else if (strcmp(accountant, "pld") == 0) c.dp.accountant = DP_ACCOUNTANT_PLD;
    else {
        fprintf(stderr, AUDIT_CMD ": --accountant: unknown accountant '%s' (rdp or pld)\n", accountant);
        return 2;
    }
    if (dp_clip_mode_parse(clip_mode, &c.dp.clip_mode)) {
        fprintf(stderr, AUDIT_CMD ": --clip-mode: unknown mode '%s' (auto, ghost, phantom or naive)\n", clip_mode);
        return 2;
    }
    if (d_model % n_heads != 0) {
        fprintf(stderr, AUDIT_CMD ": --d-model %d is not divisible by --n-heads %d\n", d_model, n_heads);
        return 2;
    }
    if (!ao.canary_len) ao.canary_len = DP_MIN(TEXT_CANARY_LEN, max_len - 1);
    if (ao.canary_len > max_len - 1) {
        fprintf(stderr, AUDIT_CMD ": --canary-len %d: a canary must fit the window of --max-len %d ([CLS] + at most %d "
                        "tokens)\n", ao.canary_len, max_len, max_len - 1);
        return 2;
    }
    c.model.n_items = dp_tokenizer_vocab(&c.tokenizer) - 1;
    c.dp.enabled = c.mode != DP_TEXT_NONPRIVATE;
    c.dp.noise_multiplier = sigma > 0 ? sigma : 0;
    c.model.max_len = max_len;
    c.model.d_model = d_model;
    c.model.n_heads = n_heads;
    c.model.n_layers = n_layers;
    c.model.d_ff = d_ff;
    c.model.dropout = (float)dropout;
    c.model.n_classes = classes;
    c.optim.lr = lr;
    c.optim.weight_decay = wd;
    c.seed = (uint64_t)seed;
    c.keep_last = 1; /* no dev set: the last epoch, in every mode */
    c.out_dir = ao.out;
    c.progress = no_progress ? 0 : (isatty(fileno(stderr)) ? 1 : 0);
    c.train_desc = train;
    ops_set_threads(threads);

    dp_text_options opt;
    dp_text_options_default(&opt);
    opt.label_column = label_col;
    opt.text_column = text_col;
    opt.n_classes = classes;
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
    /* the inclusion bits: secret, from the secure generator (seeded only with --seeded-noise, for tests) */
    rng = c.dp.seeded_noise ? dp_rng_create_seeded(dp_mix64((uint64_t)seed ^ 0x61756469745f7478ULL))
                            : dp_rng_create_secure(&err);
    if (!rng) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (dp_audit_text_canaries_make(&can, ao.canaries, ao.canary_len, &c.tokenizer, classes, rng, &err) ||
        dp_audit_text_dataset(&base, &can, &ds, &err) || dp_text_plan_check(&c, ds.n, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        goto done;
    }
    if (c.mode == DP_TEXT_NONPRIVATE || (c.dp.noise_multiplier == 0 && c.dp.target_epsilon == 0))
        fprintf(stderr, AUDIT_CMD ": warning: this run has no privacy guarantee (%s): the audit measures how much it "
                        "leaks\n", c.mode == DP_TEXT_NONPRIVATE ? "neither --dp nor --dpfp" : "noise multiplier 0");
    if (c.mode == DP_TEXT_DPFP)
        fprintf(stderr, AUDIT_CMD ": note: DP-FP's epsilon covers only the noised representations released during "
                        "training, not the trained weights this audit attacks; a bound above it is reported, not a "
                        "violation\n");
    if (c.dp.seeded_noise)
        fprintf(stderr, AUDIT_CMD ": warning: --seeded-noise: the noise and the inclusion bits come from --seed (for "
                        "tests; NOT private, and the bits are not secret)\n");
    fprintf(stderr, AUDIT_CMD ": %lld sentences + %lld of %d canaries (%d tokens each, random labels over %d classes)\n",
            (long long)base.n, (long long)(ds.n - base.n), ao.canaries, ao.canary_len, classes);
    const double t0 = dp_now();
    dp_text_train_result res;
    if (dp_text_train(&c, &ds, NULL, NULL, &m, &res, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    /* the reference: the trained model's configuration and seed, untrained (the loop's initialisation) */
    if (!(ref = dp_model_create(dp_model_config_of(m), dp_model_max_batch(m), c.seed, &err))) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
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
