/*
 * learner_metric.c - the learners that compare, behind the one learner
 * interface: Prototypical Networks (Snell et al. 2017), Matching Networks
 * (Vinyals et al. 2016) and Siamese networks (Koch et al. 2015), each its
 * papers' defaults over mela_metric, trained with Adam.
 */
#include <stdio.h>
#include <string.h>

#include "learn/learner.h"
#include "learn/taskpool.h"

/* Snell et al. / Vinyals et al.: Conv-4 with 2x2 max-pool, a 64-d embedding;
 * episodes with 15 test queries, one per iteration, the rate halved every
 * 2,000. ways: the test ways (5 unless given). */
static void metric_defaults(mela_run_config *rc, int ways)
{
    rc->maxpool = 1;
    rc->train = (mela_task_spec){ways > 0 ? ways : 5, 1, 5, 0};
    rc->test.queries = 15;
    rc->meta_batch = 1;
    rc->iterations = 10000;
    rc->val_every = 500;
    rc->lr_decay_every = 2000;
    rc->inner_lr = 0.01f; /* unused */
    rc->steps = rc->test_steps = 0;
}

/* Snell et al. train 60-way with 5 queries per class and test N-way. */
static void protonet_defaults(mela_run_config *rc, int ways)
{
    metric_defaults(rc, ways);
    rc->test.ways = rc->train.ways;
    rc->train.ways = 60;
}

/* Koch et al.'s protocol: 20-way within-alphabet one-shot tests on Lake's
 * split, trained on batches of 128 distorted pairs. */
static void siamese_defaults(mela_run_config *rc, int ways)
{
    metric_defaults(rc, ways);
    snprintf(rc->split, sizeof rc->split, "lake");
    rc->train = (mela_task_spec){ways > 0 ? ways : 20, 1, 1, 0};
    rc->test.queries = 1;
    rc->pairs = 128;
    rc->augment = 1;
    rc->lr_decay_every = 0;
}

static int metric_check(const mela_run_config *rc)
{
    if (mela_run_regression(rc))
        return mela_set_error("learner %s classifies; the sinusoid tasks are regression", rc->learner);
    if (rc->inner_sum)
        return mela_set_error("inner_sum %d: %s takes no inner steps", rc->inner_sum, rc->learner);
    if (!rc->maxpool && rc->depth < 4)
        return mela_set_error("metric learners use the max-pool Conv-4 embedding");
    return 0;
}

static int no_scale_check(const mela_run_config *rc)
{
    if (rc->scale != 1 || rc->learn_scale)
        return mela_set_error("scale %g / learn_scale %d: the attention scale is matchnet's",
                              (double)rc->scale, rc->learn_scale);
    return metric_check(rc);
}

static int siamese_check(const mela_run_config *rc)
{
    if (rc->pairs < 2)
        return mela_set_error("pairs: %d (Siamese training needs at least 2)", rc->pairs);
    return no_scale_check(rc);
}

static mela_metric *mt_of(const mela_learner *l) { return l->impl; }

static int metric_open(mela_learner *l, int query_rows, int kind)
{
    const mela_run_config *rc = &l->rc;
    if (!(l->model = learner_model(rc)))
        return -1;
    mela_metric_config c = {.kind = kind, .train = rc->train, .test = mela_run_test_spec(rc),
                            .pairs = rc->pairs, .scale = rc->scale, .learn_scale = rc->learn_scale,
                            .background = rc->background};
    c.test.query_rows = query_rows;
    if (!(l->impl = mela_metric_new(l->model, &c)))
        return -1;
    l->L = mela_metric_layout(l->impl);
    return 0;
}

static int open_protonet(mela_learner *l, int q) { return metric_open(l, q, MELA_METRIC_PROTO); }
static int open_matchnet(mela_learner *l, int q) { return metric_open(l, q, MELA_METRIC_MATCHING); }
static int open_siamese(mela_learner *l, int q) { return metric_open(l, q, MELA_METRIC_SIAMESE); }

