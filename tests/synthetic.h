/* synthetic.h - a dataset of synthetic classes for the seeded trainings of
 * the learner tests (header-only): each class a random 8x8 binary pattern,
 * its images the pattern with 8% of the pixels flipped. Few-shot learnable,
 * but not from a single pixel. */
#ifndef MELA_TEST_SYNTHETIC_H
#define MELA_TEST_SYNTHETIC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mela_data.h"
#include "mela_learn.h"

static mela_dataset *synthetic(int nclasses, int per_class, uint64_t seed)
{
    mela_dataset *ds = calloc(1, sizeof *ds);
    ds->C = 1, ds->H = 8, ds->W = 8;
    ds->nclasses = nclasses;
    ds->classes = calloc(nclasses, sizeof *ds->classes);
    ds->nimages = nclasses * per_class;
    ds->pixels = malloc((size_t)ds->nimages * 64);
    ds->drawer = calloc(ds->nimages, sizeof *ds->drawer);
    ds->ngroups = 1;
    ds->groups = calloc(1, sizeof *ds->groups);
    ds->groups[0] = strdup("synthetic");
    mela_rng r = mela_rng_new(seed);
    for (int c = 0; c < nclasses; c++) {
        char name[32];
        snprintf(name, sizeof name, "class%02d", c);
        ds->classes[c] = (mela_class){strdup(name), 0, -1, 0, c * per_class, per_class};
        uint8_t proto[64];
        for (int p = 0; p < 64; p++)
            proto[p] = mela_rng_uniform(&r) < 0.5f ? 255 : 0;
        for (int j = 0; j < per_class; j++)
            for (int p = 0; p < 64; p++)
                ds->pixels[(size_t)(c * per_class + j) * 64 + p] =
                    mela_rng_uniform(&r) < 0.08f ? 255 - proto[p] : proto[p];
    }
    return ds;
}

/* The synthetic classes split for a seeded run: 30 to train on, 10 unseen
 * ones to validate and test on. */
typedef struct synth_data {
    mela_dataset *ds;
    mela_split *all;
    mela_split train, test;
} synth_data;

static void synth_open(synth_data *d, uint64_t seed)
{
    d->ds = synthetic(40, 12, seed);
    d->all = mela_split_all(d->ds, "synthetic", NULL, 0);
    d->train = d->test = *d->all;
    d->train.n = 30, d->train.id = 1;
    d->test.n = 10, d->test.classes = d->all->classes + 30, d->test.id = 2;
}

static void synth_close(synth_data *d)
{
    mela_split_free(d->all);
    mela_dataset_free(d->ds);
}

/* A learner's defaults, made small for 8x8 images: Conv-4 of 2 blocks of 16
 * filters, tested 5-way 1-shot with 3 queries on 100 episodes, validated
 * once at the end, nothing written. */
static void synth_config(mela_run_config *rc, const char *learner, int iterations)
{
    mela_run_defaults(rc, learner, "omniglot", 5);
    snprintf(rc->split, sizeof rc->split, "vinyals");
    rc->out_dir[0] = 0;
    rc->image_size = 8, rc->width = 16, rc->depth = 2;
    rc->test = (mela_task_spec){5, 1, 3, 0};
    rc->iterations = iterations;
    rc->val_every = 0;
    rc->val_episodes = 20;
    rc->test_episodes = 100;
    rc->threads = 2;
}

/* Meta-trains rc through the library's run loop and returns the test
 * accuracy (-1 on failure, the message in mela_last_error). The run is kept
 * in *keep when keep is not NULL (close it), else closed. */
static double synth_train(const mela_run_config *rc, synth_data *d, mela_run **keep)
{
    mela_run_data data = {d->ds, &d->train, &d->test, &d->test};
    mela_run *r = mela_run_open(rc, &data);
    mela_eval_result res;
    double acc = r && !mela_run_fit(r, 1000, NULL, NULL) && !mela_run_test(r, 0, &res) ? res.acc : -1;
    if (keep)
        *keep = r;
    else
        mela_run_close(r);
    return acc;
}

#endif
