/*
 * train.c - meta-training and evaluation runs: tasks from Omniglot episodes
 * or sinusoids, the meta-training loop (Adam on the averaged meta-gradient,
 * validation, best and last checkpoints, metrics), and evaluation of a
 * checkpoint on the fixed test episodes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mela_data.h"
#include "mela_io.h"
#include "mela_learn.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* ------------------------------------------------------------ task sources */

enum { SRC_SINUSOID, SRC_EPISODES, SRC_PAIRS };

/* Tasks of one kind (train, val or test): sinusoids, N-way K-shot episodes
 * of a split, or batches of same/different pairs (Siamese training). Each
 * slot has its own sampler or buffers, so slots can be filled and used on
 * different threads. */
typedef struct source {
    int kind;
    const mela_dataset *ds;
    const mela_split *sp;
    int N, K, Q;        /* episodes / sinusoids (K, Q points) */
    int pairs, augment; /* pairs */
    uint64_t seed;
    int nslots;
    mela_sampler **samp;
    float *buf;         /* sinusoid: nslots * 2 (K + Q); pairs: nslots * (2 pairs img + pairs + 1) */
    float *tmp;         /* pairs: one image, for the distortion */
    float *shuf;        /* episodes with inner minibatches: nslots shuffled supports (x, y) */
} source;

static void source_free(source *s)
{
    for (int i = 0; i < s->nslots && s->samp; i++)
        mela_sampler_free(s->samp[i]);
    free(s->samp);
    free(s->buf);
    free(s->tmp);
    free(s->shuf);
    memset(s, 0, sizeof *s);
}

static size_t image_floats(const mela_dataset *ds) { return (size_t)ds->C * ds->H * ds->W; }

/* dst = the n rows (img floats each, with a label) of src in a random order
 * (inside-out Fisher-Yates). */
static void shuffle_rows(float *dx, float *dy, const float *sx, const float *sy, int n, size_t img,
                         mela_rng *r)
{
    for (int j = 0; j < n; j++) {
        int k = (int)mela_rng_below(r, (uint32_t)j + 1);
        if (k != j) {
            memcpy(dx + (size_t)j * img, dx + (size_t)k * img, img * sizeof *dx);
            dy[j] = dy[k];
        }
        memcpy(dx + (size_t)k * img, sx + (size_t)j * img, img * sizeof *dx);
        dy[k] = sy[j];
    }
}

/* Episodes whose inner loop takes minibatches of b support rows get their
 * support rows in a random order (the sampler gives them class by class). */
static int source_shuffle_support(source *s, int b)
{
    if (s->kind != SRC_EPISODES || b <= 0 || b >= s->N * s->K)
        return 0;
    s->shuf = malloc((size_t)s->nslots * s->N * s->K * (image_floats(s->ds) + 1) * sizeof *s->shuf);
    return s->shuf ? 0 : mela_set_error("out of memory");
}

static size_t pair_slot_floats(const source *s) { return (2 * image_floats(s->ds) + 1) * s->pairs + 1; }

/* kind SRC_EPISODES or SRC_PAIRS for a dataset, SRC_SINUSOID without. */
static int source_init(source *s, int kind, const mela_dataset *ds, const mela_split *sp, int N, int K,
                       int Q, unsigned flags, uint64_t seed, int nslots)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->ds = ds;
    s->sp = sp;
    s->N = N, s->K = K, s->Q = Q;
    s->seed = seed;
    s->nslots = nslots;
    if (kind == SRC_SINUSOID) {
        s->buf = malloc((size_t)nslots * 2 * (K + Q) * sizeof *s->buf);
        return s->buf ? 0 : mela_set_error("out of memory");
    }
    if (kind == SRC_PAIRS) {
        s->pairs = N, s->augment = K;
        if (sp->n < 2)
            return mela_set_error("split %s: pairs need at least 2 classes", sp->name);
        for (int k = 0; k < sp->n; k++)
            if (ds->classes[sp->classes[k].cls].count < 2)
                return mela_set_error("split %s: class %s has %d image(s); pairs need 2", sp->name,
                                      ds->classes[sp->classes[k].cls].name,
                                      ds->classes[sp->classes[k].cls].count);
        s->buf = malloc((size_t)nslots * pair_slot_floats(s) * sizeof *s->buf);
        s->tmp = malloc(image_floats(ds) * sizeof *s->tmp);
        return s->buf && s->tmp ? 0 : mela_set_error("out of memory");
    }
    s->samp = calloc(nslots, sizeof *s->samp);
    if (!s->samp)
        return mela_set_error("out of memory");
    for (int i = 0; i < nslots; i++)
        if (!(s->samp[i] = mela_sampler_new(ds, sp, N, K, Q, flags))) {
            source_free(s);
            return -1;
        }
    return 0;
}

