/* test_finn.c - Finn et al.'s Omniglot network (mela_finn_new, `--model
 * finn`): its weight count against theirs, its forward pass at 28x28 and
 * MAML's exact and first-order meta-gradients through it against PyTorch
 * (tests/fixtures/make_finn_fixture.py writes the fixture, with TensorFlow's
 * 'SAME' padding computed per layer), its batch norm with fixed statistics,
 * and its initialisation. */
#include <math.h>

#include "fixture.h"
#include "mela_nn.h"

static size_t weights(const mela_model *m)
{
    const mela_layout *L = mela_model_layout(m);
    size_t n = 0;
    for (int i = 0; i < mela_layout_count(L); i++)
        n += mela_shape_numel(mela_layout_shape(L, i));
    return n;
}

/* Finn et al.'s weight dictionary for 5-way Omniglot: conv1 3x3x1x64 + 64,
 * conv2..4 3x3x64x64 + 64, w5 64x5 + 5: 111,749; and tf.contrib's batch
 * norm adds a shift of 64 per block: 112,005. */
static void test_count(void)
{
    mela_model *m = mela_finn_new(1, 28, 64, 4, 5);
    CHECK(m != NULL, "finn: %s", mela_last_error());
    size_t theirs = (9 * 64 + 64) + 3 * (9 * 64 * 64 + 64) + (64 * 5 + 5);
    CHECK(theirs == 111749, "hand count %zu", theirs);
    CHECK(weights(m) == theirs + 4 * 64, "finn has %zu weights, Finn et al. 111,749 + 256 shifts", weights(m));
    CHECK(weights(m) == 112005, "finn has %zu weights", weights(m));
    CHECK(mela_model_features(m) == 64 && mela_model_head_first(m) == 12 && mela_model_bn_layers(m) == 4 &&
              mela_model_bn_channels(m, 3) == 64 && mela_model_outputs(m) == 5,
          "features %d, head_first %d, bn layers %d", mela_model_features(m), mela_model_head_first(m),
          mela_model_bn_layers(m));
    mela_model_free(m);
    mela_model *e = mela_finn_new(1, 28, 64, 4, 0); /* an embedding: no head */
    CHECK(e && weights(e) == 112005 - 325 && mela_model_features(e) == 64 &&
              mela_model_head_first(e) == 12,
          "finn embedding: %zu weights", e ? weights(e) : 0);
    mela_model_free(e);
    CHECK(mela_finn_new(1, 28, 0, 4, 5) == NULL && strstr(mela_last_error(), "finn"),
          "width 0 refused: %s", mela_last_error());
}

/* theta of model m from the fixture's records PREFIX.VIEW; 0 or -1 */
static int fill(const mela_model *m, const char *prefix, float *theta)
{
    const mela_layout *L = mela_model_layout(m);
    for (int i = 0; i < mela_layout_count(L); i++) {
        char key[96];
        snprintf(key, sizeof key, "%s.%s", prefix, mela_layout_name(L, i));
        int n = 0;
        const float *p = fixture_get(key, &n);
        CHECK(p && (size_t)n == mela_shape_numel(mela_layout_shape(L, i)), "fixture %s", key);
        if (!p || (size_t)n != mela_shape_numel(mela_layout_shape(L, i)))
            return -1;
        memcpy(theta + mela_layout_offset(L, i), p, n * sizeof *p);
    }
    return 0;
}

/* Four blocks on 28x28 (paddings (0,1), (0,1), (1,1), (0,1)), then the mean
 * of the 2x2 maps: the logits against PyTorch; and the same body with its
 * batch norm fixed to this batch's own statistics gives the same features. */
