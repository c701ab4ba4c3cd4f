/*
 * metric.c - learners that compare: Prototypical Networks, Matching Networks
 * and Siamese networks, as graphs over an embedding model, run on the shared
 * task pool. Their training is ordinary back-propagation through an episode
 * (or a batch of pairs); at test time they compare, with no gradient step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "learn/blocked.h"
#include "learn/dist.h"
#include "learn/taskpool.h"

struct mela_metric {
    const mela_model *m;
    mela_metric_config c;
    mela_layout *L;
    int nmodel, nviews, D;
    int nbn, bn_view;  /* batch-norm layers with population statistics, the first one's view */
    taskpool tp;
    /* Siamese comparison of two images: its own small graph and executor */
    mela_graph *cg;
    mela_plan *cp;
    mela_exec *ce;
    mela_node ca, cb, cprob;
    /* population statistics: the training batches' per-layer moments */
    mela_graph *sg;
    mela_plan *sp;
    mela_exec *se;
    mela_node sx1, sx2, smean[MELA_MODEL_MAX_PARAMS], svar[MELA_MODEL_MAX_PARAMS];
    /* one training episode in blocks of images (blocked.c): the embedding
     * there, the rest (class scores, loss) in this graph over embeddings */
    blocked *blk;
    int blk_off;       /* 1: the whole-episode graph (tests compare) */
    task_graph head;
    mela_exec *he;
    mela_node hE;
    float *E;
};

/* The embedding of x: in training with the batch's statistics in batch
 * norm; at evaluation (fixed = 1) with the population statistics of the
 * views from bn_view on, so that each image is embedded on its own. */
static mela_node body(const mela_metric *mt, mela_graph *g, const mela_node *w, mela_node x, int fixed)
{
    if (!fixed || !mt->nbn)
        return mela_model_body(mt->m, g, w, x);
    mela_node mean[MELA_MODEL_MAX_PARAMS], var[MELA_MODEL_MAX_PARAMS];
    for (int i = 0; i < mt->nbn; i++) {
        mean[i] = w[mt->bn_view + 2 * i];
        var[i] = w[mt->bn_view + 2 * i + 1];
    }
    mela_bn_mode mode = {mean, var, NULL, NULL};
    return mela_model_body_bn(mt->m, g, w, x, &mode);
}

/* Embeddings of support and query in one batch: es (ns, D), eq (nq, D). */
static void embed(const mela_metric *mt, mela_graph *g, const mela_node *w, mela_node xs,
                  mela_node xq, int ns, int nq, int fixed, mela_node *es, mela_node *eq)
{
    mela_node e = body(mt, g, w, mela_concat(g, xs, xq), fixed);
    *es = mela_slice(g, e, 0, ns);
    *eq = mela_slice(g, e, ns, nq);
}

/* p(same) logits of every (query, support) pair: (nq, ns). */
static mela_node pair_logits(const mela_metric *mt, mela_graph *g, const mela_node *w, mela_node eq,
                             mela_node es, int nq, int ns)
{
    int D = mt->D;
    mela_node a = mela_reshape(g, eq, MELA_SHAPE(nq, 1, D));
    mela_node b = mela_reshape(g, es, MELA_SHAPE(1, ns, D));
    mela_node d = mela_reshape(g, mela_abs(g, mela_sub(g, a, b)), MELA_SHAPE(nq * ns, D));
    mela_node z = mela_linear(g, d, w[mt->nmodel], w[mt->nmodel + 1]);
    return mela_reshape(g, z, MELA_SHAPE(nq, ns));
}

/* Class scores of an N-way K-shot episode with queries eq: (nq, N); with
 * eblank (ProtoNets' background training, else MELA_NONE) (nq, N + 1), the
 * embedding of blank paper the prototype of class N, "none of them". */
