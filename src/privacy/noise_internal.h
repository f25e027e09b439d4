/* The Gaussian noise of noise.c split at the backend boundary: a call's key is drawn from the dp_rng on
 * the host (noise.c), the blocks of noise it defines are computed by a backend (noise_blocks here on
 * the CPU, cuda_noise_blocks of src/backend/cuda/noise.cu on a GPU), bit for bit the same values.
 * Not part of the public API. */
#ifndef DP_PRIVACY_NOISE_INTERNAL_H
#define DP_PRIVACY_NOISE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dpformer/common.h"
#include "dpformer/noise.h"

struct dp_backend;

/* The noise of one call, for values [0, n) of x: key = the call's 8 ChaCha20 key words (the four
 * 64-bit words drawn from the generator, each split low half first), scale = σ (plain) or σ/2
 * (hardened); add: x += noise, else x = noise. Value i's noise depends only on (key, i): the array is
 * cut into blocks of DP_NOISE_BLOCK values, block b drawing ChaCha20 under key with nonce b and
 * counters 0, 16, 32, ... (see noise.c). This is the CPU implementation (OpenMP over the blocks); x is
 * host memory. */
void noise_blocks(dp_real *x, size_t n, const uint32_t key[8], double scale, int hardened, int add);

/* dp_noise_gaussian_add on memory of backend `be` (device memory for CUDA): validates and draws the
 * key from rng exactly as dp_noise_gaussian_add does (same errors, same four words of the stream),
 * runs be->noise_blocks(x, n, key, scale, hardened, 1) and wipes the key. For the same generator state
 * every backend leaves the same bits in x. Returns 0 or -1 with err. */
int dp_noise_gaussian_add_backend(dp_rng *rng, const struct dp_backend *be, dp_real *x, size_t n, double sigma,
                                  dp_error *err);

#endif