/* One image of split class k into dst, distorted when augmenting. */
static void pair_image(source *s, mela_rng *r, int k, int j, float *dst)
{
    if (!s->augment) {
        mela_split_image(s->ds, s->sp, k, j, dst);
        return;
    }
    mela_split_image(s->ds, s->sp, k, j, s->tmp);
    mela_affine_distort(dst, s->tmp, s->ds->C, s->ds->H, s->ds->W, r);
}

/* Task i of the source into slot `slot`: a pure function of (seed, i). */
static void source_task(source *s, int slot, uint64_t i, mela_task *t)
{
    if (s->kind == SRC_SINUSOID) {
        float *b = s->buf + (size_t)slot * 2 * (s->K + s->Q);
        t->xs = b, t->ys = b + s->K, t->xq = b + 2 * s->K, t->yq = b + 2 * s->K + s->Q;
        mela_sinusoid_task(s->seed, i, s->K, s->Q, b, b + s->K, b + 2 * s->K, b + 2 * s->K + s->Q,
                           NULL, NULL);
        return;
    }
    if (s->kind == SRC_PAIRS) {
        /* half the pairs same class (odd rows), half different; two distinct images */
        size_t img = image_floats(s->ds);
        float *b = s->buf + (size_t)slot * pair_slot_floats(s);
        float *x1 = b, *x2 = b + img * s->pairs, *same = x2 + img * s->pairs, *unused = same + s->pairs;
        mela_rng r = mela_rng_derive(s->seed, s->sp->id ^ 0x7061697273ULL, i);
        int n = s->sp->n;
        for (int p = 0; p < s->pairs; p++) {
            int a = (int)mela_rng_below(&r, (uint32_t)n);
            int bcls = p % 2 ? a : (a + 1 + (int)mela_rng_below(&r, (uint32_t)n - 1)) % n;
            int ca = s->ds->classes[s->sp->classes[a].cls].count;
            int cb = s->ds->classes[s->sp->classes[bcls].cls].count;
            int ia = (int)mela_rng_below(&r, (uint32_t)ca), ib = (int)mela_rng_below(&r, (uint32_t)cb);
            if (bcls == a && ib == ia)
                ib = (ia + 1 + (int)mela_rng_below(&r, (uint32_t)ca - 1)) % ca;
            pair_image(s, &r, a, ia, x1 + img * p);
            pair_image(s, &r, bcls, ib, x2 + img * p);
            same[p] = p % 2 ? 1.0f : 0.0f;
        }
        unused[0] = 0;
        t->xs = x1, t->ys = same, t->xq = x2, t->yq = unused;
        return;
    }
    const mela_episode *e = mela_sampler_episode(s->samp[slot], s->seed, i);
    t->xs = e->x_support, t->ys = e->y_support, t->xq = e->x_query, t->yq = e->y_query;
    if (s->shuf) { /* a random permutation of the support rows, a function of (seed, i) */
        size_t img = image_floats(s->ds);
        int n = s->N * s->K;
        float *x = s->shuf + (size_t)slot * n * (img + 1), *y = x + (size_t)n * img;
        mela_rng r = mela_rng_derive(s->seed, s->sp->id ^ 0x73687566ULL, i);
        shuffle_rows(x, y, e->x_support, e->y_support, n, img, &r);
        t->xs = x, t->ys = y;
    }
}

/* --------------------------------------------------------------- the run */

typedef struct run {
    mela_run_config rc;
    mela_dataset *ds;
    mela_split *train, *val, *test;
    mela_model *model;
    mela_gbml *gb;     /* gradient-based learners */
    mela_metric *mt;   /* metric learners */
    float *theta;
} run;

static const mela_layout *run_layout(const run *r)
{
    return r->mt ? mela_metric_layout(r->mt) : mela_gbml_layout(r->gb);
}

static int run_reserve(run *r, int slots)
{
    return r->mt ? mela_metric_reserve(r->mt, slots) : mela_gbml_reserve(r->gb, slots);
}