static mela_node class_scores(const mela_metric *mt, mela_graph *g, const mela_node *w, mela_node es,
                              mela_node ys, mela_node eq, mela_node eblank, int N, int K, int nq)
{
    int ns = N * K;
    mela_node oh = mela_one_hot(g, ys, N); /* (ns, N) */
    switch (mt->c.kind) {
    case MELA_METRIC_PROTO: {
        mela_node protos = mela_scale(g, mela_matmul(g, oh, es, 1, 0), 1.0f / (float)K);
        if (eblank != MELA_NONE)
            protos = mela_concat(g, protos, eblank);
        return mela_log_softmax(g, mela_neg(g, mela_sqdist(g, eq, protos)));
    }
    case MELA_METRIC_MATCHING: {
        mela_node cs = mela_cosine(g, eq, es, 1e-8f);
        if (mt->c.learn_scale)
            cs = mela_mul(g, cs, w[mt->nmodel]);
        else if (mt->c.scale != 1)
            cs = mela_scale(g, cs, mt->c.scale);
        mela_node att = mela_softmax(g, cs);
        return mela_log(g, mela_matmul(g, att, oh, 0, 0));
    }
    default: { /* Siamese: mean p(same) against each class's support */
        mela_node p = mela_sigmoid(g, pair_logits(mt, g, w, eq, es, nq, ns));
        return mela_scale(g, mela_matmul(g, p, oh, 0, 0), 1.0f / (float)K);
    }
    }
}

/* A new graph for o with one parameter node per view in w. */
static mela_graph *graph_with_params(const mela_metric *mt, task_graph *o, mela_node *w)
{
    mela_graph *g = o->g = mela_graph_new();
    o->extra = MELA_NONE;
    for (int i = 0; g && i < mt->nviews; i++)
        w[i] = mela_param(g, mt->L, i);
    return g;
}

/* Scores, loss and accuracy of an episode t from the embeddings es and eq
 * (the labels o->ys, o->yq); with B background queries (labelled N) after
 * the others, eblank is the embedding of blank paper, their prototype. */
static void episode_head(const mela_metric *mt, mela_graph *g, const mela_node *w, task_graph *o,
                         mela_node es, mela_node eq, mela_node eblank, const mela_task_spec *t, int B)
{
    int N = t->ways, K = t->shots, nq = t->query_rows > 0 ? t->query_rows : N * t->queries + B;
    o->out = class_scores(mt, g, w, es, o->ys, eq, eblank, N, K, nq);
    if (B)
        N++; /* the queries' classes: the episode's and "none" */
    /* The scores are log-probabilities (ProtoNets, Matching) or mean
     * probabilities (Siamese, whose loss at evaluation is the NLL of the
     * normalised scores); the accuracy is the argmax either way. */
    if (mt->c.kind == MELA_METRIC_SIAMESE) {
        mela_node norm = mela_sum_to(g, o->out, MELA_SHAPE(nq, 1));
        mela_node logp = mela_log(g, mela_div(g, mela_add_scalar(g, o->out, 1e-12f),
                                             mela_add_scalar(g, norm, 1e-12f * N)));
        o->loss = mela_scale(g, mela_sum(g, mela_mul(g, mela_one_hot(g, o->yq, N), logp)), -1.0f / nq);
    } else {
        o->loss = mela_scale(g, mela_sum(g, mela_mul(g, mela_one_hot(g, o->yq, N), o->out)), -1.0f / nq);
    }
    o->acc = mela_accuracy(g, o->out, o->yq);
}

static int build_episode(mela_metric *mt, task_graph *o, const mela_task_spec *t, int train)
{
    mela_node w[TP_MAXV];
    mela_graph *g = graph_with_params(mt, o, w);
    if (!g)
        return -1;
    int N = t->ways, K = t->shots, B = train ? mt->c.background : 0;
    int ns = N * K, nq = t->query_rows > 0 ? t->query_rows : N * t->queries + B;
    o->xs = mela_input(g, "x_support", mela_model_input_shape(mt->m, ns));
    o->ys = mela_input(g, "y_support", MELA_SHAPE(ns));
    o->xq = mela_input(g, "x_query", mela_model_input_shape(mt->m, nq));
    o->yq = mela_input(g, "y_query", MELA_SHAPE(nq));
    mela_node es, eq, eblank = MELA_NONE, xq = o->xq;
    if (B) /* a blank image after the queries, in the same batch */
        xq = mela_concat(g, xq, mela_constant(g, mela_model_input_shape(mt->m, 1), 0.0f));
    embed(mt, g, w, o->xs, xq, ns, nq + (B > 0), !train, &es, &eq);
    if (B) {
        eblank = mela_slice(g, eq, nq, 1);
        eq = mela_slice(g, eq, 0, nq);
    }
    episode_head(mt, g, w, o, es, eq, eblank, t, B);
    return tp_compile(o, train ? TP_GRAD_LOSS : TP_GRAD_NONE, mt->nviews, w);
}

