/* find.c - `mela find`: a metric checkpoint, a support folder (one drawing
 * per class is enough) and pictures in; boxes of what was found out, as text
 * or JSON lines, and optionally the pictures with the boxes drawn. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/sys.h"
#include "mela_io.h"
#include "mela_learn.h"

/* --score's values, indexed by MELA_FIND_SCORE_* */
static const char *const score_names[] = {[MELA_FIND_SCORE_BLANK] = "blank", [MELA_FIND_SCORE_OTHERS] = "others",
                                          [MELA_FIND_SCORE_RATIO] = "ratio"};

static void find_help(void)
{
    printf("Usage: mela find CHECKPOINT SUPPORT_DIR IMAGE... [options]\n"
           "\n"
           "One-shot detection: finds the classes of SUPPORT_DIR in larger pictures with a\n"
           "metric checkpoint ('mela train --learner protonet|matchnet|siamese'). SUPPORT_DIR\n"
           "holds one folder per class, SUPPORT_DIR/<class>/<image>, the same number of\n"
           "images in each (one is enough); they are resized to the model's 28 x 28 input.\n"
           "IMAGE is PNG or JPEG files or folders of them, of any size of at least 28 x 28.\n"
           "Pictures are converted to grey and inverted (dark strokes on white paper become\n"
           "ink) unless --no-invert. The embedding runs once per picture and object size\n"
           "over the whole picture, every window is compared with the support classes, and\n"
           "the best boxes are kept after non-maximum suppression. See docs/find.md.\n"
           "\n"
           "  --sizes LIST       object sizes in pixels of the pictures, comma-separated\n"
           "                     (default 20,24,28,34,40: characters of 20-40 pixels)\n"
           "  --threshold T      score a box needs to be reported (default %.2f); 1 is the\n"
           "                     support drawing itself, 0 as far as empty paper (Siamese:\n"
           "                     p(same))\n"
           "  --score REF        what a window's distance is measured against (ProtoNets,\n"
           "                     Matching): others = the nearer of blank paper and the\n"
           "                     nearest other support class (a character of no support\n"
           "                     class scores near 0), blank = blank paper only, ratio =\n"
           "                     each window's runner-up (default %s)\n"
           "  --stride S         window step in the resized picture: 16, 8, 4 or 2 (default\n"
           "                     %d; 8 is 4 times as fast, 16 a little faster still)\n"
           "  --max-boxes N      at most N boxes per picture (default 50)\n"
           "  --nms-iou X        drop a box overlapping a better one by more than X (default %.2f)\n"
           "  --threads N        threads of the dense pass, 1..4 (default 1)\n"
           "  --json             JSON lines instead of text\n"
           "  --draw DIR         write DIR/<picture>.png with the boxes and class names\n"
           "  --no-invert        keep brightness as it is (white = 1)\n"
           "  -h, --help         show this help\n"
           "\n"
           "Prints one line per box: picture, class, score, x, y, width, height (pixels,\n"
           "x and y the top-left corner), best first; a picture with no box at or above the\n"
           "threshold gets one line saying 'nothing found' (JSON: \"class\": null).\n",
           (double)MELA_FIND_THRESHOLD, score_names[0], MELA_FIND_STRIDE, (double)MELA_FIND_NMS_IOU);
}

static int parse_sizes(const char *s, float *out, int max)
{
    int n = 0;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || !(v >= 4 && v <= 4096) || n == max)
            return -1;
        out[n++] = (float)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return n;
}

/* A JSON string of s (quotes and control characters escaped). */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* DIR/<base name of path without extension>.png */
static void draw_path(char *out, size_t n, const char *dir, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    int len = dot ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, n, "%s/%.*s.png", dir, len, base);
}

