/* Fuzz target for the model loader (src/model/model_io.c) through dp_model_load_buffer: the input is a
 * model.safetensors file, so this exercises the configuration in the metadata (dpformer.config), the
 * Re-Attention setting (dpformer.reattention, reattention.item_freq) and their agreement with the
 * tensors. An accepted model must have a valid configuration, finite parameters and a valid
 * Re-Attention setting if any, and must be able to score one sequence; a refused file must come with
 * a message naming it. The loader checks the tensors against the configuration before allocating, so the memory used
 * here stays proportional to the input size. */
#include <math.h>

#include "dpformer/model.h"
#include "dpformer/reattention.h"

#include "fuzz.h"

#define NAME "model.safetensors"

static void check_model(dp_model *m) {
    const dp_model_config *c = dp_model_config_of(m);
    dp_error err;
    FUZZ_CHECK(dp_model_config_validate(c, &err) == 0);
    FUZZ_CHECK(dp_model_max_batch(m) == 1);
    const dp_real *p = dp_model_params(m);
    for (int i = 0; i < dp_model_num_tensors(m); i++) {
        const dp_param_tensor *t = dp_model_tensor(m, i);
        FUZZ_CHECK(t && t->offset + t->size <= dp_model_num_params(m));
        for (size_t k = 0; k < t->size; k++) FUZZ_CHECK(isfinite(p[t->offset + k]));
    }
    /* A stored Re-Attention setting is attached only when it is valid. */
    dp_reattention_config ra;
    if (dp_model_get_reattention(m, &ra)) {
        FUZZ_CHECK(ra.kappa >= 0 && ra.sigma >= 0 && ra.batch_size > 0 && ra.n_examples >= 1 && ra.item_freq);
        for (int i = 1; i <= c->n_items; i++) FUZZ_CHECK(ra.item_freq[i] >= 0 && ra.item_freq[i] <= 1);
    }
    /* One sequence: items 1, 2, ... in the last positions of the window, padding before. */
    int T = c->max_len, V = c->n_items;
    int32_t *ids = calloc((size_t)T, sizeof *ids);
    dp_real *scores = malloc(((size_t)V + 1) * sizeof *scores);
    if (!ids || !scores) abort();
    for (int t = 0; t < T && t < 3; t++) ids[T - 1 - t] = 1 + t % V;
    dp_model_score_last(m, ids, 1, scores);
    free(ids);
    free(scores);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dp_error err = {{0}};
    dp_model *m = dp_model_load_buffer(NAME, data, size, 1, &err);
    if (m) {
        check_model(m);
        dp_model_free(m);
    } else {
        FUZZ_CHECK_ERROR(err.msg, NAME);
    }
    return 0;
}
