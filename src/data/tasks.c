/*
 * tasks.c - streams of few-shot tasks: N-way K-shot episodes of a split
 * (support rows optionally shuffled), batches of same/different image pairs,
 * or sinusoids. Task i is a pure function of (seed, i); each slot has its own
 * sampler and buffers, so slots can be filled and used on different threads.
 */
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

struct mela_tasks {
    mela_tasks_opts o;
    const mela_dataset *ds;
    const mela_split *sp;
    mela_sampler **samp;
    float *buf;  /* sinusoid: slots * 2 (K + Q); pairs: slots * pair_slot_floats */
    float *tmp;  /* pairs: one image, for the distortion */
    float *shuf; /* episodes, shuffled: slots supports (x, y) */
    float *bg;   /* episodes with background: slots queries (x, y), then scene work */
    float *aug;  /* episodes, augmented: slots distorted supports, then queries */
};

void mela_shuffle_rows(float *dx, float *dy, const float *sx, const float *sy, int n, size_t img,
                       mela_rng *r)
{
    for (int j = 0; j < n; j++) {
        int k = (int)mela_rng_below(r, (uint32_t)j + 1);
        if (k != j) {
            memcpy(dx + (size_t)j * img, dx + (size_t)k * img, img * sizeof *dx);
            dy[j] = dy[k];
        }
        memcpy(dx + (size_t)k * img, sx + (size_t)j * img, img * sizeof *dx);
        dy[k] = sy[j];
    }
}

void mela_tasks_free(mela_tasks *ts)
{
    if (!ts)
        return;
    for (int i = 0; i < ts->o.slots && ts->samp; i++)
        mela_sampler_free(ts->samp[i]);
    free(ts->samp);
    free(ts->buf);
    free(ts->tmp);
    free(ts->shuf);
    free(ts->bg);
    free(ts->aug);
    free(ts);
}

int mela_tasks_slots(const mela_tasks *ts) { return ts->o.slots; }

static size_t image_floats(const mela_dataset *ds) { return (size_t)ds->C * ds->H * ds->W; }

static size_t pair_slot_floats(const mela_tasks *ts)
{
    return (2 * image_floats(ts->ds) + 1) * ts->o.pairs + 1;
}

/* Every class of the split needs two images to make a same-class pair. */
static int pairs_check(const mela_dataset *ds, const mela_split *sp)
{
    if (sp->n < 2)
        return mela_set_error("split %s: pairs need at least 2 classes", sp->name);
    for (int k = 0; k < sp->n; k++) {
        const mela_class *c = &ds->classes[sp->classes[k].cls];
        if (c->count < 2)
            return mela_set_error("split %s: class %s has %d image(s); pairs need 2", sp->name, c->name,
                                  c->count);
    }
    return 0;
}

/* An episode's query rows with the background rows, then the scene's work. */
static size_t bg_slot_floats(const mela_tasks *ts)
{
    size_t rows = (size_t)ts->o.spec.ways * ts->o.spec.queries + ts->o.background;
    return rows * (image_floats(ts->ds) + 1) + scene_background_work(ts->ds);
}

