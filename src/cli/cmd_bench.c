/* `dpformer bench`: benchmarks run through the command-line tool.
 *   step        times the training step (forward, backward, AdamW) on the papers' two shapes with random
 *               item ids, and reports ms/step, model GFLOP/s, the machine's SGEMM rate measured in the same
 *               run, and memory;
 *   accountant  times the privacy accountants (bench_accountant.c). */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/common.h"
#include "dpformer/noise.h"
#include "dpformer/privacy.h"
#include "dpformer/train.h"
#include "ops/ops.h"


static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Best-of-k rate of a square single-precision GEMM large enough to reach the machine's peak. */
static double sgemm_gflops(int n, int reps) {
    float *a = dp_alloc_aligned(sizeof(float) * (size_t)n * n), *b = dp_alloc_aligned(sizeof(float) * (size_t)n * n),
          *c = dp_alloc_aligned(sizeof(float) * (size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)((i % 13) * 0.01);
        b[i] = (float)((i % 7) * 0.02);
    }
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = dp_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double t = dp_now() - t0;
        if (r > 0 && t < best) best = t; /* the first call warms caches and threads */
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

typedef struct {
    const char *name;
    int32_t V;
    int L;
} shape;

typedef struct {
    double ms, rss_mb;
    int ok;
} variant_result;

/* Time `steps` training steps (after `warmup`) of one variant; variant "nonprivate" or a clip mode. */
static double time_variant(const shape *sh, const char *variant, int batch, int d, int layers, int heads, int steps,
                           int warmup) {
    dp_model_config mc = dp_model_config_default(sh->V, sh->L);
    mc.d_model = d;
    mc.n_layers = layers;
    mc.n_heads = heads;
    mc.dropout = 0;
    dp_error err;
    dp_model *m = dp_model_create(&mc, batch, 1, &err);
    if (!m) {
        fprintf(stderr, "dpformer bench step: %s\n", err.msg);
        return -1;
    }
    int priv = strcmp(variant, "nonprivate") != 0;
    dp_clip_mode mode = DP_CLIP_AUTO;
    if (priv && dp_clip_mode_parse(variant, &mode)) {
        fprintf(stderr, "dpformer bench step: unknown variant '%s'\n", variant);
        dp_model_free(m);
        return -1;
    }
    dp_optim_config oc = dp_optim_config_default();
    dp_optimizer *opt = dp_optimizer_create(&oc, m);
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)batch * sh->L), *tgt = dp_malloc(sizeof(int32_t) * (size_t)batch * sh->L);
    dp_real *w = dp_malloc(sizeof(dp_real) * (size_t)batch);
    uint64_t s = 7;
    for (size_t i = 0; i < (size_t)batch * sh->L; i++) ids[i] = 1 + (int32_t)(dp_splitmix64(&s) % (uint64_t)sh->V);
    for (size_t i = 0; i < (size_t)batch * sh->L; i++) tgt[i] = 1 + (int32_t)(dp_splitmix64(&s) % (uint64_t)sh->V);
    for (int b = 0; b < batch; b++) w[b] = (dp_real)(1.0 / batch);
    dp_batch bt = {batch, sh->L, ids, tgt, NULL};
    dp_rng *rng = dp_rng_create_seeded(1);
    double *times = dp_malloc(sizeof(double) * (size_t)steps);
    size_t np = dp_model_num_params(m);
    for (int k = 0; k < warmup + steps; k++) {
        double t0 = dp_now();
        dp_model_zero_grad(m);
        if (priv) {
            /* the whole DP-SGD step: clipped sum, noise (hardened method, as a private run), scaling, update */
            if (dp_clipped_grad(m, &bt, mode, 1.0, 1, (uint64_t)k, 0, NULL, NULL, &err)) {
                fprintf(stderr, "dpformer bench step: %s\n", err.msg);
                return -1;
            }
            dp_rng_set_noise_method(rng, DP_NOISE_HARDENED, NULL);
            dp_noise_gaussian_add(rng, dp_model_grads(m), np, 1.0, NULL);
            dp_real *g = dp_model_grads(m);
            for (size_t i = 0; i < np; i++) g[i] *= (dp_real)(1.0 / batch);
        } else {
            dp_model_forward_backward(m, &bt, w, 1, (uint64_t)k, NULL);
        }
        dp_optimizer_step(opt, m);
        if (k >= warmup) times[k - warmup] = dp_now() - t0;
    }
    double t = median(times, steps);
    free(times);
    free(ids);
    free(tgt);
    free(w);
    dp_rng_free(rng);
    dp_optimizer_free(opt);
    dp_model_free(m);
    return t;
}

