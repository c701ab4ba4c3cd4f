/* cli.h - the subcommands of the mela tool. Each takes argv from its own name
 * on and returns the process exit status (0 ok, 1 failure, 2 usage). */
#ifndef MELA_CLI_H
#define MELA_CLI_H

#include <signal.h>

int cli_demo(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_tune(int argc, char **argv);
int cli_adapt(int argc, char **argv);
int cli_compare(int argc, char **argv);
int cli_find(int argc, char **argv);

/* Appends path (an image file) or the PNG and JPEG images of path (a folder,
 * sorted by name) to *list (n used, cap allocated; the strings are the
 * caller's to free). Prints "mela CMD: ..." and returns -1 on error. */
int cli_add_images(const char *cmd, const char *path, char ***list, int *n, int *cap);
int cli_data(int argc, char **argv);

/* Where `mela train` looks for Omniglot unless told, and where `mela data
 * fetch` puts it: the repository's layout, ../shared beside the checkout. */
#define CLI_DATA_DIR "../shared/data/omniglot"
/* After a failure to open a run's data: when dataset is "omniglot" and an
 * archive is missing from dir, prints "mela CMD: download Omniglot there
 * with 'mela data fetch omniglot --dir DIR'" (data.c). */
void cli_data_hint(const char *cmd, const char *dataset, const char *dir);
int cli_models(int argc, char **argv);
/* arg itself when it is a file (or not a plain name); else the shipped
 * model of that name (NAME.safetensors in the models folders, models.c);
 * else arg, so that the error names what the user typed. */
const char *cli_model_path(const char *arg);

/* OUT_DIR/curves.png from OUT_DIR/metrics.csv (curves.c). */
struct mela_run_config;
void cli_curves_draw(const struct mela_run_config *rc);
/* The integer in text when it is all digits (an optional sign) and within
 * lo..hi; otherwise prints "mela CMD: FLAG 'TEXT' is not an integer in
 * LO..HI" and returns -1. */
int cli_int_arg(const char *cmd, const char *flag, const char *text, long long lo, long long hi,
                long long *out);

/* Under MPI: the status the command returns is one every process returns
 * (a stop they agreed on), so rank 0 alone says why and the job ends
 * without MPI_Abort (main.c). */
void cli_dist_agreed(void);

/* SIGINT and SIGTERM ask a run (or a search) to stop: cli_catch_signals(1)
 * sets cli_stop_signal to the signal's number when one comes (the flag to
 * give mela_run_set_stop); a second signal ends the process, unless it
 * came within a second of the first (the same stop sent twice). (0): the
 * default handlers again, unless a stop came (its handler stays). */
extern volatile sig_atomic_t cli_stop_signal;
void cli_catch_signals(int on);

#endif
