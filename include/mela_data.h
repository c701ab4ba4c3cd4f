/*
 * mela_data.h - few-shot data for mela: Omniglot read from its official zip
 * archives (with a checked cache), the Vinyals, Finn and Lake splits,
 * reproducible N-way K-shot episodes, MAML's sinusoid tasks, the user's own
 * image folders, and the mean / 95% confidence interval every learner reports.
 *
 * A typical run:
 *
 *     mela_dataset *ds = mela_omniglot_load("../shared/data/omniglot", NULL);
 *     if (!ds) { fprintf(stderr, "%s\n", mela_last_error()); return 1; }
 *     mela_split *test = mela_split_vinyals(ds, "../shared/data/omniglot", "test");
 *     mela_sampler *s = mela_sampler_new(ds, test, 5, 1, 15, 0);  // 5-way 1-shot
 *     for (int i = 0; i < 600; i++) {
 *         const mela_episode *e = mela_sampler_episode(s, seed, i); // allocates nothing
 *         ... e->x_support [N*K,1,H,W], e->y_support [N*K], e->x_query, e->y_query ...
 *         acc[i] = ...;
 *     }
 *     double mean, ci; mela_mean_ci(acc, 600, &mean, &ci);
 *     mela_sampler_free(s); mela_split_free(test); mela_dataset_free(ds);
 *
 * Pixels. A dataset holds every image as uint8 (0..255), C x H x W, C = 1
 * (grey) or 3 (RGB). Converted to float an image is value / 255. For
 * Omniglot the stored value is the ink coverage: ink (black in the PNG) is
 * 1.0, paper (white) is 0.0. Images are shrunk with an exact area (box)
 * filter: each output pixel is the area-weighted mean of the input pixels it
 * covers, fractional overlaps included (105 -> 28 averages 3.75 x 3.75
 * blocks), then rounded to the nearest of 0..255.
 *
 * Rotation. A split class is a (class, rotation) pair; rotation r in {0, 1,
 * 2, 3} turns the image r * 90 degrees COUNTER-clockwise when it is produced
 * (numpy's np.rot90(img, r), PIL's img.rotate(90 * r)). "rot090" in a split
 * file is r = 1. Rotations other than 0 need square images (H == W).
 *
 * Errors. Nothing here prints, exits or aborts on bad input: functions return
 * NULL or -1 and leave a message for mela_last_error() (mela.h) that names
 * the file, class and numbers at fault. Everything allocated on the way is
 * released first.
 *
 * Memory. Every _new/_load has a _free that accepts NULL. Pointers inside the
 * returned structs belong to the struct; treat every field as read-only.
 *
 * Threads. Datasets and splits are read-only once made and may be shared by
 * threads. A sampler is not: use one per thread. Episode i is a pure function
 * of (seed, split id, i), so any thread may draw any episode.
 */
#ifndef MELA_DATA_H
#define MELA_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "mela.h"

