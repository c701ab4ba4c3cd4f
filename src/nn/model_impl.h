/* model_impl.h - what src/nn's files share about models (not installed). */
#ifndef MELA_NN_MODEL_IMPL_H
#define MELA_NN_MODEL_IMPL_H

#include "mela_nn.h"

/* The definition of a model made by mela_model_new, or NULL (MLP, Conv-4). */
const mela_model_def *model_def_of(const mela_model *m);

/* Conv-4's geometry (mela_conv4_new): 1, or 0 for other models. Its layout
 * is conv weight, conv bias, bn weight, bn bias for each block, in order;
 * each block is a 3x3 convolution (pad 1; stride 1 then a 2x2 max-pool, or
 * stride 2), batch norm with eps and a relu. src/learn/blocked.c computes
 * the same function in blocks of images. */
typedef struct model_conv4_geom {
    int channels, size, width, depth, maxpool;
    float eps;
} model_conv4_geom;
int model_conv4_geometry(const mela_model *m, model_conv4_geom *g);

#endif
