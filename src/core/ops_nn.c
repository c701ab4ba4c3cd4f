/*
 * ops_nn.c - matmul, convolution, pooling and the softmax family, with their
 * gradient rules, and the composite layers and losses built from ops
 * (linear, batch norm, cross-entropy, distances). A composite needs no rule
 * of its own: its gradient, and the gradient of that, come from its parts.
 */
#include <math.h>

#include "core/graph_impl.h"
#include "core/par.h"
#include "kernels/kernels.h"

/* ---------------------------------------------------------------- matmul */

mela_node mela_matmul(mela_graph *g, mela_node a, mela_node b, int ta, int tb)
{
    char b1[64], b2[64];
    VALID("matmul", a, b);
    mela_shape sa = g->nodes[a].shape, sb = g->nodes[b].shape;
    if (sa.nd != 2 || sb.nd != 2)
        return graph_fail(g, "matmul: operands must be 2-D, got %s and %s",
                          mela_shape_str(sa, b1, sizeof b1), mela_shape_str(sb, b2, sizeof b2));
    int m = ta ? sa.d[1] : sa.d[0], ka = ta ? sa.d[0] : sa.d[1];
    int kb = tb ? sb.d[1] : sb.d[0], nn = tb ? sb.d[0] : sb.d[1];
    if (ka != kb)
        return graph_fail(g, "matmul: inner sizes differ: %s%s times %s%s",
                          mela_shape_str(sa, b1, sizeof b1), ta ? "^T" : "",
                          mela_shape_str(sb, b2, sizeof b2), tb ? "^T" : "");
    mnode n = {.op = OP_MATMUL, .nin = 2, .in = {a, b}, .shape = MELA_SHAPE(m, nn),
               .i = {ta != 0, tb != 0, ka}};
    return graph_push(g, &n);
}

FWD(matmul)
{
    mela_shape sa = in_shape(g, n, 0), sb = in_shape(g, n, 1);
    mk_gemm(n->i[0], n->i[1], n->shape.d[0], n->shape.d[1], n->i[2], 1.0f, x[0], sa.d[1], x[1],
            sb.d[1], 0.0f, y, n->shape.d[1]);
    return 0;
}

GRAD(matmul)
{
    /* C = A'B' with A' = op(A), B' = op(B): dA' = dC B'^T, dB' = A'^T dC. */
    mnode n = g->nodes[self];
    mela_node a = n.in[0], b = n.in[1];
    int ta = n.i[0], tb = n.i[1];
    if (need[0])
        dx[0] = ta ? mela_matmul(g, b, dy, tb, 1) : mela_matmul(g, dy, b, 0, !tb);
    if (need[1])
        dx[1] = tb ? mela_matmul(g, dy, a, 1, ta) : mela_matmul(g, a, dy, !ta, 0);
}

mela_node mela_linear(mela_graph *g, mela_node x, mela_node w, mela_node b)
{
    char b1[64], b2[64];
    VALID("linear", x, w);
    mela_node y = mela_matmul(g, x, w, 0, 1);
    if (b == MELA_NONE || y == MELA_NONE)
        return y;
    VALID("linear", b);
    mela_shape sb = g->nodes[b].shape, sy = g->nodes[y].shape;
    if (mela_shape_numel(sb) != (size_t)sy.d[1])
        return graph_fail(g, "linear: bias %s does not fit output %s",
                          mela_shape_str(sb, b1, sizeof b1), mela_shape_str(sy, b2, sizeof b2));
    return mela_add(g, y, mela_reshape(g, b, MELA_SHAPE(1, sy.d[1])));
}

/* ------------------------------------------------------------------ conv */

static mk_conv conv_geom(mela_shape xs, mela_shape ws, int stride, int pad)
{
    mk_conv cv = {xs.d[0], xs.d[1], xs.d[2], xs.d[3], ws.d[0], ws.d[2], ws.d[3], stride, pad, 0, 0, 1, 0};
    mk_conv_init(&cv);
    return cv;
}

/* The geometry of a conv-family node from its inputs and shapes. */
static mk_conv node_geom(const mela_graph *g, const mnode *n)
{
    switch (n->op) {
    case OP_CONV: return conv_geom(in_shape(g, n, 0), in_shape(g, n, 1), n->i[0], n->i[1]);
    case OP_CONV_DX: return conv_geom(n->shape, in_shape(g, n, 1), n->i[0], n->i[1]);
    default: return conv_geom(in_shape(g, n, 0), n->shape, n->i[0], n->i[1]);
    }
}

