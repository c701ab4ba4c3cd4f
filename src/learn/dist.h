/*
 * dist.h - the processes of a distributed run (MPI), behind one small
 * interface: dist_mpi.c over MPI, dist_none.c for a build without it (one
 * process). The rest of the library has no #ifdef: with one process every
 * collective below is a no-op and the work is all of this process's.
 *
 * After mela_dist_init, every process calls the collectives in the same
 * order (the run loop and the evaluation do; see docs/distributed.md).
 */
#ifndef MELA_DIST_H
#define MELA_DIST_H

#include <stddef.h>

/* ---- the primitives (dist_mpi.c, dist_none.c) */
int dist_rank(void);
int dist_size(void);
/* on = 1: until dist_local(0), this process works alone (dist_rank 0,
 * dist_size 1, every collective a no-op; set from the thread of
 * mela_dist_init while no other thread of mela runs): the trials of a
 * search, each a whole run on one process. Returns the previous setting.
 * dist_job_rank: the rank in the job, even then. */
int dist_local(int on);
int dist_job_rank(void);
/* v[0..n) replaced by its minimum over every process. */
void dist_min_ints(int *v, int n);
/* bytes from root to every process. */
void dist_bcast(void *buf, size_t bytes, int root);
/* point to point, in the order the caller fixes. */
void dist_send(const float *buf, size_t count, int to);
void dist_recv(float *buf, size_t count, int from);
/* v: n items of k doubles each, this process's share (dist_share) filled;
 * afterwards every item on every process. */
void dist_gather_items(double *v, int n, int k);
/* ... of k floats each. */
void dist_gather_floats(float *v, int n, int k);
/* Bytes this process has sent and seconds it has spent in the collectives
 * since it started. */
void dist_counters(double *bytes, double *seconds);

/* ---- built on them (dist.c) */
/* This process's share [lo, hi) of n items: blocks in rank order, the first
 * n % P processes one item more (so rank 0 always holds item 0). */
void dist_share(int n, int *lo, int *hi);
/* status (0 or negative: failed, the error set) of every process: 0 when
 * all are 0; otherwise -1 on every process with the lowest failing rank's
 * message ("rank R of P: ..." unless every rank failed), then shared --
 * unless the processes reached different agreements (a failure that skipped
 * a collective on one process): then not shared, and the callers must end
 * the job (mela_dist_abort). */
int dist_agree(int status);
/* flag (0/1) of any process. */
int dist_any(int flag);
/* The left fold over items in item order, on every process:
 *   sum = item 0 + item 1 + ... + item n-1, then sum *= scale,
 * each process holding its share's items (hi - lo rows of size floats in
 * parts). The order of the float additions is exactly one process's, for
 * any number of processes: the running sum passes from rank to rank. */
void dist_fold(float *sum, const float *parts, int n, size_t size, float scale);

#endif
