/*
 * conv.c - 2-D convolution (cross-correlation) and its two gradients.
 *
 * The fast kernels lower the convolution to matrix products over chunks of
 * images. With K = C*KH*KW and P = OH*OW, im2col lays a chunk of b images out
 * as col[K, b*P]: row (c,kh,kw), column (i,oh,ow) holds the input pixel that
 * weight w[.,c,kh,kw] meets at output (oh,ow) of image i (zero in the padding).
 * With w viewed as a matrix [OC, K] and dyT[OC, b*P] the chunk of dy with the
 * image axis moved inside the channel axis:
 *
 *     forward   out[OC, b*P] = w   * col     then scattered back to NCHW
 *     dw        dw[OC, K]   += dyT * col^T   (beta 0 on the first chunk)
 *     dx        dcol[K, b*P] = w^T * dyT     then col2im, which adds overlaps
 *
 * col2im is slow: it is a read-modify-write of short rows. So when the
 * stride is 1, dx is computed as what it also is, a forward convolution: of
 * dy, padded by KH-1-pad rows and KW-1-pad columns, with the kernel flipped in
 * both axes and C and OC swapped (wt[c, oc, KH-1-kh, KW-1-kw] = w[oc, c, kh,
 * kw]); it then costs what the forward pass costs. That needs pad < KH, KW,
 * and pays only when C is not tiny (its product has C rows) and the batch is
 * not tiny either (the flip costs a pass over w), so col2im stays for the
 * other cases (the first layer, C = 1, and strided convolutions).
 *
 * Chunks. One image of a 3x3 layer gives P = 9 columns, far too few for BLAS,
 * so small images are batched: b is the number of images whose scratch fits
 * CHUNK_FLOATS (1 MiB, so that col is still in L2 when the product reads it).
 * Large images (P >= BIG_P) go one at a time: their product is big enough
 * alone, and then y, dx and dy are used in place with no scatter or gather.
 * mk_conv_scratch() is the exact maximum over the paths.
 *
 * The _ref kernels are the definitions written as direct loops, accumulating
 * in double; each computes every output element on its own (dx as a gather
 * over the outputs that see the pixel), so they share no code with the fast
 * path. They are for tests and documentation.
 */
#include <string.h>

#include "kernels/kernels.h"

/* Bound on the scratch of one chunk of images, in floats; -D to tune. */
#ifndef MK_CONV_CHUNK_FLOATS
#define MK_CONV_CHUNK_FLOATS ((size_t)1 << 18)
#endif
#define CHUNK_FLOATS MK_CONV_CHUNK_FLOATS
/* Images with at least this many output pixels are lowered one at a time. */
#define BIG_P 128
/* Channels from which dx goes through the transposed forward convolution. */
#define TRANSPOSED_MIN_C 16
/* im2col moves whole 8-float pieces, so it may write up to 7 floats past the
 * end of col and read up to 7 past the last padded plane. */
#define SLACK 8

/* ------------------------------------------------------------------ threads */

/* The chunks of a batch can run on several threads (mk_conv.threads). The
 * work is split the same way whatever the thread count: forward and dx
 * chunks write disjoint outputs, and dw sums its chunks into DW_GROUPS
 * partial sums (chunk c into group c % DW_GROUPS, in chunk order) added in
 * group order at the end. So results are identical for 1 to MK_MAX_THREADS
 * threads, and scratch holds MK_MAX_THREADS chunk areas whatever is used. */
#define DW_GROUPS 4
#define PAR_MIN_FLOPS 4e6 /* below this, threads cost more than they save */


typedef struct par_job {
    void (*fn)(void *ctx, int task, int tid);
    void *ctx;
    int ntasks, nthreads, tid;
} par_job;

static void *par_main(void *arg)
{
    par_job *j = arg;
    for (int t = j->tid; t < j->ntasks; t += j->nthreads)
        j->fn(j->ctx, t, j->tid);
    return NULL;
}

void mk_parallel_chunks(int threads, int ntasks, double flops, void (*fn)(void *, int, int), void *ctx)
{
    if (threads > MK_MAX_THREADS)
        threads = MK_MAX_THREADS;
    int nt = threads < ntasks ? threads : ntasks;
    if (nt < 1)
        nt = 1;
    if (flops < PAR_MIN_FLOPS)
        nt = 1;
    par_job jobs[MK_MAX_THREADS];
    for (int k = 0; k < nt; k++)
        jobs[k] = (par_job){fn, ctx, ntasks, nt, k};
    mk_parallel(nt, par_main, jobs, sizeof *jobs);
}

