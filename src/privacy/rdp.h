/* Internal pieces of the RDP accountant exposed for tests: log A_α of the Poisson-subsampled Gaussian by
 * the integer-order binomial sum and by the fractional-order erfc series (which is also valid at an
 * integer α, where it must agree with the binomial sum). */
#ifndef DP_PRIVACY_RDP_H
#define DP_PRIVACY_RDP_H

/* log A_α for integer α >= 2 and q in (0, 1). */
double rdp_log_a_int(double q, double sigma, double alpha);
/* log A_α for any real α > 1 and q in (0, 1), by the two-sided series with signed coefficients. */
double rdp_log_a_frac(double q, double sigma, double alpha);

#endif
