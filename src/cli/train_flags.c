/* Shared flags of the training commands (see train_flags.h): model and optimisation settings
 * (`train`, `demo`), and the checkpoint flags and --resume handling of `train` and `train-text`. */
#include "cli/train_flags.h"

#include <stdio.h>
#include <unistd.h>

#include "cli/commands.h"
#include "dpformer/checkpoint.h"
#include "ops/ops.h"
#include "train/checkpoint_internal.h"

void train_flags_defaults(train_flags *f) {
    memset(f, 0, sizeof *f);
    f->device = "cpu";
    f->max_len = 50;
    f->d_model = 64;
    f->n_heads = 1;
    f->n_layers = 2;
    f->epochs = 20;
    f->batch_size = 256;
    f->eval_every = 1;
    f->dropout = 0.2;
    f->lr = 1e-3;
    f->momentum = 0.9;
    f->seed = 1;
    f->optimizer = "adamw";
    f->schedule = "constant";
    dp_privacy_config p = dp_privacy_config_default();
    f->noise_multiplier = -1; /* unset */
    f->delta = p.delta;
    f->max_grad_norm = p.max_grad_norm;
    f->max_physical_batch = p.max_physical_batch;
    f->clip_mode = "auto";
    f->accountant = "rdp";
    f->reattention_scale = p.reattention_scale;
    f->item_freq_noise = p.item_freq_noise;
    f->item_freq = "private";
}

void train_flags_specs(train_flags *f, arg_spec *o) {
    arg_spec s[TRAIN_FLAG_COUNT] = {
        ARG_IR("max-len", &f->max_len, "window length L (positions per sequence)", 1, 100000),
        ARG_IR("d-model", &f->d_model, "model width d", 1, 65536),
        ARG_IR("n-heads", &f->n_heads, "attention heads (must divide d-model)", 1, 65536),
        ARG_IR("n-layers", &f->n_layers, "Transformer blocks", 0, 64),
        ARG_IR("d-ff", &f->d_ff, "feed-forward width (0 = 4 x d-model)", 0, 1 << 20),
        ARG_F("untied", &f->untied, "separate output layer instead of the tied item embedding"),
        ARG_DR("dropout", &f->dropout, "dropout rate (embeddings, attention, residual branches)", 0, 0.95),
        ARG_S("optimizer", &f->optimizer, "adamw or sgd"),
        ARG_DR("lr", &f->lr, "learning rate", 1e-12, 1e3),
        ARG_DR("weight-decay", &f->weight_decay, "weight decay of the weight matrices", 0, 10),
        ARG_DR("momentum", &f->momentum, "SGD momentum", 0, 0.9999),
        ARG_S("schedule", &f->schedule, "learning-rate schedule: constant, warmup or cosine"),
        ARG_LR("warmup-steps", &f->warmup_steps, "linear warm-up steps (warmup, cosine)", 0, 1e12),
        ARG_DR("min-lr-ratio", &f->min_lr_ratio, "cosine: final lr as a fraction of --lr", 0, 1),
        ARG_IR("epochs", &f->epochs, "training epochs", 1, 1000000),
        ARG_IR("batch-size", &f->batch_size, "sequences per step", 1, 1 << 20),
        ARG_IR("eval-every", &f->eval_every, "validate every k epochs (the best epoch is kept)", 1, 1000000),
        ARG_F("exclude-seen", &f->exclude_seen, "exclude a user's history items from the ranking"),
        ARG_LR("max-eval-users", &f->max_eval_users, "evaluate on the first N users only (0 = all)", 0, 1e12),
        ARG_LR("seed", &f->seed, "random seed (initialisation, order, dropout)", 0, 9.2e18),
        ARG_IR("threads", &f->threads, "threads (0 = all cores)", 0, 4096),
        ARG_S("device", &f->device, "where the model runs: cpu or cuda (an NVIDIA GPU; docs/gpu.md)"),
        ARG_F("keep-last", &f->keep_last, "keep the last epoch's model instead of the best by validation NDCG@10 "
                                          "(the default with --dp)"),
        ARG_F("select-best", &f->select_best, "DP: keep the best epoch by validation NDCG@10 instead of the last; the "
                                              "printed epsilon does NOT cover that choice"),
        ARG_F("dp", &f->dp, "train with DP-SGD (privacy unit: one user's whole sequence)"),
        ARG_DR("noise-multiplier", &f->noise_multiplier, "DP: noise std / max grad norm (sigma); 0 = clipping only, no privacy (-1 = unset)", 0, 1e6),
        ARG_DR("target-epsilon", &f->target_epsilon, "DP: calibrate sigma so the planned run has this epsilon; with --noise-multiplier, stop before exceeding it", 1e-6, 1e6),
        ARG_DR("delta", &f->delta, "DP: delta of the (epsilon, delta) guarantee", 1e-300, 0.999999),
        ARG_DR("max-grad-norm", &f->max_grad_norm, "DP: per-example clipping norm C", 1e-12, 1e12),
        ARG_DR("sample-rate", &f->sample_rate, "DP: Poisson sampling rate q (default batch-size / training users)", 1e-12, 1),
        ARG_IR("max-physical-batch", &f->max_physical_batch, "DP: examples processed at once (memory bound)", 1, 1 << 20),
        ARG_S("clip-mode", &f->clip_mode, "DP: auto, phantom, ghost or naive"),
        ARG_S("accountant", &f->accountant, "DP: rdp or pld"),
        ARG_F("seeded-noise", &f->seeded_noise, "DP: reproducible noise from --seed (testing only: NOT private)"),
        ARG_F("reattention", &f->reattention, "DP: Re-Attention, the attention correction for DP noise (docs/reattention.md)"),
        ARG_DR("reattention-scale", &f->reattention_scale, "DP: Re-Attention scale kappa", 0, 1e6),
        ARG_S("item-freq", &f->item_freq, "Re-Attention item frequencies: private (released, costs epsilon) or public:FILE"),
        ARG_DR("item-freq-noise", &f->item_freq_noise, "Re-Attention: noise multiplier of the private frequency release", 1e-6, 1e9),
        ARG_IR("item-freq-cap", &f->item_freq_cap, "Re-Attention: distinct items per user counted (0 = max-len)", 0, 1 << 20),
    };
    memcpy(o, s, sizeof s);
}

