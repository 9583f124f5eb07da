#!/usr/bin/env python3
"""Benchmark the block-sum coordinator against its peers, side by side.

For every raster size (square, Float32, generated once with `coordinator synth`
and cached in the work directory) this times, interleaved, REPEATS runs of:

  ours-pool      coordinator --workers W resample IN OUT --factor F
  ours-inproc    coordinator resample IN OUT --factor F --in-process
  floor          target/release/examples/decode_floor IN W 64 (same GDAL as the workers)
  floor-rasterio scripts/py/decode_floor.py IN --procs W --cachemax-mb 64 (rasterio's own GDAL)
  seed-seq       scripts/py/seed_blocksum.py IN OUT --factor F --workers 0 --cachemax-mb 64
  seed-W         scripts/py/seed_blocksum.py IN OUT --factor F --workers W --cachemax-mb 64
  gdalwarp       gdalwarp -r sum -multi -wo NUM_THREADS=W -tr <F x pixel> -te <same grid>

and reports the median wall time, the peak RSS of the process tree (largest
single process among the command and its waited-for descendants), and for the
coordinator the peak RSS of the coordinator and of its largest worker taken
from its --report JSON.  It then prints the ratios against their targets,
checks that the outputs agree, and writes results.md / results.json into the
work directory.  See scripts/BENCH.md.

Example:
    python3 scripts/bench.py --quick
    python3 scripts/bench.py --sizes 8192,16384 --repeats 5 --workers 2
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY_DIR = REPO / "scripts" / "py"
GNU_TIME = "/usr/bin/time"

METHODS = ["ours-pool", "ours-inproc", "floor", "floor-rasterio", "seed-seq", "seed-W", "gdalwarp"]

# Ratio targets: (name, numerator, denominator, comparison, target).
RATIOS = [
    ("ours/floor", "ours-pool", "floor", "<=", 1.05),
    ("seed(W)/ours", "seed-W", "ours-pool", ">=", 1.6),
    ("gdalwarp/ours", "gdalwarp", "ours-pool", ">=", 30.0),
]
RSS_SCALING_TARGET = 1.1

# Runs the command given after the output-file argument in a fresh interpreter,
# so that RUSAGE_CHILDREN covers exactly that command's process tree.
RUSAGE_WRAPPER = r"""
import resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write("%.3f %d\n" % (wall, ru.ru_maxrss))
sys.exit(rc)
"""


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_sizes(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of sizes")
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"'{text}': sizes must be positive")
    return sorted(set(sizes))


def parse_args(argv=None):
    p = OneLineParser(
        prog="bench.py",
        description="Time the coordinator (pool and in-process) against the decode floor, the Python seed "
        "design and gdalwarp, and check that their outputs agree. Run scripts/bench.sh to build first.",
        epilog="Exit status: 0 done, 1 a command failed or seed/ours outputs differ "
        "(or, with --strict, a target was missed), 2 usage error.",
    )
    p.add_argument("--sizes", type=parse_sizes, default=None,
                   help="comma-separated square raster sizes in pixels (default 4096,16384; --quick: 2048,4096)")
    p.add_argument("--repeats", type=int, default=None, help="runs per method and size (default 3; --quick: 1)")
    p.add_argument("--workers", type=int, default=2, help="W: worker processes / threads for every parallel method (default 2)")
    p.add_argument("--factor", type=int, default=8, help="block factor F (default 8)")
    p.add_argument("--seed", type=int, default=1, help="synth seed (default 1; fixed so that inputs are cached)")
    p.add_argument("--quick", action="store_true", help="smoke test: sizes 2048,4096 and 1 repeat")
    p.add_argument("--work-dir", type=Path, default=REPO / "target" / "bench",
                   help="inputs, outputs and results (default <repo>/target/bench)")
    p.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release",
                   help="where coordinator and worker are (default <repo>/target/release)")
    p.add_argument("--no-gdalwarp", action="store_true", help="do not run gdalwarp")
    p.add_argument("--gdalwarp-max-size", type=int, default=4096,
                   help="run gdalwarp only for sizes <= this (default 4096; it is slow)")
    p.add_argument("--rss-method", choices=["auto", "gnu-time", "rusage"], default="auto",
                   help="how the process-tree peak RSS is measured: GNU /usr/bin/time, or getrusage(RUSAGE_CHILDREN) "
                   "in a fresh python3 wrapper (default auto: GNU time if present)")
    p.add_argument("--regen", action="store_true", help="regenerate the cached input rasters")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before one run is killed (default 3600)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a ratio target is missed")
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = [2048, 4096] if args.quick else [4096, 16384]
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    if args.factor < 1:
        p.error("--factor must be >= 1")
    return args


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def mib(nbytes):
    return None if nbytes is None else nbytes / (1 << 20)


def fmt(x, spec=".2f", missing="-"):
    return missing if x is None else format(x, spec)


# ----------------------------------------------------------------- machine


def machine_info():
    info = {
        "nproc": os.cpu_count(),
        "nproc_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_total_mib"] = int(line.split()[1]) // 1024
                elif line.startswith("MemAvailable:"):
                    info["mem_available_mib"] = int(line.split()[1]) // 1024
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if "cpu_model" not in info:
        info["cpu_model"] = platform.processor() or "unknown"
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        out = subprocess.run(["gdalinfo", "--version"], capture_output=True, text=True, timeout=30)
        info["gdal_cli"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["gdal_cli"] = None
    try:
        import rasterio

        info["gdal_rasterio"] = rasterio.__gdal_version__
        info["rasterio"] = rasterio.__version__
    except ImportError:
        info["gdal_rasterio"] = None
    return info


# ----------------------------------------------------------------- running


def gnu_time_available():
    if not os.access(GNU_TIME, os.X_OK):
        return False
    try:
        out = subprocess.run([GNU_TIME, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "GNU" in (out.stdout + out.stderr)


def run_measured(cmd, rss_method, tmp_file, timeout, env=None):
    """Run cmd; return dict(wall_s, peak_rss_kib, rc, stderr)."""
    if tmp_file.exists():
        tmp_file.unlink()
    if rss_method == "gnu-time":
        full = [GNU_TIME, "-f", "%e %M", "-o", str(tmp_file), "--"] + cmd
    else:
        full = [sys.executable, "-c", RUSAGE_WRAPPER, str(tmp_file)] + cmd
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = "timeout", exc.stdout or "", f"killed after {timeout} s"
        if isinstance(stdout, bytes):
            stdout = stdout.decode(errors="replace")
    wall = time.perf_counter() - t0
    rss_kib = None
    try:
        # GNU time writes "Command exited with non-zero status N" before the format line.
        last = tmp_file.read_text().strip().splitlines()[-1].split()
        rss_kib = int(last[1])
    except (OSError, IndexError, ValueError):
        pass
    return {"wall_s": wall, "peak_rss_kib": rss_kib, "rc": rc, "stdout": stdout, "stderr": stderr}


def raster_info(path):
    import rasterio

    with rasterio.open(path) as ds:
        return {
            "width": ds.width,
            "height": ds.height,
            "transform": tuple(ds.transform)[:6],
            "count": ds.count,
        }


def ensure_input(args, size, coordinator):
    path = args.work_dir / "inputs" / f"synth_{size}x{size}_seed{args.seed}.tif"
    if path.exists() and not args.regen:
        try:
            info = raster_info(path)
            if (info["width"], info["height"]) == (size, size):
                log(f"[{size}] using cached input {path}")
                return path, False
        except Exception:  # noqa: BLE001 - unreadable cache: regenerate
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.tif")
    log(f"[{size}] generating {path} ...")
    t0 = time.perf_counter()
    cmd = [str(coordinator), "synth", str(tmp), "--width", str(size), "--height", str(size),
           "--seed", str(args.seed), "--overwrite"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"coordinator synth failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    os.replace(tmp, path)
    log(f"[{size}] generated in {time.perf_counter() - t0:.1f} s")
    return path, True


def warm_cache(path):
    """Read the input once so that every method starts with it in the page cache."""
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def gdalwarp_grid(info, factor):
    """-tr and -te giving exactly the block-sum output grid (edge blocks extended)."""
    a, b, c, d, e, f = info["transform"]
    if b != 0 or d != 0:
        raise RuntimeError("rotated geotransform: no gdalwarp grid")
    ow = math.ceil(info["width"] / factor)
    oh = math.ceil(info["height"] / factor)
    xres, yres = a * factor, abs(e) * factor
    x0, y0 = c, f
    x1 = x0 + ow * a * factor
    y1 = y0 + oh * e * factor
    xmin, xmax = min(x0, x1), max(x0, x1)
    ymin, ymax = min(y0, y1), max(y0, y1)
    return ["-tr", repr(xres), repr(yres), "-te", repr(xmin), repr(ymin), repr(xmax), repr(ymax)]


def build_commands(args, size, inp, out_dir, coordinator, gdal_ok):
    W, F = str(args.workers), str(args.factor)
    py = sys.executable
    cmds = {}
    cmds["ours-pool"] = dict(
        cmd=[str(coordinator), "-q", "--workers", W, "resample", str(inp), str(out_dir / "ours-pool.tif"),
             "--factor", F, "--overwrite", "--report", str(out_dir / "ours-pool.report.json")],
        output=out_dir / "ours-pool.tif", report=out_dir / "ours-pool.report.json")
    cmds["ours-inproc"] = dict(
        cmd=[str(coordinator), "-q", "resample", str(inp), str(out_dir / "ours-inproc.tif"),
             "--factor", F, "--in-process", "--overwrite", "--report", str(out_dir / "ours-inproc.report.json")],
        output=out_dir / "ours-inproc.tif", report=out_dir / "ours-inproc.report.json")
    # The floor uses the same GDAL as the workers (the Rust example links the system libgdal);
    # rasterio's wheel bundles another GDAL build, shown for information as floor-rasterio.
    cmds["floor"] = dict(
        cmd=[str(coordinator.parent / "examples" / "decode_floor"), str(inp), W, "64"],
        output=None, report=None)
    cmds["floor-rasterio"] = dict(
        cmd=[py, str(PY_DIR / "decode_floor.py"), str(inp), "--procs", W, "--cachemax-mb", "64", "--json"],
        output=None, report=None)
    cmds["seed-seq"] = dict(
        cmd=[py, str(PY_DIR / "seed_blocksum.py"), str(inp), str(out_dir / "seed-seq.tif"), "--factor", F,
             "--workers", "0", "--cachemax-mb", "64", "-q"],
        output=out_dir / "seed-seq.tif", report=None)
    cmds["seed-W"] = dict(
        cmd=[py, str(PY_DIR / "seed_blocksum.py"), str(inp), str(out_dir / "seed-W.tif"), "--factor", F,
             "--workers", W, "--cachemax-mb", "64", "-q"],
        output=out_dir / "seed-W.tif", report=None)
    if args.no_gdalwarp:
        cmds["gdalwarp"] = dict(skip="skipped (--no-gdalwarp)")
    elif not gdal_ok:
        cmds["gdalwarp"] = dict(skip="skipped (gdalwarp not found)")
    elif size > args.gdalwarp_max_size:
        cmds["gdalwarp"] = dict(skip=f"skipped (size > --gdalwarp-max-size {args.gdalwarp_max_size})")
    else:
        grid = gdalwarp_grid(raster_info(inp), args.factor)
        cmds["gdalwarp"] = dict(
            cmd=["gdalwarp", "-q", "-overwrite", "-r", "sum", "-multi", "-wo", f"NUM_THREADS={W}", "-ot", "Float64",
                 *grid, "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE", str(inp), str(out_dir / "gdalwarp.tif")],
            output=out_dir / "gdalwarp.tif", report=None)
    return cmds


def report_rss(report_path):
    """(coordinator peak RSS, max worker peak RSS, report wall ms) from a coordinator --report JSON."""
    try:
        with open(report_path) as f:
            rep = json.load(f)
    except (OSError, ValueError):
        return None, None, None
    totals = rep.get("totals", {})
    workers = [w.get("peak_rss_bytes") for w in rep.get("workers", []) if w.get("peak_rss_bytes") is not None]
    return totals.get("coordinator_peak_rss_bytes"), (max(workers) if workers else None), totals.get("wall_ms")


# ----------------------------------------------------------------- checks


def run_compare(a, b, rtol):
    proc = subprocess.run([sys.executable, str(PY_DIR / "compare.py"), str(a), str(b), "--rtol", str(rtol)],
                          capture_output=True, text=True)
    text = (proc.stdout + proc.stderr).strip()
    return {"a": Path(a).name, "b": Path(b).name, "rtol": rtol, "rc": proc.returncode,
            "ok": proc.returncode == 0, "message": text.splitlines()[0] if text else ""}


def gdalwarp_agreement(ours, gdal, rtol=1e-6):
    """Max relative difference and fraction of ours' valid pixels that gdalwarp matches within rtol."""
    import numpy as np
    import rasterio

    def masked(path):
        with rasterio.open(path) as ds:
            a = ds.read(1).astype(np.float64)
            nd = ds.nodata
        m = np.isnan(a)
        if nd is not None and not math.isnan(nd):
            m |= a == nd
        return a, m

    a, ma = masked(ours)
    b, mb = masked(gdal)
    if a.shape != b.shape:
        return {"ok_grid": False, "message": f"shape {a.shape} != {b.shape}"}
    both = ~(ma | mb)
    va, vb = a[both], b[both]
    ad = np.abs(va - vb)
    scale = np.maximum(np.abs(va), np.abs(vb))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(ad == 0, 0.0, ad / scale)
    within = int((ad <= rtol * scale).sum())
    valid_ours = int((~ma).sum())
    return {
        "ok_grid": True,
        "pixels": int(a.size),
        "valid_ours": valid_ours,
        "valid_both": int(both.sum()),
        "mask_mismatches": int((ma != mb).sum()),
        "max_rel_diff": float(rel.max()) if rel.size else 0.0,
        "frac_within_rtol": (within / valid_ours) if valid_ours else 1.0,
        "rtol": rtol,
    }


