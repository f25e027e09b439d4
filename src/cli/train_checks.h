/* Checks of the training flags shared by `dpformer train` and `dpformer demo` (src/cli/train_checks.c):
 * flags the run would ignore, and the public item-frequency file of Re-Attention. */
#ifndef DP_CLI_TRAIN_CHECKS_H
#define DP_CLI_TRAIN_CHECKS_H

#include "cli/train_flags.h"

/* A flag given on the command line that the run would ignore is refused, naming it and what it needs:
 * the DP-SGD flags without DP (f->dp; dp_needs ends that message: "DP flags need --dp"), the Re-Attention flags
 * without --reattention, the settings of the private frequency release with --item-freq public:FILE.
 * Returns 0, or 2 after the message. */
int train_refuse_ignored_flags(const char *cmd, const train_flags *f, const arg_spec *specs, int nspecs,
                               const char *dp_needs);

/* With Re-Attention from --item-freq public:FILE, reads the file for a model of n_items items, so that
 * a malformed file is a usage error (exit status 2, "file:line: field: problem") found before anything
 * is trained. Returns 0, or 2 after the message. */
int train_check_item_freq_file(const char *cmd, const dp_train_config *cfg, int32_t n_items);

#endif
