/* test_data_omniglot.c - Omniglot loading from small archives this test
 * writes itself (libpng + libzip in a temp dir): layout parsing, area
 * downsampling values, the cache (hit, rebuilt after the archive changes,
 * rebuilt when damaged), Vinyals / Finn / Lake splits, rotations, episode
 * invariants and determinism, bad input with the file named, and runs on
 * the trainval split (Snell et al.'s protocol). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>
#include <zip.h>

#include "check.h"
#include "mela.h"
#include "mela_data.h"
#include "mela_io.h"
#include "mela_learn.h"

/* ------------------------------------------------------------ test helpers */

/* 8-bit grey PNG in memory (malloc'ed); *n its size. */
static void *png_bytes(const uint8_t *pix, int h, int w, size_t *n)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_GRAY;
    size_t size = 0;
    if (!png_image_write_to_memory(&img, NULL, &size, 0, pix, 0, NULL))
        return NULL;
    void *buf = malloc(size);
    if (!png_image_write_to_memory(&img, buf, &size, 0, pix, 0, NULL)) {
        free(buf);
        return NULL;
    }
    *n = size;
    return buf;
}

/* The drawing of character `id` by `drawer`: white paper, a black block
 * whose size depends on both, plus the stripe x < 4 in every image, so
 * downsampling has known values (column 0 all ink, column 1 a quarter). */
static void drawing(uint8_t *pix, int id, int drawer)
{
    memset(pix, 255, 105 * 105);
    for (int y = 0; y < 105; y++)
        for (int x = 0; x < 4; x++)
            pix[y * 105 + x] = 0;
    int bh = 10 + 3 * (id % 20), bw = 10 + 4 * drawer;
    for (int y = 30; y < 30 + bh && y < 105; y++)
        for (int x = 30; x < 30 + bw && x < 105; x++)
            pix[y * 105 + x] = 0;
}

typedef struct alpha {
    const char *name;
    int nchars;
} alpha;

/* Writes dir/<archive>.zip: alphabets with nchars characters of ndraw
 * drawings each; ids start at first_id. extra: optional entry name with
 * content extra_data (for bad-input tests). Returns 0 on success. */
static int write_archive(const char *dir, const char *archive, const alpha *al, int nal,
                         int first_id, int ndraw, int change, const char *extra,
                         const void *extra_data, size_t extra_n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.zip", dir, archive);
    int err = 0;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!za)
        return -1;
    uint8_t pix[105 * 105];
    int id = first_id;
    for (int a = 0; a < nal; a++)
        for (int c = 1; c <= al[a].nchars; c++, id++)
            for (int d = 1; d <= ndraw; d++) {
                drawing(pix, id, d);
                if (change && id == first_id && d == 1)
                    pix[104 * 105 + 104] = 0; /* one more ink pixel */
                size_t n = 0;
                void *buf = png_bytes(pix, 105, 105, &n);
                char name[512];
                snprintf(name, sizeof name, "%s/%s/character%02d/%04d_%02d.png", archive,
                         al[a].name, c, id, d);
                zip_source_t *s = zip_source_buffer(za, buf, n, 1);
                if (!s || zip_file_add(za, name, s, ZIP_FL_ENC_UTF_8) < 0) {
                    zip_source_free(s);
                    zip_discard(za);
                    return -1;
                }
            }
    if (extra) {
        void *copy = malloc(extra_n + 1);
        memcpy(copy, extra_data, extra_n);
        zip_source_t *s = zip_source_buffer(za, copy, extra_n, 1);
        zip_file_add(za, extra, s, ZIP_FL_ENC_UTF_8);
    }
    return zip_close(za) ? -1 : 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static const alpha BG[] = {{"Alpha", 4}, {"Beta", 3}}; /* ids 1..7 */
static const alpha EV[] = {{"Gamma", 5}, {"Delta", 2}}; /* ids 8..14 */
#define NDRAW 6

static char root[256], data[512], cache[512];

static void write_splits(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/splits", data);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/splits/vinyals", data);
    mkdir(p, 0755);
    static const char *rots[4] = {"rot000", "rot090", "rot180", "rot270"};
    /* trainval: all background + Gamma characters 1..3; test: the rest. */
    const char *names[4] = {"train", "val", "trainval", "test"};
    for (int s = 0; s < 4; s++) {
        char text[8192] = "";
        char line[128];
        for (int a = 0; a < 2; a++)
            for (int c = 1; c <= BG[a].nchars; c++)
                for (int r = 0; r < 4; r++) {
                    int in_train = a == 0, in_val = a == 1;
                    if ((s == 0 && in_train) || (s == 1 && in_val) || s == 2) {
                        snprintf(line, sizeof line, "%s/character%02d/%s\n", BG[a].name, c,
                                 rots[r]);
                        strcat(text, line);
                    }
                }
        for (int a = 0; a < 2; a++)
            for (int c = 1; c <= EV[a].nchars; c++)
                for (int r = 0; r < 4; r++) {
                    int tv = a == 0 && c <= 3;
                    if ((s == 0 && tv) || (s == 2 && tv) || (s == 3 && !tv)) {
                        snprintf(line, sizeof line, "%s/character%02d/%s\n", EV[a].name, c,
                                 rots[r]);
                        strcat(text, line);
                    }
                }
        snprintf(p, sizeof p, "%s/splits/vinyals/%s.txt", data, names[s]);
        write_text(p, text);
    }
}

