/* Tests of the process group (src/dist/dist.c). Run alone it is a group of one (every collective the
 * identity); CTest runs it again under mpirun with 2 and 3 ranks (test_dist_mpi2, test_dist_mpi3), where
 * it checks the shards, that the sums are exact and bit-identical on every rank and independent of
 * timing (equal to the rank-order double sum computed locally), broadcast and gather. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/dist.h"
#include "testutil.h"

/* the value rank r contributes at index i: different magnitudes, so that the order of a float sum matters */
static float contrib(int r, size_t i) { return (float)((r + 1) * 1e-3 + (double)((i * 2654435761u) % 1000) * (r % 2 ? 1e3 : 1e-4)); }

static void test_shards(void) {
    /* every split covers 0..n exactly once, sizes differ by at most one */
    for (int64_t n = 0; n < 40; n++)
        for (int size = 1; size <= 7; size++) {
            int64_t next = 0, mn = n, mx = 0;
            for (int r = 0; r < size; r++) {
                int64_t lo, hi;
                dp_dist_shard(n, r, size, &lo, &hi);
                CHECK(lo == next && hi >= lo);
                next = hi;
                if (hi - lo < mn) mn = hi - lo;
                if (hi - lo > mx) mx = hi - lo;
            }
            CHECK(next == n && mx - mn <= 1);
        }
}

static void test_collectives(void) {
    const int P = dp_dist_size(), me = dp_dist_rank();
    const char *want = getenv("DPFORMER_EXPECT_RANKS");
    if (want) CHECK(P == atoi(want)); /* really started as a group (an MPI build under mpirun) */
    CHECK(me >= 0 && me < P);
    dp_error err;
    /* sizes around the segment boundaries, including fewer elements than ranks */
    const size_t sizes[] = {1, 2, 3, 5, 1000, 100003};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t n = sizes[t];
        float *x = malloc(sizeof(float) * n);
        double *y = malloc(sizeof(double) * n);
        int64_t *z = malloc(sizeof(int64_t) * n);
        for (size_t i = 0; i < n; i++) {
            x[i] = contrib(me, i);
            y[i] = (double)contrib(me, i) * 1.000000001;
            z[i] = (int64_t)i * (me + 1) - 7;
        }
        CHECK(dp_dist_sum_f32(x, n, &err) == 0);
        CHECK(dp_dist_sum_f64(y, n, &err) == 0);
        CHECK(dp_dist_sum_i64(z, n, &err) == 0);
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            double s = 0, sd = 0;
            int64_t si = 0;
            for (int r = 0; r < P; r++) {
                s += (double)contrib(r, i);
                sd += (double)contrib(r, i) * 1.000000001;
                si += (int64_t)i * (r + 1) - 7;
            }
            bad += x[i] != (float)s || y[i] != sd || z[i] != si;
        }
        CHECK(bad == 0);
        /* bit-identical on every rank: gather rank 0's result and compare everywhere */
        float *x0 = malloc(sizeof(float) * n);
        memcpy(x0, x, sizeof(float) * n);
        CHECK(dp_dist_broadcast(x0, sizeof(float) * n, 0, &err) == 0);
        CHECK(memcmp(x0, x, sizeof(float) * n) == 0);
        free(x0);
        free(x);
        free(y);
        free(z);
    }
    /* gather: rank r's bytes land at r * n on the root */
    int v[2] = {me, 100 + me}, *all = malloc(sizeof v * (size_t)P);
    CHECK(dp_dist_gather(v, sizeof v, all, 0, &err) == 0);
    if (me == 0)
        for (int r = 0; r < P; r++) CHECK(all[2 * r] == r && all[2 * r + 1] == 100 + r);
    free(all);
    CHECK(dp_dist_barrier(&err) == 0);
}

int main(int argc, char **argv) {
    dp_error err;
    if (dp_dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_shards();
    test_collectives();
    char name[64];
    snprintf(name, sizeof name, "test_dist (rank %d of %d)", dp_dist_rank(), dp_dist_size());
    /* every rank's failures count: the job fails if any rank failed */
    int64_t f = tu_failures;
    dp_dist_sum_i64(&f, 1, &err);
    tu_failures = (int)f;
    int rc = tu_finish(name);
    dp_dist_finalize();
    return rc;
}
