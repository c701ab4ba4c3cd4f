/*
 * gbml.c - gradient-based meta-learning: the inner loop built once as a graph
 * (MAML, first-order MAML, Meta-SGD, ANIL), compiled into a training plan
 * (query loss and meta-gradient) and an evaluation plan (test_steps inner
 * steps, query loss, accuracy and outputs), run on a pool of executors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "learn/taskpool.h"

#define MAXV TP_MAXV

struct mela_gbml {
    const mela_model *m;
    mela_gbml_config c;
    mela_layout *L;
    int nmodel;       /* model views: 0..nmodel */
    int first;        /* first adapted view */
    int nadapt;       /* adapted views: first..first+nadapt */
    int nviews;       /* all views: model, then "lr.*" for Meta-SGD */
    taskpool tp;
};

static mela_node task_loss(const mela_gbml *gb, mela_graph *g, mela_node out, mela_node y)
{
    return gb->c.regression ? mela_mse(g, out, y) : mela_cross_entropy(g, out, y);
}

/* Builds the inner loop with `steps` steps; with meta, also the gradient of
 * the query loss with respect to every view. */
static int build(mela_gbml *gb, task_graph *o, int steps, int meta)
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
    return tp_compile(o, meta, gb->nviews, w);
}

void mela_gbml_free(mela_gbml *gb)
{
    if (!gb)
        return;
    tp_free(&gb->tp);
    mela_layout_free(gb->L);
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
    gb->tp.L = gb->L;
    if (build(gb, &gb->tp.train, c->steps, 1) || build(gb, &gb->tp.eval, c->test_steps, 0) ||
        tp_reserve(&gb->tp, 1)) {
        mela_gbml_free(gb);
        return NULL;
    }
    return gb;
}

const mela_layout *mela_gbml_layout(const mela_gbml *gb) { return gb->L; }
const mela_gbml_config *mela_gbml_config_of(const mela_gbml *gb) { return &gb->c; }
size_t mela_gbml_arena_bytes(const mela_gbml *gb) { return mela_plan_arena_bytes(gb->tp.train.p); }
int mela_gbml_steps(const mela_gbml *gb) { return mela_plan_steps(gb->tp.train.p); }
void mela_gbml_set_profiling(mela_gbml *gb, int on) { tp_set_profiling(&gb->tp, on); }
void mela_gbml_profile(const mela_gbml *gb, double *s, long *c) { tp_profile(&gb->tp, s, c); }
int mela_gbml_reserve(mela_gbml *gb, int slots) { return tp_reserve(&gb->tp, slots); }

int mela_gbml_evaluate(mela_gbml *gb, const float *theta, const mela_task *task, int slot,
                       double *loss, double *acc, float *out)
{
    return tp_evaluate(&gb->tp, theta, task, slot, loss, acc, out);
}

int mela_gbml_meta_grad(mela_gbml *gb, const float *theta, int n, const mela_task *tasks,
                        int threads, float *grad, double *loss, double *acc)
{
    return tp_grad(&gb->tp, theta, n, tasks, threads, grad, loss, acc);
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

