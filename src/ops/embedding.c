/* Token + position embedding lookup and its backward (scatter-add into the used rows), with either
 * position rule: the window's (row t uses P[t]) or GPT-2's (positions counted from each sequence's
 * first token). */
#include "ops/ops.h"

/* The position row of (sequence b, window position t); ids_b = that sequence's ids. */
static inline int position_of(const int32_t *ids_b, int t, int from_first) {
    if (!from_first) return t;
    int f = 0;
    while (f < t && ids_b[f] == 0) f++;
    return t - f; /* padding rows before the first token (f == t) use P[0] */
}

void embedding_forward(real *out, const int32_t *ids, const real *E, const real *P, int B, int T, int C,
                       int from_first) {
#pragma omp parallel for schedule(static) if (OPS_PAR((double)B * T * C))
    for (long r = 0; r < (long)B * T; r++) {
        const int t = (int)(r % T);
        const real *e = E + (size_t)ids[r] * C, *p = P + (size_t)position_of(ids + (r - t), t, from_first) * C;
        real *o = out + r * C;
        for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
    }
}

void embedding_backward(real *dE, real *dP, const real *dout, const int32_t *ids, int B, int T, int C,
                        int from_first) {
    /* Serial: rows may repeat an id, and a fixed order keeps results identical across thread counts. */
    for (long r = 0; r < (long)B * T; r++) {
        if (ids[r] == 0) continue;
        const int t = (int)(r % T);
        const real *g = dout + r * C;
        if (dE) {
            real *e = dE + (size_t)ids[r] * C;
            for (int i = 0; i < C; i++) e[i] += g[i];
        }
        if (dP) {
            real *p = dP + (size_t)position_of(ids + (r - t), t, from_first) * C;
            for (int i = 0; i < C; i++) p[i] += g[i];
        }
    }
}

void embedding_per_example_sqnorm(double *sq_emb, double *sq_pos, const real *G, const int32_t *ids, int B, int T,
                                  int C) {
#pragma omp parallel if (OPS_PAR(2.0 * B * T * C))
    {
        int *order = dp_malloc(sizeof(int) * (size_t)T);
        double *acc = dp_malloc(sizeof(double) * (size_t)C);
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            const int32_t *id = ids + (size_t)b * T;
            const real *Gb = G + (size_t)b * T * C;
            if (sq_pos) {
                double s = 0;
                for (int t = 0; t < T; t++)
                    if (id[t])
                        for (int i = 0; i < C; i++) s += (double)Gb[(size_t)t * C + i] * Gb[(size_t)t * C + i];
                sq_pos[b] += s;
            }
            if (!sq_emb) continue;
            /* Group equal ids (insertion sort of positions by id; T is small) and add the squared
             * norm of each group's summed gradient: rows of ∇E are disjoint across ids. */
            int n = 0;
            for (int t = 0; t < T; t++) {
                if (!id[t]) continue;
                int k = n++;
                while (k > 0 && id[order[k - 1]] > id[t]) {
                    order[k] = order[k - 1];
                    k--;
                }
                order[k] = t;
            }
            double s = 0;
            for (int k = 0; k < n;) {
                memset(acc, 0, sizeof(double) * (size_t)C);
                int j = k;
                for (; j < n && id[order[j]] == id[order[k]]; j++)
                    for (int i = 0; i < C; i++) acc[i] += Gb[(size_t)order[j] * C + i];
                for (int i = 0; i < C; i++) s += acc[i] * acc[i];
                k = j;
            }
            sq_emb[b] += s;
        }
        free(order);
        free(acc);
    }
}
