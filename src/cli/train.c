/* train.c - `mela train` and `mela eval`: options in, progress, curves and
 * results out; the work is mela_run_* of the library. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mela_io.h"
#include "mela_learn.h"

/* Where `mela train` looks for Omniglot unless told: the repository's
 * layout, ../shared beside the checkout. */
#define CLI_DATA_DIR "../shared/data/omniglot"

/* "--inner-lr" and "--inner_lr" both name the key "inner_lr". */
static const char *opt_key(const char *arg, char *key, size_t n)
{
    if (strncmp(arg, "--", 2))
        return NULL;
    snprintf(key, n, "%s", arg + 2);
    for (char *p = key; *p; p++)
        if (*p == '-')
            *p = '_';
    return key;
}

/* The options with the defaults of the learner, dataset and ways given. */
static void train_help(const char *learner, const char *dataset, int ways)
{
    mela_run_config rc;
    if (mela_run_defaults(&rc, learner, dataset, ways ? ways : 5))
        mela_run_defaults(&rc, "maml", "omniglot", 5);
    printf("Usage: mela train [--key value]...\n"
           "\n"
           "Meta-trains a learner and writes OUT_DIR/best.safetensors (best validation),\n"
           "OUT_DIR/last.safetensors and OUT_DIR/metrics.{jsonl,csv}. Then evaluates the best\n"
           "checkpoint on the fixed test episodes. Defaults follow Finn et al. (2017) for the\n"
           "chosen --learner, --dataset and --ways (maml: 5-way 1 step of 0.4, meta-batch 32; 20-way\n"
           "gives 5 steps of 0.1 and meta-batch 16; sinusoid gives the 1-40-40-1 MLP, K = 10,\n"
           "1 step of 0.01, meta-batch 25, 70,000 iterations).\n"
           "\n"
           "Options (key: default for %s on %s, %d-way; 'mela train --learner L [--ways N]\n"
           "--help' shows L's):\n", rc.learner, rc.dataset, rc.train.ways);
    snprintf(rc.data_dir, sizeof rc.data_dir, "%s", CLI_DATA_DIR);
    char buf[600];
    const char *help;
    for (int i = 0;; i++) {
        const char *k = mela_run_option(i, &rc, buf, sizeof buf, &help);
        if (!k)
            break;
        char flag[64], shown[64];
        snprintf(flag, sizeof flag, "%s", k);
        for (char *p = flag; *p; p++) /* printed as --inner-lr; --inner_lr works too */
            if (*p == '_')
                *p = '-';
        if (strchr(buf, '.') || strchr(buf, 'e')) { /* floats: short form */
            char *end;
            double v = strtod(buf, &end);
            if (!*end) {
                snprintf(shown, sizeof shown, "%g", v);
                snprintf(buf, sizeof buf, "%s", shown);
            }
        }
        printf("  --%-16s %s (default: %s)\n", flag, help, buf[0] ? buf : "\"\"");
    }
    printf("\nLearners:\n");
    for (int i = 0; mela_learner_info_at(i); i++)
        printf("  %-10s %s\n", mela_learner_info_at(i)->name, mela_learner_info_at(i)->about);
    printf("\nMetric learners (protonet, matchnet, siamese) use the max-pool Conv-4 as an\n"
           "embedding: protonet trains 60-way with 5 queries (Snell et al.) and tests on\n"
           "--test-ways; siamese trains on --pairs pairs of the Lake/Koch split and tests\n"
           "20-way within-alphabet one-shot.\n\n");
    printf("  --report N         print progress every N iterations (default 100)\n"
           "  -h, --help         show this help\n"
           "\n"
           "Examples:\n"
           "  mela train --dataset sinusoid --shots 5 --iterations 20000\n"
           "  mela train --learner fomaml --ways 20 --data-dir ../shared/data/omniglot\n");
}

static void fmt_time(double s, char *buf, size_t n)
{
    if (!isfinite(s) || s < 0)
        snprintf(buf, n, "?");
    else if (s >= 3600)
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* What the progress reports leave: the learning curves, drawn at the end. */
typedef struct curves {
    const mela_run_config *rc;
    double *x, *train, *vx, *val; /* every report; validations only */
    int n, nv, cap;
} curves;

static void curves_add(curves *c, const mela_progress *p)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        double *b[4] = {realloc(c->x, cap * sizeof *c->x), realloc(c->train, cap * sizeof *c->x),
                        realloc(c->vx, cap * sizeof *c->x), realloc(c->val, cap * sizeof *c->x)};
        c->x = b[0] ? b[0] : c->x, c->train = b[1] ? b[1] : c->train;
        c->vx = b[2] ? b[2] : c->vx, c->val = b[3] ? b[3] : c->val;
        if (!b[0] || !b[1] || !b[2] || !b[3])
            return; /* the curve misses a point; the run goes on */
        c->cap = cap;
    }
    int reg = mela_run_regression(c->rc);
    c->x[c->n] = p->iteration;
    c->train[c->n++] = reg ? p->loss : p->acc;
    if (p->validated) {
        c->vx[c->nv] = p->iteration;
        c->val[c->nv++] = reg ? p->val_loss : p->val_acc;
    }
}

