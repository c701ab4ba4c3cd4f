/* data.c - `mela data fetch` (the official Omniglot archives, downloaded
 * and verified by mela_fetch; progress printed here) and `mela data info`
 * (what a data folder holds). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/sys.h"
#include "mela_data.h"
#include "mela_io.h"

static void data_help(FILE *f)
{
    fprintf(f,
            "Usage: mela data fetch omniglot [--dir DIR] [--url BASE]\n"
            "       mela data info DIR\n"
            "\n"
            "fetch  downloads the official Omniglot archives (images_background.zip and\n"
            "       images_evaluation.zip, Lake et al. 2015) into DIR (default %s,\n"
            "       where 'mela train' looks), verifies their MD5 checksums and only then\n"
            "       gives them their names. An interrupted download is kept as FILE.part and\n"
            "       continued by the next fetch; archives already there and correct are not\n"
            "       downloaded again.\n"
            "         --dir DIR   where the archives go (created if missing)\n"
            "         --url BASE  download BASE/<file> instead of\n"
            "                     %s\n"
            "                     (also the environment variable MELA_OMNIGLOT_URL)\n"
            "info   prints what DIR holds: Omniglot archives (official or not, alphabets,\n"
            "       characters, images), its splits, or a folder of class folders of images\n"
            "       (as 'mela adapt' reads them).\n"
            "  -h, --help   show this help\n"
            "\n"
            "Environment: MELA_FETCH_MD5=FILE=HEX[,FILE=HEX] replaces the known checksums\n"
            "(for a mirror with other bytes, and for the tests).\n",
            CLI_DATA_DIR, MELA_OMNIGLOT_URL);
}

/* ---------------------------------------------------------------- fetch */

typedef struct show {
    const char *file;
    int tty, last_quarter;
    double last;
} show;

static void fmt_mb(long long b, char *buf, size_t n) { snprintf(buf, n, "%.1f MB", b / 1e6); }

static int on_progress(long long done, long long total, void *ctx)
{
    show *s = ctx;
    char d[32], t[32];
    fmt_mb(done, d, sizeof d);
    fmt_mb(total, t, sizeof t);
    if (s->tty) {
        double now = mela_sys_now();
        if (now - s->last < 0.1 && done != total)
            return 0;
        s->last = now;
        if (total > 0)
            fprintf(stderr, "\r  %s  %s of %s  %3d%%", s->file, d, t, (int)(100.0 * done / total));
        else
            fprintf(stderr, "\r  %s  %s", s->file, d);
    } else if (total > 0) { /* a log: one line a quarter */
        int q = (int)(4.0 * done / total);
        if (q > s->last_quarter) {
            s->last_quarter = q;
            fprintf(stderr, "  %s  %s of %s  %3d%%\n", s->file, d, t, 25 * q);
        }
    }
    return 0;
}

/* The checksum of file: MELA_FETCH_MD5's when it names the file. */
static const char *md5_for(const char *file, const char *official, char *buf, size_t n)
{
    const char *env = getenv("MELA_FETCH_MD5");
    size_t len = strlen(file);
    for (const char *p = env; p && *p;) {
        const char *end = strchr(p, ',');
        size_t k = end ? (size_t)(end - p) : strlen(p);
        if (k > len && !strncmp(p, file, len) && p[len] == '=') {
            snprintf(buf, n, "%.*s", (int)(k - len - 1), p + len + 1);
            return buf;
        }
        p = end ? end + 1 : NULL;
    }
    return official;
}

static int data_fetch(int argc, char **argv)
{
    const char *what = NULL, *dir = CLI_DATA_DIR, *base = getenv("MELA_OMNIGLOT_URL");
    if (!base || !*base)
        base = MELA_OMNIGLOT_URL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            data_help(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strcmp(argv[i], "--url") && i + 1 < argc) {
            base = argv[++i];
        } else if (!strncmp(argv[i], "--", 2) || what) {
            fprintf(stderr, "mela data fetch: unexpected '%s' (see 'mela data --help')\n", argv[i]);
            return 2;
        } else {
            what = argv[i];
        }
    }
    if (!what || strcasecmp(what, "omniglot")) {
        fprintf(stderr, "mela data fetch: which dataset? 'omniglot' is the one mela can fetch\n");
        return 2;
    }
    if (mela_sys_mkdirs(dir)) {
        fprintf(stderr, "mela data fetch: %s\n", mela_last_error());
        return 1;
    }
    int failed = 0;
    for (int i = 0; mela_omniglot_archive(i); i++) {
        const mela_archive *a = mela_omniglot_archive(i);
        char md5[64], url[1200], path[1200];
        size_t bl = strlen(base);
        snprintf(url, sizeof url, "%.*s/%s", (int)(bl && base[bl - 1] == '/' ? bl - 1 : bl), base, a->file);
        snprintf(path, sizeof path, "%s/%s", dir, a->file);
        show s = {a->file, isatty(2), 0, -1};
        fprintf(stderr, "mela data fetch: %s -> %s\n", url, path);
        int rc = mela_fetch(url, path, md5_for(a->file, a->md5, md5, sizeof md5), on_progress, &s);
        if (s.tty)
            fprintf(stderr, "\n");
        if (rc < 0) {
            fprintf(stderr, "mela data fetch: %s\n", mela_last_error());
            failed = 1;
        } else {
            printf("%s: %s (md5 verified)\n", path, rc == 1 ? "there already" : "downloaded");
        }
    }
    if (failed)
        return 1;
    printf("Omniglot is in %s: train with 'mela train --data-dir %s'\n", dir, dir);
    return 0;
}

