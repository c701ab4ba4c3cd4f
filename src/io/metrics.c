/* metrics.c - the log of a run, written twice: JSON lines for programs
 * (every record self-describing, null for a non-finite number) and CSV for
 * spreadsheets and pandas (one header line, so the keys are fixed by the
 * first record). Each record is flushed at once: a run that crashes at step
 * 59,000 still tells what happened up to then. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sys.h"
#include "io/json.h"
#include "mela_io.h"

struct mela_metrics {
    char *jsonl_path, *csv_path;
    FILE *jsonl, *csv;
    int nkeys; /* 0 until the first record */
    char **keys;
};

static char *join(const char *dir, const char *stem, const char *ext)
{
    size_t n = strlen(dir) + strlen(stem) + strlen(ext) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s%s", dir, stem, ext);
    return s;
}

/* Closes and frees; the first failure to write out decides the result. */
int mela_metrics_close(mela_metrics *m)
{
    if (!m)
        return 0;
    int rc = 0;
    if (m->jsonl && fclose(m->jsonl) != 0)
        rc = mela_set_error("metrics %s: cannot finish writing (%s)", m->jsonl_path,
                            strerror(errno));
    if (m->csv && fclose(m->csv) != 0 && rc == 0)
        rc = mela_set_error("metrics %s: cannot finish writing (%s)", m->csv_path, strerror(errno));
    for (int i = 0; i < m->nkeys; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->jsonl_path);
    free(m->csv_path);
    free(m);
    return rc;
}

/* A log of dir/stem with its paths, no file open yet. */
static mela_metrics *metrics_new(const char *dir, const char *stem)
{
    if (!dir || !*dir || !stem || !*stem || strchr(stem, '/')) {
        mela_set_error("metrics: need a directory and a file stem without '/' (got %s, %s)",
                       dir ? dir : "NULL", stem ? stem : "NULL");
        return NULL;
    }
    if (mela_sys_mkdirs(dir) < 0) {
        mela_sys_error_context("metrics");
        return NULL;
    }
    mela_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->jsonl_path = join(dir, stem, ".jsonl")) ||
        !(m->csv_path = join(dir, stem, ".csv"))) {
        mela_metrics_close(m);
        mela_set_error("metrics: out of memory");
        return NULL;
    }
    return m;
}

mela_metrics *mela_metrics_open(const char *dir, const char *stem)
{
    mela_metrics *m = metrics_new(dir, stem);
    if (!m)
        return NULL;
    if (!(m->jsonl = mela_sys_fopen_write(m->jsonl_path)) ||
        !(m->csv = mela_sys_fopen_write(m->csv_path))) {
        mela_sys_error_context("metrics");
        mela_metrics_close(m);
        return NULL;
    }
    return m;
}

/* RFC 4180: quoted when it holds a comma, quote or line break. */
static void csv_field(jbuf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        io_jbuf_puts(b, s);
        return;
    }
    io_jbuf_puts(b, "\"");
    for (; *s; s++) {
        if (*s == '"')
            io_jbuf_put(b, "\"", 1); /* a quote is written twice */
        io_jbuf_put(b, s, 1);
    }
    io_jbuf_puts(b, "\"");
}

static void csv_number(jbuf *b, double v)
{
    if (isnan(v))
        io_jbuf_puts(b, "nan");
    else if (isinf(v))
        io_jbuf_puts(b, v > 0 ? "inf" : "-inf");
    else
        io_jbuf_printf(b, "%.9g", v);
}

/* The keys of the first record become the log's. */
static int keep_keys(mela_metrics *m, int n, const char *const *keys)
{
    m->keys = calloc((size_t)n, sizeof *m->keys);
    if (!m->keys)
        return mela_set_error("metrics: out of memory");
    for (int i = 0; i < n; i++) {
        if (!(m->keys[i] = strdup(keys[i]))) {
            for (int j = 0; j < i; j++)
                free(m->keys[j]);
            free(m->keys);
            m->keys = NULL;
            return mela_set_error("metrics: out of memory");
        }
    }
    m->nkeys = n;
    return 0;
}

static void csv_header(jbuf *b, int n, const char *const *keys)
{
    for (int i = 0; i < n; i++) {
        if (i)
            io_jbuf_puts(b, ",");
        csv_field(b, keys[i]);
    }
    io_jbuf_puts(b, "\n");
}

