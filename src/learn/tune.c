/*
 * tune.c - hyperparameter search by successive halving and Hyperband over
 * any objective (mela_tune.h): the search space and its file, the trials'
 * draws, the rungs, the log every scored (trial, rung) goes to and a search
 * started again takes back. The objective that trains runs is tune_train.c.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sys.h"
#include "io/json.h"
#include "learn/dist.h"
#include "learn/run_impl.h"
#include "mela_tune.h"

/* ------------------------------------------------------------------ space */

void mela_tune_defaults(mela_tune_spec *s)
{
    memset(s, 0, sizeof *s);
    s->method = MELA_TUNE_SH;
    s->trials = 27;
    s->eta = 3;
    s->min_iterations = 100;
    s->max_iterations = 2700;
    s->seed = 1;
    s->workers = 1;
}

static const char *const kind_names[] = {"fixed", "log", "uniform", "int", "choice"};

const mela_tune_param *mela_tune_find(const mela_tune_spec *s, const char *key)
{
    for (int i = 0; i < s->nparams; i++)
        if (!strcmp(s->params[i].key, key))
            return &s->params[i];
    return NULL;
}

static int parse_number(const char *text, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(text, &end);
    return !errno && end != text && !*end && isfinite(*v) ? 0 : -1;
}

/* A setting "tune.NAME value". */
static int parse_setting(mela_tune_spec *s, const char *name, const char *v, const char *where)
{
    if (!strcmp(name, "method")) {
        if (!strcmp(v, "sh") || !strcmp(v, "hyperband")) {
            s->method = !strcmp(v, "sh") ? MELA_TUNE_SH : MELA_TUNE_HYPERBAND;
            return 0;
        }
        return mela_set_error("%s: tune.method '%s' is not one of sh, hyperband", where, v);
    }
    static const struct {
        const char *name;
        long long lo, hi;
        size_t off; /* of an int of the spec; seed: a long long */
    } ints[] = {{"trials", 1, 10000, offsetof(mela_tune_spec, trials)},
                {"eta", 2, 100, offsetof(mela_tune_spec, eta)},
                {"min_iterations", 1, 100000000, offsetof(mela_tune_spec, min_iterations)},
                {"max_iterations", 1, 100000000, offsetof(mela_tune_spec, max_iterations)},
                {"seed", 0, 9200000000000000000LL, offsetof(mela_tune_spec, seed)},
                {"workers", 1, 256, offsetof(mela_tune_spec, workers)}};
    for (int i = 0; i < 6; i++) {
        if (strcmp(name, ints[i].name))
            continue;
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || x < ints[i].lo || x > ints[i].hi)
            return mela_set_error("%s: tune.%s '%s' is not an integer in %lld..%lld", where, name, v,
                                  ints[i].lo, ints[i].hi);
        if (ints[i].off == offsetof(mela_tune_spec, seed))
            s->seed = x;
        else
            *(int *)((char *)s + ints[i].off) = (int)x;
        return 0;
    }
    return mela_set_error("%s: unknown setting 'tune.%s' (method, trials, eta, min_iterations, "
                          "max_iterations, seed, workers)", where, name);
}

