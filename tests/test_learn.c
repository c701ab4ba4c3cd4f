/* test_learn.c - the gradient-based learners: exact meta-gradients against
 * finite differences of the loss after adaptation (MAML to second order,
 * Meta-SGD's learned rates, ANIL), first-order MAML differing from them,
 * thread-count independence, a seeded 5-way 1-shot training on synthetic
 * classes that must end well above chance, and a train -> checkpoint ->
 * reload -> eval round trip; bad configurations fail with a message, and a
 * checkpoint whose weights do not fit its configuration before any data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "synthetic.h"
#include "mela_data.h"
#include "mela_io.h"
#include "mela_learn.h"

enum { K = 6, Q = 8 };

/* A model defined by the user: 1 -> 10 tanh -> 1. */
static mela_node tanh_body(void *ctx, mela_graph *g, const mela_node *w, mela_node x)
{
    return mela_tanh(g, mela_linear(g, x, w[0], w[1]));
}

static mela_node tanh_head(void *ctx, mela_graph *g, const mela_node *w, mela_node h)
{
    return mela_linear(g, h, w[2], w[3]);
}

static int use_custom;

static mela_gbml *sine_learner(mela_model **m, int learner, int first_order, int steps)
{
    int hidden[2] = {12, 12};
    if (use_custom) {
        mela_layout *L = mela_layout_new();
        mela_layout_add(L, "fc1.weight", MELA_SHAPE(10, 1));
        mela_layout_add(L, "fc1.bias", MELA_SHAPE(10));
        mela_layout_add(L, "fc2.weight", MELA_SHAPE(1, 10));
        mela_layout_add(L, "fc2.bias", MELA_SHAPE(1));
        mela_model_def d = {L, MELA_SHAPE(1), 1, 10, 2, tanh_body, tanh_head, NULL, NULL, "tanh mlp", NULL};
        *m = mela_model_new(&d);
    } else {
        *m = mela_mlp_new(1, hidden, 2, 1);
    }
    mela_gbml_config c = {.learner = learner, .first_order = first_order, .regression = 1,
                          .train = {1, K, Q, 0}, .steps = steps, .test_steps = steps,
                          .inner_lr = 0.05f};
    return mela_gbml_new(*m, &c);
}

/* The meta-gradient is the derivative of the query loss after adaptation:
 * check it by central differences of mela_gbml_evaluate's loss on chosen
 * coordinates of theta. Returns the largest |exact - first-order| seen. */
static void check_meta_grad(const char *name, int learner, int steps)
{
    mela_model *m, *m1;
    mela_gbml *gb = sine_learner(&m, learner, 0, steps), *fo = sine_learner(&m1, learner, 1, steps);
    CHECK(gb && fo, "%s: learner: %s", name, mela_last_error());
    if (!gb || !fo)
        return;
    const mela_layout *L = mela_gbml_layout(gb);
    size_t n = mela_layout_size(L);
    float *theta = calloc(n, sizeof *theta), *g = calloc(n, sizeof *g), *gf = calloc(n, sizeof *gf);
    mela_rng r = mela_rng_new(11);
    mela_gbml_init(gb, theta, &r);
    float xs[K], ys[K], xq[Q], yq[Q];
    mela_sinusoid_task(3, 0, K, Q, xs, ys, xq, yq, NULL, NULL);
    mela_task t = {xs, ys, xq, yq};
    CHECK(mela_gbml_meta_grad(gb, theta, 1, &t, 1, g, NULL, NULL) == 0, "%s: %s", name, mela_last_error());
    mela_gbml_meta_grad(fo, theta, 1, &t, 1, gf, NULL, NULL);
    double maxdiff = 0;
    int checked = 0;
    for (int v = 0; v < mela_layout_count(L); v++) {
        size_t off = mela_layout_offset(L, v), cnt = mela_shape_numel(mela_layout_shape(L, v));
        for (size_t j = 0; j < cnt; j += 1 + cnt / 4) {
            float keep = theta[off + j];
            const float h = 1e-3f * (fabsf(keep) > 1 ? fabsf(keep) : 1);
            double lp, lm;
            theta[off + j] = keep + h;
            mela_gbml_evaluate(gb, theta, &t, 0, &lp, NULL, NULL);
            theta[off + j] = keep - h;
            mela_gbml_evaluate(gb, theta, &t, 0, &lm, NULL, NULL);
            theta[off + j] = keep;
            double fd = (lp - lm) / (2 * h);
            char what[160];
            snprintf(what, sizeof what, "%s: meta-gradient of %s[%zu]", name, mela_layout_name(L, v), j);
            CHECK_CLOSE(g[off + j], fd, 3e-3, 3e-2, what);
            maxdiff = fmax(maxdiff, fabs(g[off + j] - gf[off + j]));
            checked++;
        }
    }
    CHECK(checked > 10, "%s: %d coordinates checked", name, checked);
    CHECK(maxdiff > 1e-3, "%s: first-order differs from exact (max %g)", name, maxdiff);
    free(theta), free(g), free(gf);
    mela_gbml_free(gb), mela_gbml_free(fo);
    mela_model_free(m), mela_model_free(m1);
}

