/*
 * run.c - the meta-training loop every learner shares: tasks from the data
 * layer, one mela_learner_step per iteration, validation on fixed episodes
 * spread over threads, best and last checkpoints, metrics and progress.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sys.h"
#include "learn/run_impl.h"
#include "learn/taskpool.h"

/* ------------------------------------------------------------------- data */

/* Omniglot and the three splits the configuration names. */
static int load_omniglot(mela_run *r)
{
    const mela_run_config *rc = &r->rc;
    if (!rc->data_dir[0])
        return mela_set_error("data_dir: no Omniglot folder given (it holds images_background.zip "
                              "and images_evaluation.zip)");
    mela_omniglot_opts o = {.H = rc->image_size, .W = rc->image_size,
                            .cache_dir = rc->cache_dir[0] ? rc->cache_dir : NULL};
    if (!(r->own_ds = mela_omniglot_load(rc->data_dir, &o)))
        return -1;
    if (!strcmp(rc->split, "lake")) {
        r->own[0] = mela_split_lake(r->own_ds, "train");
        r->own[1] = r->own[0] ? mela_split_lake(r->own_ds, "koch_val") : NULL;
        r->own[2] = r->own[1] ? mela_split_lake(r->own_ds, "koch_test") : NULL;
    } else {
        r->own[0] = mela_split_vinyals(r->own_ds, rc->data_dir, "train");
        r->own[1] = r->own[0] ? mela_split_vinyals(r->own_ds, rc->data_dir, "val") : NULL;
        r->own[2] = r->own[1] ? mela_split_vinyals(r->own_ds, rc->data_dir, "test") : NULL;
    }
    if (!r->own[2])
        return -1;
    r->data = (mela_run_data){r->own_ds, r->own[0], r->own[1], r->own[2]};
    return 0;
}

void mela_run_close(mela_run *r)
{
    if (!r)
        return;
    mela_learner_free(r->l);
    for (int i = 0; i < 3; i++)
        mela_split_free(r->own[i]);
    mela_dataset_free(r->own_ds);
    free(r->theta);
    free(r);
}

mela_run *run_open_rows(const mela_run_config *rc, const mela_run_data *data, int load, int query_rows)
{
    mela_run *r = calloc(1, sizeof *r);
    if (!r) {
        mela_set_error("run: out of memory");
        return NULL;
    }
    r->rc = *rc;
    if (!(r->l = mela_learner_new(rc, query_rows)))
        goto fail;
    r->theta = calloc(mela_layout_size(mela_learner_layout(r->l)), sizeof *r->theta);
    if (!r->theta) {
        mela_set_error("run: out of memory");
        goto fail;
    }
    if (data)
        r->data = *data;
    else if (load && !mela_run_regression(rc) && load_omniglot(r))
        goto fail;
    if (!mela_run_regression(rc) && load && (!r->data.ds || !r->data.train || !r->data.val || !r->data.test)) {
        mela_set_error("run: a classification run needs a dataset and its train, val and test splits");
        goto fail;
    }
    return r;
fail:
    mela_run_close(r);
    return NULL;
}

mela_run *mela_run_open(const mela_run_config *rc, const mela_run_data *data)
{
    return run_open_rows(rc, data, 1, 0);
}

mela_learner *mela_run_learner(mela_run *r) { return r->l; }
float *mela_run_theta(mela_run *r) { return r->theta; }

/* ------------------------------------------------------------- evaluation */

/* Tasks of a split for training (train = 1) or evaluation, under seed. */
mela_tasks *run_tasks(mela_run *r, int train, const mela_split *sp, uint64_t seed, int slots)
{
    mela_tasks_opts o;
    mela_learner_tasks(r->l, train, &o);
    o.seed = seed;
    o.slots = slots;
    return mela_tasks_new(r->data.ds, o.kind == MELA_TASKS_SINUSOID ? NULL : sp, &o);
}

typedef struct eval_job {
    mela_run *r;
    mela_tasks *ts;
    int n, slot, nthreads, rc;
    double *acc, *loss;
    char error[256];
} eval_job;

static void *eval_worker(void *arg)
{
    eval_job *j = arg;
    for (int i = j->slot; i < j->n; i += j->nthreads) {
        mela_task t;
        mela_tasks_get(j->ts, j->slot, (uint64_t)i, &t);
        if (mela_learner_evaluate(j->r->l, j->r->theta, &t, j->slot, &j->loss[i], &j->acc[i], NULL)) {
            j->rc = -1;
            snprintf(j->error, sizeof j->error, "%s", mela_last_error());
            return NULL;
        }
    }
    return NULL;
}

