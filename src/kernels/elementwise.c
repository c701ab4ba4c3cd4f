/* elementwise.c - broadcasting binary ops, reductions to a shape, unary
 * functions and the row-wise softmax family. Plain loops written so that gcc
 * vectorises the inner one; the broadcasting kernels first merge adjacent axes
 * that are contiguous for every operand, so a per-channel bias over (N, C,
 * H, W) runs as (N, C, H*W) with an inner loop of H*W. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* Rewrites a 4-D iteration (shape, and one stride array per operand) into
 * the fewest axes: axis k joins the group inside it when, for every operand,
 * stride[k] == (group stride) * (group size); size-1 axes vanish. The result
 * is right-aligned, padded with size-1 axes of stride 0. */
static void merge_axes(int shape[4], long *str[], int nops)
{
    int ns[4];
    long nstr[3][4];
    int m = 0;
    int cs = shape[3];
    long cstr[3];
    for (int o = 0; o < nops; o++)
        cstr[o] = str[o][3];
    for (int k = 2; k >= 0; k--) {
        if (shape[k] == 1)
            continue;
        if (cs == 1) {
            cs = shape[k];
            for (int o = 0; o < nops; o++)
                cstr[o] = str[o][k];
            continue;
        }
        int ok = 1;
        for (int o = 0; o < nops; o++)
            ok &= str[o][k] == cstr[o] * cs;
        if (ok) {
            cs *= shape[k];
            continue;
        }
        ns[m] = cs;
        for (int o = 0; o < nops; o++)
            nstr[o][m] = cstr[o];
        m++;
        cs = shape[k];
        for (int o = 0; o < nops; o++)
            cstr[o] = str[o][k];
    }
    ns[m] = cs;
    for (int o = 0; o < nops; o++)
        nstr[o][m] = cstr[o];
    m++;
    for (int i = 0; i < 4; i++) {
        shape[3 - i] = i < m ? ns[i] : 1;
        for (int o = 0; o < nops; o++)
            str[o][3 - i] = i < m ? nstr[o][i] : 0;
    }
}

#define BINARY_LOOP(EXPR)                                                       \
    for (int i0 = 0; i0 < s[0]; i0++)                                           \
        for (int i1 = 0; i1 < s[1]; i1++)                                       \
            for (int i2 = 0; i2 < s[2]; i2++) {                                 \
                const float *pa = a + i0 * as[0] + i1 * as[1] + i2 * as[2];     \
                const float *pb = b + i0 * bs[0] + i1 * bs[1] + i2 * bs[2];     \
                float *py = y + ((size_t)(i0 * s[1] + i1) * s[2] + i2) * s[3];  \
                if (as[3] == 1 && bs[3] == 1)                                   \
                    for (int i = 0; i < s[3]; i++) {                            \
                        float A = pa[i], B = pb[i];                             \
                        py[i] = EXPR;                                           \
                    }                                                           \
                else if (as[3] == 1 && bs[3] == 0) {                            \
                    const float B = pb[0];                                      \
                    for (int i = 0; i < s[3]; i++) {                            \
                        float A = pa[i];                                        \
                        py[i] = EXPR;                                           \
                    }                                                           \
                } else if (as[3] == 0 && bs[3] == 1) {                          \
                    const float A = pa[0];                                      \
                    for (int i = 0; i < s[3]; i++) {                            \
                        float B = pb[i];                                        \
                        py[i] = EXPR;                                           \
                    }                                                           \
                } else                                                          \
                    for (int i = 0; i < s[3]; i++) {                            \
                        float A = pa[i * as[3]], B = pb[i * bs[3]];             \
                        py[i] = EXPR;                                           \
                    }                                                           \
            }

void mk_binary(enum mk_binop op, float *y, const float *a, const long astr[4], const float *b,
               const long bstr[4], const int shape[4])
{
    int s[4] = {shape[0], shape[1], shape[2], shape[3]};
    long as[4] = {astr[0], astr[1], astr[2], astr[3]};
    long bs[4] = {bstr[0], bstr[1], bstr[2], bstr[3]};
    long ys[4] = {(long)s[1] * s[2] * s[3], (long)s[2] * s[3], s[3], 1};
    long *str[3] = {as, bs, ys};
    merge_axes(s, str, 3);
    switch (op) {
    case MK_ADD: BINARY_LOOP(A + B); break;
    case MK_SUB: BINARY_LOOP(A - B); break;
    case MK_MUL: BINARY_LOOP(A * B); break;
    case MK_DIV: BINARY_LOOP(A / B); break;
    }
}