int cli_find(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL}, *drawdir = NULL;
    int npos = 0, invert = 1, json = 0, nq = 0, cap = 0, rc = 2;
    char **pics = NULL;
    float sizes[32], threshold = MELA_FIND_THRESHOLD;
    mela_find_opts o = {0};
    mela_finder *f = NULL;
    mela_dataset *sup = NULL;
    float *xs = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long k;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            find_help();
            rc = 0;
            goto out;
        } else if (!strcmp(a, "--no-invert")) {
            invert = 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--draw") && v) {
            drawdir = argv[++i];
        } else if (!strcmp(a, "--sizes") && v) {
            if ((o.nsizes = parse_sizes(argv[++i], sizes, 32)) < 1) {
                fprintf(stderr, "mela find: --sizes '%s' is not a list of 1 to 32 sizes in 4..4096 "
                                "pixels, such as 20,28,40\n", v);
                goto out;
            }
            o.sizes = sizes;
        } else if ((!strcmp(a, "--threshold") || !strcmp(a, "--nms-iou")) && v) {
            char *end;
            double t = strtod(argv[++i], &end);
            int iou = !strcmp(a, "--nms-iou");
            if (*end || !isfinite(t) || (iou && !(t > 0 && t <= 1))) {
                fprintf(stderr, "mela find: %s '%s' is not %s\n", a, v,
                        iou ? "a number in (0, 1]" : "a number");
                goto out;
            }
            if (iou)
                o.nms_iou = (float)t;
            else
                threshold = (float)t;
        } else if (!strcmp(a, "--score") && v) {
            int m = 0;
            while (m < 3 && strcmp(argv[i + 1], score_names[m]))
                m++;
            if (m == 3) {
                fprintf(stderr, "mela find: --score '%s' is not one of others, blank, ratio\n", v);
                goto out;
            }
            o.score = m;
            i++;
        } else if (!strcmp(a, "--stride") && v) {
            if (cli_int_arg("find", a, argv[++i], 2, 16, &k))
                goto out;
            if (k != 2 && k != 4 && k != 8 && k != 16) {
                fprintf(stderr, "mela find: --stride %lld is not one of 16, 8, 4, 2\n", k);
                goto out;
            }
            o.stride = (int)k;
        } else if (!strcmp(a, "--max-boxes") && v) {
            if (cli_int_arg("find", a, argv[++i], 1, 100000, &k))
                goto out;
            o.max_boxes = (int)k;
        } else if (!strcmp(a, "--threads") && v) {
            if (cli_int_arg("find", a, argv[++i], 1, 4, &k))
                goto out;
            o.threads = (int)k;
        } else if (!strncmp(a, "--", 2)) {
            fprintf(stderr, "mela find: unknown option '%s' (see 'mela find --help')\n", a);
            goto out;
        } else if (npos < 2) {
            pos[npos++] = a;
        } else if (cli_add_images("find", a, &pics, &nq, &cap)) {
            rc = 1;
            goto out;
        }
    }
    if (npos < 2 || nq == 0) {
        fprintf(stderr, "mela find: need CHECKPOINT SUPPORT_DIR and at least one picture "
                        "(see 'mela find --help')\n");
        goto out;
    }
    rc = 1;
    unsigned flags = invert ? MELA_FOLDER_INVERT : 0;
    if (!(f = mela_finder_open(cli_model_path(pos[0]), &o)) ||
        !(sup = mela_folder_load(pos[1], 28, 28, flags | mela_finder_image_flags(f)))) {
        fprintf(stderr, "mela find: %s\n", mela_last_error());
        goto out;
    }
    int K = sup->classes[0].count, N = sup->nclasses;
    for (int c = 1; c < N; c++)
        if (sup->classes[c].count != K) {
            fprintf(stderr, "mela find: class '%s' has %d images and class '%s' %d; give every "
                            "class the same number\n", sup->classes[c].name, sup->classes[c].count,
                    sup->classes[0].name, K);
            goto out;
        }
    xs = malloc((size_t)N * K * 28 * 28 * sizeof *xs);
    if (!xs) {
        fprintf(stderr, "mela find: out of memory\n");
        goto out;
    }
    for (int c = 0; c < N; c++)
        for (int j = 0; j < K; j++) {
            const uint8_t *p = mela_dataset_image(sup, c, j);
            for (int q = 0; q < 28 * 28; q++)
                xs[((size_t)c * K + j) * 28 * 28 + q] = p[q] * (1.0f / 255.0f);
        }
    if (mela_finder_support(f, N, K, xs)) {
        fprintf(stderr, "mela find: %s\n", mela_last_error());
        goto out;
    }
    if (drawdir && mela_sys_mkdirs(drawdir)) {
        fprintf(stderr, "mela find: --draw %s: %s\n", drawdir, mela_last_error());
        goto out;
    }
    for (int i = 0; i < nq; i++) {
        int h, w, colour;
        float *img = NULL;
        mela_find_box *b = NULL;
        int n = 0;
        if (mela_image_info(pics[i], &h, &w, &colour) ||
            !(img = malloc((size_t)h * w * sizeof *img)) ||
            mela_image_load(pics[i], 1, h, w, flags, img) ||
            mela_finder_find(f, img, h, w, threshold, &b, &n)) {
            fprintf(stderr, "mela find: %s\n", img ? mela_last_error() : "out of memory");
            free(img);
            goto out;
        }
        for (int j = 0; j < n; j++) {
            const mela_find_box *q = &b[j];
            const char *cls = sup->classes[q->label].name;
            if (json) {
                printf("{\"image\": ");
                json_str(pics[i]);
                printf(", \"class\": ");
                json_str(cls);
                printf(", \"score\": %.4f, \"x\": %.1f, \"y\": %.1f, \"width\": %.1f, \"height\": %.1f}\n",
                       (double)q->score, (double)q->x, (double)q->y, (double)q->w, (double)q->h);
            } else {
                printf("%s\t%s\t%.4f\t%.1f\t%.1f\t%.1f\t%.1f\n", pics[i], cls, (double)q->score,
                       (double)q->x, (double)q->y, (double)q->w, (double)q->h);
            }
        }
        if (n == 0) {
            if (json) {
                printf("{\"image\": ");
                json_str(pics[i]);
                printf(", \"class\": null}\n");
            } else {
                printf("%s\tnothing found\n", pics[i]);
            }
        }
        if (drawdir) {
            mela_png_box *pb = calloc((size_t)n + 1, sizeof *pb);
            char (*txt)[80] = calloc((size_t)n + 1, sizeof *txt);
            char path[4096];
            draw_path(path, sizeof path, drawdir, pics[i]);
            for (int j = 0; pb && txt && j < n; j++) {
                snprintf(txt[j], sizeof txt[j], "%.40s %.2f", sup->classes[b[j].label].name,
                         (double)b[j].score);
                pb[j] = (mela_png_box){b[j].x, b[j].y, b[j].w, b[j].h, txt[j], b[j].label};
            }
            int bad = !pb || !txt || mela_boxes_png(path, img, h, w, invert, 0, n, pb);
            if (bad)
                fprintf(stderr, "mela find: %s\n", pb && txt ? mela_last_error() : "out of memory");
            free(pb), free(txt);
            if (bad) {
                free(img), free(b);
                goto out;
            }
        }
        free(img);
        free(b);
    }
    rc = 0;
out:
    for (int i = 0; i < nq; i++)
        free(pics[i]);
    free(pics);
    free(xs);
    mela_dataset_free(sup);
    mela_finder_close(f);
    return rc;
}
