/*
 * cellnet.c - networks of cells: the DARTS search space of MetaNAS (every
 * edge a softmax mixture of candidate ops, weighted by the meta-learned
 * "alpha") and the discrete networks derived from it. Every candidate op is
 * built from graph ops with gradients of any order (include/mela_nn.h says
 * how), so MAML's exact meta-gradient reaches alpha.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mela_nn.h"
#include "nn/model_impl.h"

static const char *const op_names[MELA_CELL_OPS] = {"zero",  "skip",  "avg3", "max3",
                                                    "conv3", "conv5", "dil3", "sep3"};

const char *mela_cell_op_name(int op) { return op >= 0 && op < MELA_CELL_OPS ? op_names[op] : NULL; }

int mela_cell_op_find(const char *name)
{
    for (int k = 0; name && k < MELA_CELL_OPS; k++)
        if (!strcmp(name, op_names[k]))
            return k;
    return -1;
}

int mela_cell_edges(int nodes) { return nodes * (nodes + 1) / 2; }

int mela_cell_candidates(const mela_cellnet_spec *s, int *ops)
{
    int n = 0;
    for (int k = 0; k < MELA_CELL_OPS; k++)
        if (!s->candidates || (s->candidates >> k & 1u))
            ops[n++] = k;
    return n;
}

typedef struct cellnet {
    mela_cellnet_spec s;
    int E, K;                   /* edges of a cell; candidates (search) */
    int cand[MELA_CELL_OPS];    /* search: the candidate ops */
    int view[8][MELA_CELL_MAX_EDGES][MELA_CELL_OPS]; /* first view of (cell, edge, op), or -1 */
    int stem, alpha, head;      /* views (alpha -1 when discrete) */
    int sched;                  /* search with a schedule: "alpha.schedule", else -1 */
} cellnet;

/* The ops edge e of a cell computes: the candidates (search) or its one op. */
static int edge_ops(const cellnet *cn, int e, int *ops)
{
    if (cn->s.search) {
        memcpy(ops, cn->cand, cn->K * sizeof *ops);
        return cn->K;
    }
    ops[0] = cn->s.ops[e];
    return 1;
}

/* Views of one op of one edge; returns 1 or 0 (layout refused a view). */
static int add_op_views(mela_layout *L, int c, int e, int op, int w, int *first)
{
    char name[64];
    mela_shape shape;
    switch (op) {
    case MELA_OP_CONV3:
    case MELA_OP_DIL3: shape = MELA_SHAPE(w, w, 3, 3); break;
    case MELA_OP_CONV5: shape = MELA_SHAPE(w, w, 5, 5); break;
    case MELA_OP_SEP3:
        snprintf(name, sizeof name, "c%d.e%d.sep3.dw", c, e);
        *first = mela_layout_add(L, name, MELA_SHAPE(1, w, 3, 3));
        snprintf(name, sizeof name, "c%d.e%d.sep3.pw", c, e);
        return *first >= 0 && mela_layout_add(L, name, MELA_SHAPE(w, w, 1, 1)) >= 0;
    default: *first = -1; return 1; /* no weights */
    }
    snprintf(name, sizeof name, "c%d.e%d.%s", c, e, op_names[op]);
    return (*first = mela_layout_add(L, name, shape)) >= 0;
}

static mela_node bn(mela_graph *g, mela_node x) { return mela_batchnorm(g, x, MELA_NONE, MELA_NONE, 1e-5f); }

/* x (N, C, H, W) with a border of one zero on every side: each plane
 * convolved with the 1x1 weight 1 at padding 1. */
static mela_node pad1(mela_graph *g, mela_node x)
{
    mela_shape s = mela_node_shape(g, x);
    if (s.nd != 4)
        return MELA_NONE; /* x is MELA_NONE: the graph holds the error */
    mela_node one = mela_constant(g, MELA_SHAPE(1, 1, 1, 1), 1.0f);
    mela_node p = mela_conv2d(g, mela_reshape(g, x, MELA_SHAPE(s.d[0] * s.d[1], 1, s.d[2], s.d[3])),
                              one, MELA_NONE, 1, 1);
    return mela_reshape(g, p, MELA_SHAPE(s.d[0], s.d[1], s.d[2] + 2, s.d[3] + 2));
}

/* The fixed (9, 25) 0/1 matrix taking a 3x3 kernel, flattened, to the 5x5
 * kernel of dilation 2: row 3i + j has its one at column 10i + 2j. */