int train_flags_to_config(const char *cmd, const train_flags *f, dp_train_config *cfg) {
    *cfg = dp_train_config_default();
    dp_model_config *m = &cfg->model;
    m->max_len = f->max_len;
    m->d_model = f->d_model;
    m->n_heads = f->n_heads;
    m->n_layers = f->n_layers;
    m->d_ff = f->d_ff;
    m->tied = !f->untied;
    m->causal = 1;
    m->dropout = (float)f->dropout;
    if (f->d_model % f->n_heads != 0) {
        fprintf(stderr, "%s: --d-model %d is not divisible by --n-heads %d\n", cmd, f->d_model, f->n_heads);
        return 2;
    }
    dp_optim_config *o = &cfg->optim;
    if (dp_optimizer_kind_parse(f->optimizer, &o->kind)) {
        fprintf(stderr, "%s: --optimizer: unknown optimizer '%s' (adamw or sgd)\n", cmd, f->optimizer);
        return 2;
    }
    if (dp_schedule_kind_parse(f->schedule, &o->schedule)) {
        fprintf(stderr, "%s: --schedule: unknown schedule '%s' (constant, warmup or cosine)\n", cmd, f->schedule);
        return 2;
    }
    o->lr = f->lr;
    o->weight_decay = f->weight_decay;
    o->momentum = f->momentum;
    o->warmup_steps = f->warmup_steps;
    o->min_lr_ratio = f->min_lr_ratio;
    cfg->epochs = f->epochs;
    cfg->batch_size = f->batch_size;
    cfg->eval_every = f->eval_every;
    cfg->exclude_seen = f->exclude_seen;
    cfg->max_eval_users = f->max_eval_users;
    cfg->seed = (uint64_t)f->seed;
    if (f->keep_last && f->select_best) {
        fprintf(stderr, "%s: --keep-last and --select-best exclude each other (on --resume, the run's saved choice "
                        "counts as given: model selection cannot change within a run)\n", cmd);
        return 2;
    }
    /* Under --dp the last epoch is kept unless --select-best: choosing by validation NDCG@10 looks at each
     * user's held-out validation item, which the accounted steps never touch (docs/privacy.md). Without
     * DP the best epoch is kept, as always. */
    cfg->keep_last = f->keep_last || (f->dp && !f->select_best);
    dp_privacy_config *p = &cfg->dp;
    p->enabled = f->dp;
    p->noise_multiplier = f->noise_multiplier > 0 ? f->noise_multiplier : 0;
    p->target_epsilon = f->target_epsilon;
    p->delta = f->delta;
    p->max_grad_norm = f->max_grad_norm;
    p->sample_rate = f->sample_rate;
    p->max_physical_batch = f->max_physical_batch;
    p->seeded_noise = f->seeded_noise;
    if (dp_clip_mode_parse(f->clip_mode, &p->clip_mode)) {
        fprintf(stderr, "%s: --clip-mode: unknown mode '%s' (auto, phantom, ghost or naive)\n", cmd, f->clip_mode);
        return 2;
    }
    p->reattention = f->reattention;
    p->reattention_scale = f->reattention_scale;
    p->item_freq_noise = f->item_freq_noise;
    p->item_freq_cap = f->item_freq_cap;
    if (strncmp(f->item_freq, "public:", 7) == 0 && f->item_freq[7]) {
        p->item_freq_public = f->item_freq + 7;
    } else if (strcmp(f->item_freq, "private") != 0) {
        fprintf(stderr, "%s: --item-freq: expected private or public:FILE (got '%s')\n", cmd, f->item_freq);
        return 2;
    }
    if (f->reattention && !f->dp) {
        fprintf(stderr, "%s: --reattention corrects DP-SGD noise: it needs --dp\n", cmd);
        return 2;
    }
    if (strcmp(f->accountant, "rdp") == 0) p->accountant = DP_ACCOUNTANT_RDP;
    else if (strcmp(f->accountant, "pld") == 0) p->accountant = DP_ACCOUNTANT_PLD;
    else {
        fprintf(stderr, "%s: --accountant: unknown accountant '%s' (rdp or pld)\n", cmd, f->accountant);
        return 2;
    }
    if (f->dp && f->noise_multiplier < 0 && f->target_epsilon == 0) {
        fprintf(stderr, "%s: --dp needs --target-epsilon or --noise-multiplier\n", cmd);
        return 2;
    }
    if (f->dp && f->noise_multiplier == 0 && f->target_epsilon > 0) {
        fprintf(stderr, "%s: --noise-multiplier 0 gives no privacy, so no --target-epsilon can be met\n", cmd);
        return 2;
    }
    if (!f->dp && (f->noise_multiplier >= 0 || f->target_epsilon > 0 || f->seeded_noise)) {
        fprintf(stderr, "%s: DP flags need --dp\n", cmd);
        return 2;
    }
    cfg->progress = f->no_progress ? 0 : (isatty(fileno(stderr)) ? 1 : 0);
    if (args_device(cmd, f->device, &cfg->device)) return 2;
    ops_set_threads(f->threads);
    return 0;
}

