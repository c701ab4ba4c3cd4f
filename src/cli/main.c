/* main.c - the mela command line: argument parsing and printing only; the
 * work is done by the library. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mela.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"train", cli_train, "meta-train a learner (MAML, FOMAML, Meta-SGD, ANIL, MAML++, Reptile,\n"
                        "             ProtoNets, Matching, Siamese)"},
    {"tune", cli_tune, "search hyperparameters by successive halving or Hyperband; the winner\n"
                      "             as a configuration for 'mela train --config'"},
    {"eval", cli_eval, "evaluate a checkpoint on the fixed test episodes (mean, 95% CI)"},
    {"adapt", cli_adapt, "few-shot classification of your own images from a checkpoint"},
    {"classify", cli_adapt, "the same as adapt"},
    {"compare", cli_compare, "probability that two images show the same class (Siamese)"},
    {"data", cli_data, "fetch Omniglot (verified, resumable); what a data folder holds"},
    {"models", cli_models, "list the trained models that ship with mela (usable by name)"},
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

/* OpenBLAS picks its kernels when it loads; on a CPU it does not recognise
 * (common in virtual machines) it falls back to the SSE3 "Prescott" kernels,
 * several times slower than the AVX2/AVX-512 ones the CPU has. Then the tool
 * restarts itself once with OPENBLAS_CORETYPE set from the CPU's features.
 * A user's own OPENBLAS_CORETYPE is never touched. */
static void choose_blas_kernels(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || getenv("MELA_BLAS_RESTARTED"))
        return;
    const char *core = mela_blas_core();
    if (!core || (strcasecmp(core, "Prescott") && strcasecmp(core, "Core2") &&
                  strcasecmp(core, "Katmai") && strcasecmp(core, "Northwood")))
        return;
    const char *want = NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
#endif
    if (!want)
        return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("MELA_BLAS_RESTARTED", "1", 1);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on as we are */
}

int main(int argc, char **argv)
{
    choose_blas_kernels(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        char conv[64];
        mela_conv_backend(conv, sizeof conv);
        printf("mela %s (OpenBLAS kernels: %s; convolutions: %s)\n", mela_version(), mela_blas_core(), conv);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mela: unknown command '%s' (see 'mela --help')\n", argv[1]);
    return 2;
}
