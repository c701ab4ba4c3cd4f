/*
 * learner.c - the one interface every learner is used through: the table of
 * learners, building one from a run configuration, the meta-iteration
 * (gradient, then update), evaluation, and the learner's own state.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sys.h"
#include "learn/learner.h"
#include "learn/taskpool.h"
#include "mela_io.h"

/* The table: a new learner is one line here (and its file). */
static const learner_def *const table[] = {
    &learner_maml,    &learner_fomaml,   &learner_metasgd, &learner_anil,    &learner_mamlpp,
    &learner_reptile, &learner_protonet, &learner_matchnet, &learner_siamese,
};
#define NDEFS (int)(sizeof table / sizeof table[0])

const learner_def *learner_def_find(const char *name)
{
    for (int i = 0; i < NDEFS && name; i++)
        if (!strcmp(table[i]->info.name, name))
            return table[i];
    char names[256] = "";
    for (int i = 0; i < NDEFS; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                 table[i]->info.name);
    mela_set_error("learner: '%s' is not one of %s", name ? name : "(none)", names);
    return NULL;
}

const mela_learner_info *mela_learner_info_at(int i) { return i >= 0 && i < NDEFS ? &table[i]->info : NULL; }

const mela_learner_info *mela_learner_find(const char *name)
{
    const learner_def *d = learner_def_find(name);
    return d ? &d->info : NULL;
}

/* Learners that adapt have a head (one output per class; regression: 1),
 * the others are an embedding. */
mela_model *learner_model(const mela_run_config *rc)
{
    if (!strcmp(rc->model, "mlp")) {
        int hidden[2] = {40, 40};
        return mela_mlp_new(1, hidden, 2, 1);
    }
    const learner_def *d = learner_def_find(rc->learner);
    int nout = d && d->info.adapts ? rc->train.ways : 0;
    if (!strcmp(rc->model, "conv4") || !strcmp(rc->model, "finn")) {
        mela_model *m = !strcmp(rc->model, "conv4")
                            ? mela_conv4_new(1, rc->image_size, rc->width, rc->depth, nout, rc->maxpool)
                            : mela_finn_new(1, rc->image_size, rc->width, rc->depth, nout);
        if (m && !strcmp(rc->init, "pytorch-0.4") && mela_model_set_init(m, MELA_INIT_TORCH04)) {
            mela_model_free(m);
            return NULL;
        }
        return m;
    }
    mela_cellnet_spec s; /* MetaNAS: the search network or a model-definition file */
    return mela_nas_search_spec(rc, nout, &s) ? NULL : mela_cellnet_new(&s);
}

int learner_check_weights(const mela_run_config *rc, const mela_checkpoint *ck, const char *path)
{
    if (mela_run_check(rc))
        return -1;
    mela_model *m = learner_model(rc);
    if (!m)
        return -1;
    const mela_layout *L = mela_model_layout(m);
    int rcode = 0;
    for (int v = 0; v < mela_layout_count(L) && !rcode; v++) {
        const char *name = mela_layout_name(L, v);
        int i = mela_checkpoint_find(ck, name);
        mela_shape want = mela_layout_shape(L, v);
        char a[64], b[64];
        if (i < 0)
            rcode = mela_set_error("%s: the model's tensor '%s' is not in the checkpoint", path, name);
        else if (!mela_shape_equal(mela_checkpoint_shape(ck, i), want))
            rcode = mela_set_error("%s: tensor '%s' has shape %s, but the configuration in its "
                                   "metadata (model %s, image_size %d, width %d, depth %d) makes %s",
                                   path, name, mela_shape_str(mela_checkpoint_shape(ck, i), a, sizeof a),
                                   rc->model, rc->image_size, rc->width, rc->depth,
                                   mela_shape_str(want, b, sizeof b));
    }
    mela_model_free(m);
    return rcode;
}

void mela_learner_free(mela_learner *l)
{
    if (!l)
        return;
    if (l->impl)
        l->def->close(l);
    mela_model_free(l->model);
    mela_adam_free(&l->adam);
    free(l->grad);
    free(l->msl_w);
    free(l);
}

