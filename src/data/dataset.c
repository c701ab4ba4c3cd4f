/* dataset.c - the in-memory dataset: building one class and image at a time,
 * lookup, freeing; plus the hash and small helpers the loaders share. It does
 * not read any file format itself (omniglot.c and folder.c do). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/data_internal.h"

/* ------------------------------------------------------------------ builder */

int dsb_init(ds_builder *b, int C, int H, int W)
{
    memset(b, 0, sizeof *b);
    b->ds = calloc(1, sizeof *b->ds);
    if (!b->ds)
        return -1;
    b->ds->C = C;
    b->ds->H = H;
    b->ds->W = W;
    return 0;
}

static int grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

int dsb_reserve(ds_builder *b, int n)
{
    mela_dataset *ds = b->ds;
    int need = ds->nimages + n;
    if (need <= b->cap_images)
        return 0;
    size_t img = (size_t)ds->C * ds->H * ds->W;
    uint8_t *p = realloc(ds->pixels, (size_t)need * img);
    if (!p)
        return -1;
    ds->pixels = p;
    int16_t *d = realloc(ds->drawer, (size_t)need * sizeof *d);
    if (!d)
        return -1;
    ds->drawer = d;
    b->cap_images = need;
    return 0;
}

int dsb_group(ds_builder *b, const char *name)
{
    mela_dataset *ds = b->ds;
    for (int g = ds->ngroups - 1; g >= 0; g--)
        if (strcmp(ds->groups[g], name) == 0)
            return g;
    if (grow((void **)&ds->groups, &b->cap_groups, ds->ngroups + 1, sizeof(char *)))
        return -1;
    char *s = strdup(name);
    if (!s)
        return -1;
    ds->groups[ds->ngroups] = s;
    return ds->ngroups++;
}

int dsb_class(ds_builder *b, const char *name, int group, int id, int set)
{
    mela_dataset *ds = b->ds;
    if (grow((void **)&ds->classes, &b->cap_classes, ds->nclasses + 1, sizeof(mela_class)))
        return -1;
    mela_class *c = &ds->classes[ds->nclasses];
    c->name = strdup(name);
    if (!c->name)
        return -1;
    c->group = group;
    c->id = id;
    c->set = set;
    c->first = ds->nimages;
    c->count = 0;
    return ds->nclasses++;
}

uint8_t *dsb_image(ds_builder *b, int drawer)
{
    mela_dataset *ds = b->ds;
    if (ds->nclasses == 0)
        return NULL;
    if (ds->nimages >= b->cap_images) {
        int c = b->cap_images ? b->cap_images * 2 : 256;
        if (dsb_reserve(b, c - ds->nimages))
            return NULL;
    }
    size_t img = (size_t)ds->C * ds->H * ds->W;
    ds->drawer[ds->nimages] = (int16_t)drawer;
    ds->classes[ds->nclasses - 1].count++;
    return ds->pixels + (size_t)ds->nimages++ * img;
}

mela_dataset *dsb_finish(ds_builder *b)
{
    mela_dataset *ds = b->ds;
    b->ds = NULL;
    return ds;
}

void dsb_abort(ds_builder *b)
{
    mela_dataset_free(b->ds);
    b->ds = NULL;
}

int dsb_append(ds_builder *b, const mela_dataset *src, int set)
{
    size_t img = (size_t)src->C * src->H * src->W;
    if (dsb_reserve(b, src->nimages))
        return -1;
    for (int c = 0; c < src->nclasses; c++) {
        const mela_class *k = &src->classes[c];
        int g = dsb_group(b, src->groups[k->group]);
        if (g < 0 || dsb_class(b, k->name, g, k->id, set) < 0)
            return -1;
        for (int j = 0; j < k->count; j++) {
            uint8_t *p = dsb_image(b, src->drawer[k->first + j]);
            if (!p)
                return -1;
            memcpy(p, src->pixels + (size_t)(k->first + j) * img, img);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------- public */

void mela_dataset_free(mela_dataset *ds)
{
    if (!ds)
        return;
    for (int c = 0; c < ds->nclasses; c++)
        free(ds->classes[c].name);
    for (int g = 0; g < ds->ngroups; g++)
        free(ds->groups[g]);
    free(ds->classes);
    free(ds->groups);
    free(ds->pixels);
    free(ds->drawer);
    free(ds);
}

int mela_dataset_find(const mela_dataset *ds, const char *group, const char *name)
{
    for (int c = 0; c < ds->nclasses; c++) {
        const mela_class *k = &ds->classes[c];
        if (strcmp(k->name, name) == 0 && (!group || strcmp(ds->groups[k->group], group) == 0))
            return c;
    }
    return -1;
}

/* ------------------------------------------------------------------ helpers */

int ends_with_ci(const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    return n >= e && strcasecmp(name + n - e, ext) == 0;
}

uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

/* FNV-1a on 64-bit words in four independent lanes (so the multiplies
 * overlap), folded together with a final avalanche. Not cryptographic: it
 * tells a changed archive or a damaged cache from a good one. */
uint64_t mela_hash64(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = data;
    const uint64_t prime = 0x100000001b3ULL;
    uint64_t h[4] = {0xcbf29ce484222325ULL ^ seed, 0x84222325cbf29ce4ULL ^ seed,
                     0x9e3779b97f4a7c15ULL ^ seed, 0xd1b54a32d192ed03ULL ^ seed};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * l, 8);
            h[l] = (h[l] ^ w) * prime;
            h[l] ^= h[l] >> 29;
        }
    }
    uint64_t r = h[0] ^ (h[1] * 3) ^ (h[2] * 5) ^ (h[3] * 7);
    for (; i < n; i++)
        r = (r ^ p[i]) * prime;
    r ^= (uint64_t)n;
    r ^= r >> 33;
    r *= 0xff51afd7ed558ccdULL;
    r ^= r >> 33;
    r *= 0xc4ceb9fe1a85ec53ULL;
    r ^= r >> 33;
    return r;
}
