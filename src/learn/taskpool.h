/*
 * taskpool.h - what every learner shares: a training graph (task loss and
 * its gradient with respect to every view of a layout) and an evaluation
 * graph, compiled into plans, and a pool of executors that runs a batch of
 * tasks on threads and averages their gradients in task order.
 */
#ifndef MELA_TASKPOOL_H
#define MELA_TASKPOOL_H

#include "mela_learn.h"

#define TP_MAXV (2 * MELA_MODEL_MAX_PARAMS + 2)

typedef struct task_graph {
    mela_graph *g;
    mela_plan *p;
    mela_node xs, ys, xq, yq; /* inputs a task binds */
    mela_node loss, acc, out; /* acc may be MELA_NONE */
    mela_node grads[TP_MAXV]; /* training graph: one per layout view */
    int ngrads;
    mela_node extra;          /* an input shared by all tasks (MELA_NONE if none) */
    const float *extra_data;
} task_graph;

typedef struct taskpool {
    const mela_layout *L;
    task_graph train, eval;
    mela_exec **et, **ee;
    int nslots;
    float *task_grads; /* tcap * layout size */
    int tcap;
    int profiling;     /* new training executors profile too */
    struct mk_pool *pool; /* threads that stay, for the tasks of a batch */
    /* work done outside the executors (the metric learners' blocked
     * episode), added to tp_profile's sums when set */
    void (*more_profile)(const void *ctx, double *seconds, long *calls);
    const void *more_ctx;
} taskpool;

/* Compiles o->g into o->p with outputs loss, out, acc and per-view
 * "gradients": TP_GRAD_NONE none (evaluation), TP_GRAD_LOSS the gradient of
 * loss with respect to w[0..nw), TP_GRAD_GIVEN the nw nodes already in
 * o->grads (Reptile's theta - phi). */
enum { TP_GRAD_NONE, TP_GRAD_LOSS, TP_GRAD_GIVEN };
int tp_compile(task_graph *o, int mode, int nw, const mela_node *w);
void tp_free(taskpool *tp);
int tp_reserve(taskpool *tp, int slots);
/* ... and the evaluation executors give kernel_threads to their convolutions. */
int tp_reserve_threads(taskpool *tp, int slots, int kernel_threads);
/* OpenBLAS on one thread for a while: returns the caller's count, which
 * tp_blas_release puts back (see mela.h on threads). */
int tp_blas_hold(void);
void tp_blas_release(int prev);
int tp_evaluate(taskpool *tp, const float *theta, const mela_task *task, int slot, double *loss,
                double *acc, float *out);
int tp_grad(taskpool *tp, const float *theta, int n, const mela_task *tasks, int threads,
            float *grad, double *loss, double *acc);
void tp_set_profiling(taskpool *tp, int on);
/* The training pool of a learner (MAML++'s exact one when it has two). */
taskpool *mela_gbml_pool_(mela_gbml *gb);
taskpool *mela_metric_pool_(mela_metric *mt);
/* 1 when mela_metric_grad of n tasks runs in blocks of images spread over
 * the processes (one task, a Conv-4 embedding: blocked.c), which then all
 * need the task; on = 0 or 1 turns the blocks off or on (tests compare),
 * -1 leaves them. */
int mela_metric_blocked_(mela_metric *mt, int n, int on);
/* Images in one of its training tasks (what calibration counts). */
int mela_metric_train_images_(const mela_metric *mt);
void tp_profile(const taskpool *tp, double *seconds, long *calls);

#endif
