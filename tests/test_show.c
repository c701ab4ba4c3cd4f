/* test_show.c - the pictures, decoded again with libpng: episode pictures
 * (size from the layout worked out by hand, one red frame per wrong query),
 * a ProtoNets run's test episodes (as many red frames as mela_run_test
 * counts wrong queries on the same episodes), grids of charts, and the
 * sinusoid pictures of `mela train` and `mela eval --show`. */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check.h"
#include "mela_io.h"
#include "synthetic.h"

/* Decodes path as RGB: its size, and the pixels of exactly colour (r, g, b)
 * in *count. 0, or -1 when it is no readable PNG. */
static int decode(const char *path, int *w, int *h, long *count, int r, int g, int b)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        return -1;
    img.format = PNG_FORMAT_RGB;
    unsigned char *px = malloc(PNG_IMAGE_SIZE(img));
    if (!px || !png_image_finish_read(&img, NULL, px, 0, NULL)) {
        free(px);
        png_image_free(&img);
        return -1;
    }
    *w = (int)img.width, *h = (int)img.height, *count = 0;
    for (size_t i = 0; i < (size_t)img.width * img.height; i++)
        *count += px[3 * i] == r && px[3 * i + 1] == g && px[3 * i + 2] == b;
    free(px);
    return 0;
}

static long red_pixels(const char *path, int *w, int *h)
{
    long n = -1;
    if (decode(path, w, h, &n, MELA_PICTURE_WRONG_R, MELA_PICTURE_WRONG_G, MELA_PICTURE_WRONG_B))
        return -1;
    return n;
}

/* Two episodes of 5x5 images: 3 support images and 20 queries (two rows of
 * queries, 15 and 5), 4 of them wrong. By hand: a frame is 5*2 + 4 = 14
 * pixels a side, a cell 60 + 8 = 68 wide (at least 60 for the label) and
 * 14 + 14 = 28 high; 15 cells a row: 10 + 64 + 1020 + 10 = 1104 wide; each
 * episode 16 + 28 + 8 + 2*28 + 8 = 116 high, after 30 + 10 for the title:
 * 40 + 2*116 = 272. A red frame is 14*14 - 10*10 = 96 pixels. */
static void test_episode_picture(const char *dir)
{
    float img[23][25];
    int sl[3] = {0, 1, 2}, ql[20], qp[20];
    for (int i = 0; i < 23; i++)
        for (int p = 0; p < 25; p++)
            img[i][p] = (float)((i + p) % 5) / 4;
    for (int q = 0; q < 20; q++)
        ql[q] = q % 3, qp[q] = q % 3;
    qp[1] = 2, qp[5] = 0, qp[11] = 0; /* three wrong in the first episode */
    int qp2[20];
    memcpy(qp2, ql, sizeof qp2);
    qp2[7] = 0; /* one in the second (query 7 is of class 1) */
    mela_episode_picture eps[2] = {{5, 5, 1, 3, 20, img[0], img[3], sl, ql, qp},
                                   {5, 5, 0, 3, 20, img[0], img[3], sl, ql, qp2}};
    char path[600];
    snprintf(path, sizeof path, "%s/episodes.png", dir);
    CHECK(mela_plot_episodes_png(path, "two episodes", 2, eps) == 0, "%s", mela_last_error());
    int w = 0, h = 0;
    long red = red_pixels(path, &w, &h);
    CHECK(w == 1104 && h == 272, "episode picture %dx%d, want 1104x272", w, h);
    CHECK(mela_picture_width(2, eps) == 1104 && mela_picture_height(2, eps) == 272, "layout functions");
    CHECK(red == 4 * 96, "%ld red pixels: want 4 frames of 96", red);
    /* bad input: refused, nothing written */
    eps[1].W = 6;
    snprintf(path, sizeof path, "%s/bad.png", dir);
    CHECK(mela_plot_episodes_png(path, NULL, 2, eps) == -1 && strstr(mela_last_error(), "same size") &&
              decode(path, &w, &h, &red, 0, 0, 0) == -1,
          "episodes of two sizes: %s", mela_last_error());
}

/* Three charts two to a row: 1600 x 1000. */
static void test_chart_grid(const char *dir)
{
    double y[3] = {1, 3, 2};
    mela_series s = {"y", NULL, y, 3};
    mela_chart ch[3] = {{"a", "x", 1, &s}, {NULL, NULL, 1, &s}, {"c", NULL, 1, &s}};
    char path[600];
    snprintf(path, sizeof path, "%s/grid.png", dir);
    int w = 0, h = 0;
    long n;
    CHECK(mela_plot_charts_png(path, 3, 2, ch) == 0 && decode(path, &w, &h, &n, 0, 0, 0) == 0 && w == 1600 &&
              h == 1000, "3 charts in 2 columns: %dx%d %s", w, h, mela_last_error());
    CHECK(mela_plot_charts_png(path, 1, 2, ch) == 0 && decode(path, &w, &h, &n, 0, 0, 0) == 0 && w == 800 &&
              h == 500, "1 chart: %dx%d", w, h);
    CHECK(mela_plot_charts_png(path, 0, 2, ch) == -1, "no chart refused");
}

