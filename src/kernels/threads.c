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

/* ------------------------------------------------------------------ pools */

/* Workers that stay: each waits for a new generation of jobs, runs the job
 * of its index, and counts itself done. Job 0 runs on the caller. */
struct mk_pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int nworkers, started, gen, pending, quit;
    int n;                      /* jobs of the current generation */
    void *(*fn)(void *);
    char *jobs;
    size_t job_size;
    pthread_t *tid;
};

typedef struct worker_arg {
    mk_pool *p;
    int index;
} worker_arg;

static void *worker_main(void *arg)
{
    worker_arg *w = arg;
    mk_pool *p = w->p;
    int index = w->index, seen = 0;
    free(w);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->quit)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit)
            break;
        seen = p->gen;
        if (index < p->n) {
            void *(*fn)(void *) = p->fn;
            void *job = p->jobs + (size_t)index * p->job_size;
            pthread_mutex_unlock(&p->mu);
            fn(job);
            pthread_mutex_lock(&p->mu);
            if (--p->pending == 0)
                pthread_cond_signal(&p->done);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

mk_pool *mk_pool_new(int nthreads)
{
    mk_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->nworkers = nthreads > 1 ? nthreads - 1 : 0;
    p->tid = calloc(p->nworkers ? p->nworkers : 1, sizeof *p->tid);
    for (int k = 0; k < p->nworkers && p->tid; k++) {
        worker_arg *w = malloc(sizeof *w);
        if (!w)
            break;
        *w = (worker_arg){p, k + 1};
        if (pthread_create(&p->tid[k], NULL, worker_main, w)) {
            free(w);
            break;
        }
        p->started++;
    }
    return p;
}

int mk_pool_threads(const mk_pool *p) { return p ? p->started + 1 : 1; }

void mk_pool_run(mk_pool *p, int n, void *(*fn)(void *job), void *jobs, size_t job_size)
{
    char *base = jobs;
    int pooled = p ? (n - 1 < p->started ? n - 1 : p->started) : 0; /* jobs 1..pooled */
    if (pooled > 0) {
        pthread_mutex_lock(&p->mu);
        p->fn = fn, p->jobs = base, p->job_size = job_size, p->n = pooled + 1;
        p->pending = pooled;
        p->gen++;
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
    }
    if (n > 0)
        fn(base);
    for (int k = pooled + 1; k < n; k++) /* more jobs than workers: here */
        fn(base + (size_t)k * job_size);
    if (pooled > 0) {
        pthread_mutex_lock(&p->mu);
        while (p->pending > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void mk_pool_free(mk_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int k = 0; k < p->started; k++)
        pthread_join(p->tid[k], NULL);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->tid);
    free(p);
}
