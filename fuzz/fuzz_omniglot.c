/* fuzz_omniglot.c - libFuzzer target: an Omniglot archive (zip bytes) read
 * as mela_omniglot_load reads one after the file, without the cache: the
 * zip directory, entry names and layout, and each PNG inside. */
#include <stdint.h>
#include <stdlib.h>

#include "data/data_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mela_dataset *ds = omniglot_decode_archive("fuzz.zip", data, size, 0, 28, 28, size & 1);
    if (ds) { /* every class holds images, in order */
        int next = 0;
        for (int c = 0; c < ds->nclasses; c++) {
            if (ds->classes[c].first != next || ds->classes[c].count < 1)
                abort();
            next += ds->classes[c].count;
        }
        if (next != ds->nimages)
            abort();
    }
    mela_dataset_free(ds);
    return 0;
}
