/* CUDA backend parity of multi-head attention (attention_forward_ra / attention_backward): each case
 * runs on the CPU (src/ops/attention.c) and through the CUDA backend's op table on the same random
 * qkv, ids and output gradient, causal and bidirectional, without and with dropout (ex0 != 0, so the
 * mask indices of a sequence inside a larger batch are exercised), with left padding
 * (recommendation), right padding (text), padding holes and an all-padding sequence, one and several
 * heads, the Re-Attention correction (kvar, with and without qsq, with the output-variance track),
 * and a long-sequence case large enough that the backend works through the batch in chunks. Outputs
 * start as NaN on the device. The backward is compared both from the CPU's stored probabilities
 * (identical inputs) and from the device's own. Relative error 1e-5. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_testutil.h"

static uint64_t rng = 20240613;
static const dp_backend *be;

#define TOL 1e-5

static real *dev(const real *h, size_t n) { return gt_to_dev(be, h, sizeof(real) * n); }

/* Compare n reals of device memory with the host reference. */
static void expect(const char *what, const char *cfg, const real *d, const real *ref, size_t n) {
    char name[160];
    snprintf(name, sizeof name, "%s %s", what, cfg);
    real *h = gt_to_host(be, d, n);
    GT_EXPECT(name, gt_rel_err(h, ref, n), TOL);
    free(h);
}

/* A random int in [lo, hi]. */
static int rand_int(int lo, int hi) {
    int v = lo + (int)(tu_uniform(&rng) * (hi - lo + 1));
    return v > hi ? hi : v;
}

/* ids[B,T] in [1, 99] with padding (0): sequence b is, by b % 4, left-padded (recommendation style),
 * right-padded (text style), unpadded, or left-padded with holes inside; the last sequence (B > 1) is
 * all padding. */
static int32_t *make_ids(int B, int T) {
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)B * T);
    for (int b = 0; b < B; b++) {
        int32_t *row = ids + (size_t)b * T;
        for (int t = 0; t < T; t++) row[t] = rand_int(1, 99);
        if (B > 1 && b == B - 1) {
            memset(row, 0, sizeof(int32_t) * (size_t)T);
            continue;
        }
        int cut = T > 1 ? rand_int(1, T - 1) : 0;
        switch (b % 4) {
        case 0: /* left padding: [0, cut) */
            for (int t = 0; t < cut; t++) row[t] = 0;
            break;
        case 1: /* right padding: [cut, T) */
            for (int t = cut; t < T; t++) row[t] = 0;
            break;
        case 2:
            break;
        default: /* left padding and holes */
            for (int t = 0; t < cut; t++) row[t] = 0;
            for (int t = cut + 1; t < T; t++)
                if (tu_uniform(&rng) < 0.2) row[t] = 0;
            break;
        }
    }
    return ids;
}

