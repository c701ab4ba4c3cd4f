/* test_learner.c - the one learner interface: every learner of the table
 * builds from its defaults and takes a step; a learner's own state saved and
 * loaded continues a run bit for bit; runs leave OpenBLAS's thread count as
 * they found it. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "synthetic.h"

/* Every learner of the table on a tiny Omniglot-shaped configuration: it
 * builds, initialises, takes one meta-iteration on synthetic episodes (or
 * pairs) drawn as its tasks say, and evaluates one test episode. */
static void test_table(void)
{
    synth_data d;
    synth_open(&d, 3);
    int n = 0;
    for (int i = 0; mela_learner_info_at(i); i++, n++) {
        const mela_learner_info *info = mela_learner_info_at(i);
        CHECK(mela_learner_find(info->name) == info, "find %s", info->name);
        mela_run_config rc;
        synth_config(&rc, info->name, 2);
        rc.meta_batch = 2;
        rc.train = (mela_task_spec){5, 1, 2, 0};
        rc.pairs = 4;
        rc.inner_batch = rc.test_inner_batch = 0;
        rc.test_steps = info->adapts ? 1 : 0;
        mela_learner *l = mela_learner_new(&rc, 0);
        CHECK(l != NULL, "%s builds: %s", info->name, mela_last_error());
        if (!l)
            continue;
        size_t size = mela_layout_size(mela_learner_layout(l));
        float *theta = calloc(size, sizeof *theta), *before = calloc(size, sizeof *before);
        mela_rng r = mela_rng_new(1);
        mela_learner_init(l, theta, &r);
        memcpy(before, theta, size * sizeof *theta);
        mela_tasks_opts o;
        mela_learner_tasks(l, 1, &o);
        o.seed = 5, o.slots = 2;
        mela_tasks *tr = mela_tasks_new(d.ds, &d.train, &o);
        mela_learner_tasks(l, 0, &o);
        o.seed = 6;
        mela_tasks *te = mela_tasks_new(d.ds, &d.test, &o);
        CHECK(tr && te, "%s tasks: %s", info->name, mela_last_error());
        mela_task t[2];
        mela_tasks_get(tr, 0, 0, &t[0]);
        mela_tasks_get(tr, 1, 1, &t[1]);
        double loss = NAN, acc = NAN;
        CHECK(mela_learner_step(l, theta, 1, 2, t, &loss, &acc) == 0 && isfinite(loss),
              "%s steps: %s", info->name, mela_last_error());
        CHECK(memcmp(before, theta, size * sizeof *theta), "%s: the step moved theta", info->name);
        mela_tasks_get(te, 0, 0, &t[0]);
        float probs[15 * 5];
        CHECK(mela_learner_evaluate(l, theta, &t[0], 0, &loss, &acc, probs) == 0 && acc >= 0 && acc <= 1,
              "%s evaluates: %s", info->name, mela_last_error());
        double row = 0;
        for (int c = 0; c < 5; c++)
            row += probs[c];
        CHECK(info->compares || fabs(row - 1) < 1e-5, "%s: probabilities sum to 1 (%g)", info->name, row);
        double p = -1;
        int cmp = mela_learner_compare(l, theta, t[0].xs, t[0].xq, &p);
        CHECK(info->compares ? cmp == 0 && p > 0 && p < 1 : cmp == -1, "%s compare: %d %g %s", info->name,
              cmp, p, mela_last_error());
        mela_tasks_free(tr);
        mela_tasks_free(te);
        free(theta), free(before);
        mela_learner_free(l);
    }
    CHECK(n == 9, "nine learners in the table (%d)", n);
    CHECK(mela_learner_find("magic") == NULL && strstr(mela_last_error(), "protonet"),
          "an unknown learner is refused with the names: %s", mela_last_error());
    synth_close(&d);
}

/* k steps of l from theta on tasks drawn from seed 11. */
static void steps(mela_learner *l, float *theta, mela_tasks *ts, int from, int to)
{
    for (int it = from; it <= to; it++) {
        mela_task t[2];
        mela_tasks_get(ts, 0, (uint64_t)it * 2, &t[0]);
        mela_tasks_get(ts, 1, (uint64_t)it * 2 + 1, &t[1]);
        CHECK(mela_learner_step(l, theta, it, 2, t, NULL, NULL) == 0, "step %d: %s", it, mela_last_error());
    }
}

/* Six Adam steps straight, or three, the state saved, a new learner that
 * loads weights and state, and three more: the same bits. */
