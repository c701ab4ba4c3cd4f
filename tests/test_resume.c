/* test_resume.c - runs that lose nothing, through the library: a run killed
 * with SIGKILL at random moments (saves included) and resumed until it
 * completes, on any thread count, leaves the same files as a run never
 * interrupted; a stop request saves the state and returns; a used, locked,
 * damaged or changed run directory is refused with a message naming it;
 * nothing is saved with non-finite weights. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "core/sys.h"
#include "learn/run_impl.h"
#include "runfiles.h"
#include "synthetic.h"

static synth_data d; /* opened before any fork: children share it */
static char root[] = "/tmp/mela-resume-XXXXXX";

/* ProtoNets (a metric learner) on the synthetic classes, validated and
 * saved often so that kills land in saves too. */
static void proto_config(mela_run_config *rc, const char *dir, int iterations)
{
    synth_config(rc, "protonet", iterations);
    rc->train = (mela_task_spec){5, 1, 3, 0};
    rc->val_every = 10;
    rc->val_episodes = 10;
    snprintf(rc->out_dir, sizeof rc->out_dir, "%s", dir);
}

/* One session: a new run of rc, or the run in dir resumed on `threads`
 * threads; mela_run_fit's status, or -1. */
static int session(const mela_run_config *rc, const char *dir, int threads, volatile sig_atomic_t *stop)
{
    mela_run_data data = {d.ds, &d.train, &d.test, &d.test};
    char t[32];
    snprintf(t, sizeof t, "threads=%d", threads);
    const char *over[] = {t};
    mela_run *r = dir ? mela_run_resume(dir, 1, over, &data) : mela_run_open(rc, &data);
    if (!r)
        return -1;
    mela_run_set_stop(r, stop);
    int status = mela_run_fit(r, 3, NULL, NULL);
    mela_run_close(r);
    return status;
}

/* The session in a child, killed with SIGKILL once the metrics hold `rows`
 * records and extra_us more (rows < 0: never). 1 when it completed, 0
 * when it was killed, -1 when it failed. */
static int child_session(const mela_run_config *rc, int resume, int threads, int rows, long extra_us)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(session(rc, resume ? rc->out_dir : NULL, threads, NULL) == 0 ? 0 : 1);
    int st = rf_signal_at_rows(pid, rc->out_dir, rows < 0 ? 1 << 30 : rows, extra_us, SIGKILL);
    return st == -SIGKILL ? 0 : st == 0 ? 1 : -1;
}

static void plant_temps(const char *dir)
{
    const char *names[] = {"state.safetensors.tmp.999999", "best.safetensors.tmp.1"};
    for (int i = 0; i < 2; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        FILE *f = fopen(p, "w");
        fputs("half a file", f);
        fclose(f);
    }
}

/* Kills at random moments (after a random number of records, then a random
 * part of the time of one, under a clock-seeded generator whose seed is
 * printed), then one session to the end. */
static void test_kill_resume(void)
{
    char run[600], ref[600], why[1500];
    snprintf(run, sizeof run, "%s/proto", root);
    snprintf(ref, sizeof ref, "%s/proto.ref", root);
    mela_run_config rc;
    proto_config(&rc, run, 150);
    double t0 = mela_sys_now();
    CHECK(session(&rc, NULL, 2, NULL) == 0, "reference run: %s", mela_last_error());
    double T = mela_sys_now() - t0;
    CHECK(rename(run, ref) == 0, "rename");
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
    mela_rng g = mela_rng_new(seed);
    int kills = 0, temps = 0, done = 0, failed = 0, sessions = 0;
    for (int k = 0; k < 12 && !done && !failed; k++, sessions++) {
        char state[700];
        snprintf(state, sizeof state, "%s/state.safetensors", run);
        int resume = access(state, F_OK) == 0;
        if (k == 6 && resume)
            plant_temps(run);
        int rows = k < 10 ? rf_rows(run) + 1 + (int)mela_rng_below(&g, 8) : -1;
        long extra_us = (long)(2e6 * T / 50 * mela_rng_uniform(&g)); /* 50 records a run */
        int r = child_session(&rc, resume, 1 + k % 3, rows, extra_us);
        kills += r == 0, done = r == 1, failed = r == -1;
        temps += r == 0 && rf_count_temps(run) > 0;
    }
    printf("protonet: %d kills (%d left a temp file: killed in a save), %d sessions, seed %llu, "
           "reference run %.2f s\n", kills, temps, sessions, (unsigned long long)seed, T);
    CHECK(done && !failed, "the killed run completes when resumed (%d sessions)", sessions);
    CHECK(kills >= 3, "kills landed before the end: %d", kills);
    CHECK(rf_same_run(ref, run, why, sizeof why), "killed and resumed = never interrupted: %s", why);
    CHECK(rf_count_temps(run) == 0, "no temp file is left (%d)", rf_count_temps(run));
}

