/* dpformer public API: item frequencies p_i (the fraction of training examples that contain item i),
 * which Re-Attention needs for the effective error of each embedding row (docs/reattention.md).
 * They are computed from the private training data, so a run either takes them from a public source
 * or releases them with the Gaussian mechanism, whose cost is composed into the run's ε:
 *   per example, the presence vector of its distinct items (at most `cap` of them: the most recent
 *   ones) has L2 norm ≤ √cap, so counts + N(0, (σ_f √cap)²) per item is a Gaussian mechanism with
 *   noise multiplier σ_f (one event for the accountant: dp_history_add_gaussian(h, σ_f, 1)). */
#ifndef DPFORMER_ITEMFREQ_H
#define DPFORMER_ITEMFREQ_H

#include "dpformer/common.h"
#include "dpformer/noise.h"

/* counts[V+1] += presence of the distinct non-zero ids of each of the n windows ids[n, L], keeping at
 * most cap distinct ids per window (the latest positions first). counts[0] is not used. */
void dp_item_presence_counts(double *counts, const int32_t *ids, int64_t n, int L, int32_t n_items, int cap);

/* Release: p[i] = clamp((counts[i] + σ_f·√cap·z_i) / n_examples, 1/n_examples, 1) for i in 1..V (z_i
 * standard normal from rng; σ_f = 0: exact, not private). p[0] = 1. Returns 0 or -1 with err. */
int dp_item_freq_release(double *p, const double *counts, int32_t n_items, int64_t n_examples, int cap, double sigma_f,
                         dp_rng *rng, dp_error *err);

/* Public frequencies from a text file: one `item fraction` pair per line (item in 1..V, fraction in
 * [0, 1], separated by spaces or tabs; '#' starts a comment; blank lines, CRLF line ends and a UTF-8
 * byte-order mark at the start are accepted); items not listed get the floor 1/n_examples, as do listed
 * fractions below it. Refused, with "file:line: field: problem" (field: item, fraction, fields, line)
 * or "file: file: problem": a malformed line, an item listed twice, a line over 4094 bytes, and a file
 * without any `item fraction` line (empty, or only comments). Returns 0 or -1 with err. */
int dp_item_freq_load(double *p, const char *path, int32_t n_items, int64_t n_examples, dp_error *err);

#endif
