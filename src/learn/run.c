/*
 * run.c - the meta-training loop every learner shares: tasks from the data
 * layer, one mela_learner_step per iteration, validation on fixed episodes
 * spread over threads, best and last checkpoints, metrics and progress.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sys.h"
#include "learn/dist.h"
#include "learn/learner.h"
#include "learn/run_impl.h"
#include "learn/taskpool.h"

/* ------------------------------------------------------------------- data */

/* Omniglot and the train, val and test splits the configuration names. */
static int load_omniglot(mela_run *r)
{
    const mela_run_config *rc = &r->rc;
    if (!rc->data_dir[0])
        return mela_set_error("data_dir: no Omniglot folder given (it holds images_background.zip "
                              "and images_evaluation.zip)");
    mela_omniglot_opts o = {.H = rc->image_size, .W = rc->image_size,
                            .cache_dir = rc->cache_dir[0] ? rc->cache_dir : NULL,
                            .nearest = !strcmp(rc->resize, "nearest")};
    if (!(r->own_ds = mela_omniglot_load(rc->data_dir, &o)))
        return -1;
    if (!strcmp(rc->split, "lake")) {
        r->own[0] = mela_split_lake(r->own_ds, "train");
        r->own[1] = r->own[0] ? mela_split_lake(r->own_ds, "koch_val") : NULL;
        r->own[2] = r->own[1] ? mela_split_lake(r->own_ds, "koch_test") : NULL;
    } else if (!strcmp(rc->split, "finn")) {
        r->own[0] = mela_split_finn(r->own_ds, "train");
        r->own[1] = r->own[0] ? mela_split_finn(r->own_ds, "val") : NULL;
        r->own[2] = r->own[1] ? mela_split_finn(r->own_ds, "test") : NULL;
    } else {
        /* trainval: Snell et al.'s 1,200 training characters, val and test as vinyals */
        r->own[0] = mela_split_vinyals(r->own_ds, rc->data_dir,
                                       strcmp(rc->split, "trainval") ? "train" : "trainval");
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
    if (r->lock >= 0)
        close(r->lock);
    free(r);
}

int run_load_data(mela_run *r)
{
    if (mela_run_regression(&r->rc))
        return 0;
    if (!r->data.ds && load_omniglot(r))
        return -1;
    if (!r->data.ds || !r->data.train || !r->data.val || !r->data.test)
        return mela_set_error("run: a classification run needs a dataset and its train, val and test splits");
    return 0;
}

mela_run *run_open_rows(const mela_run_config *rc, const mela_run_data *data, int load, int query_rows)
{
    mela_run *r = calloc(1, sizeof *r);
    if (!r) {
        mela_set_error("run: out of memory");
        return NULL;
    }
    r->rc = r->meta = *rc;
    r->lock = -1;
    if (!(r->l = mela_learner_new(rc, query_rows)))
        goto fail;
    r->theta = calloc(mela_layout_size(mela_learner_layout(r->l)), sizeof *r->theta);
    if (!r->theta) {
        mela_set_error("run: out of memory");
        goto fail;
    }
    if (data)
        r->data = *data;
    if (load && run_load_data(r))
        goto fail;
    return r;
fail:
    mela_run_close(r);
    return NULL;
}

/* out_dir is checked (and held) before the data, which may take minutes. */
mela_run *mela_run_open(const mela_run_config *rc, const mela_run_data *data)
{
    mela_run *r = run_open_rows(rc, data, 0, 0);
    if (r && ((run_writes(r) && run_dir_open(r)) || run_load_data(r))) {
        mela_run_close(r);
        r = NULL;
    }
    if (dist_agree(r ? 0 : -1)) {
        mela_run_close(r);
        return NULL;
    }
    return r;
}

int run_writes(const mela_run *r) { return r->rc.out_dir[0] && dist_rank() == 0; }

mela_learner *mela_run_learner(mela_run *r) { return r->l; }
float *mela_run_theta(mela_run *r) { return r->theta; }
int mela_run_iteration(const mela_run *r) { return r->st.iteration; }
const mela_run_config *mela_run_config_of(const mela_run *r) { return &r->rc; }
void mela_run_set_stop(mela_run *r, volatile sig_atomic_t *flag) { r->stop = flag; }

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
    int lo, hi, slot, nthreads, rc; /* episodes lo..hi-1 */
    double *acc, *loss;
    char error[256];
} eval_job;

