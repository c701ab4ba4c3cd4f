/* test_find.c - one-shot detection: IoU, non-maximum suppression and average
 * precision against hand-computed cases; the support drawings found where
 * they were pasted on a synthetic scene (at two sizes, among a distractor),
 * with a ProtoNet trained here in seconds on synthetic stroke glyphs (and
 * again with one trained with background windows, `--background`); a
 * scene of distractors only scoring below them, and "nothing found" on a
 * blank picture at the default threshold; `--score others` and `ratio`
 * against `blank` (targets still found, distractors scored lower; with
 * `others` the scene of distractors only is "nothing found" at the
 * default threshold); the
 * scene generator's promises;
 * `mela find` (JSON lines, --draw); and bad input (a picture smaller than
 * the model's input, a support folder with an empty class, a gradient-based
 * checkpoint) refused with a clear message. Whether distractor characters
 * stay below the default threshold is a property of a trained Omniglot
 * model, measured by bench_find's scene accuracy (bench/results/find.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "mela_data.h"
#include "mela_io.h"
#include "mela_learn.h"

#define S 28

/* ------------------------------------------------------- hand-computed */

static void test_iou(void)
{
    float a[4] = {0, 0, 10, 10}, b[4] = {5, 0, 10, 10}, c[4] = {20, 20, 5, 5}, d[4] = {2, 2, 6, 6};
    /* overlap 5 x 10 = 50, union 100 + 100 - 50 = 150 */
    CHECK_CLOSE(mela_box_iou(a, b), 50.0 / 150.0, 1e-6, 0, "iou of two shifted squares");
    CHECK(mela_box_iou(a, c) == 0, "disjoint boxes: %g", (double)mela_box_iou(a, c));
    /* d inside a: 36 / 100 */
    CHECK_CLOSE(mela_box_iou(a, d), 0.36, 1e-6, 0, "iou of a box inside another");
    CHECK_CLOSE(mela_box_iou(a, a), 1, 1e-6, 0, "iou with itself");
}

static void test_nms(void)
{
    /* A (0.9) and B (0.8) overlap with IoU 1/3, C (0.7) overlaps A with IoU
     * 0.81 / 1.19 = 0.68, D (0.6) is far away and of another class. */
    mela_find_box b[4] = {
        {5, 0, 10, 10, 0.8f, 0}, {0, 0, 10, 10, 0.9f, 0}, {1, 1, 10, 10, 0.7f, 1}, {50, 50, 4, 4, 0.6f, 1},
    };
    mela_find_box c[4];
    memcpy(c, b, sizeof b);
    int n = mela_nms(c, 4, 0.3f, 0, 10);
    /* class-agnostic at 0.3: A kept, B dropped (1/3 > 0.3), C dropped, D kept */
    CHECK(n == 2 && c[0].score == 0.9f && c[1].score == 0.6f, "nms 0.3: %d kept, first %g", n,
          (double)c[0].score);
    memcpy(c, b, sizeof b);
    n = mela_nms(c, 4, 0.5f, 0, 10); /* B survives (1/3 <= 0.5), C does not */
    CHECK(n == 3 && c[1].score == 0.8f && c[2].score == 0.6f, "nms 0.5: %d kept", n);
    memcpy(c, b, sizeof b);
    n = mela_nms(c, 4, 0.3f, 1, 10); /* per class: C (class 1) is not suppressed by A */
    CHECK(n == 3 && c[1].score == 0.7f, "nms per class: %d kept, second %g", n, (double)c[1].score);
    memcpy(c, b, sizeof b);
    n = mela_nms(c, 4, 0.3f, 0, 1);
    CHECK(n == 1 && c[0].score == 0.9f, "nms max_keep 1: %d", n);
}