/* ---- checkpoints and --resume ---- */

void ckpt_flags_defaults(ckpt_flags *f) {
    memset(f, 0, sizeof *f);
    f->keep = 2;
}

void ckpt_flags_specs(ckpt_flags *f, arg_spec *o) {
    arg_spec s[CKPT_FLAG_COUNT] = {
        ARG_SM("checkpoint-dir", &f->dir, "DIR", "folder of the checkpoints (default OUT/checkpoints)"),
        ARG_LR("checkpoint-every", &f->every, "also write a checkpoint every N steps (0: only at epoch ends and the end)", 0, 1e15),
        ARG_IR("keep-checkpoints", &f->keep, "keep the newest K checkpoints", 1, 1000000),
        ARG_F("no-checkpoints", &f->none, "write no checkpoints"),
        ARG_SM("resume", &f->resume, "DIR", "continue the run whose checkpoints are in DIR (or DIR/checkpoints)"),
    };
    memcpy(o, s, sizeof s);
}

static const char *find_resume(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc) return argv[i + 1];
        if (strncmp(argv[i], "--resume=", 9) == 0) return argv[i] + 9;
    }
    return NULL;
}

static int has_checkpoints(const char *dir) {
    char **paths;
    int n = 0;
    if (dp_checkpoint_list(dir, &paths, &n, NULL)) return 0;
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    return n > 0;
}

