/* `dpformer train` and `dpformer eval`: train a recommender on a dataset file, and evaluate a saved
 * model with full ranking next to the popularity baseline. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/train_flags.h"
#include "core/common.h"

static void print_summary(FILE *f, const char *what, const dp_rank_metrics *m) {
    fprintf(f, "  %-22s NDCG@10 %.4f  HR@10 %.4f  NDCG@20 %.4f  HR@20 %.4f  (%lld users)\n", what, m->ndcg10, m->hr10,
            m->ndcg20, m->hr20, (long long)m->n);
}

/* What the guarantee is and what it covers, stated only from what the accountant computed for the
 * steps that ran. */
void print_privacy(FILE *f, const dp_train_config *cfg, const dp_train_result *res) {
    if (!cfg->dp.enabled) {
        fprintf(f, "privacy: none (non-private training)\n");
        return;
    }
    if (res->noise_multiplier <= 0) {
        fprintf(f, "privacy: NONE -- noise multiplier 0 (clipping only); no differential privacy guarantee\n");
        return;
    }
    fprintf(f, "privacy: (epsilon = %.3f, delta = %g)-DP for each user (the privacy unit: one user's whole sequence),\n",
            res->epsilon, res->delta);
    fprintf(f, "  %s accountant, %lld DP-SGD steps with Poisson sampling q = %.5g (expected batch %.1f of %d users),\n",
            cfg->dp.accountant == DP_ACCOUNTANT_PLD ? "PLD" : "RDP", (long long)res->dp_steps, res->sample_rate,
            res->expected_batch, res->n_train_users);
    fprintf(f, "  noise multiplier %.4f, max grad norm %g, clip mode %s%s\n", res->noise_multiplier,
            cfg->dp.max_grad_norm, dp_clip_mode_name(cfg->dp.clip_mode),
            res->stopped_at_budget ? "; stopped early: the next step would exceed the target epsilon" : "");
    fprintf(f, "  covers the model trained on the training prefixes; choosing the %s epoch by validation NDCG@10\n"
               "  also looks at each user's validation item, which this epsilon does not cover%s\n",
            cfg->keep_last ? "(last)" : "best", cfg->keep_last ? " (not done here: --keep-last)" : " (use --keep-last to avoid it)");
    if (cfg->dp.seeded_noise)
        fprintf(f, "  WARNING: --seeded-noise: the noise is reproducible from the seed, so this run is NOT private\n");
}

