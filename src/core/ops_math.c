/*
 * ops_math.c - elementwise, reduction and shape ops: for each, the builder
 * (shape rule), the forward (a kernel call) and the gradient rule, built from
 * ops that have rules of their own.
 */
#include <string.h>

#include "core/graph_impl.h"
#include "core/par.h"
#include "kernels/kernels.h"

FWD(const)
{
    for (size_t i = 0; i < n->numel; i++)
        y[i] = n->f;
    return 0;
}

/* ---------------------------------------------------------------- binary */

static mela_node binary(mela_graph *g, int op, const char *name, mela_node a, mela_node b)
{
    char b1[64], b2[64];
    VALID(name, a, b);
    mela_shape out;
    if (shape_broadcast(g->nodes[a].shape, g->nodes[b].shape, &out))
        return graph_fail(g, "%s: shapes %s and %s do not broadcast", name,
                          mela_shape_str(g->nodes[a].shape, b1, sizeof b1),
                          mela_shape_str(g->nodes[b].shape, b2, sizeof b2));
    return push2(g, op, a, b, out);
}

mela_node mela_add(mela_graph *g, mela_node a, mela_node b) { return binary(g, OP_ADD, "add", a, b); }
mela_node mela_sub(mela_graph *g, mela_node a, mela_node b) { return binary(g, OP_SUB, "sub", a, b); }
mela_node mela_mul(mela_graph *g, mela_node a, mela_node b) { return binary(g, OP_MUL, "mul", a, b); }
mela_node mela_div(mela_graph *g, mela_node a, mela_node b) { return binary(g, OP_DIV, "div", a, b); }

typedef struct binary_job {
    enum mk_binop op;
    float *y;
    const float *a, *b;
    long as[4], bs[4];
    int d[4];
} binary_job;

/* Rows lo..hi-1 of the outermost axis. */
static void binary_rows(void *arg, size_t lo, size_t hi)
{
    const binary_job *j = arg;
    int d[4] = {(int)(hi - lo), j->d[1], j->d[2], j->d[3]};
    size_t row = (size_t)j->d[1] * j->d[2] * j->d[3];
    mk_binary(j->op, j->y + lo * row, j->a + (long)lo * j->as[0], j->as, j->b + (long)lo * j->bs[0], j->bs, d);
}

static int binary_fwd(enum mk_binop op, const mela_graph *g, const mnode *n, float *y,
                      const float *const *x, int threads)
{
    binary_job j = {op, y, x[0], x[1], {0}, {0}, {0}};
    shape4(n->shape, j.d);
    shape_bstrides(in_shape(g, n, 0), n->shape, j.as);
    shape_bstrides(in_shape(g, n, 1), n->shape, j.bs);
    par_range(threads, (size_t)j.d[0], n->numel, binary_rows, &j);
    return 0;
}

FWD(add) { return binary_fwd(MK_ADD, g, n, y, x, threads); }
FWD(sub) { return binary_fwd(MK_SUB, g, n, y, x, threads); }
FWD(mul) { return binary_fwd(MK_MUL, g, n, y, x, threads); }
FWD(div) { return binary_fwd(MK_DIV, g, n, y, x, threads); }

typedef struct unary_job {
    enum mk_unop op;
    float *y;
    const float *x, *dy;
    float a;
} unary_job;

static void unary_range(void *arg, size_t lo, size_t hi)
{
    const unary_job *j = arg;
    if (j->dy)
        mk_relu_grad(j->y + lo, j->x + lo, j->dy + lo, hi - lo, j->a);
    else
        mk_unary(j->op, j->y + lo, j->x + lo, hi - lo, j->a);
}

/* y = op(x) elementwise (relu_grad when dy is given), split over threads. */
static int unary_fwd(enum mk_unop op, float *y, const float *x, const float *dy, size_t n, float a, int threads)
{
    unary_job j = {op, y, x, dy, a};
    par_range(threads, n, n, unary_range, &j);
    return 0;
}

/* Sums a broadcast gradient back to the shape of the operand. */
static mela_node unbroadcast(mela_graph *g, mela_node d, mela_shape s)
{
    if (d < 0)
        return MELA_NONE;
    return mela_shape_equal(g->nodes[d].shape, s) ? d : mela_sum_to(g, d, s);
}

/* Gradient rules copy what they read from g->nodes into locals first: a
 * builder may move g->nodes, and the order in which C evaluates a call's
 * arguments is unspecified. */
