/* Output layer + softmax cross-entropy over all V items, fused and computed in chunks of rows so that
 * the [N,V] logits of a batch never exist at once (only [R,V] for a chunk of R rows). Each chunk is
 * three GEMMs (logits, input gradient, weight gradient) around one pass of exp over the logits. */
#include <math.h>

#include "ops/blas.h"
#include "ops/norm_plan.h"
#include "ops/ops.h"

/* Rows per chunk: about 16M logits (64 MB in float). Each chunk's GEMMs re-pack the [V,C] weight,
 * so fewer, larger chunks run closer to the GEMM peak; measured on the Amazon-Games shape
 * (V 23,716): 4M logits 1.87 s/step, 16M 1.56 s, 64M 1.64 s (docs/benchmarks.md). */
static long chunk_logits = 16L << 20;

void classifier_set_chunk_logits(long n) { chunk_logits = n > 0 ? n : (16L << 20); }

static long chunk_rows(int V) {
    long r = chunk_logits / (V > 0 ? V : 1);
    if (r < 16) r = 16;
    if (r > 8192) r = 8192;
    return r;
}

size_t classifier_scratch_size(long N, int C, int V) {
    long R = DP_MIN(chunk_rows(V), N > 0 ? N : 1);
    return (size_t)R * V + 2 * (size_t)R * C;
}

/* Gradient GEMMs of a chunk whose buffer holds the unnormalised exponentials e_r = exp(z_r − m_r)
 * rather than δ_r = a_r e_r − w_r onehot(y_r) (a_r = w_r / Σ e_r): the scale is folded into the small
 * [nr, C] operands and the one-hot part is a row update, which saves a full pass over the logits.
 *   dh_r = a_r (e_r W) − w_r W_y ;  dW += eᵀ (a ∘ h) − Σ_r w_r onehot(y_r) h_rᵀ. */
static void chunk_grads(real *dh, real *dWc, const real *e, real *hp, real *dhp, const real *a, const long *rows,
                        long nr, const int32_t *target, const real *weight, const real *Wc, int C, int V) {
    if (dh) {
        dp_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, C, V, 1, e, V, Wc, C, 0, dhp, C);
        for (long j = 0; j < nr; j++) {
            long r = rows[j];
            const real *wy = Wc + (size_t)(target[r] - 1) * C;
            for (int i = 0; i < C; i++) dh[r * C + i] = a[j] * dhp[j * C + i] - weight[r] * wy[i];
        }
    }
    if (dWc) {
        for (long j = 0; j < nr; j++) {
            long r = rows[j];
            real *dy = dWc + (size_t)(target[r] - 1) * C;
            for (int i = 0; i < C; i++) {
                dy[i] -= weight[r] * hp[j * C + i];
                hp[j * C + i] *= a[j];
            }
        }
        dp_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, (int)nr, 1, e, V, hp, C, 1, dWc, C);
    }
}

/* Rows with a non-zero loss weight, in order; returns their count. */
static long active_rows(long *active, const real *weight, long N) {
    long na = 0;
    for (long r = 0; r < N; r++)
        if (weight[r] != 0) active[na++] = r;
    return na;
}

/* Packs the hidden states of `rows` into hp[nr,C] and computes their logits z[nr,V] = hp · Wcᵀ. */
static void pack_logits(real *z, real *hp, const real *h, const long *rows, long nr, const real *Wc, int C, int V) {
    for (long j = 0; j < nr; j++) memcpy(hp + j * C, h + rows[j] * C, sizeof(real) * (size_t)C);
    dp_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, V, C, 1, hp, C, Wc, C, 0, z, V);
}

/* Exponentials of a chunk in place: e_r = exp(z_r − max_r); loss and a_r = w_r / Σ e_r
 * per row, so that δ_r = a_r e_r − w_r onehot(y_r) without another pass over the logits. */
