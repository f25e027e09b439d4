/* The privacy ledger (privacy.json with how its ε was computed) and the accountant's refusals:
 * - the ledger's fields (δ, accountant and settings, ε, unit, coverage, selection) round-trip bit for
 *   bit, files with only events still load, invalid or duplicated fields are refused naming the key;
 * - saving is atomic: a write that fails (a file-size limit here) leaves the old file as it was;
 * - an empty history has ε = 0 at any δ, and a target no noise can meet says why (not "earlier events");
 * - the PLD grid is estimated and bounded: a tiny interval fails at once instead of allocating trillions
 *   of points, and the estimate matches the grid actually used;
 * - a noise plan that allows no training step is refused. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dpformer/accountant.h"
#include "testutil.h"
#include "train/noise_plan.h"

static int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    fputs(s, f);
    fclose(f);
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void test_round_trip(void) {
    const char *path = "test_accountant_ledger.json";
    dp_error err;
    dp_history h, back;
    dp_history_init(&h), dp_history_init(&back);
    CHECK(dp_history_add_poisson_gaussian(&h, 1.1 + 1e-15, 0.013, 1234, &err) == 0);
    CHECK(dp_history_add_gaussian(&h, 7.3, 1, &err) == 0);
    double eps_rdp;
    CHECK(dp_epsilon(&h, 1e-6, NULL, &eps_rdp, &err) == 0);

    /* RDP with the default grid */
    dp_privacy_ledger l, r;
    dp_ledger_init(&l), dp_ledger_init(&r);
    dp_ledger_set_accounting(&l, NULL, 1e-6, eps_rdp);
    snprintf(l.command, sizeof l.command, "train");
    snprintf(l.privacy_unit, sizeof l.privacy_unit, "user");
    snprintf(l.epsilon_covers, sizeof l.epsilon_covers, "the weights");
    snprintf(l.model_selection, sizeof l.model_selection, "last epoch");
    l.selection_covered = 1;
    CHECK(dp_ledger_save(&h, &l, path, &err) == 0);
    CHECK(dp_ledger_load(&back, &r, path, &err) == 0);
    CHECK(back.n == 2 && back.events[0].steps == 1234 && same_bits(back.events[0].noise_multiplier, 1.1 + 1e-15));
    CHECK(dp_ledger_has_accounting(&r));
    CHECK(same_bits(r.epsilon, eps_rdp) && same_bits(r.delta, 1e-6));
    CHECK(r.accountant == DP_ACCOUNTANT_RDP && r.conversion == DP_CONVERSION_IMPROVED && r.orders == NULL);
    CHECK(strcmp(r.command, "train") == 0 && strcmp(r.privacy_unit, "user") == 0);
    CHECK(strcmp(r.model_selection, "last epoch") == 0 && r.selection_covered == 1);
    /* recomputing with what the file records gives the recorded ε bit for bit */
    dp_accounting_options o;
    dp_accounting_default_options(&o);
    o.accountant = (dp_accountant_kind)r.accountant;
    double again;
    CHECK(dp_epsilon(&back, r.delta, &o, &again, &err) == 0);
    CHECK(same_bits(again, r.epsilon));
    /* the events-only reader still reads it */
    dp_history only;
    dp_history_init(&only);
    CHECK(dp_history_load(&only, path, &err) == 0 && only.n == 2);
    dp_history_free(&only);

    /* PLD settings, custom RDP orders, no guarantee (ε = +inf) */
    dp_accounting_options po;
    dp_accounting_default_options(&po);
    po.accountant = DP_ACCOUNTANT_PLD;
    po.pld.value_discretization_interval = 3e-4;
    po.pld.tail_mass_truncation = 1e-14;
    dp_ledger_set_accounting(&l, &po, 1e-5, INFINITY);
    CHECK(dp_ledger_save(&h, &l, path, &err) == 0);
    CHECK(dp_ledger_load(&back, &r, path, &err) == 0);
    CHECK(r.accountant == DP_ACCOUNTANT_PLD && r.pld_interval == 3e-4 && r.pld_tail == 1e-14);
    CHECK(r.epsilon == INFINITY && r.delta == 1e-5 && r.conversion == -1);
    static const double orders[] = {1.5, 2, 32.25};
    dp_accounting_options ro;
    dp_accounting_default_options(&ro);
    ro.orders = orders;
    ro.n_orders = 3;
    ro.conversion = DP_CONVERSION_CLASSIC;
    dp_ledger_set_accounting(&l, &ro, 1e-7, 2.5);
    CHECK(dp_ledger_save(&h, &l, path, &err) == 0);
    CHECK(dp_ledger_load(&back, &r, path, &err) == 0);
    CHECK(r.n_orders == 3 && r.orders && r.orders[2] == 32.25 && r.conversion == DP_CONVERSION_CLASSIC);
    CHECK(isnan(r.pld_interval));

    /* a file with only events (as written before the ledger): loads, nothing recorded */
    write_text(path, "{\"events\": [{\"type\": \"poisson_gaussian\", \"noise_multiplier\": 1, \"sample_rate\": 0.1, "
                     "\"steps\": 3}]}");
    CHECK(dp_ledger_load(&back, &r, path, &err) == 0);
    CHECK(back.n == 1 && !dp_ledger_has_accounting(&r) && isnan(r.epsilon) && r.accountant == -1 &&
          r.privacy_unit[0] == 0 && r.selection_covered == -1);

    remove(path);
    dp_ledger_free(&l), dp_ledger_free(&r);
    dp_history_free(&h), dp_history_free(&back);
}

