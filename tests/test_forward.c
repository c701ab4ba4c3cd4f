/* test_forward.c - the forward value of each graph op against a naive
 * reference computed here in double precision (conv, pool and GEMM kernels
 * are also checked against their _ref twins in test_kernels.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"
#include "mela.h"

static mela_rng rng;

static float *randn(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = mela_rng_normal(&rng) * scale;
    return x;
}

/* Runs y = f(inputs) for a one-output graph and returns a copy of y. */
static float *eval(mela_graph *g, mela_node y, int n, const mela_node *in, float **data)
{
    CHECK(mela_graph_error(g) == NULL, "graph: %s", mela_graph_error(g));
    mela_plan *p = mela_plan_new(g, 1, &y);
    mela_exec *e = mela_exec_new(p);
    for (int k = 0; k < n; k++)
        mela_exec_bind(e, in[k], data[k]);
    CHECK(mela_exec_run(e) == 0, "run: %s", mela_last_error());
    size_t ny = mela_shape_numel(mela_node_shape(g, y));
    float *out = malloc(ny * sizeof *out);
    memcpy(out, mela_exec_value(e, y), ny * sizeof *out);
    mela_exec_free(e);
    mela_plan_free(p);
    return out;
}

static void test_broadcast_binary(void)
{
    /* (2,3,4,5) op (1,3,1,1), (3,4) op (4), (2,1) op (1,3) */
    mela_shape as[] = {MELA_SHAPE(2, 3, 4, 5), MELA_SHAPE(3, 4), MELA_SHAPE(2, 1), MELA_SHAPE(1)};
    mela_shape bs[] = {MELA_SHAPE(1, 3, 1, 1), MELA_SHAPE(4), MELA_SHAPE(1, 3), MELA_SHAPE(2, 2)};
    for (int c = 0; c < 4; c++)
        for (int op = 0; op < 4; op++) {
            mela_graph *g = mela_graph_new();
            mela_node a = mela_input(g, "a", as[c]), b = mela_input(g, "b", bs[c]);
            mela_node y = op == 0 ? mela_add(g, a, b) : op == 1 ? mela_sub(g, a, b)
                        : op == 2 ? mela_mul(g, a, b) : mela_div(g, a, b);
            mela_shape ys = mela_node_shape(g, y);
            float *A = randn(mela_shape_numel(as[c]), 1), *B = randn(mela_shape_numel(bs[c]), 1);
            for (size_t i = 0; i < mela_shape_numel(bs[c]); i++)
                B[i] = B[i] > 0 ? B[i] + 0.5f : B[i] - 0.5f;
            float *Y = eval(g, y, 2, (mela_node[]){a, b}, (float *[]){A, B});
            /* reference: index arithmetic on right-aligned 4-D shapes */
            int da[4], db[4], dy[4];
            for (int i = 0; i < 4; i++) {
                da[i] = 4 - i > as[c].nd ? 1 : as[c].d[i - (4 - as[c].nd)];
                db[i] = 4 - i > bs[c].nd ? 1 : bs[c].d[i - (4 - bs[c].nd)];
                dy[i] = 4 - i > ys.nd ? 1 : ys.d[i - (4 - ys.nd)];
            }
            size_t o = 0;
            int bad = 0;
            for (int i0 = 0; i0 < dy[0]; i0++)
                for (int i1 = 0; i1 < dy[1]; i1++)
                    for (int i2 = 0; i2 < dy[2]; i2++)
                        for (int i3 = 0; i3 < dy[3]; i3++, o++) {
                            int ia[4] = {i0 % da[0], i1 % da[1], i2 % da[2], i3 % da[3]};
                            int ib[4] = {i0 % db[0], i1 % db[1], i2 % db[2], i3 % db[3]};
                            double x1 = A[((ia[0] * da[1] + ia[1]) * da[2] + ia[2]) * da[3] + ia[3]];
                            double x2 = B[((ib[0] * db[1] + ib[1]) * db[2] + ib[2]) * db[3] + ib[3]];
                            double want = op == 0 ? x1 + x2 : op == 1 ? x1 - x2 : op == 2 ? x1 * x2 : x1 / x2;
                            bad += fabs(Y[o] - want) > 1e-6 * (1 + fabs(want));
                        }
            CHECK(bad == 0, "broadcast case %d op %d: %d elements differ", c, op, bad);
            free(A), free(B), free(Y);
            mela_graph_free(g);
        }
}

