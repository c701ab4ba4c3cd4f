/*
 * learner_gbml.c - the learners that adapt by gradient steps, behind the one
 * learner interface: MAML (Finn et al. 2017), first-order MAML, Meta-SGD
 * (Li et al. 2017), ANIL (Raghu et al. 2020), MAML++ (Antoniou et al. 2019)
 * and Reptile (Nichol et al. 2018), each its papers' defaults over mela_gbml.
 */
#include <stdlib.h>
#include <string.h>

#include "learn/learner.h"
#include "learn/taskpool.h"

/* Omniglot defaults of MAML and its close relatives (Finn et al. 2017):
 * 5-way 1 step of 0.4, meta-batch 32, 3 steps at test; 20-way 5 steps of 0.1,
 * meta-batch 16. Sinusoids keep the dataset's. */
static void maml_defaults(mela_run_config *rc, int ways)
{
    if (mela_run_regression(rc))
        return;
    rc->train = (mela_task_spec){ways > 0 ? ways : 5, 1, 1, 0};
    rc->test.queries = 15;
    rc->iterations = 60000;
    rc->val_every = 500;
    int big = rc->train.ways >= 20;
    rc->steps = big ? 5 : 1;
    rc->test_steps = big ? 5 : 3;
    rc->inner_lr = big ? 0.1f : 0.4f;
    rc->meta_batch = big ? 16 : 32;
}

/* Li et al. (2017) adapt in the steps the rates were learned for, at test as
 * in meta-training (5-way: one step, where MAML takes 3 at test). */
static void metasgd_defaults(mela_run_config *rc, int ways)
{
    maml_defaults(rc, ways);
    rc->test_steps = rc->steps;
}

static void fomaml_defaults(mela_run_config *rc, int ways)
{
    maml_defaults(rc, ways);
    rc->first_order = 1;
}

/* Antoniou et al. (2019): 5 steps, every switch on; their epoch-based
 * schedules scaled to the run, whatever its length (-1: msl over the first
 * tenth, first order for the first third), outer lr cosine-annealed to 1e-5. */
static void mamlpp_defaults(mela_run_config *rc, int ways)
{
    maml_defaults(rc, ways);
    if (mela_run_regression(rc))
        return;
    rc->steps = rc->test_steps = 5;
    rc->inner_lr = 0.1f;
    rc->meta_batch = rc->train.ways >= 20 ? 8 : 16;
    rc->lslr = rc->msl = rc->bnwb = 1;
    rc->msl_anneal = -1;
    rc->da_until = -1;
    rc->cosine_lr = 1;
    rc->min_lr = 1e-5f;
}

/* Nichol et al. (2018). Sinusoids: 5 SGD steps of 0.02, meta step 1 annealed
 * to 0. Omniglot: inner Adam (beta1 0) on 10-shot training tasks in
 * minibatches (5-way: 5 steps of 10 rows, rate 0.001; 20-way: 10 steps of 20
 * rows, rate 0.0005: one epoch of the support either way), 50 steps at test
 * on minibatches of 5 (20-way: 10), meta-batch 5, 100,000 (20-way: 200,000)
 * iterations. */
static void reptile_defaults(mela_run_config *rc, int ways)
{
    maml_defaults(rc, ways);
    rc->outer_lr = 1.0f;
    if (mela_run_regression(rc)) {
        rc->steps = 5;
        rc->inner_lr = 0.02f;
        return;
    }
    int big = rc->train.ways >= 20;
    rc->inner_adam = 2;
    rc->inner_lr = big ? 0.0005f : 0.001f;
    rc->train.shots = 10;
    rc->test.shots = 1;
    rc->steps = big ? 10 : 5;
    rc->inner_batch = big ? 20 : 10;
    rc->test_steps = 50;
    rc->test_inner_batch = big ? 10 : 5;
    rc->meta_batch = 5;
    rc->iterations = big ? 200000 : 100000;
}

static int gbml_check(const mela_run_config *rc)
{
    if (rc->scale != 1 || rc->learn_scale)
        return mela_set_error("scale %g / learn_scale %d: the attention scale is matchnet's",
                              (double)rc->scale, rc->learn_scale);
    if (!mela_run_regression(rc) && rc->test.ways && rc->test.ways != rc->train.ways)
        return mela_set_error("test_ways %d must equal ways %d for %s: its head has one output "
                              "per class", rc->test.ways, rc->train.ways, rc->learner);
    if (rc->inner_sum && mela_run_regression(rc))
        return mela_set_error("inner_sum %d: the sinusoid loss is a mean (in Finn et al.'s code too)",
                              rc->inner_sum);
    if (rc->da_until != 0 && strcmp(rc->learner, "mamlpp"))
        return mela_set_error("da_until %d needs the mamlpp learner's derivative-order annealing",
                              rc->da_until);
    return 0;
}

static mela_gbml *gb_of(const mela_learner *l) { return l->impl; }

static int gbml_open(mela_learner *l, int query_rows, int learner, int first_order, int da)
{
    const mela_run_config *rc = &l->rc;
    int regression = mela_run_regression(rc);
    if (!(l->model = learner_model(rc)))
        return -1;
    mela_gbml_config c = {
        .learner = learner, .first_order = first_order || rc->first_order, .regression = regression,
        .train = rc->train, .test = mela_run_test_spec(rc), .steps = rc->steps,
        .test_steps = rc->test_steps, .inner_lr = rc->inner_lr, .lslr = rc->lslr, .msl = rc->msl,
        .bnwb = rc->bnwb, .da = da, .inner_adam = rc->inner_adam,
        .nontransductive = rc->nontransductive, .inner_batch = rc->inner_batch,
        .test_inner_batch = rc->test_inner_batch, .inner_sum = rc->inner_sum};
    c.test.query_rows = query_rows;
    if (!(l->impl = mela_gbml_new(l->model, &c)))
        return -1;
    l->L = mela_gbml_layout(l->impl);
    l->clip_size = mela_gbml_learned_size(l->impl);
    l->msl_w = calloc(rc->steps > 0 ? rc->steps : 1, sizeof *l->msl_w);
    return l->msl_w ? 0 : mela_set_error("learner: out of memory");
}

