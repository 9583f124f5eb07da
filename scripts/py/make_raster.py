#!/usr/bin/env python3
"""Write a synthetic test GeoTIFF for the block-sum resampler.

The raster has a projected CRS (EPSG:32633 by default), a geotransform with a
non-trivial origin and a non-square pixel size, random values, and invalid
pixels: a scattered fraction set to the nodata value plus one solid nodata
rectangle (so that some output blocks are entirely nodata), and optionally
NaNs for float types.  With --nodata none the raster has no nodata value;
the solid rectangle is then NaN when --nan-frac > 0, and absent otherwise.

Output is deterministic for a given seed and set of options.  Data is
generated and written in full-width strips, so large rasters (e.g. 16384 x
16384 float32) never need one giant array.

Example:
    python3 make_raster.py in.tif --width 1000 --height 777 --dtype int16 --bands 3
"""

import argparse
import math
import sys

import numpy as np

DTYPES = ["float32", "float64", "int16", "uint16", "int32", "uint32", "uint8"]

# Value ranges (inclusive low, exclusive high) chosen well inside each type and
# away from the default nodata value.
VALUE_RANGE = {
    "float32": (-500.0, 1500.0),
    "float64": (-500.0, 1500.0),
    "int16": (-1000, 3000),
    "uint16": (0, 5000),
    "int32": (-100000, 300000),
    "uint32": (0, 300000),
    "uint8": (0, 250),
}

DEFAULT_NODATA = {
    "float32": -9999.0,
    "float64": -9999.0,
    "int16": -32768,
    "uint16": 65535,
    "int32": -2147483648,
    "uint32": 4294967295,
    "uint8": 255,
}

# Georeferencing: origin and pixel size (metres, UTM-like).
ORIGIN_X = 431234.5
ORIGIN_Y = 5873210.25
PIXEL_W = 12.5
PIXEL_H = 7.25


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_args(argv=None):
    p = OneLineParser(
        prog="make_raster.py",
        description="Write a synthetic GeoTIFF with nodata and optional NaNs.",
    )
    p.add_argument("out", metavar="OUT", help="output GeoTIFF path")
    p.add_argument("--width", type=int, required=True, help="raster width in pixels")
    p.add_argument("--height", type=int, required=True, help="raster height in pixels")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="pixel type (default float32)")
    p.add_argument("--bands", type=int, default=1, help="number of bands (default 1)")
    p.add_argument(
        "--nodata-frac",
        type=float,
        default=0.3,
        help="fraction of pixels scattered as nodata (default 0.3); if > 0 a solid "
        "nodata rectangle is added too",
    )
    p.add_argument(
        "--nodata",
        default=None,
        help="nodata value (default depends on dtype: -9999 for floats, type min/max "
        "for ints); 'none' writes no nodata tag and no nodata pixels",
    )
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--tile", type=int, default=256, help="tile size (default 256)")
    layout.add_argument("--striped", action="store_true", help="write strips instead of tiles")
    p.add_argument(
        "--rows-per-strip", type=int, default=None, help="rows per strip with --striped (default GDAL's)"
    )
    p.add_argument("--compress", choices=["deflate", "none"], default="deflate", help="compression (default deflate)")
    p.add_argument("--predictor", type=int, choices=[1, 2, 3], default=None, help="TIFF predictor (default none)")
    p.add_argument(
        "--interleave", choices=["pixel", "band"], default=None, help="band interleave for multi-band (GDAL default: pixel)"
    )
    p.add_argument("--nan-frac", type=float, default=0.0, help="fraction of NaN pixels (float types only)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--epsg", type=int, default=32633, help="EPSG code of the CRS (default 32633)")
    p.add_argument("--threads", default="ALL_CPUS", help="GDAL NUM_THREADS for compression (default ALL_CPUS)")
    return p.parse_args(argv)


def resolve_nodata(arg, dtype):
    """Return the nodata value as a Python number, or None for no nodata."""
    if arg is None:
        return DEFAULT_NODATA[dtype]
    if arg.lower() == "none":
        return None
    if np.dtype(dtype).kind == "f":
        return float(arg)
    value = float(arg)
    if not value.is_integer():
        raise ValueError(f"nodata {arg!r} is not an integer for dtype {dtype}")
    info = np.iinfo(dtype)
    value = int(value)
    if not info.min <= value <= info.max:
        raise ValueError(f"nodata {arg!r} out of range for dtype {dtype}")
    return value


