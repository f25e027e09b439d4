/* No compute on padding (docs/training.md, "Trimmed windows"): left-padded recommendation windows
 * are processed in chunks of sequences of similar length, each on a window as long as its longest
 * sequence (dp_model_set_window_last). This header plans the chunks; the model keeps every row's
 * position vector and dropout masks, so nothing but the cost changes. */
#ifndef DP_TRAIN_TRIM_H
#define DP_TRAIN_TRIM_H

#include <stdint.h>

/* Fixed cost of one chunk, in positions: what a chunk costs besides its B·T positions (the op
 * launches and parallel regions of a pass, docs/training.md). A variable so that tests can set 0 (a
 * chunk per distinct length). */
#define DP_TRIM_CHUNK_COST 256
extern int dp_trim_chunk_cost;

/* Positions a left-padded window of L uses: L minus its leading padding (at least 1). */
int dp_trim_used(const int32_t *ids, int L);

/* Chunks of n sequences of non-decreasing lengths len[0..n) (each >= 1), at most cap sequences each,
 * on windows as long as their longest: the cut that minimises Σ (B_i·T_i + dp_trim_chunk_cost) (dynamic
 * programming, O(n·cap)). Writes the chunk sizes in order to size[] (room for n) and returns their
 * number. */
int64_t dp_trim_plan(const int32_t *len, int64_t n, int cap, int32_t *size);

/* A plan followed chunk by chunk: the next chunk of ids[0..n) (the run of the batch still to do) is
 * taken from the plan made for this run when ids continues it, else planned anew from lens. */
typedef struct {
    int32_t *size, *len; /* [cap_n] the plan's chunk sizes; scratch lengths */
    int64_t cap_n, n_chunks, next;
    const int64_t *at, *end; /* the plan's next chunk starts at `at`; the run ends at `end` */
} dp_trim_plan_state;

/* The next chunk of ids[0..n) (lengths length(st, id)): its size (<= cap) and window *T. */
int dp_trim_next(dp_trim_plan_state *p, const int64_t *ids, int64_t n, int cap, int (*length)(void *st, int64_t id),
                 void *st, int *T);
void dp_trim_plan_free(dp_trim_plan_state *p);

#endif