int mela_tune_parse_line(mela_tune_spec *s, const char *line, const char *where)
{
    char copy[4096], *w[2 + MELA_TUNE_MAX_CHOICES];
    if (strlen(line) >= sizeof copy)
        return mela_set_error("%s: the line is longer than %zu characters", where, sizeof copy - 1);
    snprintf(copy, sizeof copy, "%s", line);
    int n = run_words(copy, w, 2 + MELA_TUNE_MAX_CHOICES);
    if (n < 0)
        return mela_sys_error_context("%s", where);
    if (n == 0)
        return 0;
    if (!strncmp(w[0], "tune.", 5)) {
        if (n != 2)
            return mela_set_error("%s: expected 'tune.SETTING value'", where);
        return parse_setting(s, w[0] + 5, w[1], where);
    }
    if (n == 1)
        return mela_set_error("%s: '%s' has no value (expected 'key value' or 'key log|uniform|int|choice "
                              "...')", where, w[0]);
    if (strlen(w[0]) >= sizeof s->params[0].key)
        return mela_set_error("%s: key '%s' is too long", where, w[0]);
    mela_tune_param p;
    memset(&p, 0, sizeof p);
    snprintf(p.key, sizeof p.key, "%s", w[0]);
    int k = -1;
    for (int i = 1; i < 5 && n > 2; i++)
        if (!strcmp(w[1], kind_names[i]))
            k = i;
    if (n == 2) {
        p.kind = MELA_TUNE_FIXED;
        k = 0;
    } else if (k < 0) {
        return mela_set_error("%s: '%s' is not a kind (log, uniform, int, choice); a fixed value is "
                              "'key value'", where, w[1]);
    }
    p.kind = k;
    if (k == MELA_TUNE_LOG || k == MELA_TUNE_UNIFORM || k == MELA_TUNE_INT) {
        if (n != 4 || parse_number(w[2], &p.lo) || parse_number(w[3], &p.hi) || p.lo > p.hi)
            return mela_set_error("%s: expected '%s %s LO HI' with numbers LO <= HI", where, p.key, w[1]);
        if (k == MELA_TUNE_LOG && !(p.lo > 0))
            return mela_set_error("%s: %s log: LO must be above 0 (got %s)", where, p.key, w[2]);
        if (k == MELA_TUNE_INT && (p.lo != floor(p.lo) || p.hi != floor(p.hi) || fabs(p.lo) > 1e9 ||
                                   fabs(p.hi) > 1e9))
            return mela_set_error("%s: %s int: LO and HI must be integers", where, p.key);
    } else {
        int first = k == MELA_TUNE_FIXED ? 1 : 2;
        p.nvalues = n - first;
        for (int i = first; i < n; i++) {
            if (strlen(w[i]) >= MELA_TUNE_MAX_VALUE || strchr(w[i], '"'))
                return mela_set_error("%s: value '%s' is too long or holds a quote", where, w[i]);
            snprintf(p.values[i - first], sizeof p.values[0], "%s", w[i]);
        }
    }
    for (int i = 0; i < s->nparams; i++)
        if (!strcmp(s->params[i].key, p.key)) {
            s->params[i] = p;
            return 0;
        }
    if (s->nparams == MELA_TUNE_MAX_PARAMS)
        return mela_set_error("%s: more than %d parameters", where, MELA_TUNE_MAX_PARAMS);
    s->params[s->nparams++] = p;
    return 0;
}

int mela_tune_read(mela_tune_spec *s, const char *path)
{
    uint8_t *text;
    size_t n;
    if (mela_sys_read_file_max(path, 1 << 20, &text, &n))
        return -1;
    int status = 0, line = 0;
    for (char *l = (char *)text, *next; l && *l && !status; l = next) {
        line++;
        next = strchr(l, '\n');
        if (next)
            *next++ = 0;
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", path, line);
        status = mela_tune_parse_line(s, l, where);
    }
    free(text);
    return status;
}

static void put_value(jbuf *b, const char *v)
{
    if (*v && !strpbrk(v, " \t#"))
        io_jbuf_puts(b, v);
    else
        io_jbuf_printf(b, "\"%s\"", v);
}

/* " x" in the fewest digits that read back as the same double. */
static void put_number(jbuf *b, double x)
{
    char t[64];
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(t, sizeof t, "%.*g", digits, x);
        if (strtod(t, NULL) == x)
            break;
    }
    io_jbuf_printf(b, " %s", t);
}

/* Keys results do not depend on: a search started again may change them. */
static int free_key(const char *key)
{
    return !strcmp(key, "threads") || !strcmp(key, "data_dir") || !strcmp(key, "cache_dir");
}

/* The spec as text; `identity`: without what a search started again may
 * change (workers and free keys). */
static void spec_text(const mela_tune_spec *s, jbuf *b, int identity)
{
    io_jbuf_printf(b, "# mela tune: the search (docs/tune.md)\ntune.method %s\ntune.trials %d\ntune.eta %d\n"
                   "tune.min_iterations %d\ntune.max_iterations %d\ntune.seed %lld\n",
                   s->method == MELA_TUNE_SH ? "sh" : "hyperband", s->trials, s->eta, s->min_iterations,
                   s->max_iterations, s->seed);
    if (!identity)
        io_jbuf_printf(b, "tune.workers %d\n", s->workers);
    for (int i = 0; i < s->nparams; i++) {
        const mela_tune_param *p = &s->params[i];
        if (identity && free_key(p->key))
            continue;
        io_jbuf_printf(b, "%-17s", p->key);
        if (p->kind != MELA_TUNE_FIXED)
            io_jbuf_printf(b, " %s", kind_names[p->kind]);
        if (p->kind == MELA_TUNE_LOG || p->kind == MELA_TUNE_UNIFORM || p->kind == MELA_TUNE_INT) {
            put_number(b, p->lo);
            put_number(b, p->hi);
        }
        for (int v = 0; v < p->nvalues; v++) {
            io_jbuf_puts(b, " ");
            put_value(b, p->values[v]);
        }
        io_jbuf_puts(b, "\n");
    }
}

