/* `dpformer clip-check`: the verification interface of the privacy engine. For a saved model and a
 * batch file, writes every example's gradient norm and loss and the clipped gradient sum (before
 * noise) to a safetensors file, so that users and external tools can check the engine independently
 * (e.g. against per-example gradients computed in another framework). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/common.h"
#include "dpformer/data.h"
#include "dpformer/privacy.h"
#include "dpformer/safetensors.h"
#include "dpformer/train.h"
#include "ops/ops.h"

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The examples in the order of the batch file's lines (the loader orders users by id): order[k] = the
 * dataset index of the user on the k-th non-blank line. buf is the file the dataset was parsed from,
 * so every line's first token is a user id it holds. */
static int file_order(const char *name, const char *buf, size_t len, const dp_dataset *ds, int32_t *order,
                      dp_error *err) {
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) { /* a byte-order mark, should the loader accept one */
        buf += 3;
        len -= 3;
    }
    dp_line_iter it = {buf, buf + len, name, DP_DATA_MAX_LINE, 0};
    const char *b, *e;
    int k = 0, r;
    while ((r = dp_next_line(&it, &b, &e, err)) == 1) {
        while (b < e && (*b == ' ' || *b == '\t' || *b == '\v' || *b == '\f')) b++;
        if (b == e) continue;
        int64_t id = strtoll(b, NULL, 10);
        const int64_t *hit = bsearch(&id, ds->user_raw_ids, (size_t)ds->n_users, sizeof id, cmp_i64);
        if (!hit || k >= ds->n_users)
            return dp_fail(err, "%s:%lld: internal error: the user of this line is not in the loaded batch", name,
                           (long long)it.lineno);
        order[k++] = (int32_t)(hit - ds->user_raw_ids);
    }
    if (r < 0) return -1;
    if (k != ds->n_users) return dp_fail(err, "%s: internal error: %d lines for %d examples", name, k, ds->n_users);
    return 0;
}

