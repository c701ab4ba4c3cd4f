/*
 * plan.c - compiling a graph into a schedule with reused buffers, and
 * executors that run it.
 *
 * Compilation: mark the nodes the outputs need; schedule them in index order
 * (a topological order); give each computed node an offset in one arena with
 * a best-fit allocator that frees a buffer right after its last reader has
 * run (outputs are never freed). An executor allocates the arena and the
 * largest scratch any op needs once; a run then allocates nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph_impl.h"
#include "core/sys.h"
#include "kernels/kernels.h"

void mela_parallel(int n, void *(*fn)(void *), void *jobs, size_t size) { mk_parallel(n, fn, jobs, size); }
const char *mela_blas_core(void) { return mk_blas_core(); }

int mela_conv_backend(char *buf, size_t n)
{
    if (mk_dnnl_version(buf, n))
        return 1;
    snprintf(buf, n, "mela's im2col + sgemm");
    return 0;
}

#define ARENA_ALIGN 16 /* floats */

struct mela_plan {
    const mela_graph *g;
    int ngraph;        /* nodes in g when compiled */
    int nsteps;
    int *steps;        /* computed nodes, in run order */
    size_t *offset;    /* per graph node: arena offset (floats), or SIZE_MAX */
    char *kept;        /* per graph node: value readable after a run */
    int ninputs;
    int *inputs;       /* OP_INPUT nodes the plan reads */
    int nparams;
    int *params;       /* OP_PARAM nodes the plan reads */
    size_t arena;      /* floats */
    size_t naive;      /* floats without reuse */
    size_t scratch;    /* floats */
};

struct mela_exec {
    const mela_plan *p;
    float *arena;
    float *scratch;
    const float **val; /* per graph node */
    const float *params;
    int threads;    /* for the chunks of each convolution */
    double *prof_s; /* per op type when profiling, else NULL */
    long *prof_n;
};

/* ------------------------------------------------- arena offset allocator */

typedef struct { size_t off, size; } block;
typedef struct { block *free; int n, cap; size_t top; } arena_alloc;

static size_t round_up(size_t n) { return (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN; }

static size_t arena_get(arena_alloc *a, size_t size)
{
    int best = -1;
    for (int i = 0; i < a->n; i++)
        if (a->free[i].size >= size && (best < 0 || a->free[i].size < a->free[best].size))
            best = i;
    if (best >= 0) {
        size_t off = a->free[best].off;
        a->free[best].off += size;
        a->free[best].size -= size;
        if (a->free[best].size == 0)
            a->free[best] = a->free[--a->n];
        return off;
    }
    /* grow: if the last free block touches the top, extend it */
    for (int i = 0; i < a->n; i++)
        if (a->free[i].off + a->free[i].size == a->top) {
            size_t off = a->free[i].off;
            a->top = off + size;
            a->free[i] = a->free[--a->n];
            return off;
        }
    size_t off = a->top;
    a->top += size;
    return off;
}

static int arena_put(arena_alloc *a, size_t off, size_t size)
{
    /* coalesce with neighbours */
    for (int i = 0; i < a->n; i++) {
        if (a->free[i].off + a->free[i].size == off) {
            off = a->free[i].off;
            size += a->free[i].size;
            a->free[i--] = a->free[--a->n];
        } else if (off + size == a->free[i].off) {
            size += a->free[i].size;
            a->free[i--] = a->free[--a->n];
        }
    }
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 64;
        block *f = realloc(a->free, cap * sizeof *f);
        if (!f)
            return -1;
        a->free = f;
        a->cap = cap;
    }
    a->free[a->n++] = (block){off, size};
    return 0;
}

/* ------------------------------------------------------------ compilation */

void mela_plan_free(mela_plan *p)
{
    if (!p)
        return;
    free(p->steps);
    free(p->offset);
    free(p->kept);
    free(p->inputs);
    free(p->params);
    free(p);
}

