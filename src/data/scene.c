/* scene.c - seeded scenes for one-shot detection: characters of a dataset
 * (the Omniglot evaluation alphabets in the benchmark) pasted on a blank
 * canvas at random positions, sizes and small rotations, with a support set
 * of one drawing per target class by a drawer that draws none of the
 * scene's instances of it. Scene i is a pure function of (seed, i). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

#define SCENE_STREAM 0x7363656e65ULL /* "scene" */
#define SCENE_SUPPORT 28             /* support crops: the model's input */

struct mela_scenes {
    const mela_dataset *ds;
    mela_scene_opts o;
};

static void opts_fill(mela_scene_opts *o)
{
    if (o->size <= 0)
        o->size = 256;
    if (o->ways <= 0)
        o->ways = 5;
    if (o->min_chars <= 0)
        o->min_chars = 2;
    if (o->max_chars <= 0)
        o->max_chars = 8;
    if (o->min_scale <= 0)
        o->min_scale = 0.7f;
    if (o->max_scale <= 0)
        o->max_scale = 1.5f;
    if (o->max_rotation < 0)
        o->max_rotation = 0;
    else if (o->max_rotation == 0)
        o->max_rotation = 10;
    if (o->p_target <= 0)
        o->p_target = 0.5f;
}

mela_scenes *mela_scenes_new(const mela_dataset *ds, const mela_scene_opts *opts)
{
    mela_scene_opts o = opts ? *opts : (mela_scene_opts){0};
    opts_fill(&o);
    const char *why = NULL;
    int drawers = ds && ds->nclasses ? ds->classes[0].count : 0;
    for (int c = 1; ds && c < ds->nclasses; c++)
        if (ds->classes[c].count < drawers)
            drawers = ds->classes[c].count;
    if (!ds || ds->C != 1)
        why = "needs a grey dataset";
    else if (o.ways > ds->nclasses - 1)
        why = "needs more classes than ways (distractors come from the others)";
    else if (drawers < 2)
        why = "needs at least 2 drawings of every class (support and scene by different drawers)";
    else if (o.max_chars > MELA_SCENE_MAX_CHARS || o.min_chars > o.max_chars)
        why = "characters per scene must satisfy 1 <= min <= max <= MELA_SCENE_MAX_CHARS";
    else if (o.min_scale > o.max_scale || o.max_scale * SCENE_SUPPORT * 2 > o.size)
        why = "scales must satisfy 0 < min <= max and characters (28 x scale) fit the canvas twice";
    else if (o.p_target > 1 || o.max_rotation > 45)
        why = "p_target must be <= 1 and max_rotation <= 45 degrees";
    if (why) {
        mela_set_error("scenes: %s (size %d, ways %d, characters %d..%d, scale %g..%g)", why, o.size,
                       o.ways, o.min_chars, o.max_chars, (double)o.min_scale, (double)o.max_scale);
        return NULL;
    }
    mela_scenes *s = calloc(1, sizeof *s);
    if (!s) {
        mela_set_error("scenes: out of memory");
        return NULL;
    }
    s->ds = ds;
    s->o = o;
    return s;
}

void mela_scenes_free(mela_scenes *s) { free(s); }

const mela_scene_opts *mela_scenes_opts(const mela_scenes *s) { return &s->o; }

void mela_scene_free(mela_scene *sc)
{
    if (!sc)
        return;
    free(sc->pixels);
    free(sc->support);
    free(sc->support_class);
    memset(sc, 0, sizeof *sc);
}

/* The four bilinear taps of an H x W grid at (x, y) (pixel centres at
 * +0.5): each tap's offset and weight, in the order (0,0) (0,1) (1,0)
 * (1,1); a tap outside the grid gets offset SIZE_MAX (it counts as 0). */
