/* bench_maml.c - wall time of one MAML meta-iteration (mela_learner_step:
 * meta-gradient of a meta-batch + Adam step) on the Omniglot Conv-4 (stride-2, 64 filters,
 * 28x28), with random images, for the paper's settings; median of repeats.
 * Compare with bench/torch_maml.py (the same computation in PyTorch).
 *
 *   bench_maml [--reps N] [--threads T] [--only NAME]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/sys.h"
#include "mela_learn.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct setting {
    const char *name;
    int ways, shots, queries, steps, meta_batch, first_order;
    float lr;
} setting;

int main(int argc, char **argv)
{
    int reps = 10, threads = 2;
    const char *only = NULL;
    int profile = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--profile"))
            profile = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--profile")) {
            i--;
            continue;
        }
        if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
    }
    if (reps < 1 || reps > 1000 || threads < 1 || threads > 64) {
        fprintf(stderr, "bench_maml: --reps 1..1000, --threads 1..64\n");
        return 2;
    }
    setting S[] = {
        {"maml-5w1s", 5, 1, 1, 1, 32, 0, 0.4f},
        {"fomaml-5w1s", 5, 1, 1, 1, 32, 1, 0.4f},
        {"maml-20w1s", 20, 1, 1, 5, 16, 0, 0.1f},
        {"fomaml-20w1s", 20, 1, 1, 5, 16, 1, 0.1f},
    };
    printf("threads %d, median of %d meta-iterations (after 2 warm-up)\n\n", threads, reps);
    printf("| setting | meta-batch | steps | ms / meta-iteration | tasks/s | arena MB / thread |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (size_t k = 0; k < sizeof S / sizeof S[0]; k++) {
        setting s = S[k];
        if (only && strcmp(only, s.name))
            continue;
        /* the learner as `mela train` builds it, on random images */
        mela_run_config rc;
        char buf[16];
        mela_run_defaults(&rc, s.first_order ? "fomaml" : "maml", "omniglot", s.ways);
        rc.train = (mela_task_spec){s.ways, s.shots, s.queries, 0};
        rc.steps = rc.test_steps = s.steps;
        rc.inner_lr = s.lr;
        rc.meta_batch = s.meta_batch;
        rc.iterations = reps + 2;
        snprintf(buf, sizeof buf, "%d", threads);
        mela_learner *l = mela_run_set(&rc, "threads", buf) ? NULL : mela_learner_new(&rc, 0);
        if (!l) {
            fprintf(stderr, "bench_maml: %s\n", mela_last_error());
            return 1;
        }
        size_t n = mela_layout_size(mela_learner_layout(l));
        float *theta = calloc(n, sizeof *theta);
        mela_rng r = mela_rng_new(1);
        mela_learner_init(l, theta, &r);
        int ns = s.ways * s.shots, nq = s.ways * s.queries;
        size_t per = (size_t)(ns + nq) * (784 + 1);
        float *data = malloc(per * s.meta_batch * sizeof *data);
        mela_task *tasks = calloc(s.meta_batch, sizeof *tasks);
        for (int b = 0; b < s.meta_batch; b++) {
            float *d = data + per * b;
            for (size_t i = 0; i < (size_t)(ns + nq) * 784; i++)
                d[i] = mela_rng_uniform(&r) < 0.2f ? 1.0f : 0.0f;
            float *ys = d + (size_t)(ns + nq) * 784, *yq = ys + ns;
            for (int i = 0; i < ns; i++) ys[i] = (float)(i / s.shots);
            for (int i = 0; i < nq; i++) yq[i] = (float)(i / s.queries);
            tasks[b] = (mela_task){d, ys, d + (size_t)ns * 784, yq};
        }
        double *t = malloc(reps * sizeof *t);
        if (profile)
            mela_learner_set_profiling(l, 1);
        for (int i = -2; i < reps; i++) {
            double t0 = mela_sys_now();
            if (mela_learner_step(l, theta, i + 3, s.meta_batch, tasks, NULL, NULL)) {
                fprintf(stderr, "bench_maml: %s\n", mela_last_error());
                return 1;
            }
            if (i >= 0)
                t[i] = mela_sys_now() - t0;
        }
        qsort(t, reps, sizeof *t, cmp);
        double med = t[reps / 2];
        printf("| %s | %d | %d | %.1f | %.0f | %.1f |\n", s.name, s.meta_batch, s.steps, 1e3 * med,
               s.meta_batch / med, mela_learner_arena_bytes(l) / 1e6);
        fflush(stdout);
        if (profile) {
            int no = mela_op_count();
            double *sec = calloc(no, sizeof *sec), tot = 0;
            long *calls = calloc(no, sizeof *calls);
            mela_learner_profile(l, sec, calls);
            for (int i = 0; i < no; i++)
                tot += sec[i];
            printf("\n%s: %d steps per task; time by op (all runs):\n", s.name, mela_learner_plan_steps(l));
            for (int pass = 0; pass < no; pass++) {
                int best = -1;
                for (int i = 0; i < no; i++)
                    if (sec[i] > 0 && (best < 0 || sec[i] > sec[best]))
                        best = i;
                if (best < 0)
                    break;
                printf("  %-18s %6.1f%%  %8ld calls  %8.1f us/call\n", mela_op_name(best),
                       100 * sec[best] / tot, calls[best], 1e6 * sec[best] / calls[best]);
                sec[best] = 0;
            }
            printf("\n");
            free(sec), free(calls);
        }
        free(t), free(data), free(tasks), free(theta);
        mela_learner_free(l);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("\npeak RSS %.1f MB\n", ru.ru_maxrss / 1024.0);
    return 0;
}