#ifdef __cplusplus
extern "C" {
#endif
MELA_EXPORT_BEGIN

/* ---------------------------------------------------------------- datasets */

/* One class: a character of Omniglot, a sub-folder of a user's folder. */
typedef struct mela_class {
    char *name;  /* "character01" or the folder name */
    int group;   /* index into mela_dataset.groups: the alphabet; 0 for folders */
    int id;      /* Omniglot's global character id 1..1623; -1 for folders */
    int set;     /* Omniglot: 0 = images_background, 1 = images_evaluation; 0 for folders */
    int first;   /* index of its first image in the dataset */
    int count;   /* number of images */
} mela_class;

typedef struct mela_dataset {
    int C, H, W;         /* channels, height, width of every image */
    int nclasses;        /* classes[0..nclasses) */
    mela_class *classes; /* sorted: by set, then group name, then class name */
    int ngroups;         /* groups[0..ngroups): alphabet names ("Greek"), sorted as classes */
    char **groups;
    int nimages;
    uint8_t *pixels;     /* nimages * C * H * W; image i at pixels + i*C*H*W */
    int16_t *drawer;     /* nimages: Omniglot's drawer 1..20 (file IIII_DD.png); folders: 0 */
    int cache_state;     /* how it was loaded; one of enum mela_cache_state */
    int nresized;        /* folders: images whose size was not H x W (resized on load) */
    int ncolour;         /* folders loaded as grey: images that had colour (converted) */
} mela_dataset;

enum mela_cache_state {
    MELA_CACHE_UNUSED = 0,  /* no cache was asked for (or a folder dataset) */
    MELA_CACHE_HIT = 1,     /* every archive came from a valid cache */
    MELA_CACHE_WRITTEN = 2, /* decoded from the archives, cache (re)written */
    MELA_CACHE_UNWRITABLE = 3 /* decoded from the archives, cache could not be written */
};

/* Image j of class c: C*H*W bytes (plane by plane). No bounds check. */
static inline const uint8_t *mela_dataset_image(const mela_dataset *ds, int c, int j)
{
    return ds->pixels + (size_t)(ds->classes[c].first + j) * ds->C * ds->H * ds->W;
}
/* Index of the class "group/name" (e.g. "Greek", "character01"), or -1. */
int mela_dataset_find(const mela_dataset *ds, const char *group, const char *name);
void mela_dataset_free(mela_dataset *ds);

/* ---------------------------------------------------------------- Omniglot */

enum {
    MELA_OMNIGLOT_BACKGROUND = 1, /* images_background.zip: 30 alphabets, 964 characters */
    MELA_OMNIGLOT_EVALUATION = 2  /* images_evaluation.zip: 20 alphabets, 659 characters */
};

/* Options; a zeroed struct (or NULL) means: 28x28, both archives, cache in
 * $XDG_CACHE_HOME/mela (else $HOME/.cache/mela). */
typedef struct mela_omniglot_opts {
    int H, W;              /* output size; 0 = 28 */
    unsigned sets;         /* MELA_OMNIGLOT_* bits; 0 = both */
    const char *cache_dir; /* NULL = the default above; created if missing */
    int no_cache;          /* 1: neither read nor write a cache */
    int nearest;           /* 0: area filter (grey levels); 1: nearest pixel, as
                            * the papers' code got from PIL for these 1-bit PNGs
                            * (mela_resize_nearest): ink stays 0 or 255 */
} mela_omniglot_opts;

/*
 * Loads Omniglot from dir/images_background.zip and dir/images_evaluation.zip
 * (the official archives; entries "images_background/<Alphabet>/characterNN/
 * IIII_DD.png", 105x105 PNGs of any bit depth; other sizes are resized
 * too). The dataset has the background
 * characters first, then the evaluation ones; groups are the alphabets.
 *
 * Cache. For each archive the first load writes
 * cache_dir/omniglot-<archive>-<H>x<W>.u8 (-nearest.u8 with opts.nearest; atomically: temp file + rename)
 * holding a 64-bit hash of every byte of the archive, the size, and a hash of
 * its own payload. A later load re-hashes the archive (tens of ms) and uses the
 * cache only if magic, version, size, both hashes and the whole layout check
 * out; otherwise it decodes the archive again and rewrites the cache. A cache
 * that cannot be written is not an error (cache_state says so).
 *
 * Errors: a missing archive (the message says where to download the official
 * ones), a file that is not a zip or is truncated, an entry that is not a
 * .png or does not decode, an entry outside the <Alphabet>/<characterNN>/
 * layout, an archive without images -> NULL, with archive and entry named.
 * Returns a dataset the caller frees.
 */
mela_dataset *mela_omniglot_load(const char *dir, const mela_omniglot_opts *opts);

/* The official archives (Lake et al. 2015, github.com/brendenlake/omniglot,
 * folder python/): file name, MD5 (as torchvision's Omniglot loader records
 * them) and size in bytes. Archive i: 0 images_background.zip,
 * 1 images_evaluation.zip; NULL past the end. `mela data fetch omniglot`
 * downloads them from MELA_OMNIGLOT_URL/<file> (mela_fetch, mela_io.h). */
typedef struct mela_archive {
    const char *file, *md5;
    long long bytes;
} mela_archive;
const mela_archive *mela_omniglot_archive(int i);
#define MELA_OMNIGLOT_URL "https://github.com/brendenlake/omniglot/raw/master/python"

/* ----------------------------------------------------------- user folders */

enum {
    MELA_FOLDER_RGB = 1,    /* keep 3 channels (R, G, B); default: grey by luminance */
    MELA_FOLDER_INVERT = 2, /* store 255 - value: dark ink on white paper becomes 1.0 */
    MELA_FOLDER_NEAREST = 4 /* resize by mela_resize_nearest, not the area filter */
};

/*
 * Loads root/<class>/<image> where every image is a PNG (.png) or JPEG
 * (.jpg, .jpeg; any case), grey or colour, each resized with the area filter
 * (MELA_FOLDER_NEAREST: the nearest pixel) (stretched, no crop) to H x W. Grey is the Rec. 601 luminance
 * (0.299 R + 0.587 G + 0.114 B); alpha is composited onto white. Without
 * MELA_FOLDER_INVERT values keep their brightness (white = 1.0): photos stay
 * as they are; pass MELA_FOLDER_INVERT for dark strokes on light paper, so
 * that ink is 1.0 as in Omniglot. Classes and images are sorted by name;
 * entries starting with '.' are skipped; files directly in root are ignored.
 *
 * Errors -> NULL naming the file or class: an empty class folder, a file with
 * another extension inside a class folder, an image that does not decode,
 * no class at all, H or W outside 1..4096. Symbolic links are followed; an
 * entry of root that is a dangling or looping link is an error naming it (it
 * may have been meant as a class). Only regular files are read as images
 * (a FIFO or a link to /dev/zero is refused without reading it), at most
 * MELA_IMAGE_MAX_BYTES each.
 */
mela_dataset *mela_folder_load(const char *root, int H, int W, unsigned flags);

/* Loads one PNG or JPEG file as C*H*W floats in [0, 1] (C = 1: grey by
 * luminance, 3: RGB), resized with the area filter (or the nearest pixel
 * with MELA_FOLDER_NEAREST), inverted first with MELA_FOLDER_INVERT, exactly as mela_folder_load treats each image.
 * Returns 0, or -1 naming the file. */
int mela_image_load(const char *path, int C, int H, int W, unsigned flags, float *out);
/* The size of an image file and whether it has colour (some pixel whose R,
 * G and B differ), so that callers can say what a conversion changed.
 * Returns 0, or -1 naming the file. */
int mela_image_info(const char *path, int *h, int *w, int *colour);

/* Koch et al.'s (2015) random affine distortion of one C x H x W float image
 * into out (not in place): rotation in [-10, 10] degrees, shear in
 * [-0.3, 0.3] along each axis, scale in [0.8, 1.2] along each axis and
 * translation in [-2, 2] pixels (at 105 x 105; scaled by W / 105), each of
 * the four present with probability 1/2, about the image centre; bilinear
 * sampling, 0 outside the image (paper). */
void mela_affine_distort(float *out, const float *in, int C, int H, int W, mela_rng *r);

/* ------------------------------------------------------------------ splits */

/* One class of a split: dataset class `cls` turned `rot` quarter turns
 * counter-clockwise. */
typedef struct mela_split_class {
    int cls;
    int rot;
} mela_split_class;

typedef struct mela_split {
    char name[64];             /* e.g. "vinyals/test" */
    uint64_t id;               /* FNV-1a hash of name: the "split" of mela_rng_derive */
    int n;                     /* classes[0..n) */
    mela_split_class *classes;
} mela_split;

/*
 * Vinyals et al. (2016): reads omniglot_dir/splits/vinyals/<which>.txt
 * ("train" 4,112 classes, "val" 688, "test" 1,692, "trainval" 4,800), lines
 * "Alphabet/characterNN/rotDDD", each a class of its own. Errors: a missing
 * file, a malformed line, a character not in ds (file and line number named).
 */
mela_split *mela_split_vinyals(const mela_dataset *ds, const char *omniglot_dir, const char *which);

/*
 * Finn et al. (2017) MAML split, as their code makes it (the protocol Li
 * et al.'s Meta-SGD reports on): every character of both Omniglot sets (1,623),
 * shuffled, then the first 1,100 train, the next 100 validate and the other
 * 423 test, each character in its 4 rotations (0, 90, 180, 270) as 4
 * classes: "train" 4,400, "val" 400, "test" 1,692, "trainval" the first
 * 1,200 (4,800). Unlike Vinyals' split, which holds out whole alphabets,
 * the test characters come from the alphabets trained on. Their code
 * shuffles with Python's random.seed(1) over the folders in the order the
 * file system lists them, which no other machine reproduces; here the
 * shuffle is mela_rng_shuffle under mela_rng_derive(MELA_FINN_SEED, the
 * FNV-1a hash of "finn", 0) over the dataset's class order, the same everywhere.
 * Their tasks take N distinct characters, each in a random rotation: sample
 * with MELA_EPISODE_DISTINCT_CLASSES. Errors: a dataset with 1,200
 * characters or fewer, images that are not square.
 */
#define MELA_FINN_TRAIN 1100
#define MELA_FINN_VAL 100
#define MELA_FINN_SEED 1
mela_split *mela_split_finn(const mela_dataset *ds, const char *which);

/*
 * Lake et al. (2015): "train" = every background character, "test" = every
 * evaluation character, rotation 0 only. Sample it with
 * MELA_EPISODE_WITHIN_GROUP, N = 20, K = 1, Q = 1 for Lake's one-shot task:
 * the 20 classes of an episode share one alphabet, and the support and query
 * drawings of a class are two different drawings, hence two different
 * drawers (in Omniglot each of a character's 20 drawings has its own drawer).
 */
mela_split *mela_split_lake(const mela_dataset *ds, const char *which);
/* which may also be "koch_test": the evaluation characters of the ten
 * alphabets of Lake's 20 one-shot runs (Atlantean, Ge_ez, Glagolitic,
 * Gurmukhi, Kannada, Malayalam, Manipuri, Old Church Slavonic, Tengwar,
 * Tibetan), or "koch_val": those of the other ten evaluation alphabets, the
 * division of Koch et al. (2015) into one-shot validation and test. */

/* Every class of ds with every rotation in rots[0..nrot) (NULL, 0: rotation
 * 0 only), under the given name. For folders and tests. */
mela_split *mela_split_all(const mela_dataset *ds, const char *name, const int *rots, int nrot);

void mela_split_free(mela_split *sp);

/* Writes image j of split class k (rotation applied) as C*H*W floats. */
void mela_split_image(const mela_dataset *ds, const mela_split *sp, int k, int j, float *out);

/* ---------------------------------------------------------------- episodes */

enum {
    MELA_EPISODE_WITHIN_GROUP = 1,   /* all N classes from one group (alphabet) */
    MELA_EPISODE_DISTINCT_CLASSES = 2 /* no two slots share a dataset class: N different
                                       * characters, each in one of its split rotations */
};

/* An episode; all arrays belong to the sampler and are overwritten by the
 * next draw. Slot j (0..N) is one class; its examples are contiguous:
 * support row j*K + k, query row j*Q + q. The label of slot j is label[j],
 * and label[0..N) is a random permutation of 0..N-1. */
typedef struct mela_episode {
    int N, K, Q, C, H, W;
    uint64_t index;     /* i of the draw */
    float *x_support;   /* [N*K, C, H, W] */
    float *y_support;   /* [N*K] labels as floats (0.0 .. N-1) */
    int *l_support;     /* [N*K] the same labels as ints */
    float *x_query;     /* [N*Q, C, H, W] */
    float *y_query;     /* [N*Q] */
    int *l_query;       /* [N*Q] */
    int *label;         /* [N] label of slot j */
    int *split_class;   /* [N] index into split->classes of slot j */
    int *support_index; /* [N*K] image index within its dataset class */
    int *query_index;   /* [N*Q] */
    int group;          /* the group of a WITHIN_GROUP episode, else -1 */
} mela_episode;

typedef struct mela_sampler mela_sampler;

/* The papers' evaluation: 600 fixed test episodes (i = 0..599 under a seed). */
#define MELA_TEST_EPISODES 600

/*
 * A sampler of N-way K-shot Q-query episodes from split sp of ds (both must
 * outlive it). It checks now that the split has at least N classes (with
 * WITHIN_GROUP: that some group has N; with DISTINCT_CLASSES: N different
 * dataset classes) and that every class has K + Q
 * images, and fails with a message naming the class and the numbers.
 * N >= 1, K >= 1, Q >= 0.
 */
mela_sampler *mela_sampler_new(const mela_dataset *ds, const mela_split *sp, int N, int K, int Q,
                               unsigned flags);
/*
 * Draws episode i under seed: a pure function of (seed, sp->id, i) through
 * mela_rng_derive(seed, sp->id, i), the same in any thread or process and
 * whatever was drawn before. Classes are drawn without replacement, K + Q
 * distinct images per class (first K support, the rest query), labels a
 * random permutation. Allocates nothing. The result lives in the sampler.
 */
const mela_episode *mela_sampler_episode(mela_sampler *s, uint64_t seed, uint64_t i);
void mela_sampler_free(mela_sampler *s);

/* -------------------------------------------------------------- sinusoids */

/* MAML's regression tasks: y = A sin(x - phase), A uniform in [0.1, 5.0],
 * phase uniform in [0, pi], x uniform in [-5, 5]. Task i under seed is a
 * pure function of (seed, i) (mela_rng_derive(seed, MELA_SINUSOID_STREAM, i)):
 * the same A, phase and points every time. Writes K support points (xs, ys)
 * and Q separate query points (xq, yq); amp and phase may be NULL. Evaluate
 * on fixed tasks by using a fixed seed and i = 0..599. */
#define MELA_SINUSOID_STREAM 0x5a11u
void mela_sinusoid_task(uint64_t seed, uint64_t i, int K, int Q, float *xs, float *ys, float *xq,
                        float *yq, float *amp, float *phase);

/* ------------------------------------------------------------------ tasks */

/*
 * What a few-shot task looks like, for training and for testing, whatever
 * learns from it: N ways (classes), K shots (support examples per class), Q
 * queries per class. Regression tasks (sinusoids) have K support and Q query
 * points and no classes (ways = 1).
 */
typedef struct mela_task_spec {
    int ways;
    int shots;
    int queries;
    int query_rows; /* > 0: the query set has exactly this many rows, whatever
                     * their labels (classifying the user's images); 0: N * Q */
} mela_task_spec;

/* One task as a learner sees it: support (xs, ys) and query (xq, yq).
 * Classification: xs is (N*K, C, H, W), ys (N*K) labels 0..N-1 as floats;
 * regression: (K, 1) and (K, 1). Query likewise with Q. Pairs (Siamese
 * training): xs the first images, xq the second, ys 1.0 (same class) or 0.0,
 * yq unused. */
typedef struct mela_task {
    const float *xs, *ys, *xq, *yq;
} mela_task;

enum mela_task_kind {
    MELA_TASKS_EPISODES, /* N-way K-shot episodes of a split (mela_sampler) */
    MELA_TASKS_PAIRS,    /* batches of image pairs, half same class, half different */
    MELA_TASKS_SINUSOID  /* MAML's sinusoid regression tasks (no dataset) */
};

typedef struct mela_tasks_opts {
    int kind;            /* enum mela_task_kind */
    mela_task_spec spec; /* episodes: N, K, Q; sinusoids: K and Q points */
    unsigned flags;      /* episodes: MELA_EPISODE_* */
    int shuffle_support; /* episodes: 1 = the support rows in a random order
                          * (for inner minibatches; the sampler gives them
                          * class by class) */
    int pairs;           /* pairs: pairs per task (at least 2) */
    int augment;         /* pairs and episodes: Koch et al.'s random affine
                          * distortion of each image (mela_affine_distort);
                          * episodes: support and query rows, before any
                          * shuffle, not the background rows */
    int background;      /* episodes: B > 0 appends B query rows labelled N
                          * ("none of the support classes"): windows of a
                          * seeded scene of the split's characters that hold
                          * no episode class (blank paper, parts of
                          * characters, distractors of other classes); the
                          * query set has N * Q + B rows. Grey images only. */
    uint64_t seed;
    int slots;           /* buffers: tasks held at once (one per thread) */
} mela_tasks_opts;

/* A stream of tasks. Task i is a pure function of (seed, i), whichever slot
 * holds it, so tasks can be drawn on several threads, each into its own
 * slot, with the same results. The dataset and split (NULL for sinusoids)
 * must outlive it. NULL with a message on a bad specification. */
typedef struct mela_tasks mela_tasks;
mela_tasks *mela_tasks_new(const mela_dataset *ds, const mela_split *sp, const mela_tasks_opts *o);
void mela_tasks_free(mela_tasks *ts);
int mela_tasks_slots(const mela_tasks *ts);
/* Task i into slot `slot` (0 <= slot < slots); t's pointers stay valid until
 * the slot is filled again. */
void mela_tasks_get(mela_tasks *ts, int slot, uint64_t i, mela_task *t);

/* dx, dy = the n rows (img floats each, one label each) of sx, sy in a random
 * order drawn from r (inside-out Fisher-Yates). */
void mela_shuffle_rows(float *dx, float *dy, const float *sx, const float *sy, int n, size_t img,
                       mela_rng *r);

/* ------------------------------------------------------------------ scenes */

/* Scenes for one-shot detection (`mela find`, bench/bench_find.c): a blank
 * square canvas (ink = 1, as Omniglot is stored) with characters of a
 * dataset pasted at random places, sizes and small rotations, and a support
 * set of one 28 x 28 drawing of each of `ways` target classes. Each
 * character is of a target class with probability p_target (a drawing by
 * another drawer than the support's), otherwise a distractor of a class not
 * in the support set. Frames do not touch (2 pixels apart). Scene i is a
 * pure function of (seed, i) and of the dataset:
 *
 *     mela_omniglot_opts oo = {105, 105, MELA_OMNIGLOT_EVALUATION, NULL, 0};
 *     mela_dataset *ds = mela_omniglot_load(dir, &oo);      // unseen alphabets
 *     mela_scenes *gen = mela_scenes_new(ds, NULL);          // the defaults
 *     mela_scene sc;
 *     mela_scene_make(gen, seed, i, &sc); ... mela_scene_free(&sc);
 */
#define MELA_SCENE_MAX_CHARS 32

typedef struct mela_scene_opts {
    int size;            /* canvas side in pixels (0: 256) */
    int ways;            /* target classes, one support drawing each (0: 5) */
    int min_chars, max_chars;   /* characters per scene, uniform (0: 2 and 8) */
    float min_scale, max_scale; /* a character's frame is 28 x scale pixels,
                                 * scale uniform (0: 0.7 and 1.5) */
    float max_rotation;  /* degrees, uniform in +-max (0: 10; negative: none) */
    float p_target;      /* probability a character is a target (0: 0.5) */
} mela_scene_opts;

/* One pasted character: its unturned frame (x, y the top-left corner; w = h
 * = 28 x scale), label = its support class 0..ways-1 or -1 (distractor),
 * cls = its dataset class. */
typedef struct mela_scene_box {
    float x, y, w, h;
    int label, cls;
} mela_scene_box;

typedef struct mela_scene {
    int size;             /* canvas side */
    float *pixels;        /* size * size, ink in [0, 1] */
    int ways;
    float *support;       /* ways * 28 * 28: class c's drawing, area-resized as
                           * Omniglot's 28 x 28 images are */
    int *support_class;   /* ways: the dataset class of each (then ways drawer
                           * indices, internal) */
    int nboxes;
    mela_scene_box boxes[MELA_SCENE_MAX_CHARS];
} mela_scene;

typedef struct mela_scenes mela_scenes;

/* A generator over ds (grey images of any size, at least 2 per class and
 * more classes than ways); opts NULL or zeros: the defaults above. ds must
 * outlive it. NULL with the error set on bad options. */
mela_scenes *mela_scenes_new(const mela_dataset *ds, const mela_scene_opts *opts);
void mela_scenes_free(mela_scenes *s);
/* Its options with the defaults filled in. */
const mela_scene_opts *mela_scenes_opts(const mela_scenes *s);
/* Scene i under seed into *sc (allocated; free with mela_scene_free).
 * A character that finds no free place in 100 draws is left out, so
 * nboxes may be below the number drawn. 0, or -1 when out of memory. */
int mela_scene_make(const mela_scenes *s, uint64_t seed, uint64_t i, mela_scene *sc);
void mela_scene_free(mela_scene *sc);

/* ------------------------------------------------------------- evaluation */

/* Mean of x[0..n) and the half-width of its 95% confidence interval,
 * 1.96 * s / sqrt(n) with s the sample standard deviation (n - 1). n = 1
 * gives ci95 = 0. Returns -1 (error set) when n < 1. Either output may be
 * NULL. Every learner and the CLI report "mean +- ci95" with this. */
int mela_mean_ci(const double *x, int n, double *mean, double *ci95);

/* -------------------------------------------------------------- utilities */

/* Area (box) filter resize of one channel: in [h, w] -> out [H, W], exact
 * integer area weights, rounded to nearest. Works both ways (enlarging
 * repeats pixels). Returns 0, or -1 when out of memory. */
int mela_resize_area(uint8_t *out, int H, int W, const uint8_t *in, int h, int w);

/* Nearest-pixel resize of one channel, PIL's rule: output (y, x) takes input
 * (floor((y + 1/2) h / H), floor((x + 1/2) w / W)). PIL applies it to every
 * 1-bit image whatever filter is asked for, so it is what Finn et al.'s,
 * Snell et al.'s and Nichol et al.'s code fed their networks from Omniglot's
 * 1-bit PNGs (105 -> 28 takes rows and columns 1, 5, 9, 13, 16, ...). */
void mela_resize_nearest(uint8_t *out, int H, int W, const uint8_t *in, int h, int w);

/* The largest image mela decodes, 64 megapixels (width x height), and the
 * largest image file it reads, 256 MB: larger ones are refused by name
 * before anything of their size is allocated. */
#define MELA_IMAGE_MAX_PIXELS (64u << 20)
#define MELA_IMAGE_MAX_BYTES ((size_t)256 << 20)

/* Decodes a PNG or JPEG held in memory to 8-bit grey (channels 1) or RGB
 * (channels 3). *pix (malloc'ed, h*w*channels) belongs to the caller. `what`
 * names the source in the error. The dimensions the header declares are
 * checked against MELA_IMAGE_MAX_PIXELS before decoding; a truncated or
 * corrupt image (libpng's errors, every libjpeg warning such as "premature
 * end of JPEG file") is an error, never an image completed with grey.
 * Returns 0 or -1. */
int mela_image_decode(const void *data, size_t size, const char *what, int channels, uint8_t **pix,
                      int *h, int *w);

/* 64-bit hash used by the cache (FNV-1a-style, 8 bytes at a time, 4 lanes). */
uint64_t mela_hash64(const void *data, size_t n, uint64_t seed);

MELA_EXPORT_END
#ifdef __cplusplus
}
#endif
#endif /* MELA_DATA_H */