static void test_state(const char *learner)
{
    synth_data d;
    synth_open(&d, 4);
    mela_run_config rc;
    synth_config(&rc, learner, 6);
    rc.train = (mela_task_spec){5, 1, 2, 0};
    rc.meta_batch = 2;
    rc.lr_decay_every = 2; /* a schedule that depends on the iteration */
    mela_learner *a = mela_learner_new(&rc, 0), *b = mela_learner_new(&rc, 0);
    CHECK(a && b, "%s: %s", learner, mela_last_error());
    size_t size = mela_layout_size(mela_learner_layout(a));
    float *ta = calloc(size, sizeof *ta), *tb = calloc(size, sizeof *tb);
    mela_rng r = mela_rng_new(2);
    mela_learner_init(a, ta, &r);
    mela_tasks_opts o;
    mela_learner_tasks(a, 1, &o);
    o.seed = 11, o.slots = 2;
    mela_tasks *ts = mela_tasks_new(d.ds, &d.train, &o);
    steps(a, ta, ts, 1, 3);
    char path[] = "/tmp/mela-state-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(mela_learner_save_state(a, path) == 0, "save: %s", mela_last_error());
    memcpy(tb, ta, size * sizeof *ta);
    mela_rng r2 = mela_rng_new(99);
    mela_learner_init(b, tb, &r2); /* other weights and a fresh optimiser ... */
    memcpy(tb, ta, size * sizeof *ta); /* ... then the saved ones */
    CHECK(mela_learner_load_state(b, path) == 0, "load: %s", mela_last_error());
    steps(a, ta, ts, 4, 6);
    steps(b, tb, ts, 4, 6);
    CHECK(!memcmp(ta, tb, size * sizeof *ta), "%s: a run continued from its saved state is the same bits",
          learner);
    mela_run_config other;
    synth_config(&other, "maml", 6);
    mela_learner *c = mela_learner_new(&other, 0);
    CHECK(!strcmp(learner, "maml") || (mela_learner_load_state(c, path) == -1 && strstr(mela_last_error(), learner)),
          "the state of %s is refused by maml: %s", learner, mela_last_error());
    unlink(path);
    mela_learner_free(c);
    mela_tasks_free(ts);
    free(ta), free(tb);
    mela_learner_free(a);
    mela_learner_free(b);
    synth_close(&d);
}

/* A program that set OpenBLAS to 2 threads finds 2 after a training run and
 * an evaluation. */
static void test_blas_threads(void)
{
    openblas_set_num_threads(2);
    synth_data d;
    synth_open(&d, 5);
    mela_run_config rc;
    synth_config(&rc, "protonet", 3);
    rc.train = (mela_task_spec){5, 1, 2, 0};
    rc.test_episodes = 4;
    double acc = synth_train(&rc, &d, NULL);
    CHECK(acc >= 0, "train: %s", mela_last_error());
    CHECK(openblas_get_num_threads() == 2, "OpenBLAS threads after a run: %d (set 2)",
          openblas_get_num_threads());
    mela_run_config sin;
    mela_run_defaults(&sin, "maml", "sinusoid", 0);
    sin.out_dir[0] = 0;
    sin.iterations = 5;
    mela_run *r = mela_run_open(&sin, NULL);
    mela_eval_result res;
    CHECK(r && mela_run_fit(r, 5, NULL, NULL) == 0 && mela_run_test(r, 10, &res) == 0, "sinusoid: %s",
          mela_last_error());
    mela_run_close(r);
    CHECK(openblas_get_num_threads() == 2, "OpenBLAS threads after an evaluation: %d (set 2)",
          openblas_get_num_threads());
    synth_close(&d);
}

/* Clipping by the global L2 norm, by hand: (3, 4, 0) has norm 5. */
static void test_clip_by_hand(void)
{
    float g[3] = {3, 4, 0};
    CHECK(mela_clip_grad_norm(g, 3, 10) == 5 && g[0] == 3 && g[1] == 4 && g[2] == 0,
          "a norm below clip_grad changes nothing: %g %g %g", g[0], g[1], g[2]);
    CHECK(mela_clip_grad_norm(g, 3, 5) == 5 && g[0] == 3 && g[1] == 4, "a norm equal to it neither");
    CHECK(mela_clip_grad_norm(g, 3, 0) == 5 && g[0] == 3 && g[1] == 4, "0 is off");
    float s = (float)(1.0 / 5.0);
    CHECK(mela_clip_grad_norm(g, 3, 1) == 5 && g[0] == 3 * s && g[1] == 4 * s && g[2] == 0,
          "a norm above is scaled to clip_grad: %.9g %.9g", g[0], g[1]);
    float h[2] = {1, NAN};
    CHECK(isnan(mela_clip_grad_norm(h, 2, 1)) && h[0] == 1, "a NaN makes the norm NaN, nothing scaled");
    h[1] = INFINITY;
    CHECK(isinf(mela_clip_grad_norm(h, 2, 1)) && h[0] == 1, "an infinity makes it infinite");
}

