/* Fuzz target for the privacy accountant's history reader (src/privacy/history.c) through
 * dp_history_from_json: the input is the JSON text. An accepted history must hold only valid events
 * whose total fits in 64 bits, must read back bit for bit from its own JSON, must give the same total
 * when rebuilt event by event with dp_history_add, and must go through the RDP accountant (which is
 * what `dpformer privacy --history` does with it) without a sanitizer report. */
#include <math.h>

#include "dpformer/accountant.h"

#include "fuzz.h"

static int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static void check_history(const dp_history *h) {
    dp_error err;
    int64_t total = 0;
    for (size_t i = 0; i < h->n; i++) {
        FUZZ_CHECK(dp_event_check(&h->events[i], &err) == 0);
        FUZZ_CHECK(h->events[i].steps <= INT64_MAX - total);
        total += h->events[i].steps;
    }
    FUZZ_CHECK(dp_history_total_steps(h) == total);

    char *json = dp_history_to_json(h);
    FUZZ_CHECK(json != NULL);
    dp_history back;
    dp_history_init(&back);
    FUZZ_CHECK(dp_history_from_json(&back, json, &err) == 0);
    FUZZ_CHECK(back.n == h->n);
    for (size_t i = 0; i < h->n; i++) {
        const dp_event *a = &h->events[i], *b = &back.events[i];
        FUZZ_CHECK(a->type == b->type && a->steps == b->steps && same_bits(a->noise_multiplier, b->noise_multiplier) &&
                   same_bits(a->sample_rate, b->sample_rate));
    }
    dp_history_free(&back);
    free(json);

    dp_history merged;
    dp_history_init(&merged);
    for (size_t i = 0; i < h->n; i++) FUZZ_CHECK(dp_history_add(&merged, &h->events[i], &err) == 0);
    FUZZ_CHECK(merged.n <= h->n && dp_history_total_steps(&merged) == total);
    dp_history_free(&merged);

    /* Fractional and integer orders: both series of the subsampled Gaussian. */
    static const double orders[] = {1.5, 2, 8, 32.5};
    dp_rdp_result r;
    if (dp_rdp_epsilon(h, orders, sizeof orders / sizeof orders[0], 1e-5, DP_CONVERSION_IMPROVED, &r, &err) == 0)
        FUZZ_CHECK(!(r.epsilon < 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    dp_history h;
    dp_history_init(&h);
    dp_error err = {{0}};
    if (dp_history_from_json(&h, text, &err) == 0) check_history(&h);
    else FUZZ_CHECK_ERROR(err.msg, "privacy history");
    dp_history_free(&h);
    free(text);
    return 0;
}
