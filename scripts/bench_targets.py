#!/usr/bin/env python3
"""The decode targets of issue 10 and the start-up targets of issue 20, measured side by side in
one run (scripts/bench.sh targets; `--only startup` for the start-up cases alone).

On one synthetic raster (`coordinator synth`: Float32, tiled 256, DEFLATE, predictor 3;
16384 a side by default) at factor F, interleaved, REPEATS runs of each of:

  ours            coordinator resample IN OUT -f F            (default --workers: every CPU)
  floor-rasterio  scripts/py/decode_floor.py IN --procs P     (rasterio's bundled GDAL)
  floor-system    target/release/examples/decode_floor IN P   (the system GDAL the workers link)
  floor-inflate   target/release/examples/inflate_floor IN P  (reading and inflating every
                  block on P threads, nothing else: what any decoder of the file pays)
  seed            scripts/py/seed_blocksum.py IN OUT -f F --workers 2 --cachemax-mb 64

and, on copies of the raster made with gdal_translate (DEFLATE predictor 1, 2 and 3, LZW
predictor 2, ZSTD predictor 3, uncompressed), `ours --decoder native` and `--decoder gdal`,
with the decoder `coordinator plan` says auto picks; and the start-up cases (startup_cases): a
256² raster with 2 workers against in process, --workers 50 against --workers 2. Prints the median wall times and the
ratios against the targets as markdown, and writes targets.md / targets.json in the work
directory. Outputs are checked: ours against the seed with scripts/py/compare.py, native
against gdal for every codec. P (the floors' processes) is the number of CPUs, as ours uses.

PYTHON (default: the virtualenv target/pyenv that scripts/test.sh makes) must have rasterio
and numpy.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = REPO / "scripts" / "py"
sys.path.insert(0, str(REPO / "scripts"))
from bench import machine_info  # noqa: E402  (the same machine description as bench.py)

CODECS = [
    ("deflate-p1", ["COMPRESS=DEFLATE", "PREDICTOR=1"]),
    ("deflate-p2", ["COMPRESS=DEFLATE", "PREDICTOR=2"]),
    ("deflate-p3", None),  # the synth raster itself
    ("lzw-p2", ["COMPRESS=LZW", "PREDICTOR=2"]),
    ("zstd-p3", ["COMPRESS=ZSTD", "PREDICTOR=3"]),
    ("none", ["COMPRESS=NONE"]),
]


def log(msg):
    sys.stderr.write(f"[targets] {msg}\n")
    sys.stderr.flush()


def run(cmd, env=None):
    """Wall seconds of cmd; raises on failure (a failed run is no measurement)."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
    return wall, p.stdout


def warm(path):
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def ensure_synth(coord, path, size):
    """`coordinator synth` of size x size (Float32, tiled 256, DEFLATE, predictor 3), once."""
    if not path.exists():
        log(f"making {path}")
        tmp = path.with_name(path.name + ".partial.tif")
        run([coord, "-q", "synth", tmp, "--width", str(size), "--height", str(size), "--seed", "1", "--overwrite"])
        os.replace(tmp, path)
    return path


def startup_cases(coord, inputs, outs, base, factor):
    """Issue 20's start-up cases: a 256^2 raster with 2 workers against in process (the
    workers' start-up is all the difference), and --workers 50 against --workers 2 on the
    medium raster (50 processes on 2 CPUs: what each worker's start-up costs). Returns the
    commands by name and the targets as (label, numerator, denominator, limit)."""
    tiny = ensure_synth(coord, inputs / "synth_256x256_seed1.tif", 256)
    F = str(factor)

    def resample(inp, out, *pool):
        return [coord, "-q", *pool, "resample", inp, outs / out, "--factor", F, "--overwrite"]

    cmds = {
        "tiny/2-workers": resample(tiny, "tiny-w2.tif", "--workers", "2"),
        "tiny/in-process": resample(tiny, "tiny-ip.tif") + ["--in-process"],
        "medium/50-workers": resample(base, "w50.tif", "--workers", "50"),
        "medium/2-workers": resample(base, "w2.tif", "--workers", "2"),
    }
    targets = [
        ("256² 2 workers / in process <= 1.3", "tiny/2-workers", "tiny/in-process", 1.3),
        ("--workers 50 / --workers 2 <= 1.3", "medium/50-workers", "medium/2-workers", 1.3),
    ]
    return cmds, targets