static void bilinear_taps(float x, float y, int H, int W, size_t at[4], float w[4])
{
    x -= 0.5f, y -= 0.5f;
    int x0 = (int)floorf(x), y0 = (int)floorf(y);
    float fx = x - x0, fy = y - y0;
    for (int dy = 0, k = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++, k++) {
            int xx = x0 + dx, yy = y0 + dy;
            at[k] = xx < 0 || yy < 0 || xx >= W || yy >= H ? SIZE_MAX : (size_t)yy * W + xx;
            w[k] = (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy);
        }
}

/* Bilinear sample of an 8-bit image at (x, y), 0 outside, scaled to [0, 1]. */
static float sample(const uint8_t *p, int H, int W, float x, float y)
{
    size_t at[4];
    float w[4], v = 0;
    bilinear_taps(x, y, H, W, at, w);
    for (int k = 0; k < 4; k++)
        if (at[k] != SIZE_MAX)
            v += w[k] * p[at[k]];
    return v * (1.0f / 255.0f);
}

/* Pastes image src (H x W) into the canvas so that its frame is the box
 * (x, y, side) turned by angle (radians) about the box centre: inverse
 * mapping with k x k samples per canvas pixel (k covers the minification),
 * the canvas keeping the larger ink of the two. */
static void paste(float *canvas, int size, const uint8_t *src, int H, int W, float x, float y,
                  float side, float angle)
{
    float cx = x + side / 2, cy = y + side / 2, sx = W / side, sy = H / side;
    float c = cosf(angle), s = sinf(angle);
    int k = (int)ceilf(sx > sy ? sx : sy);
    if (k < 1)
        k = 1;
    if (k > 6)
        k = 6;
    float reach = side * 0.75f; /* half-diagonal of the turned frame, and more */
    int xa = (int)floorf(cx - reach), xb = (int)ceilf(cx + reach);
    int ya = (int)floorf(cy - reach), yb = (int)ceilf(cy + reach);
    xa = xa < 0 ? 0 : xa, ya = ya < 0 ? 0 : ya;
    xb = xb > size ? size : xb, yb = yb > size ? size : yb;
    for (int py = ya; py < yb; py++)
        for (int px = xa; px < xb; px++) {
            float acc = 0;
            for (int j = 0; j < k; j++)
                for (int i = 0; i < k; i++) {
                    float u = px + (i + 0.5f) / k - cx, v = py + (j + 0.5f) / k - cy;
                    float ru = c * u + s * v, rv = -s * u + c * v; /* turned back */
                    acc += sample(src, H, W, ru * sx + W / 2.0f, rv * sy + H / 2.0f);
                }
            acc /= (float)(k * k);
            float *d = canvas + (size_t)py * size + px;
            if (acc > *d)
                *d = acc;
        }
}

static int overlaps(const mela_scene *sc, float x, float y, float side)
{
    const float gap = 2;
    for (int b = 0; b < sc->nboxes; b++) {
        const mela_scene_box *q = &sc->boxes[b];
        if (x < q->x + q->w + gap && q->x < x + side + gap && y < q->y + q->h + gap &&
            q->y < y + side + gap)
            return 1;
    }
    return 0;
}