static mela_dataset *load(int H, int W)
{
    mela_omniglot_opts o = {0};
    o.H = H;
    o.W = W;
    o.cache_dir = cache;
    mela_dataset *ds = mela_omniglot_load(data, &o);
    if (!ds)
        fprintf(stderr, "load: %s\n", mela_last_error());
    return ds;
}

/* ------------------------------------------------------------------- tests */

static void test_layout_and_values(void)
{
    mela_dataset *ds = load(28, 28);
    CHECK(ds != NULL, "load failed");
    if (!ds)
        return;
    CHECK(ds->nclasses == 14, "nclasses %d", ds->nclasses);
    CHECK(ds->ngroups == 4, "ngroups %d", ds->ngroups);
    CHECK(ds->nimages == 14 * NDRAW, "nimages %d", ds->nimages);
    CHECK(ds->C == 1 && ds->H == 28 && ds->W == 28, "shape");
    CHECK(ds->cache_state == MELA_CACHE_WRITTEN, "cache_state %d", ds->cache_state);
    /* Sorted: background first (Alpha, Beta), then evaluation (Delta, Gamma). */
    CHECK(!strcmp(ds->groups[ds->classes[0].group], "Alpha"), "first group");
    CHECK(!strcmp(ds->groups[ds->classes[4].group], "Beta"), "group of class 4");
    CHECK(!strcmp(ds->groups[ds->classes[7].group], "Delta"), "group of class 7");
    CHECK(ds->classes[7].id == 13 && ds->classes[7].set == 1, "Delta id %d set %d",
          ds->classes[7].id, ds->classes[7].set);
    CHECK(ds->classes[0].id == 1 && ds->classes[0].set == 0, "Alpha id");
    int c = mela_dataset_find(ds, "Gamma", "character05");
    CHECK(c == 13 && ds->classes[c].id == 12, "find Gamma/character05 -> %d", c);
    CHECK(mela_dataset_find(ds, "Gamma", "character06") == -1, "missing char");
    CHECK(ds->classes[2].count == NDRAW, "count");
    CHECK(ds->drawer[ds->classes[2].first + 3] == 4, "drawer %d", ds->drawer[ds->classes[2].first + 3]);
    /* Area filter 105 -> 28: column 0 covers [0, 3.75): all ink; column 1
     * covers [3.75, 7.5): a quarter pixel of ink of 3.75 -> 255/15 = 17. */
    const uint8_t *im = mela_dataset_image(ds, 0, 0);
    CHECK(im[0] == 255 && im[5 * 28] == 255, "col 0 %d", im[0]);
    CHECK(im[1] == 17 && im[27 * 28 + 1] == 17, "col 1 %d", im[1]);
    CHECK(im[2] == 0 && im[27 * 28 + 27] == 0, "paper %d", im[2]);
    /* Character 1 drawer 1: block rows 30..42 (13 rows: 10 + 3*1), cols 30..43.
     * Output row 8 covers [30, 33.75): all ink; column 8 covers [30, 33.75). */
    CHECK(im[8 * 28 + 8] == 255, "block %d", im[8 * 28 + 8]);
    /* Row 11 covers [41.25, 45): ink rows 41.25..43 = 1.75 of 3.75; column 9
     * covers [33.75, 37.5): all ink -> 255 * 1.75 / 3.75 = 119. */
    CHECK(im[11 * 28 + 9] == 119, "partial %d", im[11 * 28 + 9]);
    mela_dataset_free(ds);

    /* The nearest pixel (PIL's resize of the papers' 1-bit PNGs): output
     * row or column o takes input floor((o + 1/2) 105 / 28): 1, 5, ..., 31
     * (o = 8), 39 (10), 43 (11). Ink stays 255, paper 0, nothing between;
     * its own cache file, written then hit. */
    mela_omniglot_opts nn = {.cache_dir = cache, .nearest = 1};
    for (int pass = 0; pass < 2; pass++) {
        ds = mela_omniglot_load(data, &nn);
        CHECK(ds != NULL, "nearest load: %s", mela_last_error());
        if (!ds)
            return;
        CHECK(ds->cache_state == (pass ? MELA_CACHE_HIT : MELA_CACHE_WRITTEN), "nearest cache state %d",
              ds->cache_state);
        int binary = 1;
        for (size_t p = 0; p < (size_t)ds->nimages * 784; p++)
            binary &= ds->pixels[p] == 0 || ds->pixels[p] == 255;
        CHECK(binary, "nearest pixels are 0 or 255");
        im = mela_dataset_image(ds, 0, 0);
        CHECK(im[0] == 255 && im[1] == 0, "nearest: column 0 takes 1 (ink), column 1 takes 5 (paper)");
        CHECK(im[8 * 28 + 8] == 255 && im[10 * 28 + 9] == 255, "nearest: rows 31 and 39 in the block");
        CHECK(im[11 * 28 + 9] == 0, "nearest: row 43 is below the block (area: 119): %d", im[11 * 28 + 9]);
        mela_dataset_free(ds);
    }

    /* Any size on request: 105 keeps pixels; ink = 255. */
    mela_omniglot_opts o = {0};
    o.H = o.W = 105;
    o.sets = MELA_OMNIGLOT_EVALUATION;
    o.no_cache = 1;
    ds = mela_omniglot_load(data, &o);
    CHECK(ds && ds->nclasses == 7 && ds->classes[0].set == 1, "evaluation only");
    if (ds) {
        const uint8_t *p = mela_dataset_image(ds, 0, 0);
        CHECK(p[3] == 255 && p[4] == 0, "105x105 values %d %d", p[3], p[4]);
        CHECK(ds->cache_state == MELA_CACHE_UNUSED, "no cache");
    }
    mela_dataset_free(ds);
}

