/* main.c - the mela command line: argument parsing and printing only; the
 * work is done by the library. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "mela.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"train", cli_train, "meta-train a learner (MAML, first-order MAML, Meta-SGD, ANIL)"},
    {"eval", cli_eval, "evaluate a checkpoint on the fixed test episodes (mean, 95% CI)"},
    {"demo", cli_demo, "train a small network on a sine curve and print its loss falling"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "mela %s - meta-learning in C\n"
            "\n"
            "Usage: mela <command> [options]\n"
            "       mela <command> --help\n"
            "\n"
            "Commands:\n",
            mela_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n"
            "Options:\n"
            "  -h, --help     show this help and exit\n"
            "  -V, --version  print the version and exit\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("mela %s\n", mela_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mela: unknown command '%s' (see 'mela --help')\n", argv[1]);
    return 2;
}
