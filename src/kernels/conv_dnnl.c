/*
 * conv_dnnl.c - the convolution kernels through oneDNN (Intel's deep-learning
 * primitives, the CPU convolutions PyTorch uses), where it is built in and
 * wins: its JIT kernels run on blocked layouts (nChw16c), so each call
 * reorders the caller's NCHW tensors in and out, and still runs the Conv-4
 * layers 1.3-2.5x faster than im2col + sgemm (bench/results/speed.md).
 *
 * Bits. A batch is cut into chunks by its shape alone (at most
 * MK_MAX_THREADS, never by the thread count); each chunk runs on one thread
 * with oneDNN itself held to one thread, so a chunk's result does not depend
 * on which thread ran it; dw sums the chunks' partial gradients in chunk
 * order. So, as for mela's own kernels, the same bits for any thread count.
 *
 * State. Primitives are created once per geometry and kept in a list for the
 * life of the process (oneDNN's JIT code generation costs milliseconds); a
 * mutex guards the list. They are executed with scratchpads the caller
 * passes in (mela's executor scratch), so concurrent executions share
 * nothing. oneDNN's OpenMP thread count is set to 1 for the calling thread
 * during a call and put back after (an OpenMP setting of that thread only).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#ifndef MELA_HAVE_DNNL

int mk_dnnl_serves(const mk_conv *cv, int kind) { return 0; }
size_t mk_dnnl_scratch(const mk_conv *cv) { return 0; }
int mk_dnnl_conv(int kind, float *out, const float *a, const float *b, const mk_conv *cv, float *scratch) { return -1; }
int mk_dnnl_version(char *buf, size_t n) { return 0; }

#else

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>

#define ALIGN 16 /* floats: 64 bytes */
#define MIN_CHUNK_FLOPS 2e7 /* below this a chunk costs more in calls than it gains */

/* What one batch size of a geometry needs: three primitives, the reorders
 * between NCHW and their layouts, and the scratch (floats) per chunk. */
typedef struct dplan {
    struct dplan *next;
    int key[9];
    int ok;
    dnnl_primitive_t prim[3];     /* forward, backward data, backward weights */
    dnnl_primitive_t in[3][2];    /* reorders of each primitive's two inputs (or NULL) */
    dnnl_primitive_t out[3];      /* reorder of its output back to plain (or NULL) */
    dnnl_memory_desc_t md[3][4];  /* inputs 0, 1, output, scratchpad */
    dnnl_memory_desc_t plain[3];  /* x (N,C,H,W), w (OC,C,KH,KW), y (N,OC,OH,OW) */
    size_t floats[3];             /* scratch per chunk for each kind */
} dplan;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static dplan *plans;
static dnnl_engine_t engine;
static int engine_failed;

static size_t up(size_t bytes) { return (bytes / sizeof(float) + ALIGN - 1) / ALIGN * ALIGN; }

/* A reorder from md `from` to md `to`, or NULL when they are the same. */
static int reorder(dnnl_primitive_t *p, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to)
{
    *p = NULL;
    if (dnnl_memory_desc_equal(from, to))
        return 0;
    dnnl_primitive_desc_t pd;
    if (dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, NULL) != dnnl_success)
        return -1;
    int rc = dnnl_primitive_create(p, pd) == dnnl_success ? 0 : -1;
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* The primitive of pd and what it reads and writes: in0, in1 -> out. */
static int finish(dplan *d, int k, dnnl_primitive_desc_t pd, dnnl_query_t q0, dnnl_query_t q1,
                  dnnl_query_t qo, int p0, int p1, int po)
{
    d->md[k][0] = *dnnl_primitive_desc_query_md(pd, q0, 0);
    d->md[k][1] = *dnnl_primitive_desc_query_md(pd, q1, 0);
    d->md[k][2] = *dnnl_primitive_desc_query_md(pd, qo, 0);
    d->md[k][3] = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    int rc = dnnl_primitive_create(&d->prim[k], pd) == dnnl_success &&
             !reorder(&d->in[k][0], &d->plain[p0], &d->md[k][0]) &&
             !reorder(&d->in[k][1], &d->plain[p1], &d->md[k][1]) &&
             !reorder(&d->out[k], &d->md[k][2], &d->plain[po]) ? 0 : -1;
    d->floats[k] = up(dnnl_memory_desc_get_size(&d->md[k][0])) + up(dnnl_memory_desc_get_size(&d->md[k][1])) +
                   up(dnnl_memory_desc_get_size(&d->md[k][2])) + up(dnnl_memory_desc_get_size(&d->md[k][3]));
    return rc;
}

enum { X, W, Y };

