/* plot.c - line charts as PNG, so a run can be looked at rather than read.
 *
 * Everything is drawn here on an RGB canvas: axes, ticks on 1-2-5 "nice"
 * values, grid, lines (2 px, Bresenham), a legend and text in a 5x7 bitmap
 * font defined below. libpng only encodes the result. It is deliberately
 * plain - no anti-aliasing, no log axes, fixed size - because its job is a
 * quick honest look at a loss or accuracy curve, not publication figures. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sys.h"
#include "io/json.h"
#include "mela_io.h"

#define PLOT_W 800
#define PLOT_H 500

/* ------------------------------------------------------------------- font */

/* Printable ASCII 32..126, 7 rows of 5 pixels each; bit 4 is the leftmost
 * column. Glyphs are 5x7 in a 6x9 cell; the descenders g, p, q, y are drawn
 * two rows lower (DROPS). */
#define DROPS "gpqy"
static const unsigned char font5x7[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* space */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}, /* ! */
    {0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00}, /* " */
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}, /* # */
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04}, /* $ */
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}, /* % */
    {0x08, 0x14, 0x14, 0x08, 0x15, 0x12, 0x0D}, /* & */
    {0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ' */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, /* ( */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, /* ) */
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00}, /* * */
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}, /* + */
    {0x00, 0x00, 0x00, 0x00, 0x06, 0x04, 0x08}, /* , */
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}, /* - */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}, /* . */
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}, /* / */
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, /* 0 */
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}, /* 1 */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, /* 2 */
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}, /* 3 */
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, /* 4 */
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}, /* 5 */
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, /* 6 */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}, /* 7 */
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, /* 8 */
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}, /* 9 */
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}, /* : */
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08}, /* ; */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}, /* < */
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}, /* = */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, /* > */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}, /* ? */
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E}, /* @ */
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, /* A */
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}, /* B */
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}, /* C */
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}, /* D */
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}, /* E */
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}, /* F */
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}, /* G */
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, /* H */
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, /* I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}, /* J */
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, /* K */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}, /* L */
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}, /* M */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}, /* N */
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, /* O */
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}, /* P */
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}, /* Q */
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}, /* R */
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}, /* S */
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* T */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, /* U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}, /* V */
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}, /* W */
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}, /* X */
    {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}, /* Y */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}, /* Z */
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}, /* [ */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00}, /* \ */
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}, /* ] */
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00}, /* ^ */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}, /* _ */
    {0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ` */
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}, /* a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}, /* b */
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}, /* c */
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}, /* d */
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}, /* e */
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}, /* f */
    {0x0F, 0x11, 0x11, 0x0F, 0x01, 0x11, 0x0E}, /* g */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, /* h */
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}, /* i */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}, /* j */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}, /* k */
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, /* l */
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}, /* m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, /* n */
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}, /* o */
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}, /* p */
    {0x0F, 0x11, 0x11, 0x0F, 0x01, 0x01, 0x01}, /* q */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, /* r */
    {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}, /* s */
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}, /* t */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}, /* u */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}, /* v */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}, /* w */
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}, /* x */
    {0x11, 0x11, 0x11, 0x0F, 0x01, 0x11, 0x0E}, /* y */
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}, /* z */
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02}, /* { */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* | */
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08}, /* } */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00}, /* ~ */
};

/* ----------------------------------------------------------------- canvas */

typedef struct rgb {
    unsigned char r, g, b;
} rgb;

typedef struct canvas {
    unsigned char *px; /* h rows of w RGB pixels */
    int w, h;
    int x0, y0, x1, y1; /* the clip rectangle, inclusive */
} canvas;

static const rgb WHITE = {255, 255, 255}, BLACK = {0, 0, 0}, GRID = {225, 225, 225},
                 FRAME = {150, 150, 150};

/* Colours of the series in turn (a common qualitative palette). */
static const rgb PALETTE[10] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
};

static void clip_all(canvas *c)
{
    c->x0 = 0, c->y0 = 0, c->x1 = c->w - 1, c->y1 = c->h - 1;
}

static void put(canvas *c, int x, int y, rgb col)
{
    if (x < c->x0 || x > c->x1 || y < c->y0 || y > c->y1)
        return;
    unsigned char *p = c->px + 3 * ((size_t)y * c->w + (size_t)x);
    p[0] = col.r, p[1] = col.g, p[2] = col.b;
}

static void fill(canvas *c, int x, int y, int w, int h, rgb col)
{
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++)
            put(c, i, j, col);
}

/* A line of the given width (1 or more) from (xa, ya) to (xb, yb). */
static void line(canvas *c, int xa, int ya, int xb, int yb, int width, rgb col)
{
    int dx = abs(xb - xa), dy = -abs(yb - ya);
    int sx = xa < xb ? 1 : -1, sy = ya < yb ? 1 : -1;
    int err = dx + dy;
    int lo = -(width - 1) / 2;
    for (;;) {
        fill(c, xa + lo, ya + lo, width, width, col);
        if (xa == xb && ya == yb)
            break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            xa += sx;
        }
        if (e2 <= dx) {
            err += dx;
            ya += sy;
        }
    }
}

/* The glyph index of the next character of s (printable ASCII, else '?');
 * advances *s over one UTF-8 sequence, or one byte when invalid. */
static int next_glyph(const char **s)
{
    uint32_t cp;
    const unsigned char *u = (const unsigned char *)*s;
    int k = io_utf8_next(u, strlen(*s), &cp);
    *s += k ? k : 1;
    if (!k || cp < 32 || cp > 126)
        cp = '?';
    return (int)cp - 32;
}

static int text_width(const char *s, int scale)
{
    int n = 0;
    while (*s) {
        next_glyph(&s);
        n++;
    }
    return n ? (6 * n - 1) * scale : 0;
}

/* Text with its top-left corner at (x, y); each font pixel scale x scale. */
static void text(canvas *c, int x, int y, const char *s, int scale, rgb col)
{
    while (*s) {
        int gi = next_glyph(&s);
        const unsigned char *g = font5x7[gi];
        int top = y + (strchr(DROPS, gi + 32) ? 2 * scale : 0);
        for (int row = 0; row < 7; row++)
            for (int k = 0; k < 5; k++)
                if (g[row] & (0x10 >> k))
                    fill(c, x + k * scale, top + row * scale, scale, scale, col);
        x += 6 * scale;
    }
}

/* ------------------------------------------------------------------- axes */

/* A range [lo, hi] of an axis and its ticks. Arithmetic is done on halves
 * (hi/2 - lo/2) so that even +-DBL_MAX never overflows. */
typedef struct axis {
    double lo, hi, step, first;
    int nticks;
} axis;

/* 1, 2 or 5 times a power of ten, near raw. */
static double nice_step(double raw)
{
    double p = pow(10, floor(log10(raw)));
    double f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* Widens an empty range, pads it when asked and places about 6 ticks. */
static void axis_make(axis *a, double lo, double hi, int pad)
{
    if (!(lo <= hi)) /* no finite data */
        lo = 0, hi = 1;
    if (lo == hi) {
        double d = fabs(lo) > 1 ? fabs(lo) * 0.1 : 1;
        lo -= d, hi += d;
    }
    if (pad) {
        double m = (hi / 2 - lo / 2) * 0.1;
        lo = fmax(lo - m, -DBL_MAX);
        hi = fmin(hi + m, DBL_MAX);
    }
    double half = hi / 2 - lo / 2;
    double step = nice_step(half / 3);
    if (!(step > 0) || !isfinite(step))
        step = half;
    double first = ceil(lo / step) * step;
    if (pad) { /* round the range out to whole ticks when it stays finite */
        double flo = floor(lo / step) * step, fhi = ceil(hi / step) * step;
        if (isfinite(flo) && isfinite(fhi))
            lo = flo, hi = fhi, first = flo;
    }
    a->lo = lo, a->hi = hi, a->step = step, a->first = first;
    a->nticks = 0;
    for (int k = 0; k < 40; k++) {
        double v = 2 * (first / 2 + k * (step / 2)); /* k * step alone may overflow */
        if (!isfinite(v) || v / 2 - hi / 2 > step * 1e-9)
            break;
        a->nticks = k + 1;
    }
}

/* v's position in [0, 1] along the axis (outside for values outside). */
static double axis_frac(const axis *a, double v)
{
    return (v / 2 - a->lo / 2) / (a->hi / 2 - a->lo / 2);
}

static double axis_tick(const axis *a, int k)
{
    double v = 2 * (a->first / 2 + k * (a->step / 2));
    return fabs(v) < a->step * 1e-9 ? 0.0 : v; /* no "-0" or 1e-17 */
}

static void tick_label(const axis *a, double v, char *buf, size_t n)
{
    double big = fmax(fabs(a->lo), fabs(a->hi));
    if (big < 1e6 && a->step >= 1e-4) {
        int dec = (int)fmin(4, fmax(0, -floor(log10(a->step) + 1e-9))); /* step >= 1e-4 */
        snprintf(buf, n, "%.*f", dec, v);
    } else {
        int p = (int)(ceil(log10(big)) - floor(log10(a->step))) + 1;
        p = p < 1 ? 1 : p > 15 ? 15 : p;
        snprintf(buf, n, "%.*g", p, v);
    }
}

/* Clamped pixel coordinate, safe to convert to int. */
static int to_px(double v)
{
    if (v < -1e6)
        v = -1e6;
    if (v > 1e6)
        v = 1e6;
    return (int)lround(v);
}

/* ----------------------------------------------------------------- writing */

typedef struct png_err {
    char msg[256];
} png_err;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static int write_png(const char *path, const canvas *c)
{
    FILE *f = mela_sys_fopen_write(path);
    if (!f)
        return mela_sys_error_context("plot");
    /* On the heap: a local changed between setjmp and longjmp would be
     * indeterminate after the jump. */
    png_err *err = calloc(1, sizeof *err);
    png_structp png = err ? png_create_write_struct(PNG_LIBPNG_VER_STRING, err, on_png_error,
                                                    on_png_warning)
                          : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        free(err);
        fclose(f);
        unlink(path);
        return mela_set_error("plot %s: out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        unlink(path);
        mela_set_error("plot %s: cannot write PNG (%s)", path, err->msg);
        free(err);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++)
        png_write_row(png, c->px + (size_t)y * c->w * 3);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(err);
    int bad = fflush(f) != 0 || ferror(f);
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(path);
        return mela_set_error("plot %s: cannot write (%s)", path, strerror(e));
    }
    return 0;
}

/* ------------------------------------------------------------------- chart */

static double sx(const mela_series *s, int i) { return s->x ? s->x[i] : (double)i; }

static int point_ok(const mela_series *s, int i)
{
    return i >= 0 && i < s->n && isfinite(sx(s, i)) && isfinite(s->y[i]);
}

/* A white canvas of w x h; NULL pixels when out of memory. */
static canvas canvas_new(int w, int h)
{
    canvas c = {malloc((size_t)w * h * 3), w, h, 0, 0, 0, 0};
    if (c.px)
        memset(c.px, 255, (size_t)w * h * 3);
    clip_all(&c);
    return c;
}

static int series_check(const char *path, int nseries, const mela_series *series)
{
    if (nseries < 0 || (nseries > 0 && !series))
        return mela_set_error("plot %s: bad series (%d, %p)", path, nseries, (const void *)series);
    for (int s = 0; s < nseries; s++)
        if (series[s].n < 0 || (series[s].n > 0 && !series[s].y))
            return mela_set_error("plot %s: series %d has %d points and y %p", path, s,
                                  series[s].n, (const void *)series[s].y);
    return 0;
}

/* One chart in the PLOT_W x PLOT_H tile at (ox, oy) of the canvas. */
static void draw_chart(canvas *cv, int ox, int oy, const mela_chart *ch)
{
    int nseries = ch->nseries;
    const mela_series *series = ch->series;
    const char *title = ch->title, *xlabel = ch->xlabel;
    canvas c = *cv;
    /* Ranges over every finite point. */
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int s = 0; s < nseries; s++)
        for (int i = 0; i < series[s].n; i++)
            if (point_ok(&series[s], i)) {
                double x = sx(&series[s], i), y = series[s].y[i];
                xlo = fmin(xlo, x), xhi = fmax(xhi, x);
                ylo = fmin(ylo, y), yhi = fmax(yhi, y);
            }
    axis ax, ay;
    axis_make(&ax, xlo, xhi, 0);
    axis_make(&ay, ylo, yhi, 1);

    const int left = ox + 80, right = ox + PLOT_W - 24, top = oy + 44, bottom = oy + PLOT_H - 56;
    char buf[64];
    c.x0 = ox, c.x1 = ox + PLOT_W - 1, c.y0 = oy, c.y1 = oy + PLOT_H - 1;
    const canvas tile = c;
    /* Grid, ticks and their labels. */
    for (int k = 0; k < ax.nticks; k++) {
        double v = axis_tick(&ax, k);
        int x = to_px(left + axis_frac(&ax, v) * (right - left));
        line(&c, x, top, x, bottom, 1, GRID);
        line(&c, x, bottom, x, bottom + 5, 1, BLACK);
        tick_label(&ax, v, buf, sizeof buf);
        text(&c, x - text_width(buf, 1) / 2, bottom + 10, buf, 1, BLACK);
    }
    for (int k = 0; k < ay.nticks; k++) {
        double v = axis_tick(&ay, k);
        int y = to_px(bottom - axis_frac(&ay, v) * (bottom - top));
        line(&c, left, y, right, y, 1, GRID);
        line(&c, left - 5, y, left, y, 1, BLACK);
        tick_label(&ay, v, buf, sizeof buf);
        text(&c, left - 9 - text_width(buf, 1), y - 3, buf, 1, BLACK);
    }

    /* The series, clipped to the plot area. */
    c.x0 = left + 1, c.x1 = right - 1, c.y0 = top + 1, c.y1 = bottom - 1;
    for (int s = 0; s < nseries; s++) {
        const mela_series *se = &series[s];
        rgb col = PALETTE[s % 10];
        for (int i = 0; i < se->n; i++) {
            if (!point_ok(se, i))
                continue;
            int x = to_px(left + axis_frac(&ax, sx(se, i)) * (right - left));
            int y = to_px(bottom - axis_frac(&ay, se->y[i]) * (bottom - top));
            if (point_ok(se, i + 1)) {
                int x2 = to_px(left + axis_frac(&ax, sx(se, i + 1)) * (right - left));
                int y2 = to_px(bottom - axis_frac(&ay, se->y[i + 1]) * (bottom - top));
                line(&c, x, y, x2, y2, 2, col);
            } else if (!point_ok(se, i - 1)) {
                fill(&c, x - 2, y - 2, 5, 5, col); /* a point alone */
            }
        }
    }
    c = tile;

    /* Frame (after the lines, so it stays crisp), title, x label. */
    line(&c, left, top, right, top, 1, FRAME);
    line(&c, right, top, right, bottom, 1, FRAME);
    line(&c, left, top, left, bottom, 1, BLACK);
    line(&c, left, bottom, right, bottom, 1, BLACK);
    if (title && *title)
        text(&c, ox + (PLOT_W - text_width(title, 2)) / 2, oy + 12, title, 2, BLACK);
    if (xlabel && *xlabel)
        text(&c, left + (right - left - text_width(xlabel, 2)) / 2, oy + PLOT_H - 26, xlabel, 2, BLACK);

    /* Legend in the top-right corner, as many entries as fit. */
    int nl = 0, wl = 0;
    for (int s = 0; s < nseries; s++)
        if (series[s].name && *series[s].name) {
            nl++;
            int w = text_width(series[s].name, 1);
            wl = w > wl ? w : wl;
        }
    int maxl = (bottom - top - 20) / 14;
    nl = nl < maxl ? nl : maxl;
    if (nl > 0) {
        int bw = wl + 40, bh = nl * 14 + 8;
        if (bw > right - left - 20)
            bw = right - left - 20;
        int bx = right - 10 - bw, by = top + 10;
        fill(&c, bx, by, bw, bh, WHITE);
        line(&c, bx, by, bx + bw - 1, by, 1, FRAME);
        line(&c, bx, by + bh - 1, bx + bw - 1, by + bh - 1, 1, FRAME);
        line(&c, bx, by, bx, by + bh - 1, 1, FRAME);
        line(&c, bx + bw - 1, by, bx + bw - 1, by + bh - 1, 1, FRAME);
        c.x0 = bx, c.x1 = bx + bw - 2, c.y0 = by, c.y1 = by + bh - 1;
        for (int s = 0, k = 0; s < nseries && k < nl; s++) {
            if (!series[s].name || !*series[s].name)
                continue;
            int y = by + 8 + k * 14;
            line(&c, bx + 8, y + 3, bx + 26, y + 3, 3, PALETTE[s % 10]);
            text(&c, bx + 32, y, series[s].name, 1, BLACK);
            k++;
        }
        c = tile;
    }

}

int mela_plot_charts_png(const char *path, int ncharts, int columns, const mela_chart *charts)
{
    if (!path || !*path)
        return mela_set_error("plot: no path given");
    if (ncharts < 1 || ncharts > 64 || !charts || columns < 1)
        return mela_set_error("plot %s: %d charts in %d columns (1 to 64 charts)", path, ncharts, columns);
    for (int i = 0; i < ncharts; i++)
        if (series_check(path, charts[i].nseries, charts[i].series))
            return -1;
    int cols = columns < ncharts ? columns : ncharts, rows = (ncharts + cols - 1) / cols;
    canvas c = canvas_new(cols * PLOT_W, rows * PLOT_H);
    if (!c.px)
        return mela_set_error("plot %s: out of memory", path);
    for (int i = 0; i < ncharts; i++)
        draw_chart(&c, (i % cols) * PLOT_W, (i / cols) * PLOT_H, &charts[i]);
    int rc = write_png(path, &c);
    free(c.px);
    return rc;
}

int mela_plot_png(const char *path, const char *title, const char *xlabel, int nseries,
                  const mela_series *series)
{
    mela_chart ch = {title, xlabel, nseries, series};
    return mela_plot_charts_png(path, 1, 1, &ch);
}

/* --------------------------------------------------------------- episodes */

/* The layout of an episode picture: a cell is an image in its 2-pixel frame
 * with a label line under it. */
enum { PIC_MARGIN = 10, PIC_LEFT = 64, PIC_TITLE = 30, PIC_HEAD = 16, PIC_GAP = 8, PIC_LABEL = 14 };

typedef struct pic_layout {
    int box_w, box_h;   /* image and frame */
    int cell_w, cell_h; /* with the gap and the label */
    int cols;           /* cells in the widest row */
} pic_layout;

static int pic_ok(int n, const mela_episode_picture *eps)
{
    if (n < 1 || n > 100 || !eps)
        return 0;
    for (int e = 0; e < n; e++) {
        const mela_episode_picture *p = &eps[e];
        if (p->H < 1 || p->W < 1 || p->H > 512 || p->W > 512 || p->H != eps[0].H || p->W != eps[0].W ||
            p->nsupport < 0 || p->nquery < 0 || p->nsupport > 10000 || p->nquery > 10000 ||
            (p->nsupport && (!p->support || !p->support_label)) ||
            (p->nquery && (!p->query || !p->query_label || !p->query_pred)))
            return 0;
    }
    return 1;
}

static pic_layout pic_layout_of(int n, const mela_episode_picture *eps)
{
    pic_layout L;
    L.box_w = eps[0].W * MELA_PICTURE_SCALE + 4, L.box_h = eps[0].H * MELA_PICTURE_SCALE + 4;
    L.cell_w = (L.box_w > 60 ? L.box_w : 60) + PIC_GAP;
    L.cell_h = L.box_h + PIC_LABEL;
    L.cols = 1;
    for (int e = 0; e < n; e++) {
        int m = eps[e].nsupport > eps[e].nquery ? eps[e].nsupport : eps[e].nquery;
        m = m < MELA_PICTURE_COLUMNS ? m : MELA_PICTURE_COLUMNS;
        L.cols = m > L.cols ? m : L.cols;
    }
    return L;
}

static int pic_rows(int k) { return (k + MELA_PICTURE_COLUMNS - 1) / MELA_PICTURE_COLUMNS; }

static int pic_band(const pic_layout *L, const mela_episode_picture *p)
{
    return PIC_HEAD + pic_rows(p->nsupport) * L->cell_h + PIC_GAP + pic_rows(p->nquery) * L->cell_h + PIC_GAP;
}

int mela_picture_width(int n, const mela_episode_picture *eps)
{
    if (!pic_ok(n, eps))
        return 0;
    pic_layout L = pic_layout_of(n, eps);
    int w = PIC_MARGIN + PIC_LEFT + L.cols * L.cell_w + PIC_MARGIN;
    return w > 400 ? w : 400;
}

int mela_picture_height(int n, const mela_episode_picture *eps)
{
    if (!pic_ok(n, eps))
        return 0;
    pic_layout L = pic_layout_of(n, eps);
    int h = PIC_TITLE + PIC_MARGIN;
    for (int e = 0; e < n; e++)
        h += pic_band(&L, &eps[e]);
    return h;
}

/* One image (scaled) in its frame of colour col, the box's corner at (x, y),
 * the label centred under it. */
static void pic_cell(canvas *c, const pic_layout *L, int x, int y, const float *img, int H, int W, int ink,
                     rgb col, const char *label)
{
    fill(c, x, y, L->box_w, L->box_h, col);
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            float v = img[(size_t)i * W + j];
            v = v < 0 ? 0 : v > 1 ? 1 : v == v ? v : 0;
            unsigned char g = (unsigned char)lroundf(255 * (ink ? 1 - v : v));
            fill(c, x + 2 + j * MELA_PICTURE_SCALE, y + 2 + i * MELA_PICTURE_SCALE, MELA_PICTURE_SCALE,
                 MELA_PICTURE_SCALE, (rgb){g, g, g});
        }
    text(c, x + L->box_w / 2 - text_width(label, 1) / 2, y + L->box_h + 4, label, 1, BLACK);
}

int mela_plot_episodes_png(const char *path, const char *title, int n, const mela_episode_picture *eps)
{
    if (!path || !*path)
        return mela_set_error("plot: no path given");
    if (!pic_ok(n, eps))
        return mela_set_error("plot %s: bad episodes (1 to 100 episodes, images 1 to 512 pixels a side, "
                              "the same size in every episode)", path);
    pic_layout L = pic_layout_of(n, eps);
    canvas c = canvas_new(mela_picture_width(n, eps), mela_picture_height(n, eps));
    if (!c.px)
        return mela_set_error("plot %s: out of memory", path);
    const rgb wrong = {MELA_PICTURE_WRONG_R, MELA_PICTURE_WRONG_G, MELA_PICTURE_WRONG_B},
              right = {40, 160, 40};
    if (title && *title)
        text(&c, PIC_MARGIN, 8, title, 2, BLACK);
    int y = PIC_TITLE + PIC_MARGIN, H = eps[0].H, W = eps[0].W;
    size_t img = (size_t)H * W;
    char buf[64];
    for (int e = 0; e < n; e++) {
        const mela_episode_picture *p = &eps[e];
        int ok = 0;
        for (int q = 0; q < p->nquery; q++)
            ok += p->query_pred[q] == p->query_label[q];
        snprintf(buf, sizeof buf, "episode %d: %d of %d queries right", e, ok, p->nquery);
        text(&c, PIC_MARGIN, y, buf, 1, BLACK);
        line(&c, PIC_MARGIN, y + 11, c.w - PIC_MARGIN, y + 11, 1, GRID);
        y += PIC_HEAD;
        text(&c, PIC_MARGIN, y + L.box_h / 2 - 4, "support", 1, BLACK);
        for (int k = 0; k < p->nsupport; k++) {
            int x = PIC_MARGIN + PIC_LEFT + (k % MELA_PICTURE_COLUMNS) * L.cell_w;
            snprintf(buf, sizeof buf, "%d", p->support_label[k]);
            pic_cell(&c, &L, x, y + (k / MELA_PICTURE_COLUMNS) * L.cell_h, p->support + k * img, H, W, p->ink,
                     FRAME, buf);
        }
        y += pic_rows(p->nsupport) * L.cell_h + PIC_GAP;
        text(&c, PIC_MARGIN, y + L.box_h / 2 - 4, "queries", 1, BLACK);
        for (int k = 0; k < p->nquery; k++) {
            int x = PIC_MARGIN + PIC_LEFT + (k % MELA_PICTURE_COLUMNS) * L.cell_w;
            int good = p->query_pred[k] == p->query_label[k];
            if (good)
                snprintf(buf, sizeof buf, "%d", p->query_pred[k]);
            else
                snprintf(buf, sizeof buf, "%d, not %d", p->query_pred[k], p->query_label[k]);
            pic_cell(&c, &L, x, y + (k / MELA_PICTURE_COLUMNS) * L.cell_h, p->query + k * img, H, W, p->ink,
                     good ? right : wrong, buf);
        }
        y += pic_rows(p->nquery) * L.cell_h + PIC_GAP;
    }
    int rc = write_png(path, &c);
    free(c.px);
    return rc;
}