static void test_forward(void)
{
    mela_model *m = mela_finn_new(1, 28, 2, 4, 3);
    float *theta = calloc(mela_model_size(m), sizeof *theta);
    const float *x = fixture_get("big.x", NULL), *want = fixture_get("big.logits", NULL);
    if (fill(m, "big", theta) || !x || !want) {
        CHECK(0, "fixture records big.*");
        free(theta), mela_model_free(m);
        return;
    }
    mela_graph *g = mela_graph_new();
    mela_node w[MELA_MODEL_MAX_PARAMS], mean[4], var[4];
    mela_model_params(m, g, w);
    mela_node in = mela_input(g, "x", mela_model_input_shape(m, 2));
    mela_node logits = mela_model_forward(m, g, w, in);
    mela_bn_mode gather = {NULL, NULL, mean, var}, fixed = {mean, var, NULL, NULL};
    mela_node h1 = mela_model_body_bn(m, g, w, in, &gather);
    mela_node h2 = mela_model_body_bn(m, g, w, in, &fixed);
    CHECK(!mela_graph_error(g), "graph: %s", mela_graph_error(g));
    mela_shape hs = mela_node_shape(g, h1);
    CHECK(hs.nd == 2 && hs.d[0] == 2 && hs.d[1] == 2, "features of shape (2, 2)");
    mela_node outs[3] = {logits, h1, h2};
    mela_plan *p = mela_plan_new(g, 3, outs);
    mela_exec *e = mela_exec_new(p);
    mela_exec_bind_params(e, theta);
    mela_exec_bind(e, in, x);
    CHECK(mela_exec_run(e) == 0, "run: %s", mela_last_error());
    CHECK_ARRAY(mela_exec_value(e, logits), want, 6, 1e-5, 1e-4, "28x28 logits vs PyTorch");
    CHECK_ARRAY(mela_exec_value(e, h2), mela_exec_value(e, h1), 4, 1e-5, 1e-4,
                "batch norm fixed to the batch's statistics == batch statistics");
    mela_exec_free(e);
    mela_plan_free(p);
    mela_graph_free(g);
    free(theta);
    mela_model_free(m);
}

/* Theirs: convolutions Xavier-uniform (bound sqrt(6 / (fan_in + fan_out))
 * over 3x3 windows), the head N(0, 1), biases and shifts 0. */
static void test_init(void)
{
    mela_model *m = mela_finn_new(1, 28, 64, 4, 5);
    const mela_layout *L = mela_model_layout(m);
    float *theta = calloc(mela_model_size(m), sizeof *theta);
    mela_rng r = mela_rng_new(7);
    mela_model_init(m, theta, &r);
    for (int i = 0; i < mela_layout_count(L); i++) {
        const char *name = mela_layout_name(L, i);
        mela_shape s = mela_layout_shape(L, i);
        const float *p = theta + mela_layout_offset(L, i);
        size_t n = mela_shape_numel(s);
        double sum = 0, sq = 0, amax = 0;
        for (size_t j = 0; j < n; j++)
            sum += p[j], sq += (double)p[j] * p[j], amax = fmax(amax, fabs(p[j]));
        double mean = sum / n, sd = sqrt(sq / n - mean * mean);
        if (strstr(name, "bias")) {
            CHECK(amax == 0, "%s is 0 (max |v| %g)", name, amax);
        } else if (!strcmp(name, "head.weight")) {
            /* 320 draws: the mean within 4 standard errors of 0, the sd of 1 */
            CHECK(fabs(mean) < 4 / sqrt(n) && fabs(sd - 1) < 0.16, "head N(0, 1): mean %g sd %g", mean, sd);
        } else {
            double bound = sqrt(6.0 / (9.0 * s.d[1] + 9.0 * s.d[0]));
            CHECK(amax <= bound && amax > 0.95 * bound && fabs(sd - bound / sqrt(3)) < 0.1 * bound,
                  "%s Xavier-uniform: max |w| %g, sd %g, bound %g", name, amax, sd, bound);
        }
    }
    free(theta);
    mela_model_free(m);
}

int main(void)
{
    test_count();
    test_init();
    if (fixture_load("finn_torch.txt"))
        return check_finish();
    test_forward();
    /* 10x10, 3 blocks (paddings (0,1), (1,1), (1,1)), 2-way 2-shot, two steps */
    mela_model *m = mela_finn_new(1, 10, 3, 3, 2);
    fixture_check_maml(m, (mela_task_spec){2, 2, 2, 0}, 2, 0.3f);
    mela_model_free(m);
    fixture_free();
    return check_finish();
}