/* The Siamese loss of B pairs from the embeddings e1 and e2 (labels o->ys). */
static void pairs_head(const mela_metric *mt, mela_graph *g, const mela_node *w, task_graph *o, mela_node e1,
                       mela_node e2)
{
    int B = mt->c.pairs;
    mela_node d = mela_abs(g, mela_sub(g, e1, e2));
    mela_node z = mela_linear(g, d, w[mt->nmodel], w[mt->nmodel + 1]); /* (B, 1) */
    o->loss = mela_bce_with_logits(g, z, mela_reshape(g, o->ys, MELA_SHAPE(B, 1)));
    /* accuracy of "same iff z > 0": logits (-z, z) against the 0/1 labels */
    mela_node sign = mela_add_scalar(g, mela_scale(g, mela_one_hot(g, mela_constant(g, MELA_SHAPE(1), 1.0f), 2), 2.0f), -1.0f);
    o->out = z;
    o->acc = mela_accuracy(g, mela_matmul(g, z, sign, 0, 0), o->ys);
}

static int build_pairs(mela_metric *mt, task_graph *o)
{
    mela_node w[TP_MAXV];
    mela_graph *g = graph_with_params(mt, o, w);
    if (!g)
        return -1;
    int B = mt->c.pairs;
    o->xs = mela_input(g, "x_first", mela_model_input_shape(mt->m, B));
    o->xq = mela_input(g, "x_second", mela_model_input_shape(mt->m, B));
    o->ys = mela_input(g, "same", MELA_SHAPE(B));
    o->yq = mela_input(g, "unused", MELA_SHAPE(1));
    mela_node e1, e2;
    embed(mt, g, w, o->xs, o->xq, B, B, 0, &e1, &e2);
    pairs_head(mt, g, w, o, e1, e2);
    return tp_compile(o, TP_GRAD_LOSS, mt->nviews, w);
}

void mela_metric_free(mela_metric *mt)
{
    if (!mt)
        return;
    tp_free(&mt->tp);
    blk_free(mt->blk);
    mela_exec_free(mt->he);
    mela_plan_free(mt->head.p);
    mela_graph_free(mt->head.g);
    free(mt->E);
    mela_exec_free(mt->se);
    mela_plan_free(mt->sp);
    mela_graph_free(mt->sg);
    mela_exec_free(mt->ce);
    mela_plan_free(mt->cp);
    mela_graph_free(mt->cg);
    mela_layout_free(mt->L);
    free(mt);
}

static void more_profile(const void *ctx, double *seconds, long *calls);

