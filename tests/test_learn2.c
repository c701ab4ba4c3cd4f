/* test_learn2.c - MAML++ and Reptile: Reptile's update by hand on a
 * quadratic; MAML++'s per-step rates, per-step batch-norm weights and
 * multi-step loss against finite differences; the step-weight schedule; and
 * seeded short trainings on synthetic classes that must end above chance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "synthetic.h"
#include "mela_data.h"
#include "mela_learn.h"

/* y = w x: the support loss mean((w x - y)^2) is a quadratic in w. */
static mela_node lin_body(void *ctx, mela_graph *g, const mela_node *w, mela_node x) { return x; }
static mela_node lin_head(void *ctx, mela_graph *g, const mela_node *w, mela_node h)
{
    return mela_linear(g, h, w[0], MELA_NONE);
}

static void test_reptile_by_hand(void)
{
    mela_layout *L0 = mela_layout_new();
    mela_layout_add(L0, "fc.weight", MELA_SHAPE(1, 1));
    mela_model_def d = {L0, MELA_SHAPE(1), 1, 1, 0, lin_body, lin_head, NULL, NULL, "w x", NULL};
    mela_model *m = mela_model_new(&d);
    const float a = 0.05f, e = 0.3f;
    mela_gbml_config c = {.learner = MELA_LEARNER_REPTILE, .regression = 1, .train = {1, 4, 2, 0},
                          .steps = 1, .test_steps = 1, .inner_lr = a};
    mela_gbml *gb = mela_gbml_new(m, &c);
    CHECK(gb != NULL, "reptile: %s", mela_last_error());
    const mela_layout *L = mela_gbml_layout(gb);
    float *theta = calloc(mela_layout_size(L), sizeof *theta), *dir = calloc(mela_layout_size(L), sizeof *dir);
    float w0 = 0.7f;
    theta[0] = w0;
    float xs[4] = {1, -2, 0.5f, 3}, ys[4] = {2, -1, 0, 4}, xq[2] = {1, 1}, yq[2] = {0, 0};
    mela_task t = {xs, ys, xq, yq};
    CHECK(mela_gbml_meta_grad(gb, theta, 1, &t, 1, dir, NULL, NULL) == 0, "reptile: %s", mela_last_error());
    double g = 0;
    for (int i = 0; i < 4; i++)
        g += 2.0 / 4 * xs[i] * (w0 * xs[i] - ys[i]);
    mela_sgd_step(theta, dir, mela_layout_size(L), e); /* theta += e (phi - theta) */
    CHECK_CLOSE(theta[0] - w0, -e * a * g, 1e-6, 1e-5, "Reptile moves theta by exactly -e a grad");
    free(theta), free(dir);
    mela_gbml_free(gb);
    mela_model_free(m);
}

/* Inner minibatches: step s takes support rows (s b + r) mod n. Two SGD
 * steps of w x on rows {0,1,2} then {3,0,1} (the wrap), by hand. */