mela_learner *mela_learner_new(const mela_run_config *rc, int query_rows)
{
    const learner_def *d = learner_def_find(rc->learner);
    if (!d || mela_run_check(rc))
        return NULL;
    mela_learner *l = calloc(1, sizeof *l);
    if (!l) {
        mela_set_error("learner: out of memory");
        return NULL;
    }
    l->def = d;
    l->rc = *rc;
    l->query_rows = query_rows;
    if (d->open(l, query_rows))
        goto fail;
    l->size = mela_layout_size(l->L);
    l->grad = calloc(l->size ? l->size : 1, sizeof *l->grad);
    if (!l->grad) {
        mela_set_error("learner: out of memory");
        goto fail;
    }
    if (mela_adam_init(&l->adam, l->size, rc->outer_lr))
        goto fail;
    return l;
fail:
    mela_learner_free(l);
    return NULL;
}

const mela_learner_info *mela_learner_info_of(const mela_learner *l) { return &l->def->info; }
const mela_run_config *mela_learner_config(const mela_learner *l) { return &l->rc; }
const mela_layout *mela_learner_layout(const mela_learner *l) { return l->L; }

void mela_learner_init(mela_learner *l, float *theta, mela_rng *r)
{
    l->def->init(l, theta, r);
    memset(l->adam.m, 0, l->size * sizeof *l->adam.m);
    memset(l->adam.v, 0, l->size * sizeof *l->adam.v);
    l->adam.t = 0;
    l->adam.lr = l->rc.outer_lr;
}

void mela_learner_tasks(const mela_learner *l, int train, mela_tasks_opts *o)
{
    memset(o, 0, sizeof *o);
    o->slots = 1;
    l->def->tasks(l, train, o);
}

const char *learner_nonfinite_name(double x) { return isnan(x) ? "nan" : x > 0 ? "inf" : "-inf"; }

const char *learner_nonfinite(const mela_layout *L, const float *x, float *value)
{
    for (int v = 0; v < mela_layout_count(L); v++) {
        const float *p = x + mela_layout_offset(L, v);
        size_t n = mela_shape_numel(mela_layout_shape(L, v));
        for (size_t i = 0; i < n; i++)
            if (!isfinite(p[i])) {
                *value = p[i];
                return mela_layout_name(L, v);
            }
    }
    return NULL;
}

/* The meta-gradient checked in one pass (its norm is finite exactly when
 * every value is) and clipped to clip_grad, before it reaches theta. */
static int grad_guard(mela_learner *l, int it)
{
    double norm = mela_clip_grad_norm(l->grad, l->clip_size ? l->clip_size : l->size, l->rc.clip_grad);
    if (isfinite(norm))
        return 0;
    float bad = NAN;
    const char *view = learner_nonfinite(l->L, l->grad, &bad);
    return mela_set_error("iteration %d: the meta-gradient of '%s' holds %s; lower inner_lr or "
                          "outer_lr", it, view ? view : "?", learner_nonfinite_name(bad));
}

int mela_learner_step(mela_learner *l, float *theta, int it, int n, const mela_task *tasks,
                      double *loss, double *acc)
{
    double ls = 0, ac = 0;
    if (l->def->grad(l, theta, it, n, tasks, &ls, &ac))
        return -1;
    if (!isfinite(ls))
        return mela_set_error("iteration %d: training loss is %s; lower inner_lr or outer_lr", it,
                              learner_nonfinite_name(ls));
    if (grad_guard(l, it))
        return -1;
    double t0 = mela_sys_now();
    l->def->update(l, theta, it);
    l->update_s += mela_sys_now() - t0;
    if (loss)
        *loss = ls;
    if (acc)
        *acc = ac;
    return 0;
}

/* Adam with the run's schedule: halved every lr_decay_every iterations, or
 * cosine-annealed to min_lr over the run. */