static mela_node dilation_matrix(mela_graph *g)
{
    mela_node S = MELA_NONE;
    for (int r = 0; r < 9; r++) {
        int at = 10 * (r / 3) + 2 * (r % 3);
        mela_node row = mela_constant(g, MELA_SHAPE(1), 1.0f);
        if (at > 0)
            row = mela_concat(g, mela_constant(g, MELA_SHAPE(at), 0.0f), row);
        if (at < 24)
            row = mela_concat(g, row, mela_constant(g, MELA_SHAPE(24 - at), 0.0f));
        row = mela_reshape(g, row, MELA_SHAPE(1, 25));
        S = r ? mela_concat(g, S, row) : row;
    }
    return S;
}

/* The 5x5 weight of dilation 2 from a (O, C, 3, 3) weight. */
static mela_node dilate(mela_graph *g, mela_node w3)
{
    mela_shape s = mela_node_shape(g, w3);
    mela_node flat = mela_reshape(g, w3, MELA_SHAPE(s.d[0] * s.d[1], 9));
    return mela_reshape(g, mela_matmul(g, flat, dilation_matrix(g), 0, 0),
                        MELA_SHAPE(s.d[0], s.d[1], 5, 5));
}

mela_node mela_cell_op(mela_graph *g, int op, const mela_node *w, mela_node x, int smooth)
{
    if (op >= MELA_OP_CONV3 && !w)
        return MELA_NONE;
    mela_node a = op >= MELA_OP_CONV3 ? (smooth ? mela_tanh(g, x) : mela_relu(g, x)) : x;
    switch (op) {
    case MELA_OP_SKIP: return x;
    case MELA_OP_AVG3: return bn(g, mela_avgpool2d(g, pad1(g, x), 3, 1));
    case MELA_OP_MAX3: return bn(g, mela_maxpool2d(g, pad1(g, x), 3, 1));
    case MELA_OP_CONV3: return bn(g, mela_conv2d(g, a, w[0], MELA_NONE, 1, 1));
    case MELA_OP_CONV5: return bn(g, mela_conv2d(g, a, w[0], MELA_NONE, 1, 2));
    case MELA_OP_DIL3: return bn(g, mela_conv2d(g, a, dilate(g, w[0]), MELA_NONE, 1, 2));
    case MELA_OP_SEP3: { /* pw (O, C, 1, 1) times dw (1, C, 3, 3): (O, C, 3, 3) */
        mela_node k = mela_mul(g, w[1], w[0]);
        return bn(g, mela_conv2d(g, a, k, MELA_NONE, 1, 1));
    }
    default: return MELA_NONE; /* zero */
    }
}

static mela_node add_opt(mela_graph *g, mela_node a, mela_node b)
{
    return a == MELA_NONE ? b : b == MELA_NONE ? a : mela_add(g, a, b);
}

/* The logits of the mixture: alpha, or with a schedule view (T, g)
 * (stop_gradient(alpha) + g (alpha - stop_gradient(alpha))) / T, the
 * schedule itself a constant of the graph (stop_gradient): exactly the value
 * alpha / T, with alpha's gradient multiplied by g. */
static mela_node mixture_logits(const cellnet *cn, mela_graph *g, const mela_node *w)
{
    mela_node a = w[cn->alpha];
    if (cn->sched < 0)
        return a;
    mela_node ctl = mela_stop_gradient(g, w[cn->sched]), fixed = mela_stop_gradient(g, a);
    mela_node T = mela_slice(g, ctl, 0, 1), scale = mela_slice(g, ctl, 1, 1);
    return mela_div(g, mela_add(g, fixed, mela_mul(g, scale, mela_sub(g, a, fixed))), T);
}

