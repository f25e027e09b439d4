/* Checkpoints at the library level: what a checkpoint holds (round trip); a flipped byte in the
 * length, the header, the metadata, the checksums or any tensor, and a truncated file, are refused
 * with the file named, and the previous checkpoint is used instead; a checkpoint is refused for
 * another dataset or another model shape; the newest K are kept and stale temporary files removed;
 * a run resumed from any of its checkpoints ends bit-identical to the uninterrupted run, without and
 * with (seeded) DP-SGD, also after a stop request; a secure run resumes with a re-keyed generator;
 * changed DP settings append to the privacy history and a target epsilon holds across resumes; a
 * non-finite gradient keeps the last good checkpoint; a full disk (RLIMIT_FSIZE in a child process)
 * leaves the previous checkpoint intact and resumable; a Re-Attention run keeps its item frequencies
 * in its checkpoints (checksummed), resumes from them bit-identical without releasing them again, and
 * refuses a change of its Re-Attention settings on resume; a fresh run that cannot start leaves an
 * earlier run's checkpoints and files as they were; a copied or moved run folder resumes with its
 * outputs where its checkpoints are. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dpformer/checkpoint.h"
#include "dpformer/noise.h"
#include "dpformer/reattention.h"
#include "dpformer/safetensors.h"
#include "testutil.h"

static FILE *quiet; /* /dev/null: where the runs' log lines go */

/* ---- helpers ---- */

static char *new_dir(void) {
    char *d = malloc(64);
    snprintf(d, 64, "/tmp/dpformer_ckpt_XXXXXX");
    if (!mkdtemp(d)) {
        perror("mkdtemp");
        exit(1);
    }
    return d;
}

static void remove_dir(char *d) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    CHECK(system(cmd) == 0);
    free(d);
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(b, 1, n, f) == n);
    fclose(f);
}

static char *ckpt_file(const char *dir, int64_t step) {
    char *p = malloc(512);
    snprintf(p, 512, "%s/ckpt-%012lld.safetensors", dir, (long long)step);
    return p;
}

/* Copy one checkpoint of src into a new folder (what is left after the run was killed there). */
static char *dir_with(const char *src, int64_t step) {
    char *d = new_dir(), *from = ckpt_file(src, step), *to = ckpt_file(d, step);
    size_t n = 0;
    unsigned char *b = slurp(from, &n);
    CHECK(b != NULL);
    if (b) spit(to, b, n);
    free(b);
    free(from);
    free(to);
    return d;
}

static int count_names(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += strstr(e->d_name, part) != NULL;
    if (d) closedir(d);
    return n;
}

static int same_params(dp_model *a, dp_model *b) {
    return dp_model_num_params(a) == dp_model_num_params(b) &&
           memcmp(dp_model_params(a), dp_model_params(b), sizeof(dp_real) * dp_model_num_params(a)) == 0;
}

/* metrics.jsonl lines equal up to their timing fields */
static int same_metrics(const char *dir_a, const char *dir_b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", dir_a);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", dir_b);
    FILE *fa = fopen(pa, "r"), *fb = fopen(pb, "r");
    int ok = fa && fb, lines = 0;
    char la[2048], lb[2048];
    while (ok && fgets(la, sizeof la, fa)) {
        ok = fgets(lb, sizeof lb, fb) != NULL;
        if (!ok) break;
        lines++;
        char *ca = strstr(la, "seconds"), *cb = strstr(lb, "seconds");
        if (ca) *ca = 0;
        if (cb) *cb = 0;
        ok = strcmp(la, lb) == 0;
        if (!ok) fprintf(stderr, "metrics differ:\n  %s\n  %s\n", la, lb);
    }
    if (ok && fb) ok = fgets(lb, sizeof lb, fb) == NULL;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return ok && lines > 1;
}

static dp_dataset data(int users, uint64_t seed) {
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    sc.n_users = users;
    sc.n_items = 40;
    sc.max_len = 12;
    sc.seed = seed;
    dp_dataset ds;
    dp_dataset_synthetic(&ds, &sc);
    return ds;
}

static dp_train_config base(const dp_dataset *ds) {
    dp_train_config c = dp_train_config_default();
    c.model = dp_model_config_default(ds->n_items, 8);
    c.model.d_model = 16;
    c.model.n_heads = 2;
    c.model.dropout = 0.1f; /* dropout masks come from the step: resumes must restore it */
    c.optim.lr = 1e-2;
    c.epochs = 3;
    c.batch_size = 32;
    c.progress = -1;
    c.log = quiet;
    c.seed = 5;
    return c;
}

static void private_on(dp_train_config *c) {
    c->dp.enabled = 1;
    c->dp.noise_multiplier = 1.0;
    c->dp.seeded_noise = 1;
    c->dp.max_physical_batch = 16;
    c->batch_size = 20;
}

/* Train from scratch with checkpoints in ckdir and outputs in outdir. */
static int train_into(const dp_dataset *ds, dp_train_config c, const char *ckdir, const char *outdir, dp_model **m,
                      dp_train_result *r) {
    dp_error e;
    c.checkpoint_dir = ckdir;
    c.out_dir = outdir;
    int rc = dp_train(ds, &c, m, r, &e);
    if (rc) fprintf(stderr, "train: %s\n", e.msg);
    return rc;
}

/* Resume from the newest checkpoint of dir, optionally changing the configuration. */
typedef void (*cfg_change)(dp_train_config *);
static int resume_from(const dp_dataset *ds, const char *dir, const char *outdir, cfg_change change, dp_model **m,
                       dp_train_result *r, dp_error *e) {
    *m = NULL;
    dp_checkpoint *ck = dp_checkpoint_open_latest(dir, quiet, e);
    if (!ck) return -1;
    dp_train_config c = dp_checkpoint_train_config(ck);
    c.out_dir = outdir;
    c.log = quiet;
    c.progress = -1;
    if (change) change(&c);
    int rc = dp_train(ds, &c, m, r, e);
    dp_checkpoint_free(ck);
    return rc;
}

/* ---- round trip ---- */

