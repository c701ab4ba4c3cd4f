/*
 * kernels.h - plain numerical kernels over pointers and sizes.
 *
 * Kernels know nothing of graphs, nodes or errors: the graph layer checks
 * shapes before it calls them. Conventions (llm.c style):
 *   - outputs first, then inputs; gradients are d-prefixed; inputs are const;
 *   - every tensor is float32, contiguous, row-major (NCHW for images);
 *   - a kernel OVERWRITES its output (it never accumulates), and never writes
 *     to its inputs;
 *   - each fast kernel has a naive `_ref` twin beside it, used as the
 *     reference in tests/test_kernels.c and as documentation of the maths;
 *   - kernels are reentrant: no static buffers; scratch memory is passed in.
 */
#ifndef MELA_KERNELS_H
#define MELA_KERNELS_H

#include <stddef.h>

/* ------------------------------------------------------------------- GEMM */

/* The number of threads OpenBLAS may use inside one GEMM: set (n >= 1) and
 * read. A process-wide setting of OpenBLAS's: callers restore it. */
void mk_blas_set_threads(int n);
int mk_blas_threads(void);
/* OpenBLAS's kernel family (openblas_get_corename). */
const char *mk_blas_core(void);
/* Runs fn on jobs[0..n) (each job_size bytes): job 0 on the calling thread,
 * the others on threads of their own; a job whose thread cannot start runs
 * on the calling thread after the others are joined. Returns when all are done. */
void mk_parallel(int n, void *(*fn)(void *job), void *jobs, size_t job_size);
/* The same on threads that stay (starting a thread costs 40-60 us, a wake-up
 * a few): mk_pool_new(T) starts T - 1 workers, mk_pool_run runs jobs[0] on
 * the caller and jobs[k] on worker k (jobs beyond the workers on the caller,
 * after its own), mk_pool_free stops them. One mk_pool_run at a time per
 * pool. A NULL pool runs everything on the caller. */
typedef struct mk_pool mk_pool;
mk_pool *mk_pool_new(int nthreads);
int mk_pool_threads(const mk_pool *p);
void mk_pool_run(mk_pool *p, int n, void *(*fn)(void *job), void *jobs, size_t job_size);
void mk_pool_free(mk_pool *p);


/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op(X) = X^T when the
 * matching flag is set. lda/ldb/ldc are row strides of A, B, C as stored. */
void mk_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);
void mk_gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

/* ------------------------------------------------------------------- conv2d */

/* Geometry of a 2-D convolution (cross-correlation, as in PyTorch):
 * x[N,C,H,W] * w[OC,C,KH,KW] -> y[N,OC,OH,OW] with zero padding `pad` on all
 * four sides, OH = (H + 2 pad - KH) / stride + 1, same for OW. */
typedef struct mk_conv {
    int N, C, H, W;
    int OC, KH, KW;
    int stride, pad;
    int OH, OW;
    int threads; /* threads for the chunks of this convolution (0 or 1: the
                  * caller's alone; at most MK_MAX_THREADS). Results are the
                  * same for any count (see conv.c). */
    int own;     /* 1: mela's own kernels even where oneDNN would serve */
} mk_conv;

#define MK_MAX_THREADS 4

/* Runs fn(ctx, task, tid) for task 0..ntasks-1 on up to `threads` threads
 * (task t on thread t % threads; one thread when the work is below about
 * 4 MFLOP). Which thread runs a task never changes what it computes. */
void mk_parallel_chunks(int threads, int ntasks, double flops, void (*fn)(void *ctx, int task, int tid),
                        void *ctx);

/* oneDNN's convolutions (conv_dnnl.c), when mela is built with it: whether
 * it serves kernel `kind` (0 forward, 1 dx, 2 dw) of cv, its scratch
 * (floats), and the kernel (kind 0: out = y, a = x, b = w; 1: out = dx,
 * a = dy, b = w; 2: out = dw, a = x, b = dy), which returns 0, or -1 without
 * touching out where oneDNN does not serve (mk_conv2d* then use their own); mk_dnnl_version writes "oneDNN X.Y.Z" and returns 1, or 0 when
 * mela is built without it. */