def startup_lines(med, times, targets):
    """The start-up cases as markdown: median walls, then the ratios against the targets."""
    lines = ["", "| start-up case | median wall (s) | runs |", "|---|---:|---|"]
    names = [n for _, a, b, _ in targets for n in (a, b)]
    for k in names:
        lines.append(f"| {k} | {med[k]:.3f} | {', '.join(f'{t:.3f}' for t in times[k])} |")
    lines += ["", "| start-up target | measured | verdict |", "|---|---:|---|"]
    for label, a, b, limit in targets:
        v = med[a] / med[b]
        lines.append(f"| {label} | {v:.2f} | {'PASS' if v <= limit else 'MISS'} |")
    return lines


def startup_only(a, coord, inputs, outs, base):
    """`--only startup`: the start-up cases alone, interleaved, --startup-repeats runs each."""
    cmds, targets = startup_cases(coord, inputs, outs, base, a.factor)
    times = {m: [] for m in cmds}
    for r in range(a.startup_repeats):
        for m, cmd in cmds.items():
            wall, _ = run(cmd)
            times[m].append(wall)
        log(f"start-up repeat {r + 1}/{a.startup_repeats}: "
            + ", ".join(f"{m} {times[m][-1]:.3f} s" for m in cmds))
    med = {m: statistics.median(v) for m, v in times.items()}
    spawn = os.environ.get("BLOCKSUM_SPAWN", "fork-server")
    text = "\n".join([f"Start-up cases (BLOCKSUM_SPAWN={spawn}), F = {a.factor}, "
                      f"medium raster {a.size}², median of {a.startup_repeats}."]
                     + startup_lines(med, times, targets)) + "\n"
    print(text)
    (a.work_dir / "startup.md").write_text(text)
    (a.work_dir / "startup.json").write_text(json.dumps(
        {"times": times, "median": med, "spawn": spawn,
         "commands": {k: [str(x) for x in v] for k, v in cmds.items()}}, indent=2))
    return 0


