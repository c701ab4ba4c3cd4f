/*
 * find.c - one-shot detection with a metric checkpoint (ProtoNets, Matching,
 * Siamese): the Conv-4 embedding applied densely over a picture at several
 * scales, every window compared with the support classes, score maps,
 * boxes after non-maximum suppression. docs/find.md has the design.
 *
 * The dense pass. The max-pool Conv-4 turns a 28 x 28 input into one 64-d
 * vector; on a larger picture its last feature map has one vector per 28 x 28
 * window at a stride of 16 pixels. Blocks 1-3 (stride 8) are shift-equivariant
 * for shifts by 8, so the last 2 x 2 max-pool taken with stride 1 instead of 2
 * gives the windows at a stride of 8 for the cost of one pass; finer strides
 * (4, 2) run the picture shifted by multiples of the stride as one batch.
 * Scales: the picture is resized by 28 / size for each object size asked
 * for, so that an object of that size fills one window.
 *
 * Batch normalisation. Conv-4 was trained with the statistics of each
 * batch; a dense pass needs fixed ones. Every layer is normalised as an
 * affine map per channel (bn_affine) from the checkpoint's population
 * statistics (bnI.running_mean and _var), or, for a checkpoint made before
 * they existed, from the statistics of the support crops taken as one batch
 * (what the support embeddings saw in an episode); bn_stats chooses. The
 * body is built here rather than with mela_model_body_bn because its last
 * max-pool runs with stride 1 (windows every 8 pixels) and it keeps the
 * feature map instead of flattening it.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "learn/learner.h"
#include "learn/run_impl.h"
#include "learn/taskpool.h"

#define FIND_IN 28       /* the model's input side */
#define FIND_MAX_DEPTH 8
#define FIND_CACHE 16
#define FIND_PAD 16      /* blank around a support crop: a multiple of 16 */

enum { KIND_PROTO, KIND_MATCHING, KIND_SIAMESE };

/* A compiled dense pass for one input shape. */
typedef struct dense {
    int n, H, W, last_stride; /* batch, input side, stride of the last pool */
    mela_graph *g;
    mela_plan *p;
    mela_exec *e;
    mela_node x, out, bn[2 * FIND_MAX_DEPTH];
    long used; /* for eviction */
} dense;

struct mela_finder {
    mela_run_config rc;
    int kind, depth, width, D;
    mela_layout *L; /* conv and bn views of the model */
    float *theta;
    float siam_w[1024], siam_b;
    float *bn_a, *bn_b; /* depth * width each: x * a + b per channel */
    float *pop;         /* depth * width means, then variances: the checkpoint's
                         * population statistics (NULL: it has none) */
    float eps;
    int ways, shots, views;
    float *emb;   /* views * ways * shots * D support embeddings */
    float *proto; /* views * ways * D class means */
    float *ref;   /* ways: ProtoNets, Matching: each class's distance from the blank
                   * window (MELA_FIND_SCORE_OTHERS: or from the nearest other class) */
    mela_find_opts o;
    dense cache[FIND_CACHE];
    long clock;
};

/* ---------------------------------------------------------------- boxes */

float mela_box_iou(const float *a, const float *b)
{
    float x0 = fmaxf(a[0], b[0]), y0 = fmaxf(a[1], b[1]);
    float x1 = fminf(a[0] + a[2], b[0] + b[2]), y1 = fminf(a[1] + a[3], b[1] + b[3]);
    if (x1 <= x0 || y1 <= y0)
        return 0;
    float inter = (x1 - x0) * (y1 - y0), uni = a[2] * a[3] + b[2] * b[3] - inter;
    return uni > 0 ? inter / uni : 0;
}

static int by_score(const void *pa, const void *pb)
{
    const mela_find_box *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score < b->score ? 1 : -1;
    /* ties: a fixed order, so that results never depend on qsort */
    if (a->label != b->label)
        return a->label - b->label;
    if (a->y != b->y)
        return a->y < b->y ? -1 : 1;
    if (a->x != b->x)
        return a->x < b->x ? -1 : 1;
    return a->w < b->w ? -1 : a->w > b->w;
}

int mela_nms(mela_find_box *boxes, int n, float iou, int per_class, int max_keep)
{
    qsort(boxes, (size_t)n, sizeof *boxes, by_score);
    int kept = 0;
    for (int i = 0; i < n && kept < max_keep; i++) {
        int ok = 1;
        for (int k = 0; k < kept && ok; k++)
            if ((!per_class || boxes[k].label == boxes[i].label) &&
                mela_box_iou(&boxes[k].x, &boxes[i].x) > iou)
                ok = 0;
        if (ok)
            boxes[kept++] = boxes[i];
    }
    return kept;
}

/* ------------------------------------------------------------- pictures */

/* Resizes a float picture h x w to H x W: the mean over each output pixel's
 * footprint (an area filter) when shrinking, bilinear when enlarging; or,
 * nearest, the pixel under each output pixel's centre (the rule of
 * mela_resize_nearest, for checkpoints trained on `--resize nearest`
 * images: a binary picture stays binary). */
