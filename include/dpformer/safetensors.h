/* dpformer public API: reading and writing safetensors files, the format of saved models.
 *
 * Layout of a file (see docs/file-format.md):
 *   8 bytes      N, the header length, unsigned 64-bit little-endian
 *   N bytes      UTF-8 JSON object, padded with spaces to a multiple of 8:
 *                  {"__metadata__": {"key": "value", ...},
 *                   "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 *   rest         the data section: raw little-endian tensor bytes, row-major. Offsets are relative to
 *                the start of the data section; the tensors cover it exactly, without gaps or overlaps.
 *
 * The reader is strict: anything that is not a well-formed file is refused with a message naming the
 * file and the problem (and the tensor, where one is concerned); it never reads out of bounds.
 * The writer replaces its target atomically: either the complete new file is in place, or the old
 * file (if any) is untouched and no temporary file is left behind. */
#ifndef DPFORMER_SAFETENSORS_H
#define DPFORMER_SAFETENSORS_H

#include <stdint.h>
#include <stdio.h>
#include "dpformer/common.h"

/* Most dimensions a tensor may have. */
#define DP_ST_MAX_DIMS 8
/* Largest header accepted when reading (bytes); the same limit as the reference implementation. */
#define DP_ST_MAX_HEADER 100000000ull

/* One tensor. For writing, the caller fills every field; `data` holds prod(shape) elements of `dtype`
 * (row-major, native little-endian) and may be NULL only when that product is 0. For reading, all
 * pointers belong to the dp_st_file and stay valid until dp_st_close; `data` is aligned to at least
 * the element size (to 64 bytes when the tensor starts at a multiple of 64 in the data section).
 * dtype is one of the safetensors names: "F64" "F32" "F16" "BF16" "F8_E4M3" "F8_E5M2" "I64" "I32"
 * "I16" "I8" "U64" "U32" "U16" "U8" "BOOL". ndim may be 0 (a scalar: one element). */
typedef struct {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[DP_ST_MAX_DIMS];
    const void *data;
} dp_st_tensor;

/* Size in bytes of one element of dtype, or 0 if dtype is not a known name. */
size_t dp_st_dtype_size(const char *dtype);

/* Number of elements of t (1 for a scalar). Assumes a valid tensor (as returned by the reader). */
int64_t dp_st_numel(const dp_st_tensor *t);

/* Write n tensors (in the given order) and n_meta metadata pairs (strings; meta_keys may be NULL when
 * n_meta is 0) to path, atomically: a temporary file in the same folder is written, flushed and
 * synced, then renamed over path, and the folder is synced. A symbolic link at path is followed (its
 * target is replaced). Refuses invalid input (unknown dtype, duplicate or empty name, the reserved
 * name "__metadata__", negative dimensions) and a path that exists but is not a regular file.
 * Returns 0 on success; on failure returns non-zero, fills err, removes the temporary file and leaves
 * any existing file at path unchanged. */
int dp_safetensors_write(const char *path, const dp_st_tensor *t, int n, const char *const *meta_keys,
                         const char *const *meta_vals, int n_meta, dp_error *err);

/* The same encoding written to an open stream (for example a pipe), not atomic. `what` names the
 * destination in error messages. Returns 0 on success; checks every write and the final fflush. */
int dp_safetensors_write_stream(FILE *fp, const char *what, const dp_st_tensor *t, int n,
                                const char *const *meta_keys, const char *const *meta_vals, int n_meta,
                                dp_error *err);

/* A file read into memory. Opaque; owns the header strings and the tensor bytes. */
typedef struct dp_st_file dp_st_file;

/* Read and validate path. On success *out receives the file (free with dp_st_close) and 0 is
 * returned; on failure *out is NULL, err says why and non-zero is returned. */
int dp_safetensors_read(const char *path, dp_st_file **out, dp_error *err);

/* The same checks of the header only: tensor names, types and shapes and the metadata, without reading
 * the data section (every tensor's data is NULL). For looking at what a file is before loading it. */
int dp_safetensors_read_header(const char *path, dp_st_file **out, dp_error *err);

/* The same reader on the contents of a file already in memory (len bytes at data, copied: the buffer
 * may be freed as soon as the call returns). `name` stands for the file in error messages. */
int dp_safetensors_read_buffer(const char *name, const void *data, size_t len, dp_st_file **out, dp_error *err);

/* Tensors in the order of the file's header. */
int dp_st_count(const dp_st_file *f);
/* The i-th tensor (0 <= i < dp_st_count), or NULL when i is out of range. */
const dp_st_tensor *dp_st_get(const dp_st_file *f, int i);
/* The tensor called name, or NULL if there is none. */
const dp_st_tensor *dp_st_find(const dp_st_file *f, const char *name);

/* Metadata: the value for key, or NULL if the file has no such key. */
const char *dp_st_meta(const dp_st_file *f, const char *key);
/* Metadata pairs in file order: count, and the i-th key (value through *val), NULL if out of range. */
int dp_st_meta_count(const dp_st_file *f);
const char *dp_st_meta_at(const dp_st_file *f, int i, const char **val);

/* Free a file returned by dp_safetensors_read (NULL is allowed). */
void dp_st_close(dp_st_file *f);

/* Checksums (docs/file-format.md#checksums), written by dpformer into its model files and checkpoints:
 * the metadata key DP_ST_KEY_CHECKSUMS holds the JSON text
 *   {"algorithm": "fnv1a64", "metadata": H, "tensors": {name: H, ...}}
 * with H 16 lowercase hex digits: for each tensor, the FNV-1a 64-bit hash of its data bytes; for
 * "metadata", the hash of every other metadata pair (key, NUL, value, NUL, in file order) followed by
 * the tensor table (for each tensor in file order: name, NUL, dtype, NUL, each dimension in decimal
 * followed by ',', NUL). FNV-1a detects accidental corruption; it is not an authenticator. */
#define DP_ST_KEY_CHECKSUMS "dpformer.checksums"

/* FNV-1a 64-bit hash of a tensor's data bytes (prod(shape) x element size). */
uint64_t dp_st_tensor_checksum(const dp_st_tensor *t);

/* The value of DP_ST_KEY_CHECKSUMS for a file that will hold tensors t[0..n) and the metadata pairs
 * given (a pair with the key DP_ST_KEY_CHECKSUMS among them is skipped): pass it as the last metadata
 * pair to dp_safetensors_write, after the others in the same order. A malloc'd string (free()). */
char *dp_st_checksums_json(const dp_st_tensor *t, int n, const char *const *meta_keys, const char *const *meta_vals,
                           int n_meta);

/* Verify a file's checksums. Returns 1 when they are present and everything matches, 0 when the file
 * has no DP_ST_KEY_CHECKSUMS key (nothing verified), -1 with err when the key is malformed or anything
 * differs; the message names path and, for a tensor, the tensor:
 *   "path: tensor NAME: checksum mismatch (stored H, computed H): its data is corrupted"
 *   "path: metadata checksum mismatch (stored H, computed H): the header or metadata is corrupted" */
int dp_st_verify_checksums(const dp_st_file *f, const char *path, dp_error *err);

#endif
