/*
 * conv.c - 2-D convolution (cross-correlation) and its two gradients.
 *
 * The fast kernels lower the convolution to one matrix product per chunk of
 * images. With K = C*KH*KW and P = OH*OW, im2col lays a chunk of b images out
 * as col[K, b*P]: row (c,kh,kw), column (i,oh,ow) holds the input pixel that
 * weight w[.,c,kh,kw] meets at output (oh,ow) of image i (zero in the padding).
 * Then, with w viewed as a matrix [OC, K] and dyT[OC, b*P] the chunk of dy
 * with the image axis moved inside the channel axis,
 *
 *     forward   out[OC, b*P] = w    * col     then scattered back to NCHW
 *     dx        dcol[K, b*P] = w^T  * dyT     then col2im (adds overlaps)
 *     dw        dw[OC, K]   += dyT  * col^T   (beta 0 on the first chunk)
 *
 * Batching images into one product matters for the small late layers of a
 * Conv-4 network: at 3x3 one image gives P = 9 columns, far too few for BLAS
 * to run well, while 75 images give 675. The chunk size b is the largest
 * number of images whose col and out/dyT blocks fit in CHUNK_FLOATS floats
 * (at least one image, at most N), so scratch stays bounded whatever N is;
 * mk_conv_scratch returns exactly (K + OC) * b * P.
 *
 * The _ref kernels are the definitions written as direct loops, accumulating
 * in double; each computes every output element on its own (dx as a gather
 * over the outputs that see the pixel), so they share no code with the fast
 * path. They are for tests and documentation.
 */
#include <string.h>

#include "kernels/kernels.h"

/* Bound on the scratch of one chunk, in floats (16 MiB); -D to tune. */
#ifndef MK_CONV_CHUNK_FLOATS
#define MK_CONV_CHUNK_FLOATS ((size_t)1 << 22)
#endif
#define CHUNK_FLOATS MK_CONV_CHUNK_FLOATS

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

/* Images per chunk. */
static int conv_chunk(const mk_conv *cv)
{
    size_t per_image = ((size_t)cv->C * cv->KH * cv->KW + cv->OC) * cv->OH * cv->OW;
    size_t b = CHUNK_FLOATS / per_image;
    if (b < 1)
        b = 1;
    if (b > (size_t)cv->N)
        b = (size_t)cv->N;
    return (int)b;
}

/* Floats of one zero-padded plane, plus slack for the 8-float moves of im2col
 * that may read up to 7 floats past the last row. */
#define PLANE_SLACK 16
static size_t plane_floats(const mk_conv *cv)
{
    return (size_t)(cv->H + 2 * cv->pad) * (cv->W + 2 * cv->pad) + PLANE_SLACK;
}

/* Scratch of a chunk of nb images: col or dcol [K, nb*P], then out or dyT
 * [OC, nb*P], then one padded plane. */
size_t mk_conv_scratch(const mk_conv *cv)
{
    size_t per_image = ((size_t)cv->C * cv->KH * cv->KW + cv->OC) * cv->OH * cv->OW;
    return per_image * (size_t)conv_chunk(cv) + plane_floats(cv);
}

static int is_pointwise(const mk_conv *cv)
{
    return cv->KH == 1 && cv->KW == 1 && cv->stride == 1 && cv->pad == 0;
}

/* d[0..R) = s[0..R) in 8-float moves, R = n rounded up to a multiple of 8:
 * the compiler makes each move one vector load and store. */
static inline void copy_rounded(float *restrict d, const float *restrict s, int n)
{
    for (int j = 0; j < n; j += 8)
        memcpy(d + j, s + j, 8 * sizeof(float));
}

/* col[K, b*P] from x[b,C,H,W] (see the top of the file). Each input plane is
 * first copied into the middle of the zero-padded plane xp[H+2pad, W+2pad],
 * so that every row of every window is a plain copy with no bounds to test.
 * With stride 1 a row is moved in whole 8-float pieces that may run past its
 * end into the next row, which is written afterwards and fixes it; only rows
 * whose overrun would leave the image's block of columns are copied exactly. */