static void test_ap(void)
{
    /* ranked: TP, FP, TP, FP with 3 positives: precision at the hits 1 and
     * 2/3, so AP = (1 + 2/3) / 3 = 5/9 */
    float s[4] = {0.4f, 0.9f, 0.8f, 0.7f};
    int tp[4] = {0, 1, 0, 1};
    CHECK_CLOSE(mela_average_precision(4, s, tp, 3), 5.0 / 9.0, 1e-12, 0, "AP of T F T F, 3 positives");
    /* interpolation: F T T with 2 positives: precisions 1/2, 2/3 -> both 2/3 */
    float s2[3] = {0.9f, 0.8f, 0.7f};
    int tp2[3] = {0, 1, 1};
    CHECK_CLOSE(mela_average_precision(3, s2, tp2, 2), 2.0 / 3.0, 1e-12, 0, "AP of F T T");
    /* a tie between a hit and a miss counts the miss first */
    float s3[2] = {0.5f, 0.5f};
    int tp3[2] = {1, 0};
    CHECK_CLOSE(mela_average_precision(2, s3, tp3, 1), 0.5, 1e-12, 0, "AP of a tie");
    CHECK(isnan(mela_average_precision(2, s3, tp3, 0)), "AP without positives is NaN");
    /* matching: the better detection takes the box, the second is a miss, a
     * detection of another label never matches */
    mela_find_box gt[1] = {{10, 10, 20, 20, 1, 2}};
    mela_find_box det[3] = {{12, 10, 20, 20, 0.5f, 2}, {10, 10, 20, 20, 0.9f, 2}, {10, 10, 20, 20, 0.95f, 1}};
    int m[3];
    CHECK(mela_match_boxes(det, 3, gt, 1, 0.5f, m) == 0 && m[0] == 0 && m[1] == 1 && m[2] == 0,
          "matching: %d %d %d", m[0], m[1], m[2]);
}

/* ------------------------------------------------- a synthetic detector */

/* Drawing `variant` of glyph class c, 28 x 28: three strokes (3 pixels
 * wide) between random points of the central 17 x 17 pixels, like a
 * character; variants other than 0 move every end point by up to a pixel
 * (another "drawer"). */
static void glyph(uint8_t *out, int c, int variant)
{
    mela_rng r = mela_rng_derive(77, (uint64_t)c, 0);
    mela_rng v = mela_rng_derive(78, (uint64_t)c, (uint64_t)variant);
    memset(out, 0, S * S);
    for (int k = 0; k < 3; k++) {
        float p[4];
        for (int e = 0; e < 4; e++)
            p[e] = 5 + 17 * mela_rng_uniform(&r) + (variant ? 2 * mela_rng_uniform(&v) - 1 : 0);
        for (int t = 0; t <= 40; t++) {
            float x = p[0] + (p[2] - p[0]) * t / 40, y = p[1] + (p[3] - p[1]) * t / 40;
            for (int dy = 0; dy < 3; dy++)
                for (int dx = 0; dx < 3; dx++)
                    out[((int)y + dy) * S + (int)x + dx] = 255;
        }
    }
}

static mela_dataset *glyphs(int nclasses, int per_class)
{
    mela_dataset *ds = calloc(1, sizeof *ds);
    ds->C = 1, ds->H = S, ds->W = S;
    ds->nclasses = nclasses;
    ds->classes = calloc(nclasses, sizeof *ds->classes);
    ds->nimages = nclasses * per_class;
    ds->pixels = malloc((size_t)ds->nimages * S * S);
    ds->drawer = calloc(ds->nimages, sizeof *ds->drawer);
    ds->ngroups = 1;
    ds->groups = calloc(1, sizeof *ds->groups);
    ds->groups[0] = strdup("glyphs");
    for (int c = 0; c < nclasses; c++) {
        char name[32];
        snprintf(name, sizeof name, "glyph%02d", c);
        ds->classes[c] = (mela_class){strdup(name), 0, -1, 0, c * per_class, per_class};
        for (int j = 0; j < per_class; j++)
            glyph(ds->pixels + (size_t)(c * per_class + j) * S * S, c, j);
    }
    return ds;
}

/* A short seeded training on glyph classes 0..29 into dir/best.safetensors
 * (ProtoNets: with `background` windows of glyph scenes in each episode). */
static const char *train_resize = "area"; /* rc.resize of the next train() */

