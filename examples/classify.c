/* classify.c - a program that embeds libmela: loads a checkpoint written by
 * `mela train`, adapts it to a folder of labelled support images and
 * classifies query images, through the public API only.
 *
 *   cc classify.c $(pkg-config --cflags --libs mela) -o classify
 *   ./classify CHECKPOINT SUPPORT_DIR QUERY.png...
 *
 * SUPPORT_DIR holds one folder per class (SUPPORT_DIR/<class>/<image>).
 * Prints one line per query: the file, the predicted class and every class's
 * probability - the lines `mela classify` prints. */
#include <stdio.h>

#include <mela_learn.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CHECKPOINT SUPPORT_DIR QUERY...\n", argv[0]);
        return 2;
    }
    mela_adapt_result res;
    /* -1: the checkpoint's own number of inner steps; 1: dark ink on white
     * paper becomes 1, as in Omniglot */
    if (mela_run_adapt(argv[1], argv[2], argc - 3, (const char *const *)argv + 3, -1, 1, &res)) {
        fprintf(stderr, "classify: %s\n", mela_last_error());
        return 1;
    }
    for (int i = 0; i < res.nquery; i++) {
        printf("%s\t%s\t", argv[3 + i], res.classes[res.pred[i]]);
        for (int c = 0; c < res.nclasses; c++)
            printf("%s%s=%.4f", c ? " " : "", res.classes[c], res.scores[i * res.nclasses + c]);
        printf("\n");
    }
    mela_adapt_result_free(&res);
    return 0;
}
