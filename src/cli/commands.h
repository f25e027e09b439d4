/* The sub-commands of the `dpformer` tool. Each takes the arguments after its name and returns the
 * process exit status (0 success, 1 runtime failure, 2 bad usage or bad input). */
#ifndef DP_CLI_COMMANDS_H
#define DP_CLI_COMMANDS_H

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_privacy(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_clip_check(int argc, char **argv);
int cmd_train_text(int argc, char **argv);
int cmd_eval_text(int argc, char **argv);

/* `dpformer bench accountant`: timing of the privacy accountants (src/cli/bench_accountant.c). */
int bench_accountant(int argc, char **argv);

#endif
