/* test_engine.c - the graph as a whole: build-time errors, gradient closure,
 * Hessian-vector products, MAML's exact meta-gradient against its value
 * derived by hand, plan memory reuse and reruns, and executors on threads. */
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mela.h"
#include "mela_nn.h"

static int contains(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }

static void test_build_errors(void)
{
    mela_graph *g = mela_graph_new();
    mela_node x = mela_input(g, "x", MELA_SHAPE(5, 3, 28, 28));
    mela_node w = mela_input(g, "w", MELA_SHAPE(64, 1, 3, 3));
    mela_node y = mela_conv2d(g, x, w, MELA_NONE, 1, 1);
    CHECK(y == MELA_NONE, "conv2d with 3 vs 1 channels must fail");
    const char *e = mela_graph_error(g);
    CHECK(contains(e, "conv2d") && contains(e, "[5, 3, 28, 28]") && contains(e, "[64, 1, 3, 3]"),
          "message names the op and both shapes: %s", e ? e : "(none)");
    /* sticky: later builders return NONE and keep the first message */
    CHECK(mela_relu(g, x) == MELA_NONE, "builders after an error return MELA_NONE");
    CHECK(contains(mela_graph_error(g), "conv2d"), "first error kept");
    CHECK(mela_plan_new(g, 1, &x) == NULL, "no plan from a broken graph");
    mela_graph_free(g);

    struct {
        const char *op;
        int which;
    } cases[] = {{"add", 0}, {"matmul", 1}, {"reshape", 2}, {"maxpool2d", 3}, {"cross_entropy", 4},
                 {"concat", 5}, {"slice", 6}, {"batchnorm", 7}, {"sqdist", 8}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        g = mela_graph_new();
        mela_node a = mela_input(g, "a", MELA_SHAPE(4, 3));
        mela_node b = mela_input(g, "b", MELA_SHAPE(5, 2));
        mela_node im = mela_input(g, "im", MELA_SHAPE(1, 1, 2, 2));
        mela_node r = 0;
        switch (cases[i].which) {
        case 0: r = mela_add(g, a, b); break;
        case 1: r = mela_matmul(g, a, b, 0, 0); break;
        case 2: r = mela_reshape(g, a, MELA_SHAPE(5, 2)); break;
        case 3: r = mela_maxpool2d(g, im, 3, 1); break;
        case 4: r = mela_cross_entropy(g, a, b); break;
        case 5: r = mela_concat(g, a, b); break;
        case 6: r = mela_slice(g, a, 3, 2); break;
        case 7: r = mela_batchnorm(g, a, b, MELA_NONE, 1e-5f); break;
        case 8: r = mela_sqdist(g, a, b); break;
        }
        CHECK(r == MELA_NONE && contains(mela_graph_error(g), cases[i].op),
              "%s: expected a build error naming the op, got %d / %s", cases[i].op, r,
              mela_graph_error(g) ? mela_graph_error(g) : "(none)");
        mela_graph_free(g);
    }
}

static void test_grad_errors_and_stop(void)
{
    /* A gradient into an op with no rule (labels of one_hot) is an error. */
    mela_graph *g = mela_graph_new();
    mela_node z = mela_input(g, "z", MELA_SHAPE(3, 4));
    mela_node l = mela_input(g, "labels", MELA_SHAPE(3));
    mela_node loss = mela_cross_entropy(g, z, l);
    mela_node d[2];
    int rc = mela_grad(g, loss, MELA_NONE, 2, (mela_node[]){z, l}, d);
    CHECK(rc == -1 && d[0] == MELA_NONE && contains(mela_graph_error(g), "no gradient"),
          "grad wrt labels must fail: %s", mela_graph_error(g) ? mela_graph_error(g) : "(none)");
    mela_graph_free(g);

    /* grad of a non-scalar without seed */
    g = mela_graph_new();
    z = mela_input(g, "z", MELA_SHAPE(3, 4));
    rc = mela_grad(g, mela_relu(g, z), MELA_NONE, 1, &z, d);
    CHECK(rc == -1 && contains(mela_graph_error(g), "seed"), "non-scalar grad needs a seed");
    mela_graph_free(g);

    /* stop_gradient: d/dx sum(stop(x^2) * x) = x^2; unrelated wrt gets 0 */
    g = mela_graph_new();
    mela_node x = mela_input(g, "x", MELA_SHAPE(4));
    mela_node other = mela_input(g, "o", MELA_SHAPE(2));
    mela_node y = mela_sum(g, mela_mul(g, mela_stop_gradient(g, mela_square(g, x)), x));
    mela_grad(g, y, MELA_NONE, 2, (mela_node[]){x, other}, d);
    mela_plan *p = mela_plan_new(g, 2, d);
    mela_exec *e = mela_exec_new(p);
    float xv[4] = {1, -2, 3, 0.5f}, ov[2] = {7, 8};
    mela_exec_bind(e, x, xv);
    mela_exec_bind(e, other, ov);
    CHECK(mela_exec_run(e) == 0, "run: %s", mela_last_error());
    const float *gx = mela_exec_value(e, d[0]), *go = mela_exec_value(e, d[1]);
    for (int i = 0; i < 4; i++)
        CHECK_CLOSE(gx[i], xv[i] * xv[i], 1e-6, 0, "stop_gradient: d/dx = x^2");
    CHECK(go[0] == 0 && go[1] == 0, "unrelated wrt gets exact zeros");
    mela_exec_free(e);
    mela_plan_free(p);
    mela_graph_free(g);
}

