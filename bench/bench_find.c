/* bench_find.c - one-shot detection on seeded Omniglot scenes: a metric
 * checkpoint (mela_finder) against normalised cross-correlation of the
 * support drawings (mela_ncc_find), on the same scenes.
 *
 *   bench_find CHECKPOINT [--scenes 1000] [--ways 5] [--seed 1] [--threads 1]
 *              [--data-dir ../shared/data/omniglot] [--set evaluation|background]
 *              [--stride 4] [--draw DIR N] [--jobs J]
 *
 * Measured: mAP@0.5 (the AP of each support slot 0..ways-1 over all scenes'
 * detections, averaged over slots; 95% CI from 200 bootstrap resamples of
 * the scenes), scene-level accuracy of "is class c in this scene" (a
 * detection of c at or above the threshold; mean over scenes and classes,
 * 95% CI over scenes), and seconds per scene for each method. --set
 * background measures on scenes of the training alphabets (for choosing
 * thresholds); the benchmark proper uses the evaluation alphabets. Prints a
 * Markdown table row per method, and the scene accuracy at a sweep of
 * thresholds. --p-target P: each character a target with probability P
 * (default 0.5; 1e-9: distractors only, where the right answer is "nothing
 * found" and the count of such answers is printed). --jobs J searches J scenes at once (threads, each with its
 * own finder; --threads must be 1): the same numbers as one job, the CPU time
 * per scene then that of each scene's thread. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "mela_data.h"
#include "mela_io.h"
#include "mela_learn.h"

#define NSWEEP 14 /* thresholds 0.30, 0.35, ..., 0.95 */

typedef struct det {
    int scene, label, tp;
    float score;
} det;

typedef struct method {
    const char *name;
    float threshold;
    det *d;
    size_t n, cap;
    double seconds, cpu; /* wall-clock and CPU time of the process */
    int empty;           /* scenes with no box at the threshold */
    double *acc;                /* per scene, at the threshold */
    double *sweep;              /* NSWEEP thresholds x scenes */
    float sweep_t[NSWEEP];
} method;

static double now(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void add_dets(method *m, int scene, const mela_find_box *b, int n, const mela_find_box *gt,
                     int ngt)
{
    int *tp = calloc((size_t)n + 1, sizeof *tp);
    mela_match_boxes(b, n, gt, ngt, 0.5f, tp);
    if (m->n + n > m->cap) {
        m->cap = 2 * (m->n + n) + 1024;
        m->d = realloc(m->d, m->cap * sizeof *m->d);
    }
    for (int i = 0; i < n; i++)
        m->d[m->n++] = (det){scene, b[i].label, tp[i], b[i].score};
    free(tp);
}

/* Scene accuracy of "class c is here" over the ways classes at threshold t. */
static double scene_acc(const mela_find_box *b, int n, const mela_scene *sc, float t)
{
    int ok = 0;
    for (int c = 0; c < sc->ways; c++) {
        int present = 0, said = 0;
        for (int g = 0; g < sc->nboxes; g++)
            present |= sc->boxes[g].label == c;
        for (int i = 0; i < n; i++)
            said |= b[i].label == c && b[i].score >= t;
        ok += present == said;
    }
    return (double)ok / sc->ways;
}

/* mAP over slots with scene s counted count[s] times (1 each: the plain
 * mAP; a bootstrap resample otherwise); npos[c]: positives of slot c. */
static double map_of(const method *m, int ways, const int *count, const int *npos_scene)
{
    double sum = 0;
    int nc = 0;
    float *sc = malloc((m->n + 1) * sizeof *sc);
    int *tp = malloc((m->n + 1) * sizeof *tp);
    for (int c = 0; c < ways; c++) {
        int n = 0, npos = 0;
        for (size_t i = 0; i < m->n; i++) {
            const det *d = &m->d[i];
            for (int k = 0; d->label == c && k < count[d->scene]; k++)
                sc[n] = d->score, tp[n++] = d->tp;
        }
        npos = npos_scene[c];
        double ap = mela_average_precision(n, sc, tp, npos);
        if (ap == ap)
            sum += ap, nc++;
    }
    free(sc), free(tp);
    return nc ? sum / nc : NAN;
}

/* The search of every scene by both methods, J scenes at once: scene s by
 * job s % J, its boxes and times kept for the merge in scene order. */
typedef struct found {
    mela_find_box *b[2];
    int n[2];
    double wall[2], cpu[2];
} found;

typedef struct jobs {
    const mela_scenes *gen;
    const char *ckpt;
    const mela_find_opts *fo;
    unsigned long long seed;
    int ways, scenes, J, cpu_clock;
    found *out;
    int failed;
    char why[512];
    pthread_mutex_t lock;
    int done;
} jobs;

typedef struct job_arg {
    jobs *js;
    int w;
} job_arg;

static void *job_run(void *arg)
{
    jobs *js = ((job_arg *)arg)->js;
    int w = ((job_arg *)arg)->w;
    mela_finder *f = mela_finder_open(js->ckpt, js->fo);
    for (int s = w; f && s < js->scenes && !js->failed; s += js->J) {
        mela_scene sc;
        found *o = &js->out[s];
        int rc = mela_scene_make(js->gen, js->seed, (uint64_t)s, &sc);
        for (int k = 0; k < 2 && !rc; k++) {
            double t0 = now(CLOCK_MONOTONIC), c0 = now(js->cpu_clock);
            rc = k == 0 ? (mela_finder_support(f, js->ways, 1, sc.support) ||
                           mela_finder_find(f, sc.pixels, sc.size, sc.size, -INFINITY, &o->b[0], &o->n[0]))
                        : mela_ncc_find(sc.support, js->ways, 1, sc.pixels, sc.size, sc.size, js->fo,
                                        -INFINITY, &o->b[1], &o->n[1]);
            o->wall[k] = now(CLOCK_MONOTONIC) - t0;
            o->cpu[k] = now(js->cpu_clock) - c0;
        }
        if (!rc)
            mela_scene_free(&sc);
        pthread_mutex_lock(&js->lock);
        if (rc && !js->failed)
            js->failed = 1, snprintf(js->why, sizeof js->why, "%s", mela_last_error());
        if (++js->done % 50 == 0)
            fprintf(stderr, "bench_find: %d/%d scenes\n", js->done, js->scenes);
        pthread_mutex_unlock(&js->lock);
    }
    if (!f) {
        pthread_mutex_lock(&js->lock);
        js->failed = 1, snprintf(js->why, sizeof js->why, "%s", mela_last_error());
        pthread_mutex_unlock(&js->lock);
    }
    mela_finder_close(f);
    return NULL;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_find CHECKPOINT [--scenes N] [--ways N] [--seed S] [--threads T] "
                    "[--data-dir DIR] [--set evaluation|background] [--stride S] "
                    "[--threshold T] [--ncc-threshold T] [--nms-iou X] [--plain-support] [--draw DIR N] "
                    "[--jobs J] [--p-target P] [--score blank|others|ratio]\n");
    return 2;
}