/* path replaced in one step by the n bytes of text. */
static int write_whole(const char *path, const char *text, size_t n)
{
    char *tmp;
    int fd = mela_sys_temp_open(path, &tmp);
    if (fd < 0)
        return -1;
    int ok = mela_sys_write_all(fd, tmp, text, n) == 0;
    return mela_sys_temp_finish(fd, tmp, path, ok) || !ok ? -1 : 0;
}

int mela_tune_write(const mela_tune_spec *s, const char *path)
{
    jbuf b = {0};
    spec_text(s, &b, 0);
    int status = b.failed ? mela_set_error("%s: out of memory", path) : write_whole(path, b.p, b.len);
    io_jbuf_free(&b);
    return status;
}

int mela_tune_check(const mela_tune_spec *s)
{
    if (s->eta < 2 || s->trials < 1 || s->min_iterations < 1 || s->workers < 1 ||
        s->max_iterations < s->min_iterations)
        return mela_set_error("tune: need eta >= 2, trials >= 1, workers >= 1 and 1 <= min_iterations <= "
                              "max_iterations (got %d, %d, %d, %d, %d)", s->eta, s->trials, s->workers,
                              s->min_iterations, s->max_iterations);
    long long r = s->min_iterations;
    while (r < s->max_iterations)
        r *= s->eta;
    if (r != s->max_iterations)
        return mela_set_error("tune: max_iterations %d is not min_iterations %d times a power of eta %d "
                              "(e.g. %d, %lld)", s->max_iterations, s->min_iterations, s->eta,
                              s->min_iterations, r);
    static const char *const data_keys[] = {"dataset", "data_dir", "cache_dir", "split",
                                            "image_size", "resize", "test_seed"};
    static const char *const set_keys[] = {"iterations", "val_every", "out_dir", "threads"};
    mela_run_config scratch;
    mela_run_defaults(&scratch, "maml", "omniglot", 5);
    for (int i = 0; i < s->nparams; i++) {
        const mela_tune_param *p = &s->params[i];
        for (int k = 0; k < 4; k++)
            if (!strcmp(p->key, set_keys[k]))
                return mela_set_error("tune: %s is set by the search (iterations: tune.max_iterations; "
                                      "val_every: tune.min_iterations; out_dir: the search's directory; "
                                      "threads: the threads of a trial)", p->key);
        for (size_t k = 0; k < sizeof data_keys / sizeof *data_keys && p->kind != MELA_TUNE_FIXED; k++)
            if (!strcmp(p->key, data_keys[k]))
                return mela_set_error("tune: %s names the data, loaded once for every trial: give it one "
                                      "value", p->key);
        if ((p->kind == MELA_TUNE_LOG || p->kind == MELA_TUNE_UNIFORM) && run_key_integer(p->key))
            return mela_set_error("tune: %s takes integers: vary it with '%s int LO HI' or 'choice', not %s",
                                  p->key, p->key, kind_names[p->kind]);
        /* a draw is written with 6 digits and read back as a double: ends
         * of sensible sizes keep it finite and normal */
        if ((p->kind == MELA_TUNE_LOG || p->kind == MELA_TUNE_UNIFORM) &&
            ((p->lo != 0 && (fabs(p->lo) < 1e-30 || fabs(p->lo) > 1e30)) ||
             (p->hi != 0 && (fabs(p->hi) < 1e-30 || fabs(p->hi) > 1e30))))
            return mela_set_error("tune: %s %s: the ends must be 0 or between 1e-30 and 1e30 in size (got "
                                  "%g, %g)", p->key, kind_names[p->kind], p->lo, p->hi);
        char lo[64], hi[64];
        snprintf(lo, sizeof lo, p->kind == MELA_TUNE_INT ? "%.0f" : "%.9g", p->lo);
        snprintf(hi, sizeof hi, p->kind == MELA_TUNE_INT ? "%.0f" : "%.9g", p->hi);
        int bad = 0;
        if (p->kind == MELA_TUNE_FIXED || p->kind == MELA_TUNE_CHOICE) {
            for (int v = 0; v < p->nvalues && !bad; v++)
                bad = mela_run_set(&scratch, p->key, p->values[v]);
        } else { /* the ends, and a value between them as a draw writes it */
            char mid[64];
            double x = p->kind == MELA_TUNE_LOG ? exp(log(p->lo) + 0.37 * (log(p->hi) - log(p->lo)))
                                                : p->lo + 0.37 * (p->hi - p->lo);
            snprintf(mid, sizeof mid, p->kind == MELA_TUNE_INT ? "%.0f" : "%.6g", p->kind == MELA_TUNE_INT ? floor(x) : x);
            bad = mela_run_set(&scratch, p->key, lo) || mela_run_set(&scratch, p->key, hi) ||
                  mela_run_set(&scratch, p->key, mid);
        }
        if (bad)
            return mela_sys_error_context("tune: parameter %s", p->key);
    }
    return 0;
}