int mela_scene_make(const mela_scenes *s, uint64_t seed, uint64_t i, mela_scene *sc)
{
    const mela_dataset *ds = s->ds;
    const mela_scene_opts *o = &s->o;
    int N = o->ways, S = SCENE_SUPPORT, size = o->size;
    memset(sc, 0, sizeof *sc);
    sc->size = size;
    sc->ways = N;
    sc->pixels = calloc((size_t)size * size, sizeof *sc->pixels);
    sc->support = malloc((size_t)N * S * S * sizeof *sc->support);
    sc->support_class = malloc((size_t)N * 2 * sizeof *sc->support_class);
    uint8_t *small = malloc((size_t)S * S);
    if (!sc->pixels || !sc->support || !sc->support_class || !small) {
        free(small);
        mela_scene_free(sc);
        return mela_set_error("scenes: out of memory");
    }
    int *drawer = sc->support_class + N;
    mela_rng r = mela_rng_derive(seed, SCENE_STREAM, i);
    /* N distinct classes, each with the drawing that is its support */
    for (int c = 0; c < N; c++) {
        int k, dup;
        do {
            k = (int)mela_rng_below(&r, (uint32_t)ds->nclasses);
            dup = 0;
            for (int e = 0; e < c; e++)
                dup |= sc->support_class[e] == k;
        } while (dup);
        sc->support_class[c] = k;
        drawer[c] = (int)mela_rng_below(&r, (uint32_t)ds->classes[k].count);
        if (mela_resize_area(small, S, S, mela_dataset_image(ds, k, drawer[c]), ds->H, ds->W)) {
            free(small);
            mela_scene_free(sc);
            return mela_set_error("scenes: out of memory");
        }
        for (int p = 0; p < S * S; p++)
            sc->support[(size_t)c * S * S + p] = small[p] * (1.0f / 255.0f);
    }
    free(small);
    int n = o->min_chars + (int)mela_rng_below(&r, (uint32_t)(o->max_chars - o->min_chars + 1));
    for (int c = 0; c < n; c++) {
        float scale = o->min_scale + (o->max_scale - o->min_scale) * mela_rng_uniform(&r);
        float side = S * scale;
        float angle = (2 * mela_rng_uniform(&r) - 1) * o->max_rotation * 3.14159265f / 180;
        int label = mela_rng_uniform(&r) < o->p_target ? (int)mela_rng_below(&r, (uint32_t)N) : -1;
        int cls, img;
        if (label >= 0) {
            cls = sc->support_class[label];
            img = (int)mela_rng_below(&r, (uint32_t)ds->classes[cls].count - 1);
            img += img >= drawer[label]; /* never the support's drawer */
        } else {
            int in;
            do {
                cls = (int)mela_rng_below(&r, (uint32_t)ds->nclasses);
                in = 0;
                for (int e = 0; e < N; e++)
                    in |= sc->support_class[e] == cls;
            } while (in);
            img = (int)mela_rng_below(&r, (uint32_t)ds->classes[cls].count);
        }
        /* a place that touches no earlier character; skipped after 100 tries */
        for (int t = 0; t < 100; t++) {
            float x = mela_rng_uniform(&r) * (size - side), y = mela_rng_uniform(&r) * (size - side);
            if (overlaps(sc, x, y, side))
                continue;
            paste(sc->pixels, size, mela_dataset_image(ds, cls, img), ds->H, ds->W, x, y, side, angle);
            sc->boxes[sc->nboxes++] = (mela_scene_box){x, y, side, side, label, cls};
            break;
        }
    }
    return 0;
}

/* ------------------------------------------- background windows (training) */

/* Bilinear sample of a float canvas (size x size) at (x, y), 0 outside. */
static float sample_canvas(const float *c, int size, float x, float y)
{
    size_t at[4];
    float w[4], v = 0;
    bilinear_taps(x, y, size, size, at, w);
    for (int k = 0; k < 4; k++)
        if (at[k] != SIZE_MAX)
            v += w[k] * c[at[k]];
    return v;
}

static float iou(float ax, float ay, float as, const mela_scene_box *b)
{
    float w = fminf(ax + as, b->x + b->w) - fmaxf(ax, b->x);
    float h = fminf(ay + as, b->y + b->h) - fmaxf(ay, b->y);
    if (w <= 0 || h <= 0)
        return 0;
    return w * h / (as * as + b->w * b->h - w * h);
}

size_t scene_background_work(const mela_dataset *ds)
{
    size_t size = (size_t)4 * ds->W;
    return size * size + (size_t)ds->H * ds->W * 2;
}

