/*
 * dist_mpi.c - dist.h over MPI (Open MPI from Debian): MPI_COMM_WORLD of a
 * job started by mpirun or srun. A process started alone does not start
 * MPI at all (it is one process, as without MPI). Only the thread that
 * called mela_dist_init talks to MPI (MPI_THREAD_FUNNELED); MPI's own errors
 * end the job (MPI_ERRORS_ARE_FATAL), so a broken link never hangs a run.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "learn/dist.h"
#include "mela_learn.h"

static int rank_, size_ = 1, started; /* started: this library called MPI_Init */
static int local_;                    /* dist_local: one process for a while */
static double sent, spent;
static int *counts, *displs; /* dist_gather_items' (size_ each) */

int dist_rank(void) { return local_ ? 0 : rank_; }
int dist_size(void) { return local_ ? 1 : size_; }
int dist_job_rank(void) { return rank_; }

int dist_local(int on)
{
    int was = local_;
    local_ = on;
    return was;
}

void dist_counters(double *bytes, double *seconds)
{
    *bytes = sent;
    *seconds = spent;
}

void dist_min_ints(int *v, int n)
{
    if (dist_size() == 1)
        return;
    double t0 = MPI_Wtime();
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    sent += (double)n * sizeof *v;
    spent += MPI_Wtime() - t0;
}

/* MPI counts are ints: large buffers go in pieces. */
#define PIECE ((size_t)1 << 30)

void dist_bcast(void *buf, size_t bytes, int root)
{
    if (dist_size() == 1)
        return;
    double t0 = MPI_Wtime();
    for (size_t o = 0; o < bytes; o += PIECE)
        MPI_Bcast((char *)buf + o, (int)(bytes - o < PIECE ? bytes - o : PIECE), MPI_BYTE, root,
                  MPI_COMM_WORLD);
    if (rank_ == root)
        sent += (double)bytes;
    spent += MPI_Wtime() - t0;
}

void dist_send(const float *buf, size_t count, int to)
{
    double t0 = MPI_Wtime();
    for (size_t o = 0; o < count; o += PIECE / sizeof *buf) {
        size_t m = count - o < PIECE / sizeof *buf ? count - o : PIECE / sizeof *buf;
        MPI_Send(buf + o, (int)m, MPI_FLOAT, to, 0, MPI_COMM_WORLD);
    }
    sent += (double)count * sizeof *buf;
    spent += MPI_Wtime() - t0;
}

void dist_recv(float *buf, size_t count, int from)
{
    double t0 = MPI_Wtime();
    for (size_t o = 0; o < count; o += PIECE / sizeof *buf) {
        size_t m = count - o < PIECE / sizeof *buf ? count - o : PIECE / sizeof *buf;
        MPI_Recv(buf + o, (int)m, MPI_FLOAT, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    spent += MPI_Wtime() - t0;
}

/* v: n items of k values of type t (size bytes each), this process's share
 * filled; afterwards every item on every process (copies, no arithmetic). */
static void gather(void *v, int n, int k, MPI_Datatype t, size_t size)
{
    if (dist_size() == 1)
        return;
    int lo, hi, q = n / size_, extra = n % size_;
    for (int r = 0; r < size_; r++) {
        int l = r * q + (r < extra ? r : extra);
        counts[r] = (q + (r < extra)) * k;
        displs[r] = l * k;
    }
    dist_share(n, &lo, &hi);
    double t0 = MPI_Wtime();
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, counts, displs, t, MPI_COMM_WORLD);
    sent += (double)(hi - lo) * k * size;
    spent += MPI_Wtime() - t0;
}

void dist_gather_items(double *v, int n, int k) { gather(v, n, k, MPI_DOUBLE, sizeof *v); }
void dist_gather_floats(float *v, int n, int k) { gather(v, n, k, MPI_FLOAT, sizeof *v); }

/* Started by a launcher (mpirun, srun): it leaves these behind. */
static int launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

int mela_dist_init(int *argc, char ***argv)
{
    int on = 0;
    MPI_Initialized(&on);
    if (!on) {
        if (!launched())
            return 0;
        int got;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &got) != MPI_SUCCESS)
            return mela_set_error("MPI: MPI_Init_thread failed");
        started = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    free(counts);
    if (!(counts = malloc(2 * (size_t)size_ * sizeof *counts))) {
        size_ = 1, rank_ = 0;
        return mela_set_error("MPI: out of memory");
    }
    displs = counts + size_;
    return 0;
}

void mela_dist_finalize(void)
{
    int on = 0, off = 0;
    MPI_Initialized(&on);
    MPI_Finalized(&off);
    if (started && on && !off)
        MPI_Finalize();
    rank_ = 0, size_ = 1, started = 0;
    free(counts);
    counts = displs = NULL;
}

void mela_dist_abort(int code)
{
    int on = 0, off = 0;
    MPI_Initialized(&on);
    MPI_Finalized(&off);
    if (size_ > 1 && on && !off)
        MPI_Abort(MPI_COMM_WORLD, code);
}

const char *mela_dist_backend(void)
{
    static char name[160];
    if (!name[0]) {
        char lib[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0, v, sv;
        MPI_Get_library_version(lib, &len);
        MPI_Get_version(&v, &sv);
        int n = 0;
        while (n < len && lib[n] && lib[n] != ',' && lib[n] != '\n')
            n++;
        snprintf(name, sizeof name, "MPI %d.%d (%.*s)", v, sv, n, lib);
    }
    return name;
}