static volatile sig_atomic_t stop_now;
static int stop_at;

static void stop_progress(const mela_progress *p, void *ctx)
{
    if (p->iteration >= stop_at)
        stop_now = 1;
}

/* A stop request between reports and validations: fit returns 1 with the
 * state saved after that iteration; resumed, the run ends as the reference. */
static void test_stop(void)
{
    char run[600], ref[600], why[1500];
    snprintf(run, sizeof run, "%s/proto", root);
    snprintf(ref, sizeof ref, "%s/proto.ref", root);
    check_rm_rf(run);
    mela_run_config rc;
    proto_config(&rc, run, 150);
    mela_run_data data = {d.ds, &d.train, &d.test, &d.test};
    mela_run *r = mela_run_open(&rc, &data);
    stop_now = 0, stop_at = 36; /* reports every 3: iteration 37 is in an interval */
    mela_run_set_stop(r, &stop_now);
    CHECK(r && mela_run_fit(r, 3, stop_progress, NULL) == 1 && mela_run_iteration(r) == 37,
          "stopped after iteration 37: %d %s", r ? mela_run_iteration(r) : -1, mela_last_error());
    mela_run_close(r);
    char path[700];
    snprintf(path, sizeof path, "%s/state.safetensors", run);
    mela_checkpoint *ck = mela_checkpoint_open(path);
    const char *it = mela_checkpoint_meta(ck, "iteration"), *nsum = mela_checkpoint_meta(ck, "nsum");
    CHECK(it && !strcmp(it, "37") && nsum && !strcmp(nsum, "1"), "the state is after iteration 37 (%s, "
          "one iteration of a report interval under way: %s)", it ? it : "-", nsum ? nsum : "-");
    mela_checkpoint_close(ck);
    CHECK(session(NULL, run, 1, NULL) == 0, "resume: %s", mela_last_error());
    CHECK(rf_same_run(ref, run, why, sizeof why), "stopped and resumed = never interrupted: %s", why);
    /* resuming a complete run does nothing and changes nothing */
    CHECK(session(NULL, run, 2, NULL) == 0 && rf_same_run(ref, run, why, sizeof why),
          "a complete run resumed stays as it is: %s", why);
}

