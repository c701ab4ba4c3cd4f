/*
 * bench_learners.c - wall time of one training iteration (mela_learner_step:
 * gradient of a meta-batch and the outer update) of every learner at the
 * sizes of issue 11, on random data shaped as the learner's tasks say, and
 * the peak memory of the process. Public API only (mela_learn.h): the
 * learner is built as `mela train` builds it, from mela_run_defaults plus
 * the row's overrides. bench/torch_learners.py is the same rows in PyTorch;
 * bench/scripts/speed.sh runs both, one row per process, and writes the
 * report.
 *
 *   bench_learners [--only ROW] [--reps N] [--threads T] [--list]
 *
 * ROW is a row's number (1..11) or name. For each row run, one line:
 *
 *   ROW id=1 name=protonet-20w5s ms=12.34 eval_ms=3.21 rss_mb=45.6 params=113088 ...
 *
 * ms: median of N timed iterations after 2 warm-up ones; eval_ms: median of
 * N mela_learner_evaluate calls on one evaluation task (after one warm-up);
 * rss_mb: the process's peak RSS (getrusage ru_maxrss) after the row;
 * params: floats learned (the sum of the layout's view sizes). Run one row
 * per process for a peak RSS that is that row's alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mela_learn.h"

typedef struct row {
    const char *name, *learner, *dataset;
    int ways;
    const char *over[12]; /* key, value pairs applied with mela_run_set */
    const char *what;
} row;

/* The rows of issue 11, in its order (id = index + 1). */
static const row ROWS[] = {
    {"protonet-20w5s", "protonet", "omniglot", 20, {"ways", "20", "shots", "5", "queries", "15"},
     "ProtoNets 20-way 5-shot 15 queries, one episode (400 images), max-pool Conv-4"},
    {"fomaml-20w1s", "fomaml", "omniglot", 20, {0}, "first-order MAML 20-way 1-shot, 5 steps, meta-batch 16"},
    {"maml-20w1s", "maml", "omniglot", 20, {0}, "MAML 20-way 1-shot, 5 steps, meta-batch 16"},
    {"fomaml-5w1s", "fomaml", "omniglot", 5, {0}, "first-order MAML 5-way 1-shot, 1 step, meta-batch 32"},
    {"maml-5w1s", "maml", "omniglot", 5, {0}, "MAML 5-way 1-shot, 1 step, meta-batch 32"},
    {"maml-maxpool-5w1s", "maml", "omniglot", 5, {"maxpool", "1", "queries", "15"},
     "MAML max-pool Conv-4, 5-way 1-shot 15 queries, 1 step, meta-batch 32"},
    {"maml-sinusoid", "maml", "sinusoid", 0, {0}, "MAML sinusoids, K = 10, 1 step, meta-batch 25"},
    {"siamese-128", "siamese", "omniglot", 20, {"pairs", "128", "augment", "0"},
     "Siamese, 128 pairs, no distortions"},
    {"matchnet-20w1s", "matchnet", "omniglot", 20, {0}, "Matching Networks 20-way 1-shot, 5 queries"},
    {"reptile-5w", "reptile", "omniglot", 5, {0},
     "Reptile 5-way 10-shot, 5 inner Adam steps of 10 rows, meta-batch 5"},
    {"mamlpp-5w", "mamlpp", "omniglot", 5, {0},
     "MAML++ 5-way 1-shot, 5 steps, every switch, exact phase, meta-batch 16"},
};
#define NROWS (int)(sizeof ROWS / sizeof ROWS[0])

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "bench_learners: out of memory\n");
        exit(1);
    }
    return p;
}

/* Tasks as o says, on random data: images with about 20% ones, labels as
 * episodes lay them out (support class by class, shuffled when the learner
 * asks for it), pairs half same and half different, sinusoids drawn as
 * training draws them. One buffer per task, kept in bufs. */
static void make_task(const mela_tasks_opts *o, int img, mela_rng *r, uint64_t i, mela_task *t,
                      float **buf)
{
    if (o->kind == MELA_TASKS_SINUSOID) {
        int K = o->spec.shots, Q = o->spec.queries;
        float *d = *buf = xcalloc(2 * (size_t)(K + Q), sizeof *d);
        mela_sinusoid_task(1, i, K, Q, d, d + K, d + 2 * K, d + 2 * K + Q, NULL, NULL);
        *t = (mela_task){d, d + K, d + 2 * K, d + 2 * K + Q};
        return;
    }
    int ns, nq;
    if (o->kind == MELA_TASKS_PAIRS) {
        ns = nq = o->pairs;
    } else {
        ns = o->spec.ways * o->spec.shots;
        nq = o->spec.query_rows > 0 ? o->spec.query_rows : o->spec.ways * o->spec.queries;
    }
    size_t n = (size_t)(ns + nq) * img + ns + nq + 2 * ((size_t)ns * img + ns);
    float *d = *buf = xcalloc(n, sizeof *d);
    float *xs = d, *xq = xs + (size_t)ns * img, *ys = xq + (size_t)nq * img, *yq = ys + ns;
    for (size_t k = 0; k < (size_t)(ns + nq) * img; k++)
        d[k] = mela_rng_uniform(r) < 0.2f ? 1.0f : 0.0f;
    if (o->kind == MELA_TASKS_PAIRS) {
        for (int k = 0; k < ns; k++)
            ys[k] = (float)(k % 2); /* odd rows: the same class */
        yq[0] = 0;
    } else {
        for (int k = 0; k < ns; k++)
            ys[k] = (float)(k / o->spec.shots);
        int q = o->spec.queries > 0 ? o->spec.queries : 1;
        for (int k = 0; k < nq; k++)
            yq[k] = (float)((k / q) % o->spec.ways);
        if (o->shuffle_support) {
            float *sx = yq + nq, *sy = sx + (size_t)ns * img;
            memcpy(sx, xs, (size_t)ns * img * sizeof *d);
            memcpy(sy, ys, (size_t)ns * sizeof *d);
            mela_shuffle_rows(xs, ys, sx, sy, ns, (size_t)img, r);
        }
    }
    *t = (mela_task){xs, ys, xq, yq};
}