mela_metric *mela_metric_new(const mela_model *m, const mela_metric_config *c)
{
    const char *why = NULL;
    if (c->kind < MELA_METRIC_PROTO || c->kind > MELA_METRIC_SIAMESE)
        why = "unknown metric learner";
    else if (mela_model_outputs(m) != 0)
        why = "the embedding model must have no head (nout = 0)";
    else if (c->test.ways < 2 || c->test.shots < 1 || c->test.queries < 1)
        why = "test episodes need at least 2 ways, 1 shot and 1 query";
    else if (c->kind != MELA_METRIC_SIAMESE &&
             (c->train.ways < 2 || c->train.shots < 1 || c->train.queries < 1))
        why = "training episodes need at least 2 ways, 1 shot and 1 query";
    else if (c->background < 0 || (c->background > 0 && c->kind != MELA_METRIC_PROTO))
        why = "background queries (>= 0) are ProtoNets' training";
    else if (c->kind == MELA_METRIC_SIAMESE && c->pairs < 2)
        why = "Siamese training needs at least 2 pairs per batch";
    else if (!(c->scale >= 0) ||
             (c->kind != MELA_METRIC_MATCHING && ((c->scale != 0 && c->scale != 1) || c->learn_scale)))
        why = "a scale of the attention is Matching Networks' (and must be >= 0)";
    else if (mela_model_features(m) < 1)
        why = "the embedding model does not say its feature size";
    if (why) {
        mela_set_error("metric learner: %s (ways %d/%d, shots %d/%d, queries %d/%d, pairs %d)", why,
                       c->train.ways, c->test.ways, c->train.shots, c->test.shots, c->train.queries,
                       c->test.queries, c->pairs);
        return NULL;
    }
    mela_metric *mt = calloc(1, sizeof *mt);
    if (!mt || !(mt->L = mela_layout_new())) {
        free(mt);
        mela_set_error("metric learner: out of memory");
        return NULL;
    }
    mt->m = m;
    mt->c = *c;
    mt->tp.more_profile = more_profile;
    mt->tp.more_ctx = mt;
    if (mt->c.scale == 0)
        mt->c.scale = 1; /* 0: the plain cosine */
    mt->D = mela_model_features(m);
    const mela_layout *ml = mela_model_layout(m);
    mt->nmodel = mela_layout_count(ml);
    for (int i = 0; i < mt->nmodel; i++)
        mela_layout_add(mt->L, mela_layout_name(ml, i), mela_layout_shape(ml, i));
    if (c->kind == MELA_METRIC_SIAMESE) {
        mela_layout_add(mt->L, "siamese.weight", MELA_SHAPE(1, mt->D));
        mela_layout_add(mt->L, "siamese.bias", MELA_SHAPE(1));
    }
    if (c->kind == MELA_METRIC_MATCHING && c->learn_scale)
        mela_layout_add(mt->L, "matching.scale", MELA_SHAPE(1));
    mt->nbn = mela_model_bn_layers(m);
    mt->bn_view = mela_layout_count(mt->L);
    for (int i = 0; i < mt->nbn; i++) {
        char name[64];
        mela_shape cs = MELA_SHAPE(mela_model_bn_channels(m, i));
        snprintf(name, sizeof name, "bn%d.running_mean", i + 1);
        mela_layout_add(mt->L, name, cs);
        snprintf(name, sizeof name, "bn%d.running_var", i + 1);
        mela_layout_add(mt->L, name, cs);
    }
    mt->nviews = mela_layout_count(mt->L);
    mt->tp.L = mt->L;
    int rc = c->kind == MELA_METRIC_SIAMESE ? build_pairs(mt, &mt->tp.train)
                                             : build_episode(mt, &mt->tp.train, &c->train, 1);
    if (rc || build_episode(mt, &mt->tp.eval, &c->test, 0) ||
        tp_reserve(&mt->tp, 1)) {
        mela_metric_free(mt);
        return NULL;
    }
    return mt;
}

const mela_layout *mela_metric_layout(const mela_metric *mt) { return mt->L; }
taskpool *mela_metric_pool_(mela_metric *mt) { return &mt->tp; }

void mela_metric_init(const mela_metric *mt, float *theta, mela_rng *r)
{
    memset(theta, 0, mela_layout_size(mt->L) * sizeof *theta);
    mela_model_init(mt->m, theta, r);
    if (mt->c.kind == MELA_METRIC_SIAMESE) {
        /* w starts negative, so that a larger distance means "different" */
        float *w = theta + mela_layout_offset(mt->L, mt->nmodel);
        float bound = 1.0f / sqrtf((float)mt->D);
        for (int i = 0; i < mt->D; i++)
            w[i] = -bound * (0.5f + 0.5f * mela_rng_uniform(r));
        theta[mela_layout_offset(mt->L, mt->nmodel + 1)] = 1.0f;
    }
    if (mt->c.kind == MELA_METRIC_MATCHING && mt->c.learn_scale)
        theta[mela_layout_offset(mt->L, mt->nmodel)] = mt->c.scale;
    for (int i = 0; i < mt->nbn; i++) { /* variances 1 until the first calibration */
        int v = mt->bn_view + 2 * i + 1;
        float *p = theta + mela_layout_offset(mt->L, v);
        for (size_t j = 0; j < mela_shape_numel(mela_layout_shape(mt->L, v)); j++)
            p[j] = 1.0f;
    }
}

/* The graph of the training batches' per-layer moments: the images of one
 * training task (support and query, or both images of every pair). */