static void flip_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return;
    fseek(f, at, at < 0 ? SEEK_END : SEEK_SET);
    int ch = fgetc(f);
    fseek(f, at, at < 0 ? SEEK_END : SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
}

static void test_cache(void)
{
    mela_dataset *a = load(28, 28); /* written by test_layout_and_values */
    CHECK(a && a->cache_state == MELA_CACHE_HIT, "second load hits the cache: %d",
          a ? a->cache_state : -1);
    mela_omniglot_opts o = {0};
    o.no_cache = 1;
    mela_dataset *ref = mela_omniglot_load(data, &o);
    CHECK(ref != NULL, "no-cache load");
    if (a && ref) {
        CHECK(a->nimages == ref->nimages && a->nclasses == ref->nclasses, "same counts");
        CHECK(!memcmp(a->pixels, ref->pixels, (size_t)a->nimages * 784), "same pixels");
        CHECK(!memcmp(a->drawer, ref->drawer, sizeof(int16_t) * a->nimages), "same drawers");
        int same = 1;
        for (int c = 0; c < a->nclasses; c++)
            same &= !strcmp(a->classes[c].name, ref->classes[c].name) &&
                    a->classes[c].id == ref->classes[c].id &&
                    a->classes[c].first == ref->classes[c].first &&
                    a->classes[c].set == ref->classes[c].set &&
                    !strcmp(a->groups[a->classes[c].group], ref->groups[ref->classes[c].group]);
        CHECK(same, "same classes from cache");
    }
    mela_dataset_free(a);
    mela_dataset_free(ref);

    /* The archive changes (one pixel): the cache is stale and rebuilt. */
    write_archive(data, "images_background", BG, 2, 1, NDRAW, 1, NULL, NULL, 0);
    a = load(28, 28);
    CHECK(a && a->cache_state == MELA_CACHE_WRITTEN, "rebuilt after change: %d",
          a ? a->cache_state : -1);
    if (a)
        CHECK(mela_dataset_image(a, 0, 0)[27 * 28 + 27] == 18, "new pixel %d",
              mela_dataset_image(a, 0, 0)[27 * 28 + 27]); /* 255 / 3.75^2 = 18.1 */
    mela_dataset_free(a);
    a = load(28, 28);
    CHECK(a && a->cache_state == MELA_CACHE_HIT, "hit after rebuild");
    mela_dataset_free(a);

    /* A damaged cache: one flipped payload byte, a truncated file, garbage. */
    char cpath[1024];
    snprintf(cpath, sizeof cpath, "%s/omniglot-images_background-28x28.u8", cache);
    flip_byte(cpath, -100);
    a = load(28, 28);
    CHECK(a && a->cache_state == MELA_CACHE_WRITTEN, "flipped byte -> rebuilt");
    mela_dataset_free(a);
    if (truncate(cpath, 1000) == 0) {
        a = load(28, 28);
        CHECK(a && a->cache_state == MELA_CACHE_WRITTEN, "truncated cache -> rebuilt");
        mela_dataset_free(a);
    }
    write_text(cpath, "MELAOMNI garbage");
    a = load(28, 28);
    CHECK(a && a->cache_state == MELA_CACHE_WRITTEN, "garbage cache -> rebuilt");
    mela_dataset_free(a);
    flip_byte(cpath, 20); /* header: archive size */
    a = load(28, 28);
    CHECK(a && a->cache_state == MELA_CACHE_WRITTEN, "bad header -> rebuilt");
    mela_dataset_free(a);
    /* An area cache under the nearest cache's name is refused by its
     * header (it names its filter) and rebuilt. */
    char npath[1024], bytes[4096];
    snprintf(npath, sizeof npath, "%s/omniglot-images_background-28x28-nearest.u8", cache);
    a = load(28, 28); /* a good area cache again */
    mela_dataset_free(a);
    FILE *src = fopen(cpath, "rb"), *dst = fopen(npath, "wb");
    for (size_t n; src && dst && (n = fread(bytes, 1, sizeof bytes, src)) > 0;)
        fwrite(bytes, 1, n, dst);
    if (src)
        fclose(src);
    if (dst)
        fclose(dst);
    mela_omniglot_opts nn = {.cache_dir = cache, .nearest = 1, .sets = MELA_OMNIGLOT_BACKGROUND};
    a = mela_omniglot_load(data, &nn);
    CHECK(a && a->cache_state == MELA_CACHE_WRITTEN, "an area cache named nearest is rebuilt: %d",
          a ? a->cache_state : -1);
    if (a)
        CHECK(mela_dataset_image(a, 0, 0)[11 * 28 + 9] == 0, "and the pixels are nearest ones");
    mela_dataset_free(a);
    /* Another size has its own cache file. */
    a = load(14, 14);
    CHECK(a && a->cache_state == MELA_CACHE_WRITTEN && a->H == 14, "14x14 own cache");
    mela_dataset_free(a);
    /* An unwritable cache dir is not an error. */
    mela_omniglot_opts u = {0};
    u.cache_dir = "/proc/mela-no-such-dir";
    a = mela_omniglot_load(data, &u);
    CHECK(a && a->cache_state == MELA_CACHE_UNWRITABLE, "unwritable cache dir");
    mela_dataset_free(a);
}

