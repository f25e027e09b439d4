/* Token + position embedding lookup and its backward (scatter-add into the used rows). */
#include "ops/ops.h"

void embedding_forward(real *out, const int32_t *ids, const real *E, const real *P, int B, int T, int C) {
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)B * T; r++) {
        const real *e = E + (size_t)ids[r] * C, *p = P + (size_t)(r % T) * C;
        real *o = out + r * C;
        for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
    }
}

void embedding_backward(real *dE, real *dP, const real *dout, const int32_t *ids, int B, int T, int C) {
    /* Serial: rows may repeat an id, and a fixed order keeps results identical across thread counts. */
    for (long r = 0; r < (long)B * T; r++) {
        if (ids[r] == 0) continue;
        const real *g = dout + r * C;
        if (dE) {
            real *e = dE + (size_t)ids[r] * C;
            for (int i = 0; i < C; i++) e[i] += g[i];
        }
        if (dP) {
            real *p = dP + (size_t)(r % T) * C;
            for (int i = 0; i < C; i++) p[i] += g[i];
        }
    }
}