static void test_round_trip(void) {
    dp_dataset ds = data(120, 1);
    dp_train_config c = base(&ds);
    c.keep_last = 1;
    c.checkpoint_every = 2;
    c.keep_checkpoints = 1000;
    c.checkpoint_extra = "{\"note\":\"kept\"}";
    char *dir = new_dir();
    dp_model *m = NULL;
    dp_train_result r;
    CHECK(train_into(&ds, c, dir, NULL, &m, &r) == 0);
    int64_t steps_per_epoch = (r.n_train_users + c.batch_size - 1) / c.batch_size;
    CHECK(r.steps == 3 * steps_per_epoch);
    /* every second step, plus the epoch ends */
    char **paths;
    int n;
    dp_error e;
    CHECK(dp_checkpoint_list(dir, &paths, &n, &e) == 0);
    int64_t want = 0;
    for (int64_t s = 1; s <= r.steps; s++) want += s % 2 == 0 || s % steps_per_epoch == 0;
    CHECK(n == want);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    char *last = ckpt_file(dir, r.steps);
    dp_checkpoint *ck = dp_checkpoint_read(last, &e);
    CHECK(ck != NULL);
    if (ck) {
        CHECK(dp_checkpoint_step(ck) == r.steps);
        CHECK(dp_checkpoint_epochs_done(ck) == 3);
        CHECK(dp_checkpoint_epoch_step(ck) == 0);
        CHECK(dp_checkpoint_complete(ck) == 1);
        CHECK(strcmp(dp_checkpoint_extra(ck), "{\"note\":\"kept\"}") == 0);
        CHECK(dp_checkpoint_history(ck)->n == 0);
        dp_train_config s = dp_checkpoint_train_config(ck);
        CHECK(s.epochs == 3 && s.batch_size == 32 && s.seed == 5 && s.model.d_model == 16 && s.model.dropout == 0.1f);
        CHECK(s.optim.lr == 1e-2 && s.keep_last == 1 && s.checkpoint_every == 2 && s.resume == ck);
        CHECK(dp_checkpoint_check_resume(ck, &ds, &s, &e) == 0);
        dp_checkpoint_free(ck);
    }
    /* the tensors: parameters (= the returned model with keep-last), AdamW moments, best, order */
    dp_st_file *f = NULL;
    CHECK(dp_safetensors_read(last, &f, &e) == 0);
    if (f && m) {
        const dp_param_tensor *t0 = dp_model_tensor(m, 0);
        const dp_st_tensor *p = dp_st_find(f, "param.item_emb.weight");
        CHECK(p && memcmp(p->data, dp_model_params(m) + t0->offset, sizeof(dp_real) * t0->size) == 0);
        CHECK(dp_st_find(f, "best.item_emb.weight") != NULL);
        CHECK(dp_st_find(f, "optim.exp_avg.item_emb.weight") != NULL);
        CHECK(dp_st_find(f, "optim.exp_avg_sq.ln_f.bias") != NULL);
        const dp_st_tensor *o = dp_st_find(f, "data.order");
        CHECK(o && strcmp(o->dtype, "I32") == 0 && o->shape[0] == r.n_train_users);
        CHECK(dp_st_count(f) == 4 * dp_model_num_tensors(m) + 1);
    }
    dp_st_close(f);
    free(last);
    dp_model_free(m);
    remove_dir(dir);
    dp_dataset_free(&ds);
}

/* ---- corruption ---- */

/* data_offsets of a tensor, from the header */
static int tensor_span(const unsigned char *b, size_t n, const char *name, size_t *begin, size_t *end) {
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++) hlen |= (uint64_t)b[k] << (8 * k);
    if (8 + hlen > n) return -1;
    cJSON *h = cJSON_ParseWithLength((const char *)b + 8, hlen);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(h, name);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    int rc = -1;
    if (cJSON_GetArraySize(o) == 2) {
        *begin = 8 + hlen + (size_t)cJSON_GetArrayItem(o, 0)->valuedouble;
        *end = 8 + hlen + (size_t)cJSON_GetArrayItem(o, 1)->valuedouble;
        rc = 0;
    }
    cJSON_Delete(h);
    return rc;
}

static size_t find_in(const unsigned char *b, size_t n, const char *s) {
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(b + i, s, k) == 0) return i;
    return (size_t)-1;
}

/* The file at `bad` is a changed copy of a good checkpoint: it must be refused, naming the file and
 * (when given) something of the problem. */
static void expect_refused(const char *bad, const unsigned char *b, size_t n, const char *what) {
    spit(bad, b, n);
    dp_error e;
    e.msg[0] = 0;
    dp_checkpoint *c = dp_checkpoint_read(bad, &e);
    CHECK(c == NULL);
    CHECK(strstr(e.msg, bad) != NULL);
    if (what && !strstr(e.msg, what)) {
        fprintf(stderr, "expected '%s' in: %s\n", what, e.msg);
        CHECK(0);
    }
    dp_checkpoint_free(c);
}