static void test_reductions(void)
{
    mela_graph *g = mela_graph_new();
    mela_node x = mela_input(g, "x", MELA_SHAPE(3, 4, 5, 6));
    mela_node s1 = mela_sum_to(g, x, MELA_SHAPE(1, 4, 1, 1));
    mela_node s2 = mela_sum_axis(g, x, 2);
    mela_node s3 = mela_mean(g, x);
    float *X = randn(360, 1);
    float *Y1 = eval(g, s1, 1, &x, &X), *Y2 = eval(g, s2, 1, &x, &X), *Y3 = eval(g, s3, 1, &x, &X);
    double c[4] = {0}, all = 0, ax[3][4][6] = {{{0}}};
    for (int n = 0; n < 3; n++)
        for (int ch = 0; ch < 4; ch++)
            for (int h = 0; h < 5; h++)
                for (int w = 0; w < 6; w++) {
                    double v = X[((n * 4 + ch) * 5 + h) * 6 + w];
                    c[ch] += v;
                    all += v;
                    ax[n][ch][w] += v;
                }
    for (int ch = 0; ch < 4; ch++)
        CHECK_CLOSE(Y1[ch], c[ch], 1e-4, 1e-5, "sum_to per channel");
    for (int n = 0; n < 3; n++)
        for (int ch = 0; ch < 4; ch++)
            for (int w = 0; w < 6; w++)
                CHECK_CLOSE(Y2[(n * 4 + ch) * 6 + w], ax[n][ch][w], 1e-5, 1e-5, "sum_axis 2");
    CHECK_CLOSE(Y3[0], all / 360, 1e-6, 1e-5, "mean");
    free(X), free(Y1), free(Y2), free(Y3);
    mela_graph_free(g);
}

