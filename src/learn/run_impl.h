/*
 * run_impl.h - what a run holds, shared by the training loop (run.c), what
 * it leaves on disk (run_state.c) and the uses of a trained checkpoint
 * (run_use.c).
 */
#ifndef MELA_RUN_IMPL_H
#define MELA_RUN_IMPL_H

#include <stdio.h>

#include "mela_io.h"
#include "mela_learn.h"

/* Where a run stands after its last finished iteration, beyond theta and the
 * learner's own state: with those, everything the rest of the run depends on
 * (see run_state.c). */
typedef struct run_state {
    int iteration;             /* meta-iterations done */
    int report;                /* the report interval */
    double best;               /* best validation score (-inf: none yet) */
    int best_iteration;        /* ... reached after this iteration (0: none) */
    int early;                 /* 1: stopped for want of patience (complete) */
    double val_loss, val_acc;  /* the latest validation (NaN: none yet) */
    double sum_loss, sum_acc;  /* the report interval under way */
    int nsum;
    long metrics_rows;         /* records in metrics.jsonl and .csv */
    double seconds;            /* training time so far, all sessions */
} run_state;

struct mela_run {
    mela_run_config rc;   /* what this session runs with */
    mela_run_config meta; /* what its files record: rc as the run was started */
    mela_learner *l;
    float *theta;
    mela_run_data data;   /* what the run uses */
    mela_dataset *own_ds; /* ... when it loaded them itself */
    mela_split *own[3];
    int lock;             /* out_dir held while the run is open (-1: not) */
    volatile sig_atomic_t *stop; /* polled after every iteration */
    int resumed;          /* 1: fit continues from st */
    int failed;           /* 1: a fit failed part way; theta is not st's */
    run_state st;
};

/* mela_run_open with evaluation query sets of query_rows rows (0: N * Q);
 * load = 0: no data yet (run_load_data later, or the user's images). */
mela_run *run_open_rows(const mela_run_config *rc, const mela_run_data *data, int load, int query_rows);
/* The data rc names (Omniglot and its splits; nothing for sinusoids). */
int run_load_data(mela_run *r);
mela_tasks *run_tasks(mela_run *r, int train, const mela_split *sp, uint64_t seed, int slots);
int run_evaluate(mela_run *r, mela_tasks *ts, int n, mela_eval_result *res);

/* 1 when this process writes the run's files: it has an out_dir and is
 * rank 0 of its job (the only process that writes). */
int run_writes(const mela_run *r);

/* run_state.c: the run configuration in a checkpoint's metadata. */
int run_config_read(const mela_checkpoint *ck, const char *path, mela_run_config *rc);
/* ... in the checkpoint or run state at path (its format checked). */
int run_config_checkpoint(const char *path, mela_run_config *rc);

/* run_config.c: the words of a line of a configuration or search-space file
 * into w (at most max), split in place at blanks; "a b" is one word, ""
 * an empty one; '#' outside quotes starts a comment. The count, or -1 with
 * a message. */
int run_words(char *line, char **w, int max);
/* 1 when the option key takes integers (ways, steps, seed...), else 0. */
int run_key_integer(const char *key);
/* Every option of rc as "key value" lines (what mela_run_config_load reads). */
int run_config_write(FILE *f, const mela_run_config *rc);
/* out_dir made, written to (a probe), held (mela_sys_lock_dir into
 * r->lock) and rid of the temp files of killed writers. */
int run_dir_open(mela_run *r);
/* out_dir/name: theta with r->meta and the iteration and score as metadata;
 * refused when theta holds a NaN or an infinity. */
int run_save_checkpoint(const mela_run *r, const char *name, int iteration, double score);
/* MetaNAS: out_dir/<prefix>discrete.safetensors, a checkpoint of the
 * discrete network of out_dir/<prefix>arch.json (the run's configuration
 * with that model, no schedule) holding the search's weights of the ops it
 * kept, taken by name from theta, with no retraining; the iteration and the
 * search's score as metadata. */
int run_save_discrete(const mela_run *r, const char *prefix, int iteration, double score);
/* out_dir/state.safetensors: theta, the learner's state, st and r->meta. */
int run_save_state(const mela_run *r, const run_state *st);

#endif
