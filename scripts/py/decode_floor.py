#!/usr/bin/env python3
"""Decode floor: how fast can N processes merely read (decode) a raster?

N worker processes each open the raster once (GDAL_CACHEMAX capped) and read
their share of its blocks -- rasterio block windows, all bands per window --
into reused buffers, doing nothing else.  Blocks are split between processes
either by contiguous rows of blocks (default) or round-robin over rows of
blocks.  The elapsed wall time, process start-up included, is printed on
stdout as a bare number of seconds; a one-line summary goes to stderr (or a
JSON object to stdout with --json).

--procs 0 reads everything in this process (no pool).

Example:
    python3 decode_floor.py in.tif --procs 4
"""

import argparse
import json
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
    p = OneLineParser(prog="decode_floor.py", description="Time N processes reading a raster's blocks.")
    p.add_argument("input", metavar="INPUT", help="input raster")
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="processes (default: CPU count; 0 = in-process)")
    p.add_argument("--cachemax-mb", type=int, default=64, help="GDAL_CACHEMAX per process in MiB (default 64)")
    p.add_argument(
        "--split", choices=["rows", "round-robin"], default="rows", help="how rows of blocks are shared (default rows)"
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    return p.parse_args(argv)


def _block_row_starts(height, block_h):
    return list(range(0, height, block_h))


def _read_share(task):
    """Worker: open the raster, read the given rows of blocks, return timing."""
    path, cachemax_mb, rows, block_h, block_w = task
    os.environ["GDAL_CACHEMAX"] = str(cachemax_mb)
    import rasterio
    from rasterio.windows import Window

    t0 = time.perf_counter()
    nblocks = 0
    nbytes = 0
    with rasterio.Env(GDAL_CACHEMAX=cachemax_mb), rasterio.open(path) as src:
        w, h, n, dt = src.width, src.height, src.count, np.dtype(src.dtypes[0])
        bufs = {}
        for r0 in rows:
            bh = min(block_h, h - r0)
            for c0 in range(0, w, block_w):
                bw = min(block_w, w - c0)
                buf = bufs.get((bh, bw))
                if buf is None:
                    buf = bufs[(bh, bw)] = np.empty((n, bh, bw), dtype=dt)
                src.read(out=buf, window=Window(c0, r0, bw, bh))
                nblocks += 1
                nbytes += buf.nbytes
    return os.getpid(), nblocks, nbytes, time.perf_counter() - t0


def run(args):
    if args.procs < 0:
        raise ValueError("--procs must be >= 0")
    if args.cachemax_mb < 1:
        raise ValueError("--cachemax-mb must be >= 1")
    os.environ["GDAL_CACHEMAX"] = str(args.cachemax_mb)
    import rasterio

    with rasterio.open(args.input) as src:
        block_h, block_w = src.block_shapes[0]
        width, height, count = src.width, src.height, src.count
    starts = _block_row_starts(height, block_h)
    nshares = max(1, args.procs)
    if args.split == "rows":
        shares = [starts[i * len(starts) // nshares : (i + 1) * len(starts) // nshares] for i in range(nshares)]
    else:
        shares = [starts[i::nshares] for i in range(nshares)]
    tasks = [(args.input, args.cachemax_mb, s, block_h, block_w) for s in shares if s]

    t0 = time.perf_counter()
    if args.procs == 0:
        results = [_read_share(t) for t in tasks]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.procs) as pool:
            results = list(pool.map(_read_share, tasks))
    elapsed = time.perf_counter() - t0
    return {
        "input": args.input,
        "width": width,
        "height": height,
        "bands": count,
        "block": [block_h, block_w],
        "procs": args.procs,
        "split": args.split,
        "blocks": sum(r[1] for r in results),
        "bytes": sum(r[2] for r in results),
        "elapsed_s": elapsed,
        "worker_read_s": [r[3] for r in results],
    }


def main(argv=None):
    args = parse_args(argv)
    try:
        s = run(args)
    except Exception as exc:  # noqa: BLE001 - report any failure on one line
        sys.stderr.write(f"decode_floor.py: error: {exc}\n")
        return 1
    if args.json:
        print(json.dumps(s))
    else:
        print(f"{s['elapsed_s']:.3f}")
        sys.stderr.write(
            f"decode_floor: {s['width']}x{s['height']}x{s['bands']}, {s['blocks']} blocks of "
            f"{s['block'][1]}x{s['block'][0]}, {s['procs']} procs ({s['split']}), "
            f"{s['bytes'] / 2**20:.0f} MiB decoded, {s['elapsed_s']:.3f} s\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
