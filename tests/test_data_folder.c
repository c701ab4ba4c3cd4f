/* test_data_folder.c - datasets from the user's folders root/<class>/<image>
 * (PNG and JPEG, grey and colour, written here into a temp dir): sorting,
 * grey by luminance, RGB, inversion, resizing, episodes from a folder, and
 * the errors: empty class, a non-image file, a corrupt PNG, too few images
 * for K + Q, no classes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "check.h"
#include "mela.h"
#include "mela_data.h"

static int write_png(const char *path, const uint8_t *pix, int h, int w, int colour)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = colour ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    return png_image_write_to_file(&img, path, 0, pix, 0, NULL) ? 0 : -1;
}

static int write_jpeg(const char *path, const uint8_t *pix, int h, int w, int colour)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = colour ? 3 : 1;
    c.in_color_space = colour ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * w * c.input_components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
    return 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static char root[256];

static void path_of(char *out, size_t n, const char *a, const char *b, const char *c)
{
    if (c)
        snprintf(out, n, "%s/%s/%s/%s", root, a, b, c);
    else if (b)
        snprintf(out, n, "%s/%s/%s", root, a, b);
    else
        snprintf(out, n, "%s/%s", root, a);
}

/* good/<class>/: "cats" 4 colour PNGs 20x10, "dogs" 3 grey JPEGs 8x8 plus a
 * grey PNG, a file directly in good/ (ignored) and a dot file (skipped). */
static void make_good(void)
{
    char p[1024];
    path_of(p, sizeof p, "good", NULL, NULL);
    mkdir(p, 0755);
    path_of(p, sizeof p, "good", "cats", NULL);
    mkdir(p, 0755);
    path_of(p, sizeof p, "good", "dogs", NULL);
    mkdir(p, 0755);
    uint8_t rgb[10 * 20 * 3], grey[8 * 8];
    for (int i = 0; i < 4; i++) {
        for (int y = 0; y < 10; y++)
            for (int x = 0; x < 20; x++) {
                uint8_t *q = rgb + 3 * (y * 20 + x);
                q[0] = 200, q[1] = (uint8_t)(50 + 10 * i), q[2] = 0; /* orange-ish, flat */
            }
        char name[32];
        snprintf(name, sizeof name, "c%d.PNG", i);
        path_of(p, sizeof p, "good", "cats", name);
        CHECK(write_png(p, rgb, 10, 20, 1) == 0, "write png");
    }
    for (int i = 0; i < 3; i++) {
        memset(grey, 64 * i, sizeof grey);
        char name[32];
        snprintf(name, sizeof name, "d%d.jpg", i);
        path_of(p, sizeof p, "good", "dogs", name);
        CHECK(write_jpeg(p, grey, 8, 8, 0) == 0, "write jpeg");
    }
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            grey[y * 8 + x] = x < 4 ? 0 : 255;
    path_of(p, sizeof p, "good", "dogs", "d9.png");
    write_png(p, grey, 8, 8, 0);
    path_of(p, sizeof p, "good", "README.txt", NULL);
    write_text(p, "not a class");
    path_of(p, sizeof p, "good", "dogs", ".DS_Store");
    write_text(p, "junk");
}

static void test_good(void)
{
    char p[1024];
    path_of(p, sizeof p, "good", NULL, NULL);
    mela_dataset *ds = mela_folder_load(p, 4, 4, 0);
    CHECK(ds != NULL, "folder: %s", mela_last_error());
    if (!ds)
        return;
    CHECK(ds->nclasses == 2 && ds->nimages == 8 && ds->C == 1, "counts %d %d", ds->nclasses,
          ds->nimages);
    CHECK(!strcmp(ds->classes[0].name, "cats") && ds->classes[0].count == 4, "cats");
    CHECK(!strcmp(ds->classes[1].name, "dogs") && ds->classes[1].count == 4, "dogs");
    /* Luminance of (200, 50, 0): (299*200 + 587*50 + 500) / 1000 = 89. */
    const uint8_t *c0 = mela_dataset_image(ds, 0, 0);
    CHECK(c0[0] == 89 && c0[15] == 89, "luminance %d", c0[0]);
    /* JPEG grey 128 stays near 128 (quality 100). */
    const uint8_t *d2 = mela_dataset_image(ds, 1, 2);
    CHECK(d2[5] >= 126 && d2[5] <= 130, "jpeg grey %d", d2[5]);
    /* d9.png: black left half, white right half, 8 -> 4. */
    const uint8_t *d9 = mela_dataset_image(ds, 1, 3);
    CHECK(d9[0] == 0 && d9[1] == 0 && d9[2] == 255 && d9[3] == 255, "half %d %d", d9[1], d9[2]);
    mela_dataset_free(ds);

    ds = mela_folder_load(p, 4, 4, MELA_FOLDER_INVERT);
    CHECK(ds && mela_dataset_image(ds, 1, 3)[0] == 255 && mela_dataset_image(ds, 1, 3)[3] == 0,
          "invert");
    mela_dataset_free(ds);

    /* RGB: planes R, G, B; 5x3 resizes (and enlarges) too. */
    ds = mela_folder_load(p, 5, 3, MELA_FOLDER_RGB);
    CHECK(ds && ds->C == 3 && ds->H == 5 && ds->W == 3, "rgb shape");
    if (ds) {
        const uint8_t *c1 = mela_dataset_image(ds, 0, 1);
        CHECK(c1[0] == 200 && c1[15] == 60 && c1[30] == 0, "rgb planes %d %d %d", c1[0], c1[15],
              c1[30]);
        const uint8_t *g = mela_dataset_image(ds, 1, 3); /* grey PNG as RGB */
        CHECK(g[0] == 0 && g[15] == 0 && g[2] == 255 && g[32] == 255, "grey as rgb");
        /* Episodes of a folder dataset, 3 channels. */
        mela_split *sp = mela_split_all(ds, "folder", NULL, 0);
        mela_sampler *s = sp ? mela_sampler_new(ds, sp, 2, 1, 2, 0) : NULL;
        CHECK(s != NULL, "folder sampler: %s", mela_last_error());
        if (s) {
            const mela_episode *e = mela_sampler_episode(s, 3, 0);
            CHECK(e->C == 3 && e->N == 2, "episode shape");
            float ref[45];
            mela_split_image(ds, sp, e->split_class[1], e->query_index[3], ref);
            CHECK(!memcmp(ref, e->x_query + 3 * 45, sizeof ref), "folder episode pixels");
        }
        /* Rotations need square images. */
        mela_split *rot = mela_split_all(ds, "r", (const int[]){0, 1}, 2);
        CHECK(!rot && strstr(mela_last_error(), "square"), "rot non-square");
        /* K + Q too large for a class: named with the numbers. */
        mela_sampler *bad = sp ? mela_sampler_new(ds, sp, 2, 2, 3, 0) : NULL;
        CHECK(!bad && strstr(mela_last_error(), "class cats (rot000) has 4 examples, fewer than "
                                                "K + Q = 2 + 3 = 5"),
              "few: %s", mela_last_error());
        bad = sp ? mela_sampler_new(ds, sp, 3, 1, 1, 0) : NULL;
        CHECK(!bad && strstr(mela_last_error(), "2 classes, fewer than N = 3"), "few classes: %s",
              mela_last_error());
        mela_sampler_free(s);
        mela_split_free(sp);
    }
    mela_dataset_free(ds);
}

