/*
 * A block statistic of every band over F x F blocks (factor F >= 1): `stat=mean` (default)
 * or `stat=range` (max - min) of the valid samples; a block without one is left NaN.
 * One output band per input band (--out-bands must equal the number of bands).
 *
 *   cc -shared -fPIC -I include -o libblockstat.so examples/c-kernels/blockstat.c
 *   coordinator map in.tif range.tif --kernel-lib ./libblockstat.so --factor 4 \
 *       --kernel-arg stat=range
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "blocksum_kernel.h"

int blocksum_kernel_v1(const struct bs_input *in, struct bs_output *out,
                       const struct bs_params *params) {
    int range = 0;
    for (uint32_t i = 0; i < params->nargs; i++) {
        if (strcmp(params->keys[i], "stat") != 0) {
            snprintf(out->error, out->error_len, "unknown argument '%s' (stat=mean|range)",
                     params->keys[i]);
            return 2;
        }
        if (strcmp(params->values[i], "range") == 0) {
            range = 1;
        } else if (strcmp(params->values[i], "mean") != 0) {
            snprintf(out->error, out->error_len, "stat='%s': expected mean or range",
                     params->values[i]);
            return 2;
        }
    }
    if (out->bands != in->bands) {
        snprintf(out->error, out->error_len, "blockstat writes one band per input band (%u), not %u",
                 in->bands, out->bands);
        return 1;
    }
    uint64_t f = params->factor, w = in->window.w, h = in->window.h;
    uint64_t ow = out->window.w, oh = out->window.h;
    for (uint32_t b = 0; b < in->bands; b++) {
        const double *src = in->data + b * w * h;
        const uint8_t *ok = in->valid + b * w * h;
        double *dst = out->data + b * ow * oh;
        for (uint64_t oy = 0; oy < oh; oy++) {
            for (uint64_t ox = 0; ox < ow; ox++) {
                double sum = 0.0, lo = INFINITY, hi = -INFINITY;
                uint64_t count = 0;
                for (uint64_t y = oy * f; y < (oy + 1) * f && y < h; y++) {
                    for (uint64_t x = ox * f; x < (ox + 1) * f && x < w; x++) {
                        if (!ok[y * w + x]) continue;
                        double v = src[y * w + x];
                        sum += v;
                        lo = v < lo ? v : lo;
                        hi = v > hi ? v : hi;
                        count++;
                    }
                }
                if (count > 0) dst[oy * ow + ox] = range ? hi - lo : sum / (double)count;
            }
        }
    }
    return 0;
}