static int train(const char *learner, const char *dir, int iterations, int background)
{
    mela_dataset *ds = glyphs(40, 6);
    mela_split *all = mela_split_all(ds, "glyphs", NULL, 0);
    mela_split tr = *all, te = *all;
    tr.n = 30, tr.id = 1;
    te.n = 10, te.classes = all->classes + 30, te.id = 2;
    mela_run_config rc;
    mela_run_defaults(&rc, learner, "omniglot", 5);
    snprintf(rc.split, sizeof rc.split, "vinyals");
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s", dir);
    rc.width = 16;
    rc.train.ways = strcmp(learner, "maml") ? 10 : 5;
    rc.test = (mela_task_spec){5, 1, 3, 0};
    rc.iterations = iterations;
    rc.val_every = 0;
    rc.val_episodes = 5;
    rc.test_episodes = 5;
    rc.threads = 1;
    rc.meta_batch = 1;
    rc.background = background;
    snprintf(rc.resize, sizeof rc.resize, "%s", train_resize);
    mela_run_data data = {ds, &tr, &te, &te};
    mela_run *r = mela_run_open(&rc, &data);
    mela_eval_result res;
    int ok = r && !mela_run_fit(r, 1000, NULL, NULL) && !mela_run_test(r, 100, &res);
    if (ok)
        printf("%s on glyphs, %d iterations, %d background windows: 5-way 1-shot test accuracy %.1f%%\n",
               learner, iterations, background, 100 * res.acc);
    else
        fprintf(stderr, "train %s: %s\n", learner, mela_last_error());
    mela_run_close(r);
    mela_split_free(all);
    mela_dataset_free(ds);
    return ok ? 0 : -1;
}

/* Pastes glyph (c, variant) at (x, y), enlarged k times (nearest). */
static void paste(float *pic, int W, int c, int variant, int x, int y, int k)
{
    uint8_t g[S * S];
    glyph(g, c, variant);
    for (int j = 0; j < S * k; j++)
        for (int i = 0; i < S * k; i++)
            pic[(size_t)(y + j) * W + x + i] = g[(j / k) * S + i / k] / 255.0f;
}

/* The best score of class `label` among the n boxes of b (-1 when none),
 * and whether that box lies where want says (IoU >= 0.8). */
static float best_of(const mela_find_box *b, int n, int label, const float *want, int *at)
{
    for (int j = 0; j < n; j++)
        if (b[j].label == label) {
            *at = want ? mela_box_iou(&b[j].x, want) >= 0.8f : 1;
            return b[j].score;
        }
    *at = 0;
    return -1;
}

/* A checkpoint trained on `--resize nearest` images finds in pictures
 * resized by the nearest pixel, as its training images were: a binary
 * support drawing enlarged 1.5 times by the nearest pixel comes back exact
 * at object size 42 (score 1) where it was drawn; the area filter (ck_area) blurs its edges.
 * The flags tell `mela find` to load the support crops the same way. */
static void test_nearest(const char *ck_near, const char *ck_area)
{
    enum { P = 42, W = 84, AT = 24 }; /* at AT: (16, 16) after the resize by 2/3, on the window grid */
    float sup[S * S], pic[W * W] = {0}, sizes[1] = {P};
    uint8_t g[S * S];
    glyph(g, 31, 0);
    for (int p = 0; p < S * S; p++)
        sup[p] = g[p] >= 128;
    for (int y = 0; y < P; y++) /* nearest enlargement: the centre's source pixel */
        for (int x = 0; x < P; x++)
            pic[(AT + y) * W + AT + x] = sup[((2 * y + 1) * S / (2 * P)) * S + (2 * x + 1) * S / (2 * P)];
    float score[2] = {-1, -1};
    for (int m = 0; m < 2; m++) {
        mela_find_opts o = {.sizes = sizes, .nsizes = 1, .stride = 4, .plain_support = 1};
        mela_finder *f = mela_finder_open(m ? ck_area : ck_near, &o);
        CHECK(f && mela_finder_image_flags(f) == (m ? 0u : (unsigned)MELA_FOLDER_NEAREST),
              "image flags of the %s checkpoint: %s", m ? "area" : "nearest", f ? "wrong" : mela_last_error());
        mela_find_box *b = NULL;
        int n = 0;
        if (f && mela_finder_support(f, 1, 1, sup) == 0 && mela_finder_find(f, pic, W, W, -INFINITY, &b, &n) == 0)
            score[m] = n > 0 ? b[0].score : -1;
        else
            CHECK(0, "find (%s): %s", m ? "area" : "nearest", mela_last_error());
        free(b);
        mela_finder_close(f);
    }
    printf("nearest: the enlarged drawing scores %.6f (the area checkpoint %.6f)\n", (double)score[0], (double)score[1]);
    CHECK(score[0] > 0.9999f && score[1] < score[0], "nearest checkpoint: the exact drawing scores %.6f "
          "(area checkpoint on the same picture: %.6f)", (double)score[0], (double)score[1]);
}

