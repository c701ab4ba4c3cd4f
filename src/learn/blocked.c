/*
 * blocked.c - one episode through a Conv-4 embedding in fixed blocks of
 * BLK_IMAGES images (docs/distributed.md, "The images of one episode").
 *
 * What couples the images of an episode, and how each is made exact:
 *   - convolutions, relu, max-pool: image by image; each block runs through
 *     the kernels on its own (a batch of its images), so its outputs are a
 *     function of the block alone, wherever it runs;
 *   - batch-norm statistics (forward: mean, then variance about it;
 *     backward: the means of dy and dy xhat): every image's per-channel sum
 *     (a float, over its pixels) is gathered from all processes, and the
 *     sums are added in image order in double on every process, as the
 *     batch-norm kernel does on one process (mk_bn_normalize_channels);
 *   - the weight gradients (sums over images): each block's gradient is a
 *     row of its own (the convolution kernels' dw over the block; bias,
 *     gamma and beta summed over its images), and the rows are added in
 *     block order (dist_fold, the ordered sum of the meta-batch).
 * So every float depends on the blocks, never on which process or thread
 * computed them: the same bits for any P and thread count. Within a
 * process, each step of a layer runs the own blocks on its threads (block
 * lo + t on thread t mod T, with its own scratch); the sums between steps
 * are reduced on the calling thread.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "learn/blocked.h"
#include "learn/dist.h"
#include "nn/model_impl.h"

enum { MAXD = 8, MAXC = 512 }; /* blocks and channels at most */

/* What --profile counts a block's work as (the graph ops it replaces). */
enum { P_CONV, P_DX, P_DW, P_RSTD, P_NORM, P_POOL, P_SCATTER, P_BNDX, NPROF };
static const char *const prof_op[NPROF] = {"conv2d", "conv2d_dx", "conv2d_dw", "bn_rstd",
                                           "bn_normalize", "maxpool2d", "maxpool2d_scatter", "bn_dx"};

typedef struct layer {
    int C, H, OC, OH, PH; /* input channels and size, conv output, after pooling */
    float eps;
    size_t hin, hout, mid; /* floats per image: input, output, conv output */
    size_t o_hin, o_xhat, o_r; /* offsets (floats) in a block's storage */
    size_t w, cb, g, be; /* offsets of the views in theta */
} layer;

