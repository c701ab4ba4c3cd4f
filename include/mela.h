/*
 * mela.h - the engine of mela: errors, random numbers, parameter layouts,
 * the differentiable graph, gradients of any order and compiled plans.
 *
 * The whole life of a computation:
 *
 *     mela_layout *L = mela_layout_new();            // named views of one flat buffer
 *     int iw = mela_layout_add(L, "fc.weight", MELA_SHAPE(1, 3));
 *     float *theta = calloc(mela_layout_size(L), sizeof(float));
 *
 *     mela_graph *g = mela_graph_new();
 *     mela_node x = mela_input(g, "x", MELA_SHAPE(8, 3));
 *     mela_node t = mela_input(g, "t", MELA_SHAPE(8, 1));
 *     mela_node w = mela_param(g, L, iw);
 *     mela_node loss = mela_mse(g, mela_matmul(g, x, w, 0, 1), t);
 *     mela_node dw;
 *     mela_grad(g, loss, MELA_NONE, 1, &w, &dw);      // dw is a node too
 *     if (mela_graph_error(g)) puts(mela_graph_error(g));
 *
 *     mela_node outs[2] = {loss, dw};
 *     mela_plan *p = mela_plan_new(g, 2, outs);       // compile once
 *     mela_exec *e = mela_exec_new(p);                // one per thread
 *     mela_exec_bind_params(e, theta);
 *     mela_exec_bind(e, x, xdata); mela_exec_bind(e, t, tdata);
 *     mela_exec_run(e);                               // run many times
 *     const float *grad = mela_exec_value(e, dw);
 *
 * Errors. Nothing here exits or aborts on a caller's mistake. Graph builders
 * are "sticky": a builder given MELA_NONE, or given shapes that do not fit,
 * returns MELA_NONE and the graph keeps the first message, which names the op
 * and the shapes (mela_graph_error). Other functions return NULL or -1 and
 * leave a message for mela_last_error(). The library has no asserts: its own
 * invariants are checked by the test suite (under ASan and UBSan).
 *
 * Memory. Every _new has a _free that accepts NULL. Pointers returned by
 * getters belong to the object they came from.
 */
#ifndef MELA_H
#define MELA_H

#include <stddef.h>
#include <stdint.h>

/* libmela.so exports exactly what the public headers declare: the library is
 * compiled with -fvisibility=hidden and these headers make their own
 * declarations visible. Every public name begins with mela_ (or MELA_). */
#if defined(__GNUC__)
#define MELA_EXPORT_BEGIN _Pragma("GCC visibility push(default)")
#define MELA_EXPORT_END _Pragma("GCC visibility pop")
#else
#define MELA_EXPORT_BEGIN
#define MELA_EXPORT_END
#endif

