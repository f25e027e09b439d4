/* The audit's broken-engine control (docs/audit.md): the same DP-SGD run at epsilon 1 is audited with
 * the clipping engine intact and with clipping switched off by the fault hook (the noise still
 * calibrated to the clipping norm). Intact: the lower bound stays below the accountant's epsilon.
 * Broken: the canaries' unclipped gradients stand far above the noise and the lower bound exceeds
 * epsilon: the audit catches the fault. Everything seeded, so the outcome is reproducible. */
#include <stdlib.h>

#include "dpformer/audit.h"
#include "dpformer/train.h"
#include "privacy/clip_fault.h"
#include "testutil.h"

static double audit_once(int broken, double *eps_out) {
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    sc.n_users = 1000;
    sc.n_items = 300;
    sc.seed = 5;
    dp_dataset base, ds;
    dp_dataset_synthetic(&base, &sc);
    dp_rng *rng = dp_rng_create_seeded(11);
    dp_audit_canaries c;
    dp_error err;
    CHECK(dp_audit_canaries_make(&c, 500, 12, base.n_items, rng, &err) == 0);
    CHECK(dp_audit_dataset(&base, &c, &ds, &err) == 0);
    dp_train_config cfg = dp_train_config_default();
    cfg.model = dp_model_config_default(ds.n_items, 20);
    cfg.model.dropout = 0;
    cfg.optim.lr = 3e-3;
    cfg.epochs = 6;
    cfg.batch_size = 128;
    cfg.seed = 3;
    cfg.progress = -1;
    cfg.keep_last = 1;
    cfg.dp.enabled = 1;
    cfg.dp.target_epsilon = 1;
    cfg.dp.max_grad_norm = 0.01; /* noise sigma*C is small next to an unclipped gradient */
    cfg.dp.seeded_noise = 1;
    dp_model *m = NULL;
    dp_train_result res;
    dp_clip_fault_skip_clipping = broken;
    int rc = dp_train(&ds, &cfg, &m, &res, &err);
    dp_clip_fault_skip_clipping = 0;
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    double bound = -1;
    if (rc == 0) {
        dp_model *ref = dp_model_create(&cfg.model, dp_model_max_batch(m), cfg.seed, &err);
        double *scores = malloc(sizeof(double) * (size_t)c.m);
        dp_audit_canary_scores(m, ref, &c, scores);
        dp_audit_result ar;
        CHECK(dp_audit_evaluate(scores, c.included, c.m, 0, 0.05, cfg.dp.delta, 0.01, &ar, &err) == 0);
        fprintf(stderr, "  clipping %s: accountant epsilon %.3f, lower bound %.3f, AUC %.3f\n",
                broken ? "OFF (fault)" : "on", res.epsilon, ar.epsilon_lower, ar.auc);
        bound = ar.epsilon_lower;
        *eps_out = res.epsilon;
        free(scores);
        dp_model_free(ref);
        dp_model_free(m);
    }
    dp_audit_canaries_free(&c);
    dp_dataset_free(&ds);
    dp_dataset_free(&base);
    dp_rng_free(rng);
    return bound;
}

int main(void) {
    double eps_ok = 0, eps_bad = 0;
    double ok = audit_once(0, &eps_ok), bad = audit_once(1, &eps_bad);
    CHECK(ok >= 0 && ok <= eps_ok);   /* the intact engine passes the audit */
    CHECK(bad > eps_bad);             /* the broken one is caught */
    return tu_finish("test_audit_fault");
}
