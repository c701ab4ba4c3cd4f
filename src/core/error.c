/* error.c - the per-thread "last error" message of the library. Library code
 * never prints or exits; it records why it failed and returns -1 or NULL. */
#include <stdarg.h>
#include <stdio.h>

#include "mela.h"

static _Thread_local char last_error[1024];

const char *mela_version(void) { return MELA_VERSION_STRING; }

const char *mela_last_error(void) { return last_error; }

void mela_clear_error(void) { last_error[0] = '\0'; }

int mela_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return -1;
}
