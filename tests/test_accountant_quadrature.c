/* Independent check of the fractional-order RDP series: A_α = E_{z~N(0,σ²)}[((1−q) + q e^{(2z−1)/(2σ²)})^α]
 * computed here by direct numerical integration (trapezoid rule in log space over a wide range, which is
 * exponentially accurate for this smooth, rapidly decaying integrand) and compared with the series. */
#include <math.h>

#include "dpformer/accountant.h"
#include "privacy/rdp.h"
#include "testutil.h"

static double log_add(double a, double b) {
    if (a == -INFINITY) return b;
    double m = fmax(a, b);
    return m + log(exp(a - m) + exp(b - m));
}

/* log of the integrand times the N(0,σ²) density, at z. */
static double log_integrand(double q, double s, double alpha, double z) {
    double lf = log_add(log1p(-q), log(q) + (2 * z - 1) / (2 * s * s));
    return alpha * lf - z * z / (2 * s * s) - log(s * sqrt(2 * 3.14159265358979323846));
}

static double log_a_quadrature(double q, double s, double alpha) {
    /* The integrand peaks near z = 0 (the Gaussian) and, for the mixture term, near z = α; ±40σ around
     * both leaves out less than e^{-800}. */
    double lo = -40 * s, hi = alpha + 40 * s, dz = s / 400;
    long n = (long)ceil((hi - lo) / dz);
    double m = -INFINITY;
    for (long i = 0; i <= n; i++) m = fmax(m, log_integrand(q, s, alpha, lo + i * dz));
    double sum = 0;
    for (long i = 0; i <= n; i++) {
        double w = (i == 0 || i == n) ? 0.5 : 1.0;
        sum += w * exp(log_integrand(q, s, alpha, lo + i * dz) - m);
    }
    return m + log(sum * dz);
}

int main(void) {
    const double cases[][3] = {
        /* q, σ, α */
        {0.01, 1.0, 1.5},  {0.04, 1.5, 3.9},  {0.1, 0.5, 2.3},  {0.001, 2.0, 10.7}, {0.5, 0.8, 1.1},
        {0.9, 3.0, 7.25},  {1e-5, 1.0, 20.5}, {0.2, 0.3, 1.3},  {0.04, 1.5, 63.5},  {0.3, 0.6, 4.5},
        {0.0025, 1.3, 1.25},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double q = cases[i][0], s = cases[i][1], a = cases[i][2];
        double series = rdp_log_a_frac(q, s, a), quad = log_a_quadrature(q, s, a);
        /* Compare log A on an absolute scale near 0 and relative scale when it is large. */
        double err = fabs(series - quad) / fmax(1e-3, fabs(quad));
        tu_checks++;
        if (!(err < 1e-9)) {
            tu_failures++;
            fprintf(stderr, "q=%g sigma=%g alpha=%g: series %.15g quadrature %.15g\n", q, s, a, series, quad);
        }
        /* The public per-step RDP is that log A over α − 1. */
        CHECK_CLOSE(dp_rdp_poisson_gaussian(q, s, a), quad / (a - 1), 1e-8);
    }
    /* The same quadrature at integer orders against the binomial sum. */
    CHECK_CLOSE(rdp_log_a_int(0.04, 1.5, 7), log_a_quadrature(0.04, 1.5, 7), 1e-11);
    CHECK_CLOSE(rdp_log_a_int(0.3, 0.7, 3), log_a_quadrature(0.3, 0.7, 3), 1e-11);
    return tu_finish("test_accountant_quadrature");
}