static void im2col(float *restrict col, const float *restrict x, int b, const mk_conv *cv,
                   float *restrict xp)
{
    const int C = cv->C, H = cv->H, W = cv->W, KH = cv->KH, KW = cv->KW;
    const int s = cv->stride, pad = cv->pad, OH = cv->OH, OW = cv->OW, Wp = W + 2 * pad;
    const int P = OH * OW, R = (OW + 7) / 8 * 8;
    const size_t ld = (size_t)b * P;
    memset(xp, 0, sizeof(float) * plane_floats(cv)); /* the border stays zero */
    for (int i = 0; i < b; i++) {
        for (int c = 0; c < C; c++) {
            const float *xc = x + ((size_t)i * C + c) * H * W;
            for (int h = 0; h < H; h++)
                memcpy(xp + (size_t)(h + pad) * Wp + pad, xc + (size_t)h * W, sizeof(float) * W);
            for (int kh = 0; kh < KH; kh++) {
                for (int kw = 0; kw < KW; kw++) {
                    float *d = col + (size_t)((c * KH + kh) * KW + kw) * ld + (size_t)i * P;
                    const float *src = xp + (size_t)kh * Wp + kw;
                    if (s == 1) {
                        for (int oh = 0; oh < OH; oh++, d += OW, src += Wp) {
                            if (oh * OW + R <= P)
                                copy_rounded(d, src, OW);
                            else
                                for (int ow = 0; ow < OW; ow++)
                                    d[ow] = src[ow];
                        }
                    } else {
                        for (int oh = 0; oh < OH; oh++, d += OW, src += (size_t)s * Wp)
                            for (int ow = 0; ow < OW; ow++)
                                d[ow] = src[ow * s];
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
static void col2im(float *restrict dx, const float *restrict dcol, int b, const mk_conv *cv,
                   float *restrict dxp)
{
    const int C = cv->C, H = cv->H, W = cv->W, KH = cv->KH, KW = cv->KW;
    const int s = cv->stride, pad = cv->pad, OH = cv->OH, OW = cv->OW, Wp = W + 2 * pad;
    const int P = OH * OW;
    const size_t ld = (size_t)b * P, plane = (size_t)(H + 2 * pad) * Wp;
    for (int i = 0; i < b; i++) {
        for (int c = 0; c < C; c++) {
            memset(dxp, 0, sizeof(float) * plane);
            for (int kh = 0; kh < KH; kh++) {
                for (int kw = 0; kw < KW; kw++) {
                    const float *src =
                        dcol + (size_t)((c * KH + kh) * KW + kw) * ld + (size_t)i * P;
                    float *d = dxp + (size_t)kh * Wp + kw;
                    if (s == 1)
                        for (int oh = 0; oh < OH; oh++, src += OW, d += Wp)
                            for (int ow = 0; ow < OW; ow++)
                                d[ow] += src[ow];
                    else
                        for (int oh = 0; oh < OH; oh++, src += OW, d += (size_t)s * Wp)
                            for (int ow = 0; ow < OW; ow++)
                                d[ow * s] += src[ow];
                }
            }
            float *dxc = dx + ((size_t)i * C + c) * H * W;
            for (int h = 0; h < H; h++)
                memcpy(dxc + (size_t)h * W, dxp + (size_t)(h + pad) * Wp + pad, sizeof(float) * W);
        }
    }
}

/* t[M, b*P] from a[b,M,P]: row m of image i goes to row m, columns i*P..
 * (dy to dyT with M = OC; x to col for a 1x1 kernel with M = C). */
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
static const float *lower(float *col, const float *xb, int b, const mk_conv *cv, float *xp)
{
    if (is_pointwise(cv)) {
        if (b == 1)
            return xb;
        batch_to_rows(col, xb, b, cv->C, (size_t)cv->H * cv->W);
    } else {
        im2col(col, xb, b, cv, xp);
    }
    return col;
}

/* y[N,OC,OH,OW] = conv(x[N,C,H,W], w[OC,C,KH,KW]) */
void mk_conv2d(float *y, const float *x, const float *w, const mk_conv *cv, float *scratch)
{
    const int K = cv->C * cv->KH * cv->KW, OC = cv->OC, nb = conv_chunk(cv);
    const size_t P = (size_t)cv->OH * cv->OW, xsz = (size_t)cv->C * cv->H * cv->W;
    float *col = scratch, *out = scratch + (size_t)K * nb * P;
    for (int n0 = 0; n0 < cv->N; n0 += nb) {
        const int b = cv->N - n0 < nb ? cv->N - n0 : nb;
        const int cols = (int)(b * P);
        const float *xb = x + n0 * xsz;
        float *yb = y + (size_t)n0 * OC * P;
        const float *cb = lower(col, xb, b, cv);
        /* one image: the product is already laid out as y[OC, P] */
        mk_gemm(0, 0, OC, cols, K, 1.0f, w, K, cb, cols, 0.0f, b == 1 ? yb : out, cols);
        if (b > 1)
            rows_to_batch(yb, out, b, OC, P);
    }
}

/* dx[N,C,H,W] = conv_transpose(dy[N,OC,OH,OW], w[OC,C,KH,KW]) */
void mk_conv2d_dx(float *dx, const float *dy, const float *w, const mk_conv *cv, float *scratch)
{
    const int K = cv->C * cv->KH * cv->KW, OC = cv->OC, nb = conv_chunk(cv);
    const size_t P = (size_t)cv->OH * cv->OW, xsz = (size_t)cv->C * cv->H * cv->W;
    float *dyT = scratch, *dcol = scratch + (size_t)OC * nb * P;
    const int pointwise = is_pointwise(cv);
    if (!pointwise) /* col2im adds; kernels overwrite */
        memset(dx, 0, sizeof(float) * xsz * cv->N);
    for (int n0 = 0; n0 < cv->N; n0 += nb) {
        const int b = cv->N - n0 < nb ? cv->N - n0 : nb;
        const int cols = (int)(b * P);
        const float *dyb = dy + (size_t)n0 * OC * P;
        float *dxb = dx + n0 * xsz;
        if (b > 1) {
            batch_to_rows(dyT, dyb, b, OC, P);
            dyb = dyT;
        }
        /* 1x1: col2im is a plain transpose back to NCHW, or nothing at all */
        mk_gemm(1, 0, K, cols, OC, 1.0f, w, K, dyb, cols, 0.0f, pointwise && b == 1 ? dxb : dcol,
                cols);
        if (pointwise && b > 1)
            rows_to_batch(dxb, dcol, b, K, P);
        else if (!pointwise)
            col2im(dxb, dcol, b, cv);
    }
}

/* dw[OC,C,KH,KW] = sum over n of dy[n] (x) x[n], the gradient of <y, dy> */
void mk_conv2d_dw(float *dw, const float *x, const float *dy, const mk_conv *cv, float *scratch)
{
    const int K = cv->C * cv->KH * cv->KW, OC = cv->OC, nb = conv_chunk(cv);
    const size_t P = (size_t)cv->OH * cv->OW, xsz = (size_t)cv->C * cv->H * cv->W;
    float *col = scratch, *dyT = scratch + (size_t)K * nb * P;
    for (int n0 = 0; n0 < cv->N; n0 += nb) {
        const int b = cv->N - n0 < nb ? cv->N - n0 : nb;
        const int cols = (int)(b * P);
        const float *dyb = dy + (size_t)n0 * OC * P;
        if (b > 1) {
            batch_to_rows(dyT, dyb, b, OC, P);
            dyb = dyT;
        }
        const float *cb = lower(col, x + n0 * xsz, b, cv);
        mk_gemm(0, 1, OC, K, cols, 1.0f, dyb, cols, cb, cols, n0 == 0 ? 0.0f : 1.0f, dw, K);
    }
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

/* dx[n,c,ih,iw] = sum of dy[n,oc,oh,ow] w[oc,c,kh,kw] over ih = oh*s - pad + kh,
 * iw = ow*s - pad + kw, i.e. over the outputs whose window covers the pixel. */
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