GRAD(add)
{
    mela_node a = g->nodes[self].in[0], b = g->nodes[self].in[1];
    mela_shape sa = g->nodes[a].shape, sb = g->nodes[b].shape;
    if (need[0]) dx[0] = unbroadcast(g, dy, sa);
    if (need[1]) dx[1] = unbroadcast(g, dy, sb);
}

GRAD(sub)
{
    mela_node a = g->nodes[self].in[0], b = g->nodes[self].in[1];
    mela_shape sa = g->nodes[a].shape, sb = g->nodes[b].shape;
    if (need[0]) dx[0] = unbroadcast(g, dy, sa);
    if (need[1]) dx[1] = mela_neg(g, unbroadcast(g, dy, sb));
}

GRAD(mul)
{
    mela_node a = g->nodes[self].in[0], b = g->nodes[self].in[1];
    mela_shape sa = g->nodes[a].shape, sb = g->nodes[b].shape;
    if (need[0]) dx[0] = unbroadcast(g, mela_mul(g, dy, b), sa);
    if (need[1]) dx[1] = unbroadcast(g, mela_mul(g, dy, a), sb);
}

GRAD(div)
{
    /* y = a / b: da = dy / b, db = -dy * a / b^2 = -(dy / b) * y */
    mela_node a = g->nodes[self].in[0], b = g->nodes[self].in[1];
    mela_shape sa = g->nodes[a].shape, sb = g->nodes[b].shape;
    mela_node t = mela_div(g, dy, b);
    if (need[0]) dx[0] = unbroadcast(g, t, sa);
    if (need[1]) dx[1] = unbroadcast(g, mela_neg(g, mela_mul(g, t, self)), sb);
}

/* ---------------------------------------------------------------- scalar */

mela_node mela_scale(mela_graph *g, mela_node x, float a)
{
    VALID("scale", x);
    return push1(g, OP_SCALE, x, g->nodes[x].shape, a);
}

mela_node mela_add_scalar(mela_graph *g, mela_node x, float a)
{
    VALID("add_scalar", x);
    return push1(g, OP_ADDS, x, g->nodes[x].shape, a);
}

mela_node mela_neg(mela_graph *g, mela_node x) { return mela_scale(g, x, -1.0f); }

FWD(scale) { return unary_fwd(MK_SCALE, y, x[0], NULL, n->numel, n->f, threads); }
FWD(adds) { return unary_fwd(MK_ADDS, y, x[0], NULL, n->numel, n->f, threads); }
GRAD(scale) { dx[0] = mela_scale(g, dy, g->nodes[self].f); }
GRAD(adds) { dx[0] = dy; }

/* ----------------------------------------------------------------- unary */

static mela_node unary(mela_graph *g, int op, const char *name, mela_node x, float a)
{
    VALID(name, x);
    return push1(g, op, x, g->nodes[x].shape, a);
}

mela_node mela_relu(mela_graph *g, mela_node x) { return unary(g, OP_RELU, "relu", x, 0); }
mela_node mela_leaky_relu(mela_graph *g, mela_node x, float slope) { return unary(g, OP_LEAKY, "leaky_relu", x, slope); }
mela_node mela_sigmoid(mela_graph *g, mela_node x) { return unary(g, OP_SIGMOID, "sigmoid", x, 0); }
mela_node mela_tanh(mela_graph *g, mela_node x) { return unary(g, OP_TANH, "tanh", x, 0); }
mela_node mela_exp(mela_graph *g, mela_node x) { return unary(g, OP_EXP, "exp", x, 0); }
mela_node mela_log(mela_graph *g, mela_node x) { return unary(g, OP_LOG, "log", x, 0); }
mela_node mela_abs(mela_graph *g, mela_node x) { return unary(g, OP_ABS, "abs", x, 0); }
mela_node op_sign(mela_graph *g, mela_node x) { return unary(g, OP_SIGN, "sign", x, 0); }
mela_node mela_square(mela_graph *g, mela_node x) { return unary(g, OP_SQUARE, "square", x, 0); }
mela_node mela_sqrt(mela_graph *g, mela_node x) { return unary(g, OP_SQRT, "sqrt", x, 0); }
mela_node mela_softplus(mela_graph *g, mela_node x) { return unary(g, OP_SOFTPLUS, "softplus", x, 0); }

