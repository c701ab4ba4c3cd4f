/*
 * gbml.c - gradient-based meta-learning: the inner loop built once as a graph
 * (MAML, first-order MAML, Meta-SGD, ANIL, MAML++'s switches, Reptile),
 * compiled into a training plan (the meta-loss and its gradient, or Reptile's
 * direction theta - phi) and an evaluation plan (test_steps inner steps,
 * query loss, accuracy and outputs), run on the shared task pool.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "learn/taskpool.h"

#define ADAM_B2 0.999f /* Reptile's inner Adam (Nichol et al.) */

struct mela_gbml {
    const mela_model *m;
    mela_gbml_config c;
    mela_layout *L;
    int nmodel;                /* model views: 0..nmodel */
    int adapt[TP_MAXV], nadapt;/* views the inner loop adapts */
    int lr_first, lr_steps;    /* Meta-SGD ("lr.<v>") or LSLR ("lr.stepS.<v>") views */
    int bn[TP_MAXV], nbn;      /* BNWB: the model's batch-norm views ... */
    int bn_first, bn_steps;    /* ... and their per-step copies "<v>.stepS" */
    int adam_first, adam_t;    /* inner_adam 2: "adam_v.<v>" per adapted view, "adam_t" */
    int nviews;                /* all views */
    float *step_w;             /* MSL weights (steps) */
    taskpool tp;               /* the exact training plan and the evaluation plan */
    taskpool tp_fo;            /* DA: the first-order training plan */
    int use_fo;
};

static mela_node task_loss(const mela_gbml *gb, mela_graph *g, mela_node out, mela_node y)
{
    return gb->c.regression ? mela_mse(g, out, y) : mela_cross_entropy(g, out, y);
}

static int is_bn(const mela_layout *L, int i) { return !strncmp(mela_layout_name(L, i), "bn", 2); }

/* The network at inner step s: with per-step batch-norm weights (BNWB) the
 * batch-norm views are replaced by their step-s copies. ANIL: the head on
 * precomputed body features h (x ignored). */
static mela_node forward_at(const mela_gbml *gb, mela_graph *g, const mela_node *fast,
                            const mela_node *w, int s, mela_node x, mela_node h)
{
    const mela_model *m = gb->m;
    if (gb->c.learner == MELA_LEARNER_ANIL)
        return mela_model_head(m, g, fast, h != MELA_NONE ? h : mela_model_body(m, g, w, x));
    if (!gb->c.bnwb)
        return mela_model_forward(m, g, fast, x);
    mela_node ws[TP_MAXV];
    memcpy(ws, fast, gb->nmodel * sizeof *ws);
    if (s > gb->bn_steps - 1)
        s = gb->bn_steps - 1;
    for (int k = 0; k < gb->nbn; k++)
        ws[gb->bn[k]] = w[gb->bn_first + s * gb->nbn + k];
    return mela_model_forward(m, g, ws, x);
}

/* Rows (s*b + r) mod n, r < b, of x: inner step s's minibatch (b = 0 or
 * b >= n: all of x). */
static mela_node minibatch(mela_graph *g, mela_node x, int n, int b, int s)
{
    if (x == MELA_NONE || b <= 0 || b >= n)
        return x;
    int start = (int)((long)s * b % n);
    if (start + b <= n)
        return mela_slice(g, x, start, b);
    return mela_concat(g, mela_slice(g, x, start, n - start), mela_slice(g, x, 0, b - (n - start)));
}

/* The step of adapted view j at inner step s for its gradient d: a learned
 * rate times d (Meta-SGD, MAML++'s LSLR), Reptile's inner Adam, or alpha d. */
