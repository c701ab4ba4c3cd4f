/* shape.c - shapes, numpy broadcasting, and parameter layouts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph_impl.h"

mela_shape mela_shape_make(int nd, const int *d)
{
    mela_shape s = {0, {0, 0, 0, 0}};
    if (nd < 1 || nd > MELA_MAX_DIMS)
        return s; /* nd 0 is invalid everywhere a shape is checked */
    s.nd = nd;
    for (int i = 0; i < nd; i++)
        s.d[i] = d[i];
    return s;
}

size_t mela_shape_numel(mela_shape s)
{
    size_t n = s.nd > 0 ? 1 : 0;
    for (int i = 0; i < s.nd; i++)
        n *= s.d[i] > 0 ? (size_t)s.d[i] : 0;
    return n;
}

int mela_shape_equal(mela_shape a, mela_shape b)
{
    if (a.nd != b.nd)
        return 0;
    for (int i = 0; i < a.nd; i++)
        if (a.d[i] != b.d[i])
            return 0;
    return 1;
}

char *mela_shape_str(mela_shape s, char *buf, size_t n)
{
    size_t k = 0;
    k += snprintf(buf + k, n - k, "[");
    for (int i = 0; i < s.nd && k < n; i++)
        k += snprintf(buf + k, n - k, i ? ", %d" : "%d", s.d[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
    return buf;
}

void shape4(mela_shape s, int d[4])
{
    int pad = 4 - s.nd;
    for (int i = 0; i < 4; i++)
        d[i] = i < pad ? 1 : s.d[i - pad];
}

int shape_broadcast(mela_shape a, mela_shape b, mela_shape *out)
{
    int nd = a.nd > b.nd ? a.nd : b.nd;
    int da[4], db[4];
    shape4(a, da);
    shape4(b, db);
    out->nd = nd;
    for (int i = 0; i < nd; i++) {
        int x = da[4 - nd + i], y = db[4 - nd + i];
        if (x != y && x != 1 && y != 1)
            return -1;
        out->d[i] = x == 1 ? y : x;
    }
    for (int i = nd; i < MELA_MAX_DIMS; i++)
        out->d[i] = 0;
    return 0;
}

void shape_bstrides(mela_shape s, mela_shape out, long str[4])
{
    int ds[4], dout[4];
    shape4(s, ds);
    shape4(out, dout);
    long st = 1;
    for (int i = 3; i >= 0; i--) {
        str[i] = (ds[i] == 1 && dout[i] != 1) ? 0 : st;
        st *= ds[i];
    }
}

/* ------------------------------------------------------------------ layout */

#define LAYOUT_ALIGN 16 /* floats: views start on 64-byte boundaries */

struct mela_layout {
    int n, cap;
    char **names;
    mela_shape *shapes;
    size_t *offsets;
    size_t size;
};

mela_layout *mela_layout_new(void)
{
    mela_layout *L = calloc(1, sizeof *L);
    if (!L)
        mela_set_error("layout: out of memory");
    return L;
}

void mela_layout_free(mela_layout *L)
{
    if (!L)
        return;
    for (int i = 0; i < L->n; i++)
        free(L->names[i]);
    free(L->names);
    free(L->shapes);
    free(L->offsets);
    free(L);
}

int mela_layout_add(mela_layout *L, const char *name, mela_shape shape)
{
    char buf[64];
    if (!name || !*name)
        return mela_set_error("layout: a parameter needs a name");
    if (shape.nd < 1 || mela_shape_numel(shape) == 0)
        return mela_set_error("layout: parameter '%s' has an empty shape %s", name,
                              mela_shape_str(shape, buf, sizeof buf));
    if (mela_layout_find(L, name) >= 0)
        return mela_set_error("layout: parameter '%s' is defined twice", name);
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 16;
        char **nn = realloc(L->names, cap * sizeof *nn);
        if (nn)
            L->names = nn;
        mela_shape *ns = realloc(L->shapes, cap * sizeof *ns);
        if (ns)
            L->shapes = ns;
        size_t *no = realloc(L->offsets, cap * sizeof *no);
        if (no)
            L->offsets = no;
        if (!nn || !ns || !no)
            return mela_set_error("layout: out of memory");
        L->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return mela_set_error("layout: out of memory");
    L->names[L->n] = copy;
    L->shapes[L->n] = shape;
    L->offsets[L->n] = L->size;
    L->size += (mela_shape_numel(shape) + LAYOUT_ALIGN - 1) / LAYOUT_ALIGN * LAYOUT_ALIGN;
    return L->n++;
}

int mela_layout_find(const mela_layout *L, const char *name)
{
    for (int i = 0; i < L->n; i++)
        if (strcmp(L->names[i], name) == 0)
            return i;
    return -1;
}

int mela_layout_count(const mela_layout *L) { return L->n; }
size_t mela_layout_size(const mela_layout *L) { return L->size; }
const char *mela_layout_name(const mela_layout *L, int i) { return L->names[i]; }
mela_shape mela_layout_shape(const mela_layout *L, int i) { return L->shapes[i]; }
size_t mela_layout_offset(const mela_layout *L, int i) { return L->offsets[i]; }
