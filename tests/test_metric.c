/* test_metric.c - Prototypical, Matching and Siamese networks: class scores
 * checked by hand on tiny embeddings (an identity embedding makes f(x) = x),
 * the Siamese loss and its gradient against finite differences, and seeded
 * short trainings on synthetic classes that must end well above chance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "learn/taskpool.h"
#include "synthetic.h"
#include "mela_data.h"
#include "mela_learn.h"

enum { D = 3 };

/* f(x) = x W^T with W (D, D): the identity when W = I. */
static mela_node lin_body(void *ctx, mela_graph *g, const mela_node *w, mela_node x)
{
    return mela_linear(g, x, w[0], MELA_NONE);
}

static mela_model *linear_embedding(void)
{
    mela_layout *L = mela_layout_new();
    mela_layout_add(L, "embed.weight", MELA_SHAPE(D, D));
    mela_model_def d = {L, MELA_SHAPE(D), 0, D, 1, lin_body, NULL, NULL, NULL, "linear embedding", NULL};
    return mela_model_new(&d);
}

/* scale, learn: Matching's attention scale, fixed or learned */
static void test_by_hand(int kind, float scale, int learn)
{
    /* 2-way 2-shot, 2 queries per class; f = identity */
    mela_model *m = linear_embedding();
    mela_metric_config c = {.kind = kind, .train = {2, 2, 2, 0}, .test = {2, 2, 2, 0},
                            .pairs = 4, .scale = scale,
                            .learn_scale = learn};
    mela_metric *mt = mela_metric_new(m, &c);
    CHECK(mt != NULL, "metric learner: %s", mela_last_error());
    if (!mt)
        return;
    const mela_layout *L = mela_metric_layout(mt);
    float *theta = calloc(mela_layout_size(L), sizeof *theta);
    float *W = theta + mela_layout_offset(L, 0);
    for (int i = 0; i < D; i++)
        W[i * D + i] = 1;
    float sw[D] = {-0.7f, 0.2f, -1.1f}, sb = 0.4f;
    if (kind == MELA_METRIC_SIAMESE) {
        memcpy(theta + mela_layout_offset(L, 1), sw, sizeof sw);
        theta[mela_layout_offset(L, 2)] = sb;
    }
    double a = scale > 0 ? scale : 1;
    if (learn) {
        CHECK(mela_layout_count(L) == 2 && !strcmp(mela_layout_name(L, 1), "matching.scale"),
              "the learned scale is a view");
        theta[mela_layout_offset(L, 1)] = 1.0f; /* set apart from its initial value */
        a = 1.0f;
    }
    float xs[4 * D] = {1, 0, 0, 0.8f, 0.2f, 0, 0, 1, 0.5f, 0.2f, 1.4f, 0.1f};
    float ys[4] = {1, 1, 0, 0};
    float xq[4 * D] = {0.9f, 0.1f, 0.2f, 0, 1, 1, 0.5f, 0.5f, 0, -0.2f, 0.3f, 0.9f};
    float yq[4] = {1, 0, 1, 0};
    mela_task t = {xs, ys, xq, yq};
    float out[8];
    double loss, acc;
    CHECK(mela_metric_evaluate(mt, theta, &t, 0, &loss, &acc, out) == 0, "evaluate: %s", mela_last_error());
    double want[8], nll = 0;
    int correct = 0;
    for (int q = 0; q < 4; q++) {
        double s[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            if (kind == MELA_METRIC_PROTO) {
                double d2 = 0;
                for (int j = 0; j < D; j++) {
                    double cj = 0;
                    for (int i = 0; i < 4; i++)
                        if (ys[i] == k)
                            cj += xs[i * D + j] / 2;
                    d2 += (xq[q * D + j] - cj) * (xq[q * D + j] - cj);
                }
                s[k] = -d2;
            } else {
                for (int i = 0; i < 4; i++) {
                    if (ys[i] != k)
                        continue;
                    double dot = 0, nq = 0, ns = 0, z = sb;
                    for (int j = 0; j < D; j++) {
                        dot += xq[q * D + j] * xs[i * D + j];
                        nq += xq[q * D + j] * xq[q * D + j];
                        ns += xs[i * D + j] * xs[i * D + j];
                        z += sw[j] * fabs(xq[q * D + j] - xs[i * D + j]);
                    }
                    s[k] += kind == MELA_METRIC_MATCHING ? exp(a * dot / sqrt(nq * ns)) : 1 / (1 + exp(-z)) / 2;
                }
            }
        }
        if (kind == MELA_METRIC_PROTO) { /* log-softmax of -d^2 */
            double mx = fmax(s[0], s[1]), lse = mx + log(exp(s[0] - mx) + exp(s[1] - mx));
            want[2 * q] = s[0] - lse, want[2 * q + 1] = s[1] - lse;
            nll -= want[2 * q + (int)yq[q]];
        } else if (kind == MELA_METRIC_MATCHING) { /* log of attention mass */
            double z = s[0] + s[1];
            want[2 * q] = log(s[0] / z), want[2 * q + 1] = log(s[1] / z);
            nll -= want[2 * q + (int)yq[q]];
        } else { /* mean p(same) */
            want[2 * q] = s[0], want[2 * q + 1] = s[1];
            nll -= log(s[(int)yq[q]] / (s[0] + s[1]));
        }
        correct += (want[2 * q + 1] > want[2 * q]) == (yq[q] == 1);
    }
    static const char *names[] = {"ProtoNets", "Matching", "Siamese"};
    char what[120];
    for (int i = 0; i < 8; i++) {
        snprintf(what, sizeof what, "%s: class score %d by hand", names[kind], i);
        CHECK_CLOSE(out[i], want[i], 1e-5, 1e-5, what);
    }
    snprintf(what, sizeof what, "%s: loss by hand", names[kind]);
    CHECK_CLOSE(loss, nll / 4, 1e-5, 1e-5, what);
    snprintf(what, sizeof what, "%s: accuracy by hand", names[kind]);
    CHECK_CLOSE(acc, correct / 4.0, 0, 0, what);
    if (learn) { /* d loss / d scale against a central difference */
        float *grad = calloc(mela_layout_size(L), sizeof *grad);
        size_t o = mela_layout_offset(L, 1);
        double lp, lm, h = 1e-2;
        CHECK(mela_metric_grad(mt, theta, 1, &t, 1, grad, NULL, NULL) == 0, "grad: %s", mela_last_error());
        theta[o] = (float)(1 + h);
        mela_metric_evaluate(mt, theta, &t, 0, &lp, NULL, NULL);
        theta[o] = (float)(1 - h);
        mela_metric_evaluate(mt, theta, &t, 0, &lm, NULL, NULL);
        CHECK_CLOSE(grad[o], (lp - lm) / (2 * h), 1e-4, 1e-2, "Matching: d loss / d scale");
        free(grad);
    }
    free(theta);
    mela_metric_free(mt);
    mela_model_free(m);
}

