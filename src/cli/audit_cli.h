/* `dpformer audit`, shared by its tasks (cmd_audit.c: rec and the report; cmd_audit_text.c: text;
 * cmd_audit_lm.c: lm): the audit's own flags; the generator of the inclusion bits, the warnings before
 * training and the untrained reference model; and the end of every audit — the bound, the
 * membership-inference numbers, the verdict, audit.json and the printed report. */
#ifndef DP_CLI_AUDIT_CLI_H
#define DP_CLI_AUDIT_CLI_H

#include <stdint.h>

#include "cli/args.h"
#include "dpformer/model.h"
#include "dpformer/noise.h"

#define AUDIT_CMD "dpformer audit"
/* Exit status when the lower bound exceeds an accountant's ε that covers what was audited. */
#define AUDIT_EXIT_VIOLATION 3
/* Entries audit_specs adds. */
#define AUDIT_SPEC_COUNT 8

typedef struct {
    const char *task, *out;
    int canaries, canary_len, json;
    int64_t guesses;
    double significance, fpr;
} audit_opts;

/* Defaults (canary_len 0: the task's default) and the flags --task, --canaries, --canary-len,
 * --significance, --guesses, --fpr, --json, --out into specs[AUDIT_SPEC_COUNT]. */
void audit_opts_defaults(audit_opts *o, const char *out);
void audit_specs(audit_opts *o, arg_spec *specs, const char *canary_len_help);
/* --guesses at most --canaries: 0, or 2 after a message. */
int audit_check_opts(const audit_opts *o);

/* The generator of the inclusion bits: secret, from the secure generator; with --seeded-noise (tests
 * only) seeded from seed ^ salt, a salt of the task's own. NULL after a message. */
dp_rng *audit_rng(int seeded, int64_t seed, uint64_t salt);
/* The warnings before training: that the run has no privacy guarantee (no_guarantee says why; NULL: it
 * has one), the task's note (NULL: none), and that --seeded-noise makes the noise and the bits
 * reproducible. */
void audit_warn(const char *no_guarantee, const char *note, int seeded);

/* The reference the canaries are scored against: the trained model m's configuration mc and seed,
 * untrained (the training loop's initialisation), on device. NULL after a message. */
dp_model *audit_reference(const dp_model_config *mc, const dp_model *m, uint64_t seed, dp_device device);

/* What ran, for the report. */
typedef struct {
    const char *task;        /* rec, text or lm */
    const char *mode;        /* dp-sgd, dp-fp or non-private */
    const char *canary_desc; /* e.g. "12 items each", printed after the count */
    int claim;               /* the accountant gave an ε (a private mode with σ > 0) */
    int covers_weights;      /* that ε covers the trained weights, which the audit attacks (0: DP-FP) */
    double epsilon, delta;   /* the accountant's (delta also without a claim: the δ of the bound) */
    double noise_multiplier, clip; /* clip: DP-SGD's max grad norm, DP-FP's representation clip */
    int64_t dp_steps, mechanism_events;
    int seeded;
} audit_run;

/* Evaluate the scores, write OUT/audit.json (with every score and bit), print the report (or the JSON
 * object with --json). Returns the exit status: 0, AUDIT_EXIT_VIOLATION, or 1 on a failure. */
int audit_finish(const audit_opts *o, const audit_run *run, const double *scores, const uint8_t *included,
                 int64_t m, double t0);

int cmd_audit_text(int argc, char **argv);
int cmd_audit_lm(int argc, char **argv);

#endif