mela_node op_relu_grad(mela_graph *g, mela_node x, mela_node dy, float slope)
{
    char b1[64], b2[64];
    VALID("relu_grad", x, dy);
    if (!mela_shape_equal(g->nodes[x].shape, g->nodes[dy].shape))
        return graph_fail(g, "relu_grad: x %s and dy %s differ",
                          mela_shape_str(g->nodes[x].shape, b1, sizeof b1),
                          mela_shape_str(g->nodes[dy].shape, b2, sizeof b2));
    mnode n = {.op = OP_RELU_GRAD, .nin = 2, .in = {x, dy}, .shape = g->nodes[x].shape, .f = slope};
    return graph_push(g, &n);
}

FWD(relu) { return unary_fwd(MK_RELU, y, x[0], NULL, n->numel, 0, threads); }
FWD(leaky) { return unary_fwd(MK_LEAKY, y, x[0], NULL, n->numel, n->f, threads); }
FWD(relu_grad) { return unary_fwd(MK_RELU, y, x[0], x[1], n->numel, n->f, threads); }
FWD(sigmoid) { return unary_fwd(MK_SIGMOID, y, x[0], NULL, n->numel, 0, threads); }
FWD(tanh) { return unary_fwd(MK_TANH, y, x[0], NULL, n->numel, 0, threads); }
FWD(exp) { return unary_fwd(MK_EXP, y, x[0], NULL, n->numel, 0, threads); }
FWD(log) { return unary_fwd(MK_LOG, y, x[0], NULL, n->numel, 0, threads); }
FWD(abs) { return unary_fwd(MK_ABS, y, x[0], NULL, n->numel, 0, threads); }
FWD(sign) { return unary_fwd(MK_SIGN, y, x[0], NULL, n->numel, 0, threads); }
FWD(square) { return unary_fwd(MK_SQUARE, y, x[0], NULL, n->numel, 0, threads); }
FWD(sqrt) { return unary_fwd(MK_SQRT, y, x[0], NULL, n->numel, 0, threads); }
FWD(softplus) { return unary_fwd(MK_SOFTPLUS, y, x[0], NULL, n->numel, 0, threads); }

/* relu'(x) is a step: its own derivative is zero almost everywhere, so the
 * mask op relu_grad(x, dy) has a zero gradient in x and is linear in dy. */
GRAD(relu) { dx[0] = op_relu_grad(g, g->nodes[self].in[0], dy, 0.0f); }
GRAD(leaky) { dx[0] = op_relu_grad(g, g->nodes[self].in[0], dy, g->nodes[self].f); }
GRAD(relu_grad)
{
    mnode n = g->nodes[self];
    if (need[0]) dx[0] = GRAD_ZERO;
    if (need[1]) dx[1] = op_relu_grad(g, n.in[0], dy, n.f);
}
GRAD(sigmoid)
{
    /* s' = s (1 - s) */
    mela_node s = self;
    dx[0] = mela_mul(g, dy, mela_mul(g, s, mela_add_scalar(g, mela_neg(g, s), 1.0f)));
}
GRAD(tanh)
{
    /* t' = 1 - t^2 */
    dx[0] = mela_mul(g, dy, mela_add_scalar(g, mela_neg(g, mela_square(g, self)), 1.0f));
}
GRAD(exp) { dx[0] = mela_mul(g, dy, self); }
GRAD(log) { dx[0] = mela_div(g, dy, g->nodes[self].in[0]); }
GRAD(abs) { mela_node x = g->nodes[self].in[0]; dx[0] = mela_mul(g, dy, op_sign(g, x)); }
GRAD(sign) { dx[0] = GRAD_ZERO; }
GRAD(square) { mela_node x = g->nodes[self].in[0]; dx[0] = mela_scale(g, mela_mul(g, dy, x), 2.0f); }
GRAD(sqrt) { dx[0] = mela_div(g, mela_scale(g, dy, 0.5f), self); }
GRAD(softplus) { mela_node x = g->nodes[self].in[0]; dx[0] = mela_mul(g, dy, mela_sigmoid(g, x)); }

/* ------------------------------------------------------------ reductions */

