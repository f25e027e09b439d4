/* dpformer public API: privacy accounting.
 *
 * Everything that turns a training run into an (ε, δ) guarantee lives here:
 *   - the event history (what was released: subsampled or plain Gaussian mechanisms) with an exact
 *     JSON form that checkpoints carry;
 *   - the RDP accountant (Rényi DP of the Poisson-subsampled Gaussian, composed over the history and
 *     converted to (ε, δ) with the improved or the classic conversion);
 *   - the PLD accountant (privacy-loss distribution, pessimistically discretised and composed by FFT;
 *     tighter than RDP and still an upper bound);
 *   - calibration: the smallest noise multiplier, or the largest number of steps, for a target ε.
 *
 * Conventions: add/remove-one adjacency; sensitivity 1 (σ is the noise multiplier, i.e. the noise
 * standard deviation divided by the clipping norm). All arithmetic is in double whatever dp_real is.
 * Functions that can fail on user input return 0 on success and non-zero on error with a one-line
 * message in `err` (which may be NULL). See docs/accountants.md for the user-level description. */
#ifndef DPFORMER_ACCOUNTANT_H
#define DPFORMER_ACCOUNTANT_H

#include <stddef.h>
#include <stdint.h>

#include "dpformer/common.h"

struct cJSON;

/* ---------------------------------------------------------------------------------------------
 * Events and history
 * ------------------------------------------------------------------------------------------- */

typedef enum {
    DP_EVENT_POISSON_GAUSSIAN = 0, /* Gaussian mechanism on a Poisson sample of rate q (DP-SGD step) */
    DP_EVENT_GAUSSIAN = 1          /* Gaussian mechanism on the whole dataset (e.g. a noisy count) */
} dp_event_type;

typedef struct {
    dp_event_type type;
    double noise_multiplier; /* σ > 0: noise standard deviation / L2 sensitivity */
    double sample_rate;      /* q in (0, 1]; must be 1 for DP_EVENT_GAUSSIAN */
    int64_t steps;           /* how many times the mechanism ran, 0 <= steps <= DP_MAX_STEPS */
} dp_event;

/* Steps are stored in JSON as numbers, which are exact integers only up to 2^53. */
#define DP_MAX_STEPS ((int64_t)1 << 53)

typedef struct {
    dp_event *events; /* (n) in the order they happened */
    size_t n, cap;
} dp_history;

/* Check that an event's fields are in range (σ > 0 finite, q in (0, 1], steps >= 0, q = 1 for a
 * plain Gaussian). Returns 0 if valid. */
int dp_event_check(const dp_event *ev, dp_error *err);

/* An empty history (no allocation until the first event). */
void dp_history_init(dp_history *h);
/* Release the events and leave an empty history. */
void dp_history_free(dp_history *h);
/* Append a validated event. If it has the same type, σ and q (bit for bit) as the last event, its
 * steps are added to that event instead (as long as that event stays within DP_MAX_STEPS), so that a
 * training loop appending one step at a time keeps a compact history; composition is unchanged by
 * this. Returns 0, or non-zero on an invalid event or when the total over all events would pass
 * 2^63 - 1 steps (the reader refuses such files too). */
int dp_history_add(dp_history *h, const dp_event *ev, dp_error *err);
/* Shorthands for dp_history_add. */
int dp_history_add_poisson_gaussian(dp_history *h, double noise_multiplier, double sample_rate, int64_t steps,
                                    dp_error *err);
int dp_history_add_gaussian(dp_history *h, double noise_multiplier, int64_t count, dp_error *err);
/* Total number of steps over all events. */
int64_t dp_history_total_steps(const dp_history *h);

/* JSON form:
 *   {"format": "dpformer-privacy-history", "version": 1,
 *    "events": [{"type": "poisson_gaussian", "noise_multiplier": 1.5, "sample_rate": 0.04, "steps": 2250},
 *               {"type": "gaussian", "noise_multiplier": 3.0, "steps": 1}]}
 * Numbers are written with 17 significant digits, so that reading them back gives the same doubles
 * bit for bit. */
/* The history as a new cJSON object (caller frees with cJSON_Delete), e.g. to embed in a checkpoint. */
struct cJSON *dp_history_to_cjson(const dp_history *h);
/* Replace *h by the events of a cJSON object of the form above; every event is validated. On error
 * *h is left unchanged. */
