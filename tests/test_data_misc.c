/* test_data_misc.c - the pieces without files: area and nearest resize values, mean and
 * 95% confidence interval, sinusoid tasks (ranges, determinism), the image
 * decoder's refusal of non-images, and the hash. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "mela.h"
#include "mela_data.h"

static void test_resize(void)
{
    /* 4 -> 2: plain 2x2 means. */
    uint8_t in[16] = {0, 255, 10, 10, 255, 0, 20, 20, 100, 100, 0, 0, 100, 100, 0, 3};
    uint8_t out[4];
    CHECK(mela_resize_area(out, 2, 2, in, 4, 4) == 0, "resize");
    CHECK(out[0] == 128 && out[1] == 15 && out[2] == 100 && out[3] == 1, "2x2 means %d %d %d %d",
          out[0], out[1], out[2], out[3]);
    /* 3 -> 2 along a row: output 0 = (a + b/2) / 1.5, output 1 = (b/2 + c) / 1.5. */
    uint8_t row[3] = {90, 30, 0}, o2[2];
    mela_resize_area(o2, 1, 2, row, 1, 3);
    CHECK(o2[0] == 70 && o2[1] == 10, "fractional overlaps %d %d", o2[0], o2[1]);
    /* 2 -> 3 (enlarge): the middle output straddles both inputs equally. */
    uint8_t two[2] = {0, 200}, three[3];
    mela_resize_area(three, 1, 3, two, 1, 2);
    CHECK(three[0] == 0 && three[1] == 100 && three[2] == 200, "enlarge %d %d %d", three[0],
          three[1], three[2]);
    /* A constant image stays constant at any ratio. */
    uint8_t flat[105 * 105], f28[28 * 28], f17[17 * 23];
    memset(flat, 77, sizeof flat);
    mela_resize_area(f28, 28, 28, flat, 105, 105);
    mela_resize_area(f17, 17, 23, flat, 105, 105);
    int ok = 1;
    for (int i = 0; i < 28 * 28; i++)
        ok &= f28[i] == 77;
    for (int i = 0; i < 17 * 23; i++)
        ok &= f17[i] == 77;
    CHECK(ok, "constant preserved");
}

/* The nearest rule: the input pixel i of n that holds the centre of output
 * pixel o of N, i <= (o + 1/2) n / N < i + 1, found by walking. */
static int nearest_ref(int o, int n, int N)
{
    int i = 0;
    while ((long)(i + 1) * 2 * N <= (long)(2 * o + 1) * n)
        i++;
    return i;
}

static void test_resize_nearest(void)
{
    /* 105 -> 28, the Omniglot case: the rows and columns PIL takes. */
    static const int want[28] = {1,  5,  9,  13, 16, 20, 24, 28, 31, 35, 39, 43, 46, 50,
                                 54, 58, 61, 65, 69, 73, 76, 80, 84, 88, 91, 95, 99, 103};
    static uint8_t in[105 * 105], out[105 * 105];
    for (int i = 0; i < 105 * 105; i++)
        in[i] = (uint8_t)((i * 2654435761u) >> 24);
    mela_resize_nearest(out, 28, 28, in, 105, 105);
    int ok = 1;
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++)
            ok &= out[y * 28 + x] == in[want[y] * 105 + want[x]];
    CHECK(ok, "105 -> 28 takes rows and columns 1, 5, 9, 13, 16, ...");
    /* Size pairs from 1 to 40 (shrinking, enlarging, odd ratios) against
     * the rule. */
    int bad = 0;
    for (int h = 1; h <= 40; h++)
        for (int H = 1; H <= 40; H++) {
            int w = 41 - h, W = 1 + (H * 7) % 40;
            mela_resize_nearest(out, H, W, in, h, w);
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    bad += out[y * W + x] != in[nearest_ref(y, h, H) * w + nearest_ref(x, w, W)];
        }
    CHECK(bad == 0, "%d pixels differ from the rule", bad);
    /* Same size: a copy; 2 -> 5 repeats pixels (0, 0, 1, 1, 1 in PIL). */
    mela_resize_nearest(out, 105, 105, in, 105, 105);
    CHECK(!memcmp(out, in, sizeof in), "same size copies");
    uint8_t two[2] = {10, 20}, five[5];
    mela_resize_nearest(five, 1, 5, two, 1, 2);
    CHECK(five[0] == 10 && five[1] == 10 && five[2] == 20 && five[3] == 20 && five[4] == 20,
          "enlarge %d %d %d %d %d", five[0], five[1], five[2], five[3], five[4]);
}