void mk_binary_ref(enum mk_binop op, float *y, const float *a, const long astr[4],
                   const float *b, const long bstr[4], const int shape[4])
{
    size_t o = 0;
    for (int i0 = 0; i0 < shape[0]; i0++)
        for (int i1 = 0; i1 < shape[1]; i1++)
            for (int i2 = 0; i2 < shape[2]; i2++)
                for (int i3 = 0; i3 < shape[3]; i3++, o++) {
                    float A = a[i0 * astr[0] + i1 * astr[1] + i2 * astr[2] + i3 * astr[3]];
                    float B = b[i0 * bstr[0] + i1 * bstr[1] + i2 * bstr[2] + i3 * bstr[3]];
                    y[o] = op == MK_ADD ? A + B : op == MK_SUB ? A - B : op == MK_MUL ? A * B : A / B;
                }
}

/* The loops of sum_to over the merged axes, with axis `ax` limited to
 * [lo, hi): each output element is summed in the same order whatever the
 * range, and ranges of an axis the output keeps (ys[ax] != 0) write
 * disjoint outputs. */
typedef struct sum_job {
    float *y;
    const float *x;
    int s[4], ax;
    long ys[4];
} sum_job;

static void sum_range(const sum_job *j, int lo, int hi)
{
    const int *s = j->s;
    const long *ys = j->ys;
    int b[4] = {0, 0, 0, 0}, e[4] = {s[0], s[1], s[2], s[3]};
    b[j->ax] = lo, e[j->ax] = hi;
    for (int i0 = b[0]; i0 < e[0]; i0++)
        for (int i1 = b[1]; i1 < e[1]; i1++)
            for (int i2 = b[2]; i2 < e[2]; i2++) {
                const float *px = j->x + ((size_t)(i0 * s[1] + i1) * s[2] + i2) * s[3];
                float *py = j->y + i0 * ys[0] + i1 * ys[1] + i2 * ys[2];
                if (ys[3] == 0) {
                    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                    for (int i = b[3]; i < e[3]; i++)
                        acc += px[i];
                    py[0] += acc;
                } else {
                    for (int i = b[3]; i < e[3]; i++)
                        py[i] += px[i];
                }
            }
}

static void sum_chunk(void *arg, int t, int tid)
{
    const sum_job *j = arg;
    int n = j->s[j->ax];
    sum_range(j, (int)((long)n * t / MK_MAX_THREADS), (int)((long)n * (t + 1) / MK_MAX_THREADS));
}

void mk_sum_to_threads(float *y, size_t ny, const float *x, const int xshape[4], const long ystr[4],
                       int threads)
{
    sum_job j = {y, x, {xshape[0], xshape[1], xshape[2], xshape[3]}, 0, {ystr[0], ystr[1], ystr[2], ystr[3]}};
    long xs[4] = {(long)j.s[1] * j.s[2] * j.s[3], (long)j.s[2] * j.s[3], j.s[3], 1};
    long *str[2] = {j.ys, xs};
    merge_axes(j.s, str, 2);
    memset(y, 0, ny * sizeof *y);
    /* split the longest axis the output keeps, when the work is worth it */
    j.ax = -1;
    for (int a = 0; a < 4; a++)
        if (j.ys[a] != 0 && j.s[a] >= MK_MAX_THREADS && (j.ax < 0 || j.s[a] > j.s[j.ax]))
            j.ax = a;
    size_t work = (size_t)j.s[0] * j.s[1] * j.s[2] * j.s[3];
    if (threads <= 1 || j.ax < 0 || work < MK_PAR_MIN_ELEMENTS) {
        j.ax = 0;
        sum_range(&j, 0, j.s[0]);
        return;
    }
    /* MK_MAX_THREADS fixed ranges (any thread may run any range: outputs are
     * disjoint and each is summed in the same order) */
    mk_parallel_chunks(threads, MK_MAX_THREADS, 1e9, sum_chunk, &j);
}

void mk_sum_to(float *y, size_t ny, const float *x, const int xshape[4], const long ystr[4])
{
    mk_sum_to_threads(y, ny, x, xshape, ystr, 1);
}

void mk_sum_to_ref(float *y, size_t ny, const float *x, const int xshape[4], const long ystr[4])
{
    memset(y, 0, ny * sizeof *y);
    size_t o = 0;
    for (int i0 = 0; i0 < xshape[0]; i0++)
        for (int i1 = 0; i1 < xshape[1]; i1++)
            for (int i2 = 0; i2 < xshape[2]; i2++)
                for (int i3 = 0; i3 < xshape[3]; i3++, o++)
                    y[i0 * ystr[0] + i1 * ystr[1] + i2 * ystr[2] + i3 * ystr[3]] += x[o];
}