static void curves_draw(curves *c)
{
    const mela_run_config *rc = c->rc;
    int reg = mela_run_regression(rc);
    if (c->n > 0) {
        mela_series ser[2] = {{reg ? "train query MSE" : "train query accuracy", c->x, c->train, c->n},
                              {reg ? "validation MSE" : "validation accuracy", c->vx, c->val, c->nv}};
        char path[600], title[200];
        snprintf(path, sizeof path, "%s/curves.png", rc->out_dir);
        snprintf(title, sizeof title, "%s on %s", rc->learner, rc->dataset);
        if (mela_plot_png(path, title, "meta-iteration", 2, ser))
            fprintf(stderr, "mela train: %s\n", mela_last_error());
    }
    free(c->x), free(c->train), free(c->vx), free(c->val);
}

static void progress(const mela_progress *p, void *ctx)
{
    curves *c = ctx;
    int reg = mela_run_regression(c->rc);
    char el[32], eta[32];
    curves_add(c, p);
    fmt_time(p->seconds, el, sizeof el);
    fmt_time(p->eta, eta, sizeof eta);
    if (reg)
        printf("iter %7d/%d  mse %.4f", p->iteration, p->iterations, p->loss);
    else
        printf("iter %7d/%d  loss %.4f  acc %5.1f%%", p->iteration, p->iterations, p->loss, 100 * p->acc);
    if (p->validated) {
        if (reg)
            printf("  val mse %.4f (best %.4f)", p->val_loss, -p->best_val);
        else
            printf("  val acc %5.1f%% (best %5.1f%%)", 100 * p->val_acc, 100 * p->best_val);
    }
    printf("  %.1f tasks/s  %s elapsed, %s left\n", p->tasks_per_second, el, eta);
    fflush(stdout);
}

static void print_result(const char *what, const mela_eval_result *r)
{
    if (r->regression)
        printf("%s: mse %.4f +- %.4f (95%% CI, %d tasks, %d-shot, %d steps)\n", what, r->loss,
               r->loss_ci, r->episodes, r->shots, r->steps);
    else
        printf("%s: accuracy %.2f%% +- %.2f%% (95%% CI, %d episodes, %d-way %d-shot, %d steps)\n",
               what, 100 * r->acc, 100 * r->acc_ci, r->episodes, r->ways, r->shots, r->steps);
}

static int is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

/* One line: what is about to be trained. */
static void print_plan(const mela_run_config *rc)
{
    const mela_learner_info *info = mela_learner_find(rc->learner);
    mela_task_spec te = mela_run_test_spec(rc);
    if (mela_run_regression(rc))
        printf("mela train: %s on %s, K = %d points", rc->learner, rc->dataset, rc->train.shots);
    else if (info->compares)
        printf("mela train: %s on %s (%s split), %d pairs a batch, tested %d-way %d-shot", rc->learner,
               rc->dataset, rc->split, rc->pairs, te.ways, te.shots);
    else
        printf("mela train: %s on %s, %d-way %d-shot (tested %d-way %d-shot)", rc->learner, rc->dataset,
               rc->train.ways, rc->train.shots, te.ways, te.shots);
    if (info->adapts)
        printf(", %d inner step(s) of %g (test %d)", rc->steps, (double)rc->inner_lr, rc->test_steps);
    printf(", meta-batch %d, %d iterations, %d thread(s) -> %s\n", rc->meta_batch, rc->iterations,
           rc->threads, rc->out_dir);
    fflush(stdout);
}

