/* The project's cryptographic random generator: the ChaCha20 block function (RFC 8439, written here
 * from the specification), a 16-blocks-at-once form for the bulk noise path, and dp_rng, the keystream
 * read as 64-bit words, with its secure (getrandom) and seeded modes and its saved-state format.
 * Gaussian noise is in noise.c and Poisson sampling in sampler.c; this file is only the stream. */
#define _DEFAULT_SOURCE /* explicit_bzero (glibc >= 2.25) under -std=c11 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "core/common.h"
#include "dpformer/noise.h"
#include "privacy/rng_internal.h"

/* GCC on x86 prefers 256-bit vectors even where AVX-512 is enabled (-march=native); the ChaCha20
 * lanes and the Box–Muller batches are long, regular loops for which 512-bit vectors are about 1.6x
 * faster on the machines measured (docs/noise.md). Harmless where AVX-512 is not enabled. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC target("prefer-vector-width=512")
#endif

#define RNG_BUF_BLOCKS DP_CHACHA_LANES
#define RNG_BUF_WORDS (RNG_BUF_BLOCKS * 8) /* 64-bit words per refill */
#define STATE_VERSION 1

struct dp_rng {
    uint32_t key[8];
    uint64_t buf[RNG_BUF_WORDS]; /* (16 blocks, 8 words) keystream in stream order */
    uint64_t buf_block;          /* block counter of buf[0] */
    int idx;                     /* next unread word of buf, 0..RNG_BUF_WORDS */
    dp_rng_mode mode;
    dp_noise_method method;
};

/* "expand 32-byte k" */
static const uint32_t SIGMA[4] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u};