# ----------------------------------------------------------------- output


def verdict(value, op, target):
    if value is None:
        return "n/a"
    return "PASS" if (value <= target if op == "<=" else value >= target) else "MISS"


def render_markdown(res):
    m = res["machine"]
    c = res["config"]
    L = []
    L.append(f"# Block-sum benchmark ({res['started']})")
    L.append("")
    L.append(f"- machine: {m.get('nproc')} CPUs ({m.get('nproc_usable')} usable), "
             f"{m.get('mem_total_mib')} MiB RAM, {m.get('cpu_model')}, load avg at start {m.get('loadavg')}")
    L.append(f"- GDAL: CLI `{m.get('gdal_cli')}`, rasterio's GDAL {m.get('gdal_rasterio')}")
    L.append(f"- W={c['workers']} workers/threads, factor F={c['factor']}, {c['repeats']} repeat(s) "
             f"(median shown), synth seed {c['seed']}")
    L.append(f"- peak RSS (tree): {c['rss_method_desc']}")
    L.append("")
    L.append("| size | method | median wall (s) | runs (s) | tree peak RSS (MiB) | coordinator RSS (MiB) | "
             "max worker RSS (MiB) |")
    L.append("|---:|---|---:|---|---:|---:|---:|")
    for size_res in res["sizes"]:
        size = size_res["size"]
        for name in METHODS:
            r = size_res["methods"].get(name)
            if r is None:
                continue
            if r.get("skip"):
                L.append(f"| {size} | {name} | {r['skip']} | | | | |")
                continue
            runs = ", ".join(("%.2f" % x["wall_s"]) if x["rc"] == 0 else f"FAIL({x['rc']})" for x in r["runs"])
            L.append(f"| {size} | {name} | {fmt(r['median_wall_s'])} | {runs} | {fmt(mib_kib(r['peak_rss_kib']), '.0f')} | "
                     f"{fmt(mib(r.get('coordinator_rss_bytes')), '.0f')} | {fmt(mib(r.get('max_worker_rss_bytes')), '.0f')} |")
    L.append("")
    L.append("| size | ratio (median wall) | value | target | verdict |")
    L.append("|---:|---|---:|---:|---|")
    for size_res in res["sizes"]:
        for rr in size_res["ratios"]:
            note = rr.get("note", "")
            L.append(f"| {size_res['size']} | {rr['name']} | {fmt(rr['value'])} | {rr['op']} {rr['target']} | "
                     f"{rr['verdict']}{(' ' + note) if note else ''} |")
    sc = res.get("rss_scaling")
    if sc:
        L.append(f"| {sc['small']}→{sc['large']} | coordinator peak RSS large/small ({sc['pixel_ratio']:.0f}x pixels) | "
                 f"{fmt(sc['value'])} | <= {sc['target']} | {sc['verdict']} |")
    L.append("")
    L.append("| size | check | result |")
    L.append("|---:|---|---|")
    for size_res in res["sizes"]:
        for ch in size_res["checks"]:
            L.append(f"| {size_res['size']} | {ch['name']} | {ch['summary']} |")
    L.append("")
    return "\n".join(L)


