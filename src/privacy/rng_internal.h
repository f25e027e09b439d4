/* Internals of the random generator shared by chacha20.c, noise.c and the tests: the ChaCha20 block
 * function in its RFC 8439 form and in the 16-blocks-at-once form the bulk paths use, and the
 * uniform / Box–Muller kernels of the Gaussian noise (exposed so tests can compare them with libm).
 * Not part of the public API. */
#ifndef DP_PRIVACY_RNG_INTERNAL_H
#define DP_PRIVACY_RNG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dpformer/common.h"

/* RFC 8439 §2.3: one 64-byte block as sixteen 32-bit words (serialise each little-endian to get the
 * RFC's byte stream). key: 8 words (the 32-byte key read little-endian); nonce: 3 words. */
void dp_chacha20_block(const uint32_t key[8], uint32_t counter, const uint32_t nonce[3], uint32_t out[16]);

/* Sixteen consecutive blocks with a 64-bit block counter: lane l (0..15) is the block whose state has
 * counter + l in words 12 (low half) and 13 (high half) and the 64-bit nonce in words 14 (low) and 15
 * (high); i.e. the RFC block with counter32 = low half and nonce = {high half, nonce lo, nonce hi}.
 * Output is word-major: out[j][l] is word j of lane l's block. */
#define DP_CHACHA_LANES 16
void dp_chacha20_x16(const uint32_t key[8], uint64_t counter, uint64_t nonce,
                     uint32_t out[16][DP_CHACHA_LANES]);

/* The uniform of dp_rng_uniform as a pure function of one 64-bit word: in (0, 1). */
double dp_noise_unit_open(uint64_t w);

/* Box–Muller on n pairs of words (n a multiple of 8, at most 64): radius from ur[i] through
 * dp_noise_unit_open, angle 2π·ua[i]/2^64; z_cos[i] = r cos θ, z_sin[i] = r sin θ. Uses the
 * project's own vectorisable log / sin / cos (accurate to a few units in the last place). */
void dp_noise_box_muller(const uint64_t *ur, const uint64_t *ua, int n, double *z_cos, double *z_sin);

/* Data-parallel training: make *rng on every rank of the job the same generator as root's (same key,
 * secure or seeded, same position), through `bcast` (dp_dist_broadcast). The state, key included,
 * goes only to the job's other processes, in memory; never to a file. *rng may be NULL on non-root
 * ranks. Returns 0 or -1 with err. */
struct dp_rng;
int dp_rng_share(struct dp_rng **rng, int root, int (*bcast)(void *buf, size_t n, int root, dp_error *err),
                 dp_error *err);

/* Overwrite `len` bytes with zeros in a way the compiler cannot drop (key material). */
void dp_secure_wipe(void *p, size_t len);

#endif
