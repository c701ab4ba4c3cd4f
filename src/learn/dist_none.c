/*
 * dist_none.c - dist.h without MPI: one process, every collective a no-op
 * (the build when libopenmpi-dev is missing or MELA_MPI is off).
 */
#include <stddef.h>
#include <stdlib.h>

#include "learn/dist.h"
#include "mela_learn.h"

int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
int dist_job_rank(void) { return 0; }
int dist_local(int on) { (void)on; return 0; }
void dist_min_ints(int *v, int n) { (void)v, (void)n; }
void dist_bcast(void *buf, size_t bytes, int root) { (void)buf, (void)bytes, (void)root; }
/* never called with one process (there is no other rank to talk to) */
void dist_send(const float *buf, size_t count, int to) { (void)buf, (void)count, (void)to; }
void dist_recv(float *buf, size_t count, int from) { (void)buf, (void)count, (void)from; }
void dist_gather_items(double *v, int n, int k) { (void)v, (void)n, (void)k; }
void dist_gather_floats(float *v, int n, int k) { (void)v, (void)n, (void)k; }

void dist_counters(double *bytes, double *seconds)
{
    *bytes = 0;
    *seconds = 0;
}

/* Started as one of several processes (mpirun, srun) by a build that cannot
 * join them: every process would run the whole job alone, each writing the
 * same files. Refused. */
int mela_dist_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1)
            return mela_set_error("started as one of %s processes (%s), but this mela is built "
                                  "without MPI: rebuild with libopenmpi-dev installed, or run one "
                                  "process", v, vars[i]);
    }
    return 0;
}

void mela_dist_finalize(void) {}
void mela_dist_abort(int code) { (void)code; }
const char *mela_dist_backend(void) { return "none (built without MPI)"; }
