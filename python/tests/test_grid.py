"""Target grids (``tr=``, ``te=``, ``tap=``, ``like=``) against an independent numpy reference.

The reference never goes through the project's code: from the grids' edges in world
coordinates it builds, per axis, a matrix ``W[cell, pixel]`` = the length of the pixel's
interval inside the cell's, divided by the pixel's size. Then, over the valid pixels (not
nodata, not NaN, not masked; ``v`` is 0 and ``ok`` is 0 elsewhere):

    sum = Wy @ v @ Wx.T,  count = Wy @ ok @ Wx.T,  mean = sum / count,

and min/max over the valid pixels of the rows and columns with a positive weight. A cell
with count 0 is nodata (count: 0). The one rule taken from the documentation is the
snapping of an edge within 1e-9 of a pixel edge onto it: a weight below 1e-9 of a pixel is
no overlap (world coordinates such as 1/1200 degree are not exact in binary, so an edge on a
pixel edge comes out a few 1e-13 beside it).

The output grid is also computed here from the documented rules (default extent: the
input's, from its top-left corner, extended right and down to whole cells; ``te``: anchored
at (xmin, ymax), whole cells; ``tap``: edges outward on multiples of the resolution;
``like``: REF's grid) and checked against the file's geotransform and size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

import blocksum

AGGS = ["sum", "mean", "count", "min", "max"]
W, H = 203, 157
PX = 1 / 1200  # degrees: 3 arc-second pixels
X0, Y0 = 10.00123, 50.00077  # an origin on no multiple of any resolution used here
SNAP = 1e-9
# How far (in pixels) the test's weights and the project's may differ: the rounding of the
# world coordinates they come from (~1e-11 of a pixel here).
TOL = 1e-10
# Small chunks (the file's 16x16 tiles allow them), so that every run has several.
CHUNK_MIB = 0.02


# ----------------------------------------------------------------------------- inputs


def from_origin(west: float, north: float, xres: float, yres: float) -> Affine:
    """A north-up geotransform (rasterio's ``from_origin``, without its deprecated ``*``)."""
    return Affine(xres, 0.0, west, 0.0, -yres, north)


def _values(rng: np.random.Generator, dtype: str) -> np.ndarray:
    if dtype == "int16":
        return rng.integers(-1000, 3000, (H, W)).astype("int16")
    return rng.uniform(0.0, 100.0, (H, W)).astype(dtype)


@dataclass
class Input:
    path: Path
    data: np.ndarray  # as stored
    valid: np.ndarray  # bool: not nodata, not NaN, not masked
    mask: Optional[np.ndarray]  # the GDAL mask written (0: invalid)
    transform: Affine


def _make_input(d: Path, name: str, dtype: str, *, nan: bool, mask: Optional[str]) -> Input:
    """A 203x157 raster in EPSG:4326, tiled 16x16, with nodata (scattered and a solid
    rectangle, so some cells are empty), NaN if ``nan``, and a per-dataset GDAL mask
    (a rectangle and every 7th pixel cut out) if ``mask``: ``"internal"`` or ``"sidecar"``
    (a ``.msk`` file)."""
    rng = np.random.default_rng(sum(name.encode()))
    data = _values(rng, dtype)
    nodata = -32768 if dtype == "int16" else -9999.0
    invalid = rng.random((H, W)) < 0.1
    invalid[60:95, 20:61] = True
    data[invalid] = nodata
    if nan:
        holes = rng.random((H, W)) < 0.05
        data[holes] = np.nan
        invalid |= holes
    m = np.full((H, W), 255, dtype="uint8")
    if mask:
        m[10:40, 120:190] = 0
        m.reshape(-1)[::7] = 0
        invalid |= m == 0
    transform = from_origin(X0, Y0, PX, PX)
    path = d / f"{name}.tif"
    profile: Dict[str, Any] = dict(
        driver="GTiff", width=W, height=H, count=1, dtype=dtype, crs="EPSG:4326",
        transform=transform, nodata=nodata, tiled=True, blockxsize=16, blockysize=16,
    )
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=mask != "sidecar"):
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data, 1)
            if mask:
                ds.write_mask(m)
    assert (d / f"{name}.tif.msk").exists() == (mask == "sidecar")
    return Input(path, data, ~invalid, m if mask else None, transform)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Input]:
    d = tmp_path_factory.mktemp("grid-inputs")
    made = {
        "nodata_nan": _make_input(d, "nodata_nan", "float32", nan=True, mask=None),
        "masked": _make_input(d, "masked", "float32", nan=True, mask="internal"),
        "sidecar": _make_input(d, "sidecar", "float32", nan=True, mask="sidecar"),
        "int16": _make_input(d, "int16", "int16", nan=False, mask=None),
    }
    # The masks reach GDAL: its mask band is the one written.
    for name in ("masked", "sidecar"):
        with rasterio.open(made[name].path) as ds:
            assert ds.mask_flag_enums[0] == [rasterio.enums.MaskFlags.per_dataset]
            assert np.array_equal(ds.read_masks(1), made[name].mask)
    return made


