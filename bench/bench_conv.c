/*
 * bench_conv.c - how close the conv kernels come to the machine's sgemm rate.
 *
 * Measures, in one run: cblas_sgemm on square matrices (the ceiling), then
 * mk_conv2d, mk_conv2d_dx and mk_conv2d_dw at the layers of the Conv-4
 * Omniglot network (3x3 kernels, pad 1, stride 1, 64 filters) for batches of
 * 5 and 75, and finally naive (_ref) against fast on one small layer.
 * Every time is the median of --reps runs after one warm-up run; a conv
 * kernel counts 2*N*OC*OH*OW*C*KH*KW flops. Each rate is compared with two
 * sgemm rates: that of the single product [OC, C*KH*KW] x [C*KH*KW, N*OH*OW]
 * the batch lowers to (what im2col, chunking and scatter cost on top of BLAS
 * at that shape), and that of a large square sgemm, timed before and after
 * the table, the faster of the two kept, so that a busy machine makes the
 * ratio pessimistic rather than flattering.
 *
 *     bench_conv [--reps N] [--threads N] [--size N]
 *     bench_conv --speed [--reps N] [--size N]
 *
 * --threads sets OpenBLAS's thread count (default: OpenBLAS's own choice).
 * OpenBLAS picks its kernels from the CPU it detects; the core it chose is
 * printed, and OPENBLAS_CORETYPE (e.g. SkylakeX) overrides a bad guess.
 *
 * --speed prints, instead, the rows of bench/scripts/speed.sh (issue 11) as
 * machine-readable lines: the sgemm rate (--size, default 1024) on 2
 * OpenBLAS threads, before and after the rest; forward, grad wrt input and
 * grad wrt weights of every Conv-4 layer shape, max-pool (stride 1) and
 * stride-2, batches 20 and 400, on ONE thread (OpenBLAS 1, the kernel's own
 * chunks 1), as bench/torch_conv.py times PyTorch's:
 *
 *     SGEMM when=before n=1024 threads=2 ms=... gflops=...
 *     CONV net=maxpool n=20 c=1 hw=28 oc=64 stride=1 kernel=fwd ms=... gflops=...
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/sys.h"
#include "kernels/kernels.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static float *alloc_random(size_t n, unsigned *state)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        p[i] = (float)(*state >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
    return p;
}

enum kernel { FWD, DX, DW, FWD_REF, DX_REF, DW_REF };
static const char *kernel_name[] = {"conv2d", "conv2d_dx", "conv2d_dw",
                                    "conv2d_ref", "conv2d_dx_ref", "conv2d_dw_ref"};

typedef struct bufs {
    float *x, *w, *y, *dx, *dy, *dw, *scratch;
} bufs;

static void run_kernel(enum kernel k, bufs *b, const mk_conv *cv)
{
    switch (k) {
    case FWD: mk_conv2d(b->y, b->x, b->w, cv, b->scratch); break;
    case DX: mk_conv2d_dx(b->dx, b->dy, b->w, cv, b->scratch); break;
    case DW: mk_conv2d_dw(b->dw, b->x, b->dy, cv, b->scratch); break;
    case FWD_REF: mk_conv2d_ref(b->y, b->x, b->w, cv); break;
    case DX_REF: mk_conv2d_dx_ref(b->dx, b->dy, b->w, cv); break;
    case DW_REF: mk_conv2d_dw_ref(b->dw, b->x, b->dy, cv); break;
    }
}

/* Median seconds of one kernel call over `reps` timed calls. */
static double time_kernel(enum kernel k, const mk_conv *cv, int reps)
{
    unsigned seed = 42;
    size_t nx = (size_t)cv->N * cv->C * cv->H * cv->W, nw = (size_t)cv->OC * cv->C * cv->KH * cv->KW;
    size_t ny = (size_t)cv->N * cv->OC * cv->OH * cv->OW;
    bufs b = {alloc_random(nx, &seed),  alloc_random(nw, &seed), alloc_random(ny, &seed),
              alloc_random(nx, &seed),  alloc_random(ny, &seed), alloc_random(nw, &seed),
              alloc_random(mk_conv_scratch(cv), &seed)};
    double *t = malloc(sizeof(double) * (size_t)reps);
    run_kernel(k, &b, cv); /* warm-up: page faults, BLAS thread start-up */
    for (int r = 0; r < reps; r++) {
        double t0 = mela_sys_now();
        run_kernel(k, &b, cv);
        t[r] = mela_sys_now() - t0;
    }
    double m = median(t, reps);
    free(t);
    free(b.x), free(b.w), free(b.y), free(b.dx), free(b.dy), free(b.dw), free(b.scratch);
    return m;
}