size_t scratch_conv(const mela_graph *g, const mnode *n)
{
    mk_conv cv = node_geom(g, n);
    return mk_conv_scratch(&cv);
}

/* Checks x (N,C,H,W) against w (OC,C,KH,KW); returns the output shape. */
static int conv_check(mela_graph *g, const char *op, mela_shape xs, mela_shape ws, int stride,
                      int pad, mela_shape *ys)
{
    char b1[64], b2[64];
    mela_shape_str(xs, b1, sizeof b1);
    mela_shape_str(ws, b2, sizeof b2);
    if (xs.nd != 4 || ws.nd != 4)
        return graph_fail(g, "%s: input %s and weight %s must both be 4-D", op, b1, b2), -1;
    if (xs.d[1] != ws.d[1])
        return graph_fail(g, "%s: input %s and weight %s disagree on channels", op, b1, b2), -1;
    if (stride < 1 || pad < 0)
        return graph_fail(g, "%s: stride %d must be >= 1 and padding %d >= 0", op, stride, pad), -1;
    mk_conv cv = conv_geom(xs, ws, stride, pad);
    if (xs.d[2] + 2 * pad < ws.d[2] || xs.d[3] + 2 * pad < ws.d[3] || cv.OH < 1 || cv.OW < 1)
        return graph_fail(g, "%s: kernel of %s is larger than input %s padded by %d", op, b2, b1,
                          pad), -1;
    *ys = MELA_SHAPE(xs.d[0], ws.d[0], cv.OH, cv.OW);
    return 0;
}

mela_node op_conv(mela_graph *g, mela_node x, mela_node w, int stride, int pad)
{
    VALID("conv2d", x, w);
    mela_shape ys;
    if (conv_check(g, "conv2d", g->nodes[x].shape, g->nodes[w].shape, stride, pad, &ys))
        return MELA_NONE;
    mnode n = {.op = OP_CONV, .nin = 2, .in = {x, w}, .shape = ys, .i = {stride, pad}};
    return graph_push(g, &n);
}

mela_node mela_conv2d(mela_graph *g, mela_node x, mela_node w, mela_node b, int stride, int pad)
{
    char b1[64], b2[64];
    mela_node y = op_conv(g, x, w, stride, pad);
    if (b == MELA_NONE || y == MELA_NONE)
        return y;
    VALID("conv2d", b);
    int oc = g->nodes[w].shape.d[0];
    if (g->nodes[b].numel != (size_t)oc)
        return graph_fail(g, "conv2d: bias %s does not fit weight %s",
                          mela_shape_str(g->nodes[b].shape, b1, sizeof b1),
                          mela_shape_str(g->nodes[w].shape, b2, sizeof b2));
    return mela_add(g, y, mela_reshape(g, b, MELA_SHAPE(1, oc, 1, 1)));
}

mela_node op_conv_dx(mela_graph *g, mela_node dy, mela_node w, mela_shape xs, int stride, int pad)
{
    char b1[64], b2[64];
    VALID("conv2d_dx", dy, w);
    mela_shape ys;
    if (conv_check(g, "conv2d_dx", xs, g->nodes[w].shape, stride, pad, &ys))
        return MELA_NONE;
    if (!mela_shape_equal(ys, g->nodes[dy].shape))
        return graph_fail(g, "conv2d_dx: dy %s is not the output shape %s",
                          mela_shape_str(g->nodes[dy].shape, b1, sizeof b1),
                          mela_shape_str(ys, b2, sizeof b2));
    mnode n = {.op = OP_CONV_DX, .nin = 2, .in = {dy, w}, .shape = xs, .i = {stride, pad}};
    return graph_push(g, &n);
}

mela_node op_conv_dw(mela_graph *g, mela_node x, mela_node dy, mela_shape ws, int stride, int pad)
{
    char b1[64], b2[64];
    VALID("conv2d_dw", x, dy);
    mela_shape ys;
    if (conv_check(g, "conv2d_dw", g->nodes[x].shape, ws, stride, pad, &ys))
        return MELA_NONE;
    if (!mela_shape_equal(ys, g->nodes[dy].shape))
        return graph_fail(g, "conv2d_dw: dy %s is not the output shape %s",
                          mela_shape_str(g->nodes[dy].shape, b1, sizeof b1),
                          mela_shape_str(ys, b2, sizeof b2));
    mnode n = {.op = OP_CONV_DW, .nin = 2, .in = {x, dy}, .shape = ws, .i = {stride, pad}};
    return graph_push(g, &n);
}

