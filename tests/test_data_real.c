/* test_data_real.c - the real Omniglot archives in $MELA_SHARED_DATA/omniglot
 * (skipped, passing, when absent): character and image counts, the Vinyals
 * split sizes, Finn's and Lake's, a cold load then a warm one from a cache in
 * a temp dir, and a 20-way within-alphabet episode. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sys.h"
#include "check.h"
#include "mela.h"
#include "mela_data.h"

static void rm_cache(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || !strcmp(de->d_name, "..")))
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

int main(void)
{
    const char *shared = getenv("MELA_SHARED_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/omniglot", shared ? shared : "../shared/data");
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/images_background.zip", dir);
    if (access(probe, R_OK)) {
        printf("skipped: %s not found\n", probe);
        return check_finish();
    }
    char cache[] = "/tmp/mela-test-real-XXXXXX";
    if (!mkdtemp(cache)) {
        perror("mkdtemp");
        return 1;
    }
    mela_omniglot_opts o = {0};
    o.cache_dir = cache;
    double t0 = mela_sys_now();
    mela_dataset *ds = mela_omniglot_load(dir, &o);
    double t1 = mela_sys_now();
    CHECK(ds != NULL, "load: %s", mela_last_error());
    if (!ds)
        goto out;
    printf("cold load %.2f s\n", t1 - t0);
    int chars[2] = {0, 0}, imgs[2] = {0, 0}, twenty = 1;
    for (int c = 0; c < ds->nclasses; c++) {
        chars[ds->classes[c].set]++;
        imgs[ds->classes[c].set] += ds->classes[c].count;
        twenty &= ds->classes[c].count == 20;
    }
    CHECK(chars[0] == 964 && chars[1] == 659, "characters %d / %d", chars[0], chars[1]);
    CHECK(imgs[0] == 19280 && imgs[1] == 13180, "images %d / %d", imgs[0], imgs[1]);
    CHECK(twenty, "20 drawings per character");
    CHECK(ds->ngroups == 50, "alphabets %d", ds->ngroups);
    CHECK(ds->cache_state == MELA_CACHE_WRITTEN, "cache written");
    /* Ids follow the file names 0001..1623 in order. */
    int ids = 1;
    for (int c = 0; c < ds->nclasses; c++)
        ids &= ds->classes[c].id >= 1 && ds->classes[c].id <= 1623;
    CHECK(ids, "ids");
    int g = mela_dataset_find(ds, "Greek", "character01");
    CHECK(g >= 0 && ds->classes[g].id == 394, "Greek/character01 is 0394");

    const char *names[3] = {"train", "val", "test"};
    const int want[3] = {4112, 688, 1692};
    for (int s = 0; s < 3; s++) {
        mela_split *sp = mela_split_vinyals(ds, dir, names[s]);
        CHECK(sp && sp->n == want[s], "vinyals %s: %d (%s)", names[s], sp ? sp->n : -1,
              sp ? "" : mela_last_error());
        mela_split_free(sp);
    }
    mela_split *ft = mela_split_finn(ds, dir, "train"), *fe = mela_split_finn(ds, dir, "test");
    CHECK(ft && fe && ft->n == 4800 && fe->n == 1692, "finn %d / %d", ft ? ft->n : -1,
          fe ? fe->n : -1);
    mela_split_free(ft);
    mela_split_free(fe);
    mela_split *lt = mela_split_lake(ds, "train"), *le = mela_split_lake(ds, "test");
    CHECK(lt && le && lt->n == 964 && le->n == 659, "lake");
    mela_sampler *ls = le ? mela_sampler_new(ds, le, 20, 1, 1, MELA_EPISODE_WITHIN_GROUP) : NULL;
    CHECK(ls != NULL, "lake 20-way sampler: %s", mela_last_error());
    if (ls) {
        int ok = 1;
        for (int i = 0; i < 100; i++) {
            const mela_episode *e = mela_sampler_episode(ls, 1, (uint64_t)i);
            for (int j = 0; j < 20; j++)
                ok &= ds->classes[le->classes[e->split_class[j]].cls].group == e->group;
        }
        CHECK(ok, "Lake episodes within one alphabet");
    }
    mela_sampler_free(ls);
    mela_split_free(lt);
    mela_split_free(le);

    double t2 = mela_sys_now();
    mela_dataset *warm = mela_omniglot_load(dir, &o);
    double t3 = mela_sys_now();
    CHECK(warm && warm->cache_state == MELA_CACHE_HIT, "warm load from cache");
    /* printed, not checked: speed lives in bench/ (bench_data), not in tests */
    printf("warm load %.3f s\n", t3 - t2);
    if (warm)
        CHECK(warm->nimages == ds->nimages &&
                  !memcmp(warm->pixels, ds->pixels, (size_t)ds->nimages * 784),
              "cache equals decode");
    mela_dataset_free(warm);
out:
    mela_dataset_free(ds);
    rm_cache(cache);
    return check_finish();
}
