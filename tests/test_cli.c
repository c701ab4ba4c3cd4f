/* test_cli.c - the mela tool as a user runs it: help and version, every
 * subcommand's help, bad flags (exit 2, a message naming the flag), a short
 * sinusoid train + eval, and (when Omniglot is in MELA_SHARED_DATA) a short
 * Omniglot run whose checkpoint `mela adapt` applies to PNGs written here;
 * runs that lose nothing: killed (SIGKILL) and stopped (SIGTERM) runs resumed
 * to the files of a run never interrupted, a used directory refused unless
 * --overwrite, a diverging validation stopping the run with what was saved. */
#include <png.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "runfiles.h"

static const char *bin;

/* Runs "mela ARGS", returns the exit status and the output (stdout+stderr). */
static int run(char *out, size_t n, const char *fmt, const char *arg1, const char *arg2)
{
    char args[2048], cmd[4096];
    snprintf(args, sizeof args, fmt, arg1 ? arg1 : "", arg2 ? arg2 : "");
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", bin, args);
    return check_run(out, n, cmd);
}

static void write_png(const char *path, int size, int seed)
{
    FILE *f = fopen(path, "wb");
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    png_init_io(p, f);
    png_set_IHDR(p, info, size, size, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    unsigned char row[256];
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) /* white paper, a dark stroke that depends on seed */
            row[x] = ((x * (seed + 1) + y * (seed + 2)) % 11 < 3) ? 0 : 255;
        png_write_row(p, row);
    }
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    fclose(f);
}

/* ------------------------------------------------------ runs that lose nothing */