static void test_nn_forward(void)
{
    enum { N = 6, C = 5, H = 3, W = 4 };
    mela_graph *g = mela_graph_new();
    mela_node x = mela_input(g, "x", MELA_SHAPE(N, C, H, W));
    mela_node gm = mela_input(g, "gamma", MELA_SHAPE(C)), bt = mela_input(g, "beta", MELA_SHAPE(C));
    mela_node bn = mela_batchnorm(g, x, gm, bt, 1e-5f);
    float *X = randn(N * C * H * W, 2), *G = randn(C, 1), *B = randn(C, 1);
    float *Y = eval(g, bn, 3, (mela_node[]){x, gm, bt}, (float *[]){X, G, B});
    for (int ch = 0; ch < C; ch++) {
        double m = 0, v = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < H * W; i++)
                m += X[(n * C + ch) * H * W + i];
        m /= N * H * W;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < H * W; i++)
                v += pow(X[(n * C + ch) * H * W + i] - m, 2);
        v /= N * H * W;
        int bad = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < H * W; i++) {
                size_t k = (n * C + ch) * H * W + i;
                double want = G[ch] * (X[k] - m) / sqrt(v + 1e-5) + B[ch];
                bad += fabs(Y[k] - want) > 1e-4;
            }
        CHECK(bad == 0, "batchnorm channel %d: %d elements differ", ch, bad);
    }
    free(X), free(G), free(B), free(Y);
    mela_graph_free(g);

    /* softmax family, cross-entropy, accuracy, distances */
    enum { R = 4, K = 3, D = 5 };
    g = mela_graph_new();
    mela_node z = mela_input(g, "z", MELA_SHAPE(R, K)), lab = mela_input(g, "l", MELA_SHAPE(R));
    mela_node a = mela_input(g, "a", MELA_SHAPE(R, D)), b = mela_input(g, "b", MELA_SHAPE(K, D));
    mela_node lsm = mela_log_softmax(g, z), ce = mela_cross_entropy(g, z, lab);
    mela_node acc = mela_accuracy(g, z, lab), sq = mela_sqdist(g, a, b), cs = mela_cosine(g, a, b, 0);
    mela_node bce = mela_bce_with_logits(g, z, mela_sigmoid(g, mela_square(g, z)));
    float *Z = randn(R * K, 3), L[R] = {0, 2, 1, 2}, *Av = randn(R * D, 1), *Bv = randn(K * D, 1);
    mela_node ins[4] = {z, lab, a, b};
    float *data[4] = {Z, L, Av, Bv};
    float *Ylsm = eval(g, lsm, 4, ins, data), *Yce = eval(g, ce, 4, ins, data);
    float *Yacc = eval(g, acc, 4, ins, data), *Ysq = eval(g, sq, 4, ins, data);
    float *Ycs = eval(g, cs, 4, ins, data), *Ybce = eval(g, bce, 4, ins, data);
    double ce_ref = 0, acc_ref = 0, bce_ref = 0;
    for (int r = 0; r < R; r++) {
        double mx = -1e30, s = 0;
        int am = 0;
        for (int k = 0; k < K; k++) {
            mx = fmax(mx, Z[r * K + k]);
            if (Z[r * K + k] > Z[r * K + am])
                am = k;
        }
        for (int k = 0; k < K; k++)
            s += exp(Z[r * K + k] - mx);
        for (int k = 0; k < K; k++) {
            double zz = Z[r * K + k];
            CHECK_CLOSE(Ylsm[r * K + k], zz - mx - log(s), 1e-5, 1e-5, "log_softmax");
            double t = 1 / (1 + exp(-zz * zz));
            bce_ref -= t * log(1 / (1 + exp(-zz))) + (1 - t) * log(1 - 1 / (1 + exp(-zz)));
        }
        ce_ref -= Z[r * K + (int)L[r]] - mx - log(s);
        acc_ref += am == (int)L[r];
        for (int k = 0; k < K; k++) {
            double d2 = 0, dot = 0, na = 0, nb = 0;
            for (int j = 0; j < D; j++) {
                double u = Av[r * D + j], v = Bv[k * D + j];
                d2 += (u - v) * (u - v), dot += u * v, na += u * u, nb += v * v;
            }
            CHECK_CLOSE(Ysq[r * K + k], d2, 1e-4, 1e-4, "sqdist");
            CHECK_CLOSE(Ycs[r * K + k], dot / sqrt(na * nb), 1e-5, 1e-4, "cosine");
        }
    }
    CHECK_CLOSE(Yce[0], ce_ref / R, 1e-5, 1e-5, "cross_entropy");
    CHECK_CLOSE(Yacc[0], acc_ref / R, 0, 0, "accuracy");
    CHECK_CLOSE(Ybce[0], bce_ref / (R * K), 1e-5, 1e-4, "bce_with_logits");
    free(Z), free(Av), free(Bv), free(Ylsm), free(Yce), free(Yacc), free(Ysq), free(Ycs), free(Ybce);
    mela_graph_free(g);
}

static void test_unary_and_shapes(void)
{
    mela_graph *g = mela_graph_new();
    mela_node x = mela_input(g, "x", MELA_SHAPE(2, 6));
    mela_node ys[] = {mela_relu(g, x), mela_leaky_relu(g, x, 0.2f), mela_sigmoid(g, x),
                      mela_tanh(g, x), mela_exp(g, x), mela_abs(g, x), mela_square(g, x),
                      mela_softplus(g, x), mela_log(g, mela_abs(g, x)), mela_sqrt(g, mela_abs(g, x)),
                      mela_concat(g, x, x), mela_slice(g, mela_concat(g, x, mela_neg(g, x)), 2, 2)};
    float *X = randn(12, 3);
    X[0] = 40; X[1] = -40; /* softplus and sigmoid far out */
    for (size_t k = 0; k < sizeof ys / sizeof ys[0]; k++) {
        float *Y = eval(g, ys[k], 1, &x, &X);
        int bad = 0;
        for (int i = 0; i < 12; i++) {
            double v = X[i], want;
            switch (k) {
            case 0: want = v > 0 ? v : 0; break;
            case 1: want = v > 0 ? v : 0.2 * v; break;
            case 2: want = 1 / (1 + exp(-v)); break;
            case 3: want = tanh(v); break;
            case 4: want = exp(v); break;
            case 5: want = fabs(v); break;
            case 6: want = v * v; break;
            case 7: want = log1p(exp(v)); break;
            case 8: want = log(fabs(v)); break;
            case 9: want = sqrt(fabs(v)); break;
            case 10: want = v; break;
            default: want = -v; break;
            }
            bad += !(fabs(Y[i] - want) <= 1e-5 * (1 + fabs(want)));
            if (k == 10)
                bad += Y[12 + i] != X[i];
        }
        CHECK(bad == 0, "unary/shape op %zu: %d elements differ", k, bad);
        free(Y);
    }
    free(X);
    mela_graph_free(g);
}

