/*
 * blocked.h - one episode's Conv-4 embedding, forward and backward, in
 * fixed blocks of images, so that the blocks can be spread over processes
 * with the same bits as one process (docs/distributed.md, "The images of
 * one episode"). Used by metric.c for a meta-batch of one episode.
 */
#ifndef MELA_BLOCKED_H
#define MELA_BLOCKED_H

#include "mela_learn.h"

/* Images per block (the last block of an episode may hold fewer). */
#define BLK_IMAGES 8

typedef struct blocked blocked;

/* For the n1 + n2 images of a task (x1 then x2) through model m, whose
 * views are the first of layout L. NULL with no error set when m is not
 * Conv-4 (the caller keeps its graph); NULL with an error on failure is
 * told apart by *failed. */
/* 1 when blk_new makes blocks for model m (Conv-4), else 0. */
int blk_serves(const mela_model *m);
blocked *blk_new(const mela_model *m, const mela_layout *L, int n1, int n2, int *failed);
void blk_free(blocked *b);
/* The embeddings (images x features, rows in image order) of the images
 * x1 (n1 of them) then x2, each process computing its share of the blocks
 * (dist_share) and every process receiving all rows in E. Batch norm with
 * the statistics of all the images. 0 or -1 (agreed on by every process). */
int blk_forward(blocked *b, const float *theta, const float *x1, const float *x2, int threads,
                float *E);
/* Given dE (the loss's gradient with respect to E, the same on every
 * process), the gradient of the model's views into grad (layout size; the
 * other views 0), summed over blocks in block order: the same bits for any
 * number of processes and threads. Right after blk_forward. */
void blk_backward(blocked *b, const float *theta, const float *dE, int threads, float *grad);
/* Profiling (mela train --profile): on = 1 times every block's steps; the
 * sums over all threads are added to seconds and calls (mela_op_count
 * entries) under the graph op each step does the work of: conv2d,
 * conv2d_dx, conv2d_dw, bn_rstd, bn_normalize (with relu), maxpool2d,
 * maxpool2d_scatter, bn_dx (with the relu mask and the sums). */
void blk_set_profiling(blocked *b, int on);
void blk_profile(const blocked *b, double *seconds, long *calls);

#endif
