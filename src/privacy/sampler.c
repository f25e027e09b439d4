/* Poisson sampling of DP-SGD batches: every example is included independently with probability q,
 * which is the sampling the privacy accountants assume (fixed-size shuffled batches are not). Gaps
 * between selected examples are geometric, so a step costs O(q·n) rather than O(n). */
#include <math.h>

#include "core/common.h"
#include "dpformer/noise.h"

int64_t dp_poisson_sample(dp_rng *rng, double q, int64_t n, int64_t *out, dp_error *err) {
    if (!(q > 0 && q <= 1)) return dp_fail(err, "poisson sampling: sample rate q must lie in (0, 1], got %g", q);
    if (n < 0) return dp_fail(err, "poisson sampling: negative dataset size %lld", (long long)n);
    if (n > 0 && !out) return dp_fail(err, "poisson sampling: NULL output for %lld indices", (long long)n);
    if (!rng) return dp_fail(err, "poisson sampling: no random generator");
    if (q == 1) {
        for (int64_t i = 0; i < n; i++) out[i] = i;
        return n;
    }
    /* The number of rejected indices before the next selected one is Geometric(q):
     * P(gap >= k) = (1 − q)^k = P(U <= (1 − q)^k) = P(ln U / ln(1 − q) >= k) for U uniform on (0, 1),
     * so gap = floor(ln U / ln(1 − q)). log1p keeps ln(1 − q) accurate for tiny q; the ratio is
     * compared as a double before any conversion because it can exceed every integer type. */
    const double log1mq = log1p(-q);
    int64_t count = 0, i = -1; /* i: the last selected index */
    for (;;) {
        double gap = floor(log(dp_rng_uniform(rng)) / log1mq);
        if (gap >= (double)(n - 1 - i)) break; /* the next index would be >= n */
        i += 1 + (int64_t)gap;
        out[count++] = i;
    }
    return count;
}