static void resize(float *out, int H, int W, const float *in, int h, int w, int nearest)
{
    if (nearest) {
        for (int y = 0; y < H; y++) {
            const float *row = in + (size_t)mk_nearest_src(y, h, H) * w;
            for (int x = 0; x < W; x++)
                out[(size_t)y * W + x] = row[mk_nearest_src(x, w, W)];
        }
        return;
    }
    float sy = (float)h / H, sx = (float)w / W;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float v = 0;
            if (sx > 1 || sy > 1) {
                float ya = y * sy, yb = ya + sy, xa = x * sx, xb = xa + sx, wsum = 0;
                for (int j = (int)ya; j < h && j < yb; j++) {
                    float wy = fminf(yb, j + 1.0f) - fmaxf(ya, (float)j);
                    for (int i = (int)xa; i < w && i < xb; i++) {
                        float wx = fminf(xb, i + 1.0f) - fmaxf(xa, (float)i);
                        v += wx * wy * in[(size_t)j * w + i];
                        wsum += wx * wy;
                    }
                }
                v = wsum > 0 ? v / wsum : 0;
            } else {
                float fy = (y + 0.5f) * sy - 0.5f, fx = (x + 0.5f) * sx - 0.5f;
                fy = fy < 0 ? 0 : fy, fx = fx < 0 ? 0 : fx;
                int y0 = (int)fy, x0 = (int)fx, y1 = y0 + 1 < h ? y0 + 1 : h - 1,
                    x1 = x0 + 1 < w ? x0 + 1 : w - 1;
                float ay = fy - y0, ax = fx - x0;
                v = (1 - ay) * ((1 - ax) * in[(size_t)y0 * w + x0] + ax * in[(size_t)y0 * w + x1]) +
                    ay * ((1 - ax) * in[(size_t)y1 * w + x0] + ax * in[(size_t)y1 * w + x1]);
            }
            out[(size_t)y * W + x] = v;
        }
}

/* ------------------------------------------------------------- the model */

static void dense_free(dense *d)
{
    mela_exec_free(d->e);
    mela_plan_free(d->p);
    mela_graph_free(d->g);
    memset(d, 0, sizeof *d);
}

unsigned mela_finder_image_flags(const mela_finder *f)
{
    return f && !strcmp(f->rc.resize, "nearest") ? (unsigned)MELA_FOLDER_NEAREST : 0u;
}

void mela_finder_close(mela_finder *f)
{
    if (!f)
        return;
    for (int i = 0; i < FIND_CACHE; i++)
        dense_free(&f->cache[i]);
    mela_layout_free(f->L);
    free(f->theta);
    free(f->bn_a);
    free(f->pop);
    free(f->emb);
    free(f->proto);
    free(f->ref);
    free(f);
}

/* The Conv-4 body with batch norm as a fixed affine map per channel (inputs
 * a and b of shape (1, C, 1, 1)), or with the statistics of the batch
 * (bn == NULL). last_stride: of the final 2 x 2 max-pool. conv[l] receives
 * each block's convolution (before batch norm) when not NULL. */
static mela_node body(const mela_finder *f, mela_graph *g, mela_node x, const mela_node *bn,
                      int last_stride, mela_node *conv)
{
    mela_node h = x;
    for (int l = 0; l < f->depth; l++) {
        mela_node w = mela_param(g, f->L, 4 * l), b = mela_param(g, f->L, 4 * l + 1);
        h = mela_conv2d(g, h, w, b, 1, 1);
        if (conv)
            conv[l] = h;
        if (bn)
            h = mela_add(g, mela_mul(g, h, bn[2 * l]), bn[2 * l + 1]);
        else
            h = mela_batchnorm(g, h, mela_param(g, f->L, 4 * l + 2), mela_param(g, f->L, 4 * l + 3),
                               f->eps);
        h = mela_relu(g, h);
        h = mela_maxpool2d(g, h, 2, l == f->depth - 1 ? last_stride : 2);
    }
    return h;
}

static int graph_fail(mela_graph *g, const char *what)
{
    if (mela_graph_error(g))
        return mela_set_error("find: %s: %s", what, mela_graph_error(g));
    return -1;
}

/* The dense pass for (n, 1, H, W), compiled once and kept (least recently
 * used out first). */
static dense *dense_get(mela_finder *f, int n, int H, int W, int last_stride)
{
    dense *d = NULL, *old = &f->cache[0];
    f->clock++;
    for (int i = 0; i < FIND_CACHE; i++) {
        dense *c = &f->cache[i];
        if (c->e && c->n == n && c->H == H && c->W == W && c->last_stride == last_stride) {
            c->used = f->clock;
            return c;
        }
        if (c->used < old->used)
            old = c;
    }
    d = old;
    dense_free(d);
    *d = (dense){.n = n, .H = H, .W = W, .last_stride = last_stride, .used = f->clock};
    mela_graph *g = d->g = mela_graph_new();
    if (!g) {
        mela_set_error("find: out of memory");
        return NULL;
    }
    d->x = mela_input(g, "image", MELA_SHAPE(n, 1, H, W));
    for (int l = 0; l < f->depth; l++) {
        d->bn[2 * l] = mela_input(g, "bn_scale", MELA_SHAPE(1, f->width, 1, 1));
        d->bn[2 * l + 1] = mela_input(g, "bn_shift", MELA_SHAPE(1, f->width, 1, 1));
    }
    d->out = body(f, g, d->x, d->bn, last_stride, NULL);
    if (mela_graph_error(g) || !(d->p = mela_plan_new(g, 1, &d->out)) || !(d->e = mela_exec_new(d->p))) {
        graph_fail(g, "dense pass");
        dense_free(d);
        return NULL;
    }
    mela_exec_set_threads(d->e, f->o.threads);
    mela_exec_bind_params(d->e, f->theta);
    return d;
}