/* ProtoNets' background training by hand: 2-way 2-shot, 2 queries per
 * class and 2 background queries (label 2), f = x W^T. The prototypes are
 * the two class means and f(0) = 0 (blank paper); the loss is the mean NLL
 * of softmax(-|f(q) - c_k|^2) over k = 0, 1, 2; d loss / d W against
 * central differences. */
static void test_background_by_hand(void)
{
    mela_model *m = linear_embedding();
    mela_metric_config c = {.kind = MELA_METRIC_PROTO, .train = {2, 2, 2, 0}, .test = {2, 2, 2, 0},
                            .background = 2};
    mela_metric *mt = mela_metric_new(m, &c);
    CHECK(mt != NULL, "metric learner with background: %s", mela_last_error());
    if (!mt) {
        mela_model_free(m);
        return;
    }
    const mela_layout *L = mela_metric_layout(mt);
    float *theta = calloc(mela_layout_size(L), sizeof *theta);
    float *grad = calloc(mela_layout_size(L), sizeof *grad);
    float *spare = calloc(mela_layout_size(L), sizeof *spare);
    float *W = theta + mela_layout_offset(L, 0);
    float w0[D * D] = {1, 0.2f, 0, -0.1f, 0.9f, 0.3f, 0, 0.1f, 1.1f};
    memcpy(W, w0, sizeof w0);
    float xs[4 * D] = {1, 0, 0, 0.8f, 0.2f, 0, 0, 1, 0.5f, 0.2f, 1.4f, 0.1f};
    float ys[4] = {0, 0, 1, 1};
    /* two queries of each class, then a faint window and a far one */
    float xq[6 * D] = {0.9f, 0.1f, 0.2f, 0, 1, 1, 0.3f, 0.6f, 0.4f, 0.1f, 1.2f, 0.2f,
                       0.1f, 0.05f, 0, -0.6f, 0.4f, -0.3f};
    float yq[6] = {0, 1, 0, 1, 2, 2};
    mela_task t = {xs, ys, xq, yq};
    double loss = 0, acc = 0;
    CHECK(mela_metric_grad(mt, theta, 1, &t, 1, grad, &loss, &acc) == 0, "grad: %s", mela_last_error());
    /* by hand */
    double f[10][D], proto[3][D] = {{0}};
    for (int r = 0; r < 10; r++) /* rows 0-3 support, 4-9 queries */
        for (int i = 0; i < D; i++) {
            const float *x = r < 4 ? xs + r * D : xq + (r - 4) * D;
            f[r][i] = 0;
            for (int j = 0; j < D; j++)
                f[r][i] += w0[i * D + j] * x[j];
        }
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < D; i++)
            proto[(int)ys[r]][i] += f[r][i] / 2; /* proto[2] = f(0) = 0 */
    double nll = 0;
    int correct = 0;
    for (int q = 0; q < 6; q++) {
        double s[3], mx = -1e300, z = 0;
        int best = 0;
        for (int k = 0; k < 3; k++) {
            s[k] = 0;
            for (int i = 0; i < D; i++)
                s[k] -= (f[4 + q][i] - proto[k][i]) * (f[4 + q][i] - proto[k][i]);
            if (s[k] > mx)
                mx = s[k], best = k;
        }
        for (int k = 0; k < 3; k++)
            z += exp(s[k] - mx);
        nll -= s[(int)yq[q]] - mx - log(z);
        correct += best == (int)yq[q];
    }
    CHECK_CLOSE(loss, nll / 6, 1e-5, 1e-5, "ProtoNets with background: loss by hand");
    CHECK_CLOSE(acc, correct / 6.0, 1e-6, 0, "ProtoNets with background: accuracy by hand");
    CHECK(correct > 0 && correct < 6, "the hand case has right and wrong answers (%d of 6)", correct);
    for (int e = 0; e < D * D; e++) { /* d loss / d W */
        double lp, lm, h = 1e-3;
        W[e] = (float)(w0[e] + h);
        mela_metric_grad(mt, theta, 1, &t, 1, spare, &lp, NULL);
        W[e] = (float)(w0[e] - h);
        mela_metric_grad(mt, theta, 1, &t, 1, spare, &lm, NULL);
        W[e] = w0[e];
        CHECK_CLOSE(grad[mela_layout_offset(L, 0) + e], (lp - lm) / (2 * h), 1e-3, 1e-2,
                    "ProtoNets with background: d loss / d W");
    }
    c.kind = MELA_METRIC_MATCHING;
    CHECK(mela_metric_new(m, &c) == NULL && strstr(mela_last_error(), "background"),
          "background queries for Matching are refused: %s", mela_last_error());
    free(theta), free(grad), free(spare);
    mela_metric_free(mt);
    mela_model_free(m);
}