static void test_splits(mela_dataset *ds)
{
    mela_split *tr = mela_split_vinyals(ds, data, "train");
    mela_split *va = mela_split_vinyals(ds, data, "val");
    mela_split *te = mela_split_vinyals(ds, data, "test");
    CHECK(tr && va && te, "vinyals splits: %s", mela_last_error());
    if (tr && va && te) {
        CHECK(tr->n == 4 * (4 + 3), "train %d", tr->n);
        CHECK(va->n == 4 * 3, "val %d", va->n);
        CHECK(te->n == 4 * 4, "test %d", te->n);
        CHECK(!strcmp(tr->name, "vinyals/train") && tr->id != te->id, "names and ids");
        /* Rotation classes: 4 consecutive lines of one character. */
        CHECK(tr->classes[0].cls == tr->classes[3].cls && tr->classes[1].rot == 1 &&
                  tr->classes[3].rot == 3,
              "rotations");
        /* Image of rot090 is np.rot90 (counter-clockwise): the ink stripe of
         * column 0 becomes the bottom row. */
        float im0[784], im1[784], im2[784], im3[784];
        mela_split_image(ds, tr, 0, 0, im0);
        mela_split_image(ds, tr, 1, 0, im1);
        mela_split_image(ds, tr, 2, 0, im2);
        mela_split_image(ds, tr, 3, 0, im3);
        CHECK(im0[0 * 28 + 0] == 1.0f && im0[0 * 28 + 27] == 0.0f, "rot0");
        CHECK(im1[27 * 28 + 5] == 1.0f && im1[0 * 28 + 0] == 0.0f, "rot90 stripe at bottom");
        CHECK(im2[5 * 28 + 27] == 1.0f && im2[5 * 28 + 0] == 0.0f, "rot180 stripe at right");
        CHECK(im3[0 * 28 + 5] == 1.0f && im3[27 * 28 + 5] == 0.0f, "rot270 stripe at top");
        int ok = 1;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
                ok &= im1[y * 28 + x] == im0[x * 28 + 27 - y] &&
                      im2[y * 28 + x] == im0[(27 - y) * 28 + 27 - x] &&
                      im3[y * 28 + x] == im0[(27 - x) * 28 + y];
        CHECK(ok, "rotations equal np.rot90");
        CHECK(im0[1] == 17.0f / 255.0f, "float value %g", im0[1]);
    }
    /* Finn et al.'s split needs the whole Omniglot; here it is refused with the numbers. */
    mela_split *ft = mela_split_finn(ds, "train");
    CHECK(!ft && strstr(mela_last_error(), "1100") && strstr(mela_last_error(), "has 14 "),
          "finn on 14 characters: %s", mela_last_error());
    mela_split *fe = mela_split_finn(ds, "nope");
    CHECK(!fe && strstr(mela_last_error(), "\"nope\""), "finn which: %s", mela_last_error());
    /* Distinct classes: the vinyals train split holds 7 characters x 4
     * rotations; 5-way episodes never take one character twice, and 8-way
     * ones are refused. */
    mela_sampler *ds5 = tr ? mela_sampler_new(ds, tr, 5, 1, 1, MELA_EPISODE_DISTINCT_CLASSES) : NULL;
    CHECK(ds5 != NULL, "distinct 5-way sampler: %s", mela_last_error());
    if (ds5) {
        int ok = 1, rots[4] = {0};
        for (int i = 0; i < 400; i++) {
            const mela_episode *e = mela_sampler_episode(ds5, 3, (uint64_t)i);
            for (int a = 0; a < 5; a++) {
                rots[tr->classes[e->split_class[a]].rot]++;
                for (int b = 0; b < a; b++)
                    ok &= tr->classes[e->split_class[a]].cls != tr->classes[e->split_class[b]].cls;
            }
        }
        CHECK(ok, "distinct classes: no character twice in an episode");
        /* 2,000 slots, each rotation 1/4: 500 +- 3 sd (sd 19.4) */
        int even = 1;
        for (int r = 0; r < 4; r++)
            even &= rots[r] > 440 && rots[r] < 560;
        CHECK(even, "rotations drawn evenly: %d %d %d %d", rots[0], rots[1], rots[2], rots[3]);
        /* a pure function of (seed, i): redrawing episode 7 gives its classes again */
        int first[5];
        memcpy(first, mela_sampler_episode(ds5, 3, 7)->split_class, sizeof first);
        mela_sampler_episode(ds5, 3, 8);
        CHECK(!memcmp(first, mela_sampler_episode(ds5, 3, 7)->split_class, sizeof first),
              "distinct classes: episode 7 is the same after another draw");
    }
    mela_sampler_free(ds5);
    mela_sampler *ds8 = tr ? mela_sampler_new(ds, tr, 8, 1, 1, MELA_EPISODE_DISTINCT_CLASSES) : NULL;
    CHECK(tr && !ds8 && strstr(mela_last_error(), "7 different characters"),
          "distinct 8-way of 7 characters refused: %s", mela_last_error());
    mela_split *lt = mela_split_lake(ds, "train"), *le = mela_split_lake(ds, "test");
    CHECK(lt && le && lt->n == 7 && le->n == 7, "lake");
    if (le)
        CHECK(ds->classes[le->classes[0].cls].set == 1, "lake test = evaluation");
    mela_split_free(ft);
    mela_split_free(fe);
    mela_split_free(lt);
    mela_split_free(le);
    mela_split_free(tr);
    mela_split_free(va);
    mela_split_free(te);

    /* Bad split input: missing file, unknown character, bad line. */
    mela_split *x = mela_split_vinyals(ds, "/nonexistent-mela", "test");
    CHECK(!x && strstr(mela_last_error(), "/nonexistent-mela/splits/vinyals/test.txt"),
          "missing split file: %s", mela_last_error());
    char p[1024];
    snprintf(p, sizeof p, "%s/splits/vinyals/val.txt", data);
    write_text(p, "Beta/character01/rot000\nBeta/character09/rot090\n");
    x = mela_split_vinyals(ds, data, "val");
    CHECK(!x && strstr(mela_last_error(), "val.txt:2") && strstr(mela_last_error(), "character09"),
          "unknown char: %s", mela_last_error());
    write_text(p, "Beta/character01/rot045\n");
    x = mela_split_vinyals(ds, data, "val");
    CHECK(!x && strstr(mela_last_error(), "val.txt:1"), "bad rotation: %s", mela_last_error());
    CHECK(!mela_split_vinyals(ds, data, "bogus"), "bad which");
}

