/*
 * run_use.c - what a trained checkpoint is used for: evaluation on the fixed
 * test episodes, few-shot prediction on the user's own images, and the
 * Siamese comparison of two images. Each rebuilds the run from the
 * configuration stored in the checkpoint's metadata.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "learn/dist.h"
#include "learn/learner.h"
#include "learn/run_impl.h"
#include "learn/taskpool.h"

/* The run configuration stored in a checkpoint's metadata, checked. */
static int config_from_checkpoint(const mela_checkpoint *ck, const char *path, mela_run_config *rc)
{
    const char *fmt = mela_checkpoint_meta(ck, "format");
    if (!fmt || (strcmp(fmt, "mela-run-1") && strcmp(fmt, "mela-gbml-1")))
        return mela_set_error("%s: not a checkpoint of a mela run (format '%s')", path, fmt ? fmt : "none");
    return run_config_read(ck, path, rc);
}

/* Applies key=value overrides to rc (mela_run_set checks each). */
static int apply_overrides(mela_run_config *rc, int nover, const char *const *over)
{
    for (int i = 0; i < nover; i++) {
        char key[64];
        const char *eq = strchr(over[i], '=');
        if (!eq || eq - over[i] >= (long)sizeof key)
            return mela_set_error("override '%s' is not key=value", over[i]);
        snprintf(key, sizeof key, "%.*s", (int)(eq - over[i]), over[i]);
        if (mela_run_set(rc, key, eq + 1))
            return -1;
    }
    return 0;
}

/* A checkpoint's run, built (with query_rows, without data unless load) and
 * its weights read. Everything about the checkpoint is checked before the
 * data are loaded: the configuration, and its weights against the model
 * (built alone first: a configuration the weights do not fit, such as
 * another image_size, builds no executors). Closes nothing it did not open. */
static mela_run *open_checkpoint(const char *path, mela_run_config *rc, int nover,
                                 const char *const *over, int load, int query_rows)
{
    mela_checkpoint *ck = mela_checkpoint_open(path);
    if (!ck)
        return NULL;
    mela_run *r = NULL;
    if (config_from_checkpoint(ck, path, rc) || apply_overrides(rc, nover, over))
        goto done;
    if (learner_check_weights(rc, ck, path) || !(r = run_open_rows(rc, NULL, 0, query_rows)))
        goto done;
    if (mela_checkpoint_read(ck, mela_learner_layout(r->l), r->theta) || (load && run_load_data(r))) {
        mela_run_close(r);
        r = NULL;
    }
done:
    mela_checkpoint_close(ck);
    return r;
}

/* open_checkpoint with the data, overrides, and test_steps = steps unless
 * steps < 0. */
static mela_run *open_with_steps(const char *checkpoint, int nover, const char *const *overrides,
                                 int steps)
{
    mela_run_config rc;
    char **all = calloc((size_t)nover + 1, sizeof *all);
    if (!all) {
        mela_set_error("%s: out of memory", checkpoint);
        return NULL;
    }
    for (int i = 0; i < nover; i++)
        all[i] = (char *)overrides[i];
    char st[32];
    snprintf(st, sizeof st, "test_steps=%d", steps);
    if (steps >= 0)
        all[nover++] = st;
    mela_run *r = open_checkpoint(checkpoint, &rc, nover, (const char *const *)all, 1, 0);
    free(all);
    return r;
}

int mela_run_eval(const char *checkpoint, int nover, const char *const *overrides, int episodes,
                  int steps, mela_eval_result *res)
{
    mela_run *r = open_with_steps(checkpoint, nover, overrides, steps);
    int status = dist_agree(r ? 0 : -1) ? -1 : mela_run_test(r, episodes, res);
    mela_run_close(r);
    return status;
}

int mela_run_show(const char *checkpoint, int nover, const char *const *overrides, int episodes,
                  int steps, const char *path)
{
    if (dist_rank() != 0) /* only rank 0 writes (the pictures are a few episodes) */
        return 0;
    mela_run *r = open_with_steps(checkpoint, nover, overrides, steps);
    int status = r ? mela_run_show_run(r, episodes, path) : -1;
    mela_run_close(r);
    return status;
}

/* ------------------------------------------------------- the user's images */

void mela_adapt_result_free(mela_adapt_result *res)
{
    for (int i = 0; i < res->nclasses && res->classes; i++)
        free(res->classes[i]);
    free(res->classes);
    free(res->scores);
    free(res->pred);
    memset(res, 0, sizeof *res);
}

