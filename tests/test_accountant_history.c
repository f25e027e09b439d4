/* Privacy event history: bit-exact JSON round trips (random doubles, through a string and a file),
 * merging of identical consecutive events, clear errors for malformed or invalid JSON, and the
 * hostile files found by fuzzing. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dpformer/accountant.h"
#include "testutil.h"

static int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static void test_round_trip(void) {
    uint64_t rng = 12345;
    dp_history h, back;
    dp_history_init(&h), dp_history_init(&back);
    dp_error err;
    for (int i = 0; i < 200; i++) {
        /* Values with full 53-bit mantissas, over many magnitudes. */
        double sigma = exp(8 * tu_uniform(&rng) - 2);
        double q = tu_uniform(&rng);
        if (q == 0) q = 0.5;
        int64_t steps = (int64_t)(tu_uniform(&rng) * 1e7);
        if (i % 7 == 3) CHECK(dp_history_add_gaussian(&h, sigma, steps, &err) == 0);
        else CHECK(dp_history_add_poisson_gaussian(&h, sigma, q, steps, &err) == 0);
    }
    /* Extremes that a shortest-decimal printer could get wrong. */
    CHECK(dp_history_add_poisson_gaussian(&h, 0.1 + 0.2, 1e-300 * 1e290, DP_MAX_STEPS, &err) == 0);
    CHECK(dp_history_add_poisson_gaussian(&h, 4.9406564584124654e-324, nextafter(1.0, 0.0), 0, &err) == 0);
    char *json = dp_history_to_json(&h);
    CHECK(json != NULL);
    CHECK(dp_history_from_json(&back, json, &err) == 0);
    CHECK(back.n == h.n);
    int exact = back.n == h.n;
    for (size_t i = 0; exact && i < h.n; i++)
        exact = h.events[i].type == back.events[i].type && h.events[i].steps == back.events[i].steps &&
                same_bits(h.events[i].noise_multiplier, back.events[i].noise_multiplier) &&
                same_bits(h.events[i].sample_rate, back.events[i].sample_rate);
    CHECK(exact);
    /* Writing the read-back history gives the same text. */
    char *json2 = dp_history_to_json(&back);
    CHECK(strcmp(json, json2) == 0);
    free(json2);
    free(json);

    /* Through a file, and ε is identical. */
    const char *path = "test_accountant_history.json";
    dp_history f;
    dp_history_init(&f);
    CHECK(dp_history_save(&h, path, &err) == 0);
    CHECK(dp_history_load(&f, path, &err) == 0);
    CHECK(f.n == h.n);
    dp_history small, small_back;
    dp_history_init(&small), dp_history_init(&small_back);
    CHECK(dp_history_add_poisson_gaussian(&small, 1.1, 0.013, 1234, &err) == 0);
    CHECK(dp_history_add_gaussian(&small, 7.3, 2, &err) == 0);
    CHECK(dp_history_save(&small, path, &err) == 0);
    CHECK(dp_history_load(&small_back, path, &err) == 0);
    dp_rdp_result r1, r2;
    CHECK(dp_rdp_epsilon(&small, NULL, 0, 1e-5, DP_CONVERSION_IMPROVED, &r1, &err) == 0);
    CHECK(dp_rdp_epsilon(&small_back, NULL, 0, 1e-5, DP_CONVERSION_IMPROVED, &r2, &err) == 0);
    CHECK(same_bits(r1.epsilon, r2.epsilon));
    remove(path);
    dp_history_free(&f), dp_history_free(&small), dp_history_free(&small_back);

    /* Embedded in a larger document (as a checkpoint does). */
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "privacy", dp_history_to_cjson(&h));
    char *s = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    cJSON *parsed = cJSON_Parse(s);
    free(s);
    dp_history emb;
    dp_history_init(&emb);
    CHECK(dp_history_from_cjson(&emb, cJSON_GetObjectItem(parsed, "privacy"), &err) == 0);
    CHECK(emb.n == h.n && same_bits(emb.events[5].noise_multiplier, h.events[5].noise_multiplier));
    cJSON_Delete(parsed);
    dp_history_free(&emb);
    dp_history_free(&h), dp_history_free(&back);
}

static void test_merge(void) {
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    for (int i = 0; i < 1000; i++) CHECK(dp_history_add_poisson_gaussian(&h, 1.0, 0.01, 1, &err) == 0);
    CHECK(h.n == 1 && h.events[0].steps == 1000);
    CHECK(dp_history_add_poisson_gaussian(&h, 1.2, 0.01, 5, &err) == 0);
    CHECK(dp_history_add_poisson_gaussian(&h, 1.0, 0.01, 5, &err) == 0);
    CHECK(h.n == 3);
    CHECK(dp_history_total_steps(&h) == 1010);
    dp_history_free(&h);
    CHECK(h.n == 0 && h.events == NULL);
}

