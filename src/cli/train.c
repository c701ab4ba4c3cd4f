/* train.c - `mela train` and `mela eval`: options in, progress, curves and
 * results out; stopping on SIGINT/SIGTERM and resuming (--resume); the work
 * is mela_run_* of the library. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mela_io.h"
#include "mela_learn.h"

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
static void train_help(const char *learner, const char *dataset, int ways, const char *split)
{
    mela_run_config rc;
    if (mela_run_defaults(&rc, learner, dataset, ways ? ways : 5))
        mela_run_defaults(&rc, "maml", "omniglot", 5);
    if (split)
        mela_run_protocol(&rc, split);
    printf("Usage: mela train [--config FILE] [--key value]... [--overwrite]\n"
           "       mela train --resume OUT_DIR [--threads N]\n"
           "\n"
           "Meta-trains a learner and writes OUT_DIR/best.safetensors (best validation),\n"
           "OUT_DIR/last.safetensors, OUT_DIR/metrics.{jsonl,csv} and OUT_DIR/state.safetensors\n"
           "(what --resume continues from; Ctrl-C or SIGTERM saves it and stops the run; a\n"
           "second one a second or more later quits without saving). Then\n"
           "evaluates the best checkpoint on the fixed test episodes. Defaults follow Finn et\n"
           "al. (2017) for the chosen --learner, --dataset and --ways (maml: 5-way 1 step of 0.4,\n"
           "meta-batch 32; 20-way gives 5 steps of 0.1 and meta-batch 16; sinusoid gives the\n"
           "1-40-40-1 MLP, K = 10, 1 step of 0.01, meta-batch 25, 70,000 iterations).\n"
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
           "20-way within-alphabet one-shot. protonet --background B trains for 'mela find':\n"
           "each episode also gets B windows of seeded scenes that hold none of its classes,\n"
           "taught to lie nearer to blank paper than to any prototype (docs/find.md).\n\n");
    printf("  --config FILE      start from a configuration: a file of 'key value' lines (what\n"
           "                     'mela tune' writes as best.conf), or any run's saved one (its\n"
           "                     state.safetensors, a checkpoint, or the run's directory); the\n"
           "                     options given with it change it (e.g. --out-dir, --iterations)\n");
    printf("  --report N         print progress every N iterations (default 100; a resumed run\n"
           "                     keeps its own unless given)\n"
           "  --resume DIR       continue the run saved in DIR (stopped by Ctrl-C or SIGTERM, or\n"
           "                     killed): it ends as if never interrupted. Its configuration is\n"
           "                     the saved one; only --threads, --data-dir and --cache-dir may\n"
           "                     change\n"
           "  --overwrite        start again in an OUT_DIR that holds a run (its files removed);\n"
           "                     without it (or --resume) such a directory is refused\n"           "  --profile          at the end, where the time went: drawing tasks, forward and\n"
           "                     backward, the optimiser, validation, and the top graph ops\n"
           "  -h, --help         show this help\n"
           "\n"
           "Examples:\n"
           "  mela train --dataset sinusoid --shots 5 --iterations 20000\n"
           "  mela train --learner fomaml --ways 20 --data-dir ../shared/data/omniglot\n"
           "  mpirun -np 4 mela train --learner maml --ways 20 --threads 2 --out-dir runs/m20\n"
           "\n"
           "Under mpirun or srun (a build with MPI: see 'mela --version') the tasks of every\n"
           "meta-batch and the validation and test episodes are spread over the processes,\n"
           "with the same bits as one process; rank 0 writes and prints (docs/distributed.md).\n");
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

/* What the progress reports leave for the end: the last one (--profile). */
typedef struct train_ctx {
    const mela_run_config *rc;
    mela_progress last;
} train_ctx;

static void progress(const mela_progress *p, void *ctx)
{
    train_ctx *t = ctx;
    t->last = *p;
    int reg = mela_run_regression(t->rc);
    char el[32], eta[32];
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
        printf("mela train: %s on %s (%s split%s), %d-way %d-shot (tested %d-way %d-shot)", rc->learner,
               rc->dataset, rc->split,
               !strcmp(rc->split, "lake")       ? ", episodes within one alphabet"
               : mela_run_trains_on_val(rc)     ? ", validation classes trained on: best = last"
                                                : "",
               rc->train.ways, rc->train.shots, te.ways, te.shots);
    if (info->adapts)
        printf(", %d inner step(s) of %g%s (test %d)", rc->steps, (double)rc->inner_lr,
               rc->inner_sum ? " on the loss summed over the classes" : "", rc->test_steps);
    printf(", model %s%s%s, meta-batch %d, %d iterations, %d thread(s) -> %s\n", rc->model,
           strcmp(rc->init, "pytorch-0.4") ? "" : " (PyTorch 0.4's init)",
           strcmp(rc->resize, "nearest") ? "" : " on nearest-pixel images", rc->meta_batch, rc->iterations,
           rc->threads, rc->out_dir);
    fflush(stdout);
}

