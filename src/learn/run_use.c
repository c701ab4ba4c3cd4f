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
    if (config_from_checkpoint(ck, path, rc))
        goto done;
    for (int i = 0; i < nover; i++) {
        char key[64];
        const char *eq = strchr(over[i], '=');
        if (!eq || eq - over[i] >= (long)sizeof key) {
            mela_set_error("override '%s' is not key=value", over[i]);
            goto done;
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq - over[i]), over[i]);
        if (mela_run_set(rc, key, eq + 1))
            goto done;
    }
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

/* Support and query images as the learner's task; the support rows are
 * shuffled (under test_seed) when its evaluation tasks are. */
typedef struct user_task {
    float *xs, *ys, *xq, *yq;
} user_task;

static int user_task_fill(user_task *u, mela_run *r, const mela_dataset *sup, int nquery,
                          const char *const *paths, unsigned flags, mela_adapt_result *res)
{
    int S = r->rc.image_size, N = sup->nclasses, K = sup->classes[0].count, n = N * K;
    size_t img = (size_t)S * S;
    u->xs = malloc(((size_t)n * img + n) * sizeof *u->xs);
    u->xq = malloc((size_t)nquery * img * sizeof *u->xq);
    u->yq = calloc(nquery, sizeof *u->yq);
    if (!u->xs || !u->xq || !u->yq)
        return mela_set_error("adapt: out of memory");
    u->ys = u->xs + (size_t)n * img;
    for (int c = 0; c < N; c++)
        for (int j = 0; j < K; j++) {
            const uint8_t *p = mela_dataset_image(sup, c, j);
            for (size_t q = 0; q < img; q++)
                u->xs[((size_t)c * K + j) * img + q] = p[q] * (1.0f / 255.0f);
            u->ys[c * K + j] = (float)c;
        }
    for (int i = 0; i < nquery; i++) {
        int h, w, colour;
        if (mela_image_info(paths[i], &h, &w, &colour) ||
            mela_image_load(paths[i], 1, S, S, flags, u->xq + i * img))
            return -1;
        res->nresized += h != S || w != S;
        res->ncolour += colour;
    }
    mela_tasks_opts o;
    mela_learner_tasks(r->l, 0, &o);
    if (o.shuffle_support) {
        float *tmp = malloc(((size_t)n * img + n) * sizeof *tmp);
        if (!tmp)
            return mela_set_error("adapt: out of memory");
        memcpy(tmp, u->xs, ((size_t)n * img + n) * sizeof *tmp);
        mela_rng rr = mela_rng_derive((uint64_t)r->rc.test_seed, 0x61646170ULL, 0);
        mela_shuffle_rows(u->xs, u->ys, tmp, tmp + (size_t)n * img, n, img, &rr);
        free(tmp);
    }
    return 0;
}

/* Probabilities of the one user task and the predicted classes. */
static int user_predict(mela_run *r, const user_task *u, mela_adapt_result *res)
{
    int N = res->nclasses;
    mela_task t = {u->xs, u->ys, u->xq, u->yq};
    if (mela_learner_reserve(r->l, 1, r->rc.threads))
        return -1;
    int blas = tp_blas_hold();
    int rc = mela_learner_evaluate(r->l, r->theta, &t, 0, NULL, NULL, res->scores);
    tp_blas_release(blas);
    if (rc)
        return -1;
    for (int i = 0; i < res->nquery; i++) {
        const float *z = res->scores + (size_t)i * N;
        int best = 0;
        for (int c = 1; c < N; c++)
            if (z[c] > z[best])
                best = c;
        res->pred[i] = best;
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
    mela_checkpoint *ck = mela_checkpoint_open(checkpoint);
    mela_run_config rc;
    int ok = ck && config_from_checkpoint(ck, checkpoint, &rc) == 0 &&
             learner_check_weights(&rc, ck, checkpoint) == 0;
    mela_checkpoint_close(ck);
    if (!ok)
        return -1;
    if (mela_run_regression(&rc))
        return mela_set_error("%s: a regression checkpoint cannot classify images", checkpoint);
    unsigned flags = invert ? MELA_FOLDER_INVERT : 0;
    mela_dataset *sup = mela_folder_load(support_dir, rc.image_size, rc.image_size, flags);
    mela_run *r = NULL;
    user_task u = {0};
    int status = -1;
    if (!sup || support_check(sup, support_dir, &rc))
        goto done;
    char over[3][48];
    snprintf(over[0], sizeof over[0], "test_shots=%d", sup->classes[0].count);
    snprintf(over[1], sizeof over[1], "test_ways=%d", sup->nclasses);
    snprintf(over[2], sizeof over[2], "test_steps=%d", steps >= 0 ? steps : rc.test_steps);
    const char *ov[3] = {over[0], over[1], over[2]};
    if (!(r = open_checkpoint(checkpoint, &rc, 3, ov, 0, nquery)) || result_alloc(res, sup, nquery) ||
        user_task_fill(&u, r, sup, nquery, query_paths, flags, res) || user_predict(r, &u, res))
        goto done;
    status = 0;
done:
    if (status)
        mela_adapt_result_free(res);
    free(u.xs), free(u.xq), free(u.yq);
    mela_dataset_free(sup);
    mela_run_close(r);
    return status;
}

int mela_run_compare(const char *checkpoint, const char *a, const char *b, int invert, double *p_same)
{
    mela_run_config rc;
    mela_run *r = open_checkpoint(checkpoint, &rc, 0, NULL, 0, 0);
    if (!r)
        return -1;
    size_t img = (size_t)rc.image_size * rc.image_size;
    float *xa = malloc(img * sizeof *xa), *xb = malloc(img * sizeof *xb);
    unsigned flags = invert ? MELA_FOLDER_INVERT : 0;
    int status = -1;
    if (!mela_learner_info_of(r->l)->compares)
        mela_set_error("%s: a %s checkpoint does not compare two images (only siamese)", checkpoint,
                       rc.learner);
    else if (!xa || !xb)
        mela_set_error("compare: out of memory");
    else if (!mela_image_load(a, 1, rc.image_size, rc.image_size, flags, xa) &&
             !mela_image_load(b, 1, rc.image_size, rc.image_size, flags, xb))
        status = mela_learner_compare(r->l, r->theta, xa, xb, p_same);
    free(xa), free(xb);
    mela_run_close(r);
    return status;
}
