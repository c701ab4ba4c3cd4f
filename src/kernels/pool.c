/*
 * pool.c - max and average pooling over planes x[P,H,W], window k, stride s,
 * no padding: OH = (H - k) / s + 1, OW = (W - k) / s + 1. Pixels that no
 * window covers (the right and bottom margins when (H - k) % s != 0) take no
 * part in the output and get zero gradient.
 *
 * Max pooling needs a rule for ties: every max kernel here takes the FIRST
 * maximum of a window in row-major order (a later equal value does not
 * replace it). maxpool, maxpool_scatter (its gradient wrt x) and
 * maxpool_gather (the gradient of scatter wrt dy, used for second order)
 * all go through window_argmax (k = s = 2: the same rule as a chain of
 * selects, first_max2 and argmax2_select), so they always pick the same
 * pixel.
 *
 * The fast kernels walk the windows with pointers and have a k = s = 2 path
 * (the Conv-4 case); the _ref kernels index every element from the
 * definitions and, for avgpool_dx, gather over the windows covering a pixel
 * instead of scattering. Pooling is memory bound; neither uses scratch.
 */
#include <string.h>

#include "kernels/kernels.h"

/* Offset (row * W + col) of the first maximum of the k x k window at x. */
static inline int window_argmax(const float *x, int W, int k)
{
    int best = 0;
    float m = x[0];
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++)
            if (x[i * W + j] > m) {
                m = x[i * W + j];
                best = i * W + j;
            }
    return best;
}

/* The same rule on a 2x2 window's values a b / c d, as selects the
 * compiler can vectorise: the first maximum's value, and its place 0-3. */
static inline float first_max2(float a, float b, float c, float d)
{
    float m = a;
    m = b > m ? b : m;
    m = c > m ? c : m;
    return d > m ? d : m;
}

static inline int argmax2_select(float a, float b, float c, float d)
{
    float m = a;
    int at = 0;
    at = b > m ? 1 : at;
    m = b > m ? b : m;
    at = c > m ? 2 : at;
    m = c > m ? c : m;
    return d > m ? 3 : at;
}

/* One row of 2x2 windows (rows x0, x1 of x; d0, d1 of dx): the windows do
 * not overlap, so each pixel is written once, g at the window's first
 * maximum (as 0 + g: -0 becomes +0) and 0 elsewhere. */
static void scatter2_row(float *restrict d0, float *restrict d1, const float *restrict x0,
                         const float *restrict x1, const float *restrict g, int OW)
{
    for (int ow = 0; ow < OW; ow++) {
        float a = x0[2 * ow], b = x0[2 * ow + 1], c = x1[2 * ow], d = x1[2 * ow + 1];
        /* argmax2_select as selects: the maxima after b and after c;
         * then g goes to d if d replaced the maximum, else to c if c did,
         * else to b if b did, else to a */
        float m1 = b > a ? b : a, m2 = c > m1 ? c : m1, v = g[ow] + 0.0f;
        float rest = d > m2 ? 0.0f : v;
        d1[2 * ow + 1] = d > m2 ? v : 0.0f;
        d1[2 * ow] = c > m1 ? rest : 0.0f;
        rest = c > m1 ? 0.0f : rest;
        d0[2 * ow + 1] = b > a ? rest : 0.0f;
        d0[2 * ow] = b > a ? 0.0f : rest;
    }
}

/* y[P,OH,OW] = max of each window of x[P,H,W] */
void mk_maxpool(float *y, const float *x, int P, int H, int W, int k, int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    for (int p = 0; p < P; p++) {
        const float *xp = x + (size_t)p * H * W;
        for (int oh = 0; oh < OH; oh++, y += OW) {
            const float *row = xp + (size_t)oh * s * W;
            if (k == 2 && s == 2)
                for (int ow = 0; ow < OW; ow++) /* window_argmax2's value, without branches */
                    y[ow] = first_max2(row[2 * ow], row[2 * ow + 1], row[W + 2 * ow], row[W + 2 * ow + 1]);
            else
                for (int ow = 0; ow < OW; ow++)
                    y[ow] = row[ow * s + window_argmax(row + ow * s, W, k)];
        }
    }
}