static int run_evaluate(run *r, const mela_task *t, int slot, double *loss, double *acc, float *out)
{
    return r->mt ? mela_metric_evaluate(r->mt, r->theta, t, slot, loss, acc, out)
                 : mela_gbml_evaluate(r->gb, r->theta, t, slot, loss, acc, out);
}

static void run_free(run *r)
{
    mela_gbml_free(r->gb);
    mela_metric_free(r->mt);
    mela_model_free(r->model);
    mela_split_free(r->train);
    mela_split_free(r->val);
    mela_split_free(r->test);
    mela_dataset_free(r->ds);
    free(r->theta);
    memset(r, 0, sizeof *r);
}

static int test_ways(const mela_run_config *rc) { return rc->test_ways ? rc->test_ways : rc->gb.ways; }
static int test_shots(const mela_run_config *rc) { return rc->test_shots ? rc->test_shots : rc->gb.shots; }

/* Builds model and learner (and loads data when `data`). query_total > 0:
 * evaluation episodes have that many query rows (classify). */
static int run_open(run *r, const mela_run_config *rc, int data, int query_total)
{
    memset(r, 0, sizeof *r);
    r->rc = *rc;
    if (mela_run_check(rc))
        return -1;
    if (!strcmp(rc->model, "mlp")) {
        int hidden[2] = {40, 40};
        r->model = mela_mlp_new(1, hidden, 2, 1);
    } else {
        r->model = mela_conv4_new(1, rc->image_size, rc->width, rc->depth, rc->metric ? 0 : rc->gb.ways,
                                  rc->maxpool);
    }
    if (!r->model)
        goto fail;
    if (rc->metric) {
        int kind = !strcmp(rc->learner, "protonet") ? MELA_METRIC_PROTO
                 : !strcmp(rc->learner, "matchnet") ? MELA_METRIC_MATCHING : MELA_METRIC_SIAMESE;
        mela_metric_config mc = {.kind = kind, .ways = rc->gb.ways, .shots = rc->gb.shots,
                                 .queries = rc->gb.queries, .test_ways = test_ways(rc),
                                 .test_shots = test_shots(rc), .test_queries = rc->test_queries,
                                 .pairs = rc->pairs, .query_total = query_total,
                                 .scale = rc->scale, .learn_scale = rc->learn_scale};
        if (!(r->mt = mela_metric_new(r->model, &mc)))
            goto fail;
    } else {
        mela_gbml_config gc = rc->gb;
        gc.test_queries = rc->test_queries;
        gc.test_shots = rc->test_shots;
        gc.query_total = query_total;
        if (!(r->gb = mela_gbml_new(r->model, &gc)))
            goto fail;
    }
    r->theta = calloc(mela_layout_size(run_layout(r)), sizeof *r->theta);
    if (!r->theta) {
        mela_set_error("out of memory");
        goto fail;
    }
    if (data && !rc->gb.regression) {
        mela_omniglot_opts o = {.H = rc->image_size, .W = rc->image_size,
                                .cache_dir = rc->cache_dir[0] ? rc->cache_dir : NULL};
        if (!(r->ds = mela_omniglot_load(rc->data_dir, &o)))
            goto fail;
        if (!strcmp(rc->split, "lake")) {
            if (!(r->train = mela_split_lake(r->ds, "train")) ||
                !(r->val = mela_split_lake(r->ds, "koch_val")) ||
                !(r->test = mela_split_lake(r->ds, "koch_test")))
                goto fail;
        } else if (!(r->train = mela_split_vinyals(r->ds, rc->data_dir, "train")) ||
                   !(r->val = mela_split_vinyals(r->ds, rc->data_dir, "val")) ||
                   !(r->test = mela_split_vinyals(r->ds, rc->data_dir, "test"))) {
            goto fail;
        }
    }
    return 0;
fail:
    run_free(r);
    return -1;
}

/* Validation/test episodes of split sp (sinusoids when there is no data). */
static int eval_source(source *s, const run *r, const mela_split *sp, uint64_t seed, int nslots)
{
    const mela_run_config *rc = &r->rc;
    if (rc->gb.regression)
        return source_init(s, SRC_SINUSOID, NULL, NULL, 1, rc->gb.shots, rc->test_queries, 0, seed, nslots);
    unsigned flags = !strcmp(rc->split, "lake") ? MELA_EPISODE_WITHIN_GROUP : 0;
    if (source_init(s, SRC_EPISODES, r->ds, sp, test_ways(rc), test_shots(rc), rc->test_queries, flags,
                    seed, nslots))
        return -1;
    return r->gb ? source_shuffle_support(s, rc->gb.test_inner_batch) : 0;
}

