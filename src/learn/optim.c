/* optim.c - SGD and Adam over flat parameter buffers: one loop each, for
 * any model, because every layout is one contiguous buffer. */
#include <math.h>
#include <stdlib.h>

#include "mela_nn.h"

void mela_sgd_step(float *theta, const float *grad, size_t n, float lr)
{
    for (size_t i = 0; i < n; i++)
        theta[i] -= lr * grad[i];
}

int mela_adam_init(mela_adam *a, size_t n, float lr)
{
    *a = (mela_adam){.n = n, .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    a->m = calloc(n ? n : 1, sizeof *a->m);
    a->v = calloc(n ? n : 1, sizeof *a->v);
    if (!a->m || !a->v) {
        mela_adam_free(a);
        return mela_set_error("adam: out of memory for %zu parameters", n);
    }
    return 0;
}

void mela_adam_free(mela_adam *a)
{
    free(a->m);
    free(a->v);
    a->m = a->v = NULL;
}

void mela_adam_step(mela_adam *a, float *theta, const float *grad)
{
    a->t++;
    const float b1 = a->beta1, b2 = a->beta2;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)a->t));
    const float c2 = 1.0f / (1.0f - powf(b2, (float)a->t));
    for (size_t i = 0; i < a->n; i++) {
        a->m[i] = b1 * a->m[i] + (1.0f - b1) * grad[i];
        a->v[i] = b2 * a->v[i] + (1.0f - b2) * grad[i] * grad[i];
        theta[i] -= a->lr * (a->m[i] * c1) / (sqrtf(a->v[i] * c2) + a->eps);
    }
}

double mela_clip_grad_norm(float *g, size_t n, float max)
{
    double ss = 0; /* a float squared fits a double: only NaN or inf make it non-finite */
    for (size_t i = 0; i < n; i++)
        ss += (double)g[i] * g[i];
    double norm = sqrt(ss);
    if (isfinite(norm) && max > 0 && norm > max) {
        float s = (float)(max / norm);
        for (size_t i = 0; i < n; i++)
            g[i] *= s;
    }
    return norm;
}