static void test_threads_identical(void)
{
    mela_model *m;
    mela_gbml *gb = sine_learner(&m, MELA_LEARNER_MAML, 0, 2);
    size_t n = mela_layout_size(mela_gbml_layout(gb));
    float *theta = calloc(n, sizeof *theta), *g1 = calloc(n, sizeof *g1), *g3 = calloc(n, sizeof *g3);
    mela_rng r = mela_rng_new(2);
    mela_gbml_init(gb, theta, &r);
    enum { T = 7 };
    float buf[T][2 * (K + Q)];
    mela_task tasks[T];
    for (int i = 0; i < T; i++) {
        float *b = buf[i];
        mela_sinusoid_task(5, i, K, Q, b, b + K, b + 2 * K, b + 2 * K + Q, NULL, NULL);
        tasks[i] = (mela_task){b, b + K, b + 2 * K, b + 2 * K + Q};
    }
    double l1, l3;
    mela_gbml_meta_grad(gb, theta, T, tasks, 1, g1, &l1, NULL);
    mela_gbml_meta_grad(gb, theta, T, tasks, 3, g3, &l3, NULL);
    CHECK(!memcmp(g1, g3, n * sizeof *g1) && l1 == l3, "1 and 3 threads give the same meta-gradient bit for bit");
    free(theta), free(g1), free(g3);
    mela_gbml_free(gb);
    mela_model_free(m);
}


static void test_short_training(void)
{
    synth_data d;
    synth_open(&d, 9);
    mela_run_config rc;
    synth_config(&rc, "maml", 150);
    rc.train = (mela_task_spec){5, 1, 3, 0};
    rc.steps = 1, rc.test_steps = 3, rc.inner_lr = 0.4f;
    rc.outer_lr = 0.003f;
    rc.meta_batch = 4;
    double acc = synth_train(&rc, &d, NULL);
    printf("synthetic 5-way 1-shot after %d meta-iterations: %.1f%% on unseen classes\n", rc.iterations,
           100 * acc);
    CHECK(acc > 0.6, "MAML on synthetic classes ends well above chance (20%%): %.1f%% %s", 100 * acc,
          acc < 0 ? mela_last_error() : "");
    synth_close(&d);
}

