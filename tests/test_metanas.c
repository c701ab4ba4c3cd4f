/* test_metanas.c - MetaNAS (Elsken et al. 2020): the candidate ops of a cell
 * against naive loops, their first and second derivatives against finite
 * differences, the search network at a one-hot alpha equal to the discrete
 * network, the exact meta-gradient of the mixture weights (alpha) through
 * MAML's inner loop against finite differences, a search on a synthetic task
 * only one candidate can solve (that candidate must win), and the derived
 * model-definition file read back and accepted as a run's model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "gradcheck.h"
#include "mela_io.h"
#include "mela_learn.h"
#include "mela_nn.h"

/* ------------------------------------------------- the ops against loops */

enum { N = 2, C = 3, H = 6 };

static void bn_naive(double *y, int n, int c, int hw)
{
    for (int ch = 0; ch < c; ch++) {
        double m = 0, v = 0;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++)
                m += y[((size_t)i * c + ch) * hw + p];
        m /= n * hw;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++)
                v += pow(y[((size_t)i * c + ch) * hw + p] - m, 2);
        v /= n * hw;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                double *q = &y[((size_t)i * c + ch) * hw + p];
                *q = (*q - m) / sqrt(v + 1e-5);
            }
    }
}

/* x at (n, c, h, w), 0 outside the image */
static double at(const float *x, int n, int c, int h, int w)
{
    return h < 0 || h >= H || w < 0 || w >= H ? 0.0 : x[(((size_t)n * C + c) * H + h) * H + w];
}

/* The op by its definition in mela_nn.h. */
static void op_naive(int op, const float *x, const float *w0, const float *w1, int smooth, double *y)
{
    float a[N * C * H * H];
    for (int i = 0; i < N * C * H * H; i++)
        a[i] = op >= MELA_OP_CONV3 ? (smooth ? tanhf(x[i]) : fmaxf(x[i], 0)) : x[i];
    int k = op == MELA_OP_CONV5 ? 5 : 3, d = op == MELA_OP_DIL3 ? 2 : 1, pad = d * (k - 1) / 2;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C; o++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < H; w++) {
                    double s = op == MELA_OP_MAX3 ? -INFINITY : 0;
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++) {
                            int hh = h + d * i - pad, ww = w + d * j - pad;
                            if (op == MELA_OP_AVG3)
                                s += at(x, n, o, hh, ww) / 9;
                            else if (op == MELA_OP_MAX3)
                                s = fmax(s, at(x, n, o, hh, ww));
                            else if (op == MELA_OP_SEP3) /* depthwise then pointwise */
                                for (int c = 0; c < C; c++)
                                    s += w1[o * C + c] * w0[(c * 3 + i) * 3 + j] * at(a, n, c, hh, ww);
                            else
                                for (int c = 0; c < C; c++)
                                    s += w0[((o * C + c) * k + i) * k + j] * at(a, n, c, hh, ww);
                        }
                    y[(((size_t)n * C + o) * H + h) * H + w] = op == MELA_OP_SKIP ? at(x, n, o, h, w) : s;
                }
    if (op != MELA_OP_SKIP)
        bn_naive(y, N, C, H * H);
}

static void test_ops_forward(void)
{
    mela_rng r = mela_rng_new(5);
    float x[N * C * H * H], w0[C * C * 25], w1[C * C];
    for (size_t i = 0; i < sizeof x / sizeof *x; i++)
        x[i] = mela_rng_normal(&r);
    for (size_t i = 0; i < sizeof w0 / sizeof *w0; i++)
        w0[i] = mela_rng_normal(&r) * 0.3f;
    for (size_t i = 0; i < sizeof w1 / sizeof *w1; i++)
        w1[i] = mela_rng_normal(&r) * 0.5f;
    for (int op = MELA_OP_SKIP; op < MELA_CELL_OPS; op++)
        for (int smooth = 0; smooth < 2; smooth++) {
            int k = op == MELA_OP_CONV5 ? 5 : 3;
            mela_graph *g = mela_graph_new();
            mela_node xi = mela_input(g, "x", MELA_SHAPE(N, C, H, H)), w[2];
            w[0] = mela_input(g, "w0", op == MELA_OP_SEP3 ? MELA_SHAPE(1, C, 3, 3) : MELA_SHAPE(C, C, k, k));
            w[1] = mela_input(g, "w1", MELA_SHAPE(C, C, 1, 1));
            mela_node y = mela_cell_op(g, op, w, xi, smooth);
            CHECK(!mela_graph_error(g), "%s: %s", mela_cell_op_name(op), mela_graph_error(g));
            mela_plan *p = mela_plan_new(g, 1, &y);
            mela_exec *e = mela_exec_new(p);
            mela_exec_bind(e, xi, x), mela_exec_bind(e, w[0], w0), mela_exec_bind(e, w[1], w1);
            CHECK(mela_exec_run(e) == 0, "%s: %s", mela_cell_op_name(op), mela_last_error());
            double want[N * C * H * H];
            float wantf[N * C * H * H];
            op_naive(op, x, w0, w1, smooth, want);
            for (int i = 0; i < N * C * H * H; i++)
                wantf[i] = (float)want[i];
            char what[64];
            snprintf(what, sizeof what, "%s (smooth %d) against its loops", mela_cell_op_name(op), smooth);
            CHECK_ARRAY(mela_exec_value(e, y), wantf, (size_t)N * C * H * H, 2e-5, 2e-4, what);
            mela_exec_free(e), mela_plan_free(p), mela_graph_free(g);
        }
    mela_graph *g = mela_graph_new();
    CHECK(mela_cell_op(g, MELA_OP_ZERO, NULL, mela_input(g, "x", MELA_SHAPE(1, 1, 3, 3)), 0) == MELA_NONE,
          "zero adds no node");
    mela_graph_free(g);
}

/* ----------------------------------------- derivatives, first and second */

static mela_node gc_op(mela_graph *g, const mela_node *x, const mela_node *fixed, void *ctx)
{
    (void)fixed;
    int op = *(const int *)ctx;
    return mela_cell_op(g, op, x + 1, x[0], 1);
}

static void test_ops_gradients(void)
{
    static int ops[] = {MELA_OP_AVG3, MELA_OP_MAX3, MELA_OP_CONV3, MELA_OP_CONV5, MELA_OP_DIL3, MELA_OP_SEP3};
    for (int i = 0; i < (int)(sizeof ops / sizeof *ops); i++) {
        int op = ops[i], k = op == MELA_OP_CONV5 ? 5 : 3;
        gc_spec s = {mela_cell_op_name(op), 1, {MELA_SHAPE(2, 2, 4, 4)}, .second = 1, .atol = 5e-3,
                     .rtol = 3e-2, .ctx = &ops[i]};
        if (op >= MELA_OP_CONV3) /* the weights are differentiated too */
            s.shape[s.n++] = op == MELA_OP_SEP3 ? MELA_SHAPE(1, 2, 3, 3) : MELA_SHAPE(2, 2, k, k);
        if (op == MELA_OP_SEP3)
            s.shape[s.n++] = MELA_SHAPE(2, 2, 1, 1);
        int ok = gradcheck(gc_op, &s, 700 + i);
        printf("%-8s first and second order %s\n", s.name, ok ? "ok" : "FAILED");
    }
}

