/* `dpformer bench accountant`: wall-clock time of the privacy accountants on fixed workloads — RDP ε of
 * one long run over the default order grid, and PLD ε of a shorter run at the default discretisation —
 * with the ε values, their difference, and the peak memory of the process. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/common.h"
#include "dpformer/accountant.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int bench_accountant(int argc, char **argv) {
    double q = 0.01, sigma = 1.0, delta = 1e-5, interval = 1e-4;
    int64_t rdp_steps = 1000000, pld_steps = 10000;
    int repeat = 21;
    arg_spec specs[] = {
        ARG_DR("sample-rate", &q, "sampling rate q of both runs", 1e-9, 1),
        ARG_DR("noise-multiplier", &sigma, "noise multiplier of both runs", 1e-3, 1e6),
        ARG_DR("delta", &delta, "delta", 1e-300, 0.999999),
        ARG_LR("rdp-steps", &rdp_steps, "steps of the RDP run", 1, 4e15),
        ARG_LR("pld-steps", &pld_steps, "steps of the PLD run", 1, 1e9),
        ARG_DR("pld-interval", &interval, "PLD discretisation interval", 1e-7, 1),
        ARG_IR("repeat", &repeat, "timed repetitions of the RDP computation (median reported)", 1, 10000),
    };
    int nspecs = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse("dpformer bench accountant", "Time the RDP and PLD accountants.", specs, nspecs, argc, argv);
    if (rc == 1) return 0;
    if (rc) return 2;

    dp_error err;
    dp_history h;
    dp_history_init(&h);
    if (dp_history_add_poisson_gaussian(&h, sigma, q, rdp_steps, &err)) {
        fprintf(stderr, "dpformer bench accountant: %s\n", err.msg);
        return 2;
    }
    double *times = dp_malloc((size_t)repeat * sizeof *times);
    dp_rdp_result rr;
    for (int i = 0; i < repeat; i++) {
        double t0 = dp_now();
        if (dp_rdp_epsilon(&h, NULL, 0, delta, DP_CONVERSION_IMPROVED, &rr, &err)) {
            fprintf(stderr, "dpformer bench accountant: %s\n", err.msg);
            free(times);
            dp_history_free(&h);
            return 1;
        }
        times[i] = dp_now() - t0;
    }
    qsort(times, (size_t)repeat, sizeof *times, cmp_double);
    printf("RDP  q=%g sigma=%g steps=%lld delta=%g, %d default orders, improved conversion\n", q, sigma,
           (long long)rdp_steps, delta, DP_RDP_DEFAULT_N_ORDERS);
    printf("     epsilon = %.6f (best order %g)   time: median %.3f ms, min %.3f ms over %d runs\n", rr.epsilon,
           rr.best_order, 1e3 * times[repeat / 2], 1e3 * times[0], repeat);
    free(times);

    dp_history_free(&h);
    dp_history_add_poisson_gaussian(&h, sigma, q, pld_steps, &err);
    dp_rdp_result rr2;
    dp_rdp_epsilon(&h, NULL, 0, delta, DP_CONVERSION_IMPROVED, &rr2, &err);
    dp_pld_params prm;
    dp_pld_default_params(&prm);
    prm.value_discretization_interval = interval;
    dp_pld_result pr;
    double t0 = dp_now();
    if (dp_pld_epsilon(&h, delta, &prm, &pr, &err)) {
        fprintf(stderr, "dpformer bench accountant: %s\n", err.msg);
        dp_history_free(&h);
        return 1;
    }
    double t_pld = dp_now() - t0;
    printf("PLD  q=%g sigma=%g steps=%lld delta=%g, interval %g, FFT length %zu\n", q, sigma, (long long)pld_steps,
           delta, pr.interval_used, pr.grid_size);
    printf("     epsilon = %.6f   time: %.3f s   peak RSS: %.0f MiB\n", pr.epsilon, t_pld,
           (double)dp_peak_rss() / (1024.0 * 1024.0));
    printf("     RDP epsilon for the same run = %.6f; PLD - RDP = %.6f (%.1f%%)\n", rr2.epsilon,
           pr.epsilon - rr2.epsilon, 100.0 * (pr.epsilon - rr2.epsilon) / rr2.epsilon);
    dp_history_free(&h);
    return 0;
}
