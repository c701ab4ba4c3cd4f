#include "check.h"

#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int check_passed, check_failed;

int check_close_at(const char *file, int line, double got, double want, double atol, double rtol,
                   const char *what)
{
    double err = fabs(got - want);
    if (err <= atol + rtol * fabs(want) && !isnan(got)) {
        check_passed++;
        return 1;
    }
    check_failed++;
    fprintf(stderr, "FAIL %s:%d: %s: got %.9g want %.9g (|err| %.3g > %.3g + %.3g*|want|)\n", file,
            line, what, got, want, err, atol, rtol);
    return 0;
}

int check_close_array(const char *file, int line, const float *got, const float *want, size_t n,
                      double atol, double rtol, const char *what)
{
    size_t worst = 0;
    double worst_excess = -1e300;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        double excess = err - (atol + rtol * fabs((double)want[i]));
        if (isnan(got[i]) || isnan(want[i]))
            excess = 1e300;
        if (excess > worst_excess) {
            worst_excess = excess;
            worst = i;
        }
    }
    if (n == 0 || worst_excess <= 0) {
        check_passed++;
        return 1;
    }
    check_failed++;
    fprintf(stderr, "FAIL %s:%d: %s: element %zu of %zu: got %.9g want %.9g (atol %.3g rtol %.3g)\n",
            file, line, what, worst, n, got[worst], want[worst], atol, rtol);
    return 0;
}

int check_finish(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

void check_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st))
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            check_rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int check_run(char *out, size_t n, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    size_t k = 0;
    if (!p)
        return -1;
    while (k + 1 < n && fgets(out + k, (int)(n - k), p))
        k += strlen(out + k);
    out[k] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