mela_node mela_sum_to(mela_graph *g, mela_node x, mela_shape shape)
{
    char b1[64], b2[64];
    VALID("sum_to", x);
    mela_shape xs = g->nodes[x].shape, out;
    if (shape.nd < 1 || shape.nd > xs.nd || shape_broadcast(shape, xs, &out) ||
        !mela_shape_equal(out, xs))
        return graph_fail(g, "sum_to: %s cannot be summed to %s", mela_shape_str(xs, b1, sizeof b1),
                          mela_shape_str(shape, b2, sizeof b2));
    if (mela_shape_equal(shape, xs))
        return x;
    return push1(g, OP_SUM_TO, x, shape, 0);
}

mela_node mela_broadcast_to(mela_graph *g, mela_node x, mela_shape shape)
{
    char b1[64], b2[64];
    VALID("broadcast_to", x);
    mela_shape xs = g->nodes[x].shape, out;
    if (shape.nd < xs.nd || shape_broadcast(xs, shape, &out) || !mela_shape_equal(out, shape))
        return graph_fail(g, "broadcast_to: %s cannot be broadcast to %s",
                          mela_shape_str(xs, b1, sizeof b1), mela_shape_str(shape, b2, sizeof b2));
    if (mela_shape_equal(shape, xs))
        return x;
    return push1(g, OP_BROADCAST, x, shape, 0);
}

FWD(sum_to)
{
    int d[4];
    long ys[4];
    mela_shape xs = in_shape(g, n, 0);
    shape4(xs, d);
    shape_bstrides(n->shape, xs, ys);
    mk_sum_to_threads(y, n->numel, x[0], d, ys, threads);
    return 0;
}

FWD(broadcast)
{
    /* y = x + 0 with x broadcast: the binary kernel with a zero operand
     * would read memory we do not have, so use stride-0 copies directly. */
    int d[4];
    long xs[4];
    shape4(n->shape, d);
    shape_bstrides(in_shape(g, n, 0), n->shape, xs);
    size_t o = 0;
    for (int i0 = 0; i0 < d[0]; i0++)
        for (int i1 = 0; i1 < d[1]; i1++)
            for (int i2 = 0; i2 < d[2]; i2++) {
                const float *px = x[0] + i0 * xs[0] + i1 * xs[1] + i2 * xs[2];
                if (xs[3])
                    memcpy(y + o, px, d[3] * sizeof *y);
                else
                    for (int i = 0; i < d[3]; i++)
                        y[o + i] = px[0];
                o += d[3];
            }
    return 0;
}

GRAD(sum_to) { dx[0] = mela_broadcast_to(g, dy, g->nodes[g->nodes[self].in[0]].shape); }
GRAD(broadcast) { dx[0] = mela_sum_to(g, dy, g->nodes[g->nodes[self].in[0]].shape); }

mela_node mela_sum(mela_graph *g, mela_node x) { return mela_sum_to(g, x, MELA_SHAPE(1)); }

mela_node mela_mean(mela_graph *g, mela_node x)
{
    VALID("mean", x);
    float inv = 1.0f / (float)g->nodes[x].numel;
    return mela_scale(g, mela_sum(g, x), inv);
}

mela_node mela_sum_axis(mela_graph *g, mela_node x, int axis)
{
    VALID("sum_axis", x);
    mela_shape s = g->nodes[x].shape;
    if (axis < 0)
        axis += s.nd;
    if (axis < 0 || axis >= s.nd)
        return graph_fail(g, "sum_axis: axis %d out of range for %d dimensions", axis, s.nd);
    s.d[axis] = 1;
    return mela_sum_to(g, x, s);
}

mela_node mela_mean_axis(mela_graph *g, mela_node x, int axis)
{
    VALID("mean_axis", x);
    mela_shape s = g->nodes[x].shape;
    int a = axis < 0 ? axis + s.nd : axis;
    if (a < 0 || a >= s.nd)
        return graph_fail(g, "mean_axis: axis %d out of range for %d dimensions", axis, s.nd);
    return mela_scale(g, mela_sum_axis(g, x, a), 1.0f / (float)s.d[a]);
}

/* ---------------------------------------------------------------- shapes */

mela_node mela_reshape(mela_graph *g, mela_node x, mela_shape shape)
{
    char b1[64], b2[64];
    VALID("reshape", x);
    mela_shape xs = g->nodes[x].shape;
    if (shape.nd < 1 || mela_shape_numel(shape) != g->nodes[x].numel)
        return graph_fail(g, "reshape: %s has %zu elements, %s has %zu",
                          mela_shape_str(xs, b1, sizeof b1), g->nodes[x].numel,
                          mela_shape_str(shape, b2, sizeof b2), mela_shape_numel(shape));
    if (mela_shape_equal(shape, xs))
        return x;
    return push1(g, OP_RESHAPE, x, shape, 0);
}