/* ---------------------------------------------------------------- trials */

void mela_tune_sample(const mela_tune_spec *s, int id, mela_tune_trial *t)
{
    mela_rng r = mela_rng_derive((uint64_t)s->seed, 0x74756e65ULL /* "tune" */, (uint64_t)id);
    memset(t, 0, sizeof *t);
    t->id = id;
    t->n = s->nparams;
    for (int i = 0; i < s->nparams; i++) {
        const mela_tune_param *p = &s->params[i];
        char *v = t->values[i];
        t->keys[i] = p->key;
        switch (p->kind) {
        case MELA_TUNE_LOG:
            snprintf(v, MELA_TUNE_MAX_VALUE, "%.6g",
                     exp(log(p->lo) + (double)mela_rng_uniform(&r) * (log(p->hi) - log(p->lo))));
            break;
        case MELA_TUNE_UNIFORM:
            snprintf(v, MELA_TUNE_MAX_VALUE, "%.6g", p->lo + (double)mela_rng_uniform(&r) * (p->hi - p->lo));
            break;
        case MELA_TUNE_INT:
            snprintf(v, MELA_TUNE_MAX_VALUE, "%.0f",
                     p->lo + (double)mela_rng_below(&r, (uint32_t)(p->hi - p->lo + 1)));
            break;
        case MELA_TUNE_CHOICE:
            snprintf(v, MELA_TUNE_MAX_VALUE, "%s", p->values[mela_rng_below(&r, (uint32_t)p->nvalues)]);
            break;
        default:
            snprintf(v, MELA_TUNE_MAX_VALUE, "%s", p->values[0]);
        }
    }
}

/* Rungs of a bracket whose first rung trains r iterations, up to R. */
static int rungs_from(const mela_tune_spec *s, long long r)
{
    int k = 1;
    for (; r < s->max_iterations; r *= s->eta)
        k++;
    return k;
}

int mela_tune_brackets(const mela_tune_spec *s, int max, int *first, int *trials, int *start)
{
    int smax = rungs_from(s, s->min_iterations) - 1;
    if (s->method == MELA_TUNE_SH) {
        if (max > 0)
            first[0] = 0, trials[0] = s->trials, start[0] = s->min_iterations;
        return 1;
    }
    int nb = 0, id = 0;
    for (int b = smax; b >= 0; b--, nb++) {
        long long pw = 1;
        for (int i = 0; i < b; i++)
            pw *= s->eta;
        int n = (int)(((long long)(smax + 1) * pw + b) / (b + 1)); /* ceil((smax+1) eta^b / (b+1)) */
        if (nb < max)
            first[nb] = id, trials[nb] = n, start[nb] = (int)(s->max_iterations / pw);
        id += n;
    }
    return nb;
}

/* -------------------------------------------------------------------- log */

typedef struct rec {
    int trial, rung, iterations;
    double score, seconds;
} rec;

/* An outcome of a trial-rung gathered from another process: its status,
 * score and seconds, then its error text. */
#define OUT_ERR 256
#define OUT_K (3 + OUT_ERR / sizeof(double))

typedef struct search {
    const mela_tune_spec *s;
    mela_tune_objective fn;
    void *ctx;
    volatile sig_atomic_t *stop;
    mela_tune_report_fn report;
    void *report_ctx;
    FILE *jl, *csv;
    rec *recs;
    int nrec, cap;
    pthread_mutex_t mu;
    /* the rung under way */
    mela_tune_trial *trials; /* of the bracket, by position */
    int *todo, ntodo, next, rung, iterations;
    double *scores;          /* by position in the bracket */
    double *out;             /* several processes: outcomes by index in todo (OUT_K each) */
    int failed, stopped, scored;
    char error[1024];
} search;

static const rec *find_rec(const search *se, int trial, int rung)
{
    for (int i = 0; i < se->nrec; i++)
        if (se->recs[i].trial == trial && se->recs[i].rung == rung)
            return &se->recs[i];
    return NULL;
}

static int add_rec(search *se, rec r)
{
    if (se->nrec == se->cap) {
        int cap = se->cap ? 2 * se->cap : 64;
        rec *p = realloc(se->recs, cap * sizeof *p);
        if (!p)
            return mela_set_error("tune: out of memory");
        se->recs = p, se->cap = cap;
    }
    se->recs[se->nrec++] = r;
    return 0;
}

/* A value as JSON: a number when the text is one, else a string. */
static void json_value_text(jbuf *b, const char *v)
{
    json_value *j = NULL;
    size_t pos;
    char err[8];
    if (io_json_parse(v, strlen(v), &j, &pos, err, sizeof err) == 0 && j->type == JSON_NUMBER)
        io_jbuf_puts(b, v);
    else
        io_jbuf_string(b, v);
    io_json_free(j);
}