int dp_history_from_cjson(dp_history *h, const struct cJSON *obj, dp_error *err);
/* The history as a formatted JSON string (caller frees with free()). */
char *dp_history_to_json(const dp_history *h);
/* Parse a JSON string (see dp_history_from_cjson); only white space may follow the object. */
int dp_history_from_json(dp_history *h, const char *json, dp_error *err);
/* Write / read a JSON file. Saving is atomic: the text goes to a temporary file in the same folder,
 * which is synced and then renamed over `path`, so that a failed write (a full disk, a file size
 * limit, a folder that cannot be written) leaves an existing file as it was. Reading refuses a key
 * given twice in any object (JSON parsers disagree on which one wins), naming the key. Keys other than
 * those of the history are ignored by dp_history_load (see dp_ledger_load for the ledger's). */
int dp_history_save(const dp_history *h, const char *path, dp_error *err);
int dp_history_load(dp_history *h, const char *path, dp_error *err);

/* ---------------------------------------------------------------------------------------------
 * RDP accountant
 * ------------------------------------------------------------------------------------------- */

typedef enum {
    DP_CONVERSION_IMPROVED = 0, /* Balle et al. 2020 (current Opacus, dp_accounting); default */
    DP_CONVERSION_CLASSIC = 1   /* ε = RDP(α) − log δ / (α − 1) (Abadi et al. 2016, older papers) */
} dp_conversion;

/* Opacus's default grid {1 + x/10 : x = 1..99} ∪ {12, ..., 63}. */
#define DP_RDP_DEFAULT_N_ORDERS 151
/* Fill orders[0..151) with the default grid (ascending) and return 151. */
size_t dp_rdp_default_orders(double *orders);

/* RDP of ONE step of the Poisson-subsampled Gaussian at order α > 1: log(A_α) / (α − 1), with the
 * binomial sum for integer α and the two-sided erfc series (signed coefficients) otherwise; q = 1
 * gives α / (2σ²) exactly. Returns NaN for arguments out of range (q outside (0,1], σ <= 0, α <= 1). */
double dp_rdp_poisson_gaussian(double sample_rate, double noise_multiplier, double order);

/* Total RDP of the history at each order: rdp[i] = Σ_events steps · RDP_event(orders[i]).
 * orders may be NULL (default grid, n_orders ignored; rdp must then hold 151 values). */
int dp_rdp_compute(const dp_history *h, const double *orders, size_t n_orders, double *rdp, dp_error *err);

typedef struct {
    double epsilon;    /* ε (for dp_rdp_epsilon) or the given ε (for dp_rdp_delta) */
    double delta;      /* the given δ, or the computed δ */
    double best_order; /* the order that gave the bound */
    size_t best_index; /* its index in the grid */
    int at_edge;       /* 1 if the best order is the first or last of a grid of >= 2 orders: a wider
                          grid may give a smaller bound */
} dp_rdp_result;

/* ε of the history at δ in (0,1), minimised over the orders (NULL: default grid). An empty history
 * gives ε = 0. Fails on invalid δ, an empty or invalid grid (orders must be finite and > 1) or an
 * invalid event. */
int dp_rdp_epsilon(const dp_history *h, const double *orders, size_t n_orders, double delta, dp_conversion conv,
                   dp_rdp_result *out, dp_error *err);
/* δ of the history at ε >= 0, minimised over the orders (the inverse of dp_rdp_epsilon). */
int dp_rdp_delta(const dp_history *h, const double *orders, size_t n_orders, double epsilon, dp_conversion conv,
                 dp_rdp_result *out, dp_error *err);
/* The same conversions from precomputed total RDP values (rdp[i] at orders[i]). */
int dp_rdp_to_epsilon(const double *orders, const double *rdp, size_t n, double delta, dp_conversion conv,
                      dp_rdp_result *out, dp_error *err);
int dp_rdp_to_delta(const double *orders, const double *rdp, size_t n, double epsilon, dp_conversion conv,
                    dp_rdp_result *out, dp_error *err);

/* ---------------------------------------------------------------------------------------------
 * PLD accountant
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    /* Grid step of the privacy-loss values (default 1e-4). Smaller is tighter and slower. */
    double value_discretization_interval;
    /* Total probability mass (per adjacency direction, over the whole composition) that may be moved to
     * "infinite loss" by truncating the loss tails, plus the same amount allowed for FFT wrap-around;
     * both are added to δ, so they only make the bound looser (default 1e-15). */
    double tail_mass_truncation;
    /* Largest FFT length; when the composed distribution needs more, the interval is doubled until it
     * fits and the result says so (default 2^25, about 0.5 GB in the worst case). */
    size_t max_grid;
} dp_pld_params;

