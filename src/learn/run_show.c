/*
 * run_show.c - pictures of what a model does: test episodes with the
 * support set, the queries and their predicted and true classes; for
 * sinusoids the fitted curve before and after adaptation against the true
 * curve and the points adapted to (Finn et al. 2017, figure 2).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "learn/run_impl.h"
#include "learn/taskpool.h"

/* ----------------------------------------------------- classification */

typedef struct shown {
    mela_episode_picture *eps;
    float *pix;  /* every image of every episode */
    int *labels; /* support labels, true and predicted query labels */
} shown;

static int show_episodes(mela_run *r, int n, const char *path)
{
    const mela_run_config *rc = &r->rc;
    mela_task_spec te = mela_run_test_spec(rc);
    int N = te.ways, ns = N * te.shots, nq = te.query_rows > 0 ? te.query_rows : N * te.queries;
    int C = r->data.ds->C, H = r->data.ds->H, W = r->data.ds->W;
    size_t img = (size_t)H * W, in = (size_t)C * img;
    mela_tasks *ts = run_tasks(r, 0, r->data.test, (uint64_t)rc->test_seed, 1);
    shown s = {calloc(n, sizeof *s.eps), malloc((size_t)n * (ns + nq) * img * sizeof(float)),
               malloc((size_t)n * (ns + 2 * nq) * sizeof(int))};
    float *probs = malloc((size_t)nq * N * sizeof *probs);
    int status = -1;
    if (!ts || !s.eps || !s.pix || !s.labels || !probs) {
        if (ts)
            mela_set_error("show: out of memory");
        goto done;
    }
    if (mela_learner_reserve(r->l, 1, rc->threads))
        goto done;
    double right = 0;
    for (int e = 0; e < n; e++) {
        mela_task t;
        mela_tasks_get(ts, 0, (uint64_t)e, &t);
        double loss, acc;
        int blas = tp_blas_hold();
        int bad = mela_learner_evaluate(r->l, r->theta, &t, 0, &loss, &acc, probs);
        tp_blas_release(blas);
        if (bad)
            goto done;
        float *px = s.pix + (size_t)e * (ns + nq) * img;
        int *lab = s.labels + (size_t)e * (ns + 2 * nq);
        for (int k = 0; k < ns; k++) { /* the first channel of each image */
            memcpy(px + k * img, t.xs + k * in, img * sizeof *px);
            lab[k] = (int)t.ys[k];
        }
        for (int q = 0; q < nq; q++) {
            memcpy(px + (ns + q) * img, t.xq + q * in, img * sizeof *px);
            lab[ns + q] = (int)t.yq[q];
            int best = 0;
            for (int c = 1; c < N; c++)
                best = probs[(size_t)q * N + c] > probs[(size_t)q * N + best] ? c : best;
            lab[ns + nq + q] = best;
            right += best == lab[ns + q];
        }
        s.eps[e] = (mela_episode_picture){H, W, 1, ns, nq, px, px + ns * img, lab, lab + ns, lab + ns + nq};
    }
    char title[200];
    snprintf(title, sizeof title, "%s, %d-way %d-shot: %.0f of %d queries right", rc->learner, N, te.shots,
             right, n * nq);
    status = mela_plot_episodes_png(path, title, n, s.eps);
done:
    mela_tasks_free(ts);
    free(s.eps), free(s.pix), free(s.labels), free(probs);
    return status;
}

/* ---------------------------------------------------------- regression */

#define SHOW_POINTS 200 /* query points: the true curve and the fits */

typedef struct xy {
    float x, y;
} xy;

static int xy_cmp(const void *a, const void *b)
{
    float p = ((const xy *)a)->x, q = ((const xy *)b)->x;
    return (p > q) - (p < q);
}

/* The learner of r with `steps` inner steps at test time and SHOW_POINTS
 * query points. */
static mela_learner *fit_learner(const mela_run *r, int steps)
{
    mela_run_config c = r->rc;
    c.test_steps = steps;
    c.test.queries = SHOW_POINTS;
    mela_learner *l = mela_learner_new(&c, 0);
    if (l && mela_learner_reserve(l, 1, 1)) {
        mela_learner_free(l);
        return NULL;
    }
    return l;
}