void learner_adam_update(mela_learner *l, float *theta, int it)
{
    const mela_run_config *rc = &l->rc;
    float frac = (float)(it - 1) / (float)rc->iterations;
    if (rc->lr_decay_every > 0)
        l->adam.lr = rc->outer_lr * powf(0.5f, (float)((it - 1) / rc->lr_decay_every));
    if (rc->cosine_lr)
        l->adam.lr = rc->min_lr + 0.5f * (rc->outer_lr - rc->min_lr) * (1.0f + cosf(3.14159265f * frac));
    mela_adam_step(&l->adam, theta, l->grad);
}

void learner_softmax_rows(float *z, int rows, int N)
{
    for (int i = 0; i < rows; i++, z += N) {
        float m = z[0], sum = 0;
        for (int c = 1; c < N; c++)
            m = z[c] > m ? z[c] : m;
        for (int c = 0; c < N; c++)
            sum += z[c] = expf(z[c] - m);
        for (int c = 0; c < N; c++)
            z[c] /= sum;
    }
}

int mela_learner_reserve(mela_learner *l, int slots, int kernel_threads)
{
    return l->def->reserve(l, slots, kernel_threads);
}

int mela_learner_evaluate(mela_learner *l, const float *theta, const mela_task *t, int slot,
                          double *loss, double *acc, float *probs)
{
    if (l->def->evaluate(l, theta, t, slot, loss, acc, probs))
        return -1;
    if (probs && l->def->probabilities) {
        mela_task_spec te = mela_run_test_spec(&l->rc);
        int rows = l->query_rows > 0 ? l->query_rows : te.ways * te.queries;
        l->def->probabilities(l, probs, rows, te.ways);
    }
    return 0;
}

int mela_learner_calibration_tasks(const mela_learner *l)
{
    if (!l->def->calibrate)
        return 0;
    int per = l->def->calibration_images(l), n = per > 0 ? (8192 + per - 1) / per : 8;
    return n < 8 ? 8 : n > 256 ? 256 : n;
}

int mela_learner_calibrate(mela_learner *l, float *theta, mela_tasks *ts, int tasks)
{
    if (!l->def->calibrate)
        return 0;
    int blas = tp_blas_hold();
    int rc = l->def->calibrate(l, theta, ts, tasks);
    tp_blas_release(blas);
    return rc;
}

int mela_learner_compare(mela_learner *l, const float *theta, const float *a, const float *b,
                         double *p_same)
{
    if (!l->def->compare)
        return mela_set_error("compare: a %s learner does not compare two images (siamese does)",
                              l->def->info.name);
    return l->def->compare(l, theta, a, b, p_same);
}

void mela_learner_set_profiling(mela_learner *l, int on) { tp_set_profiling(l->def->pool(l), on); }

void mela_learner_profile(mela_learner *l, double *seconds, long *calls)
{
    tp_profile(l->def->pool(l), seconds, calls);
}

double mela_learner_update_seconds(const mela_learner *l) { return l->update_s; }

int mela_learner_plan_steps(mela_learner *l) { return mela_plan_steps(l->def->pool(l)->train.p); }

size_t mela_learner_arena_bytes(mela_learner *l)
{
    return mela_plan_arena_bytes(l->def->pool(l)->train.p);
}

/* ------------------------------------------------------------------ state */

#define STATE_FORMAT "mela-learner-state-1"

/* The optimiser's moments, after theta when with_theta, as views of one
 * layout (flat: the layout's padding is kept as it is). */
static mela_layout *state_layout(const mela_learner *l, int with_theta)
{
    mela_layout *L = mela_layout_new();
    if (L && ((with_theta && mela_layout_add(L, "theta", MELA_SHAPE((int)l->size)) < 0) ||
              mela_layout_add(L, "adam.m", MELA_SHAPE((int)l->size)) < 0 ||
              mela_layout_add(L, "adam.v", MELA_SHAPE((int)l->size)) < 0)) {
        mela_layout_free(L);
        return NULL;
    }
    return L;
}