static int is_perm(const int *v, int n)
{
    int seen[256] = {0};
    for (int i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] >= n || seen[v[i]])
            return 0;
        seen[v[i]] = 1;
    }
    return 1;
}

static void test_episodes(mela_dataset *ds)
{
    mela_split *sp = mela_split_all(ds, "all4", (const int[]){0, 1, 2, 3}, 4);
    CHECK(sp && sp->n == 56, "all4");
    if (!sp)
        return;
    enum { N = 5, K = 2, Q = 3 };
    mela_sampler *s = mela_sampler_new(ds, sp, N, K, Q, 0);
    mela_sampler *s2 = mela_sampler_new(ds, sp, N, K, Q, 0);
    CHECK(s && s2, "sampler: %s", mela_last_error());
    if (!s || !s2)
        goto out;
    int ok_distinct = 1, ok_counts = 1, ok_disjoint = 1, ok_perm = 1, ok_pixels = 1, ok_same = 1;
    int differ = 0;
    float *xs = malloc(sizeof(float) * N * K * 784), *ys = malloc(sizeof(float) * N * K);
    float *xq = malloc(sizeof(float) * N * Q * 784);
    for (int i = 0; i < 50; i++) {
        const mela_episode *e = mela_sampler_episode(s, 42, (uint64_t)i);
        CHECK(e->N == N && e->K == K && e->Q == Q && e->H == 28 && e->group == -1, "shape");
        for (int a = 0; a < N; a++)
            for (int b = a + 1; b < N; b++)
                ok_distinct &= e->split_class[a] != e->split_class[b];
        ok_perm &= is_perm(e->label, N);
        int per[N];
        memset(per, 0, sizeof per);
        for (int r = 0; r < N * K; r++) {
            per[e->l_support[r]]++;
            ok_counts &= e->y_support[r] == (float)e->l_support[r] &&
                         e->l_support[r] == e->label[r / K];
        }
        for (int j = 0; j < N; j++) {
            ok_counts &= per[j] == K;
            for (int a = 0; a < K; a++) {
                for (int b = 0; b < Q; b++)
                    ok_disjoint &= e->support_index[j * K + a] != e->query_index[j * Q + b];
                for (int b = a + 1; b < K; b++)
                    ok_disjoint &= e->support_index[j * K + a] != e->support_index[j * K + b];
            }
            for (int a = 0; a < Q; a++)
                for (int b = a + 1; b < Q; b++)
                    ok_disjoint &= e->query_index[j * Q + a] != e->query_index[j * Q + b];
            for (int q = 0; q < Q; q++)
                ok_counts &= e->l_query[j * Q + q] == e->label[j] &&
                             e->y_query[j * Q + q] == (float)e->label[j];
        }
        float ref[784];
        for (int r = 0; r < N * Q; r++) {
            mela_split_image(ds, sp, e->split_class[r / Q], e->query_index[r], ref);
            ok_pixels &= !memcmp(ref, e->x_query + (size_t)r * 784, sizeof ref);
        }
        for (int r = 0; r < N * K; r++) {
            mela_split_image(ds, sp, e->split_class[r / K], e->support_index[r], ref);
            ok_pixels &= !memcmp(ref, e->x_support + (size_t)r * 784, sizeof ref);
        }
        /* Same seed and index from another sampler, after other draws: same. */
        memcpy(xs, e->x_support, sizeof(float) * N * K * 784);
        memcpy(ys, e->y_support, sizeof(float) * N * K);
        memcpy(xq, e->x_query, sizeof(float) * N * Q * 784);
        mela_sampler_episode(s2, 42, (uint64_t)(i + 1000));
        const mela_episode *f = mela_sampler_episode(s2, 42, (uint64_t)i);
        ok_same &= !memcmp(xs, f->x_support, sizeof(float) * N * K * 784) &&
                   !memcmp(ys, f->y_support, sizeof(float) * N * K) &&
                   !memcmp(xq, f->x_query, sizeof(float) * N * Q * 784);
        const mela_episode *g = mela_sampler_episode(s2, 43, (uint64_t)i);
        differ += memcmp(xs, g->x_support, sizeof(float) * N * K * 784) != 0 ||
                  memcmp(ys, g->y_support, sizeof(float) * N * K) != 0;
    }
    CHECK(ok_distinct, "N distinct classes");
    CHECK(ok_counts, "K and Q per class, labels consistent");
    CHECK(ok_disjoint, "support and query disjoint");
    CHECK(ok_perm, "labels a permutation of 0..N-1");
    CHECK(ok_pixels, "pixels are the split images");
    CHECK(ok_same, "same seed -> same episode");
    CHECK(differ >= 48, "another seed -> different episodes (%d of 50)", differ);
    /* Over many episodes every label position takes every value. */
    int lab0[N];
    memset(lab0, 0, sizeof lab0);
    for (int i = 0; i < 200; i++)
        lab0[mela_sampler_episode(s, 7, (uint64_t)i)->label[0]]++;
    int all = 1;
    for (int j = 0; j < N; j++)
        all &= lab0[j] > 10;
    CHECK(all, "labels in random order");
    free(xs);
    free(ys);
    free(xq);
out:
    mela_sampler_free(s);
    mela_sampler_free(s2);

    /* Errors: too few classes, too few examples. */
    mela_sampler *bad = mela_sampler_new(ds, sp, 57, 1, 1, 0);
    CHECK(!bad && strstr(mela_last_error(), "56 classes, fewer than N = 57"), "few classes: %s",
          mela_last_error());
    bad = mela_sampler_new(ds, sp, 5, 2, 5, 0);
    CHECK(!bad && strstr(mela_last_error(), "Alpha/character01 (rot000) has 6 examples") &&
              strstr(mela_last_error(), "2 + 5 = 7"),
          "few examples: %s", mela_last_error());
    mela_split_free(sp);

    /* Lake: within-alphabet 3-way one-shot on the evaluation set. */
    mela_split *le = mela_split_lake(ds, "test");
    mela_sampler *ls = le ? mela_sampler_new(ds, le, 3, 1, 1, MELA_EPISODE_WITHIN_GROUP) : NULL;
    CHECK(ls != NULL, "lake sampler: %s", mela_last_error());
    if (ls) {
        int ok = 1, saw_gamma = 0;
        for (int i = 0; i < 100; i++) {
            const mela_episode *e = mela_sampler_episode(ls, 1, (uint64_t)i);
            int g = e->group;
            ok &= !strcmp(ds->groups[g], "Gamma"); /* Delta has only 2 characters */
            for (int j = 0; j < 3; j++) {
                int c = le->classes[e->split_class[j]].cls;
                ok &= ds->classes[c].group == g;
                ok &= ds->drawer[ds->classes[c].first + e->support_index[j]] !=
                      ds->drawer[ds->classes[c].first + e->query_index[j]];
            }
            saw_gamma++;
        }
        CHECK(ok && saw_gamma == 100, "within-alphabet, two drawers");
    }
    mela_sampler_free(ls);
    mela_sampler *l4 = le ? mela_sampler_new(ds, le, 6, 1, 1, MELA_EPISODE_WITHIN_GROUP) : NULL;
    CHECK(!l4 && strstr(mela_last_error(), "largest has 5"), "within group too big: %s",
          mela_last_error());
    mela_split_free(le);
}