struct blocked {
    model_conv4_geom m;
    layer ly[MAXD];
    int images, n1, nblocks, D;
    size_t size, per_block, dh_floats, mid_max;
    float *scratch[MK_MAX_THREADS], *tmp[MK_MAX_THREADS]; /* each thread's */
    size_t nscratch;
    int nthreads;        /* threads with scratch */
    int threads;         /* threads of this step (blk_forward's) */
    mk_pool *pool;       /* their workers */
    int cap;             /* own blocks with storage */
    float *store, *dh, *rows;
    float *part, *emb;
    float mean[MAXD][MAXC], rstd[MAXD][MAXC];
    float mg[MAXC], mgx[MAXC]; /* backward: means of dxhat and dxhat xhat */
    int profiling;
    double prof_s[MK_MAX_THREADS][NPROF]; /* seconds and calls per thread */
    long prof_c[MK_MAX_THREADS][NPROF];
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* The time since *t under kind k of thread tid (when profiling); *t moves on. */
static void tick(blocked *b, int tid, int k, double *t)
{
    if (!b->profiling)
        return;
    double n = now();
    b->prof_s[tid][k] += n - *t;
    b->prof_c[tid][k]++;
    *t = n;
}

void blk_set_profiling(blocked *b, int on)
{
    if (b)
        b->profiling = on;
}

void blk_profile(const blocked *b, double *seconds, long *calls)
{
    if (!b)
        return;
    for (int k = 0; k < NPROF; k++) {
        int op = 0, n = mela_op_count();
        while (op < n && strcmp(mela_op_name(op), prof_op[k]))
            op++;
        if (op == n)
            continue;
        for (int t = 0; t < MK_MAX_THREADS; t++)
            seconds[op] += b->prof_s[t][k], calls[op] += b->prof_c[t][k];
    }
}

static int threads_up(blocked *b, int threads);

static int block_images(const blocked *b, int k)
{
    int n = b->images - k * BLK_IMAGES;
    return n < BLK_IMAGES ? n : BLK_IMAGES;
}

static mk_conv geom_of(const layer *l, int n, int stride, int threads)
{
    mk_conv cv = {n, l->C, l->H, l->H, l->OC, 3, 3, stride, 1, 0, 0, threads, 0};
    mk_conv_init(&cv);
    return cv;
}

void blk_free(blocked *b)
{
    if (!b)
        return;
    for (int t = 0; t < MK_MAX_THREADS; t++)
        free(b->scratch[t]), free(b->tmp[t]);
    mk_pool_free(b->pool);
    free(b->store), free(b->dh), free(b->rows);
    free(b->part), free(b->emb);
    free(b);
}

int blk_serves(const mela_model *m)
{
    model_conv4_geom g;
    return model_conv4_geometry(m, &g) && g.depth <= MAXD && g.width <= MAXC;
}

blocked *blk_new(const mela_model *m, const mela_layout *L, int n1, int n2, int *failed)
{
    *failed = 0;
    model_conv4_geom g;
    int images = n1 + n2;
    if (!blk_serves(m) || n1 < 0 || n2 < 0 || images < 1)
        return NULL;
    model_conv4_geometry(m, &g);
    blocked *b = calloc(1, sizeof *b);
    if (!b) {
        *failed = mela_set_error("episode blocks: out of memory");
        return NULL;
    }
    b->m = g;
    b->images = images;
    b->n1 = n1;
    b->nblocks = (images + BLK_IMAGES - 1) / BLK_IMAGES;
    b->size = mela_layout_size(L);
    int C = g.channels, H = g.size, stride = g.maxpool ? 1 : 2;
    size_t at = 0, scratch = 0;
    for (int i = 0; i < g.depth; i++) {
        layer *l = &b->ly[i];
        l->C = C, l->H = H, l->OC = g.width, l->eps = g.eps;
        mk_conv cv = geom_of(l, BLK_IMAGES, stride, 1);
        l->OH = cv.OH;
        l->PH = g.maxpool ? cv.OH / 2 : cv.OH;
        l->hin = (size_t)C * H * H;
        l->mid = (size_t)l->OC * l->OH * l->OH;
        l->hout = (size_t)l->OC * l->PH * l->PH;
        l->o_hin = at, at += BLK_IMAGES * l->hin;
        l->o_xhat = at, at += BLK_IMAGES * l->mid;
        l->o_r = at, at += BLK_IMAGES * l->mid;
        l->w = mela_layout_offset(L, 4 * i), l->cb = mela_layout_offset(L, 4 * i + 1);
        l->g = mela_layout_offset(L, 4 * i + 2), l->be = mela_layout_offset(L, 4 * i + 3);
        if (l->mid > b->mid_max)
            b->mid_max = l->mid;
        if (l->hin > b->dh_floats)
            b->dh_floats = l->hin;
        if (l->hout > b->dh_floats)
            b->dh_floats = l->hout;
        int sizes[2] = {BLK_IMAGES, block_images(b, b->nblocks - 1)};
        for (int k = 0; k < 2; k++) {
            mk_conv c2 = geom_of(l, sizes[k], stride, 1);
            size_t s = mk_conv_scratch(&c2);
            scratch = s > scratch ? s : scratch;
        }
        C = g.width, H = l->PH;
    }
    b->D = C * H * H;
    b->per_block = at;
    b->nscratch = scratch;
    size_t slots = (size_t)b->nblocks * BLK_IMAGES;
    b->part = malloc(slots * 2 * g.width * sizeof *b->part);
    b->emb = malloc(slots * b->D * sizeof *b->emb);
    if (!b->part || !b->emb || threads_up(b, 1)) {
        blk_free(b);
        *failed = mela_set_error("episode blocks: out of memory");
        return NULL;
    }
    return b;
}

/* Scratch for `threads` threads (at most MK_MAX_THREADS), and a pool of
 * workers for more than one. 0 or -1 (with the error set). */
static int threads_up(blocked *b, int threads)
{
    for (int t = b->nthreads; t < threads; t++) {
        b->scratch[t] = malloc((b->nscratch + 16) * sizeof *b->scratch[t]);
        b->tmp[t] = malloc(BLK_IMAGES * b->mid_max * sizeof *b->tmp[t]);
        if (!b->scratch[t] || !b->tmp[t])
            return mela_set_error("episode blocks: out of memory for thread %d", t + 1);
        b->nthreads = t + 1;
    }
    if (threads > 1 && mk_pool_threads(b->pool) < threads) {
        mk_pool_free(b->pool);
        if (!(b->pool = mk_pool_new(threads)))
            return mela_set_error("episode blocks: cannot start %d threads", threads);
    }
    return 0;
}

/* Storage for this process's `mine` blocks. */
static int reserve(blocked *b, int mine)
{
    if (mine <= b->cap)
        return 0;
    free(b->store), free(b->dh), free(b->rows);
    b->store = malloc((size_t)mine * b->per_block * sizeof *b->store);
    b->dh = malloc((size_t)mine * BLK_IMAGES * b->dh_floats * sizeof *b->dh);
    b->rows = calloc((size_t)mine * b->size, sizeof *b->rows); /* views not written stay 0 */
    b->cap = b->store && b->dh && b->rows ? mine : 0;
    return b->cap ? 0 : mela_set_error("episode blocks: out of memory for %d blocks", mine);
}

/* part[i * C + c] = sum over the P pixels of channel c of image i of
 * (x - m[c])^2, in float (as the batch-norm kernel sums one image's row; the
 * float is what the processes exchange), for the n images of x (n, C, P). */
static void sqdev_sums(float *part, const float *x, const float *m, int n, int C, size_t P)
{
    for (int j = 0; j < n * C; j++) {
        const float *px = x + (size_t)j * P;
        float acc = 0, mc = m[j % C];
#pragma omp simd reduction(+ : acc)
        for (size_t p = 0; p < P; p++)
            acc += (px[p] - mc) * (px[p] - mc);
        part[j] = acc;
    }
}

/* out[c] = (float)(sum over all images in image order of part[i*k + c] / cnt) */
static void image_means(float *out, const float *part, int k, int images, int C, double cnt)
{
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int i = 0; i < images; i++)
            s += part[(size_t)i * k + c];
        out[c] = (float)(s / cnt);
    }
}

