/*
 * graph_impl.h - the inside of mela_graph: nodes, the op table, and the
 * helpers that op files use. Not installed; include/mela.h is the manual.
 *
 * An op lives in one place (ops_*.c): its builder (the shape rule, run when
 * the graph is built), its forward (calls a kernel) and its gradient rule
 * (builds the gradient out of other ops, each with a rule of its own, so that
 * gradients can be differentiated again). The table in graph.c maps the op
 * enum to those functions.
 */
#ifndef MELA_GRAPH_IMPL_H
#define MELA_GRAPH_IMPL_H

#include <stddef.h>

#include "mela.h"

enum op {
    OP_INPUT, OP_PARAM, OP_CONST,
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_SCALE, OP_ADDS,
    OP_RELU, OP_LEAKY, OP_RELU_GRAD, OP_SIGMOID, OP_TANH, OP_EXP, OP_LOG, OP_ABS, OP_SIGN,
    OP_SQUARE, OP_SQRT, OP_SOFTPLUS,
    OP_SUM_TO, OP_BROADCAST, OP_RESHAPE, OP_CONCAT, OP_SLICE, OP_PAD,
    OP_MATMUL, OP_CONV, OP_CONV_DX, OP_CONV_DW,
    OP_MAXPOOL, OP_MAXPOOL_SCATTER, OP_MAXPOOL_GATHER, OP_AVGPOOL, OP_AVGPOOL_DX, OP_PAD2D,
    OP_LOG_SOFTMAX, OP_ONE_HOT, OP_ARGMAX_EQ, OP_STOP_GRAD,
    OP_BN_NORM, OP_BN_RSTD, OP_BN_DX,
    OP_COUNT
};

typedef struct mnode {
    int op;
    int nin;
    int in[3];
    mela_shape shape;
    size_t numel;
    float f;         /* scalar argument (scale, slope, fill value) */
    int i[4];        /* integer arguments (stride, pad, window, flags...) */
    mela_shape aux;  /* a second shape argument (e.g. conv_dx's input shape) */
    size_t offset;   /* OP_PARAM: offset of the view in the flat buffer */
    char *name;      /* OP_INPUT: the name given by the user */
} mnode;

struct mela_graph {
    mnode *nodes;
    int n, cap;
    const mela_layout *layout; /* of every OP_PARAM node */
    char *error;               /* the first build error, or NULL */
};

/* Gradient rule results besides a node: the input's gradient is zero
 * (piecewise-constant ops), or there is no rule for it (an error). */
#define GRAD_ZERO (-2)
#define GRAD_NO_RULE (-3)

typedef struct op_def {
    const char *name;
    /* y = f(inputs). Returns 0, or -1 with mela_set_error (run-time data
     * errors only, such as a label out of range). */
    int (*forward)(const mela_graph *g, const mnode *n, float *y, const float *const *x,
                   float *scratch, int threads);
    /* Floats of scratch memory forward needs, or NULL for none. */
    size_t (*scratch)(const mela_graph *g, const mnode *n);
    /* For each k with need[k], sets dx[k] to the gradient of <y, dy> with
     * respect to input k: a node, GRAD_ZERO, or leaves GRAD_NO_RULE. NULL for
     * leaves. The rule must copy what it needs from the node first: adding
     * nodes may move g->nodes. */
    void (*grad)(mela_graph *g, mela_node self, mela_node dy, const int *need, mela_node *dx);
} op_def;

extern const op_def mela_ops[OP_COUNT];

/* Appends a node; fills numel from shape. Returns its index or MELA_NONE
 * (allocation failure, recorded as a graph error). */