static void test_bad_json(void) {
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    CHECK(dp_history_add_gaussian(&h, 2.0, 1, &err) == 0);
    const char *bad[] = {
        "not json",
        "[]",
        "{\"events\": 3}",
        "{\"format\": \"other\", \"events\": []}",
        "{\"version\": 2, \"events\": []}",
        "{\"events\": [{\"type\": \"laplace\", \"noise_multiplier\": 1, \"steps\": 1}]}",
        "{\"events\": [{\"type\": \"poisson_gaussian\", \"noise_multiplier\": 1, \"steps\": 1}]}",
        "{\"events\": [{\"type\": \"poisson_gaussian\", \"noise_multiplier\": 0, \"sample_rate\": 0.1, \"steps\": 1}]}",
        "{\"events\": [{\"type\": \"poisson_gaussian\", \"noise_multiplier\": 1, \"sample_rate\": 1.5, \"steps\": 1}]}",
        "{\"events\": [{\"type\": \"poisson_gaussian\", \"noise_multiplier\": 1, \"sample_rate\": 0.1, \"steps\": -2}]}",
        "{\"events\": [{\"type\": \"poisson_gaussian\", \"noise_multiplier\": 1, \"sample_rate\": 0.1, \"steps\": 2.5}]}",
        "{\"events\": [{\"type\": \"gaussian\", \"noise_multiplier\": 1, \"sample_rate\": 0.5, \"steps\": 1}]}",
        "{\"events\": [{\"type\": \"gaussian\", \"noise_multiplier\": \"1\", \"steps\": 1}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        int rc = dp_history_from_json(&h, bad[i], &err);
        tu_checks++;
        if (rc == 0 || err.msg[0] == 0) {
            tu_failures++;
            fprintf(stderr, "accepted bad history: %s\n", bad[i]);
        }
    }
    /* A failed read leaves the history as it was. */
    CHECK(h.n == 1 && h.events[0].noise_multiplier == 2.0);
    CHECK(dp_history_load(&h, "/nonexistent/dir/history.json", &err) != 0);
    CHECK(strstr(err.msg, "/nonexistent/dir/history.json") != NULL);
    /* A minimal file without format/version is accepted. */
    CHECK(dp_history_from_json(&h, "{\"events\": [{\"type\": \"gaussian\", \"noise_multiplier\": 3, \"steps\": 2}]}",
                               &err) == 0);
    CHECK(h.n == 1 && h.events[0].type == DP_EVENT_GAUSSIAN && h.events[0].sample_rate == 1.0);
    dp_history_free(&h);
}

/* Inputs found by fuzzing (tests/fuzz): text after the object, a NUL byte in a file, consecutive
 * events too large to merge, and totals that would wrap the 64-bit step count (2048 events of 2^53
 * steps used to total 0, "nothing released"). */
static void test_hostile_files(void) {
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    CHECK(dp_history_from_json(&h, "{\"events\": []} x", &err) != 0 && strstr(err.msg, "after the JSON object"));
    CHECK(dp_history_from_json(&h, "{\"events\": []}\n{\"events\": []}", &err) != 0);
    CHECK(dp_history_from_json(&h, "{\"events\": []} \r\n\t", &err) == 0);

    const char *path = "test_accountant_history_nul.json";
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite("{\"events\": []}\0garbage", 1, 22, f);
        fclose(f);
    }
    CHECK(dp_history_load(&h, path, &err) != 0 && strstr(err.msg, path) && strstr(err.msg, "NUL byte at offset 14"));
    remove(path);

    const char *ev = "{\"type\": \"gaussian\", \"noise_multiplier\": 1, \"steps\": 9007199254740992}";
    size_t cap = 2048 * (strlen(ev) + 2) + 64;
    char *json = malloc(cap);
    for (int n = 1023; n <= 1024; n++) {
        size_t len = (size_t)snprintf(json, cap, "{\"events\": [");
        for (int i = 0; i < n; i++) len += (size_t)snprintf(json + len, cap - len, "%s%s", i ? ", " : "", ev);
        snprintf(json + len, cap - len, "]}");
        int rc = dp_history_from_json(&h, json, &err);
        if (n == 1023) CHECK(rc == 0 && dp_history_total_steps(&h) == 1023 * DP_MAX_STEPS);
        else CHECK(rc != 0 && strstr(err.msg, "event 1023") && strstr(err.msg, "2^63 - 1 steps in total"));
    }
    free(json);
    /* Consecutive identical events that together pass 2^53 steps are valid in a file, and copying
     * such a history event by event keeps them apart instead of failing. */
    CHECK(dp_history_from_json(&h, "{\"events\": [{\"type\": \"gaussian\", \"noise_multiplier\": 150, \"steps\": 90}, "
                                   "{\"type\": \"gaussian\", \"noise_multiplier\": 150, \"steps\": 9007199254740992}]}",
                               &err) == 0);
    dp_history copy;
    dp_history_init(&copy);
    for (size_t i = 0; i < h.n; i++) CHECK(dp_history_add(&copy, &h.events[i], &err) == 0);
    CHECK(copy.n == 2 && dp_history_total_steps(&copy) == 90 + DP_MAX_STEPS);
    CHECK(dp_history_add_gaussian(&copy, 150, 1, &err) == 0 && copy.n == 3);
    dp_history_free(&copy);
    /* The same limit when appending (events that do not merge, as σ alternates). */
    dp_history_free(&h);
    int rc = 0;
    for (int i = 0; i < 1024 && rc == 0; i++) rc = dp_history_add_gaussian(&h, i % 2 ? 1.0 : 2.0, DP_MAX_STEPS, &err);
    CHECK(rc != 0 && h.n == 1023 && strstr(err.msg, "in total"));
    dp_history_free(&h);
}

int main(void) {
    test_round_trip();
    test_merge();
    test_bad_json();
    test_hostile_files();
    return tu_finish("test_accountant_history");
}