/* --score others and ratio against blank on the same pictures: each
 * support drawing still found at its place, scoring at least 0.9; the best
 * distractor of a scene of distractors only scores lower than with blank
 * (others: ref is never larger than blank's, so no score rises). */
static void test_scores(const char *ck)
{
    enum { W = 200, H = 176, N = 5 };
    float sup[N * S * S], sizes[2] = {28, 56};
    for (int c = 0; c < N; c++) {
        uint8_t g[S * S];
        glyph(g, 30 + c, 0);
        for (int p = 0; p < S * S; p++)
            sup[c * S * S + p] = g[p] / 255.0f;
    }
    float *pic = calloc((size_t)W * H, sizeof *pic), *dis = calloc((size_t)W * H, sizeof *dis);
    paste(pic, W, 30, 0, 12, 20, 1);
    paste(pic, W, 32, 0, 80, 100, 2);
    paste(dis, W, 35, 1, 20, 120, 1);
    paste(dis, W, 36, 2, 120, 30, 1);
    paste(dis, W, 37, 3, 70, 70, 2);
    static const char *names[] = {"blank", "others", "ratio"};
    float dbest[3] = {0, 0, 0}, t30[3] = {0, 0, 0};
    for (int m = 0; m < 3; m++) {
        mela_find_opts o = {.sizes = sizes, .nsizes = 2, .stride = 4, .score = m};
        mela_finder *f = mela_finder_open(ck, &o);
        int ok = f && mela_finder_support(f, N, 1, sup) == 0;
        CHECK(ok, "--score %s: %s", names[m], mela_last_error());
        if (!ok) {
            mela_finder_close(f);
            continue;
        }
        mela_find_box *b = NULL;
        int n = 0, at;
        float w30[4] = {12, 20, S, S}, w32[4] = {80, 100, 2 * S, 2 * S};
        CHECK(mela_finder_find(f, pic, H, W, -INFINITY, &b, &n) == 0, "find: %s", mela_last_error());
        float s30 = best_of(b, n, 0, w30, &at);
        CHECK(at && s30 >= 0.9f, "--score %s: glyph 30's best box %s its place, score %.3f", names[m],
              at ? "at" : "not at", (double)s30);
        float s32 = best_of(b, n, 2, w32, &at);
        CHECK(at && s32 >= 0.9f, "--score %s: glyph 32 (twice as large)'s best box %s its place, score %.3f",
              names[m], at ? "at" : "not at", (double)s32);
        t30[m] = s30;
        free(b);
        b = NULL;
        CHECK(mela_finder_find(f, dis, H, W, -INFINITY, &b, &n) == 0 && n > 0, "find: %s", mela_last_error());
        dbest[m] = n > 0 ? b[0].score : 0;
        free(b);
        mela_finder_close(f);
    }
    printf("--score blank / others / ratio: glyph 30 %.3f / %.3f / %.3f; distractors only, best %.3f / %.3f / %.3f\n",
           (double)t30[0], (double)t30[1], (double)t30[2], (double)dbest[0], (double)dbest[1], (double)dbest[2]);
    CHECK(t30[1] <= t30[0] + 1e-6f && dbest[1] <= dbest[0] + 1e-6f, "--score others: no score above blank's");
    CHECK(dbest[1] < dbest[0] - 0.05f && dbest[2] < dbest[0] - 0.05f,
          "distractors only: others %.3f and ratio %.3f below blank %.3f", (double)dbest[1], (double)dbest[2],
          (double)dbest[0]);
    /* the question "is any support class here?" on the scene of distractors
     * only: "nothing found" at the default threshold with --score others
     * (with blank the best distractor scores above it: bench/results/find.md) */
    CHECK(dbest[1] < MELA_FIND_THRESHOLD && t30[1] >= MELA_FIND_THRESHOLD,
          "--score others at the default threshold %.2f: distractors only nothing found (best %.3f), "
          "glyph 30 found (%.3f)", (double)MELA_FIND_THRESHOLD, (double)dbest[1], (double)t30[1]);
    free(pic), free(dis);
}

