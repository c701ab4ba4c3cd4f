/*
 * train.c - meta-training and evaluation runs: tasks from Omniglot episodes
 * or sinusoids, the meta-training loop (Adam on the averaged meta-gradient,
 * validation, best and last checkpoints, metrics), and evaluation of a
 * checkpoint on the fixed test episodes.
 */
#include <math.h>
#include <pthread.h>
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

/* Tasks of one kind (train, val or test): episodes of a split, or
 * sinusoids. Each slot has its own sampler or buffers, so slots can be
 * filled and used on different threads. */
typedef struct source {
    int regression;
    const mela_dataset *ds;
    const mela_split *sp;
    int N, K, Q;
    uint64_t seed;
    int nslots;
    mela_sampler **samp;
    float *buf; /* regression: nslots * (2K + 2Q) */
} source;

static void source_free(source *s)
{
    for (int i = 0; i < s->nslots && s->samp; i++)
        mela_sampler_free(s->samp[i]);
    free(s->samp);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

static int source_init(source *s, const mela_run_config *rc, const mela_dataset *ds,
                       const mela_split *sp, int Q, uint64_t seed, int nslots)
{
    memset(s, 0, sizeof *s);
    s->regression = rc->gb.regression;
    s->ds = ds;
    s->sp = sp;
    s->N = rc->gb.ways;
    s->K = rc->gb.shots;
    s->Q = Q;
    s->seed = seed;
    s->nslots = nslots;
    if (s->regression) {
        s->buf = malloc((size_t)nslots * 2 * (s->K + s->Q) * sizeof *s->buf);
        return s->buf ? 0 : mela_set_error("out of memory");
    }
    s->samp = calloc(nslots, sizeof *s->samp);
    if (!s->samp)
        return mela_set_error("out of memory");
    for (int i = 0; i < nslots; i++)
        if (!(s->samp[i] = mela_sampler_new(ds, sp, s->N, s->K, Q, 0))) {
            source_free(s);
            return -1;
        }
    return 0;
}

/* Task i of the source into slot `slot`. */
static void source_task(source *s, int slot, uint64_t i, mela_task *t)
{
    if (s->regression) {
        float *b = s->buf + (size_t)slot * 2 * (s->K + s->Q);
        t->xs = b, t->ys = b + s->K, t->xq = b + 2 * s->K, t->yq = b + 2 * s->K + s->Q;
        mela_sinusoid_task(s->seed, i, s->K, s->Q, b, b + s->K, b + 2 * s->K, b + 2 * s->K + s->Q,
                           NULL, NULL);
        return;
    }
    const mela_episode *e = mela_sampler_episode(s->samp[slot], s->seed, i);
    t->xs = e->x_support, t->ys = e->y_support, t->xq = e->x_query, t->yq = e->y_query;
}

/* --------------------------------------------------------------- the run */

typedef struct run {
    mela_run_config rc;
    mela_dataset *ds;
    mela_split *train, *val, *test;
    mela_model *model;
    mela_gbml *gb;
    float *theta;
} run;

static void run_free(run *r)
{
    mela_gbml_free(r->gb);
    mela_model_free(r->model);
    mela_split_free(r->train);
    mela_split_free(r->val);
    mela_split_free(r->test);
    mela_dataset_free(r->ds);
    free(r->theta);
    memset(r, 0, sizeof *r);
}

/* Builds model and learner (and loads data when `data`). */
static int run_open(run *r, const mela_run_config *rc, int data)
{
    memset(r, 0, sizeof *r);
    r->rc = *rc;
    if (mela_run_check(rc))
        return -1;
    if (!strcmp(rc->model, "mlp")) {
        int hidden[2] = {40, 40};
        r->model = mela_mlp_new(1, hidden, 2, 1);
    } else {
        r->model = mela_conv4_new(1, rc->image_size, rc->width, rc->depth, rc->gb.ways, rc->maxpool);
    }
    mela_gbml_config gc = rc->gb;
    gc.test_queries = rc->test_queries;
    if (!r->model || !(r->gb = mela_gbml_new(r->model, &gc)))
        goto fail;
    r->theta = calloc(mela_layout_size(mela_gbml_layout(r->gb)), sizeof *r->theta);
    if (!r->theta) {
        mela_set_error("out of memory");
        goto fail;
    }
    if (data && !rc->gb.regression) {
        mela_omniglot_opts o = {.H = rc->image_size, .W = rc->image_size,
                                .cache_dir = rc->cache_dir[0] ? rc->cache_dir : NULL};
        if (!(r->ds = mela_omniglot_load(rc->data_dir, &o)) ||
            !(r->train = mela_split_vinyals(r->ds, rc->data_dir, "train")) ||
            !(r->val = mela_split_vinyals(r->ds, rc->data_dir, "val")) ||
            !(r->test = mela_split_vinyals(r->ds, rc->data_dir, "test")))
            goto fail;
    }
    return 0;
fail:
    run_free(r);
    return -1;
}

typedef struct eval_job {
    mela_gbml *gb;
    const float *theta;
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
        if (mela_gbml_evaluate(j->gb, j->theta, &t, j->slot, &j->loss[i], &j->acc[i], NULL)) {
            j->rc = -1;
            snprintf(j->error, sizeof j->error, "%s", mela_last_error());
            return NULL;
        }
    }
    return NULL;
}

/* Evaluates n tasks of src (slots 0..threads) on threads; per-task results
 * are kept by index, so the mean does not depend on the thread count. */
