"""The package as installed: its binaries, the command line, a run against the independent
numpy reference, plan, merge, map, and a YAML config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import rasterio

import blocksum
from conftest import REPO, SCRIPTS, python_m_blocksum


def test_the_installed_package_ships_both_binaries() -> None:
    if os.environ.get("BLOCKSUM_COORDINATOR"):
        if os.environ.get("CI"):
            pytest.fail("BLOCKSUM_COORDINATOR is set: the installed binaries cannot be checked")
        pytest.skip("BLOCKSUM_COORDINATOR overrides the installed binary")
    coordinator = Path(blocksum.coordinator_path())
    assert coordinator.parent == Path(sysconfig.get_path("scripts")), coordinator
    assert (coordinator.parent / "worker").is_file()
    # The installed package, not the checkout's source.
    assert REPO / "python" not in Path(blocksum.__file__).parents, blocksum.__file__


def test_python_m_blocksum_runs_the_cli(tmp_path: Path) -> None:
    r = python_m_blocksum("--version", cwd=tmp_path)
    assert r.returncode == 0 and "protocol" in r.stdout, r
    r = python_m_blocksum("plan", "missing.tif", "-f", "8", cwd=tmp_path)
    assert r.returncode == 3 and r.stderr.startswith("error: "), r


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(masked=True).filled(np.nan).astype("float64")


@pytest.mark.parametrize("agg", ["sum", "mean", "max"])
def test_resample_equals_the_independent_reference(tmp_path: Path, agg: str) -> None:
    src = tmp_path / "in.tif"
    made = subprocess.run(
        [sys.executable, str(SCRIPTS / "make_raster.py"), str(src), "--width", "700",
         "--height", "500", "--dtype", "float32", "--seed", "3"],
        capture_output=True, text=True,
    )
    assert made.returncode == 0, made.stderr
    r = blocksum.resample(src, tmp_path / "out.tif", 8, agg=agg, workers=2)
    assert r.ok and r.status == "ok" and r.output.endswith("out.tif")
    assert r.chunks >= 1 and r.done == r.chunks and r.quarantined_windows == []
    assert r.restarts == 0 and r.deaths_by_cause == {} and r.wall_time > 0
    assert r.raw["options"]["agg"] == agg
    ref = tmp_path / "ref.tif"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "reference.py"), str(src), str(ref), "-f", "8",
         "--agg", agg],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    cmp = subprocess.run(
        [sys.executable, str(SCRIPTS / "compare.py"), str(tmp_path / "out.tif"), str(ref)],
        capture_output=True, text=True,
    )
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    ours, theirs = read(tmp_path / "out.tif"), read(ref)
    assert ours.shape == (1, 63, 88)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, equal_nan=True)


def test_plan_is_the_cli_plan(demo: Path) -> None:
    p = blocksum.plan(demo, 8, workers=2, chunks=True)
    assert (p["width"], p["height"], p["out_width"], p["factor"]) == (1024, 1024, 128, 8)
    assert p["chunks"] == len(p["chunk_list"]) >= 1
    assert "memory" in p and "decoder" in p


def test_shards_and_merge(demo: Path, tmp_path: Path) -> None:
    whole = blocksum.resample(demo, tmp_path / "whole.tif", 8, workers=1)
    out = tmp_path / "sharded.tif"
    for i in range(2):
        blocksum.resample(demo, out, 8, workers=1, shard=f"{i}/2")
    assert not out.exists()
    assert blocksum.merge(out) == str(out)
    np.testing.assert_array_equal(read(out), read(Path(whole.output)))
    with pytest.raises(blocksum.InputError):
        blocksum.merge(tmp_path / "never-sharded.tif")


def test_a_yaml_config_reaches_the_run(demo: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(
        "other_stage:\n  threads: 4\nresampling:\n  method: sum\n  multiprocessing:\n"
        "    enabled: false\n    max_workers: 50\n"
    )
    r = blocksum.resample(demo, tmp_path / "o.tif", 8, config=cfg)
    assert r.done_in_process == r.done == r.chunks and r.workers_spawned == 0
    cfg.write_text("resampling:\n  multiprocessing:\n    max_wrokers: 2\n")
    with pytest.raises(blocksum.InputError) as e:
        blocksum.resample(demo, tmp_path / "o2.tif", 8, config=cfg)
    assert "max_wrokers" in e.value.message and "config.yml" in e.value.message


def test_map_runs_a_c_kernel(demo: Path, tmp_path: Path) -> None:
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler (cc): the map test cannot build its kernel")
    lib = tmp_path / "libblockstat.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-I", str(REPO / "include"), "-o", str(lib),
         str(REPO / "examples" / "c-kernels" / "blockstat.c")],
        check=True,
    )
    r = blocksum.map(demo, tmp_path / "range.tif", lib, factor=8, bands=[1],
                     kernel_args={"stat": "range"}, workers=2)
    assert r.ok and r.raw["options"]["kernel"]["args"] == ["stat=range"]
    with rasterio.open(tmp_path / "range.tif") as ds:
        assert (ds.width, ds.height, ds.dtypes[0]) == (128, 128, "float64")