static int build(dplan *d, const mk_conv *cv, int N)
{
    dnnl_dims_t xd = {N, cv->C, cv->H, cv->W}, wd = {cv->OC, cv->C, cv->KH, cv->KW},
                yd = {N, cv->OC, cv->OH, cv->OW}, st = {cv->stride, cv->stride}, pad = {cv->pad, cv->pad};
    dnnl_memory_desc_t xa, wa, ya;
    if (dnnl_memory_desc_init_by_tag(&d->plain[X], 4, xd, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&d->plain[W], 4, wd, dnnl_f32, dnnl_oihw) ||
        dnnl_memory_desc_init_by_tag(&d->plain[Y], 4, yd, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&xa, 4, xd, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wa, 4, wd, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&ya, 4, yd, dnnl_f32, dnnl_format_tag_any))
        return -1;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr))
        return -1;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    dnnl_convolution_desc_t fd, bd, wdsc;
    dnnl_primitive_desc_t pd[3] = {NULL, NULL, NULL};
    int rc = -1;
    if (dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &xa, &wa,
                                           NULL, &ya, st, pad, pad) ||
        dnnl_primitive_desc_create(&pd[0], &fd, attr, engine, NULL) ||
        dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &xa, &wa, &ya, st, pad, pad) ||
        dnnl_primitive_desc_create(&pd[1], &bd, attr, engine, pd[0]) ||
        dnnl_convolution_backward_weights_desc_init(&wdsc, dnnl_convolution_direct, &xa, &wa, NULL, &ya, st,
                                                    pad, pad) ||
        dnnl_primitive_desc_create(&pd[2], &wdsc, attr, engine, pd[0]))
        goto done;
    rc = finish(d, 0, pd[0], dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md, X, W, Y) ||
         finish(d, 1, pd[1], dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md, Y, W, X) ||
         finish(d, 2, pd[2], dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md, X, Y, W)
             ? -1 : 0;
done:
    for (int k = 0; k < 3; k++)
        if (pd[k])
            dnnl_primitive_desc_destroy(pd[k]);
    dnnl_primitive_attr_destroy(attr);
    return rc;
}

/* The plan of cv's geometry at batch N, made on first use (ok = 0 when
 * oneDNN cannot do it: the caller falls back to mela's kernels). */
static dplan *plan_for(const mk_conv *cv, int N)
{
    int key[9] = {N, cv->C, cv->H, cv->W, cv->OC, cv->KH, cv->KW, cv->stride, cv->pad};
    pthread_mutex_lock(&lock);
    dplan *d = plans;
    while (d && memcmp(d->key, key, sizeof key))
        d = d->next;
    if (!d && !engine_failed && !engine && dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
        engine = NULL;
        engine_failed = 1;
    }
    if (!d && (d = calloc(1, sizeof *d))) {
        memcpy(d->key, key, sizeof key);
        int prev = omp_get_max_threads();
        omp_set_num_threads(1);
        d->ok = engine && build(d, cv, N) == 0;
        omp_set_num_threads(prev);
        d->next = plans;
        plans = d;
    }
    pthread_mutex_unlock(&lock);
    return d;
}

/* Images per chunk: chunks of at least MIN_CHUNK_FLOPS, at most
 * MK_MAX_THREADS of them; a function of the shape alone. */
static int chunk_images(const mk_conv *cv)
{
    double flops = 2.0 * cv->N * cv->OC * (double)cv->OH * cv->OW * cv->C * cv->KH * cv->KW;
    int n = (int)(flops / MIN_CHUNK_FLOPS);
    n = n < 1 ? 1 : n > MK_MAX_THREADS ? MK_MAX_THREADS : n;
    n = n > cv->N ? cv->N : n;
    return (cv->N + n - 1) / n;
}

/* The plans of the full chunks and of the last one (NULL when it is full). */
static int plans_of(const mk_conv *cv, dplan **full, dplan **last)
{
    int nb = chunk_images(cv), rem = cv->N % nb;
    *full = plan_for(cv, nb);
    *last = rem ? plan_for(cv, rem) : NULL;
    return *full && (*full)->ok && (!rem || (*last && (*last)->ok));
}

/* Whether oneDNN serves this kernel, and its plans when it does. */
static int served(const mk_conv *cv, int kind, dplan **full, dplan **last)
{
    if (cv->own || (kind == 1 && cv->C < 16)) /* dx of a thin layer: im2col wins */
        return 0;
    return plans_of(cv, full, last);
}

int mk_dnnl_serves(const mk_conv *cv, int kind)
{
    dplan *a, *b;
    return served(cv, kind, &a, &b);
}

static size_t chunk_floats(const dplan *d)
{
    size_t m = 0;
    for (int k = 0; k < 3 && d; k++)
        m = d->floats[k] > m ? d->floats[k] : m;
    return m;
}

size_t mk_dnnl_scratch(const mk_conv *cv)
{
    dplan *a, *b;
    if (cv->own || !plans_of(cv, &a, &b))
        return 0;
    size_t c = chunk_floats(a) > chunk_floats(b) ? chunk_floats(a) : chunk_floats(b);
    return MK_MAX_THREADS * c + (size_t)MK_MAX_THREADS * cv->OC * cv->C * cv->KH * cv->KW + ALIGN;
}

