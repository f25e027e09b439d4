/* `dpformer bench`: benchmarks run through the command-line tool.
 *   step        times the training step (forward, backward, AdamW) on the papers' two shapes with random
 *               item ids, and reports ms/step, model GFLOP/s, the machine's SGEMM rate measured in the same
 *               run, and memory; with --reattention, also each variant's step with Re-Attention on, the
 *               two alternating step by step in the same process;
 *   accountant  times the privacy accountants (bench_accountant.c). */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <omp.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/common.h"
#include "dpformer/noise.h"
#include "dpformer/privacy.h"
#include "dpformer/reattention.h"
#include "dpformer/train.h"
#include "ops/norm_plan.h"
#include "ops/ops.h"


static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

typedef struct {
    const char *name;
    int32_t V;
    int L;
    int d, layers, heads, batch; /* 0: the command's flags */
} shape;

typedef struct {
    double ms, rss_mb;
    double ms_ra;            /* with Re-Attention on (--reattention), else 0 */
    double cpu_ms, cpu_ms_ra; /* process CPU time per step, off and on (--reattention) */
    int ok;
    int n_forms;               /* DP variants: the per-example norm form each layer shape used */
    dp_norm_form_stat forms[8];
} variant_result;

/* CPU time of the whole process (all threads), seconds: unlike wall time, it hardly moves when other
 * programs share the cores. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Medians of one timed run: wall and CPU seconds per step, Re-Attention off and on. */
typedef struct {
    double wall, wall_ra, cpu, cpu_ra;
    double device_mb; /* device memory the run added (cuda), MB */
} step_times;

/* Settings of one timed run. */
typedef struct {
    int batch, d, layers, heads, steps, warmup, reattention;
    double dropout;
    dp_device device;
    int untied; /* an output layer of its own instead of the tied item/token embedding */
} step_opts;

/* Re-Attention for the benchmark: σ = 1, B = the batch, long-tailed frequencies p_i = 1/(i+1), N = 100,000
 * (the values change no cost, only the numbers). */
static int bench_set_reattention(dp_model *m, int on, int batch, double *freq, dp_error *err) {
    dp_reattention_config rc = dp_reattention_config_default();
    rc.enabled = on;
    rc.sigma = 1.0;
    rc.batch_size = batch;
    rc.item_freq = freq;
    rc.n_examples = 100000;
    return dp_model_set_reattention(m, &rc, err);
}

/* Time `steps` training steps (after `warmup`) of one variant; variant "nonprivate" or a clip mode. With
 * o->reattention, 2·steps steps alternate between Re-Attention off and on (the order flipping every pair).
 * Returns the median wall time of the steps with it off (−1 on failure); *st gets every median. */
static dp_model_config shape_config(const shape *sh, const step_opts *o) {
    dp_model_config mc = dp_model_config_default(sh->V, sh->L);
    mc.d_model = sh->d ? sh->d : o->d;
    mc.n_layers = sh->layers ? sh->layers : o->layers;
    mc.n_heads = sh->heads ? sh->heads : o->heads;
    mc.dropout = (float)o->dropout;
    mc.tied = !o->untied;
    return mc;
}

