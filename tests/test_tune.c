/* test_tune.c - the hyperparameter search (mela_tune.h) on a synthetic
 * objective with a known optimum, no training: the space file and its
 * checks, the draws (deterministic, in range, log-uniform), Hyperband's
 * brackets against Li et al.'s table, successive halving keeping exactly the
 * best 1/eta of every rung and finding the optimum, the same result on any
 * number of workers, a search stopped (and one whose log a kill cut) going on
 * without scoring again what it had scored; configuration files read back
 * as written. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "mela_tune.h"
#include "core/sys.h"

static char root[] = "/tmp/mela-tune-XXXXXX";

/* The whole file (NUL after it), or NULL. */
static char *rf_slurp(const char *path, size_t *n)
{
    uint8_t *data;
    return mela_sys_read_file(path, &data, n) ? NULL : (char *)data;
}

/* ------------------------------------------------------- the objective */

/* The quality of a trial: best at inner_lr = 0.03, steps = 3, learner
 * fomaml; a rung's score is the quality plus a term that grows with the
 * iterations, the same for every trial, so that the order at every rung is
 * the order of the qualities. */
static double quality(const mela_tune_trial *t)
{
    double lr = 0, steps = 0, bonus = 0;
    for (int i = 0; i < t->n; i++) {
        if (!strcmp(t->keys[i], "inner_lr"))
            lr = atof(t->values[i]);
        if (!strcmp(t->keys[i], "steps"))
            steps = atof(t->values[i]);
        if (!strcmp(t->keys[i], "learner"))
            bonus = !strcmp(t->values[i], "fomaml") ? 0.5 : 0;
    }
    double d = log10(lr) - log10(0.03);
    return -d * d - 0.1 * (steps - 3) * (steps - 3) + bonus;
}

typedef struct calls {
    pthread_mutex_t mu;
    int n, stop_after;
    volatile sig_atomic_t *stop;
    int trial[4096], iterations[4096];
    int done[4096];  /* iterations each trial has trained (it continues) */
    int bad;         /* a call that did not continue its trial's iterations */
} calls;

static int objective(void *ctx, const mela_tune_trial *t, int iterations, int slot, double *score)
{
    calls *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->n < 4096) {
        c->trial[c->n] = t->id, c->iterations[c->n] = iterations;
    }
    c->n++;
    c->bad |= t->id >= 4096 || iterations <= c->done[t->id];
    if (t->id < 4096)
        c->done[t->id] = iterations;
    if (c->stop && c->stop_after && c->n >= c->stop_after)
        *c->stop = 1;
    pthread_mutex_unlock(&c->mu);
    *score = quality(t) + 1.0 - 1.0 / iterations;
    return 0;
}

static void calls_init(calls *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
}

/* ------------------------------------------------------------ the space */

static mela_tune_spec *space(void)
{
    static mela_tune_spec s;
    mela_tune_defaults(&s);
    const char *lines[] = {"# a space", "inner_lr log 0.001 1   # log-uniform", "steps int 1 5",
                           "learner choice maml fomaml reptile", "ways 5", "tune.trials 27",
                           "tune.eta 3", "tune.min_iterations 10", "tune.max_iterations 270", ""};
    for (int i = 0; i < 10; i++)
        CHECK(mela_tune_parse_line(&s, lines[i], "space") == 0, "'%s': %s", lines[i], mela_last_error());
    return &s;
}