/* Rows of one training task: support and query, or both images of each pair. */
static void train_rows(const mela_metric *mt, int *n1, int *n2)
{
    const mela_task_spec *t = &mt->c.train;
    int siamese = mt->c.kind == MELA_METRIC_SIAMESE;
    *n1 = siamese ? mt->c.pairs : t->ways * t->shots;
    *n2 = siamese ? mt->c.pairs
                  : (t->query_rows > 0 ? t->query_rows : t->ways * t->queries + mt->c.background);
}

int mela_metric_train_images_(const mela_metric *mt)
{
    int n1, n2;
    train_rows(mt, &n1, &n2);
    return n1 + n2;
}

static int stats_graph(mela_metric *mt)
{
    mela_graph *g = mt->sg = mela_graph_new();
    if (!g)
        return mela_set_error("metric learner: out of memory");
    mela_node w[TP_MAXV];
    for (int i = 0; i < mt->nviews; i++)
        w[i] = mela_param(g, mt->L, i);
    int n1, n2;
    train_rows(mt, &n1, &n2);
    mt->sx1 = mela_input(g, "x1", mela_model_input_shape(mt->m, n1));
    mt->sx2 = mela_input(g, "x2", mela_model_input_shape(mt->m, n2));
    mela_bn_mode mode = {NULL, NULL, mt->smean, mt->svar};
    mela_model_body_bn(mt->m, g, w, mela_concat(g, mt->sx1, mt->sx2), &mode);
    if (mela_graph_error(g))
        return mela_set_error("metric learner: %s", mela_graph_error(g));
    mela_node outs[2 * MELA_MODEL_MAX_PARAMS];
    for (int i = 0; i < mt->nbn; i++)
        outs[2 * i] = mt->smean[i], outs[2 * i + 1] = mt->svar[i];
    if (!(mt->sp = mela_plan_new(g, 2 * mt->nbn, outs)) || !(mt->se = mela_exec_new(mt->sp)))
        return -1;
    return 0;
}

int mela_metric_calibrate(mela_metric *mt, float *theta, mela_tasks *ts, int tasks, int threads)
{
    if (!mt->nbn)
        return 0;
    if (tasks < 1)
        return mela_set_error("batch-norm statistics: %d tasks (at least 1)", tasks);
    if (!mt->se && stats_graph(mt))
        return -1;
    mela_exec_set_threads(mt->se, threads);
    mela_exec_bind_params(mt->se, theta);
    /* Moments of the union of the tasks' images: the mean of the batch means,
     * and the mean of the batch variances plus the variance of the batch
     * means (every batch has the same size per channel). Each process
     * computes the moments of its share of the tasks (dist.h); all of them
     * are gathered and summed in task order, as by one process. */
    size_t total = 0;
    for (int i = 0; i < mt->nbn; i++)
        total += (size_t)mela_model_bn_channels(mt->m, i);
    int lo, hi;
    dist_share(tasks, &lo, &hi);
    double *acc = calloc(2 * total, sizeof *acc), *sq = calloc(total, sizeof *sq);
    double *per = calloc(2 * total * (size_t)tasks, sizeof *per); /* each task's means, variances */
    int rc = acc && sq && per ? 0 : mela_set_error("batch-norm statistics: out of memory");
    for (int k = lo; k < hi && !rc; k++) {
        mela_task t;
        mela_tasks_get(ts, 0, (uint64_t)k, &t);
        mela_exec_bind(mt->se, mt->sx1, t.xs);
        mela_exec_bind(mt->se, mt->sx2, t.xq);
        if ((rc = mela_exec_run(mt->se)))
            break;
        double *mk = per + 2 * total * (size_t)k;
        size_t off = 0;
        for (int i = 0; i < mt->nbn; i++) {
            int C = mela_model_bn_channels(mt->m, i);
            const float *mu = mela_exec_value(mt->se, mt->smean[i]), *v = mela_exec_value(mt->se, mt->svar[i]);
            for (int c = 0; c < C; c++)
                mk[off + c] = mu[c], mk[total + off + c] = v[c];
            off += (size_t)C;
        }
    }
    if (!(rc = dist_agree(rc))) {
        dist_gather_items(per, tasks, 2 * (int)total);
        for (int k = 0; k < tasks; k++) {
            const double *mk = per + 2 * total * (size_t)k;
            for (size_t c = 0; c < total; c++) {
                acc[c] += mk[c];
                acc[total + c] += mk[total + c];
                sq[c] += mk[c] * mk[c];
            }
        }
    }
    size_t off = 0;
    for (int i = 0; i < mt->nbn && !rc; i++) {
        int C = mela_model_bn_channels(mt->m, i);
        float *mean = theta + mela_layout_offset(mt->L, mt->bn_view + 2 * i);
        float *var = theta + mela_layout_offset(mt->L, mt->bn_view + 2 * i + 1);
        for (int c = 0; c < C; c++) {
            double m = acc[off + c] / tasks;
            double between = sq[off + c] / tasks - m * m;
            mean[c] = (float)m;
            var[c] = (float)(acc[total + off + c] / tasks + (between > 0 ? between : 0));
        }
        off += (size_t)C;
    }
    free(acc), free(sq), free(per);
    return rc;
}

