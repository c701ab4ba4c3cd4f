/* test_data_folder.c - datasets from the user's folders root/<class>/<image>
 * (PNG and JPEG, grey and colour, written here into a temp dir): sorting,
 * grey by luminance, RGB, inversion, resizing, episodes from a folder, and
 * the errors: empty class, a non-image file, a corrupt PNG, too few images
 * for K + Q, no classes; and hostile input: a tiny JPEG or PNG declaring a
 * huge image (refused fast, in little memory), truncated JPEGs, a FIFO, a
 * link to /dev/zero, an oversized file, dangling and looping class links. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
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

/* A JPEG of pix in memory (malloc'ed, *n bytes); progressive when asked. */
static unsigned char *jpeg_bytes(const uint8_t *pix, int h, int w, int quality, int progressive,
                                 unsigned long *n)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    unsigned char *out = NULL;
    *n = 0;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * w);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return out;
}

static int write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t k = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && k == n) ? 0 : -1;
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

/* Peak resident memory of this process, in MB. */
static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* A progressive JPEG of 16x16 pixels whose frame header then declares
 * 65280x23527 (1.5 gigapixels), in about 300 bytes: libjpeg would allocate
 * the coefficients of the declared size when decoding starts. */
static unsigned char *huge_jpeg(unsigned long *n)
{
    uint8_t pix[16 * 16];
    for (int i = 0; i < 256; i++)
        pix[i] = (uint8_t)(i * 5);
    unsigned char *j = jpeg_bytes(pix, 16, 16, 50, 1, n);
    for (unsigned long i = 0; j && i + 9 < *n; i++)
        if (j[i] == 0xff && j[i + 1] == 0xc2) { /* SOF2: length, precision, height, width */
            j[i + 5] = 23527 >> 8, j[i + 6] = 23527 & 0xff;
            j[i + 7] = 65280 >> 8, j[i + 8] = 65280 & 0xff;
            return j;
        }
    free(j);
    return NULL;
}

/* Run first, while the process is small, so that its peak memory is a fair
 * measure of what the refusal cost. */
