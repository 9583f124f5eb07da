/*
 * A deliberately faulty kernel, to show isolation: it copies band 1 (factor 1), except on
 * chunks whose input window contains the column given by an argument:
 *   crash_x=N  segfaults (writes through a null pointer),
 *   abort_x=N  calls abort(),
 *   hang_x=N   loops forever (only a --task-timeout ends it),
 *   fail_x=N   returns an error.
 * Every such chunk is bisected down to the file's blocks; the blocks holding column N are
 * quarantined, every other pixel is exact.
 *
 *   cc -shared -fPIC -I include -o libfaulty.so examples/c-kernels/faulty.c
 *   coordinator map in.tif out.tif --kernel-lib ./libfaulty.so --kernel-arg crash_x=100
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocksum_kernel.h"

static int contains(const struct bs_window *w, const char *value) {
    unsigned long long x = strtoull(value, NULL, 10);
    return x >= w->x && x < w->x + w->w;
}

int blocksum_kernel_v1(const struct bs_input *in, struct bs_output *out,
                       const struct bs_params *params) {
    for (uint32_t i = 0; i < params->nargs; i++) {
        if (!contains(&in->window, params->values[i])) continue;
        const char *k = params->keys[i];
        if (strcmp(k, "crash_x") == 0) {
            volatile int *nowhere = NULL;
            *nowhere = 1;
        } else if (strcmp(k, "abort_x") == 0) {
            abort();
        } else if (strcmp(k, "hang_x") == 0) {
            volatile unsigned long spin = 0;
            for (;;) spin++;
        } else if (strcmp(k, "fail_x") == 0) {
            snprintf(out->error, out->error_len, "refusing the window at %llu,%llu",
                     (unsigned long long)in->window.x, (unsigned long long)in->window.y);
            return 3;
        }
    }
    if (params->factor != 1 || out->bands != 1) {
        snprintf(out->error, out->error_len, "faulty copies band 1: factor 1, one output band");
        return 1;
    }
    size_t n = (size_t)in->window.w * (size_t)in->window.h;
    for (size_t i = 0; i < n; i++) {
        if (in->valid[i]) out->data[i] = in->data[i];
    }
    return 0;
}
