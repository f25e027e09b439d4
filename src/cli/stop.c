/* Graceful stop of the training commands (`train`, `train-text`) on SIGINT / SIGTERM: the handler only
 * records the signal number; the training loop sees it at its next step boundary, saves what it must
 * and returns, and the command exits 128 + the signal. SA_RESETHAND: a second signal terminates at once
 * (whatever is on disk was written atomically). SA_RESTART: nothing else sees EINTR. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <string.h>

#include "cli/commands.h"

static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) { stop_signal = sig; }

volatile sig_atomic_t *cli_stop_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return &stop_signal;
}

void cli_stop_restore(void) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

const char *cli_signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "signal"; }