# ----------------------------------------------------------------------------- reference


def _overlap(cells: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """W[cell, pixel]: the fraction of each pixel (edges ``pixels``, increasing) inside each
    cell (edges ``cells``, increasing); below the snapping tolerance, none."""
    lo = np.maximum(cells[:-1, None], pixels[None, :-1])
    hi = np.minimum(cells[1:, None], pixels[None, 1:])
    w = np.clip(hi - lo, 0.0, None) / np.diff(pixels)[None, :]
    w[w < SNAP] = 0.0
    return w


def _weights(grid: Affine, size: Tuple[int, int], src: Affine) -> Tuple[np.ndarray, np.ndarray]:
    """(Wx, Wy) of a north-up target grid over the input's pixels, from world coordinates
    (y measured downward from 0 so that edges increase)."""
    nx, ny = size
    cx = grid.c + np.arange(nx + 1) * grid.a
    px = src.c + np.arange(W + 1) * src.a
    cy = -(grid.f + np.arange(ny + 1) * grid.e)
    py = -(src.f + np.arange(H + 1) * src.e)
    return _overlap(cx, px), _overlap(cy, py)


def reference(inp: Input, grid: Affine, size: Tuple[int, int]) -> Dict[str, np.ndarray]:
    """Every aggregate of ``inp`` onto the grid, in float64; NaN where a cell is nodata.
    Also ``sum_tol``, ``mean_tol``, ``count_tol``: what an error of ``TOL`` of a pixel in
    each weight changes in a cell (the sum of ``TOL * |v|`` over the pixels it touches):
    world coordinates carry weights to ~1e-11 of a pixel, and values of both signs cancel (a
    sum of -0.91 from terms of 278.2 and -279.6), so a relative tolerance would not do."""
    wx, wy = _weights(grid, size, inp.transform)
    ok = inp.valid.astype("float64")
    v = np.where(inp.valid, inp.data.astype("float64"), 0.0)
    total = wy @ v @ wx.T
    count = wy @ ok @ wx.T
    ix, iy = (wx > 0).astype("float64"), (wy > 0).astype("float64")
    sum_tol = TOL * (iy @ np.abs(v) @ ix.T)
    count_tol = TOL * (iy @ ok @ ix.T)
    empty = count == 0.0
    out = {"count": count, "count_tol": count_tol, "sum_tol": sum_tol}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["sum"] = np.where(empty, np.nan, total)
        out["mean"] = np.where(empty, np.nan, total / count)
        out["mean_tol"] = (sum_tol + np.abs(out["mean"]) * count_tol) / count
    vals = np.where(inp.valid, inp.data.astype("float64"), np.nan)
    for name, fold in (("min", np.fmin), ("max", np.fmax)):
        res = np.full((size[1], size[0]), np.nan)
        for r in range(size[1]):
            rows = wy[r] > 0
            if not rows.any():
                continue
            col = fold.reduce(vals[rows], axis=0)  # NaN where no valid pixel in the column
            cand = np.where(wx > 0, col[None, :], np.nan)
            res[r] = fold.reduce(cand, axis=1)
        out[name] = res
    return out


# ----------------------------------------------------------------------------- the grids


def whole_cells(lo: float, hi: float, step: float) -> int:
    """Cells of ``step`` from ``lo`` to at least ``hi`` (a quotient within 1e-9 of an
    integer is that integer)."""
    q = (hi - lo) / step
    return max(1, round(q) if abs(q - round(q)) <= 1e-9 else math.ceil(q))


def tr_grid(tr: Tuple[float, float], te: Optional[Tuple[float, float, float, float]] = None,
            tap: bool = False) -> Tuple[Affine, Tuple[int, int]]:
    """The grid the documentation promises for ``tr`` (with ``te``, ``tap``)."""
    rx, ry = tr
    x0, y0, x1, y1 = te or (X0, Y0 - H * PX, X0 + W * PX, Y0)
    if tap:
        x0, x1 = math.floor(x0 / rx) * rx, math.ceil(x1 / rx) * rx
        y0, y1 = math.floor(y0 / ry) * ry, math.ceil(y1 / ry) * ry
    size = (whole_cells(x0, x1, rx), whole_cells(y0, y1, ry))
    return from_origin(x0, y1, rx, ry), size


def make_like(path: Path, grid: Affine, size: Tuple[int, int]) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=size[0], height=size[1], count=1,
                       dtype="uint8", crs="EPSG:4326", transform=grid) as ds:
        ds.write(np.zeros((size[1], size[0]), dtype="uint8"), 1)
    return path


