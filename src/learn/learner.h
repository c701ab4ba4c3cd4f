/*
 * learner.h - the learner table: what each learner brings to the one
 * interface of mela_learner_* (mela_learn.h). A new learner is a file that
 * defines a learner_def and one line in the table of learner.c.
 */
#ifndef MELA_LEARNER_H
#define MELA_LEARNER_H

#include "mela_io.h"
#include "mela_learn.h"

typedef struct learner_def learner_def;

struct mela_learner {
    const learner_def *def;
    mela_run_config rc;
    int query_rows;      /* as mela_learner_new */
    mela_model *model;
    void *impl;          /* the def's own learner (mela_gbml, mela_metric) */
    const mela_layout *L;
    size_t size;         /* floats of theta */
    size_t clip_size;    /* floats of theta learned by gradient (clip_grad's norm), 0: size */
    float *grad;         /* this iteration's meta-gradient (size) */
    mela_adam adam;      /* the outer optimiser (Reptile: its t only) */
    float *msl_w;        /* MAML++ step weights (steps) */
    double update_s;     /* seconds in def->update, for --profile */
};

struct learner_def {
    mela_learner_info info;
    /* Its papers' settings over the dataset's defaults (run_config.c);
     * ways is what the user asked for (0: the learner's choice). */
    void (*defaults)(mela_run_config *rc, int ways);
    /* Its own rules on a configuration (the generic ones are checked). */
    int (*check)(const mela_run_config *rc);
    /* Builds l->model and l->impl, sets l->L; query_rows as mela_learner_new. */
    int (*open)(mela_learner *l, int query_rows);
    void (*close)(mela_learner *l);
    void (*init)(mela_learner *l, float *theta, mela_rng *r);
    /* Its training (train = 1) or evaluation tasks (seed and slots left alone). */
    void (*tasks)(const mela_learner *l, int train, mela_tasks_opts *o);
    /* Meta-iteration it: the meta-gradient into l->grad, and the update. */
    int (*grad)(mela_learner *l, const float *theta, int it, int n, const mela_task *tasks,
                double *loss, double *acc);
    void (*update)(mela_learner *l, float *theta, int it);
    /* 1 when every process needs all n tasks of a step (the images of one
     * episode spread over the processes); NULL: its share of them. */
    int (*every_task)(mela_learner *l, int n);
    int (*reserve)(mela_learner *l, int slots, int kernel_threads);
    /* Raw outputs into out (logits, log-probabilities, mean p(same) or
     * predictions); probabilities() turns rows x N of them into what
     * mela_learner_evaluate promises (NULL: they are that already). */
    int (*evaluate)(mela_learner *l, const float *theta, const mela_task *t, int slot, double *loss,
                    double *acc, float *out);
    void (*probabilities)(const mela_learner *l, float *out, int rows, int N);
    int (*compare)(mela_learner *l, const float *theta, const float *a, const float *b, double *p);
    /* Statistics of the training data that evaluation uses, set in theta
     * (NULL: none); calibration_images: images in one training task. */
    int (*calibrate)(mela_learner *l, float *theta, mela_tasks *ts, int tasks);
    int (*calibration_images)(const mela_learner *l);
    struct taskpool *(*pool)(mela_learner *l); /* its training executors */
};

/* The shared parts the defs are made of (learner.c). */
void learner_adam_update(mela_learner *l, float *theta, int it); /* with rc's lr schedule */
void learner_softmax_rows(float *z, int rows, int N);
/* The model of rc: the MLP (sinusoids), or Conv-4 or a cell network (the
 * search network, a model-definition file) with a head of ways outputs
 * (learners that adapt) or none (an embedding). */
mela_model *learner_model(const mela_run_config *rc);
/* Checks rc, then that checkpoint ck (path, for messages) holds every view
 * of rc's model with its shape: cheap (no plans, no executors), so that a
 * checkpoint whose weights do not fit its configuration is refused before
 * anything large is built or loaded. 0 or -1 naming the tensor. */
int learner_check_weights(const mela_run_config *rc, const mela_checkpoint *ck, const char *path);

extern const learner_def learner_maml, learner_fomaml, learner_metasgd, learner_anil,
    learner_mamlpp, learner_reptile, learner_protonet, learner_matchnet, learner_siamese;

const learner_def *learner_def_find(const char *name);

/* The view of the first non-finite value of x (a buffer of layout L), that
 * value in *value; NULL when every value is finite. */
const char *learner_nonfinite(const mela_layout *L, const float *x, float *value);
/* "nan", "inf" or "-inf" for a non-finite x (glibc's %g can say "-nan"). */
const char *learner_nonfinite_name(double x);

/* The learner's own state (the outer optimiser: moments, step, rate) to
 * path in one atomic file, with theta (views "theta", "adam.m", "adam.v";
 * theta NULL: the moments only) and nmeta pairs of metadata before the
 * learner's ("learner", "adam_t", "adam_lr"). 0 or -1. */
int learner_state_save(const mela_learner *l, const char *path, const float *theta, int nmeta,
                       const char *const *keys, const char *const *vals);
/* Reads what learner_state_save wrote (theta NULL: without theta) from the
 * open checkpoint ck (path for messages); checks that it is this learner's.
 * Nothing changes on error. 0 or -1. */
int learner_state_read(mela_learner *l, const mela_checkpoint *ck, const char *path, float *theta);

#endif
