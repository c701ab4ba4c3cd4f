/*
 * test_kernels.c - every fast kernel against its naive _ref twin, plus the
 * identities that tie a kernel to its gradient.
 *
 * Tolerances. Fast vs ref: |got - want| <= atol + rtol |want| with
 * atol = rtol = 1e-4 on O(1) random normal data (the refs accumulate in
 * double, BLAS in float); the max-pool kernels must agree EXACTLY, ties
 * included, since they only copy values. Adjoint identities such as
 * <conv(x,w), dy> = <x, conv_dx(dy,w)> = <w, conv_dw(x,dy)> are evaluated in
 * double and must hold to 1e-5 (fast kernels) or 2e-7 (refs, whose outputs are
 * rounded to float once) times the Cauchy-Schwarz scale ||a|| ||b||.
 *
 * Every output is pre-filled with NaN (kernels overwrite, never accumulate),
 * every input is compared bit for bit after the call (kernels never write
 * their inputs), and the conv scratch is allocated with exactly
 * mk_conv_scratch() floats followed by canaries that must survive.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"
#include "mela.h"

#define CANARIES 64
#define CANARY 12345.678f

static float *alloc_floats(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "out of memory (%zu floats)\n", n);
        exit(2);
    }
    return p;
}

static float *dup_floats(const float *a, size_t n)
{
    float *p = alloc_floats(n);
    memcpy(p, a, sizeof(float) * n);
    return p;
}

static void fill_normal(mela_rng *r, float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = mela_rng_normal(r);
}

/* Small integers 0..3: many ties inside pooling windows. */
static void fill_ties(mela_rng *r, float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)mela_rng_below(r, 4);
}

static void fill_nan(float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = NAN;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* |<a1,b1> - <a2,b2>| <= tol * max(||a1|| ||b1||, ||a2|| ||b2||). */
static void check_adjoint(const float *a1, const float *b1, size_t n1, const float *a2,
                          const float *b2, size_t n2, double tol, const char *what)
{
    double l = dot(a1, b1, n1), r = dot(a2, b2, n2);
    double s1 = sqrt(dot(a1, a1, n1) * dot(b1, b1, n1));
    double s2 = sqrt(dot(a2, a2, n2) * dot(b2, b2, n2));
    double scale = s1 > s2 ? s1 : s2;
    CHECK(fabs(l - r) <= tol * scale + 1e-30, "%s: %.12g vs %.12g (scale %.3g)", what, l, r,
          scale);
}

static int same_bits(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, sizeof(float) * n) == 0;
}

/* ------------------------------------------------------------------- gemm */

static void test_gemm_case(mela_rng *r, int ta, int tb, int M, int N, int K, float alpha,
                           float beta)
{
    /* stored shapes: A is [M,K] or [K,M], B is [K,N] or [N,K]; pad the rows */
    const int arows = ta ? K : M, acols = ta ? M : K;
    const int brows = tb ? N : K, bcols = tb ? K : N;
    const int lda = acols + 3, ldb = bcols + 2, ldc = N + 5;
    size_t na = (size_t)arows * lda + 1, nb = (size_t)brows * ldb + 1, nc = (size_t)M * ldc + 1;
    float *A = alloc_floats(na), *B = alloc_floats(nb), *C = alloc_floats(nc);
    fill_normal(r, A, na);
    fill_normal(r, B, nb);
    fill_normal(r, C, nc);
    if (beta == 0.0f) /* BLAS rule: C is not read when beta is 0 */
        for (int i = 0; i < M; i++)
            fill_nan(C + (size_t)i * ldc, (size_t)N);
    float *A0 = dup_floats(A, na), *B0 = dup_floats(B, nb), *Cref = dup_floats(C, nc);
    mk_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    mk_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cref, ldc);
    char what[128];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g", ta, tb, M, N, K,
             alpha, beta);
    /* the padding between rows of C must be left alone: compare all of it */
    CHECK_ARRAY(C, Cref, nc, 1e-4, 1e-4, what);
    CHECK(same_bits(A, A0, na) && same_bits(B, B0, nb), "%s wrote an input", what);
    free(A), free(B), free(C), free(A0), free(B0), free(Cref);
}

