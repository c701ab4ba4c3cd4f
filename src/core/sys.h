/* sys.h - operating-system chores shared across the library: a monotonic
 * clock, directories, whole files, and replacing a file in one step. Not
 * installed; named mela_sys_ because libmela is to export only mela_ names.
 * On failure each sets mela_set_error naming the path, keeps errno, and
 * returns -1; none prints or exits. */
#ifndef MELA_SYS_H
#define MELA_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Seconds on a monotonic clock: for intervals only. */
double mela_sys_now(void);

/* Puts "context: " (printf-style) before the last error message, so that a
 * caller names what it was doing; returns -1. */
int mela_sys_error_context(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* mkdir -p: creates path and its missing parents. 0, or -1 naming the
 * directory that could not be made. */
int mela_sys_mkdirs(const char *path);

/* The names in dir without dot entries, sorted by strcmp: a malloc'ed array
 * of *n malloc'ed strings, freed with mela_sys_free_names. 0, or -1 (then
 * *names is NULL and *n 0). */
int mela_sys_list_dir(const char *dir, char ***names, int *n);
void mela_sys_free_names(char **names, int n);

/* Reads the regular file path whole into a malloc'ed buffer with a NUL after
 * its *size bytes (text can be parsed in place). Anything else - a
 * directory, a FIFO, a device - is refused without blocking or reading it.
 * 0 or -1. */
int mela_sys_read_file(const char *path, uint8_t **data, size_t *size);
/* The same, refusing (errno EFBIG) a file of more than max bytes, also one
 * that grows past max while it is read. */
int mela_sys_read_file_max(const char *path, size_t max, uint8_t **data, size_t *size);

/* Creates or truncates the regular file path for writing (stdio). Anything
 * else - a FIFO (never waited on), a device, a directory - is refused by
 * what it is, before anything is truncated. NULL with the error set. */
FILE *mela_sys_fopen_write(const char *path);

/* Replacing path in one step: write "path.tmp.<pid>", then finish it, so that
 * a reader, or a crash, sees the old file or the whole new one.
 * mela_sys_temp_open creates the temp file; its descriptor, and its
 * malloc'ed name in *tmp; -1 when it cannot. */
int mela_sys_temp_open(const char *path, char **tmp);
/* Writes all n bytes of buf to fd (short writes retried); name is the
 * file's, for the message. 0 or -1. */
int mela_sys_write_all(int fd, const char *name, const void *buf, size_t n);
/* When ok, syncs and closes the temp file, renames it over path and syncs the
 * directory; otherwise (or when a step fails) closes and removes it, leaving
 * the error of the failed write as it is. Frees tmp. 0 or -1. */
int mela_sys_temp_finish(int fd, char *tmp, const char *path, int ok);

/* Holds dir for one user at a time (an advisory lock of the directory that
 * the system drops when the holder exits, however it ends): the descriptor
 * to close to let go, or -1 naming dir (another process holds it, or it
 * cannot be opened). */
int mela_sys_lock_dir(const char *dir);

/* Removes the temp files ("NAME.tmp.<pid>") that writers killed before
 * mela_sys_temp_finish left in dir; call it holding the lock of dir, when
 * nobody else writes there. 0, or -1 naming the file. */
int mela_sys_remove_temps(const char *dir);

#endif