def mib_kib(kib):
    return None if kib is None else kib / 1024


# ----------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    coordinator = args.bin_dir / "coordinator"
    worker = args.bin_dir / "worker"
    for b in (coordinator, worker):
        if not os.access(b, os.X_OK):
            log(f"bench.py: error: {b} not found; run scripts/bench.sh (it builds with cargo build --release)")
            return 2
    for s in ("decode_floor.py", "seed_blocksum.py", "compare.py"):
        if not (PY_DIR / s).exists():
            log(f"bench.py: error: {PY_DIR / s} is missing")
            return 2

    if args.rss_method == "auto":
        rss_method = "gnu-time" if gnu_time_available() else "rusage"
    elif args.rss_method == "gnu-time" and not gnu_time_available():
        log(f"bench.py: error: {GNU_TIME} is not GNU time")
        return 2
    else:
        rss_method = args.rss_method
    rss_desc = {
        "gnu-time": f"GNU {GNU_TIME} -f '%e %M' (max RSS of the largest process in the tree)",
        "rusage": "getrusage(RUSAGE_CHILDREN).ru_maxrss in a fresh python3 wrapper "
        "(max RSS of the largest process in the tree)",
    }[rss_method]
    gdal_ok = shutil.which("gdalwarp") is not None

    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    machine = machine_info()
    log(f"machine: {machine.get('nproc')} CPUs, {machine.get('mem_total_mib')} MiB, {machine.get('cpu_model')}, "
        f"{machine.get('gdal_cli')}; rss: {rss_method}")
    try:
        coord_version = subprocess.run([str(coordinator), "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        coord_version = None

    res = {
        "started": started,
        "machine": machine,
        "config": {
            "sizes": args.sizes, "repeats": args.repeats, "workers": args.workers, "factor": args.factor,
            "seed": args.seed, "quick": args.quick, "gdalwarp": not args.no_gdalwarp and gdal_ok,
            "gdalwarp_max_size": args.gdalwarp_max_size, "rss_method": rss_method, "rss_method_desc": rss_desc,
            "coordinator": coord_version, "work_dir": str(args.work_dir),
        },
        "sizes": [],
    }
    failed = False
    tmp_file = args.work_dir / ".measure.txt"

    for size in args.sizes:
        try:
            inp, _ = ensure_input(args, size, coordinator)
        except Exception as exc:  # noqa: BLE001
            log(f"[{size}] error: {exc}")
            failed = True
            continue
        out_dir = args.work_dir / "out" / str(size)
        out_dir.mkdir(parents=True, exist_ok=True)
        cmds = build_commands(args, size, inp, out_dir, coordinator, gdal_ok)
        methods = {}
        for name in METHODS:
            spec = cmds[name]
            if spec.get("skip"):
                methods[name] = {"skip": spec["skip"]}
            else:
                methods[name] = {"cmd": spec["cmd"], "runs": []}
        warm_cache(inp)
        env = dict(os.environ, BLOCKSUM_WORKER_BIN=str(worker))
        # Interleave: repeat r runs every method once, so drift in machine load hits all alike.
        for rep in range(args.repeats):
            for name in METHODS:
                spec = cmds[name]
                if spec.get("skip"):
                    continue
                if spec["output"] is not None and spec["output"].exists():
                    spec["output"].unlink()
                if spec["report"] is not None and spec["report"].exists():
                    spec["report"].unlink()
                r = run_measured(spec["cmd"], rss_method, tmp_file, args.timeout, env=env)
                run = {"wall_s": r["wall_s"], "peak_rss_kib": r["peak_rss_kib"], "rc": r["rc"]}
                if spec["report"] is not None:
                    crss, wrss, wall_ms = report_rss(spec["report"])
                    run.update(coordinator_rss_bytes=crss, max_worker_rss_bytes=wrss, report_wall_ms=wall_ms)
                if name == "floor-rasterio" and r["rc"] == 0:
                    try:
                        run["self_reported_s"] = json.loads(r["stdout"])["elapsed_s"]
                    except (ValueError, KeyError, TypeError):
                        pass
                if r["rc"] != 0:
                    run["stderr_tail"] = r["stderr"].strip()[-800:]
                    failed = True
                    log(f"[{size}] {name} run {rep + 1} FAILED ({r['rc']}): {run['stderr_tail'][-300:]}")
                else:
                    extra = ""
                    if run.get("coordinator_rss_bytes") is not None:
                        extra = f", coordinator {mib(run['coordinator_rss_bytes']):.0f} MiB"
                    if run.get("max_worker_rss_bytes") is not None:
                        extra += f", max worker {mib(run['max_worker_rss_bytes']):.0f} MiB"
                    if run.get("self_reported_s") is not None:
                        extra += f", self-timed {run['self_reported_s']:.2f} s"
                    log(f"[{size}] {name} run {rep + 1}/{args.repeats}: {r['wall_s']:.2f} s, "
                        f"tree peak {fmt(mib_kib(r['peak_rss_kib']), '.0f')} MiB{extra}")
                methods[name]["runs"].append(run)

        for name, m in methods.items():
            if m.get("skip"):
                continue
            ok = [x for x in m["runs"] if x["rc"] == 0]
            m["median_wall_s"] = statistics.median(x["wall_s"] for x in ok) if ok else None
            rss = [x["peak_rss_kib"] for x in ok if x["peak_rss_kib"] is not None]
            m["peak_rss_kib"] = max(rss) if rss else None
            for key in ("coordinator_rss_bytes", "max_worker_rss_bytes"):
                vals = [x[key] for x in ok if x.get(key) is not None]
                if vals:
                    m[key] = max(vals)

        ratios = []
        for rname, num, den, op, target in RATIOS:
            a, b = methods[num], methods[den]
            if a.get("skip") or b.get("skip"):
                ratios.append({"name": rname, "value": None, "op": op, "target": target, "verdict": "n/a",
                               "note": (a.get("skip") or b.get("skip"))})
                continue
            va, vb = a.get("median_wall_s"), b.get("median_wall_s")
            value = va / vb if va and vb else None
            ratios.append({"name": rname, "value": value, "op": op, "target": target,
                           "verdict": verdict(value, op, target)})
        # Informational: the floor's own clock starts after interpreter start-up and imports.
        fl, ours = methods["floor"], methods["ours-pool"]
        selfs = [x["self_reported_s"] for x in fl.get("runs", []) if x.get("self_reported_s") is not None]
        if selfs and ours.get("median_wall_s"):
            fl["median_self_reported_s"] = statistics.median(selfs)
            v = ours["median_wall_s"] / fl["median_self_reported_s"]
            ratios.append({"name": "ours/floor (floor's self-timed elapsed_s)", "value": v, "op": "<=",
                           "target": 1.05, "verdict": "info " + verdict(v, "<=", 1.05)})

        checks = []

        def have(name):
            m = methods[name]
            return not m.get("skip") and m.get("median_wall_s") is not None and cmds[name]["output"].exists()

        for a, b in (("ours-pool", "seed-W"), ("ours-pool", "seed-seq"), ("ours-pool", "ours-inproc")):
            if have(a) and have(b):
                c = run_compare(cmds[a]["output"], cmds[b]["output"], 1e-6)
                c["name"] = f"{b} vs {a} (compare.py --rtol 1e-6)"
                c["summary"] = ("PASS: " if c["ok"] else "FAIL: ") + c["message"]
                if not c["ok"]:
                    failed = True
            else:
                c = {"name": f"{b} vs {a}", "ok": None, "summary": "not run (missing output)"}
            checks.append(c)
        if have("gdalwarp") and have("ours-pool"):
            try:
                g = gdalwarp_agreement(cmds["ours-pool"]["output"], cmds["gdalwarp"]["output"])
                if g["ok_grid"]:
                    g["summary"] = (f"info (area-weighted, differs by design): max rel diff {g['max_rel_diff']:.3g}, "
                                    f"{100 * g['frac_within_rtol']:.2f}% of our valid pixels within 1e-6, "
                                    f"{g['mask_mismatches']} nodata-mask mismatches")
                else:
                    g["summary"] = "info: grid differs: " + g["message"]
            except Exception as exc:  # noqa: BLE001
                g = {"summary": f"info: could not compare: {exc}"}
            g["name"] = "gdalwarp vs ours-pool"
            checks.append(g)

        res["sizes"].append({"size": size, "input": str(inp), "methods": methods, "ratios": ratios, "checks": checks})

    # Coordinator peak RSS (from its report) at the smallest vs the largest size.
    done = [s for s in res["sizes"] if s["methods"]["ours-pool"].get("coordinator_rss_bytes")]
    if len(done) >= 2:
        small, large = done[0], done[-1]
        v = large["methods"]["ours-pool"]["coordinator_rss_bytes"] / small["methods"]["ours-pool"]["coordinator_rss_bytes"]
        res["rss_scaling"] = {
            "small": small["size"], "large": large["size"],
            "pixel_ratio": (large["size"] / small["size"]) ** 2,
            "small_mib": mib(small["methods"]["ours-pool"]["coordinator_rss_bytes"]),
            "large_mib": mib(large["methods"]["ours-pool"]["coordinator_rss_bytes"]),
            "value": v, "target": RSS_SCALING_TARGET, "verdict": verdict(v, "<=", RSS_SCALING_TARGET),
        }
    res["finished"] = datetime.datetime.now().isoformat(timespec="seconds")

    md = render_markdown(res)
    print(md)
    (args.work_dir / "results.md").write_text(md + "\n")
    with open(args.work_dir / "results.json", "w") as f:
        json.dump(res, f, indent=2, default=str)
        f.write("\n")
    log(f"wrote {args.work_dir / 'results.md'} and {args.work_dir / 'results.json'}")

    missed = any(r["verdict"] == "MISS" for s in res["sizes"] for r in s["ratios"])
    missed |= res.get("rss_scaling", {}).get("verdict") == "MISS"
    if failed:
        return 1
    if args.strict and missed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
