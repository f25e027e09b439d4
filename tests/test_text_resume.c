/* Text classification through the training loop's checkpoints: for each mode (non-private, seeded
 * DP-SGD, seeded DP-FP with two micro-batches) a run resumed from its checkpoints (mid-epoch, at an
 * epoch's end, at the end of the run) and a run stopped through the stop flag in the middle of an
 * epoch, then resumed, end with the parameters, metrics lines (up to timings) and privacy history of
 * the uninterrupted run; the saved configuration reads back; a resume with another training set,
 * without the dev set, with another tokenizer or mode, or of a recommendation checkpoint, is refused;
 * a run without a dev set keeps its last epoch and neither prints nor writes a dev accuracy or a
 * selection by it. */
#define _GNU_SOURCE /* fopencookie: a log that raises the stop flag */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpformer/checkpoint.h"
#include "dpformer/textcls.h"
#include "testutil.h"

static FILE *quiet;
static uint64_t rng = 91;

/* Sentences of filler words with one polarity word that decides the label. */
static void synthetic(dp_text_dataset *ds, int n) {
    static const char *pos[] = {"good", "great", "fine", "love", "nice", "superb"};
    static const char *neg[] = {"bad", "awful", "poor", "hate", "dull", "boring"};
    static const char *fill[] = {"the", "a", "movie", "film", "plot", "was", "is", "and", "it"};
    size_t cap = (size_t)n * 64 + 64, len = 0;
    char *buf = malloc(cap);
    len += (size_t)snprintf(buf, cap, "label\tsentence\n");
    for (int i = 0; i < n; i++) {
        int y = tu_uniform(&rng) < 0.5, words = 2 + (int)(tu_uniform(&rng) * 9), at = (int)(tu_uniform(&rng) * words);
        len += (size_t)snprintf(buf + len, cap - len, "%d\t", y);
        for (int w = 0; w <= words; w++) {
            const char *word = w == at ? (y ? pos : neg)[(int)(tu_uniform(&rng) * 6)] : fill[(int)(tu_uniform(&rng) * 9)];
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", w ? " " : "", word);
        }
        len += (size_t)snprintf(buf + len, cap - len, "\n");
    }
    dp_error err;
    CHECK(dp_text_parse(ds, buf, len, "synthetic", NULL, &err) == 0);
    free(buf);
}

static char *new_dir(void) {
    char *d = malloc(64);
    snprintf(d, 64, "/tmp/dpformer_textck_XXXXXX");
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

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc((size_t)n + 1, 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) b[0] = 0;
    fclose(f);
    return b;
}

static int exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* metrics.jsonl of two runs: the same lines up to their timing fields (everything from the first
 * "...seconds" key on) and the "resumes" count */
static int same_metrics(const char *a, const char *b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", a);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", b);
    FILE *fa = fopen(pa, "r"), *fb = fopen(pb, "r");
    int ok = fa && fb, lines = 0;
    char la[4096], lb[4096];
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

static int same_file(const char *a, const char *b, const char *name) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/%s", a, name);
    snprintf(pb, sizeof pb, "%s/%s", b, name);
    char *x = slurp(pa), *y = slurp(pb);
    int same = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

/* Every parameter tensor equal bit for bit (the alignment gaps between tensors are no parameters). */
static int same_params(dp_model *a, dp_model *b) {
    if (!a || !b || dp_model_num_tensors(a) != dp_model_num_tensors(b)) return 0;
    for (int i = 0; i < dp_model_num_tensors(a); i++) {
        const dp_param_tensor *t = dp_model_tensor(a, i);
        if (memcmp(dp_model_params(a) + t->offset, dp_model_params(b) + t->offset, sizeof(dp_real) * t->size)) return 0;
    }
    return 1;
}

typedef struct {
    const dp_text_dataset *tr, *dev, *test;
} data3;