static inline uint32_t rotl32(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

#define QR(a, b, c, d)                    \
    do {                                  \
        a += b, d ^= a, d = rotl32(d, 16); \
        c += d, b ^= c, b = rotl32(b, 12); \
        a += b, d ^= a, d = rotl32(d, 8);  \
        c += d, b ^= c, b = rotl32(b, 7);  \
    } while (0)

void dp_chacha20_block(const uint32_t key[8], uint32_t counter, const uint32_t nonce[3], uint32_t out[16]) {
    uint32_t in[16] = {SIGMA[0], SIGMA[1], SIGMA[2], SIGMA[3], key[0], key[1], key[2], key[3],
                       key[4],   key[5],   key[6],   key[7],   counter, nonce[0], nonce[1], nonce[2]};
    uint32_t x[16];
    memcpy(x, in, sizeof x);
    for (int r = 0; r < 10; r++) { /* 20 rounds = 10 double rounds: columns, then diagonals */
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int j = 0; j < 16; j++) out[j] = x[j] + in[j];
}

/* The 16-lane form uses GCC/Clang vector types so that each state word of all 16 blocks is one
 * register (one AVX-512 register where available; the compiler splits it on narrower targets). This
 * is the only non-ISO construct of the file and it is what makes the bulk noise fast. */
typedef uint32_t v16u __attribute__((vector_size(64)));
#define VROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define VQR(a, b, c, d)                   \
    do {                                  \
        a += b, d ^= a, d = VROTL(d, 16); \
        c += d, b ^= c, b = VROTL(b, 12); \
        a += b, d ^= a, d = VROTL(d, 8);  \
        c += d, b ^= c, b = VROTL(b, 7);  \
    } while (0)

/* A macro, not a function: passing or returning a 64-byte vector by value changes the ABI between
 * AVX-512 and other builds (and GCC warns about it). */
#define SPLAT(v) ((v16u){0} + (uint32_t)(v))

void dp_chacha20_x16(const uint32_t key[8], uint64_t counter, uint64_t nonce, uint32_t out[16][DP_CHACHA_LANES]) {
    uint32_t lo[DP_CHACHA_LANES], hi[DP_CHACHA_LANES];
    for (int l = 0; l < DP_CHACHA_LANES; l++) { /* the 64-bit counter carries across words 12-13 */
        uint64_t c = counter + (uint64_t)l;
        lo[l] = (uint32_t)c;
        hi[l] = (uint32_t)(c >> 32);
    }
    v16u in[16];
    for (int j = 0; j < 4; j++) in[j] = SPLAT(SIGMA[j]);
    for (int j = 0; j < 8; j++) in[4 + j] = SPLAT(key[j]);
    memcpy(&in[12], lo, sizeof lo);
    memcpy(&in[13], hi, sizeof hi);
    in[14] = SPLAT(nonce);
    in[15] = SPLAT(nonce >> 32);

    v16u x0 = in[0], x1 = in[1], x2 = in[2], x3 = in[3], x4 = in[4], x5 = in[5], x6 = in[6], x7 = in[7];
    v16u x8 = in[8], x9 = in[9], x10 = in[10], x11 = in[11], x12 = in[12], x13 = in[13], x14 = in[14],
         x15 = in[15];
    for (int r = 0; r < 10; r++) {
        VQR(x0, x4, x8, x12);
        VQR(x1, x5, x9, x13);
        VQR(x2, x6, x10, x14);
        VQR(x3, x7, x11, x15);
        VQR(x0, x5, x10, x15);
        VQR(x1, x6, x11, x12);
        VQR(x2, x7, x8, x13);
        VQR(x3, x4, x9, x14);
    }
    v16u x[16] = {x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15};
    for (int j = 0; j < 16; j++) {
        v16u w = x[j] + in[j];
        memcpy(out[j], &w, sizeof w);
    }
}

void dp_secure_wipe(void *p, size_t len) {
    /* Unlike memset before free or return, explicit_bzero may not be removed as a dead store. */
    explicit_bzero(p, len);
}

/* ---------------------------------------------------------------------------------------------
 * The stream
 * ------------------------------------------------------------------------------------------- */

/* Fill buf with blocks first_block .. first_block+15, in stream order. */
static void refill(dp_rng *rng, uint64_t first_block) {
    uint32_t w[16][DP_CHACHA_LANES];
    dp_chacha20_x16(rng->key, first_block, 0, w);
    for (int l = 0; l < RNG_BUF_BLOCKS; l++)
        for (int m = 0; m < 8; m++) rng->buf[l * 8 + m] = (uint64_t)w[2 * m][l] | (uint64_t)w[2 * m + 1][l] << 32;
    dp_secure_wipe(w, sizeof w);
    rng->buf_block = first_block;
    rng->idx = 0;
}

uint64_t dp_rng_u64(dp_rng *rng) {
    /* The 64-bit block counter cannot wrap in practice (2^70 bytes of output). */
    if (rng->idx == RNG_BUF_WORDS) refill(rng, rng->buf_block + RNG_BUF_BLOCKS);
    return rng->buf[rng->idx++];
}

double dp_rng_uniform(dp_rng *rng) { return dp_noise_unit_open(dp_rng_u64(rng)); }

uint64_t dp_rng_below(dp_rng *rng, uint64_t bound) {
    if (bound <= 1) return 0;
    /* Reject the lowest 2^64 mod bound values so that the accepted range is a multiple of bound. */
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t v = dp_rng_u64(rng);
        if (v >= threshold) return v % bound;
    }
}

static dp_rng *rng_new(const uint32_t key[8], dp_rng_mode mode, dp_noise_method method, uint64_t block, int offset) {
    dp_rng *rng = dp_malloc(sizeof *rng);
    memcpy(rng->key, key, sizeof rng->key);
    rng->mode = mode;
    rng->method = method;
    refill(rng, block);
    rng->idx = offset;
    return rng;
}

/* 32 bytes from the kernel's generator. getrandom blocks only until the kernel pool is initialised
 * at boot and returns at most 256 bytes at once without partial reads, but a signal can interrupt it,
 * so loop. There is deliberately no fallback (no /dev/urandom, no time-based seed). */
static int secure_key(uint32_t key[8], dp_error *err) {
    unsigned char *p = (unsigned char *)key;
    size_t got = 0, want = 8 * sizeof(uint32_t);
    while (got < want) {
        ssize_t r = getrandom(p + got, want - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            dp_secure_wipe(key, want);
            return dp_fail(err, "secure random generator: getrandom failed (%s); refusing to use a weaker source",
                           strerror(errno));
        }
        got += (size_t)r;
    }
    return 0;
}