int mela_metric_reserve(mela_metric *mt, int slots, int kernel_threads)
{
    return tp_reserve_threads(&mt->tp, slots, kernel_threads);
}

/* The training graph's loss over the embeddings E of one task's images (an
 * input): its gradient with respect to E and to the views after the model's
 * (the Siamese or Matching head), for the blocked episode. */
static int build_head(mela_metric *mt)
{
    task_graph *o = &mt->head;
    mela_node w[TP_MAXV];
    mela_graph *g = graph_with_params(mt, o, w);
    if (!g)
        return mela_set_error("metric learner: out of memory");
    int n1, n2;
    train_rows(mt, &n1, &n2);
    mt->hE = mela_input(g, "embeddings", MELA_SHAPE(n1 + n2, mt->D));
    mela_node e1 = mela_slice(g, mt->hE, 0, n1), e2 = mela_slice(g, mt->hE, n1, n2);
    if (mt->c.kind == MELA_METRIC_SIAMESE) {
        o->ys = mela_input(g, "same", MELA_SHAPE(n1));
        o->yq = MELA_NONE;
        pairs_head(mt, g, w, o, e1, e2);
    } else {
        o->ys = mela_input(g, "y_support", MELA_SHAPE(n1));
        o->yq = mela_input(g, "y_query", MELA_SHAPE(n2));
        episode_head(mt, g, w, o, e1, e2, MELA_NONE, &mt->c.train, 0);
    }
    mela_node wrt[TP_MAXV + 1];
    int nw = 0;
    wrt[nw++] = mt->hE;
    for (int v = mt->nmodel; v < mt->bn_view; v++)
        wrt[nw++] = w[v];
    mela_grad(g, o->loss, MELA_NONE, nw, wrt, o->grads);
    o->ngrads = nw;
    if (mela_graph_error(g))
        return mela_set_error("metric learner: %s", mela_graph_error(g));
    mela_node outs[TP_MAXV + 3];
    outs[0] = o->loss, outs[1] = o->acc;
    memcpy(outs + 2, o->grads, nw * sizeof *outs);
    if (!(o->p = mela_plan_new(g, 2 + nw, outs)) || !(mt->he = mela_exec_new(o->p)))
        return -1;
    if (!(mt->E = malloc((size_t)(n1 + n2) * mt->D * sizeof *mt->E)))
        return mela_set_error("metric learner: out of memory");
    return 0;
}

/* tp_profile's sums of the blocked episode: its blocks and its loss graph. */
static void more_profile(const void *ctx, double *seconds, long *calls)
{
    const mela_metric *mt = ctx;
    if (mt->he) {
        int n = mela_op_count();
        double *s = calloc(n, sizeof *s);
        long *c = calloc(n, sizeof *c);
        if (s && c) {
            mela_exec_profile(mt->he, s, c);
            for (int i = 0; i < n; i++)
                seconds[i] += s[i], calls[i] += c[i];
        }
        free(s), free(c);
    }
    blk_profile(mt->blk, seconds, calls);
}

int mela_metric_blocked_(mela_metric *mt, int n, int on)
{
    if (on >= 0)
        mt->blk_off = !on;
    /* not with background windows: their blank prototype is no task image */
    return n == 1 && !mt->blk_off && !mt->c.background && blk_serves(mt->m);
}

