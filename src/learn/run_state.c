/*
 * run_state.c - what a run leaves in its directory and how it continues
 * from there: the checkpoints (best, last) with the configuration as
 * metadata, the state a run continues from exactly, and the directory
 * itself (writable, held by one run, rid of killed writers' temp files).
 *
 * What a run depends on after iteration i, all of it in state.safetensors
 * (one file, replaced whole):
 *   - theta, and the learner's own state: Adam's moments, step and rate;
 *   - i itself. Training tasks are a pure function of (seed, task index),
 *     validation episodes of (test_seed, index); the init generator is used
 *     once, before iteration 1; the schedules (rate decay, cosine, MAML++'s
 *     step weights and derivative-order annealing, Reptile's meta-step) are
 *     functions of the iteration. No other generator exists;
 *   - the best validation score, so that a worse best.safetensors never
 *     replaces a better one, and the latest validation (for progress);
 *   - the metrics position (records written), the report interval and the
 *     sums of the interval under way;
 *   - the configuration the run was started with;
 *   - the training time so far (the metrics' seconds go on counting).
 * Executors, task buffers and the data are rebuilt; nothing else carries.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sys.h"
#include "learn/dist.h"
#include "learn/learner.h"
#include "learn/run_impl.h"

#define STATE_FILE "state.safetensors"
#define STATE_FORMAT "mela-run-state-1"

/* The files that make a directory a run's. */
static const char *const run_files[] = {STATE_FILE, "best.safetensors", "last.safetensors",
                                        "metrics.jsonl", "metrics.csv"};
#define NRUNFILES (int)(sizeof run_files / sizeof run_files[0])

/* ---------------------------------------------------------------- metadata */

/* Metadata pairs: every option of a configuration, then the file's own. */
typedef struct run_meta {
    int n;
    const char *keys[96], *vals[96];
    char buf[96][520];
} run_meta;

static void meta_add(run_meta *m, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->buf[m->n], sizeof m->buf[m->n], fmt, ap);
    va_end(ap);
    m->keys[m->n] = key;
    m->vals[m->n] = m->buf[m->n];
    m->n++;
}

static void meta_config(run_meta *m, const mela_run_config *rc, const char *format)
{
    m->n = 0;
    for (int i = 0; m->n < 96 - 16; i++, m->n++) {
        if (!(m->keys[m->n] = mela_run_option(i, rc, m->buf[m->n], sizeof m->buf[m->n], NULL)))
            break;
        m->vals[m->n] = m->buf[m->n];
    }
    meta_add(m, "format", "%s", format);
    meta_add(m, "mela_version", "%s", mela_version());
}

int run_config_read(const mela_checkpoint *ck, const char *path, mela_run_config *rc)
{
    const char *ways = mela_checkpoint_meta(ck, "ways");
    if (mela_run_defaults(rc, mela_checkpoint_meta(ck, "learner"), mela_checkpoint_meta(ck, "dataset"),
                          ways ? atoi(ways) : 0))
        return mela_sys_error_context("%s: metadata", path);
    char buf[600];
    for (int i = 0;; i++) {
        const char *k = mela_run_option(i, rc, buf, sizeof buf, NULL);
        if (!k)
            break;
        const char *v = mela_checkpoint_meta(ck, k);
        if (v && mela_run_set(rc, k, v))
            return mela_sys_error_context("%s: metadata", path);
    }
    if (mela_run_check(rc))
        return mela_sys_error_context("%s: its configuration", path);
    return 0;
}

int run_config_checkpoint(const char *path, mela_run_config *rc)
{
    mela_checkpoint *ck = mela_checkpoint_open(path);
    if (!ck)
        return -1;
    const char *fmt = mela_checkpoint_meta(ck, "format");
    int status = !fmt || (strcmp(fmt, "mela-run-1") && strcmp(fmt, "mela-gbml-1") && strcmp(fmt, STATE_FORMAT))
                     ? mela_set_error("%s: not a checkpoint or state of a mela run (format '%s')", path,
                                      fmt ? fmt : "none")
                     : run_config_read(ck, path, rc);
    mela_checkpoint_close(ck);
    return status;
}

