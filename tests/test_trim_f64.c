/* tests/test_trim.c against the double-precision library: trimmed windows equal the full windows to
 * about 1e-12 (losses, gradients, per-example norms and clipped sums in every clip mode, scores,
 * metrics, training runs). */
#define TRIM_TEST_NAME "test_trim_f64"
#include "test_trim.c"