/* Evaluates n tasks of ts on the run's threads (one slot each, spare
 * threads to the convolutions); per-task results are kept by index, so the
 * mean does not depend on the thread count. */
int run_evaluate(mela_run *r, mela_tasks *ts, int n, mela_eval_result *res)
{
    int all = r->rc.threads, threads = all;
    if (threads > mela_tasks_slots(ts))
        threads = mela_tasks_slots(ts);
    if (threads > n)
        threads = n;
    if (mela_learner_reserve(r->l, threads, all > threads ? all / threads : 1))
        return -1;
    double *acc = calloc(2 * (size_t)n, sizeof *acc);
    eval_job *jobs = calloc(threads, sizeof *jobs);
    int rc = 0;
    if (!acc || !jobs) {
        free(acc), free(jobs);
        return mela_set_error("evaluation: out of memory");
    }
    for (int k = 0; k < threads; k++)
        jobs[k] = (eval_job){r, ts, n, k, threads, 0, acc, acc + n, ""};
    int blas = tp_blas_hold();
    mela_parallel(threads, eval_worker, jobs, sizeof *jobs);
    tp_blas_release(blas);
    for (int k = 0; k < threads && !rc; k++)
        if (jobs[k].rc)
            rc = mela_set_error("evaluation: %s", jobs[k].error);
    if (!rc) {
        res->episodes = n;
        mela_mean_ci(acc, n, &res->acc, &res->acc_ci);
        mela_mean_ci(acc + n, n, &res->loss, &res->loss_ci);
    }
    free(acc), free(jobs);
    return rc;
}

int mela_run_test(mela_run *r, int episodes, mela_eval_result *res)
{
    const mela_run_config *rc = &r->rc;
    memset(res, 0, sizeof *res);
    mela_tasks *ts = run_tasks(r, 0, r->data.test, (uint64_t)rc->test_seed, rc->threads);
    int status = ts ? run_evaluate(r, ts, episodes > 0 ? episodes : rc->test_episodes, res) : -1;
    mela_tasks_free(ts);
    if (status)
        return -1;
    mela_task_spec te = mela_run_test_spec(rc);
    res->regression = mela_run_regression(rc);
    res->ways = te.ways;
    res->shots = te.shots;
    res->steps = mela_learner_info_of(r->l)->adapts ? rc->test_steps : 0;
    return 0;
}

/* ------------------------------------------------------------ checkpoints */

/* Metadata of a checkpoint: every option, then the extra pairs. */
static int save_checkpoint(const mela_run *r, const char *name, int iteration, double val)
{
    enum { MAXMETA = 80 };
    char vals[MAXMETA][520], path[1100];
    const char *keys[MAXMETA], *vp[MAXMETA];
    int n = 0;
    for (int i = 0; n < MAXMETA - 4; i++, n++) {
        if (!(keys[n] = mela_run_option(i, &r->rc, vals[n], sizeof vals[n], NULL)))
            break;
        vp[n] = vals[n];
    }
    const char *extra[2][2] = {{"format", "mela-run-1"}, {"mela_version", mela_version()}};
    for (int k = 0; k < 2; k++, n++)
        keys[n] = extra[k][0], vp[n] = extra[k][1];
    keys[n] = "iteration", snprintf(vals[n], sizeof vals[n], "%d", iteration), vp[n] = vals[n], n++;
    keys[n] = "validation", snprintf(vals[n], sizeof vals[n], "%.9g", val), vp[n] = vals[n], n++;
    snprintf(path, sizeof path, "%s/%s", r->rc.out_dir, name);
    return mela_checkpoint_save(path, mela_learner_layout(r->l), r->theta, n, keys, vp);
}

/* --------------------------------------------------------------- the loop */

typedef struct fit {
    mela_tasks *train, *val;
    mela_task *tasks;
    mela_metrics *log;
    mela_progress p;
    double t0, sum_loss, sum_acc;
    double step_s; /* in mela_learner_step: gradients and updates */
    int nsum;
} fit;

/* Validation episodes under test_seed (sinusoids: a stream of their own, so
 * that validation and test tasks differ), training tasks under seed. */
