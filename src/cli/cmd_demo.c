/* `dpformer demo`: the built-in default job. Generates a synthetic long-tailed sequence dataset
 * (no download, no external data), trains the Transformer for about a minute and compares its test
 * NDCG@10 with the popularity baseline. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/train_flags.h"
#include "core/common.h"

int cmd_demo(int argc, char **argv) {
    const char *cmd = "dpformer demo";
    train_flags tf;
    train_flags_defaults(&tf);
    tf.max_len = 20;
    tf.epochs = 12;
    tf.batch_size = 128;
    tf.dropout = 0.1;
    tf.lr = 2e-3;
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    int users = sc.n_users, items = sc.n_items;
    const char *out = "runs/demo";
    arg_spec specs[TRAIN_FLAG_COUNT + 4];
    train_flags_specs(&tf, specs);
    arg_spec extra[] = {
        ARG_IR("users", &users, "synthetic users", 10, 10000000),
        ARG_IR("items", &items, "synthetic items", 10, 10000000),
        ARG_S("out", &out, "output folder for metrics.jsonl and model.safetensors"),
        ARG_F("no-progress", &tf.no_progress, "plain lines instead of a progress bar"),
    };
    memcpy(specs + TRAIN_FLAG_COUNT, extra, sizeof extra);
    int rc = args_parse(cmd,
                        "Train on a built-in synthetic long-tailed dataset (Zipf popularity, learnable transitions)\n"
                        "and compare test NDCG@10 with the popularity baseline. Needs no data.",
                        specs, TRAIN_FLAG_COUNT + 4, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    dp_train_config cfg;
    if ((rc = train_flags_to_config(cmd, &tf, &cfg))) return rc;
    sc.n_users = users;
    sc.n_items = items;
    sc.seed = (uint64_t)tf.seed;
    dp_dataset ds;
    dp_dataset_synthetic(&ds, &sc);
    cfg.model.n_items = ds.n_items;
    cfg.out_dir = out;
    cfg.data_desc = "synthetic";
    printf("dpformer demo: synthetic data, %d users, %d items, %lld interactions (Zipf %.1f, transitions %.0f%%)\n",
           ds.n_users, ds.n_items, (long long)ds.n_interactions, sc.zipf_s, 100 * sc.p_transition);
    printf("model: d %d, %d layers, %d heads, L %d, tied item embedding; %d epochs, batch %d, %s lr %g\n",
           cfg.model.d_model, cfg.model.n_layers, cfg.model.n_heads, cfg.model.max_len, cfg.epochs, cfg.batch_size,
           tf.optimizer, tf.lr);
    fflush(stdout);
    dp_model *m = NULL;
    dp_train_result res;
    dp_error err;
    double t0 = dp_now();
    if (dp_train(&ds, &cfg, &m, &res, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        dp_dataset_free(&ds);
        return 1;
    }
    dp_rank_metrics pop;
    dp_popularity_eval(&ds, DP_SPLIT_TEST, cfg.exclude_seen, &pop);
    printf("\nresults on the test split (full ranking over %d items, kept epoch %d of %d, %.0f s):\n", ds.n_items,
           res.best_epoch, res.epochs_run, dp_now() - t0);
    printf("  %-28s NDCG@10 %.4f  HR@10 %.4f\n", "Transformer (non-private)", res.test.ndcg10, res.test.hr10);
    printf("  %-28s NDCG@10 %.4f  HR@10 %.4f\n", "popularity baseline", pop.ndcg10, pop.hr10);
    if (pop.ndcg10 > 0) printf("  the model's NDCG@10 is %.1fx the popularity baseline's\n", res.test.ndcg10 / pop.ndcg10);
    printf("privacy: none (this demo trains without differential privacy)\n");
    printf("saved %s/model.safetensors and %s/metrics.jsonl\n", out, out);
    dp_model_free(m);
    dp_dataset_free(&ds);
    return 0;
}