int mk_conv_init(mk_conv *cv)
{
    if (cv->N < 1 || cv->C < 1 || cv->H < 1 || cv->W < 1 || cv->OC < 1 || cv->KH < 1 ||
        cv->KW < 1 || cv->stride < 1 || cv->pad < 0)
        return -1;
    int h = cv->H + 2 * cv->pad - cv->KH, w = cv->W + 2 * cv->pad - cv->KW;
    if (h < 0 || w < 0)
        return -1;
    cv->OH = h / cv->stride + 1;
    cv->OW = w / cv->stride + 1;
    return 0;
}

/* ------------------------------------------------------------- lowering */

/* What the lowering works on: N images x[N,C,H,W] and a kernel of M filters
 * [M, C, KH, KW], stride s, padding ph rows and pw columns (two paddings so
 * that the transposed convolution of dx fits), output [N, M, OH, OW]. */
typedef struct geom {
    int N, C, H, W, M, KH, KW, s, ph, pw, OH, OW;
    int threads;
} geom;

static geom forward_geom(const mk_conv *cv)
{
    return (geom){cv->N, cv->C, cv->H, cv->W, cv->OC, cv->KH, cv->KW, cv->stride, cv->pad, cv->pad,
                  cv->OH, cv->OW, cv->threads};
}

/* dx of a stride-1 convolution as a forward convolution of dy. */
static geom transposed_geom(const mk_conv *cv)
{
    return (geom){cv->N, cv->OC, cv->OH, cv->OW, cv->C, cv->KH, cv->KW, 1, cv->KH - 1 - cv->pad,
                  cv->KW - 1 - cv->pad, cv->H, cv->W, cv->threads};
}

/* The flipped kernel costs OC*C*KH*KW moves per call, which only pays when
 * the product is not tiny (N*OH*OW >= 64). */
static int use_transposed(const mk_conv *cv)
{
    return cv->stride == 1 && cv->pad < cv->KH && cv->pad < cv->KW &&
           cv->C >= TRANSPOSED_MIN_C && (size_t)cv->N * cv->OH * cv->OW >= 64;
}

static int is_pointwise(const geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->s == 1 && g->ph == 0 && g->pw == 0;
}

static size_t plane_floats(const geom *g)
{
    return (size_t)(g->H + 2 * g->ph) * (g->W + 2 * g->pw);
}

/* Scratch per image of a chunk: its columns of col (or dcol) and of out (or
 * dyT), and one zero-padded plane (im2col pads one channel at a time). */
static size_t image_floats(const geom *g)
{
    return ((size_t)g->C * g->KH * g->KW + g->M) * g->OH * g->OW + plane_floats(g);
}

/* Images per chunk: one if the image is big, else as many as fit CHUNK_FLOATS;
 * at least one, at most N. */
static int chunk_images(const geom *g)
{
    size_t b = (size_t)g->OH * g->OW >= BIG_P ? 1 : CHUNK_FLOATS / image_floats(g);
    if (b < 1)
        b = 1;
    if (b > (size_t)g->N)
        b = (size_t)g->N;
    return (int)b;
}

/* Scratch layout for chunks of nb images, in this order:
 *   col or dcol   [K, nb*P] + SLACK
 *   out or dyT    [M, nb*P]
 *   padded planes [nb, H + 2 ph, W + 2 pw] + SLACK */
static size_t lowered_scratch(const geom *g)
{
    return image_floats(g) * (size_t)chunk_images(g) + 2 * SLACK;
}

size_t mk_conv_scratch(const mk_conv *cv)
{
    size_t d = mk_dnnl_scratch(cv); /* oneDNN's, when it serves */
    geom f = forward_geom(cv);
    size_t wsz = (size_t)cv->OC * cv->C * cv->KH * cv->KW;
    /* forward, dx through col2im, and dw (plus its group partial sums) */
    size_t n = MK_MAX_THREADS * lowered_scratch(&f) + DW_GROUPS * wsz;
    if (use_transposed(cv)) { /* dx: the flipped kernel, then a forward pass */
        geom t = transposed_geom(cv);
        size_t m = wsz + MK_MAX_THREADS * lowered_scratch(&t);
        if (m > n)
            n = m;
    }
    return n > d ? n : d;
}