/* ------------------------------------------------------- search networks */

/* Logits of model m with weights theta on x (n images). */
static void logits(const mela_model *m, const float *theta, const float *x, int n, float *out)
{
    mela_graph *g = mela_graph_new();
    mela_node w[MELA_MODEL_MAX_PARAMS], xi = mela_input(g, "x", mela_model_input_shape(m, n));
    mela_model_params(m, g, w);
    mela_node y = mela_model_forward(m, g, w, xi);
    CHECK(!mela_graph_error(g), "forward: %s", mela_graph_error(g));
    mela_plan *p = mela_plan_new(g, 1, &y);
    mela_exec *e = mela_exec_new(p);
    mela_exec_bind_params(e, theta);
    mela_exec_bind(e, xi, x);
    CHECK(mela_exec_run(e) == 0, "forward: %s", mela_last_error());
    memcpy(out, mela_exec_value(e, y), mela_shape_numel(mela_node_shape(g, y)) * sizeof *out);
    mela_exec_free(e), mela_plan_free(p), mela_graph_free(g);
}

/* With alpha 30 on one op per edge the mixture is that op (softmax weight
 * 1 - 7e-13): the search network equals the discrete one, weights shared by
 * name. */
static void test_search_equals_discrete(void)
{
    mela_cellnet_spec s = {.channels = 1, .size = 8, .width = 3, .cells = 2, .nodes = 2, .stem_stride = 1,
                           .outputs = 4, .search = 1};
    mela_cellnet_spec d = s;
    d.search = 0;
    int pick[3] = {MELA_OP_DIL3, MELA_OP_ZERO, MELA_OP_SEP3};
    memcpy(d.ops, pick, sizeof pick);
    mela_model *ms = mela_cellnet_new(&s), *md = mela_cellnet_new(&d);
    CHECK(ms && md, "cellnets: %s", mela_last_error());
    if (!ms || !md)
        return;
    CHECK(mela_cellnet_spec_of(ms) && mela_cellnet_spec_of(ms)->search == 1 && !mela_cellnet_spec_of(md)->search,
          "specs kept");
    const mela_layout *Ls = mela_model_layout(ms), *Ld = mela_model_layout(md);
    float *ts = calloc(mela_model_size(ms), sizeof *ts), *td = calloc(mela_model_size(md), sizeof *td);
    mela_rng r = mela_rng_new(3);
    mela_model_init(ms, ts, &r);
    int a = mela_layout_find(Ls, "alpha");
    CHECK(a >= 0 && mela_layout_shape(Ls, a).d[0] == 3 && mela_layout_shape(Ls, a).d[1] == MELA_CELL_OPS,
          "alpha is (edges, candidates)");
    float *alpha = ts + mela_layout_offset(Ls, a);
    for (int e = 0; e < 3; e++)
        for (int k = 0; k < MELA_CELL_OPS; k++)
            alpha[e * MELA_CELL_OPS + k] = k == pick[e] ? 30.0f : 0.0f;
    for (int i = 0; i < mela_layout_count(Ld); i++) {
        int j = mela_layout_find(Ls, mela_layout_name(Ld, i));
        CHECK(j >= 0, "view %s of the discrete net is in the search net", mela_layout_name(Ld, i));
        if (j >= 0)
            memcpy(td + mela_layout_offset(Ld, i), ts + mela_layout_offset(Ls, j),
                   mela_shape_numel(mela_layout_shape(Ld, i)) * sizeof *td);
    }
    float x[6 * 64], ys[6 * 4], yd[6 * 4];
    for (int i = 0; i < 6 * 64; i++)
        x[i] = mela_rng_normal(&r);
    logits(ms, ts, x, 6, ys);
    logits(md, td, x, 6, yd);
    CHECK_ARRAY(ys, yd, 24, 1e-4, 1e-3, "search network at one-hot alpha vs the discrete network");
    mela_cellnet_spec got;
    float wgt[3];
    CHECK(mela_cellnet_derive(&s, alpha, &got, wgt) == 0, "derive: %s", mela_last_error());
    /* state 1 keeps its one edge; state 2 keeps 2 edges, but edge 1 is all zero-op... its
     * strongest non-zero op has weight ~0 yet it is one of the two inputs of state 2 */
    CHECK(got.ops[0] == MELA_OP_DIL3 && got.ops[2] == MELA_OP_SEP3 && got.search == 0,
          "derive picks the strongest ops (%d %d %d)", got.ops[0], got.ops[1], got.ops[2]);
    CHECK(wgt[0] > 0.99f && wgt[2] > 0.99f && wgt[1] < 1e-6f, "derive's weights %g %g %g", wgt[0], wgt[1], wgt[2]);
    free(ts), free(td);
    mela_model_free(ms), mela_model_free(md);
}

/* The exact meta-gradient of the query loss after 2 MAML steps with respect
 * to alpha (and some weights) against central differences of that loss;
 * candidates smooth (tanh, no max-pool). */
