/* episode.c - N-way K-shot Q-query episodes. Episode i is drawn from the
 * generator mela_rng_derive(seed, split id, i) alone: the sampler keeps
 * identity index arrays, draws without replacement by a partial Fisher-Yates
 * shuffle and then undoes its swaps, so no draw depends on an earlier one.
 * All buffers are made once in mela_sampler_new. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

struct mela_sampler {
    const mela_dataset *ds;
    const mela_split *sp;
    unsigned flags;
    mela_episode ep;
    int *pool;      /* identity over split classes, grouped by group when WITHIN_GROUP */
    int *gstart;    /* [ngroups + 1] segment of each group in pool */
    int *eligible;  /* groups with at least N classes */
    int neligible;
    int *examples;  /* identity over 0..max class size */
    int *swaps;     /* undo record, max(N, K + Q), or the split's size with DISTINCT_CLASSES */
    int *chosen;    /* [N] */
    int *picks;     /* [K + Q] */
};

void mela_sampler_free(mela_sampler *s)
{
    if (!s)
        return;
    mela_episode *e = &s->ep;
    free(e->x_support);
    free(e->y_support);
    free(e->l_support);
    free(e->x_query);
    free(e->y_query);
    free(e->l_query);
    free(e->label);
    free(e->split_class);
    free(e->support_index);
    free(e->query_index);
    free(s->pool);
    free(s->gstart);
    free(s->eligible);
    free(s->examples);
    free(s->swaps);
    free(s->chosen);
    free(s->picks);
    free(s);
}

static const char *class_label(const mela_dataset *ds, const mela_split_class *sc, char *buf,
                               size_t n)
{
    const mela_class *c = &ds->classes[sc->cls];
    if (ds->ngroups > 1 || (ds->ngroups == 1 && ds->groups[0][0]))
        snprintf(buf, n, "%s/%s (rot%03d)", ds->groups[c->group], c->name, 90 * sc->rot);
    else
        snprintf(buf, n, "%s (rot%03d)", c->name, 90 * sc->rot);
    return buf;
}

mela_sampler *mela_sampler_new(const mela_dataset *ds, const mela_split *sp, int N, int K, int Q,
                               unsigned flags)
{
    if (!ds || !sp) {
        mela_set_error("episodes: no dataset or split");
        return NULL;
    }
    if (N < 1 || K < 1 || Q < 0 || N > 100000 || K + Q > 100000) {
        mela_set_error("episodes: split %s: need N >= 1, K >= 1, Q >= 0, not N=%d K=%d Q=%d",
                       sp->name, N, K, Q);
        return NULL;
    }
    if (sp->n < N) {
        mela_set_error("episodes: split %s has %d classes, fewer than N = %d", sp->name, sp->n, N);
        return NULL;
    }
    int maxc = 0;
    for (int k = 0; k < sp->n; k++) {
        const mela_class *c = &ds->classes[sp->classes[k].cls];
        if (c->count < K + Q) {
            char buf[512];
            mela_set_error("episodes: split %s: class %s has %d examples, fewer than K + Q = "
                           "%d + %d = %d",
                           sp->name, class_label(ds, &sp->classes[k], buf, sizeof buf), c->count,
                           K, Q, K + Q);
            return NULL;
        }
        if (c->count > maxc)
            maxc = c->count;
    }
    mela_sampler *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->ds = ds;
    s->sp = sp;
    s->flags = flags;
    mela_episode *e = &s->ep;
    e->N = N, e->K = K, e->Q = Q, e->C = ds->C, e->H = ds->H, e->W = ds->W;
    e->group = -1;
    size_t img = (size_t)ds->C * ds->H * ds->W;
    e->x_support = malloc(sizeof(float) * img * N * K);
    e->y_support = malloc(sizeof(float) * N * K);
    e->l_support = malloc(sizeof(int) * N * K);
    e->x_query = malloc(sizeof(float) * (img * N * Q + 1));
    e->y_query = malloc(sizeof(float) * (N * Q + 1));
    e->l_query = malloc(sizeof(int) * (N * Q + 1));
    e->label = malloc(sizeof(int) * N);
    e->split_class = malloc(sizeof(int) * N);
    e->support_index = malloc(sizeof(int) * N * K);
    e->query_index = malloc(sizeof(int) * (N * Q + 1));
    s->pool = malloc(sizeof(int) * sp->n);
    s->gstart = calloc((size_t)ds->ngroups + 2, sizeof(int));
    s->eligible = malloc(sizeof(int) * (ds->ngroups + 1));
    s->examples = malloc(sizeof(int) * maxc);
    int nswap = N > K + Q ? N : K + Q;
    if ((flags & MELA_EPISODE_DISTINCT_CLASSES) && sp->n > nswap)
        nswap = sp->n;
    s->swaps = malloc(sizeof(int) * nswap);
    s->chosen = malloc(sizeof(int) * N);
    s->picks = malloc(sizeof(int) * (K + Q));
    if (!e->x_support || !e->y_support || !e->l_support || !e->x_query || !e->y_query ||
        !e->l_query || !e->label || !e->split_class || !e->support_index || !e->query_index ||
        !s->pool || !s->gstart || !s->eligible || !s->examples || !s->swaps || !s->chosen || !s->picks)
        goto oom;
    for (int j = 0; j < maxc; j++)
        s->examples[j] = j;
    if (flags & MELA_EPISODE_WITHIN_GROUP) {
        /* Counting sort of split classes by group, stable. */
        int G = ds->ngroups;
        for (int k = 0; k < sp->n; k++)
            s->gstart[ds->classes[sp->classes[k].cls].group + 1]++;
        for (int g = 0; g < G; g++)
            s->gstart[g + 1] += s->gstart[g];
        int *fill = calloc((size_t)G + 1, sizeof(int));
        if (!fill)
            goto oom;
        for (int k = 0; k < sp->n; k++) {
            int g = ds->classes[sp->classes[k].cls].group;
            s->pool[s->gstart[g] + fill[g]++] = k;
        }
        free(fill);
        int best = 0;
        for (int g = 0; g < G; g++) {
            int size = s->gstart[g + 1] - s->gstart[g];
            if (size >= N)
                s->eligible[s->neligible++] = g;
            if (size > best)
                best = size;
        }
        if (s->neligible == 0) {
            mela_set_error("episodes: split %s: no group (alphabet) has N = %d classes; the "
                           "largest has %d",
                           sp->name, N, best);
            mela_sampler_free(s);
            return NULL;
        }
    } else {
        for (int k = 0; k < sp->n; k++)
            s->pool[k] = k;
    }
    if (flags & MELA_EPISODE_DISTINCT_CLASSES) {
        if (flags & MELA_EPISODE_WITHIN_GROUP) {
            mela_set_error("episodes: split %s: within-group and distinct-class episodes are "
                           "not offered together",
                           sp->name);
            mela_sampler_free(s);
            return NULL;
        }
        /* Count the dataset classes the split holds. */
        char *seen = calloc((size_t)ds->nclasses + 1, 1);
        if (!seen)
            goto oom;
        int distinct = 0;
        for (int k = 0; k < sp->n; k++)
            if (!seen[sp->classes[k].cls]) {
                seen[sp->classes[k].cls] = 1;
                distinct++;
            }
        free(seen);
        if (distinct < N) {
            mela_set_error("episodes: split %s has %d different characters (dataset classes), "
                           "fewer than N = %d",
                           sp->name, distinct, N);
            mela_sampler_free(s);
            return NULL;
        }
    }
    return s;
oom:
    mela_sampler_free(s);
    mela_set_error("episodes: split %s: out of memory for N=%d K=%d Q=%d", sp->name, N, K, Q);
    return NULL;
}