/* This process's blocks' per-image sums gathered from every process. */
static void gather_sums(blocked *b, int k)
{
    dist_gather_floats(b->part, b->nblocks, BLK_IMAGES * k);
}

/* The sum of a plane's P floats, and the sum of the products of two
 * planes', in float (the order of the batch-norm kernel's row sums). */
static float plane_sum(const float *x, size_t P)
{
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (size_t p = 0; p < P; p++)
        acc += x[p];
    return acc;
}

static float plane_dot(const float *x, const float *y, size_t P)
{
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (size_t p = 0; p < P; p++)
        acc += x[p] * y[p];
    return acc;
}

/* Images [k*BLK, ...) of x1 then x2 into dst. */
static void block_input(const blocked *b, float *dst, int k, const float *x1, const float *x2)
{
    size_t f = b->ly[0].hin;
    for (int j = 0, i = k * BLK_IMAGES; j < block_images(b, k); j++, i++) {
        const float *src = i < b->n1 ? x1 + (size_t)i * f : x2 + (size_t)(i - b->n1) * f;
        memcpy(dst + (size_t)j * f, src, f * sizeof *dst);
    }
}

/* The steps of a layer, each block by block (blocks are independent within
 * a step; between steps the per-image sums are gathered and reduced). */
enum { F_CONV, F_SQDEV, F_NORM, B_SUMS, B_CONV };

/* Step `step` of layer i for own block k (lo the first own block), on
 * thread tid with `kt` threads for its convolutions. */