/* Runs the dense pass on x (n, 1, H, W); the output (n, D, h, w) stays in
 * the executor. */
static const float *dense_run(mela_finder *f, dense *d, const float *x, int *h, int *w)
{
    for (int l = 0; l < f->depth; l++) {
        mela_exec_bind(d->e, d->bn[2 * l], f->bn_a + (size_t)l * f->width);
        mela_exec_bind(d->e, d->bn[2 * l + 1], f->bn_b + (size_t)l * f->width);
    }
    mela_exec_bind(d->e, d->x, x);
    if (mela_exec_run(d->e))
        return NULL;
    mela_shape s = mela_node_shape(d->g, d->out);
    *h = s.d[2], *w = s.d[3];
    return mela_exec_value(d->e, d->out);
}

/* The batch-norm statistics of the dense pass, as x * a + b per channel:
 * the checkpoint's population statistics (bnI.running_mean and _var, over
 * the training images), or for a checkpoint without them those of the n
 * support crops xs taken as one batch (the biased variance, as
 * mela_batchnorm). The one place that chooses them. */
static void bn_affine(mela_finder *f, int l, int c, double mean, double var)
{
    const float *gamma = f->theta + mela_layout_offset(f->L, 4 * l + 2);
    const float *beta = f->theta + mela_layout_offset(f->L, 4 * l + 3);
    float a = gamma[c] / sqrtf((float)(var > 0 ? var : 0) + f->eps);
    f->bn_a[(size_t)l * f->width + c] = a;
    f->bn_b[(size_t)l * f->width + c] = beta[c] - (float)mean * a;
}

static int bn_stats(mela_finder *f, const float *xs, int n)
{
    if (f->pop) {
        size_t lw = (size_t)f->depth * f->width;
        for (int l = 0; l < f->depth; l++)
            for (int c = 0; c < f->width; c++)
                bn_affine(f, l, c, f->pop[(size_t)l * f->width + c], f->pop[lw + (size_t)l * f->width + c]);
        return 0;
    }
    mela_graph *g = mela_graph_new();
    mela_node conv[FIND_MAX_DEPTH];
    mela_plan *p = NULL;
    mela_exec *e = NULL;
    int rc = -1;
    if (!g)
        return mela_set_error("find: out of memory");
    mela_node x = mela_input(g, "support", MELA_SHAPE(n, 1, FIND_IN, FIND_IN));
    body(f, g, x, NULL, 2, conv);
    if (mela_graph_error(g) || !(p = mela_plan_new(g, f->depth, conv)) || !(e = mela_exec_new(p))) {
        graph_fail(g, "support statistics");
        goto done;
    }
    mela_exec_bind_params(e, f->theta);
    mela_exec_bind(e, x, xs);
    if (mela_exec_run(e))
        goto done;
    for (int l = 0; l < f->depth; l++) {
        mela_shape s = mela_node_shape(g, conv[l]);
        const float *v = mela_exec_value(e, conv[l]);
        size_t hw = (size_t)s.d[2] * s.d[3];
        for (int c = 0; c < f->width; c++) {
            double sum = 0, sq = 0;
            for (int i = 0; i < n; i++)
                for (size_t k = 0; k < hw; k++) {
                    double z = v[((size_t)i * f->width + c) * hw + k];
                    sum += z, sq += z * z;
                }
            double cnt = (double)n * hw, mean = sum / cnt;
            bn_affine(f, l, c, mean, sq / cnt - mean * mean);
        }
    }
    rc = 0;
done:
    mela_exec_free(e);
    mela_plan_free(p);
    mela_graph_free(g);
    return rc;
}

