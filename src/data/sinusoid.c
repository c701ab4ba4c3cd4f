/* sinusoid.c - the sinusoid regression tasks of Finn et al. (2017), MAML
 * section 5.1. Task i under a seed comes from its own derived generator. */
#include <math.h>

#include "data/data_internal.h"

void mela_sinusoid_task(uint64_t seed, uint64_t i, int K, int Q, float *xs, float *ys, float *xq,
                        float *yq, float *amp, float *phase)
{
    mela_rng r = mela_rng_derive(seed, MELA_SINUSOID_STREAM, i);
    const double pi = 3.14159265358979323846;
    double A = 0.1 + 4.9 * (double)mela_rng_uniform(&r);
    double ph = pi * (double)mela_rng_uniform(&r);
    if (amp)
        *amp = (float)A;
    if (phase)
        *phase = (float)ph;
    for (int k = 0; k < K; k++) {
        xs[k] = -5.0f + 10.0f * mela_rng_uniform(&r);
        ys[k] = (float)(A * sin((double)xs[k] - ph));
    }
    for (int q = 0; q < Q; q++) {
        xq[q] = -5.0f + 10.0f * mela_rng_uniform(&r);
        yq[q] = (float)(A * sin((double)xq[q] - ph));
    }
}
