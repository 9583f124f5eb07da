#!/usr/bin/env python3
"""Quick tests of the Python reference scripts.

Checks reference.py (every aggregation) against a brute-force pure-Python loop
on tiny rasters (37 x 23, F=5 and other factors), seed_blocksum.py against the
same loop, compare.py's verdicts, and make_raster.py's determinism.

Run with `python3 -m pytest scripts/py -q` or `python3 scripts/py/test_reference.py`.
"""

import contextlib
import importlib.util
import io
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

HERE = Path(__file__).resolve().parent
AGGS = ["sum", "mean", "min", "max", "count"]
GT = Affine(30.0, 0.0, 512345.25, 0.0, -20.0, 6123456.75)


_MODULES = {}


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _module(name):
    """Import a script of this folder as a module (once)."""
    if name not in _MODULES:
        spec = importlib.util.spec_from_file_location(name[:-3], HERE / name)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name[:-3]] = mod  # so that the process pool can pickle its functions
        spec.loader.exec_module(mod)
        _MODULES[name] = mod
    return _MODULES[name]


def run_script(name, *args, check=True):
    """Run a script's main() in-process (fast) and capture its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = _module(name).main([str(a) for a in args])
        except SystemExit as exc:
            rc = exc.code
    res = Result(rc, out.getvalue(), err.getvalue())
    if check and rc != 0:
        raise AssertionError(f"{name} {args} failed ({rc}): {res.stdout}{res.stderr}")
    return res


def run_cli(name, *args):
    """Run a script as a real subprocess."""
    return subprocess.run([sys.executable, str(HERE / name), *map(str, args)], capture_output=True, text=True)


def write_tiny(path, data, nodata, tile=None):
    """Write a (bands, h, w) array as a GeoTIFF with a known transform and CRS."""
    bands, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=bands, dtype=data.dtype.name, crs=CRS.from_epsg(32633), transform=GT)
    if nodata is not None:
        profile["nodata"] = nodata
    if tile:
        profile.update(tiled=True, blockxsize=tile, blockysize=tile)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def tiny_data(dtype, nodata, nan_frac=0.0, bands=2, h=23, w=37, seed=7):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = (rng.random((bands, h, w)) * 200 - 50).astype(dt)
    else:
        a = rng.integers(0 if dt.kind == "u" else -100, 100, size=(bands, h, w)).astype(dt)
    if nodata is not None:
        a[rng.random(a.shape) < 0.3] = nodata
        a[:, 5:16, 10:21] = nodata  # covers whole 5x5 blocks (rows 5-14, cols 10-19)
    if nan_frac:
        a[rng.random(a.shape) < nan_frac] = np.nan
        if nodata is None:
            a[:, 5:16, 10:21] = np.nan
    return a


def brute(data, nodata, factor, agg):
    """Pure-Python block aggregation of a (bands, h, w) array."""
    bands, h, w = data.shape
    oh, ow = -(-h // factor), -(-w // factor)
    out_nd = float(nodata) if nodata is not None else math.nan
    nd = data.dtype.type(nodata) if nodata is not None else None
    out = np.empty((bands, oh, ow))
    for b in range(bands):
        for r in range(oh):
            for c in range(ow):
                vals = []
                for i in range(r * factor, min(h, r * factor + factor)):
                    for j in range(c * factor, min(w, c * factor + factor)):
                        v = data[b, i, j]
                        if (nd is not None and v == nd) or (data.dtype.kind == "f" and math.isnan(v)):
                            continue
                        vals.append(float(v))
                if agg == "count":
                    out[b, r, c] = len(vals)
                elif not vals:
                    out[b, r, c] = out_nd
                elif agg == "sum":
                    out[b, r, c] = math.fsum(vals)
                elif agg == "mean":
                    out[b, r, c] = math.fsum(vals) / len(vals)
                elif agg == "min":
                    out[b, r, c] = min(vals)
                else:
                    out[b, r, c] = max(vals)
    return out


def assert_matches(path, expected, nodata, factor):
    with rasterio.open(path) as ds:
        got = ds.read()
        assert ds.dtypes[0] == "float64"
        assert ds.crs == CRS.from_epsg(32633)
        assert ds.transform.almost_equals(Affine(GT.a * factor, GT.b * factor, GT.c, GT.d * factor, GT.e * factor, GT.f), precision=1e-9)
        if nodata is None:
            assert ds.nodata is None or math.isnan(ds.nodata)
        else:
            assert ds.nodata == float(nodata)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, equal_nan=True)


CASES = [
    # dtype, nodata, nan_frac, factor
    ("float32", -9999.0, 0.1, 5),
    ("int16", -32768, 0.0, 5),
    ("int16", -32768, 0.0, 7),
    ("uint16", 65535, 0.0, 1),
    ("float64", None, 0.2, 5),
    ("uint8", None, 0.0, 4),
    ("int32", 0, 0.0, 40),  # one block bigger than the raster
]


def test_reference_matches_brute_force(tmp_path):
    for k, (dtype, nodata, nan_frac, factor) in enumerate(CASES):
        data = tiny_data(dtype, nodata, nan_frac, seed=k)
        src = tmp_path / f"in{k}.tif"
        write_tiny(src, data, nodata, tile=16 if k % 2 else None)
        for agg in AGGS:
            out = tmp_path / f"ref{k}_{agg}.tif"
            run_script("reference.py", src, out, "--factor", factor, "--agg", agg)
            assert_matches(out, brute(data, nodata, factor, agg), nodata, factor)


def test_fully_invalid_blocks_are_nodata(tmp_path):
    data = tiny_data("float32", -9999.0, 0.0, bands=1)
    src = tmp_path / "in.tif"
    write_tiny(src, data, -9999.0)
    for agg, expect in [("sum", -9999.0), ("max", -9999.0), ("count", 0.0)]:
        out = tmp_path / f"{agg}.tif"
        run_script("reference.py", src, out, "--factor", 5, "--agg", agg)
        with rasterio.open(out) as ds:
            assert ds.read(1)[1:3, 2:4].tolist() == [[expect] * 2] * 2


def test_seed_blocksum_matches_brute_force(tmp_path):
    for k, (dtype, nodata, nan_frac, factor) in enumerate(CASES):
        data = tiny_data(dtype, nodata, nan_frac, seed=k)
        src = tmp_path / f"in{k}.tif"
        write_tiny(src, data, nodata, tile=16)
        expected = brute(data, nodata, factor, "sum")
        for workers, chunk in [("0", "1"), ("2", "30")]:
            out = tmp_path / f"seed{k}_{workers}.tif"
            run_script("seed_blocksum.py", src, out, "--factor", factor, "--workers", workers, "--chunk-rows", chunk, "-q")
            assert_matches(out, expected, nodata, factor)


def test_compare_verdicts(tmp_path):
    data = tiny_data("float32", -9999.0, 0.1, bands=2)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    write_tiny(a, data, -9999.0)
    write_tiny(b, data, -9999.0, tile=16)
    assert run_script("compare.py", a, b).stdout.startswith("ok: 2 bands, 37x23")
    changed = data.copy()
    changed[1, 0, 0] = 1e6
    write_tiny(b, changed, -9999.0)
    assert run_script("compare.py", a, b, check=False).returncode == 1
    changed = data.copy()
    changed[0, 22, 36] = -9999.0 if data[0, 22, 36] != -9999.0 else 1.0
    write_tiny(b, changed, -9999.0)
    proc = run_script("compare.py", a, b, check=False)
    assert proc.returncode == 1 and "mask" in proc.stdout
    changed = data.copy()
    changed[changed == -9999.0] = np.nan  # same mask, other encoding: equal
    write_tiny(b, changed, None)
    assert run_script("compare.py", a, b).returncode == 0
    changed = data.astype(np.float64)
    changed[0, 3, 3] = 100.0 if data[0, 3, 3] == -9999.0 else float(data[0, 3, 3]) * (1 + 1e-7)
    if data[0, 3, 3] != -9999.0 and not np.isnan(data[0, 3, 3]):
        write_tiny(b, changed, -9999.0)
        assert run_script("compare.py", a, b, "--rtol", "1e-6").returncode == 0
        assert run_script("compare.py", a, b, "--rtol", "1e-9", check=False).returncode == 1


def test_make_raster_deterministic(tmp_path):
    args = ["--width", 300, "--height", 200, "--dtype", "float32", "--bands", 2, "--nan-frac", 0.05, "--tile", 64]
    run_script("make_raster.py", tmp_path / "a.tif", *args, "--seed", 3)
    run_script("make_raster.py", tmp_path / "b.tif", *args, "--seed", 3)
    run_script("make_raster.py", tmp_path / "c.tif", *args, "--seed", 4)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b, rasterio.open(tmp_path / "c.tif") as c:
        x, y, z = a.read(), b.read(), c.read()
        assert a.crs == CRS.from_epsg(32633) and a.block_shapes[0] == (64, 64) and a.nodata == -9999.0
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z, equal_nan=True)
    nd = (x == -9999.0).mean()
    assert 0.3 < nd < 0.45, nd  # 30% scattered + the solid rectangle
    assert 0.02 < np.isnan(x).mean() < 0.08
    # make_raster output through reference vs seed: must agree.
    run_script("reference.py", tmp_path / "a.tif", tmp_path / "r.tif", "--factor", 7)
    run_script("seed_blocksum.py", tmp_path / "a.tif", tmp_path / "s.tif", "--factor", 7, "--workers", 0, "-q")
    run_script("compare.py", tmp_path / "r.tif", tmp_path / "s.tif", "--rtol", "1e-12")


def test_cli_help_and_errors(tmp_path):
    for name in ["make_raster.py", "reference.py", "compare.py", "seed_blocksum.py", "decode_floor.py"]:
        proc = run_cli(name, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout, name
    proc = run_cli("reference.py", tmp_path / "missing.tif", tmp_path / "out.tif", "--factor", 3)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "error" in proc.stderr
    run_script("make_raster.py", tmp_path / "a.tif", "--width", 100, "--height", 90, "--dtype", "int16", "--tile", 32)
    proc = run_cli("decode_floor.py", tmp_path / "a.tif", "--procs", 2)
    assert proc.returncode == 0 and float(proc.stdout) >= 0.0, proc.stderr


def _main():
    failed = 0
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    for name, fn in tests:
        with tempfile.TemporaryDirectory() as d:
            try:
                fn(Path(d))
                print(f"PASS {name}")
            except Exception as exc:  # noqa: BLE001
                failed += 1
                print(f"FAIL {name}: {type(exc).__name__}: {exc}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
