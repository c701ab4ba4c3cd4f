/*
 * gbml.c - gradient-based meta-learning: the inner loop built once as a graph
 * (MAML, first-order MAML, Meta-SGD, ANIL), compiled into a training plan
 * (query loss and meta-gradient) and an evaluation plan (test_steps inner
 * steps, query loss, accuracy and outputs), run on a pool of executors.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mela_learn.h"

#define MAXV (2 * MELA_MODEL_MAX_PARAMS)

typedef struct gbml_graph {
    mela_graph *g;
    mela_plan *p;
    mela_node xs, ys, xq, yq, loss, acc, out;
    mela_node grads[MAXV];
    int ngrads;
} gbml_graph;

struct mela_gbml {
    const mela_model *m;
    mela_gbml_config c;
    mela_layout *L;
    int nmodel;       /* model views: 0..nmodel */
    int first;        /* first adapted view */
    int nadapt;       /* adapted views: first..first+nadapt */
    int nviews;       /* all views: model, then "lr.*" for Meta-SGD */
    gbml_graph train, eval;
    mela_exec **et, **ee;
    int nslots;
    float *task_grads; /* tcap * layout size */
    int tcap;
    int profiling;     /* new training executors profile too */
};

static mela_node task_loss(const mela_gbml *gb, mela_graph *g, mela_node out, mela_node y)
{
    return gb->c.regression ? mela_mse(g, out, y) : mela_cross_entropy(g, out, y);
}

/* Builds the inner loop with `steps` steps; with meta, also the gradient of
 * the query loss with respect to every view. */
static int build(mela_gbml *gb, gbml_graph *o, int steps, int meta)
{
    const mela_model *m = gb->m;
    const mela_gbml_config *c = &gb->c;
    mela_graph *g = o->g = mela_graph_new();
    if (!g)
        return -1;
    mela_node w[MAXV], fast[MAXV], gr[MAXV];
    for (int i = 0; i < gb->nviews; i++)
        w[i] = mela_param(g, gb->L, i);
    int ns = c->regression ? c->shots : c->ways * c->shots;
    int q = !meta && c->test_queries > 0 ? c->test_queries : c->queries;
    int nq = c->regression ? q : c->ways * q;
    if (!meta && c->query_total > 0)
        nq = c->query_total;
    o->xs = mela_input(g, "x_support", mela_model_input_shape(m, ns));
    o->xq = mela_input(g, "x_query", mela_model_input_shape(m, nq));
    o->ys = mela_input(g, "y_support", c->regression ? MELA_SHAPE(ns, 1) : MELA_SHAPE(ns));
    o->yq = mela_input(g, "y_query", c->regression ? MELA_SHAPE(nq, 1) : MELA_SHAPE(nq));
    memcpy(fast, w, gb->nmodel * sizeof *w);
    int anil = c->learner == MELA_LEARNER_ANIL;
    /* ANIL: the body does not adapt, so its features are computed once. */
    mela_node fs = anil ? mela_model_body(m, g, w, o->xs) : MELA_NONE;
    mela_node fq = anil ? mela_model_body(m, g, w, o->xq) : MELA_NONE;
    for (int s = 0; s < steps; s++) {
        mela_node out = anil ? mela_model_head(m, g, fast, fs) : mela_model_forward(m, g, fast, o->xs);
        mela_node loss = task_loss(gb, g, out, o->ys);
        if (mela_grad(g, loss, MELA_NONE, gb->nadapt, fast + gb->first, gr))
            break;
        for (int j = 0; j < gb->nadapt; j++) {
            mela_node d = c->first_order ? mela_stop_gradient(g, gr[j]) : gr[j];
            mela_node step = c->learner == MELA_LEARNER_METASGD ? mela_mul(g, w[gb->nmodel + j], d)
                                                                : mela_scale(g, d, c->inner_lr);
            fast[gb->first + j] = mela_sub(g, fast[gb->first + j], step);
        }
    }
    o->out = anil ? mela_model_head(m, g, fast, fq) : mela_model_forward(m, g, fast, o->xq);
    o->loss = task_loss(gb, g, o->out, o->yq);
    o->acc = c->regression ? MELA_NONE : mela_accuracy(g, o->out, o->yq);
    mela_node outs[MAXV + 3];
    int no = 0;
    outs[no++] = o->loss;
    outs[no++] = o->out;
    if (o->acc != MELA_NONE)
        outs[no++] = o->acc;
    if (meta) {
        o->ngrads = gb->nviews;
        mela_grad(g, o->loss, MELA_NONE, gb->nviews, w, o->grads);
        memcpy(outs + no, o->grads, gb->nviews * sizeof *outs);
        no += gb->nviews;
    }
    if (mela_graph_error(g))
        return mela_set_error("learner: building the inner loop failed: %s", mela_graph_error(g));
    o->p = mela_plan_new(g, no, outs);
    return o->p ? 0 : -1;
}