int cli_train(int argc, char **argv)
{
    const char *learner = "maml", *dataset = "omniglot";
    int ways = 0, test_ways = 0, report = 100; /* defaults follow the test ways when given */
    char key[64];
    int help = 0; /* help shows the defaults of the learner, dataset and ways given */
    for (int i = 1; i < argc; i++)
        help |= is_help(argv[i]);
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i]))
            continue;
        if (!opt_key(argv[i], key, sizeof key) || i + 1 >= argc) {
            if (help)
                continue;
            fprintf(stderr, "mela train: expected --key value, got '%s' (see 'mela train --help')\n", argv[i]);
            return 2;
        }
        if (!strcmp(key, "learner")) learner = argv[i + 1];
        if (!strcmp(key, "dataset")) dataset = argv[i + 1];
        if (!strcmp(key, "ways") && !test_ways) ways = atoi(argv[i + 1]);
        if (!strcmp(key, "test_ways")) test_ways = ways = atoi(argv[i + 1]);
        i++;
    }
    if (help) {
        train_help(learner, dataset, ways);
        return 0;
    }
    mela_run_config rc;
    if (mela_run_defaults(&rc, learner, dataset, ways)) {
        fprintf(stderr, "mela train: %s\n", mela_last_error());
        return 2;
    }
    snprintf(rc.data_dir, sizeof rc.data_dir, "%s", CLI_DATA_DIR);
    for (int i = 1; i + 1 < argc; i += 2) {
        opt_key(argv[i], key, sizeof key);
        if (!strcmp(key, "report")) {
            report = atoi(argv[i + 1]);
            if (report < 1) {
                fprintf(stderr, "mela train: --report %s must be at least 1\n", argv[i + 1]);
                return 2;
            }
            continue;
        }
        if (mela_run_set(&rc, key, argv[i + 1])) {
            fprintf(stderr, "mela train: %s\n", mela_last_error());
            return 2;
        }
    }
    if (mela_run_check(&rc)) {
        fprintf(stderr, "mela train: %s\n", mela_last_error());
        return 2;
    }
    print_plan(&rc);
    curves c = {.rc = &rc};
    int failed = mela_run_train(&rc, report, progress, &c);
    if (failed)
        fprintf(stderr, "mela train: %s\n", mela_last_error());
    curves_draw(&c);
    if (failed)
        return 1;
    char path[600];
    snprintf(path, sizeof path, "%s/best.safetensors", rc.out_dir);
    mela_eval_result res;
    if (mela_run_eval(path, 0, NULL, rc.test_episodes, -1, &res)) {
        fprintf(stderr, "mela train: evaluating %s: %s\n", path, mela_last_error());
        return 1;
    }
    print_result("test", &res);
    return 0;
}

static void eval_help(void)
{
    printf("Usage: mela eval CHECKPOINT [--episodes N] [--steps K] [--key value]...\n"
           "\n"
           "Evaluates a checkpoint written by 'mela train' on the fixed test episodes (the\n"
           "test split, episodes 0..N-1 under --test-seed): the inner loop adapts to each\n"
           "episode's support set, then the query set is scored. Prints the mean accuracy\n"
           "(or MSE for regression) with its 95%% confidence interval.\n"
           "\n"
           "  --episodes N     test episodes, 1..1000000 (default: the checkpoint's\n"
           "                   test_episodes, 600)\n"
           "  --steps K        inner steps, 0..100 (default: the checkpoint's test_steps)\n"
           "  --key value      any 'mela train' option to override, e.g. --data-dir,\n"
           "                   --threads, --test-queries, --test-seed\n"
           "  -h, --help       show this help\n");
}

int cli_eval(int argc, char **argv)
{
    const char *ckpt = NULL;
    int episodes = 0, steps = -1, nover = 0;
    char **over = calloc(argc, sizeof *over);
    char key[64];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            eval_help();
            free(over);
            return 0;
        }
        if (strncmp(argv[i], "--", 2)) {
            if (ckpt) {
                fprintf(stderr, "mela eval: one checkpoint only ('%s' and '%s')\n", ckpt, argv[i]);
                goto usage;
            }
            ckpt = argv[i];
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "mela eval: %s needs a value\n", argv[i]);
            goto usage;
        }
        opt_key(argv[i], key, sizeof key);
        long long v;
        if (!strcmp(key, "episodes")) { /* the range of --test-episodes */
            if (cli_int_arg("eval", "--episodes", argv[++i], 1, 1000000, &v))
                goto usage;
            episodes = (int)v;
        } else if (!strcmp(key, "steps")) {
            if (cli_int_arg("eval", "--steps", argv[++i], 0, 100, &v))
                goto usage;
            steps = (int)v;
        } else {
            size_t n = strlen(key) + strlen(argv[i + 1]) + 2;
            over[nover] = malloc(n);
            snprintf(over[nover++], n, "%s=%s", key, argv[++i]);
        }
    }
    if (!ckpt) {
        fprintf(stderr, "mela eval: which checkpoint? (see 'mela eval --help')\n");
        goto usage;
    }
    mela_eval_result res;
    int rc = mela_run_eval(ckpt, nover, (const char *const *)over, episodes, steps, &res);
    if (rc)
        fprintf(stderr, "mela eval: %s\n", mela_last_error());
    else
        print_result(ckpt, &res);
    for (int i = 0; i < nover; i++)
        free(over[i]);
    free(over);
    return rc ? 1 : 0;
usage:
    for (int i = 0; i < nover; i++)
        free(over[i]);
    free(over);
    return 2;
}