static void test_gemm(void)
{
    mela_rng r = mela_rng_new(1);
    static const int shapes[][3] = {{1, 1, 1},   {7, 5, 3},   {5, 7, 1},  {33, 17, 65},
                                    {64, 100, 9}, {9, 64, 64}, {3, 3, 0}, {1, 40, 200}};
    static const float ab[][2] = {{1.0f, 0.0f}, {-0.7f, 1.0f}, {1.3f, 0.5f}, {0.0f, -2.0f}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t a = 0; a < sizeof ab / sizeof ab[0]; a++)
                    test_gemm_case(&r, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], ab[a][0],
                                   ab[a][1]);
}

/* ------------------------------------------------------------------- conv */

static void test_conv_init(void)
{
    mk_conv a = {.N = 1, .C = 1, .H = 28, .W = 28, .OC = 64, .KH = 3, .KW = 3, .stride = 1, .pad = 1};
    CHECK(mk_conv_init(&a) == 0 && a.OH == 28 && a.OW == 28, "OH %d OW %d", a.OH, a.OW);
    mk_conv b = a;
    b.stride = 2;
    CHECK(mk_conv_init(&b) == 0 && b.OH == 14 && b.OW == 14, "OH %d OW %d", b.OH, b.OW);
    mk_conv c = {.N = 1, .C = 1, .H = 7, .W = 5, .OC = 1, .KH = 3, .KW = 2, .stride = 2, .pad = 1};
    CHECK(mk_conv_init(&c) == 0 && c.OH == 4 && c.OW == 3, "OH %d OW %d", c.OH, c.OW);
    mk_conv d = {.N = 1, .C = 1, .H = 2, .W = 5, .OC = 1, .KH = 3, .KW = 3, .stride = 1, .pad = 0};
    CHECK(mk_conv_init(&d) == -1, "empty output accepted");
    mk_conv e = a;
    e.stride = 0;
    CHECK(mk_conv_init(&e) == -1, "stride 0 accepted");
}

/* Runs the three fast kernels and their refs on random data and checks them
 * against each other and the adjoint identities. Returns the scratch size. */
static size_t test_conv_impl(mela_rng *r, mk_conv cv, double atol)
{
    if (mk_conv_init(&cv) != 0) {
        CHECK(0, "bad test shape");
        return 0;
    }
    const size_t nx = (size_t)cv.N * cv.C * cv.H * cv.W, nw = (size_t)cv.OC * cv.C * cv.KH * cv.KW;
    const size_t ny = (size_t)cv.N * cv.OC * cv.OH * cv.OW, ns = mk_conv_scratch(&cv);
    float *x = alloc_floats(nx), *w = alloc_floats(nw), *dy = alloc_floats(ny);
    fill_normal(r, x, nx);
    fill_normal(r, w, nw);
    fill_normal(r, dy, ny);
    float *x0 = dup_floats(x, nx), *w0 = dup_floats(w, nw), *dy0 = dup_floats(dy, ny);
    float *y = alloc_floats(ny), *dx = alloc_floats(nx), *dw = alloc_floats(nw);
    float *yr = alloc_floats(ny), *dxr = alloc_floats(nx), *dwr = alloc_floats(nw);
    float *scratch = alloc_floats(ns + CANARIES);
    fill_nan(y, ny), fill_nan(dx, nx), fill_nan(dw, nw);
    fill_nan(yr, ny), fill_nan(dxr, nx), fill_nan(dwr, nw);
    fill_nan(scratch, ns);
    for (int i = 0; i < CANARIES; i++)
        scratch[ns + i] = CANARY;

    mk_conv2d(y, x, w, &cv, scratch);
    mk_conv2d_dx(dx, dy, w, &cv, scratch);
    mk_conv2d_dw(dw, x, dy, &cv, scratch);
    /* the same bits on 2 and 4 threads (the work is split the same way) */
    for (int t = 2; t <= MK_MAX_THREADS; t *= 2) {
        float *y2 = alloc_floats(ny), *dx2 = alloc_floats(nx), *dw2 = alloc_floats(nw);
        mk_conv ct = cv;
        ct.threads = t;
        mk_conv2d(y2, x, w, &ct, scratch);
        mk_conv2d_dx(dx2, dy, w, &ct, scratch);
        mk_conv2d_dw(dw2, x, dy, &ct, scratch);
        CHECK(!memcmp(y, y2, ny * sizeof *y) && !memcmp(dx, dx2, nx * sizeof *dx) &&
                  !memcmp(dw, dw2, nw * sizeof *dw),
              "conv N=%d C=%d %dx%d: %d threads give other bits than 1", cv.N, cv.C, cv.H, cv.W, t);
        free(y2), free(dx2), free(dw2);
    }
    mk_conv2d_ref(yr, x, w, &cv);
    mk_conv2d_dx_ref(dxr, dy, w, &cv);
    mk_conv2d_dw_ref(dwr, x, dy, &cv);

    char what[160];
    int len = snprintf(what, sizeof what, "%s N=%d C=%d %dx%d OC=%d k=%dx%d s=%d p=%d",
                       cv.own ? "own" : "fast", cv.N, cv.C, cv.H, cv.W, cv.OC, cv.KH, cv.KW, cv.stride, cv.pad);
    char *tail = what + len;
    size_t room = sizeof what - (size_t)len;
    snprintf(tail, room, " conv2d");
    CHECK_ARRAY(y, yr, ny, atol, 1e-4, what);
    snprintf(tail, room, " conv2d_dx");
    CHECK_ARRAY(dx, dxr, nx, atol, 1e-4, what);
    snprintf(tail, room, " conv2d_dw");
    CHECK_ARRAY(dw, dwr, nw, atol, 1e-4, what);
    *tail = '\0';

    int canaries_ok = 1;
    for (int i = 0; i < CANARIES; i++)
        canaries_ok &= scratch[ns + i] == CANARY;
    CHECK(canaries_ok, "%s: wrote past mk_conv_scratch() = %zu floats", what, ns);
    CHECK(same_bits(x, x0, nx) && same_bits(w, w0, nw) && same_bits(dy, dy0, ny),
          "%s: a conv kernel wrote an input", what);

    /* <conv(x,w), dy> = <x, conv_dx(dy,w)> = <w, conv_dw(x,dy)> */
    snprintf(tail, room, " adjoint dx");
    check_adjoint(y, dy, ny, x, dx, nx, 1e-5, what);
    snprintf(tail, room, " adjoint dw");
    check_adjoint(y, dy, ny, w, dw, nw, 1e-5, what);
    snprintf(tail, room, " adjoint dx ref");
    check_adjoint(yr, dy, ny, x, dxr, nx, 2e-7, what);
    snprintf(tail, room, " adjoint dw ref");
    check_adjoint(yr, dy, ny, w, dwr, nw, 2e-7, what);

    free(x), free(w), free(dy), free(x0), free(w0), free(dy0);
    free(y), free(dx), free(dw), free(yr), free(dxr), free(dwr), free(scratch);
    return ns;
}

