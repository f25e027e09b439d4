/* Numerical helpers shared by the privacy accountants: log-space sums, the log of erfc far into the
 * tail, and standard-normal tail and interval masses computed without cancellation where it matters.
 * Internal to src/privacy (and its tests); everything is double. */
#ifndef DP_PRIVACY_MATH_H
#define DP_PRIVACY_MATH_H

#include <math.h>

/* <math.h> defines M_PI and friends only outside strict C11. */
#define PM_PI 3.14159265358979323846
#define PM_LN2 0.69314718055994530942
#define PM_SQRT1_2 0.70710678118654752440
#define PM_SQRT2 1.41421356237309504880

/* log(e^a + e^b), exact for infinite arguments. */
static inline double pm_log_add(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    double m = a > b ? a : b;
    return m + log1p(exp(-fabs(a - b)));
}

/* log(erfc(x)) for every finite x; erfc underflows past x ~ 26, where the asymptotic series is used. */
double pm_log_erfc(double x);

/* Standard normal: survival function P(Z > z), CDF, log of the survival function, and the mass of
 * (a, b] (a <= b, either may be infinite), computed from the tail nearest to the interval. */
double pm_norm_sf(double z);
double pm_norm_cdf(double z);
double pm_log_norm_sf(double z);
double pm_norm_mass(double a, double b);
/* The z with P(Z > z) = p for p in (0, 0.5] (bisection to full precision; used for truncation bounds). */
double pm_norm_isf(double p);

#endif