static int load_data(const char *cmd, const char *path, const char *format, dp_dataset *ds) {
    dp_data_format fmt;
    if (dp_data_format_parse(format, &fmt)) {
        fprintf(stderr, "%s: --format: unknown format '%s' (auto, interactions, sequences, ml-dat, u.data)\n", cmd, format);
        return 2;
    }
    dp_error err;
    if (dp_dataset_load(ds, path, fmt, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        return 2;
    }
    return 0;
}

int cmd_train(int argc, char **argv) {
    const char *cmd = "dpformer train";
    train_flags tf;
    train_flags_defaults(&tf);
    const char *data = NULL, *format = "auto", *out = "runs/train";
    arg_spec specs[TRAIN_FLAG_COUNT + 4];
    train_flags_specs(&tf, specs);
    arg_spec extra[] = {
        ARG_S("data", &data, "dataset file (required)"),
        ARG_S("format", &format, "auto, interactions, sequences, ml-dat or u.data"),
        ARG_S("out", &out, "output folder for metrics.jsonl and model.safetensors"),
        ARG_F("no-progress", &tf.no_progress, "plain lines instead of a progress bar"),
    };
    memcpy(specs + TRAIN_FLAG_COUNT, extra, sizeof extra);
    int n = TRAIN_FLAG_COUNT + 4;
    int rc = args_parse(cmd, "Train a Transformer recommender (non-private) on a dataset; see docs/training.md.", specs,
                        n, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!data) {
        fprintf(stderr, "%s: --data is required (see --help)\n", cmd);
        return 2;
    }
    dp_train_config cfg;
    if ((rc = train_flags_to_config(cmd, &tf, &cfg))) return rc;
    dp_dataset ds;
    if ((rc = load_data(cmd, data, format, &ds))) return rc;
    cfg.model.n_items = ds.n_items;
    cfg.out_dir = out;
    cfg.data_desc = data;
    fprintf(stderr, "%s: %d users, %d items, %lld interactions from %s\n", cmd, ds.n_users, ds.n_items,
            (long long)ds.n_interactions, data);
    dp_model *m = NULL;
    dp_train_result res;
    dp_error err;
    if (dp_train_check(&ds, &cfg, &err)) { /* bad settings or data: usage error */
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        dp_dataset_free(&ds);
        return 2;
    }
    if (dp_train(&ds, &cfg, &m, &res, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        dp_dataset_free(&ds);
        return 1;
    }
    dp_rank_metrics pop;
    dp_popularity_eval(&ds, DP_SPLIT_TEST, cfg.exclude_seen, &pop);
    printf("trained %d epochs (%.2f s/epoch, %.0f examples/s); kept epoch %d by validation NDCG@10\n", res.epochs_run,
           res.seconds_per_epoch, res.examples_per_second, res.best_epoch);
    printf("ranking: full, over all %d items, seen items %s\n", ds.n_items, cfg.exclude_seen ? "excluded" : "included");
    print_summary(stdout, "validation", &res.valid);
    print_summary(stdout, "test", &res.test);
    print_summary(stdout, "test, popularity", &pop);
    print_privacy(stdout, &cfg, &res);
    printf("saved %s/model.safetensors and %s/metrics.jsonl%s\n", out, out, cfg.dp.enabled ? " and privacy.json" : "");
    dp_model_free(m);
    dp_dataset_free(&ds);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "dpformer eval";
    const char *model = NULL, *data = NULL, *format = "auto", *split = "test";
    int exclude_seen = 0, json = 0, batch = 256;
    arg_spec specs[] = {
        ARG_S("model", &model, "model.safetensors written by dpformer train (required)"),
        ARG_S("data", &data, "the dataset the model was trained on (required)"),
        ARG_S("format", &format, "auto, interactions, sequences, ml-dat or u.data"),
        ARG_S("split", &split, "valid or test"),
        ARG_F("exclude-seen", &exclude_seen, "exclude a user's history items from the ranking"),
        ARG_IR("batch-size", &batch, "users scored at once", 1, 1 << 20),
        ARG_F("json", &json, "print one JSON object"),
    };
    int rc = args_parse(cmd, "Evaluate a saved model with full ranking (NDCG/HR@10/20) and the popularity baseline.",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!model || !data) {
        fprintf(stderr, "%s: --model and --data are required (see --help)\n", cmd);
        return 2;
    }
    dp_split sp;
    if (strcmp(split, "valid") == 0) sp = DP_SPLIT_VALID;
    else if (strcmp(split, "test") == 0) sp = DP_SPLIT_TEST;
    else {
        fprintf(stderr, "%s: --split: expected valid or test, got '%s'\n", cmd, split);
        return 2;
    }
    dp_dataset ds;
    if ((rc = load_data(cmd, data, format, &ds))) return rc;
    dp_error err;
    dp_model *m = dp_model_load(model, batch, &err);
    if (!m) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        dp_dataset_free(&ds);
        return 2;
    }
    if (dp_model_config_of(m)->n_items != ds.n_items) {
        fprintf(stderr, "%s: %s has %d items but %s has %d: not the dataset it was trained on\n", cmd, model,
                dp_model_config_of(m)->n_items, data, ds.n_items);
        dp_model_free(m);
        dp_dataset_free(&ds);
        return 2;
    }
    dp_rank_metrics mm, pop;
    dp_evaluate(m, &ds, sp, exclude_seen, 0, &mm);
    dp_popularity_eval(&ds, sp, exclude_seen, &pop);
    if (json) {
        printf("{\"split\":\"%s\",\"exclude_seen\":%s,\"users\":%lld,\"ndcg10\":%.6f,\"hr10\":%.6f,\"ndcg20\":%.6f,"
               "\"hr20\":%.6f,\"popularity_ndcg10\":%.6f,\"popularity_hr10\":%.6f}\n",
               split, exclude_seen ? "true" : "false", (long long)mm.n, mm.ndcg10, mm.hr10, mm.ndcg20, mm.hr20,
               pop.ndcg10, pop.hr10);
    } else {
        printf("%s on %s, split %s, full ranking over %d items, seen items %s\n", model, data, split, ds.n_items,
               exclude_seen ? "excluded" : "included");
        print_summary(stdout, "model", &mm);
        print_summary(stdout, "popularity", &pop);
    }
    dp_model_free(m);
    dp_dataset_free(&ds);
    return 0;
}