static void test_runtime_errors(void)
{
    mela_graph *g = mela_graph_new();
    mela_node z = mela_input(g, "logits", MELA_SHAPE(2, 3));
    mela_node l = mela_input(g, "labels", MELA_SHAPE(2));
    mela_node loss = mela_cross_entropy(g, z, l);
    mela_plan *p = mela_plan_new(g, 1, &loss);
    mela_exec *e = mela_exec_new(p);
    float zv[6] = {0}, lv[2] = {1, 3};
    mela_exec_bind(e, z, zv);
    CHECK(mela_exec_run(e) == -1 && contains(mela_last_error(), "labels"),
          "unbound input is an error naming it: %s", mela_last_error());
    mela_exec_bind(e, l, lv);
    CHECK(mela_exec_run(e) == -1 && contains(mela_last_error(), "label 3"),
          "label out of range is an error: %s", mela_last_error());
    lv[1] = 2;
    CHECK(mela_exec_run(e) == 0, "valid labels run");
    CHECK_CLOSE(mela_exec_value(e, loss)[0], log(3.0), 1e-6, 0, "uniform logits: loss log 3");
    CHECK(mela_exec_bind(e, loss, zv) == -1, "only inputs can be bound");
    mela_exec_free(e);
    mela_plan_free(p);
    mela_graph_free(g);
}

/* Hessian-vector product of a small tanh network's loss wrt its first
 * weight matrix against the central difference of its gradient. */
static void test_hvp(void)
{
    mela_rng r = mela_rng_new(7);
    mela_graph *g = mela_graph_new();
    mela_node x = mela_input(g, "x", MELA_SHAPE(6, 3));
    mela_node t = mela_input(g, "t", MELA_SHAPE(6, 1));
    mela_node w1 = mela_input(g, "w1", MELA_SHAPE(5, 3));
    mela_node b1 = mela_input(g, "b1", MELA_SHAPE(5));
    mela_node w2 = mela_input(g, "w2", MELA_SHAPE(1, 5));
    mela_node v = mela_input(g, "v", MELA_SHAPE(5, 3));
    mela_node h = mela_tanh(g, mela_linear(g, x, w1, b1));
    mela_node loss = mela_mse(g, mela_linear(g, h, w2, MELA_NONE), t);
    mela_node gw, hv;
    mela_grad(g, loss, MELA_NONE, 1, &w1, &gw);
    mela_grad(g, mela_sum(g, mela_mul(g, gw, v)), MELA_NONE, 1, &w1, &hv);
    CHECK(mela_graph_error(g) == NULL, "hvp graph: %s", mela_graph_error(g));
    mela_node outs[2] = {gw, hv};
    mela_plan *p = mela_plan_new(g, 2, outs);
    mela_exec *e = mela_exec_new(p);
    float xv[18], tv[6], w1v[15], b1v[5], w2v[5], vv[15], hvv[15], gp[15], gm[15], fd[15];
    float *all[] = {xv, tv, w1v, b1v, w2v, vv};
    size_t sizes[] = {18, 6, 15, 5, 5, 15};
    mela_node nodes[] = {x, t, w1, b1, w2, v};
    for (int k = 0; k < 6; k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            all[k][i] = mela_rng_normal(&r) * 0.7f;
        mela_exec_bind(e, nodes[k], all[k]);
    }
    mela_exec_run(e);
    memcpy(hvv, mela_exec_value(e, hv), sizeof hvv);
    const float eps = 1e-2f;
    for (int i = 0; i < 15; i++)
        w1v[i] += eps * vv[i];
    mela_exec_run(e);
    memcpy(gp, mela_exec_value(e, gw), sizeof gp);
    for (int i = 0; i < 15; i++)
        w1v[i] -= 2 * eps * vv[i];
    mela_exec_run(e);
    memcpy(gm, mela_exec_value(e, gw), sizeof gm);
    for (int i = 0; i < 15; i++)
        fd[i] = (gp[i] - gm[i]) / (2 * eps);
    CHECK_ARRAY(hvv, fd, 15, 1e-3, 1e-2, "Hessian-vector product vs difference of gradients");
    mela_exec_free(e);
    mela_plan_free(p);
    mela_graph_free(g);
}

