/*
 * dist.c - what distributed runs build on the primitives of dist.h: shares
 * of the work, agreement on failures and stops, and the ordered sum of
 * per-task gradients (see docs/distributed.md).
 */
#include <stdio.h>
#include <string.h>

#include "learn/dist.h"
#include "mela_learn.h"

static char shared_error[512]; /* the last error every process agreed on */

void dist_share(int n, int *lo, int *hi)
{
    int P = dist_size(), r = dist_rank(), q = n / P, extra = n % P;
    *lo = r * q + (r < extra ? r : extra);
    *hi = *lo + q + (r < extra);
}

/* Every agreement carries its sequence number: processes that reach
 * different agreements (one failed where the others could not know it)
 * see it, and the failure is then not shared (its caller ends the job). */
int dist_agree(int status)
{
    static int seq;
    int P = dist_size(), me = dist_rank();
    if (P == 1)
        return status < 0 ? -1 : 0;
    seq = (seq + 1) % 1000000000;
    int v[4] = {status < 0 ? me : P, status < 0 ? 0 : -1, seq, -seq};
    dist_min_ints(v, 4);
    int in_step = v[2] == -v[3];
    if (v[0] == P && in_step)
        return 0;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", me == v[0] ? mela_last_error() : "");
    if (v[0] == P) /* out of step, yet nobody failed here: a bug of ours */
        snprintf(msg, sizeof msg, "the processes reached different collectives");
    else
        dist_bcast(msg, sizeof msg, v[0]);
    if (v[1] == 0) /* every rank failed: rank 0's own message */
        mela_set_error("%s", msg);
    else
        mela_set_error("rank %d of %d: %s", v[0], P, msg);
    snprintf(shared_error, sizeof shared_error, "%s", in_step ? mela_last_error() : "");
    return -1;
}

int dist_any(int flag)
{
    int v = flag ? -1 : 0;
    dist_min_ints(&v, 1);
    return v < 0;
}

/* In chunks of 64 KB, so that the hops from rank to rank overlap (a
 * pipeline; docs/distributed.md). */
#define FOLD_CHUNK ((size_t)1 << 14)

void dist_fold(float *sum, const float *parts, int n, size_t size, float scale)
{
    int P = dist_size(), me = dist_rank(), lo, hi;
    int last = (n < P ? n : P) - 1; /* the last rank holding items */
    dist_share(n, &lo, &hi);
    if (me <= last) {
        for (size_t c0 = 0; c0 < size; c0 += FOLD_CHUNK) {
            size_t m = size - c0 < FOLD_CHUNK ? size - c0 : FOLD_CHUNK;
            float *s = sum + c0;
            int t = lo;
            if (me == 0)
                memcpy(s, parts + c0, m * sizeof *s), t++;
            else
                dist_recv(s, m, me - 1);
            for (; t < hi; t++) {
                const float *src = parts + (size_t)(t - lo) * size + c0;
                for (size_t i = 0; i < m; i++)
                    s[i] += src[i];
            }
            if (me < last)
                dist_send(s, m, me + 1);
            else
                for (size_t i = 0; i < m; i++)
                    s[i] *= scale;
        }
    }
    if (P > 1)
        dist_bcast(sum, size * sizeof *sum, last);
}

/* ------------------------------------------------------------- public */

int mela_dist_rank(void) { return dist_rank(); }
int mela_dist_size(void) { return dist_size(); }

int mela_dist_error_shared(void)
{
    return shared_error[0] && !strcmp(shared_error, mela_last_error());
}

void mela_dist_counters(double *bytes_sent, double *seconds)
{
    dist_counters(bytes_sent, seconds);
}