/* Where a run's time went (--profile): the phases of the loop, then the
 * graph ops of the training executors. */
static void print_profile(mela_run *r, const mela_progress *p)
{
    double total = p->data_s + p->grad_s + p->update_s + p->validate_s;
    if (!(total > 0))
        return;
    printf("\nprofile: %.2f s in the loop\n", total);
    const char *what[] = {"drawing tasks", "forward and backward", "outer update (optimiser)", "validation"};
    double s[] = {p->data_s, p->grad_s, p->update_s, p->validate_s};
    for (int i = 0; i < 4; i++)
        printf("  %-26s %8.3f s  %5.1f%%\n", what[i], s[i], 100 * s[i] / total);
    int n = mela_op_count();
    double *sec = calloc(n, sizeof *sec), ops = 0;
    long *calls = calloc(n, sizeof *calls);
    if (!sec || !calls) {
        free(sec), free(calls);
        return;
    }
    mela_learner_profile(mela_run_learner(r), sec, calls);
    for (int i = 0; i < n; i++)
        ops += sec[i];
    printf("forward and backward by op (training executors, all threads):\n");
    for (int shown = 0; shown < 12; shown++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (sec[i] > 0 && (best < 0 || sec[i] > sec[best]))
                best = i;
        if (best < 0)
            break;
        printf("  %-20s %8.3f s  %5.1f%%  %9ld calls  %9.1f us/call\n", mela_op_name(best), sec[best],
               100 * sec[best] / ops, calls[best], 1e6 * sec[best] / calls[best]);
        sec[best] = 0;
    }
    free(sec), free(calls);
}

/* Takes the flags without a value (--profile, --overwrite) out of argv. */
static int take_flag(int *argc, char **argv, const char *flag)
{
    int found = 0, k = 1;
    for (int i = 1; i < *argc; i++)
        if (!strcmp(argv[i], flag))
            found = 1;
        else
            argv[k++] = argv[i];
    *argc = k;
    return found;
}

/* After a failure: what the run directory still holds. */
static void say_kept(const char *dir)
{
    char path[700];
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    if (access(path, F_OK) == 0)
        fprintf(stderr, "mela train: %s keeps the last good state (best.safetensors, last.safetensors, "
                "state.safetensors as of the last good validation)\n", dir);
    else
        fprintf(stderr, "mela train: no best.safetensors was written: the run failed before its first "
                "good validation (%s keeps what it wrote before)\n", dir);
}

/* The run of r to its end (or a stop), with op timing when profiling, the
 * curves, then the test of its best checkpoint. Closes r. */
static int train_run(mela_run *r, int report, int profile)
{
    const mela_run_config *rc = mela_run_config_of(r);
    char dir[600];
    snprintf(dir, sizeof dir, "%s", rc->out_dir);
    train_ctx t = {.rc = rc};
    cli_stop_signal = 0;
    mela_run_set_stop(r, &cli_stop_signal);
    if (profile)
        mela_learner_set_profiling(mela_run_learner(r), 1);
    cli_catch_signals(1);
    int status = mela_run_fit(r, report, progress, &t);
    cli_catch_signals(0);
    if (status < 0)
        fprintf(stderr, "mela train: %s\n", mela_last_error());
    else if (profile)
        print_profile(r, &t.last);
    if (dir[0] && mela_dist_rank() == 0) /* only rank 0 writes */
        cli_curves_draw(rc);
    int it = mela_run_iteration(r), test_episodes = rc->test_episodes, patience = rc->patience;
    mela_run_close(r);
    if (status == 1) {
        cli_dist_agreed(); /* every process stopped after the same iteration */
        fprintf(stderr, "mela train: stopped (%s) after iteration %d; the run is saved in %s: continue it "
                "with 'mela train --resume %s'\n", cli_stop_signal == SIGINT ? "SIGINT" : "SIGTERM", it, dir, dir);
        return 128 + cli_stop_signal;
    }
    if (status < 0) {
        if (dir[0])
            say_kept(dir);
        return 1;
    }
    if (t.last.stopped_early)
        fprintf(stderr, "mela train: stopped early after iteration %d: the best validation (%.2f%%, "
                "iteration %d) is %d iterations old (--patience %d)\n", it, 100 * t.last.best_val,
                t.last.best_iteration, it - t.last.best_iteration, patience);
    char path[700];
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    mela_eval_result res;
    if (!dir[0])
        return 0;
    if (mela_run_eval(path, 0, NULL, test_episodes, -1, &res)) {
        fprintf(stderr, "mela train: evaluating %s: %s\n", path, mela_last_error());
        return 1;
    }
    print_result("test", &res);
    if (res.regression) { /* Finn et al.'s figure: two test tasks */
        char png[700];
        snprintf(png, sizeof png, "%s/adaptation.png", dir);
        if (mela_run_show(path, 0, NULL, 2, -1, png))
            fprintf(stderr, "mela train: %s\n", mela_last_error());
        else
            printf("fits before and after adaptation: %s\n", png);
    }
    return 0;
}

