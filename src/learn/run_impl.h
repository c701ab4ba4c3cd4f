/*
 * run_impl.h - what a run holds, shared by the training loop (run.c) and
 * the uses of a trained checkpoint (run_use.c).
 */
#ifndef MELA_RUN_IMPL_H
#define MELA_RUN_IMPL_H

#include "mela_io.h"
#include "mela_learn.h"

struct mela_run {
    mela_run_config rc;
    mela_learner *l;
    float *theta;
    mela_run_data data;   /* what the run uses */
    mela_dataset *own_ds; /* ... when it loaded them itself */
    mela_split *own[3];
};

/* mela_run_open with evaluation query sets of query_rows rows (0: N * Q);
 * load = 0: no data yet (run_load_data later, or the user's images). */
mela_run *run_open_rows(const mela_run_config *rc, const mela_run_data *data, int load, int query_rows);
/* The data rc names (Omniglot and its splits; nothing for sinusoids). */
int run_load_data(mela_run *r);
mela_tasks *run_tasks(mela_run *r, int train, const mela_split *sp, uint64_t seed, int slots);
int run_evaluate(mela_run *r, mela_tasks *ts, int n, mela_eval_result *res);

#endif