int ckpt_open_resume(const char *cmd, const char *task, int argc, char **argv, ckpt_flags *f, dp_checkpoint **ck) {
    *ck = NULL;
    const char *arg = find_resume(argc, argv);
    if (!arg) return 0;
    dp_error err;
    /* DIR may be the checkpoint folder itself or the run's output folder holding checkpoints/ */
    snprintf(f->resume_dir, sizeof f->resume_dir, "%s", arg);
    if (!has_checkpoints(f->resume_dir)) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/checkpoints", arg);
        if (has_checkpoints(sub)) snprintf(f->resume_dir, sizeof f->resume_dir, "%s", sub);
    }
    if (!(*ck = dp_checkpoint_open_latest(f->resume_dir, stderr, &err))) {
        fprintf(stderr, "%s: --resume: %s\n", cmd, err.msg);
        return 2;
    }
    if (dp_ckpt_check_task(*ck, task, &err)) {
        fprintf(stderr, "%s: --resume: %s\n", cmd, err.msg);
        dp_checkpoint_free(*ck);
        *ck = NULL;
        return 2;
    }
    f->dir = f->resume_dir;
    f->every = dp_ckpt_settings(*ck)->checkpoint_every;
    f->keep = dp_ckpt_settings(*ck)->keep_checkpoints;
    return 0;
}

int ckpt_require_out(const char *cmd, const ckpt_flags *f, const char *out) {
    if (out) return 0;
    fprintf(stderr, "%s: --resume: the checkpoints in %s are no longer where their run wrote them, and the run's "
                    "outputs were not in the folder above them: give --out DIR for this run's outputs\n",
            cmd, f->resume_dir);
    return 2;
}

const char *ckpt_flags_dir(ckpt_flags *f, const char *out) {
    snprintf(f->default_dir, sizeof f->default_dir, "%s/checkpoints", out);
    return f->none ? NULL : f->dir ? f->dir : f->default_dir;
}

void ckpt_print_resuming(const char *cmd, const dp_checkpoint *ck, int epochs) {
    int64_t es = dp_checkpoint_epoch_step(ck);
    int done = dp_checkpoint_epochs_done(ck);
    fprintf(stderr, "%s: resuming from %s (step %lld, ", cmd, dp_checkpoint_path(ck), (long long)dp_checkpoint_step(ck));
    if (es > 0) fprintf(stderr, "%lld steps into epoch %d)\n", (long long)es, done + 1);
    else if (done == 0) fprintf(stderr, "at the start of epoch 1)\n");
    else fprintf(stderr, "after epoch %d of %d)%s\n", done, epochs,
                 done >= epochs ? "; training is complete, only the final evaluation is redone" : "");
}

int ckpt_report(const char *cmd, const char *command, int rc, int stopped_by, const char *msg, const char *newest,
                const char *ckpt_dir) {
    if (rc == 0) return 0;
    if (rc == DP_TRAIN_STOPPED) {
        fprintf(stderr, "%s: %s: %s\n", cmd, cli_signal_name(stopped_by), msg);
        if (ckpt_dir) fprintf(stderr, "resume with: dpformer %s --resume %s\n", command, ckpt_dir);
        return 128 + stopped_by;
    }
    fprintf(stderr, "%s: %s\n", cmd, msg);
    if (newest && newest[0] && ckpt_dir)
        fprintf(stderr, "the newest good checkpoint is %s; once the cause is fixed: dpformer %s --resume %s\n", newest,
                command, ckpt_dir);
    return 1;
}