int cmd_clip_check(int argc, char **argv) {
    const char *cmd = "dpformer clip-check";
    const char *model = NULL, *batch = NULL, *out = NULL, *mode_s = "auto", *device_s = "cpu";
    double C = 1.0;
    int train = 0, threads = 0;
    int64_t seed = 0;
    arg_spec specs[] = {
        ARG_SM("model", &model, "FILE", "model.safetensors of a next-item model: dpformer train or demo (required)"),
        ARG_SM("batch", &batch, "FILE", "batch file: one example per line, `id item item ...` with the model's item ids 1..V (required)"),
        ARG_SM("out", &out, "FILE", "output safetensors file: norms and losses in the batch file's line order (required)"),
        ARG_S("clip-mode", &mode_s, "auto, phantom, ghost or naive"),
        ARG_DR("max-grad-norm", &C, "clipping norm C", 1e-12, 1e12),
        ARG_F("dropout", &train, "apply the model's dropout (masks from --seed) instead of evaluating without it"),
        ARG_LR("seed", &seed, "dropout seed", 0, 9.2e18),
        ARG_IR("threads", &threads, "threads (0 = all cores)", 0, 4096),
        ARG_S("device", &device_s, "where the model runs: cpu or cuda (naive runs on the cpu only)"),
    };
    int rc = args_parse(cmd,
                        "Write per-example gradient norms, losses and the clipped gradient sum (no noise) for a batch.\n"
                        "Each line's items form one example's training window (its most recent L+1 items).",
                        specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!model || !batch || !out) {
        fprintf(stderr, "%s: --model, --batch and --out are required (see --help)\n", cmd);
        return 2;
    }
    /* the output file may not be one of the inputs, however spelled (it would be replaced) */
    if (dp_same_file(out, model) || dp_same_file(out, batch)) {
        fprintf(stderr, "%s: --out %s is the input %s %s; refusing to overwrite it\n", cmd, out,
                dp_same_file(out, model) ? "--model" : "--batch", dp_same_file(out, model) ? model : batch);
        return 2;
    }
    dp_clip_mode mode;
    if (dp_clip_mode_parse(mode_s, &mode)) {
        fprintf(stderr, "%s: --clip-mode: unknown mode '%s' (auto, phantom, ghost or naive)\n", cmd, mode_s);
        return 2;
    }
    dp_device device;
    if ((rc = args_device(cmd, device_s, &device))) return rc;
    ops_set_threads(threads);
    dp_error err;
    dp_dataset ds;
    /* read once (a pipe cannot be read twice): parsed as a dataset, then scanned for the line order */
    char *text;
    size_t text_len;
    if (dp_read_file(batch, &text, &text_len, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        return 2;
    }
    if (dp_dataset_parse(&ds, batch, text, text_len, DP_FMT_SEQUENCES, NULL, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        free(text);
        return 2;
    }
    const int B = ds.n_users;
    int32_t *order = dp_malloc(sizeof(int32_t) * (size_t)(B > 0 ? B : 1));
    rc = file_order(batch, text, text_len, &ds, order, &err);
    free(text);
    if (rc) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        free(order);
        dp_dataset_free(&ds);
        return 1;
    }
    dp_model *m = dp_model_load(model, B, &err);
    if (!m || dp_model_set_device(m, device, &err)) {
        fprintf(stderr, "%s: %s\n", cmd, err.msg);
        dp_model_free(m);
        free(order);
        dp_dataset_free(&ds);
        return 2;
    }
    const dp_model_config *mc = dp_model_config_of(m);
    if (mc->n_classes) {
        /* a classifier reads labels and scores classes, not items: there is no next-item loss to clip */
        fprintf(stderr, "%s: %s is a text classifier (%d classes, written by dpformer train-text); clip-check "
                        "computes the per-example gradients of a next-item model (dpformer train or demo) on item "
                        "sequences and does not support classifiers\n",
                cmd, model, mc->n_classes);
        dp_model_free(m);
        free(order);
        dp_dataset_free(&ds);
        return 2;
    }
    const int L = mc->max_len;
    int32_t *ids = dp_calloc((size_t)B * L, sizeof(int32_t)), *tgt = dp_calloc((size_t)B * L, sizeof(int32_t));
    int32_t *seq = dp_malloc(sizeof(int32_t) * (size_t)(ds.n_interactions > 0 ? ds.n_interactions : 1));
    rc = 0;
    for (int64_t i = 0; i < ds.n_interactions; i++) {
        int64_t raw = ds.item_raw_ids[ds.items[i]];
        if (raw < 1 || raw > mc->n_items) {
            fprintf(stderr, "%s: %s: item id %lld is outside the model's items 1..%d\n", cmd, batch, (long long)raw,
                    mc->n_items);
            rc = 2;
            break;
        }
        seq[i] = (int32_t)raw;
    }
    /* row b of the batch is the b-th line of the file */
    for (int b = 0; b < B && rc == 0; b++) {
        const int32_t u = order[b];
        if (dp_make_train_window(ids + (size_t)b * L, tgt + (size_t)b * L, seq + ds.offsets[u], dp_user_len(&ds, u), L) == 0) {
            fprintf(stderr, "%s: %s: example %d (user %lld) has fewer than 2 items: no target to compute a gradient for\n",
                    cmd, batch, b + 1, (long long)ds.user_raw_ids[u]);
            rc = 2;
        }
    }
    double *norms = dp_malloc(sizeof(double) * (size_t)B), *losses = dp_malloc(sizeof(double) * (size_t)B);
    if (rc == 0) {
        dp_batch bt = {B, L, ids, tgt, NULL};
        dp_model_zero_grad(m);
        if (dp_clipped_grad_trimmed(m, &bt, mode, C, train, (uint64_t)seed, 0, norms, losses, &err)) {
            fprintf(stderr, "%s: %s\n", cmd, err.msg);
            rc = 2;
        }
    }
    if (rc == 0) {
        int nt = dp_model_num_tensors(m);
        dp_st_tensor *t = dp_calloc((size_t)nt + 3, sizeof *t);
        int64_t *uid = dp_malloc(sizeof(int64_t) * (size_t)B);
        for (int b = 0; b < B; b++) uid[b] = ds.user_raw_ids[order[b]];
        char (*names)[80] = dp_calloc((size_t)nt, sizeof *names);
        float *g32 = dp_malloc(sizeof(float) * dp_model_num_params(m));
        dp_model_read_grads(m, g32); /* dp_real is float in the library the CLI links */
        t[0] = (dp_st_tensor){"norms", "F64", 1, {B}, norms};
        t[1] = (dp_st_tensor){"losses", "F64", 1, {B}, losses};
        for (int i = 0; i < nt; i++) {
            const dp_param_tensor *pt = dp_model_tensor(m, i);
            snprintf(names[i], sizeof names[i], "clipped_sum.%s", pt->name);
            t[2 + i] = (dp_st_tensor){names[i], "F32", pt->ndim, {pt->shape[0], pt->shape[1]}, g32 + pt->offset};
        }
        t[2 + nt] = (dp_st_tensor){"user_ids", "I64", 1, {B}, uid};
        char cbuf[64];
        snprintf(cbuf, sizeof cbuf, "%.17g", C);
        /* documented in docs/model.md ("Checking per-example gradients") */
        const char *keys[] = {"clip_mode", "max_grad_norm", "examples", "dropout", "seed", "order"};
        char bbuf[32], sbuf[32];
        snprintf(bbuf, sizeof bbuf, "%d", B);
        snprintf(sbuf, sizeof sbuf, "%lld", (long long)seed);
        const char *vals[] = {dp_clip_mode_name(mode), cbuf, bbuf, train ? "on" : "off", sbuf, "file"};
        if (dp_safetensors_write(out, t, nt + 3, keys, vals, 6, &err)) {
            fprintf(stderr, "%s: %s\n", cmd, err.msg);
            rc = 1;
        } else {
            int clipped = 0;
            for (int b = 0; b < B; b++) clipped += norms[b] > C;
            printf("%d examples, clip mode %s, max grad norm %g: %d clipped; wrote %s\n", B, dp_clip_mode_name(mode), C,
                   clipped, out);
        }
        free(t);
        free(uid);
        free(names);
        free(g32);
    }
    free(norms);
    free(losses);
    free(ids);
    free(tgt);
    free(seq);
    free(order);
    dp_model_free(m);
    dp_dataset_free(&ds);
    return rc;
}
