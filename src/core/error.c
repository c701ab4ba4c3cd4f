/* error.c - the per-thread "last error" message of the library. Library code
 * never prints or exits; it records why it failed and returns -1 or NULL. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mela.h"

static _Thread_local char last_error[1024];

const char *mela_version(void) { return MELA_VERSION_STRING; }

const char *mela_last_error(void) { return last_error; }

void mela_clear_error(void) { last_error[0] = '\0'; }

int mela_set_error(const char *fmt, ...)
{
    /* Formatted aside first: an argument may be mela_last_error() itself
     * ("%s: metadata %s", path, mela_last_error()), and vsnprintf into its
     * own argument garbles the message. */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return -1;
}
