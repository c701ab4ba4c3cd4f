/* dist_train.c - the program tests/mpi.sh runs alone and under mpirun -np 2
 * and -np 3: seeded short trainings of exact (second-order) MAML, Reptile
 * and ProtoNets on the synthetic classes (meta-batches that 2 and 3 do not
 * divide), and ProtoNets, Matching and Siamese networks on one episode per
 * iteration (its images spread over the processes in blocks), writing a hash of theta after every update and the test
 * results to OUT (rank 0). The files must be the same bytes for any number
 * of processes. Usage: dist_train OUT */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "synthetic.h"

typedef struct trace {
    FILE *f;
    mela_run *r;
    const char *name;
    int updates;
} trace;

static uint64_t fnv(const float *x, size_t n)
{
    const unsigned char *b = (const unsigned char *)x;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n * sizeof *x; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Called after every update (report 1) on rank 0. */
static void after_update(const mela_progress *p, void *ctx)
{
    trace *t = ctx;
    size_t n = mela_layout_size(mela_learner_layout(mela_run_learner(t->r)));
    fprintf(t->f, "%s %d theta %016llx loss %.17g\n", t->name, p->iteration,
            (unsigned long long)fnv(mela_run_theta(t->r), n), p->loss);
    t->updates++;
}

static int train(FILE *f, synth_data *d, const char *learner, int meta_batch)
{
    mela_run_config rc;
    synth_config(&rc, learner, 6);
    rc.meta_batch = meta_batch;
    rc.first_order = 0; /* MAML exact, second order */
    rc.val_every = 3; /* validation (spread too) decides best */
    rc.val_episodes = 7;
    if (!strcmp(learner, "protonet"))
        rc.train = (mela_task_spec){5, 1, 3, 0}; /* 20 images: blocks of 8, 8 and 4 */
    if (!strcmp(learner, "siamese"))
        rc.pairs = 14; /* 28 images: 4 blocks */
    if (!strcmp(learner, "reptile"))
        rc.train.shots = 2, rc.inner_batch = 5, rc.test_steps = 3;
    mela_run_data data = {d->ds, &d->train, &d->test, &d->test};
    char name[64];
    snprintf(name, sizeof name, "%s/B%d", learner, meta_batch);
    mela_run *r = mela_run_open(&rc, &data);
    trace t = {f, r, name, 0};
    mela_eval_result res;
    int status = r && !mela_run_fit(r, 1, f ? after_update : NULL, &t) && !mela_run_test(r, 9, &res) ? 0 : -1;
    if (!status && f)
        fprintf(f, "%s test acc %.17g +- %.17g loss %.17g (%d episodes, %d updates seen)\n", name,
                res.acc, res.acc_ci, res.loss, res.episodes, t.updates);
    if (status)
        fprintf(stderr, "dist_train: %s: %s\n", name, mela_last_error());
    mela_run_close(r);
    return status;
}

int main(int argc, char **argv)
{
    if (mela_dist_init(&argc, &argv) || argc != 2) {
        fprintf(stderr, "usage: dist_train OUT (%s)\n", mela_last_error());
        return 2;
    }
    (void)synth_train;
    int rank = mela_dist_rank();
    FILE *f = rank == 0 ? fopen(argv[1], "w") : NULL;
    if (rank == 0 && !f) {
        perror(argv[1]);
        mela_dist_abort(1);
        return 1;
    }
    synth_data d;
    synth_open(&d, 7);
    int status = train(f, &d, "maml", 5) || train(f, &d, "reptile", 5) || train(f, &d, "protonet", 4) ||
                 train(f, &d, "protonet", 1) || train(f, &d, "matchnet", 1) || train(f, &d, "siamese", 1);
    synth_close(&d);
    if (f)
        fclose(f);
    if (rank == 0)
        printf("dist_train: %d process%s, %s\n", mela_dist_size(), mela_dist_size() > 1 ? "es" : "",
               status ? "failed" : "done");
    mela_dist_finalize();
    return status ? 1 : 0;
}