static double conv_flops(const mk_conv *cv)
{
    return 2.0 * cv->N * cv->OC * cv->OH * cv->OW * cv->C * cv->KH * cv->KW;
}

/* Median seconds of C[M,N] = A[M,K] B[K,N], row-major, no transposes. */
static double sgemm_seconds(int M, int N, int K, int reps)
{
    unsigned seed = 7;
    float *A = alloc_random((size_t)M * K, &seed), *B = alloc_random((size_t)K * N, &seed);
    float *C = alloc_random((size_t)M * N, &seed);
    double *t = malloc(sizeof(double) * (size_t)reps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    for (int r = 0; r < reps; r++) {
        double t0 = mela_sys_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C,
                    N);
        t[r] = mela_sys_now() - t0;
    }
    double m = median(t, reps);
    free(A), free(B), free(C), free(t);
    return m;
}

static double sgemm_gflops(int n, int reps)
{
    double m = sgemm_seconds(n, n, n, reps), g = 2.0 * n * n * n / m * 1e-9;
    printf("sgemm %dx%dx%d: median %.2f ms, %.1f GFLOP/s\n", n, n, n, 1e3 * m, g);
    return g;
}

/* The 2-thread sgemm rate, timed before and after the --speed rows (the
 * difference says how much the machine's load moved meanwhile); OpenBLAS is
 * left on one thread. */
static void speed_sgemm(const char *when, int size, int reps)
{
    openblas_set_num_threads(2);
    double m = sgemm_seconds(size, size, size, reps);
    printf("SGEMM when=%s n=%d threads=%d ms=%.4f gflops=%.2f\n", when, size,
           openblas_get_num_threads(), 1e3 * m, 2.0 * size * size * size / m * 1e-9);
    fflush(stdout);
    openblas_set_num_threads(1);
}

/* The --speed rows: C, H (= W) and stride of the Conv-4 layers (3x3, pad 1,
 * 64 filters) of both networks, batches 20 and 400. */
static int speed_rows(int reps, int size)
{
    static const struct { const char *net; int c, hw, stride; } layers[] = {
        {"maxpool", 1, 28, 1}, {"maxpool", 64, 14, 1}, {"maxpool", 64, 7, 1}, {"maxpool", 64, 3, 1},
        {"stride2", 1, 28, 2}, {"stride2", 64, 14, 2}, {"stride2", 64, 7, 2}, {"stride2", 64, 4, 2},
    };
    static const int batches[] = {20, 400};
    static const char *short_name[] = {"fwd", "dx", "dw"};
    printf("# OpenBLAS: %s; core: %s\n", openblas_get_config(), openblas_get_corename());
    speed_sgemm("before", size, reps);
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
        for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
            mk_conv cv = {.N = batches[bi], .C = layers[li].c, .H = layers[li].hw, .W = layers[li].hw,
                          .OC = 64, .KH = 3, .KW = 3, .stride = layers[li].stride, .pad = 1,
                          .threads = 1};
            if (mk_conv_init(&cv))
                return 1;
            for (enum kernel k = FWD; k <= DW; k++) {
                double t = time_kernel(k, &cv, reps);
                printf("CONV net=%s n=%d c=%d hw=%d oc=%d stride=%d kernel=%s ms=%.4f gflops=%.2f\n",
                       layers[li].net, cv.N, cv.C, cv.H, cv.OC, cv.stride, short_name[k], 1e3 * t,
                       conv_flops(&cv) / t * 1e-9);
                fflush(stdout);
            }
        }
    speed_sgemm("after", size, reps);
    return 0;
}

