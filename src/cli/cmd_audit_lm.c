/* `dpformer audit --task lm`: the audit of docs/audit.md on a GPT-2-family language model trained as
 * `dpformer train-lm` trains it (dp_lm_train, with the same flags: non-private or DP-SGD). Canaries
 * are examples of random tokens (framed by <|endoftext|> as every example is); each canary's score is
 * how much training lowered its loss. The flags are train-lm's, without --dev, --test, model
 * selection and checkpoints (the last epoch is kept, as in any private run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/audit_cli.h"
#include "core/common.h"
#include "dpformer/audit.h"
#include "dpformer/lmtrain.h"
#include "ops/ops.h"

/* Random tokens per canary when --canary-len is not given (at most the context without the two
 * <|endoftext|>). */
#define LM_CANARY_LEN 16

int cmd_audit_lm(int argc, char **argv) {
    dp_lm_train_config c = dp_lm_train_config_default(50257);
    audit_opts ao;
    audit_opts_defaults(&ao, "runs/audit-lm");
    const char *train = NULL, *tokenizer = NULL, *column = NULL, *accountant = "rdp", *clip_mode = "auto";
    const char *schedule = "constant", *device_s = "cpu";
    int max_len = c.model.max_len, d_model = c.model.d_model, n_heads = c.model.n_heads, n_layers = c.model.n_layers;
    int d_ff = 0, untied = 0, dp = 0, threads = 0, no_progress = 0;
    double dropout = c.model.dropout, lr = c.optim.lr, wd = 0, sigma = -1, min_lr_ratio = c.optim.min_lr_ratio;
    int64_t seed = 1, warmup = 0;
    dp_error err;
    arg_spec specs[] = {
        ARG_SM("train", &train, "FILE", "training text the canaries join: one example a line (required)"),
        ARG_SM("column", &column, "NAME", "read the texts from this column of .tsv/.csv files with a header line"),
        ARG_SM("tokenizer", &tokenizer, "DIR", "GPT-2 BPE tokenizer files (encoder.json + vocab.bpe); required"),
        ARG_IR("max-len", &max_len, "context: tokens per example, <|endoftext|> on both sides included", 2, 100000),
        ARG_IR("d-model", &d_model, "width", 1, 65536),
        ARG_IR("n-heads", &n_heads, "attention heads", 1, 65536),
        ARG_IR("n-layers", &n_layers, "transformer blocks", 0, 256),
        ARG_IR("d-ff", &d_ff, "feed-forward width (0 = 4 x d-model)", 0, 1 << 20),
        ARG_F("untied", &untied, "a separate output layer instead of the token embedding"),
        ARG_DR("dropout", &dropout, "dropout rate", 0, 0.95),
        ARG_DR("lr", &lr, "AdamW learning rate", 1e-12, 1e3),
        ARG_DR("weight-decay", &wd, "AdamW weight decay of the weight matrices", 0, 10),
        ARG_S("schedule", &schedule, "learning-rate schedule: constant, warmup or cosine"),
        ARG_LR("warmup-steps", &warmup, "linear warm-up steps (warmup, cosine)", 0, 1e12),
        ARG_DR("min-lr-ratio", &min_lr_ratio, "cosine: final lr as a fraction of --lr", 0, 1),
        ARG_IR("epochs", &c.epochs, "epochs (N / batch-size steps each)", 1, 1000000),
        ARG_IR("batch-size", &c.batch_size, "examples per step (expected, under Poisson sampling)", 1, 1 << 20),
        ARG_LR("seed", &seed, "random seed (initialisation, order, dropout)", 0, 9.2e18),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
        ARG_S("device", &device_s, "where the model runs: cpu or cuda"),
        ARG_F("dp", &dp, "DP-SGD: per-example clipping and Gaussian noise (privacy unit: one line)"),
        ARG_DR("noise-multiplier", &sigma, "sigma: gradient noise / max-grad-norm", 0, 1e6),
        ARG_DR("target-epsilon", &c.dp.target_epsilon, "calibrate sigma for the planned run", 1e-6, 1e6),
        ARG_DR("delta", &c.dp.delta, "delta of the guarantee (and of the bound)", 1e-300, 0.999999),
        ARG_DR("max-grad-norm", &c.dp.max_grad_norm, "per-example clipping norm", 1e-12, 1e12),
        ARG_S("clip-mode", &clip_mode, "auto, ghost, phantom or naive"),
        ARG_DR("sample-rate", &c.dp.sample_rate, "Poisson rate q (default: batch-size / examples)", 1e-12, 1),
        ARG_IR("max-physical-batch", &c.dp.max_physical_batch, "DP: examples processed at once (memory bound)", 1, 1 << 20),
        ARG_S("accountant", &accountant, "rdp or pld"),
        ARG_F("seeded-noise", &c.dp.seeded_noise, "noise and inclusion bits from --seed (testing only: NOT private)"),
        ARG_F("no-progress", &no_progress, "plain epoch lines instead of a progress bar"),
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
    if (!train || !tokenizer) {
        fprintf(stderr, AUDIT_CMD ": --task lm needs --train FILE and --tokenizer DIR (see --task lm --help)\n");
        return 2;
    }
    if (dp && sigma < 0 && c.dp.target_epsilon == 0) {
        fprintf(stderr, AUDIT_CMD ": --dp needs --target-epsilon or --noise-multiplier\n");
        return 2;
    }
    {
        static const char *const dp_any[] = {"noise-multiplier", "target-epsilon", "delta", "accountant", "max-grad-norm",
                                             "clip-mode", "sample-rate", "max-physical-batch", "seeded-noise", NULL};
        const char *x;
        if (!dp && (x = args_first_seen(specs, n, dp_any))) {
            fprintf(stderr, AUDIT_CMD ": --%s is a privacy flag: privacy flags need --dp\n", x);
            return 2;
        }
    }
    if (sigma == 0 && c.dp.target_epsilon > 0) {
        fprintf(stderr, AUDIT_CMD ": --noise-multiplier 0 gives no privacy, so no --target-epsilon can be met\n");
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
    if (dp_schedule_kind_parse(schedule, &c.optim.schedule)) {
        fprintf(stderr, AUDIT_CMD ": --schedule: unknown schedule '%s' (constant, warmup or cosine)\n", schedule);
        return 2;
    }
    if (d_model % n_heads != 0) {
        fprintf(stderr, AUDIT_CMD ": --d-model %d is not divisible by --n-heads %d\n", d_model, n_heads);
        return 2;
    }
    if (!ao.canary_len) ao.canary_len = DP_MIN(LM_CANARY_LEN, max_len - 2);
    if (ao.canary_len > max_len - 2) {
        fprintf(stderr, AUDIT_CMD ": --canary-len %d: a canary must fit the context of --max-len %d (<|endoftext|> on "
                        "both sides and at most %d tokens)\n", ao.canary_len, max_len, max_len - 2);
        return 2;
    }
    if (args_device(AUDIT_CMD, device_s, &c.device)) return 2;
    dp_bpe *tok = dp_bpe_load(tokenizer, &err);
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
        fprintf(stderr, AUDIT_CMD ": --tokenizer %s has no <|endoftext|> token\n", tokenizer);
        goto done;
    }
    dp_model_config mc = dp_lm_config_default(dp_bpe_vocab_size(tok), max_len);
    mc.d_model = d_model;
    mc.n_heads = n_heads;
    mc.n_layers = n_layers;
    mc.d_ff = d_ff;
    mc.tied = !untied;
    mc.dropout = (float)dropout;
    if (dp_model_config_validate(&mc, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        goto done;
    }
    c.model = mc;
    c.dpsgd = dp;
    c.dp.enabled = dp;
    c.dp.noise_multiplier = sigma > 0 ? sigma : 0;
    c.optim.lr = lr;
    c.optim.weight_decay = wd;
    c.optim.warmup_steps = warmup;
    c.optim.min_lr_ratio = min_lr_ratio;
    c.seed = (uint64_t)seed;
    c.keep_last = 1; /* no dev set: the last epoch, in every mode */
    c.out_dir = ao.out;
    c.progress = no_progress ? 0 : (isatty(fileno(stderr)) ? 1 : 0);
    c.tokenizer_desc = tokenizer;
    c.train_desc = train;
    c.column = column;
    ops_set_threads(threads);
    if (dp_lm_texts_load(&tx, train, column, &err)) {
        fprintf(stderr, AUDIT_CMD ": --train: %s\n", err.msg);
        goto done;
    }
    if (tx.n == 0) {
        fprintf(stderr, AUDIT_CMD ": --train %s has no text\n", train);
        goto done;
    }
    if (dp_lm_corpus_encode(&base, tok, eot, &tx, max_len, &err)) {
        fprintf(stderr, AUDIT_CMD ": --train %s: %s\n", train, err.msg);
        goto done;
    }
    /* the inclusion bits: secret, from the secure generator (seeded only with --seeded-noise, for tests) */
    rng = c.dp.seeded_noise ? dp_rng_create_seeded(dp_mix64((uint64_t)seed ^ 0x61756469745f6c6dULL))
                            : dp_rng_create_secure(&err);
    if (!rng) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (dp_audit_lm_canaries_make(&can, ao.canaries, ao.canary_len, dp_bpe_vocab_size(tok), eot, rng, &err) ||
        dp_audit_lm_corpus(&base, &can, &corpus, &err) || dp_lm_plan_check(&c, corpus.n, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        goto done;
    }
    if (!dp || (c.dp.noise_multiplier == 0 && c.dp.target_epsilon == 0))
        fprintf(stderr, AUDIT_CMD ": warning: this run has no privacy guarantee (%s): the audit measures how much it "
                        "leaks\n", dp ? "noise multiplier 0" : "no --dp");
    if (c.dp.seeded_noise)
        fprintf(stderr, AUDIT_CMD ": warning: --seeded-noise: the noise and the inclusion bits come from --seed (for "
                        "tests; NOT private, and the bits are not secret)\n");
    fprintf(stderr, AUDIT_CMD ": %lld examples + %lld of %d canaries (%d random tokens each) over %d tokens\n",
            (long long)base.n, (long long)(corpus.n - base.n), ao.canaries, ao.canary_len, dp_bpe_vocab_size(tok));
    const double t0 = dp_now();
    dp_lm_train_result res;
    if (dp_lm_train(&c, &corpus, NULL, NULL, &m, &res, &err)) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    /* the reference: the trained model's configuration and seed, untrained, on its device */
    if (!(ref = dp_model_create_on(dp_model_config_of(m), dp_model_max_batch(m), c.seed, c.device, &err))) {
        fprintf(stderr, AUDIT_CMD ": %s\n", err.msg);
        rc = 1;
        goto done;
    }
    scores = dp_malloc(sizeof(double) * (size_t)ao.canaries);
    dp_audit_lm_scores(m, ref, &can, scores);
    char desc[64];
    snprintf(desc, sizeof desc, "%d random tokens each", ao.canary_len);
    audit_run run = {
        .task = "lm",
        .mode = dp ? "dp-sgd" : "non-private",
        .canary_desc = desc,
        .claim = dp && res.noise_multiplier > 0,
        .covers_weights = 1,
        .epsilon = res.epsilon,
        .delta = dp ? c.dp.delta : 1e-6,
        .noise_multiplier = dp ? res.noise_multiplier : 0,
        .clip = dp ? c.dp.max_grad_norm : 0,
        .dp_steps = dp ? res.dp_steps : 0,
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