static void test_run_round_trip(void)
{
    char dir[] = "/tmp/mela-learn-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    mela_run_config rc;
    mela_run_defaults(&rc, "maml", "sinusoid", 0);
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s/run", dir);
    rc.iterations = 60;
    rc.val_every = 20;
    rc.val_episodes = 20;
    rc.meta_batch = 5;
    rc.test.queries = 20;
    CHECK(mela_run_train(&rc, 20, NULL, NULL) == 0, "train: %s", mela_last_error());
    char best[600], bad[600];
    snprintf(best, sizeof best, "%s/run/best.safetensors", dir);
    mela_eval_result a, b;
    const char *one[] = {"threads=1"}, *two[] = {"threads=2"};
    CHECK(mela_run_eval(best, 1, one, 50, 5, &a) == 0, "eval: %s", mela_last_error());
    CHECK(mela_run_eval(best, 1, two, 50, 5, &b) == 0, "eval: %s", mela_last_error());
    CHECK(a.loss == b.loss && a.loss_ci == b.loss_ci && a.episodes == 50 && a.steps == 5,
          "reload and eval give the same numbers on 1 and 2 threads (%g vs %g)", a.loss, b.loss);
    /* the same numbers from the checkpoint read by hand */
    mela_model *m;
    int hidden[2] = {40, 40};
    m = mela_mlp_new(1, hidden, 2, 1);
    mela_gbml_config c = {.learner = MELA_LEARNER_MAML, .regression = 1, .train = rc.train,
                          .test = {1, 10, 20, 0}, .steps = rc.steps, .test_steps = 5,
                          .inner_lr = rc.inner_lr};
    mela_gbml *gb = mela_gbml_new(m, &c);
    float *theta = calloc(mela_layout_size(mela_gbml_layout(gb)), sizeof *theta);
    mela_checkpoint *ck = mela_checkpoint_open(best);
    CHECK(ck && mela_checkpoint_read(ck, mela_gbml_layout(gb), theta) == 0, "read: %s", mela_last_error());
    mela_checkpoint_close(ck);
    double sum = 0;
    for (int i = 0; i < 50; i++) {
        float xs[10], ys[10], xq[20], yq[20];
        mela_sinusoid_task(0, i, 10, 20, xs, ys, xq, yq, NULL, NULL);
        mela_task t = {xs, ys, xq, yq};
        double l;
        mela_gbml_evaluate(gb, theta, &t, 0, &l, NULL, NULL);
        sum += l;
    }
    CHECK_CLOSE(sum / 50, a.loss, 1e-9, 1e-9, "eval of the reloaded checkpoint by hand");
    free(theta);
    mela_gbml_free(gb);
    mela_model_free(m);

    /* a corrupt checkpoint and a checkpoint of another model */
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    FILE *f = fopen(bad, "wb");
    fputs("garbage", f);
    fclose(f);
    CHECK(mela_run_eval(bad, 0, NULL, 10, -1, &a) == -1 && strstr(mela_last_error(), "bad.safetensors"),
          "corrupt checkpoint: %s", mela_last_error());
    mela_model *conv = mela_conv4_new(1, 28, 8, 2, 5, 0);
    float *t2 = calloc(mela_model_size(conv), sizeof *t2);
    ck = mela_checkpoint_open(best);
    CHECK(mela_checkpoint_read(ck, mela_model_layout(conv), t2) == -1,
          "a checkpoint of another model is refused: %s", mela_last_error());
    mela_checkpoint_close(ck);
    free(t2);
    mela_model_free(conv);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

static void test_bad_config(void)
{
    mela_run_config rc;
    mela_run_defaults(&rc, "maml", "omniglot", 5);
    CHECK(mela_run_set(&rc, "shots", "0") == -1 && strstr(mela_last_error(), "shots"), "zero shots: %s", mela_last_error());
    CHECK(mela_run_set(&rc, "learner", "magic") == -1, "unknown learner");
    CHECK(mela_run_set(&rc, "inner_lr", "-1") == -1, "negative rate");
    CHECK(mela_run_set(&rc, "nonsense", "1") == -1 && strstr(mela_last_error(), "nonsense"), "unknown key");
    mela_model *m = mela_conv4_new(1, 28, 8, 2, 5, 0);
    mela_gbml_config c = {.learner = MELA_LEARNER_MAML, .train = {20, 1, 1, 0},
                          .steps = 1, .test_steps = 1, .inner_lr = 0.1f};
    CHECK(mela_gbml_new(m, &c) == NULL && strstr(mela_last_error(), "outputs"),
          "20-way task on a 5-way head: %s", mela_last_error());
    mela_model_free(m);
    mela_run_defaults(&rc, "maml", "omniglot", 5);
    snprintf(rc.data_dir, sizeof rc.data_dir, "/nonexistent");
    char dir[] = "/tmp/mela-never-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s/run", dir);
    CHECK(mela_run_train(&rc, 1, NULL, NULL) == -1 && strstr(mela_last_error(), "/nonexistent"),
          "missing data is an error before training: %s", mela_last_error());
    CHECK(!mela_run_saved(rc.out_dir), "... which writes nothing");
    check_rm_rf(dir);
}

