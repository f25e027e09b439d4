/* Command-line flag parsing shared by every `dpformer` sub-command.
 * A command declares a table of flags (name, type, destination, help, optional range); args_parse
 * fills the destinations, checks ranges, and rejects unknown flags or missing values with a clear
 * message naming the flag. `--help` prints the table. Flags are `--name value` or `--name=value`. */
#ifndef DP_CLI_ARGS_H
#define DP_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

typedef enum { ARG_INT, ARG_INT64, ARG_DOUBLE, ARG_STRING, ARG_FLAG } arg_type;

typedef struct {
    const char *name;   /* without the leading "--" */
    arg_type type;
    void *dest;         /* int*, int64_t*, double*, const char**, int* (flag: set to 1) */
    const char *help;
    int has_range;      /* if non-zero the value must lie in [min, max] */
    double min, max;
    int seen;           /* set by args_parse when the flag was given */
    const char *meta;   /* the value's name in --help (FILE, DIR, ...); NULL: N, X or STR by type */
} arg_spec;

/* Convenience initialisers. */
#define ARG_I(n, d, h) {(n), ARG_INT, (d), (h), 0, 0, 0, 0, NULL}
#define ARG_IR(n, d, h, lo, hi) {(n), ARG_INT, (d), (h), 1, (lo), (hi), 0, NULL}
#define ARG_L(n, d, h) {(n), ARG_INT64, (d), (h), 0, 0, 0, 0, NULL}
#define ARG_LR(n, d, h, lo, hi) {(n), ARG_INT64, (d), (h), 1, (lo), (hi), 0, NULL}
#define ARG_D(n, d, h) {(n), ARG_DOUBLE, (d), (h), 0, 0, 0, 0, NULL}
#define ARG_DR(n, d, h, lo, hi) {(n), ARG_DOUBLE, (d), (h), 1, (lo), (hi), 0, NULL}
#define ARG_S(n, d, h) {(n), ARG_STRING, (d), (h), 0, 0, 0, 0, NULL}
#define ARG_F(n, d, h) {(n), ARG_FLAG, (d), (h), 0, 0, 0, 0, NULL}
/* A string flag whose value --help names `m` ("FILE", "DIR", ...). */
#define ARG_SM(n, d, m, h) {(n), ARG_STRING, (d), (h), 0, 0, 0, 0, (m)}

/* --help shows each flag's default after its help, except where there is no meaningful one: a NULL
 * string, a NaN, a value outside the flag's range, or -1 for an integer flag without a range (the
 * conventional "unset" values: the help text says what happens then), and a help text that already
 * speaks of the default itself. */

/* Parse argv[0..argc). `cmd` is the command name used in messages ("dpformer train").
 * Returns 0 on success, 1 if --help was printed (caller exits 0), 2 on error (message on stderr). */
int args_parse(const char *cmd, const char *summary, arg_spec *specs, int nspecs, int argc, char **argv);
void args_usage(FILE *f, const char *cmd, const char *summary, const arg_spec *specs, int nspecs);
/* Was flag `name` given on the command line? */
int args_seen(const arg_spec *specs, int nspecs, const char *name);
/* The first of `names` (a NULL-terminated list of flag names without "--") given on the command line,
 * or NULL: to refuse flags that the chosen mode would ignore. */
const char *args_first_seen(const arg_spec *specs, int nspecs, const char *const *names);

/* The value of a --device flag: "cpu" or "cuda", and available now. Returns 0, or 2 after printing
 * "cmd: --device X: why" (an unknown name; a build without CUDA; no GPU). */
#include "dpformer/backend.h"
int args_device(const char *cmd, const char *s, dp_device *d);

#endif