static void *eval_worker(void *arg)
{
    eval_job *j = arg;
    for (int i = j->lo + j->slot; i < j->hi; i += j->nthreads) {
        mela_task t;
        mela_tasks_get(j->ts, j->slot, (uint64_t)i, &t);
        if (mela_learner_evaluate(j->r->l, j->r->theta, &t, j->slot, &j->acc[2 * i + 1],
                                  &j->acc[2 * i], NULL)) {
            j->rc = -1;
            snprintf(j->error, sizeof j->error, "%s", mela_last_error());
            return NULL;
        }
    }
    return NULL;
}

/* Evaluates n tasks of ts on the run's threads (one slot each, spare
 * threads to the convolutions), this process's share of them when there are
 * several; per-task results are kept by index and gathered, so the mean
 * does not depend on the thread or process count. */
int run_evaluate(mela_run *r, mela_tasks *ts, int n, mela_eval_result *res)
{
    int lo, hi;
    dist_share(n, &lo, &hi);
    int all = r->rc.threads, threads = all;
    if (threads > mela_tasks_slots(ts))
        threads = mela_tasks_slots(ts);
    if (threads > hi - lo)
        threads = hi - lo;
    double *acc = calloc(3 * (size_t)n, sizeof *acc); /* (acc, loss) of each, then the losses */
    eval_job *jobs = calloc(threads > 0 ? threads : 1, sizeof *jobs);
    int rc = 0;
    if (!acc || !jobs)
        rc = mela_set_error("evaluation: out of memory");
    else if (threads > 0 && mela_learner_reserve(r->l, threads, all > threads ? all / threads : 1))
        rc = -1;
    if (!rc && threads > 0) {
        for (int k = 0; k < threads; k++)
            jobs[k] = (eval_job){r, ts, lo, hi, k, threads, 0, acc, NULL, ""};
        int blas = tp_blas_hold();
        mela_parallel(threads, eval_worker, jobs, sizeof *jobs);
        tp_blas_release(blas);
        for (int k = 0; k < threads && !rc; k++)
            if (jobs[k].rc)
                rc = mela_set_error("evaluation: %s", jobs[k].error);
    }
    if (!(rc = dist_agree(rc))) {
        dist_gather_items(acc, n, 2);
        double *loss = acc + 2 * (size_t)n;
        for (int i = 0; i < n; i++)
            acc[i] = acc[2 * i], loss[i] = acc[2 * i + 1]; /* in place: i <= 2i */
        res->episodes = n;
        mela_mean_ci(acc, n, &res->acc, &res->acc_ci);
        mela_mean_ci(loss, n, &res->loss, &res->loss_ci);
    }
    free(acc), free(jobs);
    return rc;
}