static mela_node body(void *ctx, mela_graph *g, const mela_node *w, mela_node x)
{
    const cellnet *cn = ctx;
    const mela_cellnet_spec *s = &cn->s;
    mela_node h = bn(g, mela_conv2d(g, x, w[cn->stem], MELA_NONE, s->stem_stride, 1));
    mela_node mix = MELA_NONE;
    if (s->search) /* the mixture weights, one row per edge, flattened */
        mix = mela_reshape(g, mela_softmax(g, mixture_logits(cn, g, w)), MELA_SHAPE(cn->E * cn->K));
    for (int c = 0; c < s->cells; c++) {
        mela_node st[MELA_CELL_MAX_NODES + 1] = {h}, out = MELA_NONE;
        for (int j = 1; j <= s->nodes; j++) {
            st[j] = MELA_NONE;
            for (int i = 0; i < j; i++) {
                int e = j * (j - 1) / 2 + i, ops[MELA_CELL_OPS], n = edge_ops(cn, e, ops);
                if (st[i] == MELA_NONE)
                    continue; /* a state with no edges in is zero */
                for (int k = 0; k < n; k++) {
                    int v = cn->view[c][e][ops[k]];
                    mela_node y = mela_cell_op(g, ops[k], v >= 0 ? w + v : NULL, st[i], s->smooth);
                    if (y != MELA_NONE && s->search)
                        y = mela_mul(g, mela_slice(g, mix, e * cn->K + k, 1), y);
                    st[j] = add_opt(g, st[j], y);
                }
            }
            out = add_opt(g, out, st[j]);
        }
        if (out == MELA_NONE) /* every edge zero: the cell outputs zeros */
            out = mela_scale(g, h, 0.0f);
        mela_shape os = mela_node_shape(g, out);
        h = !s->no_pool && os.nd == 4 && os.d[2] >= 2 && os.d[3] >= 2 ? mela_maxpool2d(g, out, 2, 2) : out;
    }
    return mela_global_avgpool(g, h);
}

static mela_node head(void *ctx, mela_graph *g, const mela_node *w, mela_node h)
{
    const cellnet *cn = ctx;
    return mela_linear(g, h, w[cn->head], w[cn->head + 1]);
}

/* Weights Xavier-uniform (fan_in = numel / shape[0], fan_out = numel /
 * shape[1]), alpha N(0, 1e-3^2) as in DARTS, the head's bias 0. */
static void init(void *ctx, const mela_layout *L, float *theta, mela_rng *r)
{
    const cellnet *cn = ctx;
    for (int i = 0; i < mela_layout_count(L); i++) {
        mela_shape s = mela_layout_shape(L, i);
        float *p = theta + mela_layout_offset(L, i);
        size_t n = mela_shape_numel(s);
        if (i == cn->alpha) {
            for (size_t j = 0; j < n; j++)
                p[j] = 1e-3f * mela_rng_normal(r);
        } else if (i == cn->sched) {
            p[0] = p[1] = 1.0f; /* temperature 1, alpha's gradient as it is */
        } else if (s.nd >= 2) {
            float fan_in = (float)n / (float)s.d[0], fan_out = (float)n / (float)s.d[1];
            float bound = sqrtf(6.0f / (fan_in + fan_out));
            for (size_t j = 0; j < n; j++)
                p[j] = (2.0f * mela_rng_uniform(r) - 1.0f) * bound;
        }
    }
}

static int spec_error(const mela_cellnet_spec *s)
{
    if (s->channels < 1 || s->size < 1 || s->width < 1 || s->width > 1024 || s->cells < 1 ||
        s->cells > 8 || s->nodes < 1 || s->nodes > MELA_CELL_MAX_NODES || s->outputs < 0 ||
        (s->stem_stride != 1 && s->stem_stride != 2) || s->candidates >> MELA_CELL_OPS)
        return mela_set_error("cellnet: bad sizes (channels %d, size %d, width %d, cells %d (1..8), "
                              "nodes %d (1..%d), stem stride %d, outputs %d, candidates 0x%x)",
                              s->channels, s->size, s->width, s->cells, s->nodes,
                              MELA_CELL_MAX_NODES, s->stem_stride, s->outputs, s->candidates);
    int ops[MELA_CELL_OPS];
    if (s->search && mela_cell_candidates(s, ops) < 1)
        return mela_set_error("cellnet: a search needs at least one candidate op");
    for (int e = 0; !s->search && e < mela_cell_edges(s->nodes); e++)
        if (!mela_cell_op_name(s->ops[e]))
            return mela_set_error("cellnet: edge %d has op %d, not one of 0..%d", e, s->ops[e],
                                  MELA_CELL_OPS - 1);
    return 0;
}

static void cellnet_free(void *ctx) { free(ctx); }

