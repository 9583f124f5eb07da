#!/usr/bin/env python3
"""Compare two rasters for the block-sum resampler's tests and benchmarks.

Checks, in order: size and band count, geotransform (each coefficient within
1e-9 relative), CRS (equal, or same EPSG code), the nodata mask of every band
(a pixel is nodata if it equals that file's nodata value, compared in the
file's data type, or is NaN), and the values where both are valid:
|a - b| <= atol + rtol * max(|a|, |b|).

Prints a one-line summary and exits 0 when they match, e.g.
    ok: 3 bands, 512x300, max rel diff 2.1e-08
otherwise prints what differs and exits 1.  Errors (unreadable file, ...)
exit 2.  With --json a JSON summary is printed instead.

Example:
    python3 compare.py ours.tif ref.tif --rtol 1e-9
"""

import argparse
import json
import math
import sys

import numpy as np


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_args(argv=None):
    p = OneLineParser(prog="compare.py", description="Compare two rasters (mask, values, georeferencing).")
    p.add_argument("a", metavar="A", help="first raster")
    p.add_argument("b", metavar="B", help="second raster")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (default 1e-6)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--gt-rtol", type=float, default=1e-9, help="geotransform relative tolerance (default 1e-9)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    return p.parse_args(argv)


def native_nodata(nodata, dtype):
    """The nodata value in the band's dtype, or None if no pixel can equal it."""
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


def nodata_mask(a, nd):
    if a.dtype.kind == "f":
        m = np.isnan(a)
        if nd is not None:
            m |= a == nd
        return m
    if nd is not None:
        return a == nd
    return np.zeros(a.shape, dtype=bool)


def crs_equal(ca, cb):
    if ca is None or cb is None:
        return ca is None and cb is None
    if ca == cb or ca.to_wkt() == cb.to_wkt():
        return True
    ea, eb = ca.to_epsg(), cb.to_epsg()
    return ea is not None and ea == eb


def compare(args):
    import rasterio

    diffs = []
    summary = {"a": args.a, "b": args.b, "rtol": args.rtol, "atol": args.atol}
    with rasterio.open(args.a) as da, rasterio.open(args.b) as db:
        summary.update(
            width=da.width,
            height=da.height,
            bands=da.count,
            dtype_a=da.dtypes[0],
            dtype_b=db.dtypes[0],
        )
        if (da.width, da.height) != (db.width, db.height):
            diffs.append(f"size {da.width}x{da.height} != {db.width}x{db.height}")
        if da.count != db.count:
            diffs.append(f"band count {da.count} != {db.count}")
        ga, gb = tuple(da.transform)[:6], tuple(db.transform)[:6]
        for i, (x, y) in enumerate(zip(ga, gb)):
            if abs(x - y) > args.gt_rtol * max(abs(x), abs(y)):
                diffs.append(f"geotransform {ga} != {gb}")
                break
        if not crs_equal(da.crs, db.crs):
            diffs.append(f"crs {da.crs} != {db.crs}")
        if diffs:
            summary.update(ok=False, differences=diffs)
            return summary

        max_rel = 0.0
        max_abs = 0.0
        band_stats = []
        w, h = da.width, da.height
        step = max(1, (16 << 20) // max(1, w))  # ~16 Mi pixels per strip
        for b in range(1, da.count + 1):
            nda = native_nodata(da.nodatavals[b - 1], da.dtypes[b - 1])
            ndb = native_nodata(db.nodatavals[b - 1], db.dtypes[b - 1])
            mask_diff = 0
            first_mask = None
            val_diff = 0
            first_val = None
            b_rel = 0.0
            b_abs = 0.0
            nodata_px = 0
            for r0 in range(0, h, step):
                win = ((r0, min(h, r0 + step)), (0, w))
                xa = da.read(b, window=win)
                xb = db.read(b, window=win)
                ma, mb = nodata_mask(xa, nda), nodata_mask(xb, ndb)
                nodata_px += int(ma.sum())
                md = ma != mb
                n = int(md.sum())
                if n:
                    mask_diff += n
                    if first_mask is None:
                        rr, cc = np.argwhere(md)[0]
                        first_mask = (int(rr) + r0, int(cc), float(xa[rr, cc]), float(xb[rr, cc]))
                both = ~(ma | mb)
                va = xa[both].astype(np.float64)
                vb = xb[both].astype(np.float64)
                if va.size == 0:
                    continue
                ad = np.abs(va - vb)
                scale = np.maximum(np.abs(va), np.abs(vb))
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.where(ad == 0, 0.0, ad / scale)
                # inf-inf gives NaN: treat equal infinities as equal, others as different.
                same_inf = np.isinf(va) & (va == vb)
                ad[same_inf] = 0.0
                rel[same_inf] = 0.0
                rel = np.where(np.isnan(rel), np.inf, rel)
                ad = np.where(np.isnan(ad), np.inf, ad)
                b_rel = max(b_rel, float(rel.max()))
                b_abs = max(b_abs, float(ad.max()))
                bad = ~(ad <= args.atol + args.rtol * scale)
                bad &= ~same_inf
                n = int(bad.sum())
                if n:
                    val_diff += n
                    if first_val is None:
                        idx = np.flatnonzero(both.ravel())[np.flatnonzero(bad)[0]]
                        rr, cc = divmod(int(idx), w)
                        first_val = (rr + r0, cc, float(xa[rr, cc]), float(xb[rr, cc]))
            max_rel = max(max_rel, b_rel)
            max_abs = max(max_abs, b_abs)
            band_stats.append(
                {
                    "band": b,
                    "nodata_pixels_a": nodata_px,
                    "mask_mismatches": mask_diff,
                    "value_mismatches": val_diff,
                    "max_rel_diff": b_rel,
                    "max_abs_diff": b_abs,
                }
            )
            if mask_diff:
                r, c, x, y = first_mask
                diffs.append(
                    f"band {b}: nodata mask differs at {mask_diff} pixels (first at row {r} col {c}: {x!r} vs {y!r})"
                )
            if val_diff:
                r, c, x, y = first_val
                diffs.append(
                    f"band {b}: {val_diff} values out of tolerance (first at row {r} col {c}: {x!r} vs {y!r}), "
                    f"max rel diff {b_rel:.3g}, max abs diff {b_abs:.3g}"
                )
        summary.update(
            ok=not diffs, differences=diffs, max_rel_diff=max_rel, max_abs_diff=max_abs, band_stats=band_stats
        )
        return summary


def main(argv=None):
    args = parse_args(argv)
    try:
        s = compare(args)
    except Exception as exc:  # noqa: BLE001 - report any failure on one line
        sys.stderr.write(f"compare.py: error: {exc}\n")
        return 2
    if args.json:
        print(json.dumps(s, indent=None if not sys.stdout.isatty() else 2))
    elif s["ok"]:
        print(
            f"ok: {s['bands']} bands, {s['width']}x{s['height']}, "
            f"max rel diff {s['max_rel_diff']:.3g}, max abs diff {s['max_abs_diff']:.3g}"
        )
    else:
        for d in s["differences"]:
            print(f"differs: {d}")
    return 0 if s["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
