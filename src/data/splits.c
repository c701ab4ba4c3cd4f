/* splits.c - which (class, rotation) pairs a split holds: Vinyals' split
 * files, Finn et al.'s random 1,100 / 100 / 423 characters, Lake's
 * background / evaluation, and "all classes". Also renders one image of a split class with its rotation.
 * Sampling episodes from a split is episode.c's job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sys.h"
#include "data/data_internal.h"

static mela_split *split_new(const char *name, int cap)
{
    mela_split *sp = calloc(1, sizeof *sp);
    if (!sp || !(sp->classes = malloc(sizeof *sp->classes * (size_t)(cap > 0 ? cap : 1)))) {
        free(sp);
        mela_set_error("split %s: out of memory", name);
        return NULL;
    }
    snprintf(sp->name, sizeof sp->name, "%s", name);
    sp->id = fnv1a64(sp->name);
    return sp;
}

void mela_split_free(mela_split *sp)
{
    if (!sp)
        return;
    free(sp->classes);
    free(sp);
}

static int need_square(const mela_dataset *ds, const char *name)
{
    if (ds->H != ds->W)
        return mela_set_error("split %s: rotations need square images, not %dx%d", name, ds->H,
                              ds->W);
    return 0;
}

/* Reads a Vinyals split file into (class, rotation) pairs. */
static mela_split *read_vinyals(const mela_dataset *ds, const char *dir, const char *which,
                                const char *name)
{
    size_t n = strlen(dir) + strlen(which) + 32;
    char *path = malloc(n);
    if (!path) {
        mela_set_error("split %s: out of memory", name);
        return NULL;
    }
    snprintf(path, n, "%s/splits/vinyals/%s.txt", dir, which);
    uint8_t *text = NULL;
    size_t size = 0;
    mela_split *sp = NULL;
    if (mela_sys_read_file(path, &text, &size)) {
        mela_sys_error_context("split %s", name);
        goto done;
    }
    int lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';
    sp = split_new(name, lines);
    if (!sp)
        goto done;
    int last = -1, lineno = 0;
    for (char *line = (char *)text; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r')
            line[--len] = 0;
        if (len == 0) {
            line = next;
            continue;
        }
        char *s1 = strchr(line, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
        int deg = -1;
        if (s2 && strlen(s2 + 1) == 6 && strncmp(s2 + 1, "rot", 3) == 0 &&
            sscanf(s2 + 4, "%3d", &deg) == 1 && deg % 90 == 0 && deg >= 0 && deg < 360) {
            *s1 = 0;
            *s2 = 0;
        } else {
            mela_set_error("split %s: %s:%d: \"%s\" is not Alphabet/characterNN/rotDDD", name,
                           path, lineno, line);
            mela_split_free(sp);
            sp = NULL;
            goto done;
        }
        int c = -1;
        if (last >= 0 && strcmp(ds->classes[last].name, s1 + 1) == 0 &&
            strcmp(ds->groups[ds->classes[last].group], line) == 0)
            c = last;
        else
            c = mela_dataset_find(ds, line, s1 + 1);
        if (c < 0) {
            mela_set_error("split %s: %s:%d: character %s/%s is not in the dataset", name, path,
                           lineno, line, s1 + 1);
            mela_split_free(sp);
            sp = NULL;
            goto done;
        }
        last = c;
        sp->classes[sp->n].cls = c;
        sp->classes[sp->n].rot = deg / 90;
        if (deg && need_square(ds, name)) {
            mela_split_free(sp);
            sp = NULL;
            goto done;
        }
        sp->n++;
        line = next;
    }
    if (sp->n == 0) {
        mela_set_error("split %s: %s: no classes", name, path);
        mela_split_free(sp);
        sp = NULL;
    }
done:
    free(text);
    free(path);
    return sp;
}

mela_split *mela_split_vinyals(const mela_dataset *ds, const char *omniglot_dir, const char *which)
{
    if (!which || (strcmp(which, "train") && strcmp(which, "val") && strcmp(which, "test") &&
                   strcmp(which, "trainval"))) {
        mela_set_error("split vinyals: \"%s\" is not train, val, test or trainval",
                       which ? which : "(null)");
        return NULL;
    }
    char name[64];
    snprintf(name, sizeof name, "vinyals/%s", which);
    return read_vinyals(ds, omniglot_dir, which, name);
}

static int int_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

mela_split *mela_split_finn(const mela_dataset *ds, const char *which)
{
    /* [lo, hi) of the shuffled characters */
    int lo, hi;
    if (!which)
        which = "(null)";
    if (!strcmp(which, "train"))
        lo = 0, hi = MELA_FINN_TRAIN;
    else if (!strcmp(which, "val"))
        lo = MELA_FINN_TRAIN, hi = MELA_FINN_TRAIN + MELA_FINN_VAL;
    else if (!strcmp(which, "trainval"))
        lo = 0, hi = MELA_FINN_TRAIN + MELA_FINN_VAL;
    else if (!strcmp(which, "test"))
        lo = MELA_FINN_TRAIN + MELA_FINN_VAL, hi = ds ? ds->nclasses : 0;
    else {
        mela_set_error("split finn: \"%s\" is not train, val, test or trainval", which);
        return NULL;
    }
    char name[64];
    snprintf(name, sizeof name, "finn/%s", which);
    if (!ds) {
        mela_set_error("split %s: no dataset", name);
        return NULL;
    }
    if (ds->nclasses <= MELA_FINN_TRAIN + MELA_FINN_VAL) {
        mela_set_error("split %s: the dataset has %d characters; Finn et al.'s split takes "
                       "%d for training and %d for validation and tests on the rest, so it "
                       "needs more than %d (Omniglot's background and evaluation sets "
                       "together have 1,623)",
                       name, ds->nclasses, MELA_FINN_TRAIN, MELA_FINN_VAL,
                       MELA_FINN_TRAIN + MELA_FINN_VAL);
        return NULL;
    }
    if (need_square(ds, name))
        return NULL;
    int *order = malloc(sizeof *order * (size_t)ds->nclasses);
    mela_split *sp = order ? split_new(name, 4 * (hi - lo)) : NULL;
    if (!sp) {
        free(order);
        if (!order)
            mela_set_error("split %s: out of memory", name);
        return NULL;
    }
    for (int c = 0; c < ds->nclasses; c++)
        order[c] = c;
    mela_rng r = mela_rng_derive(MELA_FINN_SEED, fnv1a64("finn"), 0);
    mela_rng_shuffle(&r, order, ds->nclasses);
    /* Each character of [lo, hi) in its 4 rotations, in the dataset's order. */
    qsort(order + lo, (size_t)(hi - lo), sizeof *order, int_cmp);
    for (int k = lo; k < hi; k++)
        for (int rot = 0; rot < 4; rot++) {
            sp->classes[sp->n].cls = order[k];
            sp->classes[sp->n].rot = rot;
            sp->n++;
        }
    free(order);
    return sp;
}

/* The ten evaluation alphabets of Lake et al.'s 20 one-shot runs; Koch et
 * al. test on these and validate on the other ten. */
static const char *const lake_run_alphabets[10] = {
    "Atlantean", "Ge_ez", "Glagolitic", "Gurmukhi", "Kannada", "Malayalam", "Manipuri",
    "Old_Church_Slavonic_(Cyrillic)", "Tengwar", "Tibetan"};

static int in_lake_runs(const char *alphabet)
{
    for (int i = 0; i < 10; i++)
        if (strcmp(alphabet, lake_run_alphabets[i]) == 0)
            return 1;
    return 0;
}

mela_split *mela_split_lake(const mela_dataset *ds, const char *which)
{
    int set, sub = 0; /* sub: 0 every alphabet, 1 Lake's ten, 2 the other ten */
    if (which && strcmp(which, "train") == 0)
        set = 0;
    else if (which && strcmp(which, "test") == 0)
        set = 1;
    else if (which && strcmp(which, "koch_test") == 0)
        set = 1, sub = 1;
    else if (which && strcmp(which, "koch_val") == 0)
        set = 1, sub = 2;
    else {
        mela_set_error("split lake: \"%s\" is not train, test, koch_val or koch_test",
                       which ? which : "(null)");
        return NULL;
    }
    char name[64];
    snprintf(name, sizeof name, "lake/%s", which);
    mela_split *sp = split_new(name, ds->nclasses);
    if (!sp)
        return NULL;
    for (int c = 0; c < ds->nclasses; c++) {
        if (ds->classes[c].set != set)
            continue;
        if (sub && in_lake_runs(ds->groups[ds->classes[c].group]) != (sub == 1))
            continue;
        sp->classes[sp->n].cls = c;
        sp->classes[sp->n].rot = 0;
        sp->n++;
    }
    if (sp->n == 0) {
        mela_set_error("split %s: the dataset has no %s characters", name,
                       set ? "images_evaluation" : "images_background");
        mela_split_free(sp);
        return NULL;
    }
    return sp;
}

mela_split *mela_split_all(const mela_dataset *ds, const char *name, const int *rots, int nrot)
{
    static const int zero = 0;
    if (!rots || nrot <= 0)
        rots = &zero, nrot = 1;
    if (!name)
        name = "all";
    for (int r = 0; r < nrot; r++) {
        if (rots[r] < 0 || rots[r] > 3) {
            mela_set_error("split %s: rotation %d is not 0..3 quarter turns", name, rots[r]);
            return NULL;
        }
        if (rots[r] && need_square(ds, name))
            return NULL;
    }
    mela_split *sp = split_new(name, ds->nclasses * nrot);
    if (!sp)
        return NULL;
    for (int c = 0; c < ds->nclasses; c++)
        for (int r = 0; r < nrot; r++) {
            sp->classes[sp->n].cls = c;
            sp->classes[sp->n].rot = rots[r];
            sp->n++;
        }
    if (sp->n == 0) {
        mela_set_error("split %s: the dataset has no classes", name);
        mela_split_free(sp);
        return NULL;
    }
    return sp;
}

void mela_split_image(const mela_dataset *ds, const mela_split *sp, int k, int j, float *out)
{
    const mela_split_class *sc = &sp->classes[k];
    const uint8_t *img = mela_dataset_image(ds, sc->cls, j);
    const int H = ds->H, W = ds->W;
    const float s = 1.0f / 255.0f;
    for (int ch = 0; ch < ds->C; ch++) {
        const uint8_t *in = img + (size_t)ch * H * W;
        float *o = out + (size_t)ch * H * W;
        /* np.rot90(in, r): counter-clockwise quarter turns (square when r != 0). */
        switch (sc->rot) {
        case 0:
            for (int i = 0; i < H * W; i++)
                o[i] = in[i] * s;
            break;
        case 1:
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    o[y * W + x] = in[x * W + (W - 1 - y)] * s;
            break;
        case 2:
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    o[y * W + x] = in[(H - 1 - y) * W + (W - 1 - x)] * s;
            break;
        default:
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    o[y * W + x] = in[(H - 1 - x) * W + y] * s;
            break;
        }
    }
}