static int tasks_alloc(mela_tasks *ts)
{
    const mela_tasks_opts *o = &ts->o;
    int S = o->slots;
    if (o->kind == MELA_TASKS_SINUSOID) {
        ts->buf = malloc((size_t)S * 2 * (o->spec.shots + o->spec.queries) * sizeof *ts->buf);
        return ts->buf ? 0 : mela_set_error("tasks: out of memory");
    }
    if (o->kind == MELA_TASKS_PAIRS) {
        if (o->pairs < 2)
            return mela_set_error("tasks: %d pairs per batch (at least 2)", o->pairs);
        if (pairs_check(ts->ds, ts->sp))
            return -1;
        ts->buf = malloc((size_t)S * pair_slot_floats(ts) * sizeof *ts->buf);
        ts->tmp = malloc(image_floats(ts->ds) * sizeof *ts->tmp);
        return ts->buf && ts->tmp ? 0 : mela_set_error("tasks: out of memory");
    }
    if (!(ts->samp = calloc(S, sizeof *ts->samp)))
        return mela_set_error("tasks: out of memory");
    for (int i = 0; i < S; i++)
        if (!(ts->samp[i] = mela_sampler_new(ts->ds, ts->sp, o->spec.ways, o->spec.shots, o->spec.queries,
                                             o->flags)))
            return -1;
    int n = o->spec.ways * o->spec.shots;
    if (o->shuffle_support &&
        !(ts->shuf = malloc((size_t)S * n * (image_floats(ts->ds) + 1) * sizeof *ts->shuf)))
        return mela_set_error("tasks: out of memory");
    if (o->background < 0 || (o->background > 0 && (ts->ds->C != 1 || ts->sp->n <= o->spec.ways)))
        return mela_set_error("tasks: background windows (%d) need grey images and more classes than "
                              "the %d ways in split %s (distractors come from the others)",
                              o->background, o->spec.ways, ts->sp->name);
    if (o->background && !(ts->bg = malloc((size_t)S * bg_slot_floats(ts) * sizeof *ts->bg)))
        return mela_set_error("tasks: out of memory");
    size_t rows = (size_t)n + (size_t)o->spec.ways * o->spec.queries;
    if (o->augment && !(ts->aug = malloc((size_t)S * rows * image_floats(ts->ds) * sizeof *ts->aug)))
        return mela_set_error("tasks: out of memory");
    return 0;
}

mela_tasks *mela_tasks_new(const mela_dataset *ds, const mela_split *sp, const mela_tasks_opts *o)
{
    if (o->slots < 1 || o->kind < MELA_TASKS_EPISODES || o->kind > MELA_TASKS_SINUSOID) {
        mela_set_error("tasks: kind %d with %d slots", o->kind, o->slots);
        return NULL;
    }
    if (o->kind != MELA_TASKS_SINUSOID && (!ds || !sp)) {
        mela_set_error("tasks: episodes and pairs need a dataset and a split");
        return NULL;
    }
    if (o->kind == MELA_TASKS_SINUSOID && (o->spec.shots < 1 || o->spec.queries < 1)) {
        mela_set_error("tasks: sinusoids need at least 1 support and 1 query point (K %d, Q %d)",
                       o->spec.shots, o->spec.queries);
        return NULL;
    }
    mela_tasks *ts = calloc(1, sizeof *ts);
    if (!ts) {
        mela_set_error("tasks: out of memory");
        return NULL;
    }
    ts->o = *o;
    ts->ds = ds;
    ts->sp = sp;
    if (tasks_alloc(ts)) {
        mela_tasks_free(ts);
        return NULL;
    }
    return ts;
}

/* One image of split class k into dst, distorted when augmenting. */
static void pair_image(mela_tasks *ts, mela_rng *r, int k, int j, float *dst)
{
    if (!ts->o.augment) {
        mela_split_image(ts->ds, ts->sp, k, j, dst);
        return;
    }
    mela_split_image(ts->ds, ts->sp, k, j, ts->tmp);
    mela_affine_distort(dst, ts->tmp, ts->ds->C, ts->ds->H, ts->ds->W, r);
}