/* --resume DIR: the run saved there, with the options given as overrides
 * (threads, data_dir and cache_dir may change; see mela_run_resume). */
static int train_resume(const char *dir, int argc, char **argv, int report, int profile)
{
    char key[64];
    const char **over = calloc(argc, sizeof *over);
    char (*kv)[700] = calloc(argc, sizeof *kv);
    int n = 0;
    for (int i = 1; over && kv && i + 1 < argc; i += 2) {
        opt_key(argv[i], key, sizeof key);
        if (!strcmp(key, "report") || !strcmp(key, "resume"))
            continue;
        snprintf(kv[n], sizeof kv[n], "%s=%s", key, argv[i + 1]);
        over[n] = kv[n], n++;
    }
    mela_run *r = over && kv ? mela_run_resume(dir, n, over, NULL) : NULL;
    free(over), free(kv);
    if (!r) {
        fprintf(stderr, "mela train: %s\n", mela_last_error());
        return 1;
    }
    int it = mela_run_iteration(r), all = mela_run_config_of(r)->iterations;
    if (it < all)
        printf("mela train: resuming %s after iteration %d of %d\n", dir, it, all);
    else
        printf("mela train: the run in %s is complete (%d iterations)\n", dir, all);
    print_plan(mela_run_config_of(r));
    return train_run(r, report, profile);
}

/* A directory that holds a run is used again only when the user says how. */
static int train_fresh(mela_run_config *rc, int overwrite, int report, int profile)
{
    /* only rank 0 writes, so it alone looks at (and clears) the directory */
    if (rc->out_dir[0] && mela_dist_rank() == 0 && mela_run_saved(rc->out_dir)) {
        if (!overwrite) {
            fprintf(stderr, "mela train: %s already holds a run: continue it with 'mela train --resume %s', "
                    "or start again there (its files replaced) with --overwrite\n", rc->out_dir, rc->out_dir);
            return 2;
        }
        if (mela_run_remove(rc->out_dir)) {
            fprintf(stderr, "mela train: %s\n", mela_last_error());
            return 1;
        }
    }
    print_plan(rc);
    mela_run *r = mela_run_open(rc, NULL);
    if (!r) {
        fprintf(stderr, "mela train: %s\n", mela_last_error());
        cli_data_hint("train", rc->dataset, rc->data_dir);
        return 1;
    }
    return train_run(r, report, profile);
}