mela_finder *mela_finder_open(const char *checkpoint, const mela_find_opts *opts)
{
    mela_checkpoint *ck = mela_checkpoint_open(checkpoint);
    mela_finder *f = calloc(1, sizeof *f);
    mela_model *m = NULL;
    if (!ck || !f) {
        if (ck)
            mela_set_error("find: out of memory");
        goto fail;
    }
    if (opts)
        f->o = *opts;
    if (f->o.threads < 1)
        f->o.threads = 1;
    if (f->o.threads > 4)
        f->o.threads = 4;
    if (run_config_checkpoint(checkpoint, &f->rc) || learner_check_weights(&f->rc, ck, checkpoint))
        goto fail;
    const char *ln = f->rc.learner;
    f->kind = !strcmp(ln, "protonet") ? KIND_PROTO : !strcmp(ln, "matchnet") ? KIND_MATCHING
            : !strcmp(ln, "siamese") ? KIND_SIAMESE : -1;
    if (f->kind < 0) {
        mela_set_error("%s: a %s checkpoint cannot find things in pictures: find compares windows "
                       "with the support, which needs a metric learner (protonet, matchnet, siamese)",
                       checkpoint, ln);
        goto fail;
    }
    if (!(m = learner_model(&f->rc)))
        goto fail;
    const mela_layout *ml = mela_model_layout(m);
    f->depth = f->rc.depth;
    f->width = f->rc.width;
    f->D = mela_model_features(m);
    f->eps = 1e-5f;
    if (!f->rc.maxpool || f->rc.image_size != FIND_IN || f->depth > FIND_MAX_DEPTH ||
        f->D != f->width || mela_layout_count(ml) != 4 * f->depth || f->D > 1024) {
        mela_set_error("%s: find needs the max-pool Conv-4 embedding of 28 x 28 images with a 1 x 1 "
                       "output (model %s, image_size %d, depth %d)", checkpoint, f->rc.model,
                       f->rc.image_size, f->depth);
        goto fail;
    }
    if (!(f->L = mela_layout_new()))
        goto oom;
    for (int i = 0; i < mela_layout_count(ml); i++)
        if (mela_layout_add(f->L, mela_layout_name(ml, i), mela_layout_shape(ml, i)) < 0)
            goto fail;
    f->theta = calloc(mela_layout_size(f->L), sizeof *f->theta);
    f->bn_a = malloc(2 * (size_t)f->depth * f->width * sizeof *f->bn_a);
    if (!f->theta || !f->bn_a)
        goto oom;
    f->bn_b = f->bn_a + (size_t)f->depth * f->width;
    for (int i = 0; i < mela_layout_count(f->L); i++)
        mela_checkpoint_tensor(ck, mela_checkpoint_find(ck, mela_layout_name(f->L, i)),
                               f->theta + mela_layout_offset(f->L, i));
    if (f->kind == KIND_SIAMESE) {
        int iw = mela_checkpoint_find(ck, "siamese.weight"), ib = mela_checkpoint_find(ck, "siamese.bias");
        if (iw < 0 || ib < 0 || mela_shape_numel(mela_checkpoint_shape(ck, iw)) != (size_t)f->D ||
            mela_shape_numel(mela_checkpoint_shape(ck, ib)) != 1) {
            mela_set_error("%s: a Siamese checkpoint without siamese.weight (1, %d) and siamese.bias",
                           checkpoint, f->D);
            goto fail;
        }
        mela_checkpoint_tensor(ck, iw, f->siam_w);
        mela_checkpoint_tensor(ck, ib, &f->siam_b);
    }
    /* population statistics, when the checkpoint has them for every layer */
    int have = 1;
    for (int l = 0; l < f->depth; l++) {
        char mn[32], vn[32];
        snprintf(mn, sizeof mn, "bn%d.running_mean", l + 1);
        snprintf(vn, sizeof vn, "bn%d.running_var", l + 1);
        int im = mela_checkpoint_find(ck, mn), iv = mela_checkpoint_find(ck, vn);
        have &= im >= 0 && iv >= 0 && mela_shape_numel(mela_checkpoint_shape(ck, im)) == (size_t)f->width &&
                mela_shape_numel(mela_checkpoint_shape(ck, iv)) == (size_t)f->width;
    }
    if (have && f->depth > 0) {
        size_t lw = (size_t)f->depth * f->width;
        if (!(f->pop = malloc(2 * lw * sizeof *f->pop)))
            goto oom;
        for (int l = 0; l < f->depth; l++) {
            char mn[32], vn[32];
            snprintf(mn, sizeof mn, "bn%d.running_mean", l + 1);
            snprintf(vn, sizeof vn, "bn%d.running_var", l + 1);
            mela_checkpoint_tensor(ck, mela_checkpoint_find(ck, mn), f->pop + (size_t)l * f->width);
            mela_checkpoint_tensor(ck, mela_checkpoint_find(ck, vn), f->pop + lw + (size_t)l * f->width);
        }
        for (size_t i = 0; i < 2 * lw; i++)
            if (!isfinite(f->pop[i]) || (i >= lw && f->pop[i] < 0)) {
                mela_set_error("%s: the population statistics hold a NaN, an infinity or a "
                               "negative variance", checkpoint);
                goto fail;
            }
    }
    for (size_t i = 0; i < mela_layout_size(f->L); i++)
        if (!isfinite(f->theta[i])) {
            mela_set_error("%s: the weights hold a NaN or an infinity", checkpoint);
            goto fail;
        }
    mela_model_free(m);
    mela_checkpoint_close(ck);
    return f;
oom:
    mela_set_error("find: out of memory");
fail:
    mela_model_free(m);
    mela_checkpoint_close(ck);
    mela_finder_close(f);
    return NULL;
}

static void window_scores(const mela_finder *f, const float *v, size_t vs, float *s, unsigned char *view);

/* The support views: the crop moved by these multiples of half the stride. */
static const int move[9][2] = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}, {-1, -1}, {1, -1}, {-1, 1}, {1, 1}};