/* ---------------------------------------------------------------- MAML */

/* Linear regression pred = X w, loss = mean((Xw - y)^2): the inner gradient
 * is A w - b with A = 2/n X^T X, b = 2/n X^T y, so k steps of size alpha give
 * w_k = (I - alpha A) w_{k-1} + alpha b and the exact meta-gradient of the
 * query loss is (I - alpha A)^k (C w_k - d), C and d from the query set; the
 * first-order approximation drops (I - alpha A)^k. */
enum { D = 3, NS = 4, NQ = 5 };

static void hand_maml(const float *Xs, const float *ys, const float *Xq, const float *yq,
                      const float *w0, double alpha, int steps, double *exact, double *first)
{
    double A[D][D] = {{0}}, b[D] = {0}, C[D][D] = {{0}}, d[D] = {0}, w[D];
    for (int i = 0; i < D; i++) {
        w[i] = w0[i];
        for (int j = 0; j < D; j++) {
            for (int n = 0; n < NS; n++)
                A[i][j] += 2.0 / NS * Xs[n * D + i] * Xs[n * D + j];
            for (int n = 0; n < NQ; n++)
                C[i][j] += 2.0 / NQ * Xq[n * D + i] * Xq[n * D + j];
        }
        for (int n = 0; n < NS; n++)
            b[i] += 2.0 / NS * Xs[n * D + i] * ys[n];
        for (int n = 0; n < NQ; n++)
            d[i] += 2.0 / NQ * Xq[n * D + i] * yq[n];
    }
    for (int s = 0; s < steps; s++) {
        double nw[D];
        for (int i = 0; i < D; i++) {
            double gi = -b[i];
            for (int j = 0; j < D; j++)
                gi += A[i][j] * w[j];
            nw[i] = w[i] - alpha * gi;
        }
        memcpy(w, nw, sizeof w);
    }
    double gq[D];
    for (int i = 0; i < D; i++) {
        gq[i] = -d[i];
        for (int j = 0; j < D; j++)
            gq[i] += C[i][j] * w[j];
        first[i] = gq[i];
    }
    /* exact = (I - alpha A)^steps gq */
    double v[D];
    memcpy(v, gq, sizeof v);
    for (int s = 0; s < steps; s++) {
        double nv[D];
        for (int i = 0; i < D; i++) {
            nv[i] = v[i];
            for (int j = 0; j < D; j++)
                nv[i] -= alpha * A[i][j] * v[j];
        }
        memcpy(v, nv, sizeof v);
    }
    memcpy(exact, v, sizeof v);
}