static void test_inner_batch_by_hand(void)
{
    mela_layout *L0 = mela_layout_new();
    mela_layout_add(L0, "fc.weight", MELA_SHAPE(1, 1));
    mela_model_def d = {L0, MELA_SHAPE(1), 1, 1, 0, lin_body, lin_head, NULL, NULL, "w x", NULL};
    mela_model *m = mela_model_new(&d);
    const float a = 0.05f;
    mela_gbml_config c = {.learner = MELA_LEARNER_REPTILE, .regression = 1, .train = {1, 4, 2, 0},
                          .steps = 2, .test_steps = 1, .inner_lr = a, .inner_batch = 3};
    mela_gbml *gb = mela_gbml_new(m, &c);
    CHECK(gb != NULL, "inner batch: %s", mela_last_error());
    const mela_layout *L = mela_gbml_layout(gb);
    float *theta = calloc(mela_layout_size(L), sizeof *theta), *dir = calloc(mela_layout_size(L), sizeof *dir);
    const double w0 = 0.7;
    theta[0] = (float)w0;
    float xs[4] = {1, -2, 0.5f, 3}, ys[4] = {2, -1, 0, 4}, xq[2] = {1, 1}, yq[2] = {0, 0};
    mela_task t = {xs, ys, xq, yq};
    CHECK(mela_gbml_meta_grad(gb, theta, 1, &t, 1, dir, NULL, NULL) == 0, "inner batch: %s", mela_last_error());
    const int rows[2][3] = {{0, 1, 2}, {3, 0, 1}};
    double w = w0;
    for (int s = 0; s < 2; s++) {
        double g = 0;
        for (int r = 0; r < 3; r++)
            g += 2.0 / 3 * xs[rows[s][r]] * (w * xs[rows[s][r]] - ys[rows[s][r]]);
        w -= a * g;
    }
    CHECK_CLOSE(dir[0], w0 - w, 1e-6, 1e-5, "theta - phi after minibatches {0,1,2}, {3,0,1}");
    c.inner_batch = -1;
    mela_gbml *bad = mela_gbml_new(m, &c);
    CHECK(bad == NULL && strstr(mela_last_error(), "inner batch"), "negative inner batch refused: %s",
          mela_last_error());
    mela_gbml_free(bad);
    free(theta), free(dir);
    mela_gbml_free(gb);
    mela_model_free(m);
}

/* MAML++'s schedules default to fractions of the run, whatever its length. */
static void test_mamlpp_schedule_defaults(void)
{
    mela_run_config rc;
    CHECK(mela_run_defaults(&rc, "mamlpp", "omniglot", 5) == 0, "defaults: %s", mela_last_error());
    CHECK(mela_run_msl_anneal(&rc) == 6000 && mela_run_da_until(&rc) == 20000, "60,000 iterations: %d %d",
          mela_run_msl_anneal(&rc), mela_run_da_until(&rc));
    mela_run_set(&rc, "iterations", "1000");
    CHECK(mela_run_msl_anneal(&rc) == 100 && mela_run_da_until(&rc) == 333, "1,000 iterations: %d %d",
          mela_run_msl_anneal(&rc), mela_run_da_until(&rc));
    mela_run_set(&rc, "msl_anneal", "7");
    mela_run_set(&rc, "da_until", "0");
    CHECK(mela_run_msl_anneal(&rc) == 7 && mela_run_da_until(&rc) == 0, "set by hand: %d %d",
          mela_run_msl_anneal(&rc), mela_run_da_until(&rc));
    CHECK(mela_run_check(&rc) == 0, "da_until 0 with mamlpp: %s", mela_last_error());
    mela_run_config maml;
    mela_run_defaults(&maml, "maml", "omniglot", 5);
    mela_run_set(&maml, "da_until", "-1");
    CHECK(mela_run_check(&maml) != 0, "da_until without MAML++'s da is refused");
}

static void test_msl_schedule(void)
{
    enum { S = 5 };
    float v[S], prev_last = 0;
    int ok_sum = 1, ok_mono = 1;
    for (long it = 0; it <= 1200; it += 50) {
        mela_msl_weights(S, it, 1000, v);
        double sum = 0;
        for (int i = 0; i < S; i++)
            sum += v[i];
        ok_sum &= fabs(sum - 1) < 1e-6;
        ok_mono &= v[S - 1] >= prev_last;
        prev_last = v[S - 1];
    }
    CHECK(ok_sum, "step weights sum to one all along");
    CHECK(ok_mono, "the final step's weight never falls");
    mela_msl_weights(S, 0, 1000, v);
    CHECK_CLOSE(v[0], 0.2, 1e-7, 0, "uniform at the start");
    CHECK_CLOSE(v[4], 0.2, 1e-7, 0, "uniform at the start (last)");
    mela_msl_weights(S, 500, 1000, v);
    CHECK_CLOSE(v[0], 0.1, 1e-6, 0, "halfway: non-final weights halved");
    CHECK_CLOSE(v[4], 0.6, 1e-6, 0, "halfway: the final weight takes the rest");
    mela_msl_weights(S, 5000, 1000, v);
    CHECK_CLOSE(v[0], 0.03 / 5, 1e-7, 0, "annealed: non-final weights at their floor");
    CHECK_CLOSE(v[4], 1 - 4 * 0.03 / 5, 1e-6, 0, "annealed: final weight");
}