/* --------------------------------------------------------------- the files */

static int weights_finite(const mela_run *r, int iteration)
{
    float bad;
    const char *view = learner_nonfinite(mela_learner_layout(r->l), r->theta, &bad);
    if (!view)
        return 0;
    return mela_set_error("iteration %d: the weights of '%s' hold %s; nothing saved", iteration, view,
                          learner_nonfinite_name(bad));
}

int run_save_checkpoint(const mela_run *r, const char *name, int iteration, double score)
{
    if (weights_finite(r, iteration))
        return -1;
    run_meta *m = malloc(sizeof *m);
    if (!m)
        return mela_set_error("checkpoint: out of memory");
    meta_config(m, &r->meta, "mela-run-1");
    meta_add(m, "iteration", "%d", iteration);
    meta_add(m, "validation", "%.9g", score);
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", r->rc.out_dir, name);
    int rc = mela_checkpoint_save(path, mela_learner_layout(r->l), r->theta, m->n, m->keys, m->vals);
    free(m);
    return rc;
}

int run_save_discrete(const mela_run *r, const char *prefix, int iteration, double score)
{
    mela_run_config rc = r->meta;
    if (snprintf(rc.model, sizeof rc.model, "%s/%sarch.json", r->rc.out_dir, prefix) >= (int)sizeof rc.model)
        return mela_set_error("%s: the folder's name is too long for a model path", r->rc.out_dir);
    rc.nas_temp_end = 1.0f, rc.nas_warmup = 0;
    mela_learner *l = mela_learner_new(&rc, 0);
    if (!l)
        return -1;
    const mela_layout *Ls = mela_learner_layout(r->l), *Ld = mela_learner_layout(l);
    float *theta = calloc(mela_layout_size(Ld), sizeof *theta);
    run_meta *m = malloc(sizeof *m);
    int status = theta && m ? 0 : mela_set_error("checkpoint: out of memory");
    for (int i = 0; !status && i < mela_layout_count(Ld); i++) { /* the kept ops' weights, by name */
        int j = mela_layout_find(Ls, mela_layout_name(Ld, i));
        if (j < 0 || !mela_shape_equal(mela_layout_shape(Ls, j), mela_layout_shape(Ld, i)))
            status = mela_set_error("discrete network: its view '%s' is not the search's", mela_layout_name(Ld, i));
        else
            memcpy(theta + mela_layout_offset(Ld, i), r->theta + mela_layout_offset(Ls, j),
                   mela_shape_numel(mela_layout_shape(Ld, i)) * sizeof *theta);
    }
    if (!status) {
        meta_config(m, &rc, "mela-run-1");
        meta_add(m, "iteration", "%d", iteration);
        meta_add(m, "validation", "%.9g", score);
        char path[1100];
        snprintf(path, sizeof path, "%s/%sdiscrete.safetensors", r->rc.out_dir, prefix);
        status = mela_checkpoint_save(path, Ld, theta, m->n, m->keys, m->vals);
    }
    free(theta), free(m);
    mela_learner_free(l);
    return status;
}

int run_save_state(const mela_run *r, const run_state *st)
{
    if (weights_finite(r, st->iteration))
        return -1;
    run_meta *m = malloc(sizeof *m);
    if (!m)
        return mela_set_error("run state: out of memory");
    meta_config(m, &r->meta, STATE_FORMAT);
    /* %.17g: every double comes back the same bits */
    meta_add(m, "iteration", "%d", st->iteration);
    meta_add(m, "report", "%d", st->report);
    meta_add(m, "best", "%.17g", st->best);
    meta_add(m, "best_iteration", "%d", st->best_iteration);
    meta_add(m, "stopped_early", "%d", st->early);
    meta_add(m, "val_loss", "%.17g", st->val_loss);
    meta_add(m, "val_acc", "%.17g", st->val_acc);
    meta_add(m, "sum_loss", "%.17g", st->sum_loss);
    meta_add(m, "sum_acc", "%.17g", st->sum_acc);
    meta_add(m, "nsum", "%d", st->nsum);
    meta_add(m, "metrics_rows", "%ld", st->metrics_rows);
    meta_add(m, "seconds", "%.17g", st->seconds);
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", r->rc.out_dir, STATE_FILE);
    /* "learner" is the learner state's own key (the same value) */
    int n = 0;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->keys[i], "learner"))
            m->keys[n] = m->keys[i], m->vals[n++] = m->vals[i];
    int rc = learner_state_save(r->l, path, r->theta, n, m->keys, m->vals);
    free(m);
    return rc;
}