static void test_maml_by_hand(int steps)
{
    mela_rng r = mela_rng_new(100 + steps);
    float Xs[NS * D], ys[NS], Xq[NQ * D], yq[NQ], w0[D], alpha = 0.1f;
    for (int i = 0; i < NS * D; i++) Xs[i] = mela_rng_normal(&r);
    for (int i = 0; i < NS; i++) ys[i] = mela_rng_normal(&r);
    for (int i = 0; i < NQ * D; i++) Xq[i] = mela_rng_normal(&r);
    for (int i = 0; i < NQ; i++) yq[i] = mela_rng_normal(&r);
    for (int i = 0; i < D; i++) w0[i] = mela_rng_normal(&r);

    mela_layout *L = mela_layout_new();
    int iw = mela_layout_add(L, "w", MELA_SHAPE(D, 1));
    float *theta = calloc(mela_layout_size(L), sizeof *theta);
    memcpy(theta + mela_layout_offset(L, iw), w0, sizeof w0);

    mela_graph *g = mela_graph_new();
    mela_node xs = mela_input(g, "xs", MELA_SHAPE(NS, D)), tys = mela_input(g, "ys", MELA_SHAPE(NS, 1));
    mela_node xq = mela_input(g, "xq", MELA_SHAPE(NQ, D)), tyq = mela_input(g, "yq", MELA_SHAPE(NQ, 1));
    mela_node w = mela_param(g, L, iw);
    mela_node meta[2];
    for (int order = 0; order < 2; order++) {
        mela_node fast = w;
        for (int s = 0; s < steps; s++) {
            mela_node gs;
            mela_grad(g, mela_mse(g, mela_matmul(g, xs, fast, 0, 0), tys), MELA_NONE, 1, &fast, &gs);
            if (order == 1)
                gs = mela_stop_gradient(g, gs); /* first-order MAML */
            fast = mela_sub(g, fast, mela_scale(g, gs, alpha));
        }
        mela_node lq = mela_mse(g, mela_matmul(g, xq, fast, 0, 0), tyq);
        mela_grad(g, lq, MELA_NONE, 1, &w, &meta[order]);
    }
    CHECK(mela_graph_error(g) == NULL, "maml graph: %s", mela_graph_error(g));
    mela_plan *p = mela_plan_new(g, 2, meta);
    mela_exec *e = mela_exec_new(p);
    mela_exec_bind_params(e, theta);
    mela_exec_bind(e, xs, Xs);
    mela_exec_bind(e, tys, ys);
    mela_exec_bind(e, xq, Xq);
    mela_exec_bind(e, tyq, yq);
    CHECK(mela_exec_run(e) == 0, "maml run: %s", mela_last_error());
    double exact[D], first[D];
    hand_maml(Xs, ys, Xq, yq, w0, alpha, steps, exact, first);
    const float *ge = mela_exec_value(e, meta[0]), *gf = mela_exec_value(e, meta[1]);
    char what[96];
    double differ = 0;
    for (int i = 0; i < D; i++) {
        snprintf(what, sizeof what, "MAML %d step(s): exact meta-gradient [%d]", steps, i);
        CHECK_CLOSE(ge[i], exact[i], 1e-5, 1e-4, what);
        snprintf(what, sizeof what, "MAML %d step(s): first-order meta-gradient [%d]", steps, i);
        CHECK_CLOSE(gf[i], first[i], 1e-5, 1e-4, what);
        /* the difference is exactly the second-order term ((I-aA)^k - I) gq */
        snprintf(what, sizeof what, "MAML %d step(s): exact - first-order [%d]", steps, i);
        CHECK_CLOSE(ge[i] - gf[i], exact[i] - first[i], 2e-5, 1e-4, what);
        differ = fmax(differ, fabs(exact[i] - first[i]));
    }
    CHECK(differ > 1e-2, "the second-order term is not negligible here (%g)", differ);
    mela_exec_free(e);
    mela_plan_free(p);
    mela_graph_free(g);
    mela_layout_free(L);
    free(theta);
}

/* -------------------------------------------------------- plans and memory */

