/*
 * blocksum_kernel.h: the C ABI of a plug-in kernel for `coordinator map`.
 *
 * A plug-in is a shared library (cc -shared -fPIC -o libk.so k.c) that exports one
 * function, `blocksum_kernel_v1`. The coordinator never loads it: each worker process
 * dlopens it once, checks that the symbol exists (a missing symbol ends the run with a
 * one-line error), and calls it once per chunk. A crash, abort, hang or runaway allocation
 * in the kernel kills that worker only: the chunk is retried on a fresh worker, bisected
 * down to the file's blocks, and quarantined if it keeps failing (its output pixels are
 * nodata, the report names the windows, the exit code is 5).
 *
 * Data, for one chunk:
 * - input: `bands` planes of `window.h` rows of `window.w` doubles, band after band, row
 *   after row (sample (b, r, c) is data[(b * h + r) * w + c]), read from the selected
 *   bands (--band, default all, in order) of the raster at `window` (input pixels);
 * - valid: the same shape, 1 for a valid sample, 0 for nodata or NaN (invalid samples also
 *   hold NaN in `data`);
 * - output: `bands` (--out-bands) planes of `window.h` x `window.w` doubles, for the output
 *   window (output pixels), prefilled with NaN. NaN is the output's nodata: leave a pixel
 *   NaN to say "no value". The output raster is Float64.
 *
 * With factor F (--factor, default 1) the output is ceil(W/F) x ceil(H/F) pixels and output
 * pixel (r, c) covers input rows r*F .. r*F+F and columns c*F .. c*F+F; windows are whole
 * multiples of F except at the raster's right and bottom edges, so an output window's last
 * row or column may cover fewer than F input pixels.
 *
 * Parameters: `factor`, and the --kernel-arg K=V pairs in the order given (keys[i],
 * values[i], NUL-terminated, valid for the call only).
 *
 * Return 0 on success. Any other value is a chunk error: write a NUL-terminated message of
 * at most `error_len` bytes (the terminator included) into `error`; the chunk is retried
 * like any failed chunk and quarantined if it keeps failing. The function may be called
 * many times in one process, for different chunks, from one thread at a time; the memory
 * behind every pointer belongs to the caller and is valid only during the call.
 *
 * Versioning: the symbol's name carries the ABI version. A change of these structs gets a
 * new name (blocksum_kernel_v2) and `abi` below says which one the caller filled.
 */
#ifndef BLOCKSUM_KERNEL_H
#define BLOCKSUM_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BLOCKSUM_KERNEL_ABI 1

/* A window: column and row offset, width and height, in pixels. */
struct bs_window {
    uint64_t x;
    uint64_t y;
    uint64_t w;
    uint64_t h;
};

struct bs_input {
    uint32_t abi; /* BLOCKSUM_KERNEL_ABI */
    uint32_t bands;
    struct bs_window window; /* input pixels */
    uint64_t raster_width;   /* the whole input raster */
    uint64_t raster_height;
    const double *data;   /* bands * window.h * window.w */
    const uint8_t *valid; /* bands * window.h * window.w; 1 valid, 0 not */
};

struct bs_output {
    uint32_t bands;
    struct bs_window window; /* output pixels */
    double *data;            /* bands * window.h * window.w, prefilled with NaN */
    char *error;             /* on a nonzero return: a NUL-terminated message */
    size_t error_len;        /* bytes available in `error`, terminator included */
};

struct bs_params {
    uint32_t factor;
    uint32_t nargs;
    const char *const *keys;
    const char *const *values;
};

/* The one function a plug-in exports. */
int blocksum_kernel_v1(const struct bs_input *in, struct bs_output *out,
                       const struct bs_params *params);

#ifdef __cplusplus
}
#endif

#endif /* BLOCKSUM_KERNEL_H */
