/* `dpformer privacy`: ε (or δ) of a run or of a composed history, noise calibration and the step
 * budget, with either accountant. Thin layer over include/dpformer/accountant.h: this file parses and
 * validates flags, assembles the history and prints; all the accounting is in src/privacy. */
#define _POSIX_C_SOURCE 200809L /* strdup, strtok_r */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "dpformer/accountant.h"

#define CMD "dpformer privacy"
#define MAX_ORDERS 100000

static int usage_error(const char *fmt, const char *what, double v) {
    fprintf(stderr, CMD ": ");
    fprintf(stderr, fmt, what, v);
    fprintf(stderr, "\n");
    return 2;
}

/* "2,2.5,3:10,12:64:4" → orders (a:b is every integer from a to b, a:b:s every s-th value). */
static int parse_orders(const char *s, double **out, size_t *n_out) {
    size_t cap = 64, n = 0;
    double *o = malloc(cap * sizeof *o);
    char *copy = strdup(s), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        double v[3] = {0, 0, 1};
        int k = 0;
        char *p = tok, *end;
        for (;;) {
            v[k] = strtod(p, &end);
            if (end == p || !isfinite(v[k])) {
                fprintf(stderr, CMD ": --orders: cannot read '%s' (numbers, a:b or a:b:step, separated by commas)\n", tok);
                rc = 2;
                break;
            }
            k++;
            if (*end == ':' && k < 3) p = end + 1;
            else break;
        }
        if (rc) break;
        if (*end) {
            fprintf(stderr, CMD ": --orders: cannot read '%s'\n", tok);
            rc = 2;
            break;
        }
        if (k == 1) v[1] = v[0];
        if (!(v[2] > 0) || v[1] < v[0] || (v[1] - v[0]) / v[2] > MAX_ORDERS) {
            fprintf(stderr, CMD ": --orders: bad range '%s'\n", tok);
            rc = 2;
            break;
        }
        for (double a = v[0]; a <= v[1] * (1 + 1e-12); a += v[2]) {
            if (n == MAX_ORDERS) {
                fprintf(stderr, CMD ": --orders: more than %d orders\n", MAX_ORDERS);
                rc = 2;
                break;
            }
            if (n == cap) cap *= 2, o = realloc(o, cap * sizeof *o);
            o[n++] = a;
        }
    }
    free(copy);
    if (!rc && n == 0) {
        fprintf(stderr, CMD ": --orders: the order grid is empty\n");
        rc = 2;
    }
    for (size_t i = 0; !rc && i < n; i++)
        if (!(o[i] > 1)) {
            fprintf(stderr, CMD ": --orders: every order must be > 1, got %g\n", o[i]);
            rc = 2;
        }
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    *n_out = n;
    return 0;
}

/* "q:sigma:steps,q:sigma:steps" → events appended to h. */
static int parse_runs(const char *s, dp_history *h) {
    char *copy = strdup(s), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        double q, sigma;
        long long steps;
        char tail;
        if (sscanf(tok, "%lf:%lf:%lld%c", &q, &sigma, &steps, &tail) != 3) {
            fprintf(stderr, CMD ": --runs: cannot read '%s' (expected SAMPLE_RATE:NOISE_MULTIPLIER:STEPS)\n", tok);
            rc = 2;
            break;
        }
        dp_error err;
        if (dp_history_add_poisson_gaussian(h, sigma, q, (int64_t)steps, &err)) {
            fprintf(stderr, CMD ": --runs: '%s': %s\n", tok, err.msg);
            rc = 2;
        }
    }
    free(copy);
    return rc;
}

static void print_history(const dp_history *h) {
    printf("history:     %zu event%s, %lld steps\n", h->n, h->n == 1 ? "" : "s", (long long)dp_history_total_steps(h));
    for (size_t i = 0; i < h->n; i++) {
        const dp_event *e = &h->events[i];
        if (e->type == DP_EVENT_GAUSSIAN)
            printf("  %zu. gaussian          sigma = %-10g          count = %lld\n", i + 1, e->noise_multiplier,
                   (long long)e->steps);
        else
            printf("  %zu. poisson_gaussian  sigma = %-10g q = %-10g steps = %lld\n", i + 1, e->noise_multiplier,
                   e->sample_rate, (long long)e->steps);
    }
}

typedef enum { MODE_EPSILON, MODE_DELTA, MODE_SIGMA, MODE_STEPS } mode_t_;