static void csv_field(jbuf *b, const char *v)
{
    if (!strpbrk(v, ",\"\n\r")) {
        io_jbuf_puts(b, v);
        return;
    }
    io_jbuf_puts(b, "\"");
    for (; *v; v++)
        io_jbuf_printf(b, *v == '"' ? "\"\"" : "%c", *v);
    io_jbuf_puts(b, "\"");
}

static void csv_number(jbuf *b, double v)
{
    if (isnan(v))
        io_jbuf_puts(b, "nan");
    else
        io_jbuf_printf(b, "%.9g", v);
}

static void record_text(const mela_tune_trial *t, int bracket, const rec *r, const char *error, jbuf *jl,
                        jbuf *csv)
{
    io_jbuf_printf(jl, "{\"trial\":%d,\"bracket\":%d,\"rung\":%d,\"iterations\":%d,\"score\":", r->trial,
                   bracket, r->rung, r->iterations);
    if (isfinite(r->score)) /* %.17g: read back the same bits when the search goes on */
        io_jbuf_printf(jl, "%.17g", r->score);
    else
        io_jbuf_puts(jl, "null");
    io_jbuf_puts(jl, ",\"seconds\":");
    io_jbuf_number(jl, r->seconds);
    for (int i = 0; i < t->n; i++) {
        io_jbuf_puts(jl, ",");
        io_jbuf_string(jl, t->keys[i]);
        io_jbuf_puts(jl, ":");
        json_value_text(jl, t->values[i]);
    }
    if (error && *error) {
        io_jbuf_puts(jl, ",\"error\":");
        if (io_jbuf_string(jl, error))
            io_jbuf_puts(jl, "\"(not UTF-8)\"");
    }
    io_jbuf_puts(jl, "}\n");
    io_jbuf_printf(csv, "%d,%d,%d,%d,", r->trial, bracket, r->rung, r->iterations);
    if (isnan(r->score))
        csv_number(csv, r->score);
    else
        io_jbuf_printf(csv, "%.17g", r->score);
    io_jbuf_puts(csv, ",");
    csv_number(csv, r->seconds);
    for (int i = 0; i < t->n; i++) {
        io_jbuf_puts(csv, ",");
        csv_field(csv, t->values[i]);
    }
    io_jbuf_puts(csv, "\n");
}

static void csv_header(const mela_tune_spec *s, jbuf *csv)
{
    io_jbuf_puts(csv, "trial,bracket,rung,iterations,score,seconds");
    for (int i = 0; i < s->nparams; i++) {
        io_jbuf_puts(csv, ",");
        csv_field(csv, s->params[i].key);
    }
    io_jbuf_puts(csv, "\n");
}

/* The bracket of trial id. */
static int bracket_of(const mela_tune_spec *s, int id)
{
    int first[64], n[64], start[64], nb = mela_tune_brackets(s, 64, first, n, start);
    for (int b = nb - 1; b >= 0; b--)
        if (id >= first[b])
            return b;
    return 0;
}

/* A record of trials.jsonl read back: checked against the trial the spec
 * draws for its number. 1 when it is one, 0 when not (the rest is cut). */
static int read_rec(const mela_tune_spec *s, const json_value *j, rec *r)
{
    const json_value *f[5];
    const char *names[] = {"trial", "rung", "iterations", "score", "seconds"};
    for (int i = 0; i < 5; i++)
        if (!(f[i] = io_json_find(j, names[i])))
            return 0;
    for (int i = 0; i < 3; i++)
        if (f[i]->type != JSON_NUMBER || !f[i]->is_int || f[i]->i < 0 || f[i]->i > 100000000)
            return 0;
    if ((f[3]->type != JSON_NUMBER && f[3]->type != JSON_NULL) || f[4]->type != JSON_NUMBER)
        return 0;
    *r = (rec){(int)f[0]->i, (int)f[1]->i, (int)f[2]->i, f[3]->type == JSON_NULL ? NAN : f[3]->num, f[4]->num};
    mela_tune_trial *t = malloc(sizeof *t);
    if (!t)
        return 0;
    mela_tune_sample(s, r->trial, t);
    int same = 1;
    for (int i = 0; i < t->n && same; i++) {
        const json_value *v = io_json_find(j, t->keys[i]);
        double x;
        same = v && ((v->type == JSON_STRING && !strcmp(v->str, t->values[i])) ||
                     (v->type == JSON_NUMBER && !parse_number(t->values[i], &x) && x == v->num));
    }
    free(t);
    return same;
}

/* Takes the records of dir/trials.jsonl (the complete lines that are
 * records of this spec), then writes both logs anew from them (a record cut
 * by a kill, or a CSV line missing, is gone) and opens them to append. */