mela_node mela_flatten(mela_graph *g, mela_node x)
{
    VALID("flatten", x);
    mela_shape s = g->nodes[x].shape;
    return mela_reshape(g, x, MELA_SHAPE(s.d[0], (int)(g->nodes[x].numel / s.d[0])));
}

FWD(reshape) { memcpy(y, x[0], n->numel * sizeof *y); return 0; }
GRAD(reshape) { dx[0] = mela_reshape(g, dy, g->nodes[g->nodes[self].in[0]].shape); }

mela_node mela_concat(mela_graph *g, mela_node a, mela_node b)
{
    char b1[64], b2[64];
    VALID("concat", a, b);
    mela_shape sa = g->nodes[a].shape, sb = g->nodes[b].shape;
    int ok = sa.nd == sb.nd;
    for (int i = 1; i < sa.nd && ok; i++)
        ok = sa.d[i] == sb.d[i];
    if (!ok)
        return graph_fail(g, "concat: %s and %s differ beyond axis 0",
                          mela_shape_str(sa, b1, sizeof b1), mela_shape_str(sb, b2, sizeof b2));
    sa.d[0] += sb.d[0];
    return push2(g, OP_CONCAT, a, b, sa);
}

FWD(concat)
{
    size_t na = g->nodes[n->in[0]].numel;
    memcpy(y, x[0], na * sizeof *y);
    memcpy(y + na, x[1], (n->numel - na) * sizeof *y);
    return 0;
}

GRAD(concat)
{
    int na = g->nodes[g->nodes[self].in[0]].shape.d[0];
    int nb = g->nodes[g->nodes[self].in[1]].shape.d[0];
    if (need[0]) dx[0] = mela_slice(g, dy, 0, na);
    if (need[1]) dx[1] = mela_slice(g, dy, na, nb);
}

mela_node mela_slice(mela_graph *g, mela_node x, int start, int len)
{
    char b1[64];
    VALID("slice", x);
    mela_shape s = g->nodes[x].shape;
    if (start < 0 || len < 1 || start + len > s.d[0])
        return graph_fail(g, "slice: rows [%d, %d) are not inside %s", start, start + len,
                          mela_shape_str(s, b1, sizeof b1));
    if (start == 0 && len == s.d[0])
        return x;
    s.d[0] = len;
    mnode n = {.op = OP_SLICE, .nin = 1, .in = {x}, .shape = s, .i = {start}};
    return graph_push(g, &n);
}

mela_node op_pad(mela_graph *g, mela_node x, int start, int total)
{
    VALID("pad", x);
    mela_shape s = g->nodes[x].shape;
    if (start < 0 || start + s.d[0] > total)
        return graph_fail(g, "pad: rows [%d, %d) are not inside %d", start, start + s.d[0], total);
    s.d[0] = total;
    mnode n = {.op = OP_PAD, .nin = 1, .in = {x}, .shape = s, .i = {start}};
    return graph_push(g, &n);
}

FWD(slice)
{
    size_t row = n->numel / n->shape.d[0];
    memcpy(y, x[0] + (size_t)n->i[0] * row, n->numel * sizeof *y);
    return 0;
}

FWD(pad)
{
    size_t row = n->numel / n->shape.d[0], nin = g->nodes[n->in[0]].numel;
    memset(y, 0, n->numel * sizeof *y);
    memcpy(y + (size_t)n->i[0] * row, x[0], nin * sizeof *y);
    return 0;
}

GRAD(slice)
{
    mnode n = g->nodes[self];
    dx[0] = op_pad(g, dy, n.i[0], g->nodes[n.in[0]].shape.d[0]);
}

GRAD(pad)
{
    mnode n = g->nodes[self];
    dx[0] = mela_slice(g, dy, n.i[0], g->nodes[n.in[0]].shape.d[0]);
}

mela_node mela_stop_gradient(mela_graph *g, mela_node x)
{
    VALID("stop_gradient", x);
    return push1(g, OP_STOP_GRAD, x, g->nodes[x].shape, 0);
}

FWD(stop_grad) { memcpy(y, x[0], n->numel * sizeof *y); return 0; }
GRAD(stop_grad) { dx[0] = GRAD_ZERO; }