/* Copies `rows` rows of n floats, from s with row stride sst to d with row
 * stride dst, each row moved as R = n rounded up to a multiple of 8 floats:
 * up to 7 floats land past the row's end, where the next row (written after)
 * fixes them. Fixed-size moves become vector loads and stores; a loop of
 * variable length would become a call to memcpy per row, which costs more
 * than the copy when rows hold 3 to 28 floats. */
static void copy_rows_rounded(float *restrict d, const float *restrict s, int rows, int n,
                              size_t dst, size_t sst)
{
#define MK_ROWS(R)                                                                             \
    for (int r = 0; r < rows; r++, d += dst, s += sst)                                         \
        memcpy(d, s, (R) * sizeof(float));                                                     \
    break
    switch ((n + 7) / 8) {
    case 1: MK_ROWS(8);
    case 2: MK_ROWS(16);
    case 3: MK_ROWS(24);
    case 4: MK_ROWS(32);
    default:
        for (int r = 0; r < rows; r++, d += dst, s += sst)
            memcpy(d, s, (size_t)n * sizeof(float));
    }
#undef MK_ROWS
}

/* col[K, b*P] from x[b,C,H,W] (see the top of the file). For each channel,
 * the b input planes are first copied into the middle of zero-padded planes
 * xp[b, H+2ph, W+2pw], so that each row of a window is a plain copy with no
 * bounds to test. col is then written strictly front to back, which is what
 * lets copy_rows_rounded overrun each row (into SLACK at the very end). */
static void im2col(float *restrict col, const float *restrict x, int b, const geom *g,
                   float *restrict xp)
{
    const int C = g->C, H = g->H, W = g->W, KH = g->KH, KW = g->KW, s = g->s;
    const int OH = g->OH, OW = g->OW, Wp = W + 2 * g->pw;
    const size_t P = (size_t)OH * OW, plane = plane_floats(g);
    memset(xp, 0, sizeof(float) * (b * plane + SLACK)); /* borders stay zero */
    float *d = col;
    for (int c = 0; c < C; c++) {
        for (int i = 0; i < b; i++) {
            const float *xc = x + ((size_t)i * C + c) * H * W;
            float *xi = xp + i * plane + (size_t)g->ph * Wp + g->pw;
            for (int h = 0; h < H; h++)
                memcpy(xi + (size_t)h * Wp, xc + (size_t)h * W, sizeof(float) * W);
        }
        for (int kh = 0; kh < KH; kh++) {
            for (int kw = 0; kw < KW; kw++) {
                for (int i = 0; i < b; i++, d += P) {
                    const float *src = xp + i * plane + (size_t)kh * Wp + kw;
                    if (s == 1) {
                        copy_rows_rounded(d, src, OH, OW, (size_t)OW, (size_t)Wp);
                    } else {
                        for (int oh = 0; oh < OH; oh++)
                            for (int ow = 0; ow < OW; ow++)
                                d[oh * OW + ow] = src[(size_t)oh * s * Wp + (size_t)ow * s];
                    }
                }
            }
        }
    }
}

/* dx[b,C,H,W] = col2im(dcol[K, b*P]), the adjoint of im2col: each entry of
 * dcol is added onto the pixel it would have been copied from. The sums are
 * formed in the padded plane dxp, whose middle is then copied out, so dx is
 * overwritten and the padding's share is dropped. */
static void col2im(float *restrict dx, const float *restrict dcol, int b, const geom *g,
                   float *restrict dxp)
{
    const int C = g->C, H = g->H, W = g->W, KH = g->KH, KW = g->KW, s = g->s;
    const int OH = g->OH, OW = g->OW, Wp = W + 2 * g->pw;
    const size_t P = (size_t)OH * OW, ld = (size_t)b * P, plane = plane_floats(g);
    for (int i = 0; i < b; i++) {
        for (int c = 0; c < C; c++) {
            memset(dxp, 0, sizeof(float) * plane);
            for (int kh = 0; kh < KH; kh++) {
                for (int kw = 0; kw < KW; kw++) {
                    const float *src = dcol + (size_t)((c * KH + kh) * KW + kw) * ld + i * P;
                    float *d = dxp + (size_t)kh * Wp + kw;
                    for (int oh = 0; oh < OH; oh++, src += OW, d += (size_t)s * Wp)
                        for (int ow = 0; ow < OW; ow++)
                            d[ow * s] += src[ow];
                }
            }
            float *dxc = dx + ((size_t)i * C + c) * H * W;
            const float *mid = dxp + (size_t)g->ph * Wp + g->pw;
            for (int h = 0; h < H; h++)
                memcpy(dxc + (size_t)h * W, mid + (size_t)h * Wp, sizeof(float) * W);
        }
    }
}