static void test_bad_archives(void)
{
    char bad[600], p[1024];
    snprintf(bad, sizeof bad, "%s/bad", root);
    mkdir(bad, 0755);
    mela_omniglot_opts o = {0};
    o.no_cache = 1;
    o.sets = MELA_OMNIGLOT_BACKGROUND;

    /* Missing archive: says what and where to get it. */
    mela_dataset *ds = mela_omniglot_load(bad, &o);
    CHECK(!ds && strstr(mela_last_error(), "images_background.zip: not found") &&
              strstr(mela_last_error(), "github.com/brendenlake/omniglot"),
          "missing: %s", mela_last_error());

    /* Truncated zip. */
    write_archive(bad, "images_background", BG, 2, 1, 2, 0, NULL, NULL, 0);
    snprintf(p, sizeof p, "%s/images_background.zip", bad);
    struct stat st;
    stat(p, &st);
    CHECK(truncate(p, st.st_size / 2) == 0, "truncate");
    ds = mela_omniglot_load(bad, &o);
    CHECK(!ds && strstr(mela_last_error(), p) && strstr(mela_last_error(), "zip"),
          "truncated zip: %s", mela_last_error());
    /* Not a zip at all. */
    write_text(p, "hello, I am not a zip archive\n");
    ds = mela_omniglot_load(bad, &o);
    CHECK(!ds && strstr(mela_last_error(), p), "not a zip: %s", mela_last_error());

    /* A PNG with corrupt data: good signature and header, broken IDAT. */
    uint8_t pix[105 * 105];
    drawing(pix, 1, 1);
    size_t n = 0;
    uint8_t *png = png_bytes(pix, 105, 105, &n);
    for (size_t i = 40; i < n - 12; i++)
        png[i] ^= 0xa5;
    write_archive(bad, "images_background", BG, 1, 1, 2, 0,
                  "images_background/Alpha/character01/0001_09.png", png, n);
    free(png);
    ds = mela_omniglot_load(bad, &o);
    CHECK(!ds && strstr(mela_last_error(), "Alpha/character01/0001_09.png") &&
              strstr(mela_last_error(), "PNG"),
          "corrupt PNG: %s", mela_last_error());

    /* A non-PNG file inside a class folder. */
    write_archive(bad, "images_background", BG, 1, 1, 2, 0,
                  "images_background/Alpha/character02/notes.txt", "text", 4);
    ds = mela_omniglot_load(bad, &o);
    CHECK(!ds && strstr(mela_last_error(), "Alpha/character02/notes.txt") &&
              strstr(mela_last_error(), "not a PNG"),
          "non-PNG: %s", mela_last_error());
    /* A .png that holds text. */
    write_archive(bad, "images_background", BG, 1, 1, 2, 0,
                  "images_background/Alpha/character02/0002_07.png", "text", 4);
    ds = mela_omniglot_load(bad, &o);
    CHECK(!ds && strstr(mela_last_error(), "0002_07.png"), "text .png: %s", mela_last_error());
    /* An entry outside the layout. */
    write_archive(bad, "images_background", BG, 1, 1, 2, 0, "images_background/x.png", "t", 1);
    ds = mela_omniglot_load(bad, &o);
    CHECK(!ds && strstr(mela_last_error(), "x.png") && strstr(mela_last_error(), "laid out"),
          "layout: %s", mela_last_error());
    /* An entry larger than any image (zeros: 65 MB in a zip of 64 kB) is
     * refused by its size, before it is read. */
    size_t big_n = (size_t)65 << 20;
    uint8_t *big = calloc(big_n, 1);
    write_archive(bad, "images_background", BG, 1, 1, 2, 0,
                  "images_background/Alpha/character01/0001_03.png", big, big_n);
    free(big);
    ds = mela_omniglot_load(bad, &o);
    CHECK(!ds && strstr(mela_last_error(), "0001_03.png: 68157440 bytes uncompressed") &&
              strstr(mela_last_error(), "64 MB") && !strstr(mela_last_error(), "No error"),
          "oversized entry: %s", mela_last_error());
    /* A FIFO in the archive's place is refused, not waited on. */
    unlink(p);
    CHECK(mkfifo(p, 0644) == 0, "mkfifo");
    alarm(20);
    ds = mela_omniglot_load(bad, &o);
    alarm(0);
    CHECK(!ds && strstr(mela_last_error(), p) && strstr(mela_last_error(), "FIFO"),
          "FIFO as the archive: %s", mela_last_error());
    unlink(p);
    /* Directories only: no images. */
    write_archive(bad, "images_background", BG, 0, 1, 2, 0, NULL, NULL, 0);
    ds = mela_omniglot_load(bad, &o);
    CHECK(!ds, "empty archive");
    o.H = -3;
    CHECK(!mela_omniglot_load(data, &o), "bad size");
}