/* A ProtoNets run on synthetic classes: its first 5 test episodes drawn,
 * one red frame for every query mela_run_test gets wrong on them. 8x8
 * images: frames of 20 pixels, 400 - 256 = 144 red pixels each; 5 support
 * images and 15 queries (5-way 1-shot, 3 queries): 15 cells a row,
 * 10 + 64 + 15*68 + 10 = 1104 wide; each episode 16 + 34 + 8 + 34 + 8 = 100
 * high: 40 + 5*100 = 540. */
static void test_run_episodes(const char *dir)
{
    synth_data d;
    synth_open(&d, 3);
    mela_run_config rc;
    synth_config(&rc, "protonet", 15);
    rc.train = (mela_task_spec){10, 1, 5, 0};
    mela_run *r = NULL;
    double acc = synth_train(&rc, &d, &r);
    CHECK(acc >= 0, "train: %s", mela_last_error());
    mela_eval_result res;
    char path[600];
    snprintf(path, sizeof path, "%s/run.png", dir);
    if (r && mela_run_test(r, 5, &res) == 0) {
        CHECK(mela_run_show_run(r, 5, path) == 0, "show: %s", mela_last_error());
        int w = 0, h = 0;
        long red = red_pixels(path, &w, &h);
        long wrong = lround(75 * (1 - res.acc));
        CHECK(w == 1104 && h == 540, "run picture %dx%d, want 1104x540", w, h);
        CHECK(red == 144 * wrong, "%ld red pixels, want %ld wrong queries of 75 (acc %.3f) x 144", red, wrong,
              res.acc);
        printf("5 test episodes drawn: %ld of 75 queries wrong\n", wrong);
        CHECK(mela_run_show_run(r, 101, path) == -1 && strstr(mela_last_error(), "1 to 100"), "101: %s",
              mela_last_error());
    }
    mela_run_close(r);
    synth_close(&d);
}

static int run(const char *cmd, char *out, size_t n)
{
    char full[2048];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    size_t k = p ? fread(out, 1, n - 1, p) : 0;
    out[k] = 0;
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `mela train` on sinusoids leaves adaptation.png (two tasks: 1600 x 500);
 * `mela eval --show 3` draws three (1600 x 1000). */
static void test_sinusoid_cli(const char *dir)
{
    const char *bin = getenv("MELA_BIN");
    if (!bin) {
        printf("MELA_BIN not set: command-line checks skipped\n");
        return;
    }
    char cmd[1500], out[8192], path[700];
    snprintf(cmd, sizeof cmd, "%s train --dataset sinusoid --iterations 20 --val-every 10 --test-episodes 20 "
             "--threads 1 --out-dir %s/sin", bin, dir);
    CHECK(run(cmd, out, sizeof out) == 0 && strstr(out, "adaptation.png"), "sinusoid train: %s", out);
    snprintf(path, sizeof path, "%s/sin/adaptation.png", dir);
    int w = 0, h = 0;
    long n;
    CHECK(decode(path, &w, &h, &n, 0, 0, 0) == 0 && w == 1600 && h == 500, "adaptation.png %dx%d", w, h);
    snprintf(cmd, sizeof cmd, "%s eval %s/sin/best.safetensors --episodes 10 --show 3", bin, dir);
    CHECK(run(cmd, out, sizeof out) == 0 && strstr(out, "3 test tasks drawn in"), "eval --show: %s", out);
    snprintf(path, sizeof path, "%s/sin/best.png", dir);
    CHECK(decode(path, &w, &h, &n, 0, 0, 0) == 0 && w == 1600 && h == 1000, "best.png %dx%d", w, h);
    snprintf(cmd, sizeof cmd, "%s eval %s/sin/best.safetensors --episodes 10 --show 0", bin, dir);
    CHECK(run(cmd, out, sizeof out) == 2 && strstr(out, "--show"), "--show 0: %s", out);
}

int main(void)
{
    char dir[] = "/tmp/mela-show-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    test_episode_picture(dir);
    test_chart_grid(dir);
    test_run_episodes(dir);
    test_sinusoid_cli(dir);
    check_rm_rf(dir);
    return check_finish();
}