/* Both paths: mela's own kernels, and the fast path (oneDNN where it serves,
 * when mela is built with it). Returns the own kernels' scratch. */
static size_t test_conv_case(mela_rng *r, mk_conv cv, double atol)
{
    cv.own = 1;
    size_t ns = test_conv_impl(r, cv, atol);
    cv.own = 0;
    test_conv_impl(r, cv, atol);
    return ns;
}

/* With oneDNN built in, it serves the Conv-4 layers (a build that silently
 * lost it would still pass every other check). */
static void test_conv_backend(void)
{
    char name[64];
    int dnnl = mela_conv_backend(name, sizeof name);
    mk_conv cv = {.N = 20, .C = 64, .H = 14, .W = 14, .OC = 64, .KH = 3, .KW = 3, .stride = 1, .pad = 1};
    mk_conv_init(&cv);
    printf("convolutions: %s\n", name);
    CHECK(mk_dnnl_serves(&cv, 0) == dnnl && mk_dnnl_serves(&cv, 1) == dnnl && mk_dnnl_serves(&cv, 2) == dnnl,
          "%s serves the 64-channel Conv-4 layer: %d %d %d", name, mk_dnnl_serves(&cv, 0),
          mk_dnnl_serves(&cv, 1), mk_dnnl_serves(&cv, 2));
    cv.own = 1;
    CHECK(!mk_dnnl_serves(&cv, 0), "own = 1 keeps mela's kernels");
}

