/* stats.c - the evaluation arithmetic every learner and the CLI share: mean
 * over episodes and the half-width of the 95% confidence interval. */
#include <math.h>

#include "data/data_internal.h"

int mela_mean_ci(const double *x, int n, double *mean, double *ci95)
{
    if (!x || n < 1)
        return mela_set_error("mean_ci: need at least one value, got n = %d", n);
    double s = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    double m = s / n, ss = 0;
    for (int i = 0; i < n; i++)
        ss += (x[i] - m) * (x[i] - m);
    if (mean)
        *mean = m;
    if (ci95)
        *ci95 = n > 1 ? 1.96 * sqrt(ss / (n - 1)) / sqrt((double)n) : 0.0;
    return 0;
}
