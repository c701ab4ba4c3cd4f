/*
 * graph.c - the graph container, its leaves and the op table. Reverse-mode
 * differentiation is in grad.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph_impl.h"

#define OP(e, nm, f, s, gr) [e] = {nm, f, s, gr}
const op_def mela_ops[OP_COUNT] = {
    OP(OP_INPUT, "input", NULL, NULL, NULL),
    OP(OP_PARAM, "param", NULL, NULL, NULL),
    OP(OP_CONST, "constant", fwd_const, NULL, NULL),
    OP(OP_ADD, "add", fwd_add, NULL, grad_add),
    OP(OP_SUB, "sub", fwd_sub, NULL, grad_sub),
    OP(OP_MUL, "mul", fwd_mul, NULL, grad_mul),
    OP(OP_DIV, "div", fwd_div, NULL, grad_div),
    OP(OP_SCALE, "scale", fwd_scale, NULL, grad_scale),
    OP(OP_ADDS, "add_scalar", fwd_adds, NULL, grad_adds),
    OP(OP_RELU, "relu", fwd_relu, NULL, grad_relu),
    OP(OP_LEAKY, "leaky_relu", fwd_leaky, NULL, grad_leaky),
    OP(OP_RELU_GRAD, "relu_grad", fwd_relu_grad, NULL, grad_relu_grad),
    OP(OP_SIGMOID, "sigmoid", fwd_sigmoid, NULL, grad_sigmoid),
    OP(OP_TANH, "tanh", fwd_tanh, NULL, grad_tanh),
    OP(OP_EXP, "exp", fwd_exp, NULL, grad_exp),
    OP(OP_LOG, "log", fwd_log, NULL, grad_log),
    OP(OP_ABS, "abs", fwd_abs, NULL, grad_abs),
    OP(OP_SIGN, "sign", fwd_sign, NULL, grad_sign),
    OP(OP_SQUARE, "square", fwd_square, NULL, grad_square),
    OP(OP_SQRT, "sqrt", fwd_sqrt, NULL, grad_sqrt),
    OP(OP_SOFTPLUS, "softplus", fwd_softplus, NULL, grad_softplus),
    OP(OP_SUM_TO, "sum_to", fwd_sum_to, NULL, grad_sum_to),
    OP(OP_BROADCAST, "broadcast_to", fwd_broadcast, NULL, grad_broadcast),
    OP(OP_RESHAPE, "reshape", fwd_reshape, NULL, grad_reshape),
    OP(OP_CONCAT, "concat", fwd_concat, NULL, grad_concat),
    OP(OP_SLICE, "slice", fwd_slice, NULL, grad_slice),
    OP(OP_PAD, "pad", fwd_pad, NULL, grad_pad),
    OP(OP_MATMUL, "matmul", fwd_matmul, NULL, grad_matmul),
    OP(OP_CONV, "conv2d", fwd_conv, scratch_conv, grad_conv),
    OP(OP_CONV_DX, "conv2d_dx", fwd_conv_dx, scratch_conv, grad_conv_dx),
    OP(OP_CONV_DW, "conv2d_dw", fwd_conv_dw, scratch_conv, grad_conv_dw),
    OP(OP_MAXPOOL, "maxpool2d", fwd_maxpool, NULL, grad_maxpool),
    OP(OP_MAXPOOL_SCATTER, "maxpool2d_scatter", fwd_maxpool_scatter, NULL, grad_maxpool_scatter),
    OP(OP_MAXPOOL_GATHER, "maxpool2d_gather", fwd_maxpool_gather, NULL, grad_maxpool_gather),
    OP(OP_AVGPOOL, "avgpool2d", fwd_avgpool, NULL, grad_avgpool),
    OP(OP_AVGPOOL_DX, "avgpool2d_dx", fwd_avgpool_dx, NULL, grad_avgpool_dx),
    OP(OP_PAD2D, "pad2d", fwd_pad2d, NULL, grad_pad2d),
    OP(OP_LOG_SOFTMAX, "log_softmax", fwd_log_softmax, NULL, grad_log_softmax),
    OP(OP_ONE_HOT, "one_hot", fwd_one_hot, NULL, grad_one_hot),
    OP(OP_ARGMAX_EQ, "argmax_eq", fwd_argmax_eq, NULL, grad_argmax_eq),
    OP(OP_STOP_GRAD, "stop_gradient", fwd_stop_grad, NULL, grad_stop_grad),
    OP(OP_BN_NORM, "bn_normalize", fwd_bn_norm, NULL, grad_bn_norm),
    OP(OP_BN_RSTD, "bn_rstd", fwd_bn_rstd, NULL, grad_bn_rstd),
    OP(OP_BN_DX, "bn_dx", fwd_bn_dx, NULL, grad_bn_dx),
};
#undef OP

mela_graph *mela_graph_new(void)
{
    mela_graph *g = calloc(1, sizeof *g);
    if (!g)
        mela_set_error("graph: out of memory");
    return g;
}

void mela_graph_free(mela_graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n; i++)
        free(g->nodes[i].name);
    free(g->nodes);
    free(g->error);
    free(g);
}

const char *mela_graph_error(const mela_graph *g) { return g->error; }
int mela_graph_count(const mela_graph *g) { return g->n; }

mela_shape mela_node_shape(const mela_graph *g, mela_node x)
{
    mela_shape none = {0, {0, 0, 0, 0}};
    return x >= 0 && x < g->n ? g->nodes[x].shape : none;
}

const char *mela_node_op(const mela_graph *g, mela_node x)
{
    return x >= 0 && x < g->n ? mela_ops[g->nodes[x].op].name : "none";
}

mela_node graph_fail(mela_graph *g, const char *fmt, ...)
{
    if (g->error)
        return MELA_NONE;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g->error = strdup(buf);
    mela_set_error("%s", buf);
    return MELA_NONE;
}

int graph_valid(mela_graph *g, const char *op, int n, const mela_node *x)
{
    for (int i = 0; i < n; i++)
        if (x[i] < 0 || x[i] >= g->n) {
            if (!g->error)
                graph_fail(g, "%s: input %d is not a node of this graph (%d)", op, i, x[i]);
            return 0;
        }
    return g->error == NULL; /* builders are sticky after the first error */
}