FWD(conv) { mk_conv cv = node_geom(g, n); cv.threads = threads; mk_conv2d(y, x[0], x[1], &cv, scratch); return 0; }
FWD(conv_dx) { mk_conv cv = node_geom(g, n); cv.threads = threads; mk_conv2d_dx(y, x[0], x[1], &cv, scratch); return 0; }
FWD(conv_dw) { mk_conv cv = node_geom(g, n); cv.threads = threads; mk_conv2d_dw(y, x[0], x[1], &cv, scratch); return 0; }

/* conv(x, w), conv_dx(dy, w) and conv_dw(x, dy) are one trilinear form
 * <conv(x, w), dy> read three ways, so each one's gradients are the other
 * two: closed under differentiation to any order. */
GRAD(conv)
{
    mnode n = g->nodes[self];
    mela_shape xs = g->nodes[n.in[0]].shape, ws = g->nodes[n.in[1]].shape;
    if (need[0]) dx[0] = op_conv_dx(g, dy, n.in[1], xs, n.i[0], n.i[1]);
    if (need[1]) dx[1] = op_conv_dw(g, n.in[0], dy, ws, n.i[0], n.i[1]);
}

GRAD(conv_dx)
{
    /* y = conv_dx(d, w) (shape of x); <y, G> = <conv(G, w), d> = <conv_dw(G, d), w> */
    mnode n = g->nodes[self];
    mela_shape ws = g->nodes[n.in[1]].shape;
    if (need[0]) dx[0] = op_conv(g, dy, n.in[1], n.i[0], n.i[1]);
    if (need[1]) dx[1] = op_conv_dw(g, dy, n.in[0], ws, n.i[0], n.i[1]);
}

GRAD(conv_dw)
{
    /* y = conv_dw(x, d) (shape of w); <y, G> = <conv(x, G), d> = <conv_dx(d, G), x> */
    mnode n = g->nodes[self];
    mela_shape xs = g->nodes[n.in[0]].shape;
    if (need[0]) dx[0] = op_conv_dx(g, n.in[1], dy, xs, n.i[0], n.i[1]);
    if (need[1]) dx[1] = op_conv(g, n.in[0], dy, n.i[0], n.i[1]);
}

/* --------------------------------------------------------------- pooling */

static int pool_check(mela_graph *g, const char *op, mela_shape xs, int k, int s, mela_shape *ys)
{
    char b1[64];
    if (xs.nd != 4)
        return graph_fail(g, "%s: input %s must be 4-D", op, mela_shape_str(xs, b1, sizeof b1)), -1;
    if (k < 1 || s < 1 || k > xs.d[2] || k > xs.d[3])
        return graph_fail(g, "%s: window %d, stride %d do not fit input %s", op, k, s,
                          mela_shape_str(xs, b1, sizeof b1)), -1;
    *ys = MELA_SHAPE(xs.d[0], xs.d[1], (xs.d[2] - k) / s + 1, (xs.d[3] - k) / s + 1);
    return 0;
}

static mela_node pool(mela_graph *g, int op, const char *name, mela_node x, int k, int s)
{
    VALID(name, x);
    mela_shape ys;
    if (pool_check(g, name, g->nodes[x].shape, k, s, &ys))
        return MELA_NONE;
    mnode n = {.op = op, .nin = 1, .in = {x}, .shape = ys, .i = {k, s}};
    return graph_push(g, &n);
}

mela_node mela_maxpool2d(mela_graph *g, mela_node x, int k, int s) { return pool(g, OP_MAXPOOL, "maxpool2d", x, k, s); }
mela_node mela_avgpool2d(mela_graph *g, mela_node x, int k, int s) { return pool(g, OP_AVGPOOL, "avgpool2d", x, k, s); }

/* A pool-family op with two inputs: (x, g) where g has shape `gs`. */
static mela_node pool2(mela_graph *g, int op, const char *name, mela_node x, mela_node t, int k,
                       int s, int out_is_x)
{
    char b1[64], b2[64];
    VALID(name, x, t);
    mela_shape ys, xs = g->nodes[x].shape;
    if (pool_check(g, name, xs, k, s, &ys))
        return MELA_NONE;
    mela_shape want = out_is_x ? ys : xs;
    if (!mela_shape_equal(g->nodes[t].shape, want))
        return graph_fail(g, "%s: gradient %s does not match %s", name,
                          mela_shape_str(g->nodes[t].shape, b1, sizeof b1),
                          mela_shape_str(want, b2, sizeof b2));
    mnode n = {.op = op, .nin = 2, .in = {x, t}, .shape = out_is_x ? xs : ys, .i = {k, s}};
    return graph_push(g, &n);
}