/* The user's images are resized as the model's training images were. */
static unsigned image_filter(const mela_run_config *rc)
{
    return strcmp(rc->resize, "nearest") ? 0u : (unsigned)MELA_FOLDER_NEAREST;
}

/* The support folder: at least 2 classes (exactly the model's ways when
 * its head fixes them), the same number of images in every class. */
static int support_check(const mela_dataset *sup, const char *dir, const mela_run_config *rc)
{
    const mela_learner_info *info = mela_learner_find(rc->learner);
    int need = info && info->any_ways ? 0 : rc->train.ways;
    if (sup->nclasses < 2 || (need && sup->nclasses != need))
        return mela_set_error("adapt: %s has %d classes but the checkpoint is a %d-way model", dir,
                              sup->nclasses, need ? need : 2);
    int K = sup->classes[0].count;
    for (int c = 1; c < sup->nclasses; c++)
        if (sup->classes[c].count != K)
            return mela_set_error("adapt: class '%s' has %d images and class '%s' %d; give every class "
                                  "the same number", sup->classes[c].name, sup->classes[c].count,
                                  sup->classes[0].name, K);
    return 0;
}

/* ---------------------------------------------------------------- predictors */

struct mela_predictor {
    char *path;
    mela_checkpoint *ck;
    mela_run_config rc;   /* the checkpoint's, overrides applied */
    mela_run *r;          /* built for ns, nq, steps (NULL: none yet) */
    int ns, nq, ways, steps;
    float *buf;           /* the support rows as the learner takes them, and the query labels */
    size_t nbuf;
};

void mela_predictor_close(mela_predictor *p)
{
    if (!p)
        return;
    mela_run_close(p->r);
    mela_checkpoint_close(p->ck);
    free(p->buf);
    free(p->path);
    free(p);
}

mela_predictor *mela_predictor_open(const char *checkpoint, int nover, const char *const *overrides)
{
    mela_predictor *p = calloc(1, sizeof *p);
    if (!p || !(p->path = strdup(checkpoint))) {
        free(p);
        mela_set_error("predictor: out of memory");
        return NULL;
    }
    if (!(p->ck = mela_checkpoint_open(checkpoint)) || config_from_checkpoint(p->ck, checkpoint, &p->rc) ||
        apply_overrides(&p->rc, nover, overrides) || learner_check_weights(&p->rc, p->ck, checkpoint))
        goto fail;
    return p;
fail:
    mela_predictor_close(p);
    return NULL;
}

const mela_run_config *mela_predictor_config(const mela_predictor *p) { return &p->rc; }

/* Classification support labels: N classes 0..N-1, each K times, N what
 * the checkpoint takes. */
static int labels_check(const mela_predictor *p, int ns, const float *ys, int *ways)
{
    int N = 0;
    for (int i = 0; i < ns; i++) {
        if (!(ys[i] >= 0 && ys[i] <= 1000) || ys[i] != (float)(int)ys[i])
            return mela_set_error("adapt: support label %d is %g, not a class number 0..1000", i, (double)ys[i]);
        if ((int)ys[i] + 1 > N)
            N = (int)ys[i] + 1;
    }
    const mela_learner_info *info = mela_learner_find(p->rc.learner);
    int need = info && info->any_ways ? 0 : p->rc.train.ways;
    if (N < 2 || (need && N != need))
        return mela_set_error("adapt: the support set has %d classes but %s is a %d-way model", N, p->path,
                              need ? need : 2);
    int *count = calloc(N, sizeof *count);
    if (!count)
        return mela_set_error("adapt: out of memory");
    for (int i = 0; i < ns; i++)
        count[(int)ys[i]]++;
    int bad = -1;
    for (int c = 0; c < N && bad < 0; c++)
        if (count[c] != count[0])
            bad = c;
    int k0 = count[0], kb = bad >= 0 ? count[bad] : 0;
    free(count);
    if (bad >= 0)
        return mela_set_error("adapt: class %d has %d support examples and class 0 has %d; give every "
                              "class the same number", bad, kb, k0);
    *ways = N;
    return 0;
}

/* The run for ns support and nq query examples with `steps` inner steps,
 * built when the last one was for other numbers. */