def main():
    ap = argparse.ArgumentParser(prog="bench.sh targets", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=16384, help="raster side (default 16384)")
    ap.add_argument("--factor", type=int, default=8, help="F (default 8)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each (default 3)")
    ap.add_argument("--work-dir", type=Path, default=REPO / "target" / "bench")
    ap.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release")
    ap.add_argument("--python", default=str(REPO / "target" / "pyenv" / "bin" / "python"))
    ap.add_argument("--only", choices=["startup"], help="run only these cases (default: all)")
    ap.add_argument("--startup-repeats", type=int, default=11,
                    help="runs of each start-up case (short runs: default 11)")
    a = ap.parse_args()

    coord = a.bin_dir / "coordinator"
    floor_bin = a.bin_dir / "examples" / "decode_floor"
    inflate_bin = a.bin_dir / "examples" / "inflate_floor"
    procs = str(len(os.sched_getaffinity(0)))
    inputs = a.work_dir / "inputs"
    outs = a.work_dir / "targets"
    inputs.mkdir(parents=True, exist_ok=True)
    outs.mkdir(parents=True, exist_ok=True)
    F = str(a.factor)

    base = ensure_synth(coord, inputs / f"synth_{a.size}x{a.size}_seed1.tif", a.size)
    if a.only == "startup":
        return startup_only(a, coord, inputs, outs, base)
    files = {}
    for name, opts in CODECS:
        if opts is None:
            files[name] = base
            continue
        path = inputs / f"synth_{a.size}_{name}.tif"
        if not path.exists():
            log(f"making {path}")
            tmp = path.with_name(path.name + ".partial.tif")
            cmd = ["gdal_translate", "-q", "-co", "TILED=YES", "-co", "BIGTIFF=IF_SAFER"]
            for o in opts:
                cmd += ["-co", o]
            run(cmd + [base, tmp])
            os.replace(tmp, path)
        files[name] = path

    def ours(inp, out, *extra):
        return [coord, "-q", "resample", inp, outs / out, "--factor", F, "--overwrite", *extra]

    methods = {
        "ours": ours(base, "ours.tif"),
        "floor-rasterio": [a.python, PY / "decode_floor.py", base, "--procs", procs, "--cachemax-mb", "64"],
        "floor-system": [floor_bin, base, procs, "64"],
        "floor-inflate": [inflate_bin, base, procs],
        "seed": [a.python, PY / "seed_blocksum.py", base, outs / "seed.tif", "--factor", F,
                 "--workers", "2", "--cachemax-mb", "64", "-q"],
    }
    for name, path in files.items():
        for dec in ["native", "gdal"]:
            methods[f"{name}/{dec}"] = ours(path, f"{name}-{dec}.tif", "--decoder", dec)

    startup, startup_targets = startup_cases(coord, inputs, outs, base, a.factor)
    methods.update(startup)

    auto = {}
    for name, path in files.items():
        _, text = run([coord, "plan", path, "--factor", F])
        auto[name] = next(line.split(None, 1)[1] for line in text.splitlines() if line.startswith("decoder"))

    times = {m: [] for m in methods}
    for r in range(a.repeats):
        for m, cmd in methods.items():
            src = next((p for p in cmd if isinstance(p, Path) and p.suffix == ".tif" and p.parent == inputs), None)
            if src is not None:
                warm(src)
            wall, _ = run(cmd)
            times[m].append(wall)
            log(f"repeat {r + 1}/{a.repeats} {m}: {wall:.2f} s")
    med = {m: statistics.median(v) for m, v in times.items()}

    checks = []
    _, cmp_out = run([a.python, PY / "compare.py", outs / "ours.tif", outs / "seed.tif", "--rtol", "1e-6"])
    checks.append(f"ours vs seed: {cmp_out.strip().splitlines()[-1] if cmp_out.strip() else 'ok'}")
    for name in files:
        _, c = run([a.python, PY / "compare.py", outs / f"{name}-native.tif", outs / f"{name}-gdal.tif", "--rtol", "0"])
        checks.append(f"{name} native vs gdal: {c.strip().splitlines()[-1] if c.strip() else 'ok'}")

    def verdict(v, op, t):
        ok = v <= t if op == "<=" else v >= t
        return "PASS" if ok else "MISS"

    m = machine_info()
    lines = [
        f"Machine: {m.get('cpu_model')}, {m.get('nproc_usable')} usable CPUs, "
        f"{m.get('mem_total_mib', 0) // 1024} GiB, {m.get('platform')}; {m.get('gdal_cli')}; "
        f"load average at the end {m.get('loadavg')}.",
        f"Raster {a.size}² Float32 (coordinator synth), F = {a.factor}, median of {a.repeats}, "
        f"floors with {procs} processes, seed with 2 workers.",
        "",
        "| method | median wall (s) | runs |",
        "|---|---:|---|",
    ]
    for k in ["ours", "floor-rasterio", "floor-system", "floor-inflate", "seed"]:
        lines.append(f"| {k} | {med[k]:.2f} | {', '.join(f'{t:.2f}' for t in times[k])} |")
    lines += ["", "| target | measured | verdict |", "|---|---:|---|"]
    for label, v, op, t in [
        ("ours / rasterio floor <= 0.5", med["ours"] / med["floor-rasterio"], "<=", 0.5),
        ("ours / system GDAL floor <= 0.35", med["ours"] / med["floor-system"], "<=", 0.35),
        ("seed (2 workers) / ours >= 3.0", med["seed"] / med["ours"], ">=", 3.0),
    ]:
        lines.append(f"| {label} | {v:.2f} | {verdict(v, op, t)} |")
    # How close the targets can come on this raster: a run that did nothing but read and
    # inflate would measure these.
    lines += [
        "",
        "| if a run cost only its inflate (floor-inflate) | ratio |",
        "|---|---:|",
        f"| floor-inflate / rasterio floor | {med['floor-inflate'] / med['floor-rasterio']:.2f} |",
        f"| seed / floor-inflate | {med['seed'] / med['floor-inflate']:.2f} |",
        f"| ours / floor-inflate | {med['ours'] / med['floor-inflate']:.2f} |",
    ]
    lines += ["", "| input | native (s) | gdal (s) | gdal / native | auto picks | auto right? |",
              "|---|---:|---:|---:|---|---|"]
    for name in files:
        n, g = med[f"{name}/native"], med[f"{name}/gdal"]
        pick = auto[name].split(":")[0]
        right = (pick == "native") == (n <= g)
        lines.append(f"| {name} | {n:.2f} | {g:.2f} | {g / n:.2f} | {auto[name]} | {'yes' if right else 'NO'} |")
    lines += startup_lines(med, times, startup_targets)
    lines += ["", "Checks: " + "; ".join(checks)]
    text = "\n".join(lines) + "\n"
    print(text)
    (a.work_dir / "targets.md").write_text(text)
    (a.work_dir / "targets.json").write_text(json.dumps(
        {"machine": m, "times": times, "median": med, "auto": auto, "checks": checks,
         "commands": {k: [str(x) for x in v] for k, v in methods.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        sys.stderr.write(f"bench.sh targets: error: {e}\n")
        sys.exit(1)