static void test_space(void)
{
    mela_tune_spec *s = space();
    CHECK(s->nparams == 4 && s->trials == 27 && s->min_iterations == 10, "parsed: %d params", s->nparams);
    CHECK(mela_tune_check(s) == 0, "check: %s", mela_last_error());
    const mela_tune_param *p = mela_tune_find(s, "learner");
    CHECK(p && p->kind == MELA_TUNE_CHOICE && p->nvalues == 3 && !strcmp(p->values[2], "reptile"), "choice");
    /* the file, written and read back: the same spec, the same draws */
    char path[600];
    snprintf(path, sizeof path, "%s/space.txt", root);
    static mela_tune_spec back;
    mela_tune_defaults(&back);
    CHECK(mela_tune_write(s, path) == 0 && mela_tune_read(&back, path) == 0, "write, read: %s", mela_last_error());
    mela_tune_trial a, b;
    int same = back.nparams == s->nparams && back.max_iterations == s->max_iterations;
    for (int id = 0; id < 50 && same; id++) {
        mela_tune_sample(s, id, &a), mela_tune_sample(&back, id, &b);
        for (int i = 0; i < a.n; i++)
            same &= !strcmp(a.values[i], b.values[i]) && !strcmp(a.keys[i], b.keys[i]);
    }
    CHECK(same, "a space file read back draws the same trials");

    /* lines and spaces refused, each with a message naming what */
    static mela_tune_spec bad;
    const char *lines[] = {"inner_lr log 0 1", "inner_lr log 1 0.1", "steps int 1.5 3", "steps",
                           "steps between 1 3", "tune.eta x", "tune.bogus 3", "x log 1 \"2"};
    const char *why[] = {"above 0", "LO <= HI", "integers", "no value", "not a kind", "tune.eta",
                         "tune.bogus", "quote"};
    for (int i = 0; i < 8; i++) {
        mela_tune_defaults(&bad);
        CHECK(mela_tune_parse_line(&bad, lines[i], "f:1") == -1 && strstr(mela_last_error(), why[i]) &&
                  strstr(mela_last_error(), "f:1"), "'%s' refused: %s", lines[i], mela_last_error());
    }
    static const char *const checks[][2] = {{"tune.max_iterations 250", "power of eta"},
                               {"image_size choice 28 32", "data"},
                               {"iterations 100", "set by the search"},
                               {"learner choice maml nope", "nope"},
                               {"bogus_key 3", "bogus_key"},
                               {"inner_lr log 1e-9 1", "inner_lr"},
                               {"steps uniform 1 3", "takes integers"},
                               {"steps uniform 0 100", "takes integers"}, /* its middle 37 is one */
                               {"test_ways log 2 2", "takes integers"},
                               {"test_seed choice 1 2", "data"},
                               {"resize choice area nearest", "data"},
                               {"clip_grad uniform 0 1e-307", "1e-30"}, /* draws would be subnormal */
                               {"model uniform -1e308 1e308", "1e30"},
                               {"model \"a\rb\"", "control character"},
                               {"init choice xavier he", "not one of xavier, pytorch-0.4"},
                               {"resize nearest-ish", "not one of area, nearest"}};
    for (int i = 0; i < 16; i++) {
        bad = *s;
        CHECK(mela_tune_parse_line(&bad, checks[i][0], "x") == 0 && mela_tune_check(&bad) == -1 &&
                  strstr(mela_last_error(), checks[i][1]), "'%s' refused: %s", checks[i][0], mela_last_error());
    }
}

/* The draws: a function of (seed, id); in range; inner_lr log-uniform (as
 * many below the geometric middle 0.0316 as above), steps every integer. */
static void test_draws(void)
{
    mela_tune_spec *s = space();
    mela_tune_trial t, u;
    int below = 0, seen[6] = {0}, learners[3] = {0}, inrange = 1, n = 4000;
    for (int id = 0; id < n; id++) {
        mela_tune_sample(s, id, &t);
        double lr = atof(t.values[0]);
        int st = atoi(t.values[1]);
        inrange &= lr >= 0.001 && lr <= 1 && st >= 1 && st <= 5 && !strcmp(t.values[3], "5");
        below += lr < sqrt(0.001);
        seen[st < 0 || st > 5 ? 0 : st]++;
        learners[!strcmp(t.values[2], "maml") ? 0 : !strcmp(t.values[2], "fomaml") ? 1 : 2]++;
    }
    CHECK(inrange, "every draw in its range");
    /* binomial(4000, 1/2): sd 32; 5 sd */
    CHECK(abs(below - n / 2) < 160, "log-uniform: %d of %d below the geometric middle", below, n);
    CHECK(seen[1] > 700 && seen[5] > 700 && seen[0] == 0, "ints: 1 %d, 5 %d", seen[1], seen[5]);
    CHECK(learners[0] > 1200 && learners[1] > 1200 && learners[2] > 1200, "choices %d %d %d", learners[0],
          learners[1], learners[2]);
    mela_tune_sample(s, 17, &t), mela_tune_sample(s, 17, &u);
    CHECK(!strcmp(t.values[0], u.values[0]) && !strcmp(t.values[2], u.values[2]), "trial 17 twice: the same");
    s->seed = 2;
    mela_tune_sample(s, 17, &u);
    CHECK(strcmp(t.values[0], u.values[0]), "another seed, another draw");
}

