/* tune.c - `mela tune`: a search space from a file and options in, the
 * trials' scores and the winner out; stopping on SIGINT/SIGTERM and going on
 * (--resume). The work is mela_tune_train of the library. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mela_tune.h"

#define CLI_DATA_DIR "../shared/data/omniglot"

static void tune_help(void)
{
    printf("Usage: mela tune [--space FILE] [--vary 'KEY KIND ARGS']... [--key value]... [--out-dir DIR]\n"
           "       mela tune --resume DIR [--workers N] [--threads N] [--data-dir D]\n"
           "\n"
           "Searches run options by successive halving (or Hyperband): many trials train a\n"
           "few iterations, the best 1/eta of each rung (validation accuracy on the fixed\n"
           "validation episodes; regression: -MSE) go on eta times longer from where they\n"
           "stopped, up to --max-iterations. Writes DIR/trials.jsonl and .csv (one record per\n"
           "trial and rung), DIR/trial-NNNN/ (each trial's run), DIR/tune.txt (the search)\n"
           "and DIR/best.conf, the winner's configuration: 'mela train --config DIR/best.conf'.\n"
           "A stopped or killed search goes on with --resume DIR, without training again what\n"
           "it had scored. See docs/tune.md.\n"
           "\n"
           "The space (a file, then the options, later lines replacing earlier ones):\n"
           "  KEY log LO HI          log-uniform on [LO, HI]      (inner_lr log 0.01 1)\n"
           "  KEY uniform LO HI      uniform on [LO, HI]\n"
           "  KEY int LO HI          an integer of LO..HI         (steps int 1 5)\n"
           "  KEY choice V1 V2 ...   one of the values            (learner choice maml fomaml)\n"
           "  KEY VALUE              fixed for every trial        (ways 5)\n"
           "  tune.SETTING VALUE     a setting below (tune.trials 27)\n"
           "KEY is any option of 'mela train' (underscores: inner_lr); the data (dataset,\n"
           "data_dir, split, image_size, resize, test_seed) may only be fixed.\n"
           "\n"
           "Options:\n"
           "  --space FILE           the space file\n"
           "  --vary 'KEY KIND ARGS' one parameter drawn (repeatable)\n"
           "  --key value            any 'mela train' option, fixed for every trial\n"
           "  --method sh|hyperband  successive halving (default) or Hyperband's brackets\n"
           "  --trials N             trials of the first rung (sh; default 27)\n"
           "  --eta N                keep 1/eta per rung, train eta times longer (default 3)\n"
           "  --min-iterations N     the first rung (default 100); validation every N\n"
           "  --max-iterations N     the last rung, N = min-iterations * eta^k (default 2700)\n"
           "  --tune-seed N          the draws of the trials' values (default 1; --seed is the\n"
           "                         runs' own seed, the same for every trial)\n"
           "  --workers N            trials trained at once (default: cores / threads)\n"
           "  --threads N            threads of each trial (default 1)\n"
           "  --out-dir DIR          where the search lives (default runs/tune)\n"
           "  --resume DIR           go on with the search in DIR\n"
           "  -h, --help             show this help\n"
           "\n"
           "Example:\n"
           "  mela tune --learner fomaml --vary 'inner_lr log 0.05 1' --vary 'outer_lr log 1e-4 1e-2'\n"
           "            --vary 'steps int 1 3' --trials 9 --min-iterations 100 --max-iterations 900\n");
}

typedef struct tune_ctx {
    const mela_tune_spec *s;
    int regression;
} tune_ctx;

static void print_values(const mela_tune_spec *s, const mela_tune_trial *t)
{
    for (int i = 0; i < t->n; i++)
        if (s->params[i].kind != MELA_TUNE_FIXED)
            printf(" %s %s", t->keys[i], t->values[i]);
}

static void report(const mela_tune_record *r, void *ctx)
{
    tune_ctx *c = ctx;
    printf("trial %4d  rung %d  %6d it  ", r->trial, r->rung, r->iterations);
    if (isnan(r->score))
        printf("failed        ");
    else if (c->regression)
        printf("val mse %.4f", -r->score);
    else
        printf("val acc %5.1f%%", 100 * r->score);
    if (r->reused)
        printf("  (from the log)");
    else
        printf("  %6.1f s", r->seconds);
    printf(" |");
    print_values(c->s, r->t);
    printf("\n");
    fflush(stdout);
}

/* "--min-iterations" -> "tune.min_iterations" for the settings. */
static int setting(const char *key)
{
    static const char *const names[] = {"method", "trials", "eta", "min_iterations", "max_iterations", "workers"};
    for (int i = 0; i < 6; i++)
        if (!strcmp(key, names[i]))
            return 1;
    return 0;
}