/* MAML++ with per-step rates and the multi-step loss: the meta-gradient is
 * the derivative of sum_s v_s L_query(theta_s), each L_s computed by an
 * evaluation learner with s steps sharing the layout. */
static void test_mamlpp_fd(void)
{
    enum { K = 6, Q = 8, STEPS = 3 };
    int hidden[2] = {10, 10};
    mela_model *m = mela_mlp_new(1, hidden, 2, 1);
    mela_gbml_config c = {.learner = MELA_LEARNER_MAML, .regression = 1, .train = {1, K, Q, 0},
                          .steps = STEPS, .test_steps = STEPS, .inner_lr = 0.05f, .lslr = 1, .msl = 1};
    mela_gbml *gb = mela_gbml_new(m, &c), *ev[STEPS];
    for (int s = 0; s < STEPS; s++) {
        mela_gbml_config ce = c;
        ce.test_steps = s + 1;
        ev[s] = mela_gbml_new(m, &ce);
    }
    CHECK(gb && ev[0], "mamlpp learner: %s", mela_last_error());
    const mela_layout *L = mela_gbml_layout(gb);
    CHECK(mela_layout_find(L, "lr.step2.fc3.weight") >= 0, "per-step rate views exist");
    size_t n = mela_layout_size(L);
    float *theta = calloc(n, sizeof *theta), *g = calloc(n, sizeof *g);
    mela_rng r = mela_rng_new(8);
    mela_gbml_init(gb, theta, &r);
    /* make the rates differ per layer and step */
    for (int i = 0; i < mela_layout_count(L); i++)
        if (!strncmp(mela_layout_name(L, i), "lr.", 3))
            theta[mela_layout_offset(L, i)] = 0.02f + 0.06f * mela_rng_uniform(&r);
    float v[STEPS] = {0.2f, 0.3f, 0.5f};
    CHECK(mela_gbml_set_step_weights(gb, v) == 0, "weights");
    float xs[K], ys[K], xq[Q], yq[Q];
    mela_sinusoid_task(4, 1, K, Q, xs, ys, xq, yq, NULL, NULL);
    mela_task t = {xs, ys, xq, yq};
    double loss;
    CHECK(mela_gbml_meta_grad(gb, theta, 1, &t, 1, g, &loss, NULL) == 0, "meta-grad: %s", mela_last_error());
    int checked = 0;
    for (int i = 0; i < mela_layout_count(L); i++) {
        size_t off = mela_layout_offset(L, i), cnt = mela_shape_numel(mela_layout_shape(L, i));
        int is_lr = !strncmp(mela_layout_name(L, i), "lr.", 3);
        for (size_t j = 0; j < cnt; j += is_lr ? 1 : 1 + cnt / 3) {
            float keep = theta[off + j], h = is_lr ? 1e-3f : 1e-3f;
            double lp = 0, lm = 0, l;
            theta[off + j] = keep + h;
            for (int s = 0; s < STEPS; s++)
                mela_gbml_evaluate(ev[s], theta, &t, 0, &l, NULL, NULL), lp += v[s] * l;
            theta[off + j] = keep - h;
            for (int s = 0; s < STEPS; s++)
                mela_gbml_evaluate(ev[s], theta, &t, 0, &l, NULL, NULL), lm += v[s] * l;
            theta[off + j] = keep;
            char what[128];
            snprintf(what, sizeof what, "MAML++ (LSLR + MSL): d meta-loss / d %s[%zu]", mela_layout_name(L, i), j);
            CHECK_CLOSE(g[off + j], (lp - lm) / (2 * h), 3e-3, 3e-2, what);
            checked++;
        }
    }
    double l0 = 0, l;
    for (int s = 0; s < STEPS; s++)
        mela_gbml_evaluate(ev[s], theta, &t, 0, &l, NULL, NULL), l0 += v[s] * l;
    CHECK_CLOSE(loss, l0, 1e-5, 1e-4, "the training loss is the weighted multi-step loss");
    CHECK(checked > 20, "%d coordinates checked", checked);
    free(theta), free(g);
    mela_gbml_free(gb);
    for (int s = 0; s < STEPS; s++)
        mela_gbml_free(ev[s]);
    mela_model_free(m);
}

