/* dpformer public API: the process group of data-parallel training (docs/distributed.md).
 *
 * Under `mpirun -np N` (Open MPI, MPICH, or Slurm's srun with PMI) every process is one rank of the
 * group; otherwise, or in a build without MPI (DPFORMER_MPI off), the program is one rank of a group
 * of one and every collective below is the identity. The collectives are deterministic: their result
 * depends on the data and the group size, never on timing (sums are taken in double precision in rank
 * order), so that a seeded run gives the same model every time.
 *
 * Functions that can fail return 0 on success and non-zero with a message in err. A failure of
 * another rank (a process that dies) ends the whole job: Open MPI's default error handler aborts
 * every rank with a message instead of letting the others wait forever. */
#ifndef DPFORMER_DIST_H
#define DPFORMER_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "dpformer/common.h"

/* Join the group when started by an MPI launcher (environment variables of Open MPI, MPICH/PMI or
 * PMIx); a no-op otherwise. Call once, early in main, before any thread is started. */
int dp_dist_init(int *argc, char ***argv, dp_error *err);
/* Leave the group (MPI_Finalize when dp_dist_init joined one). */
void dp_dist_finalize(void);
/* 1 when built with MPI support. */
int dp_dist_built_with_mpi(void);
int dp_dist_rank(void); /* 0 .. size - 1 */
int dp_dist_size(void); /* 1 without a launcher */
static inline int dp_dist_is_root(void) { return dp_dist_rank() == 0; }

/* The contiguous shard [*lo, *hi) of n items that rank `rank` of `size` holds: sizes differ by at most
 * one, the first n % size ranks hold one more. An empty shard (n < size) is allowed. */
void dp_dist_shard(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* Element-wise sum over all ranks, result on every rank, in place. Each element is summed in double
 * precision in rank order 0, 1, ..., size - 1 (then rounded once, for float), whatever the timing. */
int dp_dist_sum_f32(float *x, size_t n, dp_error *err);
int dp_dist_sum_f64(double *x, size_t n, dp_error *err);
int dp_dist_sum_i64(int64_t *x, size_t n, dp_error *err);
/* The sum of dp_real values (float or double, as the build's dp_real). */
int dp_dist_sum_real(dp_real *x, size_t n, dp_error *err);
/* Copy root's n bytes to every rank. */
int dp_dist_broadcast(void *buf, size_t n, int root, dp_error *err);
/* Gather n bytes from every rank to root: out[r * n .. r * n + n) = rank r's bytes (out: size * n
 * bytes, used on root only). */
int dp_dist_gather(const void *in, size_t n, void *out, int root, dp_error *err);
/* Wait for every rank. */
int dp_dist_barrier(dp_error *err);
/* End the whole job from any rank, with status `code` (a message should be printed first). */
void dp_dist_abort(int code);

#endif
