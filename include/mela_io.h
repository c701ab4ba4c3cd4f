/*
 * mela_io.h - what a run leaves behind: checkpoints (safetensors files),
 * metrics logs (JSON lines and CSV), line charts (PNG), and downloads
 * verified by their MD5 (mela_fetch).
 *
 * Save and restore the parameters of a model:
 *
 *     const mela_layout *L = mela_model_layout(m);
 *     const char *keys[] = {"learner", "step"}, *vals[] = {"maml", "60000"};
 *     if (mela_checkpoint_save("run/model.safetensors", L, theta, 2, keys, vals) < 0)
 *         fprintf(stderr, "%s\n", mela_last_error());
 *
 *     mela_checkpoint *ck = mela_checkpoint_open("run/model.safetensors");
 *     if (!ck || mela_checkpoint_read(ck, L, theta) < 0)
 *         fprintf(stderr, "%s\n", mela_last_error());
 *     const char *step = mela_checkpoint_meta(ck, "step");   // "60000" or NULL
 *     mela_checkpoint_close(ck);
 *
 * Log and plot a run:
 *
 *     mela_metrics *log = mela_metrics_open("run", "train");  // run/train.jsonl, .csv
 *     const char *k[] = {"step", "loss", "acc"};
 *     double v[] = {step, loss, acc};
 *     mela_metrics_write(log, 3, k, v);
 *     mela_metrics_close(log);
 *
 *     mela_series s = {"meta-train loss", steps, losses, n};
 *     mela_plot_png("run/loss.png", "Omniglot 5-way 1-shot", "step", 1, &s);
 *
 * Errors. Nothing here prints, exits or aborts: functions return NULL or -1
 * and leave a message for mela_last_error() (mela.h) that names the file and
 * the fault ("checkpoint run/model.safetensors: tensor 'conv1.weight' has
 * shape [64, 3, 3, 3], the model expects [64, 1, 3, 3]"). Whatever was
 * allocated on the way is released first.
 *
 * Memory. Every _open has a _close that accepts NULL. Strings returned by a
 * checkpoint belong to it and live until it is closed. Arguments are only
 * read during the call; nothing keeps a pointer to them.
 *
 * Threads. An open checkpoint is read-only and may be shared by threads. A
 * metrics log is not thread-safe.
 */
#ifndef MELA_IO_H
#define MELA_IO_H

#include "mela.h"