static int fit_begin(mela_run *r, fit *f)
{
    const mela_run_config *rc = &r->rc;
    int B = rc->meta_batch, T = rc->threads;
    uint64_t vseed = mela_run_regression(rc) ? (uint64_t)rc->test_seed ^ 0x76616cULL : (uint64_t)rc->test_seed;
    memset(f, 0, sizeof *f);
    f->p = (mela_progress){.iterations = rc->iterations, .val_loss = NAN, .val_acc = NAN,
                           .best_val = -INFINITY};
    if (!(f->tasks = calloc(B, sizeof *f->tasks)))
        return mela_set_error("run: out of memory");
    if (!(f->train = run_tasks(r, 1, r->data.train, (uint64_t)rc->seed, B > T ? B : T)) ||
        !(f->val = run_tasks(r, 0, r->data.val, vseed, T)))
        return -1;
    if (rc->out_dir[0] && !(f->log = mela_metrics_open(rc->out_dir, "metrics")))
        return -1;
    mela_rng init = mela_rng_derive((uint64_t)rc->seed, 0x696e6974ULL, 0);
    mela_learner_init(r->l, r->theta, &init);
    f->t0 = mela_sys_now();
    return 0;
}

static int fit_end(fit *f, int status)
{
    if (f->log && mela_metrics_close(f->log) && status == 0)
        status = -1;
    mela_tasks_free(f->train);
    mela_tasks_free(f->val);
    free(f->tasks);
    return status;
}

/* Validation: the score (accuracy; regression: -MSE), best and last. */
static int fit_validate(mela_run *r, fit *f, int it)
{
    const mela_run_config *rc = &r->rc;
    mela_eval_result v;
    double t0 = mela_sys_now();
    if (run_evaluate(r, f->val, rc->val_episodes, &v))
        return -1;
    f->p.validate_s += mela_sys_now() - t0;
    f->p.val_loss = v.loss, f->p.val_acc = v.acc, f->p.validated = 1;
    double score = mela_run_regression(rc) ? -v.loss : v.acc;
    if (!rc->out_dir[0]) {
        f->p.best_val = score > f->p.best_val ? score : f->p.best_val;
        return 0;
    }
    if (score > f->p.best_val) {
        f->p.best_val = score;
        if (save_checkpoint(r, "best.safetensors", it, score))
            return -1;
    }
    return save_checkpoint(r, "last.safetensors", it, score);
}

/* Progress and a metrics row: the means since the last report. */
static int fit_report(mela_run *r, fit *f, int it, mela_progress_fn fn, void *ctx)
{
    mela_progress *p = &f->p;
    p->iteration = it;
    p->update_s = mela_learner_update_seconds(r->l);
    p->grad_s = f->step_s - p->update_s;
    p->loss = f->sum_loss / f->nsum, p->acc = f->sum_acc / f->nsum;
    p->seconds = mela_sys_now() - f->t0;
    p->tasks_per_second = (double)it * r->rc.meta_batch / p->seconds;
    p->eta = p->seconds / it * (r->rc.iterations - it);
    f->sum_loss = f->sum_acc = 0, f->nsum = 0;
    const char *keys[] = {"iteration", "seconds", "loss", "acc", "val_loss", "val_acc"};
    double vals[] = {it, p->seconds, p->loss, p->acc, p->validated ? p->val_loss : NAN,
                     p->validated ? p->val_acc : NAN};
    if (f->log && mela_metrics_write(f->log, 6, keys, vals))
        return -1;
    if (fn)
        fn(p, ctx);
    return 0;
}

int mela_run_fit(mela_run *r, int report, mela_progress_fn fn, void *ctx)
{
    const mela_run_config *rc = &r->rc;
    int B = rc->meta_batch, blas = tp_blas_hold();
    fit f;
    int status = fit_begin(r, &f);
    for (int it = 1; it <= rc->iterations && !status; it++) {
        double t0 = mela_sys_now();
        for (int b = 0; b < B; b++)
            mela_tasks_get(f.train, b, (uint64_t)(it - 1) * B + b, &f.tasks[b]);
        double loss, acc, t1 = mela_sys_now();
        f.p.data_s += t1 - t0;
        if ((status = mela_learner_step(r->l, r->theta, it, B, f.tasks, &loss, &acc)))
            break;
        f.step_s += mela_sys_now() - t1;
        f.sum_loss += loss, f.sum_acc += acc, f.nsum++;
        int validate = (rc->val_every > 0 && it % rc->val_every == 0) || it == rc->iterations;
        f.p.validated = 0;
        if (validate && (status = fit_validate(r, &f, it)))
            break;
        if (it % (report < 1 ? 1 : report) == 0 || validate)
            status = fit_report(r, &f, it, fn, ctx);
    }
    tp_blas_release(blas);
    return fit_end(&f, status);
}

int mela_run_train(const mela_run_config *rc, int report, mela_progress_fn fn, void *ctx)
{
    mela_run *r = mela_run_open(rc, NULL);
    if (!r)
        return -1;
    int status = mela_run_fit(r, report, fn, ctx);
    mela_run_close(r);
    return status;
}