mela_model *mela_cellnet_new(const mela_cellnet_spec *spec)
{
    if (spec_error(spec))
        return NULL;
    cellnet *cn = calloc(1, sizeof *cn);
    mela_layout *L = mela_layout_new();
    if (!cn || !L) {
        free(cn), mela_layout_free(L);
        mela_set_error("cellnet: out of memory");
        return NULL;
    }
    cn->s = *spec;
    const mela_cellnet_spec *s = &cn->s;
    cn->E = mela_cell_edges(s->nodes);
    cn->K = s->search ? mela_cell_candidates(s, cn->cand) : 1;
    cn->alpha = cn->sched = -1;
    int ok = (cn->stem = mela_layout_add(L, "stem.weight", MELA_SHAPE(s->width, s->channels, 3, 3))) >= 0;
    for (int c = 0; c < s->cells && ok; c++)
        for (int e = 0; e < cn->E && ok; e++) {
            int ops[MELA_CELL_OPS], n = edge_ops(cn, e, ops);
            for (int k = 0; k < n && ok; k++)
                ok = add_op_views(L, c, e, ops[k], s->width, &cn->view[c][e][ops[k]]);
        }
    if (ok && s->search)
        ok = (cn->alpha = mela_layout_add(L, "alpha", MELA_SHAPE(cn->E, cn->K))) >= 0;
    if (ok && s->search && s->schedule)
        ok = (cn->sched = mela_layout_add(L, "alpha.schedule", MELA_SHAPE(2))) >= 0;
    int head_first = mela_layout_count(L);
    if (ok && s->outputs > 0) {
        cn->head = head_first;
        ok = mela_layout_add(L, "head.weight", MELA_SHAPE(s->outputs, s->width)) >= 0 &&
             mela_layout_add(L, "head.bias", MELA_SHAPE(s->outputs)) >= 0;
    }
    if (!ok || mela_layout_count(L) > MELA_MODEL_MAX_PARAMS) {
        mela_set_error("cellnet: %d weight views (at most %d: fewer cells, nodes or candidates)",
                       mela_layout_count(L), MELA_MODEL_MAX_PARAMS);
        free(cn), mela_layout_free(L);
        return NULL;
    }
    char name[160];
    int k = snprintf(name, sizeof name, "cellnet(%dx%dx%d, width %d, %d cells of %d nodes, %s",
                     s->channels, s->size, s->size, s->width, s->cells, s->nodes,
                     s->search ? "search over" : "cell");
    for (int e = 0; e < (s->search ? cn->K : cn->E) && k < (int)sizeof name; e++)
        k += snprintf(name + k, sizeof name - k, " %s", op_names[s->search ? cn->cand[e] : s->ops[e]]);
    if (k < (int)sizeof name)
        snprintf(name + k, sizeof name - k, ") -> %d", s->outputs ? s->outputs : s->width);
    mela_model_def d = {L, MELA_SHAPE(s->channels, s->size, s->size), s->outputs, s->width, head_first,
                        body, s->outputs ? head : NULL, init, cn, name, cellnet_free};
    return mela_model_new(&d);
}

const mela_cellnet_spec *mela_cellnet_spec_of(const mela_model *m)
{
    const mela_model_def *d = model_def_of(m);
    return d && d->body == body ? &((const cellnet *)d->ctx)->s : NULL;
}

int mela_cellnet_derive(const mela_cellnet_spec *search, const float *alpha, mela_cellnet_spec *out,
                        float *weight)
{
    if (!search->search || spec_error(search))
        return search->search ? -1 : mela_set_error("cellnet: derive needs a search spec");
    int cand[MELA_CELL_OPS], K = mela_cell_candidates(search, cand), E = mela_cell_edges(search->nodes);
    int best[MELA_CELL_MAX_EDGES];
    float bw[MELA_CELL_MAX_EDGES];
    for (int e = 0; e < E; e++) { /* softmax of row e; its strongest op other than zero */
        const float *a = alpha + (size_t)e * K;
        double mx = a[0], z = 0;
        for (int k = 1; k < K; k++)
            mx = fmax(mx, a[k]);
        for (int k = 0; k < K; k++)
            z += exp(a[k] - mx);
        best[e] = MELA_OP_ZERO, bw[e] = 0;
        for (int k = 0; k < K; k++) {
            float p = (float)(exp(a[k] - mx) / z);
            if (cand[k] != MELA_OP_ZERO && (best[e] == MELA_OP_ZERO || p > bw[e]))
                best[e] = cand[k], bw[e] = p;
        }
    }
    *out = *search;
    out->search = 0;
    out->candidates = 0;
    for (int j = 1; j <= search->nodes; j++) { /* keep the best min(2, j) edges into state j */
        int first = j * (j - 1) / 2, keep = j < 2 ? j : 2;
        for (int i = 0; i < j; i++) {
            int rank = 0, e = first + i;
            for (int i2 = 0; i2 < j; i2++)
                rank += bw[first + i2] > bw[e] || (bw[first + i2] == bw[e] && i2 < i);
            int kept = rank < keep && best[e] != MELA_OP_ZERO;
            out->ops[e] = kept ? best[e] : MELA_OP_ZERO;
            if (weight)
                weight[e] = kept ? bw[e] : 0.0f;
        }
    }
    return 0;
}