static dp_text_train_config config(dp_text_mode mode) {
    dp_text_train_config c = dp_text_train_config_default(2);
    if (dp_tokenizer_parse("words:512", &c.tokenizer, NULL) != 0) abort();
    c.model.n_items = dp_tokenizer_vocab(&c.tokenizer) - 1;
    c.model.max_len = 10;
    c.model.d_model = 16;
    c.model.n_heads = 2;
    c.model.n_layers = 1;
    c.model.dropout = 0.1f; /* dropout masks come from the step: a resume must restore it */
    c.mode = mode;
    c.epochs = 3;
    c.batch_size = 32;
    c.optim.lr = 3e-3;
    c.seed = 5;
    c.log = quiet;
    c.progress = -1;
    c.checkpoint_every = 1;
    c.keep_checkpoints = 1000;
    if (mode != DP_TEXT_NONPRIVATE) {
        c.dp.enabled = 1;
        c.dp.noise_multiplier = 1.0;
        c.dp.seeded_noise = 1;
        c.dp.max_physical_batch = 16; /* several chunks per step */
    }
    if (mode == DP_TEXT_DPFP) c.micro_batches = 2;
    return c;
}

/* Resume from the newest checkpoint of ckdir into outdir. */
static int resume_from(const data3 *d, const char *ckdir, const char *outdir, dp_model **m, dp_text_train_result *r,
                       dp_error *e) {
    *m = NULL;
    dp_checkpoint *ck = dp_checkpoint_open_latest(ckdir, quiet, e);
    if (!ck) return -1;
    dp_text_train_config c;
    int rc = dp_text_checkpoint_config(ck, &c, e);
    if (!rc) {
        c.out_dir = outdir;
        c.log = quiet;
        c.progress = -1;
        rc = dp_text_train(&c, d->tr, d->dev, d->test, m, r, e);
    }
    dp_checkpoint_free(ck);
    return rc;
}

/* Copy checkpoint `step` of src into a new folder (what is left of a run killed there). */
static void copy_ckpt(const char *src, int64_t step, const char *dst) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/ckpt-%012lld.safetensors' '%s/'", dst, src, (long long)step, dst);
    CHECK(system(cmd) == 0);
}

/* A log that raises *stop once the loop has drawn its progress bar `after` times: a stop request in
 * the middle of an epoch, at the step boundary the loop reaches next. */
typedef struct {
    volatile sig_atomic_t *stop;
    int bars, after;
} stopper;

static ssize_t stopper_write(void *p, const char *buf, size_t n) {
    stopper *s = p;
    for (size_t i = 0; i + 8 < n; i++)
        if (buf[i] == '\r' && strncmp(buf + i, "\r  epoch", 8) == 0 && ++s->bars == s->after) *s->stop = SIGTERM;
    return (ssize_t)n;
}

