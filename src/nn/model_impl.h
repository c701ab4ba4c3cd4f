/* model_impl.h - what src/nn's files share about models (not installed). */
#ifndef MELA_NN_MODEL_IMPL_H
#define MELA_NN_MODEL_IMPL_H

#include "mela_nn.h"

/* The definition of a model made by mela_model_new, or NULL (MLP, Conv-4). */
const mela_model_def *model_def_of(const mela_model *m);

#endif