static int log_open(search *se, const char *dir)
{
    const mela_tune_spec *s = se->s;
    char path[1100], csvp[1100];
    snprintf(path, sizeof path, "%s/trials.jsonl", dir);
    snprintf(csvp, sizeof csvp, "%s/trials.csv", dir);
    uint8_t *text = NULL;
    size_t n = 0;
    if (access(path, F_OK) == 0 && mela_sys_read_file(path, &text, &n))
        return -1;
    jbuf jl = {0}, csv = {0};
    csv_header(s, &csv);
    mela_tune_trial *t = malloc(sizeof *t);
    int status = t ? 0 : mela_set_error("tune: out of memory");
    for (char *l = (char *)text, *nl; !status && l && (nl = strchr(l, '\n')); l = nl + 1) {
        json_value *j = NULL;
        size_t pos;
        char err[64];
        rec r;
        if (io_json_parse(l, (size_t)(nl - l), &j, &pos, err, sizeof err) || j->type != JSON_OBJECT ||
            !read_rec(s, j, &r) || find_rec(se, r.trial, r.rung)) {
            io_json_free(j);
            break;
        }
        const json_value *e = io_json_find(j, "error");
        mela_tune_sample(s, r.trial, t);
        record_text(t, bracket_of(s, r.trial), &r, e && e->type == JSON_STRING ? e->str : NULL, &jl, &csv);
        io_json_free(j);
        status = add_rec(se, r);
    }
    free(t);
    free(text);
    if (!status && (jl.failed || csv.failed))
        status = mela_set_error("tune: out of memory");
    if (!status)
        status = write_whole(path, jl.p ? jl.p : "", jl.len) || write_whole(csvp, csv.p, csv.len) ? -1 : 0;
    io_jbuf_free(&jl), io_jbuf_free(&csv);
    if (status)
        return -1;
    if (!(se->jl = fopen(path, "a")) || !(se->csv = fopen(csvp, "a")))
        return mela_set_error("%s: %s", se->jl ? csvp : path, strerror(errno));
    return 0;
}

/* One scored (trial, rung): in memory, both logs (flushed), the report.
 * Called holding se->mu. */
static int log_write(search *se, const mela_tune_trial *t, const rec *r, const char *error)
{
    if (add_rec(se, *r))
        return -1;
    if (se->jl) {
        jbuf jl = {0}, csv = {0};
        record_text(t, t->bracket, r, error, &jl, &csv);
        int bad = jl.failed || csv.failed || fputs(jl.p, se->jl) < 0 || fflush(se->jl) ||
                  fputs(csv.p, se->csv) < 0 || fflush(se->csv);
        io_jbuf_free(&jl), io_jbuf_free(&csv);
        if (bad)
            return mela_set_error("tune: writing trials.jsonl or trials.csv failed (%s)", strerror(errno));
    }
    if (se->report) {
        mela_tune_record out = {r->trial, t->bracket, r->rung, r->iterations, r->score, r->seconds, 0, t};
        se->report(&out, se->report_ctx);
    }
    return 0;
}

/* -------------------------------------------------------------- the search */

typedef struct worker {
    search *se;
    int slot;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    search *se = w->se;
    for (;;) {
        pthread_mutex_lock(&se->mu);
        int quit = se->failed || se->stopped || (se->stop && *se->stop) || se->next >= se->ntodo;
        int i = quit ? -1 : se->next++, k = quit ? -1 : se->todo[i];
        pthread_mutex_unlock(&se->mu);
        if (quit)
            return NULL;
        const mela_tune_trial *t = &se->trials[k];
        double score = NAN, t0 = mela_sys_now();
        mela_clear_error();
        int st = se->fn(se->ctx, t, se->iterations, w->slot, &score);
        rec r = {t->id, se->rung, se->iterations, isfinite(score) ? score : NAN, mela_sys_now() - t0};
        char error[1024] = "";
        if (st == 0 && !isfinite(score))
            snprintf(error, sizeof error, "%s", mela_last_error());
        pthread_mutex_lock(&se->mu);
        if (st < 0 && !se->failed)
            snprintf(se->error, sizeof se->error, "trial %d: %s", t->id, mela_last_error());
        se->failed |= st < 0;
        se->stopped |= st == 1;
        if (se->out) { /* logged once every process's are gathered */
            double *o = se->out + (size_t)i * OUT_K;
            o[0] = st, o[1] = r.score, o[2] = r.seconds;
            memcpy(o + 3, error, sizeof error < OUT_ERR ? sizeof error : OUT_ERR);
            ((char *)(o + 3))[OUT_ERR - 1] = 0;
        } else if (st == 0) {
            se->scores[k] = r.score;
            se->scored++;
            if (log_write(se, t, &r, error) && !se->failed) {
                se->failed = 1;
                snprintf(se->error, sizeof se->error, "%s", mela_last_error());
            }
        }
        pthread_mutex_unlock(&se->mu);
    }
}