/* t[M, b*P] from a[b,M,P]: row m of image i goes to row m, columns i*P..
 * (dy to dyT; x to col for a 1x1 kernel). */
static void batch_to_rows(float *restrict t, const float *restrict a, int b, int M, size_t P)
{
    for (int i = 0; i < b; i++)
        for (int m = 0; m < M; m++)
            memcpy(t + ((size_t)m * b + i) * P, a + ((size_t)i * M + m) * P, sizeof(float) * P);
}

/* a[b,M,P] from t[M, b*P], the inverse of batch_to_rows. */
static void rows_to_batch(float *restrict a, const float *restrict t, int b, int M, size_t P)
{
    for (int i = 0; i < b; i++)
        for (int m = 0; m < M; m++)
            memcpy(a + ((size_t)i * M + m) * P, t + ((size_t)m * b + i) * P, sizeof(float) * P);
}

/* The col matrix of images xb[b,C,H,W]: built in col, except for a 1x1 kernel
 * over one image, where x[C, H*W] already is col. */
static const float *lower(float *col, const float *xb, int b, const geom *g, float *xp)
{
    if (!is_pointwise(g)) {
        im2col(col, xb, b, g, xp);
        return col;
    }
    if (b == 1)
        return xb;
    batch_to_rows(col, xb, b, g->C, (size_t)g->H * g->W);
    return col;
}

typedef struct conv_job {
    float *y;
    const float *x, *w, *dy;
    const geom *g;
    float *scratch;
} conv_job;

/* One chunk of lowered_conv: images n0.. of the chunk index, in the scratch
 * area of thread tid. */
static void conv_chunk(void *arg, int chunk, int tid)
{
    const conv_job *j = arg;
    const geom *g = j->g;
    const int K = g->C * g->KH * g->KW, M = g->M, nb = chunk_images(g);
    const size_t P = (size_t)g->OH * g->OW, xsz = (size_t)g->C * g->H * g->W;
    float *col = j->scratch + (size_t)tid * lowered_scratch(g);
    float *out = col + (size_t)K * nb * P + SLACK, *xp = out + (size_t)M * nb * P;
    const int n0 = chunk * nb, b = g->N - n0 < nb ? g->N - n0 : nb, cols = (int)(b * P);
    float *yb = j->y + (size_t)n0 * M * P;
    const float *cb = lower(col, j->x + n0 * xsz, b, g, xp);
    /* one image: the product is already laid out as y[M, P] */
    mk_gemm(0, 0, M, cols, K, 1.0f, j->w, K, cb, cols, 0.0f, b == 1 ? yb : out, cols);
    if (b > 1)
        rows_to_batch(yb, out, b, M, P);
}

static double conv_flops(const geom *g)
{
    return 2.0 * g->N * g->M * (double)g->OH * g->OW * g->C * g->KH * g->KW;
}

/* y[N,M,OH,OW] = conv(x[N,C,H,W], w[M, C*KH*KW]) over geometry g. */
static void lowered_conv(float *y, const float *x, const float *w, const geom *g, float *scratch)
{
    const int nb = chunk_images(g), nchunks = (g->N + nb - 1) / nb;
    conv_job j = {y, x, w, NULL, g, scratch};
    mk_parallel_chunks(g->threads, nchunks, conv_flops(g), conv_chunk, &j);
}

/* y[N,OC,OH,OW] = conv(x[N,C,H,W], w[OC,C,KH,KW]) */
void mk_conv2d(float *y, const float *x, const float *w, const mk_conv *cv, float *scratch)
{
    if (mk_dnnl_conv(0, y, x, w, cv, scratch) == 0)
        return;
    geom f = forward_geom(cv);
    lowered_conv(y, x, w, &f, scratch);
}