typedef struct eval_job {
    run *r;
    source *src;
    int n, slot, nthreads, rc;
    double *acc, *loss;
    char error[256];
} eval_job;

static void *eval_worker(void *arg)
{
    eval_job *j = arg;
    for (int i = j->slot; i < j->n; i += j->nthreads) {
        mela_task t;
        source_task(j->src, j->slot, (uint64_t)i, &t);
        if (run_evaluate(j->r, &t, j->slot, &j->loss[i], &j->acc[i], NULL)) {
            j->rc = -1;
            snprintf(j->error, sizeof j->error, "%s", mela_last_error());
            return NULL;
        }
    }
    return NULL;
}

/* Evaluates n tasks of src (slots 0..threads) on threads; per-task results
 * are kept by index, so the mean does not depend on the thread count. */
static int evaluate(run *r, source *src, int n, int threads, mela_eval_result *res)
{
    int all = threads;
    if (threads > src->nslots)
        threads = src->nslots;
    if (threads > n)
        threads = n;
    if (run_reserve(r, threads))
        return -1;
    mela_set_kernel_threads(all > threads ? all / threads : 1);
    double *acc = calloc(2 * (size_t)n, sizeof *acc);
    eval_job *jobs = calloc(threads, sizeof *jobs);
    int rc = 0;
    if (!acc || !jobs) {
        rc = mela_set_error("out of memory");
        goto done;
    }
    for (int k = 0; k < threads; k++)
        jobs[k] = (eval_job){r, src, n, k, threads, 0, acc, acc + n, ""};
    mela_parallel(threads, eval_worker, jobs, sizeof *jobs);
    for (int k = 0; k < threads && !rc; k++)
        if (jobs[k].rc)
            rc = mela_set_error("evaluation: %s", jobs[k].error);
    if (!rc) {
        res->episodes = n;
        mela_mean_ci(acc, n, &res->acc, &res->acc_ci);
        mela_mean_ci(acc + n, n, &res->loss, &res->loss_ci);
    }
done:
    free(acc), free(jobs);
    return rc;
}

/* Metadata of a checkpoint: every option, then the extra pairs. */
static int save_checkpoint(const run *r, const char *name, int iteration, double val)
{
    enum { MAXMETA = 64 };
    char vals[MAXMETA][520], path[1100];
    const char *keys[MAXMETA], *vp[MAXMETA];
    int n = 0;
    const char *help;
    for (int i = 0; n < MAXMETA - 4; i++) {
        const char *k = mela_run_option(i, &r->rc, vals[n], sizeof vals[n], &help);
        if (!k)
            break;
        keys[n] = k;
        vp[n] = vals[n];
        n++;
    }
    keys[n] = "format", snprintf(vals[n], sizeof vals[n], "mela-run-1"), vp[n] = vals[n], n++;
    keys[n] = "mela_version", snprintf(vals[n], sizeof vals[n], "%s", mela_version()), vp[n] = vals[n], n++;
    keys[n] = "iteration", snprintf(vals[n], sizeof vals[n], "%d", iteration), vp[n] = vals[n], n++;
    keys[n] = "validation", snprintf(vals[n], sizeof vals[n], "%.9g", val), vp[n] = vals[n], n++;
    snprintf(path, sizeof path, "%s/%s", r->rc.out_dir, name);
    return mela_checkpoint_save(path, run_layout(r), r->theta, n, keys, vp);
}