int mela_run_test(mela_run *r, int episodes, mela_eval_result *res)
{
    const mela_run_config *rc = &r->rc;
    memset(res, 0, sizeof *res);
    mela_tasks *ts = run_tasks(r, 0, r->data.test, (uint64_t)rc->test_seed, rc->threads);
    int n = episodes > 0 ? episodes : rc->test_episodes;
    int status = dist_agree(ts ? 0 : -1) ? -1 : run_evaluate(r, ts, n, res);
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

/* --------------------------------------------------------------- the loop */

typedef struct fit {
    mela_tasks *train, *val, *cal; /* cal: training tasks of calibrations */
    mela_task *tasks;
    mela_metrics *log;
    mela_progress p;
    run_state st; /* after the last iteration done */
    int start;    /* the iteration this session began after */
    double t0;    /* when it began */
    double step_s; /* in mela_learner_step: gradients and updates */
} fit;

static const char *const metric_keys[] = {"iteration", "seconds", "loss", "acc", "val_loss", "val_acc"};

/* The run's files: a new run refuses a directory that holds a run and saves
 * its state before anything else (from then on a kill can be resumed); the
 * metrics go on from the state's record. */
static int fit_files(mela_run *r, fit *f)
{
    const char *dir = r->rc.out_dir;
    if (!r->resumed) {
        if (mela_run_saved(dir))
            return mela_set_error("%s already holds a run: continue it (mela_run_resume) or remove it "
                                  "first (mela_run_remove)", dir);
        if (run_save_state(r, &f->st))
            return -1;
    }
    f->log = mela_metrics_resume(dir, "metrics", f->st.metrics_rows, 6, metric_keys);
    return f->log ? 0 : -1;
}

/* Validation episodes under test_seed (sinusoids: a stream of their own, so
 * that validation and test tasks differ), training tasks under seed; a new
 * run starts from its initialisation, a resumed one from its state. */
static int fit_begin(mela_run *r, fit *f, int report)
{
    const mela_run_config *rc = &r->rc;
    int B = rc->meta_batch, T = rc->threads;
    uint64_t vseed = mela_run_regression(rc) ? (uint64_t)rc->test_seed ^ 0x76616cULL : (uint64_t)rc->test_seed;
    memset(f, 0, sizeof *f);
    if (r->failed)
        return mela_set_error("run: it failed after iteration %d; continue it from its directory "
                              "(mela_run_resume)", r->st.iteration);
    f->st = r->resumed ? r->st
                       : (run_state){.report = 1, .best = -INFINITY, .val_loss = NAN, .val_acc = NAN};
    if (report > 0 || !r->resumed)
        f->st.report = report < 1 ? 1 : report;
    f->start = f->st.iteration;
    f->p = (mela_progress){.iterations = rc->iterations, .val_loss = f->st.val_loss,
                           .val_acc = f->st.val_acc, .best_val = f->st.best,
                           .best_iteration = f->st.best_iteration, .stopped_early = f->st.early};
    if (!(f->tasks = calloc(B, sizeof *f->tasks)))
        return mela_set_error("run: out of memory");
    if (!(f->train = run_tasks(r, 1, r->data.train, (uint64_t)rc->seed, B > T ? B : T)) ||
        !(f->val = run_tasks(r, 0, r->data.val, vseed, T)))
        return -1;
    if (mela_learner_calibration_tasks(r->l) &&
        !(f->cal = run_tasks(r, 1, r->data.train, (uint64_t)rc->seed ^ 0x626e737461747300ULL, 1)))
        return -1;
    if (!r->resumed) {
        mela_rng init = mela_rng_derive((uint64_t)rc->seed, 0x696e6974ULL, 0);
        mela_learner_init(r->l, r->theta, &init);
    }
    if (run_writes(r) && fit_files(r, f))
        return -1;
    f->t0 = mela_sys_now();
    return 0;
}

/* What the next fit continues from: the state reached, unless this one
 * failed part way (theta may then be ahead of it). */
static int fit_end(mela_run *r, fit *f, int status, int began)
{
    if (f->log && mela_metrics_close(f->log) && status >= 0)
        status = -1;
    mela_tasks_free(f->train);
    mela_tasks_free(f->val);
    mela_tasks_free(f->cal);
    free(f->tasks);
    if (status >= 0) {
        r->st = f->st;
        r->st.seconds += mela_sys_now() - f->t0;
        r->resumed = 1;
    } else if (began) {
        r->failed = 1;
    }
    return status;
}

/* Validation: the score (accuracy; regression: -MSE), best and last. A
 * non-finite one stops the run before anything is written. */
static int fit_validate(mela_run *r, fit *f, int it)
{
    const mela_run_config *rc = &r->rc;
    mela_eval_result v;
    double t0 = mela_sys_now();
    int cal = f->cal && mela_learner_calibrate(r->l, r->theta, f->cal, mela_learner_calibration_tasks(r->l));
    if (dist_agree(cal ? -1 : 0) || run_evaluate(r, f->val, rc->val_episodes, &v))
        return -1;
    f->p.validate_s += mela_sys_now() - t0;
    double score = mela_run_regression(rc) ? -v.loss : v.acc;
    if (!isfinite(v.loss) || !isfinite(score))
        return mela_set_error("iteration %d: validation loss is %s", it,
                              learner_nonfinite_name(isfinite(v.loss) ? score : v.loss));
    f->st.val_loss = f->p.val_loss = v.loss;
    f->st.val_acc = f->p.val_acc = v.acc;
    f->p.validated = 1;
    /* trainval: the validation classes are training classes, so no selection: best = last */
    int better = score > f->st.best || mela_run_trains_on_val(rc);
    if (better) {
        f->st.best = f->p.best_val = score;
        f->st.best_iteration = f->p.best_iteration = it;
    }
    if (rc->patience > 0 && it - f->st.best_iteration >= rc->patience)
        f->st.early = f->p.stopped_early = 1;
    if (!run_writes(r))
        return 0;
    if (better && run_save_checkpoint(r, "best.safetensors", it, score))
        return -1;
    int search = !strcmp(rc->model, "search"); /* MetaNAS: the cell of the best and the last weights */
    for (int k = !better; search && k < 2; k++)
        if (mela_nas_write(rc, mela_learner_layout(r->l), r->theta, rc->out_dir, k ? "last-" : "") ||
            run_save_discrete(r, k ? "last-" : "", it, score))
            return -1;
    return run_save_checkpoint(r, "last.safetensors", it, score);
}

/* Progress and a metrics row: the means since the last report. */
static int fit_report(mela_run *r, fit *f, int it, mela_progress_fn fn, void *ctx)
{
    mela_progress *p = &f->p;
    double now = mela_sys_now() - f->t0;
    p->iteration = it;
    p->update_s = mela_learner_update_seconds(r->l);
    p->grad_s = f->step_s - p->update_s;
    p->loss = f->st.sum_loss / f->st.nsum, p->acc = f->st.sum_acc / f->st.nsum;
    p->seconds = f->st.seconds + now;
    p->tasks_per_second = (double)(it - f->start) * r->rc.meta_batch / now;
    p->eta = now / (it - f->start) * (r->rc.iterations - it);
    f->st.sum_loss = f->st.sum_acc = 0, f->st.nsum = 0;
    double vals[] = {it, p->seconds, p->loss, p->acc, p->validated ? p->val_loss : NAN,
                     p->validated ? p->val_acc : NAN};
    if (f->log && mela_metrics_write(f->log, 6, metric_keys, vals))
        return -1;
    f->st.metrics_rows += f->log != NULL;
    if (fn)
        fn(p, ctx);
    return 0;
}

/* The state after iteration it, with the time of this session so far. */
static int fit_save(mela_run *r, fit *f)
{
    run_state st = f->st;
    st.seconds += mela_sys_now() - f->t0;
    return run_writes(r) ? run_save_state(r, &st) : 0;
}

/* Iteration it (of a fit up to until): this process's share of the tasks,
 * the step (its collectives in tp_grad), the stop flags of every process
 * agreed on, then what rank 0 writes. 0, 1 (stopped, the state saved) or
 * -1. */
static int fit_iteration(mela_run *r, fit *f, int it, int until, mela_progress_fn fn, void *ctx)
{
    const mela_run_config *rc = &r->rc;
    int B = rc->meta_batch, lo, hi, status;
    dist_share(B, &lo, &hi);
    if (r->l->def->every_task && r->l->def->every_task(r->l, B))
        lo = 0, hi = B; /* the images of the episode are spread */
    double t0 = mela_sys_now();
    for (int b = lo; b < hi; b++)
        mela_tasks_get(f->train, b, (uint64_t)(it - 1) * B + b, &f->tasks[b]);
    double loss, acc, t1 = mela_sys_now();
    f->p.data_s += t1 - t0;
    mela_nas_set_schedule(rc, mela_learner_layout(r->l), r->theta, it); /* MetaNAS: T and warm-up */
    if ((status = mela_learner_step(r->l, r->theta, it, B, f->tasks, &loss, &acc)))
        return status;
    f->step_s += mela_sys_now() - t1;
    f->st.iteration = it;
    f->st.sum_loss += loss, f->st.sum_acc += acc, f->st.nsum++;
    int stop = dist_any(r->stop && *r->stop);
    int validate = (rc->val_every > 0 && it % rc->val_every == 0) || it == rc->iterations;
    f->p.validated = 0;
    if (validate && (status = fit_validate(r, f, it)))
        return status;
    if ((it % f->st.report == 0 || validate) && (status = fit_report(r, f, it, fn, ctx)))
        return status;
    if ((validate || stop || it == until) && (status = fit_save(r, f)))
        return status;
    return stop && it < until; /* 1: stopped, the state saved */
}

/* Every process runs the same iterations and agrees on each one's status
 * after its writes (a write of rank 0 may fail). Only rank 0 reports
 * progress. */
int mela_run_fit(mela_run *r, int report, mela_progress_fn fn, void *ctx)
{
    return mela_run_fit_until(r, r->rc.iterations, report, fn, ctx);
}

int mela_run_validation(const mela_run *r, double *val_loss, double *val_acc, double *best)
{
    if (val_loss)
        *val_loss = r->st.val_loss;
    if (val_acc)
        *val_acc = r->st.val_acc;
    if (best)
        *best = r->st.best;
    return r->st.iteration;
}

int mela_run_fit_until(mela_run *r, int until, int report, mela_progress_fn fn, void *ctx)
{
    const mela_run_config *rc = &r->rc;
    if (until > rc->iterations)
        until = rc->iterations;
    int blas = tp_blas_hold();
    fit f;
    int status = fit_begin(r, &f, report), began = status == 0;
    status = dist_agree(status);
    if (dist_rank() != 0)
        fn = NULL;
    for (int it = f.start + 1; it <= until && !status && !f.st.early; it++) {
        status = fit_iteration(r, &f, it, until, fn, ctx);
        if (dist_agree(status < 0 ? -1 : 0))
            status = -1;
    }
    tp_blas_release(blas);
    return fit_end(r, &f, status, began);
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
