/* `dpformer audit --task lm`: the audit of docs/audit.md on a GPT-2-family language model trained as
 * `dpformer train-lm` trains it (dp_lm_train, with the same flags: non-private or DP-SGD). Canaries
 * are examples of random tokens (framed by <|endoftext|> as every example is); each canary's score is
 * how much training lowered its loss. The flags are train-lm's, without --dev, --test, model
 * selection and checkpoints (the last epoch is kept, as in any private run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/audit_cli.h"
#include "cli/task_flags.h"
#include "core/common.h"
#include "dpformer/audit.h"
#include "dpformer/lmtrain.h"

/* Random tokens per canary when --canary-len is not given (at most the context without the two
 * <|endoftext|>). */
#define LM_CANARY_LEN 16

int cmd_audit_lm(int argc, char **argv) {
    dp_lm_train_config c = dp_lm_train_config_default(50257);
    lm_flags f;
    lm_flags_defaults(&f, &c);
    audit_opts ao;
    audit_opts_defaults(&ao, "runs/audit-lm");
    const char *train = NULL;
    dp_error err;
    arg_spec specs[] = {
        ARG_SM("train", &train, "FILE", "training text the canaries join: one example a line (required)"),
        ARG_SM("column", &f.column, "NAME", "read the texts from this column of .tsv/.csv files with a header line"),
        ARG_SM("tokenizer", &f.tokenizer, "DIR", "GPT-2 BPE tokenizer files (encoder.json + vocab.bpe); required"),
        ARG_IR("max-len", &f.r.max_len, "context: tokens per example, <|endoftext|> on both sides included", 2, 100000),
        LM_SHAPE_SPECS(&f),
        ARG_F("untied", &f.untied, "a separate output layer instead of the token embedding"),
        LM_OPTIM_SPECS(&f, &c),
        ARG_F("dp", &f.dp, "DP-SGD: per-example clipping and Gaussian noise (privacy unit: one line)"),
        ARG_DR("noise-multiplier", &f.r.sigma, "sigma: gradient noise / max-grad-norm", 0, 1e6),
        ARG_DR("target-epsilon", &c.dp.target_epsilon, "calibrate sigma for the planned run", 1e-6, 1e6),
        ARG_DR("delta", &c.dp.delta, "delta of the guarantee (and of the bound)", 1e-300, 0.999999),
        LM_DP_SPECS(&f, &c),
        ARG_F("seeded-noise", &c.dp.seeded_noise, "noise and inclusion bits from --seed (testing only: NOT private)"),
        ARG_F("no-progress", &f.r.no_progress, "plain epoch lines instead of a progress bar"),
        {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0},
    };
    const int n = (int)(sizeof specs / sizeof specs[0]);
    audit_specs(&ao, specs + n - AUDIT_SPEC_COUNT, "random tokens per canary (default 16, at most --max-len - 2)");
    int rc = args_parse(AUDIT_CMD " --task lm",
                        "Audit a GPT-2-family language model trained as train-lm trains it (non-private or --dp):\n"
                        "plant canaries (examples of random tokens, each included with probability 1/2 by the secure\n"
                        "generator), train, score every canary by how much training lowered its loss, and report a\n"
                        "lower bound on epsilon (Steinke, Nasr, Jagielski 2023), the membership-inference AUC and TPR\n"
                        "at low FPR, next to the accountant's epsilon. Exit status 3 if the bound exceeds it. See\n"
                        "docs/audit.md.",
                        specs, n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (strcmp(ao.task, "lm") != 0) {
        fprintf(stderr, AUDIT_CMD ": --task: unknown task '%s' (rec, text or lm)\n", ao.task);
        return 2;
    }
    if (audit_check_opts(&ao)) return 2;
    if (!train || !f.tokenizer) {
        fprintf(stderr, AUDIT_CMD ": --task lm needs --train FILE and --tokenizer DIR (see --task lm --help)\n");
        return 2;
    }
    /* the flags are checked as train-lm checks them */
    if (lm_flags_check(AUDIT_CMD, &f, specs, n, &c)) return 2;
    if (!ao.canary_len) ao.canary_len = DP_MIN(LM_CANARY_LEN, f.r.max_len - 2);
    if (ao.canary_len > f.r.max_len - 2) {
        fprintf(stderr, AUDIT_CMD ": --canary-len %d: a canary must fit the context of --max-len %d (<|endoftext|> on "
                        "both sides and at most %d tokens)\n", ao.canary_len, f.r.max_len, f.r.max_len - 2);
        return 2;
    }
    if (args_device(AUDIT_CMD, f.device, &c.device)) return 2;
    dp_bpe *tok = dp_bpe_load(f.tokenizer, &err);
    if (!tok) {
        fprintf(stderr, AUDIT_CMD ": --tokenizer: %s\n", err.msg);
        return 2;
    }
    dp_lm_texts tx = {0};
    dp_lm_corpus base = {0}, corpus = {0};
    dp_audit_lm_canaries can = {0};
    dp_model *m = NULL, *ref = NULL;
    double *scores = NULL;
    dp_rng *rng = NULL;
    rc = 2;
    const int32_t eot = dp_bpe_token_id(tok, "<|endoftext|>");
    if (eot < 0) {
        fprintf(stderr, AUDIT_CMD ": --tokenizer %s has no <|endoftext|> token\n", f.tokenizer);
        goto done;
    }
    dp_model_config mc = dp_lm_config_default(dp_bpe_vocab_size(tok), f.r.max_len);
    lm_flags_shape(&f, &mc);
    if (dp_model_config_validate(&mc, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        goto done;
    }
    lm_flags_config(&f, &mc, &c);
    c.keep_last = 1; /* no dev set: the last epoch, in every mode */
    c.out_dir = ao.out;
    c.train_desc = train;
    if (dp_lm_texts_load(&tx, train, f.column, &err)) {
        fprintf(stderr, AUDIT_CMD ": --train: %s\n", err.msg);
        goto done;
    }
    if (tx.n == 0) {
        fprintf(stderr, AUDIT_CMD ": --train %s has no text\n", train);
        goto done;
    }
    if (dp_lm_corpus_encode(&base, tok, eot, &tx, f.r.max_len, &err)) {
        fprintf(stderr, AUDIT_CMD ": --train %s: %s\n", train, err.msg);
        goto done;
    }
    if (!(rng = audit_rng(c.dp.seeded_noise, f.r.seed, 0x61756469745f6c6dULL))) {
        rc = 1;
        goto done;
    }
    if (dp_audit_lm_canaries_make(&can, ao.canaries, ao.canary_len, dp_bpe_vocab_size(tok), eot, rng, &err) ||
        dp_audit_lm_corpus(&base, &can, &corpus, &err) || dp_lm_plan_check(&c, corpus.n, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        goto done;
    }
    const int no_noise = c.dp.noise_multiplier == 0 && c.dp.target_epsilon == 0;
    audit_warn(!f.dp ? "no --dp" : no_noise ? "noise multiplier 0" : NULL, NULL, c.dp.seeded_noise);
    fprintf(stderr, AUDIT_CMD ": %lld examples + %lld of %d canaries (%d random tokens each) over %d tokens\n",
            (long long)base.n, (long long)(corpus.n - base.n), ao.canaries, ao.canary_len, dp_bpe_vocab_size(tok));
    const double t0 = dp_now();
    dp_lm_train_result res;
    if (dp_lm_train(&c, &corpus, NULL, NULL, &m, &res, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (!(ref = audit_reference(dp_model_config_of(m), m, c.seed, c.device))) {
        rc = 1;
        goto done;
    }
    scores = dp_malloc(sizeof(double) * (size_t)ao.canaries);
    dp_audit_lm_scores(m, ref, &can, scores);
    char desc[64];
    snprintf(desc, sizeof desc, "%d random tokens each", ao.canary_len);
    audit_run run = {
        .task = "lm",
        .mode = f.dp ? "dp-sgd" : "non-private",
        .canary_desc = desc,
        .claim = f.dp && res.noise_multiplier > 0,
        .covers_weights = 1,
        .epsilon = res.epsilon,
        .delta = f.dp ? c.dp.delta : 1e-6,
        .noise_multiplier = f.dp ? res.noise_multiplier : 0,
        .clip = f.dp ? c.dp.max_grad_norm : 0,
        .dp_steps = f.dp ? res.dp_steps : 0,
        .seeded = c.dp.seeded_noise,
    };
    rc = audit_finish(&ao, &run, scores, can.included, ao.canaries, t0);
done:
    free(scores);
    dp_model_free(ref);
    dp_model_free(m);
    dp_audit_lm_canaries_free(&can);
    dp_lm_corpus_free(&corpus);
    dp_lm_corpus_free(&base);
    dp_lm_texts_free(&tx);
    dp_bpe_free(tok);
    dp_rng_free(rng);
    return rc;
}
