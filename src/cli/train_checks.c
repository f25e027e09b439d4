/* Checks of the training flags shared by `dpformer train` and `dpformer demo` (see train_checks.h). */
#include "cli/train_checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dpformer/itemfreq.h"

/* What each group of flags needs; keep in step with the flags of train_flags.c. */
static const char *const DP_ONLY_FLAGS[] = {"noise-multiplier", "target-epsilon", "delta", "max-grad-norm",
                                            "sample-rate", "max-physical-batch", "clip-mode", "accountant",
                                            "seeded-noise", "select-best", NULL};
static const char *const REATTENTION_FLAGS[] = {"reattention-scale", "item-freq", "item-freq-noise", "item-freq-cap",
                                                NULL};
static const char *const PRIVATE_FREQ_FLAGS[] = {"item-freq-noise", "item-freq-cap", NULL};

int train_refuse_ignored_flags(const char *cmd, const train_flags *f, const arg_spec *specs, int n,
                               const char *dp_needs) {
    const char *x;
    if (!f->dp && (x = args_first_seen(specs, n, DP_ONLY_FLAGS))) {
        fprintf(stderr, "%s: --%s is a DP-SGD flag: %s\n", cmd, x, dp_needs);
        return 2;
    }
    if (!f->reattention && (x = args_first_seen(specs, n, REATTENTION_FLAGS))) {
        fprintf(stderr, "%s: --%s is a Re-Attention flag: it needs --reattention\n", cmd, x);
        return 2;
    }
    if (strncmp(f->item_freq, "public:", 7) == 0 && (x = args_first_seen(specs, n, PRIVATE_FREQ_FLAGS))) {
        fprintf(stderr, "%s: --%s sets the private release of the item frequencies (--item-freq private); with "
                        "--item-freq %s nothing is released\n", cmd, x, f->item_freq);
        return 2;
    }
    return 0;
}

int train_check_item_freq_file(const char *cmd, const dp_train_config *cfg, int32_t n_items) {
    if (!cfg->dp.enabled || !cfg->dp.reattention || !cfg->dp.item_freq_public) return 0;
    double *p = dp_malloc(sizeof(double) * ((size_t)n_items + 1));
    dp_error err;
    int rc = dp_item_freq_load(p, cfg->dp.item_freq_public, n_items, 1, &err);
    free(p);
    if (rc) fprintf(stderr, "%s: --item-freq: %s\n", cmd, err.msg);
    return rc ? 2 : 0;
}
