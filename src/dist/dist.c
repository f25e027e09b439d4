/* The process group of data-parallel training (dpformer/dist.h): MPI when the build has it and a
 * launcher started the program, a group of one otherwise. The sums are deterministic: the vector is
 * cut into one segment per rank; every rank receives its segment from all ranks (MPI_Alltoallv), adds
 * the contributions in double precision in rank order, and the summed segments are gathered back on
 * every rank (MPI_Allgatherv). Memory: about one extra copy of the vector per rank. */
#include "dpformer/dist.h"

#include <stdlib.h>
#include <string.h>

#include "core/common.h"

#ifdef DP_HAVE_MPI
#include <mpi.h>
#endif

void dp_dist_shard(int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
    if (size < 1) size = 1;
    const int64_t base = n / size, extra = n % size;
    *lo = (int64_t)rank * base + (rank < extra ? rank : extra);
    *hi = *lo + base + (rank < extra ? 1 : 0);
}

int dp_dist_built_with_mpi(void) {
#ifdef DP_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

#ifndef DP_HAVE_MPI

int dp_dist_init(int *argc, char ***argv, dp_error *err) {
    (void)argc, (void)argv, (void)err;
    return 0;
}
void dp_dist_finalize(void) {}
int dp_dist_rank(void) { return 0; }
int dp_dist_size(void) { return 1; }
int dp_dist_sum_f32(float *x, size_t n, dp_error *err) { return (void)x, (void)n, (void)err, 0; }
int dp_dist_sum_f64(double *x, size_t n, dp_error *err) { return (void)x, (void)n, (void)err, 0; }
int dp_dist_sum_i64(int64_t *x, size_t n, dp_error *err) { return (void)x, (void)n, (void)err, 0; }
int dp_dist_broadcast(void *buf, size_t n, int root, dp_error *err) { return (void)buf, (void)n, (void)root, (void)err, 0; }
int dp_dist_gather(const void *in, size_t n, void *out, int root, dp_error *err) {
    (void)root, (void)err;
    if (n) memmove(out, in, n);
    return 0;
}
int dp_dist_barrier(dp_error *err) { return (void)err, 0; }
void dp_dist_abort(int code) { exit(code); }

#else

static int g_joined = 0, g_rank = 0, g_size = 1;

/* Started by a launcher: Open MPI, MPICH/Hydra (PMI), PMIx, or Slurm's srun with PMI. */
static int launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS",
                                       NULL};
    for (int i = 0; vars[i]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int dp_dist_init(int *argc, char ***argv, dp_error *err) {
    if (g_joined || !launched()) return 0;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return dp_fail(err, "MPI: MPI_Init_thread failed");
    /* errors end the job (the default), so a dead rank never leaves the others waiting */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_joined = 1;
    return 0;
}

void dp_dist_finalize(void) {
    if (!g_joined) return;
    MPI_Finalize();
    g_joined = 0;
}

int dp_dist_rank(void) { return g_rank; }
int dp_dist_size(void) { return g_size; }

/* Deterministic sum of n elements of `esize` bytes; `add` adds the contributions of `k` ranks (in
 * rank order, stride `seg` elements apart in `parts`) into `out`. Rounds of at most 2^26 elements keep
 * every count within an int. */
typedef void (*seg_add)(const void *parts, int k, size_t seg, void *out);

static void add_f32(const void *parts, int k, size_t seg, void *out) {
    const float *p = parts;
    float *o = out;
    for (size_t i = 0; i < seg; i++) {
        double s = 0;
        for (int r = 0; r < k; r++) s += (double)p[(size_t)r * seg + i];
        o[i] = (float)s;
    }
}
static void add_f64(const void *parts, int k, size_t seg, void *out) {
    const double *p = parts;
    double *o = out;
    for (size_t i = 0; i < seg; i++) {
        double s = 0;
        for (int r = 0; r < k; r++) s += p[(size_t)r * seg + i];
        o[i] = s;
    }
}
static void add_i64(const void *parts, int k, size_t seg, void *out) {
    const int64_t *p = parts;
    int64_t *o = out;
    for (size_t i = 0; i < seg; i++) {
        int64_t s = 0;
        for (int r = 0; r < k; r++) s += p[(size_t)r * seg + i];
        o[i] = s;
    }
}

static int dist_sum(void *x, size_t n, size_t esize, seg_add add, dp_error *err) {
    if (g_size == 1 || n == 0) return 0;
    const int P = g_size;
    const size_t ROUND = (size_t)1 << 26;
    int *scount = dp_malloc(sizeof(int) * 4 * (size_t)P), *sdispl = scount + P, *rcount = scount + 2 * P,
        *rdispl = scount + 3 * P;
    /* buffers for the largest round this call has (not for 2^26 elements: most sums are of a few
     * counters or one model's parameters) */
    const size_t most = n < ROUND ? n : ROUND, maxseg = (most + (size_t)P - 1) / (size_t)P + 1;
    unsigned char *recv = dp_malloc(esize * maxseg * (size_t)P), *mine = dp_malloc(esize * maxseg);
    int rc = 0;
    for (size_t off = 0; off < n && !rc; off += ROUND) {
        const size_t len = n - off < ROUND ? n - off : ROUND;
        unsigned char *base = (unsigned char *)x + off * esize;
        int64_t lo, hi;
        for (int r = 0; r < P; r++) {
            dp_dist_shard((int64_t)len, r, P, &lo, &hi);
            scount[r] = (int)((hi - lo) * (int64_t)esize);
            sdispl[r] = (int)(lo * (int64_t)esize);
        }
        dp_dist_shard((int64_t)len, g_rank, P, &lo, &hi);
        const size_t seg = (size_t)(hi - lo);
        for (int r = 0; r < P; r++) {
            rcount[r] = (int)(seg * esize);
            rdispl[r] = (int)((size_t)r * seg * esize);
        }
        if (MPI_Alltoallv(base, scount, sdispl, MPI_BYTE, recv, rcount, rdispl, MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS) {
            rc = dp_fail(err, "MPI: the sum over ranks failed (MPI_Alltoallv)");
            break;
        }
        add(recv, P, seg, mine);
        if (MPI_Allgatherv(mine, (int)(seg * esize), MPI_BYTE, base, scount, sdispl, MPI_BYTE, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            rc = dp_fail(err, "MPI: the sum over ranks failed (MPI_Allgatherv)");
    }
    free(scount);
    free(recv);
    free(mine);
    return rc;
}

int dp_dist_sum_f32(float *x, size_t n, dp_error *err) { return dist_sum(x, n, sizeof *x, add_f32, err); }
int dp_dist_sum_f64(double *x, size_t n, dp_error *err) { return dist_sum(x, n, sizeof *x, add_f64, err); }
int dp_dist_sum_i64(int64_t *x, size_t n, dp_error *err) { return dist_sum(x, n, sizeof *x, add_i64, err); }

int dp_dist_broadcast(void *buf, size_t n, int root, dp_error *err) {
    if (g_size == 1) return 0;
    for (size_t off = 0; off < n; off += (size_t)1 << 30) {
        size_t len = n - off < ((size_t)1 << 30) ? n - off : (size_t)1 << 30;
        if (MPI_Bcast((unsigned char *)buf + off, (int)len, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
            return dp_fail(err, "MPI: broadcast from rank %d failed", root);
    }
    return 0;
}

int dp_dist_gather(const void *in, size_t n, void *out, int root, dp_error *err) {
    if (g_size == 1) {
        if (n) memmove(out, in, n);
        return 0;
    }
    if (n > (size_t)1 << 30) return dp_fail(err, "MPI: gather of %zu bytes per rank is too large", n);
    if (MPI_Gather(in, (int)n, MPI_BYTE, out, (int)n, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
        return dp_fail(err, "MPI: gather to rank %d failed", root);
    return 0;
}

int dp_dist_barrier(dp_error *err) {
    if (g_size == 1) return 0;
    if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) return dp_fail(err, "MPI: barrier failed");
    return 0;
}

void dp_dist_abort(int code) {
    if (g_joined) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#endif

int dp_dist_sum_real(dp_real *x, size_t n, dp_error *err) {
#ifdef DP_REAL_DOUBLE
    return dp_dist_sum_f64(x, n, err);
#else
    return dp_dist_sum_f32(x, n, err);
#endif
}
