/*
 * gradcheck.h - finite-difference checks of first and second derivatives of
 * any function built from graph ops (header-only; tests include it once).
 *
 * For a function y = f(x_1..x_n) and a fixed random v of y's shape:
 *   first order:  L = sum(v * y); grad(L, x_k) against the central difference
 *                 (L(x + h e_j) - L(x - h e_j)) / 2h for every element j;
 *   second order: with random u_k, G = sum_k sum(u_k * grad(L, x_k)), the
 *                 gradient of a gradient-vector product; grad(G, x_k) against
 *                 the central difference of G.
 * Inputs are drawn from a shuffled grid (distinct values at least `spacing`
 * apart, none within spacing/2 of 0), so h = spacing/5 never crosses a kink
 * of relu, abs or max-pool. Sums are float; tolerances are stated per test,
 * and atol is widened by the rounding error of the difference itself,
 * 8 eps |f| / 2h (eps = FLT_EPSILON), which is all a float difference can
 * resolve.
 */
#ifndef MELA_GRADCHECK_H
#define MELA_GRADCHECK_H

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mela.h"

typedef mela_node (*gc_build)(mela_graph *g, const mela_node *x, const mela_node *fixed, void *ctx);

typedef struct gc_spec {
    const char *name;
    int n;                 /* differentiable inputs */
    mela_shape shape[3];
    float lo[3], hi[3];    /* range of each input's grid (default -1..1) */
    int nfixed;            /* extra inputs that are not differentiated */
    mela_shape fshape[2];
    const float *fdata[2];
    int second;            /* also check second order */
    double atol, rtol;     /* first-order tolerance; second uses 2x */
    void *ctx;
} gc_spec;

static void gc_fill_grid(mela_rng *r, float *x, size_t n, float lo, float hi)
{
    /* n distinct values on a grid of step (hi-lo)/n, offset by half a step. */
    int *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = (int)i;
    mela_rng_shuffle(r, perm, (int)n);
    float step = (hi - lo) / (float)n;
    for (size_t i = 0; i < n; i++) {
        float v = lo + ((float)perm[i] + 0.5f) * step;
        if (fabsf(v) < 0.25f * step) /* keep away from 0 */
            v += 0.5f * step;
        x[i] = v;
    }
    free(perm);
}

static double gc_run_scalar(mela_exec *e, mela_node out)
{
    if (mela_exec_run(e))
        return NAN;
    return mela_exec_value(e, out)[0];
}