/* ------------------------------------------------- runs on split trainval */

typedef struct tv_seen {
    int validations, best_is_last;
} tv_seen;

static void tv_progress(const mela_progress *p, void *ctx)
{
    tv_seen *s = ctx;
    if (p->validated) {
        s->validations++;
        s->best_is_last += p->best_iteration == p->iteration;
    }
}

/* A few ProtoNet iterations of `ways`-way episodes on split `split`;
 * returns the progress seen (*fitted: the training ran). */
static tv_seen tv_run(const char *split, int ways, int patience, int *opened, int *fitted)
{
    tv_seen s = {0};
    mela_run_config rc;
    *opened = *fitted = 0;
    if (mela_run_defaults(&rc, "protonet", "omniglot", 5) || mela_run_protocol(&rc, split))
        return s;
    snprintf(rc.data_dir, sizeof rc.data_dir, "%s", data);
    snprintf(rc.cache_dir, sizeof rc.cache_dir, "%s", cache);
    rc.out_dir[0] = 0;
    rc.train.ways = ways;
    rc.train.queries = 2;
    rc.test.ways = 3;
    rc.test.queries = 2;
    rc.iterations = 6;
    rc.val_every = 1;
    rc.val_episodes = 4;
    rc.threads = 1;
    rc.width = 8;
    rc.patience = patience;
    mela_run *r = mela_run_open(&rc, NULL);
    if (!r)
        return s;
    *opened = 1;
    *fitted = mela_run_fit(r, 1, tv_progress, &s) == 0;
    mela_run_close(r);
    return s;
}