static void test_huge_header(void)
{
    char p[1024], q[1024];
    unsigned long n;
    unsigned char *j = huge_jpeg(&n);
    CHECK(j != NULL && n < 1024, "hostile JPEG made (%lu bytes)", n);
    if (!j)
        return;
    path_of(p, sizeof p, "huge", NULL, NULL);
    mkdir(p, 0755);
    path_of(q, sizeof q, "huge", "a", NULL);
    mkdir(q, 0755);
    path_of(q, sizeof q, "huge", "a", "bomb.jpg");
    CHECK(write_bytes(q, j, n) == 0, "write %s", q);
    double rss0 = peak_rss_mb(), t0 = now();
    mela_dataset *ds = mela_folder_load(p, 28, 28, 0);
    double dt = now() - t0, grew = peak_rss_mb() - rss0;
    CHECK(!ds && strstr(mela_last_error(), "bomb.jpg") && strstr(mela_last_error(), "65280x23527") &&
              strstr(mela_last_error(), "64 megapixels"),
          "huge JPEG: %s", mela_last_error());
    CHECK(grew < 64, "refusing the huge JPEG grew the peak memory by %.0f MB", grew);
    /* decoding it would take minutes: 30 s leaves room for a loaded machine */
    CHECK(dt < 30, "refusing the huge JPEG took %.2f s", dt);
    mela_dataset_free(ds);
    float img[28 * 28];
    CHECK(mela_image_load(q, 1, 28, 28, 0, img) < 0 && strstr(mela_last_error(), "bomb.jpg"),
          "image load of the huge JPEG: %s", mela_last_error());
    uint8_t *pix = (uint8_t *)"x";
    int h = -1, w = -1;
    CHECK(mela_image_decode(j, n, "bytes", 3, &pix, &h, &w) < 0 && pix == NULL &&
              strstr(mela_last_error(), "bytes: JPEG declares 65280x23527"),
          "decode of the huge JPEG: %s", mela_last_error());
    free(j);

    /* A PNG declaring 20000x20000 (within libpng's own limit of 1,000,000 a
     * side): a valid header and a first row of pixels, then nothing. */
    path_of(q, sizeof q, "huge", "a", "bomb.jpg");
    unlink(q);
    path_of(q, sizeof q, "huge", "a", "bomb.png");
    FILE *f = fopen(q, "wb");
    png_structp ps = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(ps);
    png_init_io(ps, f);
    png_set_IHDR(ps, info, 20000, 20000, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(ps, info);
    static uint8_t row[20000 * 3];
    uint32_t x = 1;
    for (size_t i = 0; i < sizeof row; i++) { /* noise (xorshift): it fills an IDAT chunk */
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        row[i] = (uint8_t)x;
    }
    png_write_row(ps, row);
    fclose(f); /* the rest never written */
    png_destroy_write_struct(&ps, &info);
    rss0 = peak_rss_mb();
    t0 = now();
    ds = mela_folder_load(p, 28, 28, 0);
    dt = now() - t0;
    grew = peak_rss_mb() - rss0;
    CHECK(!ds && strstr(mela_last_error(), "bomb.png") && strstr(mela_last_error(), "20000x20000") &&
              strstr(mela_last_error(), "64 megapixels"),
          "huge PNG: %s", mela_last_error());
    CHECK(grew < 64 && dt < 30, "refusing the huge PNG: %.0f MB more, %.2f s", grew, dt);
    mela_dataset_free(ds);
}

/* A fresh folder <dir>/a/ for one file, whose path goes to file_out; the
 * folder's path to dir_out. */
static void one_image_folder(const char *dir, char *dir_out, size_t n, char *file_out, size_t m,
                             const char *name)
{
    path_of(dir_out, n, dir, NULL, NULL);
    check_rm_rf(dir_out);
    mkdir(dir_out, 0755);
    path_of(file_out, m, dir, "a", NULL);
    mkdir(file_out, 0755);
    path_of(file_out, m, dir, "a", name);
}

static void test_truncated_jpeg(void)
{
    char p[1024], q[1024];
    enum { S = 96 };
    uint8_t pix[S * S];
    for (int i = 0; i < S * S; i++) /* texture, so that the data is long */
        pix[i] = (uint8_t)((i * 37) ^ (i / S * 11));
    for (int progressive = 0; progressive < 2; progressive++) {
        unsigned long n;
        unsigned char *j = jpeg_bytes(pix, S, S, 90, progressive, &n);
        CHECK(j && n > 1200, "test JPEG of %lu bytes", n);
        if (!j)
            continue;
        one_image_folder("one", p, sizeof p, q, sizeof q, "x.jpg");
        /* The whole file decodes; its first half and its first 400 bytes do not. */
        CHECK(write_bytes(q, j, n) == 0, "write");
        mela_dataset *ds = mela_folder_load(p, 8, 8, 0);
        CHECK(ds != NULL, "whole JPEG (progressive %d): %s", progressive, mela_last_error());
        mela_dataset_free(ds);
        size_t cut[2] = {n / 2, 400};
        for (int k = 0; k < 2; k++) {
            CHECK(write_bytes(q, j, cut[k]) == 0, "write");
            ds = mela_folder_load(p, 8, 8, 0);
            CHECK(!ds && strstr(mela_last_error(), "one/a/x.jpg") &&
                      strstr(mela_last_error(), "Premature end of JPEG file"),
                  "JPEG cut to %zu of %lu bytes (progressive %d): %s", cut[k], n, progressive,
                  mela_last_error());
            mela_dataset_free(ds);
            uint8_t *out = NULL;
            int h, w;
            CHECK(mela_image_decode(j, cut[k], "cut", 1, &out, &h, &w) < 0 && !out,
                  "decode of a cut JPEG");
        }
        /* Corrupt data in the middle: a run of bytes that are no Huffman code. */
        memcpy(q + strlen(q) - 5, "y.jpg", 5);
        unsigned char *bad = malloc(n);
        memcpy(bad, j, n);
        memset(bad + n / 2, 0xff, 64);
        uint8_t *out = NULL;
        int h, w;
        CHECK(mela_image_decode(bad, n, "corrupt", 1, &out, &h, &w) < 0 && !out &&
                  strstr(mela_last_error(), "corrupt: bad JPEG"),
              "corrupt JPEG data (progressive %d): %s", progressive, mela_last_error());
        free(out);
        free(bad);
        free(j);
    }
}

/* A valid progressive RGB JPEG of 1137 scans: per component one DC scan,
 * then each AC coefficient alone in six successive-approximation scans. */
static unsigned char *many_scans_jpeg(unsigned long *n)
{
    enum { SCANS = 3 * (1 + 63 * 6) };
    static jpeg_scan_info scans[SCANS];
    int k = 0;
    for (int c = 0; c < 3; c++) {
        scans[k++] = (jpeg_scan_info){1, {c}, 0, 0, 0, 0};
        for (int f = 1; f <= 63; f++) {
            scans[k++] = (jpeg_scan_info){1, {c}, f, f, 0, 5};
            for (int al = 4; al >= 0; al--)
                scans[k++] = (jpeg_scan_info){1, {c}, f, f, al + 1, al};
        }
    }
    struct jpeg_compress_struct cc;
    struct jpeg_error_mgr err;
    unsigned char *out = NULL;
    *n = 0;
    cc.err = jpeg_std_error(&err);
    jpeg_create_compress(&cc);
    jpeg_mem_dest(&cc, &out, n);
    cc.image_width = cc.image_height = 8;
    cc.input_components = 3;
    cc.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cc);
    cc.scan_info = scans;
    cc.num_scans = SCANS;
    jpeg_start_compress(&cc, TRUE);
    uint8_t row[8 * 3];
    while (cc.next_scanline < 8) {
        for (int i = 0; i < 24; i++)
            row[i] = (uint8_t)(i * 10 + cc.next_scanline * 3);
        JSAMPROW r = row;
        jpeg_write_scanlines(&cc, &r, 1);
    }
    jpeg_finish_compress(&cc);
    jpeg_destroy_compress(&cc);
    return out;
}

