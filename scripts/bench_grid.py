#!/usr/bin/env python3
"""Target grids against --factor and gdalwarp (scripts/bench.sh grid).

On one synthetic raster (`coordinator synth`: Float32, tiled 256, DEFLATE, predictor 3,
1/1000-degree pixels, 16384 a side by default), interleaved, REPEATS runs of each of:

  factor     coordinator resample IN OUT -f 8
  grid       coordinator resample IN OUT --tr R R        (R = 7.5 input pixels: a ratio that
                                                          is not an integer)
  gdalwarp   gdalwarp -r sum -tr R R -ot Float64 -multi -wo NUM_THREADS=ALL_CPUS IN OUT
             (GDAWARP_REPEATS runs: it is slow)

Prints the median wall times, the ratios the issue sets (grid / factor <= 1.3, gdalwarp /
grid >= 10), and each output's total against the input's valid total, as markdown; writes
grid.md and grid.json in the work directory. PYTHON must have rasterio and numpy.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TOTAL = """
import sys, numpy as np, rasterio
with rasterio.open(sys.argv[1]) as d:
    s = 0.0
    for _, w in d.block_windows(1):
        a = d.read(1, window=w).astype('float64')
        ok = ~np.isnan(a)
        if d.nodata is not None and not np.isnan(d.nodata):
            ok &= a != d.nodata
        s += a[ok].sum()
    print(repr(float(s)), d.width, d.height)
"""


def log(msg):
    sys.stderr.write(f"[grid] {msg}\n")
    sys.stderr.flush()


def run(cmd):
    """Wall seconds of cmd; raises on failure (a failed run is no measurement)."""
    t0 = time.perf_counter()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
    return wall


def total(python, path):
    out = subprocess.run([python, "-c", TOTAL, str(path)], capture_output=True, text=True, check=True)
    s, w, h = out.stdout.split()
    return float(s), int(w), int(h)


def main():
    ap = argparse.ArgumentParser(prog="bench.sh grid", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=16384, help="raster side (default 16384)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of ours (default 3)")
    ap.add_argument("--gdalwarp-repeats", type=int, default=1, help="runs of gdalwarp (default 1)")
    ap.add_argument("--work-dir", type=Path, default=REPO / "target" / "bench")
    ap.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release")
    ap.add_argument("--python", default=str(REPO / "target" / "pyenv" / "bin" / "python"))
    a = ap.parse_args()

    coord = a.bin_dir / "coordinator"
    inputs = a.work_dir / "inputs"
    outs = a.work_dir / "grid"
    inputs.mkdir(parents=True, exist_ok=True)
    outs.mkdir(parents=True, exist_ok=True)
    src = inputs / f"synth_{a.size}x{a.size}_seed1.tif"
    if not src.exists():
        log(f"writing {src}")
        tmp = src.with_suffix(".tmp.tif")
        run([coord, "-q", "synth", tmp, "--width", a.size, "--height", a.size, "--seed", "1", "--overwrite"])
        tmp.rename(src)
    res = "0.0075"  # 7.5 pixels of 0.001 degree
    cmds = {
        "factor": [coord, "-q", "resample", src, outs / "factor.tif", "-f", "8", "--overwrite"],
        "grid": [coord, "-q", "resample", src, outs / "grid.tif", "--tr", res, res, "--overwrite"],
        "gdalwarp": ["gdalwarp", "-q", "-overwrite", "-r", "sum", "-tr", res, res, "-ot", "Float64",
                     "-multi", "-wo", "NUM_THREADS=ALL_CPUS", src, outs / "gdalwarp.tif"],
    }
    times = {k: [] for k in cmds}
    for i in range(max(a.repeats, a.gdalwarp_repeats)):
        for name, cmd in cmds.items():
            if i >= (a.gdalwarp_repeats if name == "gdalwarp" else a.repeats):
                continue
            t = run(cmd)
            times[name].append(t)
            log(f"{name} run {i + 1}: {t:.2f} s")
    med = {k: statistics.median(v) for k, v in times.items()}
    in_total, _, _ = total(a.python, src)
    outputs = {k: total(a.python, outs / f"{k}.tif") for k in cmds}
    lines = [
        f"Raster {a.size}x{a.size} Float32 (coordinator synth, DEFLATE p3, tiled 256); target cells of "
        f"{res} degree = 7.5 input pixels; median of {a.repeats} (gdalwarp: {a.gdalwarp_repeats}).",
        "",
        "| run | wall (s) | output | total vs input's valid total |",
        "|---|---|---|---|",
    ]
    for k in cmds:
        s, w, h = outputs[k]
        lines.append(f"| {k} | {med[k]:.2f} | {w}x{h} | {(s - in_total) / in_total:+.2e} |")
    lines += [
        "",
        f"grid / factor: {med['grid'] / med['factor']:.2f}x (target <= 1.3)",
        f"gdalwarp / grid: {med['gdalwarp'] / med['grid']:.1f}x (target >= 10)",
    ]
    text = "\n".join(lines)
    print(text)
    (a.work_dir / "grid.md").write_text(text + "\n")
    (a.work_dir / "grid.json").write_text(json.dumps({"times": times, "median": med, "input_total": in_total,
                                                       "outputs": outputs}, indent=1))


if __name__ == "__main__":
    main()