mela_node op_maxpool_scatter(mela_graph *g, mela_node x, mela_node dy, int k, int s)
{
    return pool2(g, OP_MAXPOOL_SCATTER, "maxpool2d_scatter", x, dy, k, s, 1);
}

mela_node op_maxpool_gather(mela_graph *g, mela_node x, mela_node gx, int k, int s)
{
    return pool2(g, OP_MAXPOOL_GATHER, "maxpool2d_gather", x, gx, k, s, 0);
}

mela_node op_avgpool_dx(mela_graph *g, mela_node dy, mela_shape xs, int k, int s)
{
    char b1[64], b2[64];
    VALID("avgpool2d_dx", dy);
    mela_shape ys;
    if (pool_check(g, "avgpool2d_dx", xs, k, s, &ys))
        return MELA_NONE;
    if (!mela_shape_equal(g->nodes[dy].shape, ys))
        return graph_fail(g, "avgpool2d_dx: dy %s is not the output shape %s",
                          mela_shape_str(g->nodes[dy].shape, b1, sizeof b1),
                          mela_shape_str(ys, b2, sizeof b2));
    mnode n = {.op = OP_AVGPOOL_DX, .nin = 1, .in = {dy}, .shape = xs, .i = {k, s}};
    return graph_push(g, &n);
}

#define PLANES(s) ((s).d[0] * (s).d[1]), (s).d[2], (s).d[3]

/* Max pooling and its two derivatives plane by plane, planes split over
 * threads (planes are independent). */
typedef struct pool_job {
    int op;
    float *y;
    const float *x, *z;
    int H, W, k, s, OH, OW;
} pool_job;

static void pool_planes(void *arg, size_t lo, size_t hi)
{
    const pool_job *j = arg;
    int P = (int)(hi - lo);
    size_t in = (size_t)j->H * j->W, out = (size_t)j->OH * j->OW;
    if (j->op == OP_MAXPOOL)
        mk_maxpool(j->y + lo * out, j->x + lo * in, P, j->H, j->W, j->k, j->s);
    else if (j->op == OP_MAXPOOL_SCATTER) /* dx (planes of x) from x and dy */
        mk_maxpool_scatter(j->y + lo * in, j->x + lo * in, j->z + lo * out, P, j->H, j->W, j->k, j->s);
    else /* gy (planes of y) from x and gx */
        mk_maxpool_gather(j->y + lo * out, j->x + lo * in, j->z + lo * in, P, j->H, j->W, j->k, j->s);
}

static int pool_fwd(const mela_graph *g, const mnode *n, float *y, const float *const *x, int threads)
{
    mela_shape xs = n->op == OP_MAXPOOL_SCATTER ? n->shape : in_shape(g, n, 0);
    int k = n->i[0], s = n->i[1], H = xs.d[2], W = xs.d[3];
    pool_job j = {n->op, y, x[0], x[1], H, W, k, s, (H - k) / s + 1, (W - k) / s + 1};
    size_t P = (size_t)xs.d[0] * xs.d[1];
    par_range(threads, P, P * H * W, pool_planes, &j);
    return 0;
}

FWD(maxpool) { return pool_fwd(g, n, y, x, threads); }
FWD(maxpool_scatter) { return pool_fwd(g, n, y, x, threads); }
FWD(maxpool_gather) { return pool_fwd(g, n, y, x, threads); }
FWD(avgpool) { mk_avgpool(y, x[0], PLANES(in_shape(g, n, 0)), n->i[0], n->i[1]); return 0; }
FWD(avgpool_dx) { mk_avgpool_dx(y, x[0], PLANES(n->shape), n->i[0], n->i[1]); return 0; }

/* The argmax of a window is piecewise constant in x: zero gradient in x. */
GRAD(maxpool)
{
    mnode n = g->nodes[self];
    dx[0] = op_maxpool_scatter(g, n.in[0], dy, n.i[0], n.i[1]);
}
GRAD(maxpool_scatter)
{
    mnode n = g->nodes[self];
    if (need[0]) dx[0] = GRAD_ZERO;
    if (need[1]) dx[1] = op_maxpool_gather(g, n.in[0], dy, n.i[0], n.i[1]);
}
GRAD(maxpool_gather)
{
    mnode n = g->nodes[self];
    if (need[0]) dx[0] = GRAD_ZERO;
    if (need[1]) dx[1] = op_maxpool_scatter(g, n.in[0], dy, n.i[0], n.i[1]);
}
GRAD(avgpool)
{
    mnode n = g->nodes[self];
    dx[0] = op_avgpool_dx(g, dy, g->nodes[n.in[0]].shape, n.i[0], n.i[1]);
}
GRAD(avgpool_dx)
{
    mnode n = g->nodes[self];
    dx[0] = mela_avgpool2d(g, dy, n.i[0], n.i[1]);
}

