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
#include "core/common.h"
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

/* A number in the JSON output that reads back to the same double (cJSON's own printer checks the round
 * trip only approximately): the shortest of %.15g, %.16g and %.17g that does. */
static void add_exact(cJSON *o, const char *key, double v) {
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    cJSON_AddItemToObject(o, key, cJSON_CreateRaw(buf));
}

static const char *acc_name(int a) { return a == DP_ACCOUNTANT_PLD ? "pld" : "rdp"; }

static int same_orders(const double *a, size_t na, const double *b, size_t nb) {
    if (!a || !b) return !a && !b;
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* The PLD grid at an interval the user asked for: estimated before anything is computed, and refused
 * (rather than silently widened, or run for minutes with gigabytes) when it cannot fit. */
static int check_pld_grid(const dp_history *h, const dp_pld_params *p) {
    dp_pld_estimate_result est;
    dp_error err;
    if (dp_pld_estimate(h, p, &est, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        return 2;
    }
    double need = est.points > est.step_points ? est.points : est.step_points;
    if (!(need <= (double)p->max_grid)) {
        fprintf(stderr,
                CMD ": --pld-interval %g: the PLD grid would need about %.3g points (about %.3g GB of memory); the "
                    "limit is %zu points (about %.2g GB): use --pld-interval %.2g or larger (default 0.0001)\n",
                p->value_discretization_interval, need, est.bytes / 1e9, p->max_grid,
                8.0 * 3.0 * (double)p->max_grid / 1e9, est.min_interval);
        return 2;
    }
    return 0;
}

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
        ARG_D("delta", &delta, "delta in (0, 1) (default: the one recorded in --history, else 1e-5)"),
        ARG_D("epsilon", &epsilon, "report delta at this epsilon instead of epsilon at --delta"),
        ARG_D("target-epsilon", &target,
              "calibrate: without --noise-multiplier, the smallest sigma meeting it; without --steps/--epochs, "
              "the largest number of steps"),
        ARG_S("accountant", &accountant, "rdp or pld (default: the one recorded in --history, else rdp)"),
        ARG_S("conversion", &conversion, "RDP to (epsilon, delta) conversion: improved or classic"),
        ARG_S("orders", &orders_s, "RDP orders, e.g. 2,2.5,3:64 (a:b = integers a..b, a:b:s = step s); default: "
                                   "Opacus's 151 orders"),
        ARG_S("history", &history_path, "JSON history of earlier events, composed before the run; a training run's "
                                        "privacy.json also sets the defaults of --delta and the accountant "
                                        "(see docs/accountants.md)"),
        ARG_S("runs", &runs, "earlier runs as q:sigma:steps,q:sigma:steps, composed after --history"),
        ARG_S("save-history", &save_path, "write the composed history (including the run) to this JSON file, "
                                          "with delta, accountant and epsilon"),
        ARG_D("pld-interval", &pld_interval, "PLD discretisation interval of the privacy loss (default 0.0001)"),
        ARG_D("pld-tail", &pld_tail, "PLD tail mass truncated to infinite loss (added to delta; default 1e-15)"),
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
    int seen_delta = args_seen(specs, nspecs, "delta"), seen_acc = args_seen(specs, nspecs, "accountant");
    int seen_conv = args_seen(specs, nspecs, "conversion"), seen_interval = args_seen(specs, nspecs, "pld-interval");
    int seen_tail = args_seen(specs, nspecs, "pld-tail");

    /* Validation, one clear message per bad value. */
    if (seen_q && !(q > 0 && q <= 1)) return usage_error("%s must lie in (0, 1], got %g", "--sample-rate", q);
    if (seen_sigma && !(sigma > 0)) return usage_error("%s must be > 0, got %g", "--noise-multiplier", sigma);
    if (!(delta > 0 && delta < 1)) return usage_error("%s must lie in (0, 1), got %g", "--delta", delta);
    if (seen_steps && steps < 0) return usage_error("%s must be >= 0, got %.0f", "--steps", (double)steps);
    if (seen_steps && steps > DP_MAX_STEPS) return usage_error("%s must be <= 2^53, got %.0f", "--steps", (double)steps);
    if (seen_epochs && !(epochs >= 0)) return usage_error("%s must be >= 0, got %g", "--epochs", epochs);
    if (seen_eps && !(epsilon >= 0)) return usage_error("%s must be >= 0, got %g", "--epsilon", epsilon);
    if (seen_target && !(target > 0)) return usage_error("%s must be > 0, got %g", "--target-epsilon", target);
    if (!(pld_interval > 0) || !isfinite(pld_interval))
        return usage_error("%s must be a finite number > 0, got %g", "--pld-interval", pld_interval);
    if (!(pld_tail > 0 && pld_tail < 1e-3)) return usage_error("%s must lie in (0, 1e-3), got %g", "--pld-tail", pld_tail);
    if (!(eps_tol >= 0)) return usage_error("%s must be >= 0, got %g", "--epsilon-tolerance", eps_tol);
    if (history_path && save_path && dp_same_file(history_path, save_path)) {
        fprintf(stderr, CMD ": --save-history %s is the --history file: writing the composed history there would "
                        "replace the run's own ledger; choose another file\n", save_path);
        return 2;
    }
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
    if (orders_s && parse_orders(orders_s, &orders, &n_orders)) return 2;

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
    dp_privacy_ledger rec; /* what --history records about its own ε */
    dp_ledger_init(&rec);
    dp_privacy_ledger out_ledger;
    dp_ledger_init(&out_ledger);
    dp_error err;
    rc = 0;
    if (history_path && dp_ledger_load(&prior, &rec, history_path, &err)) {
        fprintf(stderr, CMD ": %s\n", err.msg);
        rc = 2;
    }
    const size_t recorded_events = prior.n;
    /* The settings recorded with the history are the defaults; a flag given overrides its setting, and
     * each override that changes a recorded value is said (the ε then is not the run's ε). */
    char notes[6][320];
    int n_notes = 0;
    const int have_rec = !rc && history_path && dp_ledger_has_accounting(&rec);
    if (have_rec) {
        if (!seen_delta) delta = rec.delta;
        else if (delta != rec.delta)
            snprintf(notes[n_notes++], sizeof notes[0], "--delta %g differs from the delta recorded in %s (%g)", delta,
                     history_path, rec.delta);
        if (!seen_acc) opt.accountant = (dp_accountant_kind)rec.accountant;
        else if ((int)opt.accountant != rec.accountant)
            snprintf(notes[n_notes++], sizeof notes[0], "--accountant %s differs from the accountant recorded in %s (%s)",
                     acc_name(opt.accountant), history_path, acc_name(rec.accountant));
        if (rec.accountant == DP_ACCOUNTANT_RDP && opt.accountant == DP_ACCOUNTANT_RDP) {
            if (rec.conversion >= 0) {
                if (!seen_conv) opt.conversion = (dp_conversion)rec.conversion;
                else if ((int)opt.conversion != rec.conversion)
                    snprintf(notes[n_notes++], sizeof notes[0], "--conversion %s differs from the conversion recorded in %s",
                             conversion, history_path);
            }
            if (!orders_s && rec.orders) {
                orders = malloc(rec.n_orders * sizeof *orders);
                memcpy(orders, rec.orders, rec.n_orders * sizeof *orders);
                n_orders = rec.n_orders;
            } else if (orders_s && !same_orders(orders, n_orders, rec.orders, rec.n_orders)) {
                snprintf(notes[n_notes++], sizeof notes[0], "--orders differs from the RDP orders recorded in %s",
                         history_path);
            }
        }
        if (rec.accountant == DP_ACCOUNTANT_PLD && opt.accountant == DP_ACCOUNTANT_PLD) {
            if (isfinite(rec.pld_interval)) {
                if (!seen_interval) pld_interval = rec.pld_interval;
                else if (pld_interval != rec.pld_interval)
                    snprintf(notes[n_notes++], sizeof notes[0], "--pld-interval %g differs from the interval recorded in %s (%g)",
                             pld_interval, history_path, rec.pld_interval);
            }
            if (isfinite(rec.pld_tail)) {
                if (!seen_tail) pld_tail = rec.pld_tail;
                else if (pld_tail != rec.pld_tail)
                    snprintf(notes[n_notes++], sizeof notes[0], "--pld-tail %g differs from the tail mass recorded in %s (%g)",
                             pld_tail, history_path, rec.pld_tail);
            }
        }
    } else if (!rc && history_path && !seen_delta) {
        snprintf(notes[n_notes++], sizeof notes[0],
                 "%s records no delta or accountant (an events-only file): using delta %g and %s; training runs "
                 "default to delta 1e-06, so give the run's --delta and --accountant to recompute its epsilon",
                 history_path, delta, acc_name(opt.accountant));
    }
    if (!orders) n_orders = dp_rdp_default_orders(def_orders);
    opt.orders = orders ? orders : def_orders;
    opt.n_orders = n_orders;
    opt.pld.value_discretization_interval = pld_interval;
    opt.pld.tail_mass_truncation = pld_tail;
    opt.epsilon_tolerance = eps_tol;
    if (eps_tol > 0) opt.sigma_tolerance = 0;
    if (opt.accountant == DP_ACCOUNTANT_PLD && eps_tol == 0) opt.sigma_tolerance = 1e-4; /* each PLD call costs ~0.1 s */
    const int is_rdp = opt.accountant == DP_ACCOUNTANT_RDP;
    const char *conv_name = is_rdp ? (opt.conversion == DP_CONVERSION_CLASSIC ? "classic" : "improved") : "none";
    if (!rc && runs) rc = parse_runs(runs, &prior);
    /* An explicit --pld-interval is refused when its grid cannot fit, estimated before any PLD computing.
     * The calibrations are probed where the RDP accountant (milliseconds) puts their answer: its step
     * budget, or its noise multiplier, which PLD (tighter) meets or passes, so that the grid PLD will
     * need is at least the probe's. Accounting at other settings may still widen it, and says so. */
    if (!rc && !is_rdp && seen_interval) {
        dp_history probe;
        dp_history_init(&probe);
        for (size_t i = 0; i < prior.n; i++) dp_history_add(&probe, &prior.events[i], NULL);
        double probe_sigma = sigma;
        int64_t probe_steps = steps;
        dp_accounting_options ro;
        dp_accounting_default_options(&ro);
        ro.sigma_tolerance = 1e-3;
        double ignored;
        if (mode == MODE_STEPS && (dp_max_steps(target, delta, q, sigma, &prior, &ro, &probe_steps, &ignored, NULL) ||
                                   probe_steps < 1))
            probe_steps = 1;
        if (mode == MODE_SIGMA && dp_calibrate_sigma(target, delta, q, steps, &prior, &ro, &probe_sigma, &ignored, NULL))
            probe_sigma = 10.0;
        if (seen_q && probe_steps > 0) dp_history_add_poisson_gaussian(&probe, probe_sigma, q, probe_steps, NULL);
        rc = check_pld_grid(&probe, &opt.pld);
        dp_history_free(&probe);
    }

    double eps_val = NAN, delta_val = delta;
    dp_rdp_result rr = {0};
    dp_pld_result pr = {0};
    /* A target that cannot be met is bad input (exit status 2), as an invalid value is. */
    if (!rc && mode == MODE_SIGMA) {
        if (dp_calibrate_sigma(target, delta, q, steps, &prior, &opt, &sigma, &eps_val, &err)) {
            fprintf(stderr, CMD ": %s\n", err.msg);
            rc = 2;
        }
    } else if (!rc && mode == MODE_STEPS) {
        if (dp_max_steps(target, delta, q, sigma, &prior, &opt, &steps, &eps_val, &err)) {
            fprintf(stderr, CMD ": %s\n", err.msg);
            rc = 2;
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
        if (is_rdp) {
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
    if (!rc && save_path) {
        /* the saved file says how its ε was computed, like a training run's privacy.json */
        dp_accounting_options so = opt;
        so.orders = orders; /* NULL: the default grid */
        dp_ledger_set_accounting(&out_ledger, &so, delta_val, eps_val);
        snprintf(out_ledger.command, sizeof out_ledger.command, "privacy");
        if (history_path) snprintf(out_ledger.privacy_unit, sizeof out_ledger.privacy_unit, "%s", rec.privacy_unit);
        if (dp_ledger_save(&h, &out_ledger, save_path, &err)) {
            fprintf(stderr, CMD ": %s\n", err.msg);
            rc = 1;
        }
    }
    if (rc) goto done;

    /* The ε recorded in --history, next to the one just computed: the same when nothing was added and no
     * setting was overridden. */
    const int have_rec_eps = history_path && !isnan(rec.epsilon);
    const int comparable = have_rec && mode == MODE_EPSILON && h.n == recorded_events && !runs && !seen_q &&
                           n_notes == 0;
    const int matches = comparable && have_rec_eps &&
                        (rec.epsilon == eps_val ||
                         (isfinite(rec.epsilon) && fabs(rec.epsilon - eps_val) <= 1e-9 * fmax(1.0, rec.epsilon)));
    if (json) {
        cJSON *o = cJSON_CreateObject();
        const char *mode_name[] = {"epsilon", "delta", "calibrate_sigma", "max_steps"};
        cJSON_AddStringToObject(o, "mode", mode_name[mode]);
        cJSON_AddStringToObject(o, "accountant", acc_name(opt.accountant));
        cJSON_AddStringToObject(o, "conversion", conv_name);
        add_exact(o, "delta", delta_val);
        if (isfinite(eps_val)) add_exact(o, "epsilon", eps_val);
        else cJSON_AddStringToObject(o, "epsilon", "inf");
        if (mode == MODE_SIGMA || mode == MODE_STEPS) {
            cJSON_AddNumberToObject(o, "target_epsilon", target);
            add_exact(o, "noise_multiplier", sigma);
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
        if (history_path) {
            if (rec.epsilon == INFINITY) cJSON_AddStringToObject(o, "recorded_epsilon", "inf");
            else if (have_rec_eps) add_exact(o, "recorded_epsilon", rec.epsilon);
            if (isfinite(rec.delta)) add_exact(o, "recorded_delta", rec.delta);
            if (rec.accountant >= 0) cJSON_AddStringToObject(o, "recorded_accountant", acc_name(rec.accountant));
            if (comparable && have_rec_eps) cJSON_AddBoolToObject(o, "recorded_epsilon_matches", matches);
            if (rec.command[0]) cJSON_AddStringToObject(o, "recorded_by", rec.command);
            if (rec.privacy_unit[0]) cJSON_AddStringToObject(o, "privacy_unit", rec.privacy_unit);
            if (rec.epsilon_covers[0]) cJSON_AddStringToObject(o, "epsilon_covers", rec.epsilon_covers);
            if (rec.model_selection[0]) cJSON_AddStringToObject(o, "model_selection", rec.model_selection);
            if (rec.selection_covered >= 0) cJSON_AddBoolToObject(o, "selection_covered", rec.selection_covered);
        }
        if (n_notes) {
            cJSON *a = cJSON_AddArrayToObject(o, "notes");
            for (int i = 0; i < n_notes; i++) cJSON_AddItemToArray(a, cJSON_CreateString(notes[i]));
        }
        cJSON_AddItemToObject(o, "history", dp_history_to_cjson(&h));
        char *js = cJSON_Print(o);
        printf("%s\n", js);
        free(js);
        cJSON_Delete(o);
    } else {
        print_history(&h);
        if (history_path && rec.command[0])
            printf("recorded by: %s%s%s in %s\n", rec.command, rec.mechanism[0] ? ", " : "", rec.mechanism,
                   history_path);
        for (int i = 0; i < n_notes; i++) printf("note:        %s\n", notes[i]);
        if (is_rdp)
            printf("accountant:  rdp, conversion: %s, %zu orders%s\n", conv_name, n_orders,
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
        if (history_path && rec.epsilon == INFINITY) {
            printf("recorded:    NO guarantee: the run used noise multiplier 0 (its steps are not in the history)\n");
        } else if (have_rec_eps) {
            printf("recorded:    epsilon %.6g at delta %g (%s accountant) in %s", rec.epsilon, rec.delta,
                   acc_name(rec.accountant), history_path);
            if (matches) printf(": the same\n");
            else if (comparable) printf(": DIFFERENT from the epsilon recomputed above\n");
            else if (h.n != recorded_events || runs || seen_q)
                printf(", for its own events only (events were added here)\n");
            else printf(", not comparable: see the notes above\n");
        }
        if (history_path && rec.privacy_unit[0]) printf("unit:        %s\n", rec.privacy_unit);
        if (history_path && rec.epsilon_covers[0]) printf("covers:      %s\n", rec.epsilon_covers);
        if (history_path && rec.model_selection[0])
            printf("selection:   %s%s\n", rec.model_selection,
                   rec.selection_covered == 0 ? " (NOT covered by epsilon)" : "");
        if (history_path && rec.warning[0]) printf("WARNING:     %s\n", rec.warning);
        if (is_rdp && rr.at_edge)
            printf("note:        the best order is at the edge of the grid; a wider grid (--orders) may give a "
                   "smaller bound\n");
        if (!is_rdp && pr.interval_used > pld_interval)
            printf("note:        the interval was widened from %g to fit the FFT grid\n", pld_interval);
    }
done:
    dp_history_free(&prior);
    dp_history_free(&h);
    dp_ledger_free(&rec);
    dp_ledger_free(&out_ledger);
    free(orders);
    return rc;
}
