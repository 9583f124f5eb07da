#!/usr/bin/env python3
"""Independent numpy reference for block aggregation of a raster.

Semantics: an input of W x H pixels and factor F gives an output of
ceil(W/F) x ceil(H/F).  Output pixel (r, c) aggregates input rows
r*F .. r*F+F-1 and columns c*F .. c*F+F-1, clipped at the raster edge.
Pixels equal to the band's nodata value (compared in the band's own data
type, as GDAL does) or NaN are invalid and excluded.  Aggregations: sum,
mean, min, max and count (number of valid pixels), all accumulated in
float64.  A block with no valid pixel is nodata for sum/mean/min/max (the
input nodata value if there is one, else NaN) and 0 for count.

The output is a tiled DEFLATE Float64 GeoTIFF with every band, the same
origin, pixel size multiplied by F, and the input's CRS and nodata.

Each band is read whole; the arithmetic runs over strips of whole block
rows, with partial edge blocks padded by NaN (invalid).

Example:
    python3 reference.py in.tif out.tif --factor 8 --agg mean
"""

import argparse
import math
import sys

import numpy as np

AGGS = ["sum", "mean", "min", "max", "count"]


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_args(argv=None):
    p = OneLineParser(prog="reference.py", description="Reference block aggregation (numpy).")
    p.add_argument("input", metavar="INPUT", help="input raster")
    p.add_argument("output", metavar="OUTPUT", help="output Float64 GeoTIFF")
    p.add_argument("--factor", "-f", type=int, required=True, help="block factor F (>= 1)")
    p.add_argument("--agg", choices=AGGS, default="sum", help="aggregation (default sum)")
    return p.parse_args(argv)


def native_nodata(nodata, dtype):
    """The nodata value in the band's dtype, or None if no pixel can equal it."""
    if nodata is None:
        return None
    dt = np.dtype(dtype)
    if dt.kind == "f":
        if math.isnan(nodata):
            return None  # NaN is invalid anyway
        with np.errstate(over="ignore"):
            return dt.type(nodata)
    if not float(nodata).is_integer():
        return None
    info = np.iinfo(dt)
    if not info.min <= int(nodata) <= info.max:
        return None
    return dt.type(int(nodata))


def invalid_mask(a, nd):
    """Boolean mask of invalid pixels of a native-dtype array."""
    if a.dtype.kind == "f":
        bad = np.isnan(a)
        if nd is not None:
            bad |= a == nd
        return bad
    if nd is not None:
        return a == nd
    return np.zeros(a.shape, dtype=bool)


def aggregate_band(band, nodata, factor, agg, out_nodata, strip_blocks=64):
    """Aggregate one whole band (2-D native array) to a float64 array."""
    h, w = band.shape
    f = factor
    oh, ow = -(-h // f), -(-w // f)
    pw = ow * f
    nd = native_nodata(nodata, band.dtype)
    out = np.empty((oh, ow), dtype=np.float64)
    for orow0 in range(0, oh, strip_blocks):
        orow1 = min(oh, orow0 + strip_blocks)
        r0, r1 = orow0 * f, min(h, orow1 * f)
        src = band[r0:r1]
        bad = invalid_mask(src, nd)
        # Pad to whole blocks with NaN, then blank out the invalid pixels.
        vals = np.full(((orow1 - orow0) * f, pw), np.nan, dtype=np.float64)
        vals[: r1 - r0, :w] = src
        vals[: r1 - r0, :w][bad] = np.nan
        valid = ~np.isnan(vals)
        blocks = vals.reshape(orow1 - orow0, f, ow, f)
        vblocks = valid.reshape(orow1 - orow0, f, ow, f)
        count = vblocks.sum(axis=(1, 3), dtype=np.int64)
        if agg == "count":
            res = count.astype(np.float64)
        else:
            if agg in ("sum", "mean"):
                res = np.where(vblocks, blocks, 0.0).sum(axis=(1, 3))
                if agg == "mean":
                    with np.errstate(invalid="ignore", divide="ignore"):
                        res = res / count
            elif agg == "min":
                res = np.where(vblocks, blocks, np.inf).min(axis=(1, 3))
            else:
                res = np.where(vblocks, blocks, -np.inf).max(axis=(1, 3))
            res[count == 0] = out_nodata
        out[orow0:orow1] = res
    return out


def scaled_transform(t, f):
    """Same origin, pixel size (and rotation terms) multiplied by f."""
    from rasterio.transform import Affine

    return Affine(t.a * f, t.b * f, t.c, t.d * f, t.e * f, t.f)


def run(args):
    import rasterio

    if args.factor < 1:
        raise ValueError("--factor must be >= 1")
    with rasterio.open(args.input) as src:
        f = args.factor
        ow, oh = -(-src.width // f), -(-src.height // f)
        nodata = src.nodata
        out_nodata = float(nodata) if nodata is not None else float("nan")
        profile = {
            "driver": "GTiff",
            "width": ow,
            "height": oh,
            "count": src.count,
            "dtype": "float64",
            "crs": src.crs,
            "transform": scaled_transform(src.transform, f),
            "nodata": out_nodata,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
        }
        with rasterio.open(args.output, "w", **profile) as dst:
            for b in range(1, src.count + 1):
                band = src.read(b)
                res = aggregate_band(band, src.nodatavals[b - 1], f, args.agg, out_nodata)
                dst.write(res, b)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except Exception as exc:  # noqa: BLE001 - report any failure on one line
        sys.stderr.write(f"reference.py: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