static void block_step(blocked *b, const float *theta, int step, int i, int k, int lo, int tid, int kt)
{
    const layer *l = &b->ly[i];
    int C = l->OC, n = block_images(b, k), stride = b->m.maxpool ? 1 : 2;
    size_t P = (size_t)l->OH * l->OH;
    float *st = b->store + (size_t)(k - lo) * b->per_block, *xh = st + l->o_xhat, *r = st + l->o_r;
    float *tmp = b->tmp[tid], *scratch = b->scratch[tid];
    size_t dhb = BLK_IMAGES * b->dh_floats; /* a block's dh */
    float *dh = b->dh + (size_t)(k - lo) * dhb, *row = b->rows + (size_t)(k - lo) * b->size;
    mk_conv cv = geom_of(l, n, stride, kt);
    double t = b->profiling ? now() : 0;
    switch (step) {
    case F_CONV: { /* z = conv(h) + bias (kept where xhat goes), each image's sums */
        const float *bias = theta + l->cb;
        float *part = b->part + (size_t)k * BLK_IMAGES * C;
        mk_conv2d(xh, st + l->o_hin, theta + l->w, &cv, scratch);
        for (int j = 0; j < n * C; j++) { /* plane j: image j / C, channel j % C */
            float *pz = xh + (size_t)j * P, bc = bias[j % C];
            for (size_t p = 0; p < P; p++)
                pz[p] += bc;
            part[j] = plane_sum(pz, P);
        }
        tick(b, tid, P_CONV, &t);
        break;
    }
    case F_SQDEV:
        sqdev_sums(b->part + (size_t)k * BLK_IMAGES * C, xh, b->mean[i], n, C, P);
        tick(b, tid, P_RSTD, &t);
        break;
    case F_NORM: { /* xhat (in place of z), r = relu(gamma xhat + beta), the next
                    * input (pooled), plane by plane */
        const float *gam = theta + l->g, *bet = theta + l->be;
        int last = i + 1 == b->m.depth;
        /* the last layer's output: the embeddings, to be gathered */
        float *next = last ? b->emb + (size_t)k * BLK_IMAGES * b->D : st + b->ly[i + 1].o_hin;
        size_t po = b->m.maxpool ? (size_t)l->PH * l->PH : P; /* a plane of the next input */
        double tp = 0;
        for (int j = 0; j < n * C; j++) {
            int c = j % C;
            float mc = b->mean[i][c], rc = b->rstd[i][c], gc = gam[c], bc = bet[c];
            float *px = xh + (size_t)j * P, *pr = r + (size_t)j * P;
            for (size_t p = 0; p < P; p++) {
                float v = (px[p] - mc) * rc, a = v * gc + bc;
                px[p] = v;
                pr[p] = a > 0 ? a : 0;
            }
            double t0 = b->profiling ? now() : 0;
            if (b->m.maxpool)
                mk_maxpool(next + (size_t)j * po, pr, 1, l->OH, l->OH, 2, 2);
            else
                memcpy(next + (size_t)j * po, pr, P * sizeof *next);
            if (b->profiling)
                tp += now() - t0;
        }
        t += tp; /* the pooling's share goes to maxpool2d */
        tick(b, tid, P_NORM, &t);
        t -= tp;
        tick(b, tid, P_POOL, &t);
        break;
    }
    case B_SUMS: { /* plane by plane: dy of the batch norm's affine output (the
                    * pooling's gradient, relu's mask); gamma's and beta's
                    * rows (sums over the images in image order, in double);
                    * dxhat = dy gamma (in place of r); each image's sums of
                    * dxhat and dxhat xhat */
        const float *gam = theta + l->g;
        float *dy = tmp, *part = b->part + (size_t)k * BLK_IMAGES * 2 * C;
        size_t po = b->m.maxpool ? (size_t)l->PH * l->PH : P; /* a plane of dh */
        double sg[MAXC] = {0}, sb[MAXC] = {0}, ts = 0;
        for (int j = 0; j < n * C; j++) {
            int c = j % C, im = j / C;
            float *pr = r + (size_t)j * P, gc = gam[c];
            const float *px = xh + (size_t)j * P;
            double t0 = b->profiling ? now() : 0;
            if (b->m.maxpool)
                mk_maxpool_scatter(dy, pr, dh + (size_t)j * po, 1, l->OH, l->OH, 2, 2);
            else
                memcpy(dy, dh + (size_t)j * po, P * sizeof *dy);
            if (b->profiling)
                ts += now() - t0;
            for (size_t p = 0; p < P; p++) {
                float v = dy[p];
                dy[p] = pr[p] > 0 ? v : 0.0f;
            }
            sg[c] += plane_dot(dy, px, P);
            sb[c] += plane_sum(dy, P);
            for (size_t p = 0; p < P; p++)
                pr[p] = dy[p] * gc;
            part[(size_t)im * 2 * C + c] = plane_sum(pr, P);
            part[(size_t)im * 2 * C + C + c] = plane_dot(pr, px, P);
        }
        for (int c = 0; c < C; c++)
            row[l->g + c] = (float)sg[c], row[l->be + c] = (float)sb[c];
        t += ts; /* the scatter's share goes to maxpool2d_scatter */
        tick(b, tid, P_BNDX, &t);
        t -= ts;
        tick(b, tid, P_SCATTER, &t);
        break;
    }
    case B_CONV: { /* dz = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat));
                    * the convolution's gradients over the block */
        float *dz = tmp;
        double sz[MAXC] = {0}; /* the bias's row: sums over the images in image order */
        for (int j = 0; j < n * C; j++) {
            int c = j % C;
            float m1 = b->mg[c], m2 = b->mgx[c], rc = b->rstd[i][c];
            const float *pg = r + (size_t)j * P, *px = xh + (size_t)j * P;
            float *pd = dz + (size_t)j * P;
            for (size_t p = 0; p < P; p++)
                pd[p] = (pg[p] - m1 - px[p] * m2) * rc;
            sz[c] += plane_sum(pd, P);
        }
        for (int c = 0; c < C; c++)
            row[l->cb + c] = (float)sz[c];
        tick(b, tid, P_BNDX, &t);
        mk_conv2d_dw(row + l->w, st + l->o_hin, dz, &cv, scratch);
        tick(b, tid, P_DW, &t);
        if (i > 0) {
            mk_conv2d_dx(dh, dz, theta + l->w, &cv, scratch);
            tick(b, tid, P_DX, &t);
        }
        break;
    }
    }
}