/* Siamese pair loss and its gradient against finite differences. */
static void test_siamese_grad(void)
{
    mela_model *m = linear_embedding();
    mela_metric_config c = {.kind = MELA_METRIC_SIAMESE, .test = {2, 1, 1, 0},
                            .pairs = 4};
    mela_metric *mt = mela_metric_new(m, &c);
    const mela_layout *L = mela_metric_layout(mt);
    size_t n = mela_layout_size(L);
    float *theta = calloc(n, sizeof *theta), *g = calloc(n, sizeof *g);
    mela_rng r = mela_rng_new(3);
    mela_metric_init(mt, theta, &r);
    float x1[4 * D], x2[4 * D], same[4] = {1, 0, 1, 0}, unused[1] = {0};
    for (int i = 0; i < 4 * D; i++)
        x1[i] = mela_rng_normal(&r), x2[i] = mela_rng_normal(&r);
    mela_task t = {x1, same, x2, unused};
    double loss, acc;
    CHECK(mela_metric_grad(mt, theta, 1, &t, 1, g, &loss, &acc) == 0, "grad: %s", mela_last_error());
    /* by hand: mean BCE of sigmoid(w.|W x1 - W x2| + b) */
    int checked = 0;
    for (int v = 0; v < mela_layout_count(L); v++) {
        size_t off = mela_layout_offset(L, v), cnt = mela_shape_numel(mela_layout_shape(L, v));
        for (size_t j = 0; j < cnt; j++) {
            float keep = theta[off + j], h = 1e-3f;
            double lp, lm;
            theta[off + j] = keep + h;
            mela_metric_grad(mt, theta, 1, &t, 1, g + 0 * n, &lp, NULL);
            theta[off + j] = keep - h;
            mela_metric_grad(mt, theta, 1, &t, 1, g + 0 * n, &lm, NULL);
            theta[off + j] = keep;
            float *g0 = calloc(n, sizeof *g0);
            mela_metric_grad(mt, theta, 1, &t, 1, g0, NULL, NULL);
            char what[80];
            snprintf(what, sizeof what, "Siamese: d loss / d %s[%zu]", mela_layout_name(L, v), j);
            CHECK_CLOSE(g0[off + j], (lp - lm) / (2 * h), 2e-3, 2e-2, what);
            free(g0);
            checked++;
        }
    }
    CHECK(checked == D * D + D + 1, "every weight checked (%d)", checked);
    free(theta), free(g);
    mela_metric_free(mt);
    mela_model_free(m);
}


/* The moments of a layer's input (x, B images of C channels of HW values)
 * added to sum, sq (per channel, double). */
static void add_moments(const float *x, int B, int C, int HW, double *sum, double *sq)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < HW; k++) {
                double v = x[((size_t)b * C + c) * HW + k];
                sum[c] += v, sq[c] += v * v;
            }
}

/* Population statistics of batch norm (metric learners): gathered over the
 * union of the calibration tasks' images (each layer's input computed as in
 * training, every task with its own batch statistics), then used at
 * evaluation, so a query's scores do not depend on the other queries; with
 * the batch's own statistics the fixed mode gives what batch mode gives; and
 * Siamese compare() equals the episode score of the same pair. */
