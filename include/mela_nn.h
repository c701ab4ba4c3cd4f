/*
 * mela_nn.h - models built from graph ops, and optimisers over flat buffers.
 *
 * A model is functional: it owns a parameter layout (mela.h) and a forward
 * function that takes one graph node per parameter view. Passing the
 * parameters themselves (mela_model_params) gives the ordinary network;
 * passing adapted "fast" weights (w - a * grad, built in the same graph)
 * gives the network after an inner step, which is how MAML and its family
 * differentiate through adaptation.
 *
 *     mela_model *m = mela_conv4_new(1, 28, 64, 4, 5, 1);   // Omniglot 5-way
 *     float *theta = malloc(mela_layout_size(mela_model_layout(m)) * 4);
 *     mela_rng r = mela_rng_new(1);
 *     mela_model_init(m, theta, &r);
 *     mela_node w[MELA_MODEL_MAX_PARAMS];
 *     mela_model_params(m, g, w);
 *     mela_node logits = mela_model_forward(m, g, w, x);
 */
#ifndef MELA_NN_H
#define MELA_NN_H

#include "mela.h"

#ifdef __cplusplus
extern "C" {
#endif
MELA_EXPORT_BEGIN

#define MELA_MODEL_MAX_PARAMS 64

typedef struct mela_model mela_model;

/* A multilayer perceptron nin -> hidden[0] -> ... -> nout with relu between
 * layers (the MAML sinusoid network is mela_mlp_new(1, {40, 40}, 2, 1)).
 * Parameters "fcK.weight" (out, in) and "fcK.bias" (out). Input (N, nin). */
mela_model *mela_mlp_new(int nin, const int *hidden, int nhidden, int nout);

/* Conv-4 of Finn et al. 2017 (and Vinyals et al. 2016): `depth` blocks of
 * 3x3 conv with `width` filters (padding 1), batch norm, relu, then either a
 * 2x2 max-pool (maxpool = 1, the miniImageNet variant) or stride 2 in the conv
 * itself (maxpool = 0, the Omniglot variant); then a linear head to nout
 * classes over the flattened features (nout = 0: no head, the network is an
 * embedding, as in Prototypical Networks). Input (N, channels, size, size). */
mela_model *mela_conv4_new(int channels, int size, int width, int depth, int nout, int maxpool);

/* A model of your own, from graph ops: a layout of its weights, and a body
 * and head that build the graph from weight nodes (w[i] is view i of the
 * layout, or its adapted value in an inner loop). The learners use only
 * these, so any network written this way can be meta-trained:
 *
 *     static mela_node body(void *ctx, mela_graph *g, const mela_node *w, mela_node x)
 *     { return mela_tanh(g, mela_linear(g, x, w[0], w[1])); }
 *     static mela_node head(void *ctx, mela_graph *g, const mela_node *w, mela_node h)
 *     { return mela_linear(g, h, w[2], w[3]); }
 *     ...
 *     mela_model_def d = {L, MELA_SHAPE(1), 1, 10, 2, body, head, NULL, NULL, "tanh mlp"};
 *     mela_model *m = mela_model_new(&d);
 */
typedef struct mela_model_def {
    mela_layout *layout;  /* the weights; the model takes it over (frees it) */
    mela_shape input;     /* one example's shape: (features) or (C, H, W) */
    int outputs;          /* units of the head (0: no head, an embedding) */
    int features;         /* units of the body's output per example */
    int head_first;       /* index of the head's first view; the head's views come last */
    mela_node (*body)(void *ctx, mela_graph *g, const mela_node *w, mela_node x);
    mela_node (*head)(void *ctx, mela_graph *g, const mela_node *w, mela_node h); /* NULL: identity */
    /* NULL: views named "*.bias" or "bn*" get 0 (bn*.weight 1), other views
     * Xavier-uniform with fan_in = numel / shape[0] */
    void (*init)(void *ctx, const mela_layout *L, float *theta, mela_rng *r);
    void *ctx;
    const char *name;     /* for mela_model_describe */
} mela_model_def;

/* Returns NULL (and frees def->layout) when the definition is incomplete. */
mela_model *mela_model_new(const mela_model_def *def);

void mela_model_free(mela_model *m);
const mela_layout *mela_model_layout(const mela_model *m);
/* Floats of the flat parameter buffer (mela_layout_size of the layout). */
size_t mela_model_size(const mela_model *m);
/* Features that reach the head (or the embedding size when nout = 0). */
int mela_model_features(const mela_model *m);
/* A one-line description, e.g. "conv4(1x28x28, 64 filters, 4 blocks, stride 2) -> 5". */
const char *mela_model_describe(const mela_model *m);

/* Fills theta: weights Xavier-uniform (conv) or U(+-1/sqrt(fan_in)) (mlp),
 * biases 0 for conv / U(+-1/sqrt(fan_in)) for mlp, batch-norm scale 1 and
 * shift 0; padding between views 0. */
void mela_model_init(const mela_model *m, float *theta, mela_rng *r);
/* One OP_PARAM node per view, in layout order, into w[0..count). Returns the
 * count, or -1 on a graph error. */
int mela_model_params(const mela_model *m, mela_graph *g, mela_node *w);
/* The network applied to x with weights w (nodes, in layout order). */
mela_node mela_model_forward(const mela_model *m, mela_graph *g, const mela_node *w, mela_node x);

/* The network in two parts: the body (everything before the head: the
 * embedding, (N, features)) and the head (features -> nout). Both take the
 * full weight array w. mela_model_head_first() is the index of the head's
 * first view in the layout (the head's views come last); for a model
 * without a head it is the number of views. ANIL adapts views from there on. */
mela_node mela_model_body(const mela_model *m, mela_graph *g, const mela_node *w, mela_node x);
mela_node mela_model_head(const mela_model *m, mela_graph *g, const mela_node *w, mela_node h);

/* Batch normalisation with statistics held fixed (inference), so that each
 * image is embedded on its own, whatever else is in the batch. A model has
 * mela_model_bn_layers() batch-norm layers whose statistics can be fixed
 * (Conv-4: one per block; the MLP and custom models: 0). The mode of
 * mela_model_body_bn:
 *   mean, var   NULL: every layer normalises with the batch's statistics (as
 *               mela_model_body); else nodes of shape (C) per layer: layer i
 *               computes gamma * (x - mean[i]) / sqrt(var[i] + eps) + beta.
 *   batch_mean, batch_var   when not NULL (and mean is NULL), filled with
 *               nodes of this batch's per-channel mean and biased variance of
 *               each layer's input, shape (C): what population statistics
 *               are gathered from. */
typedef struct mela_bn_mode {
    const mela_node *mean, *var;
    mela_node *batch_mean, *batch_var;
} mela_bn_mode;
int mela_model_bn_layers(const mela_model *m);
/* The channels of batch-norm layer i (0 <= i < mela_model_bn_layers). */
int mela_model_bn_channels(const mela_model *m, int i);
mela_node mela_model_body_bn(const mela_model *m, mela_graph *g, const mela_node *w, mela_node x,
                             const mela_bn_mode *mode);
int mela_model_head_first(const mela_model *m);
/* The input shape for a batch of n: (n, C, H, W) or (n, nin). */
mela_shape mela_model_input_shape(const mela_model *m, int n);
/* Output units of the head (0 for an embedding network). */
int mela_model_outputs(const mela_model *m);

/* ------------------------------------------------------------- optimisers */

/* theta -= lr * grad over n floats (one vector routine for any layout). */
void mela_sgd_step(float *theta, const float *grad, size_t n, float lr);

/* Adam (Kingma & Ba 2015) with bias correction, over a flat buffer. */
typedef struct mela_adam {
    size_t n;
    float *m, *v;
    long t;
    float lr, beta1, beta2, eps;
} mela_adam;

/* Returns 0 or -1 (out of memory). Defaults beta 0.9/0.999, eps 1e-8. */
int mela_adam_init(mela_adam *a, size_t n, float lr);
void mela_adam_free(mela_adam *a);
void mela_adam_step(mela_adam *a, float *theta, const float *grad);

/* Gradient clipping by the global L2 norm: when max > 0 and the norm of the
 * n floats of g is above max, g is scaled by max / norm. Returns the norm
 * before clipping (computed in double), which is NaN or infinite exactly
 * when g holds a NaN or an infinity; g is then left as it is. */
double mela_clip_grad_norm(float *g, size_t n, float max);

MELA_EXPORT_END
#ifdef __cplusplus
}
#endif
#endif