static void metric_close(mela_learner *l) { mela_metric_free(l->impl); }
static void metric_init(mela_learner *l, float *theta, mela_rng *r) { mela_metric_init(mt_of(l), theta, r); }

/* Episodes (Lake's split: each from one alphabet at evaluation). */
static void episode_tasks(const mela_learner *l, int train, mela_tasks_opts *o)
{
    const mela_run_config *rc = &l->rc;
    o->kind = MELA_TASKS_EPISODES;
    o->spec = train ? rc->train : mela_run_test_spec(rc);
    o->flags = mela_run_episode_flags(rc, train);
    o->background = train ? rc->background : 0;
    o->augment = train ? rc->augment : 0;
}

/* Siamese networks train on batches of pairs and are tested on episodes. */
static void siamese_tasks(const mela_learner *l, int train, mela_tasks_opts *o)
{
    episode_tasks(l, train, o);
    if (train) {
        o->kind = MELA_TASKS_PAIRS;
        o->pairs = l->rc.pairs;
    }
}

static int metric_grad(mela_learner *l, const float *theta, int it, int n, const mela_task *tasks,
                       double *loss, double *acc)
{
    return mela_metric_grad(mt_of(l), theta, n, tasks, l->rc.threads, l->grad, loss, acc);
}

static int metric_every_task(mela_learner *l, int n) { return mela_metric_blocked_(mt_of(l), n, -1); }

static int metric_reserve(mela_learner *l, int slots, int kt) { return mela_metric_reserve(mt_of(l), slots, kt); }

static int metric_evaluate(mela_learner *l, const float *theta, const mela_task *t, int slot,
                           double *loss, double *acc, float *out)
{
    return mela_metric_evaluate(mt_of(l), theta, t, slot, loss, acc, out);
}

static struct taskpool *metric_pool(mela_learner *l) { return mela_metric_pool_(mt_of(l)); }

/* ProtoNets and Matching score with log-probabilities. */
static void log_probabilities(const mela_learner *l, float *out, int rows, int N)
{
    learner_softmax_rows(out, rows, N);
}

static int siamese_compare(mela_learner *l, const float *theta, const float *a, const float *b,
                           double *p)
{
    return mela_metric_compare(mt_of(l), theta, a, b, p);
}

static int metric_calibrate(mela_learner *l, float *theta, mela_tasks *ts, int tasks)
{
    return mela_metric_calibrate(mt_of(l), theta, ts, tasks, l->rc.threads);
}

static int metric_calibration_images(const mela_learner *l) { return mela_metric_train_images_(l->impl); }

#define METRIC(id, about_, defaults_, check_, open_, tasks_, probs_, compare_, compares_)        \
    const learner_def learner_##id = {                                                            \
        .info = {#id, about_, 0, 1, compares_}, .defaults = defaults_, .check = check_,       \
        .open = open_, .close = metric_close, .init = metric_init, .tasks = tasks_,              \
        .grad = metric_grad, .update = learner_adam_update, .every_task = metric_every_task,    \
        .reserve = metric_reserve,                                                                \
        .evaluate = metric_evaluate, .probabilities = probs_, .compare = compare_,             \
        .pool = metric_pool, .calibrate = metric_calibrate,                                     \
        .calibration_images = metric_calibration_images}

METRIC(protonet, "Prototypical Networks: nearest class mean (Snell et al. 2017)", protonet_defaults,
       no_scale_check, open_protonet, episode_tasks, log_probabilities, NULL, 0);
METRIC(matchnet, "Matching Networks: cosine attention over the support (Vinyals et al. 2016)",
       metric_defaults, metric_check, open_matchnet, episode_tasks, log_probabilities, NULL, 0);
METRIC(siamese, "Siamese networks: p(same) of two images (Koch et al. 2015)", siamese_defaults,
       siamese_check, open_siamese, siamese_tasks, NULL, siamese_compare, 1);