void cli_data_hint(const char *cmd, const char *dataset, const char *dir)
{
    if (strcmp(dataset, "omniglot"))
        return;
    for (int i = 0; mela_omniglot_archive(i); i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, mela_omniglot_archive(i)->file);
        if (access(path, R_OK)) {
            fprintf(stderr, "mela %s: download Omniglot there with 'mela data fetch omniglot --dir %s'\n",
                    cmd, dir);
            return;
        }
    }
}

/* ----------------------------------------------------------------- info */

static int is_file(const char *dir, const char *name, char *path, size_t n)
{
    struct stat st;
    snprintf(path, n, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Lines of a text file (0 when it cannot be read). */
static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c, last = '\n';
    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += (last = c) == '\n';
    fclose(f);
    return n + (last != '\n');
}

static int info_omniglot(const char *dir)
{
    char path[1200], md5[33];
    int have = 0;
    for (int i = 0; mela_omniglot_archive(i); i++) {
        const mela_archive *a = mela_omniglot_archive(i);
        if (!is_file(dir, a->file, path, sizeof path)) {
            printf("  %-22s missing\n", a->file);
            continue;
        }
        have++;
        struct stat st;
        stat(path, &st);
        if (mela_md5_file(path, md5)) {
            printf("  %-22s %lld bytes, unreadable: %s\n", a->file, (long long)st.st_size, mela_last_error());
            continue;
        }
        if (!strcmp(md5, a->md5))
            printf("  %-22s %lld bytes, md5 %s: the official archive\n", a->file, (long long)st.st_size, md5);
        else
            printf("  %-22s %lld bytes, md5 %s: not the official archive's bytes (md5 %s)\n", a->file,
                   (long long)st.st_size, md5, a->md5);
    }
    if (have < 2)
        printf("  fetch the archives with 'mela data fetch omniglot --dir %s'\n", dir);
    if (have) {
        mela_omniglot_opts o = {0};
        mela_dataset *ds = mela_omniglot_load(dir, &o);
        if (!ds && have == 1) { /* one archive: read that one */
            snprintf(path, sizeof path, "%s/%s", dir, mela_omniglot_archive(0)->file);
            o.sets = access(path, R_OK) ? MELA_OMNIGLOT_EVALUATION : MELA_OMNIGLOT_BACKGROUND;
            ds = mela_omniglot_load(dir, &o);
        }
        if (!ds) {
            printf("  cannot be read: %s\n", mela_last_error());
            return 1;
        }
        for (int set = 0; set < 2; set++) {
            int chars = 0, images = 0, alphabets = 0, last = -1;
            for (int c = 0; c < ds->nclasses; c++)
                if (ds->classes[c].set == set) {
                    chars++, images += ds->classes[c].count;
                    alphabets += ds->classes[c].group != last;
                    last = ds->classes[c].group;
                }
            if (chars)
                printf("  %-22s %d alphabets, %d characters, %d images\n", mela_omniglot_archive(set)->file,
                       alphabets, chars, images);
        }
        mela_dataset_free(ds);
    }
    const char *splits[] = {"train", "val", "test", "trainval"};
    int shown = 0;
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "splits/vinyals/%s.txt", splits[i]);
        if (is_file(dir, name, path, sizeof path)) {
            printf("%s %s %d", shown ? "," : "  Vinyals split (splits/vinyals/):", splits[i], count_lines(path));
            shown = 1;
        }
    }
    printf(shown ? " classes (character x rotation)\n" : "  no Vinyals split (splits/vinyals/*.txt): --split vinyals needs it\n");
    return 0;
}

static int data_info(int argc, char **argv)
{
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            data_help(stdout);
            return 0;
        } else if (!strncmp(argv[i], "--", 2) || dir) {
            fprintf(stderr, "mela data info: unexpected '%s' (see 'mela data --help')\n", argv[i]);
            return 2;
        }
        dir = argv[i];
    }
    struct stat st;
    if (!dir) {
        fprintf(stderr, "mela data info: which folder? (see 'mela data --help')\n");
        return 2;
    }
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "mela data info: %s is not a folder\n", dir);
        return 1;
    }
    char path[1200];
    int omni = 0;
    for (int i = 0; mela_omniglot_archive(i); i++)
        omni |= is_file(dir, mela_omniglot_archive(i)->file, path, sizeof path);
    if (omni) {
        printf("%s: Omniglot\n", dir);
        return info_omniglot(dir);
    }
    mela_dataset *ds = mela_folder_load(dir, 28, 28, 0);
    if (!ds) {
        printf("%s: no Omniglot archives, and not a folder of class folders of images (%s)\n", dir,
               mela_last_error());
        printf("  fetch Omniglot with 'mela data fetch omniglot --dir %s'\n", dir);
        return 1;
    }
    int lo = ds->classes[0].count, hi = lo;
    for (int c = 1; c < ds->nclasses; c++) {
        lo = ds->classes[c].count < lo ? ds->classes[c].count : lo;
        hi = ds->classes[c].count > hi ? ds->classes[c].count : hi;
    }
    printf("%s: image folders (as 'mela adapt' reads them)\n", dir);
    printf("  %d classes, %d images (%d to %d a class), %d in colour, %d not 28x28\n", ds->nclasses,
           ds->nimages, lo, hi, ds->ncolour, ds->nresized);
    for (int c = 0; c < ds->nclasses && c < 20; c++)
        printf("  %-24s %d images\n", ds->classes[c].name, ds->classes[c].count);
    if (ds->nclasses > 20)
        printf("  ... and %d more classes\n", ds->nclasses - 20);
    mela_dataset_free(ds);
    return 0;
}

int cli_data(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        data_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "fetch"))
        return data_fetch(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info"))
        return data_info(argc - 1, argv + 1);
    fprintf(stderr, "mela data: unknown command '%s' (fetch or info; see 'mela data --help')\n", argv[1]);
    return 2;
}
