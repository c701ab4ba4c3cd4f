/*
 * nas.c - MetaNAS around the run: the model of a run that is not Conv-4 or
 * the MLP (the search network, or a cell network read from a model-definition
 * file), and what a search leaves in its run folder: the discrete
 * architecture as a model-definition file (arch.json) and a picture of the
 * learned cell (cell.png, cell.svg).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sys.h"
#include "io/json.h"
#include "learn/learner.h"
#include "mela_io.h"

/* Search cells have this many intermediate states. */
#define NAS_SEARCH_NODES 2

static int get_int(const json_value *root, const char *path, const char *key, int dflt, int lo, int hi,
                   int *out)
{
    const json_value *v = io_json_find(root, key);
    if (!v) {
        if (dflt < lo)
            return mela_set_error("%s: the model definition has no \"%s\"", path, key);
        *out = dflt;
        return 0;
    }
    if (v->type != JSON_NUMBER || !v->is_int || v->i < lo || v->i > hi)
        return mela_set_error("%s: \"%s\" must be an integer in %d..%d", path, key, lo, hi);
    *out = (int)v->i;
    return 0;
}

int mela_nas_read_model(const char *path, mela_cellnet_spec *s)
{
    uint8_t *text = NULL;
    size_t n = 0;
    if (mela_sys_read_file_max(path, 1 << 20, &text, &n))
        return mela_set_error("model: cannot read the model definition %s (%s)", path, mela_last_error());
    json_value *root = NULL;
    size_t at = 0;
    char why[128];
    if (io_json_parse((const char *)text, n, &root, &at, why, sizeof why)) {
        free(text);
        return mela_set_error("%s: not JSON at byte %zu (%s)", path, at, why);
    }
    free(text);
    int rcode = 0;
    const json_value *kind = io_json_find(root, "mela_model"), *cell = io_json_find(root, "cell");
    memset(s, 0, sizeof *s);
    if (root->type != JSON_OBJECT || !kind || kind->type != JSON_STRING || strcmp(kind->str, "cellnet"))
        rcode = mela_set_error("%s: not a mela model definition (no \"mela_model\": \"cellnet\")", path);
    else if (get_int(root, path, "width", -1, 1, 1024, &s->width) ||
             get_int(root, path, "cells", -1, 1, 8, &s->cells) ||
             get_int(root, path, "nodes", -1, 1, MELA_CELL_MAX_NODES, &s->nodes) ||
             get_int(root, path, "stem_stride", 2, 1, 2, &s->stem_stride) ||
             get_int(root, path, "no_pool", 0, 0, 1, &s->no_pool))
        rcode = -1;
    else if (!cell || cell->type != JSON_ARRAY || cell->n != mela_cell_edges(s->nodes))
        rcode = mela_set_error("%s: \"cell\" must list the op of each of the %d edges", path,
                               mela_cell_edges(s->nodes));
    for (int e = 0; !rcode && e < cell->n; e++) {
        const json_value *v = &cell->items[e];
        if ((s->ops[e] = v->type == JSON_STRING ? mela_cell_op_find(v->str) : -1) < 0)
            rcode = mela_set_error("%s: edge %d of \"cell\" is not one of zero, skip, avg3, max3, "
                                   "conv3, conv5, dil3, sep3", path, e);
    }
    io_json_free(root);
    return rcode;
}

/* Appends printf output to buf[*k..cap) (truncation is checked by the caller). */
#define PUT(...) (*k += snprintf(buf + *k, *k < cap ? cap - *k : 0, __VA_ARGS__))

static void model_json(char *buf, size_t cap, size_t *k, const mela_cellnet_spec *s, const float *weight)
{
    int E = mela_cell_edges(s->nodes);
    PUT("{\n  \"mela_model\": \"cellnet\",\n  \"width\": %d,\n  \"cells\": %d,\n  \"nodes\": %d,\n"
        "  \"stem_stride\": %d,\n  \"no_pool\": %d,\n  \"cell\": [", s->width, s->cells, s->nodes,
        s->stem_stride, s->no_pool);
    for (int e = 0; e < E; e++)
        PUT("%s\"%s\"", e ? ", " : "", mela_cell_op_name(s->ops[e]));
    PUT("]");
    if (weight) {
        PUT(",\n  \"weight\": [");
        for (int e = 0; e < E; e++)
            PUT("%s%.4f", e ? ", " : "", (double)weight[e]);
        PUT("]");
    }
    PUT("\n}\n");
}

/* The cell as a picture: states left to right, edges as arcs labelled with
 * their op and weight, dashed lines into the output (their sum). */
