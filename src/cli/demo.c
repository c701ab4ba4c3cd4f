/* demo.c - `mela demo`: builds the MAML sinusoid network (MLP 1-40-40-1),
 * trains it with Adam on one sine curve and prints the loss falling. A smoke
 * test of the whole engine from the command line. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sys.h"
#include "cli/cli.h"
#include "mela_nn.h"

static void demo_help(void)
{
    printf("Usage: mela demo [--steps N] [--seed S] [--lr LR]\n"
           "\n"
           "Trains an MLP 1-40-40-1 (relu) with Adam to fit y = 2 sin(x - 0.5) on\n"
           "x in [-5, 5], 64 points a step, and prints the mean squared error.\n"
           "\n"
           "  --steps N   training steps (default 1000, 1..1000000)\n"
           "  --seed S    random seed (default 1, 0..9223372036854775807)\n"
           "  --lr LR     Adam learning rate (default 0.003, in (0, 1])\n"
           "  -h, --help  show this help\n");
}

int cli_demo(int argc, char **argv)
{
    long steps = 1000;
    unsigned long long seed = 1;
    double lr = 0.003;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            demo_help();
            return 0;
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            long long v;
            if (cli_int_arg("demo", "--steps", argv[++i], 1, 1000000, &v))
                return 2;
            steps = (long)v;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            long long v; /* the range of mela train's --seed */
            if (cli_int_arg("demo", "--seed", argv[++i], 0, INT64_MAX, &v))
                return 2;
            seed = (unsigned long long)v;
        } else if (!strcmp(argv[i], "--lr") && i + 1 < argc) {
            lr = strtod(argv[++i], &end);
            if (*end || !(lr > 0 && lr <= 1)) {
                fprintf(stderr, "mela demo: --lr %s is not in (0, 1]\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "mela demo: unknown option '%s' (see 'mela demo --help')\n", argv[i]);
            return 2;
        }
    }

    enum { B = 64 };
    int hidden[2] = {40, 40};
    mela_model *m = mela_mlp_new(1, hidden, 2, 1);
    mela_graph *g = mela_graph_new();
    mela_node w[MELA_MODEL_MAX_PARAMS], dw[MELA_MODEL_MAX_PARAMS];
    int np = mela_model_params(m, g, w);
    mela_node x = mela_input(g, "x", MELA_SHAPE(B, 1));
    mela_node t = mela_input(g, "t", MELA_SHAPE(B, 1));
    mela_node loss = mela_mse(g, mela_model_forward(m, g, w, x), t);
    mela_grad(g, loss, MELA_NONE, np, w, dw);
    if (mela_graph_error(g)) {
        fprintf(stderr, "mela demo: %s\n", mela_graph_error(g));
        return 1;
    }
    /* The gradient of the whole flat buffer: one plan output per view. */
    mela_node outs[MELA_MODEL_MAX_PARAMS + 1];
    outs[0] = loss;
    memcpy(outs + 1, dw, np * sizeof *dw);
    mela_plan *p = mela_plan_new(g, np + 1, outs);
    mela_exec *e = p ? mela_exec_new(p) : NULL;
    size_t size = mela_model_size(m);
    float *theta = calloc(size, sizeof *theta), *grad = calloc(size, sizeof *grad);
    mela_adam adam;
    if (!e || !theta || !grad || mela_adam_init(&adam, size, (float)lr)) {
        fprintf(stderr, "mela demo: %s\n", mela_last_error());
        return 1;
    }
    mela_rng r = mela_rng_new(seed);
    mela_model_init(m, theta, &r);
    float xs[B], ts[B];
    mela_exec_bind_params(e, theta);
    mela_exec_bind(e, x, xs);
    mela_exec_bind(e, t, ts);
    const mela_layout *L = mela_model_layout(m);
    printf("mela demo: %s, %zu parameters, Adam lr %g, %ld steps\n", mela_model_describe(m), size,
           lr, steps);
    double t0 = mela_sys_now(), avg = 0;
    for (long s = 1; s <= steps; s++) {
        for (int i = 0; i < B; i++) {
            xs[i] = -5.0f + 10.0f * mela_rng_uniform(&r);
            ts[i] = 2.0f * sinf(xs[i] - 0.5f);
        }
        if (mela_exec_run(e)) {
            fprintf(stderr, "mela demo: %s\n", mela_last_error());
            return 1;
        }
        for (int i = 0; i < np; i++)
            memcpy(grad + mela_layout_offset(L, i), mela_exec_value(e, dw[i]),
                   mela_shape_numel(mela_layout_shape(L, i)) * sizeof *grad);
        mela_adam_step(&adam, theta, grad);
        avg += mela_exec_value(e, loss)[0];
        long every = steps >= 10 ? steps / 10 : 1;
        if (s % every == 0 || s == steps) {
            double el = mela_sys_now() - t0;
            printf("step %6ld  mse %.5f  %.0f steps/s\n", s, avg / (double)(s % every ? s % every : every),
                   s / el);
            avg = 0;
        }
    }
    mela_adam_free(&adam);
    free(theta);
    free(grad);
    mela_exec_free(e);
    mela_plan_free(p);
    mela_graph_free(g);
    mela_model_free(m);
    return 0;
}