static void test_conv(void)
{
    test_conv_backend();
    mela_rng r = mela_rng_new(2);
    /* N, C, H, W, OC, KH, KW, stride, pad */
    static const int cases[][9] = {
        {1, 1, 1, 1, 1, 1, 1, 1, 0},   {2, 3, 5, 5, 4, 3, 3, 1, 1},   {3, 2, 7, 6, 5, 3, 2, 1, 0},
        {4, 5, 9, 8, 6, 3, 3, 2, 1},   {1, 1, 4, 4, 1, 3, 3, 1, 2},   {5, 3, 6, 7, 2, 2, 3, 2, 2},
        {7, 4, 11, 13, 3, 5, 5, 3, 2}, {2, 3, 8, 8, 4, 1, 1, 1, 0},   {1, 5, 6, 6, 3, 1, 1, 1, 0},
        {3, 2, 7, 7, 3, 1, 1, 2, 0},   {1, 2, 3, 3, 2, 5, 5, 1, 2},   {6, 1, 28, 28, 6, 3, 3, 1, 1},
        {5, 4, 14, 14, 6, 3, 3, 1, 1}, {3, 4, 2, 2, 5, 3, 3, 1, 1},   {7, 3, 1, 1, 2, 3, 3, 1, 1},
        {2, 2, 5, 5, 3, 3, 3, 2, 0},   {4, 3, 10, 9, 4, 4, 4, 2, 1},  {2, 3, 7, 7, 4, 3, 3, 2, 1},
        {3, 2, 3, 3, 3, 3, 3, 1, 1},   {1, 3, 6, 9, 2, 2, 3, 3, 2},
        /* C >= 16, stride 1, pad < kernel, N*OH*OW >= 64: dx as a transposed
         * forward convolution */
        {2, 16, 7, 7, 8, 3, 3, 1, 1},  {3, 17, 6, 9, 5, 3, 2, 1, 1},  {3, 20, 5, 5, 4, 5, 5, 1, 2},
        {2, 16, 10, 10, 3, 3, 3, 1, 0}, {3, 16, 5, 5, 4, 1, 1, 1, 0}, {1, 16, 12, 12, 4, 1, 1, 1, 0},
        {8, 16, 3, 3, 6, 3, 3, 1, 1},  {2, 16, 13, 12, 3, 3, 3, 1, 1}, {3, 16, 7, 5, 4, 2, 3, 1, 0},
        /* C >= 16 but pad >= kernel, stride 2 or a tiny batch: dx through col2im */
        {1, 16, 4, 4, 2, 2, 2, 1, 2},  {4, 18, 9, 9, 3, 3, 3, 2, 1},  {2, 16, 3, 3, 6, 3, 3, 1, 1},
        {1, 19, 1, 1, 2, 3, 3, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int *c = cases[i];
        mk_conv cv = {.N = c[0], .C = c[1], .H = c[2], .W = c[3], .OC = c[4], .KH = c[5],
                      .KW = c[6], .stride = c[7], .pad = c[8]};
        test_conv_case(&r, cv, 1e-4);
    }
    /* random geometries, the last 20 with C >= 16 */
    int done = 0;
    while (done < 80) {
        int C = done < 60 ? 1 + (int)mela_rng_below(&r, 5) : 16 + (int)mela_rng_below(&r, 5);
        mk_conv cv = {.N = 1 + (int)mela_rng_below(&r, 7), .C = C,
                      .H = 1 + (int)mela_rng_below(&r, 12), .W = 1 + (int)mela_rng_below(&r, 12),
                      .OC = 1 + (int)mela_rng_below(&r, 6), .KH = 1 + (int)mela_rng_below(&r, 4),
                      .KW = 1 + (int)mela_rng_below(&r, 4), .stride = 1 + (int)mela_rng_below(&r, 3),
                      .pad = (int)mela_rng_below(&r, 3)};
        mk_conv probe = cv;
        if (mk_conv_init(&probe) != 0)
            continue;
        test_conv_case(&r, cv, 1e-4);
        done++;
    }
    /* Batches too big for one chunk (with conv.c's default chunk size), of
     * small images (several per chunk, the last chunk short) and of big ones
     * (one per chunk): checks the chunk offsets and the beta of dw. The sums
     * run over up to N*OH*OW = 50000 terms, hence the looser atol. */
    static const int big[][9] = {{100, 64, 3, 3, 64, 3, 3, 1, 1},  {20, 64, 7, 7, 64, 3, 3, 1, 1},
                                 {100, 8, 7, 7, 5, 3, 3, 1, 1},    {5, 16, 100, 100, 3, 3, 3, 1, 1},
                                 {5, 150, 100, 100, 3, 1, 1, 1, 0}, {3, 24, 200, 160, 2, 3, 3, 2, 1}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        const int *c = big[i];
        mk_conv cv = {.N = c[0], .C = c[1], .H = c[2], .W = c[3], .OC = c[4], .KH = c[5],
                      .KW = c[6], .stride = c[7], .pad = c[8]};
        size_t ns = test_conv_case(&r, cv, 2e-3);
        mk_conv_init(&cv);
        size_t whole = ((size_t)cv.C * cv.KH * cv.KW + cv.OC) * cv.OH * cv.OW * cv.N;
        /* scratch holds one chunk area per possible thread */
        CHECK(ns > 0 && ns / MK_MAX_THREADS < whole, "case %zu is not chunked (scratch %zu of %zu)", i, ns, whole);
    }
}

/* ------------------------------------------------------------------- pool */

static void test_pool_case(mela_rng *r, int P, int H, int W, int k, int s, int ties)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    const size_t nx = (size_t)P * H * W, ny = (size_t)P * OH * OW;
    float *x = alloc_floats(nx), *gx = alloc_floats(nx), *dy = alloc_floats(ny);
    if (ties == 2)
        for (size_t i = 0; i < nx; i++)
            x[i] = 1.0f; /* every window is one big tie */
    else if (ties)
        fill_ties(r, x, nx);
    else
        fill_normal(r, x, nx);
    fill_normal(r, gx, nx);
    fill_normal(r, dy, ny);
    float *x0 = dup_floats(x, nx), *gx0 = dup_floats(gx, nx), *dy0 = dup_floats(dy, ny);
    float *y = alloc_floats(ny), *yr = alloc_floats(ny), *gy = alloc_floats(ny),
          *gyr = alloc_floats(ny);
    float *dx = alloc_floats(nx), *dxr = alloc_floats(nx);

    char what[128];
    int len = snprintf(what, sizeof what, "P=%d %dx%d k=%d s=%d ties=%d", P, H, W, k, s, ties);
    char *tail = what + len;
    size_t room = sizeof what - (size_t)len;

    fill_nan(y, ny), fill_nan(yr, ny);
    mk_maxpool(y, x, P, H, W, k, s);
    mk_maxpool_ref(yr, x, P, H, W, k, s);
    snprintf(tail, room, " maxpool");
    CHECK_ARRAY(y, yr, ny, 0.0, 0.0, what);

    fill_nan(gy, ny), fill_nan(gyr, ny);
    mk_maxpool_gather(gy, x, gx, P, H, W, k, s);
    mk_maxpool_gather_ref(gyr, x, gx, P, H, W, k, s);
    snprintf(tail, room, " maxpool_gather");
    CHECK_ARRAY(gy, gyr, ny, 0.0, 0.0, what);

    fill_nan(dx, nx), fill_nan(dxr, nx);
    mk_maxpool_scatter(dx, x, dy, P, H, W, k, s);
    mk_maxpool_scatter_ref(dxr, x, dy, P, H, W, k, s);
    snprintf(tail, room, " maxpool_scatter");
    CHECK_ARRAY(dx, dxr, nx, 0.0, 0.0, what);
    /* gather and scatter are adjoint: <gather(x,g), dy> = <g, scatter(x,dy)> */
    snprintf(tail, room, " maxpool adjoint");
    check_adjoint(gy, dy, ny, gx, dx, nx, 1e-6, what);
    /* with g = x, gather is maxpool itself */
    mk_maxpool_gather(gy, x, x, P, H, W, k, s);
    snprintf(tail, room, " maxpool_gather(x, x) == maxpool(x)");
    CHECK_ARRAY(gy, y, ny, 0.0, 0.0, what);

    fill_nan(y, ny), fill_nan(yr, ny);
    mk_avgpool(y, x, P, H, W, k, s);
    mk_avgpool_ref(yr, x, P, H, W, k, s);
    snprintf(tail, room, " avgpool");
    CHECK_ARRAY(y, yr, ny, 1e-5, 1e-5, what);

    fill_nan(dx, nx), fill_nan(dxr, nx);
    mk_avgpool_dx(dx, dy, P, H, W, k, s);
    mk_avgpool_dx_ref(dxr, dy, P, H, W, k, s);
    snprintf(tail, room, " avgpool_dx");
    CHECK_ARRAY(dx, dxr, nx, 1e-5, 1e-5, what);
    snprintf(tail, room, " avgpool adjoint");
    check_adjoint(y, dy, ny, x, dx, nx, 1e-6, what);

    /* pixels below / right of the last window get no gradient */
    int margin_zero = 1;
    mk_maxpool_scatter(dxr, x, dy, P, H, W, k, s);
    for (int p = 0; p < P; p++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++)
                if (h >= (OH - 1) * s + k || w >= (OW - 1) * s + k) {
                    size_t i = ((size_t)p * H + h) * W + w;
                    margin_zero &= dx[i] == 0.0f && dxr[i] == 0.0f;
                }
    *tail = '\0';
    CHECK(margin_zero, "%s: uncovered pixels got gradient", what);
    CHECK(same_bits(x, x0, nx) && same_bits(gx, gx0, nx) && same_bits(dy, dy0, ny),
          "%s: a pool kernel wrote an input", what);

    free(x), free(gx), free(dy), free(x0), free(gx0), free(dy0);
    free(y), free(yr), free(gy), free(gyr), free(dx), free(dxr);
}

