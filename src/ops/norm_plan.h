/* Which form the per-example norm kernels use for one example of n rows (Gram matrices or the
 * instantiated per-example weight gradient), and a tally of the forms used so that benchmarks can show
 * the choice the `auto` clip mode made on each layer. */
#ifndef DP_OPS_NORM_PLAN_H
#define DP_OPS_NORM_PLAN_H

#include "ops/ops.h"

/* Linear layer [Cin -> Cout], an example of n rows: the Gram form costs about n²(Cin + Cout) multiply-adds
 * and instantiation n·Cin·Cout, but at the sizes of these models BLAS runs the small Gram products
 * (syrk) at a higher rate than the instantiating GEMM plus its Cin·Cout sum of squares: measured on
 * 2-core AMD EPYC machines (docs/benchmarks.md), the Gram form stays faster up to about twice the
 * length where the operation counts cross. `auto` uses that measured crossover, a fixed formula (not a
 * timing at run time), so that the choice, and with it every rounding, is the same on every run. */
int linear_norm_uses_gram(int n, int Cin, int Cout, dp_norm_method method);

/* Tally (single-threaded callers only: the kernels count before their parallel loops). */
typedef enum { DP_NORM_LAYER_LINEAR = 0, DP_NORM_LAYER_OUTPUT = 1 } dp_norm_layer_kind;
typedef struct {
    int kind, Cin, Cout;
    long gram, instantiated; /* examples */
} dp_norm_form_stat;

void norm_forms_count(dp_norm_layer_kind kind, int Cin, int Cout, long gram, long instantiated);
int norm_forms_get(dp_norm_form_stat *out, int max); /* number of entries written */
void norm_forms_reset(void);

#endif