int mela_finder_support(mela_finder *f, int ways, int shots, const float *images)
{
    if (ways < 1 || shots < 1)
        return mela_set_error("find: the support needs at least 1 class and 1 image per class "
                              "(%d classes, %d images)", ways, shots);
    /* Views of each crop: as it is, and (unless plain_support) moved by half
     * the window stride in each direction, so that a character between two
     * windows is still near one view. */
    int half = (f->o.stride > 0 ? f->o.stride : MELA_FIND_STRIDE) / 2;
    int nv = f->o.plain_support ? 1 : 9, n = ways * shots, D = f->D;
    float *emb = malloc(((size_t)nv * n + 1) * D * sizeof *emb);
    float *proto = calloc((size_t)nv * ways * D, sizeof *proto);
    /* Each view is embedded in the middle of a blank canvas, as a window of
     * the dense pass sees it: the 46-pixel receptive field of a window
     * reaches 15 pixels before it and 3 after, where a lone 28 x 28 input
     * would see zero padding after every layer. */
    const int C = FIND_IN + 2 * FIND_PAD;
    float *canvas = calloc(((size_t)nv * n + 1) * C * C, sizeof *canvas); /* + a blank one */
    if (!emb || !proto || !canvas) {
        free(emb), free(proto), free(canvas);
        return mela_set_error("find: out of memory");
    }
    for (int v = 0; v < nv; v++)
        for (int i = 0; i < n; i++)
            for (int y = 0; y < FIND_IN; y++) {
                int x0 = FIND_PAD + move[v][0] * half, y0 = FIND_PAD + move[v][1] * half;
                memcpy(canvas + (((size_t)v * n + i) * C + y0 + y) * C + x0,
                       images + ((size_t)i * FIND_IN + y) * FIND_IN, FIND_IN * sizeof *canvas);
            }
    int h, w, blas = tp_blas_hold();
    dense *d = NULL;
    const float *e = NULL;
    if (!bn_stats(f, images, n) && (d = dense_get(f, nv * n + 1, C, C, 2)))
        e = dense_run(f, d, canvas, &h, &w);
    tp_blas_release(blas);
    free(canvas);
    if (!e) {
        free(emb), free(proto);
        return -1;
    }
    size_t at = (size_t)(FIND_PAD / 16) * w + FIND_PAD / 16; /* the window at (PAD, PAD) */
    for (int v = 0; v < nv; v++)
        for (int i = 0; i < n; i++)
            for (int k = 0; k < D; k++) {
                float x = e[(((size_t)v * n + i) * D + k) * h * w + at];
                emb[((size_t)v * n + i) * D + k] = x;
                proto[((size_t)v * ways + i / shots) * D + k] += x / (float)shots;
            }
    for (int k = 0; k < D; k++) /* the blank window: the background */
        emb[(size_t)nv * n * D + k] = e[(((size_t)nv * n) * D + k) * h * w + at];
    free(f->emb), free(f->proto);
    f->emb = emb;
    f->proto = proto;
    f->ways = ways;
    f->shots = shots;
    f->views = nv;
    /* the distance of each class from the blank window: what scores 0 */
    float *sb = malloc((size_t)(ways + 1) * sizeof *sb), *ref = malloc((size_t)ways * sizeof *ref);
    if (!sb || !ref) {
        free(sb), free(ref);
        return mela_set_error("find: out of memory");
    }
    window_scores(f, f->emb + (size_t)nv * n * D, 1, sb, NULL);
    for (int c = 0; c < ways; c++) {
        float r = f->kind == KIND_PROTO ? -sb[c] : 1 - sb[c];
        ref[c] = r > 1e-12f ? r : 1e-12f;
    }
    if (f->o.score == MELA_FIND_SCORE_OTHERS) /* nearer still: another support class */
        for (int c = 0; c < ways; c++) {
            /* class c as a window sees it: its centred prototype (ProtoNets) or
             * its first drawing (Matching), against the others' views */
            const float *v = f->kind == KIND_PROTO ? proto + (size_t)c * D : emb + (size_t)c * shots * D;
            window_scores(f, v, 1, sb, NULL);
            for (int o = 0; o < ways; o++) {
                float r = f->kind == KIND_PROTO ? -sb[o] : 1 - sb[o];
                if (o != c && r < ref[c])
                    ref[c] = r > 1e-12f ? r : 1e-12f;
            }
        }
    free(sb);
    free(f->ref);
    f->ref = ref;
    return 0;
}

/* Raw scores of one window vector v (D floats, stride vs) against every
 * class into s, the best over the class's views (its index into view[c]
 * unless view is NULL): -squared distance to the prototype (ProtoNets), mean
 * cosine with the class's shots (Matching), mean p(same) (Siamese); s has
 * ways + 1 entries, the last the score of the blank window (background). */
