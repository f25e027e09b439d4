/* dpformer public API: the randomness of DP-SGD.
 *
 *   - dp_rng: a ChaCha20 (RFC 8439) keystream used as a random generator, in one of two modes:
 *       secure  keyed with 256 bits from the kernel (getrandom); what a private run must use;
 *       seeded  keyed from a 64-bit seed; reproducible, for tests and experiments, NOT private
 *               (anyone who knows or guesses the seed can recompute, and subtract, the noise).
 *   - Gaussian noise over large arrays (once per DP-SGD step over all parameters), parallel with
 *     OpenMP and independent of the thread count, hardened against floating-point attacks in secure
 *     mode (see DP_NOISE_HARDENED and docs/noise.md).
 *   - Poisson sampling of a batch, the sampling the privacy accountant assumes.
 *
 * A dp_rng is not thread-safe: one generator is used by one thread at a time (the noise functions
 * parallelise internally). Functions that can fail on user input return 0 (or a count) on success
 * and -1 on error with a one-line message in `err` (which may be NULL). See docs/noise.md. */
#ifndef DPFORMER_NOISE_H
#define DPFORMER_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "dpformer/common.h"

/* ---------------------------------------------------------------------------------------------
 * Generator
 * ------------------------------------------------------------------------------------------- */

typedef struct dp_rng dp_rng;

typedef enum {
    DP_RNG_SECURE = 0, /* key from getrandom(2); state never written out in clear */
    DP_RNG_SEEDED = 1  /* key derived from a 64-bit seed; reproducible; not for private runs */
} dp_rng_mode;

/* How Gaussian noise is computed (both have variance σ² and mean 0; see docs/noise.md):
 *   DP_NOISE_PLAIN     one Box–Muller normal per value (faster);
 *   DP_NOISE_HARDENED  each value is (z1 + z2 + z3 + z4) / 2 with four independent standard normals,
 *                      which fills the set of floating-point values the noise can take (mitigation of
 *                      floating-point attacks). Always used in secure mode. */
typedef enum { DP_NOISE_PLAIN = 0, DP_NOISE_HARDENED = 1 } dp_noise_method;

/* A secure generator keyed with 256 bits from getrandom(2). There is no fallback: if the kernel
 * cannot provide randomness the call fails (returns NULL with err) rather than use a weak source.
 * Its noise method is DP_NOISE_HARDENED. Free with dp_rng_free. */
dp_rng *dp_rng_create_secure(dp_error *err);

/* A reproducible generator: the 256-bit ChaCha20 key is derived from `seed` (any value, 0 included).
 * Its noise method is DP_NOISE_PLAIN until changed with dp_rng_set_noise_method. Never fails
 * (allocation failure aborts, as everywhere in the library). */
dp_rng *dp_rng_create_seeded(uint64_t seed);

/* Erase the key and buffered output, then free. NULL is allowed. */
void dp_rng_free(dp_rng *rng);

/* The generator's mode and noise method. */
dp_rng_mode dp_rng_get_mode(const dp_rng *rng);
dp_noise_method dp_rng_get_noise_method(const dp_rng *rng);

/* Choose the noise method of a seeded generator (e.g. DP_NOISE_HARDENED to reproduce exactly the
 * distribution a secure run uses). A secure generator refuses DP_NOISE_PLAIN. Returns 0 or -1. */
int dp_rng_set_noise_method(dp_rng *rng, dp_noise_method method, dp_error *err);

/* The next 64 bits of the stream: ChaCha20 keystream blocks 0, 1, 2, ... (64-bit block counter,
 * zero nonce), each block read as eight little-endian 64-bit words. */
uint64_t dp_rng_u64(dp_rng *rng);

/* A uniform double in the open interval (0, 1), built from one full 64-bit output: the exact value
 * (k + 1/2) / 2^64 rounded to the nearest double and kept below 1. Never returns 0 or 1; values near
 * 0 keep all 64 bits of resolution (the smallest is 2^-65). */
double dp_rng_uniform(dp_rng *rng);

/* A uniform integer in [0, bound) without modulo bias (bound >= 1; bound 0 returns 0). */
uint64_t dp_rng_below(dp_rng *rng, uint64_t bound);

