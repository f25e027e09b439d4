/* Numerical helpers for the accountants (see privacy_math.h). */
#include "privacy/privacy_math.h"

double pm_log_erfc(double x) {
    /* erfc(26) ~ 6e-296 is still a normal double, and the asymptotic series below is accurate to
     * ~1e-17 relative from there on, so the switch loses nothing. */
    if (x < 26.0) return log(erfc(x));
    double r = 1.0 / (2.0 * x * x), term = 1.0, sum = 1.0;
    for (int n = 1; n <= 8; n++) {
        term *= -(2.0 * n - 1.0) * r;
        sum += term;
    }
    return -x * x - log(x) - 0.5 * log(PM_PI) + log(sum);
}

double pm_norm_sf(double z) { return 0.5 * erfc(z * PM_SQRT1_2); }
double pm_norm_cdf(double z) { return 0.5 * erfc(-z * PM_SQRT1_2); }
double pm_log_norm_sf(double z) { return -PM_LN2 + pm_log_erfc(z * PM_SQRT1_2); }

double pm_norm_mass(double a, double b) {
    if (!(b > a)) return 0.0;
    double m;
    if (a >= 0) m = pm_norm_sf(a) - pm_norm_sf(b);
    else if (b <= 0) m = pm_norm_cdf(b) - pm_norm_cdf(a);
    else m = 0.5 * (erf(b * PM_SQRT1_2) - erf(a * PM_SQRT1_2));
    return m > 0 ? m : 0.0;
}

double pm_norm_isf(double p) {
    double lo = 0.0, hi = 40.0;
    double lp = log(p);
    for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (pm_log_norm_sf(mid) > lp) lo = mid;
        else hi = mid;
    }
    return hi;
}
