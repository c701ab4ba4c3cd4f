/* image.c - PNG and JPEG decoding from memory (libpng's simplified API,
 * libjpeg) to 8-bit grey or RGB, and the exact area-filter resize. No file
 * I/O here: callers hand in bytes from a zip entry or a file. The bytes are
 * anyone's: the size a header declares is checked before anything of that
 * size is allocated, and a damaged or truncated image is an error, never
 * an image padded with grey. */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE and size_t */
#include <jerror.h>
#include <png.h>

#include "data/data_internal.h"
#include "kernels/kernels.h"

/* The size check of both decoders, on the dimensions a header declares and
 * before anything of the image's size is allocated. */
static int check_size(const char *what, const char *format, uint32_t w, uint32_t h)
{
    uint64_t n = (uint64_t)w * h;
    if (w == 0 || h == 0)
        return mela_set_error("%s: %s declares an empty image (%ux%u)", what, format, w, h);
    if (n > MELA_IMAGE_MAX_PIXELS)
        return mela_set_error("%s: %s declares %ux%u = %llu pixels, more than the limit of %u "
                              "(%u megapixels)", what, format, w, h, (unsigned long long)n,
                              (unsigned)MELA_IMAGE_MAX_PIXELS, (unsigned)(MELA_IMAGE_MAX_PIXELS >> 20));
    return 0;
}

/* --------------------------------------------------------------------- PNG */

static int decode_png(const void *data, size_t size, const char *what, int channels,
                      uint8_t **pix, int *h, int *w)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    /* Reads the chunks up to the first IDAT (IHDR is checked by libpng, whose
     * own limit is 1,000,000 pixels a side): nothing of the image's size is
     * allocated before the check below. */
    if (!png_image_begin_read_from_memory(&img, data, size)) {
        mela_set_error("%s: bad PNG (libpng: %s)", what, img.message);
        png_image_free(&img);
        return -1;
    }
    int colour = (img.format & PNG_FORMAT_FLAG_COLOR) != 0;
    img.format = (channels == 3 || colour) ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    int got = (img.format == PNG_FORMAT_RGB) ? 3 : 1;
    if (check_size(what, "PNG", img.width, img.height)) {
        png_image_free(&img);
        return -1;
    }
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
    if (!buf) {
        png_image_free(&img);
        return mela_set_error("%s: out of memory", what);
    }
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&img, &white, buf, 0, NULL)) {
        mela_set_error("%s: bad PNG data (libpng: %s)", what, img.message);
        png_image_free(&img);
        free(buf);
        return -1;
    }
    int W = (int)img.width, H = (int)img.height;
    png_image_free(&img);
    if (got == 3 && channels == 1) { /* Rec. 601 luminance, in place */
        for (size_t i = 0; i < (size_t)W * H; i++) {
            const uint8_t *q = buf + 3 * i;
            buf[i] = (uint8_t)((299u * q[0] + 587u * q[1] + 114u * q[2] + 500u) / 1000u);
        }
    } else if (got == 1 && channels == 3) { /* not reached: grey asked as RGB above */
        free(buf);
        return mela_set_error("%s: internal channel mismatch", what);
    }
    *pix = buf;
    *h = H;
    *w = W;
    return 0;
}

/* -------------------------------------------------------------------- JPEG */

/* More scans than any encoder writes (a progressive JPEG has about ten):
 * thousands of tiny scans would each pass over the whole image. */
#define JPEG_MAX_SCANS 1000
/* libjpeg's own memory (a progressive image's coefficients: 2 bytes a
 * sample, 64 megapixels of RGB take 384 MB); beyond it libjpeg fails. */
#define JPEG_MAX_MEMORY (512L << 20)

typedef struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_err_exit(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* A warning means pixels were made up (premature end of data, a bad Huffman
 * code: libjpeg pads with grey and goes on), so it is an error here; only an
 * unknown JFIF revision, which changes no pixel, is let through. Trace
 * messages (level > 0) are ignored: the library never prints. */
static void jpeg_err_emit(j_common_ptr cinfo, int level)
{
    if (level < 0 && cinfo->err->msg_code != JWRN_JFIF_MAJOR)
        jpeg_err_exit(cinfo);
}

static void jpeg_scan_limit(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_err *e = (jpeg_err *)cinfo->err;
        snprintf(e->msg, sizeof e->msg, "more than %d scans", JPEG_MAX_SCANS);
        longjmp(e->jump, 1);
    }
}

