/* threads.c - the thread count of the BLAS library. mela runs the tasks of a
 * meta-batch on its own threads and keeps each GEMM on one thread, so that
 * results do not depend on how OpenBLAS would split a product. */
#include <cblas.h>

#include "kernels/kernels.h"

void mk_blas_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

const char *mk_blas_core(void) { return openblas_get_corename(); }