static void exp_rows(real *z, real *a, long nr, const long *rows, const int32_t *target, const real *weight,
                     real *loss, int V) {
#pragma omp parallel for schedule(static)
    for (long j = 0; j < nr; j++) {
        long r = rows[j];
        real *zr = z + j * V;
        real zy = zr[target[r] - 1], mx = zr[0];
#pragma omp simd reduction(max : mx)
        for (int v = 1; v < V; v++) mx = zr[v] > mx ? zr[v] : mx;
        double sum = vexp_shift_sum(zr, V, mx);
        double l = (double)mx + log(sum);
        loss[r] = (real)(l - (double)zy);
        a[j] = (real)((double)weight[r] / sum);
    }
}

void classifier_forward_backward(real *loss, real *dh, real *dW, const real *h, const real *W, const int32_t *target,
                                 const real *weight, long N, int C, int V, real *scratch) {
    const real *Wc = W + C; /* candidate rows 1..V */
    real *dWc = dW ? dW + C : NULL;
    long R = DP_MIN(chunk_rows(V), N > 0 ? N : 1);
    real *z = scratch, *hp = scratch + (size_t)R * V, *dhp = hp + (size_t)R * C;
    long *active = dp_malloc(sizeof(long) * (size_t)(N > 0 ? N : 1));
    real *a = dp_malloc(sizeof(real) * (size_t)R);
    for (long r = 0; r < N; r++) loss[r] = 0;
    long na = active_rows(active, weight, N);
    if (dh) memset(dh, 0, sizeof(real) * (size_t)N * C);
    for (long s = 0; s < na; s += R) {
        long nr = DP_MIN(R, na - s);
        pack_logits(z, hp, h, active + s, nr, Wc, C, V);
        exp_rows(z, a, nr, active + s, target, weight, loss, V);
        if (dh || dWc) chunk_grads(dh, dWc, z, hp, dhp, a, active + s, nr, target, weight, Wc, C, V);
    }
    free(active);
    free(a);
}

/* ---- privacy engine passes ---- */


size_t classifier_example_work_size(int T, int C, int V) {
    return DP_MAX(2 * (size_t)T * T, (size_t)V * C) + (size_t)T * C;
}

int classifier_example_uses_gram(int n, int C, dp_norm_method method) {
    return method == DP_NORM_GRAM || (method == DP_NORM_AUTO && n < 2 * C);
}

double classifier_example_sqnorm(real *Q, const real *e, const real *a, const real *w, const int32_t *y, const real *h,
                                 const int32_t *ids, int n, int T, int C, int V, dp_norm_method method, real *work,
                                 real *D_out) {
    double sq = 0;
    if (classifier_example_uses_gram(n, C, method)) {
        /* ⟨δ_t, δ_u⟩ = a_t a_u ⟨e_t, e_u⟩ − a_t w_u e_t[y_u] − a_u w_t e_u[y_t] + w_t w_u [y_t = y_u] */
        real *gd = work, *gh = work + (size_t)n * n;
        dp_syrk(CblasRowMajor, CblasLower, CblasNoTrans, n, V, 1, e, V, 0, gd, n);
        dp_syrk(CblasRowMajor, CblasLower, CblasNoTrans, n, C, 1, h, C, 0, gh, n);
        for (int t = 0; t < n; t++)
            for (int u = 0; u <= t; u++) {
                double g = (double)a[t] * a[u] * gd[(size_t)t * n + u] - (double)a[t] * w[u] * e[(size_t)t * V + y[u] - 1] -
                           (double)a[u] * w[t] * e[(size_t)u * V + y[t] - 1] + (y[t] == y[u] ? (double)w[t] * w[u] : 0.0);
                gd[(size_t)t * n + u] = (real)g;
            }
        sq = ops_sym_dot(gd, gh, n);
        if (Q)
            for (int t = 0; t < T; t++) {
                real *q = Q + (size_t)t * C;
                memset(q, 0, sizeof(real) * (size_t)C);
                if (!ids[t]) continue;
                for (int u = 0; u < n; u++) {
                    real coef = a[u] * e[(size_t)u * V + ids[t] - 1] - (y[u] == ids[t] ? w[u] : 0);
                    for (int i = 0; i < C; i++) q[i] += coef * h[(size_t)u * C + i];
                }
            }
    } else {
        /* D = δᵀ h = eᵀ (a ∘ h) − Σ_u w_u onehot(y_u) h_uᵀ */
        real *D = D_out ? D_out : work, *hs = work + (size_t)V * C;
        for (int u = 0; u < n; u++)
            for (int i = 0; i < C; i++) hs[(size_t)u * C + i] = a[u] * h[(size_t)u * C + i];
        dp_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, n, 1, e, V, hs, C, 0, D, C);
        for (int u = 0; u < n; u++)
            for (int i = 0; i < C; i++) D[(size_t)(y[u] - 1) * C + i] -= w[u] * h[(size_t)u * C + i];
        for (size_t i = 0; i < (size_t)V * C; i++) sq += (double)D[i] * D[i];
        if (Q)
            for (int t = 0; t < T; t++) {
                if (ids[t]) memcpy(Q + (size_t)t * C, D + (size_t)(ids[t] - 1) * C, sizeof(real) * (size_t)C);
                else memset(Q + (size_t)t * C, 0, sizeof(real) * (size_t)C);
            }
    }
    return sq;
}