int mela_run_train(const mela_run_config *rcfg, int report, mela_progress_fn fn, void *ctx)
{
    run r;
    if (run_open(&r, rcfg, 1, 0))
        return -1;
    const mela_run_config *rc = &r.rc;
    mela_set_blas_threads(1);
    const mela_layout *L = run_layout(&r);
    size_t size = mela_layout_size(L);
    int B = rc->meta_batch, T = rc->threads;
    source tr = {0}, va = {0};
    mela_metrics *log = NULL;
    mela_adam adam = {0};
    float *grad = calloc(size, sizeof *grad);
    mela_task *tasks = calloc(B, sizeof *tasks);
    int status = -1;
    float msl_w[128];
    /* the learning curves, drawn to out_dir/curves.png at the end */
    int nrep = 0, caprep = 0;
    double *curve = NULL; /* rows of (iteration, train, validation) */
    if (!grad || !tasks) {
        mela_set_error("out of memory");
        goto done;
    }
    /* training tasks under `seed`; validation under test_seed (sinusoid:
     * a stream of its own, so validation and test tasks differ) */
    uint64_t vseed = rc->gb.regression ? (uint64_t)rc->test_seed ^ 0x76616cULL : (uint64_t)rc->test_seed;
    int tr_kind = rc->gb.regression ? SRC_SINUSOID : !strcmp(rc->learner, "siamese") ? SRC_PAIRS : SRC_EPISODES;
    int trN = tr_kind == SRC_PAIRS ? rc->pairs : rc->gb.ways;
    int trK = tr_kind == SRC_PAIRS ? rc->augment : rc->gb.shots;
    if (source_init(&tr, tr_kind, r.ds, r.train, trN, trK, rc->gb.queries, 0, (uint64_t)rc->seed,
                    B > T ? B : T) ||
        (r.gb && source_shuffle_support(&tr, rc->gb.inner_batch)) ||
        eval_source(&va, &r, r.val, vseed, T) ||
        mela_adam_init(&adam, size, rc->outer_lr) || !(log = mela_metrics_open(rc->out_dir, "metrics")))
        goto done;
    mela_rng init = mela_rng_derive((uint64_t)rc->seed, 0x696e6974ULL, 0);
    if (r.mt)
        mela_metric_init(r.mt, r.theta, &init);
    else
        mela_gbml_init(r.gb, r.theta, &init);

    mela_progress p = {.iterations = rc->iterations, .val_loss = NAN, .val_acc = NAN, .best_val = -INFINITY};

    double t0 = now(), sl = 0, sa = 0;
    int nacc = 0;
    if (report < 1)
        report = 1;
    for (int it = 1; it <= rc->iterations; it++) {
        for (int b = 0; b < B; b++)
            source_task(&tr, b, (uint64_t)(it - 1) * B + b, &tasks[b]);
        double loss, acc;
        if (r.gb && rc->gb.msl) { /* MAML++ multi-step loss weights of this iteration */
            mela_msl_weights(rc->gb.steps, it - 1, mela_run_msl_anneal(rc), msl_w);
            if (mela_gbml_set_step_weights(r.gb, msl_w))
                goto done;
        }
        if (r.gb && rc->gb.da && mela_gbml_set_first_order(r.gb, it <= mela_run_da_until(rc)))
            goto done;
        if (r.mt ? mela_metric_grad(r.mt, r.theta, B, tasks, T, grad, &loss, &acc)
                 : mela_gbml_meta_grad(r.gb, r.theta, B, tasks, T, grad, &loss, &acc))
            goto done;
        if (!isfinite(loss)) {
            mela_set_error("iteration %d: the meta-loss is %g; lower inner_lr or outer_lr", it, loss);
            goto done;
        }
        float frac = (float)(it - 1) / (float)rc->iterations;
        if (rc->gb.learner == MELA_LEARNER_REPTILE && !rc->metric) {
            /* theta += eps (mean phi - theta), eps annealed linearly to 0 */
            mela_sgd_step(r.theta, grad, size, rc->outer_lr * (1.0f - frac));
        } else {
            if (rc->lr_decay_every > 0) /* halved every lr_decay_every iterations */
                adam.lr = rc->outer_lr * powf(0.5f, (float)((it - 1) / rc->lr_decay_every));
            if (rc->cosine_lr)
                adam.lr = rc->min_lr + 0.5f * (rc->outer_lr - rc->min_lr) * (1.0f + cosf(3.14159265f * frac));
            mela_adam_step(&adam, r.theta, grad);
        }
        sl += loss, sa += acc, nacc++;
        int validate = (rc->val_every > 0 && it % rc->val_every == 0) || it == rc->iterations;
        p.validated = 0;
        if (validate) {
            mela_eval_result v;
            if (evaluate(&r, &va, rc->val_episodes, T, &v))
                goto done;
            p.val_loss = v.loss, p.val_acc = v.acc, p.validated = 1;
            double score = rc->gb.regression ? -v.loss : v.acc;
            if (score > p.best_val) {
                p.best_val = score;
                if (save_checkpoint(&r, "best.safetensors", it, score))
                    goto done;
            }
            if (save_checkpoint(&r, "last.safetensors", it, score))
                goto done;
        }
        if (it % report == 0 || validate) {
            p.iteration = it;
            p.loss = sl / nacc, p.acc = sa / nacc;
            p.seconds = now() - t0;
            p.tasks_per_second = (double)it * B / p.seconds;
            p.eta = p.seconds / it * (rc->iterations - it);
            const char *keys[] = {"iteration", "seconds", "loss", "acc", "val_loss", "val_acc"};
            double vals[] = {it, p.seconds, p.loss, p.acc, p.validated ? p.val_loss : NAN,
                             p.validated ? p.val_acc : NAN};
            if (mela_metrics_write(log, 6, keys, vals))
                goto done;
            if (fn)
                fn(&p, ctx);
            if (nrep == caprep) {
                caprep = caprep ? 2 * caprep : 256;
                double *c2 = realloc(curve, (size_t)caprep * 3 * sizeof *c2);
                if (!c2) {
                    mela_set_error("out of memory");
                    goto done;
                }
                curve = c2;
            }
            curve[3 * nrep] = it;
            curve[3 * nrep + 1] = rc->gb.regression ? p.loss : p.acc;
            curve[3 * nrep + 2] = p.validated ? (rc->gb.regression ? p.val_loss : p.val_acc) : NAN;
            nrep++;
            sl = sa = 0, nacc = 0;
        }
    }
    status = 0;
    if (nrep > 0) {
        double *x = malloc(nrep * 4 * sizeof *x);
        if (x) {
            double *y1 = x + nrep, *x2 = x + 2 * nrep, *y2 = x + 3 * nrep;
            int nv = 0; /* validation points only where there was a validation */
            for (int i = 0; i < nrep; i++) {
                x[i] = curve[3 * i], y1[i] = curve[3 * i + 1];
                if (!isnan(curve[3 * i + 2]))
                    x2[nv] = curve[3 * i], y2[nv++] = curve[3 * i + 2];
            }
            mela_series ser[2] = {{rc->gb.regression ? "train query MSE" : "train query accuracy", x, y1, nrep},
                                  {rc->gb.regression ? "validation MSE" : "validation accuracy", x2, y2, nv}};
            char path[600], title[200];
            snprintf(path, sizeof path, "%s/curves.png", rc->out_dir);
            snprintf(title, sizeof title, "%s on %s", rc->learner, rc->dataset);
            if (mela_plot_png(path, title, "meta-iteration", 2, ser))
                status = -1;
            free(x);
        }
    }
done:
    free(curve);
    if (log && mela_metrics_close(log) && status == 0)
        status = -1;
    mela_adam_free(&adam);
    source_free(&tr);
    source_free(&va);
    free(grad);
    free(tasks);
    run_free(&r);
    return status;
}