static float softplus1(float x) { return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x)); }
static float sigmoid1(float x)
{
    if (x >= 0)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

void mk_unary(enum mk_unop op, float *y, const float *x, size_t n, float a)
{
    switch (op) {
    case MK_RELU: for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f; break;
    case MK_LEAKY: for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : a * x[i]; break;
    case MK_SIGMOID: for (size_t i = 0; i < n; i++) y[i] = sigmoid1(x[i]); break;
    case MK_TANH: for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]); break;
    case MK_EXP: for (size_t i = 0; i < n; i++) y[i] = expf(x[i]); break;
    case MK_LOG: for (size_t i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case MK_ABS: for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]); break;
    case MK_SIGN: for (size_t i = 0; i < n; i++) y[i] = (float)((x[i] > 0) - (x[i] < 0)); break;
    case MK_SQUARE: for (size_t i = 0; i < n; i++) y[i] = x[i] * x[i]; break;
    case MK_SQRT: for (size_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
    case MK_SOFTPLUS: for (size_t i = 0; i < n; i++) y[i] = softplus1(x[i]); break;
    case MK_SCALE: for (size_t i = 0; i < n; i++) y[i] = a * x[i]; break;
    case MK_ADDS: for (size_t i = 0; i < n; i++) y[i] = x[i] + a; break;
    }
}

void mk_relu_grad(float *dx, const float *x, const float *dy, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++)
        dx[i] = x[i] > 0 ? dy[i] : slope * dy[i];
}

void mk_log_softmax(float *y, const float *x, size_t rows, int C)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float m = xr[0];
        for (int c = 1; c < C; c++)
            m = xr[c] > m ? xr[c] : m;
        double s = 0.0;
        for (int c = 0; c < C; c++)
            s += exp((double)(xr[c] - m));
        float lse = m + (float)log(s);
        for (int c = 0; c < C; c++)
            yr[c] = xr[c] - lse;
    }
}

int mk_one_hot(float *y, const float *labels, size_t rows, int C, size_t *bad_row)
{
    memset(y, 0, rows * C * sizeof *y);
    for (size_t r = 0; r < rows; r++) {
        float l = labels[r];
        if (!(l >= 0 && l < C) || l != (float)(int)l) {
            *bad_row = r;
            return -1;
        }
        y[r * C + (int)l] = 1.0f;
    }
    return 0;
}

void mk_argmax_eq(float *y, const float *x, const float *labels, size_t rows, int C)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (xr[c] > xr[best])
                best = c;
        y[r] = (float)best == labels[r] ? 1.0f : 0.0f;
    }
}

void mk_bn_normalize(float *xhat, float *rstd, const float *x, int N, int C, size_t P, float eps)
{
    mk_bn_normalize_channels(xhat, rstd, x, N, C, P, eps, 0, C);
}

void mk_bn_normalize_channels(float *xhat, float *rstd, const float *x, int N, int C, size_t P, float eps,
                              int c0, int c1)
{
    /* Each row of P values is summed in float over SIMD lanes, rows are
     * accumulated in double: vectorised, and the same order on every run. */
    double cnt = (double)N * (double)P;
    for (int c = c0; c < c1; c++) {
        double sum = 0, sq = 0;
        for (int n = 0; n < N; n++) {
            const float *px = x + ((size_t)n * C + c) * P;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (size_t i = 0; i < P; i++)
                acc += px[i];
            sum += acc;
        }
        float mf = (float)(sum / cnt);
        for (int n = 0; n < N; n++) {
            const float *px = x + ((size_t)n * C + c) * P;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (size_t i = 0; i < P; i++)
                acc += (px[i] - mf) * (px[i] - mf);
            sq += acc;
        }
        float r = (float)(1.0 / sqrt(sq / cnt + eps));
        if (rstd)
            rstd[c] = r;
        if (!xhat)
            continue;
        for (int n = 0; n < N; n++) {
            const float *px = x + ((size_t)n * C + c) * P;
            float *py = xhat + ((size_t)n * C + c) * P;
            for (size_t i = 0; i < P; i++)
                py[i] = (px[i] - mf) * r;
        }
    }
}

void mk_bn_dx_channels(float *dx, const float *dy, const float *xhat, const float *rstd, int N, int C, size_t P,
                       int c0, int c1)
{
    double cnt = (double)N * (double)P;
    for (int c = c0; c < c1; c++) {
        double sg = 0, sgx = 0;
        for (int n = 0; n < N; n++) {
            const float *pg = dy + ((size_t)n * C + c) * P, *px = xhat + ((size_t)n * C + c) * P;
            float a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
            for (size_t i = 0; i < P; i++) {
                a += pg[i];
                b += pg[i] * px[i];
            }
            sg += a, sgx += b;
        }
        const float mg = (float)(sg / cnt), mgx = (float)(sgx / cnt), r = rstd[c];
        for (int n = 0; n < N; n++) {
            const float *pg = dy + ((size_t)n * C + c) * P, *px = xhat + ((size_t)n * C + c) * P;
            float *pd = dx + ((size_t)n * C + c) * P;
#pragma omp simd
            for (size_t i = 0; i < P; i++)
                pd[i] = (pg[i] - mg - px[i] * mgx) * r;
        }
    }
}