typedef struct djob {
    int kind;
    float *out;
    const float *a, *b;
    const mk_conv *cv;
    float *scratch;
    size_t per_chunk;
    int nb;
} djob;

static dnnl_memory_t mem(const dnnl_memory_desc_t *md, const void *p)
{
    dnnl_memory_t m = NULL;
    if (dnnl_memory_create(&m, md, engine, (void *)p) != dnnl_success)
        return NULL;
    return m;
}

/* r (or nothing) from plain `from` to `to`, both memories of this chunk. */
static void run_reorder(dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to, dnnl_stream_t s)
{
    if (!r)
        return;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    dnnl_primitive_execute(r, s, 2, args);
}

static const int arg_of[3][3] = {
    {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
    {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC},
    {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS},
};

/* Chunk c: its two inputs reordered into scratch, the primitive, its output
 * reordered out (dw: into the chunk's partial gradient). */
static void chunk(void *arg, int c, int tid)
{
    const djob *j = arg;
    const mk_conv *cv = j->cv;
    int n0 = c * j->nb, b = cv->N - n0 < j->nb ? cv->N - n0 : j->nb, k = j->kind;
    dplan *d = plan_for(cv, b);
    size_t xs = (size_t)cv->C * cv->H * cv->W, ys = (size_t)cv->OC * cv->OH * cv->OW;
    size_t ws = (size_t)cv->OC * cv->C * cv->KH * cv->KW;
    /* the plain operands of this chunk */
    const float *plain_in[3][2] = {{j->a + n0 * xs, j->b}, {j->a + n0 * ys, j->b},
                                   {j->a + n0 * xs, j->b + n0 * ys}};
    float *partials = j->scratch + MK_MAX_THREADS * j->per_chunk;
    float *plain_out = k == 0 ? j->out + n0 * ys : k == 1 ? j->out + n0 * xs : partials + (size_t)c * ws;
    float *s = j->scratch + (size_t)tid * j->per_chunk;
    int pidx[3][3] = {{X, W, Y}, {Y, W, X}, {X, Y, W}};
    dnnl_memory_t m[4], p[3];
    dnnl_exec_arg_t args[4];
    dnnl_stream_t st = NULL;
    int prev = omp_get_max_threads();
    omp_set_num_threads(1);
    dnnl_stream_create(&st, engine, dnnl_stream_default_flags);
    for (int i = 0; i < 4; i++) { /* blocked operands and the scratchpad, in scratch */
        int plainly = i < 2 ? !d->in[k][i] : i == 2 ? !d->out[k] : 0;
        const void *at = i < 2 && plainly ? (const void *)plain_in[k][i] : i == 2 && plainly ? plain_out : s;
        m[i] = mem(&d->md[k][i], at);
        if (!plainly)
            s += up(dnnl_memory_desc_get_size(&d->md[k][i]));
    }
    for (int i = 0; i < 3; i++)
        p[i] = mem(&d->plain[pidx[k][i]], i < 2 ? (const void *)plain_in[k][i] : plain_out);
    run_reorder(d->in[k][0], p[0], m[0], st);
    run_reorder(d->in[k][1], p[1], m[1], st);
    for (int i = 0; i < 3; i++)
        args[i] = (dnnl_exec_arg_t){arg_of[k][i], m[i]};
    args[3] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m[3]};
    dnnl_primitive_execute(d->prim[k], st, 4, args);
    run_reorder(d->out[k], m[2], p[2], st);
    dnnl_stream_wait(st);
    dnnl_stream_destroy(st);
    for (int i = 0; i < 4; i++)
        dnnl_memory_destroy(m[i]);
    for (int i = 0; i < 3; i++)
        dnnl_memory_destroy(p[i]);
    omp_set_num_threads(prev);
}

int mk_dnnl_conv(int kind, float *out, const float *a, const float *b, const mk_conv *cv, float *scratch)
{
    dplan *full, *last;
    if (!served(cv, kind, &full, &last))
        return -1;
    int nb = chunk_images(cv), nchunks = (cv->N + nb - 1) / nb;
    size_t per = chunk_floats(full) > chunk_floats(last) ? chunk_floats(full) : chunk_floats(last);
    djob j = {kind, out, a, b, cv, scratch, per, nb};
    double flops = 2.0 * cv->N * cv->OC * (double)cv->OH * cv->OW * cv->C * cv->KH * cv->KW;
    mk_parallel_chunks(cv->threads, nchunks, flops, chunk, &j);
    if (kind != 2)
        return 0;
    /* dw: the chunks' partial gradients summed in chunk order */
    const float *part = scratch + MK_MAX_THREADS * per;
    size_t n = (size_t)cv->OC * cv->C * cv->KH * cv->KW;
    memcpy(out, part, n * sizeof *out);
    for (int c = 1; c < nchunks; c++)
        for (size_t i = 0; i < n; i++)
            out[i] += part[(size_t)c * n + i];
    return 0;
}

int mk_dnnl_version(char *buf, size_t n)
{
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, n, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    return 1;
}

#endif