static void test_mean_ci(void)
{
    double x[4] = {1, 2, 3, 4}, m = 0, ci = 0;
    CHECK(mela_mean_ci(x, 4, &m, &ci) == 0, "ok");
    /* s = sqrt(5/3), ci = 1.96 * s / 2 */
    CHECK_CLOSE(m, 2.5, 1e-12, 0, "mean");
    CHECK_CLOSE(ci, 1.96 * sqrt(5.0 / 3.0) / 2.0, 1e-12, 0, "ci95");
    CHECK(mela_mean_ci(x, 1, &m, &ci) == 0 && m == 1 && ci == 0, "n = 1");
    CHECK(mela_mean_ci(x, 0, &m, &ci) == -1 && strstr(mela_last_error(), "n = 0"), "n = 0");
    double acc[600];
    for (int i = 0; i < 600; i++)
        acc[i] = (i % 4) ? 1.0 : 0.0; /* 75% accuracy */
    mela_mean_ci(acc, 600, &m, &ci);
    CHECK_CLOSE(m, 0.75, 1e-12, 0, "acc mean");
    CHECK_CLOSE(ci, 1.96 * sqrt(0.75 * 0.25 * 600.0 / 599.0) / sqrt(600.0), 1e-12, 0, "acc ci");
}

static void test_sinusoid(void)
{
    enum { K = 10, Q = 25 };
    float xs[K], ys[K], xq[Q], yq[Q], A, ph;
    float xs2[K], ys2[K], xq2[Q], yq2[Q], A2, ph2;
    int ok = 1, same = 1, differ = 0;
    double amin = 9, amax = 0, pmin = 9, pmax = -1, xmin = 9, xmax = -9;
    for (int i = 0; i < 2000; i++) {
        mela_sinusoid_task(5, (uint64_t)i, K, Q, xs, ys, xq, yq, &A, &ph);
        ok &= A >= 0.1f && A <= 5.0f && ph >= 0.0f && ph <= 3.14159275f;
        amin = fmin(amin, A), amax = fmax(amax, A), pmin = fmin(pmin, ph), pmax = fmax(pmax, ph);
        for (int k = 0; k < K; k++) {
            ok &= xs[k] >= -5.0f && xs[k] <= 5.0f && fabsf(ys[k]) <= A + 1e-6f;
            ok &= fabs(ys[k] - A * sin(xs[k] - ph)) < 1e-5;
            xmin = fmin(xmin, xs[k]), xmax = fmax(xmax, xs[k]);
        }
        for (int q = 0; q < Q; q++)
            ok &= xq[q] >= -5.0f && xq[q] <= 5.0f && fabs(yq[q] - A * sin(xq[q] - ph)) < 1e-5;
        if (i < 20) {
            mela_sinusoid_task(5, (uint64_t)i, K, Q, xs2, ys2, xq2, yq2, &A2, &ph2);
            same &= A == A2 && ph == ph2 && !memcmp(xs, xs2, sizeof xs) &&
                    !memcmp(yq, yq2, sizeof yq);
            mela_sinusoid_task(6, (uint64_t)i, K, Q, xs2, ys2, xq2, yq2, &A2, &ph2);
            differ += A != A2;
        }
    }
    CHECK(ok, "ranges and y = A sin(x - phase)");
    CHECK(amin < 0.2 && amax > 4.9 && pmin < 0.05 && pmax > 3.09 && xmin < -4.99 && xmax > 4.99,
          "ranges covered A [%g, %g] phase [%g, %g] x [%g, %g]", amin, amax, pmin, pmax, xmin,
          xmax);
    CHECK(same, "task i is a pure function of (seed, i)");
    CHECK(differ == 20, "another seed, other tasks");
    /* Support and query are separate draws. */
    mela_sinusoid_task(5, 0, K, Q, xs, ys, xq, yq, NULL, NULL);
    CHECK(memcmp(xs, xq, sizeof xs) != 0, "query is not the support");
}

static void test_decode_refuses(void)
{
    uint8_t *pix = NULL;
    int h, w;
    CHECK(mela_image_decode("GIF89a...", 9, "x.gif", 1, &pix, &h, &w) == -1 &&
              strstr(mela_last_error(), "x.gif: not a PNG or JPEG"),
          "gif: %s", mela_last_error());
    CHECK(pix == NULL, "no buffer");
    CHECK(mela_image_decode("\x89PNG\r\n\x1a\n", 8, "short.png", 1, &pix, &h, &w) == -1 &&
              strstr(mela_last_error(), "short.png"),
          "short png: %s", mela_last_error());
    CHECK(mela_hash64("abc", 3, 0) != mela_hash64("abd", 3, 0), "hash differs");
    CHECK(mela_hash64("abc", 3, 0) == mela_hash64("abc", 3, 0), "hash stable");
}

int main(void)
{
    test_resize();
    test_resize_nearest();
    test_mean_ci();
    test_sinusoid();
    test_decode_refuses();
    return check_finish();
}