static void window_scores(const mela_finder *f, const float *v, size_t vs, float *s, unsigned char *view)
{
    int D = f->D, n = f->ways * f->shots;
    double vn = 0;
    if (f->kind == KIND_MATCHING)
        for (int k = 0; k < D; k++)
            vn += (double)v[k * vs] * v[k * vs];
    for (int c = 0; c < f->ways; c++) {
        double best = -INFINITY;
        for (int a = 0; a < f->views; a++) {
            double acc = 0;
            if (f->kind == KIND_PROTO) {
                const float *p = f->proto + ((size_t)a * f->ways + c) * D;
                for (int k = 0; k < D; k++) {
                    double z = v[k * vs] - p[k];
                    acc -= z * z;
                }
            } else {
                for (int j = 0; j < f->shots; j++) {
                    const float *q = f->emb + ((size_t)a * n + (size_t)c * f->shots + j) * D;
                    double dot = 0, qn = 0, z = f->siam_b;
                    for (int k = 0; k < D; k++) {
                        if (f->kind == KIND_MATCHING)
                            dot += (double)v[k * vs] * q[k], qn += (double)q[k] * q[k];
                        else
                            z += f->siam_w[k] * fabs((double)v[k * vs] - q[k]);
                    }
                    acc += f->kind == KIND_MATCHING ? dot / sqrt((vn + 1e-8) * (qn + 1e-8))
                                                    : 1 / (1 + exp(-z));
                }
                acc /= f->shots;
            }
            if (acc > best) {
                best = acc;
                if (view)
                    view[c] = (unsigned char)a;
            }
        }
        s[c] = (float)best;
    }
    /* s[ways]: the same against the blank window (one view, one shot) */
    const float *q = f->emb + (size_t)f->views * n * D;
    double acc = 0, dot = 0, qn = 0, z = f->siam_b;
    for (int k = 0; k < D; k++) {
        double x = v[k * vs];
        acc -= (x - q[k]) * (x - q[k]);
        dot += x * q[k], qn += (double)q[k] * q[k];
        z += f->siam_w[k] * fabs(x - q[k]);
    }
    s[f->ways] = (float)(f->kind == KIND_PROTO      ? acc
                         : f->kind == KIND_MATCHING ? dot / sqrt((vn + 1e-8) * (qn + 1e-8))
                                                    : 1 / (1 + exp(-z)));
}

/* Candidates: every window (all scales) with its raw scores. */
typedef struct cand {
    float x, y, side; /* the window in the picture's pixels */
} cand;

int mela_finder_find(mela_finder *f, const float *image, int H, int W, float threshold,
                     mela_find_box **boxes, int *nboxes)
{
    *boxes = NULL, *nboxes = 0;
    if (!f->emb)
        return mela_set_error("find: no support set (mela_finder_support first)");
    if (H < FIND_IN || W < FIND_IN)
        return mela_set_error("find: the picture is %d x %d, smaller than the model's input of "
                              "%d x %d", W, H, FIND_IN, FIND_IN);
    mela_find_opts *o = &f->o;
    int stride = o->stride > 0 ? o->stride : MELA_FIND_STRIDE;
    if (stride != 16 && stride != 8 && stride != 4 && stride != 2)
        return mela_set_error("find: stride %d is not one of 16, 8, 4, 2", stride);
    static const float default_sizes[] = {20, 24, 28, 34, 40};
    const float *sizes = o->nsizes > 0 ? o->sizes : default_sizes;
    int nsizes = o->nsizes > 0 ? o->nsizes : 5, N = f->ways;
    int shift = stride < 8 ? 8 / stride : 1, P = shift * shift; /* passes per scale */
    size_t ncand = 0, cap = 0;
    cand *cs = NULL;
    float *scores = NULL, *buf = NULL, *batch = NULL;
    unsigned char *views = NULL;
    int half = stride / 2;
    int rc = -1, blas = tp_blas_hold();
    for (int si = 0; si < nsizes; si++) {
        if (!(sizes[si] >= 4 && sizes[si] <= 4096)) {
            mela_set_error("find: object size %g is not in 4..4096 pixels", (double)sizes[si]);
            goto done;
        }
        float scale = FIND_IN / sizes[si];
        int Hs = (int)lroundf(H * scale), Ws = (int)lroundf(W * scale);
        if (Hs < FIND_IN || Ws < FIND_IN)
            continue; /* objects of this size do not fit the picture */
        free(buf), free(batch);
        buf = malloc((size_t)Hs * Ws * sizeof *buf);
        batch = calloc((size_t)P * Hs * Ws, sizeof *batch);
        if (!buf || !batch) {
            mela_set_error("find: out of memory");
            goto done;
        }
        resize(buf, Hs, Ws, image, H, W, mela_finder_image_flags(f) != 0);
        for (int p = 0; p < P; p++) { /* pass p: the picture moved by (dx, dy) */
            int dx = (p % shift) * stride, dy = (p / shift) * stride;
            for (int y = 0; y + dy < Hs; y++)
                memcpy(batch + ((size_t)p * Hs + y) * Ws, buf + (size_t)(y + dy) * Ws + dx,
                       (size_t)(Ws - dx) * sizeof *buf);
        }
        dense *d = dense_get(f, P, Hs, Ws, stride == 16 ? 2 : 1);
        int h, w;
        const float *e = d ? dense_run(f, d, batch, &h, &w) : NULL;
        if (!e)
            goto done;
        int step = stride == 16 ? 16 : 8;
        size_t more = (size_t)P * h * w;
        if (ncand + more > cap) {
            cap = 2 * (ncand + more);
            cand *c2 = realloc(cs, cap * sizeof *cs);
            float *s2 = realloc(scores, cap * (N + 1) * sizeof *scores);
            unsigned char *v2 = realloc(views, cap * N);
            if (c2)
                cs = c2;
            if (s2)
                scores = s2;
            if (v2)
                views = v2;
            if (!c2 || !s2 || !v2) {
                mela_set_error("find: out of memory");
                goto done;
            }
        }
        for (int p = 0; p < P; p++)
            for (int i = 0; i < h; i++)
                for (int j = 0; j < w; j++) {
                    int dx = (p % shift) * stride, dy = (p / shift) * stride;
                    float x0 = (float)(j * step + dx), y0 = (float)(i * step + dy);
                    if (x0 + FIND_IN > Ws + FIND_IN / 4 || y0 + FIND_IN > Hs + FIND_IN / 4)
                        continue; /* mostly outside the picture */
                    cand *c = &cs[ncand];
                    c->x = x0 / scale, c->y = y0 / scale, c->side = FIND_IN / scale;
                    window_scores(f, e + (size_t)p * f->D * h * w + (size_t)i * w + j, (size_t)h * w,
                                  scores + ncand * (N + 1), views + ncand * N);
                    ncand++;
                }
    }
    if (ncand == 0) {
        mela_set_error("find: the picture (%d x %d) is smaller than every object size asked for", W, H);
        goto done;
    }
    mela_find_box *out = malloc(ncand * sizeof *out);
    if (!out) {
        mela_set_error("find: out of memory");
        goto done;
    }
    size_t nout = 0;
    for (size_t i = 0; i < ncand; i++) {
        /* a window is a candidate of its nearest class only, and none when the
         * blank window is nearer still */
        const float *s = scores + i * (N + 1);
        int best = 0;
        for (int c = 1; c < N; c++)
            if (s[c] > s[best])
                best = c;
        if (s[N] >= s[best])
            continue; /* nearer the blank window than any class: background */
        /* Siamese: p(same); ProtoNets and Matching: 1 - d / ref, d the
         * squared distance (1 - cosine for Matching), ref the class's
         * (finder_support) or, MELA_FIND_SCORE_RATIO, this window's distance
         * from the runner-up (the blank window or another class) */
        float ref = f->ref[best];
        if (f->o.score == MELA_FIND_SCORE_RATIO) {
            float second = s[N];
            for (int c = 0; c < N; c++)
                if (c != best && s[c] > second)
                    second = s[c];
            ref = f->kind == KIND_PROTO ? -second : 1 - second;
            ref = ref > 1e-12f ? ref : 1e-12f;
        }
        float v = f->kind == KIND_SIAMESE ? s[best]
                : f->kind == KIND_PROTO   ? 1 + s[best] / ref
                                          : 1 - (1 - s[best]) / ref;
        if (v >= threshold) { /* moved as the view that matched (a 28-pixel window's half stride) */
            const int *mv = move[views[i * N + best]];
            float d = (float)half * cs[i].side / FIND_IN;
            out[nout++] = (mela_find_box){cs[i].x + mv[0] * d, cs[i].y + mv[1] * d, cs[i].side,
                                          cs[i].side, v, best};
        }
    }
    float iou = o->nms_iou > 0 ? o->nms_iou : MELA_FIND_NMS_IOU;
    int keep = o->max_boxes > 0 ? o->max_boxes : 50;
    *nboxes = mela_nms(out, (int)nout, iou, o->nms_per_class, keep);
    *boxes = out;
    rc = 0;
done:
    tp_blas_release(blas);
    free(cs), free(scores), free(views), free(buf), free(batch);
    return rc;
}