static void one_mode(const data3 *d, dp_text_mode mode) {
    const char *name = dp_text_mode_name(mode);
    char *root = new_dir();
    char ref_ck[320], ref_out[320];
    snprintf(ref_ck, sizeof ref_ck, "%s/ref/checkpoints", root);
    snprintf(ref_out, sizeof ref_out, "%s/ref", root);
    dp_text_train_config c = config(mode);
    c.checkpoint_dir = ref_ck;
    c.out_dir = ref_out;
    c.train_desc = "train.tsv";
    c.dev_desc = "dev.tsv";
    c.test_desc = "test.tsv";
    dp_model *ref = NULL;
    dp_text_train_result rr;
    dp_error e;
    int rc = dp_text_train(&c, d->tr, d->dev, d->test, &ref, &rr, &e);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "%s: %s\n", name, e.msg);
        remove_dir(root);
        return;
    }
    const int64_t per_epoch = d->tr->n / c.batch_size, total = 3 * per_epoch;
    CHECK(rr.steps == total && rr.epochs_run == 3 && rr.resumed_from_step == -1);
    CHECK(strstr(rr.checkpoint, "ckpt-") != NULL);

    /* the saved configuration reads back */
    dp_checkpoint *ck = dp_checkpoint_open_latest(ref_ck, quiet, &e);
    CHECK(ck != NULL);
    if (ck) {
        dp_text_train_config s;
        CHECK(strcmp(dp_checkpoint_task(ck), "text-classification") == 0);
        CHECK(dp_text_checkpoint_config(ck, &s, &e) == 0);
        CHECK(s.mode == mode && s.epochs == 3 && s.batch_size == 32 && s.seed == 5 && s.model.d_model == 16);
        CHECK(s.tokenizer.kind == DP_TOKENIZER_WORDS && s.tokenizer.buckets == 512 && s.model.dropout == 0.1f);
        CHECK(s.micro_batches == (mode == DP_TEXT_DPFP ? 2 : 1) && s.checkpoint_every == 1 && s.resume == ck);
        CHECK(strcmp(s.train_desc, "train.tsv") == 0 && strcmp(s.test_desc, "test.tsv") == 0);
        CHECK(dp_text_check_resume(ck, &s, d->tr, d->dev, d->test, &e) == 0);
        /* what cannot change */
        CHECK(dp_text_check_resume(ck, &s, d->dev, d->dev, d->test, &e) != 0 && strstr(e.msg, "another dataset"));
        CHECK(dp_text_check_resume(ck, &s, d->tr, NULL, d->test, &e) != 0 && strstr(e.msg, "dev set"));
        dp_text_train_config x = s;
        if (dp_tokenizer_parse("words:256", &x.tokenizer, NULL) != 0) abort();
        x.model.n_items = dp_tokenizer_vocab(&x.tokenizer) - 1;
        CHECK(dp_text_check_resume(ck, &x, d->tr, d->dev, d->test, &e) != 0 &&
              (strstr(e.msg, "tokenizer") || strstr(e.msg, "n-items")));
        x = s;
        x.mode = mode == DP_TEXT_DPSGD ? DP_TEXT_DPFP : DP_TEXT_DPSGD;
        x.dp.enabled = 1;
        CHECK(dp_text_check_resume(ck, &x, d->tr, d->dev, d->test, &e) != 0 && strstr(e.msg, "mode"));
        dp_checkpoint_free(ck);
    }

    /* resumed from a checkpoint: inside epoch 1, at the end of epoch 1, inside epoch 2, at the end */
    const int64_t at[] = {3, per_epoch, per_epoch + 5, total};
    int identical = 0;
    for (int k = 0; k < 4; k++) {
        char dir[300], ckd[320];
        snprintf(dir, sizeof dir, "%s/resume%d", root, k);
        snprintf(ckd, sizeof ckd, "%s/checkpoints", dir);
        copy_ckpt(ref_ck, at[k], ckd);
        dp_model *m = NULL;
        dp_text_train_result r;
        rc = resume_from(d, ckd, dir, &m, &r, &e);
        CHECK(rc == 0);
        if (rc) fprintf(stderr, "%s: resume from step %lld: %s\n", name, (long long)at[k], e.msg);
        CHECK(r.resumed_from_step == at[k] && r.resumes == 1);
        int same = rc == 0 && same_params(m, ref) && same_metrics(ref_out, dir) &&
                   (mode == DP_TEXT_NONPRIVATE || same_file(ref_out, dir, "privacy.json"));
        CHECK(same);
        CHECK(rc != 0 || (r.epsilon == rr.epsilon && r.test_acc == rr.test_acc && r.best_epoch == rr.best_epoch));
        identical += same;
        dp_model_free(m);
    }

    /* stopped in the middle of epoch 2 (a SIGTERM handler sets the flag), then resumed */
    {
        char dir[300], ckd[320];
        snprintf(dir, sizeof dir, "%s/stopped", root);
        snprintf(ckd, sizeof ckd, "%s/checkpoints", dir);
        volatile sig_atomic_t flag = 0;
        stopper st = {&flag, 0, (int)per_epoch + 4};
        cookie_io_functions_t io = {NULL, stopper_write, NULL, NULL};
        FILE *log = fopencookie(&st, "w", io);
        setvbuf(log, NULL, _IONBF, 0);
        dp_text_train_config s = config(mode);
        s.checkpoint_dir = ckd;
        s.out_dir = dir;
        s.checkpoint_every = 0; /* the stop writes its own checkpoint */
        s.train_desc = "train.tsv";
        s.dev_desc = "dev.tsv";
        s.test_desc = "test.tsv";
        s.log = log;
        s.progress = 1;
        s.stop = &flag;
        dp_model *m = NULL;
        dp_text_train_result r;
        rc = dp_text_train(&s, d->tr, d->dev, d->test, &m, &r, &e);
        fclose(log);
        CHECK(rc == DP_TRAIN_STOPPED && m == NULL && r.stopped_by == SIGTERM);
        CHECK(r.steps == per_epoch + 4 && strstr(e.msg, "stopped after step") && strstr(e.msg, "ckpt-"));
        char model[400];
        snprintf(model, sizeof model, "%s/model.safetensors", dir);
        CHECK(!exists(model));
        rc = resume_from(d, ckd, dir, &m, &r, &e);
        CHECK(rc == 0);
        int same = rc == 0 && same_params(m, ref) && same_metrics(ref_out, dir) &&
                   (mode == DP_TEXT_NONPRIVATE || same_file(ref_out, dir, "privacy.json"));
        CHECK(same);
        identical += same;
        dp_model_free(m);
    }
    fprintf(stderr, "%-11s resumed from 4 checkpoints and after a stop in epoch 2: %d of 5 bit-identical to the "
                    "uninterrupted run\n", name, identical);
    dp_model_free(ref);
    remove_dir(root);
}

