/* `dpformer demo`: the built-in default job. Generates a synthetic long-tailed sequence dataset
 * (no download, no external data), trains the Transformer recommender twice -- without privacy and
 * with DP-SGD at a target epsilon -- and prints NDCG@10 of both next to the popularity baseline, with
 * the privacy guarantee and what it covers. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/train_checks.h"
#include "cli/train_flags.h"
#include "core/common.h"

static int train_one(const char *cmd, const dp_dataset *ds, dp_train_config *cfg, const char *out, const char *sub,
                     dp_train_result *res) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", out, sub);
    cfg->out_dir = dir;
    dp_model *m = NULL;
    dp_error err;
    if (dp_train(ds, cfg, &m, res, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        return 1;
    }
    dp_model_free(m);
    return 0;
}

int cmd_demo(int argc, char **argv) {
    const char *cmd = "dpformer demo";
    train_flags tf;
    train_flags_defaults(&tf);
    tf.max_len = 20;
    tf.epochs = 4;
    tf.batch_size = 256;
    tf.dropout = 0.1;
    tf.lr = 3e-3;
    tf.dp = 1;
    tf.target_epsilon = 8;
    tf.delta = 1e-6;
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    int users = 16000, items = sc.n_items, dp_epochs = 5, dp_batch = 1024, no_private = 0, no_nonprivate = 0;
    double dp_lr = 5e-3;
    const char *out = "runs/demo";
    arg_spec specs[TRAIN_FLAG_COUNT + 9];
    train_flags_specs(&tf, specs);
    for (int i = 0; i < TRAIN_FLAG_COUNT; i++)
        if (strcmp(specs[i].name, "dp") == 0)
            specs[i].help = "refused: the demo always trains a DP-SGD model too (the DP flags set it; --no-private skips it)";
    arg_spec extra[] = {
        ARG_IR("users", &users, "synthetic users (the privacy unit: one user)", 10, 10000000),
        ARG_IR("items", &items, "synthetic items", 10, 10000000),
        ARG_IR("dp-epochs", &dp_epochs, "epochs of the private model", 1, 100000),
        ARG_IR("dp-batch-size", &dp_batch, "expected batch size of the private model", 1, 1 << 20),
        ARG_DR("dp-lr", &dp_lr, "learning rate of the private model", 1e-12, 1e3),
        ARG_F("no-private", &no_private, "skip the private model"),
        ARG_F("no-nonprivate", &no_nonprivate, "skip the non-private model"),
        ARG_SM("out", &out, "DIR", "output folder (nonprivate/ and private/ below it)"),
        ARG_F("no-progress", &tf.no_progress, "plain epoch lines instead of a progress bar (as when stderr is not a terminal)"),
    };
    memcpy(specs + TRAIN_FLAG_COUNT, extra, sizeof extra);
    int rc = args_parse(cmd,
                        "Train on a built-in synthetic long-tailed dataset (Zipf popularity, learnable transitions)\n"
                        "without privacy and with DP-SGD (default target epsilon 8, delta 1e-6), and compare test\n"
                        "NDCG@10 with the popularity baseline. Needs no data. The shared flags set the non-private\n"
                        "run; the DP flags and --dp-* set the private one.",
                        specs, TRAIN_FLAG_COUNT + 9, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    const int n = TRAIN_FLAG_COUNT + 9;
    if (args_seen(specs, n, "dp")) {
        fprintf(stderr, "%s: --dp: the demo always trains a DP-SGD model (after the non-private one; "
                        "--no-nonprivate trains only the private one, --no-private only the non-private one)\n", cmd);
        return 2;
    }
    if (no_private && no_nonprivate) {
        fprintf(stderr, "%s: --no-private and --no-nonprivate leave nothing to train\n", cmd);
        return 2;
    }
    /* the DP flags set the private run: refused when it is skipped (and the Re-Attention ones without
     * --reattention) rather than ignored */
    tf.dp = !no_private;
    if (train_refuse_ignored_flags(cmd, &tf, specs, n, "it sets the private run, which --no-private skips")) return 2;
    static const char *const private_run[] = {"dp-epochs", "dp-batch-size", "dp-lr", "reattention", NULL};
    static const char *const nonprivate_run[] = {"epochs", "batch-size", "lr", NULL};
    const char *x;
    if (no_private && (x = args_first_seen(specs, n, private_run))) {
        fprintf(stderr, "%s: --%s sets the private run, which --no-private skips\n", cmd, x);
        return 2;
    }
    if (no_nonprivate && (x = args_first_seen(specs, n, nonprivate_run))) {
        fprintf(stderr, "%s: --%s sets the non-private run, which --no-nonprivate skips (the private run's is --dp-%s)\n",
                cmd, x, x);
        return 2;
    }
    const int reattention = tf.reattention;
    tf.reattention = 0;
    tf.dp = 0; /* the flags describe the non-private run; privacy settings are applied below */
    double target = tf.target_epsilon, noise = tf.noise_multiplier;
    tf.target_epsilon = 0;
    tf.noise_multiplier = -1;
    int seeded = tf.seeded_noise;
    tf.seeded_noise = 0;
    dp_train_config cfg;
    if ((rc = train_flags_to_config(cmd, &tf, &cfg))) return rc;
    sc.n_users = users;
    sc.n_items = items;
    sc.seed = (uint64_t)tf.seed;
    dp_dataset ds;
    dp_dataset_synthetic(&ds, &sc);
    cfg.model.n_items = ds.n_items;
    cfg.data_desc = "synthetic";
    dp_train_config chk = cfg; /* the private run reads --item-freq public:FILE: checked before any training */
    chk.dp.enabled = !no_private;
    chk.dp.reattention = reattention;
    if ((rc = train_check_item_freq_file(cmd, &chk, ds.n_items))) {
        dp_dataset_free(&ds);
        return rc;
    }
    printf("dpformer demo: synthetic data, %d users, %d items, %lld interactions (Zipf %.1f, transitions %.0f%%)\n",
           ds.n_users, ds.n_items, (long long)ds.n_interactions, sc.zipf_s, 100 * sc.p_transition);
    printf("model: d %d, %d layers, %d heads, L %d, %s\n\n", cfg.model.d_model, cfg.model.n_layers,
           cfg.model.n_heads, cfg.model.max_len, cfg.model.tied ? "tied item embedding" : "separate output layer");
    fflush(stdout);
    double t0 = dp_now();
    dp_train_result np = {0}, pr = {0};
    if (!no_nonprivate) {
        printf("[1/2] non-private: %d epochs, batch %d, lr %g\n", cfg.epochs, cfg.batch_size, cfg.optim.lr);
        fflush(stdout);
        if (train_one(cmd, &ds, &cfg, out, "nonprivate", &np)) goto fail;
    }
    dp_train_config pc = cfg;
    if (!no_private) {
        pc.dp.enabled = 1;
        pc.dp.target_epsilon = noise >= 0 ? 0 : target;
        pc.dp.noise_multiplier = noise >= 0 ? noise : 0;
        pc.dp.seeded_noise = seeded;
        pc.dp.reattention = reattention;
        pc.epochs = dp_epochs;
        pc.batch_size = dp_batch;
        pc.optim.lr = dp_lr;
        /* as in `train --dp`: the last epoch is kept (covered by epsilon) unless --select-best */
        pc.keep_last = tf.keep_last || !tf.select_best;
        printf("[2/2] DP-SGD: %d epochs, expected batch %d, lr %g, max grad norm %g, clip mode %s%s\n", pc.epochs,
               pc.batch_size, pc.optim.lr, pc.dp.max_grad_norm, dp_clip_mode_name(pc.dp.clip_mode),
               reattention ? ", Re-Attention" : "");
        fflush(stdout);
        if (train_one(cmd, &ds, &pc, out, "private", &pr)) goto fail;
    }
    dp_rank_metrics pop;
    dp_popularity_eval(&ds, DP_SPLIT_TEST, cfg.exclude_seen, &pop);
    printf("\ntest split, full ranking over %d items (%.0f s in all):\n", ds.n_items, dp_now() - t0);
    printf("  %-28s %-24s %-9s %s\n", "model", "privacy", "NDCG@10", "HR@10");
    printf("  %-28s %-24s %-9.4f %.4f\n", "popularity baseline", "-", pop.ndcg10, pop.hr10);
    if (!no_nonprivate)
        printf("  %-28s %-24s %-9.4f %.4f\n", "Transformer, non-private", "none", np.test.ndcg10, np.test.hr10);
    if (!no_private) {
        char eps[64];
        if (pr.noise_multiplier > 0) snprintf(eps, sizeof eps, "eps %.2f, delta %g", pr.epsilon, pr.delta);
        else snprintf(eps, sizeof eps, "NONE (sigma 0)");
        printf("  %-28s %-24s %-9.4f %.4f\n", "Transformer, DP-SGD", eps, pr.test.ndcg10, pr.test.hr10);
        printf("\n");
        print_privacy(stdout, &pc, &pr);
    }
    printf("outputs in %s/\n", out);
    dp_dataset_free(&ds);
    return 0;
fail:
    dp_dataset_free(&ds);
    return 1;
}