mela_node mela_global_avgpool(mela_graph *g, mela_node x)
{
    char b1[64];
    VALID("global_avgpool", x);
    mela_shape s = g->nodes[x].shape;
    if (s.nd != 4)
        return graph_fail(g, "global_avgpool: input %s must be 4-D", mela_shape_str(s, b1, sizeof b1));
    mela_node m = mela_sum_to(g, x, MELA_SHAPE(s.d[0], s.d[1], 1, 1));
    return mela_reshape(g, mela_scale(g, m, 1.0f / (float)(s.d[2] * s.d[3])), MELA_SHAPE(s.d[0], s.d[1]));
}

mela_node mela_pad2d(mela_graph *g, mela_node x, int top, int bottom, int left, int right)
{
    char b1[64];
    VALID("pad2d", x);
    mela_shape s = g->nodes[x].shape;
    if (s.nd != 4)
        return graph_fail(g, "pad2d: input %s must be 4-D", mela_shape_str(s, b1, sizeof b1));
    long oh = (long)s.d[2] + top + bottom, ow = (long)s.d[3] + left + right;
    if (oh < 1 || ow < 1 || oh > 1L << 24 || ow > 1L << 24)
        return graph_fail(g, "pad2d: %d, %d rows and %d, %d columns make input %s %ldx%ld", top,
                          bottom, left, right, mela_shape_str(s, b1, sizeof b1), oh, ow);
    if (!top && !bottom && !left && !right)
        return x;
    mnode n = {.op = OP_PAD2D, .nin = 1, .in = {x}, .shape = MELA_SHAPE(s.d[0], s.d[1], (int)oh, (int)ow),
               .i = {top, bottom, left, right}};
    return graph_push(g, &n);
}

FWD(pad2d)
{
    mela_shape xs = in_shape(g, n, 0);
    mk_pad2d(y, x[0], PLANES(xs), n->i[0], n->i[2], n->shape.d[2], n->shape.d[3]);
    return 0;
}

/* Linear: the adjoint of a pad is the crop by the same amounts, and back. */
GRAD(pad2d)
{
    mnode n = g->nodes[self];
    dx[0] = mela_pad2d(g, dy, -n.i[0], -n.i[1], -n.i[2], -n.i[3]);
}

/* ------------------------------------------------------------ batch norm */

/* Two fused ops carry batch normalisation with batch statistics:
 * bn_normalize(x) = (x - m) / sqrt(v + eps) and bn_rstd(x) = 1 / sqrt(v + eps)
 * per channel (m, v over N, H, W). Their rules use each other, so the
 * gradient of either can be differentiated again:
 *   d xhat: dx = rstd (g - mean(g) - xhat mean(g xhat)), the op bn_dx
 *   d rstd: dx = -(g rstd^2 / cnt) xhat
 * bn_dx runs in two passes over its inputs (instead of the ten of the same
 * expression in elementwise ops); its own rule is written in plain ops:
 * with G the incoming gradient and Gr = G rstd, it is linear and
 * self-adjoint in g (d g = bn_dx(G, xhat, rstd)), and
 *   d xhat = -(Gr mean(g xhat) + g mean(Gr xhat)),
 *   d rstd = sum(G bn_dx(g, xhat, 1)) per channel. */
static mela_shape bn_cshape(mela_shape s)
{
    return s.nd == 4 ? MELA_SHAPE(1, s.d[1], 1, 1) : MELA_SHAPE(1, s.d[1]);
}

static mela_node bn_op(mela_graph *g, int op, const char *name, mela_node x, float eps)
{
    char b1[64];
    VALID(name, x);
    mela_shape s = g->nodes[x].shape;
    if (s.nd != 2 && s.nd != 4)
        return graph_fail(g, "%s: input %s must be (N, C) or (N, C, H, W)", name,
                          mela_shape_str(s, b1, sizeof b1));
    return push1(g, op, x, op == OP_BN_NORM ? s : bn_cshape(s), eps);
}

mela_node op_bn_norm(mela_graph *g, mela_node x, float eps) { return bn_op(g, OP_BN_NORM, "bn_normalize", x, eps); }
mela_node op_bn_rstd(mela_graph *g, mela_node x, float eps) { return bn_op(g, OP_BN_RSTD, "bn_rstd", x, eps); }