/* Each measurement runs in its own process so that its peak memory is its own. The parent never runs
 * OpenMP or BLAS code itself: a process that has started OpenMP threads cannot safely fork. */
static variant_result run_isolated(const shape *sh, const char *variant, int batch, int d, int layers, int heads,
                                   int steps, int warmup) {
    variant_result r = {0, 0, 0};
    int fd[2];
    fflush(stdout);
    if (pipe(fd) != 0) return r;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        variant_result c = {0, 0, 0};
        double t = sh ? time_variant(sh, variant, batch, d, layers, heads, steps, warmup) : 1e-3 * sgemm_gflops(2048, 3);
        if (t >= 0) {
            c.ms = 1e3 * t;
            c.rss_mb = (double)dp_peak_rss() / 1048576.0;
            c.ok = 1;
        }
        ssize_t wr = write(fd[1], &c, sizeof c);
        (void)wr;
        close(fd[1]);
        _exit(0);
    }
    close(fd[1]);
    if (pid > 0) {
        if (read(fd[0], &r, sizeof r) != (ssize_t)sizeof r) r.ok = 0;
        waitpid(pid, NULL, 0);
    }
    close(fd[0]);
    return r;
}

static int bench_step(int argc, char **argv) {
    const char *cmd = "dpformer bench step";
    const char *which = "both", *variants = "nonprivate,auto";
    int steps = 3, warmup = 1, batch = 256, d = 64, layers = 2, heads = 1, threads = 0, json = 0, rounds = 3;
    arg_spec specs[] = {
        ARG_S("shape", &which, "games (V 23716, L 50), ml1m (V 3417, L 200) or both"),
        ARG_S("variants", &variants, "comma-separated: nonprivate, auto, phantom, ghost, naive (DP clip modes)"),
        ARG_IR("steps", &steps, "timed steps per round (their median is the round's time)", 1, 100000),
        ARG_IR("rounds", &rounds, "rounds in which the variants take turns (the median is reported)", 1, 16),
        ARG_IR("warmup", &warmup, "untimed steps first", 0, 100000),
        ARG_IR("batch", &batch, "sequences per step", 1, 1 << 20),
        ARG_IR("d-model", &d, "model width", 1, 65536),
        ARG_IR("n-layers", &layers, "blocks", 0, 64),
        ARG_IR("n-heads", &heads, "heads", 1, 64),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
        ARG_F("json", &json, "one JSON line per shape and variant"),
    };
    int rc = args_parse(cmd,
                        "Time the training step (forward, backward, AdamW; DP variants: per-example clipping, noise)\n"
                        "with random item ids, each variant in its own process, side by side.",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    shape all[] = {{"games", 23716, 50}, {"ml1m", 3417, 200}};
    int first = 0, last = 1;
    if (strcmp(which, "games") == 0) last = 0;
    else if (strcmp(which, "ml1m") == 0) first = 1;
    else if (strcmp(which, "both") != 0) {
        fprintf(stderr, "%s: --shape: expected games, ml1m or both, got '%s'\n", cmd, which);
        return 2;
    }
    char vbuf[256];
    snprintf(vbuf, sizeof vbuf, "%s", variants);
    const char *vlist[8];
    int nv = 0;
    for (char *tok = strtok(vbuf, ","); tok && nv < 8; tok = strtok(NULL, ",")) {
        dp_clip_mode mode;
        if (strcmp(tok, "nonprivate") != 0 && dp_clip_mode_parse(tok, &mode)) {
            fprintf(stderr, "%s: --variants: unknown variant '%s'\n", cmd, tok);
            return 2;
        }
        vlist[nv++] = tok;
    }
    ops_set_threads(threads);
    variant_result pk = run_isolated(NULL, NULL, 0, 0, 0, 0, 0, 0);
    double peak = pk.ms;
    if (!json) printf("machine SGEMM rate (2048^3, best of 3): %.1f GFLOP/s\n", peak);
    for (int si = first; si <= last; si++) {
        shape sh = all[si];
        dp_model_config mc = dp_model_config_default(sh.V, sh.L);
        mc.d_model = d;
        mc.n_layers = layers;
        mc.n_heads = heads;
        double flops = dp_model_step_flops(&mc, batch);
        /* Variants take turns, round after round, so that slow drifts of a shared machine hit them alike;
         * each variant's time is the median over rounds of its per-round median step time. */
        variant_result res[8][16];
        for (int k = 0; k < rounds; k++)
            for (int v = 0; v < nv; v++) {
                res[v][k] = run_isolated(&sh, vlist[v], batch, d, layers, heads, steps, warmup);
                if (!res[v][k].ok) {
                    fprintf(stderr, "%s: variant %s failed\n", cmd, vlist[v]);
                    return 1;
                }
            }
        double base_ms = 0, base_rss = 0;
        for (int v = 0; v < nv; v++) {
            double ms[16], rss = 0;
            for (int k = 0; k < rounds; k++) {
                ms[k] = res[v][k].ms;
                rss = DP_MAX(rss, res[v][k].rss_mb);
            }
            variant_result r = {median(ms, rounds), rss, 1};
            if (v == 0) {
                base_ms = r.ms;
                base_rss = r.rss_mb;
            }
            double gf = flops / (r.ms / 1e3) / 1e9;
            if (json)
                printf("{\"bench\":\"step\",\"shape\":\"%s\",\"V\":%d,\"L\":%d,\"batch\":%d,\"d_model\":%d,\"n_layers\":%d,"
                       "\"variant\":\"%s\",\"ms_per_step\":%.2f,\"ratio_to_first\":%.3f,\"model_gflop\":%.2f,"
                       "\"gflops\":%.1f,\"sgemm_gflops\":%.1f,\"fraction_of_sgemm\":%.3f,\"peak_rss_mb\":%.1f,"
                       "\"rss_ratio_to_first\":%.3f,\"rounds\":%d,\"steps_per_round\":%d}\n",
                       sh.name, sh.V, sh.L, batch, d, layers, vlist[v], r.ms, r.ms / base_ms, flops / 1e9, gf, peak,
                       gf / peak, r.rss_mb, r.rss_mb / base_rss, rounds, steps);
            else
                printf("%-6s %-10s %8.1f ms/step (x%.2f)  %6.1f GFLOP/s of model FLOPs (%3.0f%% of SGEMM)  peak RSS %5.0f MB (x%.2f)\n",
                       sh.name, vlist[v], r.ms, r.ms / base_ms, gf, 100 * gf / peak, r.rss_mb, r.rss_mb / base_rss);
            fflush(stdout);
        }
    }
    if (!json) printf("model FLOPs: 2mnk for every matrix product of the non-private forward and backward passes\n");
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        FILE *f = argc < 1 ? stderr : stdout;
        fprintf(f, "usage: dpformer bench step [flags]        training-step time, GFLOP/s, memory\n"
                   "       dpformer bench accountant [flags]  privacy accountant timings\n");
        return argc < 1 ? 2 : 0;
    }
    if (strcmp(argv[0], "step") == 0) return bench_step(argc - 1, argv + 1);
    if (strcmp(argv[0], "accountant") == 0) return bench_accountant(argc - 1, argv + 1);
    fprintf(stderr, "dpformer bench: unknown benchmark '%s' (step or accountant)\n", argv[0]);
    return 2;
}