static void cell_svg(char *buf, size_t cap, size_t *k, const mela_cellnet_spec *s, const float *weight,
                     const char *title)
{
    int n = s->nodes, W = 140 + 170 * (n + 1), H = 120 + 45 * n + 60;
    double y0 = H - 60;
    PUT("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
        "font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
        "<text x=\"10\" y=\"20\" font-size=\"14\">%s</text>\n", W, H, title);
    for (int j = 1; j <= n; j++)
        for (int i = 0; i < j; i++) {
            int e = j * (j - 1) / 2 + i;
            if (s->ops[e] == MELA_OP_ZERO)
                continue;
            double xa = 70 + 170 * i, xb = 70 + 170 * j, cy = y0 - 70 * (j - i);
            PUT("<path d=\"M %.0f %.0f Q %.0f %.0f %.0f %.0f\" fill=\"none\" stroke=\"#1f77b4\" "
                "stroke-width=\"2\"/>\n", xa, y0 - 18, (xa + xb) / 2, cy, xb, y0 - 18);
            PUT("<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s", (xa + xb) / 2, (y0 + cy) / 2 - 12,
                mela_cell_op_name(s->ops[e]));
            if (weight)
                PUT(" (%.2f)", (double)weight[e]);
            PUT("</text>\n");
        }
    double xo = 70 + 170 * (n + 1);
    for (int j = 1; j <= n; j++)
        PUT("<line x1=\"%d\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"gray\" stroke-dasharray=\"5,4\"/>\n",
            70 + 170 * j + 30, y0 + 8, xo - 30, y0 + 8);
    for (int j = 0; j <= n + 1; j++) {
        char name[32];
        if (j == 0)
            snprintf(name, sizeof name, "input");
        else if (j <= n)
            snprintf(name, sizeof name, "state %d", j);
        else
            snprintf(name, sizeof name, "output (sum)");
        PUT("<rect x=\"%d\" y=\"%.0f\" width=\"%d\" height=\"36\" rx=\"6\" fill=\"%s\" stroke=\"black\"/>\n"
            "<text x=\"%d\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", 70 + 170 * j - 45, y0 - 18,
            90, j == 0 || j > n ? "#e8e8e8" : "#ffe9a8", 70 + 170 * j, y0 + 5, name);
    }
    PUT("<text x=\"10\" y=\"%d\" font-size=\"11\" fill=\"gray\">each of the %d cells: "
        "the same ops, weights of its own; a 2x2 max-pool after each</text>\n</svg>\n", H - 8, s->cells);
}
#undef PUT

/* The cell as a PNG: the same picture as cell_svg, drawn by mela_plot_dag_png. */
static int cell_png(const char *path, const mela_cellnet_spec *s, const float *weight, const char *title)
{
    const char *nodes[MELA_CELL_MAX_NODES + 2];
    char names[MELA_CELL_MAX_NODES + 2][16], labels[2 * MELA_CELL_MAX_EDGES][32];
    const char *lab[2 * MELA_CELL_MAX_EDGES];
    int from[2 * MELA_CELL_MAX_EDGES], to[2 * MELA_CELL_MAX_EDGES], ne = 0, n = s->nodes;
    for (int j = 0; j <= n + 1; j++) {
        snprintf(names[j], sizeof names[j], j == 0 ? "input" : j <= n ? "state %d" : "output", j);
        nodes[j] = names[j];
    }
    for (int j = 1; j <= n; j++)
        for (int i = 0; i < j; i++) {
            int e = j * (j - 1) / 2 + i;
            if (s->ops[e] == MELA_OP_ZERO)
                continue;
            if (weight)
                snprintf(labels[ne], sizeof labels[ne], "%s (%.2f)", mela_cell_op_name(s->ops[e]), (double)weight[e]);
            else
                snprintf(labels[ne], sizeof labels[ne], "%s", mela_cell_op_name(s->ops[e]));
            lab[ne] = labels[ne], from[ne] = i, to[ne++] = j;
        }
    for (int j = 1; j <= n; j++) /* the output is the sum of the states */
        snprintf(labels[ne], sizeof labels[ne], "+"), lab[ne] = labels[ne], from[ne] = j, to[ne++] = n + 1;
    char note[128];
    snprintf(note, sizeof note, "each of the %d cells: these ops, weights of its own; a 2x2 max-pool after each",
             s->cells);
    return mela_plot_dag_png(path, title, n + 2, nodes, ne, from, to, lab, note);
}

/* Writes text to path in one step (a reader sees the old or the new file). */
static int write_text(const char *path, const char *text, size_t n)
{
    char *tmp;
    int fd = mela_sys_temp_open(path, &tmp);
    if (fd < 0)
        return -1;
    int ok = mela_sys_write_all(fd, path, text, n) == 0;
    return mela_sys_temp_finish(fd, tmp, path, ok);
}