/* Scores todo[lo..hi) on this process's workers. */
static void score_share(search *se, int lo, int hi)
{
    se->ntodo = hi, se->next = lo;
    int nw = se->s->workers < hi - lo ? se->s->workers : hi - lo;
    worker *w = calloc(nw > 0 ? nw : 1, sizeof *w);
    if (!w) {
        se->failed = 1;
        snprintf(se->error, sizeof se->error, "tune: out of memory");
        return;
    }
    for (int i = 0; i < nw; i++)
        w[i] = (worker){se, i};
    if (nw > 0)
        mela_parallel(nw, work, w, sizeof *w);
    free(w);
}

/* Several processes (dist.h): each scores its share of todo, every trial a
 * run of its own on one process (dist_local); the outcomes are gathered, and
 * every process takes them in todo order (rank 0 logs them), so every
 * process promotes the same trials as one process would. */
static int score_rung_spread(search *se, int ntodo)
{
    int lo, hi;
    dist_share(ntodo, &lo, &hi);
    se->out = malloc((size_t)(ntodo > 0 ? ntodo : 1) * OUT_K * sizeof *se->out);
    if (!se->out) {
        se->failed = 1;
        snprintf(se->error, sizeof se->error, "tune: out of memory");
    }
    for (int i = 0; i < ntodo && se->out; i++)
        se->out[(size_t)i * OUT_K] = 2; /* not scored */
    if (se->out) {
        int was = dist_local(1);
        score_share(se, lo, hi);
        dist_local(was);
    }
    int status = dist_agree(se->failed ? mela_set_error("%s", se->error) : 0);
    if (!status) {
        dist_gather_items(se->out, ntodo, OUT_K);
        for (int i = 0; i < ntodo && !status; i++) {
            const double *o = se->out + (size_t)i * OUT_K;
            int k = se->todo[i];
            if (o[0] != 0)
                continue;
            rec r = {se->trials[k].id, se->rung, se->iterations, o[1], o[2]};
            se->scores[k] = r.score;
            se->scored++;
            status = log_write(se, &se->trials[k], &r, (const char *)(o + 3));
        }
        status = dist_agree(status);
    }
    free(se->out);
    se->out = NULL;
    if (status)
        return -1;
    return dist_any(se->stopped || (se->stop && *se->stop));
}

/* Scores positions todo[0..ntodo) of the bracket at this rung. */
static int score_rung(search *se, int ntodo)
{
    if (dist_size() > 1)
        return score_rung_spread(se, ntodo);
    score_share(se, 0, ntodo);
    if (se->failed)
        return mela_set_error("%s", se->error);
    return se->stopped || (se->stop && *se->stop) ? 1 : 0;
}

/* Higher score first (NaN last), then the lower trial. */
static const double *sort_scores;
static int by_score(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    double x = isnan(sort_scores[i]) ? -INFINITY : sort_scores[i];
    double y = isnan(sort_scores[j]) ? -INFINITY : sort_scores[j];
    return x > y ? -1 : x < y ? 1 : i - j;
}

/* Orders pos[0..n) by score: positions of one bracket, whose trials are
 * numbered in position order, so a lower position is a lower trial. */
static void order(const double *scores, int *pos, int n)
{
    /* qsort's comparison has no context: a file-scope pointer, and a lock so
     * that two searches in one process do not share it */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    sort_scores = scores;
    qsort(pos, (size_t)n, sizeof *pos, by_score);
    pthread_mutex_unlock(&mu);
}

