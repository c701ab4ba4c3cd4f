/* augment.c - the random affine distortions of Koch et al. (2015). */
#include <math.h>
#include <string.h>

#include "mela_data.h"

static float uniform(mela_rng *r, float lo, float hi) { return lo + (hi - lo) * mela_rng_uniform(r); }

void mela_affine_distort(float *out, const float *in, int C, int H, int W, mela_rng *r)
{
    /* Draw every component (so the stream is the same whichever are kept). */
    int use[4];
    for (int k = 0; k < 4; k++)
        use[k] = mela_rng_uniform(r) < 0.5f;
    float theta = uniform(r, -10, 10) * 3.14159265f / 180.0f;
    float shx = uniform(r, -0.3f, 0.3f), shy = uniform(r, -0.3f, 0.3f);
    float sx = uniform(r, 0.8f, 1.2f), sy = uniform(r, 0.8f, 1.2f);
    float tmax = 2.0f * (float)W / 105.0f;
    float tx = uniform(r, -tmax, tmax), ty = uniform(r, -tmax, tmax);
    if (!use[0]) theta = 0;
    if (!use[1]) shx = shy = 0;
    if (!use[2]) sx = sy = 1;
    if (!use[3]) tx = ty = 0;
    /* forward map A = R(theta) * Shear * Scale; sample at A^-1 (p - c - t) + c */
    float c = cosf(theta), s = sinf(theta);
    float a00 = sx * (c - s * shy), a01 = sy * (c * shx - s);
    float a10 = sx * (s + c * shy), a11 = sy * (s * shx + c);
    float det = a00 * a11 - a01 * a10;
    float i00 = a11 / det, i01 = -a01 / det, i10 = -a10 / det, i11 = a00 / det;
    float cx = 0.5f * (W - 1), cy = 0.5f * (H - 1);
    for (int ch = 0; ch < C; ch++) {
        const float *src = in + (size_t)ch * H * W;
        float *dst = out + (size_t)ch * H * W;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float px = x - cx - tx, py = y - cy - ty;
                float u = i00 * px + i01 * py + cx, v = i10 * px + i11 * py + cy;
                int x0 = (int)floorf(u), y0 = (int)floorf(v);
                float fx = u - x0, fy = v - y0, acc = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int xx = x0 + dx, yy = y0 + dy;
                        if (xx < 0 || yy < 0 || xx >= W || yy >= H)
                            continue;
                        acc += src[yy * W + xx] * (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy);
                    }
                dst[y * W + x] = acc;
            }
    }
}
