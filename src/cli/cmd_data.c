/* `dpformer data`: dataset tools. `data stats` loads a dataset (or generates the demo's synthetic
 * one) and prints its statistics, optionally with the popularity baseline on the leave-one-out split.
 * Bad usage or bad input exits with status 2 and a message on stderr. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "dpformer/data.h"

static void data_usage(FILE *f) {
    fprintf(f,
            "usage: dpformer data SUBCOMMAND [flags]\n\n"
            "sub-commands:\n"
            "  stats    statistics of a dataset (--data PATH) or of the demo's synthetic data (--synthetic)\n\n"
            "`dpformer data stats --help` lists its flags.\n");
}

static void print_metrics_text(const char *name, const dp_rank_metrics *m) {
    printf("  popularity %-5s  NDCG@10 %.4f  HR@10 %.4f  NDCG@20 %.4f  HR@20 %.4f  MRR %.4f  (%lld users)\n", name,
           m->ndcg10, m->hr10, m->ndcg20, m->hr20, m->mrr, (long long)m->n);
}

static void print_metrics_json(const char *name, const dp_rank_metrics *m, const char *sep) {
    printf("\"%s\": {\"ndcg10\": %.6f, \"hr10\": %.6f, \"ndcg20\": %.6f, \"hr20\": %.6f, \"mrr\": %.6f, \"users\": %lld}%s",
           name, m->ndcg10, m->hr10, m->ndcg20, m->hr20, m->mrr, (long long)m->n, sep);
}

static int data_stats(int argc, char **argv) {
    const char *path = NULL, *format = "auto";
    int json = 0, synthetic = 0, baseline = 0, exclude_seen = 0;
    arg_spec specs[] = {
        ARG_SM("data", &path, "FILE", "dataset file (formats: docs/data.md)"),
        ARG_SM("format", &format, "FMT", "auto, interactions, sequences, ml-dat or u.data"),
        ARG_F("synthetic", &synthetic, "use the demo's synthetic dataset (default parameters) instead of --data"),
        ARG_F("json", &json, "print one JSON object instead of a table"),
        ARG_F("baseline", &baseline, "also rank validation and test targets by training popularity"),
        ARG_F("exclude-seen", &exclude_seen, "with --baseline: the user's earlier items are not candidates"),
    };
    const int ns = (int)(sizeof specs / sizeof specs[0]);
    const char *cmd = "dpformer data stats";
    int rc = args_parse(cmd, "Print dataset statistics (sizes, sequence lengths, popularity long tail).", specs, ns,
                        argc, argv);
    if (rc == 1) return 0;
    if (rc) return 2;
    if (synthetic == (path != NULL)) {
        fprintf(stderr, "%s: give exactly one of --data PATH and --synthetic (see --help)\n", cmd);
        return 2;
    }
    dp_data_format fmt;
    if (dp_data_format_parse(format, &fmt)) {
        fprintf(stderr, "%s: --format: unknown format '%s' (auto, interactions, sequences, ml-dat, u.data)\n", cmd,
                format);
        return 2;
    }
    if (synthetic && args_seen(specs, ns, "format")) {
        fprintf(stderr, "%s: --format applies to --data only\n", cmd);
        return 2;
    }
    if (exclude_seen && !baseline) {
        fprintf(stderr, "%s: --exclude-seen needs --baseline\n", cmd);
        return 2;
    }

    dp_dataset ds;
    dp_error err;
    dp_synth_config cfg;
    if (synthetic) {
        dp_synth_config_default(&cfg);
        dp_dataset_synthetic(&ds, &cfg);
    } else {
        if (dp_dataset_load_detected(&ds, path, fmt, &fmt, &err)) {
            fprintf(stderr, "%s: %s\n", cmd, err.msg);
            return 2;
        }
    }
    dp_data_stats st;
    dp_dataset_stats(&ds, &st);
    dp_rank_metrics valid, test;
    if (baseline) {
        dp_popularity_eval(&ds, DP_SPLIT_VALID, exclude_seen, &valid);
        dp_popularity_eval(&ds, DP_SPLIT_TEST, exclude_seen, &test);
    }

    if (json) {
        /* one object: the dataset's statistics, plus the baseline when asked for */
        if (!baseline) {
            dp_data_stats_print(stdout, &st, 1);
        } else {
            /* the stats object is captured to drop its newline, so the output stays on one line */
            char *obj = NULL;
            size_t len = 0;
            FILE *mem = open_memstream(&obj, &len);
            if (!mem) {
                perror("dpformer data stats");
                dp_dataset_free(&ds);
                return 1;
            }
            dp_data_stats_print(mem, &st, 1);
            fclose(mem);
            while (len > 0 && obj[len - 1] == '\n') obj[--len] = 0;
            printf("{\"stats\": %s", obj);
            free(obj);
            printf(", \"popularity\": {\"exclude_seen\": %s, ", exclude_seen ? "true" : "false");
            print_metrics_json("valid", &valid, ", ");
            print_metrics_json("test", &test, "}}\n");
        }
    } else {
        if (synthetic)
            printf("synthetic dataset (demo defaults): %d users, %d items, lengths %d..%d, Zipf s = %g, "
                   "p_transition = %g, seed %llu\n",
                   cfg.n_users, cfg.n_items, cfg.min_len, cfg.max_len, cfg.zipf_s, cfg.p_transition,
                   (unsigned long long)cfg.seed);
        else
            printf("%s (format %s)\n", path, dp_data_format_name(fmt));
        dp_data_stats_print(stdout, &st, 0);
        if (baseline) {
            printf("  leave-one-out, full ranking, seen items %s:\n", exclude_seen ? "excluded" : "not excluded");
            print_metrics_text("valid", &valid);
            print_metrics_text("test", &test);
        }
    }
    dp_dataset_free(&ds);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 1) {
        data_usage(stderr);
        return 2;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "help") == 0) {
        data_usage(stdout);
        return 0;
    }
    if (strcmp(argv[0], "stats") == 0) return data_stats(argc - 1, argv + 1);
    fprintf(stderr, "dpformer data: unknown sub-command '%s'\n\n", argv[0]);
    data_usage(stderr);
    return 2;
}