static void test_plan_memory(void)
{
    /* A Conv-4-like stack with its gradient: buffer reuse must beat one
     * buffer per node, and 1,000 runs must not allocate. */
    mela_rng r = mela_rng_new(3);
    mela_graph *g = mela_graph_new();
    mela_node x = mela_input(g, "x", MELA_SHAPE(5, 1, 12, 12));
    mela_node lab = mela_input(g, "labels", MELA_SHAPE(5));
    mela_node w1 = mela_input(g, "w1", MELA_SHAPE(8, 1, 3, 3)), w2 = mela_input(g, "w2", MELA_SHAPE(8, 8, 3, 3));
    mela_node wh = mela_input(g, "wh", MELA_SHAPE(5, 8 * 3 * 3));
    mela_node h = mela_maxpool2d(g, mela_relu(g, mela_batchnorm(g, mela_conv2d(g, x, w1, MELA_NONE, 1, 1), MELA_NONE, MELA_NONE, 1e-5f)), 2, 2);
    h = mela_maxpool2d(g, mela_relu(g, mela_batchnorm(g, mela_conv2d(g, h, w2, MELA_NONE, 1, 1), MELA_NONE, MELA_NONE, 1e-5f)), 2, 2);
    mela_node loss = mela_cross_entropy(g, mela_linear(g, mela_flatten(g, h), wh, MELA_NONE), lab);
    mela_node dw[3];
    mela_grad(g, loss, MELA_NONE, 3, (mela_node[]){w1, w2, wh}, dw);
    mela_node outs[4] = {loss, dw[0], dw[1], dw[2]};
    mela_plan *p = mela_plan_new(g, 4, outs);
    CHECK(p != NULL, "plan: %s", mela_last_error());
    /* a third saved at least (batch norm's backward is one op, bn_dx, so
     * fewer short-lived temporaries exist to share than in ten elementwise ops) */
    CHECK(mela_plan_arena_bytes(p) < mela_plan_naive_bytes(p) * 2 / 3,
          "buffer reuse: arena %zu bytes vs %zu without reuse", mela_plan_arena_bytes(p),
          mela_plan_naive_bytes(p));
    printf("plan: %d steps, arena %zu bytes, %zu without reuse\n", mela_plan_steps(p),
           mela_plan_arena_bytes(p), mela_plan_naive_bytes(p));
    mela_exec *e = mela_exec_new(p);
    float xv[5 * 144], lv[5] = {0, 1, 2, 3, 4}, a[72], b[576], c[360];
    float *bufs[] = {xv, a, b, c};
    size_t sizes[] = {720, 72, 576, 360};
    mela_node nodes[] = {x, w1, w2, wh};
    for (int k = 0; k < 4; k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            bufs[k][i] = mela_rng_normal(&r) * 0.3f;
        mela_exec_bind(e, nodes[k], bufs[k]);
    }
    mela_exec_bind(e, lab, lv);
    mela_exec_run(e);
    float first = mela_exec_value(e, loss)[0];
    float g0[360];
    memcpy(g0, mela_exec_value(e, dw[2]), sizeof g0);
    for (int it = 0; it < 10; it++) /* libraries behind the kernels warm up (oneDNN) */
        mela_exec_run(e);
    struct mallinfo2 before = mallinfo2();
    int fails = 0;
    for (int it = 0; it < 1000; it++)
        fails += mela_exec_run(e) != 0;
    struct mallinfo2 after = mallinfo2();
    CHECK(fails == 0, "1000 runs succeed");
    CHECK(after.uordblks == before.uordblks && after.hblkhd == before.hblkhd,
          "1000 runs allocate nothing (%zu -> %zu bytes in use)", before.uordblks, after.uordblks);
    CHECK(mela_exec_value(e, loss)[0] == first && !memcmp(g0, mela_exec_value(e, dw[2]), sizeof g0),
          "reruns give identical results");
    mela_exec_free(e);
    mela_plan_free(p);
    mela_graph_free(g);
}

/* Executors of one plan on two threads give the serial results exactly. */
typedef struct {
    const mela_plan *p;
    mela_node x, out;
    const float *xv;
    float result[16];
    int rc;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    mela_exec *e = mela_exec_new(j->p);
    mela_exec_bind(e, j->x, j->xv);
    j->rc = 0;
    for (int i = 0; i < 50; i++)
        j->rc |= mela_exec_run(e);
    memcpy(j->result, mela_exec_value(e, j->out), sizeof j->result);
    mela_exec_free(e);
    return NULL;
}

static void test_threads(void)
{
    mela_graph *g = mela_graph_new();
    mela_node x = mela_input(g, "x", MELA_SHAPE(4, 2, 6, 6));
    mela_node w = mela_constant(g, MELA_SHAPE(3, 2, 3, 3), 0.1f);
    mela_node y = mela_global_avgpool(g, mela_tanh(g, mela_conv2d(g, mela_square(g, x), w, MELA_NONE, 1, 1)));
    mela_node d;
    mela_grad(g, mela_sum(g, y), MELA_NONE, 1, &x, &d);
    mela_node out = mela_reshape(g, mela_slice(g, d, 0, 1), MELA_SHAPE(72));
    out = mela_slice(g, mela_reshape(g, out, MELA_SHAPE(72, 1)), 0, 16);
    mela_plan *p = mela_plan_new(g, 1, &out);
    float xa[288], xb[288];
    mela_rng r = mela_rng_new(5);
    for (int i = 0; i < 288; i++) {
        xa[i] = mela_rng_normal(&r);
        xb[i] = mela_rng_normal(&r);
    }
    job serial[2] = {{.p = p, .x = x, .out = out, .xv = xa}, {.p = p, .x = x, .out = out, .xv = xb}};
    job par[2] = {serial[0], serial[1]};
    run_job(&serial[0]);
    run_job(&serial[1]);
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        pthread_create(&t[k], NULL, run_job, &par[k]);
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    for (int k = 0; k < 2; k++)
        CHECK(par[k].rc == 0 && !memcmp(par[k].result, serial[k].result, sizeof par[k].result),
              "thread %d matches the serial run bit for bit", k);
    CHECK(memcmp(serial[0].result, serial[1].result, sizeof serial[0].result) != 0,
          "different inputs give different results");
    mela_plan_free(p);
    mela_graph_free(g);
}