static void test_bad(void)
{
    char p[1024], q[1024];
    uint8_t grey[16] = {0};

    /* An empty class. */
    path_of(p, sizeof p, "empty", NULL, NULL);
    mkdir(p, 0755);
    path_of(q, sizeof q, "empty", "a", NULL);
    mkdir(q, 0755);
    path_of(q, sizeof q, "empty", "a", "x.png");
    write_png(q, grey, 4, 4, 0);
    path_of(q, sizeof q, "empty", "b", NULL);
    mkdir(q, 0755);
    mela_dataset *ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "class b") && strstr(mela_last_error(), "empty"),
          "empty class: %s", mela_last_error());

    /* A non-image file in a class folder. */
    path_of(p, sizeof p, "other", NULL, NULL);
    mkdir(p, 0755);
    path_of(q, sizeof q, "other", "a", NULL);
    mkdir(q, 0755);
    path_of(q, sizeof q, "other", "a", "x.png");
    write_png(q, grey, 4, 4, 0);
    path_of(q, sizeof q, "other", "a", "notes.txt");
    write_text(q, "hello");
    ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "notes.txt") && strstr(mela_last_error(), "class a"),
          "non-image: %s", mela_last_error());

    /* A corrupt PNG: valid header, damaged data. */
    path_of(p, sizeof p, "corrupt", NULL, NULL);
    mkdir(p, 0755);
    path_of(q, sizeof q, "corrupt", "a", NULL);
    mkdir(q, 0755);
    path_of(q, sizeof q, "corrupt", "a", "x.png");
    uint8_t big[64 * 64];
    for (int i = 0; i < 64 * 64; i++)
        big[i] = (uint8_t)(i * 7);
    write_png(q, big, 64, 64, 0);
    FILE *f = fopen(q, "r+b");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    for (long i = 45; i < n - 20; i += 3) {
        fseek(f, i, SEEK_SET);
        fputc(0x55, f);
    }
    fclose(f);
    ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "corrupt/a/x.png") && strstr(mela_last_error(), "PNG"),
          "corrupt png: %s", mela_last_error());
    /* A truncated JPEG. */
    path_of(q, sizeof q, "corrupt", "a", "x.png");
    unlink(q);
    path_of(q, sizeof q, "corrupt", "a", "y.jpeg");
    write_jpeg(q, big, 64, 64, 0);
    CHECK(truncate(q, 10) == 0, "truncate jpeg");
    ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "y.jpeg") && strstr(mela_last_error(), "JPEG"),
          "truncated jpeg: %s", mela_last_error());
    mela_dataset_free(ds);

    /* No classes; missing root; bad size. */
    path_of(p, sizeof p, "none", NULL, NULL);
    mkdir(p, 0755);
    CHECK(!mela_folder_load(p, 4, 4, 0) && strstr(mela_last_error(), "no class folders"),
          "no classes: %s", mela_last_error());
    path_of(p, sizeof p, "missing", NULL, NULL);
    CHECK(!mela_folder_load(p, 4, 4, 0) && strstr(mela_last_error(), "missing"), "missing: %s",
          mela_last_error());
    CHECK(!mela_folder_load(p, 0, 4, 0), "bad size");
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/mela-test-folder-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    make_good();
    test_good();
    test_bad();
    check_rm_rf(root);
    return check_finish();
}