static void alpha_meta_grad(float T)
{
    enum { W = 3, S = 2, Q = 2, IMG = 6 };
    mela_cellnet_spec s = {.channels = 1, .size = IMG, .width = 2, .cells = 1, .nodes = 2, .stem_stride = 1,
                           .outputs = W, .search = 1, .smooth = 1, .schedule = T != 1, .no_pool = 1,
                           .candidates = ((1u << MELA_CELL_OPS) - 1) & ~(1u << MELA_OP_MAX3)};
    mela_model *m = mela_cellnet_new(&s);
    CHECK(m != NULL, "search net: %s", mela_last_error());
    mela_gbml_config c = {.learner = MELA_LEARNER_MAML, .train = {W, S, Q, 0}, .steps = 2, .test_steps = 2,
                          .inner_lr = 0.3f};
    mela_gbml *gb = mela_gbml_new(m, &c);
    c.first_order = 1;
    mela_gbml *fo = mela_gbml_new(m, &c);
    CHECK(gb && fo, "learners: %s", mela_last_error());
    if (!gb || !fo)
        return;
    const mela_layout *L = mela_gbml_layout(gb);
    size_t n = mela_layout_size(L);
    float *theta = calloc(n, sizeof *theta), *gr = calloc(n, sizeof *gr), *gf = calloc(n, sizeof *gf);
    mela_rng r = mela_rng_new(17);
    mela_gbml_init(gb, theta, &r);
    int a = mela_layout_find(L, "alpha");
    size_t off = mela_layout_offset(L, a), na = mela_shape_numel(mela_layout_shape(L, a));
    for (size_t j = 0; j < na; j++) /* away from the uniform point */
        theta[off + j] = 0.5f * T * mela_rng_normal(&r);
    int sv = mela_layout_find(L, "alpha.schedule");
    CHECK((sv >= 0) == (T != 1), "alpha.schedule only with a schedule");
    if (sv >= 0) /* temperature T, alpha learned */
        theta[mela_layout_offset(L, sv)] = T, theta[mela_layout_offset(L, sv) + 1] = 1; /* g 1 */
    float xs[W * S * IMG * IMG], xq[W * Q * IMG * IMG], ys[W * S], yq[W * Q];
    for (int i = 0; i < W * S * IMG * IMG; i++)
        xs[i] = mela_rng_normal(&r);
    for (int i = 0; i < W * Q * IMG * IMG; i++)
        xq[i] = mela_rng_normal(&r);
    for (int i = 0; i < W * S; i++)
        ys[i] = (float)(i / S);
    for (int i = 0; i < W * Q; i++)
        yq[i] = (float)(i / Q);
    mela_task t = {xs, ys, xq, yq};
    CHECK(mela_gbml_meta_grad(gb, theta, 1, &t, 1, gr, NULL, NULL) == 0, "meta-grad: %s", mela_last_error());
    mela_gbml_meta_grad(fo, theta, 1, &t, 1, gf, NULL, NULL);
    double maxdiff = 0, maxg = 0;
    for (size_t j = 0; j < na; j++) {
        float keep = theta[off + j];
        const float h = 2e-3f;
        double lp, lm;
        theta[off + j] = keep + h;
        mela_gbml_evaluate(gb, theta, &t, 0, &lp, NULL, NULL);
        theta[off + j] = keep - h;
        mela_gbml_evaluate(gb, theta, &t, 0, &lm, NULL, NULL);
        theta[off + j] = keep;
        char what[64];
        snprintf(what, sizeof what, "meta-gradient of alpha[%zu] at T = %g", j, (double)T);
        CHECK_CLOSE(gr[off + j], (lp - lm) / (2 * h), 2e-3, 3e-2, what);
        maxdiff = fmax(maxdiff, fabs(gr[off + j] - gf[off + j]));
        maxg = fmax(maxg, fabs(gr[off + j]));
    }
    CHECK(maxg > 1e-3, "alpha's meta-gradient is not zero (max %g)", maxg);
    CHECK(maxdiff > 1e-4, "first order differs from exact on alpha (max %g)", maxdiff);
    if (sv >= 0) {
        const float *gs = gr + mela_layout_offset(L, sv);
        CHECK(gs[0] == 0 && gs[1] == 0, "the schedule view has no gradient (%g %g)", (double)gs[0], (double)gs[1]);
    }
    free(theta), free(gr), free(gf);
    mela_gbml_free(gb), mela_gbml_free(fo), mela_model_free(m);
}

static void test_alpha_meta_grad(void)
{
    alpha_meta_grad(1.0f);
    alpha_meta_grad(0.3f); /* a tempered mixture, softmax(alpha / 0.3) */
}

/* Reptile moves alpha too: with 1 inner step its direction theta - phi is
 * inner_lr times the support gradient, which is MAML's meta-gradient at 0
 * steps on a task whose query set is its support set. */
static void test_reptile_moves_alpha(void)
{
    enum { W = 2, S = 3, IMG = 6 };
    mela_cellnet_spec s = {.channels = 1, .size = IMG, .width = 2, .cells = 1, .nodes = 2, .stem_stride = 1,
                           .outputs = W, .search = 1};
    mela_model *m = mela_cellnet_new(&s);
    mela_gbml_config c = {.learner = MELA_LEARNER_REPTILE, .train = {W, S, S, 0}, .steps = 1, .test_steps = 1,
                          .inner_lr = 0.25f};
    mela_gbml *rep = mela_gbml_new(m, &c);
    c.learner = MELA_LEARNER_MAML, c.steps = 0;
    mela_gbml *m0 = mela_gbml_new(m, &c);
    CHECK(rep && m0, "learners: %s", mela_last_error());
    if (!rep || !m0)
        return;
    const mela_layout *L = mela_gbml_layout(rep);
    size_t n = mela_layout_size(L);
    float *theta = calloc(n, sizeof *theta), *dr = calloc(n, sizeof *dr), *dm = calloc(n, sizeof *dm);
    mela_rng r = mela_rng_new(4);
    mela_gbml_init(rep, theta, &r);
    int a = mela_layout_find(L, "alpha");
    size_t off = mela_layout_offset(L, a), na = mela_shape_numel(mela_layout_shape(L, a));
    for (size_t j = 0; j < na; j++)
        theta[off + j] = 0.5f * mela_rng_normal(&r);
    float xs[W * S * IMG * IMG], ys[W * S];
    for (int i = 0; i < W * S * IMG * IMG; i++)
        xs[i] = mela_rng_normal(&r);
    for (int i = 0; i < W * S; i++)
        ys[i] = (float)(i / S);
    mela_task t = {xs, ys, xs, ys};
    CHECK(mela_gbml_meta_grad(rep, theta, 1, &t, 1, dr, NULL, NULL) == 0 &&
              mela_gbml_meta_grad(m0, theta, 1, &t, 1, dm, NULL, NULL) == 0, "directions: %s", mela_last_error());
    double big = 0;
    for (size_t j = 0; j < na; j++) {
        dm[off + j] *= c.inner_lr;
        big = fmax(big, fabs(dm[off + j]));
    }
    CHECK_ARRAY(dr + off, dm + off, na, 1e-6, 1e-3, "Reptile's alpha direction = inner lr x support gradient");
    CHECK(big > 1e-4, "alpha moves (%g)", big);
    free(theta), free(dr), free(dm);
    mela_gbml_free(rep), mela_gbml_free(m0), mela_model_free(m);
}

/* ------------------------------------------- MetaNAS's schedules: T, warm-up */

