/* Entry point of the `dpformer` command-line tool: dispatches to the sub-commands in commands.h. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"demo", cmd_demo, "train on a built-in synthetic long-tailed dataset and compare with popularity"},
    {"train", cmd_train, "train a Transformer recommender on a dataset"},
    {"eval", cmd_eval, "evaluate a saved model (full-ranking NDCG/HR)"},
    {"train-text", cmd_train_text, "train a text classifier: non-private, DP-SGD or DP-FP"},
    {"eval-text", cmd_eval_text, "accuracy of a saved text classifier on a labelled TSV file"},
    {"data", cmd_data, "dataset tools: `dpformer data stats`"},
    {"clip-check", cmd_clip_check, "per-example gradient norms and clipped gradient sum of a batch (verification)"},
    {"privacy", cmd_privacy, "privacy accounting: epsilon for a run, noise calibration"},
    {"bench", cmd_bench, "benchmarks: training step time, GFLOP/s, memory"},
    {"tokenize", cmd_tokenize, "GPT-2 byte-level BPE: text to token ids and back, one line at a time"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f, "dpformer: differentially private Transformer training\n\nusage: dpformer COMMAND [flags]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n`dpformer COMMAND --help` lists a command's flags.\n");
}

int main(int argc, char **argv) {
    /* Past a file-size limit (ulimit -f, RLIMIT_FSIZE) the kernel sends SIGXFSZ, whose default action
     * kills the process without a word and leaves temporary files behind. Ignored, the write() fails
     * with EFBIG instead: the writers report it naming the file, remove their temporary file and leave
     * the previous file (a checkpoint, a model) as it was. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "dpformer: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