/* One task in blocks of images (blocked.c), spread over the processes. */
static int blocked_grad(mela_metric *mt, const float *theta, const mela_task *t, int threads, float *grad,
                        double *loss, double *acc)
{
    int rc = 0;
    if (!mt->blk) {
        int n1, n2;
        train_rows(mt, &n1, &n2);
        if (!(mt->blk = blk_new(mt->m, mt->L, n1, n2, &rc)) && !rc)
            rc = mela_set_error("metric learner: no blocks for this model");
    }
    if (!rc && !mt->he)
        rc = build_head(mt);
    if (dist_agree(rc))
        return -1;
    blk_set_profiling(mt->blk, mt->tp.profiling);
    mela_exec_set_profiling(mt->he, mt->tp.profiling);
    int blas = tp_blas_hold();
    if (blk_forward(mt->blk, theta, t->xs, t->xq, threads, mt->E)) {
        tp_blas_release(blas);
        return -1;
    }
    task_graph *o = &mt->head;
    mela_exec_bind_params(mt->he, theta);
    mela_exec_bind(mt->he, mt->hE, mt->E);
    mela_exec_bind(mt->he, o->ys, t->ys);
    if (o->yq != MELA_NONE)
        mela_exec_bind(mt->he, o->yq, t->yq);
    /* the same run on every process: a failure is every process's */
    if (dist_agree(mela_exec_run(mt->he))) {
        tp_blas_release(blas);
        return -1;
    }
    blk_backward(mt->blk, theta, mela_exec_value(mt->he, o->grads[0]), threads, grad);
    for (int v = mt->nmodel, k = 1; v < mt->bn_view; v++, k++)
        memcpy(grad + mela_layout_offset(mt->L, v), mela_exec_value(mt->he, o->grads[k]),
               mela_shape_numel(mela_layout_shape(mt->L, v)) * sizeof *grad);
    tp_blas_release(blas);
    if (loss)
        *loss = mela_exec_value(mt->he, o->loss)[0];
    if (acc)
        *acc = mela_exec_value(mt->he, o->acc)[0];
    return 0;
}

int mela_metric_grad(mela_metric *mt, const float *theta, int n, const mela_task *tasks, int threads,
                     float *grad, double *loss, double *acc)
{
    if (mela_metric_blocked_(mt, n, -1))
        return blocked_grad(mt, theta, tasks, threads, grad, loss, acc);
    return tp_grad(&mt->tp, theta, n, tasks, threads, grad, loss, acc);
}

int mela_metric_evaluate(mela_metric *mt, const float *theta, const mela_task *task, int slot,
                         double *loss, double *acc, float *out)
{
    return tp_evaluate(&mt->tp, theta, task, slot, loss, acc, out);
}

int mela_metric_compare(mela_metric *mt, const float *theta, const float *a, const float *b,
                        double *p_same)
{
    if (mt->c.kind != MELA_METRIC_SIAMESE)
        return mela_set_error("compare: only a Siamese network compares two images");
    if (!mt->ce) {
        mela_graph *g = mt->cg = mela_graph_new();
        mela_node w[TP_MAXV];
        for (int i = 0; i < mt->nviews; i++)
            w[i] = mela_param(g, mt->L, i);
        mt->ca = mela_input(g, "a", mela_model_input_shape(mt->m, 1));
        mt->cb = mela_input(g, "b", mela_model_input_shape(mt->m, 1));
        mela_node e1, e2;
        embed(mt, g, w, mt->ca, mt->cb, 1, 1, 1, &e1, &e2);
        mt->cprob = mela_sigmoid(g, pair_logits(mt, g, w, e1, e2, 1, 1));
        if (mela_graph_error(g))
            return mela_set_error("compare: %s", mela_graph_error(g));
        if (!(mt->cp = mela_plan_new(g, 1, &mt->cprob)) || !(mt->ce = mela_exec_new(mt->cp)))
            return -1;
    }
    mela_exec_bind_params(mt->ce, theta);
    mela_exec_bind(mt->ce, mt->ca, a);
    mela_exec_bind(mt->ce, mt->cb, b);
    if (mela_exec_run(mt->ce))
        return -1;
    *p_same = mela_exec_value(mt->ce, mt->cprob)[0];
    return 0;
}