void mela_gbml_free(mela_gbml *gb)
{
    if (!gb)
        return;
    for (int i = 0; i < gb->nslots; i++) {
        mela_exec_free(gb->et[i]);
        mela_exec_free(gb->ee[i]);
    }
    free(gb->et);
    free(gb->ee);
    gbml_graph *gs[2] = {&gb->train, &gb->eval};
    for (int k = 0; k < 2; k++) {
        mela_plan_free(gs[k]->p);
        mela_graph_free(gs[k]->g);
    }
    mela_layout_free(gb->L);
    free(gb->task_grads);
    free(gb);
}

mela_gbml *mela_gbml_new(const mela_model *m, const mela_gbml_config *c)
{
    const char *why = NULL;
    int nout = mela_model_outputs(m);
    if (c->learner < MELA_LEARNER_MAML || c->learner > MELA_LEARNER_ANIL)
        why = "unknown learner";
    else if (c->shots < 1)
        why = "shots must be at least 1";
    else if (c->queries < 1)
        why = "queries must be at least 1";
    else if (c->steps < 0 || c->test_steps < 0 || c->steps > 100 || c->test_steps > 100)
        why = "inner steps must be in 0..100";
    else if (!c->regression && c->ways < 2)
        why = "ways must be at least 2";
    else if (!(c->inner_lr > 0) || c->inner_lr > 100)
        why = "the inner learning rate must be in (0, 100]";
    if (why) {
        mela_set_error("learner: %s (ways %d, shots %d, queries %d, steps %d/%d, inner lr %g)", why,
                       c->ways, c->shots, c->queries, c->steps, c->test_steps, (double)c->inner_lr);
        return NULL;
    }
    if (nout != (c->regression ? 1 : c->ways)) {
        mela_set_error("learner: the model has %d outputs but the task needs %d", nout,
                       c->regression ? 1 : c->ways);
        return NULL;
    }
    mela_gbml *gb = calloc(1, sizeof *gb);
    if (!gb || !(gb->L = mela_layout_new())) {
        free(gb);
        mela_set_error("learner: out of memory");
        return NULL;
    }
    gb->m = m;
    gb->c = *c;
    const mela_layout *ml = mela_model_layout(m);
    gb->nmodel = mela_layout_count(ml);
    gb->first = c->learner == MELA_LEARNER_ANIL ? mela_model_head_first(m) : 0;
    gb->nadapt = gb->nmodel - gb->first;
    for (int i = 0; i < gb->nmodel; i++)
        mela_layout_add(gb->L, mela_layout_name(ml, i), mela_layout_shape(ml, i));
    if (c->learner == MELA_LEARNER_METASGD)
        for (int i = 0; i < gb->nadapt; i++) {
            char name[96];
            snprintf(name, sizeof name, "lr.%s", mela_layout_name(ml, gb->first + i));
            mela_layout_add(gb->L, name, mela_layout_shape(ml, gb->first + i));
        }
    gb->nviews = mela_layout_count(gb->L);
    if (build(gb, &gb->train, c->steps, 1) || build(gb, &gb->eval, c->test_steps, 0) ||
        mela_gbml_reserve(gb, 1)) {
        mela_gbml_free(gb);
        return NULL;
    }
    return gb;
}

const mela_layout *mela_gbml_layout(const mela_gbml *gb) { return gb->L; }
const mela_gbml_config *mela_gbml_config_of(const mela_gbml *gb) { return &gb->c; }
size_t mela_gbml_arena_bytes(const mela_gbml *gb) { return mela_plan_arena_bytes(gb->train.p); }
int mela_gbml_steps(const mela_gbml *gb) { return mela_plan_steps(gb->train.p); }

void mela_gbml_set_profiling(mela_gbml *gb, int on)
{
    gb->profiling = on;
    for (int i = 0; i < gb->nslots; i++)
        mela_exec_set_profiling(gb->et[i], on);
}

void mela_gbml_profile(const mela_gbml *gb, double *seconds, long *calls)
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
}

void mela_gbml_init(const mela_gbml *gb, float *theta, mela_rng *r)
{
    memset(theta, 0, mela_layout_size(gb->L) * sizeof *theta);
    mela_model_init(gb->m, theta, r);
    for (int i = gb->nmodel; i < gb->nviews; i++) {
        float *p = theta + mela_layout_offset(gb->L, i);
        size_t n = mela_shape_numel(mela_layout_shape(gb->L, i));
        for (size_t j = 0; j < n; j++)
            p[j] = gb->c.inner_lr;
    }
}

