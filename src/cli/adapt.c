/* adapt.c - `mela adapt`: a checkpoint, a folder of labelled support images
 * and query images in; a label and class scores per query out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/sys.h"
#include "mela_learn.h"

static void adapt_help(void)
{
    printf("Usage: mela adapt|classify CHECKPOINT SUPPORT_DIR QUERY... [--steps K] [--no-invert]\n"
           "\n"
           "Few-shot classification of your own images with a checkpoint from 'mela train'.\n"
           "SUPPORT_DIR holds one folder per class, SUPPORT_DIR/<class>/<image>, with the\n"
           "same number of images in each. A gradient-based checkpoint (maml, fomaml,\n"
           "metasgd, anil, mamlpp, reptile) adapts to them by gradient steps and needs\n"
           "exactly its number of ways; a metric one (protonet, matchnet, siamese)\n"
           "compares against them and takes any number of classes. QUERY is image files\n"
           "or folders of images.\n"
           "Images are PNG or JPEG of any size and colour: they are converted to grey,\n"
           "resized to the model's input and inverted (dark strokes on white paper become\n"
           "ink = 1, as in Omniglot) unless --no-invert. All queries form one batch.\n"
           "\n"
           "  --steps K      inner gradient steps, 0..100 (default: the checkpoint's\n"
           "                 test_steps)\n"
           "  --no-invert    keep brightness as it is (white = 1)\n"
           "  -h, --help     show this help\n"
           "\n"
           "Prints one line per query: the file, the predicted class, and every class's\n"
           "probability.\n");
}

static int is_image(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Appends one path to the list. */
static int push(char ***list, int *n, int *cap, char *path)
{
    if (!path)
        return -1;
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        char **l = realloc(*list, c * sizeof *l);
        if (!l) {
            free(path);
            return -1;
        }
        *list = l, *cap = c;
    }
    (*list)[(*n)++] = path;
    return 0;
}

/* Appends path (a file) or the images of path (a folder, sorted by name). */
static int add_query(const char *path, char ***list, int *n, int *cap)
{
    struct stat st;
    if (stat(path, &st)) {
        fprintf(stderr, "mela adapt: %s: no such file or folder\n", path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return push(list, n, cap, strdup(path));
    char **names;
    int nn, before = *n, rc = 0;
    if (mela_sys_list_dir(path, &names, &nn)) {
        fprintf(stderr, "mela adapt: %s\n", mela_last_error());
        return -1;
    }
    for (int i = 0; i < nn && !rc; i++) {
        if (!is_image(names[i]))
            continue;
        size_t len = strlen(path) + strlen(names[i]) + 2;
        char *full = malloc(len);
        if (full)
            snprintf(full, len, "%s/%s", path, names[i]);
        rc = push(list, n, cap, full);
    }
    mela_sys_free_names(names, nn);
    if (!rc && *n == before) {
        fprintf(stderr, "mela adapt: %s holds no PNG or JPEG images\n", path);
        return -1;
    }
    return rc;
}

int cli_adapt(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL};
    int npos = 0, steps = -1, invert = 1, nq = 0, cap = 0, rc = 2;
    char **queries = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            adapt_help();
            rc = 0;
            goto out;
        } else if (!strcmp(argv[i], "--no-invert")) {
            invert = 0;
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            long long v;
            if (cli_int_arg("adapt", "--steps", argv[++i], 0, 100, &v))
                goto out;
            steps = (int)v;
        } else if (!strncmp(argv[i], "--", 2)) {
            fprintf(stderr, "mela adapt: unknown option '%s' (see 'mela adapt --help')\n", argv[i]);
            goto out;
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else if (add_query(argv[i], &queries, &nq, &cap)) {
            rc = 1;
            goto out;
        }
    }
    if (npos < 2 || nq == 0) {
        fprintf(stderr, "mela adapt: need CHECKPOINT SUPPORT_DIR and at least one query image "
                        "(see 'mela adapt --help')\n");
        goto out;
    }
    mela_adapt_result res;
    if (mela_run_adapt(cli_model_path(pos[0]), pos[1], nq, (const char *const *)queries, steps, invert, &res)) {
        fprintf(stderr, "mela adapt: %s\n", mela_last_error());
        rc = 1;
        goto out;
    }
    if (res.nresized || res.ncolour)
        fprintf(stderr, "mela adapt: note: of %d images, %d were resized to the model's input and %d "
                        "converted from colour to grey\n", res.nimages, res.nresized, res.ncolour);
    for (int i = 0; i < res.nquery; i++) {
        printf("%s\t%s\t", queries[i], res.classes[res.pred[i]]);
        for (int c = 0; c < res.nclasses; c++)
            printf("%s%s=%.4f", c ? " " : "", res.classes[c], res.scores[(size_t)i * res.nclasses + c]);
        printf("\n");
    }
    mela_adapt_result_free(&res);
    rc = 0;
out:
    for (int i = 0; i < nq; i++)
        free(queries[i]);
    free(queries);
    return rc;
}

int cli_compare(int argc, char **argv)
{
    const char *pos[3] = {NULL, NULL, NULL};
    int npos = 0, invert = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("Usage: mela compare CHECKPOINT A.png B.png [--no-invert]\n"
                   "\n"
                   "Prints the probability that images A and B show the same class, from a\n"
                   "Siamese checkpoint ('mela train --learner siamese'). Images are loaded as\n"
                   "'mela adapt' loads them (grey, resized, inverted unless --no-invert).\n");
            return 0;
        } else if (!strcmp(argv[i], "--no-invert")) {
            invert = 0;
        } else if (!strncmp(argv[i], "--", 2) || npos == 3) {
            fprintf(stderr, "mela compare: unexpected '%s' (see 'mela compare --help')\n", argv[i]);
            return 2;
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (npos != 3) {
        fprintf(stderr, "mela compare: need CHECKPOINT A B (see 'mela compare --help')\n");
        return 2;
    }
    double p;
    if (mela_run_compare(cli_model_path(pos[0]), pos[1], pos[2], invert, &p)) {
        fprintf(stderr, "mela compare: %s\n", mela_last_error());
        return 1;
    }
    printf("p(same class) = %.4f\n", p);
    return 0;
}
