/* Entry point of the `dpformer` command-line tool: dispatches to the sub-commands in commands.h. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/commands.h"
#include "dpformer/backend.h"
#include "dpformer/dist.h"
#include "ops/ops.h"

#ifndef DPFORMER_VERSION
#define DPFORMER_VERSION "unknown"
#endif

/* `dpformer --version`: the version, the build, and what the machine offers (the GPU check loads the
 * CUDA module only here, never for the other commands unless --device cuda is given). */
static void version(void) {
    printf("dpformer %s\n", DPFORMER_VERSION);
    printf("  build: C11, %s, %s\n",
#ifdef NDEBUG
           "optimised",
#else
           "debug (assertions on)",
#endif
           sizeof(dp_real) == 8 ? "float64" : "float32");
    char model[256] = "unknown model", line[512];
    FILE *ci = fopen("/proc/cpuinfo", "r");
    while (ci && fgets(line, sizeof line, ci)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && c) {
            c++;
            while (*c == ' ' || *c == '\t') c++;
            snprintf(model, sizeof model, "%s", c);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    }
    if (ci) fclose(ci);
    printf("  cpu: %s, %ld cores online\n", model, sysconf(_SC_NPROCESSORS_ONLN));
    const char *wait = getenv("OMP_WAIT_POLICY");
    printf("  threads: %ld by default (OpenMP), waiting threads %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           wait ? (strcasecmp(wait, "passive") == 0 ? "sleep (OMP_WAIT_POLICY=PASSIVE)" : "spin (OMP_WAIT_POLICY set)")
                : "as the OpenMP runtime's settings say");
    printf("  mpi: %s\n", dp_dist_built_with_mpi() ? "built (train, train-text, train-lm run data-parallel under mpirun)"
                                                     : "not built (no MPI library when dpformer was configured)");
    if (!dp_built_with_cuda()) {
        printf("  cuda: not built (the CUDA toolkit was not found when dpformer was configured)\n");
        return;
    }
    dp_error err;
    if (dp_device_check(DP_DEVICE_CUDA, &err) == 0) printf("  cuda: %s\n", dp_device_description(DP_DEVICE_CUDA));
    else printf("  cuda: built; not usable here: %s\n", err.msg);
}

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
    {"audit", cmd_audit, "empirical lower bound on epsilon from one training run with canaries"},
    {"tokenize", cmd_tokenize, "GPT-2 byte-level BPE: text to token ids and back, one line at a time"},
    {"train-lm", cmd_train_lm, "train a GPT-2-family language model on text: non-private or DP-SGD (one line = one example)"},
    {"demo-lm", cmd_demo_lm, "a tiny language model trained non-privately and with DP-SGD, against the unigram model"},
    {"eval-lm", cmd_eval_lm, "perplexity of a GPT-2-family language model on a text file (one line = one example)"},
    {"generate", cmd_generate, "continue a prompt with a GPT-2-family language model (sampling or greedy)"},
    {"export", cmd_export, "export a GPT-2-family model to the Hugging Face layout (--hf DIR)"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f, "dpformer: differentially private Transformer training\n\nusage: dpformer COMMAND [flags]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n`dpformer COMMAND --help` lists a command's flags; `dpformer --version` the version and build.\n");
}

/* Commands that train data-parallel under mpirun (docs/distributed.md); the others run as one process. */
static int data_parallel(const char *name) {
    return strcmp(name, "train") == 0 || strcmp(name, "train-text") == 0 || strcmp(name, "train-lm") == 0;
}

/* Run a command, as one rank of a group when an MPI launcher started the program: each rank gets its
 * share of the machine's cores unless --threads says otherwise, and only rank 0 prints results. */
static int run_command(const command *c, int argc, char **argv) {
    dp_error err;
    if (dp_dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "dpformer %s: %s\n", c->name, err.msg);
        return 1;
    }
    int rc;
    if (dp_dist_size() > 1 && !data_parallel(c->name)) {
        if (dp_dist_is_root())
            fprintf(stderr, "dpformer %s: runs as one process (started with %d); under mpirun only train, train-text "
                            "and train-lm run data-parallel\n", c->name, dp_dist_size());
        rc = 2;
    } else {
        if (dp_dist_size() > 1) {
            const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
            long per = local && atoi(local) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) / atoi(local) : 1;
            ops_set_threads(per > 0 ? (int)per : 1); /* --threads N > 0 overrides it */
            if (!dp_dist_is_root() && !freopen("/dev/null", "w", stdout)) return 1;
        }
        rc = c->fn(argc - 2, argv + 2);
    }
    /* a rank that fails ends the whole job now: the others may be waiting for it in a collective */
    if (rc != 0 && dp_dist_size() > 1) dp_dist_abort(rc);
    dp_dist_finalize();
    return rc;
}

/* OpenMP threads that finish a parallel region early wait for the others; by default the OpenMP
 * runtime makes them spin for a while first. A DP step runs many short parallel regions (per-example
 * norms, clip factors, the output layer in chunks: about 7x as many as a non-private step), and on a
 * machine shared with other work a spinning thread holds a core that the thread it waits for needs,
 * so the whole step slows by far more than its share of the machine (measured: DP 2.4x non-private
 * with one competing process, docs/benchmarks.md). Waiting threads that sleep at once cost a few
 * microseconds per region on an idle machine and measured faster there too, so the tool runs with
 * passive waiting. The OpenMP runtime reads its settings when it is loaded, before main(): the tool
 * sets OMP_WAIT_POLICY=PASSIVE and starts itself again (same process, same arguments) unless the user
 * chose a policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT, KMP_BLOCKTIME) or DPFORMER_NO_REEXEC is set. */
static void passive_waiting(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("KMP_BLOCKTIME") ||
        getenv("DPFORMER_NO_REEXEC"))
        return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): go on with the runtime's default policy */
    unsetenv("OMP_WAIT_POLICY");
}

int main(int argc, char **argv) {
    passive_waiting(argv);
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
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        version();
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return run_command(&COMMANDS[i], argc, argv);
    fprintf(stderr, "dpformer: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
