/* The backend interface without a GPU: the CPU table is complete, device names parse, and asking for
 * `cuda` where it cannot run (a build without the CUDA backend, or no GPU present) fails with a
 * message instead of crashing, for the backend, a model and the device queries alike. Where a GPU is
 * present, the same calls succeed (tests/test_gpu_*.c check what they compute). */
#include <stddef.h>
#include <string.h>

#include "backend/backend.h"
#include "dpformer/model.h"
#include "testutil.h"

int main(void) {
    const dp_backend *cpu = dp_backend_cpu();
    CHECK(cpu && strcmp(cpu->name, "cpu") == 0 && cpu->device == DP_DEVICE_CPU);
    /* every entry after `device` is a function pointer: none may be missing */
    const size_t first = offsetof(dp_backend, alloc), n = (sizeof(dp_backend) - first) / sizeof(void (*)(void));
    int missing = 0;
    for (size_t i = 0; i < n; i++) {
        void (*f)(void);
        memcpy(&f, (const char *)cpu + first + i * sizeof f, sizeof f);
        missing += f == NULL;
    }
    CHECK(missing == 0);
    CHECK(n >= 40);

    dp_device d;
    CHECK(dp_device_parse("cpu", &d) == 0 && d == DP_DEVICE_CPU);
    CHECK(dp_device_parse("cuda", &d) == 0 && d == DP_DEVICE_CUDA);
    CHECK(dp_device_parse("gpu", &d) != 0 && dp_device_parse("", &d) != 0 && dp_device_parse("CUDA", &d) != 0);
    CHECK(strcmp(dp_device_name(DP_DEVICE_CUDA), "cuda") == 0 && strcmp(dp_device_name(DP_DEVICE_CPU), "cpu") == 0);
    dp_error err = {{0}};
    CHECK(dp_device_check(DP_DEVICE_CPU, &err) == 0);

    dp_model_config c = dp_model_config_default(50, 8);
    err.msg[0] = 0;
    const dp_backend *cu = dp_backend_cuda(&err);
    if (!cu) {
        printf("no usable CUDA backend here: %s\n", err.msg);
        CHECK(err.msg[0] != 0);
        CHECK(dp_device_check(DP_DEVICE_CUDA, &err) != 0);
        CHECK(strcmp(dp_device_description(DP_DEVICE_CUDA), "") == 0);
        CHECK(dp_device_memory_used(DP_DEVICE_CUDA) == 0);
        err.msg[0] = 0;
        dp_model *m = dp_model_create_on(&c, 4, 1, DP_DEVICE_CUDA, &err);
        CHECK(m == NULL && err.msg[0] != 0);
        /* a CPU model cannot be moved there either, and stays usable */
        m = dp_model_create(&c, 4, 1, &err);
        CHECK(m != NULL);
        CHECK(dp_model_set_device(m, DP_DEVICE_CUDA, &err) != 0);
        CHECK(dp_model_device(m) == DP_DEVICE_CPU);
        int32_t ids[4 * 8] = {0}, tgt[4 * 8] = {0};
        for (int i = 0; i < 32; i++) ids[i] = tgt[i] = 1 + i % 50;
        dp_batch bt = {4, 8, ids, tgt, NULL};
        double loss[4];
        dp_model_forward(m, &bt, 0, 0, loss);
        CHECK(loss[0] > 0);
        dp_model_free(m);
    } else {
        printf("CUDA backend: %s\n", dp_device_description(DP_DEVICE_CUDA));
        CHECK(dp_device_check(DP_DEVICE_CUDA, &err) == 0);
        missing = 0;
        for (size_t i = 0; i < n; i++) {
            void (*f)(void);
            memcpy(&f, (const char *)cu + first + i * sizeof f, sizeof f);
            missing += f == NULL;
        }
        CHECK(missing == 0);
    }
    return tu_finish("test_backend");
}