static int write_built(const char *path, char *buf, size_t cap, size_t k)
{
    if (k >= cap)
        return mela_set_error("%s: the text does not fit %zu bytes", path, cap);
    return write_text(path, buf, k);
}

int mela_nas_write_model(const char *path, const mela_cellnet_spec *s, const float *weight)
{
    char buf[2048];
    size_t k = 0;
    if (s->search || !mela_cell_op_name(s->ops[0]))
        return mela_set_error("%s: only a discrete cell network can be written", path);
    model_json(buf, sizeof buf, &k, s, weight);
    return write_built(path, buf, sizeof buf, k);
}

int mela_nas_search_spec(const mela_run_config *rc, int outputs, mela_cellnet_spec *s)
{
    memset(s, 0, sizeof *s);
    *s = (mela_cellnet_spec){.channels = 1, .size = rc->image_size, .width = rc->width,
                             .cells = rc->depth, .nodes = NAS_SEARCH_NODES, .stem_stride = 2,
                             .outputs = outputs, .search = 1};
    if (!strcmp(rc->model, "search")) {
        s->schedule = mela_nas_scheduled(rc);
        return 0;
    }
    if (mela_nas_read_model(rc->model, s))
        return -1;
    s->channels = 1, s->size = rc->image_size, s->outputs = outputs;
    return 0;
}

int mela_nas_write(const mela_run_config *rc, const mela_layout *L, const float *theta, const char *dir,
                   const char *prefix)
{
    const char *pre = prefix ? prefix : "";
    mela_cellnet_spec s, d;
    int a = mela_layout_find(L, "alpha");
    if (strcmp(rc->model, "search") || a < 0)
        return mela_set_error("nas: the run's model is not the search network (model %s)", rc->model);
    if (mela_nas_search_spec(rc, rc->train.ways, &s))
        return -1;
    float weight[MELA_CELL_MAX_EDGES], alpha[MELA_CELL_MAX_EDGES * MELA_CELL_OPS];
    size_t na = mela_shape_numel(mela_layout_shape(L, a));
    int sv = mela_layout_find(L, "alpha.schedule");
    float T = sv >= 0 ? theta[mela_layout_offset(L, sv)] : 1.0f;
    if (na > sizeof alpha / sizeof *alpha || !(T > 0))
        return mela_set_error("nas: alpha has %zu entries (at most %zu) or the temperature is %g", na,
                              sizeof alpha / sizeof *alpha, (double)T);
    for (size_t j = 0; j < na; j++) /* the mixture's logits at the weights' temperature */
        alpha[j] = theta[mela_layout_offset(L, a) + j] / T;
    if (mela_cellnet_derive(&s, alpha, &d, weight))
        return -1;
    size_t cap = strlen(dir) + strlen(pre) + 32;
    char *path = malloc(cap), buf[8192];
    if (!path)
        return mela_set_error("nas: out of memory");
    snprintf(path, cap, "%s/%sarch.json", dir, pre);
    int rcode = mela_nas_write_model(path, &d, weight);
    if (!rcode) {
        size_t k = 0;
        char title[200];
        snprintf(title, sizeof title, "MetaNAS cell (%s, %d-way %d-shot; edge: op (softmax weight))",
                 rc->learner, rc->train.ways, rc->train.shots);
        cell_svg(buf, sizeof buf, &k, &d, weight, title);
        snprintf(path, cap, "%s/%scell.svg", dir, pre);
        rcode = write_built(path, buf, sizeof buf, k);
        snprintf(path, cap, "%s/%scell.png", dir, pre);
        if (!rcode)
            rcode = cell_png(path, &d, weight, title);
    }
    free(path);
    return rcode;
}

void mela_nas_schedule(int it, int iterations, int warmup, float t_end, float *T, float *g)
{
    if (it <= warmup || iterations <= warmup) {
        *T = 1.0f, *g = it <= warmup ? 0.0f : 1.0f;
        return;
    }
    double frac = it >= iterations ? 1.0 : (double)(it - warmup) / (double)(iterations - warmup);
    double t = 1.0 - (1.0 - (double)t_end) * frac;
    *T = (float)t;
    *g = (float)(t * t);
}

int mela_nas_scheduled(const mela_run_config *rc) { return rc->nas_temp_end != 1.0f || rc->nas_warmup > 0; }

void mela_nas_set_schedule(const mela_run_config *rc, const mela_layout *L, float *theta, int it)
{
    int v = mela_layout_find(L, "alpha.schedule");
    if (v < 0)
        return;
    float *p = theta + mela_layout_offset(L, v);
    mela_nas_schedule(it, rc->iterations, rc->nas_warmup, rc->nas_temp_end, &p[0], &p[1]);
}