@dataclass
class Case:
    input: str
    kwargs: Dict[str, Any]  # resample's grid options (``like`` made from ``grid``)
    grid: Tuple[Affine, Tuple[int, int]]
    covers: bool  # every input pixel inside the target: the total is kept


# The offset REF: cells of 2.6 x 3.1 pixels whose edges lie 0.37 (x) and 0.61 (y) pixel
# past the input's pixel edges, from 4 cells before its top-left corner: 3 cells on the left
# and 3 on the top lie outside the input (nodata, count 0), and the grid stops short of its
# right and bottom edges.
LIKE = (from_origin(X0 - (4 * 2.6 - 0.37) * PX, Y0 + (4 * 3.1 - 0.61) * PX, 2.6 * PX, 3.1 * PX),
        (62, 34))

CASES: Dict[str, Case] = {
    # 7.5 pixels per cell, default extent: 28 x 21 cells, the last column and row partial.
    "ratio_7_5": Case("nodata_nan", {"tr": (7.5 * PX, 7.5 * PX)},
                      tr_grid((7.5 * PX, 7.5 * PX)), True),
    # Not square, with --tap (the input's origin is on no multiple), masked input.
    "tap_masked": Case("masked", {"tr": (3.3 * PX, 5.25 * PX), "tap": True},
                       tr_grid((3.3 * PX, 5.25 * PX), tap=True), True),
    # A fractional-pixel offset through like=, masked input.
    "like_offset": Case("masked", {}, LIKE, False),
    # One cell larger than the whole raster.
    "coarser_than_raster": Case("nodata_nan", {"tr": (250 * PX, 200 * PX)},
                                tr_grid((250 * PX, 200 * PX)), True),
    # Cells of 120 x 90 pixels from 37.3 pixels left and 11.8 above the input, --te not a
    # multiple of the resolution (extended right and down to whole cells).
    "coarse_te": Case("nodata_nan", {"tr": (120 * PX, 90 * PX),
                                     "te": (X0 - 37.3 * PX, Y0 - 150 * PX, X0 + 200 * PX,
                                            Y0 + 11.8 * PX)},
                      tr_grid((120 * PX, 90 * PX), (X0 - 37.3 * PX, Y0 - 150 * PX,
                                                    X0 + 200 * PX, Y0 + 11.8 * PX)), False),
    # Finer than the input: each pixel split over up to 4 cells across and 3 down, from an
    # extent 0.3 pixel inside the input's corner (Int16 input).
    "finer": Case("int16", {"tr": (0.4 * PX, 0.65 * PX),
                            "te": (X0 + 0.3 * PX, Y0 - 140.2 * PX, X0 + 180 * PX,
                                   Y0 - 0.3 * PX)},
                  tr_grid((0.4 * PX, 0.65 * PX), (X0 + 0.3 * PX, Y0 - 140.2 * PX,
                                                  X0 + 180 * PX, Y0 - 0.3 * PX)), False),
    # Finer, covering the whole input, with NaN and a .msk sidecar mask.
    "finer_masked": Case("sidecar", {"tr": (0.75 * PX, 0.6 * PX)},
                         tr_grid((0.75 * PX, 0.6 * PX)), True),
}


