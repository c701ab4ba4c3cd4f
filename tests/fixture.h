/* fixture.h - the PyTorch reference fixtures of tests/fixtures (written once
 * by make_*_fixture.py, committed; the tests need no Python): reading them,
 * and checking MAML's exact and first-order meta-gradients of a model
 * against them. Header-only; a test includes it once.
 *
 * A fixture file has one record per line, "name count v1 v2 ...", and '#'
 * comment lines. The MAML records are "param.VIEW" (the weights), "xs",
 * "ys", "xq", "yq" (one task), "query_loss" (after the inner steps) and
 * "exact.VIEW", "first.VIEW" (the meta-gradients), VIEW each view of the
 * model's layout. mela runs in float32 against PyTorch's double. */
#ifndef MELA_FIXTURE_H
#define MELA_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mela_learn.h"

enum { FIXTURE_MAXREC = 96 };
static struct {
    char name[64];
    int n;
    float *v;
} fixture_rec[FIXTURE_MAXREC];
static int fixture_nrec;

/* Reads file from $MELA_FIXTURES (default tests/fixtures); 0 or -1 (and a
 * failed check). */
static int fixture_load(const char *file)
{
    const char *dir = getenv("MELA_FIXTURES");
    char path[1024], name[64];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", file);
    FILE *f = fopen(path, "r");
    int n, bad = !f;
    while (!bad && fixture_nrec < FIXTURE_MAXREC && fscanf(f, "%63s", name) == 1) {
        if (name[0] == '#') {
            int c;
            while ((c = fgetc(f)) != '\n' && c != EOF)
                ;
            continue;
        }
        if (fscanf(f, "%d", &n) != 1 || n < 1) {
            bad = 1;
            break;
        }
        snprintf(fixture_rec[fixture_nrec].name, sizeof fixture_rec[0].name, "%s", name);
        fixture_rec[fixture_nrec].n = n;
        float *v = fixture_rec[fixture_nrec++].v = malloc(n * sizeof(float));
        for (int i = 0; i < n && !bad; i++)
            bad = fscanf(f, "%f", &v[i]) != 1;
    }
    if (f)
        fclose(f);
    CHECK(!bad, "cannot read the fixture %s", path);
    return bad ? -1 : 0;
}

/* The values of record name (and their count into *n), or NULL. */
static const float *fixture_get(const char *name, int *n)
{
    for (int i = 0; i < fixture_nrec; i++)
        if (!strcmp(fixture_rec[i].name, name)) {
            if (n)
                *n = fixture_rec[i].n;
            return fixture_rec[i].v;
        }
    return NULL;
}

static void fixture_free(void)
{
    for (int i = 0; i < fixture_nrec; i++)
        free(fixture_rec[i].v);
    fixture_nrec = 0;
}

/* MAML (exact, then first-order) of model m on the fixture's task, `steps`
 * inner steps of alpha, against the fixture: the query loss and the
 * meta-gradient of every view (tolerance 2e-4 + 2e-3 relative). */
static void fixture_check_maml(const mela_model *m, mela_task_spec spec, int steps, float alpha)
{
    const mela_layout *ML = mela_model_layout(m);
    for (int order = 0; order < 2; order++) {
        mela_gbml_config c = {.learner = MELA_LEARNER_MAML, .first_order = order, .train = spec,
                              .steps = steps, .test_steps = steps, .inner_lr = alpha};
        mela_gbml *gb = mela_gbml_new(m, &c);
        CHECK(gb != NULL, "learner: %s", mela_last_error());
        if (!gb)
            return;
        const mela_layout *L = mela_gbml_layout(gb);
        size_t n = mela_layout_size(L);
        float *theta = calloc(n, sizeof *theta), *grad = calloc(n, sizeof *grad);
        char key[96], what[160];
        int ok = 1;
        for (int i = 0; i < mela_layout_count(ML); i++) {
            snprintf(key, sizeof key, "param.%s", mela_layout_name(ML, i));
            int cnt = 0;
            const float *p = fixture_get(key, &cnt);
            CHECK(p && (size_t)cnt == mela_shape_numel(mela_layout_shape(ML, i)), "fixture %s", key);
            if (!(ok &= p && (size_t)cnt == mela_shape_numel(mela_layout_shape(ML, i))))
                break;
            memcpy(theta + mela_layout_offset(L, mela_layout_find(L, mela_layout_name(ML, i))), p,
                   cnt * sizeof *p);
        }
        /* support labels as an episode lays them out: slot j holds class j */
        mela_task t = {fixture_get("xs", NULL), fixture_get("ys", NULL), fixture_get("xq", NULL),
                       fixture_get("yq", NULL)};
        const float *want_loss = fixture_get("query_loss", NULL);
        double loss = 0;
        ok = ok && t.xs && t.ys && t.xq && t.yq && want_loss;
        CHECK(ok, "the fixture lacks a task record");
        if (ok) {
            CHECK(mela_gbml_meta_grad(gb, theta, 1, &t, 1, grad, &loss, NULL) == 0, "meta-grad: %s",
                  mela_last_error());
            snprintf(what, sizeof what, "query loss after %d steps vs PyTorch", steps);
            CHECK_CLOSE(loss, want_loss[0], 1e-5, 1e-4, what);
        }
        for (int i = 0; i < mela_layout_count(ML) && ok; i++) {
            const char *view = mela_layout_name(ML, i);
            snprintf(key, sizeof key, "%s.%s", order ? "first" : "exact", view);
            int cnt = 0;
            const float *want = fixture_get(key, &cnt);
            size_t numel = mela_shape_numel(mela_layout_shape(ML, i));
            CHECK(want && (size_t)cnt == numel, "fixture %s", key);
            snprintf(what, sizeof what, "%s MAML meta-gradient of %s vs PyTorch",
                     order ? "first-order" : "exact", view);
            if (want && (size_t)cnt == numel)
                check_close_array(__FILE__, __LINE__, grad + mela_layout_offset(L, i), want, numel,
                                  2e-4, 2e-3, what);
        }
        free(theta), free(grad);
        mela_gbml_free(gb);
    }
}

#endif