int mela_gbml_reserve(mela_gbml *gb, int slots)
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
        gb->ee[i] = gb->et[i] ? mela_exec_new(gb->eval.p) : NULL;
        if (!gb->ee[i]) {
            mela_exec_free(gb->et[i]);
            return -1;
        }
        gb->nslots = i + 1;
    }
    return 0;
}

static int run_task(mela_exec *e, const gbml_graph *o, const float *theta, const mela_task *t)
{
    mela_exec_bind_params(e, theta);
    mela_exec_bind(e, o->xs, t->xs);
    mela_exec_bind(e, o->ys, t->ys);
    mela_exec_bind(e, o->xq, t->xq);
    mela_exec_bind(e, o->yq, t->yq);
    return mela_exec_run(e);
}

int mela_gbml_evaluate(mela_gbml *gb, const float *theta, const mela_task *task, int slot,
                       double *loss, double *acc, float *out)
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
    mela_gbml *gb;
    const float *theta;
    const mela_task *tasks;
    int n, slot, nthreads, rc;
    double *loss, *acc;
    char error[256];
} job;

static void *worker(void *arg)
{
    job *j = arg;
    mela_gbml *gb = j->gb;
    size_t size = mela_layout_size(gb->L);
    mela_exec *e = gb->et[j->slot];
    for (int t = j->slot; t < j->n; t += j->nthreads) {
        if (run_task(e, &gb->train, j->theta, &j->tasks[t])) {
            j->rc = -1;
            snprintf(j->error, sizeof j->error, "task %d: %s", t, mela_last_error());
            return NULL;
        }
        j->loss[t] = mela_exec_value(e, gb->train.loss)[0];
        j->acc[t] = gb->train.acc != MELA_NONE ? mela_exec_value(e, gb->train.acc)[0] : 0.0;
        float *dst = gb->task_grads + (size_t)t * size;
        for (int v = 0; v < gb->nviews; v++)
            memcpy(dst + mela_layout_offset(gb->L, v), mela_exec_value(e, gb->train.grads[v]),
                   mela_shape_numel(mela_layout_shape(gb->L, v)) * sizeof *dst);
    }
    return NULL;
}

int mela_gbml_meta_grad(mela_gbml *gb, const float *theta, int n, const mela_task *tasks,
                        int threads, float *grad, double *loss, double *acc)
{
    if (n < 1)
        return mela_set_error("learner: a meta-batch needs at least one task");
    if (threads < 1)
        threads = 1;
    if (threads > n)
        threads = n;
    size_t size = mela_layout_size(gb->L);
    if (n > gb->tcap) {
        float *tg = realloc(gb->task_grads, (size_t)n * size * sizeof *tg);
        if (!tg)
            return mela_set_error("learner: out of memory for %d task gradients", n);
        memset(tg, 0, (size_t)n * size * sizeof *tg); /* padding between views stays 0 */
        gb->task_grads = tg;
        gb->tcap = n;
    }
    if (mela_gbml_reserve(gb, threads))
        return -1;
    double *tl = calloc(2 * (size_t)n, sizeof *tl);
    job *jobs = calloc(threads, sizeof *jobs);
    pthread_t *tid = calloc(threads, sizeof *tid);
    char *started = calloc(threads, 1);
    if (!tl || !jobs || !tid || !started) {
        free(tl), free(jobs), free(tid), free(started);
        return mela_set_error("learner: out of memory");
    }
    for (int k = 0; k < threads; k++)
        jobs[k] = (job){gb, theta, tasks, n, k, threads, 0, tl, tl + n, ""};
    for (int k = 1; k < threads; k++)
        started[k] = pthread_create(&tid[k], NULL, worker, &jobs[k]) == 0;
    worker(&jobs[0]);
    for (int k = 1; k < threads; k++) {
        if (started[k])
            pthread_join(tid[k], NULL);
        else
            worker(&jobs[k]); /* no thread: run its share here */
    }
    free(started);
    int rc = 0;
    for (int k = 0; k < threads && !rc; k++)
        if (jobs[k].rc)
            rc = mela_set_error("learner: %s", jobs[k].error);
    if (!rc) {
        /* the mean over tasks, summed in task order: thread-count independent */
        memcpy(grad, gb->task_grads, size * sizeof *grad);
        for (int t = 1; t < n; t++) {
            const float *src = gb->task_grads + (size_t)t * size;
            for (size_t i = 0; i < size; i++)
                grad[i] += src[i];
        }
        float inv = 1.0f / (float)n;
        for (size_t i = 0; i < size; i++)
            grad[i] *= inv;
        double sl = 0, sa = 0;
        for (int t = 0; t < n; t++)
            sl += tl[t], sa += tl[n + t];
        if (loss)
            *loss = sl / n;
        if (acc)
            *acc = sa / n;
    }
    free(tl), free(jobs), free(tid);
    return rc;
}
