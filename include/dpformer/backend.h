/* Devices: where the numerical work of a model runs. `cpu` is always there; `cuda` is there when the
 * library was built with the CUDA backend (CMake option DPFORMER_CUDA) and a GPU is present at run
 * time. Models, model files and checkpoints are device-independent. */
#ifndef DPFORMER_BACKEND_H
#define DPFORMER_BACKEND_H

#include "dpformer/common.h"

typedef enum { DP_DEVICE_CPU = 0, DP_DEVICE_CUDA = 1 } dp_device;

/* "cpu" or "cuda" → *d; -1 on anything else. */
int dp_device_parse(const char *s, dp_device *d);
const char *dp_device_name(dp_device d);
/* 0 if the device can run models now; otherwise -1 with err saying why (e.g. "this dpformer was built
 * without the CUDA backend", "no CUDA GPU is present: ..."). */
int dp_device_check(dp_device d, dp_error *err);
/* Whether this build contains the CUDA backend. */
int dp_built_with_cuda(void);
/* One line describing the device (e.g. "NVIDIA H200, 132 SMs, 140 GiB, CUDA 13.0"), or "" if absent. */
const char *dp_device_description(dp_device d);

/* Wait for all work queued on the device (timing); nothing on the cpu. */
void dp_device_synchronize(dp_device d);
/* Bytes of the device's memory in use by every process now (cuda: total − free), 0 on the cpu. */
size_t dp_device_memory_used(dp_device d);
/* The device's float32 matrix-product rate in GFLOP/s, measured now with an n×n×n product (best of
 * reps after one warm-up); on the cpu, OpenBLAS SGEMM. */
double dp_device_sgemm_gflops(dp_device d, int n, int reps);

#endif