/* Hyperband with R = 81 r, eta 3: Li et al. (2017), Table 1: brackets of
 * 81, 34, 15, 8 and 5 trials from r = 1, 3, 9, 27 and 81. */
static void test_brackets(void)
{
    mela_tune_spec *s = space();
    s->method = MELA_TUNE_HYPERBAND;
    s->min_iterations = 1, s->max_iterations = 81;
    int first[8], n[8], start[8];
    int nb = mela_tune_brackets(s, 8, first, n, start);
    int want_n[] = {81, 34, 15, 8, 5}, want_r[] = {1, 3, 9, 27, 81}, ok = nb == 5;
    for (int b = 0; b < 5 && ok; b++)
        ok = n[b] == want_n[b] && start[b] == want_r[b] && first[b] == (b ? first[b - 1] + n[b - 1] : 0);
    CHECK(ok, "Hyperband's brackets (Li et al. Table 1): %d brackets, n %d %d %d %d %d", nb, n[0], n[1], n[2],
          n[3], n[4]);
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Successive halving of 27 trials, eta 3, rungs 10, 30, 90, 270: every rung
 * goes on with exactly the best third of the last (by the qualities the
 * test computes itself), each trial continues (30 after 10, never 10
 * again), and the winner is the best trial drawn, near the optimum. */
static void test_halving(void)
{
    mela_tune_spec *s = space();
    s->workers = 3;
    static calls c;
    calls_init(&c);
    mela_tune_result res;
    CHECK(mela_tune_search(s, NULL, objective, &c, NULL, NULL, NULL, &res) == 0, "search: %s", mela_last_error());
    CHECK(c.n == 27 + 9 + 3 + 1 && !c.bad, "%d calls (27 + 9 + 3 + 1), each continuing its trial", c.n);
    double q[27];
    mela_tune_trial t;
    for (int id = 0; id < 27; id++) {
        mela_tune_sample(s, id, &t);
        q[id] = quality(&t);
    }
    int rungs[] = {10, 30, 90, 270}, kept[] = {27, 9, 3, 1}, ok = 1;
    for (int k = 0; k < 4; k++) {
        /* the trials called at rung k are the `kept[k]` best */
        double sorted[27];
        memcpy(sorted, q, sizeof q);
        qsort(sorted, 27, sizeof *sorted, cmp_desc);
        int n = 0;
        for (int i = 0; i < c.n; i++)
            if (c.iterations[i] == rungs[k]) {
                n++;
                ok &= q[c.trial[i]] >= sorted[kept[k] - 1];
            }
        ok &= n == kept[k];
    }
    CHECK(ok, "every rung keeps exactly the best 1/eta of the last");
    int best = 0;
    for (int id = 1; id < 27; id++)
        if (q[id] > q[best])
            best = id;
    mela_tune_sample(s, best, &t);
    CHECK(res.best == best && res.best_score == q[best] + 1.0 - 1.0 / 270, "the winner: trial %d (want %d)",
          res.best, best);
    CHECK(!strcmp(res.winner.values[2], "fomaml") && fabs(log10(atof(res.winner.values[0]) / 0.03)) < 0.5,
          "near the optimum (fomaml, inner_lr 0.03): %s %s %s", res.winner.values[2], res.winner.values[0],
          res.winner.values[1]);
    CHECK(res.iterations == 27 * 10 + 9 * 20 + 3 * 60 + 180, "compute: %lld iterations", res.iterations);

    /* one worker: the same calls, the same winner */
    static calls c1;
    calls_init(&c1);
    mela_tune_result r1;
    s->workers = 1;
    CHECK(mela_tune_search(s, NULL, objective, &c1, NULL, NULL, NULL, &r1) == 0 && r1.best == res.best &&
              c1.n == c.n, "1 worker: the same search (%d calls, winner %d)", c1.n, r1.best);
}

/* A search in a directory stopped after some scores (as a kill would),
 * then started again: it scores only what it had not, and ends as a search
 * never stopped; a log whose last record a kill cut in half loses that
 * record only. Hyperband, 2 workers. */
static void test_resume(void)
{
    mela_tune_spec *s = space();
    s->method = MELA_TUNE_HYPERBAND;
    s->workers = 2;
    char ref[600], dir[600], why[1400];
    snprintf(ref, sizeof ref, "%s/ref", root);
    snprintf(dir, sizeof dir, "%s/stopped", root);
    static calls c, c2;
    calls_init(&c);
    mela_tune_result a, b;
    CHECK(mela_tune_search(s, ref, objective, &c, NULL, NULL, NULL, &a) == 0, "reference: %s", mela_last_error());
    int total = c.n;
    volatile sig_atomic_t stop = 0;
    int sessions = 0, scored = 0, status = 1;
    for (int k = 5; status == 1 && sessions < 50; k += 7, sessions++) {
        calls_init(&c2);
        stop = 0;
        c2.stop = &stop, c2.stop_after = k;
        status = mela_tune_search(s, dir, objective, &c2, &stop, NULL, NULL, &b);
        scored += c2.n;
    }
    CHECK(status == 0 && sessions > 3, "stopped %d times, then done: %d", sessions - 1, status);
    CHECK(scored == total, "no (trial, rung) scored twice: %d calls in all, %d in one go", scored, total);
    CHECK(b.best == a.best && b.best_score == a.best_score && b.iterations == a.iterations,
          "the same winner: %d %d, %.17g %.17g, %lld %lld", b.best, a.best, b.best_score, a.best_score,
          b.iterations, a.iterations);
    /* the log: the same records as a search never stopped, maybe in another order */
    char pa[700], pb[700];
    size_t na, nb;
    snprintf(pa, sizeof pa, "%s/trials.jsonl", ref);
    snprintf(pb, sizeof pb, "%s/trials.jsonl", dir);
    char *ta = rf_slurp(pa, &na), *tb = rf_slurp(pb, &nb);
    int lines = 0, found = ta && tb;
    for (char *l = ta, *e; found && l && (e = strchr(l, '\n')); l = e + 1, lines++) {
        *e = 0;
        char *sec = strstr(l, ",\"seconds\""), key[300];
        snprintf(key, sizeof key, "%.*s", (int)(sec - l), l); /* trial, bracket, rung, iterations, score */
        found = strstr(tb, key) != NULL;
        *e = '\n';
    }
    CHECK(found && lines == total && na > 0, "the log holds what the reference's does (%d records)", lines);
    free(tb);
    /* a record cut in half: only it is scored again */
    tb = rf_slurp(pb, &nb);
    FILE *f = fopen(pb, "w");
    char *last = tb ? strrchr(tb, '{') : NULL;
    if (f && last) {
        fwrite(tb, 1, (size_t)(last - tb) + 20, f);
        fclose(f);
    }
    calls_init(&c2);
    CHECK(mela_tune_search(s, dir, objective, &c2, NULL, NULL, NULL, &b) == 0 && c2.n == 1 && b.best == a.best,
          "a record cut by a kill is scored again, alone: %d calls", c2.n);
    free(ta), free(tb);
    (void)why;
    /* another search in that directory is refused */
    s->seed = 7;
    calls_init(&c2);
    CHECK(mela_tune_search(s, dir, objective, &c2, NULL, NULL, NULL, &b) == -1 && c2.n == 0 &&
              strstr(mela_last_error(), "another search"), "another space there: %s", mela_last_error());
    s->seed = 1;
    s->workers = 1; /* workers may change */
    CHECK(mela_tune_search(s, dir, objective, &c2, NULL, NULL, NULL, &b) == 0 && c2.n == 0,
          "with other workers: nothing to score (%d)", c2.n);
}

/* Failed trials (NaN) are never promoted and their reason is logged. */
static int failing(void *ctx, const mela_tune_trial *t, int iterations, int slot, double *score)
{
    if (t->id % 2 == 0) {
        *score = NAN;
        mela_set_error("diverged on purpose");
        return 0;
    }
    return objective(ctx, t, iterations, slot, score);
}

static void test_failures(void)
{
    mela_tune_spec *s = space();
    static calls c;
    calls_init(&c);
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/failing", root);
    mela_tune_result res;
    CHECK(mela_tune_search(s, dir, failing, &c, NULL, NULL, NULL, &res) == 0 && res.best % 2 == 1,
          "a failed trial never wins: %d", res.best);
    int odd = 1;
    for (int i = 0; i < c.n; i++)
        odd &= c.iterations[i] == 10 || c.trial[i] % 2 == 1;
    CHECK(odd, "failed trials are not promoted");
    snprintf(path, sizeof path, "%s/trials.jsonl", dir);
    size_t n;
    char *t = rf_slurp(path, &n);
    CHECK(t && strstr(t, "\"score\":null") && strstr(t, "\"error\":\"diverged on purpose\""),
          "the log says why");
    free(t);
}

/* Configuration files: written, read back the same; the words of a line. */
static void test_config_file(void)
{
    mela_run_config rc, back;
    mela_run_defaults(&rc, "reptile", "omniglot", 20);
    snprintf(rc.data_dir, sizeof rc.data_dir, "a dir/with #");
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s", "");
    rc.inner_lr = 0.123456789f;
    rc.seed = 1234567890123LL;
    char path[600], a[600], b[600];
    snprintf(path, sizeof path, "%s/run.conf", root);
    CHECK(mela_run_config_save(&rc, path, "a comment\nover two lines") == 0 &&
              mela_run_config_load(&back, path) == 0, "save, load: %s", mela_last_error());
    int same = 1;
    for (int i = 0; mela_run_option(i, &rc, a, sizeof a, NULL); i++) {
        mela_run_option(i, &back, b, sizeof b, NULL);
        same &= !strcmp(a, b);
    }
    CHECK(same, "every option read back as written");
    FILE *f = fopen(path, "w");
    fprintf(f, "# partial\nlearner fomaml\nsteps 2\n");
    fclose(f);
    CHECK(mela_run_config_load(&back, path) == 0 && !strcmp(back.learner, "fomaml") && back.steps == 2 &&
              back.meta_batch == 32, "a partial file: fomaml's defaults, then its lines");
    f = fopen(path, "w");
    fprintf(f, "learner fomaml\ninner_lr log 0.1 1\n");
    fclose(f);
    CHECK(mela_run_config_load(&back, path) == -1 && strstr(mela_last_error(), ":2") &&
              strstr(mela_last_error(), "mela tune"), "a search line: %s", mela_last_error());
    f = fopen(path, "w");
    fprintf(f, "steps 1000\n");
    fclose(f);
    CHECK(mela_run_config_load(&back, path) == -1 && strstr(mela_last_error(), "steps") &&
              strstr(mela_last_error(), ":1"), "a bad value: %s", mela_last_error());
}

/* Trials are ranked by validation: a search on the trainval split, whose
 * validation classes are trained on, is refused before any data is read. */
static void test_trainval_refused(void)
{
    static mela_tune_spec s;
    mela_tune_defaults(&s);
    const char *lines[] = {"learner protonet", "split trainval", "outer_lr log 0.0001 0.01",
                           "tune.trials 3", "tune.eta 3", "tune.min_iterations 10", "tune.max_iterations 30"};
    for (int i = 0; i < 7; i++)
        CHECK(mela_tune_parse_line(&s, lines[i], "space") == 0, "'%s': %s", lines[i], mela_last_error());
    char dir[600];
    snprintf(dir, sizeof dir, "%s/trainval", root);
    mela_tune_result res;
    CHECK(mela_tune_train(&s, dir, 1, NULL, NULL, NULL, NULL, &res) == -1 &&
              strstr(mela_last_error(), "trainval") && strstr(mela_last_error(), "rank"),
          "tune on trainval: %s", mela_last_error());
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_space();
    test_draws();
    test_brackets();
    test_halving();
    test_resume();
    test_failures();
    test_config_file();
    test_trainval_refused();
    check_rm_rf(root);
    return check_finish();
}