static void test_kernel_refs(void)
{
    /* mk_binary and mk_sum_to against their naive twins on awkward strides */
    int shape[4] = {3, 1, 5, 7};
    long as[4] = {35, 0, 7, 1}, bs[4] = {0, 0, 1, 0};
    float *A = randn(105, 1), *B = randn(5, 1), y1[105], y2[105];
    for (int op = 0; op < 4; op++) {
        mk_binary(op, y1, A, as, B, bs, shape);
        mk_binary_ref(op, y2, A, as, B, bs, shape);
        CHECK_ARRAY(y1, y2, 105, 0, 0, "mk_binary vs ref");
    }
    int xs[4] = {3, 4, 5, 7};
    long ys[4] = {0, 7, 0, 1};
    float *X = randn(420, 1), s1[28], s2[28];
    mk_sum_to(s1, 28, X, xs, ys);
    mk_sum_to_ref(s2, 28, X, xs, ys);
    CHECK_ARRAY(s1, s2, 28, 1e-5, 1e-5, "mk_sum_to vs ref");
    free(A), free(B), free(X);
}

/* pad2d: zero rows and columns around x, or a crop for negative amounts,
 * against index arithmetic */
static void test_pad2d(void)
{
    static const int pads[][4] = {{0, 1, 0, 1}, {1, 1, 1, 1}, {-1, 2, 0, -2}, {2, -1, -1, 0}};
    for (int c = 0; c < 4; c++) {
        const int *p = pads[c];
        mela_graph *g = mela_graph_new();
        mela_node x = mela_input(g, "x", MELA_SHAPE(2, 3, 4, 5));
        mela_node y = mela_pad2d(g, x, p[0], p[1], p[2], p[3]);
        int OH = 4 + p[0] + p[1], OW = 5 + p[2] + p[3];
        mela_shape ys = mela_node_shape(g, y);
        CHECK(ys.nd == 4 && ys.d[0] == 2 && ys.d[1] == 3 && ys.d[2] == OH && ys.d[3] == OW,
              "pad2d case %d: shape", c);
        float *X = randn(120, 1), *Y = eval(g, y, 1, &x, &X);
        int bad = 0;
        for (int n = 0; n < 6; n++) /* planes */
            for (int i = 0; i < OH; i++)
                for (int j = 0; j < OW; j++) {
                    int h = i - p[0], w = j - p[2];
                    float want = h >= 0 && h < 4 && w >= 0 && w < 5 ? X[(n * 4 + h) * 5 + w] : 0.0f;
                    bad += Y[(n * OH + i) * OW + j] != want;
                }
        CHECK(bad == 0, "pad2d case %d: %d elements differ", c, bad);
        free(X), free(Y);
        mela_graph_free(g);
    }
    mela_graph *g = mela_graph_new();
    mela_node x = mela_input(g, "x", MELA_SHAPE(1, 1, 3, 3));
    CHECK(mela_pad2d(g, x, 0, 0, 0, 0) == x, "pad2d by nothing is x itself");
    CHECK(mela_pad2d(g, x, -2, -1, 0, 0) == MELA_NONE && strstr(mela_graph_error(g), "pad2d"),
          "an empty result is refused: %s", mela_graph_error(g) ? mela_graph_error(g) : "");
    mela_graph_free(g);
}

int main(void)
{
    rng = mela_rng_new(42);
    test_broadcast_binary();
    test_reductions();
    test_nn_forward();
    test_unary_and_shapes();
    test_kernel_refs();
    test_pad2d();
    return check_finish();
}