/* A number of the state's metadata, whole and in [lo, hi]. */
static int state_number(const mela_checkpoint *ck, const char *path, const char *key, double lo,
                        double hi, double *out)
{
    const char *v = mela_checkpoint_meta(ck, key);
    char *end = NULL;
    errno = 0;
    double x = v ? strtod(v, &end) : NAN;
    if (!v || !*v || *end || errno == ERANGE || (!isnan(x) && (x < lo || x > hi)))
        return mela_set_error("%s: %s '%s' is missing or out of range (a damaged state?)", path, key,
                              v ? v : "");
    *out = x;
    return 0;
}

static int state_read(const mela_checkpoint *ck, const char *path, int iterations, run_state *st)
{
    double it = 0, rep = 0, nsum = 0, rows = 0;
    if (state_number(ck, path, "iteration", 0, iterations, &it) ||
        state_number(ck, path, "report", 1, 1e9, &rep) ||
        state_number(ck, path, "best", -INFINITY, INFINITY, &st->best) ||
        state_number(ck, path, "val_loss", -INFINITY, INFINITY, &st->val_loss) ||
        state_number(ck, path, "val_acc", -INFINITY, INFINITY, &st->val_acc) ||
        state_number(ck, path, "sum_loss", -INFINITY, INFINITY, &st->sum_loss) ||
        state_number(ck, path, "sum_acc", -INFINITY, INFINITY, &st->sum_acc) ||
        state_number(ck, path, "nsum", 0, 1e9, &nsum) ||
        state_number(ck, path, "metrics_rows", 0, 1e15, &rows) ||
        state_number(ck, path, "seconds", 0, INFINITY, &st->seconds))
        return -1;
    /* states written before the patience existed lack these two */
    double bi = it, early = 0;
    if ((mela_checkpoint_meta(ck, "best_iteration") &&
         state_number(ck, path, "best_iteration", 0, iterations, &bi)) ||
        (mela_checkpoint_meta(ck, "stopped_early") && state_number(ck, path, "stopped_early", 0, 1, &early)))
        return -1;
    st->best_iteration = isnan(bi) ? (int)it : (int)bi, st->early = early == 1;
    if (isnan(it) || isnan(rep) || isnan(nsum) || isnan(rows) || isnan(st->seconds))
        return mela_set_error("%s: a count of the state is not a number (a damaged state?)", path);
    st->iteration = (int)it, st->report = (int)rep, st->nsum = (int)nsum;
    st->metrics_rows = (long)rows;
    return 0;
}

/* ----------------------------------------------------------- the directory */

int run_dir_open(mela_run *r)
{
    const char *dir = r->rc.out_dir;
    char probe[1100], *tmp;
    snprintf(probe, sizeof probe, "%s/probe", dir);
    if (mela_sys_mkdirs(dir))
        return mela_sys_error_context("out_dir");
    int fd = mela_sys_temp_open(probe, &tmp);
    if (fd < 0)
        return mela_sys_error_context("out_dir %s is not writable", dir);
    int ok = mela_sys_write_all(fd, tmp, "mela", 4) == 0;
    mela_sys_temp_finish(fd, tmp, probe, 0); /* not ok: removed, not renamed */
    if (!ok)
        return mela_sys_error_context("out_dir %s is not writable", dir);
    if ((r->lock = mela_sys_lock_dir(dir)) < 0)
        return -1;
    return mela_sys_remove_temps(dir) ? mela_sys_error_context("out_dir") : 0;
}