static void test_corruption(void) {
    dp_dataset ds = data(100, 1);
    dp_train_config c = base(&ds);
    private_on(&c); /* the RNG state and privacy history are in the metadata too */
    c.epochs = 2;
    c.checkpoint_every = 1;
    char *dir = new_dir();
    dp_model *m = NULL;
    dp_train_result r;
    CHECK(train_into(&ds, c, dir, NULL, &m, &r) == 0);
    dp_model_free(m);
    char *good = ckpt_file(dir, r.steps), *prev = ckpt_file(dir, r.steps - 1);
    size_t n = 0;
    unsigned char *orig = slurp(good, &n), *b = malloc(n);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    dp_error e;
    dp_checkpoint *ok = dp_checkpoint_read(good, &e);
    CHECK(ok != NULL);
    dp_checkpoint_free(ok);

    /* the header length */
    memcpy(b, orig, n);
    b[1] ^= 0x01;
    expect_refused(bad, b, n, NULL);
    /* the header's tensor table: a shape, and a dtype of the same size (structure still valid) */
    size_t at = find_in(orig, n, "\"data.order\":{\"dtype\":\"I32\"");
    CHECK(at != (size_t)-1);
    memcpy(b, orig, n);
    b[at + strlen("\"data.order\":{\"dtype\":\"")] = 'U'; /* I32 -> U32 */
    expect_refused(bad, b, n, "metadata checksum mismatch");
    at = find_in(orig, n, "\"shape\":[8,16]");
    CHECK(at != (size_t)-1);
    memcpy(b, orig, n);
    b[at + 9] ^= 0x01; /* [8,16] -> [9,16] */
    expect_refused(bad, b, n, NULL);
    /* the metadata: the configuration, the progress, the generator state, the privacy history */
    const char *keys[] = {"\\\"epochs\\\":2", "\\\"epoch_step\\\":", "\"dpformer.rng\":\"", "\\\"steps\\\":"};
    for (int k = 0; k < 4; k++) {
        at = find_in(orig, n, keys[k]);
        CHECK(at != (size_t)-1);
        if (at == (size_t)-1) continue;
        memcpy(b, orig, n);
        size_t pos = at + strlen(keys[k]) + (k == 0 ? -1 : 0); /* a digit */
        b[pos] = b[pos] == '7' ? '3' : '7';
        expect_refused(bad, b, n, "checksum mismatch");
    }
    /* the stored checksums themselves */
    at = find_in(orig, n, "\\\"metadata\\\":\\\"");
    CHECK(at != (size_t)-1);
    memcpy(b, orig, n);
    b[at + 16] = b[at + 16] == 'a' ? 'b' : 'a';
    expect_refused(bad, b, n, "checksum mismatch");
    /* every tensor: one flipped byte in its data is found and the tensor named */
    dp_st_file *f = NULL;
    CHECK(dp_safetensors_read(good, &f, &e) == 0);
    int tensors = dp_st_count(f), named = 0;
    for (int i = 0; i < tensors; i++) {
        const char *name = dp_st_get(f, i)->name;
        size_t t0, t1;
        if (tensor_span(orig, n, name, &t0, &t1) || t1 <= t0) {
            CHECK(0);
            continue;
        }
        memcpy(b, orig, n);
        b[t0 + (t1 - t0) / 2] ^= 0x10;
        spit(bad, b, n);
        dp_checkpoint *x = dp_checkpoint_read(bad, &e);
        CHECK(x == NULL);
        named += x == NULL && strstr(e.msg, name) && strstr(e.msg, "checksum mismatch");
        dp_checkpoint_free(x);
    }
    CHECK(named == tensors);
    printf("corruption: all %d tensors, the header, the metadata and the checksums are checked\n", tensors);
    dp_st_close(f);
    /* truncation anywhere */
    size_t cuts[] = {0, 5, 8, 100, n / 2, n - 4, n - 1};
    for (int k = 0; k < 7; k++) expect_refused(bad, orig, cuts[k], NULL);
    unlink(bad);

    /* the newest is corrupt: the previous one is used, the bad one named and moved aside */
    memcpy(b, orig, n);
    b[n - 10] ^= 0x40;
    spit(good, b, n);
    FILE *log = tmpfile();
    dp_checkpoint *ck = dp_checkpoint_open_latest(dir, log, &e);
    CHECK(ck != NULL && strcmp(dp_checkpoint_path(ck), prev) == 0);
    char text[2048] = {0};
    rewind(log);
    size_t got = fread(text, 1, sizeof text - 1, log);
    text[got] = 0;
    fclose(log);
    CHECK(strstr(text, good) != NULL && strstr(text, "checksum mismatch") != NULL);
    char aside[600];
    snprintf(aside, sizeof aside, "%s.invalid", good);
    struct stat st;
    CHECK(stat(aside, &st) == 0 && stat(good, &st) != 0);
    /* and the run resumed from it ends as the uninterrupted run */
    dp_model *m1 = NULL, *m2 = NULL;
    dp_train_result r1, r2;
    char *ref = new_dir();
    CHECK(train_into(&ds, c, ref, NULL, &m1, &r1) == 0);
    dp_train_config rc = dp_checkpoint_train_config(ck);
    rc.log = quiet;
    CHECK(dp_train(&ds, &rc, &m2, &r2, &e) == 0);
    CHECK(m1 && m2 && same_params(m1, m2));
    CHECK(r1.epsilon == r2.epsilon && r2.dp_steps == r1.dp_steps);
    dp_model_free(m1);
    dp_model_free(m2);
    dp_checkpoint_free(ck);
    /* nothing valid left: refused, naming the folder */
    char *only = dir_with(dir, r.steps - 1), *p = ckpt_file(only, r.steps - 1);
    CHECK(truncate(p, 100) == 0);
    ck = dp_checkpoint_open_latest(only, quiet, &e);
    CHECK(ck == NULL && strstr(e.msg, only) != NULL);
    free(p);
    remove_dir(only);
    remove_dir(ref);
    free(orig);
    free(b);
    free(good);
    free(prev);
    remove_dir(dir);
    dp_dataset_free(&ds);
}

/* ---- mismatch ---- */

static void test_mismatch(void) {
    dp_dataset ds = data(80, 1), other = data(80, 2);
    dp_train_config c = base(&ds);
    c.epochs = 2;
    char *dir = new_dir();
    dp_model *m = NULL;
    dp_train_result r;
    CHECK(train_into(&ds, c, dir, NULL, &m, &r) == 0);
    dp_model_free(m);
    dp_error e;
    dp_checkpoint *ck = dp_checkpoint_open_latest(dir, quiet, &e);
    CHECK(ck != NULL);
    if (!ck) return;
    dp_train_config s = dp_checkpoint_train_config(ck);
    CHECK(other.n_items == ds.n_items && other.n_users == ds.n_users);
    CHECK(dp_checkpoint_check_resume(ck, &other, &s, &e) != 0 && strstr(e.msg, "another dataset") &&
          strstr(e.msg, dp_checkpoint_path(ck)));
    dp_train_config x = s;
    x.model.d_model = 32;
    CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "d-model") && strstr(e.msg, "shape"));
    x = s;
    x.model.n_layers = 3;
    CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "n-layers"));
    x = s;
    x.batch_size = 31;
    CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "batch-size"));
    x = s;
    x.seed = 6;
    CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "seed"));
    x = s;
    x.dp.enabled = 1;
    CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "DP-SGD"));
    x = s;
    x.epochs = 1;
    CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "already completed 2 epochs"));
    /* what may change */
    x = s;
    x.epochs = 5;
    x.optim.lr = 3e-3;
    x.eval_every = 2;
    CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) == 0);
    /* dp_train refuses the same */
    x = s;
    x.model.d_model = 32;
    dp_model *m2 = NULL;
    CHECK(dp_train(&ds, &x, &m2, &r, &e) != 0 && m2 == NULL && strstr(e.msg, "d-model"));
    CHECK(dp_train(&other, &s, &m2, &r, &e) != 0 && strstr(e.msg, "another dataset"));
    dp_checkpoint_free(ck);
    /* a file that is no checkpoint at all */
    char path[512];
    snprintf(path, sizeof path, "%s/ckpt-000000000099.safetensors", dir);
    dp_st_tensor t = {.name = "x", .dtype = "F32", .ndim = 1, .shape = {1}, .data = &(float){1}};
    CHECK(dp_safetensors_write(path, &t, 1, NULL, NULL, 0, &e) == 0);
    ck = dp_checkpoint_read(path, &e);
    CHECK(ck == NULL && strstr(e.msg, "not a dpformer checkpoint") && strstr(e.msg, path));
    remove_dir(dir);
    dp_dataset_free(&ds);
    dp_dataset_free(&other);
}