static void test_schedule_values(void)
{
    float T, g;
    /* 100 iterations, 50 of warm-up, to 0.05: frozen and T = 1 through 50 */
    mela_nas_schedule(1, 100, 50, 0.05f, &T, &g);
    CHECK(T == 1 && g == 0, "start of the warm-up: T %g g %g", (double)T, (double)g);
    mela_nas_schedule(50, 100, 50, 0.05f, &T, &g);
    CHECK(T == 1 && g == 0, "end of the warm-up: T %g g %g", (double)T, (double)g);
    mela_nas_schedule(51, 100, 50, 0.05f, &T, &g);
    CHECK_CLOSE(T, 1 - 0.95 / 50, 1e-6, 0, "the first annealed iteration");
    CHECK_CLOSE(g, pow(1 - 0.95 / 50, 2), 1e-6, 0, "alpha learns after the warm-up, its gradient times T^2");
    mela_nas_schedule(75, 100, 50, 0.05f, &T, &g);
    CHECK_CLOSE(T, 0.525, 1e-6, 0, "half way through the annealing: (1 + 0.05) / 2");
    CHECK_CLOSE(g, 0.525 * 0.525, 1e-6, 0, "half way: g = T^2");
    mela_nas_schedule(100, 100, 50, 0.05f, &T, &g);
    CHECK(T == 0.05f, "the last iteration: T = t_end exactly (%.9g)", (double)T);
    CHECK_CLOSE(g, 0.0025, 1e-8, 0, "the last iteration: g = 0.05^2");
    mela_nas_schedule(1, 10, 0, 0.5f, &T, &g);
    CHECK_CLOSE(T, 0.95, 1e-6, 0, "no warm-up: annealed from the first iteration");
    mela_nas_schedule(7, 10, 0, 1.0f, &T, &g);
    CHECK(T == 1 && g == 1, "t_end 1: no annealing");
    mela_nas_schedule(9, 8, 20, 0.1f, &T, &g);
    CHECK(T == 1 && g == 0, "a warm-up longer than the run: frozen, T 1");

    /* the run's side: the view exists only when asked for, and is set by iteration */
    mela_run_config rc;
    mela_run_defaults(&rc, "maml", "omniglot", 5);
    mela_run_set(&rc, "image_size", "8");
    mela_run_set(&rc, "model", "search");
    mela_run_set(&rc, "width", "2");
    mela_run_set(&rc, "depth", "1");
    mela_run_set(&rc, "iterations", "40");
    mela_learner *l = mela_learner_new(&rc, 0);
    CHECK(l && mela_layout_find(mela_learner_layout(l), "alpha.schedule") < 0,
          "no schedule view by default: %s", mela_last_error());
    mela_learner_free(l);
    CHECK(mela_run_set(&rc, "nas_temp_end", "0.05") == 0 && mela_run_set(&rc, "nas_warmup", "10") == 0 &&
              mela_run_check(&rc) == 0, "the options: %s", mela_last_error());
    CHECK(mela_run_set(&rc, "nas_temp_end", "0") == -1 && strstr(mela_last_error(), "nas_temp_end"),
          "a temperature of 0 is refused: %s", mela_last_error());
    l = mela_learner_new(&rc, 0);
    CHECK(l != NULL, "a scheduled search: %s", mela_last_error());
    if (l) {
        const mela_layout *L = mela_learner_layout(l);
        int v = mela_layout_find(L, "alpha.schedule");
        CHECK(v >= 0, "the schedule view");
        float *theta = calloc(mela_layout_size(L), sizeof *theta);
        mela_rng r = mela_rng_new(1);
        mela_learner_init(l, theta, &r);
        float *p = theta + mela_layout_offset(L, v);
        CHECK(p[0] == 1 && p[1] == 1, "init: T 1, g 1 (%g %g)", (double)p[0], (double)p[1]);
        mela_nas_set_schedule(&rc, L, theta, 10);
        CHECK(p[0] == 1 && p[1] == 0, "iteration 10: warm-up (%g %g)", (double)p[0], (double)p[1]);
        mela_nas_set_schedule(&rc, L, theta, 40);
        CHECK(p[0] == 0.05f && fabsf(p[1] - 0.0025f) < 1e-8f, "iteration 40: T_end, g T_end^2 (%g %g)",
              (double)p[0], (double)p[1]);
        free(theta);
        mela_learner_free(l);
    }
    mela_run_set(&rc, "model", "conv4");
    CHECK(mela_run_check(&rc) == -1 && strstr(mela_last_error(), "--model search"),
          "a schedule without a search network: %s", mela_last_error());
}

/* The search network's logits as a function of alpha (x[0]); the other
 * views are slices of fixed[0] (a whole theta, the schedule in it), the
 * images fixed[1]. */
static mela_node gc_tempered(mela_graph *g, const mela_node *x, const mela_node *fixed, void *ctx)
{
    const mela_model *m = ctx;
    const mela_layout *L = mela_model_layout(m);
    mela_node w[MELA_MODEL_MAX_PARAMS];
    int a = mela_layout_find(L, "alpha");
    for (int i = 0; i < mela_layout_count(L); i++) {
        mela_shape sh = mela_layout_shape(L, i);
        w[i] = i == a ? x[0]
                      : mela_reshape(g, mela_slice(g, fixed[0], (int)mela_layout_offset(L, i),
                                                   (int)mela_shape_numel(sh)), sh);
    }
    return mela_model_forward(m, g, w, fixed[1]);
}

/* The tempered mixture's first and second derivatives with respect to
 * alpha, through the whole network, against finite differences (T = 0.25;
 * smooth candidates). */
static void test_tempered_derivatives(void)
{
    mela_cellnet_spec s = {.channels = 1, .size = 6, .width = 2, .cells = 1, .nodes = 2, .stem_stride = 1,
                           .outputs = 3, .search = 1, .smooth = 1, .schedule = 1, .no_pool = 1,
                           .candidates = ((1u << MELA_CELL_OPS) - 1) & ~(1u << MELA_OP_MAX3)};
    mela_model *m = mela_cellnet_new(&s);
    CHECK(m != NULL, "search net: %s", mela_last_error());
    if (!m)
        return;
    const mela_layout *L = mela_model_layout(m);
    size_t P = mela_layout_size(L);
    float *theta = calloc(P, sizeof *theta), x[3 * 36];
    mela_rng r = mela_rng_new(9);
    mela_model_init(m, theta, &r);
    float *sched = theta + mela_layout_offset(L, mela_layout_find(L, "alpha.schedule"));
    sched[0] = 0.25f, sched[1] = 1;
    for (int i = 0; i < 3 * 36; i++)
        x[i] = mela_rng_normal(&r);
    gc_spec gs = {"tempered mixture (T 0.25)", 1, {mela_layout_shape(L, mela_layout_find(L, "alpha"))},
                  .lo = {-0.4f}, .hi = {0.4f}, .nfixed = 2,
                  .fshape = {MELA_SHAPE((int)P), MELA_SHAPE(3, 1, 6, 6)}, .fdata = {theta, x}, .second = 1,
                  .atol = 5e-3, .rtol = 3e-2, .ctx = m};
    int ok = gradcheck(gc_tempered, &gs, 31);
    printf("%s: first and second order %s\n", gs.name, ok ? "ok" : "FAILED");
    free(theta);
    mela_model_free(m);
}

/* At (T, g) = (1, 1) a network with the schedule view computes the same
 * bits as one without: the logits and MAML's meta-gradient. At g = 1/4 the
 * gradient of alpha (MAML with no inner step) is a quarter of it, every bit;
 * the others are as they were. */