long classifier_dp_chunk_rows(int T, int V) { return DP_MAX(chunk_rows(V), (long)T); }

/* Scratch layout of the privacy engine's chunk: exponentials z[R,V], packed hidden states hp[R,C], then
 * dhp[R,C], with R the rows of a chunk for this batch shape (both passes must agree on it). */
static long dp_rows(int B, int T, int V) { return DP_MAX(DP_MIN(classifier_dp_chunk_rows(T, V), (long)B * T), 1L); }

size_t classifier_dp_scratch_size(int B, int T, int C, int V) {
    long R = dp_rows(B, T, V);
    return (size_t)R * V + 2 * (size_t)R * C;
}

void classifier_dp_pass1(real *loss, real *dh, real *row_a, double *out_sq, real *Q, real **inst, const real *h,
                         const real *W, const int32_t *target, const real *weight, const int32_t *ids, int B, int T,
                         int C, int V, dp_norm_method method, real *scratch) {
    const real *Wc = W + C;
    const long N = (long)B * T, R = dp_rows(B, T, V);
    real *z = scratch, *hp = scratch + (size_t)R * V, *dhp = hp + (size_t)R * C;
    long *rows = dp_malloc(sizeof(long) * (size_t)N);
    int *first = dp_malloc(sizeof(int) * (size_t)(B + 1)); /* start of each example's rows in the chunk */
    memset(dh, 0, sizeof(real) * (size_t)N * C);
    if (Q) memset(Q, 0, sizeof(real) * (size_t)N * C);
    for (long r = 0; r < N; r++) loss[r] = row_a[r] = 0;
    long nr = 0;
    for (int b = 0; b < B; b++) {
        first[b] = (int)nr;
        for (int t = 0; t < T; t++)
            if (weight[(size_t)b * T + t] != 0) rows[nr++] = (long)b * T + t;
    }
    first[B] = (int)nr;
    /* examples whose per-example gradient is instantiated keep it: pass 2 then adds c_b·D_b instead of
     * forming their part of the weight gradient with another GEMM */
    int n_inst = 0, n_used = 0;
    for (int b = 0; b < B; b++) {
        int n = first[b + 1] - first[b];
        n_inst += n > 0 && !classifier_example_uses_gram(n, C, method);
        n_used += n > 0;
    }
    norm_forms_count(DP_NORM_LAYER_OUTPUT, C, V, n_used - n_inst, n_inst);
    real *store = n_inst ? dp_malloc(sizeof(real) * (size_t)n_inst * V * C) : NULL;
    int *slot_of = dp_malloc(sizeof(int) * (size_t)(B + 1));
    for (int b = 0, k = 0; b < B; b++) {
        int n = first[b + 1] - first[b];
        slot_of[b] = n > 0 && !classifier_example_uses_gram(n, C, method) ? k++ : -1;
    }
    *inst = store;
    if (nr > R) {
        fprintf(stderr, "dpformer: internal error: %ld output rows exceed one chunk (%ld)\n", nr, R);
        abort();
    }
    if (nr > 0) {
        real *a = dp_malloc(sizeof(real) * (size_t)nr), *wr = dp_malloc(sizeof(real) * (size_t)nr);
        int32_t *yr = dp_malloc(sizeof(int32_t) * (size_t)nr);
        pack_logits(z, hp, h, rows, nr, Wc, C, V);
        exp_rows(z, a, nr, rows, target, weight, loss, V);
        for (long j = 0; j < nr; j++) {
            row_a[rows[j]] = a[j];
            wr[j] = weight[rows[j]];
            yr[j] = target[rows[j]];
        }
        chunk_grads(dh, NULL, z, hp, dhp, a, rows, nr, target, weight, Wc, C, V);
#pragma omp parallel
        {
            real *work = NULL;
#pragma omp for schedule(dynamic, 1)
            for (int k = 0; k < B; k++) {
                int j0 = first[k], n = first[k + 1] - j0;
                if (n == 0) continue;
                if (!work) work = dp_malloc(sizeof(real) * classifier_example_work_size(T, C, V));
                out_sq[k] += classifier_example_sqnorm(Q ? Q + (size_t)k * T * C : NULL, z + (size_t)j0 * V, a + j0,
                                                       wr + j0, yr + j0, hp + (size_t)j0 * C,
                                                       ids ? ids + (size_t)k * T : NULL, n, T, C, V, method, work,
                                                       slot_of[k] >= 0 ? store + (size_t)slot_of[k] * V * C : NULL);
            }
            free(work);
        }
        free(a);
        free(wr);
        free(yr);
    }
    free(rows);
    free(first);
    free(slot_of);
}