static mela_node inner_step(const mela_gbml *gb, mela_graph *g, const mela_node *w, mela_node d, int j,
                            int s, mela_node *vel, mela_node one_minus)
{
    const mela_gbml_config *c = &gb->c;
    if (c->learner == MELA_LEARNER_METASGD)
        return mela_mul(g, w[gb->lr_first + j], d);
    if (c->lslr)
        return mela_mul(g, w[gb->lr_first + (s < gb->lr_steps ? s : gb->lr_steps - 1) * gb->nadapt + j], d);
    if (c->learner == MELA_LEARNER_REPTILE && c->inner_adam) {
        /* Adam with beta1 = 0 (Nichol et al.): v = b2 v + (1-b2) g^2, divided
         * by 1 - b2^t for the t-th step of the estimate. inner_adam 2: v
         * starts from the stored adam_v with adam_t steps behind it, and
         * one_minus is 1 - b2^(adam_t + s + 1) (adam_one_minus). */
        const float b2 = ADAM_B2;
        mela_node g2 = mela_scale(g, mela_square(g, d), 1 - b2);
        mela_node vhat;
        if (c->inner_adam == 2) {
            mela_node v0 = s == 0 ? w[gb->adam_first + j] : vel[j];
            vel[j] = mela_add(g, mela_scale(g, v0, b2), g2);
            vhat = mela_div(g, vel[j], mela_broadcast_to(g, one_minus, mela_node_shape(g, vel[j])));
        } else {
            vel[j] = s == 0 ? g2 : mela_add(g, mela_scale(g, vel[j], b2), g2);
            vhat = mela_scale(g, vel[j], 1.0f / (1.0f - powf(b2, (float)(s + 1))));
        }
        mela_node den = mela_add_scalar(g, mela_sqrt(g, vhat), 1e-8f);
        return mela_scale(g, mela_div(g, d, den), c->inner_lr);
    }
    return mela_scale(g, d, c->inner_lr);
}

/* inner_adam 2's bias correction at inner step s: 1 - b2^(adam_t + s + 1),
 * shape (1), once per step for every adapted view. */
static mela_node adam_one_minus(const mela_gbml *gb, mela_graph *g, const mela_node *w, int s)
{
    if (gb->c.learner != MELA_LEARNER_REPTILE || gb->c.inner_adam != 2)
        return MELA_NONE;
    mela_node e = mela_exp(g, mela_scale(g, mela_add_scalar(g, w[gb->adam_t], (float)(s + 1)), logf(ADAM_B2)));
    return mela_add_scalar(g, mela_neg(g, e), 1.0f);
}

/* The query outputs after adaptation: all queries in one batch, or (non-
 * transductive evaluation) each query alone with the support set. */
static mela_node query_out(const mela_gbml *gb, mela_graph *g, const task_graph *o, const mela_node *fast,
                           const mela_node *w, int steps, int ns, int nq, mela_node fq, int alone)
{
    if (!alone)
        return forward_at(gb, g, fast, w, steps, o->xq, fq);
    mela_node rows = MELA_NONE;
    for (int j = 0; j < nq; j++) {
        mela_node x = mela_concat(g, o->xs, mela_slice(g, o->xq, j, 1));
        mela_node h = gb->c.learner == MELA_LEARNER_ANIL ? mela_model_body(gb->m, g, w, x) : MELA_NONE;
        mela_node r = mela_slice(g, forward_at(gb, g, fast, w, steps, x, h), ns, 1);
        rows = j ? mela_concat(g, rows, r) : r;
    }
    return rows;
}

/* Builds the inner loop with `steps` steps. meta: the training graph (the
 * gradient of the meta-loss with respect to every view; Reptile: theta - phi
 * per view); first_order: inner gradients as constants. */
