/* test_finn.c - Finn et al.'s Omniglot network (mela_finn_new, `--model
 * finn`): its weight count against theirs, its forward pass at 28x28 and
 * MAML's exact and first-order meta-gradients through it against PyTorch
 * (tests/fixtures/make_finn_fixture.py writes the fixture, with TensorFlow's
 * 'SAME' padding computed per layer), its batch norm with fixed statistics,
 * its initialisation, PyTorch 0.4's initialisation of it and of Conv-4
 * (`--init pytorch-0.4`); and with Omniglot at hand, `mela train --model finn`
 * (a seeded short MAML run that must learn), its checkpoint holding Finn's
 * views and `mela eval` rebuilding the network from it. */
#include <math.h>
#include <sys/stat.h>

#include "fixture.h"
#include "mela_io.h"
#include "mela_learn.h"
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

/* PyTorch 0.4's reset_parameters: every weight and its bias U(+-1/sqrt(fan_in))
 * (fan_in: input channels x 3 x 3, or the head's features), batch-norm
 * scale U(0, 1), shift 0. Snell et al.'s Conv-4 with max-pool (28 -> 1x1x64)
 * with a 5-way head, and Finn's network (no batch-norm scale). */
static void test_init_torch04(void)
{
    mela_model *ms[2] = {mela_conv4_new(1, 28, 64, 4, 5, 1), mela_finn_new(1, 28, 64, 4, 5)};
    for (int k = 0; k < 2; k++) {
        mela_model *m = ms[k];
        CHECK(mela_model_set_init(m, MELA_INIT_TORCH04) == 0, "set_init: %s", mela_last_error());
        const mela_layout *L = mela_model_layout(m);
        float *theta = calloc(mela_model_size(m), sizeof *theta);
        mela_rng r = mela_rng_new(11);
        mela_model_init(m, theta, &r);
        double fan_in = 0;
        int nbn = 0;
        for (int i = 0; i < mela_layout_count(L); i++) {
            const char *name = mela_layout_name(L, i);
            mela_shape s = mela_layout_shape(L, i);
            const float *p = theta + mela_layout_offset(L, i);
            size_t n = mela_shape_numel(s);
            double sum = 0, sq = 0, amax = 0, lo = 1e30;
            for (size_t j = 0; j < n; j++)
                sum += p[j], sq += (double)p[j] * p[j], amax = fmax(amax, fabs(p[j])), lo = fmin(lo, p[j]);
            double mean = sum / n, sd = sqrt(sq / n - mean * mean);
            if (!strncmp(name, "bn", 2) && strstr(name, "bias")) {
                CHECK(amax == 0, "%s: shift 0 (max |v| %g)", name, amax);
            } else if (!strncmp(name, "bn", 2)) {
                nbn++; /* 64 draws: the mean within 4 standard errors of 1/2 */
                CHECK(lo >= 0 && amax < 1 && fabs(mean - 0.5) < 4 * sqrt(1.0 / 12 / n),
                      "%s: scale U(0, 1): min %g max %g mean %g", name, lo, amax, mean);
            } else {
                if (strstr(name, "weight"))
                    fan_in = !strcmp(name, "head.weight") ? 64 : 9.0 * s.d[1];
                double bound = 1 / sqrt(fan_in);
                CHECK(amax <= bound && amax > (n > 100 ? 0.95 : n >= 64 ? 0.7 : 0.0) * bound, "%s: max |w| %g, bound %g",
                      name, amax, bound);
                if (n > 100)
                    CHECK(fabs(sd - bound / sqrt(3)) < 0.1 * bound, "%s: sd %g of U(+-%g)", name, sd, bound);
            }
        }
        CHECK(nbn == (k == 0 ? 4 : 0), "%d batch-norm scales in %s", nbn, mela_model_describe(m));
        free(theta);
        mela_model_free(m);
    }
    /* the MLP already draws PyTorch's rule; a scheme it lacks is refused */
    int hidden[1] = {4};
    mela_model *mlp = mela_mlp_new(1, hidden, 1, 1);
    CHECK(mela_model_set_init(mlp, MELA_INIT_TORCH04) != 0 && strstr(mela_last_error(), "conv4"),
          "set_init refuses the mlp: %s", mela_last_error());
    CHECK(mela_model_set_init(mlp, 7) != 0, "set_init refuses scheme 7");
    mela_model_free(mlp);
    /* the run option: named values only, conv4 and finn only */
    mela_run_config rc;
    CHECK(mela_run_defaults(&rc, "protonet", "omniglot", 5) == 0 && !strcmp(rc.init, "xavier"),
          "init defaults to xavier");
    CHECK(mela_run_set(&rc, "init", "he") != 0 && strstr(mela_last_error(), "not one of xavier, pytorch-0.4") &&
              !strcmp(rc.init, "xavier"),
          "init he is refused: %s", mela_last_error());
    snprintf(rc.init, sizeof rc.init, "he"); /* written field by field: the check refuses it */
    CHECK(mela_run_check(&rc) != 0 && strstr(mela_last_error(), "init"), "check refuses init he: %s",
          mela_last_error());
    CHECK(mela_run_set(&rc, "init", "pytorch-0.4") == 0 && mela_run_check(&rc) == 0, "init pytorch-0.4: %s",
          mela_last_error());
    CHECK(mela_run_defaults(&rc, "maml", "sinusoid", 0) == 0 && mela_run_set(&rc, "init", "pytorch-0.4") == 0 &&
              mela_run_check(&rc) != 0 && strstr(mela_last_error(), "mlp"),
          "init pytorch-0.4 with the mlp is refused: %s", mela_last_error());
}

