/*
 * grad.c - reverse-mode differentiation: mela_grad appends gradient nodes to
 * the graph (symbol to symbol), so that a gradient can be differentiated
 * again. Kept out of graph.c, which only holds nodes: summing adjoints
 * builds add nodes (ops_math.c).
 */
#include <stdlib.h>

#include "core/graph_impl.h"

/* a + c for two adjoint contributions of one node. A contribution that is
 * an explicit broadcast_to(b) is added as b with implicit broadcasting
 * instead, so the broadcast tensor is never materialised. */
static mela_node accumulate(mela_graph *g, mela_node a, mela_node c)
{
    if (g->nodes[c].op == OP_BROADCAST && mela_shape_equal(g->nodes[a].shape, g->nodes[c].shape))
        return mela_add(g, a, g->nodes[c].in[0]);
    if (g->nodes[a].op == OP_BROADCAST && mela_shape_equal(g->nodes[a].shape, g->nodes[c].shape))
        return mela_add(g, c, g->nodes[a].in[0]);
    return mela_add(g, a, c);
}

int mela_grad(mela_graph *g, mela_node y, mela_node seed, int n, const mela_node *wrt,
              mela_node *out)
{
    char b1[64], b2[64];
    for (int k = 0; k < n; k++)
        out[k] = MELA_NONE;
    if (g->error)
        return -1;
    if (y < 0 || y >= g->n || (seed != MELA_NONE && (seed < 0 || seed >= g->n))) {
        graph_fail(g, "grad: the output or the seed is not a node of this graph");
        return -1;
    }
    for (int k = 0; k < n; k++)
        if (wrt[k] < 0 || wrt[k] >= g->n) {
            graph_fail(g, "grad: wrt[%d] is not a node of this graph", k);
            return -1;
        }
    mela_shape ys = g->nodes[y].shape;
    if (seed == MELA_NONE) {
        if (g->nodes[y].numel != 1) {
            graph_fail(g, "grad: output %s has %zu elements; give a seed of its shape",
                       mela_shape_str(ys, b1, sizeof b1), g->nodes[y].numel);
            return -1;
        }
        seed = mela_constant(g, ys, 1.0f);
    } else if (!mela_shape_equal(g->nodes[seed].shape, ys)) {
        graph_fail(g, "grad: seed %s does not match output %s",
                   mela_shape_str(g->nodes[seed].shape, b1, sizeof b1),
                   mela_shape_str(ys, b2, sizeof b2));
        return -1;
    }

    /* Nodes that depend on a wrt node: the only ones that get adjoints. */
    int top = y + 1;
    char *dep = calloc((size_t)top, 1);
    mela_node *adj = malloc((size_t)top * sizeof *adj);
    if (!dep || !adj) {
        free(dep);
        free(adj);
        graph_fail(g, "grad: out of memory");
        return -1;
    }
    for (int k = 0; k < n; k++)
        if (wrt[k] < top)
            dep[wrt[k]] = 1;
    for (int i = 0; i < top; i++) {
        adj[i] = MELA_NONE;
        for (int j = 0; j < g->nodes[i].nin && !dep[i]; j++)
            dep[i] = dep[g->nodes[i].in[j]];
    }
    if (dep[y])
        adj[y] = seed;

    int failed = 0;
    for (int i = y; i >= 0 && !failed; i--) {
        if (adj[i] == MELA_NONE || g->nodes[i].nin == 0)
            continue;
        const mnode *nd = &g->nodes[i];
        int need[3] = {0, 0, 0}, any = 0;
        for (int j = 0; j < nd->nin; j++)
            any |= need[j] = dep[nd->in[j]];
        if (!any)
            continue;
        const op_def *def = &mela_ops[nd->op];
        mela_node dx[3] = {GRAD_NO_RULE, GRAD_NO_RULE, GRAD_NO_RULE};
        int op = nd->op, nin = nd->nin, in[3] = {nd->in[0], nd->in[1], nd->in[2]};
        if (def->grad)
            def->grad(g, i, adj[i], need, dx);
        for (int j = 0; j < nin && !failed; j++) {
            if (!need[j] || dx[j] == GRAD_ZERO)
                continue;
            if (dx[j] == GRAD_NO_RULE) {
                graph_fail(g, "grad: op %s has no gradient with respect to its input %d (node %d, a %s)",
                           mela_ops[op].name, j, in[j], mela_ops[g->nodes[in[j]].op].name);
                failed = 1;
            } else if (dx[j] == MELA_NONE || g->error) {
                failed = 1;
            } else {
                mela_node a = adj[in[j]];
                adj[in[j]] = a == MELA_NONE ? dx[j] : accumulate(g, a, dx[j]);
            }
        }
    }
    if (!failed && !g->error)
        for (int k = 0; k < n; k++) {
            mela_node a = wrt[k] < top ? adj[wrt[k]] : MELA_NONE;
            out[k] = a != MELA_NONE ? a : mela_constant(g, g->nodes[wrt[k]].shape, 0.0f);
        }
    free(dep);
    free(adj);
    if (g->error) {
        for (int k = 0; k < n; k++)
            out[k] = MELA_NONE;
        return -1;
    }
    return 0;
}