int cmd_privacy(int argc, char **argv) {
    double q = NAN, sigma = NAN, epochs = NAN, delta = 1e-5, epsilon = NAN, target = NAN;
    double pld_interval = 1e-4, pld_tail = 1e-15, eps_tol = 0.0;
    int64_t steps = -1;
    const char *accountant = "rdp", *conversion = "improved", *orders_s = NULL, *history_path = NULL, *runs = NULL,
               *save_path = NULL;
    int json = 0;
    arg_spec specs[] = {
        ARG_D("sample-rate", &q, "Poisson sampling rate q in (0, 1] (expected batch size / dataset size)"),
        ARG_D("noise-multiplier", &sigma, "noise multiplier sigma > 0 (noise std / clipping norm)"),
        ARG_L("steps", &steps, "number of steps of the run"),
        ARG_D("epochs", &epochs, "epochs of the run instead of --steps (steps = floor(epochs / q), as Opacus)"),
        ARG_D("delta", &delta, "delta in (0, 1)"),
        ARG_D("epsilon", &epsilon, "report delta at this epsilon instead of epsilon at --delta"),
        ARG_D("target-epsilon", &target,
              "calibrate: without --noise-multiplier, the smallest sigma meeting it; without --steps/--epochs, "
              "the largest number of steps"),
        ARG_S("accountant", &accountant, "rdp or pld"),
        ARG_S("conversion", &conversion, "RDP to (epsilon, delta) conversion: improved or classic"),
        ARG_S("orders", &orders_s, "RDP orders, e.g. 2,2.5,3:64 (a:b = integers a..b, a:b:s = step s); default: "
                                   "Opacus's 151 orders"),
        ARG_S("history", &history_path, "JSON history of earlier events, composed before the run (see docs/accountants.md)"),
        ARG_S("runs", &runs, "earlier runs as q:sigma:steps,q:sigma:steps, composed after --history"),
        ARG_S("save-history", &save_path, "write the composed history (including the run) to this JSON file"),
        ARG_D("pld-interval", &pld_interval, "PLD discretisation interval of the privacy loss"),
        ARG_D("pld-tail", &pld_tail, "PLD tail mass truncated to infinite loss (added to delta)"),
        ARG_D("epsilon-tolerance", &eps_tol,
              "calibration: stop once target - epsilon <= this (Opacus uses 0.01); 0: sigma to 1e-6 relative"),
        ARG_F("json", &json, "print one JSON object instead of text"),
    };
    int nspecs = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse(CMD, "Privacy accounting for DP-SGD runs: epsilon, delta, noise calibration, step budget.",
                        specs, nspecs, argc, argv);
    if (rc == 1) return 0;
    if (rc) return 2;
    int seen_q = args_seen(specs, nspecs, "sample-rate"), seen_sigma = args_seen(specs, nspecs, "noise-multiplier");
    int seen_steps = args_seen(specs, nspecs, "steps"), seen_epochs = args_seen(specs, nspecs, "epochs");
    int seen_eps = args_seen(specs, nspecs, "epsilon"), seen_target = args_seen(specs, nspecs, "target-epsilon");

    /* Validation, one clear message per bad value. */
    if (seen_q && !(q > 0 && q <= 1)) return usage_error("%s must lie in (0, 1], got %g", "--sample-rate", q);
    if (seen_sigma && !(sigma > 0)) return usage_error("%s must be > 0, got %g", "--noise-multiplier", sigma);
    if (!(delta > 0 && delta < 1)) return usage_error("%s must lie in (0, 1), got %g", "--delta", delta);
    if (seen_steps && steps < 0) return usage_error("%s must be >= 0, got %.0f", "--steps", (double)steps);
    if (seen_steps && steps > DP_MAX_STEPS) return usage_error("%s must be <= 2^53, got %.0f", "--steps", (double)steps);
    if (seen_epochs && !(epochs >= 0)) return usage_error("%s must be >= 0, got %g", "--epochs", epochs);
    if (seen_eps && !(epsilon >= 0)) return usage_error("%s must be >= 0, got %g", "--epsilon", epsilon);
    if (seen_target && !(target > 0)) return usage_error("%s must be > 0, got %g", "--target-epsilon", target);
    if (!(pld_interval > 0)) return usage_error("%s must be > 0, got %g", "--pld-interval", pld_interval);
    if (!(pld_tail > 0 && pld_tail < 1e-3)) return usage_error("%s must lie in (0, 1e-3), got %g", "--pld-tail", pld_tail);
    if (!(eps_tol >= 0)) return usage_error("%s must be >= 0, got %g", "--epsilon-tolerance", eps_tol);
    if (seen_steps && seen_epochs) {
        fprintf(stderr, CMD ": give --steps or --epochs, not both\n");
        return 2;
    }
    if (seen_eps && seen_target) {
        fprintf(stderr, CMD ": --epsilon (report delta) and --target-epsilon (calibrate) exclude each other\n");
        return 2;
    }
    dp_accounting_options opt;
    dp_accounting_default_options(&opt);
    if (strcmp(accountant, "rdp") == 0) opt.accountant = DP_ACCOUNTANT_RDP;
    else if (strcmp(accountant, "pld") == 0) opt.accountant = DP_ACCOUNTANT_PLD;
    else {
        fprintf(stderr, CMD ": --accountant must be rdp or pld, got '%s'\n", accountant);
        return 2;
    }
    if (strcmp(conversion, "improved") == 0) opt.conversion = DP_CONVERSION_IMPROVED;
    else if (strcmp(conversion, "classic") == 0) opt.conversion = DP_CONVERSION_CLASSIC;
    else {
        fprintf(stderr, CMD ": --conversion must be improved or classic, got '%s'\n", conversion);
        return 2;
    }
    double *orders = NULL, def_orders[DP_RDP_DEFAULT_N_ORDERS];
    size_t n_orders = 0;
    if (orders_s) {
        if (parse_orders(orders_s, &orders, &n_orders)) return 2;
    } else {
        n_orders = dp_rdp_default_orders(def_orders);
    }
    opt.orders = orders ? orders : def_orders;
    opt.n_orders = n_orders;
    opt.pld.value_discretization_interval = pld_interval;
    opt.pld.tail_mass_truncation = pld_tail;
    opt.epsilon_tolerance = eps_tol;
    if (eps_tol > 0) opt.sigma_tolerance = 0;
    if (opt.accountant == DP_ACCOUNTANT_PLD && eps_tol == 0) opt.sigma_tolerance = 1e-4; /* each PLD call costs ~0.1 s */

    /* The mode follows from which of q, σ, steps and the targets were given. */
    int have_len = seen_steps || seen_epochs;
    mode_t_ mode = seen_eps ? MODE_DELTA : MODE_EPSILON;
    if (seen_target) {
        if (!seen_q || seen_sigma == have_len) {
            fprintf(stderr, CMD ": --target-epsilon needs --sample-rate and either --steps/--epochs (to calibrate "
                            "sigma) or --noise-multiplier (to find the step budget)\n");
            free(orders);
            return 2;
        }
        mode = seen_sigma ? MODE_STEPS : MODE_SIGMA;
    } else if (seen_q || seen_sigma || have_len) {
        if (!seen_q || !seen_sigma || !have_len) {
            fprintf(stderr, CMD ": a run needs --sample-rate, --noise-multiplier and --steps (or --epochs)\n");
            free(orders);
            return 2;
        }
    } else if (!history_path && !runs) {
        fprintf(stderr, CMD ": nothing to account: give a run (--sample-rate, --noise-multiplier, --steps) or "
                        "--history / --runs (see --help)\n");
        free(orders);
        return 2;
    }
    if (seen_epochs) {
        steps = dp_steps_for_epochs(epochs, q);
        if (steps < 0) {
            fprintf(stderr, CMD ": --epochs %g at --sample-rate %g gives more than 2^53 steps\n", epochs, q);
            free(orders);
            return 2;
        }
    }

    dp_history prior, h;
    dp_history_init(&prior);
    dp_history_init(&h);
    dp_error err;
    rc = 0;
    if (history_path && dp_history_load(&prior, history_path, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        rc = 2;
    }
    if (!rc && runs) rc = parse_runs(runs, &prior);

    double eps_val = NAN, delta_val = delta;
    dp_rdp_result rr = {0};
    dp_pld_result pr = {0};
    if (!rc && mode == MODE_SIGMA) {
        if (dp_calibrate_sigma(target, delta, q, steps, &prior, &opt, &sigma, &eps_val, &err)) {
            fprintf(stderr, CMD ": %s\n", err.msg);
            rc = 1;
        }
    } else if (!rc && mode == MODE_STEPS) {
        if (dp_max_steps(target, delta, q, sigma, &prior, &opt, &steps, &eps_val, &err)) {
            fprintf(stderr, CMD ": %s\n", err.msg);
            rc = 1;
        }
    }
    for (size_t i = 0; !rc && i < prior.n; i++) rc = dp_history_add(&h, &prior.events[i], &err) ? 1 : 0;
    if (!rc && seen_q && steps > 0 && dp_history_add_poisson_gaussian(&h, sigma, q, steps, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        rc = 2;
    }
    /* Final numbers (and the best order / PLD details) always come from one accountant call on the full
     * history, so what is printed is exactly what that history gives. */
    if (!rc) {
        int bad;
        if (opt.accountant == DP_ACCOUNTANT_RDP) {
            bad = mode == MODE_DELTA ? dp_rdp_delta(&h, opt.orders, n_orders, epsilon, opt.conversion, &rr, &err)
                                     : dp_rdp_epsilon(&h, opt.orders, n_orders, delta, opt.conversion, &rr, &err);
            eps_val = rr.epsilon, delta_val = rr.delta;
        } else {
            bad = mode == MODE_DELTA ? dp_pld_delta(&h, epsilon, &opt.pld, &pr, &err)
                                     : dp_pld_epsilon(&h, delta, &opt.pld, &pr, &err);
            eps_val = pr.epsilon, delta_val = pr.delta;
        }
        if (bad) {
            fprintf(stderr, CMD ": %s\n", err.msg);
            rc = 2;
        }
    }
    if (!rc && save_path && dp_history_save(&h, save_path, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        rc = 1;
    }
    if (rc) {
        dp_history_free(&prior);
        dp_history_free(&h);
        free(orders);
        return rc;
    }

    int is_rdp = opt.accountant == DP_ACCOUNTANT_RDP;
    const char *conv_name = is_rdp ? conversion : "none";
    if (json) {
        cJSON *o = cJSON_CreateObject();
        const char *mode_name[] = {"epsilon", "delta", "calibrate_sigma", "max_steps"};
        cJSON_AddStringToObject(o, "mode", mode_name[mode]);
        cJSON_AddStringToObject(o, "accountant", accountant);
        cJSON_AddStringToObject(o, "conversion", conv_name);
        cJSON_AddNumberToObject(o, "delta", delta_val);
        if (isfinite(eps_val)) cJSON_AddNumberToObject(o, "epsilon", eps_val);
        else cJSON_AddStringToObject(o, "epsilon", "inf");
        if (mode == MODE_SIGMA || mode == MODE_STEPS) {
            cJSON_AddNumberToObject(o, "target_epsilon", target);
            cJSON_AddNumberToObject(o, "noise_multiplier", sigma);
            cJSON_AddNumberToObject(o, "sample_rate", q);
            cJSON_AddNumberToObject(o, "steps", (double)steps);
        }
        if (is_rdp) {
            cJSON_AddNumberToObject(o, "n_orders", (double)n_orders);
            cJSON_AddNumberToObject(o, "best_order", rr.best_order);
            cJSON_AddBoolToObject(o, "order_at_edge", rr.at_edge);
        } else {
            cJSON_AddNumberToObject(o, "pld_interval", pr.interval_used);
            cJSON_AddNumberToObject(o, "pld_truncated_mass", pr.truncated_mass);
            cJSON_AddStringToObject(o, "pld_worst_direction", pr.worst_direction ? "add" : "remove");
        }
        cJSON_AddItemToObject(o, "history", dp_history_to_cjson(&h));
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        print_history(&h);
        if (is_rdp)
            printf("accountant:  rdp, conversion: %s, %zu orders%s\n", conversion, n_orders,
                   orders ? "" : " (Opacus default grid)");
        else
            printf("accountant:  pld (interval %g, truncated mass %.2g included in delta), conversion: none\n",
                   pr.interval_used, pr.truncated_mass);
        if (mode == MODE_SIGMA)
            printf("calibrated:  noise multiplier %.6g for target epsilon %g over %lld steps\n", sigma, target,
                   (long long)steps);
        if (mode == MODE_STEPS)
            printf("calibrated:  %lld steps fit in target epsilon %g at noise multiplier %g\n", (long long)steps,
                   target, sigma);
        if (mode == MODE_DELTA) printf("epsilon:     %g\ndelta:       %.6g", eps_val, delta_val);
        else printf("delta:       %g\nepsilon:     %.6g", delta_val, eps_val);
        if (is_rdp) printf(" (best order %g)", rr.best_order);
        printf("\n");
        if (is_rdp && rr.at_edge)
            printf("note:        the best order is at the edge of the grid; a wider grid (--orders) may give a "
                   "smaller bound\n");
        if (!is_rdp && pr.interval_used > pld_interval)
            printf("note:        the interval was widened from %g to fit the FFT grid\n", pld_interval);
    }
    dp_history_free(&prior);
    dp_history_free(&h);
    free(orders);
    return 0;
}