/* The options after the space file (later ones replace earlier ones). */
static int apply_options(mela_tune_spec *s, int argc, char **argv, char *dir, size_t ndir, int *threads)
{
    char key[64], line[4200], where[128];
    for (int i = 1; i + 1 < argc; i += 2) {
        snprintf(key, sizeof key, "%s", argv[i] + 2);
        for (char *p = key; *p; p++)
            if (*p == '-')
                *p = '_';
        snprintf(where, sizeof where, "option %s", argv[i]);
        if (!strcmp(key, "space") || !strcmp(key, "resume"))
            continue;
        long long v;
        int status = 0;
        if (!strcmp(key, "out_dir")) {
            snprintf(dir, ndir, "%s", argv[i + 1]);
        } else if (!strcmp(key, "threads")) {
            if (cli_int_arg("tune", argv[i], argv[i + 1], 1, 256, &v))
                return 2;
            *threads = (int)v;
        } else if (!strcmp(key, "vary")) {
            status = mela_tune_parse_line(s, argv[i + 1], where);
        } else {
            if (setting(key) || !strncmp(key, "tune_", 5))
                snprintf(line, sizeof line, "tune.%s \"%s\"", !strncmp(key, "tune_", 5) ? key + 5 : key, argv[i + 1]);
            else
                snprintf(line, sizeof line, "%s \"%s\"", key, argv[i + 1]);
            status = mela_tune_parse_line(s, line, where);
        }
        if (status) {
            fprintf(stderr, "mela tune: %s\n", mela_last_error());
            return 2;
        }
    }
    return 0;
}

/* What the search is about to do: its brackets and rungs. */
static void print_plan(const mela_tune_spec *s, const char *dir, int threads)
{
    int first[64], n[64], start[64], nb = mela_tune_brackets(s, 64, first, n, start);
    long long total = 0;
    printf("mela tune: %s, eta %d, %d..%d iterations, %d worker(s) x %d thread(s) -> %s\n",
           s->method == MELA_TUNE_SH ? "successive halving" : "Hyperband", s->eta, s->min_iterations,
           s->max_iterations, s->workers, threads, dir);
    for (int b = 0; b < nb && b < 64; b++) {
        printf("  bracket %d:", b);
        long long prev = 0;
        for (long long k = n[b], its = start[b]; its <= s->max_iterations; its *= s->eta) {
            printf(" %lld x %lld it", k, its);
            total += k * (its - prev);
            prev = its;
            k = k / s->eta > 0 ? k / s->eta : 1;
            if (its < s->max_iterations)
                printf(",");
        }
        printf("\n");
    }
    printf("  %lld meta-iterations in all (one run of the defaults at this compute: --iterations %lld)\n",
           total, total);
    fflush(stdout);
}