def _grid_kwargs(case: Case, d: Path) -> Dict[str, Any]:
    if case.kwargs:
        return dict(case.kwargs)
    return {"like": make_like(d / "like.tif", *case.grid)}


def read(path: Path) -> Tuple[np.ndarray, str, Affine, Tuple[int, int]]:
    with rasterio.open(path) as ds:
        a = ds.read(1, masked=True)
        return (a.astype("float64").filled(np.nan), ds.dtypes[0], ds.transform,
                (ds.width, ds.height))


def default_type(agg: str, dtype: str) -> str:
    return {"sum": "float64", "count": "float64",
            "mean": "float32" if dtype == "float32" else "float64"}.get(agg, dtype)


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("name", list(CASES))
def test_target_grid_equals_the_reference(
    inputs: Dict[str, Input], tmp_path: Path, name: str, agg: str
) -> None:
    case = CASES[name]
    inp = inputs[case.input]
    grid, size = case.grid
    kw = _grid_kwargs(case, tmp_path)
    plan = blocksum.plan(inp.path, agg=agg, chunk_mib=CHUNK_MIB, **kw)
    assert plan["chunks"] > 1 or size == (1, 1), plan
    assert (plan["out_width"], plan["out_height"]) == size
    r = blocksum.resample(inp.path, tmp_path / "out.tif", agg=agg, workers=2,
                          chunk_mib=CHUNK_MIB, **kw)
    assert r.ok and r.done == r.chunks == plan["chunks"]
    ours, dtype, transform, out_size = read(tmp_path / "out.tif")
    assert out_size == size
    assert transform.almost_equals(grid, precision=1e-12), (transform, grid)
    assert dtype == default_type(agg, str(inp.data.dtype))
    ref = reference(inp, grid, size)
    want = ref[agg]
    # The same cells are empty; every other one agrees.
    assert np.array_equal(np.isnan(ours), np.isnan(want)), np.argwhere(
        np.isnan(ours) != np.isnan(want))[:10]
    assert not np.isnan(want).all()
    if agg in ("min", "max"):
        np.testing.assert_array_equal(ours, want)
    else:
        # Per cell, the weights' rounding (see reference()); a Float32 mean, its rounding
        # too. The total (below) is kept tighter.
        full = ~np.isnan(want)
        err = np.abs(ours[full] - want[full])
        bound = ref[agg + "_tol"][full]
        if dtype == "float32":
            bound = bound + 1e-7 * np.abs(want[full])
        worst = np.argmax(err - bound)
        assert (err <= bound).all(), (ours[full][worst], want[full][worst], bound[worst])
    if agg == "sum" and case.covers:
        valid = inp.data[inp.valid].astype("float64")
        total, kept = math.fsum(valid), math.fsum(ours[~np.isnan(ours)])
        assert abs(kept - total) <= 1e-12 * math.fsum(np.abs(valid)), (kept, total)
    if agg == "count" and case.covers:
        assert abs(math.fsum(ours.ravel()) - inp.valid.sum()) <= 1e-12 * inp.valid.sum()


