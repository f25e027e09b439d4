/* The training loop for next-item recommendation: shuffled mini-batches of users' training windows,
 * AdamW/SGD, per-epoch validation with model selection by NDCG@10, JSON-lines metrics, progress on a
 * terminal, and the final model saved with its configuration. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>

#include "core/common.h"
#include "dpformer/train.h"

dp_train_config dp_train_config_default(void) {
    dp_train_config c;
    memset(&c, 0, sizeof c);
    c.model = dp_model_config_default(0, 50);
    c.optim = dp_optim_config_default();
    c.epochs = 20;
    c.batch_size = 256;
    c.eval_every = 1;
    c.seed = 1;
    c.progress = 0;
    return c;
}

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void shuffle(int32_t *a, int32_t n, uint64_t seed) {
    uint64_t s = seed;
    for (int32_t i = n - 1; i > 0; i--) {
        s = mix(s);
        int32_t j = (int32_t)(s % (uint64_t)(i + 1));
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void progress_bar(FILE *f, int epoch, int epochs, double frac, double loss, double rate) {
    char bar[31];
    int k = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < k ? '#' : '.';
    bar[30] = 0;
    fprintf(f, "\r  epoch %d/%d [%s] %3.0f%%  loss %.4f  %.0f ex/s ", epoch, epochs, bar, 100 * frac, loss, rate);
    fflush(f);
}

static int check_config(const dp_dataset *ds, const dp_train_config *c, dp_error *err) {
    if (c->epochs < 1) return dp_fail(err, "train: epochs must be at least 1");
    if (c->batch_size < 1) return dp_fail(err, "train: batch size must be at least 1");
    if (c->eval_every < 1) return dp_fail(err, "train: eval-every must be at least 1");
    if (!(c->optim.lr > 0)) return dp_fail(err, "train: learning rate must be positive");
    if (c->model.n_items != ds->n_items)
        return dp_fail(err, "train: model has %d items but the dataset has %d", c->model.n_items, ds->n_items);
    return dp_model_config_validate(&c->model, err);
}

int dp_train(const dp_dataset *ds, const dp_train_config *cfg, dp_model **out_model, dp_train_result *res,
             dp_error *err) {
    memset(res, 0, sizeof *res);
    *out_model = NULL;
    if (check_config(ds, cfg, err)) return -1;
    FILE *log = cfg->log ? cfg->log : stderr;
    const int L = cfg->model.max_len, Bmax = cfg->batch_size;

    int32_t *users = dp_malloc(sizeof(int32_t) * (size_t)(ds->n_users > 0 ? ds->n_users : 1));
    int32_t n_train = 0;
    for (int32_t u = 0; u < ds->n_users; u++)
        if (dp_split_history(ds, u, DP_SPLIT_TRAIN) >= 2) users[n_train++] = u;
    if (n_train == 0) {
        free(users);
        return dp_fail(err, "train: no user has at least 2 training items (nothing to learn from)");
    }
    FILE *metrics = NULL;
    if (cfg->out_dir) {
        if (dp_mkdir_p(cfg->out_dir, err)) {
            free(users);
            return -1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
        metrics = fopen(path, "w");
        if (!metrics) {
            free(users);
            return dp_fail(err, "%s: cannot open for writing: %s", path, strerror(errno));
        }
    }

    dp_model *m = dp_model_create(&cfg->model, Bmax, cfg->seed, err);
    if (!m) {
        free(users);
        if (metrics) fclose(metrics);
        return -1;
    }
    const int64_t steps_per_epoch = (n_train + Bmax - 1) / Bmax;
    dp_optim_config oc = cfg->optim;
    if (oc.schedule == DP_SCHED_COSINE && oc.total_steps <= 0) oc.total_steps = steps_per_epoch * cfg->epochs;
    dp_optimizer *opt = dp_optimizer_create(&oc, m);

    const size_t np = dp_model_num_params(m);
    dp_real *best = dp_malloc(sizeof(dp_real) * np);
    double best_ndcg = -1;
    int32_t *ids = dp_malloc(sizeof(int32_t) * (size_t)Bmax * L), *tgt = dp_malloc(sizeof(int32_t) * (size_t)Bmax * L);
    dp_real *w = dp_malloc(sizeof(dp_real) * (size_t)Bmax);
    double *el = dp_malloc(sizeof(double) * (size_t)Bmax);
    double t_start = dp_now(), train_time = 0;
    int64_t step = 0, examples = 0;
    int rc = 0;

    for (int epoch = 1; epoch <= cfg->epochs && rc == 0; epoch++) {
        double t0 = dp_now(), loss_sum = 0;
        int64_t loss_n = 0;
        shuffle(users, n_train, mix(cfg->seed * 1000003u + (uint64_t)epoch));
        for (int32_t s = 0; s < n_train; s += Bmax) {
            int B = (int)DP_MIN((int32_t)Bmax, n_train - s);
            for (int b = 0; b < B; b++) {
                int32_t u = users[s + b];
                dp_make_train_window(ids + (size_t)b * L, tgt + (size_t)b * L, ds->items + ds->offsets[u],
                                     dp_split_history(ds, u, DP_SPLIT_TRAIN), L);
                w[b] = (dp_real)(1.0 / B);
            }
            dp_batch bt = {B, L, ids, tgt};
            dp_model_zero_grad(m);
            dp_model_forward_backward(m, &bt, w, 1, mix(cfg->seed ^ mix((uint64_t)step)), el);
            double bl = 0;
            for (int b = 0; b < B; b++) bl += el[b];
            if (!isfinite(bl)) {
                rc = dp_fail(err, "train: non-finite loss at epoch %d step %lld (learning rate too high?)", epoch,
                             (long long)step);
                break;
            }
            dp_optimizer_step(opt, m);
            loss_sum += bl;
            loss_n += B;
            step++;
            examples += B;
            if (cfg->progress == 1)
                progress_bar(log, epoch, cfg->epochs, (double)(s + B) / n_train, loss_sum / loss_n,
                             loss_n / (dp_now() - t0));
        }
        if (rc) break;
        double epoch_time = dp_now() - t0;
        train_time += epoch_time;
        double train_loss = loss_sum / (double)loss_n;
        if (epoch == 1) res->first_train_loss = train_loss;
        res->final_train_loss = train_loss;
        res->epochs_run = epoch;
        int do_eval = epoch % cfg->eval_every == 0 || epoch == cfg->epochs;
        dp_rank_metrics vm;
        memset(&vm, 0, sizeof vm);
        if (do_eval) {
            dp_evaluate(m, ds, DP_SPLIT_VALID, cfg->exclude_seen, cfg->max_eval_users, &vm);
            if (vm.ndcg10 > best_ndcg) {
                best_ndcg = vm.ndcg10;
                res->best_epoch = epoch;
                res->valid = vm;
                memcpy(best, dp_model_params(m), sizeof(dp_real) * np);
            }
        }
        if (cfg->progress == 1) fprintf(log, "\r%*s\r", 90, "");
        if (cfg->progress >= 0) {
            fprintf(log, "epoch %d/%d  loss %.4f", epoch, cfg->epochs, train_loss);
            if (do_eval) fprintf(log, "  valid NDCG@10 %.4f HR@10 %.4f", vm.ndcg10, vm.hr10);
            fprintf(log, "  %.1fs  %.0f ex/s\n", epoch_time, loss_n / epoch_time);
            fflush(log);
        }
        if (metrics) {
            fprintf(metrics, "{\"epoch\":%d,\"step\":%lld,\"train_loss\":%.6f,\"lr\":%.6g", epoch, (long long)step,
                    train_loss, dp_optimizer_lr(opt));
            if (do_eval)
                fprintf(metrics, ",\"valid_ndcg10\":%.6f,\"valid_hr10\":%.6f,\"valid_ndcg20\":%.6f,\"valid_hr20\":%.6f",
                        vm.ndcg10, vm.hr10, vm.ndcg20, vm.hr20);
            fprintf(metrics, ",\"epoch_seconds\":%.3f,\"elapsed_seconds\":%.3f,\"examples_per_second\":%.1f}\n",
                    epoch_time, dp_now() - t_start, loss_n / epoch_time);
            fflush(metrics);
        }
    }
    if (rc == 0) {
        memcpy(dp_model_params(m), best, sizeof(dp_real) * np);
        dp_evaluate(m, ds, DP_SPLIT_TEST, cfg->exclude_seen, cfg->max_eval_users, &res->test);
        res->seconds_per_epoch = train_time / res->epochs_run;
        res->examples_per_second = examples / train_time;
        if (metrics)
            fprintf(metrics,
                    "{\"final\":true,\"best_epoch\":%d,\"valid_ndcg10\":%.6f,\"valid_hr10\":%.6f,\"test_ndcg10\":%.6f,"
                    "\"test_hr10\":%.6f,\"test_ndcg20\":%.6f,\"test_hr20\":%.6f,\"seconds_per_epoch\":%.3f}\n",
                    res->best_epoch, res->valid.ndcg10, res->valid.hr10, res->test.ndcg10, res->test.hr10,
                    res->test.ndcg20, res->test.hr20, res->seconds_per_epoch);
        if (cfg->out_dir) {
            char path[4096], meta[1024];
            snprintf(path, sizeof path, "%s/model.safetensors", cfg->out_dir);
            snprintf(meta, sizeof meta,
                     "{\"data\":\"%s\",\"epochs\":%d,\"best_epoch\":%d,\"seed\":%llu,\"valid_ndcg10\":%.6f,"
                     "\"test_ndcg10\":%.6f,\"private\":false}",
                     cfg->data_desc ? cfg->data_desc : "", res->epochs_run, res->best_epoch,
                     (unsigned long long)cfg->seed, res->valid.ndcg10, res->test.ndcg10);
            rc = dp_model_save(m, path, meta, err);
        }
    }
    if (metrics && fclose(metrics) != 0 && rc == 0) rc = dp_fail(err, "%s/metrics.jsonl: write failed", cfg->out_dir);
    free(users);
    free(best);
    free(ids);
    free(tgt);
    free(w);
    free(el);
    dp_optimizer_free(opt);
    if (rc) {
        dp_model_free(m);
        return rc;
    }
    *out_model = m;
    return 0;
}
