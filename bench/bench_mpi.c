/* bench_mpi.c - MAML meta-iterations (mela_learner_step) spread over MPI
 * processes: updates per second, payload bytes sent and seconds in MPI per
 * update (mela_dist_counters), on the Omniglot Conv-4 (28x28) with random
 * images, the paper's 5-way 1-shot meta-batch of 32. Run it alone and under
 * mpirun -np P (bench/results/mpi.md).
 *
 * --learner protonet|matchnet|siamese: that learner with its defaults (one
 * episode per update: its images spread over the processes in blocks of 8).
 *
 * --whole: a metric learner's episode through the whole episode's graph, not
 * in blocks (on one process: what the blocks cost).
 *
 * --comm: the collectives of an update alone (tp_grad's agreement, the
 * ordered fold of the gradients and its broadcast, the gathered losses), on
 * the same sizes with no computation: what communication costs when no rank
 * waits for a slower one.
 *
 *   [mpirun -np P] bench_mpi [--reps N] [--threads T] [--ways N] [--batch B] [--learner L] [--whole] [--comm]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sys.h"
#include "learn/dist.h"
#include "learn/learner.h"
#include "learn/taskpool.h"
#include "mela_learn.h"

int main(int argc, char **argv)
{
    if (mela_dist_init(&argc, &argv)) {
        fprintf(stderr, "bench_mpi: %s\n", mela_last_error());
        return 1;
    }
    int reps = 10, threads = 1, ways = 5, B = 0, comm = 0, whole = 0, k = 1;
    const char *learner = "maml";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--comm"))
            comm = 1;
        else if (!strcmp(argv[i], "--whole"))
            whole = 1;
        else
            argv[k++] = argv[i];
    argc = k;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ways")) ways = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--learner")) learner = argv[i + 1];
    }
    int P = mela_dist_size(), me = mela_dist_rank();
    mela_run_config rc;
    char buf[16];
    mela_run_defaults(&rc, learner, "omniglot", ways);
    if (B < 1)
        B = strcmp(learner, "maml") ? rc.meta_batch : 32;
    rc.meta_batch = B;
    rc.iterations = reps + 2;
    snprintf(buf, sizeof buf, "%d", threads);
    mela_learner *l = mela_run_set(&rc, "threads", buf) ? NULL : mela_learner_new(&rc, 0);
    if (!l) {
        fprintf(stderr, "bench_mpi: %s\n", mela_last_error());
        mela_dist_abort(1);
        return 1;
    }
    if (whole && l->def->info.adapts) {
        fprintf(stderr, "bench_mpi: --whole is for the metric learners\n");
        mela_dist_abort(1);
        return 1;
    }
    if (whole)
        mela_metric_blocked_(l->impl, 1, 0);
    size_t n = mela_layout_size(mela_learner_layout(l));
    float *theta = calloc(n, sizeof *theta);
    mela_rng r = mela_rng_new(1);
    mela_learner_init(l, theta, &r);
    int siamese = !strcmp(learner, "siamese");
    int ns = siamese ? rc.pairs : rc.train.ways * rc.train.shots;
    int nq = siamese ? rc.pairs : rc.train.ways * rc.train.queries;
    char label[96];
    if (!strcmp(learner, "maml"))
        snprintf(label, sizeof label, "MAML %d-way %d-shot", rc.train.ways, rc.train.shots);
    else if (siamese)
        snprintf(label, sizeof label, "siamese, %d pairs (%d images)%s", rc.pairs, ns + nq,
                 whole ? ", whole episode" : "");
    else
        snprintf(label, sizeof label, "%s %d-way %d-shot, %d images%s", learner, rc.train.ways, rc.train.shots,
                 ns + nq, whole ? ", whole episode" : "");
    size_t per = (size_t)(ns + nq) * (784 + 1);
    float *data = malloc(per * B * sizeof *data);
    mela_task *tasks = calloc(B, sizeof *tasks);
    for (int b = 0; b < B; b++) {
        float *d = data + per * b;
        for (size_t i = 0; i < (size_t)(ns + nq) * 784; i++)
            d[i] = mela_rng_uniform(&r) < 0.2f ? 1.0f : 0.0f;
        float *ys = d + (size_t)(ns + nq) * 784, *yq = ys + ns;
        for (int i = 0; i < ns; i++) ys[i] = (float)(siamese ? i % 2 : i / rc.train.shots);
        for (int i = 0; i < nq; i++) yq[i] = (float)(siamese ? 0 : i / rc.train.queries);
        tasks[b] = (mela_task){d, ys, d + (size_t)ns * 784, yq};
    }
    double t0 = 0, b0 = 0, s0 = 0;
    int lo, hi;
    dist_share(B, &lo, &hi);
    float *grad = calloc(n, sizeof *grad), *parts = calloc((size_t)(hi - lo) * n, sizeof *parts);
    double *pairs = calloc(2 * (size_t)B, sizeof *pairs);
    for (int i = -2; i < reps; i++) {
        if (i == 0) {
            dist_min_ints(&(int){0}, 1); /* start together */
            dist_counters(&b0, &s0);
            t0 = mela_sys_now();
        }
        if (comm) {
            dist_agree(0);
            dist_fold(grad, parts, B, n, 1.0f / (float)B);
            dist_gather_items(pairs, B, 2);
        } else if (mela_learner_step(l, theta, i + 3, B, tasks, NULL, NULL)) {
            fprintf(stderr, "bench_mpi: %s\n", mela_last_error());
            return 1;
        }
    }
    double wall = mela_sys_now() - t0, b1, s1;
    dist_counters(&b1, &s1);
    /* per rank: bytes and MPI seconds per update */
    double *v = calloc(2 * (size_t)P, sizeof *v);
    v[2 * me] = (b1 - b0) / reps, v[2 * me + 1] = (s1 - s0) / reps;
    dist_gather_items(v, P, 2);
    if (me == 0) {
        double bytes = 0, smax = 0, smean = 0;
        for (int q = 0; q < P; q++) {
            bytes += v[2 * q];
            smean += v[2 * q + 1] / P;
            smax = v[2 * q + 1] > smax ? v[2 * q + 1] : smax;
        }
        printf("| %s | %d | %d | %d | %.2f | %.0f | %.2f | %.0f | %.1f | %.1f |\n", comm ? "collectives only" : label, P, threads, B, reps / wall,
               B * reps / wall, n * 4 / 1e6, bytes / 1e3, 1e3 * smean, 1e3 * smax);
    }
    free(grad), free(parts), free(pairs);
    free(v), free(data), free(tasks), free(theta);
    mela_learner_free(l);
    mela_dist_finalize();
    return 0;
}