/* What a run directory refuses, each with a message naming what. */
static void test_refusals(void)
{
    char run[600], path[1400], cmd[4000];
    snprintf(run, sizeof run, "%s/proto", root);
    mela_run_config rc;
    proto_config(&rc, run, 150);
    mela_run_data data = {d.ds, &d.train, &d.test, &d.test};
    CHECK(mela_run_saved(run) == 1, "the run is found");
    mela_run *r = mela_run_open(&rc, &data);
    CHECK(r && mela_run_fit(r, 3, NULL, NULL) == -1 && strstr(mela_last_error(), "already holds a run"),
          "a new run into a used directory: %s", mela_last_error());
    CHECK(mela_run_resume(run, 0, NULL, &data) == NULL && strstr(mela_last_error(), "in use"),
          "a run directory held by an open run: %s", mela_last_error());
    CHECK(mela_run_remove(run) == -1 && strstr(mela_last_error(), "in use") && mela_run_saved(run),
          "... is not removed either: %s", mela_last_error());
    mela_run_close(r);
    const char *longer[] = {"iterations=300"}, *same[] = {"iterations=150", "threads=1", "data_dir=/x"};
    CHECK(mela_run_resume(run, 1, longer, &data) == NULL && strstr(mela_last_error(), "iterations"),
          "a resumed run keeps its iterations: %s", mela_last_error());
    r = mela_run_resume(run, 3, same, &data);
    CHECK(r && mela_run_config_of(r)->threads == 1, "the same value, threads and data_dir: %s", mela_last_error());
    mela_run_close(r);
    snprintf(cmd, sizeof cmd, "cp -r %s %s.bad && truncate -s 100 %s.bad/state.safetensors", run, run, run);
    CHECK(system(cmd) == 0, "copy");
    snprintf(path, sizeof path, "%s.bad", run);
    CHECK(mela_run_resume(path, 0, NULL, &data) == NULL && strstr(mela_last_error(), "bad/state.safetensors"),
          "a damaged state: %s", mela_last_error());
    snprintf(cmd, sizeof cmd, "cp %s/state.safetensors %s.bad/ && head -c 100 %s/metrics.jsonl > "
             "%s.bad/metrics.jsonl", run, run, run, run);
    CHECK(system(cmd) == 0, "copy");
    r = mela_run_resume(path, 0, NULL, &data);
    CHECK(r && mela_run_fit(r, 0, NULL, NULL) == -1 && strstr(mela_last_error(), "metrics.jsonl"),
          "metrics shorter than the state: %s", mela_last_error());
    mela_run_close(r);
    CHECK(mela_run_remove(path) == 0 && !mela_run_saved(path), "remove: %s", mela_last_error());
    CHECK(mela_run_resume(path, 0, NULL, &data) == NULL && strstr(mela_last_error(), "no run to resume"),
          "nothing to resume: %s", mela_last_error());
    char file[400];
    snprintf(file, sizeof file, "%s/file", root);
    fclose(fopen(file, "w"));
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s/sub", file);
    CHECK(mela_run_open(&rc, &data) == NULL && strstr(mela_last_error(), "file"),
          "an out_dir that cannot be made, before any data: %s", mela_last_error());
}

/* Weights with a NaN are never written. */
static void test_no_nan_saved(void)
{
    char run[512], path[700];
    snprintf(run, sizeof run, "%s/nan", root);
    mela_run_config rc;
    proto_config(&rc, run, 10);
    mela_run_data data = {d.ds, &d.train, &d.test, &d.test};
    mela_run *r = mela_run_open(&rc, &data);
    mela_run_theta(r)[5] = NAN;
    CHECK(run_save_checkpoint(r, "best.safetensors", 3, 0.5) == -1 &&
              strstr(mela_last_error(), "iteration 3: the weights of") && strstr(mela_last_error(), "nan"),
          "a NaN weight: %s", mela_last_error());
    snprintf(path, sizeof path, "%s/best.safetensors", run);
    CHECK(access(path, F_OK) != 0, "nothing written");
    mela_run_close(r);
}

/* --patience: a run whose validation score cannot improve (a step size of
 * 1e-8 leaves every prediction as it was) stops once its best is `patience`
 * iterations old, counts as complete, and a resume of it trains no more. */
static void test_patience(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/patience", root);
    mela_run_config rc;
    proto_config(&rc, dir, 1000);
    rc.outer_lr = 1e-8f;
    rc.patience = 30; /* validations at 10 (the best), 20, 30, 40: stop */
    int st = session(&rc, NULL, 1, NULL);
    CHECK(st == 0, "a run out of patience is complete (%d: %s)", st, st < 0 ? mela_last_error() : "");
    mela_run_data data = {d.ds, &d.train, &d.test, &d.test};
    mela_run *r = mela_run_resume(dir, 0, NULL, &data);
    CHECK(r && mela_run_iteration(r) == 40, "stopped after iteration 40 (%d)", r ? mela_run_iteration(r) : -1);
    CHECK(r && mela_run_fit(r, 3, NULL, NULL) == 0 && mela_run_iteration(r) == 40,
          "resuming it trains no more (%d)", r ? mela_run_iteration(r) : -1);
    mela_run_close(r);
}

/* dir/<prefix>discrete.safetensors: the network of run/<prefix>arch.json (as
 * the run named it), its tensors those of the same name in the search's
 * checkpoint (best or last). */
