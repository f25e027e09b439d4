/* Privacy engine in single precision (what users run): every clipping mode agrees with the
 * one-example-at-a-time reference within 1e-4 relative error on the per-example norms and the clipped
 * sum, on a model with padding, repeated items, dropout, several layers and heads, tied and untied. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/privacy.h"
#include "model/model_internal.h"
#include "testutil.h"

static uint64_t rng = 7;

static void run(int tied, float dropout) {
    const int V = 300, L = 12, B = 8;
    dp_model_config c = dp_model_config_default(V, L);
    c.d_model = 16;
    c.n_heads = 2;
    c.n_layers = 2;
    c.tied = tied;
    c.dropout = dropout;
    dp_error e;
    dp_model *m = dp_model_create(&c, B, 5, &e);
    int32_t ids[8 * 12], tgt[8 * 12];
    for (int b = 0; b < B; b++) {
        int len = b == 0 ? L : 1 + (int)(tu_uniform(&rng) * L);
        for (int t = 0; t < L; t++) {
            int k = b * L + t, on = t >= L - len;
            ids[k] = on ? 1 + (int)(tu_uniform(&rng) * 20) : 0; /* few ids: repeats */
            tgt[k] = on ? 1 + (int)(tu_uniform(&rng) * V) : 0;
        }
    }
    dp_batch bt = {B, L, ids, tgt, NULL};
    size_t np = dp_model_num_params(m);
    real *ref = malloc(sizeof(real) * np);
    double nref[8], n2[8];
    dp_model_zero_grad(m);
    CHECK(dp_clipped_grad(m, &bt, DP_CLIP_NAIVE, 1.0, 1, 9, 0, nref, NULL, &e) == 0);
    memcpy(ref, dp_model_grads(m), sizeof(real) * np);
    dp_clip_mode modes[] = {DP_CLIP_PHANTOM, DP_CLIP_AUTO, DP_CLIP_GHOST};
    for (int k = 0; k < (tied ? 2 : 3); k++) {
        dp_model_zero_grad(m);
        CHECK(dp_clipped_grad(m, &bt, modes[k], 1.0, 1, 9, 0, n2, NULL, &e) == 0);
        double worst = 0, num = 0, den = 0;
        for (int b = 0; b < B; b++) worst = fmax(worst, fabs(n2[b] - nref[b]) / nref[b]);
        const real *g = dp_model_grads(m);
        for (size_t i = 0; i < np; i++) {
            num += ((double)g[i] - ref[i]) * ((double)g[i] - ref[i]);
            den += (double)ref[i] * ref[i];
        }
        printf("tied %d dropout %.1f %-8s norms max rel err %.2e, clipped sum rel err %.2e\n", tied, dropout,
               dp_clip_mode_name(modes[k]), worst, sqrt(num / den));
        CHECK(worst <= 1e-4);
        CHECK(sqrt(num / den) <= 1e-4);
    }
    free(ref);
    dp_model_free(m);
}

int main(void) {
    run(1, 0.0f);
    run(1, 0.2f);
    run(0, 0.1f);
    return tu_finish("test_clip");
}