static int run_row(int id, int reps, int threads)
{
    const row *w = &ROWS[id - 1];
    mela_run_config rc;
    char buf[32];
    snprintf(buf, sizeof buf, "%d", threads);
    if (mela_run_defaults(&rc, w->learner, w->dataset, w->ways) || mela_run_set(&rc, "threads", buf))
        goto fail;
    for (int k = 0; w->over[k]; k += 2)
        if (mela_run_set(&rc, w->over[k], w->over[k + 1]))
            goto fail;
    mela_learner *l = mela_learner_new(&rc, 0);
    if (!l)
        goto fail;
    const mela_layout *L = mela_learner_layout(l);
    size_t params = 0;
    for (int v = 0; v < mela_layout_count(L); v++)
        params += mela_shape_numel(mela_layout_shape(L, v));
    float *theta = xcalloc(mela_layout_size(L), sizeof *theta);
    mela_rng r = mela_rng_new(1);
    mela_learner_init(l, theta, &r);

    mela_tasks_opts to, eo;
    mela_learner_tasks(l, 1, &to);
    mela_learner_tasks(l, 0, &eo);
    int img = rc.image_size * rc.image_size, nb = rc.meta_batch;
    mela_task *tasks = xcalloc(nb, sizeof *tasks), et;
    float **bufs = xcalloc(nb + 1, sizeof *bufs);
    for (int b = 0; b < nb; b++)
        make_task(&to, img, &r, (uint64_t)b, &tasks[b], &bufs[b]);
    make_task(&eo, img, &r, (uint64_t)nb, &et, &bufs[nb]);

    /* MAML++: the exact phase, after derivative-order annealing (and after
     * the step weights have annealed); every other learner from iteration 1 */
    int it0 = mela_run_da_until(&rc) + 1;
    if (it0 < 1)
        it0 = 1;
    double *t = xcalloc(reps, sizeof *t), loss = 0;
    for (int i = -2; i < reps; i++) {
        double t0 = now();
        if (mela_learner_step(l, theta, it0 + 2 + i, nb, tasks, &loss, NULL))
            goto fail_l;
        if (i >= 0)
            t[i] = now() - t0;
    }
    double ms = 1e3 * median(t, reps);
    if (mela_learner_reserve(l, 1, threads))
        goto fail_l;
    double eloss = 0;
    for (int i = -1; i < reps; i++) {
        double t0 = now();
        if (mela_learner_evaluate(l, theta, &et, 0, &eloss, NULL, NULL))
            goto fail_l;
        if (i >= 0)
            t[i] = now() - t0;
    }
    double eval_ms = 1e3 * median(t, reps);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("ROW id=%d name=%s ms=%.4f eval_ms=%.4f rss_mb=%.1f params=%zu tasks=%d threads=%d "
           "reps=%d loss=%.4g\n",
           id, w->name, ms, eval_ms, ru.ru_maxrss / 1024.0, params, nb, threads, reps, loss);
    fflush(stdout);
    for (int b = 0; b <= nb; b++)
        free(bufs[b]);
    free(bufs), free(tasks), free(theta), free(t);
    mela_learner_free(l);
    return 0;
fail_l:
    mela_learner_free(l);
fail:
    fprintf(stderr, "bench_learners: row %d (%s): %s\n", id, w->name, mela_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    int reps = 3, threads = 2, only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list")) {
            for (int k = 0; k < NROWS; k++)
                printf("%d %s %s\n", k + 1, ROWS[k].name, ROWS[k].what);
            return 0;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            const char *s = argv[++i];
            for (int k = 0; k < NROWS; k++)
                if (!strcmp(s, ROWS[k].name))
                    only = k + 1;
            if (!only && (only = atoi(s)) < 1) {
                fprintf(stderr, "bench_learners: no row '%s' (--list)\n", s);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_learners [--only ROW] [--reps N] [--threads T] [--list]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 1000 || threads < 1 || threads > 64 || only > NROWS) {
        fprintf(stderr, "bench_learners: --reps 1..1000, --threads 1..64, --only 1..%d\n", NROWS);
        return 2;
    }
    for (int k = 1; k <= NROWS; k++)
        if ((!only || k == only) && run_row(k, reps, threads))
            return 1;
    return 0;
}