/* ---------------------------------------------------------------------------------------------
 * State: save and restore (checkpoints)
 *
 * A seeded generator's state (key, stream position, noise method) is saved exactly, so a restored
 * generator continues bit for bit where the saved one was; this is how a checkpointed seeded run
 * resumes identically. A secure generator's key is never written: its saved state records only that
 * it was secure, and restoring it creates a freshly keyed secure generator (re-keyed on resume). The
 * resumed noise is then independent of what the interrupted run would have drawn, which is what the
 * privacy analysis assumes anyway; only bit-identical replay of a secure run is given up.
 * ------------------------------------------------------------------------------------------- */

/* Size of a saved state in bytes, and of its hex form without the terminating NUL. */
#define DP_RNG_STATE_BYTES 52
#define DP_RNG_STATE_HEX_LEN (2 * DP_RNG_STATE_BYTES)

/* Write the state into out[DP_RNG_STATE_BYTES]. Layout (all little-endian): "dpRN" magic, version,
 * mode, noise method, word offset in block (0..7), block counter (8 bytes), key (32 bytes; zero for a
 * secure generator), FNV-1a checksum of the preceding 48 bytes (4 bytes). Cannot fail. */
void dp_rng_state_save(const dp_rng *rng, uint8_t out[DP_RNG_STATE_BYTES]);

/* A generator restored from a saved state: the identical continuation for a seeded state, a fresh
 * secure generator for a secure state. Returns NULL with err on a malformed or corrupted state (bad
 * length, magic, version, field or checksum) or if getrandom fails. */
dp_rng *dp_rng_state_restore(const uint8_t *state, size_t len, dp_error *err);

/* The same as hex: writes DP_RNG_STATE_HEX_LEN lowercase hex digits and a NUL into out. */
void dp_rng_state_save_hex(const dp_rng *rng, char out[DP_RNG_STATE_HEX_LEN + 1]);
/* Restore from the hex form (exactly DP_RNG_STATE_HEX_LEN hex digits, either case). */
dp_rng *dp_rng_state_restore_hex(const char *hex, dp_error *err);

/* ---------------------------------------------------------------------------------------------
 * Gaussian noise
 *
 * x[i] += σ·z_i (add) or x[i] = σ·z_i (fill), z_i independent standard normals, i < n. Each value
 * is computed in double and rounded once to the array's type (for add: x[i] + σ·z_i is formed in
 * double, then rounded). The generator's noise method decides plain or hardened.
 *
 * Reproducibility: a call with n > 0 takes exactly four 64-bit words from the generator's stream (a
 * fresh 256-bit key for this call) and nothing else; the array is cut into fixed blocks of
 * DP_NOISE_BLOCK values, block b drawing from its own ChaCha20 stream (that key, nonce b). The result
 * therefore depends only on the generator's state, n and σ, never on the number of OpenMP threads.
 * Blocks run in parallel (OpenMP) when there is more than one.
 *
 * Errors: σ must be finite and >= 0 (σ = 0 adds nothing / fills zeros, still consuming the four
 * words); x may be NULL only when n = 0. Returns 0 or -1.
 * ------------------------------------------------------------------------------------------- */

#define DP_NOISE_BLOCK 4096

int dp_noise_gaussian_add(dp_rng *rng, dp_real *x, size_t n, double sigma, dp_error *err);
int dp_noise_gaussian_fill(dp_rng *rng, dp_real *x, size_t n, double sigma, dp_error *err);
/* Double-precision arrays whatever dp_real is (e.g. noisy statistics computed in double). */
int dp_noise_gaussian_add_f64(dp_rng *rng, double *x, size_t n, double sigma, dp_error *err);
int dp_noise_gaussian_fill_f64(dp_rng *rng, double *x, size_t n, double sigma, dp_error *err);

/* ---------------------------------------------------------------------------------------------
 * Poisson sampling
 * ------------------------------------------------------------------------------------------- */

/* Poisson sampling at rate q: each index 0..n-1 is included independently with probability q. The
 * selected indices are written to out (room for n entries) in increasing order and their number is
 * returned; it may be 0 (an empty batch, which DP-SGD must still treat as a step). Cost O(q·n + 1):
 * the gaps between selected indices are drawn as geometric variables. q = 1 selects every index.
 * Errors (return -1): q not in (0, 1] (NaN included), n < 0, out NULL with n > 0. */
int64_t dp_poisson_sample(dp_rng *rng, double q, int64_t n, int64_t *out, dp_error *err);

#endif
