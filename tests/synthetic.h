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

#endif