int main(int argc, char **argv)
{
    int reps = 15, threads = 0, size = 1024, speed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--speed"))
            speed = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--speed] [--reps N] [--threads N] [--size N]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || size < 1) {
        fprintf(stderr, "bench_conv: --reps and --size must be positive\n");
        return 2;
    }
    if (speed)
        return speed_rows(reps, size);
    if (threads > 0)
        openblas_set_num_threads(threads);
    printf("OpenBLAS: %s\ncore: %s, threads: %d, reps: %d (median)\n\n", openblas_get_config(),
           openblas_get_corename(), openblas_get_num_threads(), reps);

    const double before = sgemm_gflops(size, reps);
    printf("\n");
    /* the table is filled first and printed after the second sgemm run */
    char table[64][128];
    int rows = 0;

    /* C, H (= W) of the four Conv-4 layers; 64 filters 3x3, pad 1, stride 1 */
    static const int layers[][2] = {{1, 28}, {64, 14}, {64, 7}, {64, 3}};
    static const int batches[] = {5, 75};
    double gflops[64];
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
        for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
            mk_conv cv = {.N = batches[bi], .C = layers[li][0], .H = layers[li][1],
                          .W = layers[li][1], .OC = 64, .KH = 3, .KW = 3, .stride = 1, .pad = 1};
            mk_conv_init(&cv);
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%dx%d -> %d", cv.C, cv.H, cv.W, cv.OC);
            /* the one product the whole batch lowers to, [OC, K] x [K, N*OH*OW] */
            const int K = cv.C * cv.KH * cv.KW, cols = cv.N * cv.OH * cv.OW;
            const double gs = 2.0 * cv.OC * K * cols / sgemm_seconds(cv.OC, cols, K, reps) * 1e-9;
            for (enum kernel k = FWD; k <= DW; k++) {
                double t = time_kernel(k, &cv, reps), g = conv_flops(&cv) / t * 1e-9;
                snprintf(table[rows], sizeof table[0],
                         "| %-2d | %-16s | %-9s | %9.3f | %7.1f | %17.0f%% |", cv.N, shape,
                         kernel_name[k], 1e3 * t, g, 100.0 * g / gs);
                gflops[rows++] = g;
            }
        }
    const double after = sgemm_gflops(size, reps);
    const double peak = before > after ? before : after;
    printf("\n| N  | layer            | kernel    | median ms | GFLOP/s | / same-shape sgemm "
           "| / sgemm %-4d |\n", size);
    printf("|----|------------------|-----------|----------:|--------:|-------------------:"
           "|------------:|\n");
    for (int r = 0; r < rows; r++)
        printf("%s %10.0f%% |\n", table[r], 100.0 * gflops[r] / peak);

    /* naive against fast on one small layer */
    mk_conv small = {.N = 5, .C = 64, .H = 7, .W = 7, .OC = 64, .KH = 3, .KW = 3, .stride = 1,
                     .pad = 1};
    mk_conv_init(&small);
    int ref_reps = reps < 3 ? reps : 3;
    printf("\nnaive vs fast, N=5 64x7x7 -> 64 (ref: median of %d):\n", ref_reps);
    for (enum kernel k = FWD; k <= DW; k++) {
        double tf = time_kernel(k, &small, reps), tr = time_kernel(k + FWD_REF, &small, ref_reps);
        printf("  %-10s fast %8.3f ms  ref %8.3f ms  ref/fast %6.1fx\n", kernel_name[k], 1e3 * tf,
               1e3 * tr, tr / tf);
    }

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("\npeak RSS: %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
    return 0;
}
