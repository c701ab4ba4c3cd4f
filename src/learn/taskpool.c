/*
 * taskpool.c - executors for a learner's training and evaluation plans, and
 * the batch of tasks run on threads with gradients averaged in task order
 * (so results do not depend on the number of threads).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "learn/dist.h"
#include "learn/taskpool.h"

int tp_blas_hold(void)
{
    int prev = mk_blas_threads();
    if (prev != 1)
        mk_blas_set_threads(1);
    return prev;
}

void tp_blas_release(int prev)
{
    if (prev != 1 && prev >= 1)
        mk_blas_set_threads(prev);
}

int tp_compile(task_graph *o, int mode, int nw, const mela_node *w)
{
    mela_graph *g = o->g;
    mela_node outs[TP_MAXV + 3];
    int no = 0;
    outs[no++] = o->loss;
    outs[no++] = o->out;
    if (o->acc != MELA_NONE)
        outs[no++] = o->acc;
    o->ngrads = 0;
    if (mode != TP_GRAD_NONE) {
        if (nw > TP_MAXV)
            return mela_set_error("learner: %d views are more than %d", nw, TP_MAXV);
        o->ngrads = nw;
        if (mode == TP_GRAD_LOSS)
            mela_grad(g, o->loss, MELA_NONE, nw, w, o->grads);
        memcpy(outs + no, o->grads, nw * sizeof *outs);
        no += nw;
    }
    if (mela_graph_error(g))
        return mela_set_error("learner: building the graph failed: %s", mela_graph_error(g));
    o->p = mela_plan_new(g, no, outs);
    return o->p ? 0 : -1;
}

void tp_free(taskpool *tp)
{
    for (int i = 0; i < tp->nslots; i++) {
        mela_exec_free(tp->et[i]);
        mela_exec_free(tp->ee[i]);
    }
    free(tp->et);
    free(tp->ee);
    task_graph *gs[2] = {&tp->train, &tp->eval};
    for (int k = 0; k < 2; k++) {
        mela_plan_free(gs[k]->p);
        mela_graph_free(gs[k]->g);
    }
    free(tp->task_grads);
    mk_pool_free(tp->pool);
    memset(tp, 0, sizeof *tp);
}

void tp_set_profiling(taskpool *gb, int on)
{
    gb->profiling = on;
    for (int i = 0; i < gb->nslots; i++)
        mela_exec_set_profiling(gb->et[i], on);
}

void tp_profile(const taskpool *gb, double *seconds, long *calls)
{
    int n = mela_op_count();
    double *s = calloc(n, sizeof *s);
    long *c = calloc(n, sizeof *c);
    for (int i = 0; i < n; i++)
        seconds[i] = 0, calls[i] = 0;
    for (int k = 0; k < gb->nslots && s && c; k++) {
        mela_exec_profile(gb->et[k], s, c);
        for (int i = 0; i < n; i++)
            seconds[i] += s[i], calls[i] += c[i];
    }
    free(s);
    free(c);
    if (gb->more_profile)
        gb->more_profile(gb->more_ctx, seconds, calls);
}

int tp_reserve_threads(taskpool *tp, int slots, int kernel_threads)
{
    if (tp_reserve(tp, slots))
        return -1;
    for (int i = 0; i < slots; i++)
        if (tp->ee[i])
            mela_exec_set_threads(tp->ee[i], kernel_threads);
    return 0;
}

int tp_reserve(taskpool *gb, int slots)
{
    if (slots <= gb->nslots)
        return 0;
    mela_exec **et = realloc(gb->et, slots * sizeof *et);
    if (et)
        gb->et = et;
    mela_exec **ee = realloc(gb->ee, slots * sizeof *ee);
    if (ee)
        gb->ee = ee;
    if (!et || !ee)
        return mela_set_error("learner: out of memory");
    for (int i = gb->nslots; i < slots; i++) {
        gb->et[i] = mela_exec_new(gb->train.p);
        if (gb->et[i] && gb->profiling)
            mela_exec_set_profiling(gb->et[i], 1);
        gb->ee[i] = gb->et[i] && gb->eval.p ? mela_exec_new(gb->eval.p) : NULL;
        if (!gb->et[i] || (gb->eval.p && !gb->ee[i])) {
            mela_exec_free(gb->et[i]);
            return -1;
        }
        gb->nslots = i + 1;
    }
    return 0;
}

static int run_task(mela_exec *e, const task_graph *o, const float *theta, const mela_task *t)
{
    mela_exec_bind_params(e, theta);
    mela_exec_bind(e, o->xs, t->xs);
    mela_exec_bind(e, o->ys, t->ys);
    mela_exec_bind(e, o->xq, t->xq);
    mela_exec_bind(e, o->yq, t->yq);
    if (o->extra != MELA_NONE)
        mela_exec_bind(e, o->extra, o->extra_data);
    return mela_exec_run(e);
}

int tp_evaluate(taskpool *gb, const float *theta, const mela_task *task, int slot, double *loss,
                double *acc, float *out)
{
    if (slot < 0 || slot >= gb->nslots)
        return mela_set_error("learner: executor slot %d not reserved", slot);
    mela_exec *e = gb->ee[slot];
    if (run_task(e, &gb->eval, theta, task))
        return -1;
    if (loss)
        *loss = mela_exec_value(e, gb->eval.loss)[0];
    if (acc)
        *acc = gb->eval.acc != MELA_NONE ? mela_exec_value(e, gb->eval.acc)[0] : 0.0;
    if (out)
        memcpy(out, mela_exec_value(e, gb->eval.out),
               mela_shape_numel(mela_node_shape(gb->eval.g, gb->eval.out)) * sizeof *out);
    return 0;
}

typedef struct job {
    taskpool *gb;
    const float *theta;
    const mela_task *tasks;
    int lo, hi, slot, nthreads, rc; /* tasks lo..hi-1, this process's */
    double *loss, *acc;
    char error[256];
} job;