void classifier_dp_pass2(real *dW, const real *inst, const real *W, const int32_t *target, const real *weight,
                         const real *row_a, const double *c, int B, int T, int C, int V, dp_norm_method method,
                         real *scratch) {
    const long N = (long)B * T, R = dp_rows(B, T, V);
    real *z = scratch, *hp = scratch + (size_t)R * V;
    long *rows = dp_malloc(sizeof(long) * (size_t)(N > 0 ? N : 1));
    real *a = dp_malloc(sizeof(real) * (size_t)(N > 0 ? N : 1));
    /* The active rows in pass 1's order; consecutive Gram-form examples form one block of rows of the
     * chunk buffer, handled with one GEMM; an instantiated example adds c_b·D_b. */
    long j = 0, block0 = 0, nb = 0;
    int k_inst = 0;
    for (int b = 0; b <= B; b++) {
        int n = 0;
        if (b < B)
            for (int t = 0; t < T; t++) n += weight[(size_t)b * T + t] != 0;
        int gram = b < B && n > 0 && classifier_example_uses_gram(n, C, method);
        if ((b == B || (n > 0 && !gram)) && nb > 0) { /* flush the block of Gram rows */
            chunk_grads(NULL, dW + C, z + (size_t)block0 * V, hp + (size_t)block0 * C, NULL, a + block0, rows + block0, nb,
                        target, weight, W + C, C, V);
            nb = 0;
        }
        if (b == B || n == 0) continue;
        if (gram) {
            if (nb == 0) block0 = j;
            for (int t = 0; t < T; t++) {
                long r = (long)b * T + t;
                if (weight[r] == 0) continue;
                rows[j] = r;
                a[j] = row_a[r];
                j++;
                nb++;
            }
        } else {
            const real *D = inst + (size_t)k_inst++ * V * C;
            const real cb = (real)c[b];
            real *dst = dW + C;
#pragma omp parallel for schedule(static)
            for (long i = 0; i < (long)V * C; i++) dst[i] += cb * D[i];
            j += n;
        }
    }
    free(rows);
    free(a);
}
