/* sys.c - the operating-system helpers of sys.h: clock, directories, whole
 * files, atomic replacement. Messages name the path and say why; the layer
 * that called adds what it was doing (mela_sys_error_context). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/sys.h"
#include "mela.h"

/* "cannot <what> <path> (<reason>)" with errno e kept for the caller. */
static int fail(int e, const char *what, const char *path)
{
    mela_set_error("cannot %s %s (%s)", what, path, strerror(e));
    errno = e;
    return -1;
}

double mela_sys_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int mela_sys_error_context(const char *fmt, ...)
{
    char what[512], why[1024];
    snprintf(why, sizeof why, "%s", mela_last_error()); /* set_error overwrites it */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mela_set_error("%s: %s", what, why);
}

int mela_sys_mkdirs(const char *path)
{
    if (!*path)
        return fail(ENOENT, "create directory", "''");
    char *p = strdup(path);
    if (!p)
        return fail(ENOMEM, "create directory", path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        struct stat st;
        int rc = 0, made = mkdir(p, 0777) == 0;
        if (!made && errno != EEXIST)
            rc = fail(errno, "create directory", p);
        else if (!made && (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))) /* a file in the way */
            rc = fail(ENOTDIR, "create directory", p);
        if (rc || !c) {
            int e = errno;
            free(p);
            errno = e;
            return rc;
        }
        *s = c;
    }
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void mela_sys_free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int mela_sys_list_dir(const char *dir, char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return fail(errno, "open directory", dir);
    int cap = 0;
    char **v = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **q = realloc(v, sizeof *v * (size_t)cap);
            if (!q)
                goto oom;
            v = q;
        }
        if (!(v[*n] = strdup(de->d_name)))
            goto oom;
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(v, (size_t)*n, sizeof *v, name_cmp);
    *names = v;
    return 0;
oom:
    closedir(d);
    mela_sys_free_names(v, *n);
    *n = 0;
    return fail(ENOMEM, "list directory", dir);
}

/* What a path is when it is not a regular file, for the message. */
static const char *file_kind(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISFIFO(m) ? "a named pipe (FIFO)"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

int mela_sys_read_file_max(const char *path, size_t max, uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    /* O_NONBLOCK: opening a FIFO without a writer would otherwise wait
     * forever; nothing but a regular file is read anyway. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fail(errno, "open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(e, "stat", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        mela_set_error("cannot read %s: it is %s, not a file", path, file_kind(st.st_mode));
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    if ((uintmax_t)st.st_size > max) {
        close(fd);
        mela_set_error("cannot read %s: it has %jd bytes, more than the limit of %zu MB", path,
                       (intmax_t)st.st_size, max >> 20);
        errno = EFBIG;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    /* Room for the size stat gave and one byte more, so that reading the
     * whole file takes no realloc; a file that grows meanwhile still fits,
     * up to max. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    uint8_t *buf = malloc(cap + 1);
    int e = buf ? 0 : ENOMEM;
    while (!e) {
        if (n == cap) {
            if (n > max) {
                e = EFBIG;
                break;
            }
            size_t grow = cap > max - cap ? max + 1 : 2 * cap; /* enough to see it pass max */
            uint8_t *q = realloc(buf, grow + 1);
            if (!q) {
                e = ENOMEM;
                break;
            }
            buf = q;
            cap = grow;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0 && errno != EINTR)
            e = errno;
        else if (k == 0)
            break;
        else if (k > 0)
            n += (size_t)k;
    }
    close(fd);
    if (!e && n > max)
        e = EFBIG;
    if (e) {
        free(buf);
        if (e == EFBIG) {
            mela_set_error("cannot read %s: it grew past the limit of %zu MB", path, max >> 20);
            errno = e;
            return -1;
        }
        return fail(e, "read", path);
    }
    buf[n] = 0;
    *data = buf;
    *size = n;
    return 0;
}

