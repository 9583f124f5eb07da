/*
 * A deliberately faulty kernel, to show isolation: it copies band 1 (factor 1), except on
 * chunks whose input window contains the column given by an argument:
 *   crash_x=N  segfaults (writes through a null pointer),
 *   abort_x=N  calls abort(),
 *   hang_x=N   loops forever (only a --task-timeout ends it),
 *   fail_x=N   returns an error,
 *   exit_x=N   calls exit(0) (the worker process ends "successfully", mid-chunk),
 *   errflood_x=N  writes an error message far longer than the error buffer (errflood_bytes=B
 *              bytes, default 1 MiB, against the header's error_len), then returns an error,
 *   overrun_x=N  writes past the end of its output (a wild write: overrun_bytes=B bytes,
 *              default 8 MiB, of the value 12345.0), then copies band 1 as usual.
 * Every such chunk is bisected down to the file's blocks; the blocks holding column N are
 * quarantined, every other pixel is exact.
 *
 *   cc -shared -fPIC -I include -o libfaulty.so examples/c-kernels/faulty.c
 *   coordinator map in.tif out.tif --kernel-lib ./libfaulty.so --kernel-arg crash_x=100
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocksum_kernel.h"

/* The value of `key`, or `fallback`. */
static unsigned long long arg(const struct bs_params *params, const char *key,
                              unsigned long long fallback) {
    for (uint32_t i = 0; i < params->nargs; i++) {
        if (strcmp(params->keys[i], key) == 0) return strtoull(params->values[i], NULL, 10);
    }
    return fallback;
}

/* Writes `bytes` bytes of 12345.0 (byte after byte) from the end of the output on. */
static void overrun(struct bs_output *out, unsigned long long bytes) {
    size_t n = (size_t)out->bands * (size_t)out->window.w * (size_t)out->window.h;
    volatile unsigned char *past = (volatile unsigned char *)(out->data + n);
    double v = 12345.0;
    const unsigned char *pattern = (const unsigned char *)&v;
    for (unsigned long long i = 0; i < bytes; i++) past[i] = pattern[i % sizeof v];
}

/* Writes a message of `bytes` bytes (its terminator included) into the error buffer, whatever
 * its `error_len`: the bug of a kernel that formats without a bound. */
static void flood_error(struct bs_output *out, unsigned long long bytes) {
    static const char msg[] = "this message does not fit the error buffer; ";
    volatile char *e = out->error;
    if (bytes == 0) return;
    for (unsigned long long i = 0; i + 1 < bytes; i++) e[i] = msg[i % (sizeof msg - 1)];
    e[bytes - 1] = '\0';
}

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
        } else if (strcmp(k, "exit_x") == 0) {
            exit(0);
        } else if (strcmp(k, "errflood_x") == 0) {
            flood_error(out, arg(params, "errflood_bytes", 1ull << 20));
            return 4;
        } else if (strcmp(k, "overrun_x") == 0) {
            overrun(out, arg(params, "overrun_bytes", 8ull << 20));
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