/* Refused with the path and the key named; the history and ledger passed in are left as they were. */
static void expect_refused(const char *json, const char *want1, const char *want2) {
    const char *path = "test_accountant_ledger_bad.json";
    write_text(path, json);
    dp_history h;
    dp_history_init(&h);
    CHECK(dp_history_add_poisson_gaussian(&h, 2, 0.5, 7, NULL) == 0);
    dp_privacy_ledger l;
    dp_ledger_init(&l);
    dp_error err = {{0}};
    int rc = dp_ledger_load(&h, &l, path, &err);
    CHECK(rc != 0);
    CHECK(strstr(err.msg, path) != NULL);
    CHECK(strstr(err.msg, want1) != NULL);
    if (want2) CHECK(strstr(err.msg, want2) != NULL);
    if (rc == 0 || !strstr(err.msg, want1)) fprintf(stderr, "  for %s: got '%s'\n", json, err.msg);
    CHECK(h.n == 1 && h.events[0].steps == 7);
    dp_ledger_free(&l);
    dp_history_free(&h);
    remove(path);
}

static void test_refused(void) {
    const char *ev = "{\"type\": \"poisson_gaussian\", \"noise_multiplier\": 1, \"sample_rate\": 0.1, \"steps\": 3}";
    char buf[1024];
    /* duplicate keys: cJSON would take the first, other readers the last */
    snprintf(buf, sizeof buf, "{\"events\": [%s], \"events\": []}", ev);
    expect_refused(buf, "duplicate key \"events\"", "top-level");
    expect_refused("{\"events\": [{\"type\": \"poisson_gaussian\", \"noise_multiplier\": 1, \"sample_rate\": 0.1, "
                   "\"steps\": 3, \"steps\": 300}]}",
                   "duplicate key \"steps\"", "event 0");
    snprintf(buf, sizeof buf, "{\"delta\": 1e-6, \"events\": [%s], \"delta\": 1e-5}", ev);
    expect_refused(buf, "duplicate key \"delta\"", NULL);
    snprintf(buf, sizeof buf, "{\"extra\": {\"a\": 1, \"a\": 2}, \"events\": [%s]}", ev);
    expect_refused(buf, "duplicate key \"a\"", "\"extra\"");
    /* the events-only reader refuses them too */
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    snprintf(buf, sizeof buf, "{\"events\": [%s], \"events\": []}", ev);
    CHECK(dp_history_from_json(&h, buf, &err) != 0 && strstr(err.msg, "duplicate key \"events\"") != NULL);
    dp_history_free(&h);
    /* invalid ledger fields */
    snprintf(buf, sizeof buf, "{\"delta\": 2, \"events\": [%s]}", ev);
    expect_refused(buf, "\"delta\"", NULL);
    snprintf(buf, sizeof buf, "{\"accountant\": \"moments\", \"events\": [%s]}", ev);
    expect_refused(buf, "\"accountant\"", NULL);
    snprintf(buf, sizeof buf, "{\"rdp_orders\": [2, 0.5], \"events\": [%s]}", ev);
    expect_refused(buf, "\"rdp_orders\"", NULL);
    snprintf(buf, sizeof buf, "{\"epsilon\": -1, \"events\": [%s]}", ev);
    expect_refused(buf, "\"epsilon\"", NULL);
    snprintf(buf, sizeof buf, "{\"pld_interval\": 0, \"events\": [%s]}", ev);
    expect_refused(buf, "\"pld_interval\"", NULL);
    snprintf(buf, sizeof buf, "{\"selection_covered\": \"yes\", \"events\": [%s]}", ev);
    expect_refused(buf, "\"selection_covered\"", NULL);
}

