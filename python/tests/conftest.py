"""Fixtures for the package's tests: they run the installed package (``pip install
./python``) and its binaries on real rasters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "py"


def python_m_blocksum(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m blocksum ARGS`` (the command line through the package)."""
    return subprocess.run(
        [sys.executable, "-m", "blocksum", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1024² synthetic Float32 raster (tiled, DEFLATE, with nodata), made by ``synth``."""
    d = tmp_path_factory.mktemp("demo")
    r = python_m_blocksum("synth", "demo.tif", "--width", "1024", "--height", "1024", cwd=d)
    assert r.returncode == 0, r.stderr
    return d / "demo.tif"


@pytest.fixture(autouse=True)
def _no_blocksum_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs every test without the BLOCKSUM_* settings of the caller's environment (but the
    binary override, which a developer may set on purpose)."""
    for k in list(os.environ):
        if k.startswith("BLOCKSUM_") and k != "BLOCKSUM_COORDINATOR":
            monkeypatch.delenv(k)