mela_node graph_push(mela_graph *g, const mnode *n);
/* Records the first error of the graph; returns MELA_NONE. */
mela_node graph_fail(mela_graph *g, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* 1 if every node in x[0..n) is valid; otherwise records an error for op
 * (unless one is recorded already) and returns 0. */
int graph_valid(mela_graph *g, const char *op, int n, const mela_node *x);
static inline mela_shape in_shape(const mela_graph *g, const mnode *n, int k)
{
    return g->nodes[n->in[k]].shape;
}

/* Shapes aligned to 4 axes on the right; contiguous strides; broadcasting. */
void shape4(mela_shape s, int d[4]);
/* The broadcast of a and b, or -1 when they do not fit. */
int shape_broadcast(mela_shape a, mela_shape b, mela_shape *out);
/* Strides of an operand of shape s read over an output of shape out (0 on
 * broadcast axes), 4-D right-aligned. */
void shape_bstrides(mela_shape s, mela_shape out, long str[4]);

/* Builders of primitive ops used by gradient rules (public ones are in
 * mela.h). */
mela_node op_relu_grad(mela_graph *g, mela_node x, mela_node dy, float slope);
mela_node op_sign(mela_graph *g, mela_node x);
mela_node op_pad(mela_graph *g, mela_node x, int start, int total);
mela_node op_conv_dx(mela_graph *g, mela_node dy, mela_node w, mela_shape xshape, int stride,
                     int pad);
mela_node op_conv_dw(mela_graph *g, mela_node x, mela_node dy, mela_shape wshape, int stride,
                     int pad);
mela_node op_conv(mela_graph *g, mela_node x, mela_node w, int stride, int pad);
mela_node op_maxpool_scatter(mela_graph *g, mela_node x, mela_node dy, int k, int s);
mela_node op_maxpool_gather(mela_graph *g, mela_node x, mela_node gx, int k, int s);
mela_node op_avgpool_dx(mela_graph *g, mela_node dy, mela_shape xshape, int k, int s);
mela_node op_bn_norm(mela_graph *g, mela_node x, float eps);
mela_node op_bn_rstd(mela_graph *g, mela_node x, float eps);
/* The backward pass of bn_normalize in one op: rstd (g - mean(g) - xhat mean(g xhat)). */
mela_node op_bn_dx(mela_graph *g, mela_node dy, mela_node xhat, mela_node rstd);

/* Forward/scratch/grad functions of each op, defined in ops_*.c. */
#define OPFN(name)                                                              \
    int fwd_##name(const mela_graph *g, const mnode *n, float *y, const float *const *x, \
                   float *scratch, int threads);                                \
    void grad_##name(mela_graph *g, mela_node self, mela_node dy, const int *need, mela_node *dx);
OPFN(const) OPFN(add) OPFN(sub) OPFN(mul) OPFN(div) OPFN(scale) OPFN(adds)
OPFN(relu) OPFN(leaky) OPFN(relu_grad) OPFN(sigmoid) OPFN(tanh) OPFN(exp) OPFN(log) OPFN(abs)
OPFN(sign) OPFN(square) OPFN(sqrt) OPFN(softplus)
OPFN(sum_to) OPFN(broadcast) OPFN(reshape) OPFN(concat) OPFN(slice) OPFN(pad)
OPFN(matmul) OPFN(conv) OPFN(conv_dx) OPFN(conv_dw)
OPFN(maxpool) OPFN(maxpool_scatter) OPFN(maxpool_gather) OPFN(avgpool) OPFN(avgpool_dx) OPFN(pad2d)
OPFN(log_softmax) OPFN(one_hot) OPFN(argmax_eq) OPFN(stop_grad) OPFN(bn_norm) OPFN(bn_rstd) OPFN(bn_dx)
#undef OPFN
size_t scratch_conv(const mela_graph *g, const mnode *n);

/* Shorthands for op files. VALID returns MELA_NONE from a builder unless all
 * its input nodes are valid and the graph has no error yet. */
#define VALID(name, ...)                                                        \
    do {                                                                        \
        mela_node v_[] = {__VA_ARGS__};                                         \
        if (!graph_valid(g, name, (int)(sizeof v_ / sizeof v_[0]), v_))        \
            return MELA_NONE;                                                   \
    } while (0)
#define FWD(name)                                                               \
    int fwd_##name(const mela_graph *g, const mnode *n, float *y, const float *const *x, \
                   float *scratch, int threads)
#define GRAD(name)                                                              \
    void grad_##name(mela_graph *g, mela_node self, mela_node dy, const int *need, mela_node *dx)

static inline mela_node push1(mela_graph *g, int op, mela_node x, mela_shape shape, float f)
{
    mnode n = {.op = op, .nin = 1, .in = {x}, .shape = shape, .f = f};
    return graph_push(g, &n);
}

static inline mela_node push2(mela_graph *g, int op, mela_node a, mela_node b, mela_shape shape)
{
    mnode n = {.op = op, .nin = 2, .in = {a, b}, .shape = shape};
    return graph_push(g, &n);
}

#endif