static void test_detect(const char *ck, int background)
{
    enum { W = 200, H = 176, N = 5 };
    float sup[N * S * S];
    for (int c = 0; c < N; c++) { /* the support: variant 0 of glyph classes 30..32 (unseen) */
        uint8_t g[S * S];
        glyph(g, 30 + c, 0);
        for (int p = 0; p < S * S; p++)
            sup[c * S * S + p] = g[p] / 255.0f;
    }
    float sizes[2] = {28, 56};
    mela_find_opts o = {.sizes = sizes, .nsizes = 2, .stride = 4};
    mela_finder *f = mela_finder_open(ck, &o);
    CHECK(f && mela_finder_support(f, N, 1, sup) == 0, "finder: %s", mela_last_error());
    if (!f)
        return;
    /* the support drawings at known places, one twice as large, and a
     * distractor (class 35): each is the best box of its class, at its
     * place, scoring near 1, and they are the three best */
    float *pic = calloc((size_t)W * H, sizeof *pic);
    struct { int c, v, x, y, k; } put[4] = {{30, 0, 12, 20, 1}, {31, 0, 140, 16, 1}, {32, 0, 80, 100, 2}, {35, 1, 20, 120, 1}};
    for (int i = 0; i < 4; i++)
        paste(pic, W, put[i].c, put[i].v, put[i].x, put[i].y, put[i].k);
    mela_find_box *b = NULL;
    int n = 0;
    CHECK(mela_finder_find(f, pic, H, W, MELA_FIND_THRESHOLD, &b, &n) == 0, "find: %s", mela_last_error());
    for (int i = 0; i < 3; i++) {
        float want[4] = {(float)put[i].x, (float)put[i].y, (float)(S * put[i].k), (float)(S * put[i].k)};
        int j = 0;
        while (j < n && b[j].label != put[i].c - 30)
            j++;
        CHECK(j < 3 && mela_box_iou(&b[j].x, want) >= 0.8f && b[j].score > 0.95f,
              "glyph %d at (%d, %d) size %d: its best box is #%d at (%g, %g) size %g, score %.3f",
              put[i].c, put[i].x, put[i].y, S * put[i].k, j, j < n ? (double)b[j].x : -1.0,
              j < n ? (double)b[j].y : -1.0, j < n ? (double)b[j].w : -1.0, j < n ? (double)b[j].score : -1.0);
    }
    /* a scene of distractors only (classes 35-37, one twice as large): its
     * best box scores below every support drawing's above */
    float best_target = 1;
    for (int i = 0; i < 3 && n >= 3; i++)
        best_target = fminf(best_target, b[i].score);
    free(b);
    memset(pic, 0, (size_t)W * H * sizeof *pic);
    paste(pic, W, 35, 1, 20, 120, 1);
    paste(pic, W, 36, 2, 120, 30, 1);
    paste(pic, W, 37, 3, 70, 70, 2);
    b = NULL;
    CHECK(mela_finder_find(f, pic, H, W, -INFINITY, &b, &n) == 0 && n > 0 && b[0].score < best_target,
          "distractors only: best %.3f, the support drawings' lowest %.3f", n ? (double)b[0].score : 0.0,
          (double)best_target);
    printf("%s: distractors only: best score %.3f (the support drawings: %.3f and above)\n",
           background ? "trained with background" : "plain", n ? (double)b[0].score : 0.0,
           (double)best_target);
    free(b);

    /* a blank picture: nothing found at the default threshold */
    memset(pic, 0, (size_t)W * H * sizeof *pic);
    b = NULL;
    CHECK(mela_finder_find(f, pic, H, W, MELA_FIND_THRESHOLD, &b, &n) == 0 && n == 0, "blank: %d boxes", n);
    free(b);
    /* a picture smaller than the model's input */
    b = NULL;
    CHECK(mela_finder_find(f, pic, 20, 100, MELA_FIND_THRESHOLD, &b, &n) == -1 &&
              strstr(mela_last_error(), "smaller than the model's input"),
          "small picture: %s", mela_last_error());
    free(pic);
    mela_finder_close(f);
}

