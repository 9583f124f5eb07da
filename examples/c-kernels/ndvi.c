/*
 * NDVI = (nir - red) / (nir + red), pixel by pixel (factor 1).
 * Bands: the first two selected bands, red then nir (select them with --band); one output
 * band. A pixel with an invalid input, or with nir + red == 0, is left NaN (nodata).
 *
 *   cc -shared -fPIC -I include -o libndvi.so examples/c-kernels/ndvi.c
 *   coordinator map in.tif ndvi.tif --kernel-lib ./libndvi.so --band 3 --band 4
 */
#include <stdio.h>

#include "blocksum_kernel.h"

int blocksum_kernel_v1(const struct bs_input *in, struct bs_output *out,
                       const struct bs_params *params) {
    if (in->bands < 2 || out->bands < 1 || params->factor != 1) {
        snprintf(out->error, out->error_len,
                 "ndvi needs two input bands (red, nir), one output band and factor 1; got "
                 "%u, %u, %u",
                 in->bands, out->bands, params->factor);
        return 1;
    }
    size_t n = (size_t)in->window.w * (size_t)in->window.h;
    const double *red = in->data, *nir = in->data + n;
    const uint8_t *red_ok = in->valid, *nir_ok = in->valid + n;
    for (size_t i = 0; i < n; i++) {
        double sum = nir[i] + red[i];
        if (red_ok[i] && nir_ok[i] && sum != 0.0) {
            out->data[i] = (nir[i] - red[i]) / sum;
        }
    }
    return 0;
}