def test_the_cases_cover_what_they_claim(inputs: Dict[str, Input]) -> None:
    """The grids above are what their names say (so the tests test what they claim)."""
    (gx, (nx, ny)) = CASES["ratio_7_5"].grid
    assert (nx, ny) == (28, 21) and W / 7.5 % 1 and H / 7.5 % 1
    assert CASES["coarser_than_raster"].grid[1] == (1, 1)
    grid, size = LIKE
    wx, wy = _weights(grid, size, inputs["masked"].transform)
    # Offset by a fraction of a pixel: no cell edge on a pixel edge but by chance.
    assert 0 < (X0 - grid.c) / PX % 1 < 1 and 0 < (grid.f - Y0) / PX % 1 < 1
    # Cells outside the input on the left and the top, none past its right and bottom.
    assert (wx.sum(axis=1) == 0).sum() == 3 and (wy.sum(axis=1) == 0).sum() == 3
    assert wx[:, -1].sum() == 0 and wy[:, -1].sum() == 0
    # Finer: pixels split over several cells.
    wx, wy = _weights(*CASES["finer"].grid, inputs["int16"].transform)
    assert ((wx > 0).sum(axis=0).max(), (wy > 0).sum(axis=0).max()) == (4, 3)


@pytest.mark.parametrize("agg", AGGS)
def test_an_integer_multiple_by_tr_or_like_is_the_factor_bit_for_bit(
    inputs: Dict[str, Input], tmp_path: Path, agg: str
) -> None:
    src = inputs["masked"].path
    by_factor = blocksum.resample(src, tmp_path / "f.tif", 8, agg=agg, chunk_mib=CHUNK_MIB)
    # 8 * (1/1200) is not 8 pixels exactly in floating point: still the factor.
    blocksum.resample(src, tmp_path / "tr.tif", tr=(8 * PX, 8 * PX), agg=agg,
                      chunk_mib=CHUNK_MIB)
    with rasterio.open(by_factor.output) as ds:
        like = make_like(tmp_path / "like.tif", ds.transform, (ds.width, ds.height))
        want = ds.read()
        profile = (ds.dtypes, str(ds.nodata), ds.transform, ds.shape)
    blocksum.resample(src, tmp_path / "like_out.tif", like=like, agg=agg, workers=0)
    for out in ("tr.tif", "like_out.tif"):
        with rasterio.open(tmp_path / out) as ds:
            assert (ds.dtypes, str(ds.nodata), ds.transform, ds.shape) == profile
            assert ds.read().tobytes() == want.tobytes(), out


def test_the_output_is_the_same_bits_whatever_the_chunks_and_workers(
    inputs: Dict[str, Input], tmp_path: Path
) -> None:
    src, kw = inputs["masked"].path, {"tr": (7.5 * PX, 7.5 * PX), "agg": "mean"}
    outs = []
    for i, (workers, chunk) in enumerate([(2, CHUNK_MIB), (0, None), (1, 0.05)]):
        blocksum.resample(src, tmp_path / f"{i}.tif", workers=workers, chunk_mib=chunk, **kw)
        with rasterio.open(tmp_path / f"{i}.tif") as ds:
            outs.append(ds.read().tobytes())
    assert outs[0] == outs[1] == outs[2]


def test_plan_names_the_target_grid(inputs: Dict[str, Input]) -> None:
    p = blocksum.plan(inputs["nodata_nan"].path, tr=(7.5 * PX, 7.5 * PX), chunks=True)
    assert p["factor"] is None and (p["out_width"], p["out_height"]) == (28, 21)
    t = p["target"]
    assert (t["width"], t["height"]) == (28, 21)
    assert t["x"]["step"] == pytest.approx(7.5) and t["y"]["origin"] == 0.0
    assert t["geo_transform"][:2] == [X0, pytest.approx(7.5 * PX)]
    assert blocksum.plan(inputs["nodata_nan"].path, 8)["factor"] == 8