mela_plan *mela_plan_new(const mela_graph *g, int nout, const mela_node *outputs)
{
    if (g->error) {
        mela_set_error("plan: the graph has an error: %s", g->error);
        return NULL;
    }
    for (int k = 0; k < nout; k++)
        if (outputs[k] < 0 || outputs[k] >= g->n) {
            mela_set_error("plan: output %d (%d) is not a node of the graph", k, outputs[k]);
            return NULL;
        }
    int N = g->n;
    mela_plan *p = calloc(1, sizeof *p);
    int *last = malloc((size_t)N * sizeof *last);
    char *need = calloc((size_t)N, 1);
    arena_alloc al = {0};
    if (!p || !last || !need)
        goto oom;
    p->g = g;
    p->ngraph = N;
    p->steps = malloc((size_t)N * sizeof *p->steps);
    p->offset = malloc((size_t)N * sizeof *p->offset);
    p->kept = calloc((size_t)N, 1);
    p->inputs = malloc((size_t)N * sizeof *p->inputs);
    p->params = malloc((size_t)N * sizeof *p->params);
    if (!p->steps || !p->offset || !p->kept || !p->inputs || !p->params)
        goto oom;

    for (int k = 0; k < nout; k++)
        need[outputs[k]] = p->kept[outputs[k]] = 1;
    for (int i = N - 1; i >= 0; i--)
        if (need[i])
            for (int j = 0; j < g->nodes[i].nin; j++)
                need[g->nodes[i].in[j]] = 1;

    for (int i = 0; i < N; i++) {
        p->offset[i] = SIZE_MAX;
        last[i] = -1;
        if (!need[i])
            continue;
        const mnode *n = &g->nodes[i];
        if (n->op == OP_INPUT) {
            p->inputs[p->ninputs++] = i;
            p->kept[i] = 1;
        } else if (n->op == OP_PARAM) {
            p->params[p->nparams++] = i;
            p->kept[i] = 1;
        } else {
            for (int j = 0; j < n->nin; j++)
                last[n->in[j]] = p->nsteps;
            p->steps[p->nsteps++] = i;
            const op_def *def = &mela_ops[n->op];
            if (def->scratch) {
                size_t s = def->scratch(g, n);
                p->scratch = s > p->scratch ? s : p->scratch;
            }
        }
    }

    /* Buffers: allocate each step's output, then release the inputs whose
     * last reader this step was. Output and inputs never share memory. */
    for (int s = 0; s < p->nsteps; s++) {
        int i = p->steps[s];
        const mnode *n = &g->nodes[i];
        size_t sz = round_up(n->numel);
        p->offset[i] = arena_get(&al, sz);
        p->naive += sz;
        if (!p->kept[i] && last[i] < 0) /* computed but never read: free now */
            if (arena_put(&al, p->offset[i], sz))
                goto oom;
        for (int j = 0; j < n->nin; j++) {
            int a = n->in[j];
            int dup = 0;
            for (int t = 0; t < j; t++)
                dup |= n->in[t] == a;
            if (!dup && last[a] == s && !p->kept[a] && p->offset[a] != SIZE_MAX)
                if (arena_put(&al, p->offset[a], round_up(g->nodes[a].numel)))
                    goto oom;
        }
    }
    p->arena = al.top;
    free(al.free);
    free(last);
    free(need);
    return p;
oom:
    free(al.free);
    free(last);
    free(need);
    mela_plan_free(p);
    mela_set_error("plan: out of memory");
    return NULL;
}

int mela_plan_steps(const mela_plan *p) { return p->nsteps; }
size_t mela_plan_arena_bytes(const mela_plan *p) { return p->arena * sizeof(float); }
size_t mela_plan_naive_bytes(const mela_plan *p) { return p->naive * sizeof(float); }

/* -------------------------------------------------------------- executors */