static void test_pool_first_max(void)
{
    /* one 2x2 window {1, 3; 3, 0}: the first 3 (index 1) wins, not index 2 */
    const float x[4] = {1, 3, 3, 0}, g[4] = {10, 20, 30, 40}, dy[1] = {5};
    float y, gy, dx[4];
    mk_maxpool(&y, x, 1, 2, 2, 2, 2);
    mk_maxpool_gather(&gy, x, g, 1, 2, 2, 2, 2);
    mk_maxpool_scatter(dx, x, dy, 1, 2, 2, 2, 2);
    CHECK(y == 3 && gy == 20 && dx[0] == 0 && dx[1] == 5 && dx[2] == 0 && dx[3] == 0,
          "2x2 tie: y %g gy %g dx %g %g %g %g", y, gy, dx[0], dx[1], dx[2], dx[3]);
    /* 3x3 window stride 1 over a 3x4 plane of equal values: each window picks
     * its top-left pixel, so dx counts window origins */
    const float e[12] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, one[2] = {1, 1};
    float d[12];
    mk_maxpool_scatter(d, e, one, 1, 3, 4, 3, 1);
    CHECK(d[0] == 1 && d[1] == 1 && d[2] == 0 && d[4] == 0, "3x3 tie: %g %g %g %g", d[0], d[1],
          d[2], d[4]);
}