/* Without a dev set: the last epoch, no dev accuracy (no "nan") and no claim of a selection by it. */
static void no_dev(const data3 *d) {
    char *root = new_dir();
    dp_text_train_config c = config(DP_TEXT_DPSGD);
    c.out_dir = root;
    c.checkpoint_dir = NULL;
    c.progress = 0;
    dp_model *m = NULL;
    dp_text_train_result r;
    dp_error e;
    CHECK(dp_text_train(&c, d->tr, NULL, d->test, &m, &r, &e) == 0);
    CHECK(r.best_epoch == 3 && isnan(r.dev_acc) && !isnan(r.test_acc));
    char path[300];
    snprintf(path, sizeof path, "%s/metrics.jsonl", root);
    char *mt = slurp(path);
    CHECK(mt && !strstr(mt, "nan") && !strstr(mt, "dev_accuracy") && !strstr(mt, "best epoch by"));
    CHECK(mt && strstr(mt, "\"model_selection\":\"last epoch (no dev set)\"") && strstr(mt, "\"test_accuracy\":"));
    CHECK(mt && strstr(mt, "\"epoch_seconds\":") && !strstr(mt, "\"seconds\":"));
    free(mt);
    snprintf(path, sizeof path, "%s/privacy.json", root);
    char *pj = slurp(path);
    CHECK(pj && strstr(pj, "last epoch (no dev set)") && !strstr(pj, "dev accuracy"));
    free(pj);
    dp_model_free(m);
    remove_dir(root);
}

/* A recommendation checkpoint is not a text run's. */
static void other_task(const data3 *d) {
    dp_dataset ds;
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    sc.n_users = 60;
    sc.n_items = 30;
    sc.max_len = 8;
    dp_dataset_synthetic(&ds, &sc);
    dp_train_config c = dp_train_config_default();
    c.model = dp_model_config_default(ds.n_items, 6);
    c.model.d_model = 8;
    c.epochs = 1;
    c.log = quiet;
    c.progress = -1;
    char *dir = new_dir();
    c.checkpoint_dir = dir;
    dp_model *m = NULL;
    dp_train_result r;
    dp_error e;
    CHECK(dp_train(&ds, &c, &m, &r, &e) == 0);
    dp_checkpoint *ck = dp_checkpoint_open_latest(dir, quiet, &e);
    CHECK(ck != NULL);
    if (ck) {
        dp_text_train_config t;
        CHECK(strcmp(dp_checkpoint_task(ck), "recommendation") == 0);
        CHECK(dp_text_checkpoint_config(ck, &t, &e) != 0 && strstr(e.msg, "dpformer train --resume"));
        t = config(DP_TEXT_NONPRIVATE);
        CHECK(dp_text_check_resume(ck, &t, d->tr, d->dev, d->test, &e) != 0 && strstr(e.msg, "recommendation"));
        dp_checkpoint_free(ck);
    }
    dp_model_free(m);
    dp_dataset_free(&ds);
    remove_dir(dir);
}

int main(void) {
    quiet = fopen("/dev/null", "w");
    dp_text_dataset tr, dev, test;
    synthetic(&tr, 320);
    synthetic(&dev, 60);
    synthetic(&test, 50);
    data3 d = {&tr, &dev, &test};
    one_mode(&d, DP_TEXT_NONPRIVATE);
    one_mode(&d, DP_TEXT_DPSGD);
    one_mode(&d, DP_TEXT_DPFP);
    no_dev(&d);
    other_task(&d);
    dp_text_dataset_free(&tr);
    dp_text_dataset_free(&dev);
    dp_text_dataset_free(&test);
    fclose(quiet);
    return tu_finish("test_text_resume");
}