static int predictor_build(mela_predictor *p, int ns, int nq, int ways, int steps)
{
    if (p->r && p->ns == ns && p->nq == nq && p->ways == ways && p->steps == steps)
        return 0;
    mela_run_close(p->r);
    p->r = NULL;
    mela_run_config rc = p->rc;
    char v[3][32];
    snprintf(v[0], sizeof v[0], "%d", ways ? ns / ways : ns);
    snprintf(v[1], sizeof v[1], "%d", ways);
    snprintf(v[2], sizeof v[2], "%d", steps);
    if (mela_run_set(&rc, "test_shots", v[0]) || (ways && mela_run_set(&rc, "test_ways", v[1])) ||
        mela_run_set(&rc, "test_steps", v[2]))
        return -1;
    mela_run *r = run_open_rows(&rc, NULL, 0, nq);
    if (!r || mela_checkpoint_read(p->ck, mela_learner_layout(r->l), r->theta) ||
        mela_learner_reserve(r->l, 1, rc.threads)) {
        mela_run_close(r);
        return -1;
    }
    p->r = r, p->ns = ns, p->nq = nq, p->ways = ways, p->steps = steps;
    return 0;
}

int mela_predictor_adapt(mela_predictor *p, int nsupport, const float *xs, const float *ys,
                         int nquery, const float *xq, int steps, float *out)
{
    int reg = mela_run_regression(&p->rc), ways = 0;
    if (nsupport < 1 || nquery < 1)
        return mela_set_error("adapt: %d support and %d query examples (at least 1 of each)", nsupport, nquery);
    if (steps < -1 || steps > 100)
        return mela_set_error("adapt: steps %d is not in 0..100", steps);
    if (!reg && labels_check(p, nsupport, ys, &ways))
        return -1;
    if (predictor_build(p, nsupport, nquery, ways, steps >= 0 ? steps : p->rc.test_steps))
        return -1;
    size_t img = reg ? 1 : (size_t)p->rc.image_size * p->rc.image_size;
    size_t need = (size_t)nsupport * img + nsupport + nquery;
    if (need > p->nbuf) {
        float *b = realloc(p->buf, need * sizeof *b);
        if (!b)
            return mela_set_error("adapt: out of memory");
        p->buf = b, p->nbuf = need;
    }
    float *sx = p->buf, *sy = sx + (size_t)nsupport * img, *yq = sy + nsupport;
    mela_tasks_opts o;
    mela_learner_tasks(p->r->l, 0, &o);
    if (o.shuffle_support && !reg) {
        mela_rng rr = mela_rng_derive((uint64_t)p->r->rc.test_seed, 0x61646170ULL, 0);
        mela_shuffle_rows(sx, sy, xs, ys, nsupport, img, &rr);
    } else {
        memcpy(sx, xs, (size_t)nsupport * img * sizeof *sx);
        memcpy(sy, ys, (size_t)nsupport * sizeof *sy);
    }
    memset(yq, 0, (size_t)nquery * sizeof *yq);
    mela_task t = {sx, sy, xq, yq};
    int blas = tp_blas_hold();
    int rc = mela_learner_evaluate(p->r->l, p->r->theta, &t, 0, NULL, NULL, out);
    tp_blas_release(blas);
    return rc;
}

/* ------------------------------------------------------- the user's images */

/* The support images class by class (labels 0..N-1) and the query images,
 * as the predictor takes them. */
static int user_arrays(const mela_dataset *sup, int S, int nquery, const char *const *paths,
                       unsigned flags, float **x, mela_adapt_result *res)
{
    int n = sup->nimages;
    size_t img = (size_t)S * S;
    float *xs = *x = malloc(((size_t)n * img + n + (size_t)nquery * img) * sizeof *xs);
    if (!xs)
        return mela_set_error("adapt: out of memory");
    float *ys = xs + (size_t)n * img, *xq = ys + n;
    for (int c = 0, row = 0; c < sup->nclasses; c++)
        for (int j = 0; j < sup->classes[c].count; j++, row++) {
            const uint8_t *px = mela_dataset_image(sup, c, j);
            for (size_t q = 0; q < img; q++)
                xs[row * img + q] = px[q] * (1.0f / 255.0f);
            ys[row] = (float)c;
        }
    for (int i = 0; i < nquery; i++) {
        int h, w, colour;
        if (mela_image_info(paths[i], &h, &w, &colour) || mela_image_load(paths[i], 1, S, S, flags, xq + i * img))
            return -1;
        res->nresized += h != S || w != S;
        res->ncolour += colour;
    }
    return 0;
}