static int evaluate(mela_gbml *gb, const float *theta, source *src, int n, int threads,
                    mela_eval_result *res)
{
    if (threads > src->nslots)
        threads = src->nslots;
    if (threads > n)
        threads = n;
    if (mela_gbml_reserve(gb, threads))
        return -1;
    double *acc = calloc(2 * (size_t)n, sizeof *acc);
    eval_job *jobs = calloc(threads, sizeof *jobs);
    pthread_t *tid = calloc(threads, sizeof *tid);
    char *started = calloc(threads, 1);
    int rc = 0;
    if (!acc || !jobs || !tid || !started) {
        rc = mela_set_error("out of memory");
        goto done;
    }
    for (int k = 0; k < threads; k++)
        jobs[k] = (eval_job){gb, theta, src, n, k, threads, 0, acc, acc + n, ""};
    for (int k = 1; k < threads; k++)
        started[k] = pthread_create(&tid[k], NULL, eval_worker, &jobs[k]) == 0;
    eval_worker(&jobs[0]);
    for (int k = 1; k < threads; k++) {
        if (started[k])
            pthread_join(tid[k], NULL);
        else
            eval_worker(&jobs[k]);
    }
    for (int k = 0; k < threads && !rc; k++)
        if (jobs[k].rc)
            rc = mela_set_error("evaluation: %s", jobs[k].error);
    if (!rc) {
        res->episodes = n;
        mela_mean_ci(acc, n, &res->acc, &res->acc_ci);
        mela_mean_ci(acc + n, n, &res->loss, &res->loss_ci);
    }
done:
    free(acc), free(jobs), free(tid), free(started);
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
    keys[n] = "format", snprintf(vals[n], sizeof vals[n], "mela-gbml-1"), vp[n] = vals[n], n++;
    keys[n] = "mela_version", snprintf(vals[n], sizeof vals[n], "%s", mela_version()), vp[n] = vals[n], n++;
    keys[n] = "iteration", snprintf(vals[n], sizeof vals[n], "%d", iteration), vp[n] = vals[n], n++;
    keys[n] = "validation", snprintf(vals[n], sizeof vals[n], "%.9g", val), vp[n] = vals[n], n++;
    snprintf(path, sizeof path, "%s/%s", r->rc.out_dir, name);
    return mela_checkpoint_save(path, mela_gbml_layout(r->gb), r->theta, n, keys, vp);
}

int mela_run_train(const mela_run_config *rcfg, int report, mela_progress_fn fn, void *ctx)
{
    run r;
    if (run_open(&r, rcfg, 1))
        return -1;
    const mela_run_config *rc = &r.rc;
    mela_set_blas_threads(1);
    const mela_layout *L = mela_gbml_layout(r.gb);
    size_t size = mela_layout_size(L);
    int B = rc->meta_batch, T = rc->threads;
    source tr = {0}, va = {0};
    mela_metrics *log = NULL;
    mela_adam adam = {0};
    float *grad = calloc(size, sizeof *grad);
    mela_task *tasks = calloc(B, sizeof *tasks);
    int status = -1;
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
    if (source_init(&tr, rc, r.ds, r.train, rc->gb.queries, (uint64_t)rc->seed, B > T ? B : T) ||
        source_init(&va, rc, r.ds, r.val, rc->test_queries, vseed, T) ||
        mela_adam_init(&adam, size, rc->outer_lr) || !(log = mela_metrics_open(rc->out_dir, "metrics")))
        goto done;
    mela_rng init = mela_rng_derive((uint64_t)rc->seed, 0x696e6974ULL, 0);
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
        if (mela_gbml_meta_grad(r.gb, r.theta, B, tasks, T, grad, &loss, &acc))
            goto done;
        if (!isfinite(loss)) {
            mela_set_error("iteration %d: the meta-loss is %g; lower inner_lr or outer_lr", it, loss);
            goto done;
        }
        mela_adam_step(&adam, r.theta, grad);
        sl += loss, sa += acc, nacc++;
        int validate = (rc->val_every > 0 && it % rc->val_every == 0) || it == rc->iterations;
        p.validated = 0;
        if (validate) {
            mela_eval_result v;
            if (evaluate(r.gb, r.theta, &va, rc->val_episodes, T, &v))
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
    if (!fmt || strcmp(fmt, "mela-gbml-1"))
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
    if (run_open(&r, &rc, 1))
        goto done;
    if (mela_checkpoint_read(ck, mela_gbml_layout(r.gb), r.theta))
        goto done;
    mela_set_blas_threads(1);
    if (source_init(&te, &rc, r.ds, r.test, rc.test_queries, (uint64_t)rc.test_seed, rc.threads) ||
        evaluate(r.gb, r.theta, &te, episodes > 0 ? episodes : rc.test_episodes, rc.threads, res))
        goto done;
    res->regression = rc.gb.regression;
    res->ways = rc.gb.ways;
    res->shots = rc.gb.shots;
    res->steps = rc.gb.test_steps;
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
    if (sup->nclasses != rc.gb.ways) {
        mela_set_error("adapt: %s has %d classes but the checkpoint is a %d-way model", support_dir,
                       sup->nclasses, rc.gb.ways);
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
    rc.gb.shots = K;
    rc.gb.query_total = nquery;
    if (steps >= 0)
        rc.gb.test_steps = steps;
    if (run_open(&r, &rc, 0) || mela_checkpoint_read(ck, mela_gbml_layout(r.gb), r.theta))
        goto done;
    size_t img = (size_t)S * S;
    int N = rc.gb.ways;
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
    for (int i = 0; i < nquery; i++)
        if (mela_image_load(query_paths[i], 1, S, S, invert ? MELA_FOLDER_INVERT : 0, xq + i * img))
            goto done;
    mela_set_blas_threads(1);
    mela_task t = {xs, ys, xq, yq};
    if (mela_gbml_evaluate(r.gb, r.theta, &t, 0, NULL, NULL, res->scores))
        goto done;
    for (int i = 0; i < nquery; i++) { /* logits -> probabilities */
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