/* One chunk of dx through col2im: dcol = w^T dy, then col2im into dx. */
static void dx_chunk(void *arg, int chunk, int tid)
{
    const conv_job *j = arg;
    const geom *g = j->g;
    const int C = g->C, OC = g->M, K = C * g->KH * g->KW, nb = chunk_images(g);
    const size_t P = (size_t)g->OH * g->OW, xsz = (size_t)C * g->H * g->W;
    float *dcol = j->scratch + (size_t)tid * lowered_scratch(g);
    float *dyT = dcol + (size_t)K * nb * P + SLACK, *dxp = dyT + (size_t)OC * nb * P;
    const int n0 = chunk * nb, b = g->N - n0 < nb ? g->N - n0 : nb, cols = (int)(b * P);
    const float *dyb = j->dy + (size_t)n0 * OC * P;
    if (b > 1) {
        batch_to_rows(dyT, dyb, b, OC, P);
        dyb = dyT;
    }
    mk_gemm(1, 0, K, cols, OC, 1.0f, j->w, K, dyb, cols, 0.0f, dcol, cols);
    col2im(j->y + n0 * xsz, dcol, b, g, dxp);
}

/* dx[N,C,H,W] = conv_transpose(dy[N,OC,OH,OW], w[OC,C,KH,KW]) */
void mk_conv2d_dx(float *dx, const float *dy, const float *w, const mk_conv *cv, float *scratch)
{
    if (mk_dnnl_conv(1, dx, dy, w, cv, scratch) == 0)
        return;
    const int C = cv->C, OC = cv->OC, KH = cv->KH, KW = cv->KW;
    if (use_transposed(cv)) {
        /* wt[c, oc, kh, kw] = w[oc, c, KH-1-kh, KW-1-kw]: flipping both axes of
         * a KH x KW block is reversing it */
        const int KK = KH * KW;
        float *wt = scratch;
        for (int oc = 0; oc < OC; oc++)
            for (int c = 0; c < C; c++) {
                const float *src = w + ((size_t)oc * C + c) * KK;
                float *dst = wt + ((size_t)c * OC + oc) * KK;
                for (int j = 0; j < KK; j++)
                    dst[j] = src[KK - 1 - j];
            }
        geom t = transposed_geom(cv);
        lowered_conv(dx, dy, wt, &t, scratch + (size_t)OC * C * KH * KW);
        return;
    }
    geom g = forward_geom(cv);
    const int nb = chunk_images(&g), nchunks = (cv->N + nb - 1) / nb;
    conv_job j = {dx, NULL, w, dy, &g, scratch};
    mk_parallel_chunks(g.threads, nchunks, conv_flops(&g), dx_chunk, &j);
}

/* dw[OC,C,KH,KW] = sum over n of dy[n] (x) x[n], the gradient of <y, dy> */
/* Group `grp` of dw: its chunks grp, grp + DW_GROUPS, ... summed in order
 * into its partial buffer. */
static void dw_group(void *arg, int grp, int tid)
{
    const conv_job *j = arg;
    const geom *g = j->g;
    const int K = g->C * g->KH * g->KW, OC = g->M, nb = chunk_images(g);
    const int nchunks = (g->N + nb - 1) / nb;
    const size_t P = (size_t)g->OH * g->OW, xsz = (size_t)g->C * g->H * g->W;
    float *col = j->scratch + (size_t)tid * lowered_scratch(g);
    float *dyT = col + (size_t)K * nb * P + SLACK, *xp = dyT + (size_t)OC * nb * P;
    float *part = j->scratch + MK_MAX_THREADS * lowered_scratch(g) + (size_t)grp * OC * K;
    for (int c = grp; c < nchunks; c += DW_GROUPS) {
        const int n0 = c * nb, b = g->N - n0 < nb ? g->N - n0 : nb, cols = (int)(b * P);
        const float *dyb = j->dy + (size_t)n0 * OC * P;
        if (b > 1) {
            batch_to_rows(dyT, dyb, b, OC, P);
            dyb = dyT;
        }
        const float *cb = lower(col, j->x + n0 * xsz, b, g, xp);
        mk_gemm(0, 1, OC, K, cols, 1.0f, dyb, cols, cb, cols, c == grp ? 0.0f : 1.0f, part, K);
    }
}