/* Half the pairs of one class (odd rows), half of two; two distinct images. */
static void pairs_task(mela_tasks *ts, int slot, uint64_t i, mela_task *t)
{
    size_t img = image_floats(ts->ds);
    int P = ts->o.pairs;
    float *b = ts->buf + (size_t)slot * pair_slot_floats(ts);
    float *x1 = b, *x2 = b + img * P, *same = x2 + img * P, *unused = same + P;
    const mela_dataset *ds = ts->ds;
    const mela_split *sp = ts->sp;
    mela_rng r = mela_rng_derive(ts->o.seed, sp->id ^ 0x7061697273ULL, i);
    int n = sp->n;
    for (int p = 0; p < P; p++) {
        int a = (int)mela_rng_below(&r, (uint32_t)n);
        int bcls = p % 2 ? a : (a + 1 + (int)mela_rng_below(&r, (uint32_t)n - 1)) % n;
        int ca = ds->classes[sp->classes[a].cls].count;
        int cb = ds->classes[sp->classes[bcls].cls].count;
        int ia = (int)mela_rng_below(&r, (uint32_t)ca), ib = (int)mela_rng_below(&r, (uint32_t)cb);
        if (bcls == a && ib == ia)
            ib = (ia + 1 + (int)mela_rng_below(&r, (uint32_t)ca - 1)) % ca;
        pair_image(ts, &r, a, ia, x1 + img * p);
        pair_image(ts, &r, bcls, ib, x2 + img * p);
        same[p] = p % 2 ? 1.0f : 0.0f;
    }
    unused[0] = 0;
    t->xs = x1, t->ys = same, t->xq = x2, t->yq = unused;
}

void mela_tasks_get(mela_tasks *ts, int slot, uint64_t i, mela_task *t)
{
    const mela_tasks_opts *o = &ts->o;
    if (o->kind == MELA_TASKS_SINUSOID) {
        int K = o->spec.shots, Q = o->spec.queries;
        float *b = ts->buf + (size_t)slot * 2 * (K + Q);
        t->xs = b, t->ys = b + K, t->xq = b + 2 * K, t->yq = b + 2 * K + Q;
        mela_sinusoid_task(o->seed, i, K, Q, b, b + K, b + 2 * K, b + 2 * K + Q, NULL, NULL);
        return;
    }
    if (o->kind == MELA_TASKS_PAIRS) {
        pairs_task(ts, slot, i, t);
        return;
    }
    const mela_episode *e = mela_sampler_episode(ts->samp[slot], o->seed, i);
    t->xs = e->x_support, t->ys = e->y_support, t->xq = e->x_query, t->yq = e->y_query;
    if (ts->aug) { /* every image distorted, support then queries, a function of (seed, i) */
        const mela_dataset *ds = ts->ds;
        size_t img = image_floats(ds);
        int n = o->spec.ways * o->spec.shots, nq = o->spec.ways * o->spec.queries;
        float *x = ts->aug + (size_t)slot * (n + nq) * img;
        mela_rng r = mela_rng_derive(o->seed, ts->sp->id ^ 0x61756700ULL, i);
        for (int j = 0; j < n + nq; j++) {
            const float *src = j < n ? e->x_support + j * img : e->x_query + (j - n) * img;
            mela_affine_distort(x + j * img, src, ds->C, ds->H, ds->W, &r);
        }
        t->xs = x, t->xq = x + (size_t)n * img;
    }
    if (ts->shuf) { /* a random permutation of the support rows, a function of (seed, i) */
        size_t img = image_floats(ts->ds);
        int n = o->spec.ways * o->spec.shots;
        float *x = ts->shuf + (size_t)slot * n * (img + 1), *y = x + (size_t)n * img;
        mela_rng r = mela_rng_derive(o->seed, ts->sp->id ^ 0x73687566ULL, i);
        mela_shuffle_rows(x, y, t->xs, e->y_support, n, img, &r);
        t->xs = x, t->ys = y;
    }
    if (ts->bg) { /* the queries, then the background windows, labelled N */
        size_t img = image_floats(ts->ds);
        int N = o->spec.ways, nq = N * o->spec.queries, B = o->background;
        float *x = ts->bg + (size_t)slot * bg_slot_floats(ts), *y = x + (nq + B) * img;
        memcpy(x, t->xq, (size_t)nq * img * sizeof *x);
        memcpy(y, e->y_query, (size_t)nq * sizeof *y);
        mela_rng r = mela_rng_derive(o->seed, ts->sp->id ^ 0x6267ULL, i);
        scene_background(ts->ds, ts->sp, e->split_class, N, B, &r, x + nq * img, y + nq + B);
        for (int b = 0; b < B; b++)
            y[nq + b] = (float)N;
        t->xq = x, t->yq = y;
    }
}