static void test_population_bn(int kind)
{
    enum { C = 4, T = 3 };
    synth_data d;
    synth_open(&d, 5);
    mela_model *m = mela_conv4_new(1, 8, C, 2, 0, 1);
    mela_metric_config c = {.kind = kind, .train = {3, 1, 2, 0}, .test = {2, 1, 1, 0}, .pairs = 4};
    mela_metric *mt = mela_metric_new(m, &c);
    CHECK(mt != NULL, "metric learner: %s", mela_last_error());
    const mela_layout *L = mela_metric_layout(mt);
    float *theta = calloc(mela_layout_size(L), sizeof *theta);
    mela_rng r = mela_rng_new(9);
    mela_metric_init(mt, theta, &r);
    for (int v = 0; v < mela_layout_count(L); v++) /* batch-norm gamma and beta away from 1, 0 */
        if (!strncmp(mela_layout_name(L, v), "bn", 2) && !strstr(mela_layout_name(L, v), "running"))
            for (int j = 0; j < C; j++)
                theta[mela_layout_offset(L, v) + j] += 0.3f * mela_rng_normal(&r);
    mela_tasks_opts o = {.kind = kind == MELA_METRIC_SIAMESE ? MELA_TASKS_PAIRS : MELA_TASKS_EPISODES,
                         .spec = c.train, .pairs = 4, .seed = 77, .slots = 1};
    mela_tasks *ts = mela_tasks_new(d.ds, &d.train, &o);
    CHECK(mela_metric_calibrate(mt, theta, ts, T, 1) == 0, "calibrate: %s", mela_last_error());

    /* by hand: each task's layer inputs, through a graph of the same body */
    int n1 = kind == MELA_METRIC_SIAMESE ? 4 : 3, n2 = kind == MELA_METRIC_SIAMESE ? 4 : 6, B = n1 + n2;
    mela_graph *g = mela_graph_new();
    mela_node w[32];
    for (int v = 0; v < mela_layout_count(L); v++)
        w[v] = mela_param(g, L, v);
    mela_node x = mela_input(g, "x", MELA_SHAPE(B, 1, 8, 8));
    mela_node z1 = mela_conv2d(g, x, w[0], w[1], 1, 1);
    mela_node h = mela_maxpool2d(g, mela_relu(g, mela_batchnorm(g, z1, w[2], w[3], 1e-5f)), 2, 2);
    mela_node z2 = mela_conv2d(g, h, w[4], w[5], 1, 1);
    mela_node outs[2] = {z1, z2};
    mela_plan *pl = mela_plan_new(g, 2, outs);
    mela_exec *e = mela_exec_new(pl);
    mela_exec_bind_params(e, theta);
    double sum[2][C] = {{0}}, sq[2][C] = {{0}};
    float *xb = malloc((size_t)B * 64 * sizeof *xb);
    for (int k = 0; k < T; k++) {
        mela_task t;
        mela_tasks_get(ts, 0, (uint64_t)k, &t);
        memcpy(xb, t.xs, (size_t)n1 * 64 * sizeof *xb);
        memcpy(xb + (size_t)n1 * 64, t.xq, (size_t)n2 * 64 * sizeof *xb);
        mela_exec_bind(e, x, xb);
        CHECK(mela_exec_run(e) == 0, "reference graph: %s", mela_last_error());
        add_moments(mela_exec_value(e, z1), B, C, 64, sum[0], sq[0]);
        add_moments(mela_exec_value(e, z2), B, C, 16, sum[1], sq[1]);
    }
    for (int layer = 0; layer < 2; layer++) {
        double cnt = (double)T * B * (layer ? 16 : 64);
        const float *mean = theta + mela_layout_offset(L, mela_layout_find(L, layer ? "bn2.running_mean" : "bn1.running_mean"));
        const float *var = theta + mela_layout_offset(L, mela_layout_find(L, layer ? "bn2.running_var" : "bn1.running_var"));
        for (int ch = 0; ch < C; ch++) {
            double mu = sum[layer][ch] / cnt, v = sq[layer][ch] / cnt - mu * mu;
            char what[64];
            snprintf(what, sizeof what, "bn%d population mean[%d]", layer + 1, ch);
            CHECK_CLOSE(mean[ch], mu, 1e-5, 1e-4, what);
            snprintf(what, sizeof what, "bn%d population variance[%d]", layer + 1, ch);
            CHECK_CLOSE(var[ch], v, 1e-5, 1e-4, what);
        }
    }
    mela_exec_free(e), mela_plan_free(pl), mela_graph_free(g);

    /* fixed statistics equal to a batch's own give batch mode's output */
    g = mela_graph_new();
    for (int v = 0; v < mela_layout_count(L); v++)
        w[v] = mela_param(g, L, v);
    x = mela_input(g, "x", MELA_SHAPE(B, 1, 8, 8));
    mela_node bm[2], bv[2];
    mela_bn_mode collect = {NULL, NULL, bm, bv};
    mela_node batch = mela_model_body_bn(m, g, w, x, &collect);
    mela_bn_mode fixed = {bm, bv, NULL, NULL};
    mela_node fix = mela_model_body_bn(m, g, w, x, &fixed);
    mela_node o2[2] = {batch, fix};
    pl = mela_plan_new(g, 2, o2);
    e = mela_exec_new(pl);
    mela_exec_bind_params(e, theta);
    mela_exec_bind(e, x, xb);
    CHECK(mela_exec_run(e) == 0, "fixed-statistics graph: %s", mela_last_error());
    const float *yb = mela_exec_value(e, batch), *yf = mela_exec_value(e, fix);
    double worst = 0;
    for (int i = 0; i < B * C * 4; i++)
        worst = fmax(worst, fabs(yb[i] - yf[i]));
    CHECK(worst < 1e-4, "fixed mode with the batch's statistics = batch mode (max diff %.2g)", worst);
    mela_exec_free(e), mela_plan_free(pl), mela_graph_free(g);

    /* a query's scores depend on the support and that query only */
    mela_task t;
    mela_tasks_opts eo = {.kind = MELA_TASKS_EPISODES, .spec = c.test, .seed = 3, .slots = 1};
    mela_tasks *es = mela_tasks_new(d.ds, &d.test, &eo);
    mela_tasks_get(es, 0, 0, &t);
    float q2[2 * 64], out1[4], out2[4];
    memcpy(q2, t.xq, sizeof q2);
    mela_task t2 = t;
    t2.xq = q2;
    CHECK(mela_metric_evaluate(mt, theta, &t, 0, NULL, NULL, out1) == 0, "evaluate: %s", mela_last_error());
    for (int i = 64; i < 128; i++)
        q2[i] = 1.0f - q2[i]; /* the other query replaced */
    mela_metric_evaluate(mt, theta, &t2, 0, NULL, NULL, out2);
    CHECK(out1[0] == out2[0] && out1[1] == out2[1], "query 0's scores do not depend on query 1 "
          "(%g %g / %g %g)", out1[0], out1[1], out2[0], out2[1]);
    if (kind == MELA_METRIC_SIAMESE) {
        double p;
        CHECK(mela_metric_compare(mt, theta, t.xq, t.xs, &p) == 0, "compare: %s", mela_last_error());
        CHECK_CLOSE(out1[0], p, 1e-6, 1e-5, "compare(a, b) = a's episode score against support b");
    }
    mela_tasks_free(es);
    mela_tasks_free(ts);
    free(xb), free(theta);
    mela_metric_free(mt);
    mela_model_free(m);
    synth_close(&d);
}

