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

/* Finn et al.'s (2017) Omniglot network, as their code builds it: `depth`
 * blocks of a 3x3 convolution of stride 2 with `width` filters and a bias,
 * TensorFlow's 'SAME' padding (an even side pads 0 rows and columns before
 * and 1 after, an odd side 1 and 1: 28 -> 14 -> 7 -> 4 -> 2), batch norm with
 * the batch's statistics, eps 1e-3, a shift and no scale, relu; then the
 * mean of each last feature map (`width` features) and a linear head to
 * nout classes (0: no head, an embedding). Views "convK.weight",
 * "convK.bias", "bnK.bias", "head.weight" (nout, width), "head.bias".
 * mela_model_init draws theirs: convolutions Xavier-uniform, the head
 * N(0, 1), biases and shifts 0. With 1x28x28 inputs, 64 filters, 4 blocks
 * and 5 classes it has 112,005 weights: the 111,749 of their weight
 * dictionary and the 4 x 64 batch-norm shifts. */
mela_model *mela_finn_new(int channels, int size, int width, int depth, int nout);

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
 *     mela_model_def d = {L, MELA_SHAPE(1), 1, 10, 2, body, head, NULL, NULL, "tanh mlp", NULL};
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
    void (*ctx_free)(void *ctx); /* NULL, or called on ctx by mela_model_free
                                  * (and by mela_model_new when it fails) */
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
 * shift 0 (mela_finn_new: its head N(0, 1)); padding between views 0.
 * With MELA_INIT_TORCH04 set (conv4 and finn only), PyTorch 0.4's defaults,
 * which the 2017-2018 papers' PyTorch code ran with (Snell et al.'s
 * Prototypical Networks among them): every convolution and linear weight and
 * bias U(+-1/sqrt(fan_in)) (fan_in = input channels x 3 x 3, or the head's
 * features), batch-norm scale U(0, 1) (PyTorch made it 1 in version 1.2),
 * shift 0. */
void mela_model_init(const mela_model *m, float *theta, mela_rng *r);
enum { MELA_INIT_XAVIER = 0, MELA_INIT_TORCH04 = 1 };
/* Chooses what mela_model_init draws (MELA_INIT_XAVIER, the default, or
 * MELA_INIT_TORCH04). -1 with a message for a scheme the model lacks. */