/* Draws m distinct entries of a[0..n) into out[0..m), leaving a unchanged.
 * With sp, entries are split classes and any whose dataset class is already
 * among the drawn ones is skipped: each draw is then uniform over the split
 * classes of the characters not yet drawn. When every character has the
 * same rotations (Finn et al.'s split) that is their tasks' draw: N
 * different characters, each rotation equally likely. The caller checked
 * that m different dataset classes exist, so the pool cannot run out.
 * Without sp every draw is kept, the plain partial Fisher-Yates shuffle. */
static void draw_distinct(mela_rng *r, int *a, int n, int m, int *out, int *swaps,
                          const mela_split *sp)
{
    int p = 0;
    for (int j = 0; j < m; p++) {
        int t = p + (int)mela_rng_below(r, (uint32_t)(n - p));
        int v = a[t];
        a[t] = a[p];
        a[p] = v;
        swaps[p] = t;
        int dup = 0;
        for (int q = 0; sp && q < j && !dup; q++)
            dup = sp->classes[out[q]].cls == sp->classes[v].cls;
        if (!dup)
            out[j++] = v;
    }
    for (int q = p - 1; q >= 0; q--) {
        int t = swaps[q], v = a[t];
        a[t] = a[q];
        a[q] = v;
    }
}

const mela_episode *mela_sampler_episode(mela_sampler *s, uint64_t seed, uint64_t i)
{
    mela_episode *e = &s->ep;
    const mela_dataset *ds = s->ds;
    const mela_split *sp = s->sp;
    const int N = e->N, K = e->K, Q = e->Q;
    const size_t img = (size_t)ds->C * ds->H * ds->W;
    mela_rng r = mela_rng_derive(seed, sp->id, i);
    e->index = i;

    int *pool = s->pool, npool = sp->n;
    if (s->flags & MELA_EPISODE_WITHIN_GROUP) {
        int g = s->eligible[mela_rng_below(&r, (uint32_t)s->neligible)];
        e->group = g;
        pool += s->gstart[g];
        npool = s->gstart[g + 1] - s->gstart[g];
    }
    draw_distinct(&r, pool, npool, N, s->chosen, s->swaps,
                  s->flags & MELA_EPISODE_DISTINCT_CLASSES ? sp : NULL);
    for (int j = 0; j < N; j++)
        e->label[j] = j;
    mela_rng_shuffle(&r, e->label, N);

    for (int j = 0; j < N; j++) {
        int k = s->chosen[j];
        e->split_class[j] = k;
        const mela_class *c = &ds->classes[sp->classes[k].cls];
        /* K + Q distinct images: the first K are support, the rest query. */
        draw_distinct(&r, s->examples, c->count, K + Q, s->picks, s->swaps, NULL);
        for (int t = 0; t < K; t++)
            e->support_index[j * K + t] = s->picks[t];
        for (int t = 0; t < Q; t++)
            e->query_index[j * Q + t] = s->picks[K + t];
        for (int t = 0; t < K; t++) {
            int row = j * K + t;
            mela_split_image(ds, sp, k, e->support_index[row], e->x_support + (size_t)row * img);
            e->l_support[row] = e->label[j];
            e->y_support[row] = (float)e->label[j];
        }
        for (int t = 0; t < Q; t++) {
            int row = j * Q + t;
            mela_split_image(ds, sp, k, e->query_index[row], e->x_query + (size_t)row * img);
            e->l_query[row] = e->label[j];
            e->y_query[row] = (float)e->label[j];
        }
    }
    return e;
}