#ifdef __cplusplus
extern "C" {
#endif
MELA_EXPORT_BEGIN

/* ------------------------------------------------------------- checkpoints */

/* The file is safetensors (https://github.com/huggingface/safetensors): an
 * 8-byte little-endian header length N, N bytes of JSON header padded with
 * spaces to a multiple of 8, then the tensor data. The header maps each
 * tensor name to {"dtype":"F32","shape":[...],"data_offsets":[begin,end]}
 * (offsets relative to the data section) and may hold "__metadata__", a map
 * of strings to strings. Data is little-endian float32. PyTorch reads the
 * files with safetensors.torch.load_file(path). */

/* Writes every view of L - its name, its shape and the floats at
 * theta + mela_layout_offset(L, i) - in layout order, contiguous (the
 * layout's padding is not written), with nmeta metadata pairs
 * keys[i] -> values[i] (UTF-8, no key twice; keys, values may be NULL when
 * nmeta is 0). The file is written to "path.tmp.<pid>", synced and renamed
 * over path, so an existing checkpoint at path is replaced whole or not at
 * all. Returns 0, or -1 (the temp file removed) with a message naming the
 * path and the system's reason. */
int mela_checkpoint_save(const char *path, const mela_layout *L, const float *theta, int nmeta,
                         const char *const *keys, const char *const *values);

/* An open checkpoint: the whole file, read and checked. */
typedef struct mela_checkpoint mela_checkpoint;

/* Reads path and validates all of it: header length within the file, the
 * header well-formed JSON (an error gives the byte), every tensor of dtype
 * F32 (others are refused by name) with non-negative dimensions, at most
 * MELA_MAX_DIMS of them, and exactly numel * 4 bytes, tensors covering the
 * data section without gaps or overlaps, the data section as long as they
 * need (a shorter file is reported as truncated). A tensor of shape [] (a
 * scalar) is reported as shape (1). Returns the checkpoint (close it with
 * mela_checkpoint_close), or NULL with mela_last_error set. */
mela_checkpoint *mela_checkpoint_open(const char *path);
/* Frees everything; NULL is fine. */
void mela_checkpoint_close(mela_checkpoint *ck);

/* The metadata value of key, or NULL when absent (or ck NULL). The string
 * belongs to ck. */
const char *mela_checkpoint_meta(const mela_checkpoint *ck, const char *key);
/* Number of metadata pairs, and the key / value of pair i (NULL when i is
 * out of range), in file order. */
int mela_checkpoint_meta_count(const mela_checkpoint *ck);
const char *mela_checkpoint_meta_key(const mela_checkpoint *ck, int i);
const char *mela_checkpoint_meta_value(const mela_checkpoint *ck, int i);

/* Number of tensors; tensor i is the i-th in the data section. */
int mela_checkpoint_count(const mela_checkpoint *ck);
/* Name of tensor i (belongs to ck), or NULL when i is out of range. */
const char *mela_checkpoint_name(const mela_checkpoint *ck, int i);
/* Shape of tensor i, or a shape with nd = 0 when i is out of range. */
mela_shape mela_checkpoint_shape(const mela_checkpoint *ck, int i);
/* Index of the tensor called name, or -1. */
int mela_checkpoint_find(const mela_checkpoint *ck, const char *name);
/* Copies the numel floats of tensor i into out, every bit as stored (NaN
 * and infinities too: this is the raw view); 0, or -1 (i out of range). */
int mela_checkpoint_tensor(const mela_checkpoint *ck, int i, float *out);

/* Fills every view of L in theta (mela_layout_size(L) floats) from the
 * tensor of the same name. The checkpoint must match the model exactly: a
 * view with no tensor, a tensor of another shape, or a tensor that no view
 * names (a checkpoint of another model) is an error naming the tensor (and
 * both shapes), and so is a NaN or an infinity in any tensor (the message
 * names the tensor, counts them and gives the first). Everything is checked
 * before anything is written, so on error theta is unchanged; the layout's
 * padding is never written. Returns 0 or -1. */
int mela_checkpoint_read(const mela_checkpoint *ck, const mela_layout *L, float *theta);

/* ----------------------------------------------------------------- metrics */

/* A metrics log: dir/stem.jsonl (one JSON object per record) and
 * dir/stem.csv (a header line of keys, then one line per record). */
typedef struct mela_metrics mela_metrics;

/* Creates dir and its parents as needed (as mkdir -p) and creates, or
 * truncates, dir/stem.jsonl and dir/stem.csv. stem is a file name (no '/').
 * Returns the log (close it with mela_metrics_close), or NULL with
 * mela_last_error set. */
mela_metrics *mela_metrics_open(const char *dir, const char *stem);

/* Appends one record of n pairs keys[i] -> values[i] (n >= 1, keys UTF-8,
 * none twice) to both files and flushes them, so a run that crashes keeps
 * every record written so far. The first record fixes the keys: later
 * records must have the same keys in the same order (the CSV has one header
 * line), otherwise nothing is written and -1 is returned. Numbers are
 * written with %.9g; NaN and infinities are null in the JSON and nan, inf,
 * -inf in the CSV. Keys with a comma, quote or line break are quoted in the
 * CSV as RFC 4180 says. Returns 0 or -1. */
int mela_metrics_write(mela_metrics *m, int n, const char *const *keys, const double *values);

/* Continues the log of an interrupted run: keeps the first n records of
 * dir/stem.jsonl and dir/stem.csv, cuts whatever was written after them
 * (records of iterations the run will do again) and appends from there.
 * The records have the keys keys[0..nkeys) (the CSV must start with their
 * header line). n = 0 is mela_metrics_open. Returns the log, or NULL with a
 * message naming the file when it is missing, has another header or holds
 * fewer than n records. */
mela_metrics *mela_metrics_resume(const char *dir, const char *stem, long n, int nkeys,
                                  const char *const *keys);

/* Closes both files and frees m; NULL is fine. Returns 0, or -1 when the
 * last data could not be written (m is freed all the same). */
int mela_metrics_close(mela_metrics *m);

/* ------------------------------------------------------------------- plots */

/* One line of a chart: n points (x[i], y[i]). x may be NULL, meaning
 * 0, 1, ..., n-1. A point with a NaN or infinite coordinate is a gap in the
 * line; a point with no finite neighbour is drawn as a dot. */
typedef struct mela_series {
    const char *name; /* legend text (NULL or "" leaves the series out of the legend) */
    const double *x, *y;
    int n;
} mela_series;

/* Draws the series as a line chart, 800 x 500 RGB, and writes it as a PNG
 * to path: axes with tick marks and numeric labels on "nice" values, light
 * grid lines, the title above (may be NULL), the x label below (may be
 * NULL), and a legend with each series' colour and name. Text is drawn with
 * a built-in 5x7 font of printable ASCII; other characters show as '?'.
 * Axis ranges cover every finite point; an empty or constant range is
 * widened so that something is drawn. Returns 0, or -1 with the error set
 * (the partial file removed). */
int mela_plot_png(const char *path, const char *title, const char *xlabel, int nseries,
                  const mela_series *series);

/* One chart of several: what mela_plot_png takes. */
typedef struct mela_chart {
    const char *title, *xlabel;
    int nseries;
    const mela_series *series;
} mela_chart;

/* ncharts (1..64) charts, each drawn as mela_plot_png draws one (800 x 500),
 * in a grid of `columns` columns (fewer when there are fewer charts), row
 * by row: a PNG of min(columns, ncharts) * 800 x ceil(ncharts / columns) *
 * 500 pixels. Returns 0, or -1 with the error set. */
int mela_plot_charts_png(const char *path, int ncharts, int columns, const mela_chart *charts);

/* One few-shot episode as a picture: the support images with their
 * classes, and the query images with the predicted and the true class.
 * Images are H x W values in [0, 1] (one channel, row by row); `ink` 1 draws
 * 1 as black on white (Omniglot's strokes), 0 draws 1 as white. */
typedef struct mela_episode_picture {
    int H, W, ink;
    int nsupport, nquery;
    const float *support, *query;         /* nsupport, nquery images */
    const int *support_label;             /* nsupport classes */
    const int *query_label, *query_pred;  /* nquery true and predicted classes */
} mela_episode_picture;

/* Episodes eps[0..n) (n 1..100) as one PNG, one band per episode: a header
 * line ("episode I: R of Q right"), the support row (each image with its
 * class number), then the queries, MELA_PICTURE_COLUMNS to a row (the
 * support row wraps likewise), each with "P" under it when predicted right
 * and "P, not T" when wrong. A right query has a green frame, a wrong one a
 * red frame (MELA_PICTURE_WRONG, exactly that colour, 2 pixels wide). Each
 * image is shown at MELA_PICTURE_SCALE times its size. The PNG is
 * mela_picture_width(...) x mela_picture_height(...) pixels. Returns 0, or
 * -1 with the error set (the partial file removed). */
int mela_plot_episodes_png(const char *path, const char *title, int n, const mela_episode_picture *eps);
#define MELA_PICTURE_COLUMNS 15
#define MELA_PICTURE_SCALE 2
#define MELA_PICTURE_WRONG_R 220
#define MELA_PICTURE_WRONG_G 30
#define MELA_PICTURE_WRONG_B 30
/* The size of that PNG (0 for a bad input). */
int mela_picture_width(int n, const mela_episode_picture *eps);
int mela_picture_height(int n, const mela_episode_picture *eps);

/* -------------------------------------------------------------- downloads */

/* MD5 (RFC 1321) of n bytes, or of the file at path, as 32 lowercase hex
 * digits and a NUL in hex. mela_md5_file returns 0, or -1 naming the file. */
void mela_md5(const void *data, size_t n, char hex[33]);
int mela_md5_file(const char *path, char hex[33]);

/* Progress of a download: bytes of the file so far (a resumed part
 * included) and its size (0 while unknown). Return non-zero to stop it. */
typedef int (*mela_fetch_fn)(long long done, long long total, void *ctx);

/* Downloads url (http or https, redirects followed) to path, verified by
 * md5 (32 hex digits). The bytes go to "path.part"; only when the whole
 * file has the expected MD5 is the part synced and renamed to path, so path
 * never holds a partial or wrong file. A part left by an interrupted call
 * is continued with an HTTP Range request (a server that cannot continue it
 * gets a fresh request); a part with the wrong MD5 at the end is removed.
 * fn (may be NULL) is called as bytes arrive. A path that exists already is
 * checked, not downloaded again: 1 when its MD5 is the expected one, an
 * error when it is not (it is left as it is).
 * Returns 0 (downloaded), 1 (there already), or -1 with a message that says
 * which: no network (host unreachable), an HTTP error status, a wrong
 * checksum (nothing kept), an interrupted transfer (the part kept: call
 * again to resume), a file that cannot be written.
 * Uses libcurl: its global initialisation (curl_global_init) is done on the
 * first call unless the program has done it; no signal handlers are set. */
int mela_fetch(const char *url, const char *path, const char *md5, mela_fetch_fn fn, void *ctx);

MELA_EXPORT_END
#ifdef __cplusplus
}
#endif
#endif /* MELA_IO_H */