int cli_train(int argc, char **argv)
{
    int profile = take_flag(&argc, argv, "--profile"), overwrite = take_flag(&argc, argv, "--overwrite");
    const char *learner = "maml", *dataset = "omniglot", *resume = NULL, *split = NULL, *config = NULL;
    int ways = 0, test_ways = 0, report = 0; /* defaults follow the test ways when given */
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
        if (!strcmp(key, "split")) split = argv[i + 1];
        long long v = 0;
        int is_ways = !strcmp(key, "ways"), is_test = !strcmp(key, "test_ways"), is_report = !strcmp(key, "report");
        if ((is_ways || is_test || is_report) &&
            cli_int_arg("train", argv[i], argv[i + 1], is_test ? 0 : 1, is_report ? 100000000 : 1000, &v)) {
            if (!help)
                return 2;
            is_ways = is_test = is_report = 0; /* --help shows the defaults */
        }
        if (is_ways && !test_ways) ways = (int)v;
        if (is_test) test_ways = ways = (int)v;
        if (is_report) report = (int)v;
        if (!strcmp(key, "resume")) resume = argv[i + 1];
        if (!strcmp(key, "config")) config = argv[i + 1];
        i++;
    }
    if (split && !strcmp(split, "lake") && !ways)
        ways = 20; /* Lake's 20-way within-alphabet one-shot task */
    if (help) {
        train_help(learner, dataset, ways, split);
        return 0;
    }
    if (resume && overwrite) {
        fprintf(stderr, "mela train: --resume continues the run, --overwrite replaces it: give one\n");
        return 2;
    }
    if (resume && config) {
        fprintf(stderr, "mela train: --resume continues a run as it was; --config starts one: give one\n");
        return 2;
    }
    if (resume)
        return train_resume(resume, argc, argv, report, profile);
    mela_run_config rc;
    if ((config ? mela_run_config_load(&rc, config) : mela_run_defaults(&rc, learner, dataset, ways)) ||
        (split && mela_run_protocol(&rc, split))) {
        fprintf(stderr, "mela train: %s\n", mela_last_error());
        return 2;
    }
    if (!config || !rc.data_dir[0])
        snprintf(rc.data_dir, sizeof rc.data_dir, "%s", CLI_DATA_DIR);
    for (int i = 1; i + 1 < argc; i += 2) {
        opt_key(argv[i], key, sizeof key);
        if (strcmp(key, "report") && strcmp(key, "config") && mela_run_set(&rc, key, argv[i + 1])) {
            fprintf(stderr, "mela train: %s\n", mela_last_error());
            return 2;
        }
    }
    if (mela_run_check(&rc)) {
        fprintf(stderr, "mela train: %s\n", mela_last_error());
        return 2;
    }
    return train_fresh(&rc, overwrite, report ? report : 100, profile);
}

static void eval_help(void)
{
    printf("Usage: mela eval CHECKPOINT [--episodes N] [--steps K] [--key value]...\n"
           "       mpirun -np P mela eval CHECKPOINT ...   (the episodes spread, same results)\n"
           "\n"
           "Evaluates a checkpoint written by 'mela train' on the fixed test episodes (the\n"
           "test split, episodes 0..N-1 under --test-seed): the inner loop adapts to each\n"
           "episode's support set, then the query set is scored. Prints the mean accuracy\n"
           "(or MSE for regression) with its 95%% confidence interval.\n"
           "\n"
           "  --episodes N     test episodes, 1..1000000 (default: the checkpoint's\n"
           "                   test_episodes, 600)\n"
           "  --steps K        inner steps, 0..100 (default: the checkpoint's test_steps)\n"
           "  --show N         also draw the first N test episodes (1..100) as a PNG:\n"
           "                   support images with their classes, queries with the\n"
           "                   predicted and true class, wrong ones framed red; for a\n"
           "                   sinusoid checkpoint N test tasks (1..64): the true curve,\n"
           "                   the fit before and after adaptation, the K points\n"
           "  --png FILE       where --show draws (default: the checkpoint's name with\n"
           "                   .png for .safetensors; a shipped model's NAME.png here)\n"
           "  --key value      any 'mela train' option to override, e.g. --data-dir,\n"
           "                   --threads, --test-queries, --test-seed\n"
           "  -h, --help       show this help\n");
}

int cli_eval(int argc, char **argv)
{
    const char *ckpt = NULL, *png = NULL, *named = NULL;
    int episodes = 0, steps = -1, nover = 0, show = 0;
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
            ckpt = cli_model_path(argv[i]);
            named = argv[i];
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
        } else if (!strcmp(key, "show")) {
            if (cli_int_arg("eval", "--show", argv[++i], 1, 100, &v))
                goto usage;
            show = (int)v;
        } else if (!strcmp(key, "png")) {
            png = argv[++i];
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
    if (!rc && show) {
        char path[1200];
        size_t n = strlen(ckpt);
        if (png)
            snprintf(path, sizeof path, "%s", png);
        else if (strcmp(named, ckpt)) /* a shipped model: NAME.png here */
            snprintf(path, sizeof path, "%s.png", named);
        else if (n > 12 && !strcmp(ckpt + n - 12, ".safetensors"))
            snprintf(path, sizeof path, "%.*s.png", (int)(n - 12), ckpt);
        else
            snprintf(path, sizeof path, "%s.png", ckpt);
        rc = mela_run_show(ckpt, nover, (const char *const *)over, show, steps, path);
        if (rc)
            fprintf(stderr, "mela eval: %s\n", mela_last_error());
        else
            printf("%d test %s drawn in %s\n", show, res.regression ? "tasks" : "episodes", path);
    }
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