/* A checkpoint of a run with its metadata edited (key = value). */
static void edit_meta(const char *from, const char *to, const char *key, const char *value)
{
    mela_checkpoint *ck = mela_checkpoint_open(from);
    mela_layout *L = mela_layout_new();
    for (int i = 0; i < mela_checkpoint_count(ck); i++)
        mela_layout_add(L, mela_checkpoint_name(ck, i), mela_checkpoint_shape(ck, i));
    float *theta = calloc(mela_layout_size(L), sizeof *theta);
    for (int i = 0; i < mela_checkpoint_count(ck); i++)
        mela_checkpoint_tensor(ck, i, theta + mela_layout_offset(L, i));
    int n = mela_checkpoint_meta_count(ck);
    const char **k = calloc(n, sizeof *k), **v = calloc(n, sizeof *v);
    for (int i = 0; i < n; i++) {
        k[i] = mela_checkpoint_meta_key(ck, i);
        v[i] = strcmp(k[i], key) ? mela_checkpoint_meta_value(ck, i) : value;
    }
    CHECK(mela_checkpoint_save(to, L, theta, n, k, v) == 0, "edit: %s", mela_last_error());
    free(k), free(v), free(theta);
    mela_layout_free(L);
    mela_checkpoint_close(ck);
}

/* eval reads the checkpoint before the data: with data_dir a folder that
 * does not exist, a checkpoint whose weights do not fit its image_size
 * fails on the weights, never on the data. */
static void test_eval_checks_first(void)
{
    char dir[] = "/tmp/mela-learn-XXXXXX", run[64], best[700], bad[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(run, sizeof run, "%s/fomaml", dir);
    synth_data d;
    synth_open(&d, 21);
    mela_run_config rc;
    synth_config(&rc, "fomaml", 2);
    rc.train = (mela_task_spec){5, 1, 2, 0};
    rc.meta_batch = 2;
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s", run);
    mela_run_data data = {d.ds, &d.train, &d.test, &d.test};
    mela_run *r = mela_run_open(&rc, &data);
    CHECK(r && mela_run_fit(r, 1, NULL, NULL) == 0, "fomaml: %s", mela_last_error());
    mela_run_close(r);
    snprintf(best, sizeof best, "%s/best.safetensors", run);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", run);
    const char *over[] = {"data_dir=/nonexistent-omniglot"};
    mela_eval_result res;
    edit_meta(best, bad, "image_size", "16");
    CHECK(mela_run_eval(bad, 1, over, 4, -1, &res) == -1 && strstr(mela_last_error(), "image_size 16") &&
              !strstr(mela_last_error(), "nonexistent"), "weights that do not fit: %s", mela_last_error());
    edit_meta(best, bad, "image_size", "512");
    CHECK(mela_run_eval(bad, 1, over, 4, -1, &res) == -1 && strstr(mela_last_error(), "image_size 512") &&
              !strstr(mela_last_error(), "nonexistent"), "image_size 512: %s", mela_last_error());
    CHECK(mela_run_eval(best, 1, over, 4, -1, &res) == -1 && strstr(mela_last_error(), "nonexistent"),
          "the checkpoint itself passes, then the data are missing: %s", mela_last_error());
    synth_close(&d);
    check_rm_rf(dir);
}

int main(void)
{
    check_meta_grad("MAML 1 step", MELA_LEARNER_MAML, 1);
    check_meta_grad("MAML 3 steps", MELA_LEARNER_MAML, 3);
    check_meta_grad("Meta-SGD 2 steps", MELA_LEARNER_METASGD, 2);
    check_meta_grad("ANIL 2 steps", MELA_LEARNER_ANIL, 2);
    use_custom = 1;
    check_meta_grad("MAML 2 steps, user-defined tanh model", MELA_LEARNER_MAML, 2);
    check_meta_grad("ANIL 2 steps, user-defined tanh model", MELA_LEARNER_ANIL, 2);
    use_custom = 0;
    test_threads_identical();
    test_short_training();
    test_run_round_trip();
    test_bad_config();
    test_eval_checks_first();
    return check_finish();
}