int cli_tune(int argc, char **argv)
{
    const char *space = NULL, *resume = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            tune_help();
            return 0;
        }
        if (strncmp(argv[i], "--", 2) || i + 1 >= argc) {
            fprintf(stderr, "mela tune: expected --key value, got '%s' (see 'mela tune --help')\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--space"))
            space = argv[i + 1];
        if (!strcmp(argv[i], "--resume"))
            resume = argv[i + 1];
        i++;
    }
    mela_tune_spec *s = malloc(sizeof *s);
    if (!s)
        return 1;
    mela_tune_defaults(s);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char dir[600] = "runs/tune", path[700];
    int threads = 1, status = 0, workers_given = 0;
    for (int i = 1; i + 1 < argc; i += 2)
        workers_given |= !strcmp(argv[i], "--workers") || !strcmp(argv[i], "--tune-workers");
    if (resume) {
        snprintf(dir, sizeof dir, "%s", resume);
        snprintf(path, sizeof path, "%s/tune.txt", resume);
        if (space || access(path, F_OK)) {
            fprintf(stderr, "mela tune: %s\n", space ? "--resume takes the search saved in its directory, not "
                    "--space" : "no search to go on with (tune.txt is missing there)");
            free(s);
            return 2;
        }
        status = mela_tune_read(s, path) ? 1 : 0;
    } else {
        char line[700];
        snprintf(line, sizeof line, "data_dir \"%s\"", CLI_DATA_DIR);
        mela_tune_parse_line(s, line, "the default data_dir");
        if (space && mela_tune_read(s, space))
            status = 2;
    }
    if (status) {
        fprintf(stderr, "mela tune: %s\n", mela_last_error());
        free(s);
        return status;
    }
    if ((status = apply_options(s, argc, argv, dir, sizeof dir, &threads))) {
        free(s);
        return status;
    }
    if (!workers_given && !resume)
        s->workers = cores > threads ? (int)(cores / threads) : 1;
    if (mela_tune_check(s)) {
        fprintf(stderr, "mela tune: %s\n", mela_last_error());
        free(s);
        return 2;
    }
    snprintf(path, sizeof path, "%s/trials.jsonl", dir);
    if (!resume && mela_dist_rank() == 0 && access(path, F_OK) == 0) { /* rank 0 writes there */
        fprintf(stderr, "mela tune: %s already holds a search: go on with it with 'mela tune --resume %s', or "
                "give another --out-dir\n", dir, dir);
        free(s);
        return 2;
    }
    print_plan(s, dir, threads);
    const mela_tune_param *ds = mela_tune_find(s, "dataset");
    tune_ctx c = {s, ds && !strcmp(ds->values[0], "sinusoid")};
    mela_tune_result res;
    cli_stop_signal = 0;
    cli_catch_signals(1);
    status = mela_tune_train(s, dir, threads, NULL, &cli_stop_signal, report, &c, &res);
    cli_catch_signals(0);
    if (status < 0) {
        fprintf(stderr, "mela tune: %s\n", mela_last_error());
        fprintf(stderr, "mela tune: the trials scored so far are kept in %s; go on with 'mela tune --resume %s'\n",
                dir, dir);
        free(s);
        return 1;
    }
    if (status == 1) {
        cli_dist_agreed(); /* every process stopped after the same rung */
        fprintf(stderr, "mela tune: stopped (%s); go on with 'mela tune --resume %s'\n",
                cli_stop_signal == SIGINT ? "SIGINT" : "SIGTERM", dir);
        free(s);
        return 128 + cli_stop_signal;
    }
    printf("%d trial-rungs scored, %d taken from the log; %lld meta-iterations in all\n", res.scored,
           res.reused, res.iterations);
    if (res.best < 0) {
        fprintf(stderr, "mela tune: no trial reached %d iterations with a score\n", s->max_iterations);
        free(s);
        return 1;
    }
    printf("best: trial %d, ", res.best);
    if (c.regression)
        printf("val mse %.4f", -res.best_score);
    else
        printf("val acc %.2f%%", 100 * res.best_score);
    printf(" |");
    print_values(s, &res.winner);
    printf("\nwrote %s/best.conf; train it with 'mela train --config %s/best.conf' (its best checkpoint: "
           "%s/trial-%04d/best.safetensors)\n", dir, dir, dir, res.best);
    free(s);
    return 0;
}