/* ---- keep the newest K, and only them ---- */

static void test_rotation(void) {
    dp_dataset ds = data(100, 1);
    dp_train_config c = base(&ds);
    c.epochs = 2;
    c.checkpoint_every = 1;
    c.keep_checkpoints = 3;
    char *dir = new_dir();
    /* a temporary file left by a writer that was killed */
    char stale[600];
    snprintf(stale, sizeof stale, "%s/.ckpt-000000000001.safetensors.tmp-99999-0", dir);
    spit(stale, "partial", 7);
    dp_model *m = NULL;
    dp_train_result r;
    CHECK(train_into(&ds, c, dir, NULL, &m, &r) == 0);
    dp_model_free(m);
    char **paths;
    int n;
    dp_error e;
    CHECK(dp_checkpoint_list(dir, &paths, &n, &e) == 0);
    CHECK(n == 3);
    for (int i = 0; i < n; i++) {
        char *want = ckpt_file(dir, r.steps - i);
        CHECK(strcmp(paths[i], want) == 0);
        free(want);
        free(paths[i]);
    }
    free(paths);
    CHECK(count_names(dir, ".tmp-") == 0);
    /* a fresh run into a folder of a finished run replaces its checkpoints... */
    CHECK(train_into(&ds, c, dir, NULL, &m, &r) == 0);
    dp_model_free(m);
    CHECK(count_names(dir, "ckpt-") == 3);
    /* ...but not those of a run that did not finish */
    char *p = ckpt_file(dir, r.steps);
    CHECK(unlink(p) == 0); /* the newest (final) one gone: the run looks interrupted */
    free(p);
    m = NULL;
    c.checkpoint_dir = dir;
    CHECK(dp_train(&ds, &c, &m, &r, &e) != 0 && strstr(e.msg, "did not finish") && strstr(e.msg, dir));
    CHECK(count_names(dir, "ckpt-") == 2);
    remove_dir(dir);
    dp_dataset_free(&ds);
}

/* ---- resume equivalence ---- */

static void resume_equivalence(int priv) {
    dp_dataset ds = data(100, 3);
    dp_train_config c = base(&ds);
    if (priv) {
        private_on(&c);
        c.dp.noise_multiplier = 0;
        c.dp.target_epsilon = 4; /* a calibrated σ, which a resume must not recalibrate */
        c.dp.delta = 1e-5;
    }
    c.checkpoint_every = 1;
    c.keep_checkpoints = 1000;
    c.eval_every = 2;
    char *ref = new_dir(), *ref_out = malloc(600);
    snprintf(ref_out, 600, "%s/out", ref);
    dp_model *m = NULL;
    dp_train_result r;
    CHECK(train_into(&ds, c, ref, ref_out, &m, &r) == 0);
    int64_t total = r.steps, spe = total / c.epochs;
    int64_t at[] = {1, spe - 1, spe, 2 * spe + 1, total - 1}; /* mid-epoch, epoch end, the last step */
    int tried = 0, same = 0;
    for (int k = 0; k < 5; k++) {
        int64_t step = at[k];
        if (step < 1 || step >= total) continue;
        tried++;
        char *d = dir_with(ref, step), *out = malloc(600);
        snprintf(out, 600, "%s/out", d);
        dp_model *m2 = NULL;
        dp_train_result r2;
        dp_error e;
        int rc = resume_from(&ds, d, out, NULL, &m2, &r2, &e);
        if (rc) fprintf(stderr, "resume at step %lld: %s\n", (long long)step, e.msg);
        int ok = rc == 0 && same_params(m, m2) && r2.resumed_from_step == step && r2.steps == total &&
                 r2.best_epoch == r.best_epoch && r2.test.ndcg10 == r.test.ndcg10 && same_metrics(ref_out, out);
        if (priv) ok = ok && r2.epsilon == r.epsilon && r2.dp_steps == r.dp_steps && r2.noise_multiplier == r.noise_multiplier;
        if (!ok) fprintf(stderr, "%s resume at step %lld differs from the uninterrupted run\n", priv ? "DP" : "non-private",
                         (long long)step);
        same += ok;
        /* the model files are byte-identical too */
        char fa[700], fb[700];
        snprintf(fa, sizeof fa, "%s/model.safetensors", ref_out);
        snprintf(fb, sizeof fb, "%s/model.safetensors", out);
        size_t na = 0, nb = 0;
        unsigned char *ba = slurp(fa, &na), *bb = slurp(fb, &nb);
        CHECK(ba && bb && na == nb && memcmp(ba, bb, na) == 0);
        free(ba);
        free(bb);
        dp_model_free(m2);
        free(out);
        remove_dir(d);
    }
    CHECK(tried == 5 && same == tried);
    printf("%s: resumed from %d checkpoints (mid-epoch and epoch ends): all bit-identical to the uninterrupted run\n",
           priv ? "DP-SGD (seeded)" : "non-private", same);

    /* a stop request: a checkpoint of the state, DP_TRAIN_STOPPED, and the resumed run is the same */
    volatile sig_atomic_t stop = SIGTERM;
    char *d = new_dir();
    dp_train_config s = c;
    s.checkpoint_dir = d;
    s.stop = &stop;
    dp_model *m3 = NULL;
    dp_train_result r3;
    dp_error e;
    CHECK(dp_train(&ds, &s, &m3, &r3, &e) == DP_TRAIN_STOPPED && m3 == NULL);
    CHECK(r3.stopped_by == SIGTERM && r3.steps == 0 && strstr(e.msg, "stopped") && strstr(e.msg, d));
    CHECK(count_names(d, "ckpt-000000000000.") == 1);
    /* resumed with the stop still requested: stops again at once */
    dp_checkpoint *ck = dp_checkpoint_open_latest(d, quiet, &e);
    CHECK(ck != NULL);
    if (ck) {
        dp_train_config t = dp_checkpoint_train_config(ck);
        t.stop = &stop;
        t.log = quiet;
        CHECK(dp_train(&ds, &t, &m3, &r3, &e) == DP_TRAIN_STOPPED && r3.steps == 0);
        dp_checkpoint_free(ck);
    }
    char *out = malloc(600);
    snprintf(out, 600, "%s/out", d);
    CHECK(resume_from(&ds, d, out, NULL, &m3, &r3, &e) == 0);
    CHECK(m3 && same_params(m, m3));
    CHECK(same_metrics(ref_out, out));
    if (priv) CHECK(r3.epsilon == r.epsilon);
    dp_model_free(m3);
    free(out);
    remove_dir(d);
    dp_model_free(m);
    free(ref_out);
    remove_dir(ref);
    dp_dataset_free(&ds);
}

