/* fuzz_safetensors.c - libFuzzer target: the checkpoint reader on any bytes
 * (from memory: the same checks as a file). What it opens, it must serve:
 * metadata, every tensor's shape and floats, and a read into a layout built
 * from its own tensors, which fails exactly when a value is not finite. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "mela.h"
#include "mela_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mela_checkpoint *ck = io_checkpoint_from_memory("fuzz.safetensors", data, size);
    if (!ck)
        return 0;
    for (int i = 0; i < mela_checkpoint_meta_count(ck); i++) {
        const char *k = mela_checkpoint_meta_key(ck, i), *v = mela_checkpoint_meta_value(ck, i);
        if (!k || !v || mela_checkpoint_meta(ck, k) != v) /* keys are unique */
            abort();
    }
    int n = mela_checkpoint_count(ck), finite = 1, layout_ok = 1;
    size_t total = 0;
    mela_layout *L = mela_layout_new();
    for (int i = 0; i < n; i++) {
        const char *name = mela_checkpoint_name(ck, i);
        mela_shape s = mela_checkpoint_shape(ck, i);
        size_t m = mela_shape_numel(s);
        if (!name || mela_checkpoint_find(ck, name) != i || m * 4 > size)
            abort();
        float *x = malloc(m * sizeof *x + 1);
        if (mela_checkpoint_tensor(ck, i, x))
            abort();
        for (size_t k = 0; k < m; k++)
            finite &= isfinite(x[k]) != 0;
        free(x);
        total += m;
        layout_ok &= mela_layout_add(L, name, s) >= 0; /* a zero dimension is no view */
    }
    if (layout_ok) {
        float *theta = calloc(mela_layout_size(L) + 1, sizeof *theta);
        int rc = mela_checkpoint_read(ck, L, theta);
        if ((rc == 0) != finite || total > size)
            abort();
        free(theta);
    }
    mela_layout_free(L);
    mela_checkpoint_close(ck);
    return 0;
}