mela_node graph_push(mela_graph *g, const mnode *n)
{
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 256;
        mnode *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes)
            return graph_fail(g, "graph: out of memory at %d nodes", g->n);
        g->nodes = nodes;
        g->cap = cap;
    }
    mnode *m = &g->nodes[g->n];
    *m = *n;
    m->numel = mela_shape_numel(n->shape);
    return g->n++;
}

static int shape_ok(mela_shape s)
{
    if (s.nd < 1 || s.nd > MELA_MAX_DIMS)
        return 0;
    for (int i = 0; i < s.nd; i++)
        if (s.d[i] < 1)
            return 0;
    return 1;
}

mela_node mela_input(mela_graph *g, const char *name, mela_shape shape)
{
    char b[64];
    if (!shape_ok(shape))
        return graph_fail(g, "input '%s': invalid shape %s", name ? name : "",
                          mela_shape_str(shape, b, sizeof b));
    mnode n = {.op = OP_INPUT, .shape = shape, .name = strdup(name ? name : "")};
    mela_node id = graph_push(g, &n);
    if (id == MELA_NONE)
        free(n.name);
    return id;
}

mela_node mela_param(mela_graph *g, const mela_layout *L, int i)
{
    if (!L || i < 0 || i >= mela_layout_count(L))
        return graph_fail(g, "param: index %d is not in the layout", i);
    if (g->layout && g->layout != L)
        return graph_fail(g, "param '%s': all parameters of a graph must share one layout",
                          mela_layout_name(L, i));
    g->layout = L;
    mnode n = {.op = OP_PARAM, .shape = mela_layout_shape(L, i), .offset = mela_layout_offset(L, i)};
    n.i[0] = i;
    return graph_push(g, &n);
}

mela_node mela_constant(mela_graph *g, mela_shape shape, float value)
{
    char b[64];
    if (!shape_ok(shape))
        return graph_fail(g, "constant: invalid shape %s", mela_shape_str(shape, b, sizeof b));
    mnode n = {.op = OP_CONST, .shape = shape, .f = value};
    return graph_push(g, &n);
}