/* A smooth stand-in for Conv-4 (tanh instead of relu), so that finite
 * differences of the loss after adaptation do not cross relu kinks, where
 * the inner gradient, and so the adapted weights, jump. */
static mela_node smooth_body(void *ctx, mela_graph *g, const mela_node *w, mela_node x)
{
    mela_node h = x;
    for (int b = 0; b < 2; b++)
        h = mela_tanh(g, mela_batchnorm(g, mela_conv2d(g, h, w[4 * b], w[4 * b + 1], 2, 1),
                                        w[4 * b + 2], w[4 * b + 3], 1e-5f));
    return mela_flatten(g, h);
}

static mela_node smooth_head(void *ctx, mela_graph *g, const mela_node *w, mela_node h)
{
    return mela_linear(g, h, w[8], w[9]);
}

static mela_model *smooth_conv(void)
{
    mela_layout *L = mela_layout_new();
    int c = 1;
    for (int b = 1; b <= 2; b++) {
        char name[32];
        snprintf(name, sizeof name, "conv%d.weight", b), mela_layout_add(L, name, MELA_SHAPE(3, c, 3, 3));
        snprintf(name, sizeof name, "conv%d.bias", b), mela_layout_add(L, name, MELA_SHAPE(3));
        snprintf(name, sizeof name, "bn%d.weight", b), mela_layout_add(L, name, MELA_SHAPE(3));
        snprintf(name, sizeof name, "bn%d.bias", b), mela_layout_add(L, name, MELA_SHAPE(3));
        c = 3;
    }
    mela_layout_add(L, "head.weight", MELA_SHAPE(2, 12));
    mela_layout_add(L, "head.bias", MELA_SHAPE(2));
    mela_model_def d = {L, MELA_SHAPE(1, 6, 6), 2, 12, 8, smooth_body, smooth_head, NULL, NULL, "smooth conv", NULL};
    return mela_model_new(&d);
}

/* Per-step batch-norm weights (BNWB): gradients of the per-step copies
 * against finite differences; the shared views get none. */