static int result_alloc(mela_adapt_result *res, const mela_dataset *sup, int nquery)
{
    int N = sup->nclasses;
    res->nclasses = N;
    res->nquery = nquery;
    res->scores = malloc((size_t)nquery * N * sizeof *res->scores);
    res->pred = malloc(nquery * sizeof *res->pred);
    res->classes = calloc(N, sizeof *res->classes);
    if (!res->scores || !res->pred || !res->classes)
        return mela_set_error("adapt: out of memory");
    for (int c = 0; c < N; c++)
        if (!(res->classes[c] = strdup(sup->classes[c].name)))
            return mela_set_error("adapt: out of memory");
    res->nimages = nquery + sup->nimages;
    res->nresized = sup->nresized;
    res->ncolour = sup->ncolour;
    return 0;
}

int mela_run_adapt(const char *checkpoint, const char *support_dir, int nquery,
                   const char *const *query_paths, int steps, int invert, mela_adapt_result *res)
{
    memset(res, 0, sizeof *res);
    if (nquery < 1)
        return mela_set_error("adapt: no query images");
    mela_predictor *p = mela_predictor_open(checkpoint, 0, NULL);
    if (!p)
        return -1;
    const mela_run_config *rc = &p->rc;
    mela_dataset *sup = NULL;
    float *x = NULL;
    int status = -1;
    if (mela_run_regression(rc)) {
        mela_set_error("%s: a regression checkpoint cannot classify images", checkpoint);
        goto done;
    }
    unsigned flags = (invert ? MELA_FOLDER_INVERT : 0) | image_filter(rc);
    int S = rc->image_size;
    if (!(sup = mela_folder_load(support_dir, S, S, flags)) || support_check(sup, support_dir, rc) ||
        result_alloc(res, sup, nquery) || user_arrays(sup, S, nquery, query_paths, flags, &x, res))
        goto done;
    int n = sup->nimages;
    float *ys = x + (size_t)n * S * S;
    if (mela_predictor_adapt(p, n, x, ys, nquery, ys + n, steps, res->scores))
        goto done;
    for (int i = 0; i < nquery; i++) {
        const float *z = res->scores + (size_t)i * res->nclasses;
        int best = 0;
        for (int c = 1; c < res->nclasses; c++)
            if (z[c] > z[best])
                best = c;
        res->pred[i] = best;
    }
    status = 0;
done:
    if (status)
        mela_adapt_result_free(res);
    free(x);
    mela_dataset_free(sup);
    mela_predictor_close(p);
    return status;
}

/* A Siamese checkpoint's run, built for its own shapes when there is none
 * yet (the next adapt builds its own). */
static int predictor_comparer(mela_predictor *p)
{
    const mela_learner_info *info = mela_learner_find(p->rc.learner);
    if (!info || !info->compares)
        return mela_set_error("%s: a %s checkpoint does not compare two images (only siamese)", p->path,
                              p->rc.learner);
    if (p->r)
        return 0;
    mela_run *r = run_open_rows(&p->rc, NULL, 0, 0);
    if (!r || mela_checkpoint_read(p->ck, mela_learner_layout(r->l), r->theta)) {
        mela_run_close(r);
        return -1;
    }
    p->r = r, p->ns = -1;
    return 0;
}

int mela_predictor_compare(mela_predictor *p, const float *a, const float *b, double *p_same)
{
    if (predictor_comparer(p))
        return -1;
    int blas = tp_blas_hold();
    int rc = mela_learner_compare(p->r->l, p->r->theta, a, b, p_same);
    tp_blas_release(blas);
    return rc;
}

int mela_run_compare(const char *checkpoint, const char *a, const char *b, int invert, double *p_same)
{
    mela_predictor *p = mela_predictor_open(checkpoint, 0, NULL);
    if (!p)
        return -1;
    int S = p->rc.image_size, status = -1;
    size_t img = (size_t)S * S;
    float *xa = malloc(img * sizeof *xa), *xb = malloc(img * sizeof *xb);
    unsigned flags = (invert ? MELA_FOLDER_INVERT : 0) | image_filter(&p->rc);
    if (!xa || !xb)
        mela_set_error("compare: out of memory");
    else if (!predictor_comparer(p) && !mela_image_load(a, 1, S, S, flags, xa) &&
             !mela_image_load(b, 1, S, S, flags, xb))
        status = mela_predictor_compare(p, xa, xb, p_same);
    free(xa), free(xb);
    mela_predictor_close(p);
    return status;
}