/* ------------------------------------------------- the template matcher */

int mela_ncc_find(const float *support, int ways, int shots, const float *image, int H, int W,
                  const mela_find_opts *o, float threshold, mela_find_box **boxes, int *nboxes)
{
    *boxes = NULL, *nboxes = 0;
    const int S = FIND_IN, n = S * S, step = 2;
    if (ways < 1 || shots < 1)
        return mela_set_error("ncc: the support needs at least 1 class and 1 image per class");
    if (H < S || W < S)
        return mela_set_error("ncc: the picture is %d x %d, smaller than the templates (%d x %d)", W,
                              H, S, S);
    static const float default_sizes[] = {20, 24, 28, 34, 40};
    const float *sizes = o && o->nsizes > 0 ? o->sizes : default_sizes;
    int nsizes = o && o->nsizes > 0 ? o->nsizes : 5, T = ways * shots;
    /* templates less their mean, of norm 1 (a blank one stays 0) */
    float *t = malloc((size_t)T * n * sizeof *t);
    mela_find_box *out = NULL;
    size_t nout = 0, cap = 0;
    float *buf = NULL;
    double *ii = NULL, *i2 = NULL;
    int rc = -1;
    if (!t)
        goto oom;
    for (int k = 0; k < T; k++) {
        const float *s = support + (size_t)k * n;
        double mean = 0, nn = 0;
        for (int p = 0; p < n; p++)
            mean += s[p];
        mean /= n;
        for (int p = 0; p < n; p++)
            nn += (s[p] - mean) * (s[p] - mean);
        float inv = nn > 1e-12 ? (float)(1 / sqrt(nn)) : 0;
        for (int p = 0; p < n; p++)
            t[(size_t)k * n + p] = (float)(s[p] - mean) * inv;
    }
    for (int si = 0; si < nsizes; si++) {
        if (!(sizes[si] >= 4 && sizes[si] <= 4096)) {
            mela_set_error("ncc: object size %g is not in 4..4096 pixels", (double)sizes[si]);
            goto done;
        }
        float scale = S / sizes[si];
        int Hs = (int)lroundf(H * scale), Ws = (int)lroundf(W * scale);
        if (Hs < S || Ws < S)
            continue;
        free(buf), free(ii), free(i2);
        buf = malloc((size_t)Hs * Ws * sizeof *buf);
        ii = calloc((size_t)(Hs + 1) * (Ws + 1), sizeof *ii);
        i2 = calloc((size_t)(Hs + 1) * (Ws + 1), sizeof *i2);
        if (!buf || !ii || !i2)
            goto oom;
        resize(buf, Hs, Ws, image, H, W, 0);
        for (int y = 0; y < Hs; y++) /* integral images of the values and their squares */
            for (int x = 0; x < Ws; x++) {
                size_t a = (size_t)(y + 1) * (Ws + 1) + x + 1;
                double v = buf[(size_t)y * Ws + x];
                ii[a] = v + ii[a - 1] + ii[a - Ws - 1] - ii[a - Ws - 2];
                i2[a] = v * v + i2[a - 1] + i2[a - Ws - 1] - i2[a - Ws - 2];
            }
        for (int y = 0; y + S <= Hs; y += step)
            for (int x = 0; x + S <= Ws; x += step) {
                size_t a = (size_t)y * (Ws + 1) + x, b = a + S, c = a + (size_t)S * (Ws + 1), d = c + S;
                double sum = ii[d] - ii[b] - ii[c] + ii[a], sq = i2[d] - i2[b] - i2[c] + i2[a];
                double var = sq - sum * sum / n;
                if (var < 1e-6)
                    continue; /* a blank window matches nothing */
                float best = -2;
                int label = 0;
                for (int k = 0; k < T; k++) {
                    const float *tk = t + (size_t)k * n;
                    float dot = 0;
                    for (int r = 0; r < S; r++) {
                        const float *row = buf + (size_t)(y + r) * Ws + x, *tr = tk + r * S;
                        for (int q = 0; q < S; q++)
                            dot += row[q] * tr[q];
                    }
                    if (dot > best)
                        best = dot, label = k / shots;
                }
                float v = best / (float)sqrt(var);
                if (v < threshold)
                    continue;
                if (nout == cap) {
                    cap = cap ? 2 * cap : 1024;
                    mela_find_box *o2 = realloc(out, cap * sizeof *out);
                    if (!o2)
                        goto oom;
                    out = o2;
                }
                out[nout++] = (mela_find_box){x / scale, y / scale, S / scale, S / scale, v, label};
            }
    }
    float iou = o && o->nms_iou > 0 ? o->nms_iou : MELA_FIND_NMS_IOU;
    int keep = o && o->max_boxes > 0 ? o->max_boxes : 50;
    *nboxes = mela_nms(out, (int)nout, iou, o ? o->nms_per_class : 0, keep);
    *boxes = out;
    out = NULL;
    rc = 0;
    goto done;
oom:
    mela_set_error("ncc: out of memory");
done:
    free(t), free(out), free(buf), free(ii), free(i2);
    return rc;
}