static void test_pool(void)
{
    mela_rng r = mela_rng_new(3);
    /* P, H, W, k, s */
    static const int cases[][5] = {
        {1, 2, 2, 2, 2},   {3, 28, 28, 2, 2}, {2, 5, 5, 2, 2},  {4, 7, 6, 3, 2},
        {2, 9, 9, 3, 3},   {3, 6, 6, 2, 1},   {1, 1, 1, 1, 1},  {5, 8, 11, 3, 1},
        {2, 10, 7, 3, 2},  {1, 4, 4, 4, 1},   {6, 7, 7, 2, 2},  {2, 3, 3, 2, 2},
        {3, 14, 14, 2, 2}, {2, 11, 8, 2, 3},  {1, 5, 9, 3, 3},  {4, 6, 5, 1, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int ties = 0; ties < 3; ties++)
            test_pool_case(&r, cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4],
                           ties);
    test_pool_first_max();
}

/* mk_pad2d against its _ref twin (bit for bit) for pads, crops and mixed
 * amounts, and the adjoint: <pad(x), d> = <x, crop(d)> with the amounts negated. */
static void test_pad2d(void)
{
    mela_rng r = mela_rng_new(5);
    /* P, H, W, top, bottom, left, right */
    static const int cases[][7] = {
        {3, 28, 28, 0, 1, 0, 1}, {2, 7, 7, 1, 1, 1, 1}, {1, 4, 5, 2, 0, 0, 3},  {2, 6, 5, -1, -2, 0, -1},
        {1, 5, 4, -2, 3, 1, -3}, {4, 1, 1, 2, 2, 0, 0}, {2, 3, 6, -2, -0, 4, -7}, {1, 2, 2, 0, 0, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int *k = cases[c];
        int P = k[0], H = k[1], W = k[2], OH = H + k[3] + k[4], OW = W + k[5] + k[6];
        size_t nx = (size_t)P * H * W, ny = (size_t)P * OH * OW;
        float *x = alloc_floats(nx), *y = alloc_floats(ny), *yr = alloc_floats(ny);
        float *d = alloc_floats(ny), *dx = alloc_floats(nx), *x0;
        fill_normal(&r, x, nx);
        fill_normal(&r, d, ny);
        x0 = dup_floats(x, nx);
        char what[96];
        snprintf(what, sizeof what, "pad2d P=%d %dx%d by %d %d %d %d", P, H, W, k[3], k[4], k[5], k[6]);
        fill_nan(y, ny), fill_nan(yr, ny), fill_nan(dx, nx);
        mk_pad2d(y, x, P, H, W, k[3], k[5], OH, OW);
        mk_pad2d_ref(yr, x, P, H, W, k[3], k[5], OH, OW);
        CHECK_ARRAY(y, yr, ny, 0.0, 0.0, what);
        mk_pad2d(dx, d, P, OH, OW, -k[3], -k[5], H, W);
        check_adjoint(y, d, ny, x, dx, nx, 1e-6, what);
        CHECK(same_bits(x, x0, nx), "%s wrote its input", what);
        free(x), free(y), free(yr), free(d), free(dx), free(x0);
    }
}

typedef struct pjob {
    int k, runs;
    double sum;
} pjob;

static void *pjob_run(void *arg)
{
    pjob *j = arg;
    j->runs++;
    for (int i = 0; i <= 1000 * j->k; i++)
        j->sum += i;
    return NULL;
}

/* Every job runs exactly once, for fewer and more jobs than the stack slots. */
static void test_parallel(void)
{
    for (int n = 1; n <= 12; n += 11) {
        pjob jobs[12] = {{0}};
        for (int k = 0; k < n; k++)
            jobs[k].k = k;
        mela_parallel(n, pjob_run, jobs, sizeof *jobs);
        int ok = 1;
        for (int k = 0; k < n; k++)
            ok &= jobs[k].runs == 1 && jobs[k].sum == 1000.0 * k * (1000.0 * k + 1) / 2;
        CHECK(ok, "mela_parallel ran each of %d jobs once", n);
    }
}

/* The batch-norm kernels against the formulas in double: statistics,
 * xhat, and the backward pass dx = rstd (dy - mean(dy) - xhat mean(dy xhat)),
 * whole and channel by channel in two halves (what threads do). */
static void test_bn(void)
{
    mela_rng r = mela_rng_new(11);
    enum { N = 3, C = 5, P = 7 };
    float x[N * C * P], dy[N * C * P], xhat[N * C * P], rstd[C], dx[N * C * P], dx2[N * C * P];
    fill_normal(&r, x, N * C * P);
    fill_normal(&r, dy, N * C * P);
    mk_bn_normalize(xhat, rstd, x, N, C, P, 1e-5f);
    mk_bn_dx_channels(dx, dy, xhat, rstd, N, C, P, 0, C);
    mk_bn_dx_channels(dx2, dy, xhat, rstd, N, C, P, 0, 2);
    mk_bn_dx_channels(dx2, dy, xhat, rstd, N, C, P, 2, C);
    double err = 0, serr = 0;
    for (int c = 0; c < C; c++) {
        double m = 0, v = 0, mg = 0, mgx = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < P; i++)
                m += x[(n * C + c) * P + i] / (N * P);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < P; i++) {
                double d = x[(n * C + c) * P + i] - m;
                v += d * d / (N * P);
            }
        double rs = 1 / sqrt(v + 1e-5);
        serr = fmax(serr, fabs(rstd[c] - rs) / rs);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < P; i++) {
                int k = (n * C + c) * P + i;
                double xh = (x[k] - m) * rs;
                serr = fmax(serr, fabs(xhat[k] - xh));
                mg += dy[k] / (N * P);
                mgx += dy[k] * xh / (N * P);
            }
        for (int n = 0; n < N; n++)
            for (int i = 0; i < P; i++) {
                int k = (n * C + c) * P + i;
                double xh = (x[k] - m) * rs, want = rs * (dy[k] - mg - xh * mgx);
                err = fmax(err, fabs(dx[k] - want) / (1 + fabs(want)));
            }
    }
    CHECK(serr < 1e-5, "bn_normalize against double: %g", serr);
    CHECK(err < 1e-5, "bn_dx against double: %g", err);
    CHECK(!memcmp(dx, dx2, sizeof dx), "bn_dx by channel ranges gives the same bits");
}

int main(void)
{
    test_bn();
    test_parallel();
    test_gemm();
    test_conv_init();
    test_conv();
    test_pool();
    test_pad2d();
    return check_finish();
}
