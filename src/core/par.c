/* par.c - an op's work split over its executor's threads (see par.h). */
#include "core/par.h"
#include "kernels/kernels.h"

typedef struct par_job {
    void (*fn)(void *ctx, size_t lo, size_t hi);
    void *ctx;
    size_t lo, hi;
} par_job;

static void *par_main(void *arg)
{
    par_job *j = arg;
    if (j->hi > j->lo)
        j->fn(j->ctx, j->lo, j->hi);
    return NULL;
}

void par_range(int threads, size_t n, size_t work, void (*fn)(void *ctx, size_t lo, size_t hi), void *ctx)
{
    if (threads > MK_MAX_THREADS)
        threads = MK_MAX_THREADS;
    if (threads <= 1 || n < 2 || work < MK_PAR_MIN_ELEMENTS) {
        fn(ctx, 0, n);
        return;
    }
    if ((size_t)threads > n)
        threads = (int)n;
    par_job jobs[MK_MAX_THREADS];
    for (int k = 0; k < threads; k++)
        jobs[k] = (par_job){fn, ctx, n * k / threads, n * (k + 1) / threads};
    mk_parallel(threads, par_main, jobs, sizeof *jobs);
}