/* One executor's ops split over 1, 2 or 4 threads (mela_exec_set_threads):
 * a max-pool Conv-4's forward and backward on 40 images, big enough that
 * every elementwise op, batch norm, pooling and sum splits, gives the same
 * bits every time. */
static void test_exec_threads(void)
{
    enum { N = 40 };
    mela_model *m = mela_conv4_new(1, 28, 32, 4, 5, 1);
    const mela_layout *L = mela_model_layout(m);
    mela_graph *g = mela_graph_new();
    mela_node w[MELA_MODEL_MAX_PARAMS], dw[MELA_MODEL_MAX_PARAMS];
    int nv = mela_layout_count(L);
    for (int i = 0; i < nv; i++)
        w[i] = mela_param(g, L, i);
    mela_node x = mela_input(g, "x", MELA_SHAPE(N, 1, 28, 28)), lab = mela_input(g, "y", MELA_SHAPE(N));
    mela_node loss = mela_cross_entropy(g, mela_model_forward(m, g, w, x), lab);
    mela_grad(g, loss, MELA_NONE, nv, w, dw);
    mela_node outs[MELA_MODEL_MAX_PARAMS + 1];
    outs[0] = loss;
    memcpy(outs + 1, dw, nv * sizeof *dw);
    mela_plan *p = mela_plan_new(g, nv + 1, outs);
    size_t size = mela_layout_size(L);
    float *theta = calloc(size, sizeof *theta), *xs = malloc(N * 784 * sizeof *xs), ys[N];
    float *first = calloc(size + 1, sizeof *first);
    mela_rng r = mela_rng_new(8);
    mela_model_init(m, theta, &r);
    for (int i = 0; i < N * 784; i++)
        xs[i] = mela_rng_uniform(&r);
    for (int i = 0; i < N; i++)
        ys[i] = (float)(i % 5);
    for (int t = 1; t <= 4; t *= 2) {
        mela_exec *e = mela_exec_new(p);
        mela_exec_set_threads(e, t);
        mela_exec_bind_params(e, theta);
        mela_exec_bind(e, x, xs);
        mela_exec_bind(e, lab, ys);
        CHECK(mela_exec_run(e) == 0, "run on %d threads: %s", t, mela_last_error());
        float *got = calloc(size + 1, sizeof *got);
        got[0] = mela_exec_value(e, loss)[0];
        for (int i = 0; i < nv; i++)
            memcpy(got + 1 + mela_layout_offset(L, i), mela_exec_value(e, dw[i]),
                   mela_shape_numel(mela_layout_shape(L, i)) * sizeof *got);
        if (t == 1)
            memcpy(first, got, (size + 1) * sizeof *got);
        else
            CHECK(!memcmp(first, got, (size + 1) * sizeof *got),
                  "loss and gradients on %d threads are the bits of 1 thread", t);
        free(got);
        mela_exec_free(e);
    }
    free(theta), free(xs), free(first);
    mela_plan_free(p);
    mela_graph_free(g);
    mela_model_free(m);
}

/* A message that quotes the last one, as callers add their context. */
static void test_error_context(void)
{
    mela_set_error("tensor '%s' is bad", "w");
    CHECK(mela_set_error("%s: metadata: %s", "run/best.safetensors", mela_last_error()) == -1 &&
              !strcmp(mela_last_error(), "run/best.safetensors: metadata: tensor 'w' is bad"),
          "error with its context: '%s'", mela_last_error());
    mela_clear_error();
    CHECK(!strcmp(mela_last_error(), ""), "cleared");
}

int main(void)
{
    test_exec_threads();
    test_error_context();
    test_build_errors();
    test_grad_errors_and_stop();
    test_runtime_errors();
    test_hvp();
    test_maml_by_hand(1);
    test_maml_by_hand(3);
    test_plan_memory();
    test_threads();
    return check_finish();
}
