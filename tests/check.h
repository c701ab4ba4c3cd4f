/* check.h - the tiny test harness every test binary uses. CHECK records a
 * failure with file and line and goes on; check_finish() prints the closing
 * line "N passed, N failed" and returns the exit status (non-zero on any
 * failure), so `return check_finish();` ends every test's main. */
#ifndef MELA_CHECK_H
#define MELA_CHECK_H

#include <stdio.h>

extern int check_passed, check_failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            check_passed++;                                                     \
        } else {                                                                \
            check_failed++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* |got - want| <= atol + rtol * |want|, reported with both values. */
#define CHECK_CLOSE(got, want, atol, rtol, what)                                \
    check_close_at(__FILE__, __LINE__, (double)(got), (double)(want), (atol), (rtol), (what))

int check_close_at(const char *file, int line, double got, double want, double atol, double rtol,
                   const char *what);
/* Compares n floats; reports the worst element. Returns 1 when all are close. */
int check_close_array(const char *file, int line, const float *got, const float *want, size_t n,
                      double atol, double rtol, const char *what);
#define CHECK_ARRAY(got, want, n, atol, rtol, what)                             \
    check_close_array(__FILE__, __LINE__, (got), (want), (n), (atol), (rtol), (what))

int check_finish(void);

/* Runs the shell command cmd, its output (up to n - 1 bytes) into out;
 * returns its exit status, or -1 when it did not exit. */
int check_run(char *out, size_t n, const char *cmd);

/* Removes path and, for a directory, everything under it (test scratch). */
void check_rm_rf(const char *path);

#endif
