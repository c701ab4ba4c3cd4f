/* test_torch_fixture.c - mela's exact and first-order MAML meta-gradients
 * through conv, batch norm, relu, max-pool and a linear head (two inner
 * steps) against PyTorch's, computed in double precision by
 * tests/fixtures/make_maml_fixture.py (the fixture file is committed; the test
 * needs no Python). mela runs in float32: tolerance 2e-4 + 2e-3 relative. */
#include "fixture.h"

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
    if (fixture_load("maml_torch.txt"))
        return check_finish();
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
    fixture_check_maml(m, (mela_task_spec){2, 2, 2, 0}, 2, 0.3f);
    mela_model_free(m);
    fixture_free();
    return check_finish();
}
