/* models.c - the trained models that ship with mela: `mela models` lists
 * them, and every command that takes a CHECKPOINT also takes a shipped
 * model's name (cli_model_path). */
#define _XOPEN_SOURCE 700 /* realpath */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mela_io.h"

#ifndef MELA_MODELS_DIR
#define MELA_MODELS_DIR "/usr/local/share/mela/models"
#endif

/* The folders searched, in order: $MELA_MODELS, then models/ beside the
 * tool's build folder (a source checkout: build/mela -> models/), then the
 * installed share/mela/models. n folders into dirs. */
static int model_dirs(char dirs[][PATH_MAX], int max)
{
    int n = 0;
    const char *env = getenv("MELA_MODELS");
    if (env && *env && n < max)
        snprintf(dirs[n++], PATH_MAX, "%s", env);
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            if (n < max)
                snprintf(dirs[n++], PATH_MAX, "%.*s/../models", PATH_MAX - 16, exe);
            if (n < max)
                snprintf(dirs[n++], PATH_MAX, "%.*s/../share/mela/models", PATH_MAX - 32, exe);
        }
    }
    if (n < max)
        snprintf(dirs[n++], PATH_MAX, "%s", MELA_MODELS_DIR);
    return n;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A name: letters, digits, '-', '_' and '.', no '/'. */
static int is_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

const char *cli_model_path(const char *arg)
{
    static char path[PATH_MAX + 64];
    if (!arg || is_file(arg) || !is_name(arg))
        return arg;
    char dirs[4][PATH_MAX];
    int n = model_dirs(dirs, 4);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%.*s/%.60s.safetensors", PATH_MAX - 80, dirs[i], arg);
        if (is_file(path)) {
            static char real[PATH_MAX];
            return realpath(path, real) ? real : path;
        }
    }
    return arg;
}

/* One index row: name, file, learner, trained, tested, episodes, accuracy,
 * CI, evaluation options (tab-separated, models/index.tsv). */
typedef struct row {
    char f[9][256];
} row;

static int read_row(FILE *f, row *r)
{
    char line[2400];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, "\r\n")] = 0;
        int k = 0;
        for (char *p = line, *t; k < 9; k++, p = t + 1) {
            t = strchr(p, '\t');
            if (t)
                *t = 0;
            snprintf(r->f[k], sizeof r->f[k], "%.255s", p);
            if (!t) {
                k++;
                break;
            }
        }
        for (; k < 9; k++)
            r->f[k][0] = 0;
        return 1;
    }
    return 0;
}

static void models_help(void)
{
    printf("Usage: mela models [--dir DIR]\n"
           "\n"
           "Lists the trained models that ship with mela: their names, which every command\n"
           "taking a CHECKPOINT accepts in its place (mela classify omniglot-protonet\n"
           "SUPPORT_DIR QUERY...), what each was trained as, and the test accuracies recorded\n"
           "in the folder's index.tsv (95%% confidence intervals; models/README.md gives the\n"
           "commands that made them). Folders searched: $MELA_MODELS, models/ of a source\n"
           "checkout (beside the build folder), then %s.\n"
           "\n"
           "  --dir DIR     list the models in DIR only\n"
           "  -h, --help    show this help\n", MELA_MODELS_DIR);
}

/* Prints the models of one folder; 0 when it holds none. Each row's eval
 * options (how `mela eval NAME` reproduces it) follow its accuracy. */
static int list_dir(const char *dir)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/index.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    row *rows = NULL, r;
    int n = 0, cap = 0, wt = (int)strlen("tested");
    while (read_row(f, &r)) {
        if (n == cap) {
            row *more = realloc(rows, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *rows);
            if (!more)
                break;
            rows = more;
        }
        rows[n++] = r;
        if ((int)strlen(r.f[4]) > wt)
            wt = (int)strlen(r.f[4]);
    }
    fclose(f);
    char real[PATH_MAX];
    printf("%s:\n", realpath(dir, real) ? real : dir);
    printf("  %-22s %-9s %-16s %-*s %s\n", "name", "learner", "trained", wt, "tested", "test accuracy (95% CI)");
    for (int i = 0; i < n; i++) {
        const row *q = &rows[i];
        snprintf(path, sizeof path, "%s/%s", dir, q->f[1]);
        int same = i > 0 && !strcmp(rows[i - 1].f[0], q->f[0]);
        printf("  %-22s %-9s %-16s %-*s %s%% +- %s%% (%s episodes%s%s)%s\n", same ? "" : q->f[0],
               same ? "" : q->f[2], same ? "" : q->f[3], wt, q->f[4], q->f[6], q->f[7], q->f[5],
               q->f[8][0] ? "; " : "", q->f[8], is_file(path) ? "" : "  [file missing]");
    }
    free(rows);
    return n;
}

int cli_models(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            models_help();
            return 0;
        }
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            only = argv[++i];
            continue;
        }
        fprintf(stderr, "mela models: unknown argument '%s' (see 'mela models --help')\n", argv[i]);
        return 2;
    }
    if (only) {
        if (!list_dir(only)) {
            fprintf(stderr, "mela models: %s holds no index.tsv of models\n", only);
            return 1;
        }
        return 0;
    }
    char dirs[4][PATH_MAX];
    int n = model_dirs(dirs, 4), found = 0;
    for (int i = 0; i < n && !found; i++) /* the first folder that has models */
        found = list_dir(dirs[i]);
    if (!found) {
        fprintf(stderr, "mela models: no models found (searched $MELA_MODELS, models/ beside the build "
                "folder, %s)\n", MELA_MODELS_DIR);
        return 1;
    }
    return 0;
}