/* A host array of n values in [lo, lo + span) (positive variances). */
static real *random_pos(size_t n, double lo, double span) {
    real *x = dp_malloc(sizeof(real) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = (real)(lo + span * tu_uniform(&rng));
    return x;
}

/* reatt: 0 none, 1 kvar only (ovar requested but vvar NULL: ovar must stay untouched), 2 kvar + vvar/ovar,
 * 3 kvar + qsq + vvar/ovar. */
static void run_case(int B, int T, int C, int H, int causal, float p, int ex0, int reatt) {
    const size_t n3 = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * H * T * T,
                 nv = (size_t)B * H * T;
    const uint64_t seed = 0x9d2c5680a1b2c3d4ull ^ ((uint64_t)T << 20) ^ (uint64_t)H;
    char cfg[128];
    snprintf(cfg, sizeof cfg, "(B=%d T=%d C=%d H=%d %s p=%g ex0=%d%s)", B, T, C, H, causal ? "causal" : "bidir", p,
             ex0, reatt == 0 ? "" : reatt == 1 ? " RA kvar" : reatt == 2 ? " RA kvar+vvar" : " RA qsq+kvar+vvar");

    real *qkv = gt_random(&rng, n3, 1.0);
    int32_t *ids = make_ids(B, T);
    real *out = dp_malloc(sizeof(real) * no), *att = dp_malloc(sizeof(real) * na);
    real *d_qkv = dev(qkv, n3);
    int32_t *d_ids = gt_to_dev(be, ids, sizeof(int32_t) * (size_t)B * T);
    real *d_out = gt_dev_poison(be, no), *d_att = gt_dev_poison(be, na);

    /* Re-Attention arguments: host arrays for the CPU, device copies for the GPU */
    attention_reatt ra_h = {0}, ra_d = {0};
    real *kvar = NULL, *qsq = NULL, *vvar = NULL, *ovar = NULL;
    real *d_kvar = NULL, *d_qsq = NULL, *d_vvar = NULL, *d_ovar = NULL;
    if (reatt) {
        kvar = random_pos(nv, 0.05, 1.0);
        d_kvar = dev(kvar, nv);
        ra_h.kvar = kvar;
        ra_d.kvar = d_kvar;
        ra_h.kappa = ra_d.kappa = 1.5;
        if (reatt == 3) { /* a held ‖q‖²: of the order of hd, but not the one qkv gives */
            qsq = random_pos(nv, 0.5 * (C / H), 1.0 * (C / H));
            d_qsq = dev(qsq, nv);
            ra_h.qsq = qsq;
            ra_d.qsq = d_qsq;
        }
        ovar = dp_malloc(sizeof(real) * nv);
        d_ovar = gt_dev_poison(be, nv);
        ra_h.ovar = ovar;
        ra_d.ovar = d_ovar;
        if (reatt >= 2) {
            vvar = random_pos(nv, 0.1, 2.0);
            d_vvar = dev(vvar, nv);
            ra_h.vvar = vvar;
            ra_d.vvar = d_vvar;
        }
    }

    attention_forward_ra(out, att, qkv, ids, causal, p, seed, ex0, B, T, C, H, reatt ? &ra_h : NULL);
    be->attention_forward_ra(d_out, d_att, d_qkv, d_ids, causal, p, seed, ex0, B, T, C, H, reatt ? &ra_d : NULL);
    expect("attention_forward out", cfg, d_out, out, no);
    expect("attention_forward att", cfg, d_att, att, na);
    if (reatt >= 2) expect("attention_forward ovar", cfg, d_ovar, ovar, nv);
    if (reatt == 1) { /* vvar NULL: ovar is not written */
        real *h = gt_to_host(be, d_ovar, nv);
        size_t touched = 0;
        for (size_t i = 0; i < nv; i++) touched += h[i] == h[i];
        CHECK(touched == 0);
        free(h);
    }

    /* backward: from the CPU's probabilities (identical inputs), then from the device's own */
    real *g = gt_random(&rng, no, 1.0), *dqkv = dp_malloc(sizeof(real) * n3);
    real *d_g = dev(g, no), *d_att_cpu = dev(att, na), *d_dqkv = gt_dev_poison(be, n3);
    attention_backward(dqkv, g, qkv, att, ids, causal, p, seed, ex0, B, T, C, H);
    be->attention_backward(d_dqkv, d_g, d_qkv, d_att_cpu, d_ids, causal, p, seed, ex0, B, T, C, H);
    expect("attention_backward dqkv", cfg, d_dqkv, dqkv, n3);
    be->free(d_dqkv);
    d_dqkv = gt_dev_poison(be, n3);
    be->attention_backward(d_dqkv, d_g, d_qkv, d_att, d_ids, causal, p, seed, ex0, B, T, C, H);
    expect("attention_backward dqkv (device att)", cfg, d_dqkv, dqkv, n3);

    real *hp[] = {qkv, out, att, kvar, qsq, vvar, ovar, g, dqkv};
    for (size_t i = 0; i < sizeof hp / sizeof *hp; i++) free(hp[i]);
    free(ids);
    void *dp[] = {d_qkv, d_ids, d_out, d_att, d_kvar, d_qsq, d_vvar, d_ovar, d_g, d_att_cpu, d_dqkv};
    for (size_t i = 0; i < sizeof dp / sizeof *dp; i++)
        if (dp[i]) be->free(dp[i]);
}

int main(void) {
    be = gt_cuda_or_skip("test_gpu_attention");
    if (!be) return GT_SKIP;

    /* B = 3: left-padded, right-padded, all padding */
    const int heads[] = {1, 4};
    const float ps[] = {0.0f, 0.1f};
    for (int ih = 0; ih < 2; ih++)
        for (int causal = 0; causal <= 1; causal++)
            for (int ip = 0; ip < 2; ip++) run_case(3, 17, 64, heads[ih], causal, ps[ip], 11, 0);
    /* recommendation scale */
    for (int causal = 0; causal <= 1; causal++)
        for (int ip = 0; ip < 2; ip++) run_case(64, 50, 128, 2, causal, ps[ip], 5, 0);
    /* longer rows (several entries per lane) */
    run_case(5, 300, 64, 2, 1, 0.1f, 7, 0);
    run_case(5, 300, 64, 2, 0, 0.0f, 0, 0);

    /* Re-Attention */
    run_case(3, 17, 64, 4, 1, 0.1f, 11, 1);
    run_case(3, 17, 64, 4, 1, 0.1f, 11, 2);
    run_case(3, 17, 64, 4, 0, 0.0f, 0, 3);
    run_case(64, 50, 128, 2, 0, 0.1f, 5, 2);
    run_case(64, 50, 128, 2, 1, 0.1f, 5, 3);

    /* B·T² above the backend's per-head scratch (16M reals): the batch is processed in chunks */
    run_case(17, 1024, 64, 1, 1, 0.1f, 3, 0);

    /* B = 0 is a no-op */
    be->attention_forward_ra(NULL, NULL, NULL, NULL, 1, 0.1f, 1, 0, 0, 17, 64, 4, NULL);
    be->attention_backward(NULL, NULL, NULL, NULL, NULL, 1, 0.1f, 1, 0, 0, 17, 64, 4);
    be->synchronize();

    return tu_finish("test_gpu_attention");
}