#ifdef __cplusplus
extern "C" {
#endif
MELA_EXPORT_BEGIN

/* The version as "MAJOR.MINOR.PATCH". */
const char *mela_version(void);

/*
 * Threads. mela never changes a process-wide thread setting for longer than
 * one of its own calls. What it does:
 *   - An executor (mela_exec) runs on the calling thread; its big ops may
 *     use more threads, mela_exec_set_threads(e, n) (1 to 4, default 1):
 *     convolutions split their batch in chunks fixed by the shape, and
 *     elementwise ops, batch norm, pooling and sums split their outputs.
 *     Results are the same bits for any count.
 *   - The learners and runs (mela_learn.h) run the tasks of a batch on
 *     `threads` threads of their own (a setting of the run, or an argument),
 *     each with its own executor, and give spare threads to the convolutions
 *     of their executors. Results never depend on the count.
 *   - While a learner or a run computes on several threads, each matrix
 *     product stays on one thread: OpenBLAS's thread count, a process-wide
 *     setting of OpenBLAS's own, is set to 1 for the call and set back to
 *     what it was before the call returns. A program that calls OpenBLAS
 *     from other threads at the same time sees that count meanwhile.
 *   - The engine alone (graphs, plans, executors) never touches OpenBLAS's
 *     setting: its products use whatever the caller has set.
 */
/* Runs fn on jobs[0..n) (each job_size bytes apart): job 0 on the calling
 * thread, the others on threads of their own; a job whose thread cannot
 * start runs on the calling thread once the others are joined. Returns when
 * every job is done. The learners run tasks and episodes with it. */
void mela_parallel(int n, void *(*fn)(void *job), void *jobs, size_t job_size);
/* The CPU kernel family OpenBLAS chose ("SkylakeX", "Haswell", "Prescott"...).
 * OpenBLAS 0.3.21 falls back to "Prescott" (SSE3, several times slower) on
 * CPUs it does not recognise, such as virtual machines that hide the model;
 * OPENBLAS_CORETYPE, read when the library loads, overrides its choice. */
const char *mela_blas_core(void);
/* What runs the convolutions: writes "oneDNN X.Y.Z" and returns 1 when mela
 * is built with oneDNN (its JIT kernels serve the shapes where they win,
 * mela's own im2col + sgemm kernels the rest), else "mela's im2col + sgemm"
 * and returns 0. Results depend on it, never on the thread count. */
int mela_conv_backend(char *buf, size_t n);

/* ------------------------------------------------------------------ errors */

/* The message of the last failure in this thread ("" when none). */
const char *mela_last_error(void);
/* Records a printf-style message as this thread's last error; returns -1 so
 * that library code can write `return mela_set_error(...)`. */
int mela_set_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void mela_clear_error(void);

/* ---------------------------------------------------------- random numbers */

/* xoshiro256** seeded through splitmix64. A generator is a plain value: copy
 * it to fork a stream; there is no global generator anywhere in mela. */
typedef struct mela_rng {
    uint64_t s[4];
} mela_rng;

/* A generator from one seed. */
mela_rng mela_rng_new(uint64_t seed);
/* An independent stream that is a pure function of (seed, a, b): episode i of
 * split s under seed k is mela_rng_derive(k, s, i), whatever the thread. */
mela_rng mela_rng_derive(uint64_t seed, uint64_t a, uint64_t b);
uint64_t mela_rng_u64(mela_rng *r);
/* Uniform integer in [0, n), without modulo bias; n > 0. */
uint32_t mela_rng_below(mela_rng *r, uint32_t n);
/* Uniform float in [0, 1), 24 random bits. */
float mela_rng_uniform(mela_rng *r);
/* Standard normal (Box-Muller on doubles). */
float mela_rng_normal(mela_rng *r);
/* Fisher-Yates shuffle of a[0..n). */
void mela_rng_shuffle(mela_rng *r, int *a, int n);

/* ------------------------------------------------------------------ shapes */

/* Up to four dimensions, row-major, NCHW for images. A scalar is shape (1). */
#define MELA_MAX_DIMS 4
typedef struct mela_shape {
    int nd;
    int d[MELA_MAX_DIMS];
} mela_shape;

/* MELA_SHAPE(75, 1, 28, 28) builds a shape from its sizes. */
#define MELA_SHAPE(...)                                                         \
    mela_shape_make((int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (int[]){__VA_ARGS__})
mela_shape mela_shape_make(int nd, const int *d);
size_t mela_shape_numel(mela_shape s);
int mela_shape_equal(mela_shape a, mela_shape b);
/* Writes "[75, 64, 28, 28]" into buf (always terminated); returns buf. */
char *mela_shape_str(mela_shape s, char *buf, size_t n);

/* -------------------------------------------------------- parameter layout */

/* A layout names views of one flat float buffer: "conv1.weight" is shape
 * (64, 1, 3, 3) at some offset. Parameters, their gradients, optimiser state
 * and adapted ("fast") weights are separate buffers of the same layout, so an
 * SGD or Adam step is one loop over mela_layout_size() floats. Views start
 * on 64-byte boundaries; the padding between them is never read by a graph. */
typedef struct mela_layout mela_layout;

mela_layout *mela_layout_new(void);
void mela_layout_free(mela_layout *L);
/* Appends a view; returns its index, or -1 (duplicate name, bad shape). */
int mela_layout_add(mela_layout *L, const char *name, mela_shape shape);
/* Index of the view called name, or -1. */
int mela_layout_find(const mela_layout *L, const char *name);
int mela_layout_count(const mela_layout *L);
/* Floats in the whole flat buffer (views and padding). */
size_t mela_layout_size(const mela_layout *L);
const char *mela_layout_name(const mela_layout *L, int i);
mela_shape mela_layout_shape(const mela_layout *L, int i);
size_t mela_layout_offset(const mela_layout *L, int i);

/* ------------------------------------------------------------------- graph */

/* A graph is an append-only list of nodes; a node is its index. Nodes only
 * refer to earlier nodes, so index order is a topological order. */
typedef struct mela_graph mela_graph;
typedef int mela_node;
#define MELA_NONE (-1)

mela_graph *mela_graph_new(void);
void mela_graph_free(mela_graph *g);
/* The first build error ("conv2d: input [5, 3, 28, 28] and weight
 * [64, 1, 3, 3] disagree on channels"), or NULL while there is none. */
const char *mela_graph_error(const mela_graph *g);
int mela_graph_count(const mela_graph *g);
mela_shape mela_node_shape(const mela_graph *g, mela_node x);
/* The op's name ("conv2d", "input", ...), for messages and dumps. */
const char *mela_node_op(const mela_graph *g, mela_node x);

/* Leaves. An input is fed at run time with mela_exec_bind. A parameter is
 * view i of layout L, read from the flat buffer given to
 * mela_exec_bind_params; all parameters of one graph share one layout, which
 * must outlive the graph. A constant is filled with one value. */
mela_node mela_input(mela_graph *g, const char *name, mela_shape shape);
mela_node mela_param(mela_graph *g, const mela_layout *L, int i);
mela_node mela_constant(mela_graph *g, mela_shape shape, float value);

/* Elementwise arithmetic with numpy broadcasting: shapes are aligned on the
 * right and a size-1 axis repeats (bias (1, C, 1, 1) over (N, C, H, W)). */
mela_node mela_add(mela_graph *g, mela_node a, mela_node b);
mela_node mela_sub(mela_graph *g, mela_node a, mela_node b);
mela_node mela_mul(mela_graph *g, mela_node a, mela_node b);
mela_node mela_div(mela_graph *g, mela_node a, mela_node b);
/* Scalar ops: x * a, x + a, -x. */
mela_node mela_scale(mela_graph *g, mela_node x, float a);
mela_node mela_add_scalar(mela_graph *g, mela_node x, float a);
mela_node mela_neg(mela_graph *g, mela_node x);

/* Unary functions. Derivatives at kinks: relu'(0) = 0, |x|'(0) = 0. */
mela_node mela_relu(mela_graph *g, mela_node x);
mela_node mela_leaky_relu(mela_graph *g, mela_node x, float slope);
mela_node mela_sigmoid(mela_graph *g, mela_node x);
mela_node mela_tanh(mela_graph *g, mela_node x);
mela_node mela_exp(mela_graph *g, mela_node x);
mela_node mela_log(mela_graph *g, mela_node x);
mela_node mela_abs(mela_graph *g, mela_node x);
mela_node mela_square(mela_graph *g, mela_node x);
mela_node mela_sqrt(mela_graph *g, mela_node x);
/* log(1 + exp(x)), computed without overflow. */
mela_node mela_softplus(mela_graph *g, mela_node x);

/* Reductions. sum_to sums x down to `shape` (every axis where shape has
 * size 1, numpy-aligned); broadcast_to is its adjoint. The per-axis forms
 * keep the reduced axis with size 1, so the result broadcasts back. */
mela_node mela_sum_to(mela_graph *g, mela_node x, mela_shape shape);
mela_node mela_broadcast_to(mela_graph *g, mela_node x, mela_shape shape);
mela_node mela_sum(mela_graph *g, mela_node x);  /* -> (1) */
mela_node mela_mean(mela_graph *g, mela_node x); /* -> (1) */
mela_node mela_sum_axis(mela_graph *g, mela_node x, int axis);
mela_node mela_mean_axis(mela_graph *g, mela_node x, int axis);

/* Shape ops. reshape keeps the element count; flatten gives (N, rest).
 * concat and slice work along axis 0 (the batch). */
mela_node mela_reshape(mela_graph *g, mela_node x, mela_shape shape);
mela_node mela_flatten(mela_graph *g, mela_node x);
mela_node mela_concat(mela_graph *g, mela_node a, mela_node b);
mela_node mela_slice(mela_graph *g, mela_node x, int start, int len);

/* Linear algebra on 2-D tensors: op(a) op(b) with op(x) = x^T when the flag
 * is set. linear: x (N, in) times w (out, in) transposed, plus b (out) when
 * b is not MELA_NONE, as torch.nn.functional.linear. */
mela_node mela_matmul(mela_graph *g, mela_node a, mela_node b, int trans_a, int trans_b);
mela_node mela_linear(mela_graph *g, mela_node x, mela_node w, mela_node b);

/* Convolution and pooling on NCHW. conv2d: x (N, C, H, W), w (OC, C, KH,
 * KW), optional bias b (OC), zero padding `pad` on every side. */
mela_node mela_conv2d(mela_graph *g, mela_node x, mela_node w, mela_node b, int stride, int pad);
mela_node mela_maxpool2d(mela_graph *g, mela_node x, int k, int stride);
mela_node mela_avgpool2d(mela_graph *g, mela_node x, int k, int stride);
/* Zero padding of x (N, C, H, W): `top` rows above, `bottom` below, `left`
 * and `right` columns; a negative amount removes that many instead (a crop).
 * The result is (N, C, H + top + bottom, W + left + right) and must not be
 * empty. Uneven padding: TensorFlow's 'SAME' convolution of stride 2 on an
 * even side pads 0 before and 1 after, pad2d(x, 0, 1, 0, 1) then conv2d
 * with pad 0. The gradient of a pad is the crop, and of a crop the pad. */
mela_node mela_pad2d(mela_graph *g, mela_node x, int top, int bottom, int left, int right);
/* (N, C, H, W) -> (N, C) */
mela_node mela_global_avgpool(mela_graph *g, mela_node x);
/* Batch normalisation with the statistics of this batch (training mode, and
 * meta-test mode as MAML uses it): over N for (N, C), over N, H, W for
 * (N, C, H, W); the biased variance; then gamma * xhat + beta per channel
 * (gamma, beta of shape (C); either may be MELA_NONE). */
mela_node mela_batchnorm(mela_graph *g, mela_node x, mela_node gamma, mela_node beta, float eps);

/* Classification. Rows of a (N, C) matrix. Labels are a (N) tensor of
 * class indices stored as floats (0.0, 1.0, ...); a label out of range is
 * a run-time error. Losses are means over the batch, as in PyTorch. */
mela_node mela_log_softmax(mela_graph *g, mela_node x);
mela_node mela_softmax(mela_graph *g, mela_node x);
mela_node mela_one_hot(mela_graph *g, mela_node labels, int classes);
mela_node mela_cross_entropy(mela_graph *g, mela_node logits, mela_node labels);
/* mean of softplus(z) - z * t: binary cross-entropy of sigmoid(z) with t. */
mela_node mela_bce_with_logits(mela_graph *g, mela_node logits, mela_node targets);
mela_node mela_mse(mela_graph *g, mela_node a, mela_node b);
/* Fraction of rows whose largest logit is at the label (not differentiable). */
mela_node mela_accuracy(mela_graph *g, mela_node logits, mela_node labels);

/* Between two sets of vectors a (n, d) and b (m, d): the (n, m) matrix of
 * squared euclidean distances, and of cosine similarities (eps guards the
 * norms: a / sqrt(|a|^2 + eps)). */
mela_node mela_sqdist(mela_graph *g, mela_node a, mela_node b);
mela_node mela_cosine(mela_graph *g, mela_node a, mela_node b, float eps);

/* Identity forward, zero gradient: the node is a constant to grad. */
mela_node mela_stop_gradient(mela_graph *g, mela_node x);

/* -------------------------------------------------------------- gradients */

/* Appends to g the nodes of the gradient of y with respect to wrt[0..n) and
 * stores them in out[0..n). The seed is the vector of the vector-Jacobian
 * product: MELA_NONE means 1 and then y must have one element; otherwise it
 * must have y's shape. The new nodes are ordinary nodes, so grad can be
 * applied to them again: a Hessian-vector product, or MAML's exact
 * meta-gradient through k inner steps, is grad of an expression of grads. A
 * wrt that y does not depend on gets a zero constant. A gradient that reaches
 * an op with no rule for that input is an error (never a silent zero).
 * Returns 0, or -1 with mela_graph_error set (and out[] MELA_NONE). */
int mela_grad(mela_graph *g, mela_node y, mela_node seed, int n, const mela_node *wrt,
              mela_node *out);

/* ------------------------------------------------------------------ plans */

/* A plan is the compiled schedule of a graph for a set of outputs: only the
 * nodes they need, in order, each intermediate buffer given an offset in one
 * arena so that buffers are reused once their last reader has run. The plan
 * is read-only once built and refers to g, which must outlive it (nodes may
 * still be appended to g). */
typedef struct mela_plan mela_plan;

mela_plan *mela_plan_new(const mela_graph *g, int n, const mela_node *outputs);
void mela_plan_free(mela_plan *p);
/* Steps (ops run) and bytes of the arena of one executor. */
int mela_plan_steps(const mela_plan *p);
size_t mela_plan_arena_bytes(const mela_plan *p);
/* Bytes the same steps would need with no buffer reuse (for comparison). */
size_t mela_plan_naive_bytes(const mela_plan *p);

/* An executor holds one arena and scratch for a plan: one per thread. All
 * memory is allocated by mela_exec_new; mela_exec_run allocates nothing of
 * its own (oneDNN, where it runs a convolution, makes and frees small objects
 * per call). */
typedef struct mela_exec mela_exec;

mela_exec *mela_exec_new(const mela_plan *p);
void mela_exec_free(mela_exec *e);
/* Points input x at caller-owned data of x's shape (not copied: it must stay
 * valid while runs use it). */
int mela_exec_bind(mela_exec *e, mela_node x, const float *data);
/* Points every parameter at its view of the caller's flat buffer. */
void mela_exec_bind_params(mela_exec *e, const float *flat);
/* Runs the plan. Returns 0, or -1 (an input or the parameters not bound, a
 * label out of range) with mela_last_error set. */
int mela_exec_run(mela_exec *e);
/* Threads for the chunks of each convolution this executor runs (clamped to
 * 1..4; default 1). The same bits for any count. */
void mela_exec_set_threads(mela_exec *e, int n);
int mela_exec_threads(const mela_exec *e);
/* Profiling: when on, each run adds the seconds spent in every op type.
 * mela_exec_profile copies them (per op type, mela_op_count() entries; the
 * name of type i is mela_op_name(i)) and the number of steps run. */
void mela_exec_set_profiling(mela_exec *e, int on);
void mela_exec_profile(const mela_exec *e, double *seconds, long *calls);
int mela_op_count(void);
const char *mela_op_name(int i);

/* The value of an output of the plan (or of an input/parameter it read);
 * valid until the next run. NULL for a node the plan does not keep. */
const float *mela_exec_value(const mela_exec *e, mela_node x);

MELA_EXPORT_END
#ifdef __cplusplus
}
#endif
#endif /* MELA_H */