static void draw(const char *dir, const char *name, int i, const mela_scene *sc,
                 const mela_find_box *b, int n)
{
    mela_png_box *pb = calloc((size_t)n + sc->nboxes + 1, sizeof *pb);
    char (*txt)[32] = calloc((size_t)n + sc->nboxes + 1, sizeof *txt);
    int k = 0;
    for (int g = 0; g < sc->nboxes; g++) { /* the truth in grey, under the detections */
        const mela_scene_box *q = &sc->boxes[g];
        if (q->label >= 0)
            snprintf(txt[n + g], sizeof txt[n + g], "%d", q->label);
        else
            snprintf(txt[n + g], sizeof txt[n + g], "-");
        pb[k++] = (mela_png_box){q->x, q->y, q->w, q->h, txt[n + g], 7};
    }
    for (int j = 0; j < n; j++) {
        snprintf(txt[j], sizeof txt[j], "%d %.2f", b[j].label, (double)b[j].score);
        pb[k++] = (mela_png_box){b[j].x, b[j].y, b[j].w, b[j].h, txt[j], b[j].label};
    }
    char path[512];
    snprintf(path, sizeof path, "%s/scene%03d-%s.png", dir, i, name);
    if (mela_boxes_png(path, sc->pixels, sc->size, sc->size, 1, 0, k, pb))
        fprintf(stderr, "bench_find: %s\n", mela_last_error());
    free(pb), free(txt);
}