void scene_background(const mela_dataset *ds, const mela_split *sp, const int *episode, int N, int B,
                      mela_rng *r, float *x, float *work)
{
    const int H = ds->H, W = ds->W, size = 4 * W;
    const float gap = 0.25f; /* of a window: how far it may sit off a distractor */
    float *canvas = work, *img = canvas + (size_t)size * size;
    uint8_t *src = (uint8_t *)(img + (size_t)H * W); /* the drawing as bytes, for paste() */
    mela_scene scene = {0}, *sc = &scene; /* the characters' frames */
    memset(canvas, 0, (size_t)size * size * sizeof *canvas);
    /* 2-4 characters, each of an episode class or, with probability 1/2, a
     * distractor of another class of the split */
    int n = 2 + (int)mela_rng_below(r, 3);
    for (int c = 0; c < n; c++) {
        float side = W * (0.7f + 0.8f * mela_rng_uniform(r));
        float angle = (2 * mela_rng_uniform(r) - 1) * 10 * 3.14159265f / 180;
        int target = mela_rng_uniform(r) < 0.5f, k, in;
        if (target)
            k = episode[mela_rng_below(r, (uint32_t)N)];
        else
            do {
                k = (int)mela_rng_below(r, (uint32_t)sp->n);
                in = 0;
                for (int e = 0; e < N; e++)
                    in |= episode[e] == k;
            } while (in);
        int j = (int)mela_rng_below(r, (uint32_t)ds->classes[sp->classes[k].cls].count);
        float px = mela_rng_uniform(r) * (size - side), py = mela_rng_uniform(r) * (size - side);
        if (overlaps(sc, px, py, side))
            continue;
        mela_split_image(ds, sp, k, j, img);
        for (int p = 0; p < H * W; p++)
            src[p] = (uint8_t)lrintf(img[p] * 255);
        paste(canvas, size, src, H, W, px, py, side, angle);
        sc->boxes[sc->nboxes++] = (mela_scene_box){px, py, side, side, target ? 0 : -1, k};
    }
    for (int b = 0; b < B; b++) {
        float *dst = x + (size_t)b * H * W;
        int found = 0;
        float wx = 0, wy = 0, ws = W;
        for (int t = 0; t < 100 && !found; t++) {
            const mela_scene_box *d = NULL;
            if (b % 2 == 0) /* every other window near a distractor, when there is one */
                for (int q = 0, m = 0; q < sc->nboxes; q++)
                    if (sc->boxes[q].label < 0 && mela_rng_below(r, (uint32_t)++m) == 0)
                        d = &sc->boxes[q];
            if (d) {
                ws = d->w * (0.8f + 0.45f * mela_rng_uniform(r));
                wx = d->x + d->w / 2 - ws / 2 + (2 * mela_rng_uniform(r) - 1) * gap * ws;
                wy = d->y + d->h / 2 - ws / 2 + (2 * mela_rng_uniform(r) - 1) * gap * ws;
                wx = fminf(fmaxf(wx, 0), size - ws), wy = fminf(fmaxf(wy, 0), size - ws);
            } else {
                ws = W * (0.7f + 0.8f * mela_rng_uniform(r));
                wx = mela_rng_uniform(r) * (size - ws), wy = mela_rng_uniform(r) * (size - ws);
            }
            found = 1;
            for (int q = 0; q < sc->nboxes; q++)
                if (sc->boxes[q].label >= 0 && iou(wx, wy, ws, &sc->boxes[q]) >= 0.3f)
                    found = 0;
        }
        if (!found) { /* blank paper */
            memset(dst, 0, (size_t)H * W * sizeof *dst);
            continue;
        }
        /* the window area-sampled to H x W: k x k bilinear samples a pixel */
        float sy = ws / H, sx = ws / W;
        int k = (int)ceilf(sx > sy ? sx : sy);
        for (int py = 0; py < H; py++)
            for (int px = 0; px < W; px++) {
                float acc = 0;
                for (int j = 0; j < k; j++)
                    for (int i = 0; i < k; i++)
                        acc += sample_canvas(canvas, size, wx + (px + (i + 0.5f) / k) * sx,
                                             wy + (py + (j + 0.5f) / k) * sy);
                dst[py * W + px] = acc / (float)(k * k);
            }
    }
}
