/* fuzz_image.c - libFuzzer target: the PNG and JPEG decoder on any bytes,
 * grey and RGB, then the area resize over every decoded byte (so that a
 * buffer smaller than the size claimed is caught by ASan). */
#include <stdint.h>
#include <stdlib.h>

#include "mela_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int channels = 1; channels <= 3; channels += 2) {
        uint8_t *pix = NULL;
        int h = 0, w = 0;
        if (mela_image_decode(data, size, "fuzz", channels, &pix, &h, &w)) {
            if (pix)
                abort(); /* a failure hands nothing back */
            return 0;    /* grey failed: RGB fails too */
        }
        if (h < 1 || w < 1 || (uint64_t)h * w > MELA_IMAGE_MAX_PIXELS)
            abort();
        uint8_t out[28 * 28];
        if (mela_resize_area(out, 28, 28, pix, h, w * channels)) /* rows of w * channels bytes */
            abort();
        free(pix);
    }
    return 0;
}
