/* runfiles.h - comparing what two runs left in their directories (header
 * only): the checkpoints byte for byte, the metrics byte for byte but for
 * their seconds (wall time differs between any two runs). */
#ifndef MELA_TEST_RUNFILES_H
#define MELA_TEST_RUNFILES_H

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The whole file (NUL after it), or NULL. */
static char *rf_slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, k = 0, got;
    char *b = malloc(cap + 1);
    while (b && (got = fread(b + k, 1, cap - k, f)) > 0)
        if ((k += got) == cap)
            b = realloc(b, (cap *= 2) + 1);
    fclose(f);
    if (b)
        b[k] = 0;
    *n = k;
    return b;
}

/* JSON lines without the pairs "seconds":x, (in place). */
static void rf_drop_seconds(char *s)
{
    char *w = s;
    while (*s) {
        if (!strncmp(s, "\"seconds\":", 10)) {
            while (*s && *s != ',' && *s != '}')
                s++;
            s += *s == ',';
            continue;
        }
        *w++ = *s++;
    }
    *w = 0;
}

/* CSV: removes field 2 of every line. In place. */
static void rf_drop_csv_field2(char *s)
{
    char *w = s;
    int field = 0;
    for (; *s; s++) {
        if (*s == '\n')
            field = 0;
        else if (*s == ',' && ++field == 1) {
            while (s[1] && s[1] != ',' && s[1] != '\n')
                s++;
            continue;
        }
        *w++ = *s;
    }
    *w = 0;
}

/* 1 when dir_a/name and dir_b/name are the same bytes (metrics: but for the
 * seconds); else 0 with the reason in why. */
static int rf_same(const char *dir_a, const char *dir_b, const char *name, char *why, size_t nwhy)
{
    char pa[700], pb[700];
    size_t na, nb;
    snprintf(pa, sizeof pa, "%s/%s", dir_a, name);
    snprintf(pb, sizeof pb, "%s/%s", dir_b, name);
    char *a = rf_slurp(pa, &na), *b = rf_slurp(pb, &nb);
    int same = a && b;
    if (same && strstr(name, ".jsonl")) {
        rf_drop_seconds(a), rf_drop_seconds(b);
        same = !strcmp(a, b);
    } else if (same && strstr(name, ".csv")) {
        rf_drop_csv_field2(a), rf_drop_csv_field2(b);
        same = !strcmp(a, b);
    } else if (same) {
        same = na == nb && !memcmp(a, b, na);
    }
    if (!same)
        snprintf(why, nwhy, "%s differs from %s%s", pb, pa, !a || !b ? " (missing)" : "");
    free(a), free(b);
    return same;
}

/* best, last and the metrics of two run directories. */
static int rf_same_run(const char *dir_a, const char *dir_b, char *why, size_t nwhy)
{
    const char *names[] = {"best.safetensors", "last.safetensors", "metrics.jsonl", "metrics.csv"};
    for (int i = 0; i < 4; i++)
        if (!rf_same(dir_a, dir_b, names[i], why, nwhy))
            return 0;
    return 1;
}

/* Files of dir whose name holds ".tmp." (temp files of killed writers). */
static int rf_count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* Records in dir/metrics.csv (0 when there is none). */
static int rf_rows(const char *dir)
{
    char p[700];
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    FILE *f = fopen(p, "r");
    int n = 0, c;
    while (f && (c = getc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n > 0 ? n - 1 : 0;
}

/* Waits for child pid: once count(path) reaches `want` (whatever the
 * machine's speed), and then `extra_us` more (a random moment of an
 * iteration or a save), sends it sig. Returns its exit status, or -signal
 * when a signal ended it. */
static int rf_signal_at(pid_t pid, int (*count)(const char *), const char *path, int want, long extra_us,
                        int sig)
{
    int st;
    for (;;) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            break;
        if (count(path) >= want) {
            struct timespec ts = {extra_us / 1000000, extra_us % 1000000 * 1000};
            nanosleep(&ts, NULL);
            kill(pid, sig);
            waitpid(pid, &st, 0);
            break;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
}

/* ... the run in dir, once its metrics hold `rows` records. */
static int rf_signal_at_rows(pid_t pid, const char *dir, int rows, long extra_us, int sig)
{
    return rf_signal_at(pid, rf_rows, dir, rows, extra_us, sig);
}

#endif