static int build(mela_gbml *gb, task_graph *o, int steps, int meta, int first_order)
{
    const mela_model *m = gb->m;
    const mela_gbml_config *c = &gb->c;
    mela_graph *g = o->g = mela_graph_new();
    if (!g)
        return -1;
    o->extra = MELA_NONE;
    mela_node w[TP_MAXV], fast[TP_MAXV], gr[TP_MAXV], vel[TP_MAXV], ad[TP_MAXV];
    for (int i = 0; i < gb->nviews; i++)
        w[i] = mela_param(g, gb->L, i);
    const mela_task_spec *ts = meta ? &c->train : &c->test; /* test: zeros resolved in _new */
    int ns = c->regression ? ts->shots : c->train.ways * ts->shots;
    int nq = c->regression ? ts->queries : c->train.ways * ts->queries;
    if (ts->query_rows > 0)
        nq = ts->query_rows;
    o->xs = mela_input(g, "x_support", mela_model_input_shape(m, ns));
    o->xq = mela_input(g, "x_query", mela_model_input_shape(m, nq));
    o->ys = mela_input(g, "y_support", c->regression ? MELA_SHAPE(ns, 1) : MELA_SHAPE(ns));
    o->yq = mela_input(g, "y_query", c->regression ? MELA_SHAPE(nq, 1) : MELA_SHAPE(nq));
    memcpy(fast, w, gb->nmodel * sizeof *w);
    for (int j = 0; j < gb->nadapt; j++)
        ad[j] = fast[gb->adapt[j]];
    int anil = c->learner == MELA_LEARNER_ANIL, reptile = c->learner == MELA_LEARNER_REPTILE;
    /* ANIL: the body does not adapt, so its features are computed once. */
    mela_node fs = anil ? mela_model_body(m, g, w, o->xs) : MELA_NONE;
    mela_node fq = anil ? mela_model_body(m, g, w, o->xq) : MELA_NONE;
    int msl = meta && c->msl && !reptile && steps > 0;
    mela_node vw = MELA_NONE, metaloss = MELA_NONE;
    if (msl) { /* the step weights: an input shared by all tasks */
        vw = o->extra = mela_input(g, "step_weights", MELA_SHAPE(steps));
        o->extra_data = gb->step_w;
    }
    int ib = meta ? c->inner_batch : c->test_inner_batch;
    for (int s = 0; s < steps; s++) {
        mela_node out = forward_at(gb, g, fast, w, s, minibatch(g, o->xs, ns, ib, s),
                                   minibatch(g, fs, ns, ib, s));
        mela_node loss = task_loss(gb, g, out, minibatch(g, o->ys, ns, ib, s));
        if (c->inner_sum) /* Finn et al.'s code: the sum over the classes */
            loss = mela_scale(g, loss, (float)c->train.ways);
        if (mela_grad(g, loss, MELA_NONE, gb->nadapt, ad, gr))
            break;
        mela_node one_minus = adam_one_minus(gb, g, w, s);
        for (int j = 0; j < gb->nadapt; j++) {
            mela_node d = first_order || reptile ? mela_stop_gradient(g, gr[j]) : gr[j];
            ad[j] = fast[gb->adapt[j]] =
                mela_sub(g, fast[gb->adapt[j]], inner_step(gb, g, w, d, j, s, vel, one_minus));
        }
        if (msl && s < steps - 1) { /* the query loss after every step but the last */
            mela_node lq = task_loss(gb, g, forward_at(gb, g, fast, w, s + 1, o->xq, fq), o->yq);
            mela_node ws = mela_slice(g, vw, s, 1);
            mela_node t = mela_mul(g, ws, lq);
            metaloss = metaloss == MELA_NONE ? t : mela_add(g, metaloss, t);
        }
    }
    o->out = query_out(gb, g, o, fast, w, steps, ns, nq, fq, !meta && c->nontransductive && !c->regression);
    o->loss = task_loss(gb, g, o->out, o->yq);
    o->acc = c->regression ? MELA_NONE : mela_accuracy(g, o->out, o->yq);
    if (!meta)
        return tp_compile(o, TP_GRAD_NONE, 0, w);
    if (reptile) { /* theta - phi per view: the Reptile direction, 0 for views not adapted;
                    * inner_adam 2: adam_v - v_final (mela_gbml_reptile_update) */
        for (int i = 0; i < gb->nviews; i++) {
            int j = i - gb->adam_first;
            if (i < gb->nmodel && fast[i] != w[i])
                o->grads[i] = mela_sub(g, w[i], fast[i]);
            else if (c->inner_adam == 2 && j >= 0 && j < gb->nadapt)
                o->grads[i] = mela_sub(g, w[i], vel[j]);
            else
                o->grads[i] = mela_constant(g, mela_node_shape(g, w[i]), 0.0f);
        }
        return tp_compile(o, TP_GRAD_GIVEN, gb->nviews, w);
    }
    if (msl) { /* sum_s v_s L_s, the last step's loss weighted by v_{k-1} */
        mela_node t = mela_mul(g, mela_slice(g, vw, steps - 1, 1), o->loss);
        metaloss = metaloss == MELA_NONE ? t : mela_add(g, metaloss, t);
        /* the training graph reports the meta-loss; its gradient is of it */
        o->loss = metaloss;
    }
    return tp_compile(o, TP_GRAD_LOSS, gb->nviews, w);
}