static int decode_jpeg(const void *data, size_t size, const char *what, int channels,
                       uint8_t **pix, int *h, int *w)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_scan_limit};
    jpeg_err err;
    uint8_t *volatile buf = NULL;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_err_exit;
    err.pub.emit_message = jpeg_err_emit;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(buf);
        return mela_set_error("%s: bad JPEG (libjpeg: %s)", what, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, (unsigned char *)(uintptr_t)data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    /* Before jpeg_start_decompress, which allocates for the whole image (all
     * of a progressive one's coefficients). */
    if (check_size(what, "JPEG", cinfo.image_width, cinfo.image_height)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * cinfo.output_components;
    if (cinfo.output_components != channels) {
        jpeg_destroy_decompress(&cinfo);
        return mela_set_error("%s: JPEG of unsupported layout (%d components)", what,
                              cinfo.output_components);
    }
    buf = malloc(stride * cinfo.output_height);
    if (!buf) {
        jpeg_destroy_decompress(&cinfo);
        return mela_set_error("%s: out of memory", what);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = buf + stride * cinfo.output_scanline;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1)
            break; /* no progress: reported below, never a loop */
    }
    if (cinfo.output_scanline < cinfo.output_height) {
        mela_set_error("%s: bad JPEG: %u of %u rows decoded", what, cinfo.output_scanline,
                       cinfo.output_height);
        jpeg_destroy_decompress(&cinfo);
        free(buf);
        return -1;
    }
    jpeg_finish_decompress(&cinfo);
    *h = (int)cinfo.output_height;
    *w = (int)cinfo.output_width;
    jpeg_destroy_decompress(&cinfo);
    *pix = buf;
    return 0;
}

int mela_image_decode(const void *data, size_t size, const char *what, int channels, uint8_t **pix,
                      int *h, int *w)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t *p = data;
    *pix = NULL;
    if (channels != 1 && channels != 3)
        return mela_set_error("%s: channels must be 1 or 3, not %d", what, channels);
    if (size >= 8 && memcmp(p, png_sig, 8) == 0)
        return decode_png(data, size, what, channels, pix, h, w);
    if (size >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return decode_jpeg(data, size, what, channels, pix, h, w);
    return mela_set_error("%s: not a PNG or JPEG image (%zu bytes, no PNG/JPEG signature)", what,
                          size);
}

/* ------------------------------------------------------------------ resize */

/* The weights of one axis. In units where an input pixel is n_out long and an
 * output pixel n_in long, output o covers [o*n_in, (o+1)*n_in); its overlap
 * with input i is an integer, and the overlaps of o sum to n_in. */
typedef struct axis_w {
    int *first; /* [n_out] first input index */
    int *count; /* [n_out] number of inputs */
    int *w;     /* [n_out * span] weights */
    int span;
} axis_w;

static int axis_weights(axis_w *a, int n_out, int n_in)
{
    a->span = n_in / n_out + 2;
    a->first = malloc(sizeof(int) * (size_t)n_out);
    a->count = malloc(sizeof(int) * (size_t)n_out);
    a->w = malloc(sizeof(int) * (size_t)n_out * a->span);
    if (!a->first || !a->count || !a->w)
        return -1;
    for (int o = 0; o < n_out; o++) {
        long lo = (long)o * n_in, hi = (long)(o + 1) * n_in;
        int i0 = (int)(lo / n_out), i1 = (int)((hi - 1) / n_out);
        a->first[o] = i0;
        a->count[o] = i1 - i0 + 1;
        for (int i = i0; i <= i1; i++) {
            long s = (long)i * n_out, e = s + n_out;
            long ov = (e < hi ? e : hi) - (s > lo ? s : lo);
            a->w[(size_t)o * a->span + (i - i0)] = (int)ov;
        }
    }
    return 0;
}

static void axis_free(axis_w *a)
{
    free(a->first);
    free(a->count);
    free(a->w);
}

int mela_resize_area(uint8_t *out, int H, int W, const uint8_t *in, int h, int w)
{
    if (H == h && W == w) {
        memcpy(out, in, (size_t)H * W);
        return 0;
    }
    axis_w ax = {0}, ay = {0};
    uint32_t *tmp = malloc(sizeof(uint32_t) * (size_t)h * W);
    int rc = -1;
    if (!tmp || axis_weights(&ax, W, w) || axis_weights(&ay, H, h)) {
        mela_set_error("resize: out of memory");
        goto done;
    }
    /* Horizontal: tmp[y][ox] = sum_i wx * in[y][i], at most 255 * w. */
    for (int y = 0; y < h; y++)
        for (int o = 0; o < W; o++) {
            const int *wt = ax.w + (size_t)o * ax.span;
            const uint8_t *src = in + (size_t)y * w + ax.first[o];
            uint32_t s = 0;
            for (int k = 0; k < ax.count[o]; k++)
                s += (uint32_t)wt[k] * src[k];
            tmp[(size_t)y * W + o] = s;
        }
    /* Vertical, then divide by the total weight w*h with rounding. */
    uint64_t total = (uint64_t)w * h;
    for (int o = 0; o < H; o++) {
        const int *wt = ay.w + (size_t)o * ay.span;
        for (int x = 0; x < W; x++) {
            uint64_t s = 0;
            for (int k = 0; k < ay.count[o]; k++)
                s += (uint64_t)wt[k] * tmp[(size_t)(ay.first[o] + k) * W + x];
            out[(size_t)o * W + x] = (uint8_t)((2 * s + total) / (2 * total));
        }
    }
    rc = 0;
done:
    free(tmp);
    axis_free(&ax);
    axis_free(&ay);
    return rc;
}

void mela_resize_nearest(uint8_t *out, int H, int W, const uint8_t *in, int h, int w)
{
    for (int y = 0; y < H; y++) {
        const uint8_t *row = in + (size_t)mk_nearest_src(y, h, H) * w;
        for (int x = 0; x < W; x++)
            out[(size_t)y * W + x] = row[mk_nearest_src(x, w, W)];
    }
}
