/* test_torch_fixture.c - mela's exact and first-order MAML meta-gradients
 * through conv, batch norm, relu, max-pool and a linear head (two inner
 * steps) against PyTorch's, computed in double precision by
 * tests/fixtures/make_maml_fixture.py (the fixture file is committed; the test
 * needs no Python). mela runs in float32: tolerance 2e-4 + 2e-3 relative. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mela_learn.h"

enum { MAXREC = 64 };
static struct {
    char name[64];
    int n;
    float *v;
} rec[MAXREC];
static int nrec;

static int load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char name[64];
    int n;
    while (nrec < MAXREC && fscanf(f, "%63s", name) == 1) {
        if (name[0] == '#') {
            int c;
            while ((c = fgetc(f)) != '\n' && c != EOF)
                ;
            continue;
        }
        if (fscanf(f, "%d", &n) != 1)
            break;
        snprintf(rec[nrec].name, sizeof rec[nrec].name, "%s", name);
        rec[nrec].n = n;
        rec[nrec].v = malloc(n * sizeof(float));
        for (int i = 0; i < n; i++)
            if (fscanf(f, "%f", &rec[nrec].v[i]) != 1)
                return fclose(f), -1;
        nrec++;
    }
    fclose(f);
    return 0;
}

static const float *get(const char *name, int *n)
{
    for (int i = 0; i < nrec; i++)
        if (!strcmp(rec[i].name, name)) {
            if (n)
                *n = rec[i].n;
            return rec[i].v;
        }
    return NULL;
}

static mela_node body(void *ctx, mela_graph *g, const mela_node *w, mela_node x)
{
    mela_node h = mela_conv2d(g, x, w[0], w[1], 1, 1);
    h = mela_maxpool2d(g, mela_relu(g, mela_batchnorm(g, h, w[2], w[3], 1e-5f)), 2, 2);
    h = mela_conv2d(g, h, w[4], w[5], 2, 1);
    h = mela_relu(g, mela_batchnorm(g, h, w[6], w[7], 1e-5f));
    return mela_flatten(g, h);
}

static mela_node head(void *ctx, mela_graph *g, const mela_node *w, mela_node h)
{
    return mela_linear(g, h, w[8], w[9]);
}

int main(void)
{
    const char *dir = getenv("MELA_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/maml_torch.txt", dir ? dir : "tests/fixtures");
    if (load(path)) {
        CHECK(0, "cannot read the fixture %s", path);
        return check_finish();
    }
    static const char *names[10] = {"conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight",
                                    "conv2.bias", "bn2.weight", "bn2.bias", "head.weight", "head.bias"};
    mela_shape shapes[10] = {MELA_SHAPE(4, 1, 3, 3), MELA_SHAPE(4), MELA_SHAPE(4), MELA_SHAPE(4),
                             MELA_SHAPE(4, 4, 3, 3), MELA_SHAPE(4), MELA_SHAPE(4), MELA_SHAPE(4),
                             MELA_SHAPE(2, 16), MELA_SHAPE(2)};
    mela_layout *L0 = mela_layout_new();
    for (int i = 0; i < 10; i++)
        mela_layout_add(L0, names[i], shapes[i]);
    mela_model_def d = {L0, MELA_SHAPE(1, 8, 8), 2, 16, 8, body, head, NULL, NULL, "fixture net", NULL};
    mela_model *m = mela_model_new(&d);
    for (int order = 0; order < 2; order++) {
        mela_gbml_config c = {.learner = MELA_LEARNER_MAML, .first_order = order, .train = {2, 2, 2, 0},
                              .steps = 2, .test_steps = 2, .inner_lr = 0.3f};
        mela_gbml *gb = mela_gbml_new(m, &c);
        CHECK(gb != NULL, "learner: %s", mela_last_error());
        const mela_layout *L = mela_gbml_layout(gb);
        size_t n = mela_layout_size(L);
        float *theta = calloc(n, sizeof *theta), *grad = calloc(n, sizeof *grad);
        char key[96];
        for (int i = 0; i < 10; i++) {
            snprintf(key, sizeof key, "param.%s", names[i]);
            int cnt;
            const float *p = get(key, &cnt);
            CHECK(p && (size_t)cnt == mela_shape_numel(shapes[i]), "fixture %s", key);
            if (p)
                memcpy(theta + mela_layout_offset(L, mela_layout_find(L, names[i])), p, cnt * sizeof *p);
        }
        /* the support labels are 0 0 1 1: slot j holds class j (as an episode lays them out) */
        mela_task t = {get("xs", NULL), get("ys", NULL), get("xq", NULL), get("yq", NULL)};
        double loss;
        CHECK(mela_gbml_meta_grad(gb, theta, 1, &t, 1, grad, &loss, NULL) == 0, "meta-grad: %s", mela_last_error());
        CHECK_CLOSE(loss, get("query_loss", NULL)[0], 1e-5, 1e-4, "query loss after 2 steps vs PyTorch");
        for (int i = 0; i < 10; i++) {
            snprintf(key, sizeof key, "%s.%s", order ? "first" : "exact", names[i]);
            char what[128];
            snprintf(what, sizeof what, "%s MAML meta-gradient of %s vs PyTorch", order ? "first-order" : "exact", names[i]);
            check_close_array(__FILE__, __LINE__, grad + mela_layout_offset(L, i), get(key, NULL),
                              mela_shape_numel(shapes[i]), 2e-4, 2e-3, what);
        }
        free(theta), free(grad);
        mela_gbml_free(gb);
    }
    mela_model_free(m);
    for (int i = 0; i < nrec; i++)
        free(rec[i].v);
    return check_finish();
}