int mela_sys_read_file(const char *path, uint8_t **data, size_t *size)
{
    return mela_sys_read_file_max(path, SIZE_MAX - 2, data, size);
}

FILE *mela_sys_fopen_write(const char *path)
{
    /* O_NONBLOCK: a FIFO with no reader fails (ENXIO) instead of waiting
     * for one; no O_TRUNC until the file is known to be a regular one. */
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
    if (fd < 0 && errno == ENXIO) {
        mela_set_error("cannot create %s: it is a named pipe (FIFO), not a file", path);
        errno = ENXIO;
        return NULL;
    }
    if (fd < 0) {
        fail(errno, "create", path);
        return NULL;
    }
    struct stat st;
    int e = fstat(fd, &st) ? errno : 0;
    if (!e && !S_ISREG(st.st_mode)) {
        close(fd);
        mela_set_error("cannot create %s: it is %s, not a file", path, file_kind(st.st_mode));
        errno = EINVAL;
        return NULL;
    }
    int fl = e ? -1 : fcntl(fd, F_GETFL);
    if (!e && (ftruncate(fd, 0) || fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK)))
        e = errno;
    FILE *f = e ? NULL : fdopen(fd, "w");
    if (!f) {
        e = e ? e : errno;
        close(fd);
        fail(e, "create", path);
        return NULL;
    }
    return f;
}

int mela_sys_temp_open(const char *path, char **tmp)
{
    size_t n = strlen(path) + 32;
    *tmp = malloc(n);
    if (!*tmp)
        return fail(ENOMEM, "create a temp file for", path);
    snprintf(*tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(*tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fail(errno, "create", *tmp);
        free(*tmp);
        *tmp = NULL;
    }
    return fd;
}

int mela_sys_write_all(int fd, const char *name, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return fail(errno, "write", name);
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Makes a rename durable; a failure here loses nothing, so it is not one. */
static void sync_parent_dir(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir] = '\0'; /* "/x" -> "/" */
    int fd = open(slash ? dir : ".", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int mela_sys_temp_finish(int fd, char *tmp, const char *path, int ok)
{
    int rc = ok ? 0 : -1;
    if (rc == 0 && fsync(fd) != 0)
        rc = fail(errno, "sync", tmp);
    if (close(fd) != 0 && rc == 0)
        rc = fail(errno, "finish writing", tmp);
    if (rc == 0 && rename(tmp, path) != 0) {
        int e = errno;
        rc = mela_set_error("cannot rename %s over %s (%s)", tmp, path, strerror(e));
        errno = e;
    }
    int e = errno;
    if (rc == 0)
        sync_parent_dir(path);
    else
        unlink(tmp);
    free(tmp);
    errno = e;
    return rc;
}

int mela_sys_lock_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(errno, "open directory", dir);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) {
            mela_set_error("%s is in use by another process (a run is writing there)", dir);
            errno = e;
            return -1;
        }
        return fail(e, "lock directory", dir);
    }
    return fd;
}

/* "NAME.tmp.<digits>", as mela_sys_temp_open names its files. */
static int is_temp_name(const char *name)
{
    const char *t = strstr(name, ".tmp."), *next;
    while (t && (next = strstr(t + 1, ".tmp.")))
        t = next;
    if (!t || t == name || !t[5])
        return 0;
    for (const char *p = t + 5; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

int mela_sys_remove_temps(const char *dir)
{
    char **names;
    int n, rc = 0;
    if (mela_sys_list_dir(dir, &names, &n) < 0)
        return -1;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!is_temp_name(names[i]))
            continue;
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(len);
        if (!path) {
            rc = fail(ENOMEM, "remove temp files in", dir);
            break;
        }
        snprintf(path, len, "%s/%s", dir, names[i]);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && unlink(path) != 0 && errno != ENOENT)
            rc = fail(errno, "remove", path);
        free(path);
    }
    mela_sys_free_names(names, n);
    return rc;
}