mela_exec *mela_exec_new(const mela_plan *p)
{
    mela_exec *e = calloc(1, sizeof *e);
    if (e)
        e->threads = 1;
    if (!e)
        goto oom;
    e->p = p;
    e->val = calloc((size_t)p->ngraph, sizeof *e->val);
    e->arena = aligned_alloc(64, round_up(p->arena ? p->arena : 1) * sizeof(float));
    e->scratch = aligned_alloc(64, round_up(p->scratch ? p->scratch : 1) * sizeof(float));
    if (!e->val || !e->arena || !e->scratch)
        goto oom;
    for (int s = 0; s < p->nsteps; s++) {
        int i = p->steps[s];
        e->val[i] = e->arena + p->offset[i];
    }
    return e;
oom:
    mela_exec_free(e);
    mela_set_error("exec: out of memory for an arena of %zu bytes", p->arena * sizeof(float));
    return NULL;
}

void mela_exec_set_profiling(mela_exec *e, int on)
{
    if (on && !e->prof_s) {
        e->prof_s = calloc(OP_COUNT, sizeof *e->prof_s);
        e->prof_n = calloc(OP_COUNT, sizeof *e->prof_n);
        if (!e->prof_s || !e->prof_n) {
            free(e->prof_s), free(e->prof_n);
            e->prof_s = NULL, e->prof_n = NULL;
        }
    } else if (!on) {
        free(e->prof_s), free(e->prof_n);
        e->prof_s = NULL, e->prof_n = NULL;
    }
}

void mela_exec_profile(const mela_exec *e, double *seconds, long *calls)
{
    for (int i = 0; i < OP_COUNT; i++) {
        seconds[i] = e->prof_s ? e->prof_s[i] : 0;
        calls[i] = e->prof_n ? e->prof_n[i] : 0;
    }
}

int mela_op_count(void) { return OP_COUNT; }
const char *mela_op_name(int i) { return i >= 0 && i < OP_COUNT ? mela_ops[i].name : "none"; }

void mela_exec_free(mela_exec *e)
{
    if (!e)
        return;
    free(e->prof_s);
    free(e->prof_n);
    free(e->val);
    free(e->arena);
    free(e->scratch);
    free(e);
}

int mela_exec_bind(mela_exec *e, mela_node x, const float *data)
{
    const mela_plan *p = e->p;
    if (x < 0 || x >= p->ngraph || p->g->nodes[x].op != OP_INPUT)
        return mela_set_error("exec: node %d is not an input of the graph", x);
    e->val[x] = data;
    return 0;
}

void mela_exec_bind_params(mela_exec *e, const float *flat)
{
    /* each parameter node points at its view once, not on every run */
    const mela_plan *p = e->p;
    e->params = flat;
    for (int k = 0; k < p->nparams; k++)
        e->val[p->params[k]] = flat ? flat + p->g->nodes[p->params[k]].offset : NULL;
}

void mela_exec_set_threads(mela_exec *e, int n) { e->threads = n < 1 ? 1 : n > MK_MAX_THREADS ? MK_MAX_THREADS : n; }
int mela_exec_threads(const mela_exec *e) { return e->threads; }

int mela_exec_run(mela_exec *e)
{
    const mela_plan *p = e->p;
    const mela_graph *g = p->g;
    for (int k = 0; k < p->ninputs; k++)
        if (!e->val[p->inputs[k]])
            return mela_set_error("exec: input '%s' (node %d) is not bound",
                                  g->nodes[p->inputs[k]].name, p->inputs[k]);
    if (p->nparams && !e->params)
        return mela_set_error("exec: the graph reads parameters but none are bound");
    for (int s = 0; s < p->nsteps; s++) {
        int i = p->steps[s];
        const mnode *n = &g->nodes[i];
        const float *x[3] = {NULL, NULL, NULL};
        for (int j = 0; j < n->nin; j++)
            x[j] = e->val[n->in[j]];
        double t0 = e->prof_s ? mela_sys_now() : 0;
        if (mela_ops[n->op].forward(g, n, (float *)e->val[i], x, e->scratch, e->threads))
            return -1;
        if (e->prof_s) {
            e->prof_s[n->op] += mela_sys_now() - t0;
            e->prof_n[n->op]++;
        }
    }
    return 0;
}

const float *mela_exec_value(const mela_exec *e, mela_node x)
{
    const mela_plan *p = e->p;
    if (x < 0 || x >= p->ngraph || !p->kept[x])
        return NULL;
    return e->val[x];
}