/* One training episode in blocks of 8 images (a meta-batch of one over a
 * Conv-4 embedding, spread over MPI processes: blocked.c): the same
 * gradient and loss as the whole episode's graph (whose gradient is checked
 * against finite differences above and in test_grad), up to rounding; the
 * same bits on 1, 2, 3 and 4 threads (blocks spread over them). 21 or 22
 * images: three blocks, the last of 5 or 6. */
static void test_blocked(int kind, int maxpool)
{
    static const char *names[] = {"ProtoNets", "Matching", "Siamese"};
    mela_model *m = mela_conv4_new(1, 8, 6, 2, 0, maxpool);
    mela_metric_config c = {.kind = kind, .train = {3, 2, 5, 0}, .test = {3, 1, 1, 0}, .pairs = 11,
                            .scale = kind == MELA_METRIC_MATCHING ? 5 : 0,
                            .learn_scale = kind == MELA_METRIC_MATCHING};
    mela_metric *mt = mela_metric_new(m, &c);
    CHECK(mt != NULL, "metric learner: %s", mela_last_error());
    if (!mt)
        return;
    const mela_layout *L = mela_metric_layout(mt);
    size_t n = mela_layout_size(L);
    float *theta = calloc(n, sizeof *theta), *g[5];
    for (int k = 0; k < 5; k++)
        g[k] = calloc(n, sizeof *g[k]);
    mela_rng r = mela_rng_new(11 + kind);
    mela_metric_init(mt, theta, &r);
    for (size_t j = 0; j < n; j++) /* gamma and beta away from 1 and 0 too */
        theta[j] += 0.2f * mela_rng_normal(&r);
    int n1 = kind == MELA_METRIC_SIAMESE ? 11 : 6, n2 = kind == MELA_METRIC_SIAMESE ? 11 : 15;
    float x1[11 * 64], x2[15 * 64], y1[11], y2[15];
    for (int i = 0; i < n1 * 64; i++)
        x1[i] = mela_rng_normal(&r);
    for (int i = 0; i < n2 * 64; i++)
        x2[i] = mela_rng_normal(&r);
    for (int i = 0; i < n1; i++)
        y1[i] = (float)(kind == MELA_METRIC_SIAMESE ? i % 2 : i % 3);
    for (int i = 0; i < n2; i++)
        y2[i] = (float)(i % 3);
    mela_task t = {x1, y1, x2, y2};
    double loss[5];
    CHECK(mela_metric_blocked_(mt, 1, -1) == 1 && mela_metric_blocked_(mt, 2, -1) == 0,
          "%s: one Conv-4 episode goes in blocks, a meta-batch of two does not", names[kind]);
    int ok = mela_metric_grad(mt, theta, 1, &t, 1, g[0], &loss[0], NULL) == 0 &&
             mela_metric_grad(mt, theta, 1, &t, 2, g[1], &loss[1], NULL) == 0 &&
             mela_metric_grad(mt, theta, 1, &t, 3, g[3], &loss[3], NULL) == 0 &&
             mela_metric_grad(mt, theta, 1, &t, 4, g[4], &loss[4], NULL) == 0;
    mela_metric_blocked_(mt, 1, 0);
    ok = ok && mela_metric_grad(mt, theta, 1, &t, 1, g[2], &loss[2], NULL) == 0;
    mela_metric_blocked_(mt, 1, 1);
    CHECK(ok, "%s: gradients: %s", names[kind], mela_last_error());
    char what[120];
    snprintf(what, sizeof what, "%s (%s): blocked loss against the whole episode's", names[kind],
             maxpool ? "max-pool" : "stride 2");
    CHECK_CLOSE(loss[0], loss[2], 1e-6, 1e-5, what);
    snprintf(what, sizeof what, "%s (%s): blocked gradient against the whole episode's", names[kind],
             maxpool ? "max-pool" : "stride 2");
    CHECK_ARRAY(g[0], g[2], n, 1e-5, 1e-3, what);
    double norm = 0;
    for (size_t j = 0; j < n; j++)
        norm += (double)g[0][j] * g[0][j];
    CHECK(norm > 1e-6, "%s: a gradient that is not zero (%g)", names[kind], norm);
    for (int k = 1; k < 5; k += k == 1 ? 2 : 1)
        CHECK(!memcmp(g[0], g[k], n * sizeof *g[0]) && loss[0] == loss[k],
              "%s: blocked gradient, the same bits on 1 and %d threads", names[kind], k == 1 ? 2 : k);
    /* --profile: every block's steps counted under the ops they replace:
     * a convolution per layer and block, its dx on every layer but the
     * first, so conv2d's calls exceed conv2d_dx's by the blocks (3) */
    taskpool *tp = mela_metric_pool_(mt);
    tp_set_profiling(tp, 1);
    int nop = mela_op_count(), fwd = -1, dx = -1;
    double *sec = calloc(nop, sizeof *sec);
    long *calls = calloc(nop, sizeof *calls);
    for (int i = 0; i < nop; i++)
        fwd = strcmp(mela_op_name(i), "conv2d") ? fwd : i, dx = strcmp(mela_op_name(i), "conv2d_dx") ? dx : i;
    ok = mela_metric_grad(mt, theta, 1, &t, 2, g[1], NULL, NULL) == 0;
    tp_profile(tp, sec, calls);
    CHECK(ok && fwd >= 0 && dx >= 0 && calls[fwd] - calls[dx] == 3 && calls[dx] > 0 && sec[fwd] > 0,
          "%s: profile of the blocked step: conv2d %ld calls, conv2d_dx %ld", names[kind], fwd >= 0 ? calls[fwd] : -1,
          dx >= 0 ? calls[dx] : -1);
    tp_set_profiling(tp, 0);
    free(sec), free(calls);
    for (int k = 0; k < 5; k++)
        free(g[k]);
    free(theta);
    mela_metric_free(mt);
    mela_model_free(m);
}