int mk_dnnl_serves(const mk_conv *cv, int kind);
size_t mk_dnnl_scratch(const mk_conv *cv);
int mk_dnnl_conv(int kind, float *out, const float *a, const float *b, const mk_conv *cv, float *scratch);
int mk_dnnl_version(char *buf, size_t n);

/* Fills OH and OW from the rest; returns 0, or -1 if the output would be empty. */
int mk_conv_init(mk_conv *cv);
/* Floats of scratch memory the three fast conv kernels need (at most). */
size_t mk_conv_scratch(const mk_conv *cv);

/* y[N,OC,OH,OW] = conv(x[N,C,H,W], w[OC,C,KH,KW]) */
void mk_conv2d(float *y, const float *x, const float *w, const mk_conv *cv, float *scratch);
/* dx[N,C,H,W] = gradient of <y, dy> wrt x, dy[N,OC,OH,OW] (transposed conv) */
void mk_conv2d_dx(float *dx, const float *dy, const float *w, const mk_conv *cv, float *scratch);
/* dw[OC,C,KH,KW] = gradient of <y, dy> wrt w */
void mk_conv2d_dw(float *dw, const float *x, const float *dy, const mk_conv *cv, float *scratch);

void mk_conv2d_ref(float *y, const float *x, const float *w, const mk_conv *cv);
void mk_conv2d_dx_ref(float *dx, const float *dy, const float *w, const mk_conv *cv);
void mk_conv2d_dw_ref(float *dw, const float *x, const float *dy, const mk_conv *cv);

/* ----------------------------------------------------------------- resizing */

/* The nearest-pixel rule of a resize from n to N pixels (PIL's): output pixel
 * o takes the input pixel under its centre, floor((o + 1/2) n / N), computed
 * in integers as floor((2o + 1) n / 2N). mela_resize_nearest (uint8 images)
 * and `mela find` (float pictures) both index with it. */
static inline long mk_nearest_src(long o, long n, long N) { return ((2 * o + 1) * n) / (2 * N); }

/* ------------------------------------------------------------------ pooling */

/* Pooling over planes: x[P,H,W] (P = N*C) -> y[P,OH,OW], window k, stride s,
 * no padding, OH = (H - k) / s + 1. Max pooling picks the FIRST maximum of a
 * window in row-major order; the scatter/gather pair below uses that same
 * argmax, so the three agree exactly. */
void mk_maxpool(float *y, const float *x, int P, int H, int W, int k, int s);
/* dx[P,H,W] = 0 except dx[argmax of each window] += dy[window] */
void mk_maxpool_scatter(float *dx, const float *x, const float *dy, int P, int H, int W, int k,
                        int s);
/* gy[P,OH,OW] = gx[argmax of each window of x] */
void mk_maxpool_gather(float *gy, const float *x, const float *gx, int P, int H, int W, int k,
                       int s);
/* y = mean over each window */
void mk_avgpool(float *y, const float *x, int P, int H, int W, int k, int s);
/* dx[P,H,W] = sum over the windows that contain the pixel of dy / (k*k) */
void mk_avgpool_dx(float *dx, const float *dy, int P, int H, int W, int k, int s);

/* Zero padding of planes, per side: x[P,H,W] -> y[P,OH,OW] with
 * y[p,i,j] = x[p, i - top, j - left] where that is inside x, else 0; the
 * output size OH, OW fixes the bottom and right amounts. A negative top or
 * left (or a smaller OH, OW) removes rows and columns instead (a crop), so
 * the same kernel is its own adjoint with the amounts negated. */
void mk_pad2d(float *y, const float *x, int P, int H, int W, int top, int left, int OH, int OW);

void mk_maxpool_ref(float *y, const float *x, int P, int H, int W, int k, int s);
void mk_maxpool_scatter_ref(float *dx, const float *x, const float *dy, int P, int H, int W, int k,
                            int s);
void mk_maxpool_gather_ref(float *gy, const float *x, const float *gx, int P, int H, int W, int k,
                           int s);