dp_rng *dp_rng_create_secure(dp_error *err) {
    uint32_t key[8];
    if (secure_key(key, err)) return NULL;
    dp_rng *rng = rng_new(key, DP_RNG_SECURE, DP_NOISE_HARDENED, 0, 0);
    dp_secure_wipe(key, sizeof key);
    return rng;
}

dp_rng *dp_rng_create_seeded(uint64_t seed) {
    /* The key is one ChaCha20 block of (seed, a fixed label) under a fixed nonce, so that seeds that
     * differ in one bit give unrelated keys and the keys cannot collide with keys of other uses. */
    uint32_t base[8] = {(uint32_t)seed, (uint32_t)(seed >> 32), 0x6f667064u, 0x72656d72u,
                        0x65657320u, 0x20646564u, 0x20676e72u, 0x00003176u}; /* label "dpformer seeded rng v1" */
    const uint32_t nonce[3] = {0x64656573u, 0x6b206465u, 0x00007965u}; /* "seeded key" */
    uint32_t block[16], key[8];
    dp_chacha20_block(base, 0, nonce, block);
    memcpy(key, block, sizeof key);
    return rng_new(key, DP_RNG_SEEDED, DP_NOISE_PLAIN, 0, 0);
}

void dp_rng_free(dp_rng *rng) {
    if (!rng) return;
    dp_secure_wipe(rng, sizeof *rng);
    free(rng);
}

dp_rng_mode dp_rng_get_mode(const dp_rng *rng) { return rng->mode; }
dp_noise_method dp_rng_get_noise_method(const dp_rng *rng) { return rng->method; }

