/* Minimal test harness shared by the CTest executables: checks that count failures and report the
 * location, a deterministic RNG for test inputs, and the location of the shared datasets. */
#ifndef DP_TESTUTIL_H
#define DP_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

extern int tu_failures;
extern int tu_checks;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        tu_checks++;                                                                 \
        if (!(cond)) {                                                               \
            tu_failures++;                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/* |a - b| <= tol * max(1, |b|)  (relative for large values, absolute near zero). */
#define CHECK_CLOSE(a, b, tol)                                                                           \
    do {                                                                                                 \
        double _a = (double)(a), _b = (double)(b), _t = (double)(tol);                                   \
        tu_checks++;                                                                                     \
        if (!(fabs(_a - _b) <= _t * fmax(1.0, fabs(_b))) || _a != _a) {                                  \
            tu_failures++;                                                                               \
            fprintf(stderr, "%s:%d: %s = %.10g, expected %s = %.10g (tol %g)\n", __FILE__, __LINE__, #a, \
                    _a, #b, _b, _t);                                                                     \
        }                                                                                                \
    } while (0)

/* Print the summary line and return the process exit status. */
int tu_finish(const char *name);

/* Deterministic uniform in [0,1) and normal(0,1) from a 64-bit state. */
double tu_uniform(uint64_t *state);
double tu_normal(uint64_t *state);

/* Folder holding the shared real datasets: $DPFORMER_DATA or ../shared/data. */
const char *tu_data_dir(void);

#endif