void mk_conv2d_dw(float *dw, const float *x, const float *dy, const mk_conv *cv, float *scratch)
{
    if (mk_dnnl_conv(2, dw, x, dy, cv, scratch) == 0)
        return;
    geom g = forward_geom(cv);
    const int K = cv->C * cv->KH * cv->KW, OC = cv->OC, nb = chunk_images(&g);
    const int nchunks = (cv->N + nb - 1) / nb, ngroups = nchunks < DW_GROUPS ? nchunks : DW_GROUPS;
    conv_job j = {NULL, x, NULL, dy, &g, scratch};
    mk_parallel_chunks(g.threads, ngroups, conv_flops(&g), dw_group, &j);
    const float *part = scratch + MK_MAX_THREADS * lowered_scratch(&g);
    const size_t n = (size_t)OC * K;
    memcpy(dw, part, n * sizeof *dw);
    for (int grp = 1; grp < ngroups; grp++)
        for (size_t i = 0; i < n; i++)
            dw[i] += part[(size_t)grp * n + i];
}

/* ------------------------------------------------------------- references */

void mk_conv2d_ref(float *y, const float *x, const float *w, const mk_conv *cv)
{
    const int C = cv->C, H = cv->H, W = cv->W, KH = cv->KH, KW = cv->KW, OC = cv->OC;
    const int s = cv->stride, pad = cv->pad, OH = cv->OH, OW = cv->OW;
    for (int n = 0; n < cv->N; n++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = 0.0;
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < KH; kh++)
                            for (int kw = 0; kw < KW; kw++) {
                                int ih = oh * s - pad + kh, iw = ow * s - pad + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                acc += (double)x[((size_t)(n * C + c) * H + ih) * W + iw] *
                                       w[((size_t)(oc * C + c) * KH + kh) * KW + kw];
                            }
                    y[((size_t)(n * OC + oc) * OH + oh) * OW + ow] = (float)acc;
                }
}

void mk_conv2d_dx_ref(float *dx, const float *dy, const float *w, const mk_conv *cv)
{
    const int C = cv->C, H = cv->H, W = cv->W, KH = cv->KH, KW = cv->KW, OC = cv->OC;
    const int s = cv->stride, pad = cv->pad, OH = cv->OH, OW = cv->OW;
    for (int n = 0; n < cv->N; n++)
        for (int c = 0; c < C; c++)
            for (int ih = 0; ih < H; ih++)
                for (int iw = 0; iw < W; iw++) {
                    double acc = 0.0;
                    for (int oc = 0; oc < OC; oc++)
                        for (int kh = 0; kh < KH; kh++)
                            for (int kw = 0; kw < KW; kw++) {
                                int th = ih + pad - kh, tw = iw + pad - kw;
                                if (th < 0 || tw < 0 || th % s || tw % s)
                                    continue;
                                int oh = th / s, ow = tw / s;
                                if (oh >= OH || ow >= OW)
                                    continue;
                                acc += (double)dy[((size_t)(n * OC + oc) * OH + oh) * OW + ow] *
                                       w[((size_t)(oc * C + c) * KH + kh) * KW + kw];
                            }
                    dx[((size_t)(n * C + c) * H + ih) * W + iw] = (float)acc;
                }
}

void mk_conv2d_dw_ref(float *dw, const float *x, const float *dy, const mk_conv *cv)
{
    const int C = cv->C, H = cv->H, W = cv->W, KH = cv->KH, KW = cv->KW, OC = cv->OC;
    const int s = cv->stride, pad = cv->pad, OH = cv->OH, OW = cv->OW;
    for (int oc = 0; oc < OC; oc++)
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++) {
                    double acc = 0.0;
                    for (int n = 0; n < cv->N; n++)
                        for (int oh = 0; oh < OH; oh++)
                            for (int ow = 0; ow < OW; ow++) {
                                int ih = oh * s - pad + kh, iw = ow * s - pad + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                acc += (double)dy[((size_t)(n * OC + oc) * OH + oh) * OW + ow] *
                                       x[((size_t)(n * C + c) * H + ih) * W + iw];
                            }
                    dw[((size_t)(oc * C + c) * KH + kh) * KW + kw] = (float)acc;
                }
}