static int open_maml(mela_learner *l, int q) { return gbml_open(l, q, MELA_LEARNER_MAML, 0, 0); }
static int open_fomaml(mela_learner *l, int q) { return gbml_open(l, q, MELA_LEARNER_MAML, 1, 0); }
static int open_metasgd(mela_learner *l, int q) { return gbml_open(l, q, MELA_LEARNER_METASGD, 0, 0); }
static int open_anil(mela_learner *l, int q) { return gbml_open(l, q, MELA_LEARNER_ANIL, 0, 0); }
static int open_mamlpp(mela_learner *l, int q) { return gbml_open(l, q, MELA_LEARNER_MAML, 0, 1); }
static int open_reptile(mela_learner *l, int q) { return gbml_open(l, q, MELA_LEARNER_REPTILE, 0, 0); }

static void gbml_close(mela_learner *l) { mela_gbml_free(l->impl); }
static void gbml_init(mela_learner *l, float *theta, mela_rng *r) { mela_gbml_init(gb_of(l), theta, r); }

/* Sinusoids, or episodes whose support rows are shuffled when the inner
 * loop takes minibatches of them. Evaluation episodes of Lake's split come
 * from one alphabet each. */
static void gbml_tasks(const mela_learner *l, int train, mela_tasks_opts *o)
{
    const mela_run_config *rc = &l->rc;
    mela_task_spec te = mela_run_test_spec(rc);
    o->spec = train ? rc->train : te;
    if (mela_run_regression(rc)) {
        o->kind = MELA_TASKS_SINUSOID;
        o->spec.shots = rc->train.shots; /* test sinusoids keep K */
        return;
    }
    o->kind = MELA_TASKS_EPISODES;
    o->flags = mela_run_episode_flags(rc, train);
    int b = train ? rc->inner_batch : rc->test_inner_batch;
    o->shuffle_support = b > 0 && b < o->spec.ways * o->spec.shots;
}

/* MAML++'s schedules of the iteration, then the meta-gradient. */
static int gbml_grad(mela_learner *l, const float *theta, int it, int n, const mela_task *tasks,
                     double *loss, double *acc)
{
    const mela_run_config *rc = &l->rc;
    mela_gbml *gb = gb_of(l);
    const mela_gbml_config *c = mela_gbml_config_of(gb);
    if (c->msl) {
        mela_msl_weights(rc->steps, it - 1, mela_run_msl_anneal(rc), l->msl_w);
        if (mela_gbml_set_step_weights(gb, l->msl_w))
            return -1;
    }
    if (c->da && mela_gbml_set_first_order(gb, it <= mela_run_da_until(rc)))
        return -1;
    return mela_gbml_meta_grad(gb, theta, n, tasks, rc->threads, l->grad, loss, acc);
}

/* Reptile: theta += eps (mean phi - theta), eps annealed linearly to 0. */
static void reptile_update(mela_learner *l, float *theta, int it)
{
    float frac = (float)(it - 1) / (float)l->rc.iterations;
    mela_gbml_reptile_update(gb_of(l), theta, l->grad, l->rc.outer_lr * (1.0f - frac));
}

static int gbml_reserve(mela_learner *l, int slots, int kt) { return mela_gbml_reserve(gb_of(l), slots, kt); }

static int gbml_evaluate(mela_learner *l, const float *theta, const mela_task *t, int slot, double *loss,
                         double *acc, float *out)
{
    return mela_gbml_evaluate(gb_of(l), theta, t, slot, loss, acc, out);
}

static struct taskpool *gbml_pool(mela_learner *l) { return mela_gbml_pool_(gb_of(l)); }

/* Logits to probabilities; regression predictions stay as they are. */
static void gbml_probabilities(const mela_learner *l, float *out, int rows, int N)
{
    if (!mela_run_regression(&l->rc))
        learner_softmax_rows(out, rows, N);
}

#define GBML(id, about_, defaults_, open_, update_)                                              \
    const learner_def learner_##id = {                                                            \
        .info = {#id, about_, 1, 0, 0}, .defaults = defaults_, .check = gbml_check, .open = open_,  \
        .close = gbml_close, .init = gbml_init, .tasks = gbml_tasks, .grad = gbml_grad,          \
        .update = update_, .reserve = gbml_reserve, .evaluate = gbml_evaluate,                   \
        .probabilities = gbml_probabilities, .pool = gbml_pool}

GBML(maml, "MAML, exact second-order meta-gradients (Finn et al. 2017)", maml_defaults, open_maml,
     learner_adam_update);
GBML(fomaml, "first-order MAML: inner gradients as constants (Finn et al. 2017)", fomaml_defaults,
     open_fomaml, learner_adam_update);
GBML(metasgd, "Meta-SGD: a learned inner rate per weight (Li et al. 2017)", metasgd_defaults,
     open_metasgd, learner_adam_update);
GBML(anil, "ANIL: only the head adapts (Raghu et al. 2020)", maml_defaults, open_anil,
     learner_adam_update);
GBML(mamlpp, "MAML++: per-step rates and BN, multi-step loss, annealing (Antoniou et al. 2019)",
     mamlpp_defaults, open_mamlpp, learner_adam_update);
GBML(reptile, "Reptile: move toward the adapted weights (Nichol et al. 2018)", reptile_defaults,
     open_reptile, reptile_update);