/* dx[P,H,W] = 0, then dx[argmax of each window] += dy[window] */
void mk_maxpool_scatter(float *dx, const float *x, const float *dy, int P, int H, int W, int k,
                        int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    if (!(k == 2 && s == 2 && H % 2 == 0 && W % 2 == 0)) /* else every pixel is written */
        memset(dx, 0, sizeof(float) * (size_t)P * H * W);
    for (int p = 0; p < P; p++) {
        const size_t off = (size_t)p * H * W;
        for (int oh = 0; oh < OH; oh++, dy += OW) {
            const float *row = x + off + (size_t)oh * s * W;
            float *drow = dx + off + (size_t)oh * s * W;
            if (k == 2 && s == 2)
                scatter2_row(drow, drow + W, row, row + W, dy, OW);
            else
                for (int ow = 0; ow < OW; ow++)
                    drow[ow * s + window_argmax(row + ow * s, W, k)] += dy[ow];
        }
    }
}

/* gy[P,OH,OW] = gx[argmax of each window of x] */
void mk_maxpool_gather(float *gy, const float *x, const float *gx, int P, int H, int W, int k,
                       int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    for (int p = 0; p < P; p++) {
        const size_t off = (size_t)p * H * W;
        for (int oh = 0; oh < OH; oh++, gy += OW) {
            const float *row = x + off + (size_t)oh * s * W;
            const float *grow = gx + off + (size_t)oh * s * W;
            if (k == 2 && s == 2)
                for (int ow = 0; ow < OW; ow++) {
                    int at = argmax2_select(row[2 * ow], row[2 * ow + 1], row[W + 2 * ow], row[W + 2 * ow + 1]);
                    float g0 = grow[2 * ow], g1 = grow[2 * ow + 1], g2 = grow[W + 2 * ow], g3 = grow[W + 2 * ow + 1];
                    gy[ow] = at == 0 ? g0 : at == 1 ? g1 : at == 2 ? g2 : g3;
                }
            else
                for (int ow = 0; ow < OW; ow++)
                    gy[ow] = grow[ow * s + window_argmax(row + ow * s, W, k)];
        }
    }
}

/* y[P,OH,OW] = mean of each window of x[P,H,W] (summed in float) */
void mk_avgpool(float *y, const float *x, int P, int H, int W, int k, int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    const float inv = 1.0f / (float)(k * k);
    for (int p = 0; p < P; p++) {
        const float *xp = x + (size_t)p * H * W;
        for (int oh = 0; oh < OH; oh++, y += OW)
            for (int ow = 0; ow < OW; ow++) {
                const float *win = xp + (size_t)oh * s * W + (size_t)ow * s;
                float acc = 0.0f;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++)
                        acc += win[i * W + j];
                y[ow] = acc * inv;
            }
    }
}

/* dx[P,H,W] = sum over the windows that contain the pixel of dy / (k*k) */
void mk_avgpool_dx(float *dx, const float *dy, int P, int H, int W, int k, int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    const float inv = 1.0f / (float)(k * k);
    memset(dx, 0, sizeof(float) * (size_t)P * H * W);
    for (int p = 0; p < P; p++) {
        float *dp = dx + (size_t)p * H * W;
        for (int oh = 0; oh < OH; oh++, dy += OW)
            for (int ow = 0; ow < OW; ow++) {
                float *win = dp + (size_t)oh * s * W + (size_t)ow * s;
                const float g = dy[ow] * inv;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++)
                        win[i * W + j] += g;
            }
    }
}

/* y[P,OH,OW] = x[P,H,W] shifted by (top, left) with zeros around (or cropped):
 * per output row, the columns that come from x are one copy. */
