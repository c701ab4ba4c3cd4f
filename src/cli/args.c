/* args.c - the numbers of the command line, checked before conversion:
 * strtol into an int would wrap 4294967298 to 2 without a word. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

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