static void test_schedule_identity(void)
{
    enum { W = 2, S = 2, IMG = 6 };
    mela_cellnet_spec s = {.channels = 1, .size = IMG, .width = 2, .cells = 2, .nodes = 2, .stem_stride = 1,
                           .outputs = W, .search = 1};
    mela_cellnet_spec s1 = s;
    s1.schedule = 1;
    mela_model *m0 = mela_cellnet_new(&s), *m1 = mela_cellnet_new(&s1);
    mela_gbml_config c = {.learner = MELA_LEARNER_MAML, .train = {W, S, S, 0}, .steps = 2, .test_steps = 2,
                          .inner_lr = 0.3f};
    mela_gbml *g0 = m0 ? mela_gbml_new(m0, &c) : NULL, *g1 = m1 ? mela_gbml_new(m1, &c) : NULL;
    CHECK(g0 && g1, "learners: %s", mela_last_error());
    if (!g0 || !g1)
        return;
    const mela_layout *L0 = mela_gbml_layout(g0), *L1 = mela_gbml_layout(g1);
    size_t n0 = mela_layout_size(L0), n1 = mela_layout_size(L1);
    float *t0 = calloc(n0, sizeof *t0), *t1 = calloc(n1, sizeof *t1);
    float *d0 = calloc(n0, sizeof *d0), *d1 = calloc(n1, sizeof *d1);
    mela_rng r0 = mela_rng_new(5), r1 = mela_rng_new(5);
    mela_gbml_init(g0, t0, &r0);
    mela_gbml_init(g1, t1, &r1);
    CHECK(mela_layout_count(L1) == mela_layout_count(L0) + 1 && n1 > n0, "one view more");
    int a0 = mela_layout_find(L0, "alpha");
    for (size_t j = 0; j < mela_shape_numel(mela_layout_shape(L0, a0)); j++)
        t0[mela_layout_offset(L0, a0) + j] = 0.7f * mela_rng_normal(&r0);
    int same = 1; /* theta1 = theta0 view by view by name; the schedule (1, 1) from init */
    for (int i = 0; i < mela_layout_count(L0); i++) {
        int j = mela_layout_find(L1, mela_layout_name(L0, i));
        memcpy(t1 + mela_layout_offset(L1, j), t0 + mela_layout_offset(L0, i),
               mela_shape_numel(mela_layout_shape(L0, i)) * sizeof *t0);
    }
    float xs[W * S * IMG * IMG], ys[W * S];
    for (int i = 0; i < W * S * IMG * IMG; i++)
        xs[i] = mela_rng_normal(&r1);
    for (int i = 0; i < W * S; i++)
        ys[i] = (float)(i / S);
    mela_task t = {xs, ys, xs, ys};
    float y0[W * S * W], y1[W * S * W];
    logits(m0, t0, xs, W * S, y0);
    logits(m1, t1, xs, W * S, y1);
    CHECK(!memcmp(y0, y1, sizeof y0), "logits: the same bits at T 1, g 1");
    CHECK(mela_gbml_meta_grad(g0, t0, 1, &t, 1, d0, NULL, NULL) == 0 &&
              mela_gbml_meta_grad(g1, t1, 1, &t, 1, d1, NULL, NULL) == 0, "meta-grads: %s", mela_last_error());
    for (int i = 0; i < mela_layout_count(L0); i++) {
        int j = mela_layout_find(L1, mela_layout_name(L0, i));
        same &= !memcmp(d1 + mela_layout_offset(L1, j), d0 + mela_layout_offset(L0, i),
                        mela_shape_numel(mela_layout_shape(L0, i)) * sizeof *d0);
    }
    CHECK(same, "MAML's meta-gradient: the same bits at T 1, g 1");
    c.steps = c.test_steps = 0;
    mela_gbml *z0 = mela_gbml_new(m0, &c), *z1 = mela_gbml_new(m1, &c);
    int sv = mela_layout_find(L1, "alpha.schedule"), a1 = mela_layout_find(L1, "alpha");
    t1[mela_layout_offset(L1, sv) + 1] = 0.25f;
    CHECK(z0 && z1 && mela_gbml_meta_grad(z0, t0, 1, &t, 1, d0, NULL, NULL) == 0 &&
              mela_gbml_meta_grad(z1, t1, 1, &t, 1, d1, NULL, NULL) == 0, "0-step grads: %s", mela_last_error());
    int quarter = 1, moved = 0;
    for (int i = 0; i < mela_layout_count(L0); i++) {
        int j = mela_layout_find(L1, mela_layout_name(L0, i));
        for (size_t k = 0; k < mela_shape_numel(mela_layout_shape(L0, i)); k++) {
            float want = d0[mela_layout_offset(L0, i) + k] * (j == a1 ? 0.25f : 1.0f);
            quarter &= d1[mela_layout_offset(L1, j) + k] == want;
            moved += j == a1 && want != 0;
        }
    }
    CHECK(quarter && moved > 0, "g = 1/4: alpha's gradient a quarter of it, the others the same bits");
    mela_gbml_free(z0), mela_gbml_free(z1);
    free(t0), free(t1), free(d0), free(d1);
    mela_gbml_free(g0), mela_gbml_free(g1), mela_model_free(m0), mela_model_free(m1);
}

/* Warm-up (g 0): MAML's and Reptile's meta-gradients of alpha are exactly
 * 0 (and the same bits on 1 and 3 threads), so N Adam steps leave alpha
 * bit-identical while the weights move; with g > 0 the next step moves it. */
