/* The CUDA backend's DP-SGD noise (noise.cu): the device twin of noise_blocks in src/privacy/noise.c,
 * the entry `noise_blocks` of the backend table (src/backend/backend.h). Kept out of cuda_ops.h so that
 * tests can call it directly. */
#ifndef DP_CUDA_NOISE_H
#define DP_CUDA_NOISE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/common.h"

/* The noise of one call for values [0, n) of x (device memory): key = the call's 8 ChaCha20 key words
 * (a HOST array; it is passed to the kernel by value, the caller may wipe it on return), scale = σ
 * (plain) or σ/2 (hardened); add: x += noise, else x = noise. Bit for bit the values noise_blocks
 * computes on the CPU for the same arguments. Asynchronous (default stream), like every op. */
void cuda_noise_blocks(real *x, size_t n, const uint32_t key[8], double scale, int hardened, int add);

#ifdef __cplusplus
}
#endif

#endif