static void test_trainval_runs(void)
{
    int opened, fitted;
    write_splits(); /* test_splits left a bad val.txt */
    /* 30-way episodes: trainval's training classes are vinyals' train (28)
     * and val (12), 40 in all, so they run on trainval only. */
    tv_seen tv = tv_run("trainval", 30, 0, &opened, &fitted);
    CHECK(opened && fitted, "trainval run: %s", mela_last_error());
    tv_run("vinyals", 30, 0, &opened, &fitted);
    CHECK(opened && !fitted && strstr(mela_last_error(), "vinyals/train has 28 classes"),
          "30-way on vinyals/train: %s", mela_last_error());
    /* Its validation classes are training classes: no selection, the best
     * checkpoint is the latest at every validation. */
    CHECK(tv.validations == 6 && tv.best_is_last == 6, "trainval: %d validations, best = last at %d",
          tv.validations, tv.best_is_last);
    tv_seen vy = tv_run("vinyals", 5, 0, &opened, &fitted);
    CHECK(fitted && vy.validations == 6 && vy.best_is_last < 6,
          "vinyals: %d validations, best = last at %d (%s)", vy.validations, vy.best_is_last,
          mela_last_error());
    tv_run("trainval", 5, 100, &opened, &fitted);
    CHECK(!opened && strstr(mela_last_error(), "patience") && strstr(mela_last_error(), "trainval"),
          "a patience on trainval is refused: %s", mela_last_error());
    mela_run_config rc;
    CHECK(mela_run_defaults(&rc, "protonet", "omniglot", 5) == 0 && mela_run_protocol(&rc, "snell") != 0 &&
              strstr(mela_last_error(), "trainval"),
          "an unknown split names the known ones: %s", mela_last_error());
    /* Which episodes each split's runs draw. */
    unsigned f[3][2];
    const char *sn[3] = {"vinyals", "lake", "finn"};
    for (int i = 0; i < 3; i++) {
        mela_run_defaults(&rc, "maml", "omniglot", 5);
        CHECK(mela_run_protocol(&rc, sn[i]) == 0, "protocol %s", sn[i]);
        f[i][0] = mela_run_episode_flags(&rc, 1);
        f[i][1] = mela_run_episode_flags(&rc, 0);
    }
    CHECK(f[0][0] == 0 && f[0][1] == 0, "vinyals: plain episodes");
    CHECK(f[1][0] == 0 && f[1][1] == MELA_EPISODE_WITHIN_GROUP, "lake: evaluation within an alphabet");
    CHECK(f[2][0] == MELA_EPISODE_DISTINCT_CLASSES && f[2][1] == MELA_EPISODE_DISTINCT_CLASSES,
          "finn: distinct characters in training and evaluation");
    /* On this 14-character archive the finn split is refused when the run opens. */
    mela_run_defaults(&rc, "maml", "omniglot", 5);
    mela_run_protocol(&rc, "finn");
    snprintf(rc.data_dir, sizeof rc.data_dir, "%s", data);
    snprintf(rc.cache_dir, sizeof rc.cache_dir, "%s", cache);
    rc.iterations = 1;
    rc.out_dir[0] = 0;
    mela_run *fr = mela_run_open(&rc, NULL);
    CHECK(!fr && strstr(mela_last_error(), "finn/train") && strstr(mela_last_error(), "14"),
          "a finn run on 14 characters: %s", mela_last_error());
    mela_run_close(fr);
}

/* --resize nearest reaches the loader, and a checkpoint's metadata carries
 * it (so eval and classify rebuild the same images); other values are
 * refused by name. */
static void test_resize_runs(void)
{
    mela_run_config rc;
    char npath[1024], out[400], ck[500];
    snprintf(npath, sizeof npath, "%s/omniglot-images_evaluation-28x28-nearest.u8", cache);
    snprintf(out, sizeof out, "%s/run-nearest", root);
    snprintf(ck, sizeof ck, "%s/last.safetensors", out);
    unlink(npath);
    CHECK(mela_run_defaults(&rc, "protonet", "omniglot", 5) == 0 && !strcmp(rc.resize, "area"),
          "the default is area");
    CHECK(mela_run_set(&rc, "resize", "bilinear") != 0 && strstr(mela_last_error(), "bilinear") &&
              strstr(mela_last_error(), "nearest") && !strcmp(rc.resize, "area"),
          "resize bilinear is refused: %s", mela_last_error());
    snprintf(rc.resize, sizeof rc.resize, "bilinear"); /* written field by field: the check refuses it */
    CHECK(mela_run_check(&rc) != 0 && strstr(mela_last_error(), "bilinear"), "check refuses bilinear: %s",
          mela_last_error());
    CHECK(mela_run_set(&rc, "resize", "nearest") == 0 && mela_run_check(&rc) == 0, "nearest is valid");
    snprintf(rc.data_dir, sizeof rc.data_dir, "%s", data);
    snprintf(rc.cache_dir, sizeof rc.cache_dir, "%s", cache);
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s", out);
    rc.train.ways = 5;
    rc.test.ways = 3;
    rc.train.queries = rc.test.queries = 2;
    rc.iterations = 2;
    rc.val_episodes = 2;
    rc.test_episodes = 2;
    rc.threads = 1;
    rc.width = 8;
    mela_run *r = mela_run_open(&rc, NULL);
    CHECK(r && mela_run_fit(r, 1, NULL, NULL) == 0, "a nearest run: %s", mela_last_error());
    mela_run_close(r);
    CHECK(access(npath, F_OK) == 0, "the run loaded nearest images (their cache exists)");
    mela_checkpoint *c = mela_checkpoint_open(ck);
    const char *v = c ? mela_checkpoint_meta(c, "resize") : NULL;
    CHECK(v && !strcmp(v, "nearest"), "the checkpoint says resize %s", v ? v : "(none)");
    mela_checkpoint_close(c);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/mela-test-omniglot-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(data, sizeof data, "%s/omniglot", root);
    snprintf(cache, sizeof cache, "%s/cache", root);
    mkdir(data, 0755);
    CHECK(write_archive(data, "images_background", BG, 2, 1, NDRAW, 0, NULL, NULL, 0) == 0, "zip");
    CHECK(write_archive(data, "images_evaluation", EV, 2, 8, NDRAW, 0, NULL, NULL, 0) == 0, "zip");
    write_splits();

    test_layout_and_values();
    test_cache();
    mela_dataset *ds = load(28, 28);
    CHECK(ds != NULL, "reload");
    if (ds) {
        test_splits(ds);
        test_episodes(ds);
    }
    mela_dataset_free(ds);
    test_trainval_runs();
    test_resize_runs();
    test_bad_archives();
    check_rm_rf(root);
    return check_finish();
}