void mela_gbml_free(mela_gbml *gb)
{
    if (!gb)
        return;
    tp_free(&gb->tp);
    tp_free(&gb->tp_fo);
    mela_layout_free(gb->L);
    free(gb->step_w);
    free(gb);
}

static int add_view(mela_layout *L, const char *fmt, int s, const char *name, mela_shape shape)
{
    char buf[128];
    snprintf(buf, sizeof buf, fmt, s, name);
    return mela_layout_add(L, buf, shape);
}

/* What is wrong with a configuration, or NULL. */
static const char *config_error(const mela_gbml_config *c)
{
    const char *why = NULL;
    int reptile = c->learner == MELA_LEARNER_REPTILE;
    if (c->learner < MELA_LEARNER_MAML || c->learner > MELA_LEARNER_REPTILE)
        why = "unknown learner";
    else if (c->train.shots < 1 || c->test.shots < 0)
        why = "shots must be at least 1";
    else if (c->train.queries < 1 || c->test.queries < 0)
        why = "queries must be at least 1";
    else if (!c->regression && c->test.ways != 0 && c->test.ways != c->train.ways)
        why = "test ways must equal the training ways (the head has one output per class)";
    else if (c->steps < 0 || c->test_steps < 0 || c->steps > 100 || c->test_steps > 100)
        why = "inner steps must be in 0..100";
    else if (!c->regression && c->train.ways < 2)
        why = "ways must be at least 2";
    else if (!(c->inner_lr > 0) || c->inner_lr > 100)
        why = "the inner learning rate must be in (0, 100]";
    else if (c->lslr && c->learner != MELA_LEARNER_MAML)
        why = "learned per-step rates (lslr) are MAML++'s; use them with maml";
    else if ((c->msl || c->bnwb || c->da) && c->learner != MELA_LEARNER_MAML)
        why = "msl, bnwb and da are MAML++ switches; use them with maml";
    else if (c->inner_adam && !reptile)
        why = "inner_adam is Reptile's inner optimiser";
    else if (c->inner_adam < 0 || c->inner_adam > 2)
        why = "inner_adam must be 0 (SGD), 1 (Adam per task) or 2 (Adam across tasks)";
    else if (reptile && c->steps < 1)
        why = "Reptile needs at least one inner step";
    else if (c->inner_sum != 0 && (c->inner_sum != 1 || c->regression))
        why = "inner_sum must be 0, or 1 for classification (a sum over the classes)";
    else if (c->inner_batch < 0 || c->test_inner_batch < 0)
        why = "inner batches must be >= 0 (0: the whole support set)";
    return why;
}

/* What is meta-learned: the model's views; the learned rates (Meta-SGD
 * "lr.<view>", LSLR "lr.stepS.<view>"); per-step batch-norm copies (BNWB).
 * Also which views the inner loop adapts. Returns 1, or 0 when a view could
 * not be added. */
