/*
 * mela_tune.h - hyperparameters chosen by meta-validation (`mela tune`).
 *
 * A search space names run options (mela_run_set keys) and how each is
 * drawn; a trial is one draw, a whole run configuration. Successive halving
 * (Jamieson & Talwalkar 2016; Li et al. 2017, Hyperband) gives n trials a
 * few iterations each, keeps the best 1/eta of them (by their score on the
 * validation split's fixed episodes), trains those eta times longer, and so
 * on up to max_iterations; Hyperband runs several such brackets, from many
 * short trials to few long ones. A promoted trial continues from its saved
 * state (mela_run_fit_until, mela_run_resume), it does not start again: a
 * trial scored at rungs 100, 300 and 900 costs 900 iterations.
 *
 * Everything is a function of the space and its seed: trial i's values are
 * drawn from mela_rng_derive(seed, "tune", i), the rungs are fixed in
 * advance and promotions happen when a whole rung is scored (synchronous
 * halving; ties go to the lower trial number), so the same space gives the
 * same trials, scores and winner on any number of workers. Each scored
 * (trial, rung) is one record of dir/trials.jsonl and dir/trials.csv, and a
 * search started again in the same directory takes those records instead of
 * training again: a killed search continues where it was, and its trials in
 * progress continue from their own saved state.
 *
 * The scheduler takes any objective (mela_tune_objective): the tests give
 * it a synthetic function; mela_tune_train gives it meta-training runs.
 */
#ifndef MELA_TUNE_H
#define MELA_TUNE_H

#include <signal.h>

#include "mela_learn.h"