def nodata_rectangle(width, height):
    """Solid nodata rectangle (row0, row1, col0, col1), ~15% x 20% of the raster."""
    r0 = int(height * 0.20)
    r1 = max(r0 + 1, r0 + int(math.ceil(height * 0.15)))
    c0 = int(width * 0.30)
    c1 = max(c0 + 1, c0 + int(math.ceil(width * 0.20)))
    return r0, min(r1, height), c0, min(c1, width)


def gen_strip(rng, dtype, nrows, width):
    """Random values for one strip of one band."""
    lo, hi = VALUE_RANGE[dtype]
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = rng.random((nrows, width), dtype=np.float32 if dt == np.float32 else np.float64)
        a *= hi - lo
        a += lo
        return a.astype(dt, copy=False)
    return rng.integers(lo, hi, size=(nrows, width), dtype=dt)


def write_raster(args):
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import Affine
    from rasterio.windows import Window

    if args.width <= 0 or args.height <= 0:
        raise ValueError("width and height must be positive")
    if args.bands <= 0:
        raise ValueError("bands must be positive")
    if not 0.0 <= args.nodata_frac <= 1.0 or not 0.0 <= args.nan_frac <= 1.0:
        raise ValueError("--nodata-frac and --nan-frac must be in [0, 1]")
    dt = np.dtype(args.dtype)
    if args.nan_frac > 0 and dt.kind != "f":
        raise ValueError("--nan-frac needs a float dtype")
    nodata = resolve_nodata(args.nodata, args.dtype)
    if nodata is not None and isinstance(nodata, float) and math.isnan(nodata):
        raise ValueError("NaN nodata is not supported; use --nan-frac for NaNs")
    if args.tile is not None and (args.tile <= 0 or args.tile % 16):
        raise ValueError("--tile must be a positive multiple of 16")

    profile = {
        "driver": "GTiff",
        "width": args.width,
        "height": args.height,
        "count": args.bands,
        "dtype": args.dtype,
        "crs": CRS.from_epsg(args.epsg),
        "transform": Affine(PIXEL_W, 0.0, ORIGIN_X, 0.0, -PIXEL_H, ORIGIN_Y),
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": args.threads,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    if args.compress == "deflate":
        profile["compress"] = "deflate"
        if args.predictor is not None:
            if args.predictor == 3 and dt.kind != "f":
                raise ValueError("--predictor 3 needs a float dtype")
            profile["predictor"] = args.predictor
    if args.interleave:
        profile["interleave"] = args.interleave
    if args.striped:
        profile["tiled"] = False
        if args.rows_per_strip:
            profile["blockysize"] = args.rows_per_strip
        strip_h = args.rows_per_strip or 256
    else:
        profile["tiled"] = True
        profile["blockxsize"] = args.tile
        profile["blockysize"] = args.tile
        strip_h = args.tile
    # Keep each generated strip around 64 MiB per band at most.
    rows_budget = max(1, (64 << 20) // max(1, args.width * dt.itemsize))
    if strip_h < rows_budget:
        strip_h *= max(1, rows_budget // strip_h)

    # The solid rectangle is nodata; without a nodata value it is NaN (float types with --nan-frac > 0).
    rect = None
    rect_value = None
    if nodata is not None and args.nodata_frac > 0:
        rect, rect_value = nodata_rectangle(args.width, args.height), nodata
    elif nodata is None and args.nan_frac > 0:
        rect, rect_value = nodata_rectangle(args.width, args.height), np.nan

    with rasterio.open(args.out, "w", **profile) as dst:
        for strip_idx, row0 in enumerate(range(0, args.height, strip_h)):
            nrows = min(strip_h, args.height - row0)
            data = np.empty((args.bands, nrows, args.width), dtype=dt)
            for b in range(args.bands):
                rng = np.random.default_rng([args.seed, b, strip_idx, row0])
                a = gen_strip(rng, args.dtype, nrows, args.width)
                if nodata is not None and args.nodata_frac > 0:
                    a[rng.random((nrows, args.width), dtype=np.float32) < args.nodata_frac] = nodata
                if args.nan_frac > 0:
                    a[rng.random((nrows, args.width), dtype=np.float32) < args.nan_frac] = np.nan
                if rect is not None:
                    r0, r1, c0, c1 = rect
                    lo, hi = max(r0, row0), min(r1, row0 + nrows)
                    if lo < hi:
                        a[lo - row0 : hi - row0, c0:c1] = rect_value
                data[b] = a
            dst.write(data, window=Window(0, row0, args.width, nrows))


def main(argv=None):
    args = parse_args(argv)
    try:
        write_raster(args)
    except Exception as exc:  # noqa: BLE001 - report any failure on one line
        sys.stderr.write(f"make_raster.py: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