static int show_curves(mela_run *r, int n, const char *path)
{
    const mela_run_config *rc = &r->rc;
    int K = mela_run_test_spec(rc).shots, k = rc->test_steps;
    /* before, after 1 and 10 steps as in Finn et al.'s figure, and after
     * the run's test_steps */
    int steps[4] = {0, 1, 10, k}, nfit = k == 0 || k == 1 || k == 10 ? 3 : 4, status = -1;
    mela_learner *l[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < nfit; i++)
        if (!(l[i] = fit_learner(r, steps[i])))
            goto fail;
    mela_tasks_opts o;
    mela_learner_tasks(l[0], 0, &o);
    o.seed = (uint64_t)rc->test_seed;
    o.slots = 1;
    mela_tasks *ts = mela_tasks_new(NULL, NULL, &o);
    /* per task: x, true y, nfit fits (SHOW_POINTS each), support x and y with gaps */
    size_t per = (size_t)(2 + nfit) * SHOW_POINTS + 4 * (size_t)K;
    double *v = malloc((size_t)n * per * sizeof *v);
    mela_series *ser = malloc((size_t)n * 6 * sizeof *ser);
    mela_chart *ch = malloc((size_t)n * sizeof *ch);
    char(*names)[5][64] = malloc((size_t)n * sizeof *names);
    xy *pts = malloc(SHOW_POINTS * sizeof *pts);
    float *xq = malloc(2 * SHOW_POINTS * sizeof *xq), *pred = malloc(SHOW_POINTS * sizeof *pred);
    if (!ts || !v || !ser || !ch || !names || !pts || !xq || !pred) {
        if (ts)
            mela_set_error("show: out of memory");
        goto done;
    }
    for (int e = 0; e < n; e++) {
        mela_task t;
        mela_tasks_get(ts, 0, (uint64_t)e, &t);
        for (int q = 0; q < SHOW_POINTS; q++)
            pts[q] = (xy){t.xq[q], t.yq[q]};
        qsort(pts, SHOW_POINTS, sizeof *pts, xy_cmp);
        for (int q = 0; q < SHOW_POINTS; q++)
            xq[q] = pts[q].x, xq[SHOW_POINTS + q] = pts[q].y;
        mela_task sorted = {t.xs, t.ys, xq, xq + SHOW_POINTS};
        double *x = v + (size_t)e * per, *y = x + SHOW_POINTS, *fit = y + SHOW_POINTS;
        double *sx = fit + (size_t)nfit * SHOW_POINTS, *sy = sx + 2 * K;
        for (int q = 0; q < SHOW_POINTS; q++)
            x[q] = pts[q].x, y[q] = pts[q].y;
        mela_series *s = ser + (size_t)e * 6;
        s[0] = (mela_series){"true function", x, y, SHOW_POINTS};
        double mse[4];
        for (int i = 0; i < nfit; i++) {
            double acc;
            int blas = tp_blas_hold();
            int bad = mela_learner_evaluate(l[i], r->theta, &sorted, 0, &mse[i], &acc, pred);
            tp_blas_release(blas);
            if (bad)
                goto done;
            for (int q = 0; q < SHOW_POINTS; q++)
                fit[(size_t)i * SHOW_POINTS + q] = pred[q];
            if (steps[i] == 0)
                snprintf(names[e][i], sizeof names[e][i], "before adaptation (MSE %.3f)", mse[i]);
            else
                snprintf(names[e][i], sizeof names[e][i], "after %d step%s (MSE %.3f)", steps[i],
                         steps[i] == 1 ? "" : "s", mse[i]);
            s[1 + i] = (mela_series){names[e][i], x, fit + (size_t)i * SHOW_POINTS, SHOW_POINTS};
        }
        for (int j = 0; j < K; j++) /* a gap after each point: drawn as dots */
            sx[2 * j] = t.xs[j], sy[2 * j] = t.ys[j], sx[2 * j + 1] = sy[2 * j + 1] = NAN;
        snprintf(names[e][4], sizeof names[e][4], "the %d points adapted to", K);
        s[1 + nfit] = (mela_series){names[e][4], sx, sy, 2 * K};
        ch[e] = (mela_chart){NULL, "x", 2 + nfit, s};
    }
    char title[96]; /* on the first chart */
    snprintf(title, sizeof title, "%s on sinusoids, K = %d: test task%s", rc->learner, K, n > 1 ? "s" : "");
    ch[0].title = title;
    status = mela_plot_charts_png(path, n, 2, ch);
done:
    mela_tasks_free(ts);
    free(v), free(ser), free(ch), free(names), free(pts), free(xq), free(pred);
fail:
    for (int i = 0; i < 4; i++)
        mela_learner_free(l[i]);
    return status;
}

int mela_run_show_run(mela_run *r, int n, const char *path)
{
    int most = mela_run_regression(&r->rc) ? 64 : 100;
    if (n < 1 || n > most)
        return mela_set_error("show: %d episodes; 1 to %d can be drawn", n, most);
    if (!path || !*path)
        return mela_set_error("show: no file given");
    if (!mela_run_regression(&r->rc) && !r->data.test)
        return mela_set_error("show: the run has no test split");
    return mela_run_regression(&r->rc) ? show_curves(r, n, path) : show_episodes(r, n, path);
}