static void test_training(int kind)
{
    static const char *names[] = {"protonet", "matchnet", "siamese"};
    synth_data d;
    synth_open(&d, 21);
    mela_run_config rc;
    synth_config(&rc, names[kind], 120);
    rc.train = (mela_task_spec){10, 1, 3, 0};
    rc.pairs = 32, rc.augment = 0;
    rc.maxpool = 1;
    rc.outer_lr = 0.003f, rc.lr_decay_every = 0;
    mela_run *r;
    double acc = synth_train(&rc, &d, &r);
    printf("%s, synthetic 5-way 1-shot on unseen classes after 120 updates: %.1f%%\n", names[kind], 100 * acc);
    CHECK(acc > 0.6, "%s ends well above chance (20%%): %.1f%% %s", names[kind], 100 * acc,
          acc < 0 ? mela_last_error() : "");
    if (kind == MELA_METRIC_SIAMESE && r) {
        float x1[64], x2[64];
        double p_same = 0, p_diff = 1;
        mela_learner *l = mela_run_learner(r);
        mela_split_image(d.ds, &d.test, 0, 0, x1);
        mela_split_image(d.ds, &d.test, 0, 1, x2);
        mela_learner_compare(l, mela_run_theta(r), x1, x2, &p_same);
        mela_split_image(d.ds, &d.test, 1, 1, x2);
        mela_learner_compare(l, mela_run_theta(r), x1, x2, &p_diff);
        CHECK(p_same > p_diff, "compare: same class %.3f > different class %.3f", p_same, p_diff);
    }
    mela_run_close(r);
    synth_close(&d);
}

/* Background windows: task i is the same in any slot, after any other task
 * (so the same bits for any thread count); its last B query rows are
 * labelled N. Then a seeded short ProtoNet training with 8 background
 * windows per episode: it classifies unseen classes (5-way 1-shot above
 * 60%) and, on episodes of the unseen classes with background windows,
 * answers the 6-way question with "none" (blank paper the prototype of the
 * windows) at 90% or more. (A plain training, printed beside it, does about
 * as well on these easy synthetic windows: the test proves the training, the
 * benchmark (bench/results/find.md) whether it helps on Omniglot scenes.) */
