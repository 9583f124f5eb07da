#!/usr/bin/env python3
"""The seed design, written well: block sums with rasterio + a process pool.

This is how a careful Python user would compute block sums today, and is the
peer the Rust coordinator/worker pair is benchmarked against:

* the input is cut into full-width strips whose height is a multiple of both
  the factor F and the input's block height (so no block is decoded twice);
* a concurrent.futures.ProcessPoolExecutor(max_workers=N) runs the strips
  (N=0 runs them sequentially in this process);
* every worker opens the input once, in the pool initializer, with
  GDAL_CACHEMAX capped;
* a worker reads its window (all bands at once), masks nodata and NaN in
  place, and sums in float64: rows first, by adding the F strided row sets
  a[i::F] (vectorised, contiguous), then columns with np.add.reduceat on the
  F-times smaller result, so partial edge blocks need no padding;
* the parent writes the small results to a tiled DEFLATE Float64 GeoTIFF with
  the output geotransform (origin kept, pixel size times F), CRS and nodata.

Semantics match reference.py --agg sum: blocks without a valid pixel are
nodata (the input's nodata value, or NaN if it has none).

Example:
    python3 seed_blocksum.py in.tif out.tif --factor 8 --workers 4
"""

import argparse
import math
import os
import sys
import time

import numpy as np


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_args(argv=None):
    p = OneLineParser(prog="seed_blocksum.py", description="Block sums with rasterio windows and a process pool.")
    p.add_argument("input", metavar="INPUT", help="input raster")
    p.add_argument("output", metavar="OUTPUT", help="output Float64 GeoTIFF")
    p.add_argument("--factor", "-f", type=int, required=True, help="block factor F (>= 1)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes; 0 = sequential in-process (default: CPU count)"
    )
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help="target strip height in rows, rounded up to a multiple of lcm(F, block height) "
        "(default: about 32 MiB of input per strip)",
    )
    p.add_argument("--cachemax-mb", type=int, default=64, help="GDAL_CACHEMAX per process in MiB (default 64)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the timing line")
    return p.parse_args(argv)


# ---------------------------------------------------------------- worker side

OUT_TILE = 256  # output tile size

_SRC = None  # dataset opened once per worker process
_ENV = None
_NODATA = None  # per-band nodata in the band dtype (or None)
_FACTOR = None


def _native_nodata(nodata, dtype):
    if nodata is None:
        return None
    dt = np.dtype(dtype)
    if dt.kind == "f":
        if math.isnan(nodata):
            return None
        with np.errstate(over="ignore"):
            return dt.type(nodata)
    if not float(nodata).is_integer():
        return None
    info = np.iinfo(dt)
    if not info.min <= int(nodata) <= info.max:
        return None
    return dt.type(int(nodata))


def _init_worker(path, factor, cachemax_mb):
    """Pool initializer: open the dataset once, with a capped block cache."""
    global _SRC, _ENV, _NODATA, _FACTOR
    import rasterio

    os.environ["GDAL_CACHEMAX"] = str(cachemax_mb)
    _ENV = rasterio.Env(GDAL_CACHEMAX=cachemax_mb)
    _ENV.__enter__()
    _SRC = rasterio.open(path)
    _NODATA = [_native_nodata(nd, dt) for nd, dt in zip(_SRC.nodatavals, _SRC.dtypes)]
    _FACTOR = factor