/* A write that fails must not destroy the file it replaces (it used to be truncated to 0 bytes first). */
static void test_atomic_save(void) {
    const char *path = "test_accountant_ledger_atomic.json";
    dp_error err;
    dp_history h;
    dp_history_init(&h);
    CHECK(dp_history_add_poisson_gaussian(&h, 1.5, 0.04, 10, &err) == 0);
    CHECK(dp_history_save(&h, path, &err) == 0);
    char *before = read_all(path);
    CHECK(before && strlen(before) > 100);
    for (int i = 0; i < 50; i++) CHECK(dp_history_add_gaussian(&h, 1.0 + i, 1, &err) == 0);
    struct rlimit old, small;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    small = old;
    small.rlim_cur = 64; /* bytes: any new history is longer */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    int rc = dp_history_save(&h, path, &err);
    dp_privacy_ledger l;
    dp_ledger_init(&l);
    dp_ledger_set_accounting(&l, NULL, 1e-6, 1.0);
    int rc2 = dp_ledger_save(&h, &l, path, &err);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, prev);
    CHECK(rc != 0 && rc2 != 0);
    CHECK(strstr(err.msg, path) != NULL);
    char *after = read_all(path);
    CHECK(after && before && strcmp(before, after) == 0);
    /* no temporary file left behind */
    FILE *ls = popen("ls -a . | grep -c '^\\.test_accountant_ledger_atomic.json.tmp'", "r");
    int left = -1;
    if (ls) {
        if (fscanf(ls, "%d", &left) != 1) left = -1;
        pclose(ls);
    }
    CHECK(left == 0);
    /* and a save that can succeed replaces it */
    CHECK(dp_ledger_save(&h, &l, path, &err) == 0);
    dp_history back;
    dp_history_init(&back);
    CHECK(dp_history_load(&back, path, &err) == 0 && back.n == h.n);
    dp_history_free(&back);
    dp_ledger_free(&l);
    free(before), free(after);
    remove(path);
    dp_history_free(&h);
}

static void test_empty_and_unreachable(void) {
    dp_history empty;
    dp_history_init(&empty);
    dp_error err = {{0}};
    dp_rdp_result r;
    /* nothing released: ε = 0 whatever δ and conversion (δ = 1e-300 used to give 11.06) */
    CHECK(dp_rdp_epsilon(&empty, NULL, 0, 1e-300, DP_CONVERSION_IMPROVED, &r, &err) == 0 && r.epsilon == 0);
    CHECK(dp_rdp_epsilon(&empty, NULL, 0, 1e-5, DP_CONVERSION_CLASSIC, &r, &err) == 0 && r.epsilon == 0);
    /* a target that no noise can meet: said so, with the reason, and no "earlier events" (there are none) */
    double sigma, eps;
    CHECK(dp_calibrate_sigma(0.5, 1e-300, 0.25, 8, NULL, NULL, &sigma, &eps, &err) != 0);
    CHECK(strstr(err.msg, "no noise multiplier can meet") != NULL);
    CHECK(strstr(err.msg, "conversion") != NULL);
    CHECK(strstr(err.msg, "earlier events") == NULL);
    CHECK(dp_calibrate_feasible(0.5, 1e-300, 0.25, 8, NULL, NULL, &err) != 0);
    dp_accounting_options o;
    dp_accounting_default_options(&o);
    o.accountant = DP_ACCOUNTANT_PLD;
    CHECK(dp_calibrate_feasible(0.5, 1e-300, 0.25, 8, NULL, &o, &err) != 0);
    CHECK(strstr(err.msg, "PLD") != NULL && strstr(err.msg, "truncates") != NULL);
    CHECK(dp_calibrate_feasible(8, 1e-5, 0.04, 2250, NULL, NULL, &err) == 0);
    /* a prior that alone exceeds the target is still named as such */
    dp_history prior;
    dp_history_init(&prior);
    CHECK(dp_history_add_poisson_gaussian(&prior, 0.7, 0.1, 1000, &err) == 0);
    CHECK(dp_calibrate_feasible(1, 1e-5, 0.04, 10, &prior, NULL, &err) != 0);
    CHECK(strstr(err.msg, "earlier events") != NULL);
    dp_history_free(&prior);
}