static void *worker(void *arg)
{
    job *j = arg;
    taskpool *gb = j->gb;
    size_t size = mela_layout_size(gb->L);
    mela_exec *e = gb->et[j->slot];
    for (int t = j->lo + j->slot; t < j->hi; t += j->nthreads) {
        if (run_task(e, &gb->train, j->theta, &j->tasks[t])) {
            j->rc = -1;
            snprintf(j->error, sizeof j->error, "task %d: %s", t, mela_last_error());
            return NULL;
        }
        j->loss[t] = mela_exec_value(e, gb->train.loss)[0];
        j->acc[t] = gb->train.acc != MELA_NONE ? mela_exec_value(e, gb->train.acc)[0] : 0.0;
        float *dst = gb->task_grads + (size_t)(t - j->lo) * size;
        for (int v = 0; v < gb->train.ngrads; v++)
            memcpy(dst + mela_layout_offset(gb->L, v), mela_exec_value(e, gb->train.grads[v]),
                   mela_shape_numel(mela_layout_shape(gb->L, v)) * sizeof *dst);
    }
    return NULL;
}

/* The tasks lo..hi of this process (all of them with one process) on its
 * threads, the gradients of task t at row t - lo of task_grads; then the
 * mean over all n tasks, summed in task order on every process (dist_fold),
 * and the mean loss and accuracy, summed in task order too. */
int tp_grad(taskpool *gb, const float *theta, int n, const mela_task *tasks, int threads,
            float *grad, double *loss, double *acc)
{
    if (n < 1)
        return mela_set_error("learner: a meta-batch needs at least one task");
    int lo, hi;
    dist_share(n, &lo, &hi);
    int mine = hi - lo;
    if (threads < 1)
        threads = 1;
    int all = threads;
    if (threads > mine)
        threads = mine;
    size_t size = mela_layout_size(gb->L);
    if (mine > gb->tcap) {
        float *tg = realloc(gb->task_grads, (size_t)mine * size * sizeof *tg);
        if (!tg)
            return dist_agree(mela_set_error("learner: out of memory for %d task gradients", mine));
        memset(tg, 0, (size_t)mine * size * sizeof *tg); /* padding between views stays 0 */
        gb->task_grads = tg;
        gb->tcap = mine;
    }
    if (tp_reserve(gb, threads > 1 ? threads : 1))
        return dist_agree(-1);
    /* spare threads go inside the tasks' convolutions (same results) */
    for (int k = 0; k < threads; k++)
        mela_exec_set_threads(gb->et[k], all > mine ? all / mine : 1);
    double *tl = calloc(4 * (size_t)n, sizeof *tl), *pairs = tl + 2 * (size_t)n;
    job *jobs = calloc(threads > 1 ? threads : 1, sizeof *jobs);
    if (!tl || !jobs) {
        free(tl), free(jobs);
        return dist_agree(mela_set_error("learner: out of memory"));
    }
    for (int k = 0; k < threads; k++)
        jobs[k] = (job){gb, theta, tasks, lo, hi, k, threads, 0, tl, tl + n, ""};
    int blas = tp_blas_hold();
    if (threads > 1 && mk_pool_threads(gb->pool) < threads) {
        mk_pool_free(gb->pool);
        gb->pool = mk_pool_new(threads);
    }
    if (threads > 0)
        mk_pool_run(threads > 1 ? gb->pool : NULL, threads, worker, jobs, sizeof *jobs);
    tp_blas_release(blas);
    int rc = 0;
    for (int k = 0; k < threads && !rc; k++)
        if (jobs[k].rc)
            rc = mela_set_error("learner: %s", jobs[k].error);
    if (!(rc = dist_agree(rc))) {
        /* the mean over tasks, summed in task order: thread- and process-count independent */
        dist_fold(grad, gb->task_grads, n, size, 1.0f / (float)n);
        /* per task (loss, acc) pairs, gathered: tl[t] and tl[n + t] as before */
        for (int t = lo; t < hi; t++)
            pairs[2 * t] = tl[t], pairs[2 * t + 1] = tl[n + t];
        dist_gather_items(pairs, n, 2);
        double sl = 0, sa = 0;
        for (int t = 0; t < n; t++)
            sl += pairs[2 * t], sa += pairs[2 * t + 1];
        if (loss)
            *loss = sl / n;
        if (acc)
            *acc = sa / n;
    }
    free(tl), free(jobs);
    return rc;
}
