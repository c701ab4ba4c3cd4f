/* args.c - the numbers of the command line, checked before conversion:
 * strtol into an int would wrap 4294967298 to 2 without a word; and the
 * signals that stop a run or a search. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

int cli_int_arg(const char *cmd, const char *flag, const char *text, long long lo, long long hi,
                long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "mela %s: %s '%s' is not an integer in %lld..%lld\n", cmd, flag, text, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* A second signal a second or more after the first ends the process as the
 * user meant. Sooner it is the same stop delivered twice, as `timeout` and
 * batch schedulers do (to the process, then to its process group): it is
 * ignored, so the run still saves. */
volatile sig_atomic_t cli_stop_signal;
static struct timespec first_signal;

static void on_signal(int sig)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* async-signal-safe */
    if (!cli_stop_signal) {
        first_signal = t;
        cli_stop_signal = sig;
        return;
    }
    if ((t.tv_sec - first_signal.tv_sec) + 1e-9 * (t.tv_nsec - first_signal.tv_nsec) < 1.0)
        return;
    signal(sig, SIG_DFL);
    raise(sig);
}

void cli_catch_signals(int on)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    /* Once a stop came, the handler stays: the same stop delivered again
     * while the run saves and reports must not end it. */
    sa.sa_handler = on || cli_stop_signal ? on_signal : SIG_DFL;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