/* Fill p with the defaults above. */
void dp_pld_default_params(dp_pld_params *p);

typedef struct {
    double epsilon;         /* the computed ε (dp_pld_epsilon) or the given ε (dp_pld_delta) */
    double delta;           /* the given δ or the computed δ */
    double interval_used;   /* the discretisation interval actually used (>= the requested one) */
    double truncated_mass;  /* mass counted as infinite loss + wrap-around bound, included in δ */
    int worst_direction;    /* 0: removing an example gave the bound, 1: adding one */
    size_t grid_size;       /* FFT length of the composed distribution */
} dp_pld_result;

/* Upper bound on ε at δ in (0,1) for the composition of the history (max over the add and remove
 * directions). p may be NULL (defaults). ε is +inf if δ is below the truncated mass. */
int dp_pld_epsilon(const dp_history *h, double delta, const dp_pld_params *p, dp_pld_result *out, dp_error *err);
/* Upper bound on δ at ε >= 0. */
int dp_pld_delta(const dp_history *h, double epsilon, const dp_pld_params *p, dp_pld_result *out, dp_error *err);

/* ---------------------------------------------------------------------------------------------
 * Either accountant, and calibration
 * ------------------------------------------------------------------------------------------- */

typedef enum { DP_ACCOUNTANT_RDP = 0, DP_ACCOUNTANT_PLD = 1 } dp_accountant_kind;

typedef struct {
    dp_accountant_kind accountant; /* default RDP */
    dp_conversion conversion;      /* RDP only; default improved */
    const double *orders;          /* RDP only; NULL = default grid */
    size_t n_orders;
    dp_pld_params pld;             /* PLD only */
    /* Calibration stops when the bracket [lo, hi] on σ satisfies hi − lo <= sigma_tolerance · hi
     * (default 1e-6), or, if epsilon_tolerance > 0, as soon as target − ε(hi) <= epsilon_tolerance
     * (Opacus's rule; 0.01 there). */
    double sigma_tolerance;
    double epsilon_tolerance;
} dp_accounting_options;

/* Defaults: RDP, improved conversion, default orders, default PLD parameters, tolerances as above. */
void dp_accounting_default_options(dp_accounting_options *o);

/* ε of the history at δ with the accountant chosen in o (NULL: defaults). */
int dp_epsilon(const dp_history *h, double delta, const dp_accounting_options *o, double *epsilon, dp_error *err);

/* The smallest noise multiplier σ (up to the tolerance, always from above) such that the prior
 * history (may be NULL) followed by `steps` subsampled-Gaussian steps at rate q has ε <= target at δ.
 * The bracket starts at [0, 10] and doubles its upper end until ε <= target (as Opacus does), then
 * bisects; the returned σ is always one whose ε was computed and found <= target (*eps_out). */
int dp_calibrate_sigma(double target_epsilon, double delta, double sample_rate, int64_t steps,
                       const dp_history *prior, const dp_accounting_options *o, double *sigma_out, double *eps_out,
                       dp_error *err);

/* The largest number of steps at rate q and noise σ such that prior + those steps has ε <= target
 * (0 if even one step exceeds it). Fails if the prior alone exceeds the target, or if more than
 * DP_MAX_STEPS steps fit. *eps_out is the ε at the returned step count. */
int dp_max_steps(double target_epsilon, double delta, double sample_rate, double noise_multiplier,
                 const dp_history *prior, const dp_accounting_options *o, int64_t *steps_out, double *eps_out,
                 dp_error *err);

/* Steps of `epochs` passes at sample rate q, rounded down as Opacus does (int(epochs / q)).
 * Returns -1 if the arguments are out of range. */
int64_t dp_steps_for_epochs(double epochs, double sample_rate);

/* The largest noise multiplier dp_calibrate_sigma tries (10 · 2^16): a target that the prior plus the
 * run cannot meet at this σ cannot be met at all. */
#define DP_CALIBRATE_MAX_SIGMA 655360.0