/* The accuracy in "... accuracy 49.33% ..." of out, or -1. */
static double accuracy_in(const char *out)
{
    const char *p = strstr(out, "accuracy ");
    double a = -1;
    return p && sscanf(p, "accuracy %lf%%", &a) == 1 ? a : -1;
}

static void test_run(void)
{
    const char *bin = getenv("MELA_BIN"), *data = getenv("MELA_SHARED_DATA");
    char zip[600], dir[] = "/tmp/mela_finn_XXXXXX", cmd[2400], out[8192], args[1400];
    struct stat st;
    snprintf(zip, sizeof zip, "%s/omniglot/images_background.zip", data ? data : "/nonexistent");
    if (!bin || stat(zip, &st)) {
        printf("train --model finn: skipped (no Omniglot under $MELA_SHARED_DATA)\n");
        return;
    }
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(args, sizeof args, "--cache-dir %s/cache --data-dir %s/omniglot", dir, data);
    /* 40 updates of 4 tasks, 16 filters: chance is 20%, it reaches 49% */
    snprintf(cmd, sizeof cmd, "%s train --learner maml --ways 5 --model finn --width 16 --iterations 40 "
             "--meta-batch 4 --val-every 0 --val-episodes 4 --test-episodes 40 --threads 1 --seed 3 %s "
             "--out-dir %s/run 2>&1", bin, args, dir);
    CHECK(check_run(out, sizeof out, cmd) == 0, "train --model finn: %s", out);
    double trained = accuracy_in(strstr(out, "test: ") ? strstr(out, "test: ") : out);
    CHECK(trained > 35, "MAML with finn learns: test accuracy %.2f%% after 40 updates (> 35%%)", trained);
    char ck[600];
    snprintf(ck, sizeof ck, "%s/run/best.safetensors", dir);
    mela_checkpoint *c = mela_checkpoint_open(ck);
    CHECK(c != NULL, "open %s: %s", ck, mela_last_error());
    if (c) {
        const char *model = mela_checkpoint_meta(c, "model");
        int b = mela_checkpoint_find(c, "bn4.bias"), h = mela_checkpoint_find(c, "head.weight");
        mela_shape hs = mela_checkpoint_shape(c, h);
        CHECK(model && !strcmp(model, "finn") && b >= 0 && mela_checkpoint_find(c, "bn1.weight") < 0 &&
                  h >= 0 && hs.nd == 2 && hs.d[0] == 5 && hs.d[1] == 16,
              "the checkpoint records model finn and its views (model %s)", model ? model : "none");
        mela_checkpoint_close(c);
    }
    snprintf(cmd, sizeof cmd, "%s eval %s --episodes 40 %s 2>&1", bin, ck, args);
    CHECK(check_run(out, sizeof out, cmd) == 0 && accuracy_in(out) == trained,
          "eval rebuilds the finn network: %s (trained: %.2f%%)", out, trained);
    check_rm_rf(dir);
}

int main(void)
{
    test_count();
    test_init();
    test_init_torch04();
    if (fixture_load("finn_torch.txt"))
        return check_finish();
    test_forward();
    /* 10x10, 3 blocks (paddings (0,1), (1,1), (1,1)), 2-way 2-shot, two steps */
    mela_model *m = mela_finn_new(1, 10, 3, 3, 2);
    fixture_check_maml(m, (mela_task_spec){2, 2, 2, 0}, 2, 0.3f);
    mela_model_free(m);
    fixture_free();
    test_run();
    return check_finish();
}