static void test_background_training(void)
{
    synth_data d;
    synth_open(&d, 21);
    enum { B = 8, T = 20 };
    mela_tasks_opts o = {.kind = MELA_TASKS_EPISODES, .spec = {5, 1, 3, 0}, .background = B,
                         .seed = 99, .slots = 2};
    mela_tasks *ts = mela_tasks_new(d.ds, &d.test, &o);
    CHECK(ts != NULL, "background tasks: %s", mela_last_error());
    if (!ts) {
        synth_close(&d);
        return;
    }
    mela_task t0, t1;
    mela_tasks_get(ts, 0, 3, &t0);
    mela_tasks_get(ts, 1, 7, &t1);
    mela_tasks_get(ts, 1, 3, &t1);
    CHECK(!memcmp(t0.xq, t1.xq, (15 + B) * 64 * sizeof(float)) && !memcmp(t0.yq, t1.yq, (15 + B) * sizeof(float)),
          "task 3 with background windows is the same in either slot");
    double ink = 0;
    for (int b = 0; b < B; b++) {
        CHECK(t0.yq[15 + b] == 5, "background row %d is labelled N = 5 (%g)", b, t0.yq[15 + b]);
        for (int p = 0; p < 64; p++)
            ink += t0.xq[(15 + b) * 64 + p];
    }
    CHECK(ink > 0, "background windows are not all blank (ink %g)", ink);
    mela_model *m = mela_conv4_new(1, 8, 16, 2, 0, 1);
    mela_metric_config c = {.kind = MELA_METRIC_PROTO, .train = {5, 1, 3, 0}, .test = {5, 1, 3, 0},
                            .background = B};
    mela_metric *mt = mela_metric_new(m, &c);
    double acc[2], none[2], nl[2] = {0, 0};
    for (int bg = 0; bg < 2; bg++) {
        mela_run_config rc;
        synth_config(&rc, "protonet", 120);
        rc.train = (mela_task_spec){10, 1, 3, 0};
        rc.outer_lr = 0.003f, rc.lr_decay_every = 0;
        rc.background = bg ? B : 0;
        mela_run *r;
        acc[bg] = synth_train(&rc, &d, &r);
        float *grad = calloc(mela_layout_size(mela_metric_layout(mt)), sizeof *grad);
        none[bg] = 0;
        for (int i = 0; r && i < T; i++) {
            mela_task t;
            double a = 0, l = 0;
            mela_tasks_get(ts, 0, (uint64_t)i, &t);
            mela_metric_grad(mt, mela_run_theta(r), 1, &t, 1, grad, &l, &a);
            none[bg] += a / T;
            nl[bg] += l / T;
        }
        free(grad);
        mela_run_close(r);
        printf("protonet%s: 5-way 1-shot on unseen classes %.1f%%, 6-way with \"none\" %.1f%% (loss %.3f)\n",
               bg ? " --background 8" : "", 100 * acc[bg], 100 * none[bg], nl[bg]);
        CHECK(acc[bg] > 0.6, "protonet (background %d) ends well above chance: %.1f%%", rc.background,
              100 * acc[bg]);
    }
    CHECK(none[1] >= 0.9, "trained with background windows, 6-way with \"none\" on unseen classes: "
          "%.1f%% (plain training: %.1f%%)", 100 * none[1], 100 * none[0]);
    mela_metric_free(mt);
    mela_model_free(m);
    mela_tasks_free(ts);
    synth_close(&d);
}

/* Augmented episodes (--augment 1): every support and query image distorted
 * (mela_affine_distort), task i the same in any slot and after any other
 * task, its labels the plain task's; the shuffled support a permutation of
 * the augmented one, and with background windows the query rows the
 * augmented ones. Then a seeded short ProtoNet training on augmented
 * episodes classifies unseen classes (5-way 1-shot above 60%), and a
 * gradient-based learner refuses the option. */
