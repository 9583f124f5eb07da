#!/usr/bin/env python3
"""The resample stage of a data-preparation pipeline, on blocksum.

The stage it replaces cut each dataset into chunks and block-summed them with rasterio and a
ProcessPoolExecutor, configured from the application's config.yml. Here the same config.yml
(its ``resampling.multiprocessing`` section, read by blocksum itself) drives a supervised
worker pool; the stage shows a progress bar from the run's events, and reads the results
back with rasterio to check that the totals are kept.

Run it (after ``pip install ./python``; tqdm, if installed, draws the bars)::

    python examples/python/pipeline.py --workdir /tmp/prep --workers 2

Without dataset paths it makes two synthetic rasters in WORKDIR. ``max_workers: 50`` in
config.yml is sized for a 50-core server: ``--workers`` overrides it here (a flag wins over
the file), as ``BLOCKSUM_WORKERS`` would.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import rasterio

import blocksum

HERE = Path(__file__).resolve().parent


class Progress:
    """A progress bar per dataset, fed by blocksum's events (tqdm when installed)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar: Any = None
        self.done = 0
        self.total = 0
        self.restarts = 0

    def __call__(self, event: Dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "plan":
            self.total = event["chunks"]
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, desc=self.name, unit="chunk", file=sys.stderr)
            except ImportError:
                self.bar = None
        elif kind == "chunk_written":
            self.done += 1
            if self.bar is not None:
                self.bar.update(1)
            else:
                print(f"{self.name}: {self.done}/{self.total} chunks", file=sys.stderr)
        elif kind == "worker_restart" and not event["deliberate"]:
            self.restarts += 1
            if self.bar is not None:
                self.bar.set_postfix(restarts=self.restarts)
        elif kind == "run_end" and self.bar is not None:
            self.bar.close()


class ResampleStage:
    """Block-sums each dataset by ``factor`` into ``out_dir``, configured by ``config``."""

    def __init__(self, config: Path, factor: int, workers: Optional[int] = None) -> None:
        self.config = config
        self.factor = factor
        self.workers = workers

    def run(self, datasets: Dict[str, Path], out_dir: Path) -> Dict[str, blocksum.RunResult]:
        out_dir.mkdir(parents=True, exist_ok=True)
        results = {}
        for name, src in datasets.items():
            try:
                results[name] = blocksum.resample(
                    src,
                    out_dir / f"{name}.tif",
                    self.factor,
                    agg="sum",
                    config=self.config,
                    workers=self.workers,
                    overwrite=True,
                    on_event=Progress(name),
                )
            except blocksum.QuarantinedChunks as e:
                # The output is complete but for the named windows (nodata): record and go on.
                print(f"{name}: {e}", file=sys.stderr)
                results[name] = e.result
        return results


def valid_total(path: Path) -> float:
    """The sum of a raster's valid pixels (nodata and NaN excluded), read with rasterio."""
    with rasterio.open(path) as ds:
        a = ds.read(1, masked=True).astype("float64")
    return float(np.nansum(a.filled(np.nan)))


def make_datasets(workdir: Path) -> Dict[str, Path]:
    """Two synthetic rasters of different sizes (the coordinator's ``synth``)."""
    sizes = {"elevation": (1500, 1100, 1), "population": (1024, 768, 2)}
    out = {}
    for name, (w, h, seed) in sizes.items():
        path = workdir / f"{name}.tif"
        if not path.exists():
            subprocess.run(
                [sys.executable, "-m", "blocksum", "synth", str(path), "--width", str(w),
                 "--height", str(h), "--seed", str(seed)],
                check=True,
            )
        out[name] = path
    return out


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="*", type=Path, help="rasters to resample (default: two made in WORKDIR)")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--config", type=Path, default=HERE / "config.yml")
    p.add_argument("--factor", type=int, default=8)
    p.add_argument("--workers", type=int, help="overrides max_workers of the config file")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    datasets = (
        {d.stem: d for d in args.datasets} if args.datasets else make_datasets(args.workdir)
    )
    stage = ResampleStage(args.config, args.factor, args.workers)
    results = stage.run(datasets, args.workdir / "resampled")
    ok = True
    for name, r in results.items():
        with rasterio.open(r.output) as ds:
            shape = (ds.width, ds.height)
        before, after = valid_total(datasets[name]), valid_total(Path(r.output))
        kept = abs(after - before) <= 1e-9 * max(abs(before), 1.0)
        ok &= kept and not r.quarantined_windows
        print(
            f"{name}: {r.output} {shape[0]}x{shape[1]}, {r.done}/{r.chunks} chunks, "
            f"{r.wall_time:.2f} s, restarts {r.restarts}, total {after:.6g} "
            f"({'kept' if kept else f'input had {before:.6g}'})"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
