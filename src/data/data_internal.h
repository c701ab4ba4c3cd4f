/* data_internal.h - helpers shared by the files of src/data: a growable
 * dataset under construction and small string tools (files and directories
 * are core/sys.h's). Not installed; the public API is include/mela_data.h. */
#ifndef MELA_DATA_INTERNAL_H
#define MELA_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mela.h"
#include "mela_data.h"

/* A dataset being filled: classes, groups and images are appended. */
typedef struct ds_builder {
    mela_dataset *ds;
    int cap_classes, cap_groups, cap_images;
} ds_builder;

/* Starts an empty dataset of C x H x W images; -1 when out of memory. */
int dsb_init(ds_builder *b, int C, int H, int W);
/* Reserves room for n more images (optional, saves reallocs). */
int dsb_reserve(ds_builder *b, int n);
/* Index of group `name`, added when new; -1 when out of memory. */
int dsb_group(ds_builder *b, const char *name);
/* Opens a new class (it receives the images added next); its index or -1. */
int dsb_class(ds_builder *b, const char *name, int group, int id, int set);
/* A slot for one more image of the last class (C*H*W bytes), or NULL. */
uint8_t *dsb_image(ds_builder *b, int drawer);
/* Hands the finished dataset over (b is emptied). */
mela_dataset *dsb_finish(ds_builder *b);
/* Frees what was built so far. */
void dsb_abort(ds_builder *b);

/* Appends dataset src (classes, groups by name, images) to b. -1 on OOM. */
int dsb_append(ds_builder *b, const mela_dataset *src, int set);

/* The images of one Omniglot archive held in memory (size bytes; path names
 * it in messages), set 0 (images_background) or 1 (images_evaluation),
 * resized to H x W (by the nearest pixel when nearest, else the area filter):
 * what mela_omniglot_load does after reading the file,
 * cache aside. The fuzz target fuzz/fuzz_omniglot.c calls it. NULL with the
 * error set. */
mela_dataset *omniglot_decode_archive(const char *path, const uint8_t *bytes, size_t size, int set,
                                      int H, int W, int nearest);

/* Case-insensitive check that name ends with ext (".png"). */
int ends_with_ci(const char *name, const char *ext);

/* 64-bit FNV-1a of a string (split ids). */
uint64_t fnv1a64(const char *s);

/* Background windows for training a comparer to reject (tasks.c, opts
 * background): B images (C = 1, H x W of ds) cut from a seeded scene of a
 * 4W x 4W blank canvas with 2-4 characters of split sp, each of one of the
 * episode's N split classes (episode[0..N)) or, with probability 1/2, of
 * another (a distractor), at sizes W x U(0.7, 1.5) and rotations within
 * 10 degrees. A window is a square of side W x U(0.7, 1.5) (or, for every
 * other one when the scene has a distractor, about that distractor's frame,
 * shifted by up to a quarter of its side) anywhere on the canvas whose IoU
 * with every episode-class character is below 0.3, area-sampled to H x W;
 * blank paper after 100 refused places. All draws from r. work holds
 * scene_background_work(ds) floats. */
size_t scene_background_work(const mela_dataset *ds);
void scene_background(const mela_dataset *ds, const mela_split *sp, const int *episode, int N, int B,
                      mela_rng *r, float *x, float *work);

#endif