static void test_augmented_episodes(void)
{
    synth_data d;
    synth_open(&d, 21);
    enum { N = 5, Q = 3, B = 4, IMG = 64 };
    mela_tasks_opts o = {.kind = MELA_TASKS_EPISODES, .spec = {N, 1, Q, 0}, .seed = 99, .slots = 2};
    mela_tasks *plain = mela_tasks_new(d.ds, &d.test, &o);
    o.augment = 1;
    mela_tasks *aug = mela_tasks_new(d.ds, &d.test, &o);
    o.shuffle_support = 1;
    mela_tasks *shuf = mela_tasks_new(d.ds, &d.test, &o);
    o.shuffle_support = 0, o.background = B;
    mela_tasks *bg = mela_tasks_new(d.ds, &d.test, &o);
    CHECK(plain && aug && shuf && bg, "augmented tasks: %s", mela_last_error());
    if (!plain || !aug || !shuf || !bg) {
        mela_tasks_free(plain), mela_tasks_free(aug), mela_tasks_free(shuf), mela_tasks_free(bg);
        synth_close(&d);
        return;
    }
    static float xs[N * IMG], xq[N * Q * IMG];
    mela_task tp, t0, t1, ts_, tb;
    mela_tasks_get(aug, 0, 3, &t0);
    memcpy(xs, t0.xs, sizeof xs), memcpy(xq, t0.xq, sizeof xq);
    mela_tasks_get(aug, 1, 7, &t1);
    mela_tasks_get(aug, 1, 3, &t1);
    CHECK(!memcmp(xs, t1.xs, sizeof xs) && !memcmp(xq, t1.xq, sizeof xq),
          "augmented task 3 is the same in either slot, after another task");
    mela_tasks_get(plain, 0, 3, &tp);
    CHECK(!memcmp(tp.ys, t1.ys, N * sizeof(float)) && !memcmp(tp.yq, t1.yq, N * Q * sizeof(float)),
          "augmented task 3 has the plain task's labels");
    int changed = 0;
    double ink_plain = 0, ink_aug = 0;
    for (int j = 0; j < N + N * Q; j++) {
        const float *a = j < N ? t1.xs + j * IMG : t1.xq + (j - N) * IMG;
        const float *p = j < N ? tp.xs + j * IMG : tp.xq + (j - N) * IMG;
        changed += memcmp(a, p, IMG * sizeof(float)) != 0;
        for (int k = 0; k < IMG; k++)
            ink_plain += p[k], ink_aug += a[k];
    }
    CHECK(changed >= (N + N * Q) / 2, "most images are distorted (%d of %d)", changed, N + N * Q);
    CHECK(ink_aug > 0.5 * ink_plain && ink_aug < 1.5 * ink_plain,
          "distortions keep the drawings (ink %g, plain %g)", ink_aug, ink_plain);
    mela_tasks_get(shuf, 0, 3, &ts_);
    int found = 0;
    for (int j = 0; j < N; j++)
        for (int k = 0; k < N; k++)
            if (!memcmp(ts_.xs + j * IMG, xs + k * IMG, IMG * sizeof(float)) && ts_.ys[j] == t1.ys[k]) {
                found++;
                break;
            }
    CHECK(found == N, "the shuffled support is a permutation of the augmented one (%d of %d rows)", found, N);
    mela_tasks_get(bg, 0, 3, &tb);
    CHECK(!memcmp(tb.xq, xq, sizeof xq), "with background windows, the query rows are the augmented ones");
    for (int b = 0; b < B; b++)
        CHECK(tb.yq[N * Q + b] == N, "background row %d labelled N (%g)", b, tb.yq[N * Q + b]);
    mela_tasks_free(plain), mela_tasks_free(aug), mela_tasks_free(shuf), mela_tasks_free(bg);

    mela_run_config rc;
    synth_config(&rc, "protonet", 120);
    rc.train = (mela_task_spec){10, 1, 3, 0};
    rc.outer_lr = 0.003f, rc.lr_decay_every = 0;
    rc.augment = 1;
    double acc = synth_train(&rc, &d, NULL);
    printf("protonet --augment 1, synthetic 5-way 1-shot on unseen classes after 120 updates: %.1f%%\n",
           100 * acc);
    CHECK(acc > 0.6, "protonet trained on augmented episodes ends well above chance: %.1f%% %s", 100 * acc,
          acc < 0 ? mela_last_error() : "");
    synth_config(&rc, "maml", 10);
    rc.augment = 1;
    CHECK(mela_run_check(&rc) != 0 && strstr(mela_last_error(), "augment"),
          "maml refuses --augment: %s", mela_last_error());
    synth_close(&d);
}

int main(void)
{
    for (int k = MELA_METRIC_PROTO; k <= MELA_METRIC_SIAMESE; k++)
        test_by_hand(k, 0, 0);
    test_by_hand(MELA_METRIC_MATCHING, 7.5f, 0);
    test_by_hand(MELA_METRIC_MATCHING, 10, 1);
    test_siamese_grad();
    test_background_by_hand();
    test_background_training();
    test_augmented_episodes();
    for (int k = MELA_METRIC_PROTO; k <= MELA_METRIC_SIAMESE; k++)
        test_population_bn(k);
    for (int k = MELA_METRIC_PROTO; k <= MELA_METRIC_SIAMESE; k++)
        test_blocked(k, 1);
    test_blocked(MELA_METRIC_PROTO, 0);
    for (int k = MELA_METRIC_PROTO; k <= MELA_METRIC_SIAMESE; k++)
        test_training(k);
    mela_model *m = mela_conv4_new(1, 28, 8, 2, 5, 1);
    mela_metric_config c = {.kind = MELA_METRIC_PROTO, .train = {5, 1, 1, 0},
                            .test = {5, 1, 1, 0}};
    CHECK(mela_metric_new(m, &c) == NULL && strstr(mela_last_error(), "head"),
          "a model with a head is refused: %s", mela_last_error());
    mela_model_free(m);
    c.scale = 5;
    m = mela_conv4_new(1, 28, 8, 2, 0, 1);
    CHECK(mela_metric_new(m, &c) == NULL && strstr(mela_last_error(), "scale"),
          "a scale for ProtoNets is refused: %s", mela_last_error());
    mela_model_free(m);
    return check_finish();
}