/* One Reptile step on sinusoids (theta -= outer_lr * direction, plain SGD,
 * outer_lr 1 at iteration 1) from the seed-3 weights with clip_grad clip:
 * the step, its norm in *norm, the start in theta0 (size floats). */
static float *reptile_delta(float clip, float *theta0, size_t size, double *norm)
{
    mela_run_config rc;
    mela_run_defaults(&rc, "reptile", "sinusoid", 0);
    rc.clip_grad = clip;
    rc.threads = 1;
    mela_learner *l = mela_learner_new(&rc, 0);
    float *theta = calloc(size, sizeof *theta), *d = calloc(2 * size, sizeof *d);
    mela_rng r = mela_rng_new(3);
    mela_learner_init(l, theta, &r);
    memcpy(theta0, theta, size * sizeof *theta);
    mela_tasks_opts o;
    mela_learner_tasks(l, 1, &o);
    o.seed = 4;
    mela_tasks *ts = mela_tasks_new(NULL, NULL, &o);
    mela_task t;
    mela_tasks_get(ts, 0, 0, &t);
    CHECK(mela_learner_step(l, theta, 1, 1, &t, NULL, NULL) == 0, "reptile step: %s", mela_last_error());
    double ss = 0;
    for (size_t i = 0; i < size; i++) {
        d[i] = theta[i] - theta0[i];
        ss += (double)d[i] * d[i];
    }
    *norm = sqrt(ss);
    /* a NaN weight, which the relu hides from the loss but not from the
     * direction: an error naming the iteration and the view, theta untouched */
    theta[0] = NAN;
    memcpy(d + size, theta, size * sizeof *theta);
    mela_tasks_get(ts, 0, 1, &t);
    CHECK(mela_learner_step(l, theta, 2, 1, &t, NULL, NULL) == -1 &&
              strstr(mela_last_error(), "iteration 2: the meta-gradient of 'fc1.weight' holds nan") &&
              !memcmp(theta + 1, d + size + 1, (size - 1) * sizeof *theta),
          "a NaN in the direction stops the step: %s", mela_last_error());
    mela_tasks_free(ts);
    free(theta);
    mela_learner_free(l);
    return d;
}

static void test_clip_step(void)
{
    mela_run_config rc;
    mela_run_defaults(&rc, "reptile", "sinusoid", 0);
    mela_learner *l = mela_learner_new(&rc, 0);
    size_t n = mela_layout_size(mela_learner_layout(l));
    mela_learner_free(l);
    float *theta0 = calloc(n, sizeof *theta0);
    double norm, norm2, norm3;
    float *off = reptile_delta(0, theta0, n, &norm);
    float *above = reptile_delta((float)(2 * norm), theta0, n, &norm2);
    CHECK(norm > 0 && !memcmp(off, above, n * sizeof *off), "clip_grad above the norm (%g) changes nothing",
          norm);
    float *half = reptile_delta((float)(norm / 2), theta0, n, &norm3);
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= fabsf(half[i] - 0.5f * off[i]) <= 1e-6f * (1 + fabsf(theta0[i]));
    CHECK(ok && fabs(norm3 - norm / 2) < 1e-4 * norm, "clip_grad at half the norm halves the step (%g -> %g)",
          norm, norm3);
    free(off), free(above), free(half), free(theta0);

    /* a NaN output bias makes the loss NaN: an error naming the iteration */
    mela_run_defaults(&rc, "maml", "sinusoid", 0);
    l = mela_learner_new(&rc, 0);
    const mela_layout *L = mela_learner_layout(l);
    float *theta = calloc(mela_layout_size(L), sizeof *theta);
    mela_rng r = mela_rng_new(1);
    mela_learner_init(l, theta, &r);
    theta[mela_layout_offset(L, mela_layout_count(L) - 1)] = NAN;
    mela_tasks_opts o;
    mela_learner_tasks(l, 1, &o);
    mela_tasks *ts = mela_tasks_new(NULL, NULL, &o);
    mela_task t;
    mela_tasks_get(ts, 0, 0, &t);
    CHECK(mela_learner_step(l, theta, 7, 1, &t, NULL, NULL) == -1 &&
              strstr(mela_last_error(), "iteration 7: training loss is nan"), "a NaN loss: %s", mela_last_error());
    mela_tasks_free(ts);
    free(theta);
    mela_learner_free(l);
}

int main(void)
{
    test_table();
    test_state("maml");
    test_state("protonet");
    test_blas_threads();
    test_clip_by_hand();
    test_clip_step();
    return check_finish();
}
