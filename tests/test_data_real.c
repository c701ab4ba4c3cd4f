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
    /* Finn et al.'s split: 1,100 / 100 / 423 characters drawn from all 50
     * alphabets, disjoint, each in 4 rotations; trainval the first 1,200. */
    {
        const char *fw[4] = {"train", "val", "test", "trainval"};
        const int fn[4] = {4400, 400, 1692, 4800};
        mela_split *fs[4];
        for (int s = 0; s < 4; s++) {
            fs[s] = mela_split_finn(ds, fw[s]);
            CHECK(fs[s] && fs[s]->n == fn[s], "finn %s: %d (%s)", fw[s], fs[s] ? fs[s]->n : -1,
                  fs[s] ? "" : mela_last_error());
        }
        if (fs[0] && fs[1] && fs[2] && fs[3]) {
            int *owner = calloc((size_t)ds->nclasses, sizeof *owner), alph[3][50] = {{0}};
            int ok = owner != NULL, sets[2] = {0};
            for (int s = 0; s < 3 && owner; s++)
                for (int k = 0; k < fs[s]->n; k++) {
                    int c = fs[s]->classes[k].cls;
                    ok &= owner[c] == 0 || owner[c] == s + 1;
                    owner[c] = s + 1;
                    alph[s][ds->classes[c].group] = 1;
                    if (s == 2)
                        sets[ds->classes[c].set]++;
                }
            for (int c = 0; c < ds->nclasses && owner; c++)
                ok &= owner[c] != 0;
            CHECK(ok, "finn: train, val and test share no character and cover all 1,623");
            int na[3] = {0}, seen = 1;
            for (int s = 0; s < 3; s++)
                for (int a = 0; a < 50; a++)
                    na[s] += alph[s][a];
            for (int a = 0; a < 50; a++)
                seen &= !alph[2][a] || alph[0][a];
            /* 423 of 1,623 at random: every alphabet has 14+ characters, so
             * nearly every one is in the test, and every test alphabet is
             * trained on (unlike Vinyals' split) */
            CHECK(na[0] == 50 && na[2] >= 45 && seen, "finn alphabets: train %d, val %d, test %d",
                  na[0], na[1], na[2]);
            CHECK(sets[0] > 4 * 150 && sets[1] > 4 * 100,
                  "finn test from both sets: %d background, %d evaluation classes", sets[0], sets[1]);
            int tv = 1;
            for (int k = 0; k < fs[3]->n; k++)
                tv &= owner && (owner[fs[3]->classes[k].cls] == 1 || owner[fs[3]->classes[k].cls] == 2);
            CHECK(tv, "finn trainval = train + val");
            free(owner);
            mela_split *again = mela_split_finn(ds, "test");
            CHECK(again && again->n == fs[2]->n &&
                      !memcmp(again->classes, fs[2]->classes, sizeof *again->classes * again->n),
                  "finn: the same split every time");
            mela_split_free(again);
            /* Finn et al.'s 20-way tasks: 20 different characters each */
            mela_sampler *fsm = mela_sampler_new(ds, fs[2], 20, 1, 1, MELA_EPISODE_DISTINCT_CLASSES);
            CHECK(fsm != NULL, "finn 20-way sampler: %s", mela_last_error());
            int dup = 0;
            for (int i = 0; fsm && i < 300; i++) {
                const mela_episode *e = mela_sampler_episode(fsm, 0, (uint64_t)i);
                for (int a = 0; a < 20; a++)
                    for (int b = 0; b < a; b++)
                        dup += fs[2]->classes[e->split_class[a]].cls == fs[2]->classes[e->split_class[b]].cls;
            }
            CHECK(fsm && dup == 0, "finn 20-way: %d repeated characters in 300 episodes", dup);
            mela_sampler_free(fsm);
        }
        for (int s = 0; s < 4; s++)
            mela_split_free(fs[s]);
    }
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
