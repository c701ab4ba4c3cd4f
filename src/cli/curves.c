/* curves.c - the learning curves of `mela train` (OUT_DIR/curves.png),
 * drawn from the run's metrics.csv, so that a run stopped and resumed gets
 * the curves of all of it, not of its last session. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mela_io.h"
#include "mela_learn.h"

typedef struct curves {
    double *x, *train, *vx, *val; /* every record; records with a validation */
    int n, nv, cap;
} curves;

static void curves_free(curves *c) { free(c->x), free(c->train), free(c->vx), free(c->val); }

static int curves_grow(curves *c)
{
    int cap = c->cap ? 2 * c->cap : 256;
    double *b[4] = {realloc(c->x, cap * sizeof *c->x), realloc(c->train, cap * sizeof *c->x),
                    realloc(c->vx, cap * sizeof *c->x), realloc(c->val, cap * sizeof *c->x)};
    c->x = b[0] ? b[0] : c->x, c->train = b[1] ? b[1] : c->train;
    c->vx = b[2] ? b[2] : c->vx, c->val = b[3] ? b[3] : c->val;
    if (!b[0] || !b[1] || !b[2] || !b[3])
        return -1;
    c->cap = cap;
    return 0;
}

/* Records "iteration,seconds,loss,acc,val_loss,val_acc" (nan: none). */
static int curves_read(curves *c, const char *path, int reg)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    if (!f)
        return -1;
    if (!fgets(line, sizeof line, f) || strncmp(line, "iteration,seconds,loss,acc,val_loss,val_acc", 43)) {
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        double v[6];
        char *p = line, *end;
        int k = 0;
        for (; k < 6; k++, p = end + 1) {
            v[k] = strtod(p, &end);
            if (end == p || (*end != ',' && k < 5))
                break;
        }
        if (k < 6 || (c->n == c->cap && curves_grow(c)))
            continue; /* a damaged record, or no memory: the curve misses a point */
        c->x[c->n] = v[0];
        c->train[c->n++] = reg ? v[2] : v[3];
        if (!isnan(v[4])) {
            c->vx[c->nv] = v[0];
            c->val[c->nv++] = reg ? v[4] : v[5];
        }
    }
    fclose(f);
    return 0;
}

void cli_curves_draw(const mela_run_config *rc)
{
    int reg = mela_run_regression(rc);
    char path[600], title[200];
    curves c = {0};
    snprintf(path, sizeof path, "%s/metrics.csv", rc->out_dir);
    if (curves_read(&c, path, reg) == 0 && c.n > 0) {
        mela_series ser[2] = {{reg ? "train query MSE" : "train query accuracy", c.x, c.train, c.n},
                              {reg ? "validation MSE" : "validation accuracy", c.vx, c.val, c.nv}};
        snprintf(path, sizeof path, "%s/curves.png", rc->out_dir);
        snprintf(title, sizeof title, "%s on %s", rc->learner, rc->dataset);
        if (mela_plot_png(path, title, "meta-iteration", 2, ser))
            fprintf(stderr, "mela train: %s\n", mela_last_error());
    }
    curves_free(&c);
}
