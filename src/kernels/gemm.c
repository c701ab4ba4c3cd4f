/*
 * gemm.c - C = alpha op(A) op(B) + beta C on row-major float matrices.
 *
 * mk_gemm hands the work to OpenBLAS (cblas_sgemm); it only handles the
 * degenerate sizes itself, so that BLAS never sees an empty inner dimension
 * (some builds reject lda < 1 even when K is 0). mk_gemm_ref is the textbook
 * triple loop, accumulating each dot product in double; it is the reference
 * the tests compare against, not something to call in a hot path.
 *
 * Both follow the BLAS rule for beta == 0: C is then written without being
 * read, so it may hold garbage (even NaN) on entry.
 */
#include <cblas.h>

#include "kernels/kernels.h"

/* C[M,N] *= beta, with beta == 0 meaning "set to zero" (C is not read). */
static void scale_rows(int M, int N, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < N; j++)
                c[j] = 0.0f;
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++)
                c[j] *= beta;
    }
}

void mk_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        scale_rows(M, N, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* op(A)[i,k] is A[i*lda + k], or A[k*lda + i] when transposed; same for B. */
void mk_gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * b;
            }
            float *c = C + (size_t)i * ldc + j;
            double old = beta == 0.0f ? 0.0 : (double)beta * *c;
            *c = (float)(alpha * acc + old);
        }
    }
}