/* Runs the checks of one function; returns 1 when all passed. */
static int gradcheck(gc_build f, const gc_spec *sp, uint64_t seed)
{
    mela_rng r = mela_rng_new(seed);
    mela_graph *g = mela_graph_new();
    mela_node x[3], fx[2], u[3], dx[3], ddx[3] = {MELA_NONE, MELA_NONE, MELA_NONE};
    float *xv[3] = {0}, *uv[3] = {0}, *an1[3] = {0}, *an2[3] = {0};
    size_t nx[3] = {0};
    int ok = 1;
    for (int k = 0; k < sp->n; k++) {
        x[k] = mela_input(g, "x", sp->shape[k]);
        nx[k] = mela_shape_numel(sp->shape[k]);
        xv[k] = malloc(nx[k] * sizeof(float));
        float lo = sp->lo[k], hi = sp->hi[k];
        if (lo == 0 && hi == 0)
            lo = -1, hi = 1;
        gc_fill_grid(&r, xv[k], nx[k], lo, hi);
    }
    for (int k = 0; k < sp->nfixed; k++)
        fx[k] = mela_input(g, "fixed", sp->fshape[k]);
    mela_node y = f(g, x, fx, sp->ctx);
    mela_shape ys = mela_node_shape(g, y);
    size_t ny = mela_shape_numel(ys);
    float *vv = malloc((ny ? ny : 1) * sizeof(float));
    for (size_t i = 0; i < ny; i++)
        vv[i] = mela_rng_normal(&r);
    mela_node v = mela_input(g, "v", ys.nd ? ys : MELA_SHAPE(1));
    mela_node L = mela_sum(g, mela_mul(g, y, v));
    mela_grad(g, L, MELA_NONE, sp->n, x, dx);
    mela_node G = MELA_NONE;
    if (sp->second) {
        for (int k = 0; k < sp->n; k++) {
            u[k] = mela_input(g, "u", sp->shape[k]);
            uv[k] = malloc(nx[k] * sizeof(float));
            for (size_t i = 0; i < nx[k]; i++)
                uv[k][i] = mela_rng_normal(&r);
            mela_node t = mela_sum(g, mela_mul(g, dx[k], u[k]));
            G = k ? mela_add(g, G, t) : t;
        }
        mela_grad(g, G, MELA_NONE, sp->n, x, ddx);
    }
    if (mela_graph_error(g)) {
        CHECK(0, "%s: graph error: %s", sp->name, mela_graph_error(g));
        ok = 0;
        goto done;
    }
    {
        mela_node outs[8];
        int no = 0;
        for (int k = 0; k < sp->n; k++) {
            outs[no++] = dx[k];
            if (sp->second)
                outs[no++] = ddx[k];
        }
        mela_plan *pa = mela_plan_new(g, no, outs);
        mela_plan *pl = mela_plan_new(g, 1, &L);
        mela_plan *pg = sp->second ? mela_plan_new(g, 1, &G) : NULL;
        mela_exec *ea = mela_exec_new(pa), *el = mela_exec_new(pl), *eg = pg ? mela_exec_new(pg) : NULL;
        mela_exec *all[3] = {ea, el, eg};
        for (int e = 0; e < 3; e++) {
            if (!all[e])
                continue;
            for (int k = 0; k < sp->n; k++) {
                mela_exec_bind(all[e], x[k], xv[k]);
                if (sp->second)
                    mela_exec_bind(all[e], u[k], uv[k]);
            }
            for (int k = 0; k < sp->nfixed; k++)
                mela_exec_bind(all[e], fx[k], sp->fdata[k]);
            mela_exec_bind(all[e], v, vv);
        }
        /* bind errors for nodes a plan does not read are harmless */
        if (mela_exec_run(ea)) {
            CHECK(0, "%s: run failed: %s", sp->name, mela_last_error());
            ok = 0;
        }
        for (int k = 0; k < sp->n && ok; k++) {
            an1[k] = malloc(nx[k] * sizeof(float));
            memcpy(an1[k], mela_exec_value(ea, dx[k]), nx[k] * sizeof(float));
            if (sp->second) {
                an2[k] = malloc(nx[k] * sizeof(float));
                memcpy(an2[k], mela_exec_value(ea, ddx[k]), nx[k] * sizeof(float));
            }
        }
        for (int k = 0; k < sp->n && ok; k++) {
            float *fd1 = malloc(nx[k] * sizeof(float)), *fd2 = malloc(nx[k] * sizeof(float));
            float lo = sp->lo[k], hi = sp->hi[k];
            if (lo == 0 && hi == 0)
                lo = -1, hi = 1;
            float h = (hi - lo) / (float)nx[k] / 5.0f;
            if (h > 1e-2f)
                h = 1e-2f;
            double noise1 = 0, noise2 = 0;
            for (size_t j = 0; j < nx[k]; j++) {
                float keep = xv[k][j];
                xv[k][j] = keep + h;
                double lp = gc_run_scalar(el, L), gp = eg ? gc_run_scalar(eg, G) : 0;
                xv[k][j] = keep - h;
                double lm = gc_run_scalar(el, L), gm = eg ? gc_run_scalar(eg, G) : 0;
                xv[k][j] = keep;
                fd1[j] = (float)((lp - lm) / (2.0 * h));
                fd2[j] = (float)((gp - gm) / (2.0 * h));
                noise1 = fmax(noise1, 8 * FLT_EPSILON * fmax(fabs(lp), fabs(lm)) / (2.0 * h));
                noise2 = fmax(noise2, 8 * FLT_EPSILON * fmax(fabs(gp), fabs(gm)) / (2.0 * h));
            }
            char what[160];
            snprintf(what, sizeof what, "%s: d/dx%d (first order)", sp->name, k);
            ok &= check_close_array(__FILE__, __LINE__, an1[k], fd1, nx[k], sp->atol + noise1, sp->rtol, what);
            if (sp->second) {
                snprintf(what, sizeof what, "%s: d/dx%d of <grad, u> (second order)", sp->name, k);
                ok &= check_close_array(__FILE__, __LINE__, an2[k], fd2, nx[k], 2 * sp->atol + noise2,
                                        2 * sp->rtol, what);
            }
            free(fd1);
            free(fd2);
        }
        mela_exec_free(ea);
        mela_exec_free(el);
        mela_exec_free(eg);
        mela_plan_free(pa);
        mela_plan_free(pl);
        mela_plan_free(pg);
    }
done:
    for (int k = 0; k < 3; k++) {
        free(xv[k]);
        free(uv[k]);
        free(an1[k]);
        free(an2[k]);
    }
    free(vv);
    mela_graph_free(g);
    return ok;
}

#endif
