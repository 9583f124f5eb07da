"""examples/python/pipeline.py runs as documented: two datasets, the application's
config.yml, a progress bar from events, results read back with rasterio."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

EXAMPLE = REPO / "examples" / "python" / "pipeline.py"


def test_the_pipeline_example_runs(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(EXAMPLE), "--workdir", str(tmp_path), "--workers", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["elevation", "population"], lines
    assert all("(kept)" in line and "restarts 0" in line for line in lines), lines
    assert "188x138" in lines[0] and "128x96" in lines[1]
    for name in ("elevation", "population"):
        assert (tmp_path / "resampled" / f"{name}.tif").is_file()
    # The progress (tqdm's bar, or the plain lines without tqdm) went to stderr.
    assert "population" in r.stderr and "3/3" in r.stderr, r.stderr


def test_the_example_config_is_the_seed_config_inside_an_application_config() -> None:
    text = (REPO / "examples" / "python" / "config.yml").read_text()
    seed = """resampling:
  method: sum
  factor: 8
  multiprocessing:
    enabled: true
    max_workers: 50
    chunk_prefetch: 4
    memory_limit_per_worker: 512  # MB
    queue_sizes:
      chunk_queue: 100
      result_queue: 50
"""
    assert seed in text and "\nupload:" in text and "\napp:" in text



def test_the_readme_python_example_runs(demo: Path, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index("```python\n") + len("```python\n")
    code = readme[start : readme.index("```", start)]
    assert len(code.strip().splitlines()) <= 10, code
    if importlib.util.find_spec("tqdm") is None:
        # The example draws a tqdm bar; scripts/test.sh installs tqdm.
        if os.environ.get("CI"):
            pytest.fail("tqdm is not installed: the README example cannot run")
        pytest.skip("tqdm is not installed")
    shutil.copy(demo, tmp_path / "in.tif")
    (tmp_path / "config.yml").write_text("resampling:\n  multiprocessing:\n    max_workers: 2\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " chunks, 0 restarts, " in r.stdout, r.stdout
    assert (tmp_path / "out.tif").is_file()
