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

/* The model y = w x (one weight, "fc.weight"). */
static mela_model *lin_model(void)
{
    mela_layout *L0 = mela_layout_new();
    mela_layout_add(L0, "fc.weight", MELA_SHAPE(1, 1));
    mela_model_def d = {L0, MELA_SHAPE(1), 1, 1, 0, lin_body, lin_head, NULL, NULL, "w x", NULL};
    return mela_model_new(&d);
}

static void test_reptile_by_hand(void)
{
    mela_model *m = lin_model();
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

/* Inner Adam whose state persists (inner_adam 2), by hand on w x: two tasks
 * of two Adam steps each from the stored second moment v0 with t0 steps
 * behind it; the direction, the meta-update (w by e times the mean of
 * theta - phi, v to the tasks' mean final v, t by the steps) and an
 * evaluation that reads the stored state and leaves theta alone. With v0 =
 * t0 = 0 it is inner_adam 1's per-task Adam. */
static double adam_task(const float *x, const float *y, int n, double w, double *v, double t0, int steps,
                        double a)
{
    const double b2 = 0.999;
    for (int s = 0; s < steps; s++) {
        double g = 0;
        for (int i = 0; i < n; i++)
            g += 2.0 / n * x[i] * (w * x[i] - y[i]);
        *v = b2 * *v + (1 - b2) * g * g;
        double vhat = *v / (1 - pow(b2, t0 + s + 1));
        w -= a * g / (sqrt(vhat) + 1e-8);
    }
    return w;
}

static void test_reptile_adam_by_hand(void)
{
    mela_model *m = lin_model();
    const float a = 0.05f, e = 0.3f;
    mela_gbml_config c = {.learner = MELA_LEARNER_REPTILE, .regression = 1, .train = {1, 4, 2, 0},
                          .steps = 2, .test_steps = 1, .inner_lr = a, .inner_adam = 2};
    mela_gbml *gb = mela_gbml_new(m, &c);
    CHECK(gb != NULL, "reptile adam: %s", mela_last_error());
    const mela_layout *L = mela_gbml_layout(gb);
    CHECK(mela_layout_count(L) == 3 && !strcmp(mela_layout_name(L, 1), "adam_v.fc.weight") &&
              !strcmp(mela_layout_name(L, 2), "adam_t"),
          "layout: w, adam_v.fc.weight, adam_t (%d views)", mela_layout_count(L));
    size_t ov = mela_layout_offset(L, 1), ot = mela_layout_offset(L, 2), size = mela_layout_size(L);
    CHECK(mela_gbml_learned_size(gb) == ov, "only w is learned by gradient (%zu floats)", mela_gbml_learned_size(gb));
    float *theta = calloc(size, sizeof *theta), *dir = calloc(size, sizeof *dir);
    const double w0 = 0.7, v0 = 0.04, t0 = 3;
    float xs[2][4] = {{1, -2, 0.5f, 3}, {0.5f, 1, -1, 2}}, ys[2][4] = {{2, -1, 0, 4}, {1, 1, 0.5f, -1}};
    float xq[2] = {1, 2}, yq[2] = {0.5f, 1};
    mela_task t[2] = {{xs[0], ys[0], xq, yq}, {xs[1], ys[1], xq, yq}};
    for (int fresh = 0; fresh < 2; fresh++) {
        double vs = fresh ? 0 : v0, ts = fresh ? 0 : t0;
        theta[0] = (float)w0, theta[ov] = (float)vs, theta[ot] = (float)ts;
        CHECK(mela_gbml_meta_grad(gb, theta, 2, t, 1, dir, NULL, NULL) == 0, "reptile adam: %s",
              mela_last_error());
        double v1 = vs, v2 = vs;
        double p1 = adam_task(xs[0], ys[0], 4, w0, &v1, ts, 2, a), p2 = adam_task(xs[1], ys[1], 4, w0, &v2, ts, 2, a);
        CHECK_CLOSE(dir[0], w0 - (p1 + p2) / 2, 1e-6, 1e-4, fresh ? "direction from zero state: mean theta - phi" : "direction from v0, t0: mean theta - phi");
        CHECK_CLOSE(dir[ov], vs - (v1 + v2) / 2, 1e-8, 1e-4, "adam_v - mean final v");
        CHECK(dir[ot] == 0, "no direction for adam_t (%g)", (double)dir[ot]);
        mela_gbml_reptile_update(gb, theta, dir, e);
        CHECK_CLOSE(theta[0], w0 - e * (w0 - (p1 + p2) / 2), 1e-6, 1e-5, "w moves by e mean(phi - theta)");
        CHECK_CLOSE(theta[ov], (v1 + v2) / 2, 1e-8, 1e-4, "adam_v becomes the mean final v");
        CHECK(theta[ot] == (float)(ts + 2), "adam_t counts the 2 steps (%g)", (double)theta[ot]);
        if (fresh) { /* inner_adam 1 from zero state gives the same direction */
            c.inner_adam = 1;
            mela_gbml *g1 = mela_gbml_new(m, &c);
            CHECK(g1 && mela_layout_count(mela_gbml_layout(g1)) == 1, "inner_adam 1: w alone");
            float th1[64] = {(float)w0}, d1[64];
            CHECK(mela_layout_size(mela_gbml_layout(g1)) <= 64, "one view fits");
            CHECK(mela_gbml_meta_grad(g1, th1, 2, t, 1, d1, NULL, NULL) == 0, "%s", mela_last_error());
            CHECK_CLOSE(d1[0], w0 - (p1 + p2) / 2, 1e-6, 1e-4, "inner_adam 1 = inner_adam 2 from zero state");
            mela_gbml_free(g1);
            c.inner_adam = 2;
        }
    }
    /* Evaluation: one step from the stored state, the query loss; theta untouched. */
    theta[0] = (float)w0, theta[ov] = (float)v0, theta[ot] = (float)t0;
    double loss = 0, v = v0;
    CHECK(mela_gbml_evaluate(gb, theta, &t[0], 0, &loss, NULL, NULL) == 0, "%s", mela_last_error());
    double w1 = adam_task(xs[0], ys[0], 4, w0, &v, t0, 1, a);
    double want = ((w1 * xq[0] - yq[0]) * (w1 * xq[0] - yq[0]) + (w1 * xq[1] - yq[1]) * (w1 * xq[1] - yq[1])) / 2;
    CHECK_CLOSE(loss, want, 1e-6, 1e-4, "evaluation adapts from the stored v and t");
    CHECK(theta[ov] == (float)v0 && theta[ot] == (float)t0, "evaluation leaves the state alone");
    c.inner_adam = 3;
    CHECK(mela_gbml_new(m, &c) == NULL && strstr(mela_last_error(), "inner_adam"), "inner_adam 3 refused: %s",
          mela_last_error());
    free(theta), free(dir);
    mela_gbml_free(gb);
    mela_model_free(m);
}

/* Inner minibatches: step s takes support rows (s b + r) mod n. Two SGD
 * steps of w x on rows {0,1,2} then {3,0,1} (the wrap), by hand. */
static void test_inner_batch_by_hand(void)
{
    mela_model *m = lin_model();
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

/* Meta-SGD tests in the steps its rates were learned for (Li et al.: one at
 * 5-way), MAML in more (Finn et al.: 3). */
static void test_metasgd_test_steps(void)
{
    mela_run_config rc;
    CHECK(mela_run_defaults(&rc, "metasgd", "omniglot", 5) == 0 && rc.steps == 1 && rc.test_steps == 1,
          "metasgd 5-way: %d steps, %d at test", rc.steps, rc.test_steps);
    CHECK(mela_run_defaults(&rc, "metasgd", "omniglot", 20) == 0 && rc.test_steps == rc.steps,
          "metasgd 20-way: %d steps, %d at test", rc.steps, rc.test_steps);
    CHECK(mela_run_defaults(&rc, "maml", "omniglot", 5) == 0 && rc.steps == 1 && rc.test_steps == 3,
          "maml 5-way: %d steps, %d at test", rc.steps, rc.test_steps);
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

/* Normal support and query images of a 2-way 2-shot task on smooth_conv. */
static void fill_task(mela_rng *r, float *xs, float *xq)
{
    for (int i = 0; i < 4 * 36; i++)
        xs[i] = mela_rng_normal(r), xq[i] = mela_rng_normal(r);
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
    fill_task(&r, xs, xq);
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


/* inner_sum (Finn et al.'s support loss, summed over the classes): on the
 * smooth 2-way network it equals the mean with every rate doubled. MAML at
 * rate a = MAML at 2a under the mean (loss and meta-gradient); Meta-SGD
 * with rates r = Meta-SGD with rates 2r under the mean, the gradient of a
 * rate twice the other's (chain rule), and against finite differences. */

static void test_inner_sum(void)
{
    mela_model *m = smooth_conv();
    float xs[4 * 36], ys[4] = {0, 0, 1, 1}, xq[4 * 36], yq[4] = {0, 1, 0, 1};
    mela_rng r = mela_rng_new(21);
    fill_task(&r, xs, xq);
    mela_task t = {xs, ys, xq, yq};
    for (int learner = 0; learner < 2; learner++) {
        int sgd = learner == 1;
        const char *name = sgd ? "Meta-SGD" : "MAML";
        mela_gbml_config cs = {.learner = sgd ? MELA_LEARNER_METASGD : MELA_LEARNER_MAML,
                               .train = {2, 2, 2, 0}, .steps = 2, .test_steps = 2, .inner_lr = 0.15f,
                               .inner_sum = 1};
        mela_gbml_config cm = cs;
        cm.inner_sum = 0;
        cm.inner_lr = 2 * cs.inner_lr;
        mela_gbml *gs = mela_gbml_new(m, &cs), *gm = mela_gbml_new(m, &cm);
        CHECK(gs && gm, "%s inner_sum learners: %s", name, mela_last_error());
        if (!gs || !gm)
            break;
        const mela_layout *L = mela_gbml_layout(gs);
        size_t n = mela_layout_size(L);
        float *ts = calloc(n, sizeof *ts), *tm = calloc(n, sizeof *tm);
        float *g1 = calloc(n, sizeof *g1), *g2 = calloc(n, sizeof *g2);
        mela_rng ri = mela_rng_new(5);
        mela_gbml_init(gs, ts, &ri);
        memcpy(tm, ts, n * sizeof *tm);
        for (int i = 0; i < mela_layout_count(L); i++) /* rates differ weight by weight */
            if (!strncmp(mela_layout_name(L, i), "lr.", 3))
                for (size_t j = 0, o = mela_layout_offset(L, i); j < mela_shape_numel(mela_layout_shape(L, i)); j++) {
                    ts[o + j] = 0.05f + 0.2f * mela_rng_uniform(&ri);
                    tm[o + j] = 2 * ts[o + j];
                }
        double ls, lm;
        CHECK(mela_gbml_meta_grad(gs, ts, 1, &t, 1, g1, &ls, NULL) == 0 &&
                  mela_gbml_meta_grad(gm, tm, 1, &t, 1, g2, &lm, NULL) == 0,
              "%s meta-gradients: %s", name, mela_last_error());
        CHECK_CLOSE(ls, lm, 1e-6, 1e-5, "inner_sum: the query loss equals the mean's with rates doubled");
        double worst = 0, scale = 0;
        int rates = 0;
        for (int i = 0; i < mela_layout_count(L); i++) {
            int is_lr = !strncmp(mela_layout_name(L, i), "lr.", 3);
            rates += is_lr;
            for (size_t j = 0, o = mela_layout_offset(L, i); j < mela_shape_numel(mela_layout_shape(L, i)); j++) {
                double want = is_lr ? 2.0 * g2[o + j] : g2[o + j];
                worst = fmax(worst, fabs(g1[o + j] - want));
                scale = fmax(scale, fabs(want));
            }
        }
        char what[128];
        snprintf(what, sizeof what, "%s inner_sum: meta-gradient = the mean's with rates doubled (rates' x2); "
                                    "worst %.2g of %.2g", name, worst, scale);
        CHECK(scale > 1e-4 && worst <= 1e-4 * scale + 1e-7, "%s", what);
        CHECK(sgd ? rates > 0 : rates == 0, "%s: %d rate views", name, rates);
        if (sgd) { /* the rates' gradients against finite differences of the loss */
            int checked = 0;
            for (int i = 0; i < mela_layout_count(L); i++) {
                if (strncmp(mela_layout_name(L, i), "lr.", 3))
                    continue;
                size_t o = mela_layout_offset(L, i);
                float keep = ts[o], h = 1e-3f;
                double lp, lmn;
                ts[o] = keep + h;
                mela_gbml_evaluate(gs, ts, &t, 0, &lp, NULL, NULL);
                ts[o] = keep - h;
                mela_gbml_evaluate(gs, ts, &t, 0, &lmn, NULL, NULL);
                ts[o] = keep;
                snprintf(what, sizeof what, "Meta-SGD inner_sum: d loss / d %s[0]", mela_layout_name(L, i));
                CHECK_CLOSE(g1[o], (lp - lmn) / (2 * h), 3e-3, 3e-2, what);
                checked++;
            }
            CHECK(checked >= 8, "%d rate views checked", checked);
        }
        free(ts), free(tm), free(g1), free(g2);
        mela_gbml_free(gs);
        mela_gbml_free(gm);
    }
    mela_gbml_config bad = {.learner = MELA_LEARNER_MAML, .regression = 1, .train = {1, 4, 2, 0},
                            .steps = 1, .test_steps = 1, .inner_lr = 0.1f, .inner_sum = 1};
    mela_model *lm = lin_model();
    mela_gbml *gb = mela_gbml_new(lm, &bad);
    CHECK(gb == NULL && strstr(mela_last_error(), "inner_sum"), "inner_sum on regression is refused: %s",
          gb ? "accepted" : mela_last_error());
    mela_gbml_free(gb);
    mela_model_free(lm);
    mela_model_free(m);
    mela_run_config rc; /* the run option: a gradient learner's on images, no other's */
    mela_run_defaults(&rc, "metasgd", "omniglot", 5);
    CHECK(rc.inner_sum == 0 && mela_run_set(&rc, "inner_sum", "1") == 0 && mela_run_check(&rc) == 0,
          "metasgd on omniglot takes inner_sum 1: %s", mela_last_error());
    CHECK(mela_run_set(&rc, "inner_sum", "2") != 0, "inner_sum 2 is refused");
    const char *refused[][2] = {{"protonet", "omniglot"}, {"maml", "sinusoid"}};
    for (int i = 0; i < 2; i++) {
        mela_run_defaults(&rc, refused[i][0], refused[i][1], 5);
        mela_run_set(&rc, "inner_sum", "1");
        CHECK(mela_run_check(&rc) != 0 && strstr(mela_last_error(), "inner_sum"), "%s on %s refuses inner_sum 1",
              refused[i][0], refused[i][1]);
    }
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
    test_reptile_adam_by_hand();
    test_inner_batch_by_hand();
    test_mamlpp_schedule_defaults();
    test_metasgd_test_steps();
    test_msl_schedule();
    test_mamlpp_fd();
    test_bnwb_fd();
    test_inner_sum();
    test_training(0);
    test_training(1);
    return check_finish();
}