static int file_in(const char *dir, const char *name, char *path, size_t n)
{
    snprintf(path, n, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int mela_run_saved(const char *dir)
{
    char path[1100];
    for (int i = 0; i < NRUNFILES; i++)
        if (file_in(dir, run_files[i], path, sizeof path))
            return 1;
    return 0;
}

/* Held while removing, so that a run writing there is never cut short. */
int mela_run_remove(const char *dir)
{
    char path[1100];
    if (access(dir, F_OK) != 0)
        return 0;
    int lock = mela_sys_lock_dir(dir), rc = lock < 0 ? -1 : 0;
    for (int i = 0; i < NRUNFILES && rc == 0; i++)
        if (file_in(dir, run_files[i], path, sizeof path) && unlink(path) != 0 && errno != ENOENT)
            rc = mela_set_error("cannot remove %s (%s)", path, strerror(errno));
    if (rc == 0)
        rc = mela_sys_remove_temps(dir);
    if (lock >= 0)
        close(lock);
    return rc;
}

/* ------------------------------------------------------------------ resume */

/* Overrides on a resumed run: what results do not depend on, or a key given
 * the value it has. */
static int resume_override(mela_run_config *rc, const char *kv)
{
    char key[64], now[600], want[600];
    const char *eq = strchr(kv, '=');
    if (!eq || eq - kv >= (long)sizeof key)
        return mela_set_error("override '%s' is not key=value", kv);
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    if (!strcmp(key, "threads") || !strcmp(key, "data_dir") || !strcmp(key, "cache_dir"))
        return mela_run_set(rc, key, eq + 1);
    mela_run_config t = *rc;
    if (mela_run_set(&t, key, eq + 1))
        return -1;
    for (int i = 0; mela_run_option(i, rc, now, sizeof now, NULL); i++)
        if (!strcmp(mela_run_option(i, &t, want, sizeof want, NULL), key) && strcmp(now, want))
            return mela_set_error("%s: a resumed run keeps its configuration (%s %s); only threads, "
                                  "data_dir and cache_dir may change", key, key, now);
    return 0;
}

/* The run of the state file ck (path) in dir, its weights and state read. */
static mela_run *resume_open(const mela_checkpoint *ck, const char *path, const char *dir, int nover,
                             const char *const *over, const mela_run_data *data)
{
    const char *fmt = mela_checkpoint_meta(ck, "format");
    mela_run_config rc, meta;
    if (!fmt || strcmp(fmt, STATE_FORMAT)) {
        mela_set_error("%s: not the state of a mela run (format '%s')", path, fmt ? fmt : "none");
        return NULL;
    }
    if (run_config_read(ck, path, &meta))
        return NULL;
    rc = meta;
    for (int i = 0; i < nover; i++)
        if (resume_override(&rc, over[i]))
            return NULL;
    if (strlen(dir) >= sizeof rc.out_dir) {
        mela_set_error("%s: the path is too long", dir);
        return NULL;
    }
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s", dir); /* where the run is now */
    mela_run *r = run_open_rows(&rc, data, 0, 0);
    if (!r || (run_writes(r) && run_dir_open(r)) || learner_state_read(r->l, ck, path, r->theta) ||
        state_read(ck, path, rc.iterations, &r->st) || run_load_data(r)) {
        mela_run_close(r);
        return NULL;
    }
    r->meta = meta;
    r->resumed = 1;
    return r;
}

mela_run *mela_run_resume(const char *dir, int nover, const char *const *overrides,
                          const mela_run_data *data)
{
    char path[1100];
    if (!dir || !*dir) {
        mela_set_error("resume: no run directory given");
        return NULL;
    }
    if (!file_in(dir, STATE_FILE, path, sizeof path)) {
        mela_set_error("%s: no run to resume (%s is missing: the run saved nothing yet, or this is "
                       "not a run directory)", dir, path);
        return NULL;
    }
    mela_checkpoint *ck = mela_checkpoint_open(path);
    mela_run *r = ck ? resume_open(ck, path, dir, nover, overrides, data) : NULL;
    mela_checkpoint_close(ck);
    if (dist_agree(r ? 0 : -1)) {
        mela_run_close(r);
        return NULL;
    }
    return r;
}
