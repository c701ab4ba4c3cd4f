/*
 * tune_train.c - the objective of `mela tune`: each trial a meta-training
 * run in its own directory, trained rung by rung (mela_run_fit_until) and
 * continued from its saved state when promoted or when the search goes on
 * after a kill (mela_run_resume); scored by its latest validation on the
 * fixed validation episodes. The data are loaded once for all trials.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sys.h"
#include "learn/dist.h"
#include "learn/run_impl.h"
#include "learn/taskpool.h"
#include "mela_tune.h"

/* The value of key in t (fixed or drawn), or NULL. */
static const char *trial_value(const mela_tune_trial *t, const char *key)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->keys[i], key))
            return t->values[i];
    return NULL;
}

int mela_tune_config(const mela_tune_spec *s, const mela_tune_trial *t, mela_run_config *rc)
{
    const char *learner = trial_value(t, "learner"), *dataset = trial_value(t, "dataset");
    const char *ways = trial_value(t, "ways");
    if (mela_run_defaults(rc, learner ? learner : "maml", dataset ? dataset : "omniglot", ways ? atoi(ways) : 0))
        return -1;
    for (int i = 0; i < t->n; i++)
        if (mela_run_set(rc, t->keys[i], t->values[i]))
            return -1;
    rc->iterations = s->max_iterations;
    rc->val_every = s->min_iterations;
    rc->out_dir[0] = 0;
    return mela_run_check(rc);
}

typedef struct trainer {
    const mela_tune_spec *s;
    const char *dir;
    int threads;
    const mela_run_data *data;
    volatile sig_atomic_t *stop;
} trainer;

static int train_trial(void *ctx, const mela_tune_trial *t, int iterations, int slot, double *score)
{
    trainer *tr = ctx;
    mela_run_config rc;
    char tdir[1100], state[1200], over[3][700];
    *score = NAN;
    if (mela_tune_config(tr->s, t, &rc))
        return 0; /* a configuration the run refuses: a failed trial, its reason in the log */
    snprintf(tdir, sizeof tdir, "%s/trial-%04d", tr->dir, t->id);
    snprintf(state, sizeof state, "%s/state.safetensors", tdir);
    if (strlen(tdir) >= sizeof rc.out_dir)
        return mela_set_error("%s: the path is too long", tdir);
    rc.threads = tr->threads;
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s", tdir);
    mela_run *r;
    if (access(state, F_OK) == 0) { /* promoted, or started before a kill */
        snprintf(over[0], sizeof over[0], "threads=%d", tr->threads);
        snprintf(over[1], sizeof over[1], "data_dir=%s", rc.data_dir);
        snprintf(over[2], sizeof over[2], "cache_dir=%s", rc.cache_dir);
        const char *o[3] = {over[0], over[1], over[2]};
        r = mela_run_resume(tdir, 3, o, tr->data);
    } else {
        r = mela_run_remove(tdir) ? NULL : mela_run_open(&rc, tr->data);
    }
    if (!r)
        return -1;
    mela_run_set_stop(r, tr->stop);
    int status = mela_run_fit_until(r, iterations, 0, NULL, NULL);
    if (status == 0) {
        double loss, acc;
        mela_run_validation(r, &loss, &acc, NULL);
        *score = mela_run_regression(&rc) ? -loss : acc;
        if (!isfinite(*score))
            mela_set_error("no validation score at iteration %d", iterations);
    }
    mela_run_close(r);
    return status > 0 ? 1 : 0; /* a failed fit (e.g. diverged) is a failed trial */
}

/* The configuration of the fixed options alone (the first choice of a
 * learner drawn): what the data are loaded from. */
static int base_config(const mela_tune_spec *s, mela_run_config *rc)
{
    mela_tune_trial *t = malloc(sizeof *t);
    if (!t)
        return mela_set_error("tune: out of memory");
    memset(t, 0, sizeof *t);
    for (int i = 0; i < s->nparams; i++) {
        const mela_tune_param *p = &s->params[i];
        if (p->kind == MELA_TUNE_FIXED || (p->kind == MELA_TUNE_CHOICE && !strcmp(p->key, "learner"))) {
            t->keys[t->n] = p->key;
            snprintf(t->values[t->n++], MELA_TUNE_MAX_VALUE, "%s", p->values[0]);
        }
    }
    int status = mela_tune_config(s, t, rc);
    free(t);
    return status ? mela_sys_error_context("tune: the fixed options") : 0;
}

/* dir/best.conf: the winner's configuration, to train with `mela train --config`. */
static int write_winner(const mela_tune_spec *s, const char *dir, int threads, const mela_tune_result *res)
{
    mela_run_config rc;
    if (mela_tune_config(s, &res->winner, &rc))
        return -1;
    rc.threads = threads;
    snprintf(rc.out_dir, sizeof rc.out_dir, "runs/tuned");
    char comment[4096], path[1100];
    int k = snprintf(comment, sizeof comment,
                     "mela tune: the winner of %s, trial %d (%s/trial-%04d), validation score %.6g\n"
                     "after %d iterations; train it with: mela train --config %s/best.conf\ndrawn:",
                     dir, res->best, dir, res->best, res->best_score, s->max_iterations, dir);
    for (int i = 0; i < s->nparams && k < (int)sizeof comment - 300; i++)
        if (s->params[i].kind != MELA_TUNE_FIXED)
            k += snprintf(comment + k, sizeof comment - k, " %s %s", res->winner.keys[i], res->winner.values[i]);
    snprintf(path, sizeof path, "%s/best.conf", dir);
    return mela_run_config_save(&rc, path, comment);
}

int mela_tune_train(const mela_tune_spec *s, const char *dir, int threads, const mela_run_data *data,
                    volatile sig_atomic_t *stop, mela_tune_report_fn report, void *report_ctx,
                    mela_tune_result *res)
{
    memset(res, 0, sizeof *res);
    res->best = -1;
    if (!dir || !*dir)
        return mela_set_error("tune: no directory given (the trials' runs and the log live there)");
    if (threads < 1)
        return mela_set_error("tune: threads %d (at least 1 a trial)", threads);
    if (mela_tune_check(s))
        return -1;
    mela_run_config base;
    if (base_config(s, &base))
        return -1;
    if (mela_run_trains_on_val(&base)) /* trials are ranked by validation */
        return mela_set_error("tune: split trainval trains on the validation classes, so it cannot "
                              "rank trials; tune on split vinyals, then train the winner on trainval");
    mela_run *holder = NULL; /* holds the data every trial uses */
    if (!data) {
        base.out_dir[0] = 0;
        if (!(holder = run_open_rows(&base, NULL, 1, 0)))
            return mela_sys_error_context("tune: the data");
        data = &holder->data;
    }
    trainer tr = {s, dir, threads, data, stop};
    int blas = tp_blas_hold(); /* one BLAS thread per product while trials run at once */
    int status = mela_tune_search(s, dir, train_trial, &tr, stop, report, report_ctx, res);
    tp_blas_release(blas);
    if (status == 0 && res->best >= 0 && dist_rank() == 0 && write_winner(s, dir, threads, res))
        status = -1;
    if (dist_agree(status < 0 ? -1 : 0))
        status = -1;
    mela_run_close(holder);
    return status;
}