/* ----------------------------------------------------------- evaluation */

int mela_match_boxes(const mela_find_box *det, int ndet, const mela_find_box *gt, int ngt,
                     float min_iou, int *tp)
{
    int *used = calloc((size_t)ngt + 1, sizeof *used);
    int *order = malloc(((size_t)ndet + 1) * sizeof *order);
    if (!used || !order) {
        free(used), free(order);
        return mela_set_error("match: out of memory");
    }
    for (int i = 0; i < ndet; i++)
        order[i] = i;
    /* by descending score (stable: insertion sort, the lists are short) */
    for (int i = 1; i < ndet; i++) {
        int k = order[i], j = i - 1;
        while (j >= 0 && det[order[j]].score < det[k].score) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = k;
    }
    for (int r = 0; r < ndet; r++) {
        int i = order[r], best = -1;
        float bi = min_iou;
        for (int g = 0; g < ngt; g++) {
            float v;
            if (used[g] || gt[g].label != det[i].label || (v = mela_box_iou(&det[i].x, &gt[g].x)) < bi)
                continue;
            bi = v, best = g;
        }
        tp[i] = best >= 0;
        if (best >= 0)
            used[best] = 1;
    }
    free(used), free(order);
    return 0;
}

typedef struct scored {
    float score;
    int tp;
} scored;

static int by_scored(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score < b->score ? 1 : -1;
    return a->tp - b->tp; /* ties: false positives first (the pessimistic order) */
}

double mela_average_precision(int n, const float *scores, const int *tp, int npos)
{
    if (npos <= 0)
        return NAN;
    scored *s = malloc(((size_t)n + 1) * sizeof *s);
    double *prec = malloc(((size_t)n + 1) * sizeof *prec);
    if (!s || !prec) {
        free(s), free(prec);
        mela_set_error("average precision: out of memory");
        return NAN;
    }
    for (int i = 0; i < n; i++)
        s[i] = (scored){scores[i], tp[i] != 0};
    qsort(s, (size_t)n, sizeof *s, by_scored);
    int ntp = 0;
    for (int i = 0; i < n; i++) {
        ntp += s[i].tp;
        prec[i] = (double)ntp / (i + 1);
    }
    /* all-point interpolation: precision made non-increasing from the right,
     * summed at each recall step (each true positive adds 1 / npos) */
    for (int i = n - 2; i >= 0; i--)
        if (prec[i + 1] > prec[i])
            prec[i] = prec[i + 1];
    double ap = 0;
    for (int i = 0; i < n; i++)
        if (s[i].tp)
            ap += prec[i] / npos;
    free(s), free(prec);
    return ap;
}