/* The run configuration stored in a checkpoint's metadata. */
static int config_from_checkpoint(const mela_checkpoint *ck, const char *path, mela_run_config *rc)
{
    const char *fmt = mela_checkpoint_meta(ck, "format");
    if (!fmt || (strcmp(fmt, "mela-run-1") && strcmp(fmt, "mela-gbml-1")))
        return mela_set_error("%s: not a checkpoint of a gradient-based learner (format '%s')", path,
                              fmt ? fmt : "none");
    const char *ways = mela_checkpoint_meta(ck, "ways");
    if (mela_run_defaults(rc, mela_checkpoint_meta(ck, "learner"), mela_checkpoint_meta(ck, "dataset"),
                          ways ? atoi(ways) : 0))
        return -1;
    char buf[600];
    for (int i = 0;; i++) {
        const char *k = mela_run_option(i, rc, buf, sizeof buf, NULL);
        if (!k)
            break;
        const char *v = mela_checkpoint_meta(ck, k);
        if (v && mela_run_set(rc, k, v)) {
            char why[512];
            snprintf(why, sizeof why, "%s", mela_last_error());
            return mela_set_error("%s: metadata %s", path, why);
        }
    }
    return 0;
}

int mela_run_eval(const char *checkpoint, int nover, const char *const *overrides, int episodes,
                  int steps, mela_eval_result *res)
{
    mela_checkpoint *ck = mela_checkpoint_open(checkpoint);
    if (!ck)
        return -1;
    mela_run_config rc;
    int status = -1;
    run r = {0};
    source te = {0};
    if (config_from_checkpoint(ck, checkpoint, &rc))
        goto done;
    for (int i = 0; i < nover; i++) {
        char key[64];
        const char *eq = strchr(overrides[i], '=');
        if (!eq || eq - overrides[i] >= (long)sizeof key) {
            mela_set_error("override '%s' is not key=value", overrides[i]);
            goto done;
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq - overrides[i]), overrides[i]);
        if (mela_run_set(&rc, key, eq + 1))
            goto done;
    }
    if (steps >= 0)
        rc.gb.test_steps = steps;
    if (run_open(&r, &rc, 1, 0))
        goto done;
    if (mela_checkpoint_read(ck, run_layout(&r), r.theta))
        goto done;
    mela_set_blas_threads(1);
    if (eval_source(&te, &r, r.test, (uint64_t)rc.test_seed, rc.threads) ||
        evaluate(&r, &te, episodes > 0 ? episodes : rc.test_episodes, rc.threads, res))
        goto done;
    res->regression = rc.gb.regression;
    res->ways = test_ways(&rc);
    res->shots = test_shots(&rc);
    res->steps = rc.metric ? 0 : rc.gb.test_steps;
    status = 0;