def test_like_applies_to_each_input_of_a_batch(inputs: Dict[str, Input], tmp_path: Path) -> None:
    grid, size = LIKE
    ref = make_like(tmp_path / "ref.tif", grid, size)
    names = ["masked", "sidecar"]
    r = blocksum.resample([inputs[n].path for n in names], tmp_path / "out", like=ref,
                          agg="count", workers=2)
    assert r.ok and len(r.inputs) == 2
    for n in names:
        ours, dtype, transform, out_size = read(tmp_path / "out" / f"{n}.tif")
        assert (transform, out_size, dtype) == (grid, size, "float64")
        want = reference(inputs[n], grid, size)
        assert (np.abs(ours - want["count"]) <= want["count_tol"]).all()


GRID_MISUSE = [
    # exactly one of factor, tr, like
    ({"factor": 8, "tr": (PX, PX)}, "give one"),
    ({"factor": 8, "like": "REF"}, "give one"),
    ({"tr": (PX, PX), "like": "REF"}, "--like"),
    ({}, "no output grid"),
    ({"te": (X0, Y0 - PX, X0 + PX, Y0)}, "need --tr"),
    ({"tap": True}, "need --tr"),
    # zero or negative resolution, an extent that misses the input
    ({"tr": (0.0, PX)}, "'0.0' is not a positive number"),
    ({"tr": (PX, -PX)}, f"'{-PX!r}' is not a positive number"),
    ({"tr": (PX, PX), "te": (0.0, 0.0, 1.0, 1.0)}, "does not intersect"),
]


@pytest.mark.parametrize("kw,needle", GRID_MISUSE, ids=[str(i) for i in range(len(GRID_MISUSE))])
def test_a_grid_given_wrong_is_a_usage_error(
    inputs: Dict[str, Input], tmp_path: Path, kw: Dict[str, Any], needle: str
) -> None:
    kw = dict(kw)
    if kw.get("like") == "REF":
        kw["like"] = make_like(tmp_path / "ref.tif", *CASES["ratio_7_5"].grid)
    for call in (
        lambda: blocksum.resample(inputs["nodata_nan"].path, tmp_path / "o.tif", **kw),
        lambda: blocksum.plan(inputs["nodata_nan"].path, **kw),
    ):
        with pytest.raises(blocksum.UsageError) as e:
            call()
        assert needle in e.value.message, e.value.message
    assert not (tmp_path / "o.tif").exists()


def test_like_in_another_crs_is_an_input_error(inputs: Dict[str, Input], tmp_path: Path) -> None:
    ref = tmp_path / "utm.tif"
    with rasterio.open(ref, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 5540000, 100, 100)) as ds:
        ds.write(np.zeros((10, 10), dtype="uint8"), 1)
    with pytest.raises(blocksum.InputError) as e:
        blocksum.resample(inputs["nodata_nan"].path, tmp_path / "o.tif", like=ref)
    assert "gdalwarp" in e.value.message and not (tmp_path / "o.tif").exists()


def test_tr_and_te_take_so_many_numbers(inputs: Dict[str, Input], tmp_path: Path) -> None:
    src = inputs["nodata_nan"].path
    with pytest.raises(ValueError, match="tr= takes 2"):
        blocksum.resample(src, tmp_path / "o.tif", tr=(PX, PX, PX))
    with pytest.raises(ValueError, match="te= takes 4"):
        blocksum.plan(src, tr=(PX, PX), te=(X0, Y0))
    with pytest.raises(TypeError, match="tr="):
        blocksum.plan(src, tr=PX)  # type: ignore[arg-type]