static void test_warmup_freezes_alpha(void)
{
    enum { W = 2, S = 2, IMG = 6, B = 3 };
    mela_cellnet_spec s = {.channels = 1, .size = IMG, .width = 2, .cells = 1, .nodes = 2, .stem_stride = 1,
                           .outputs = W, .search = 1, .schedule = 1};
    mela_model *m = mela_cellnet_new(&s);
    static const int learners[2] = {MELA_LEARNER_MAML, MELA_LEARNER_REPTILE};
    for (int li = 0; m && li < 2; li++) {
        int learner = learners[li];
        mela_gbml_config c = {.learner = learner, .train = {W, S, S, 0}, .steps = 2, .test_steps = 2,
                              .inner_lr = 0.3f};
        mela_gbml *gb = mela_gbml_new(m, &c);
        CHECK(gb != NULL, "learner: %s", mela_last_error());
        if (!gb)
            continue;
        const mela_layout *L = mela_gbml_layout(gb);
        size_t n = mela_layout_size(L);
        float *theta = calloc(n, sizeof *theta), *g1 = calloc(n, sizeof *g1), *g3 = calloc(n, sizeof *g3);
        float *start = calloc(n, sizeof *start);
        mela_rng r = mela_rng_new(8);
        mela_gbml_init(gb, theta, &r);
        int a = mela_layout_find(L, "alpha"), sv = mela_layout_find(L, "alpha.schedule");
        size_t off = mela_layout_offset(L, a), na = mela_shape_numel(mela_layout_shape(L, a));
        size_t so = mela_layout_offset(L, sv), w0 = mela_layout_offset(L, 0);
        theta[so] = 0.5f, theta[so + 1] = 0; /* warm-up, at a temperature */
        memcpy(start, theta, n * sizeof *theta);
        static float xs[B][W * S * IMG * IMG], ys[B][W * S];
        mela_task t[B];
        mela_adam adam;
        mela_adam_init(&adam, n, 0.01f);
        int zero = 1, same_threads = 1;
        for (int it = 0; it < 4; it++) {
            for (int b = 0; b < B; b++) {
                for (int i = 0; i < W * S * IMG * IMG; i++)
                    xs[b][i] = mela_rng_normal(&r);
                for (int i = 0; i < W * S; i++)
                    ys[b][i] = (float)(i / S);
                t[b] = (mela_task){xs[b], ys[b], xs[b], ys[b]};
            }
            if (it == 3)
                theta[so + 1] = 0.25f; /* the warm-up is over: T^2 */
            CHECK(mela_gbml_meta_grad(gb, theta, B, t, 1, g1, NULL, NULL) == 0 &&
                      mela_gbml_meta_grad(gb, theta, B, t, 3, g3, NULL, NULL) == 0, "grads: %s", mela_last_error());
            same_threads &= !memcmp(g1, g3, n * sizeof *g1);
            for (size_t j = 0; j < na && it < 3; j++)
                zero &= g1[off + j] == 0;
            if (learner == MELA_LEARNER_REPTILE)
                mela_gbml_reptile_update(gb, theta, g1, 0.5f);
            else
                mela_adam_step(&adam, theta, g1);
            if (it == 2) {
                CHECK(!memcmp(theta + off, start + off, na * sizeof *theta) && theta[so] == 0.5f,
                      "learner %d: alpha and the schedule bit-identical after 3 warm-up steps", learner);
                CHECK(theta[w0] != start[w0], "learner %d: the weights move in the warm-up", learner);
            }
        }
        CHECK(zero, "learner %d: alpha's meta-gradient is exactly 0 in the warm-up", learner);
        CHECK(same_threads, "learner %d: the same bits on 1 and 3 threads", learner);
        double moved = 0;
        for (size_t j = 0; j < na; j++)
            moved = fmax(moved, fabs(theta[off + j] - start[off + j]));
        CHECK(moved > 1e-5, "learner %d: alpha moves after the warm-up (%g)", learner, moved);
        mela_adam_free(&adam);
        free(theta), free(g1), free(g3), free(start);
        mela_gbml_free(gb);
    }
    mela_model_free(m);
}

/* ------------------------------------------------ a search with a winner */

/* 12x12 images, nothing lit within 2 pixels of the border, 9 pixels lit:
 * class 0 a 3x3 block, class 1 nine pixels no two of which touch (not even
 * diagonally). The same pixel count, so every statistic linear in the image
 * (the stem, skip, avg3, and the global average pool after them) is the same
 * for both classes; only the 3x3 max-pool sees the difference. */
enum { IMG = 12, SHOTS = 5, QUERIES = 5 };

static void draw(mela_rng *r, int cls, float *x)
{
    memset(x, 0, IMG * IMG * sizeof *x);
    if (cls == 0) {
        int h = 2 + (int)mela_rng_below(r, IMG - 6), w = 2 + (int)mela_rng_below(r, IMG - 6);
        for (int i = 0; i < 9; i++)
            x[(h + i / 3) * IMG + w + i % 3] = 1;
        return;
    }
    for (int lit = 0; lit < 9;) {
        int h = 2 + (int)mela_rng_below(r, IMG - 4), w = 2 + (int)mela_rng_below(r, IMG - 4), free_ = 1;
        for (int dh = -1; dh <= 1; dh++)
            for (int dw = -1; dw <= 1; dw++)
                free_ &= x[(h + dh) * IMG + w + dw] == 0;
        if (free_)
            x[h * IMG + w] = 1, lit++;
    }
}

typedef struct synth_task {
    float xs[2 * SHOTS * IMG * IMG], xq[2 * QUERIES * IMG * IMG], ys[2 * SHOTS], yq[2 * QUERIES];
} synth_task;

/* Task i of a stream: which class is label 0 is drawn too. */
static mela_task make_task(synth_task *t, uint64_t seed, uint64_t i)
{
    mela_rng r = mela_rng_derive(seed, 1, i);
    int flip = (int)mela_rng_below(&r, 2);
    for (int j = 0; j < 2 * SHOTS; j++)
        t->ys[j] = (float)(j / SHOTS), draw(&r, (j / SHOTS) ^ flip, t->xs + j * IMG * IMG);
    for (int j = 0; j < 2 * QUERIES; j++)
        t->yq[j] = (float)(j % 2), draw(&r, (j % 2) ^ flip, t->xq + j * IMG * IMG);
    return (mela_task){t->xs, t->ys, t->xq, t->yq};
}

static const mela_gbml_config synth_maml = {.learner = MELA_LEARNER_MAML, .train = {2, SHOTS, QUERIES, 0},
                                            .steps = 1, .test_steps = 3, .inner_lr = 0.4f};

/* Mean accuracy of model m with weights theta on 40 new tasks (3 steps). */
static double synth_accuracy(mela_gbml *gb, const float *theta)
{
    static synth_task tk;
    double acc = 0, a1;
    for (int i = 0; i < 40; i++) {
        mela_task t = make_task(&tk, 2, (uint64_t)i);
        mela_gbml_evaluate(gb, theta, &t, 0, NULL, &a1, NULL);
        acc += a1 / 40;
    }
    return acc;
}

/* Meta-trains model m with MAML (1 exact step) for `iters` iterations of 4
 * tasks and returns the mean accuracy on 40 new tasks; theta is left trained.
 * A search with "alpha.schedule" follows mela_nas_schedule(warmup, t_end). */
static double meta_train_sched(const mela_model *m, float **theta_out, int iters, int warmup, float t_end)
{
    mela_gbml_config c = synth_maml;
    mela_gbml *gb = mela_gbml_new(m, &c);
    *theta_out = NULL;
    CHECK(gb != NULL, "learner: %s", mela_last_error());
    if (!gb)
        return 0;
    size_t n = mela_layout_size(mela_gbml_layout(gb));
    float *theta = calloc(n, sizeof *theta), *grad = calloc(n, sizeof *grad);
    mela_rng r = mela_rng_new(23);
    mela_gbml_init(gb, theta, &r);
    mela_adam adam;
    mela_adam_init(&adam, n, 0.01f);
    static synth_task tk[4];
    mela_task tasks[4];
    int sv = mela_layout_find(mela_gbml_layout(gb), "alpha.schedule");
    float *sched = sv >= 0 ? theta + mela_layout_offset(mela_gbml_layout(gb), sv) : NULL;
    for (int it = 0; it < iters; it++) {
        if (sched)
            mela_nas_schedule(it + 1, iters, warmup, t_end, &sched[0], &sched[1]);
        for (int b = 0; b < 4; b++)
            tasks[b] = make_task(&tk[b], 1, (uint64_t)it * 4 + b);
        CHECK(mela_gbml_meta_grad(gb, theta, 4, tasks, 2, grad, NULL, NULL) == 0, "step: %s", mela_last_error());
        mela_adam_step(&adam, theta, grad);
    }
    double acc = synth_accuracy(gb, theta);
    mela_adam_free(&adam);
    free(grad);
    mela_gbml_free(gb);
    *theta_out = theta;
    return acc;
}

