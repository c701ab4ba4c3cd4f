/* bench_data.c - Omniglot load times (cold: decode the archives, no cache;
 * warm: from the cache) and episodes per second from memory for 5-way 1-shot
 * and 20-way 5-shot with 15 queries (Vinyals test split).
 * Usage: bench_data [data_dir]   (default $MELA_SHARED_DATA, else ../shared/data) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sys.h"
#include "mela.h"
#include "mela_data.h"

static double episodes_per_s(const mela_dataset *ds, const mela_split *sp, int N, int K, int Q)
{
    mela_sampler *s = mela_sampler_new(ds, sp, N, K, Q, 0);
    if (!s) {
        fprintf(stderr, "%s\n", mela_last_error());
        return 0;
    }
    double sink = 0, t0 = mela_sys_now(), t;
    int n = 0;
    do {
        for (int k = 0; k < 100; k++, n++)
            sink += mela_sampler_episode(s, 1, (uint64_t)n)->x_query[0];
        t = mela_sys_now() - t0;
    } while (t < 1.0);
    mela_sampler_free(s);
    if (sink < 0)
        puts("");
    return n / t;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("MELA_SHARED_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/omniglot", base ? base : "../shared/data");
    char cache[] = "/tmp/mela-bench-XXXXXX";
    if (!mkdtemp(cache)) {
        perror("mkdtemp");
        return 1;
    }
    mela_omniglot_opts o = {0};
    o.cache_dir = cache;
    double t0 = mela_sys_now();
    mela_dataset *ds = mela_omniglot_load(dir, &o); /* cold: empty cache dir */
    double cold = mela_sys_now() - t0;
    if (!ds) {
        fprintf(stderr, "%s\n", mela_last_error());
        return 1;
    }
    mela_dataset_free(ds);
    t0 = mela_sys_now();
    ds = mela_omniglot_load(dir, &o);
    double warm = mela_sys_now() - t0;
    if (!ds || ds->cache_state != MELA_CACHE_HIT) {
        fprintf(stderr, "warm load failed: %s\n", mela_last_error());
        return 1;
    }
    printf("omniglot %s: %d classes, %d images, 28x28\n", dir, ds->nclasses, ds->nimages);
    printf("cold load (decode 32,460 PNGs, write cache): %.2f s\n", cold);
    printf("warm load (hash archives, read cache):       %.3f s\n", warm);
    mela_split *sp = mela_split_vinyals(ds, dir, "test");
    if (!sp) {
        fprintf(stderr, "%s\n", mela_last_error());
        return 1;
    }
    printf("episodes/s, vinyals/test, 1 thread:\n");
    printf("  5-way 1-shot 15-query:  %.0f\n", episodes_per_s(ds, sp, 5, 1, 15));
    printf("  20-way 5-shot 15-query: %.0f\n", episodes_per_s(ds, sp, 20, 5, 15));
    mela_split_free(sp);
    mela_dataset_free(ds);
    char p[4200];
    for (int s = 0; s < 2; s++) {
        snprintf(p, sizeof p, "%s/omniglot-%s-28x28.u8", cache,
                 s ? "images_evaluation" : "images_background");
        unlink(p);
    }
    rmdir(cache);
    return 0;
}