static void test_pld_grid(void) {
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    CHECK(dp_history_add_poisson_gaussian(&h, 1.5, 0.04, 2249, &err) == 0);
    /* the estimate matches the grid used at the default interval */
    dp_pld_estimate_result est;
    dp_pld_result r;
    CHECK(dp_pld_estimate(&h, NULL, &est, &err) == 0);
    CHECK(dp_pld_epsilon(&h, 1e-5, NULL, &r, &err) == 0);
    CHECK(r.interval_used == 1e-4);
    CHECK(est.points > 0.8 * (double)r.grid_size && est.points < 1.25 * (double)r.grid_size);
    CHECK(est.bytes > 8.0 * (double)r.grid_size && est.min_interval == 1e-4);
    /* an interval of 1e-12 asks for ~1e13 points: estimated without allocating, and refused at once by the
     * accountant (it used to allocate one step's 6.4e12 doubles) */
    dp_pld_params p;
    dp_pld_default_params(&p);
    p.value_discretization_interval = 1e-12;
    CHECK(dp_pld_estimate(&h, &p, &est, &err) == 0);
    CHECK(est.points > 1e12 && est.step_points > 1e11 && est.bytes > 8e12);
    CHECK(est.min_interval > 1e-7 && est.min_interval < 1e-5);
    double t0 = now();
    CHECK(dp_pld_epsilon(&h, 1e-5, &p, &r, &err) != 0);
    CHECK(strstr(err.msg, "too wide") != NULL);
    CHECK(now() - t0 < 2.0);
    /* the smallest interval the estimate allows does run, without widening much */
    p.value_discretization_interval = 1e-12;
    dp_pld_estimate(&h, &p, &est, &err);
    p.value_discretization_interval = 8 * est.min_interval; /* a cheap multiple, for the test's time */
    CHECK(dp_pld_epsilon(&h, 1e-5, &p, &r, &err) == 0);
    CHECK(r.interval_used == p.value_discretization_interval);
    CHECK(fabs(r.epsilon - 6.76705) < 1e-3);
    dp_history_free(&h);
}

static void test_noise_plan(void) {
    dp_privacy_config p = dp_privacy_config_default();
    p.enabled = 1;
    p.noise_multiplier = 0.5;
    p.target_epsilon = 0.1;
    dp_error err = {{0}};
    /* σ 0.5 at q 0.27: one step alone is far above ε 0.1 */
    CHECK(dp_noise_plan_check(&p, 0.2667, 8, 1, NULL, NULL, &err) != 0);
    CHECK(strstr(err.msg, "allows no training step") != NULL);
    double sigma;
    int64_t max_events;
    FILE *devnull = fopen("/dev/null", "w");
    CHECK(dp_noise_plan(&p, 0.2667, 8, 1, NULL, NULL, "steps", devnull, &sigma, &max_events, &err) != 0);
    /* DP-FP: a step is M events; one event fitting is not enough */
    p.noise_multiplier = 1;
    p.target_epsilon = 1.05;
    double e1, e4;
    dp_history h;
    dp_history_init(&h);
    dp_history_add_poisson_gaussian(&h, 1, 0.05, 1, NULL);
    dp_epsilon(&h, p.delta, NULL, &e1, &err);
    dp_history_add_poisson_gaussian(&h, 1, 0.05, 3, NULL);
    dp_epsilon(&h, p.delta, NULL, &e4, &err);
    dp_history_free(&h);
    p.target_epsilon = 0.5 * (e1 + e4);
    CHECK(dp_noise_plan_check(&p, 0.05, 100, 1, NULL, NULL, &err) == 0);
    CHECK(dp_noise_plan_check(&p, 0.05, 100, 4, NULL, NULL, &err) != 0);
    CHECK(strstr(err.msg, "4 mechanism events") != NULL);
    CHECK(dp_noise_plan(&p, 0.05, 100, 4, NULL, NULL, "mechanism events", devnull, &sigma, &max_events, &err) != 0);
    /* calibration: infeasible at δ 1e-300, fine at 1e-6 */
    p.noise_multiplier = 0;
    p.target_epsilon = 0.5;
    p.delta = 1e-300;
    CHECK(dp_noise_plan_check(&p, 0.27, 6, 1, NULL, NULL, &err) != 0);
    CHECK(strstr(err.msg, "no noise multiplier") != NULL && strstr(err.msg, "earlier") == NULL);
    p.delta = 1e-6;
    CHECK(dp_noise_plan_check(&p, 0.27, 6, 1, NULL, NULL, &err) == 0);
    fclose(devnull);
}

int main(void) {
    test_round_trip();
    test_refused();
    test_atomic_save();
    test_empty_and_unreachable();
    test_pld_grid();
    test_noise_plan();
    return tu_finish("test_accountant_ledger");
}