/* The keys of a record: valid, distinct, and the same as the first record's. */
static int check_keys(const mela_metrics *m, int n, const char *const *keys)
{
    for (int i = 0; i < n; i++) {
        if (!keys[i] || !*keys[i])
            return mela_set_error("metrics %s: key %d is empty", m->jsonl_path, i);
        if (!io_utf8_valid(keys[i], strlen(keys[i])))
            return mela_set_error("metrics %s: key %d is not valid UTF-8", m->jsonl_path, i);
        for (int j = 0; j < i; j++)
            if (!strcmp(keys[i], keys[j]))
                return mela_set_error("metrics %s: key '%s' appears twice in one record",
                                      m->jsonl_path, keys[i]);
    }
    if (m->nkeys == 0)
        return 0;
    int same = n == m->nkeys;
    for (int i = 0; same && i < n; i++)
        same = !strcmp(keys[i], m->keys[i]);
    if (!same) {
        jbuf want = {0}, got = {0};
        for (int i = 0; i < m->nkeys; i++)
            io_jbuf_printf(&want, "%s%s", i ? ", " : "", m->keys[i]);
        for (int i = 0; i < n; i++)
            io_jbuf_printf(&got, "%s%s", i ? ", " : "", keys[i]);
        mela_set_error("metrics %s: a record has keys [%s] but the log's keys are [%s] (the "
                       "CSV needs the same keys in the same order)", m->csv_path,
                       got.failed ? "?" : got.p, want.failed ? "?" : want.p);
        io_jbuf_free(&want);
        io_jbuf_free(&got);
        return -1;
    }
    return 0;
}

static int write_line(FILE *f, const char *path, const jbuf *b)
{
    if (fwrite(b->p, 1, b->len, f) != b->len || fflush(f) != 0)
        return mela_set_error("metrics %s: cannot write (%s)", path, strerror(errno));
    return 0;
}

int mela_metrics_write(mela_metrics *m, int n, const char *const *keys, const double *values)
{
    if (!m)
        return mela_set_error("metrics: no log given");
    if (n < 1 || !keys || !values)
        return mela_set_error("metrics %s: a record needs at least one key and value",
                              m->jsonl_path);
    if (check_keys(m, n, keys) < 0)
        return -1;
    int first = m->nkeys == 0;
    if (first && keep_keys(m, n, keys) < 0)
        return -1;
    jbuf js = {0}, cs = {0};
    io_jbuf_puts(&js, "{");
    for (int i = 0; i < n; i++) {
        if (i)
            io_jbuf_puts(&js, ",");
        io_jbuf_string(&js, keys[i]); /* checked to be UTF-8 above */
        io_jbuf_puts(&js, ":");
        io_jbuf_number(&js, values[i]);
    }
    io_jbuf_puts(&js, "}\n");
    if (first)
        csv_header(&cs, n, keys);
    for (int i = 0; i < n; i++) {
        if (i)
            io_jbuf_puts(&cs, ",");
        csv_number(&cs, values[i]);
    }
    io_jbuf_puts(&cs, "\n");
    int rc;
    if (js.failed || cs.failed)
        rc = mela_set_error("metrics: out of memory");
    else
        rc = write_line(m->jsonl, m->jsonl_path, &js) < 0 ||
                     write_line(m->csv, m->csv_path, &cs) < 0
                 ? -1
                 : 0;
    io_jbuf_free(&js);
    io_jbuf_free(&cs);
    return rc;
}

/* Keeps the first `lines` lines of path (after `header`, which must start
 * it, when not NULL) and opens it to append after them. */
static FILE *keep_lines(const char *path, long lines, const char *header, long records)
{
    uint8_t *p;
    size_t size, off = 0, hlen = header ? strlen(header) : 0;
    if (mela_sys_read_file(path, &p, &size) < 0) {
        mela_sys_error_context("metrics");
        return NULL;
    }
    long seen = 0;
    for (; off < size && seen < lines; off++)
        seen += p[off] == '\n';
    int bad_header = header && (size < hlen || memcmp(p, header, hlen));
    free(p);
    if (bad_header) {
        mela_set_error("metrics %s: the header is not \"%.*s\" (not this run's log?)", path,
                       (int)(hlen ? hlen - 1 : 0), header);
        return NULL;
    }
    if (seen < lines) {
        mela_set_error("metrics %s: holds %ld complete records, the run continues after %ld (the file "
                       "was cut or replaced)", path, seen - (lines - records), records);
        return NULL;
    }
    FILE *f = NULL;
    if (truncate(path, (off_t)off) != 0 || !(f = fopen(path, "a")))
        mela_set_error("metrics %s: cannot reopen (%s)", path, strerror(errno));
    return f;
}

mela_metrics *mela_metrics_resume(const char *dir, const char *stem, long n, int nkeys,
                                  const char *const *keys)
{
    if (n == 0)
        return mela_metrics_open(dir, stem);
    mela_metrics *m = metrics_new(dir, stem);
    if (!m)
        return NULL;
    jbuf h = {0};
    if (n < 0 || nkeys < 1 || !keys)
        mela_set_error("metrics %s: resuming needs n >= 0 and the keys (got %ld, %d)", m->jsonl_path,
                       n, nkeys);
    else if (check_keys(m, nkeys, keys) == 0 && keep_keys(m, nkeys, keys) == 0) {
        csv_header(&h, nkeys, keys);
        if (h.failed)
            mela_set_error("metrics: out of memory");
        else if ((m->jsonl = keep_lines(m->jsonl_path, n, NULL, n)))
            m->csv = keep_lines(m->csv_path, n + 1, h.p, n);
    }
    io_jbuf_free(&h);
    if (!m->csv) {
        mela_metrics_close(m);
        return NULL;
    }
    return m;
}