done:
    source_free(&te);
    run_free(&r);
    mela_checkpoint_close(ck);
    return status;
}

void mela_adapt_result_free(mela_adapt_result *res)
{
    for (int i = 0; i < res->nclasses && res->classes; i++)
        free(res->classes[i]);
    free(res->classes);
    free(res->scores);
    free(res->pred);
    memset(res, 0, sizeof *res);
}

int mela_run_adapt(const char *checkpoint, const char *support_dir, int nquery,
                   const char *const *query_paths, int steps, int invert, mela_adapt_result *res)
{
    memset(res, 0, sizeof *res);
    if (nquery < 1)
        return mela_set_error("adapt: no query images");
    mela_checkpoint *ck = mela_checkpoint_open(checkpoint);
    if (!ck)
        return -1;
    mela_run_config rc;
    mela_dataset *sup = NULL;
    run r = {0};
    float *xs = NULL, *ys = NULL, *xq = NULL, *yq = NULL;
    int status = -1;
    if (config_from_checkpoint(ck, checkpoint, &rc))
        goto done;
    if (rc.gb.regression) {
        mela_set_error("%s: a regression checkpoint cannot classify images", checkpoint);
        goto done;
    }
    int S = rc.image_size;
    if (!(sup = mela_folder_load(support_dir, S, S, invert ? MELA_FOLDER_INVERT : 0)))
        goto done;
    if (sup->nclasses < 2 || (!rc.metric && sup->nclasses != rc.gb.ways)) {
        mela_set_error("adapt: %s has %d classes but the checkpoint is a %d-way model", support_dir,
                       sup->nclasses, rc.metric ? sup->nclasses < 2 ? 2 : sup->nclasses : rc.gb.ways);
        goto done;
    }
    int K = sup->classes[0].count;
    for (int c = 1; c < sup->nclasses; c++)
        if (sup->classes[c].count != K) {
            mela_set_error("adapt: class '%s' has %d images and class '%s' %d; give every class the "
                           "same number", sup->classes[c].name, sup->classes[c].count,
                           sup->classes[0].name, K);
            goto done;
        }
    rc.test_shots = K; /* the support's shots, whatever the training shots were */
    if (rc.metric) /* any number of classes */
        rc.test_ways = sup->nclasses;
    if (steps >= 0)
        rc.gb.test_steps = steps;
    if (run_open(&r, &rc, 0, nquery) || mela_checkpoint_read(ck, run_layout(&r), r.theta))
        goto done;
    size_t img = (size_t)S * S;
    int N = sup->nclasses;
    xs = malloc((size_t)N * K * img * sizeof *xs);
    ys = malloc((size_t)N * K * sizeof *ys);
    xq = malloc((size_t)nquery * img * sizeof *xq);
    yq = calloc(nquery, sizeof *yq);
    res->scores = malloc((size_t)nquery * N * sizeof *res->scores);
    res->pred = malloc(nquery * sizeof *res->pred);
    res->classes = calloc(N, sizeof *res->classes);
    if (!xs || !ys || !xq || !yq || !res->scores || !res->pred || !res->classes) {
        mela_set_error("adapt: out of memory");
        goto done;
    }
    res->nclasses = N;
    res->nquery = nquery;
    for (int c = 0; c < N; c++) {
        res->classes[c] = strdup(sup->classes[c].name);
        for (int j = 0; j < K; j++) {
            const uint8_t *p = mela_dataset_image(sup, c, j);
            for (size_t q = 0; q < img; q++)
                xs[((size_t)c * K + j) * img + q] = p[q] * (1.0f / 255.0f);
            ys[c * K + j] = (float)c;
        }
    }
    for (int i = 0; i < nquery; i++) {
        int h, w, colour;
        if (mela_image_info(query_paths[i], &h, &w, &colour) ||
            mela_image_load(query_paths[i], 1, S, S, invert ? MELA_FOLDER_INVERT : 0, xq + i * img))
            goto done;
        res->nresized += h != S || w != S;
        res->ncolour += colour;
    }
    int ib = rc.gb.test_inner_batch;
    if (!rc.metric && ib > 0 && ib < N * K) { /* minibatches of a shuffled support (Reptile) */
        float *tmp = malloc((size_t)N * K * (img + 1) * sizeof *tmp);
        if (!tmp) {
            mela_set_error("adapt: out of memory");
            goto done;
        }
        memcpy(tmp, xs, (size_t)N * K * img * sizeof *tmp);
        memcpy(tmp + (size_t)N * K * img, ys, (size_t)N * K * sizeof *tmp);
        mela_rng rr = mela_rng_derive((uint64_t)rc.test_seed, 0x61646170ULL, 0);
        shuffle_rows(xs, ys, tmp, tmp + (size_t)N * K * img, N * K, img, &rr);
        free(tmp);
    }
    res->nimages = nquery + sup->nimages;
    res->nresized += sup->nresized;
    res->ncolour += sup->ncolour;
    mela_set_blas_threads(1);
    mela_set_kernel_threads(rc.threads);
    mela_task t = {xs, ys, xq, yq};
    if (run_evaluate(&r, &t, 0, NULL, NULL, res->scores))
        goto done;
    for (int i = 0; i < nquery; i++) { /* scores -> probabilities */
        if (!strcmp(rc.learner, "siamese")) { /* mean p(same) per class, as it is */
            int best = 0;
            for (int c = 1; c < N; c++)
                if (res->scores[(size_t)i * N + c] > res->scores[(size_t)i * N + best])
                    best = c;
            res->pred[i] = best;
            continue;
        }
        float *z = res->scores + (size_t)i * N, m = z[0], sum = 0;
        int best = 0;
        for (int c = 1; c < N; c++)
            m = z[c] > m ? z[c] : m;
        for (int c = 0; c < N; c++)
            sum += z[c] = expf(z[c] - m);
        for (int c = 0; c < N; c++) {
            z[c] /= sum;
            if (z[c] > z[best])
                best = c;
        }
        res->pred[i] = best;
    }
    status = 0;
done:
    if (status)
        mela_adapt_result_free(res);
    free(xs), free(ys), free(xq), free(yq);
    mela_dataset_free(sup);
    run_free(&r);
    mela_checkpoint_close(ck);
    return status;
}