def _block_sums(a, nd, factor):
    """Block sums of one 2-D band strip, and the mask of blocks with no valid pixel.

    The strip is modified in place (invalid pixels are zeroed).  Rows are
    summed first by adding the F strided row sets a[i::F] into a float64
    accumulator (contiguous, vectorised adds), then columns with
    np.add.reduceat on the F-times smaller result; partial edge blocks fall
    out naturally, with no padding.
    """
    h, w = a.shape
    oh = -(-h // factor)
    cidx = np.arange(0, w, factor)
    if a.dtype.kind == "f":
        bad = np.isnan(a)
        if nd is not None:
            bad |= a == nd
    elif nd is not None:
        bad = a == nd
    else:
        bad = None
    empty = None
    if bad is not None and bad.any():
        np.putmask(a, bad, 0)
        # invalid count per block, compared with the block's area
        cnt_t = np.uint16 if factor * factor < 65536 else np.int64
        nbad = np.zeros((oh, w), dtype=cnt_t)
        b8 = bad.view(np.uint8)
        for i in range(min(factor, h)):
            part = b8[i::factor]
            nbad[: part.shape[0]] += part
        nbad = np.add.reduceat(nbad, cidx, axis=1, dtype=np.int64)
        rows_in = np.minimum(np.arange(oh) * factor + factor, h) - np.arange(oh) * factor
        cols_in = np.minimum(cidx + factor, w) - cidx
        empty = nbad == rows_in[:, None] * cols_in[None, :]
    acc = np.zeros((oh, w), dtype=np.float64)
    for i in range(min(factor, h)):
        part = a[i::factor]
        acc[: part.shape[0]] += part
    return np.add.reduceat(acc, cidx, axis=1), empty


def _process_strip(task):
    """Read one full-width strip of all bands and return its block sums."""
    row0, nrows, out_nodata = task
    from rasterio.windows import Window

    data = _SRC.read(window=Window(0, row0, _SRC.width, nrows))
    out = None
    for b in range(data.shape[0]):
        s, empty = _block_sums(data[b], _NODATA[b], _FACTOR)
        if empty is not None:
            s[empty] = out_nodata
        if out is None:
            out = np.empty((data.shape[0],) + s.shape, dtype=np.float64)
        out[b] = s
    return row0, out


# ---------------------------------------------------------------- parent side


def scaled_transform(t, f):
    """Same origin, pixel size (and rotation terms) multiplied by f."""
    from rasterio.transform import Affine

    return Affine(t.a * f, t.b * f, t.c, t.d * f, t.e * f, t.f)


def run(args):
    if args.factor < 1:
        raise ValueError("--factor must be >= 1")
    if args.workers < 0:
        raise ValueError("--workers must be >= 0")
    if args.cachemax_mb < 1:
        raise ValueError("--cachemax-mb must be >= 1")
    # Cap the cache before GDAL is first used in this process (and its children).
    os.environ["GDAL_CACHEMAX"] = str(args.cachemax_mb)
    import rasterio
    from rasterio.windows import Window

    t0 = time.perf_counter()
    f = args.factor
    with rasterio.open(args.input) as src:
        width, height, count = src.width, src.height, src.count
        block_h = src.block_shapes[0][0]
        itemsize = np.dtype(src.dtypes[0]).itemsize
        nodata = src.nodata
        crs, transform = src.crs, src.transform
    unit = f * block_h // math.gcd(f, block_h)  # lcm(F, block height)
    if args.chunk_rows is not None:
        if args.chunk_rows < 1:
            raise ValueError("--chunk-rows must be >= 1")
        target = args.chunk_rows
    else:
        target = max(1, (32 << 20) // max(1, width * count * itemsize))
    strip_h = unit * max(1, min(-(-target // unit), -(-height // unit)))
    out_nodata = float(nodata) if nodata is not None else float("nan")
    ow, oh = -(-width // f), -(-height // f)
    tasks = [(r0, min(strip_h, height - r0), out_nodata) for r0 in range(0, height, strip_h)]

    profile = {
        "driver": "GTiff",
        "width": ow,
        "height": oh,
        "count": count,
        "dtype": "float64",
        "crs": crs,
        "transform": scaled_transform(transform, f),
        "nodata": out_nodata,
        "tiled": True,
        "blockxsize": OUT_TILE,
        "blockysize": OUT_TILE,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.Env(GDAL_CACHEMAX=args.cachemax_mb), rasterio.open(args.output, "w", **profile) as dst:
        # Results arrive in order; write whole rows of output tiles at once so that
        # no tile is flushed half-filled (and recompressed) when the cache evicts it.
        out_tile = OUT_TILE
        pending = []
        pending_row0 = 0

        def write(row0, arr, final=False):
            nonlocal pending, pending_row0
            pending.append(arr)
            rows = sum(p.shape[1] for p in pending)
            end = pending_row0 + rows
            cut = end if final or end >= oh else (end // out_tile) * out_tile
            if cut <= pending_row0:
                return
            buf = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)
            n = cut - pending_row0
            dst.write(buf[:, :n], window=Window(0, pending_row0, ow, n))
            pending = [buf[:, n:]] if n < rows else []
            pending_row0 = cut

        if args.workers == 0:
            _init_worker(args.input, f, args.cachemax_mb)
            try:
                for t in tasks:
                    write(*_process_strip(t))
            finally:
                _SRC.close()
        else:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(
                max_workers=args.workers, initializer=_init_worker, initargs=(args.input, f, args.cachemax_mb)
            ) as pool:
                for row0, arr in pool.map(_process_strip, tasks):
                    write(row0, arr)
        if pending_row0 != oh:
            raise RuntimeError(f"internal error: wrote {pending_row0} of {oh} output rows")
    elapsed = time.perf_counter() - t0
    if not args.quiet:
        sys.stderr.write(
            f"seed_blocksum: {width}x{height}x{count} F={f} -> {ow}x{oh}, {len(tasks)} strips of {strip_h} rows, "
            f"workers={args.workers}, {elapsed:.3f} s\n"
        )


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except Exception as exc:  # noqa: BLE001 - report any failure on one line
        sys.stderr.write(f"seed_blocksum.py: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