static void bn_dims(mela_shape s, int *N, int *C, size_t *P)
{
    *N = s.d[0], *C = s.d[1];
    *P = s.nd == 4 ? (size_t)s.d[2] * s.d[3] : 1;
}

/* Batch-norm statistics channel by channel, channels split over threads. */
typedef struct bn_job {
    float *xhat, *rstd;
    const float *x;
    int N, C;
    size_t P;
    float eps;
} bn_job;

static void bn_channels(void *arg, size_t lo, size_t hi)
{
    const bn_job *j = arg;
    mk_bn_normalize_channels(j->xhat, j->rstd, j->x, j->N, j->C, j->P, j->eps, (int)lo, (int)hi);
}

static int bn_fwd(mela_shape xs, float *xhat, float *rstd, const float *x, float eps, int threads)
{
    bn_job j = {xhat, rstd, x, 0, 0, 0, eps};
    bn_dims(xs, &j.N, &j.C, &j.P);
    par_range(threads, (size_t)j.C, (size_t)j.N * j.C * j.P, bn_channels, &j);
    return 0;
}

FWD(bn_norm) { return bn_fwd(n->shape, y, NULL, x[0], n->f, threads); }
FWD(bn_rstd) { return bn_fwd(in_shape(g, n, 0), NULL, y, x[0], n->f, threads); }

GRAD(bn_norm)
{
    mnode n = g->nodes[self];
    dx[0] = op_bn_dx(g, dy, self, op_bn_rstd(g, n.in[0], n.f));
}

mela_node op_bn_dx(mela_graph *g, mela_node dy, mela_node xhat, mela_node rstd)
{
    char b1[64], b2[64], b3[64];
    VALID("bn_dx", dy, xhat, rstd);
    mela_shape s = g->nodes[dy].shape;
    if ((s.nd != 2 && s.nd != 4) || !mela_shape_equal(s, g->nodes[xhat].shape) ||
        !mela_shape_equal(g->nodes[rstd].shape, bn_cshape(s)))
        return graph_fail(g, "bn_dx: dy %s, xhat %s and rstd %s do not fit", mela_shape_str(s, b1, sizeof b1),
                          mela_shape_str(g->nodes[xhat].shape, b2, sizeof b2),
                          mela_shape_str(g->nodes[rstd].shape, b3, sizeof b3));
    mnode n = {.op = OP_BN_DX, .nin = 3, .in = {dy, xhat, rstd}, .shape = s};
    return graph_push(g, &n);
}

typedef struct bn_dx_job {
    float *dx;
    const float *dy, *xhat, *rstd;
    int N, C;
    size_t P;
} bn_dx_job;

static void bn_dx_channels(void *arg, size_t lo, size_t hi)
{
    const bn_dx_job *j = arg;
    mk_bn_dx_channels(j->dx, j->dy, j->xhat, j->rstd, j->N, j->C, j->P, (int)lo, (int)hi);
}

FWD(bn_dx)
{
    bn_dx_job j = {y, x[0], x[1], x[2], 0, 0, 0};
    bn_dims(n->shape, &j.N, &j.C, &j.P);
    par_range(threads, (size_t)j.C, (size_t)j.N * j.C * j.P, bn_dx_channels, &j);
    return 0;
}

GRAD(bn_dx)
{
    mnode n = g->nodes[self];
    mela_node gin = n.in[0], xhat = n.in[1], rstd = n.in[2];
    mela_shape xs = n.shape, cs = bn_cshape(xs);
    float inv = 1.0f / (float)(mela_shape_numel(xs) / (size_t)xs.d[1]);
    if (need[0])
        dx[0] = op_bn_dx(g, dy, xhat, rstd);
    if (need[1]) {
        mela_node gr = mela_mul(g, dy, rstd);
        mela_node mgx = mela_scale(g, mela_sum_to(g, mela_mul(g, gin, xhat), cs), inv);
        mela_node mrx = mela_scale(g, mela_sum_to(g, mela_mul(g, gr, xhat), cs), inv);
        dx[1] = mela_neg(g, mela_add(g, mela_mul(g, gr, mgx), mela_mul(g, gin, mrx)));
    }
    if (need[2]) {
        mela_node t = op_bn_dx(g, gin, xhat, mela_constant(g, cs, 1.0f));
        dx[2] = mela_sum_to(g, mela_mul(g, dy, t), cs);
    }
}