static int build_layout(mela_gbml *gb)
{
    int ok = 1;
    const mela_layout *ml = mela_model_layout(gb->m);
    gb->nmodel = mela_layout_count(ml);
    for (int i = 0; i < gb->nmodel; i++)
        mela_layout_add(gb->L, mela_layout_name(ml, i), mela_layout_shape(ml, i));
    int first = gb->c.learner == MELA_LEARNER_ANIL ? mela_model_head_first(gb->m) : 0;
    for (int i = first; i < gb->nmodel; i++) {
        if (gb->c.bnwb && is_bn(ml, i))
            gb->bn[gb->nbn++] = i; /* per-step copies instead of inner-loop updates */
        else
            gb->adapt[gb->nadapt++] = i;
    }
    gb->lr_first = mela_layout_count(gb->L);
    if (gb->c.learner == MELA_LEARNER_METASGD) {
        gb->lr_steps = 1;
        for (int j = 0; j < gb->nadapt; j++) {
            char name[128];
            snprintf(name, sizeof name, "lr.%s", mela_layout_name(ml, gb->adapt[j]));
            ok &= mela_layout_add(gb->L, name, mela_layout_shape(ml, gb->adapt[j])) >= 0;
        }
    } else if (gb->c.lslr) {
        gb->lr_steps = gb->c.steps > 0 ? gb->c.steps : 1;
        for (int s = 0; s < gb->lr_steps; s++)
            for (int j = 0; j < gb->nadapt; j++)
                ok &= add_view(gb->L, "lr.step%d.%s", s, mela_layout_name(ml, gb->adapt[j]),
                               MELA_SHAPE(1)) >= 0;
    }
    gb->bn_first = mela_layout_count(gb->L);
    if (gb->c.bnwb) {
        gb->bn_steps = gb->c.steps + 1;
        for (int s = 0; s < gb->bn_steps; s++)
            for (int k = 0; k < gb->nbn; k++) {
                char fmt[140];
                snprintf(fmt, sizeof fmt, "%s.step%%d%%s", mela_layout_name(ml, gb->bn[k]));
                ok &= add_view(gb->L, fmt, s, "", mela_layout_shape(ml, gb->bn[k])) >= 0;
            }
    }
    gb->adam_first = gb->adam_t = mela_layout_count(gb->L);
    if (gb->c.learner == MELA_LEARNER_REPTILE && gb->c.inner_adam == 2) {
        for (int j = 0; j < gb->nadapt; j++) {
            char name[128];
            snprintf(name, sizeof name, "adam_v.%s", mela_layout_name(ml, gb->adapt[j]));
            ok &= mela_layout_add(gb->L, name, mela_layout_shape(ml, gb->adapt[j])) >= 0;
        }
        ok &= (gb->adam_t = mela_layout_add(gb->L, "adam_t", MELA_SHAPE(1))) >= 0;
    }
    return ok;
}

mela_gbml *mela_gbml_new(const mela_model *m, const mela_gbml_config *c)
{
    const char *why = config_error(c);
    int nout = mela_model_outputs(m);
    if (why) {
        mela_set_error("learner: %s (ways %d/%d, shots %d/%d, queries %d/%d, steps %d/%d, inner lr %g)",
                       why, c->train.ways, c->test.ways, c->train.shots, c->test.shots, c->train.queries,
                       c->test.queries, c->steps, c->test_steps, (double)c->inner_lr);
        return NULL;
    }
    if (nout != (c->regression ? 1 : c->train.ways)) {
        mela_set_error("learner: the model has %d outputs but the task needs %d", nout,
                       c->regression ? 1 : c->train.ways);
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
    mela_task_spec *te = &gb->c.test; /* zeros: as in meta-training */
    te->ways = gb->c.train.ways;
    te->shots = te->shots > 0 ? te->shots : gb->c.train.shots;
    te->queries = te->queries > 0 ? te->queries : gb->c.train.queries;
    int ok = build_layout(gb);
    gb->nviews = mela_layout_count(gb->L);
    int nsteps = c->steps > 0 ? c->steps : 1;
    gb->step_w = calloc(nsteps, sizeof *gb->step_w);
    if (!ok || !gb->step_w || gb->nviews > TP_MAXV) {
        mela_set_error("learner: %d parameter views (at most %d) or out of memory", gb->nviews, TP_MAXV);
        mela_gbml_free(gb);
        return NULL;
    }
    gb->step_w[nsteps - 1] = 1.0f; /* the plain MAML loss until told otherwise */
    gb->tp.L = gb->tp_fo.L = gb->L;
    if (build(gb, &gb->tp.train, c->steps, 1, c->first_order) ||
        build(gb, &gb->tp.eval, c->test_steps, 0, 0) || tp_reserve(&gb->tp, 1) ||
        (c->da && (build(gb, &gb->tp_fo.train, c->steps, 1, 1) || tp_reserve(&gb->tp_fo, 1)))) {
        mela_gbml_free(gb);
        return NULL;
    }
    return gb;
}

const mela_layout *mela_gbml_layout(const mela_gbml *gb) { return gb->L; }
taskpool *mela_gbml_pool_(mela_gbml *gb) { return &gb->tp; }
const mela_gbml_config *mela_gbml_config_of(const mela_gbml *gb) { return &gb->c; }
size_t mela_gbml_arena_bytes(const mela_gbml *gb) { return mela_plan_arena_bytes(gb->tp.train.p); }
int mela_gbml_steps(const mela_gbml *gb) { return mela_plan_steps(gb->tp.train.p); }
void mela_gbml_set_profiling(mela_gbml *gb, int on) { tp_set_profiling(&gb->tp, on); }
void mela_gbml_profile(const mela_gbml *gb, double *s, long *c) { tp_profile(&gb->tp, s, c); }
int mela_gbml_reserve(mela_gbml *gb, int slots, int kernel_threads)
{
    return tp_reserve_threads(&gb->tp, slots, kernel_threads);
}

int mela_gbml_evaluate(mela_gbml *gb, const float *theta, const mela_task *task, int slot,
                       double *loss, double *acc, float *out)
{
    return tp_evaluate(&gb->tp, theta, task, slot, loss, acc, out);
}

int mela_gbml_meta_grad(mela_gbml *gb, const float *theta, int n, const mela_task *tasks,
                        int threads, float *grad, double *loss, double *acc)
{
    return tp_grad(gb->use_fo ? &gb->tp_fo : &gb->tp, theta, n, tasks, threads, grad, loss, acc);
}

void mela_gbml_reptile_update(const mela_gbml *gb, float *theta, const float *grad, float eps)
{
    size_t n = mela_gbml_learned_size(gb), total = mela_layout_size(gb->L);
    mela_sgd_step(theta, grad, n, eps);
    if (n == total)
        return;
    size_t t = mela_layout_offset(gb->L, gb->adam_t);
    mela_sgd_step(theta + n, grad + n, t - n, 1.0f); /* adam_v <- mean v_final */
    theta[t] += (float)gb->c.steps;
}

size_t mela_gbml_learned_size(const mela_gbml *gb)
{
    return gb->adam_first < mela_layout_count(gb->L) ? mela_layout_offset(gb->L, gb->adam_first)
                                                      : mela_layout_size(gb->L);
}

int mela_gbml_set_step_weights(mela_gbml *gb, const float *v)
{
    int n = gb->c.steps > 0 ? gb->c.steps : 1;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (!(v[i] >= 0))
            return mela_set_error("learner: step weight %d is %g (must be >= 0)", i, (double)v[i]);
        sum += v[i];
    }
    if (fabs(sum - 1) > 1e-4)
        return mela_set_error("learner: step weights sum to %g, not 1", sum);
    memcpy(gb->step_w, v, n * sizeof *v);
    return 0;
}

