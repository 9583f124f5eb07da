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
  place, and sums with np.add.reduceat in float64 (rows first, which does the
  bulk of the work on contiguous rows, then columns on the F-times smaller
  result), so partial edge blocks need no padding;
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
    """Block sums and valid counts of one 2-D band strip (modified in place)."""
    h, w = a.shape
    if a.dtype.kind == "f":
        bad = np.isnan(a)
        if nd is not None:
            bad |= a == nd
    elif nd is not None:
        bad = a == nd
    else:
        bad = None
    ridx = np.arange(0, h, factor)
    cidx = np.arange(0, w, factor)
    if bad is not None:
        np.copyto(a, 0, where=bad)
        # valid count per block, from the (F x F smaller) invalid count
        nbad = np.add.reduceat(np.add.reduceat(bad, ridx, axis=0, dtype=np.int32), cidx, axis=1)
        area = (np.minimum(ridx + factor, h) - ridx)[:, None] * (np.minimum(cidx + factor, w) - cidx)[None, :]
        empty = nbad == area
    else:
        empty = None
    s = np.add.reduceat(a, ridx, axis=0, dtype=np.float64)
    s = np.add.reduceat(s, cidx, axis=1)
    return s, empty


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
    from rasterio.transform import Affine
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
        "transform": transform * Affine.scale(f, f),
        "nodata": out_nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.Env(GDAL_CACHEMAX=args.cachemax_mb), rasterio.open(args.output, "w", **profile) as dst:

        def write(row0, arr):
            dst.write(arr, window=Window(0, row0 // f, ow, arr.shape[1]))

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
