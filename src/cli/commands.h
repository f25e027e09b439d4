/* The sub-commands of the `dpformer` tool. Each takes the arguments after its name and returns the
 * process exit status (0 success, 1 runtime failure, 2 bad usage or bad input). */
#ifndef DP_CLI_COMMANDS_H
#define DP_CLI_COMMANDS_H

#include <signal.h>

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_privacy(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_clip_check(int argc, char **argv);
int cmd_train_text(int argc, char **argv);
int cmd_eval_text(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_train_lm(int argc, char **argv);
int cmd_demo_lm(int argc, char **argv);
int cmd_eval_lm(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_audit(int argc, char **argv);

/* Graceful stop on SIGINT / SIGTERM (src/cli/stop.c): install the handlers and get the flag a training
 * loop polls (it holds the signal number once one arrived); restore the default handlers; the name of
 * a signal for messages. */
volatile sig_atomic_t *cli_stop_install(void);
void cli_stop_restore(void);
const char *cli_signal_name(int sig);

/* `dpformer bench accountant`: timing of the privacy accountants (src/cli/bench_accountant.c). */
int bench_accountant(int argc, char **argv);

#endif