int dp_rng_set_noise_method(dp_rng *rng, dp_noise_method method, dp_error *err) {
    if (method != DP_NOISE_PLAIN && method != DP_NOISE_HARDENED)
        return dp_fail(err, "random generator: unknown noise method %d", (int)method);
    if (rng->mode == DP_RNG_SECURE && method != DP_NOISE_HARDENED)
        return dp_fail(err, "random generator: a secure generator always uses hardened noise");
    rng->method = method;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Saved state
 * ------------------------------------------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
/* FNV-1a: catches truncated or edited states; it is not a MAC (a saved seeded state is not secret). */
static uint32_t fnv1a(const uint8_t *p, size_t n) {
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x01000193u;
    return h;
}

void dp_rng_state_save(const dp_rng *rng, uint8_t out[DP_RNG_STATE_BYTES]) {
    /* The position of the next unread word, as (block, word in block). */
    uint64_t block = rng->buf_block + (uint64_t)(rng->idx / 8);
    int offset = rng->idx % 8;
    memset(out, 0, DP_RNG_STATE_BYTES);
    memcpy(out, "dpRN", 4);
    out[4] = STATE_VERSION;
    out[5] = (uint8_t)rng->mode;
    out[6] = (uint8_t)rng->method;
    out[7] = (uint8_t)offset;
    put_u32(out + 8, (uint32_t)block);
    put_u32(out + 12, (uint32_t)(block >> 32));
    if (rng->mode == DP_RNG_SEEDED) /* a secure key never leaves the process */
        for (int j = 0; j < 8; j++) put_u32(out + 16 + 4 * j, rng->key[j]);
    put_u32(out + 48, fnv1a(out, 48));
}

dp_rng *dp_rng_state_restore(const uint8_t *s, size_t len, dp_error *err) {
    if (!s || len != DP_RNG_STATE_BYTES) {
        dp_fail(err, "random generator state: expected %d bytes, got %zu", DP_RNG_STATE_BYTES, s ? len : 0);
        return NULL;
    }
    if (memcmp(s, "dpRN", 4) != 0 || s[4] != STATE_VERSION) {
        dp_fail(err, "random generator state: not a dpformer generator state (version %d)", STATE_VERSION);
        return NULL;
    }
    if (get_u32(s + 48) != fnv1a(s, 48)) {
        dp_fail(err, "random generator state: checksum mismatch (corrupted state)");
        return NULL;
    }
    int mode = s[5], method = s[6], offset = s[7];
    if ((mode != DP_RNG_SECURE && mode != DP_RNG_SEEDED) || (method != DP_NOISE_PLAIN && method != DP_NOISE_HARDENED) ||
        offset > 7 || (mode == DP_RNG_SECURE && method != DP_NOISE_HARDENED)) {
        dp_fail(err, "random generator state: invalid mode %d, noise method %d or offset %d", mode, method, offset);
        return NULL;
    }
    if (mode == DP_RNG_SECURE) return dp_rng_create_secure(err); /* re-keyed: see noise.h */
    uint32_t key[8];
    for (int j = 0; j < 8; j++) key[j] = get_u32(s + 16 + 4 * j);
    uint64_t block = (uint64_t)get_u32(s + 8) | (uint64_t)get_u32(s + 12) << 32;
    dp_rng *rng = rng_new(key, DP_RNG_SEEDED, (dp_noise_method)method, block, offset);
    dp_secure_wipe(key, sizeof key);
    return rng;
}

void dp_rng_state_save_hex(const dp_rng *rng, char out[DP_RNG_STATE_HEX_LEN + 1]) {
    static const char digits[] = "0123456789abcdef";
    uint8_t s[DP_RNG_STATE_BYTES];
    dp_rng_state_save(rng, s);
    for (int i = 0; i < DP_RNG_STATE_BYTES; i++) {
        out[2 * i] = digits[s[i] >> 4];
        out[2 * i + 1] = digits[s[i] & 15];
    }
    out[DP_RNG_STATE_HEX_LEN] = '\0';
    dp_secure_wipe(s, sizeof s);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

dp_rng *dp_rng_state_restore_hex(const char *hex, dp_error *err) {
    size_t len = hex ? strlen(hex) : 0;
    if (len != DP_RNG_STATE_HEX_LEN) {
        dp_fail(err, "random generator state: expected %d hex digits, got %zu characters", DP_RNG_STATE_HEX_LEN, len);
        return NULL;
    }
    uint8_t s[DP_RNG_STATE_BYTES];
    for (int i = 0; i < DP_RNG_STATE_BYTES; i++) {
        int h = hexval(hex[2 * i]), l = hexval(hex[2 * i + 1]);
        if (h < 0 || l < 0) {
            dp_fail(err, "random generator state: '%c%c' at offset %d is not a hex byte", hex[2 * i], hex[2 * i + 1],
                    2 * i);
            return NULL;
        }
        s[i] = (uint8_t)(h << 4 | l);
    }
    dp_rng *rng = dp_rng_state_restore(s, sizeof s, err);
    dp_secure_wipe(s, sizeof s);
    return rng;
}

/* The same generator on every rank of a data-parallel job (rng_internal.h). The state travels in
 * memory between the job's processes only (never to a file), key included for a secure generator. */
int dp_rng_share(dp_rng **rng, int root, int (*bcast)(void *buf, size_t n, int root, dp_error *err), dp_error *err) {
    uint8_t s[DP_RNG_STATE_BYTES + 1];
    memset(s, 0, sizeof s);
    if (*rng) {
        dp_rng_state_save(*rng, s);
        for (int j = 0; j < 8; j++) put_u32(s + 16 + 4 * j, (*rng)->key[j]);
        s[DP_RNG_STATE_BYTES] = (uint8_t)(*rng)->mode;
    }
    if (bcast(s, sizeof s, root, err)) {
        dp_secure_wipe(s, sizeof s);
        return -1;
    }
    uint32_t key[8];
    for (int j = 0; j < 8; j++) key[j] = get_u32(s + 16 + 4 * j);
    const uint64_t block = (uint64_t)get_u32(s + 8) | (uint64_t)get_u32(s + 12) << 32;
    dp_rng *shared = rng_new(key, (dp_rng_mode)s[DP_RNG_STATE_BYTES], (dp_noise_method)s[6], block, s[7]);
    dp_secure_wipe(key, sizeof key);
    dp_secure_wipe(s, sizeof s);
    dp_rng_free(*rng);
    *rng = shared;
    return 0;
}