void mk_avgpool_ref(float *y, const float *x, int P, int H, int W, int k, int s);
void mk_avgpool_dx_ref(float *dx, const float *dy, int P, int H, int W, int k, int s);
void mk_pad2d_ref(float *y, const float *x, int P, int H, int W, int top, int left, int OH, int OW);

/* -------------------------------------------------------------- elementwise */

/* Broadcasting is described by 4-D shapes and element strides: a stride of 0
 * repeats an operand along that axis. `shape` is the output's 4-D shape. */
enum mk_binop { MK_ADD, MK_SUB, MK_MUL, MK_DIV };
void mk_binary(enum mk_binop op, float *y, const float *a, const long astr[4], const float *b,
               const long bstr[4], const int shape[4]);
void mk_binary_ref(enum mk_binop op, float *y, const float *a, const long astr[4],
                   const float *b, const long bstr[4], const int shape[4]);
/* y[reduced] = sum of x over the axes where ystr is 0; xshape is x's 4-D shape
 * and ystr the output's strides as seen from x's index space. */
void mk_sum_to(float *y, size_t ny, const float *x, const int xshape[4], const long ystr[4]);
/* ... with the outputs split over up to `threads` threads (the same bits:
 * each output is summed in the same order by one thread). */
void mk_sum_to_threads(float *y, size_t ny, const float *x, const int xshape[4], const long ystr[4],
                       int threads);
/* Below this many elements an elementwise op or reduction stays on one thread. */
#define MK_PAR_MIN_ELEMENTS (1u << 17)
void mk_sum_to_ref(float *y, size_t ny, const float *x, const int xshape[4], const long ystr[4]);

/* Batch normalisation with batch statistics over x[N, C, P] (P = H*W, or 1
 * for (N, C)): per channel the mean m and biased variance v over N*P values
 * (accumulated in double), rstd[c] = 1 / sqrt(v + eps); xhat = (x - m) rstd
 * (xhat may be NULL: statistics only). */
void mk_bn_normalize(float *xhat, float *rstd, const float *x, int N, int C, size_t P, float eps);
/* ... channels c0..c1-1 only (channels are independent: threads may split them). */
void mk_bn_normalize_channels(float *xhat, float *rstd, const float *x, int N, int C, size_t P, float eps,
                              int c0, int c1);
/* The gradient of xhat = bn_normalize(x) for channels c0..c1-1 of [N, C, P]:
 * dx = rstd (dy - mean(dy) - xhat mean(dy xhat)), the means per channel
 * over N*P values (accumulated in double). */
void mk_bn_dx_channels(float *dx, const float *dy, const float *xhat, const float *rstd, int N, int C, size_t P,
                       int c0, int c1);

/* y[i] = f(x[i]) for the unary functions of the graph; `a` is the slope of
 * leaky relu. softplus is log(1 + e^x) without overflow. sign(0) = 0. */
enum mk_unop {
    MK_RELU, MK_LEAKY, MK_SIGMOID, MK_TANH, MK_EXP, MK_LOG, MK_ABS, MK_SIGN, MK_SQUARE, MK_SQRT,
    MK_SOFTPLUS, MK_SCALE, MK_ADDS
};
void mk_unary(enum mk_unop op, float *y, const float *x, size_t n, float a);
/* dx = dy * (x > 0 ? 1 : slope): relu (slope 0) and leaky relu derivative. */
void mk_relu_grad(float *dx, const float *x, const float *dy, size_t n, float slope);
/* y[i, .] = x[i, .] - logsumexp(x[i, .]) for rows of length C. */
void mk_log_softmax(float *y, const float *x, size_t rows, int C);
/* y[i, c] = (c == labels[i]); returns -1 (and the bad row) when a label is not
 * an integer in [0, C). */
int mk_one_hot(float *y, const float *labels, size_t rows, int C, size_t *bad_row);
/* y[i] = 1 if the first largest x[i, .] is at labels[i], else 0. */
void mk_argmax_eq(float *y, const float *x, const float *labels, size_t rows, int C);

#endif