/* ---- secure noise: resumes with a fresh key; the key never reaches the file ---- */

static void test_secure_resume(void) {
    dp_dataset ds = data(100, 4);
    dp_train_config c = base(&ds);
    private_on(&c);
    c.dp.seeded_noise = 0;
    c.checkpoint_every = 1;
    c.keep_checkpoints = 1000;
    char *ref = new_dir();
    dp_model *m = NULL;
    dp_train_result r;
    if (train_into(&ds, c, ref, NULL, &m, &r)) { /* no getrandom here: nothing to test */
        printf("secure generator unavailable: skipped\n");
        remove_dir(ref);
        dp_dataset_free(&ds);
        return;
    }
    char *mid = ckpt_file(ref, r.steps / 2);
    dp_error e;
    dp_checkpoint *ck = dp_checkpoint_read(mid, &e);
    CHECK(ck != NULL);
    dp_st_file *f = NULL;
    CHECK(dp_safetensors_read(mid, &f, &e) == 0);
    const char *hex = f ? dp_st_meta(f, "dpformer.rng") : NULL;
    CHECK(hex && strlen(hex) == DP_RNG_STATE_HEX_LEN);
    int zeros = 1; /* bytes 16..47: the key, all zero for a secure generator */
    for (int i = 32; hex && i < 96; i++) zeros &= hex[i] == '0';
    CHECK(zeros);
    dp_st_close(f);
    char *d = dir_with(ref, r.steps / 2);
    dp_model *m2 = NULL;
    dp_train_result r2;
    CHECK(resume_from(&ds, d, NULL, NULL, &m2, &r2, &e) == 0);
    CHECK(r2.dp_steps == r.dp_steps && r2.epsilon == r.epsilon); /* same accounting */
    CHECK(m2 && !same_params(m, m2));                          /* fresh noise after the resume */
    dp_model_free(m2);
    dp_checkpoint_free(ck);
    free(mid);
    remove_dir(d);
    dp_model_free(m);
    remove_dir(ref);
    dp_dataset_free(&ds);
}

/* ---- DP settings changed on resume ---- */

static void more_epochs_sigma2(dp_train_config *c) {
    c->epochs = 4;
    c->dp.noise_multiplier = 2.0;
}
static double less_sigma; /* set to 0.8 x the calibrated σ */
static void less_noise_long(dp_train_config *c) {
    c->epochs = 40;
    c->dp.noise_multiplier = less_sigma;
}

static void test_changed_privacy(void) {
    dp_dataset ds = data(100, 5);
    dp_train_config c = base(&ds);
    private_on(&c);
    c.epochs = 2;
    c.dp.delta = 1e-5;
    char *dir = new_dir();
    dp_model *m = NULL;
    dp_train_result r, r2;
    dp_error e;
    CHECK(train_into(&ds, c, dir, NULL, &m, &r) == 0);
    dp_model_free(m);
    CHECK(resume_from(&ds, dir, NULL, more_epochs_sigma2, &m, &r2, &e) == 0);
    dp_model_free(m);
    dp_checkpoint *ck = dp_checkpoint_open_latest(dir, quiet, &e);
    CHECK(ck != NULL);
    if (ck) {
        const dp_history *h = dp_checkpoint_history(ck);
        CHECK(h->n == 2);
        if (h->n == 2) {
            CHECK(h->events[0].noise_multiplier == 1.0 && h->events[0].steps == r.dp_steps);
            CHECK(h->events[1].noise_multiplier == 2.0 && h->events[1].steps == r.dp_steps);
        }
        double eps;
        CHECK(dp_epsilon(h, 1e-5, NULL, &eps, &e) == 0);
        CHECK(eps == r2.epsilon);
        CHECK(r2.epsilon > r.epsilon && r2.dp_steps == 2 * r.dp_steps);
        /* less than four epochs at σ = 1 would have cost */
        dp_history one;
        dp_history_init(&one);
        CHECK(dp_history_add_poisson_gaussian(&one, 1.0, r.sample_rate, 2 * r.dp_steps, &e) == 0);
        CHECK(dp_epsilon(&one, 1e-5, NULL, &eps, &e) == 0);
        CHECK(r2.epsilon < eps);
        dp_history_free(&one);
        dp_checkpoint_free(ck);
    }
    printf("sigma 1 then 2: epsilon %.4f after %lld steps, %.4f after %lld\n", r.epsilon, (long long)r.dp_steps,
           r2.epsilon, (long long)r2.dp_steps);
    remove_dir(dir);

    /* a target ε holds across a resume that lowers the noise: the budget counts the whole history */
    c.dp.noise_multiplier = 0;
    c.dp.target_epsilon = 3;
    c.epochs = 3;
    c.checkpoint_every = 5;
    c.keep_checkpoints = 1000;
    dir = new_dir();
    CHECK(train_into(&ds, c, dir, NULL, &m, &r) == 0);
    dp_model_free(m);
    CHECK(r.epsilon <= 3);
    less_sigma = 0.8 * r.noise_multiplier;
    char *d = dir_with(dir, 5);
    CHECK(resume_from(&ds, d, NULL, less_noise_long, &m, &r2, &e) == 0);
    dp_model_free(m);
    CHECK(r2.stopped_at_budget == 1 && r2.epsilon <= 3.0 && r2.dp_steps > 5);
    ck = dp_checkpoint_open_latest(d, quiet, &e);
    CHECK(ck != NULL);
    if (ck) {
        const dp_history *h = dp_checkpoint_history(ck);
        CHECK(h->n == 2 && h->events[0].steps == 5 && h->events[1].noise_multiplier == less_sigma);
        dp_history more;
        dp_history_init(&more);
        for (size_t i = 0; i < h->n; i++) CHECK(dp_history_add(&more, &h->events[i], &e) == 0);
        CHECK(dp_history_add_poisson_gaussian(&more, less_sigma, r.sample_rate, 1, &e) == 0);
        double eps;
        CHECK(dp_epsilon(&more, 1e-5, NULL, &eps, &e) == 0);
        CHECK(eps > 3.0); /* one more step would have exceeded the target */
        dp_history_free(&more);
        /* resuming again changes nothing: the budget is spent */
        dp_train_config t = dp_checkpoint_train_config(ck);
        t.log = quiet;
        int64_t before = dp_checkpoint_step(ck);
        CHECK(dp_train(&ds, &t, &m, &r2, &e) == 0 && r2.steps == before && r2.stopped_at_budget == 1);
        dp_model_free(m);
        dp_checkpoint_free(ck);
    }
    printf("target epsilon 3 across a resume with less noise: stopped at %.4f\n", r2.epsilon);
    remove_dir(d);
    remove_dir(dir);
    dp_dataset_free(&ds);
}