typedef struct step_job {
    blocked *b;
    const float *theta;
    int step, layer, lo, hi, tid, nt, kt;
} step_job;

static void *step_main(void *arg)
{
    step_job *j = arg;
    for (int k = j->lo + j->tid; k < j->hi; k += j->nt)
        block_step(j->b, j->theta, j->step, j->layer, k, j->lo, j->tid, j->kt);
    return NULL;
}

/* Step `step` of layer i for the own blocks [lo, hi): block lo + t on
 * thread t % nt, each block's convolutions on threads / nt threads. Which
 * thread runs a block never changes its bits. */
static void run_step(blocked *b, const float *theta, int step, int i, int lo, int hi)
{
    int nt = b->threads < hi - lo ? b->threads : hi - lo;
    if (nt < 1)
        return;
    step_job jobs[MK_MAX_THREADS];
    for (int t = 0; t < nt; t++)
        jobs[t] = (step_job){b, theta, step, i, lo, hi, t, nt, b->threads / nt};
    mk_pool_run(nt > 1 ? b->pool : NULL, nt, step_main, jobs, sizeof *jobs);
}

int blk_forward(blocked *b, const float *theta, const float *x1, const float *x2, int threads, float *E)
{
    int lo, hi;
    dist_share(b->nblocks, &lo, &hi);
    threads = threads < 1 ? 1 : threads > MK_MAX_THREADS ? MK_MAX_THREADS : threads;
    if (dist_agree(reserve(b, hi - lo) || threads_up(b, threads)))
        return -1;
    b->threads = threads;
    for (int k = lo; k < hi; k++)
        block_input(b, b->store + (size_t)(k - lo) * b->per_block + b->ly[0].o_hin, k, x1, x2);
    for (int i = 0; i < b->m.depth; i++) {
        const layer *l = &b->ly[i];
        int C = l->OC;
        double cnt = (double)b->images * (double)l->OH * l->OH;
        run_step(b, theta, F_CONV, i, lo, hi);
        gather_sums(b, C);
        image_means(b->mean[i], b->part, C, b->images, C, cnt);
        run_step(b, theta, F_SQDEV, i, lo, hi);
        gather_sums(b, C);
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int j = 0; j < b->images; j++)
                s += b->part[(size_t)j * C + c];
            b->rstd[i][c] = (float)(1.0 / sqrt(s / cnt + l->eps));
        }
        run_step(b, theta, F_NORM, i, lo, hi);
    }
    dist_gather_floats(b->emb, b->nblocks, BLK_IMAGES * b->D);
    memcpy(E, b->emb, (size_t)b->images * b->D * sizeof *E);
    return 0;
}

void blk_backward(blocked *b, const float *theta, const float *dE, int threads, float *grad)
{
    (void)threads; /* blk_forward's */
    int lo, hi;
    dist_share(b->nblocks, &lo, &hi);
    size_t dhb = BLK_IMAGES * b->dh_floats; /* a block's dh */
    for (int k = lo; k < hi; k++)
        memcpy(b->dh + (size_t)(k - lo) * dhb, dE + (size_t)k * BLK_IMAGES * b->D,
               (size_t)block_images(b, k) * b->D * sizeof *dE);
    for (int i = b->m.depth - 1; i >= 0; i--) {
        const layer *l = &b->ly[i];
        int C = l->OC, K = 2 * C;
        double cnt = (double)b->images * (double)l->OH * l->OH;
        run_step(b, theta, B_SUMS, i, lo, hi);
        gather_sums(b, K);
        image_means(b->mg, b->part, K, b->images, C, cnt);
        image_means(b->mgx, b->part + C, K, b->images, C, cnt);
        run_step(b, theta, B_CONV, i, lo, hi);
    }
    dist_fold(grad, b->rows, b->nblocks, b->size, 1.0f);
}