int main(int argc, char **argv)
{
    const char *ckpt = NULL, *data = "../shared/data/omniglot", *set = "evaluation", *drawdir = NULL;
    int score = MELA_FIND_SCORE_BLANK;
    int plain = 0, scenes = 1000, ways = 5, threads = 1, stride = MELA_FIND_STRIDE, ndraw = 0, J = 1;
    unsigned long long seed = 1;
    float thr = MELA_FIND_THRESHOLD, nthr = 0.55f, nms = 0, p_target = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--scenes") && v)
            scenes = atoi(v), i++;
        else if (!strcmp(a, "--ways") && v)
            ways = atoi(v), i++;
        else if (!strcmp(a, "--seed") && v)
            seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--threads") && v)
            threads = atoi(v), i++;
        else if (!strcmp(a, "--jobs") && v)
            J = atoi(v), i++;
        else if (!strcmp(a, "--p-target") && v)
            p_target = strtof(v, NULL), i++;
        else if (!strcmp(a, "--stride") && v)
            stride = atoi(v), i++;
        else if (!strcmp(a, "--plain-support"))
            plain = 1;
        else if (!strcmp(a, "--score") && v) {
            score = !strcmp(v, "blank") ? MELA_FIND_SCORE_BLANK : !strcmp(v, "others") ? MELA_FIND_SCORE_OTHERS
                  : !strcmp(v, "ratio") ? MELA_FIND_SCORE_RATIO : -1;
            if (score < 0)
                return usage();
            i++;
        }
        else if (!strcmp(a, "--nms-iou") && v)
            nms = strtof(v, NULL), i++;
        else if (!strcmp(a, "--threshold") && v)
            thr = strtof(v, NULL), i++;
        else if (!strcmp(a, "--ncc-threshold") && v)
            nthr = strtof(v, NULL), i++;
        else if (!strcmp(a, "--data-dir") && v)
            data = v, i++;
        else if (!strcmp(a, "--set") && v)
            set = v, i++;
        else if (!strcmp(a, "--draw") && v && i + 2 < argc)
            drawdir = v, ndraw = atoi(argv[i + 2]), i += 2;
        else if (a[0] == '-' || ckpt)
            return usage();
        else
            ckpt = a;
    }
    if (!ckpt || scenes < 1 || ways < 1 || J < 1 || (J > 1 && threads != 1))
        return usage();
    int eval = !strcmp(set, "evaluation");
    mela_omniglot_opts oo = {.H = 105, .W = 105,
                             .sets = eval ? MELA_OMNIGLOT_EVALUATION : MELA_OMNIGLOT_BACKGROUND};
    mela_dataset *ds = mela_omniglot_load(data, &oo);
    mela_scene_opts so = {0};
    so.ways = ways;
    so.p_target = p_target;
    mela_scenes *gen = ds ? mela_scenes_new(ds, &so) : NULL;
    mela_find_opts fo = {0};
    fo.stride = stride;
    fo.score = score;
    fo.threads = threads;
    fo.max_boxes = 100;
    fo.nms_iou = nms;
    fo.plain_support = plain;
    mela_finder *f = gen ? mela_finder_open(ckpt, &fo) : NULL;
    if (!f) {
        fprintf(stderr, "bench_find: %s\n", mela_last_error());
        return 1;
    }
    if (drawdir)
        mkdir(drawdir, 0777);
    method ms[2] = {{.name = "mela find", .threshold = thr}, {.name = "NCC template", .threshold = nthr}};
    int *npos = calloc(ways, sizeof *npos);
    for (int k = 0; k < 2; k++) {
        ms[k].acc = calloc(scenes, sizeof(double));
        ms[k].sweep = calloc((size_t)NSWEEP * scenes, sizeof(double));
        for (int t = 0; t < NSWEEP; t++)
            ms[k].sweep_t[t] = 0.3f + 0.05f * t;
    }
    found *fd = calloc(scenes, sizeof *fd);
    jobs js = {gen, ckpt, &fo, seed, ways, scenes, J, J > 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID,
               fd, 0, "", PTHREAD_MUTEX_INITIALIZER, 0};
    pthread_t *tid = calloc(J, sizeof *tid);
    job_arg *ja = calloc(J, sizeof *ja);
    for (int w = 0; w < J; w++) {
        ja[w] = (job_arg){&js, w};
        if (pthread_create(&tid[w], NULL, job_run, &ja[w])) {
            fprintf(stderr, "bench_find: cannot start job %d\n", w);
            return 1;
        }
    }
    for (int w = 0; w < J; w++)
        pthread_join(tid[w], NULL);
    free(tid), free(ja);
    if (js.failed) {
        fprintf(stderr, "bench_find: %s\n", js.why);
        return 1;
    }
    int nboxes_total = 0;
    for (int s = 0; s < scenes; s++) {
        mela_scene sc;
        if (mela_scene_make(gen, seed, (uint64_t)s, &sc)) {
            fprintf(stderr, "bench_find: %s\n", mela_last_error());
            return 1;
        }
        mela_find_box gt[MELA_SCENE_MAX_CHARS];
        int ngt = 0;
        for (int g = 0; g < sc.nboxes; g++)
            if (sc.boxes[g].label >= 0) {
                const mela_scene_box *q = &sc.boxes[g];
                gt[ngt++] = (mela_find_box){q->x, q->y, q->w, q->h, 1, q->label};
                npos[q->label]++;
            }
        nboxes_total += sc.nboxes;
        for (int k = 0; k < 2; k++) {
            mela_find_box *b = fd[s].b[k];
            int n = fd[s].n[k];
            ms[k].seconds += fd[s].wall[k];
            ms[k].cpu += fd[s].cpu[k];
            add_dets(&ms[k], s, b, n, gt, ngt);
            ms[k].acc[s] = scene_acc(b, n, &sc, ms[k].threshold);
            ms[k].empty += n == 0 || b[0].score < ms[k].threshold;
            for (int t = 0; t < NSWEEP; t++)
                ms[k].sweep[(size_t)t * scenes + s] = scene_acc(b, n, &sc, ms[k].sweep_t[t]);
            if (s < ndraw) {
                int shown = 0;
                while (shown < n && b[shown].score >= ms[k].threshold)
                    shown++;
                draw(drawdir, k == 0 ? "mela" : "ncc", s, &sc, b, shown);
            }
            free(b);
        }
        mela_scene_free(&sc);
    }
    free(fd);
    int npos_all = 0;
    for (int c = 0; c < ways; c++)
        npos_all += npos[c];
    printf("%d scenes (%s alphabets, seed %llu), %d-class 1-shot supports, %.2f characters and %.2f "
           "targets per scene\n\n", scenes, set, seed, ways, (double)nboxes_total / scenes,
           (double)npos_all / scenes);
    printf("| method | mAP@0.5 | 95%% CI | scene accuracy | threshold | ms per scene (wall) | CPU ms per scene |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- |\n");
    int *count = malloc(scenes * sizeof *count), *bpos = malloc(ways * sizeof *bpos);
    int *gtn = calloc((size_t)scenes * ways, sizeof *gtn);
    /* positives per scene and slot, for the resamples */
    {
        mela_scene sc;
        for (int s = 0; s < scenes; s++) {
            mela_scene_make(gen, seed, (uint64_t)s, &sc);
            for (int g = 0; g < sc.nboxes; g++)
                if (sc.boxes[g].label >= 0)
                    gtn[(size_t)s * ways + sc.boxes[g].label]++;
            mela_scene_free(&sc);
        }
    }
    for (int k = 0; k < 2; k++) {
        method *m = &ms[k];
        for (int s = 0; s < scenes; s++)
            count[s] = 1;
        double map = map_of(m, ways, count, npos);
        enum { B = 200 };
        double boot[B];
        mela_rng r = mela_rng_new(12345);
        for (int b = 0; b < B; b++) {
            memset(count, 0, scenes * sizeof *count);
            memset(bpos, 0, ways * sizeof *bpos);
            for (int s = 0; s < scenes; s++)
                count[mela_rng_below(&r, (uint32_t)scenes)]++;
            for (int s = 0; s < scenes; s++)
                for (int c = 0; c < ways; c++)
                    bpos[c] += count[s] * gtn[(size_t)s * ways + c];
            boot[b] = map_of(m, ways, count, bpos);
        }
        for (int i = 1; i < B; i++) /* sort the resamples */
            for (int j = i; j > 0 && boot[j - 1] > boot[j]; j--) {
                double t = boot[j];
                boot[j] = boot[j - 1], boot[j - 1] = t;
            }
        double acc, ci;
        mela_mean_ci(m->acc, scenes, &acc, &ci);
        printf("| %s | %.3f | %.3f-%.3f | %.3f +- %.3f | %.2f | %.0f | %.0f |\n", m->name, map, boot[4],
               boot[B - 6], acc, ci, (double)m->threshold, 1000 * m->seconds / scenes,
               1000 * m->cpu / scenes);
    }
    printf("\nscenes with nothing found at the threshold: mela find %d, NCC %d (of %d)\n", ms[0].empty,
           ms[1].empty, scenes);
    printf("\nscene accuracy by threshold:\n");
    for (int k = 0; k < 2; k++) {
        printf("  %-13s", ms[k].name);
        for (int t = 0; t < NSWEEP; t++) {
            double acc, ci;
            mela_mean_ci(ms[k].sweep + (size_t)t * scenes, scenes, &acc, &ci);
            printf(" %.2f:%.3f+-%.3f", (double)ms[k].sweep_t[t], acc, ci);
        }
        printf("\n");
    }
    for (int k = 0; k < 2; k++)
        free(ms[k].d), free(ms[k].acc), free(ms[k].sweep);
    free(count), free(bpos), free(gtn), free(npos);
    mela_finder_close(f);
    mela_scenes_free(gen);
    mela_dataset_free(ds);
    return 0;
}