/* ---- a non-finite gradient stops the run; the last checkpoint is good ---- */

static void test_nonfinite(void) {
    dp_dataset ds = data(100, 6);
    dp_train_config c = base(&ds);
    c.optim.kind = DP_OPT_SGD;
    c.optim.lr = 1e30;
    c.checkpoint_every = 1;
    char *dir = new_dir();
    dp_model *m = NULL;
    dp_train_result r;
    dp_error e;
    c.checkpoint_dir = dir;
    CHECK(dp_train(&ds, &c, &m, &r, &e) == -1 && m == NULL && strstr(e.msg, "non-finite"));
    printf("non-finite: %s; newest checkpoint %s\n", e.msg, r.checkpoint);
    CHECK(r.checkpoint[0] != 0);
    dp_checkpoint *ck = dp_checkpoint_open_latest(dir, quiet, &e);
    CHECK(ck != NULL && strcmp(dp_checkpoint_path(ck), r.checkpoint) == 0);
    CHECK(ck && dp_checkpoint_step(ck) == r.steps);
    dp_checkpoint_free(ck);
    remove_dir(dir);
    dp_dataset_free(&ds);
}

/* ---- a full disk: the write fails for real (RLIMIT_FSIZE), the previous checkpoint stays ---- */

/* Run the dpformer binary with args; with fsize > 0 in a child whose files may not grow past fsize
 * bytes (SIGXFSZ ignored, so write() fails with EFBIG). stdout and stderr go to log. Returns the exit
 * status, or -1. (A child that only execs: the OpenMP runtime of this process is not fork-safe.) */
static int run_cli(const char *bin, char *const *args, long fsize, const char *log) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stdout);
        if (!f || dup2(fileno(stdout), 2) < 0) _exit(126);
        if (fsize > 0) {
            struct rlimit rl = {(rlim_t)fsize, (rlim_t)fsize};
            signal(SIGXFSZ, SIG_IGN);
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(126);
        }
        execv(bin, args);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

static int file_has(const char *path, const char *what) {
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    if (!b) return 0;
    b[n] = 0;
    int ok = strstr((char *)b, what) != NULL;
    if (!ok) fprintf(stderr, "%s lacks '%s':\n%s\n", path, what, (char *)b);
    free(b);
    return ok;
}