void mk_pad2d(float *y, const float *x, int P, int H, int W, int top, int left, int OH, int OW)
{
    int j0 = left > 0 ? left : 0;                /* first output column from x */
    int j1 = W + left < OW ? W + left : OW;      /* one past the last */
    if (j1 < j0)
        j1 = j0;
    for (int p = 0; p < P; p++) {
        const float *xp = x + (size_t)p * H * W;
        for (int i = 0; i < OH; i++, y += OW) {
            int h = i - top;
            if (h < 0 || h >= H || j1 == j0) {
                memset(y, 0, sizeof(float) * (size_t)OW);
                continue;
            }
            memset(y, 0, sizeof(float) * (size_t)j0);
            memcpy(y + j0, xp + (size_t)h * W + (j0 - left), sizeof(float) * (size_t)(j1 - j0));
            memset(y + j1, 0, sizeof(float) * (size_t)(OW - j1));
        }
    }
}

/* ------------------------------------------------------------- references */

/* Index into x[P,H,W] of the first maximum of window (p, oh, ow). */
static size_t argmax_ref(const float *x, int p, int oh, int ow, int H, int W, int k, int s)
{
    size_t best = ((size_t)p * H + (size_t)oh * s) * W + (size_t)ow * s;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            size_t idx = ((size_t)p * H + (size_t)oh * s + i) * W + (size_t)ow * s + j;
            if (x[idx] > x[best])
                best = idx;
        }
    return best;
}

void mk_maxpool_ref(float *y, const float *x, int P, int H, int W, int k, int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    for (int p = 0; p < P; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                y[((size_t)p * OH + oh) * OW + ow] = x[argmax_ref(x, p, oh, ow, H, W, k, s)];
}

void mk_maxpool_scatter_ref(float *dx, const float *x, const float *dy, int P, int H, int W, int k,
                            int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    for (size_t i = 0; i < (size_t)P * H * W; i++)
        dx[i] = 0.0f;
    for (int p = 0; p < P; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                dx[argmax_ref(x, p, oh, ow, H, W, k, s)] += dy[((size_t)p * OH + oh) * OW + ow];
}

void mk_maxpool_gather_ref(float *gy, const float *x, const float *gx, int P, int H, int W, int k,
                           int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    for (int p = 0; p < P; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                gy[((size_t)p * OH + oh) * OW + ow] = gx[argmax_ref(x, p, oh, ow, H, W, k, s)];
}

void mk_avgpool_ref(float *y, const float *x, int P, int H, int W, int k, int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    for (int p = 0; p < P; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                double acc = 0.0;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++)
                        acc += x[((size_t)p * H + (size_t)oh * s + i) * W + (size_t)ow * s + j];
                y[((size_t)p * OH + oh) * OW + ow] = (float)(acc / (k * k));
            }
}

/* dx[p,h,w] = sum over windows (oh, ow) with oh*s <= h < oh*s + k (same for w)
 * of dy[p,oh,ow] / k^2 */
void mk_avgpool_dx_ref(float *dx, const float *dy, int P, int H, int W, int k, int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    for (int p = 0; p < P; p++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                double acc = 0.0;
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++)
                        if (oh * s <= h && h < oh * s + k && ow * s <= w && w < ow * s + k)
                            acc += dy[((size_t)p * OH + oh) * OW + ow];
                dx[((size_t)p * H + h) * W + w] = (float)(acc / (k * k));
            }
}

void mk_pad2d_ref(float *y, const float *x, int P, int H, int W, int top, int left, int OH, int OW)
{
    for (int p = 0; p < P; p++)
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                int h = i - top, w = j - left;
                y[((size_t)p * OH + i) * OW + j] =
                    h >= 0 && h < H && w >= 0 && w < W ? x[((size_t)p * H + h) * W + w] : 0.0f;
            }
}
