/* Text classification: a learning test on a small synthetic sentiment set for the three modes
 * (non-private, DP-SGD, DP-FP); DP-FP's accounting (M micro-batches per step are M·T mechanisms, and
 * ε is the accountant's for exactly those); the DP-FP clip bound and the noise scale; DP-FP's result
 * does not depend on the physical chunk size. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "dpformer/privacy.h"
#include "dpformer/textcls.h"
#include "model/model_internal.h"
#include "testutil.h"

static uint64_t rng = 77;

/* Sentences of filler words with one polarity word that decides the label. */
static void synthetic(dp_text_dataset *ds, int n) {
    static const char *pos[] = {"good", "great", "fine", "love", "nice", "superb"};
    static const char *neg[] = {"bad", "awful", "poor", "hate", "dull", "boring"};
    static const char *fill[] = {"the", "a", "movie", "film", "plot", "was", "is", "and", "it"};
    size_t cap = (size_t)n * 64 + 64, len = 0;
    char *buf = malloc(cap);
    len += (size_t)snprintf(buf, cap, "label\tsentence\n");
    for (int i = 0; i < n; i++) {
        int y = tu_uniform(&rng) < 0.5, words = 2 + (int)(tu_uniform(&rng) * 5), at = (int)(tu_uniform(&rng) * words);
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

static dp_text_train_config small_config(dp_text_mode mode) {
    dp_text_train_config c = dp_text_train_config_default(2);
    c.model.max_len = 24;
    c.model.d_model = 16;
    c.model.n_heads = 2;
    c.model.n_layers = 1;
    c.model.dropout = 0;
    c.mode = mode;
    c.epochs = 4;
    c.batch_size = 64;
    c.optim.lr = 3e-3;
    c.seed = 5;
    c.dp.seeded_noise = 1;
    c.dp.max_physical_batch = 128;
    c.log = fopen("/dev/null", "w");
    return c;
}

static void learning(const dp_text_dataset *tr, const dp_text_dataset *dev) {
    dp_text_mode modes[] = {DP_TEXT_NONPRIVATE, DP_TEXT_DPSGD, DP_TEXT_DPFP};
    double want[] = {0.9, 0.75, 0.75};
    for (int k = 0; k < 3; k++) {
        dp_text_train_config c = small_config(modes[k]);
        if (modes[k] != DP_TEXT_NONPRIVATE) {
            c.dp.noise_multiplier = 0.6;
            c.batch_size = 256;
            c.epochs = 6;
            c.optim.lr = 1e-2;
        }
        if (modes[k] == DP_TEXT_DPFP) {
            c.micro_batches = 2;
            c.dpfp_clip = 1;
        }
        dp_model *m = NULL;
        dp_text_train_result res;
        dp_error err;
        int rc = dp_text_train(&c, tr, dev, dev, &m, &res, &err);
        CHECK(rc == 0);
        if (rc) fprintf(stderr, "%s: %s\n", dp_text_mode_name(modes[k]), err.msg);
        fprintf(stderr, "%-11s dev accuracy %.3f (epochs %d, epsilon %.3f)\n", dp_text_mode_name(modes[k]), res.dev_acc,
                res.epochs_run, res.epsilon);
        CHECK(res.dev_acc >= want[k]);
        CHECK_CLOSE(res.test_acc, res.dev_acc, 1e-12); /* the kept model is the one evaluated */
        if (modes[k] != DP_TEXT_NONPRIVATE) {
            /* accounting: M events per step, and ε is the accountant's for exactly those */
            int M = modes[k] == DP_TEXT_DPFP ? c.micro_batches : 1;
            CHECK(res.mechanism_events == (int64_t)M * res.steps);
            CHECK(res.steps == (int64_t)c.epochs * (tr->n / c.batch_size));
            dp_history h;
            dp_history_init(&h);
            dp_history_add_poisson_gaussian(&h, c.dp.noise_multiplier, res.sample_rate, res.mechanism_events, &err);
            dp_accounting_options o;
            dp_accounting_default_options(&o);
            double eps = 0;
            CHECK(dp_epsilon(&h, c.dp.delta, &o, &eps, &err) == 0);
            CHECK_CLOSE(res.epsilon, eps, 1e-12);
            /* counting only T events would report less */
            dp_history h1;
            dp_history_init(&h1);
            dp_history_add_poisson_gaussian(&h1, c.dp.noise_multiplier, res.sample_rate, res.steps, &err);
            double eps1 = 0;
            dp_epsilon(&h1, c.dp.delta, &o, &eps1, &err);
            if (M > 1) CHECK(eps1 < res.epsilon);
            CHECK_CLOSE(res.sample_rate, (double)c.batch_size / ((double)M * (double)tr->n), 1e-12);
            dp_history_free(&h);
            dp_history_free(&h1);
        }
        fclose(c.log);
        dp_model_free(m);
    }
}

/* A target ε is met with DP-FP calibrated for M·T events, never exceeded. */
static void calibration(const dp_text_dataset *tr) {
    dp_text_train_config c = small_config(DP_TEXT_DPFP);
    c.micro_batches = 3;
    c.epochs = 1;
    c.dp.target_epsilon = 3;
    dp_model *m = NULL;
    dp_text_train_result res;
    dp_error err;
    CHECK(dp_text_train(&c, tr, NULL, NULL, &m, &res, &err) == 0);
    CHECK(res.epsilon <= 3 + 1e-9 && res.epsilon > 2.9);
    CHECK(res.mechanism_events == 3 * res.steps);
    fclose(c.log);
    dp_model_free(m);
}

/* DP-FP draws the representation noise of a whole micro-batch at once, one row per example, and every
 * example keeps the dropout masks of its place in a full window, so the physical chunks
 * (max_physical_batch) change the model only through the order of float sums: the parameters agree
 * with a run in chunks of at most 7 examples to 1e-3 (relative, as tests/cli_mpi.sh), whereas noise or
 * masks drawn chunk by chunk would differ entirely; the accounting is the same. Not compared: the
 * attention's key bias, whose gradient is zero in exact arithmetic (softmax ignores a score added to a
 * whole row), so that AdamW, without gradient noise, turns the sums' last bits into steps of size lr. */
static void dpfp_chunks(const dp_text_dataset *tr) {
    dp_model *m[2] = {NULL, NULL};
    dp_text_train_result res[2];
    const int caps[2] = {128, 7};
    dp_text_dataset first = *tr; /* the first 1,500 sentences (a view: not freed) */
    first.n = 1500;
    for (int k = 0; k < 2; k++) {
        dp_text_train_config c = small_config(DP_TEXT_DPFP);
        c.micro_batches = 2;
        c.dpfp_clip = 1;
        c.dp.noise_multiplier = 1;
        c.model.dropout = 0.1;
        c.batch_size = 256;
        c.epochs = 1;
        c.dp.max_physical_batch = caps[k];
        dp_error err;
        int rc = dp_text_train(&c, &first, NULL, NULL, &m[k], &res[k], &err);
        CHECK(rc == 0);
        if (rc) fprintf(stderr, "dp-fp, chunks of %d: %s\n", caps[k], err.msg);
        fclose(c.log);
    }
    if (m[0] && m[1]) {
        const dp_real *a = dp_model_params(m[0]), *b = dp_model_params(m[1]);
        double worst = 0;
        for (int k = 0; k < dp_model_num_tensors(m[0]); k++) {
            const dp_param_tensor *t = dp_model_tensor(m[0], k);
            const size_t n = strlen(t->name), third = t->size / 3;
            const int qkv_bias = n >= 13 && strcmp(t->name + n - 13, "attn.qkv.bias") == 0;
            for (size_t i = 0; i < t->size; i++) {
                if (qkv_bias && i >= third && i < 2 * third) continue; /* the key bias */
                const size_t j = t->offset + i;
                worst = fmax(worst, fabs((double)a[j] - b[j]) / fmax(1e-3, fabs((double)a[j])));
            }
        }
        fprintf(stderr, "dp-fp       chunks of 128 and of 7: parameters differ by %.1e (relative)\n", worst);
        CHECK(worst < 1e-3);
        CHECK(res[0].epsilon == res[1].epsilon && res[0].mechanism_events == res[1].mechanism_events);
    }
    dp_model_free(m[0]);
    dp_model_free(m[1]);
}

/* The clip bound in every pass and the noise scale of DP-FP. */
static void clip_and_noise(void) {
    dp_model_config mc = dp_model_config_default(DP_TEXT_VOCAB - 1, 16);
    mc.d_model = 16;
    mc.n_heads = 2;
    mc.n_layers = 1;
    mc.tied = 0;
    mc.causal = 0;
    mc.n_classes = 3;
    mc.pool = DP_POOL_MEAN;
    mc.rep_clip = 0.25;
    dp_error err;
    dp_model *m = dp_model_create(&mc, 8, 3, &err);
    CHECK(m != NULL);
    /* large weights so that the pooled states are far outside the clip */
    dp_real *p = dp_model_params(m);
    for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += (dp_real)(2 * tu_normal(&rng));
    int32_t ids[8 * 16], lab[8];
    for (int i = 0; i < 8 * 16; i++) ids[i] = (i % 16) < 3 + i / 16 ? 1 + (int)(tu_uniform(&rng) * 258) : 0;
    for (int b = 0; b < 8; b++) lab[b] = b % 3;
    dp_batch bt = {8, 16, ids, NULL, lab};
    for (int train = 0; train <= 1; train++) {
        dp_model_forward(m, &bt, train, 1, NULL);
        for (int b = 0; b < 8; b++) {
            double sq = 0, sp = 0;
            for (int i = 0; i < 16; i++) {
                sq += (double)m->a.rep[b * 16 + i] * m->a.rep[b * 16 + i];
                sp += (double)m->a.pooled[b * 16 + i] * m->a.pooled[b * 16 + i];
            }
            CHECK(sqrt(sq) <= 0.25 * (1 + 1e-6)); /* never above C */
            CHECK(sqrt(sp) > 0.25);               /* the clip was active */
            CHECK_CLOSE(sqrt(sq), 0.25, 1e-5);
        }
    }
    dp_real z[8 * 3];
    dp_model_class_logits(m, ids, 8, z); /* evaluation clips too */
    for (int b = 0; b < 8; b++) {
        double sq = 0;
        for (int i = 0; i < 16; i++) sq += (double)m->a.rep[b * 16 + i] * m->a.rep[b * 16 + i];
        CHECK(sqrt(sq) <= 0.25 * (1 + 1e-6));
    }
    dp_model_free(m);

    /* DP-FP noise: std σ·C per coordinate, mean 0 */
    dp_rng *r = dp_rng_create_seeded(9);
    const int B = 512, d = 64;
    dp_real *noise = malloc(sizeof(dp_real) * B * d);
    CHECK(dp_text_dpfp_noise(r, noise, B, d, 1.5, 0.4, &err) == 0);
    double s = 0, s2 = 0;
    for (int i = 0; i < B * d; i++) {
        s += noise[i];
        s2 += (double)noise[i] * noise[i];
    }
    double mean = s / (B * d), sd = sqrt(s2 / (B * d) - mean * mean);
    CHECK(fabs(mean) < 5 * 0.6 / sqrt(B * d));
    CHECK(fabs(sd - 0.6) < 0.6 * 0.02); /* 32,768 draws: the standard error of sd is 0.4 % */
    free(noise);
    dp_rng_free(r);
}

/* Length-trimmed windows (model_set_window, used by the training loop's length-sorted chunks) compute
 * exactly what the full window computes for right-padded sentences that fit: per-example losses,
 * the parameter gradient (all of it, positional rows past the window included: zero), per-example
 * clipped-gradient norms, and logits, for both poolings. A window that cut tokens would change them. */
static void trimmed_windows(void) {
    enum { B = 6, L = 20, T = 9 };
    for (int pool = 0; pool <= 1; pool++) {
        dp_model_config mc = dp_model_config_default(DP_TEXT_VOCAB - 1, L);
        mc.d_model = 16;
        mc.n_heads = 2;
        mc.n_layers = 2;
        mc.tied = 0;
        mc.causal = 0;
        mc.dropout = 0;
        mc.n_classes = 2;
        mc.pool = pool;
        dp_error err;
        dp_model *m = dp_model_create(&mc, B, 11, &err);
        CHECK(m != NULL);
        if (!m) return;
        dp_real *p = dp_model_params(m);
        for (size_t i = 0; i < dp_model_num_params(m); i++) p[i] += (dp_real)(0.05 * tu_normal(&rng));
        int32_t full[B * L], win[B * T], lab[B];
        for (int b = 0; b < B; b++) {
            int n = 2 + b % (T - 1); /* tokens incl. [CLS], at most T */
            for (int t = 0; t < L; t++) full[b * L + t] = t == 0 ? DP_TEXT_CLS : t < n ? 3 + (int)(tu_uniform(&rng) * 250) : 0;
            for (int t = 0; t < T; t++) win[b * T + t] = full[b * L + t];
            lab[b] = b % 2;
        }
        const size_t np = dp_model_num_params(m);
        dp_real *g_full = malloc(sizeof(dp_real) * np), w[B];
        double l_full[B], l_win[B], n_full[B], n_win[B];
        for (int b = 0; b < B; b++) w[b] = (dp_real)(1.0 / B);
        dp_batch bf = {B, L, full, NULL, lab}, bw = {B, T, win, NULL, lab};
        dp_model_zero_grad(m);
        dp_model_forward_backward(m, &bf, w, 1, 5, l_full);
        memcpy(g_full, dp_model_grads(m), sizeof(dp_real) * np);
        model_set_window(m, T);
        CHECK(dp_model_config_of(m)->max_len == T);
        dp_model_zero_grad(m);
        dp_model_forward_backward(m, &bw, w, 1, 5, l_win);
        double gmax = 0, dmax = 0;
        for (size_t i = 0; i < np; i++) {
            gmax = fmax(gmax, fabs((double)g_full[i]));
            dmax = fmax(dmax, fabs((double)g_full[i] - (double)dp_model_grads(m)[i]));
        }
        CHECK(dmax <= 1e-5 * gmax && gmax > 0);
        for (int b = 0; b < B; b++) CHECK_CLOSE(l_win[b], l_full[b], 1e-5);
        /* per-example norms of the clipping engine */
        dp_model_zero_grad(m);
        CHECK(dp_clipped_grad(m, &bw, DP_CLIP_AUTO, 1e-3, 1, 5, 0, n_win, NULL, &err) == 0);
        model_set_window(m, 0);
        CHECK(dp_model_config_of(m)->max_len == L);
        dp_model_zero_grad(m);
        CHECK(dp_clipped_grad(m, &bf, DP_CLIP_AUTO, 1e-3, 1, 5, 0, n_full, NULL, &err) == 0);
        for (int b = 0; b < B; b++) CHECK_CLOSE(n_win[b], n_full[b], 1e-5);
        /* logits */
        dp_real z_full[B * 2], z_win[B * 2];
        dp_model_class_logits(m, full, B, z_full);
        model_set_window(m, T);
        dp_model_class_logits(m, win, B, z_win);
        model_set_window(m, 0);
        for (int i = 0; i < B * 2; i++) CHECK_CLOSE(z_win[i], z_full[i], 1e-5);
        /* a window shorter than the longest sentence changes the result (the check can fail) */
        int32_t cut[B * 4];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < 4; t++) cut[b * 4 + t] = full[b * L + t];
        dp_real z_cut[B * 2];
        model_set_window(m, 4);
        dp_model_class_logits(m, cut, B, z_cut);
        model_set_window(m, 0);
        double diff = 0;
        for (int i = 0; i < B * 2; i++) diff = fmax(diff, fabs((double)z_cut[i] - (double)z_full[i]));
        CHECK(diff > 1e-4);
        free(g_full);
        dp_model_free(m);
    }
}

/* The hashed-word tokenizer end to end: a classifier learns with it, its model file records it, and a
 * loaded model evaluates with it (same accuracy); a model whose vocabulary does not match its
 * tokenizer is refused. */
static void words_tokenizer(const dp_text_dataset *tr, const dp_text_dataset *dev) {
    dp_text_train_config c = small_config(DP_TEXT_NONPRIVATE);
    dp_error err;
    CHECK(dp_tokenizer_parse("words:512", &c.tokenizer, &err) == 0);
    /* the byte-level vocabulary does not fit the word tokenizer */
    dp_model *m = NULL;
    dp_text_train_result res;
    CHECK(dp_text_train(&c, tr, dev, NULL, &m, &res, &err) != 0 && strstr(err.msg, "vocabulary") != NULL);
    c.model.n_items = dp_tokenizer_vocab(&c.tokenizer) - 1;
    c.model.max_len = 10;
    c.epochs = 2;
    char dir[] = "/tmp/dpformer-textcls-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    c.out_dir = dir;
    int rc = dp_text_train(&c, tr, dev, NULL, &m, &res, &err);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "words: %s\n", err.msg);
        return;
    }
    fprintf(stderr, "words:512   dev accuracy %.3f\n", res.dev_acc);
    CHECK(res.dev_acc >= 0.95);
    CHECK(strcmp(dp_model_config_of(m)->tokenizer, "words:512") == 0);
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    dp_model *back = dp_model_load(path, 64, &err);
    CHECK(back != NULL);
    if (back) {
        dp_tokenizer t;
        CHECK(dp_text_model_tokenizer(back, &t, &err) == 0 && t.kind == DP_TOKENIZER_WORDS && t.buckets == 512);
        CHECK_CLOSE(dp_text_accuracy(back, dev, &err), res.dev_acc, 1e-12);
        dp_model_free(back);
    }
    /* a mismatch between the stored tokenizer and the vocabulary is refused */
    dp_model_config mc = c.model;
    snprintf(mc.tokenizer, sizeof mc.tokenizer, "words:100");
    dp_model *odd = dp_model_create(&mc, 4, 1, &err);
    CHECK(odd != NULL);
    if (odd) {
        dp_tokenizer t;
        CHECK(dp_text_model_tokenizer(odd, &t, &err) != 0 && strstr(err.msg, "words:100") != NULL);
        CHECK(dp_text_accuracy(odd, dev, &err) != dp_text_accuracy(odd, dev, &err)); /* NaN */
        dp_model_free(odd);
    }
    /* the spec field accepts only the spec alphabet */
    snprintf(mc.tokenizer, sizeof mc.tokenizer, "words\":1");
    CHECK(dp_model_create(&mc, 4, 1, &err) == NULL && strstr(err.msg, "tokenizer") != NULL);
    char cmdl[400];
    snprintf(cmdl, sizeof cmdl, "rm -rf '%s'", dir);
    CHECK(system(cmdl) == 0);
    fclose(c.log);
    dp_model_free(m);
}

int main(void) {
    dp_text_dataset tr, dev;
    synthetic(&tr, 6000);
    synthetic(&dev, 400);
    clip_and_noise();
    trimmed_windows();
    calibration(&tr);
    dpfp_chunks(&tr);
    learning(&tr, &dev);
    words_tokenizer(&tr, &dev);
    dp_text_dataset_free(&tr);
    dp_text_dataset_free(&dev);
    return tu_finish("test_textcls");
}
