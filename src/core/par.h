/*
 * par.h - an op's work split over its executor's threads: contiguous ranges
 * of an index that write disjoint outputs, so the result is the same bits
 * for any thread count (used by elementwise ops, pooling and batch norm).
 */
#ifndef MELA_PAR_H
#define MELA_PAR_H

#include <stddef.h>

/* fn(ctx, lo, hi) over [0, n) in up to `threads` ranges; one call on the
 * caller's thread when threads <= 1 or work (elements touched) is small. */
void par_range(int threads, size_t n, size_t work, void (*fn)(void *ctx, size_t lo, size_t hi), void *ctx);

#endif