static double time_variant(const shape *sh, const char *variant, const step_opts *o, step_times *st) {
    const int batch = sh->batch ? sh->batch : o->batch, steps = o->steps, warmup = o->warmup;
    dp_model_config mc = shape_config(sh, o);
    dp_error err;
    if (dp_device_check(o->device, &err)) {
        fprintf(stderr, "dpformer bench step: --device %s: %s\n", dp_device_name(o->device), err.msg);
        return -1;
    }
    const double mem0 = (double)dp_device_memory_used(o->device);
    dp_model *m = dp_model_create_on(&mc, batch, 1, o->device, &err);
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
    double *freq = dp_malloc(sizeof(double) * ((size_t)sh->V + 1));
    freq[0] = 0;
    for (int32_t i = 1; i <= sh->V; i++) freq[i] = 1.0 / (i + 1);
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
    const int timed = o->reattention ? 2 * steps : steps;
    double *times = dp_malloc(sizeof(double) * 4 * (size_t)steps), *times_ra = times + steps, *cpu = times + 2 * steps,
           *cpu_ra = times + 3 * steps;
    int n_off = 0, n_on = 0;
    for (int k = 0; k < warmup + timed; k++) {
        /* off, on | on, off | off, on ...; the warm-up steps run with it on when it is measured */
        int j = k - warmup, on = o->reattention && (j < 0 || ((j / 2) % 2 == 0 ? j % 2 == 1 : j % 2 == 0));
        if (o->reattention && bench_set_reattention(m, on, batch, freq, &err)) {
            fprintf(stderr, "dpformer bench step: %s\n", err.msg);
            return -1;
        }
        double t0 = dp_now(), c0 = cpu_now();
        dp_model_zero_grad(m);
        if (priv) {
            /* the whole DP-SGD step: clipped sum, noise (hardened method, as a private run), scaling, update */
            if (dp_clipped_grad(m, &bt, mode, 1.0, 1, (uint64_t)k, 0, NULL, NULL, &err)) {
                fprintf(stderr, "dpformer bench step: %s\n", err.msg);
                return -1;
            }
            dp_rng_set_noise_method(rng, DP_NOISE_HARDENED, NULL);
            if (dp_add_grad_noise(m, rng, 1.0, &err)) {
                fprintf(stderr, "dpformer bench step: %s\n", err.msg);
                return -1;
            }
            dp_model_scale_grads(m, 1.0 / batch);
        } else {
            dp_model_forward_backward(m, &bt, w, 1, (uint64_t)k, NULL);
        }
        dp_optimizer_step(opt, m);
        dp_device_synchronize(o->device);
        if (k >= warmup) {
            double t = dp_now() - t0, c = cpu_now() - c0;
            if (on) {
                times_ra[n_on] = t;
                cpu_ra[n_on++] = c;
            } else {
                times[n_off] = t;
                cpu[n_off++] = c;
            }
        }
    }
    st->device_mb = ((double)dp_device_memory_used(o->device) - mem0) / 1048576.0;
    double t = median(times, steps);
    st->wall = t;
    st->cpu = median(cpu, steps);
    st->wall_ra = o->reattention ? median(times_ra, steps) : 0;
    st->cpu_ra = o->reattention ? median(cpu_ra, steps) : 0;
    free(times);
    free(freq);
    free(ids);
    free(tgt);
    free(w);
    dp_rng_free(rng);
    dp_optimizer_free(opt);
    dp_model_free(m);
    return t;
}

/* The reference for --compete: a CPU-bound job with no barriers, each of the run's threads doing the same
 * fixed chain of dependent floating-point operations in one parallel region (about 0.5 s on an idle
 * core). The throughput it keeps under load is the share of the machine that a perfectly parallel
 * process of this thread count gets there: degrading no more than it is degrading in proportion. */
static double reference_seconds(void) {
    const double t0 = dp_now();
    double sum = 0;
#pragma omp parallel reduction(+ : sum)
    {
        double x = 1;
        for (long i = 0; i < 250000000L; i++) x = x * 1.0000001 + 1e-9;
        sum += x;
    }
    const double t = dp_now() - t0;
    return sum > 0 ? t : -1; /* (the sum is always positive; using it keeps the loop) */
}

/* Each measurement runs in its own process so that its peak memory is its own. The parent never runs
 * OpenMP or BLAS code itself: a process that has started OpenMP threads cannot safely fork. */