static void test_many_scans(void)
{
    unsigned long n;
    unsigned char *j = many_scans_jpeg(&n);
    uint8_t *pix = NULL;
    int h, w;
    CHECK(j && mela_image_decode(j, n, "scans", 3, &pix, &h, &w) < 0 && !pix &&
              strstr(mela_last_error(), "scans: bad JPEG (libjpeg: more than 1000 scans)"),
          "JPEG of 1137 scans: %s", mela_last_error());
    free(pix);
    free(j);
}

/* Fails the test (SIGALRM) instead of hanging it when a read blocks. */
static void arm(void) { alarm(20); }
static void disarm(void) { alarm(0); }

static void test_not_files(void)
{
    char p[1024], q[1024];
    float img[16];
    /* A FIFO with no writer: opening it to read would wait forever. */
    one_image_folder("one", p, sizeof p, q, sizeof q, "pipe.png");
    CHECK(mkfifo(q, 0644) == 0, "mkfifo: %s", strerror(errno));
    arm();
    mela_dataset *ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "pipe.png") && strstr(mela_last_error(), "FIFO"),
          "FIFO as an image: %s", mela_last_error());
    CHECK(mela_image_load(q, 1, 4, 4, 0, img) < 0 && strstr(mela_last_error(), "FIFO"),
          "FIFO as a query image: %s", mela_last_error());
    int h, w, colour;
    CHECK(mela_image_info(q, &h, &w, &colour) < 0 && strstr(mela_last_error(), "pipe.png"),
          "FIFO info: %s", mela_last_error());
    disarm();
    /* A link to /dev/zero: endless zeros, never read. */
    one_image_folder("one", p, sizeof p, q, sizeof q, "zero.png");
    CHECK(symlink("/dev/zero", q) == 0, "symlink: %s", strerror(errno));
    arm();
    ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "zero.png") &&
              strstr(mela_last_error(), "character device"),
          "/dev/zero as an image: %s", mela_last_error());
    disarm();
    /* A directory where an image is expected. */
    one_image_folder("one", p, sizeof p, q, sizeof q, "dir.png");
    mkdir(q, 0755);
    ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "dir.png: it is a directory"),
          "directory as an image: %s", mela_last_error());
    /* A file over MELA_IMAGE_MAX_BYTES (sparse: nothing is written, and it
     * must not be read either). */
    one_image_folder("one", p, sizeof p, q, sizeof q, "big.png");
    FILE *f = fopen(q, "wb");
    fclose(f);
    CHECK(truncate(q, (off_t)MELA_IMAGE_MAX_BYTES + 1) == 0, "truncate: %s", strerror(errno));
    double rss0 = peak_rss_mb();
    ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "big.png") && strstr(mela_last_error(), "256 MB"),
          "oversized image file: %s", mela_last_error());
    CHECK(peak_rss_mb() - rss0 < 64, "the oversized file was read");
    one_image_folder("one", p, sizeof p, q, sizeof q, "x.png");
    check_rm_rf(p);
}

static void test_class_links(void)
{
    char p[1024], q[1024], t[1024];
    uint8_t grey[16] = {0};
    /* links/a is fine on its own; beside it a dangling, then a looping link. */
    one_image_folder("links", p, sizeof p, q, sizeof q, "x.png");
    write_png(q, grey, 4, 4, 0);
    mela_dataset *ds = mela_folder_load(p, 4, 4, 0);
    CHECK(ds && ds->nclasses == 1, "one class: %s", mela_last_error());
    mela_dataset_free(ds);
    path_of(q, sizeof q, "links", "ghost", NULL);
    path_of(t, sizeof t, "no-such-folder", NULL, NULL);
    CHECK(symlink(t, q) == 0, "symlink");
    ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "class ghost") && strstr(mela_last_error(), "dangling"),
          "dangling class link: %s", mela_last_error());
    unlink(q);
    path_of(q, sizeof q, "links", "loop", NULL);
    CHECK(symlink(q, q) == 0, "symlink");
    ds = mela_folder_load(p, 4, 4, 0);
    CHECK(!ds && strstr(mela_last_error(), "class loop") && strstr(mela_last_error(), "loops"),
          "looping class link: %s", mela_last_error());
    unlink(q);
    /* A link to a real class folder is a class. */
    path_of(t, sizeof t, "links", "a", NULL);
    path_of(q, sizeof q, "links", "b", NULL);
    CHECK(symlink(t, q) == 0, "symlink");
    ds = mela_folder_load(p, 4, 4, 0);
    CHECK(ds && ds->nclasses == 2 && !strcmp(ds->classes[1].name, "b"), "linked class: %s",
          mela_last_error());
    mela_dataset_free(ds);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/mela-test-folder-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_huge_header();
    make_good();
    test_good();
    test_bad();
    test_truncated_jpeg();
    test_many_scans();
    test_not_files();
    test_class_links();
    check_rm_rf(root);
    return check_finish();
}