/* One bracket: its rungs, promoting the best 1/eta after each. */
static int run_bracket(search *se, int b, int first, int n, int start, mela_tune_result *res)
{
    const mela_tune_spec *s = se->s;
    int *pos = malloc(n * sizeof *pos), *todo = malloc(n * sizeof *todo);
    se->trials = malloc(n * sizeof *se->trials);
    se->scores = malloc(n * sizeof *se->scores);
    int status = pos && todo && se->trials && se->scores ? 0 : mela_set_error("tune: out of memory");
    for (int i = 0; i < n && !status; i++) {
        pos[i] = i;
        mela_tune_sample(s, first + i, &se->trials[i]);
        se->trials[i].bracket = b;
    }
    se->todo = todo;
    int active = n, prev = 0;
    for (long long its = start, rung = 0; !status; its *= s->eta, rung++) {
        int ntodo = 0;
        se->rung = (int)rung, se->iterations = (int)its;
        for (int i = 0; i < active; i++) {
            const rec *r = find_rec(se, first + pos[i], (int)rung);
            res->iterations += its - prev;
            if (r && r->iterations == its) {
                se->scores[pos[i]] = r->score;
                res->reused++;
                if (se->report) {
                    mela_tune_record out = {r->trial, b, r->rung, r->iterations, r->score, 0, 1,
                                            &se->trials[pos[i]]};
                    se->report(&out, se->report_ctx);
                }
            } else {
                todo[ntodo++] = pos[i];
            }
        }
        if ((status = score_rung(se, ntodo)))
            break;
        order(se->scores, pos, active);
        if (its >= s->max_iterations) {
            double best = se->scores[pos[0]];
            if (!isnan(best) && (res->best < 0 || best > res->best_score)) {
                res->best = first + pos[0];
                res->best_score = best;
                res->winner = se->trials[pos[0]];
            }
            break;
        }
        prev = (int)its;
        active = active / s->eta > 0 ? active / s->eta : 1;
    }
    res->scored = se->scored;
    free(pos), free(todo), free(se->trials), free(se->scores);
    se->trials = NULL, se->scores = NULL, se->todo = NULL;
    return status;
}

/* Several processes: the records rank 0 read from the log, to every
 * process (the same binary everywhere: the records go as bytes). */
static int share_log(search *se)
{
    int n = se->nrec;
    dist_bcast(&n, sizeof n, 0);
    if (dist_rank() != 0 && n > se->cap) {
        rec *r = realloc(se->recs, (size_t)n * sizeof *r);
        se->recs = r ? r : se->recs;
        se->cap = r ? n : se->cap;
    }
    if (dist_agree(n > se->cap && n > 0 ? mela_set_error("tune: out of memory") : 0))
        return -1;
    dist_bcast(se->recs, (size_t)n * sizeof *se->recs, 0);
    se->nrec = n;
    return 0;
}

/* dir/tune.txt: written by a new search, matched by one started again. */
static int spec_file(const mela_tune_spec *s, const char *dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/tune.txt", dir);
    if (access(path, F_OK) != 0)
        return mela_tune_write(s, path);
    mela_tune_spec *old = malloc(sizeof *old);
    if (!old)
        return mela_set_error("tune: out of memory");
    mela_tune_defaults(old);
    jbuf a = {0}, b = {0};
    int status = mela_tune_read(old, path);
    if (!status) {
        spec_text(s, &a, 1), spec_text(old, &b, 1);
        if (a.failed || b.failed)
            status = mela_set_error("tune: out of memory");
        else if (strcmp(a.p, b.p))
            status = mela_set_error("%s holds another search (%s differs: only tune.workers, threads, data_dir "
                                    "and cache_dir may change when a search goes on); use another directory",
                                    dir, path);
    }
    io_jbuf_free(&a), io_jbuf_free(&b);
    free(old);
    return status;
}

int mela_tune_search(const mela_tune_spec *s, const char *dir, mela_tune_objective fn, void *ctx,
                     volatile sig_atomic_t *stop, mela_tune_report_fn report, void *report_ctx,
                     mela_tune_result *res)
{
    memset(res, 0, sizeof *res);
    res->best = -1;
    res->best_score = NAN;
    if (mela_tune_check(s))
        return -1;
    search se = {.s = s, .fn = fn, .ctx = ctx, .stop = stop, .report = report, .report_ctx = report_ctx};
    pthread_mutex_init(&se.mu, NULL);
    int lock = -1, status = 0;
    if (dist_rank() != 0) /* several processes: rank 0 reports and writes */
        se.report = NULL;
    if (dir && *dir && dist_rank() == 0) {
        if (mela_sys_mkdirs(dir) || (lock = mela_sys_lock_dir(dir)) < 0 || mela_sys_remove_temps(dir) ||
            spec_file(s, dir) || log_open(&se, dir))
            status = mela_sys_error_context("tune");
    }
    if (!(status = dist_agree(status)) && dist_size() > 1)
        status = share_log(&se);
    int first[64], n[64], start[64], nb = mela_tune_brackets(s, 64, first, n, start);
    if (!status && nb > 64)
        status = mela_set_error("tune: %d brackets are more than 64", nb);
    for (int b = 0; b < nb && !status; b++)
        status = run_bracket(&se, b, first[b], n[b], start[b], res);
    if (se.jl && fclose(se.jl) && !status)
        status = mela_set_error("tune: closing trials.jsonl: %s", strerror(errno));
    if (se.csv && fclose(se.csv) && !status)
        status = mela_set_error("tune: closing trials.csv: %s", strerror(errno));
    if (lock >= 0)
        close(lock);
    pthread_mutex_destroy(&se.mu);
    free(se.recs);
    return status;
}