static variant_result run_isolated(const shape *sh, const char *variant, const step_opts *o) {
    variant_result r = {0};
    int fd[2];
    fflush(stdout);
    if (pipe(fd) != 0) return r;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        variant_result c = {0};
        step_times st = {0, 0, 0, 0, 0};
        dp_error err;
        double t = -1;
        if (sh) t = time_variant(sh, variant, o, &st);
        else if (variant && strcmp(variant, "reference") == 0) t = reference_seconds();
        else if (dp_device_check(o->device, &err))
            fprintf(stderr, "dpformer bench step: --device %s: %s\n", dp_device_name(o->device), err.msg);
        else
            t = 1e-3 * (o->device == DP_DEVICE_CUDA ? dp_device_sgemm_gflops(DP_DEVICE_CUDA, 8192, 5)
                                                     : dp_device_sgemm_gflops(DP_DEVICE_CPU, 2048, 3));
        if (t >= 0) {
            c.ms = 1e3 * t;
            c.ms_ra = 1e3 * st.wall_ra;
            c.cpu_ms = 1e3 * st.cpu;
            c.cpu_ms_ra = 1e3 * st.cpu_ra;
            /* memory: the process's peak resident set on the cpu, the device memory the run added on a GPU */
            c.rss_mb = o->device == DP_DEVICE_CPU ? (double)dp_peak_rss() / 1048576.0 : st.device_mb;
            c.ok = 1;
            c.n_forms = norm_forms_get(c.forms, 8);
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

/* The per-example norm form (Gram or instantiated) of each layer shape in a DP variant's run: the
 * share of examples in each, so that `auto`'s choice is visible next to its time. */
static void print_norm_forms(const variant_result *r, int json, const char *shape_name, const char *variant) {
    if (r->n_forms == 0) return;
    if (json) printf("{\"bench\":\"step_norm_forms\",\"shape\":\"%s\",\"variant\":\"%s\",\"layers\":[", shape_name, variant);
    else printf("       %-10s per-example norm form:", variant);
    for (int i = 0; i < r->n_forms; i++) {
        const dp_norm_form_stat *f = &r->forms[i];
        const char *kind = f->kind == DP_NORM_LAYER_OUTPUT ? "output" : "linear";
        double share = 100.0 * (double)f->gram / (double)(f->gram + f->instantiated);
        if (json)
            printf("%s{\"layer\":\"%s\",\"in\":%d,\"out\":%d,\"gram_examples\":%ld,\"instantiated_examples\":%ld}",
                   i ? "," : "", kind, f->Cin, f->Cout, f->gram, f->instantiated);
        else printf("%s %s %dx%d Gram %.0f%%", i ? "," : "", kind, f->Cin, f->Cout, share);
    }
    printf(json ? "]}\n" : "\n");
}

/* --compete N: N single-threaded CPU-bound processes of the benchmark's own (a spinning floating-point
 * loop each), started after the machine's SGEMM rate is measured and stopped at the end, so that the
 * variants are timed on a machine shared with other work, all under the same load. */
static int start_competitors(pid_t *pids, int n) {
    for (int i = 0; i < n; i++) {
        fflush(stdout);
        pids[i] = fork();
        if (pids[i] < 0) return -1;
        if (pids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
            volatile double x = 1;
            for (;;) x = x * 1.0000001 + 1e-9;
        }
    }
    return 0;
}

static void stop_competitors(pid_t *pids, int n) {
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
}

static int bench_step(int argc, char **argv) {
    const char *cmd = "dpformer bench step";
    const char *which = "both", *variants = "nonprivate,auto";
    const char *device_s = "cpu";
    int steps = 3, warmup = 1, batch = 256, d = 64, layers = 2, heads = 1, threads = 0, json = 0, rounds = 3, ra = 0;
    int compete = 0, untied = 0;
    double dropout = 0;
    arg_spec specs[] = {
        ARG_S("shape", &which, "games (V 23716, L 50), ml1m (V 3417, L 200), both, or gpt2 (GPT-2 small: V 50257, "
                               "L 128, d 768, 12 layers, 12 heads, batch 16, tied)"),
        ARG_S("device", &device_s, "cpu or cuda"),
        ARG_S("variants", &variants, "comma-separated: nonprivate, auto, phantom, ghost, naive (DP clip modes)"),
        ARG_IR("steps", &steps, "timed steps per round (their median is the round's time)", 1, 100000),
        ARG_IR("rounds", &rounds, "rounds in which the variants take turns (the median is reported)", 1, 16),
        ARG_IR("warmup", &warmup, "untimed steps first", 0, 100000),
        ARG_IR("batch", &batch, "sequences per step", 1, 1 << 20),
        ARG_IR("d-model", &d, "model width", 1, 65536),
        ARG_IR("n-layers", &layers, "blocks", 0, 64),
        ARG_IR("n-heads", &heads, "heads", 1, 64),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
        ARG_DR("dropout", &dropout, "dropout rate of the model (0 by default: the step's matrix work only)", 0, 0.99),
        ARG_F("untied", &untied, "an untied output layer (as ghost clipping needs; default: tied to the embedding)"),
        ARG_F("reattention", &ra, "also time each variant with Re-Attention on, alternating with off step by step"),
        ARG_IR("compete", &compete,
               "start this many CPU-bound processes of its own for the timed runs (a machine shared with other "
               "work); the SGEMM rate is measured before they start",
               0, 64),
        ARG_F("json", &json, "one JSON line per shape and variant"),
    };
    int rc = args_parse(cmd,
                        "Time the training step (forward, backward, AdamW; DP variants: per-example clipping, noise)\n"
                        "with random item ids, each variant in its own process, side by side.",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    shape all[] = {{"games", 23716, 50, 0, 0, 0, 0}, {"ml1m", 3417, 200, 0, 0, 0, 0},
                   {"gpt2", 50257, 128, 768, 12, 12, 16}};
    int first = 0, last = 1;
    if (strcmp(which, "games") == 0) last = 0;
    else if (strcmp(which, "ml1m") == 0) first = 1;
    else if (strcmp(which, "gpt2") == 0) first = last = 2;
    else if (strcmp(which, "both") != 0) {
        fprintf(stderr, "%s: --shape: expected games, ml1m, both or gpt2, got '%s'\n", cmd, which);
        return 2;
    }
    dp_device device;
    if (dp_device_parse(device_s, &device)) {
        fprintf(stderr, "%s: --device: expected cpu or cuda, got '%s'\n", cmd, device_s);
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
        if (!untied && strcmp(tok, "ghost") == 0) {
            fprintf(stderr, "%s: --variants: ghost clipping cannot clip a tied embedding; time it with --untied\n", cmd);
            return 2;
        }
        vlist[nv++] = tok;
    }
    ops_set_threads(threads);
    const step_opts opts = {batch, d, layers, heads, steps, warmup, ra, dropout, device, untied};
    variant_result pk = run_isolated(NULL, NULL, &opts);
    double peak = pk.ms;
    if (!pk.ok || !(peak > 0)) {
        fprintf(stderr, "%s: --device %s is not available here (see the message above)\n", cmd, device_s);
        return 1;
    }
    if (!json)
        printf("%s SGEMM rate (float32, %s, best of %d): %.1f GFLOP/s\n",
               device == DP_DEVICE_CUDA ? dp_device_name(device) : "machine",
               device == DP_DEVICE_CUDA ? "8192^3" : "2048^3", device == DP_DEVICE_CUDA ? 5 : 3, peak);
    /* under --compete: the barrier-free reference idle, then under the load before and after the variants */
    double ref_idle = 0, ref_load[2] = {0, 0};
    if (compete) ref_idle = run_isolated(NULL, "reference", &opts).ms;
    pid_t competitors[64] = {0};
    if (compete && start_competitors(competitors, compete)) {
        stop_competitors(competitors, compete);
        fprintf(stderr, "%s: --compete: could not start the competing processes\n", cmd);
        return 1;
    }
    if (compete) ref_load[0] = run_isolated(NULL, "reference", &opts).ms;
    if (compete && !json) printf("competing CPU-bound processes during the timed runs: %d\n", compete);
    if (untied && !json) printf("output layer: untied (a tensor of its own, not the embedding)\n");
    for (int si = first; si <= last; si++) {
        shape sh = all[si];
        dp_model_config mc = shape_config(&sh, &opts);
        const int sb = sh.batch ? sh.batch : batch;
        double flops = dp_model_step_flops(&mc, sb);
        /* Variants take turns, round after round, so that slow drifts of a shared machine hit them alike;
         * each variant's time is the median over rounds of its per-round median step time. */
        variant_result res[8][16];
        for (int k = 0; k < rounds; k++)
            for (int v = 0; v < nv; v++) {
                res[v][k] = run_isolated(&sh, vlist[v], &opts);
                if (!res[v][k].ok) {
                    fprintf(stderr, "%s: variant %s failed\n", cmd, vlist[v]);
                    stop_competitors(competitors, compete);
                    return 1;
                }
            }
        double base_ms = 0, base_rss = 0;
        for (int v = 0; v < nv; v++) {
            double ms[16], ms_ra[16], cpu_ms[16], rss = 0;
            for (int k = 0; k < rounds; k++) {
                ms[k] = res[v][k].ms;
                cpu_ms[k] = res[v][k].cpu_ms;
                ms_ra[k] = res[v][k].ms_ra;
                rss = DP_MAX(rss, res[v][k].rss_mb);
            }
            variant_result r = {median(ms, rounds), rss, median(ms_ra, rounds), median(cpu_ms, rounds), 0, 1, 0, {{0}}};
            if (v == 0) {
                base_ms = r.ms;
                base_rss = r.rss_mb;
            }
            double gf = flops / (r.ms / 1e3) / 1e9;
            /* with --reattention: the per-round ratios (on / off, same process), their median */
            double ratio[16], cpu_ratio[16];
            for (int k = 0; k < rounds; k++) {
                ratio[k] = res[v][k].ms > 0 ? res[v][k].ms_ra / res[v][k].ms : 0;
                cpu_ratio[k] = res[v][k].cpu_ms > 0 ? res[v][k].cpu_ms_ra / res[v][k].cpu_ms : 0;
            }
            double ra_ratio = ra ? median(ratio, rounds) : 0, ra_cpu_ratio = ra ? median(cpu_ratio, rounds) : 0;
            char ra_json[256] = "", ra_text[160] = "";
            if (ra) {
                snprintf(ra_json, sizeof ra_json,
                         ",\"dropout\":%.2f,\"ms_per_step_reattention\":%.2f,\"reattention_ratio\":%.4f,"
                         "\"reattention_cpu_time_ratio\":%.4f",
                         dropout, r.ms_ra, ra_ratio, ra_cpu_ratio);
                snprintf(ra_text, sizeof ra_text, "  Re-Attention on: %8.1f ms/step (x%.3f; CPU time x%.3f)", r.ms_ra,
                         ra_ratio, ra_cpu_ratio);
            }
            if (json)
                printf("{\"bench\":\"step\",\"device\":\"%s\",\"shape\":\"%s\",\"V\":%d,\"L\":%d,\"batch\":%d,\"d_model\":%d,\"n_layers\":%d,"
                       "\"tied\":%s,\"variant\":\"%s\",\"ms_per_step\":%.2f,\"ratio_to_first\":%.3f,\"model_gflop\":%.2f,"
                       "\"gflops\":%.1f,\"sgemm_gflops\":%.1f,\"fraction_of_sgemm\":%.3f,\"peak_rss_mb\":%.1f,"
                       "\"rss_ratio_to_first\":%.3f,\"cpu_ms_per_step\":%.2f,\"rounds\":%d,\"steps_per_round\":%d,"
                       "\"compete\":%d%s}\n",
                       device_s, sh.name, sh.V, sh.L, sb, mc.d_model, mc.n_layers, mc.tied ? "true" : "false", vlist[v], r.ms, r.ms / base_ms, flops / 1e9, gf, peak,
                       gf / peak, r.rss_mb, r.rss_mb / base_rss, r.cpu_ms, rounds, steps, compete, ra_json);
            else
                printf("%-6s %-10s %8.2f ms/step (x%.2f)  %8.1f GFLOP/s of model FLOPs (%3.0f%% of SGEMM)  %s %6.0f MB (x%.2f)%s\n",
                       sh.name, vlist[v], r.ms, r.ms / base_ms, gf, 100 * gf / peak,
                       device == DP_DEVICE_CPU ? "peak RSS" : "device memory", r.rss_mb, r.rss_mb / base_rss, ra_text);
            print_norm_forms(&res[v][0], json, sh.name, vlist[v]);
            fflush(stdout);
        }
    }
    if (compete) {
        ref_load[1] = run_isolated(NULL, "reference", &opts).ms;
        if (!(ref_idle > 0 && ref_load[0] > 0 && ref_load[1] > 0)) {
            stop_competitors(competitors, compete);
            fprintf(stderr, "%s: --compete: the barrier-free reference run failed\n", cmd);
            return 1;
        }
        const double kept = 2 * ref_idle / (ref_load[0] + ref_load[1]);
        if (json)
            printf("{\"bench\":\"step_reference\",\"compete\":%d,\"threads\":%d,\"idle_ms\":%.1f,"
                   "\"load_ms\":[%.1f,%.1f],\"kept\":%.3f}\n",
                   compete, omp_get_max_threads(), ref_idle, ref_load[0], ref_load[1], kept);
        else
            printf("barrier-free CPU-bound reference (%d threads, one parallel region): %.0f ms idle, %.0f and %.0f ms "
                   "under this load (before and after the variants): it kept %.0f%% of its idle throughput, the "
                   "share of a perfectly parallel process here\n",
                   omp_get_max_threads(), ref_idle, ref_load[0], ref_load[1], 100 * kept);
    }
    stop_competitors(competitors, compete);
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