int mela_model_set_init(mela_model *m, int scheme);
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
 * (Conv-4 and Finn's network: one per block; the MLP and custom models:
 * 0). The mode of mela_model_body_bn:
 *   mean, var   NULL: every layer normalises with the batch's statistics (as
 *               mela_model_body); else nodes of shape (C) per layer: layer i
 *               computes gamma * (x - mean[i]) / sqrt(var[i] + eps) + beta
 *               (gamma 1 in Finn's network).
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

/* ------------------------------------------------------ networks of cells */

/*
 * A network of cells (DARTS, Liu et al. 2019; the search space of MetaNAS,
 * Elsken et al. 2020): a stem (3x3 convolution of stride stem_stride, batch
 * norm), then `cells` cells, each followed by a 2x2 max-pool (while the side
 * is at least 2; none with no_pool), then global average pooling and a
 * linear head.
 *
 * A cell has an input state s0 and `nodes` intermediate states; state j is
 * the sum over i < j of edge (i, j) applied to state i, and the cell's output
 * is the sum of its intermediate states. Edge (i, j) of the cell is number
 * j (j - 1) / 2 + i; a cell has nodes (nodes + 1) / 2 edges. Every edge keeps
 * `width` channels and the spatial size. Its operation is one of:
 *
 *   zero   nothing (the edge is absent)
 *   skip   the identity
 *   avg3   3x3 average pooling, stride 1, over the zero-padded input, then BN
 *   max3   3x3 max pooling, stride 1, over the zero-padded input, then BN
 *   conv3  relu, 3x3 convolution, BN
 *   conv5  relu, 5x5 convolution, BN
 *   dil3   relu, 3x3 convolution of dilation 2 (a 5x5 receptive field), BN
 *   sep3   relu, depthwise 3x3 then pointwise 1x1 convolution, BN
 *
 * BN is batch norm with the batch's statistics and no affine weights. Each
 * is composed from graph ops that have gradients of every order: the
 * padding is a 1x1 convolution with a fixed weight 1 and padding 1; dil3 is
 * a 5x5 convolution whose weight is the 3x3 weight times a fixed 0/1 matrix
 * (9 x 25); sep3 is one 3x3 convolution whose weight is the product
 * pw[o, c] dw[c, kh, kw] (exactly depthwise then pointwise, as the two are
 * linear with nothing between them).
 *
 * Search (search = 1): every edge is the mixture sum_k softmax(alpha_e)_k
 * op_k(x) over the candidate ops, with alpha the view "alpha" of shape
 * (edges, candidates), shared by all cells (the learned cell), initialised
 * N(0, 1e-3^2). Each candidate of each edge of each cell has weights of its
 * own. The learners adapt and meta-learn alpha like every other view.
 * With schedule = 1 the search also has the view "alpha.schedule" (2),
 * (T, g), which the caller sets between executions (the plans stay as
 * compiled): the mixture is softmax(alpha_e / T) (a temperature, MetaNAS's
 * annealing), and alpha's gradient is multiplied by g (0: alpha frozen,
 * MetaNAS's warm-up). The value is exactly alpha / T whatever g. The view
 * enters the graph through stop_gradient, so its own gradient is 0 and no
 * learner moves it; init sets it to (1, 1), where the network computes the
 * same bits as without it.
 * Discrete (search = 0): edge e of every cell is ops[e].
 *
 * Views: "stem.weight" (width, channels, 3, 3); "c<cell>.e<edge>.<op>"
 * (conv3 (w, w, 3, 3), conv5 (w, w, 5, 5), dil3 (w, w, 3, 3)), sep3 as
 * ".dw" (1, w, 3, 3) and ".pw" (w, w, 1, 1); "alpha"; "alpha.schedule"
 * (with schedule = 1); "head.weight",
 * "head.bias".
 */
enum mela_cell_op {
    MELA_OP_ZERO, MELA_OP_SKIP, MELA_OP_AVG3, MELA_OP_MAX3,
    MELA_OP_CONV3, MELA_OP_CONV5, MELA_OP_DIL3, MELA_OP_SEP3,
    MELA_CELL_OPS
};
#define MELA_CELL_MAX_NODES 4
#define MELA_CELL_MAX_EDGES 10 /* MELA_CELL_MAX_NODES (MELA_CELL_MAX_NODES + 1) / 2 */

typedef struct mela_cellnet_spec {
    int channels, size;   /* one input: (channels, size, size) */
    int width;            /* channels of the stem and the cells */
    int cells;            /* 1..8 */
    int nodes;            /* intermediate states of a cell, 1..MELA_CELL_MAX_NODES */
    int stem_stride;      /* 1 or 2 */
    int outputs;          /* units of the head (0: no head, an embedding of width features) */
    int search;           /* 1: mixtures of the candidates; 0: the ops below */
    unsigned candidates;  /* search: bit k set = op k is a candidate (0: all ops) */
    int smooth;           /* 1: tanh instead of relu before the convolutions
                           * (smooth, for finite-difference checks) */
    int no_pool;          /* 1: no max-pool after the cells */
    int schedule;         /* search: 1 = the view "alpha.schedule" (temperature,
                           * gradient scale) that the caller sets (see above) */
    int ops[MELA_CELL_MAX_EDGES]; /* discrete: the op of each edge of the cell */
} mela_cellnet_spec;

/* "conv3" for MELA_OP_CONV3 (NULL out of range); the op named, or -1. */
const char *mela_cell_op_name(int op);
int mela_cell_op_find(const char *name);
/* Edges of a cell of `nodes` states: nodes (nodes + 1) / 2. */
int mela_cell_edges(int nodes);
/* Op `op` of a cell applied to x (N, C, H, W) with its weights w (conv3,
 * conv5, dil3: w[0]; sep3: w[0] the depthwise (1, C, 3, 3), w[1] the
 * pointwise (C, C, 1, 1); others none); smooth: tanh instead of relu. zero
 * gives MELA_NONE (no node: the edge adds nothing). */
mela_node mela_cell_op(mela_graph *g, int op, const mela_node *w, mela_node x, int smooth);
/* The network of spec s; NULL with a message on bad sizes (or more than
 * MELA_MODEL_MAX_PARAMS views: fewer cells, nodes or candidates). */
mela_model *mela_cellnet_new(const mela_cellnet_spec *s);
/* The spec a cell network was built from (NULL for other models). */
const mela_cellnet_spec *mela_cellnet_spec_of(const mela_model *m);
/* The candidate ops of a search spec, in op order, into ops[]; their count. */
int mela_cell_candidates(const mela_cellnet_spec *s, int *ops);
/* The discrete cell of a search (DARTS's rule): for every state j, the
 * incoming edges ranked by the weight of their strongest op other than zero
 * (softmax of alpha, one row of candidates per edge); the best min(2, j)
 * keep that op, the others become zero. Writes out (a copy of the search
 * spec with search = 0) and, if weight is not NULL, each edge's softmax
 * weight of its op (0 for zero). Returns 0 or -1 (not a search spec). */
int mela_cellnet_derive(const mela_cellnet_spec *search, const float *alpha, mela_cellnet_spec *out,
                        float *weight);

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