/* Whether dp_calibrate_sigma can succeed, without searching: the prior alone must be within the target
 * and the run at DP_CALIBRATE_MAX_SIGMA too. On failure the message says which, with the ε found and
 * why (for RDP, the cost of the conversion to (ε, δ) alone at this δ; for PLD, δ not above the
 * truncated tail mass). Two accountant calls. Returns 0 if a σ exists. */
int dp_calibrate_feasible(double target_epsilon, double delta, double sample_rate, int64_t steps,
                          const dp_history *prior, const dp_accounting_options *o, dp_error *err);

/* ---------------------------------------------------------------------------------------------
 * PLD grid estimate
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    double points;       /* FFT length the composition needs at the requested interval (estimate) */
    double step_points;  /* largest number of grid points of one event's single-step distribution */
    double bytes;        /* peak memory of the computation at the requested interval (estimate) */
    double min_interval; /* about the smallest interval whose grid fits max_grid points */
} dp_pld_estimate_result;

/* Estimate, without allocating the grid, what dp_pld_epsilon / dp_pld_delta need for this history at
 * the requested interval (p may be NULL: defaults). The composed window is measured on a coarse grid
 * and scaled, so `points` is approximate (within a few per cent for small intervals). If points >
 * p->max_grid the accountant would widen the interval (by doubling) until it fits. */
int dp_pld_estimate(const dp_history *h, const dp_pld_params *p, dp_pld_estimate_result *out, dp_error *err);

/* ---------------------------------------------------------------------------------------------
 * The privacy ledger: a history file that says how its ε was computed and what it covers
 * ------------------------------------------------------------------------------------------- */

#define DP_LEDGER_TEXT 256

/* The fields that a training run (or `dpformer privacy --save-history`) writes next to the events, so
 * that the file alone tells how to recompute the ε that was printed and what that ε is about. Every
 * field is optional on reading (files with only events, as written before, still load): a number not
 * recorded is NAN, an enum -1, a text empty. */
typedef struct {
    /* How the recorded ε was computed */
    double epsilon;            /* the ε the run printed (full precision); +inf: no guarantee (σ = 0) */
    double delta;
    int accountant;            /* dp_accountant_kind */
    int conversion;            /* dp_conversion (RDP) */
    double *orders;            /* RDP orders (owned); NULL: the default grid */
    size_t n_orders;
    double pld_interval;       /* PLD: requested discretisation interval */
    double pld_tail;           /* PLD: tail mass truncation */
    /* What it is about */
    char command[32];          /* "train", "train-text", "privacy" */
    char mechanism[32];        /* "dp-sgd", "dp-fp" */
    char privacy_unit[DP_LEDGER_TEXT];
    char epsilon_covers[DP_LEDGER_TEXT];
    char model_selection[DP_LEDGER_TEXT]; /* how the released model was chosen among the epochs */
    int selection_covered;     /* 1: nothing outside the accounted mechanisms chose it; 0: the choice looked
                                  at data that ε does not cover; -1: not recorded */
    char warning[DP_LEDGER_TEXT]; /* e.g. seeded noise: not private */
} dp_privacy_ledger;

/* An empty ledger (nothing recorded). */
void dp_ledger_init(dp_privacy_ledger *l);
/* Release the orders and leave an empty ledger. */
void dp_ledger_free(dp_privacy_ledger *l);
/* Record how ε was computed: the accountant and its settings from o (NULL: defaults), δ and ε. */
void dp_ledger_set_accounting(dp_privacy_ledger *l, const dp_accounting_options *o, double delta, double epsilon);
/* 1 if the ledger records δ and the accountant (the minimum to recompute ε). */
int dp_ledger_has_accounting(const dp_privacy_ledger *l);
/* The history object of dp_history_to_cjson with the ledger's recorded fields added (l may be NULL). */
struct cJSON *dp_ledger_to_cjson(const dp_history *h, const dp_privacy_ledger *l);
/* Read the ledger fields of a history object (events are read by dp_history_from_cjson). Every field
 * present is validated (δ in (0, 1), a known accountant, ...); on error *l is left unchanged. */
int dp_ledger_from_cjson(dp_privacy_ledger *l, const struct cJSON *obj, dp_error *err);
/* Write the history and the ledger (l may be NULL) atomically, as dp_history_save. */
int dp_ledger_save(const dp_history *h, const dp_privacy_ledger *l, const char *path, dp_error *err);
/* Read both from a file; *h and *l are replaced only on success. */
int dp_ledger_load(dp_history *h, dp_privacy_ledger *l, const char *path, dp_error *err);

#endif