static void discrete_check(const char *dir, const char *run, const char *prefix)
{
    char path[700], model[700];
    snprintf(path, sizeof path, "%s/%sdiscrete.safetensors", dir, prefix);
    snprintf(model, sizeof model, "%s/%sarch.json", run, prefix);
    mela_checkpoint *cd = mela_checkpoint_open(path);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, *prefix ? "last" : "best");
    mela_checkpoint *cb = mela_checkpoint_open(path);
    const char *mm = cd ? mela_checkpoint_meta(cd, "model") : NULL;
    CHECK(cd && cb && mm && !strcmp(mm, model) && mela_checkpoint_find(cd, "alpha") < 0 &&
              mela_checkpoint_find(cd, "alpha.schedule") < 0, "%sdiscrete.safetensors: the model %s, no alpha",
          prefix, mm ? mm : "-");
    int same = cd && cb && mela_checkpoint_count(cd) > 3, views = 0;
    for (int i = 0; same && i < mela_checkpoint_count(cd); i++) {
        int j = mela_checkpoint_find(cb, mela_checkpoint_name(cd, i));
        size_t n = mela_shape_numel(mela_checkpoint_shape(cd, i));
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        same = j >= 0 && !mela_checkpoint_tensor(cd, i, a) && !mela_checkpoint_tensor(cb, j, b) &&
               !memcmp(a, b, n * sizeof *a);
        views += same;
        free(a), free(b);
    }
    CHECK(same, "%sdiscrete: its %d tensors are the search's of the same name", prefix, views);
    mela_checkpoint_close(cd), mela_checkpoint_close(cb);
}

/* MetaNAS's schedules are functions of the iteration: a search with a
 * warm-up of 6 and the temperature annealed to 0.05 over 24 iterations,
 * stopped at 9 (after the warm-up, mid-annealing) and resumed on another
 * thread count, ends as the run never interrupted; its last checkpoint holds
 * the temperature it ended at; discrete.safetensors and
 * last-discrete.safetensors hold the best and last search weights of the
 * ops that arch.json and last-arch.json kept. */
static void test_search_schedule_resume(void)
{
    char run[256], ref[256], why[1500], path[700];
    snprintf(run, sizeof run, "%s/search", root);
    snprintf(ref, sizeof ref, "%s/search.ref", root);
    mela_run_config rc;
    synth_config(&rc, "maml", 24);
    snprintf(rc.model, sizeof rc.model, "search");
    rc.width = 2, rc.depth = 1, rc.meta_batch = 2, rc.steps = 1, rc.test_steps = 1;
    rc.val_every = 4, rc.val_episodes = 4;
    rc.nas_warmup = 6, rc.nas_temp_end = 0.05f;
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s", run);
    CHECK(session(&rc, NULL, 2, NULL) == 0, "reference search: %s", mela_last_error());
    CHECK(rename(run, ref) == 0, "rename"); /* the same out_dir in both runs' metadata */
    snprintf(path, sizeof path, "%s/last.safetensors", ref);
    mela_checkpoint *ck = mela_checkpoint_open(path);
    float sched[2] = {0, 0};
    int si = ck ? mela_checkpoint_find(ck, "alpha.schedule") : -1;
    CHECK(si >= 0 && mela_checkpoint_tensor(ck, si, sched) == 0 && sched[0] == 0.05f &&
              fabsf(sched[1] - 0.0025f) < 1e-8f,
          "the last checkpoint: T 0.05, g 0.0025 (%g %g)", (double)sched[0], (double)sched[1]);
    mela_checkpoint_close(ck);
    /* the discrete networks of arch.json and last-arch.json with the best and
     * the last search weights of their ops */
    discrete_check(ref, run, "");
    discrete_check(ref, run, "last-");
    mela_run_data data = {d.ds, &d.train, &d.test, &d.test};
    mela_run *r = mela_run_open(&rc, &data);
    stop_now = 0, stop_at = 9; /* asked at the report of 9: stops after 10 */
    mela_run_set_stop(r, &stop_now);
    CHECK(r && mela_run_fit(r, 3, stop_progress, NULL) == 1 && mela_run_iteration(r) == 10,
          "stopped after iteration 10 (%d)", r ? mela_run_iteration(r) : -1);
    mela_run_close(r);
    CHECK(session(NULL, run, 1, NULL) == 0, "resume: %s", mela_last_error());
    CHECK(rf_same_run(ref, run, why, sizeof why), "stopped and resumed = never interrupted: %s", why);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    (void)synth_train;
    synth_open(&d, 21);
    test_kill_resume();
    test_stop();
    test_refusals();
    test_no_nan_saved();
    test_patience();
    test_search_schedule_resume();
    synth_close(&d);
    check_rm_rf(root);
    return check_finish();
}