#ifdef __cplusplus
extern "C" {
#endif
MELA_EXPORT_BEGIN

/* How a parameter is drawn. */
enum mela_tune_kind {
    MELA_TUNE_FIXED,   /* one value for every trial ("ways 5") */
    MELA_TUNE_LOG,     /* log-uniform on [lo, hi] ("inner_lr log 0.01 1") */
    MELA_TUNE_UNIFORM, /* uniform on [lo, hi] ("min_lr uniform 0 0.001") */
    MELA_TUNE_INT,     /* a uniform integer of lo..hi ("steps int 1 5") */
    MELA_TUNE_CHOICE   /* one of the values, each as likely ("learner choice maml fomaml") */
};

enum mela_tune_method { MELA_TUNE_SH, MELA_TUNE_HYPERBAND };

#define MELA_TUNE_MAX_PARAMS 32
#define MELA_TUNE_MAX_VALUE 256 /* bytes of a value, its NUL included */
#define MELA_TUNE_MAX_CHOICES 16

typedef struct mela_tune_param {
    char key[32];
    int kind;                 /* enum mela_tune_kind */
    double lo, hi;            /* LOG, UNIFORM, INT */
    int nvalues;              /* FIXED: 1; CHOICE: the choices */
    char values[MELA_TUNE_MAX_CHOICES][MELA_TUNE_MAX_VALUE];
} mela_tune_param;

/* A search: the settings of the scheduler and the space (about 130 kB:
 * better not on a thread's stack). */
typedef struct mela_tune_spec {
    int method;          /* enum mela_tune_method */
    int trials;          /* successive halving: trials in the first rung */
    int eta;             /* keep 1/eta of a rung, train eta times longer (>= 2) */
    int min_iterations;  /* the first rung (r); the rungs are r, r eta, ..., */
    int max_iterations;  /* ... max_iterations, which must be r eta^k */
    long long seed;      /* the draws of the trials' values */
    int workers;         /* trials trained at once (results do not depend on it) */
    int nparams;
    mela_tune_param params[MELA_TUNE_MAX_PARAMS];
} mela_tune_spec;

/* Successive halving of 27 trials, eta 3, rungs 100 .. 2700, seed 1, 1 worker, no parameters. */
void mela_tune_defaults(mela_tune_spec *s);
/* One line of a space file: "key kind args" (a parameter drawn), "key
 * value" (fixed for every trial), "tune.SETTING value" (method sh |
 * hyperband, trials, eta, min_iterations, max_iterations, seed, workers),
 * blank or a '#' comment. A key given again replaces its earlier line.
 * Keys are checked by mela_tune_check, not here. `where` names the line in
 * messages ("space.txt:3"). 0 or -1. */
int mela_tune_parse_line(mela_tune_spec *s, const char *line, const char *where);
/* Every line of a space file. 0 or -1 naming the file and line. */
int mela_tune_read(mela_tune_spec *s, const char *path);
/* The spec as a space file that mela_tune_read reads back the same. */
int mela_tune_write(const mela_tune_spec *s, const char *path);
/* Settings in range, max_iterations = min_iterations eta^k, every key an
 * option of mela_run_set, every fixed value and choice accepted by it, and
 * no key of the data drawn (the data are loaded once: dataset, data_dir,
 * cache_dir, split, image_size, test_seed) nor one the search sets
 * (iterations, val_every, out_dir). 0 or -1 naming the key. */
int mela_tune_check(const mela_tune_spec *s);
/* The first parameter with this key, or NULL. */
const mela_tune_param *mela_tune_find(const mela_tune_spec *s, const char *key);

/* One trial: a draw of every parameter, as text (fixed ones too). */
typedef struct mela_tune_trial {
    int id;        /* 0, 1, ...: its draw is mela_rng_derive(seed, "tune", id) */
    int bracket;   /* Hyperband's bracket (successive halving: 0) */
    int n;
    const char *keys[MELA_TUNE_MAX_PARAMS];    /* point into the spec */
    char values[MELA_TUNE_MAX_PARAMS][MELA_TUNE_MAX_VALUE];
} mela_tune_trial;

/* Trial `id` of the space (bracket 0). Reals are written with %.6g. */
void mela_tune_sample(const mela_tune_spec *s, int id, mela_tune_trial *t);

/* The objective: train trial t until it has done `iterations` in all
 * (continuing what it did before) and score it, higher better. `slot`
 * (0 .. workers-1) is the worker calling; calls on different slots run at
 * once, on different trials. Returns 0 with *score set (NaN: the trial
 * failed, e.g. its configuration was refused or it diverged; it is never
 * promoted), 1 when it stopped at the search's stop request (nothing
 * recorded), or -1 with a message: the search stops. */
typedef int (*mela_tune_objective)(void *ctx, const mela_tune_trial *t, int iterations, int slot,
                                   double *score);

/* A scored (trial, rung): one record of the log. */
typedef struct mela_tune_record {
    int trial, bracket, rung, iterations;
    double score;     /* NaN: failed */
    double seconds;   /* the objective's time for this rung (0 when read back) */
    int reused;       /* 1: read back from the log of an earlier session */
    const mela_tune_trial *t;
} mela_tune_record;

typedef void (*mela_tune_report_fn)(const mela_tune_record *rec, void *ctx);

typedef struct mela_tune_result {
    int best;                 /* the winner's trial (-1: none scored at max_iterations) */
    double best_score;
    mela_tune_trial winner;   /* its values */
    int scored;               /* (trial, rung) scored in this session */
    int reused;               /* ... taken from the log instead */
    long long iterations;     /* iterations the whole search trains (its compute) */
} mela_tune_result;

/* The rungs of a spec: brackets, and for bracket b its first trial, its
 * number of trials and its first rung's iterations (every rung after
 * multiplies the iterations by eta and keeps max(1, floor(n / eta)) trials,
 * up to max_iterations). Writes at most max brackets; returns how many
 * there are. Successive halving: one bracket of `trials` trials from
 * min_iterations. Hyperband (Li et al. 2017, with s_max = log_eta(R / r)):
 * bracket s = s_max .. 0 has ceil((s_max + 1) eta^s / (s + 1)) trials from
 * R eta^-s iterations. */
int mela_tune_brackets(const mela_tune_spec *s, int max, int *first, int *trials, int *start_iterations);

/* Runs the search: every rung of every bracket, the rung's trials on
 * s->workers threads, fn scoring each. dir ("" or NULL: no log, nothing
 * resumed) holds tune.txt (the spec, what a search started again there must
 * match but for the workers and the keys results do not depend on:
 * threads, data_dir, cache_dir), trials.jsonl and trials.csv (one record
 * per scored trial and rung, written as soon as it is scored: trial,
 * bracket, rung, iterations, score, seconds, then the trial's values);
 * records found there are taken instead of calling fn again. report (may be
 * NULL) sees every record, on the worker's thread but one at a time. stop
 * (may be NULL): when it becomes non-zero no new trial starts, and the
 * search returns 1 once those under way return. Returns 0 (res filled; the
 * winner is the best score at max_iterations, ties to the lower trial), 1
 * stopped, -1 with a message. */
int mela_tune_search(const mela_tune_spec *s, const char *dir, mela_tune_objective fn, void *ctx,
                     volatile sig_atomic_t *stop, mela_tune_report_fn report, void *report_ctx,
                     mela_tune_result *res);

/* The run configuration of trial t: the paper defaults of its learner,
 * dataset and ways (mela_run_defaults), then every value of t (fixed and
 * drawn) in the spec's order; iterations = max_iterations, val_every = min_iterations (a
 * validation at every rung). Checked; 0 or -1 naming the option. */
int mela_tune_config(const mela_tune_spec *s, const mela_tune_trial *t, mela_run_config *rc);

/* The search with meta-training runs as its objective: trial i is a run in
 * dir/trial-NNNN (its configuration mela_tune_config, `threads` threads),
 * trained rung by rung with mela_run_fit_until and scored by its latest
 * validation (accuracy; regression -MSE) on the fixed validation episodes.
 * data: as mela_run_open (NULL: loaded once from the space's data_dir, the
 * same for every trial). Writes dir/best.conf, the winner's configuration
 * (mela_run_config_load reads it; out_dir runs/tuned). Returns as
 * mela_tune_search. */
int mela_tune_train(const mela_tune_spec *s, const char *dir, int threads, const mela_run_data *data,
                    volatile sig_atomic_t *stop, mela_tune_report_fn report, void *report_ctx,
                    mela_tune_result *res);

MELA_EXPORT_END
#ifdef __cplusplus
}
#endif
#endif