int mela_gbml_set_first_order(mela_gbml *gb, int on)
{
    if (on && !gb->c.da)
        return mela_set_error("learner: no first-order plan (build with da = 1)");
    gb->use_fo = on;
    return 0;
}

void mela_msl_weights(int steps, long it, long anneal, float *v)
{
    if (steps < 1)
        return;
    double k = steps, decay = anneal > 0 ? 1.0 / k / (double)anneal : 1e30;
    double min_nf = 0.03 / k, t = (double)(it < 0 ? 0 : it);
    for (int i = 0; i < steps - 1; i++)
        v[i] = (float)fmax(1.0 / k - t * decay, min_nf);
    v[steps - 1] = (float)fmin(1.0 / k + t * (k - 1) * decay, 1.0 - (k - 1) * min_nf);
}

void mela_gbml_init(const mela_gbml *gb, float *theta, mela_rng *r)
{
    memset(theta, 0, mela_layout_size(gb->L) * sizeof *theta);
    mela_model_init(gb->m, theta, r);
    for (int i = gb->lr_first; i < gb->bn_first; i++) {
        float *p = theta + mela_layout_offset(gb->L, i);
        size_t n = mela_shape_numel(mela_layout_shape(gb->L, i));
        for (size_t j = 0; j < n; j++)
            p[j] = gb->c.inner_lr;
    }
    for (int s = 0; s < gb->bn_steps; s++) /* per-step BN copies start as the model's */
        for (int k = 0; k < gb->nbn; k++) {
            int v = gb->bn_first + s * gb->nbn + k;
            memcpy(theta + mela_layout_offset(gb->L, v), theta + mela_layout_offset(gb->L, gb->bn[k]),
                   mela_shape_numel(mela_layout_shape(gb->L, v)) * sizeof *theta);
        }
}