int learner_state_save(const mela_learner *l, const char *path, const float *theta, int nmeta,
                       const char *const *keys, const char *const *vals)
{
    mela_layout *L = state_layout(l, theta != NULL);
    float *buf = L ? calloc(mela_layout_size(L), sizeof *buf) : NULL;
    const char **k = calloc((size_t)nmeta + 3, sizeof *k), **v = calloc((size_t)nmeta + 3, sizeof *v);
    int rc = -1, w = theta != NULL;
    if (!buf || !k || !v) {
        mela_set_error("learner state: out of memory");
        goto done;
    }
    if (theta)
        memcpy(buf, theta, l->size * sizeof *buf);
    memcpy(buf + mela_layout_offset(L, w), l->adam.m, l->size * sizeof *buf);
    memcpy(buf + mela_layout_offset(L, w + 1), l->adam.v, l->size * sizeof *buf);
    char t[32], lr[32];
    snprintf(t, sizeof t, "%ld", (long)l->adam.t);
    snprintf(lr, sizeof lr, "%.9g", (double)l->adam.lr);
    for (int i = 0; i < nmeta; i++)
        k[i] = keys[i], v[i] = vals[i];
    k[nmeta] = "learner", v[nmeta] = l->def->info.name;
    k[nmeta + 1] = "adam_t", v[nmeta + 1] = t;
    k[nmeta + 2] = "adam_lr", v[nmeta + 2] = lr;
    rc = mela_checkpoint_save(path, L, buf, nmeta + 3, k, v) < 0 ? -1 : 0;
done:
    free(buf), free(k), free(v);
    mela_layout_free(L);
    return rc;
}

int learner_state_read(mela_learner *l, const mela_checkpoint *ck, const char *path, float *theta)
{
    mela_layout *L = state_layout(l, theta != NULL);
    float *buf = L ? calloc(mela_layout_size(L), sizeof *buf) : NULL;
    const char *who = mela_checkpoint_meta(ck, "learner");
    const char *t = mela_checkpoint_meta(ck, "adam_t"), *lr = mela_checkpoint_meta(ck, "adam_lr");
    char *end1 = NULL, *end2 = NULL;
    long at = t ? strtol(t, &end1, 10) : -1;
    float alr = lr ? strtof(lr, &end2) : NAN;
    int rc = -1, w = theta != NULL;
    if (!buf)
        mela_set_error("learner state: out of memory");
    else if (!who || !t || !lr)
        mela_set_error("%s: not a learner state (no %s)", path, !who ? "learner" : !t ? "adam_t" : "adam_lr");
    else if (strcmp(who, l->def->info.name))
        mela_set_error("%s: the state of a %s learner, not of %s", path, who, l->def->info.name);
    else if (*end1 || at < 0 || *end2 || !isfinite(alr))
        mela_set_error("%s: adam_t '%s' or adam_lr '%s' is not a count or a number", path, t, lr);
    else if (mela_checkpoint_read(ck, L, buf) == 0) {
        if (theta)
            memcpy(theta, buf, l->size * sizeof *buf);
        memcpy(l->adam.m, buf + mela_layout_offset(L, w), l->size * sizeof *buf);
        memcpy(l->adam.v, buf + mela_layout_offset(L, w + 1), l->size * sizeof *buf);
        l->adam.t = at;
        l->adam.lr = alr;
        rc = 0;
    }
    free(buf);
    mela_layout_free(L);
    return rc;
}

int mela_learner_save_state(const mela_learner *l, const char *path)
{
    const char *k[] = {"format"}, *v[] = {STATE_FORMAT};
    return learner_state_save(l, path, NULL, 1, k, v);
}

int mela_learner_load_state(mela_learner *l, const char *path)
{
    mela_checkpoint *ck = mela_checkpoint_open(path);
    if (!ck)
        return -1;
    const char *fmt = mela_checkpoint_meta(ck, "format");
    int rc = -1;
    if (!fmt || strcmp(fmt, STATE_FORMAT))
        mela_set_error("%s: not a learner state (format '%s')", path, fmt ? fmt : "none");
    else
        rc = learner_state_read(l, ck, path, NULL);
    mela_checkpoint_close(ck);
    return rc;
}