GRAD(bn_rstd)
{
    mnode n = g->nodes[self];
    mela_shape xs = g->nodes[n.in[0]].shape;
    float inv = 1.0f / (float)(mela_shape_numel(xs) / (size_t)xs.d[1]);
    mela_node xhat = op_bn_norm(g, n.in[0], n.f);
    mela_node c = mela_scale(g, mela_mul(g, dy, mela_square(g, self)), -inv);
    dx[0] = mela_mul(g, xhat, c);
}

mela_node mela_batchnorm(mela_graph *g, mela_node x, mela_node gamma, mela_node beta, float eps)
{
    char b1[64], b2[64];
    VALID("batchnorm", x);
    mela_shape s = g->nodes[x].shape;
    if (s.nd != 2 && s.nd != 4)
        return graph_fail(g, "batchnorm: input %s must be (N, C) or (N, C, H, W)",
                          mela_shape_str(s, b1, sizeof b1));
    int C = s.d[1];
    mela_shape cs = bn_cshape(s);
    mela_node p[2] = {gamma, beta};
    for (int k = 0; k < 2; k++)
        if (p[k] != MELA_NONE) {
            VALID("batchnorm", p[k]);
            if (g->nodes[p[k]].numel != (size_t)C)
                return graph_fail(g, "batchnorm: %s %s does not fit input %s", k ? "beta" : "gamma",
                                  mela_shape_str(g->nodes[p[k]].shape, b1, sizeof b1),
                                  mela_shape_str(s, b2, sizeof b2));
            p[k] = mela_reshape(g, p[k], cs);
        }
    mela_node y = op_bn_norm(g, x, eps);
    if (p[0] != MELA_NONE)
        y = mela_mul(g, y, p[0]);
    if (p[1] != MELA_NONE)
        y = mela_add(g, y, p[1]);
    return y;
}

/* --------------------------------------------------------- softmax family */

static int rows_check(mela_graph *g, const char *op, mela_node x)
{
    char b1[64];
    if (g->nodes[x].shape.nd != 2)
        return graph_fail(g, "%s: input %s must be (N, C)", op,
                          mela_shape_str(g->nodes[x].shape, b1, sizeof b1)), -1;
    return 0;
}

mela_node mela_log_softmax(mela_graph *g, mela_node x)
{
    VALID("log_softmax", x);
    if (rows_check(g, "log_softmax", x))
        return MELA_NONE;
    return push1(g, OP_LOG_SOFTMAX, x, g->nodes[x].shape, 0);
}

FWD(log_softmax) { mk_log_softmax(y, x[0], n->shape.d[0], n->shape.d[1]); return 0; }

GRAD(log_softmax)
{
    /* y = x - lse(x): dx = dy - softmax(x) * rowsum(dy), softmax = exp(y) */
    mela_shape s = g->nodes[self].shape;
    mela_node rs = mela_sum_to(g, dy, MELA_SHAPE(s.d[0], 1));
    dx[0] = mela_sub(g, dy, mela_mul(g, mela_exp(g, self), rs));
}

mela_node mela_softmax(mela_graph *g, mela_node x) { return mela_exp(g, mela_log_softmax(g, x)); }

static int labels_check(mela_graph *g, const char *op, mela_node labels, int rows)
{
    char b1[64];
    mela_shape s = g->nodes[labels].shape;
    if (g->nodes[labels].numel != (size_t)rows || s.d[0] != rows)
        return graph_fail(g, "%s: labels %s do not match %d rows", op,
                          mela_shape_str(s, b1, sizeof b1), rows), -1;
    return 0;
}

mela_node mela_one_hot(mela_graph *g, mela_node labels, int classes)
{
    VALID("one_hot", labels);
    int rows = g->nodes[labels].shape.d[0];
    if (classes < 1)
        return graph_fail(g, "one_hot: %d classes", classes);
    if (labels_check(g, "one_hot", labels, rows))
        return MELA_NONE;
    mnode n = {.op = OP_ONE_HOT, .nin = 1, .in = {labels}, .shape = MELA_SHAPE(rows, classes)};
    return graph_push(g, &n);
}

FWD(one_hot)
{
    size_t bad;
    if (mk_one_hot(y, x[0], n->shape.d[0], n->shape.d[1], &bad))
        return mela_set_error("one_hot: label %g of row %zu is not a class index in [0, %d)",
                              (double)x[0][bad], bad, n->shape.d[1]);
    return 0;
}

GRAD(one_hot) { (void)dx; /* labels are not differentiable: no rule */ }

