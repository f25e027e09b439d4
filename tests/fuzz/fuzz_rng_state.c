/* Fuzz target for restoring a random generator from a saved state (src/privacy/chacha20.c):
 * dp_rng_state_restore_hex on the input as text when its first byte is even; otherwise
 * dp_rng_state_restore on the remaining bytes, with the checksum of a 52-byte state corrected first so
 * that the checks behind it are reached. A restored seeded generator must save exactly the state it
 * came from and continue the same stream as a generator restored from that saved state; a secure one
 * must save no key. */
#include <math.h>

#include "dpformer/noise.h"

#include "fuzz.h"

static uint32_t fnv1a(const uint8_t *p, size_t n) {
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x01000193u;
    return h;
}

static void check_rng(dp_rng *rng, const uint8_t *state) {
    uint8_t saved[DP_RNG_STATE_BYTES];
    dp_rng_state_save(rng, saved);
    if (dp_rng_get_mode(rng) == DP_RNG_SEEDED) {
        FUZZ_CHECK(memcmp(saved, state, DP_RNG_STATE_BYTES) == 0);
    } else {
        static const uint8_t zero[32];
        FUZZ_CHECK(dp_rng_get_noise_method(rng) == DP_NOISE_HARDENED && memcmp(saved + 16, zero, 32) == 0);
    }
    char hex[DP_RNG_STATE_HEX_LEN + 1];
    dp_rng_state_save_hex(rng, hex);
    dp_error err;
    dp_rng *twin = dp_rng_state_restore_hex(hex, &err);
    FUZZ_CHECK(twin != NULL);
    int seeded = dp_rng_get_mode(rng) == DP_RNG_SEEDED;
    /* Across a refill of the 16-block buffer, which starts wherever the state says. */
    for (int i = 0; i < 200; i++) {
        uint64_t a = dp_rng_u64(rng), b = dp_rng_u64(twin);
        FUZZ_CHECK(!seeded || a == b);
    }
    double u = dp_rng_uniform(rng);
    FUZZ_CHECK(u > 0 && u < 1);
    double z[8];
    FUZZ_CHECK(dp_noise_gaussian_fill_f64(rng, z, 8, 1.0, &err) == 0);
    for (int i = 0; i < 8; i++) FUZZ_CHECK(isfinite(z[i]));
    dp_rng_free(twin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    dp_error err = {{0}};
    dp_rng *rng;
    uint8_t state[DP_RNG_STATE_BYTES];
    if (data[0] % 2 == 0) {
        char *text = fuzz_cstr(data + 1, size - 1);
        rng = dp_rng_state_restore_hex(text, &err);
        int hex_ok = strlen(text) == DP_RNG_STATE_HEX_LEN;
        for (int i = 0; rng && i < DP_RNG_STATE_BYTES; i++) {
            FUZZ_CHECK(hex_ok);
            unsigned v;
            char pair[3] = {text[2 * i], text[2 * i + 1], 0};
            FUZZ_CHECK(sscanf(pair, "%2x", &v) == 1);
            state[i] = (uint8_t)v;
        }
        free(text);
    } else {
        size_t n = size - 1;
        uint8_t *copy = malloc(n ? n : 1);
        if (!copy) abort();
        if (n) memcpy(copy, data + 1, n);
        if (n == DP_RNG_STATE_BYTES) {
            uint32_t h = fnv1a(copy, 48);
            for (int i = 0; i < 4; i++) copy[48 + i] = (uint8_t)(h >> (8 * i));
            memcpy(state, copy, DP_RNG_STATE_BYTES);
        }
        rng = dp_rng_state_restore(copy, n, &err);
        FUZZ_CHECK(!rng || n == DP_RNG_STATE_BYTES);
        free(copy);
    }
    if (rng) {
        check_rng(rng, state);
        dp_rng_free(rng);
    } else {
        FUZZ_CHECK_ERROR(err.msg, "random generator state");
    }
    return 0;
}
