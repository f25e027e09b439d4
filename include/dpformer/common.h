/* dpformer public API: basic types shared by every module.
 * dp_real is the floating-point type of parameters and activations: float in the library users link
 * (libdpformer), double in the double-precision build used for gradient checks (DP_REAL_DOUBLE). */
#ifndef DPFORMER_COMMON_H
#define DPFORMER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef DP_REAL_DOUBLE
typedef double dp_real;
#else
typedef float dp_real;
#endif

/* Error reporting: functions that can fail on user input return 0 on success and non-zero on error,
 * and write a one-line message ("file:line: field: what is wrong") into a caller-supplied buffer. */
#define DP_ERRLEN 512
typedef struct {
    char msg[DP_ERRLEN];
} dp_error;

#endif