/* ----------------------------------------------------------- the scenes */

static void test_scenes(void)
{
    mela_dataset *ds = glyphs(12, 4);
    mela_scene_opts so = {.size = 160, .ways = 3, .min_chars = 3, .max_chars = 6};
    mela_scenes *gen = mela_scenes_new(ds, &so);
    CHECK(gen != NULL, "scenes: %s", mela_last_error());
    so.ways = 12;
    CHECK(mela_scenes_new(ds, &so) == NULL && strstr(mela_last_error(), "more classes than ways"),
          "ways = classes refused: %s", mela_last_error());
    for (int i = 0; gen && i < 20; i++) {
        mela_scene a, b;
        CHECK(mela_scene_make(gen, 5, (uint64_t)i, &a) == 0 && mela_scene_make(gen, 5, (uint64_t)i, &b) == 0,
              "scene %d", i);
        CHECK(!memcmp(a.pixels, b.pixels, 160 * 160 * sizeof(float)) && a.nboxes == b.nboxes,
              "scene %d is not a function of (seed, i)", i);
        CHECK(a.nboxes >= 1 && a.nboxes <= 6, "scene %d: %d characters", i, a.nboxes);
        for (int k = 0; k < a.nboxes; k++) {
            const mela_scene_box *q = &a.boxes[k];
            int cls_ok = q->label >= 0 ? q->cls == a.support_class[q->label] : 1;
            for (int c = 0; c < a.ways && q->label < 0; c++)
                cls_ok &= q->cls != a.support_class[c];
            CHECK(cls_ok, "scene %d box %d: class %d, label %d", i, k, q->cls, q->label);
            CHECK(q->x >= 0 && q->y >= 0 && q->x + q->w <= 160 && q->y + q->h <= 160 &&
                      q->w >= 0.7f * S - 1e-3f && q->w <= 1.5f * S + 1e-3f,
                  "scene %d box %d at (%g, %g) size %g", i, k, (double)q->x, (double)q->y, (double)q->w);
            for (int m = 0; m < k; m++)
                CHECK(mela_box_iou(&q->x, &a.boxes[m].x) == 0, "scene %d: boxes %d and %d overlap", i, k, m);
        }
        mela_scene_free(&a);
        mela_scene_free(&b);
    }
    mela_scenes_free(gen);
    mela_dataset_free(ds);
}

/* ----------------------------------------------------------- the tool */

static void write_glyph_png(const char *path, int c, int variant, int W, int H, int x, int y)
{
    float *pic = calloc((size_t)W * H, sizeof *pic);
    paste(pic, W, c, variant, x, y, 1);
    CHECK(mela_boxes_png(path, pic, H, W, 1, 1, 0, NULL) == 0, "png: %s", mela_last_error());
    free(pic);
}