mela_node mela_accuracy(mela_graph *g, mela_node logits, mela_node labels)
{
    VALID("accuracy", logits, labels);
    if (rows_check(g, "accuracy", logits) ||
        labels_check(g, "accuracy", labels, g->nodes[logits].shape.d[0]))
        return MELA_NONE;
    mela_node eq = push2(g, OP_ARGMAX_EQ, logits, labels, MELA_SHAPE(g->nodes[logits].shape.d[0]));
    return mela_mean(g, eq);
}

FWD(argmax_eq) { mk_argmax_eq(y, x[0], x[1], n->shape.d[0], in_shape(g, n, 0).d[1]); return 0; }

GRAD(argmax_eq)
{
    if (need[0]) dx[0] = GRAD_ZERO; /* piecewise constant in the logits */
}

/* ----------------------------------------------------------------- losses */

mela_node mela_cross_entropy(mela_graph *g, mela_node logits, mela_node labels)
{
    VALID("cross_entropy", logits, labels);
    if (rows_check(g, "cross_entropy", logits) ||
        labels_check(g, "cross_entropy", labels, g->nodes[logits].shape.d[0]))
        return MELA_NONE;
    mela_shape s = g->nodes[logits].shape;
    mela_node oh = mela_one_hot(g, labels, s.d[1]);
    mela_node picked = mela_sum(g, mela_mul(g, oh, mela_log_softmax(g, logits)));
    return mela_scale(g, picked, -1.0f / (float)s.d[0]);
}

mela_node mela_bce_with_logits(mela_graph *g, mela_node z, mela_node t)
{
    char b1[64], b2[64];
    VALID("bce_with_logits", z, t);
    if (!mela_shape_equal(g->nodes[z].shape, g->nodes[t].shape))
        return graph_fail(g, "bce_with_logits: logits %s and targets %s differ",
                          mela_shape_str(g->nodes[z].shape, b1, sizeof b1),
                          mela_shape_str(g->nodes[t].shape, b2, sizeof b2));
    return mela_mean(g, mela_sub(g, mela_softplus(g, z), mela_mul(g, z, t)));
}

mela_node mela_mse(mela_graph *g, mela_node a, mela_node b)
{
    char b1[64], b2[64];
    VALID("mse", a, b);
    if (!mela_shape_equal(g->nodes[a].shape, g->nodes[b].shape))
        return graph_fail(g, "mse: %s and %s differ", mela_shape_str(g->nodes[a].shape, b1, sizeof b1),
                          mela_shape_str(g->nodes[b].shape, b2, sizeof b2));
    return mela_mean(g, mela_square(g, mela_sub(g, a, b)));
}

/* -------------------------------------------------------------- distances */

static int sets_check(mela_graph *g, const char *op, mela_node a, mela_node b)
{
    char b1[64], b2[64];
    mela_shape sa = g->nodes[a].shape, sb = g->nodes[b].shape;
    if (sa.nd != 2 || sb.nd != 2 || sa.d[1] != sb.d[1])
        return graph_fail(g, "%s: %s and %s must be (n, d) and (m, d)", op,
                          mela_shape_str(sa, b1, sizeof b1), mela_shape_str(sb, b2, sizeof b2)), -1;
    return 0;
}

mela_node mela_sqdist(mela_graph *g, mela_node a, mela_node b)
{
    VALID("sqdist", a, b);
    if (sets_check(g, "sqdist", a, b))
        return MELA_NONE;
    int n = g->nodes[a].shape.d[0], m = g->nodes[b].shape.d[0];
    /* |a|^2 + |b|^2 - 2 a.b, one GEMM for all pairs */
    mela_node a2 = mela_sum_to(g, mela_square(g, a), MELA_SHAPE(n, 1));
    mela_node b2 = mela_reshape(g, mela_sum_to(g, mela_square(g, b), MELA_SHAPE(m, 1)), MELA_SHAPE(1, m));
    mela_node ab = mela_matmul(g, a, b, 0, 1);
    return mela_sub(g, mela_add(g, a2, b2), mela_scale(g, ab, 2.0f));
}

static mela_node unit_rows(mela_graph *g, mela_node a, float eps)
{
    int n = g->nodes[a].shape.d[0];
    mela_node norm2 = mela_sum_to(g, mela_square(g, a), MELA_SHAPE(n, 1));
    return mela_div(g, a, mela_sqrt(g, mela_add_scalar(g, norm2, eps)));
}

mela_node mela_cosine(mela_graph *g, mela_node a, mela_node b, float eps)
{
    VALID("cosine", a, b);
    if (sets_check(g, "cosine", a, b))
        return MELA_NONE;
    return mela_matmul(g, unit_rows(g, a, eps), unit_rows(g, b, eps), 0, 1);
}