/* Starts "mela ARGS" with its output in log; the pid is mela's (exec). */
static pid_t start(const char *log, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec '%s' %s > '%s' 2>&1", bin, args, log);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits for pid: its exit status, or -signal when a signal ended it. */
static int finish(pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int exists(const char *dir, const char *name)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* The value of a metadata key of a checkpoint, as an int (-1: none). */
static int meta_int(const char *dir, const char *name, const char *key)
{
    char p[800], *t;
    size_t n;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int v = -1;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    if ((t = rf_slurp(p, &n)) && strstr(t + 8, pat))
        v = atoi(strstr(t + 8, pat) + strlen(pat));
    free(t);
    return v;
}

/* MAML on sinusoids killed (SIGKILL) at random moments and resumed on 1 or
 * 2 threads until done; then stopped with SIGTERM and resumed; then the
 * directory is refused for a new run unless --overwrite: each time the same
 * files as the run never interrupted. */
static void test_resume(const char *dir)
{
    static char out[1 << 16];
    char rdir[600], ref[700], log[700], args[2048], why[1600];
    snprintf(rdir, sizeof rdir, "%s/maml", dir);
    snprintf(ref, sizeof ref, "%s/maml.ref", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    snprintf(args, sizeof args, "train --dataset sinusoid --iterations 1500 --val-every 25 --val-episodes 10 "
             "--report 10 --test-episodes 20 --threads 1 --out-dir %s", rdir);
    double t0 = now();
    CHECK(finish(start(log, args)) == 0, "reference run");
    double T = now() - t0;
    CHECK(rename(rdir, ref) == 0, "rename");
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    int kills = 0, temps = 0, status = -1, k;
    for (k = 0; k < 12 && status != 0; k++) { /* killed after a random number of records and time */
        char resume[800];
        snprintf(resume, sizeof resume, "train --resume %s --threads %d", rdir, 1 + k % 2);
        pid_t pid = start(log, exists(rdir, "state.safetensors") ? resume : args);
        int rows = k < 10 ? rf_rows(rdir) + 1 + rand() % 16 : 1 << 30;
        status = rf_signal_at_rows(pid, rdir, rows, (long)(2e6 * T / 150 * rand() / RAND_MAX), SIGKILL);
        kills += status == -SIGKILL;
        temps += status == -SIGKILL && rf_count_temps(rdir) > 0;
    }
    printf("maml: %d kills (%d in a save), %d sessions, seed %u, reference run %.2f s\n", kills, temps, k,
           seed, T);
    CHECK(status == 0 && kills >= 3, "killed %d times, then completed: exit %d", kills, status);
    CHECK(rf_same_run(ref, rdir, why, sizeof why), "killed and resumed = never interrupted: %s", why);
    CHECK(rf_count_temps(rdir) == 0, "no temp file left");

    check_rm_rf(rdir);
    status = rf_signal_at_rows(start(log, args), rdir, 5, 0, SIGTERM);
    size_t n;
    char *msg = rf_slurp(log, &n);
    CHECK(status == 128 + SIGTERM && msg && strstr(msg, "stopped (SIGTERM)") && strstr(msg, "--resume"),
          "SIGTERM saves and says how to resume: %d %s", status, msg ? msg : "");
    free(msg);
    int at = meta_int(rdir, "state.safetensors", "iteration");
    CHECK(at >= 40 && at < 1500, "the state is saved where the run stopped (5 records: 40 or after): %d", at);
    /* The same stop sent twice in a row (timeout and schedulers signal the
     * process, then its group) still saves. */
    char saved[800];
    snprintf(saved, sizeof saved, "%s.term1", rdir);
    CHECK(rename(rdir, saved) == 0, "rename");
    pid_t pid = start(log, args);
    const struct timespec ms = {0, 1000000}, ms20 = {0, 20000000};
    while (rf_rows(rdir) < 5 && waitpid(pid, NULL, WNOHANG) == 0)
        nanosleep(&ms, NULL);
    kill(pid, SIGTERM);
    nanosleep(&ms20, NULL);
    kill(pid, SIGTERM);
    status = finish(pid);
    msg = rf_slurp(log, &n);
    CHECK(status == 128 + SIGTERM && msg && strstr(msg, "stopped (SIGTERM)"),
          "SIGTERM twice within a second still saves: %d %s", status, msg ? msg : "");
    free(msg);
    check_rm_rf(rdir);
    CHECK(rename(saved, rdir) == 0, "rename back");
    char resume[800];
    snprintf(resume, sizeof resume, "train --resume %s", rdir);
    CHECK(run(out, sizeof out, "%s", resume, 0) == 0 && strstr(out, "test: mse"), "resume: %s", out);
    CHECK(rf_same_run(ref, rdir, why, sizeof why), "stopped and resumed = never interrupted: %s", why);

    CHECK(run(out, sizeof out, "%s", args, 0) == 2 && strstr(out, "already holds a run") &&
              strstr(out, "--resume") && strstr(out, "--overwrite"), "a used directory is refused: %s", out);
    CHECK(rf_same_run(ref, rdir, why, sizeof why), "... and left as it was: %s", why);
    CHECK(run(out, sizeof out, "%s --overwrite", args, 0) == 0, "--overwrite starts again: %s", out);
    CHECK(rf_same_run(ref, rdir, why, sizeof why), "... and ends as the first time: %s", why);
    CHECK(run(out, sizeof out, "train --resume %s --iterations 3000", rdir, 0) == 1 &&
              strstr(out, "iterations"), "a resumed run keeps its length: %s", out);
}

/* A validation that diverges stops the rdir (exit 1) naming the iteration;
 * what was saved before stays. */
static void test_nan(const char *dir)
{
    static char out[1 << 16];
    char args[1024], rdir[700];
    snprintf(rdir, sizeof rdir, "%s/nan1", dir);
    snprintf(args, sizeof args, "--dataset sinusoid --iterations 200 --val-every 20 --val-episodes 10 "
             "--test-episodes 10 --threads 1 --inner-lr 100 --out-dir %s", rdir);
    CHECK(run(out, sizeof out, "train %s", args, 0) == 1 && strstr(out, "iteration 20: validation loss is") &&
              strstr(out, "no best.safetensors was written") && !strstr(out, "cannot open"),
          "diverged at the first validation: %s", out);
    CHECK(meta_int(rdir, "state.safetensors", "iteration") == 0 && !exists(rdir, "last.safetensors"),
          "the state of iteration 0 is kept, no checkpoint written");
    /* inner steps of 0.15: training goes on, the 30 steps of validation
     * diverge after a few good validations */
    snprintf(rdir, sizeof rdir, "%s/nan2", dir);
    snprintf(args, sizeof args, "--dataset sinusoid --iterations 2000 --val-every 20 --val-episodes 10 "
             "--test-episodes 10 --threads 1 --inner-lr 0.15 --test-steps 30 --out-dir %s", rdir);
    int st = run(out, sizeof out, "train %s", args, 0);
    const char *m = strstr(out, ": validation loss is ");
    while (m && m > out && m[-1] != ' ') /* back to N of "iteration N: validation loss is" */
        m--;
    int it = m ? atoi(m) : -1;
    int last = meta_int(rdir, "last.safetensors", "iteration");
    CHECK(st == 1 && it > 0 && it % 20 == 0, "stopped, naming the iteration: %s", out);
    CHECK(last < 0 || (last == it - 20 && meta_int(rdir, "state.safetensors", "iteration") == last &&
                       meta_int(rdir, "best.safetensors", "iteration") <= last),
          "last, best and state hold the last good validation (%d, before %d)", last, it);
}


/* ---------------------------------------------------------- tune and config */

/* Lines of path (0 when it is missing). */
static int count_lines(const char *path)
{
    size_t n;
    char *t = rf_slurp(path, &n);
    int k = 0;
    for (size_t i = 0; t && i < n; i++)
        k += t[i] == '\n';
    free(t);
    return k;
}

/* 1 when every record of a's trials.jsonl (trial, bracket, rung, iterations,
 * score: all but the seconds and the values) is in b's, and both have as
 * many. */
static int same_records(const char *a, const char *b)
{
    char pa[700], pb[700];
    size_t na, nb;
    snprintf(pa, sizeof pa, "%s/trials.jsonl", a);
    snprintf(pb, sizeof pb, "%s/trials.jsonl", b);
    char *ta = rf_slurp(pa, &na), *tb = rf_slurp(pb, &nb);
    int ok = ta && tb && count_lines(pa) == count_lines(pb) && count_lines(pa) > 0;
    for (char *l = ta, *e; ok && (e = strchr(l, '\n')); l = e + 1) {
        char *sec = strstr(l, ",\"seconds\""), key[400];
        ok = sec && sec < e;
        snprintf(key, sizeof key, "%.*s", ok ? (int)(sec - l) : 0, l);
        ok = ok && strstr(tb, key);
    }
    free(ta), free(tb);
    return ok;
}

/* mela tune on sinusoids, killed (SIGKILL) at random moments and gone on
 * with --resume: the same records as a search never killed, none twice (no
 * finished trial trained again), the same winner; then its best.conf
 * trained by mela train --config. */
static void test_tune(const char *dir)
{
    static char out[1 << 16];
    char ref[600], tdir[600], log[700], args[2048], path[800];
    snprintf(ref, sizeof ref, "%s/tune.ref", dir);
    snprintf(tdir, sizeof tdir, "%s/tune", dir);
    snprintf(log, sizeof log, "%s/tune.log", dir);
    const char *space = "--dataset sinusoid --vary 'inner_lr log 0.001 0.1' --vary 'outer_lr log 1e-4 1e-2' "
                        "--vary 'meta_batch choice 5 10 25' --trials 27 --min-iterations 30 --max-iterations 810 "
                        "--val-episodes 10 --workers 2 --threads 1";
    CHECK(run(out, sizeof out, "tune --help", 0, 0) == 0 && strstr(out, "Usage: mela tune") &&
              strstr(out, "KEY log LO HI"), "tune --help: %s", out);
    CHECK(run(out, sizeof out, "tune --vary 'steps uniform 1 3'", 0, 0) == 2 && strstr(out, "steps"),
          "a uniform draw of an integer option: %s", out);
    snprintf(args, sizeof args, "tune %s --out-dir %s", space, ref);
    double t0 = now();
    CHECK(run(out, sizeof out, "%s", args, 0) == 0 && strstr(out, "best: trial") && strstr(out, "best.conf"),
          "tune: %s", out);
    double T = now() - t0;
    const char *b = strstr(out, "best: trial ");
    int best = b ? atoi(b + 12) : -1;
    snprintf(path, sizeof path, "%s/trials.jsonl", ref);
    CHECK(count_lines(path) == 27 + 9 + 3 + 1, "27 + 9 + 3 + 1 records: %d", count_lines(path));
    snprintf(path, sizeof path, "%s/trials.jsonl", tdir);
    snprintf(args, sizeof args, "tune %s --out-dir %s", space, tdir);
    int kills = 0, status = -1, k;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    for (k = 0; k < 12 && status != 0; k++) {
        char resume[800];
        snprintf(resume, sizeof resume, "tune --resume %s --workers %d", tdir, 1 + k % 2);
        int had = count_lines(path), want = k < 4 ? had + 1 + rand() % 8 : 1 << 30;
        long extra_us = (long)(1e6 * T / 40 * rand() / RAND_MAX);
        status = rf_signal_at(start(log, had || k ? resume : args), count_lines, path, want, extra_us, SIGKILL);
        kills += status == -SIGKILL;
    }
    printf("tune: %d kills, %d sessions, seed %u, reference %.2f s\n", kills, k, seed, T);
    CHECK(status == 0 && kills >= 2, "killed %d times, then done: %d", kills, status);
    CHECK(same_records(ref, tdir), "killed and gone on = never killed: the same records, none twice");
    char *log_text = rf_slurp(log, &(size_t){0});
    CHECK(log_text && strstr(log_text, "taken from the log"), "the last session took what was scored: %s",
          log_text ? log_text : "");
    free(log_text);
    CHECK(run(out, sizeof out, "%s", args, 0) == 2 && strstr(out, "--resume"), "a used directory: %s", out);

    /* the winner trained rung by rung, paused and continued from its state
     * at every rung, is the run of its configuration trained straight */
    char trial[800], straight[700];
    snprintf(trial, sizeof trial, "%s/trial-%04d", ref, best);
    snprintf(straight, sizeof straight, "%s/straight", dir);
    snprintf(args, sizeof args, "train --config %s/best.conf --report 1 --test-episodes 20 --out-dir %s", ref,
             straight);
    char why[1600];
    CHECK(run(out, sizeof out, "%s", args, 0) == 0 && rf_same(trial, straight, "metrics.jsonl", why, sizeof why),
          "the winner (trial %d), promoted twice, = its configuration trained straight: %s", best, why);

    /* the winner's configuration trains; options after it change it */
    snprintf(args, sizeof args, "train --config %s/best.conf --iterations 60 --report 30 --test-episodes 20 "
             "--out-dir %s/tuned", ref, dir);
    CHECK(run(out, sizeof out, "%s", args, 0) == 0 && strstr(out, "60 iterations") && strstr(out, "test: mse"),
          "train --config best.conf: %s", out);
}

/* A run's saved configuration reproduces the run: trained again from its
 * state, its checkpoint or its directory (--config), into the same place,
 * it leaves the same files; an option given after --config varies it. */
static void test_config(const char *dir)
{
    static char out[1 << 16];
    char rdir[600], ref[700], why[1600], args[2048];
    snprintf(rdir, sizeof rdir, "%s/cfg", dir);
    snprintf(ref, sizeof ref, "%s/cfg.ref", dir);
    snprintf(args, sizeof args, "train --dataset sinusoid --iterations 150 --val-every 50 --val-episodes 10 "
             "--report 50 --test-episodes 20 --seed 7 --inner-lr 0.02 --meta-batch 10 --threads 1 --out-dir %s",
             rdir);
    CHECK(run(out, sizeof out, "%s", args, 0) == 0, "the run: %s", out);
    CHECK(rename(rdir, ref) == 0, "rename");
    const char *from[] = {"state.safetensors", "best.safetensors", ""};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "train --config %s/%s --report 50", ref, from[i]);
        CHECK(run(out, sizeof out, "%s", args, 0) == 0, "--config %s: %s", from[i], out);
        CHECK(rf_same_run(ref, rdir, why, sizeof why), "--config %s: the same run: %s", from[i], why);
        check_rm_rf(rdir);
    }
    snprintf(args, sizeof args, "train --config %s/best.safetensors --seed 8 --report 50", ref);
    CHECK(run(out, sizeof out, "%s", args, 0) == 0 && !rf_same_run(ref, rdir, why, sizeof why),
          "--config then --seed 8: another run");
    CHECK(run(out, sizeof out, "train --config %s/nope.conf", dir, 0) == 2 && strstr(out, "nope.conf"),
          "a missing file: %s", out);
}

int main(void)
{
    static char out[1 << 16];
    bin = getenv("MELA_BIN");
    if (!bin) {
        fprintf(stderr, "MELA_BIN is not set (CTest sets it)\n");
        return 1;
    }
    CHECK(run(out, sizeof out, "--help", 0, 0) == 0 && strstr(out, "train") && strstr(out, "adapt"),
          "--help lists the commands: %s", out);
    CHECK(run(out, sizeof out, "--version", 0, 0) == 0 && strstr(out, "mela 0."), "--version: %s", out);
    const char *cmds[] = {"train", "eval", "adapt", "demo"};
    for (int i = 0; i < 4; i++)
        CHECK(run(out, sizeof out, "%s --help", cmds[i], 0) == 0 && strstr(out, "Usage: mela"),
              "%s --help: %s", cmds[i], out);
    CHECK(run(out, sizeof out, "train --learner reptile --ways 20 --help", 0, 0) == 0 &&
              strstr(out, "default for reptile on omniglot, 20-way") && strstr(out, "(default: 0.0005)"),
          "train --help shows the defaults of the learner given: %s", out);
    CHECK(run(out, sizeof out, "train --learner protonet --split lake --help", 0, 0) == 0 &&
              strstr(out, "20-way") && strstr(out, "--test-queries     query examples per class at test "
                                               "time (sinusoid: points) (default: 1)"),
          "--split lake gives every learner Lake's 20-way one-query protocol: %s", out);
    CHECK(run(out, sizeof out, "models", 0, 0) == 0 && strstr(out, "omniglot-protonet") &&
              strstr(out, "omniglot-maml-5w1s"),
          "mela models lists the shipped models (models/ beside the build folder): %s", out);
    CHECK(run(out, sizeof out, "models --dir /nonexistent-mela-models", 0, 0) == 1 && strstr(out, "index.tsv"),
          "mela models --dir of a folder without models says so: %s", out);
    CHECK(run(out, sizeof out, "eval no-such-model --episodes 1", 0, 0) == 1 && strstr(out, "no-such-model"),
          "an unknown model name is named in the error: %s", out);
    CHECK(run(out, sizeof out, "--help", 0, 0) == 0 && strstr(out, "MAML++, Reptile"),
          "--help names every learner: %s", out);
    CHECK(run(out, sizeof out, "adapt --help", 0, 0) == 0 && strstr(out, "mamlpp, reptile"),
          "adapt --help names every gradient-based learner: %s", out);
    CHECK(run(out, sizeof out, "bogus", 0, 0) == 2 && strstr(out, "bogus"), "unknown command: %s", out);
    CHECK(run(out, sizeof out, "train --ways 0", 0, 0) == 2 && strstr(out, "ways"), "bad ways: %s", out);
    CHECK(run(out, sizeof out, "train --shots 0", 0, 0) == 2 && strstr(out, "shots"), "zero shots: %s", out);
    CHECK(run(out, sizeof out, "train --learner nope", 0, 0) == 2 && strstr(out, "nope"), "bad learner: %s", out);
    CHECK(run(out, sizeof out, "eval /nonexistent.safetensors", 0, 0) == 1 && strstr(out, "/nonexistent"),
          "missing checkpoint: %s", out);

    char dir[] = "/tmp/mela-cli-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(run(out, sizeof out, "train --dataset sinusoid --iterations 200 --val-every 100 --report 100 "
                               "--test-episodes 50 --out-dir %s/sin", dir, 0) == 0 &&
              strstr(out, "test: mse"), "sinusoid train: %s", out);
    char ck[600];
    snprintf(ck, sizeof ck, "%s/sin/best.safetensors", dir);
    CHECK(run(out, sizeof out, "eval %s --episodes 50", ck, 0) == 0 && strstr(out, "mse"), "eval: %s", out);
    snprintf(ck, sizeof ck, "%s/sin/metrics.jsonl", dir);
    struct stat st;
    CHECK(stat(ck, &st) == 0 && st.st_size > 0, "metrics written");

    /* Counts out of range are refused, not wrapped (4294967298 would be 2
     * as an int, 4294967296 would be 0). */
    snprintf(ck, sizeof ck, "%s/sin/best.safetensors", dir);
    CHECK(run(out, sizeof out, "eval %s --episodes 4294967298", ck, 0) == 2 &&
              strstr(out, "--episodes '4294967298' is not an integer in 1..1000000") &&
              !strstr(out, "mse"), "eval --episodes 4294967298: %s", out);
    CHECK(run(out, sizeof out, "eval %s --steps 4294967296", ck, 0) == 2 &&
              strstr(out, "--steps '4294967296' is not an integer in 0..100") && !strstr(out, "mse"),
          "eval --steps 4294967296: %s", out);
    CHECK(run(out, sizeof out, "eval %s --episodes 2x", ck, 0) == 2 && strstr(out, "'2x'"),
          "eval --episodes 2x: %s", out);
    CHECK(run(out, sizeof out, "adapt %s %s --steps 4294967296 q.png", ck, dir) == 2 &&
              strstr(out, "--steps '4294967296' is not an integer in 0..100"),
          "adapt --steps 4294967296: %s", out);
    CHECK(run(out, sizeof out, "demo --steps 4294967297", 0, 0) == 2 &&
              strstr(out, "1..1000000") && !strstr(out, "mse"), "demo --steps: %s", out);
    CHECK(run(out, sizeof out, "demo --seed -1", 0, 0) == 2 && strstr(out, "'-1'"),
          "demo --seed -1: %s", out);
    CHECK(run(out, sizeof out, "train --dataset sinusoid --report 2x", 0, 0) == 2 && strstr(out, "'2x'"),
          "train --report 2x: %s", out);
    CHECK(run(out, sizeof out, "train --ways 4294967301 --iterations 1", 0, 0) == 2 &&
              strstr(out, "is not an integer in 1..1000"), "train --ways 4294967301: %s", out);
    /* A checkpoint holding a NaN: refused by name, no result printed. */
    size_t n = 0;
    FILE *f = fopen(ck, "rb");
    static unsigned char buf[1 << 20];
    if (f) {
        n = fread(buf, 1, sizeof buf, f);
        fclose(f);
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8 && n >= 8; i++)
        hlen |= (uint64_t)buf[i] << (8 * i);
    CHECK(n > 8 + hlen + 4, "read %s (%zu bytes)", ck, n);
    if (n > 8 + hlen + 4) {
        memcpy(buf + 8 + hlen, "\x00\x00\xc0\x7f", 4); /* the first float of the data: NaN */
        snprintf(ck, sizeof ck, "%s/nan.safetensors", dir);
        f = fopen(ck, "wb");
        CHECK(f && fwrite(buf, 1, n, f) == n && fclose(f) == 0, "write %s", ck);
        CHECK(run(out, sizeof out, "eval %s --episodes 5", ck, 0) == 1 && strstr(out, ck) &&
                  strstr(out, "non-finite") && strstr(out, "NaN at index 0") && !strstr(out, "mse"),
              "NaN checkpoint: %s", out);
    }
    /* A FIFO or a directory as the checkpoint: said what it is, no hang. */
    snprintf(ck, sizeof ck, "%s/pipe.safetensors", dir);
    CHECK(mkfifo(ck, 0644) == 0, "mkfifo");
    alarm(60); /* a hang fails the test */
    CHECK(run(out, sizeof out, "eval %s", ck, 0) == 1 && strstr(out, "named pipe (FIFO)"),
          "FIFO checkpoint: %s", out);
    alarm(0);
    CHECK(run(out, sizeof out, "eval %s/sin", dir, 0) == 1 && strstr(out, "is a directory, not a file") &&
              !strstr(out, "Input/output error"), "directory as checkpoint: %s", out);

    const char *data = getenv("MELA_SHARED_DATA");
    char omni[600];
    snprintf(omni, sizeof omni, "%s/omniglot/images_background.zip", data ? data : "/nonexistent");
    if (stat(omni, &st) == 0) {
        snprintf(omni, sizeof omni, "%s/omniglot", data);
        char args[1200];
        snprintf(args, sizeof args, "--learner fomaml --iterations 3 --meta-batch 2 --val-every 0 "
                 "--val-episodes 4 --test-episodes 4 --width 8 --cache-dir %s/cache --data-dir %s", dir, omni);
        CHECK(run(out, sizeof out, "train %s --out-dir %s/om", args, dir) == 0 && strstr(out, "test: accuracy"),
              "omniglot train: %s", out);
        /* support: 5 classes x 2 images; queries: 3 images */
        char path[700];
        snprintf(path, sizeof path, "%s/support", dir);
        mkdir(path, 0755);
        for (int c = 0; c < 5; c++) {
            snprintf(path, sizeof path, "%s/support/class%d", dir, c);
            mkdir(path, 0755);
            for (int j = 0; j < 2; j++) {
                snprintf(path, sizeof path, "%s/support/class%d/%d.png", dir, c, j);
                write_png(path, 40 + 10 * j, c);
            }
        }
        snprintf(path, sizeof path, "%s/query", dir);
        mkdir(path, 0755);
        for (int q = 0; q < 3; q++) {
            snprintf(path, sizeof path, "%s/query/q%d.png", dir, q);
            write_png(path, 33, q);
        }
        char ckpt[700];
        snprintf(ckpt, sizeof ckpt, "%s/om/best.safetensors", dir);
        snprintf(args, sizeof args, "%s %s/support", ckpt, dir);
        CHECK(run(out, sizeof out, "adapt %s %s/query", args, dir) == 0 && strstr(out, "q2.png") &&
                  strstr(out, "class4=") && strstr(out, "13 were resized"), "adapt (and its note): %s", out);
        /* Reptile: trained 10-shot in minibatches, tested 1-shot; adapt takes
         * the 2-shot support in minibatches of 5 */
        char rargs[1400];
        snprintf(rargs, sizeof rargs, "--learner reptile --iterations 2 --test-steps 3 --val-every 0 "
                 "--val-episodes 4 --test-episodes 4 --width 8 --cache-dir %s/cache --data-dir %s", dir, omni);
        CHECK(run(out, sizeof out, "train %s --out-dir %s/rep", rargs, dir) == 0 && strstr(out, "test: accuracy"),
              "reptile train: %s", out);
        snprintf(args, sizeof args, "%s/rep/best.safetensors %s/support", dir, dir);
        CHECK(run(out, sizeof out, "adapt %s %s/query", args, dir) == 0 && strstr(out, "q2.png") &&
                  strstr(out, "class4="), "reptile adapt (2 shots, test shots 1 in training): %s", out);
        /* metric learners: any number of classes; compare for Siamese only */
        char margs[1400];
        snprintf(margs, sizeof margs, "--iterations 3 --val-every 0 --val-episodes 4 --test-episodes 4 "
                 "--width 8 --cache-dir %s/cache --data-dir %s", dir, omni);
        CHECK(run(out, sizeof out, "train --learner protonet --ways 10 --test-ways 5 %s --out-dir %s/pn", margs, dir) == 0 &&
                  strstr(out, "10-way 1-shot (tested 5-way") && strstr(out, "5-way 1-shot, 0 steps"), "protonet train: %s", out);
        CHECK(run(out, sizeof out, "train --learner siamese --pairs 8 %s --out-dir %s/sn", margs, dir) == 0 &&
                  strstr(out, "20-way 1-shot"), "siamese train: %s", out);
        snprintf(args, sizeof args, "%s/pn/best.safetensors %s/support", dir, dir);
        CHECK(run(out, sizeof out, "classify %s %s/query", args, dir) == 0 && strstr(out, "q1.png") &&
                  strstr(out, "class4="), "protonet classify (5 classes, 2 shots): %s", out);
        /* a shipped model by name (models/ beside the build folder) */
        CHECK(run(out, sizeof out, "classify omniglot-protonet %s/support %s/query", dir, dir) == 0 &&
                  strstr(out, "q1.png") && strstr(out, "class4="),
              "classify with the shipped omniglot-protonet, by name: %s", out);
        snprintf(args, sizeof args, "%s/sn/best.safetensors %s/query/q0.png", dir, dir);
        CHECK(run(out, sizeof out, "compare %s %s/query/q1.png", args, dir) == 0 && strstr(out, "p(same class) = 0."),
              "siamese compare: %s", out);
        /* the shipped Siamese model by name: an image against itself is the same class */
        CHECK(run(out, sizeof out, "compare omniglot-siamese-lake %s/query/q0.png %s/query/q0.png", dir, dir) == 0 &&
                  (strstr(out, "p(same class) = 1.0000") || strstr(out, "p(same class) = 0.9")),
              "compare with the shipped omniglot-siamese-lake, by name: %s", out);
        snprintf(args, sizeof args, "%s/pn/best.safetensors %s/query/q0.png", dir, dir);
        CHECK(run(out, sizeof out, "compare %s %s/query/q1.png", args, dir) == 1 && strstr(out, "only siamese"),
              "compare with a protonet checkpoint: %s", out);
        snprintf(args, sizeof args, "%s/om/best.safetensors %s/support", dir, dir);
        /* 4 classes for a 5-way model: a clear error */
        snprintf(path, sizeof path, "rm -rf %s/support/class4", dir);
        CHECK(system(path) == 0, "rm");
        CHECK(run(out, sizeof out, "adapt %s %s/query", args, dir) == 1 && strstr(out, "4 classes"),
              "wrong number of classes: %s", out);
        /* a sinusoid checkpoint cannot classify */
        snprintf(ckpt, sizeof ckpt, "%s/sin/best.safetensors %s/support", dir, dir);
        CHECK(run(out, sizeof out, "adapt %s %s/query", ckpt, dir) == 1 && strstr(out, "regression"),
              "regression checkpoint: %s", out);
    } else {
        printf("skipping the Omniglot part: %s not found\n", omni);
    }
    test_resume(dir);
    test_nan(dir);
    test_tune(dir);
    test_config(dir);
    char rm[700];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    CHECK(system(rm) == 0, "cleanup");
    return check_finish();
}