static void test_cli(const char *dir, const char *ck, const char *maml)
{
    const char *bin = getenv("MELA_BIN");
    if (!bin) {
        printf("MELA_BIN not set: the command-line checks are skipped\n");
        return;
    }
    char p[1024], cmd[4096], out[8192];
    snprintf(p, sizeof p, "%s/sup", dir);
    mkdir(p, 0777);
    for (int c = 0; c < 2; c++) {
        snprintf(p, sizeof p, "%s/sup/g%d", dir, c);
        mkdir(p, 0777);
        snprintf(p, sizeof p, "%s/sup/g%d/a.png", dir, c);
        write_glyph_png(p, 30 + c, 0, S, S, 0, 0);
    }
    snprintf(p, sizeof p, "%s/scene.png", dir);
    write_glyph_png(p, 31, 0, 120, 100, 48, 32);
    snprintf(cmd, sizeof cmd, "'%s' find '%s' '%s/sup' '%s/scene.png' --sizes 28 --stride 4 --json "
             "--draw '%s/drawn' 2>&1", bin, ck, dir, dir, dir);
    int rc = check_run(out, sizeof out, cmd);
    CHECK(rc == 0 && strstr(out, "\"class\": \"g1\"") && strstr(out, "\"x\": 48.0, \"y\": 32.0"),
          "mela find --json: status %d, output:\n%s", rc, out);
    snprintf(p, sizeof p, "%s/drawn/scene.png", dir);
    struct stat st;
    CHECK(stat(p, &st) == 0 && st.st_size > 100, "--draw wrote no %s", p);
    /* a picture smaller than the model's input */
    snprintf(p, sizeof p, "%s/tiny.png", dir);
    write_glyph_png(p, 31, 1, 20, 40, 0, 0);
    snprintf(cmd, sizeof cmd, "'%s' find '%s' '%s/sup' '%s' 2>&1", bin, ck, dir, p);
    rc = check_run(out, sizeof out, cmd);
    CHECK(rc == 1 && strstr(out, "smaller than the model's input"), "tiny picture: %d %s", rc, out);
    /* a gradient-based checkpoint */
    snprintf(cmd, sizeof cmd, "'%s' find '%s' '%s/sup' '%s/scene.png' 2>&1", bin, maml, dir, dir);
    rc = check_run(out, sizeof out, cmd);
    CHECK(rc == 1 && strstr(out, "maml checkpoint cannot find") && strstr(out, "metric learner"),
          "maml checkpoint: %d %s", rc, out);
    /* a support folder with an empty class */
    snprintf(p, sizeof p, "%s/sup/empty", dir);
    mkdir(p, 0777);
    snprintf(cmd, sizeof cmd, "'%s' find '%s' '%s/sup' '%s/scene.png' 2>&1", bin, ck, dir, dir);
    rc = check_run(out, sizeof out, cmd);
    CHECK(rc == 1 && strstr(out, "empty"), "empty class: %d %s", rc, out);
}

int main(void)
{
    test_iou();
    test_nms();
    test_ap();
    test_scenes();
    char dir[] = "/tmp/mela-find-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return check_finish();
    }
    char pn[1200], maml[1200], ck[1300], mck[1300];
    snprintf(pn, sizeof pn, "%s/protonet", dir);
    snprintf(maml, sizeof maml, "%s/maml", dir);
    snprintf(ck, sizeof ck, "%s/best.safetensors", pn);
    snprintf(mck, sizeof mck, "%s/best.safetensors", maml);
    int ok = train("protonet", pn, 300, 0) == 0;
    CHECK(ok, "protonet training failed");
    CHECK(train("maml", maml, 1, 0) == 0, "maml training failed");
    if (ok) {
        test_detect(ck, 0);
        test_scores(ck);
        test_cli(dir, ck, mck);
    }
    char near[1300], nck[1400];
    snprintf(near, sizeof near, "%s/protonet-nearest", dir);
    snprintf(nck, sizeof nck, "%s/best.safetensors", near);
    train_resize = "nearest";
    int nok = train("protonet", near, 2, 0) == 0;
    train_resize = "area";
    CHECK(nok, "protonet training on nearest-pixel images failed");
    if (ok && nok)
        test_nearest(nck, ck);
    snprintf(pn, sizeof pn, "%s/protonet-bg", dir);
    snprintf(ck, sizeof ck, "%s/best.safetensors", pn);
    ok = train("protonet", pn, 300, 30) == 0;
    CHECK(ok, "protonet training with background windows failed");
    if (ok)
        test_detect(ck, 1);
    if (getenv("MELA_TEST_KEEP"))
        printf("kept %s\n", dir);
    else
        check_rm_rf(dir);
    return check_finish();
}