static double meta_train(const mela_model *m, float **theta_out, int iters)
{
    return meta_train_sched(m, theta_out, iters, 0, 1.0f);
}

/* The search of the max3 task: one cell of one edge over {zero, skip,
 * avg3, max3}, with or without the schedule view. */
static mela_cellnet_spec max3_search(int schedule)
{
    return (mela_cellnet_spec){.channels = 1, .size = IMG, .width = 4, .cells = 1, .nodes = 1,
                               .stem_stride = 1, .outputs = 2, .search = 1, .no_pool = 1,
                               .schedule = schedule,
                               .candidates = 1u << MELA_OP_ZERO | 1u << MELA_OP_SKIP |
                                             1u << MELA_OP_AVG3 | 1u << MELA_OP_MAX3};
}

static void test_search_finds_max3(void)
{
    mela_cellnet_spec s = max3_search(0);
    mela_model *m = mela_cellnet_new(&s);
    CHECK(m != NULL, "search net: %s", mela_last_error());
    if (!m)
        return;
    float *theta;
    double acc = meta_train(m, &theta, 150);
    const mela_layout *L = mela_model_layout(m);
    const float *alpha = theta + mela_layout_offset(L, mela_layout_find(L, "alpha"));
    mela_cellnet_spec d;
    float wgt[1];
    CHECK(mela_cellnet_derive(&s, alpha, &d, wgt) == 0, "derive: %s", mela_last_error());
    printf("search: alpha zero %.3f skip %.3f avg3 %.3f max3 %.3f -> %s (%.3f), accuracy %.3f\n",
           (double)alpha[0], (double)alpha[1], (double)alpha[2], (double)alpha[3],
           mela_cell_op_name(d.ops[0]), (double)wgt[0], acc);
    CHECK(d.ops[0] == MELA_OP_MAX3, "the search finds max3 (got %s)", mela_cell_op_name(d.ops[0]));
    CHECK(wgt[0] > 0.4f, "max3's softmax weight %.3f is well above a quarter", (double)wgt[0]);
    CHECK(acc > 0.85, "the search network solves the task (accuracy %.3f)", acc);
    free(theta);
    mela_model_free(m);

    /* the control: the same training of the discrete networks; only max3 solves it */
    for (int op = MELA_OP_SKIP; op <= MELA_OP_MAX3; op++) {
        d.ops[0] = op;
        mela_model *md = mela_cellnet_new(&d);
        double a = meta_train(md, &theta, 100);
        printf("discrete %s: accuracy %.3f\n", mela_cell_op_name(op), a);
        if (op == MELA_OP_MAX3)
            CHECK(a > 0.85, "max3 alone solves the task (%.3f)", a);
        else
            CHECK(a < 0.65, "%s cannot solve the task (%.3f)", mela_cell_op_name(op), a);
        free(theta);
        mela_model_free(md);
    }
}

/* MetaNAS's annealing on the same task: 30 iterations of warm-up, then T
 * from 1 to 0.05. The mixture ends nearly one-hot on max3, and the search
 * network is then the discrete max3 network: the same logits with the same
 * weights (no retraining), and the same accuracy after adaptation. */
static void test_annealed_search(void)
{
    mela_cellnet_spec s = max3_search(1);
    mela_model *m = mela_cellnet_new(&s);
    CHECK(m != NULL, "search net: %s", mela_last_error());
    if (!m)
        return;
    float *theta;
    double acc = meta_train_sched(m, &theta, 150, 30, 0.05f);
    const mela_layout *L = mela_model_layout(m);
    const float *alpha = theta + mela_layout_offset(L, mela_layout_find(L, "alpha"));
    const float *sched = theta + mela_layout_offset(L, mela_layout_find(L, "alpha.schedule"));
    double z = 0, p[4];
    for (int k = 0; k < 4; k++)
        z += exp(alpha[k] / sched[0]);
    for (int k = 0; k < 4; k++)
        p[k] = exp(alpha[k] / sched[0]) / z;
    printf("annealed search (T %.3f): weights zero %.4f skip %.4f avg3 %.4f max3 %.4f, accuracy %.3f\n",
           (double)sched[0], p[0], p[1], p[2], p[3], acc);
    CHECK(sched[0] == 0.05f && fabsf(sched[1] - 0.0025f) < 1e-8f, "the run ends at T 0.05, g 0.0025");
    CHECK(p[3] > 0.98, "max3's weight is near 1 (%.4f)", p[3]);
    CHECK(acc > 0.85, "the annealed search network solves the task (%.3f)", acc);

    /* its discretisation, the weights taken by name */
    mela_cellnet_spec d;
    float wgt[1], scaled[4];
    for (int k = 0; k < 4; k++)
        scaled[k] = alpha[k] / sched[0];
    CHECK(mela_cellnet_derive(&s, scaled, &d, wgt) == 0 && d.ops[0] == MELA_OP_MAX3, "derive: max3");
    mela_model *md = mela_cellnet_new(&d);
    mela_gbml_config c = synth_maml;
    mela_gbml *gd = md ? mela_gbml_new(md, &c) : NULL;
    CHECK(gd != NULL, "the discrete learner: %s", mela_last_error());
    if (gd) {
        const mela_layout *Ld = mela_model_layout(md);
        float *td = calloc(mela_layout_size(Ld), sizeof *td);
        for (int i = 0; i < mela_layout_count(Ld); i++)
            memcpy(td + mela_layout_offset(Ld, i), theta + mela_layout_offset(L, mela_layout_find(L, mela_layout_name(Ld, i))),
                   mela_shape_numel(mela_layout_shape(Ld, i)) * sizeof *td);
        static synth_task tk;
        mela_task t = make_task(&tk, 3, 0);
        float ys[2 * SHOTS * 2], yd[2 * SHOTS * 2];
        logits(m, theta, t.xs, 2 * SHOTS, ys);
        logits(md, td, t.xs, 2 * SHOTS, yd);
        double diff = 0, big = 0;
        for (int i = 0; i < 4 * SHOTS; i++)
            diff = fmax(diff, fabs(ys[i] - yd[i])), big = fmax(big, fabs(yd[i]));
        double accd = synth_accuracy(gd, td);
        printf("its discretisation (max3, the same weights): accuracy %.3f; logits differ by %.2e (of %.2e)\n",
               accd, diff, big);
        CHECK(diff < 0.05 * big + 1e-3, "the search network's logits are the discrete network's (%g of %g)",
              diff, big);
        CHECK(fabs(accd - acc) < 0.05, "the same accuracy without retraining (%.3f, %.3f)", accd, acc);
        free(td);
        mela_gbml_free(gd);
    }
    mela_model_free(md);
    free(theta);
    mela_model_free(m);
}

