/* The Gram-or-instantiate choice of the per-example norm kernels and the tally of the forms used
 * (norm_plan.h). */
#include "ops/norm_plan.h"

int linear_norm_uses_gram(int n, int Cin, int Cout, dp_norm_method method) {
    if (method == DP_NORM_GRAM) return 1;
    if (method == DP_NORM_INSTANTIATE) return 0;
    return (double)n * (Cin + Cout) < 2.0 * Cin * Cout;
}

#define MAX_STATS 32
static dp_norm_form_stat stats[MAX_STATS];
static int n_stats;

void norm_forms_count(dp_norm_layer_kind kind, int Cin, int Cout, long gram, long instantiated) {
    if (gram == 0 && instantiated == 0) return;
    for (int i = 0; i < n_stats; i++)
        if (stats[i].kind == (int)kind && stats[i].Cin == Cin && stats[i].Cout == Cout) {
            stats[i].gram += gram;
            stats[i].instantiated += instantiated;
            return;
        }
    if (n_stats == MAX_STATS) return; /* more layer shapes than any model here has: not tallied */
    stats[n_stats++] = (dp_norm_form_stat){(int)kind, Cin, Cout, gram, instantiated};
}

int norm_forms_get(dp_norm_form_stat *out, int max) {
    int n = n_stats < max ? n_stats : max;
    for (int i = 0; i < n; i++) out[i] = stats[i];
    return n;
}

void norm_forms_reset(void) { n_stats = 0; }