int mela_run_compare(const char *checkpoint, const char *a, const char *b, int invert, double *p_same)
{
    mela_checkpoint *ck = mela_checkpoint_open(checkpoint);
    if (!ck)
        return -1;
    mela_run_config rc;
    run r = {0};
    float *xa = NULL, *xb = NULL;
    int status = -1;
    if (config_from_checkpoint(ck, checkpoint, &rc))
        goto done;
    if (strcmp(rc.learner, "siamese")) {
        mela_set_error("%s: a %s checkpoint does not compare two images (only siamese)", checkpoint,
                       rc.learner);
        goto done;
    }
    if (run_open(&r, &rc, 0, 0) || mela_checkpoint_read(ck, run_layout(&r), r.theta))
        goto done;
    size_t img = (size_t)rc.image_size * rc.image_size;
    xa = malloc(img * sizeof *xa);
    xb = malloc(img * sizeof *xb);
    if (!xa || !xb) {
        mela_set_error("compare: out of memory");
        goto done;
    }
    unsigned flags = invert ? MELA_FOLDER_INVERT : 0;
    if (mela_image_load(a, 1, rc.image_size, rc.image_size, flags, xa) ||
        mela_image_load(b, 1, rc.image_size, rc.image_size, flags, xb) ||
        mela_metric_compare(r.mt, r.theta, xa, xb, p_same))
        goto done;
    status = 0;
done:
    free(xa), free(xb);
    run_free(&r);
    mela_checkpoint_close(ck);
    return status;
}
