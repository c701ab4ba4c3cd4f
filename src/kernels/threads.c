/* threads.c - threads: the thread count of the BLAS library (mela runs the
 * tasks of a meta-batch on its own threads and keeps each GEMM on one thread
 * while it does, restoring the caller's count after), and the one place
 * where threads are started. */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>

#include "kernels/kernels.h"

void mk_blas_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

int mk_blas_threads(void) { return openblas_get_num_threads(); }

const char *mk_blas_core(void) { return openblas_get_corename(); }

typedef struct par_start {
    void *(*fn)(void *);
    void *job;
} par_start;

void mk_parallel(int n, void *(*fn)(void *job), void *jobs, size_t job_size)
{
    enum { STACK = 8 };
    pthread_t stack_tid[STACK];
    char stack_started[STACK] = {0};
    pthread_t *tid = n <= STACK ? stack_tid : malloc((size_t)n * sizeof *tid);
    char *started = n <= STACK ? stack_started : calloc((size_t)n, 1);
    char *base = jobs;
    for (int k = 1; k < n && tid && started; k++)
        started[k] = pthread_create(&tid[k], NULL, fn, base + (size_t)k * job_size) == 0;
    if (n > 0)
        fn(base);
    for (int k = 1; k < n; k++) {
        if (tid && started && started[k])
            pthread_join(tid[k], NULL);
        else
            fn(base + (size_t)k * job_size); /* no thread: its share runs here */
    }
    if (n > STACK) {
        free(tid);
        free(started);
    }
}