static void test_bnwb_fd(void)
{
    mela_model *m = smooth_conv();
    mela_gbml_config c = {.learner = MELA_LEARNER_MAML, .train = {2, 2, 2, 0},
                          .steps = 2, .test_steps = 2, .inner_lr = 0.1f, .bnwb = 1, .lslr = 1};
    mela_gbml *gb = mela_gbml_new(m, &c);
    CHECK(gb != NULL, "bnwb learner: %s", mela_last_error());
    if (!gb)
        return;
    const mela_layout *L = mela_gbml_layout(gb);
    int v0 = mela_layout_find(L, "bn1.weight.step0"), v2 = mela_layout_find(L, "bn2.bias.step2");
    CHECK(v0 >= 0 && v2 >= 0, "per-step batch-norm views exist");
    size_t n = mela_layout_size(L);
    float *theta = calloc(n, sizeof *theta), *g = calloc(n, sizeof *g);
    mela_rng r = mela_rng_new(12);
    mela_gbml_init(gb, theta, &r);
    for (int i = 0; i < mela_layout_count(L); i++) /* break the symmetry of the copies */
        if (strstr(mela_layout_name(L, i), ".step") && !strncmp(mela_layout_name(L, i), "bn", 2)) {
            float *p = theta + mela_layout_offset(L, i);
            for (size_t j = 0; j < mela_shape_numel(mela_layout_shape(L, i)); j++)
                p[j] += 0.3f * mela_rng_normal(&r);
        }
    float xs[4 * 36], ys[4] = {0, 0, 1, 1}, xq[4 * 36], yq[4] = {0, 1, 0, 1};
    for (int i = 0; i < 4 * 36; i++)
        xs[i] = mela_rng_normal(&r), xq[i] = mela_rng_normal(&r);
    mela_task t = {xs, ys, xq, yq};
    mela_gbml_meta_grad(gb, theta, 1, &t, 1, g, NULL, NULL);
    int checked = 0;
    for (int i = 0; i < mela_layout_count(L); i++) {
        const char *name = mela_layout_name(L, i);
        if (strncmp(name, "bn", 2))
            continue;
        size_t off = mela_layout_offset(L, i), cnt = mela_shape_numel(mela_layout_shape(L, i));
        for (size_t j = 0; j < cnt; j++) {
            float keep = theta[off + j], h = 1e-3f;
            double lp, lm;
            theta[off + j] = keep + h;
            mela_gbml_evaluate(gb, theta, &t, 0, &lp, NULL, NULL);
            theta[off + j] = keep - h;
            mela_gbml_evaluate(gb, theta, &t, 0, &lm, NULL, NULL);
            theta[off + j] = keep;
            char what[128];
            snprintf(what, sizeof what, "BNWB: d loss / d %s[%zu]", name, j);
            CHECK_CLOSE(g[off + j], (lp - lm) / (2 * h), 3e-3, 3e-2, what);
            if (!strstr(name, ".step"))
                CHECK(g[off + j] == 0, "the shared %s gets no gradient with BNWB", name);
            checked++;
        }
    }
    CHECK(checked >= 4 * 3 * 4, "%d batch-norm coordinates checked", checked);
    free(theta), free(g);
    mela_gbml_free(gb);
    mela_model_free(m);
}


static void test_training(int reptile)
{
    synth_data d;
    synth_open(&d, 31);
    mela_run_config rc;
    synth_config(&rc, reptile ? "reptile" : "mamlpp", reptile ? 300 : 150);
    rc.train = (mela_task_spec){5, reptile ? 3 : 1, 3, 0};
    rc.meta_batch = 4;
    rc.steps = 3;
    rc.test_steps = reptile ? 10 : 3;
    rc.inner_lr = reptile ? 0.01f : 0.2f; /* inner Adam steps */
    rc.inner_batch = rc.test_inner_batch = 0;
    if (!reptile) { /* MAML++: every switch, step weights over 50 iterations, first order before */
        rc.msl_anneal = 50, rc.da_until = 50;
        rc.cosine_lr = 0;
        rc.outer_lr = 0.003f;
    }
    double acc = synth_train(&rc, &d, NULL);
    printf("%s, synthetic 5-way 1-shot on unseen classes: %.1f%%\n", reptile ? "Reptile" : "MAML++", 100 * acc);
    CHECK(acc > 0.6, "%s ends well above chance (20%%): %.1f%% %s", reptile ? "Reptile" : "MAML++",
          100 * acc, acc < 0 ? mela_last_error() : "");
    synth_close(&d);
}

int main(void)
{
    test_reptile_by_hand();
    test_inner_batch_by_hand();
    test_mamlpp_schedule_defaults();
    test_msl_schedule();
    test_mamlpp_fd();
    test_bnwb_fd();
    test_training(0);
    test_training(1);
    return check_finish();
}