/* ------------------------------------------------- model-definition files */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_model_files(void)
{
    char dir[] = "/tmp/mela_metanas_XXXXXX", path[128], bad[128];
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    snprintf(path, sizeof path, "%s/arch.json", dir);
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    mela_cellnet_spec s = {.width = 5, .cells = 2, .nodes = 3, .stem_stride = 2,
                           .ops = {MELA_OP_CONV5, MELA_OP_SKIP, MELA_OP_MAX3, MELA_OP_ZERO, MELA_OP_DIL3,
                                   MELA_OP_SEP3}};
    float wgt[6] = {0.5f, 0.25f, 0.3f, 0, 0.2f, 0.6f};
    CHECK(mela_nas_write_model(path, &s, wgt) == 0, "write: %s", mela_last_error());
    mela_cellnet_spec got;
    CHECK(mela_nas_read_model(path, &got) == 0, "read: %s", mela_last_error());
    CHECK(got.width == 5 && got.cells == 2 && got.nodes == 3 && got.stem_stride == 2 && !got.search &&
              !memcmp(got.ops, s.ops, 6 * sizeof *s.ops), "the file reads back as written");

    /* a run's model: the file, with the run's input and ways */
    mela_run_config rc;
    mela_run_defaults(&rc, "maml", "omniglot", 5);
    mela_run_set(&rc, "image_size", "16");
    CHECK(mela_run_set(&rc, "model", path) == 0, "--model FILE: %s", mela_last_error());
    mela_learner *l = mela_learner_new(&rc, 0);
    CHECK(l != NULL, "a learner on the model file: %s", mela_last_error());
    if (l) {
        const mela_layout *L = mela_learner_layout(l);
        CHECK(mela_layout_find(L, "c1.e0.conv5") >= 0 && mela_layout_find(L, "c1.e5.sep3.pw") >= 0 &&
                  mela_layout_find(L, "c0.e4.dil3") >= 0 && mela_layout_find(L, "alpha") < 0 &&
                  mela_layout_shape(L, mela_layout_find(L, "head.weight")).d[0] == 5,
              "the learner's network is the file's cells with a 5-way head");
        mela_learner_free(l);
    }
    mela_run_set(&rc, "model", "search");
    mela_run_set(&rc, "width", "4");
    mela_run_set(&rc, "depth", "2");
    l = mela_learner_new(&rc, 0);
    CHECK(l && mela_layout_find(mela_learner_layout(l), "alpha") >= 0, "--model search: %s", mela_last_error());
    if (l) { /* what a search writes: arch.json and cell.svg */
        const mela_layout *L = mela_learner_layout(l);
        float *theta = calloc(mela_layout_size(L), sizeof *theta);
        mela_rng r = mela_rng_new(1);
        mela_learner_init(l, theta, &r);
        float *alpha = theta + mela_layout_offset(L, mela_layout_find(L, "alpha"));
        alpha[0 * MELA_CELL_OPS + MELA_OP_CONV3] = 2; /* edge 0: conv3 */
        alpha[2 * MELA_CELL_OPS + MELA_OP_AVG3] = 3;  /* edge 2: avg3; edge 1 the weaker input of state 2 */
        alpha[1 * MELA_CELL_OPS + MELA_OP_SKIP] = 1;
        CHECK(mela_nas_write(&rc, L, theta, dir, NULL) == 0, "nas write: %s", mela_last_error());
        snprintf(bad, sizeof bad, "%s/arch.json", dir);
        CHECK(mela_nas_read_model(bad, &got) == 0 && got.ops[0] == MELA_OP_CONV3 && got.ops[1] == MELA_OP_SKIP &&
                  got.ops[2] == MELA_OP_AVG3 && got.width == 4 && got.cells == 2,
              "the search's arch.json: %s", mela_last_error());
        snprintf(bad, sizeof bad, "%s/cell.svg", dir);
        FILE *f = fopen(bad, "r");
        char svg[8192] = "";
        size_t nr = f ? fread(svg, 1, sizeof svg - 1, f) : 0;
        svg[nr] = 0;
        if (f)
            fclose(f);
        CHECK(strstr(svg, "<svg") && strstr(svg, "conv3") && strstr(svg, "avg3") && strstr(svg, "</svg>"),
              "cell.svg draws the cell");
        snprintf(bad, sizeof bad, "%s/cell.png", dir);
        f = fopen(bad, "rb");
        unsigned char sig[8] = {0};
        nr = f ? fread(sig, 1, 8, f) : 0;
        if (f)
            fclose(f);
        CHECK(nr == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8), "cell.png is a PNG");
        free(theta);
        mela_learner_free(l);
    }

    int fr[1] = {1}, too[1] = {1};
    snprintf(bad, sizeof bad, "%s/dag.png", dir);
    CHECK(mela_plot_dag_png(bad, "t", 2, NULL, 1, fr, too, NULL, NULL) == -1 &&
              strstr(mela_last_error(), "edge 0 goes from 1 to 1") && access(bad, F_OK) != 0,
          "a DAG edge that does not go right: %s", mela_last_error());

    /* bad files: the message names the file and what is wrong */
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    const char *cases[][2] = {
        {"{\"mela_model\": \"cellnet\", \"width\": 4, \"cells\": 1, \"nodes\": 1, \"cell\": [\"conv7\"]}", "edge 0"},
        {"{\"mela_model\": \"cellnet\", \"width\": 4, \"cells\": 1, \"nodes\": 2, \"cell\": [\"conv3\"]}", "3 edges"},
        {"{\"mela_model\": \"cellnet\", \"cells\": 1, \"nodes\": 1, \"cell\": [\"conv3\"]}", "\"width\""},
        {"{\"mela_model\": \"cellnet\", \"width\": 0, \"cells\": 1, \"nodes\": 1, \"cell\": [\"conv3\"]}", "\"width\""},
        {"{\"width\": 4}", "not a mela model"},
        {"{\"mela_model\": ", "not JSON"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof *cases); i++) {
        write_file(bad, cases[i][0]);
        int rcode = mela_nas_read_model(bad, &got);
        CHECK(rcode == -1 && strstr(mela_last_error(), cases[i][1]) && strstr(mela_last_error(), "bad.json"),
              "bad file %d: %s", i, mela_last_error());
    }
    CHECK(mela_run_set(&rc, "model", bad) == 0 && mela_run_check(&rc) == -1 &&
              strstr(mela_last_error(), "not JSON"), "a run with a bad model file: %s", mela_last_error());
    snprintf(path, sizeof path, "%s/none.json", dir);
    mela_run_set(&rc, "model", path);
    CHECK(mela_run_check(&rc) == -1 && strstr(mela_last_error(), "none.json"), "a missing model file: %s",
          mela_last_error());
    check_rm_rf(dir);
}

int main(void)
{
    test_ops_forward();
    test_ops_gradients();
    test_search_equals_discrete();
    test_alpha_meta_grad();
    test_reptile_moves_alpha();
    test_schedule_values();
    test_tempered_derivatives();
    test_schedule_identity();
    test_warmup_freezes_alpha();
    test_model_files();
    test_search_finds_max3();
    test_annealed_search();
    return check_finish();
}