static void test_full_disk(void) {
    const char *bin = getenv("DPFORMER_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        printf("full disk: DPFORMER_BIN not set: skipped\n");
        return;
    }
    dp_dataset ds = data(100, 7);
    char *dir = new_dir();
    char seqs[600], ck[600], a[600], b[600], log[600];
    snprintf(seqs, sizeof seqs, "%s/seqs.txt", dir);
    FILE *f = fopen(seqs, "w");
    for (int32_t u = 0; f && u < ds.n_users; u++) {
        fprintf(f, "%d", u + 1);
        for (int64_t k = ds.offsets[u]; k < ds.offsets[u + 1]; k++) fprintf(f, " %lld", (long long)ds.item_raw_ids[ds.items[k]]);
        fprintf(f, "\n");
    }
    if (f) fclose(f);
    snprintf(ck, sizeof ck, "%s/b/checkpoints", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(log, sizeof log, "%s/log.txt", dir);
#define FLAGS "--data", seqs, "--format", "sequences", "--max-len", "8", "--d-model", "16", "--batch-size", "20", \
              "--dp", "--noise-multiplier", "1", "--seeded-noise", "--threads", "1", "--no-progress"
    char *full[] = {"dpformer", "train", FLAGS, "--epochs", "3", "--out", a, NULL};
    char *one[] = {"dpformer", "train", FLAGS, "--epochs", "1", "--out", b, NULL};
    char *more[] = {"dpformer", "train", "--resume", ck, "--epochs", "3", NULL};
#undef FLAGS
    CHECK(run_cli(bin, full, 0, log) == 0);
    CHECK(run_cli(bin, one, 0, log) == 0);
    char **paths;
    int n;
    dp_error e;
    CHECK(dp_checkpoint_list(ck, &paths, &n, &e) == 0 && n == 1);
    char *good = n == 1 ? paths[0] : NULL;
    int64_t good_step = -1;
    dp_checkpoint *c = good ? dp_checkpoint_read(good, &e) : NULL;
    if (c) good_step = dp_checkpoint_step(c);
    dp_checkpoint_free(c);
    /* files may not grow past 16 KiB: the next checkpoint cannot be written */
    CHECK(run_cli(bin, more, 16384, log) == 1);
    CHECK(file_has(log, "File too large") && file_has(log, "is intact") && file_has(log, "--resume"));
    /* the earlier checkpoint is there, valid, the only one, no temporary file left */
    CHECK(count_names(ck, "ckpt-") == 1 && count_names(ck, ".tmp-") == 0);
    c = dp_checkpoint_open_latest(ck, quiet, &e);
    CHECK(c && good && strcmp(dp_checkpoint_path(c), good) == 0 && dp_checkpoint_step(c) == good_step);
    dp_checkpoint_free(c);
    /* and the run resumed from it ends as the uninterrupted one */
    CHECK(run_cli(bin, more, 0, log) == 0);
    char ma[700], mb[700];
    snprintf(ma, sizeof ma, "%s/model.safetensors", a);
    snprintf(mb, sizeof mb, "%s/model.safetensors", b);
    size_t na = 0, nb = 0;
    unsigned char *ba = slurp(ma, &na), *bb = slurp(mb, &nb);
    CHECK(ba && bb && na == nb && memcmp(ba, bb, na) == 0);
    free(ba);
    free(bb);
    printf("full disk: the write failed with EFBIG, the checkpoint of step %lld stayed and resumed\n",
           (long long)good_step);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    remove_dir(dir);
    dp_dataset_free(&ds);
}

/* ---- a run that cannot start touches nothing of an earlier run; one that starts replaces its files ---- */

static int same_bytes(const char *path, const unsigned char *b, size_t n) {
    size_t m = 0;
    unsigned char *x = slurp(path, &m);
    int same = x && b && m == n && memcmp(x, b, n) == 0;
    free(x);
    return same;
}

static int same_folder(const char *a, const char *b) {
    struct stat sa, sb;
    return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void test_failed_start(void) {
    dp_dataset ds = data(100, 3);
    dp_train_config c = base(&ds);
    c.epochs = 1;
    char *out = new_dir();
    char ck[600], metrics[600], model[600];
    snprintf(ck, sizeof ck, "%s/checkpoints", out);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    snprintf(model, sizeof model, "%s/model.safetensors", out);
    dp_model *m = NULL;
    dp_train_result r;
    dp_error e;
    CHECK(train_into(&ds, c, ck, out, &m, &r) == 0);
    dp_model_free(m);
    char **paths = NULL;
    int n = 0;
    CHECK(dp_checkpoint_list(ck, &paths, &n, &e) == 0 && n == 1);
    size_t nm = 0, nmod = 0, nck = 0;
    unsigned char *bm = slurp(metrics, &nm), *bmod = slurp(model, &nmod), *bck = n ? slurp(paths[0], &nck) : NULL;
    CHECK(bm && nm > 0 && bmod && bck);
    /* a fresh run whose set-up fails (Re-Attention with a public frequency file that is not there):
     * the earlier checkpoints, metrics.jsonl and model stay exactly as they were */
    dp_train_config f = c;
    private_on(&f);
    f.dp.reattention = 1;
    f.dp.item_freq_public = "/nonexistent/dpformer-freq.txt";
    f.checkpoint_dir = ck;
    f.out_dir = out;
    m = NULL;
    CHECK(dp_train(&ds, &f, &m, &r, &e) != 0 && strstr(e.msg, "dpformer-freq.txt"));
    CHECK(m == NULL);
    CHECK(n == 1 && same_bytes(paths[0], bck, nck) && count_names(ck, "ckpt-") == 1);
    CHECK(same_bytes(metrics, bm, nm) && same_bytes(model, bmod, nmod));
    CHECK(count_names(out, ".tmp-") == 0 && count_names(ck, ".tmp-") == 0);
    /* checking a folder touches nothing either: a finished run's checkpoints may be replaced... */
    CHECK(dp_checkpoint_check_dir(ck, NULL, &e) == 0 && count_names(ck, "ckpt-") == 1);
    /* ...and a run that starts replaces them (other step numbers: another batch size), and metrics.jsonl */
    c.batch_size = 50;
    CHECK(train_into(&ds, c, ck, out, &m, &r) == 0);
    dp_model_free(m);
    CHECK(n == 1 && access(paths[0], F_OK) != 0 && count_names(ck, "ckpt-") == 1);
    CHECK(!same_bytes(metrics, bm, nm));
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    free(bm);
    free(bmod);
    free(bck);
    remove_dir(out);
    dp_dataset_free(&ds);
}

/* ---- a copied or moved run folder: a resume writes its outputs where the checkpoints are ---- */

static void test_moved_run(void) {
    dp_dataset ds = data(80, 4);
    dp_train_config c = base(&ds);
    c.epochs = 1;
    char *root = new_dir();
    char run[600], ck[600], copy[600], copy_ck[600], cmd[1400], own_ck[600], own_out[600], moved[600];
    snprintf(run, sizeof run, "%s/run", root);
    snprintf(ck, sizeof ck, "%s/run/checkpoints", root);
    snprintf(copy, sizeof copy, "%s/copy", root);
    snprintf(copy_ck, sizeof copy_ck, "%s/copy/checkpoints/", root); /* a trailing slash too */
    snprintf(own_ck, sizeof own_ck, "%s/own-ck", root);
    snprintf(own_out, sizeof own_out, "%s/own-out", root);
    snprintf(moved, sizeof moved, "%s/moved-ck", root);
    dp_model *m = NULL;
    dp_train_result r;
    dp_error e;
    CHECK(train_into(&ds, c, ck, run, &m, &r) == 0);
    dp_model_free(m);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", run, copy);
    CHECK(system(cmd) == 0);
    /* the default layout: the folder above the checkpoints, wherever it now is */
    dp_checkpoint *k = dp_checkpoint_open_latest(ck, quiet, &e);
    CHECK(k && same_folder(dp_checkpoint_out_dir(k), run));
    dp_checkpoint_free(k);
    k = dp_checkpoint_open_latest(copy_ck, quiet, &e);
    CHECK(k && same_folder(dp_checkpoint_out_dir(k), copy) && !same_folder(dp_checkpoint_out_dir(k), run));
    if (k) {
        dp_train_config t = dp_checkpoint_train_config(k);
        CHECK(t.out_dir == dp_checkpoint_out_dir(k));
    }
    dp_checkpoint_free(k);
    /* a checkpoint folder of its own: the run's output folder while the checkpoints stay where they
     * were written; once they have moved it is not known (NULL) */
    CHECK(train_into(&ds, c, own_ck, own_out, &m, &r) == 0);
    dp_model_free(m);
    k = dp_checkpoint_open_latest(own_ck, quiet, &e);
    CHECK(k && same_folder(dp_checkpoint_out_dir(k), own_out));
    dp_checkpoint_free(k);
    CHECK(rename(own_ck, moved) == 0);
    k = dp_checkpoint_open_latest(moved, quiet, &e);
    CHECK(k && dp_checkpoint_out_dir(k) == NULL && dp_checkpoint_train_config(k).out_dir == NULL);
    dp_checkpoint_free(k);
    remove_dir(root);
    dp_dataset_free(&ds);
}

/* ---- Re-Attention: the frequencies in the checkpoint, the resume, the settings that cannot change ---- */

static int release_events(const dp_history *h) {
    int n = 0;
    for (size_t i = 0; i < h->n; i++) n += h->events[i].type == DP_EVENT_GAUSSIAN;
    return n;
}

static void test_reattention(void) {
    dp_dataset ds = data(100, 4);
    dp_train_config c = base(&ds);
    private_on(&c);
    c.dp.reattention = 1;
    c.dp.reattention_scale = 20;
    c.dp.item_freq_noise = 3;
    c.dp.item_freq_cap = 5;
    c.epochs = 2;
    c.checkpoint_every = 1;
    c.keep_checkpoints = 1000;
    char *ref = new_dir();
    dp_model *m = NULL;
    dp_train_result r;
    CHECK(train_into(&ds, c, ref, NULL, &m, &r) == 0);
    if (!m) return;
    dp_reattention_config ra;
    CHECK(dp_model_get_reattention(m, &ra) == 1 && ra.kappa == 20);
    const int64_t mid = r.steps / 2 + 1;
    char *path = ckpt_file(ref, mid);
    dp_error e;
    dp_checkpoint *ck = dp_checkpoint_read(path, &e);
    CHECK(ck != NULL);
    if (!ck) fprintf(stderr, "%s\n", e.msg);
    if (ck) {
        dp_train_config s = dp_checkpoint_train_config(ck);
        CHECK(s.dp.reattention == 1 && s.dp.reattention_scale == 20 && s.dp.item_freq_noise == 3 &&
              s.dp.item_freq_cap == 5 && s.dp.item_freq_public == NULL);
        CHECK(release_events(dp_checkpoint_history(ck)) == 1);
        CHECK(dp_checkpoint_check_resume(ck, &ds, &s, &e) == 0);
        /* each Re-Attention setting, changed, is refused by its name */
        dp_train_config x = s;
        x.dp.reattention_scale = 2;
        CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "reattention-scale 2"));
        x = s;
        x.dp.reattention = 0;
        CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "reattention off"));
        x = s;
        x.dp.item_freq_public = "freq.txt";
        CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "item-freq public:freq.txt") &&
              strstr(e.msg, "the checkpoint has private"));
        x = s;
        x.dp.item_freq_noise = 4;
        CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "item-freq-noise 4"));
        x = s;
        x.dp.item_freq_cap = 6;
        CHECK(dp_checkpoint_check_resume(ck, &ds, &x, &e) != 0 && strstr(e.msg, "item-freq-cap 6"));
        dp_checkpoint_free(ck);
    }
    /* the tensor: the model's frequencies, bit for bit, F64 [n_items + 1], first in the file */
    dp_st_file *f = NULL;
    CHECK(dp_safetensors_read(path, &f, &e) == 0);
    const dp_st_tensor *t = f ? dp_st_find(f, "reattention.item_freq") : NULL;
    CHECK(t && strcmp(t->dtype, "F64") == 0 && t->ndim == 1 && t->shape[0] == ds.n_items + 1 && dp_st_get(f, 0) == t);
    CHECK(t && memcmp(t->data, ra.item_freq, sizeof(double) * ((size_t)ds.n_items + 1)) == 0);
    /* a changed frequency is caught by the checksum */
    size_t n = 0, b0, b1;
    unsigned char *b = slurp(path, &n);
    CHECK(b && tensor_span(b, n, "reattention.item_freq", &b0, &b1) == 0 && b1 - b0 == 8 * ((size_t)ds.n_items + 1));
    if (b) {
        char bad[600];
        snprintf(bad, sizeof bad, "%s/bad", ref);
        CHECK(mkdir(bad, 0700) == 0);
        char *bp = ckpt_file(bad, mid);
        b[b0 + 8 * 3 + 1] ^= 0x10;
        expect_refused(bp, b, n, "tensor reattention.item_freq: checksum mismatch");
        remove(bp);
        rmdir(bad);
        free(bp);
    }
    free(b);
    dp_st_close(f);
    /* resumed from the middle of the run: the same model, the one release event, the same setting */
    char *d = dir_with(ref, mid);
    dp_model *m2 = NULL;
    dp_train_result r2;
    int rc = resume_from(&ds, d, NULL, NULL, &m2, &r2, &e);
    if (rc) fprintf(stderr, "Re-Attention resume: %s\n", e.msg);
    CHECK(rc == 0 && m2 && same_params(m, m2) && r2.epsilon == r.epsilon && r2.test.ndcg10 == r.test.ndcg10);
    dp_reattention_config ra2;
    CHECK(m2 && dp_model_get_reattention(m2, &ra2) == 1 && ra2.kappa == ra.kappa && ra2.sigma == ra.sigma &&
          ra2.batch_size == ra.batch_size && ra2.n_examples == ra.n_examples &&
          memcmp(ra2.item_freq, ra.item_freq, sizeof(double) * ((size_t)ds.n_items + 1)) == 0);
    dp_checkpoint *last = dp_checkpoint_open_latest(d, quiet, &e);
    CHECK(last && dp_checkpoint_step(last) == r.steps && release_events(dp_checkpoint_history(last)) == 1);
    dp_checkpoint_free(last);
    dp_model_free(m2);
    remove_dir(d);
    free(path);
    dp_model_free(m);
    remove_dir(ref);
    dp_dataset_free(&ds);
}

int main(void) {
    quiet = fopen("/dev/null", "w");
    test_round_trip();
    test_corruption();
    test_mismatch();
    test_rotation();
    resume_equivalence(0);
    resume_equivalence(1);
    test_secure_resume();
    test_changed_privacy();
    test_nonfinite();
    test_full_disk();
    test_failed_start();
    test_moved_run();
    test_reattention();
    fclose(quiet);
    return tu_finish("test_checkpoint");
}
