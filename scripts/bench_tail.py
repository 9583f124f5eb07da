#!/usr/bin/env python3
"""The tail case of issue 20: a hang injected into the last chunk (scripts/bench.sh tail; also
run by scripts/bench.sh targets).

On the synthetic raster of bench.sh targets (`coordinator synth`: Float32, tiled 256, DEFLATE,
predictor 3; 16384 a side by default) at factor F, default options, interleaved, REPEATS runs
of each of:

  clean       coordinator resample IN OUT -f F
  hung        the same with --inject-fault hang:LAST:1      (LAST from `coordinator plan --json`)
  hung-off    the same with --speculation off               (the behaviour before speculative
                                                            backups: the run waits for the timeout)

Prints the median wall times, and from each hung run's report how long the run went on after
the other chunks had finished (the target: <= 2 s) and which attempt of the last chunk won.
Checks that every hung run's output is the same file as the clean run's (byte for byte; if
not, GDAL's per-band checksums must agree). Writes tail.md and tail.json in the work directory.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def log(msg):
    sys.stderr.write(f"[tail] {msg}\n")
    sys.stderr.flush()


def run(cmd):
    """Wall seconds and stdout of cmd; raises on failure (a failed run is no measurement)."""
    t0 = time.perf_counter()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
    return wall, p.stdout


def warm(path):
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def tail_of(report_path, last):
    """From a run's report: seconds from the other chunks' last end to the last chunk's end,
    and the last chunk's winning attempt (number, speculative)."""
    r = json.loads(Path(report_path).read_text())
    others = [a["ended_ms"] for c in r["chunks"] if c["id"] != last for a in c["attempts"] if a["failure"] is None]
    mine = [a for a in r["chunks"][last]["attempts"] if a["failure"] is None]
    won = mine[0]
    return (won["ended_ms"] - max(others)) / 1000.0, won["attempt"], won.get("speculative", False)


def same_output(a, b):
    if Path(a).read_bytes() == Path(b).read_bytes():
        return "identical files"
    sums = []
    for p in (a, b):
        _, text = run(["gdalinfo", "-checksum", p])
        sums.append([line.strip() for line in text.splitlines() if "Checksum=" in line])
    if sums[0] != sums[1]:
        raise RuntimeError(f"{b} differs from {a}: checksums {sums[1]} vs {sums[0]}")
    return "files differ, pixel checksums equal"


def main():
    ap = argparse.ArgumentParser(prog="bench.sh tail", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=16384, help="raster side (default 16384)")
    ap.add_argument("--factor", type=int, default=8, help="F (default 8)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each (default 3)")
    ap.add_argument("--work-dir", type=Path, default=REPO / "target" / "bench")
    ap.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release")
    ap.add_argument("--python", help="accepted for bench.sh targets' command line; unused")
    a = ap.parse_args()

    coord = a.bin_dir / "coordinator"
    inputs = a.work_dir / "inputs"
    outs = a.work_dir / "tail"
    inputs.mkdir(parents=True, exist_ok=True)
    outs.mkdir(parents=True, exist_ok=True)
    F = str(a.factor)
    base = inputs / f"synth_{a.size}x{a.size}_seed1.tif"
    if not base.exists():
        log(f"making {base}")
        tmp = base.with_name(base.name + ".partial.tif")
        run([coord, "-q", "synth", tmp, "--width", str(a.size), "--height", str(a.size), "--seed", "1", "--overwrite"])
        tmp.replace(base)
    _, plan = run([coord, "plan", base, "--factor", F, "--json"])
    last = json.loads(plan)["chunks"] - 1

    def ours(name, *extra):
        return [coord, "-q", "resample", base, outs / f"{name}.tif", "--factor", F, "--overwrite",
                "--report", outs / f"{name}.json", *extra]

    fault = ["--inject-fault", f"hang:{last}:1"]
    methods = {
        "clean": ours("clean"),
        "hung": ours("hung", *fault),
        "hung-off": ours("hung-off", *fault, "--speculation", "off"),
    }
    times = {m: [] for m in methods}
    tails = {m: [] for m in methods if m != "clean"}
    checks = set()
    for r in range(a.repeats):
        for m, cmd in methods.items():
            warm(base)
            wall, _ = run(cmd)
            times[m].append(wall)
            if m in tails:
                tails[m].append(tail_of(outs / f"{m}.json", last))
                checks.add(f"{m}: {same_output(outs / 'clean.tif', outs / f'{m}.tif')}")
            log(f"repeat {r + 1}/{a.repeats} {m}: {wall:.2f} s")
    med = {m: statistics.median(v) for m, v in times.items()}
    tail_med = {m: statistics.median(t[0] for t in v) for m, v in tails.items()}

    lines = [
        f"Raster {a.size}² Float32 (coordinator synth), F = {a.factor}, default options, "
        f"hang injected into the last chunk ({last}) on its first attempt, median of {a.repeats}.",
        "",
        "| method | median wall (s) | runs | after the other chunks (s) | last chunk won by |",
        "|---|---:|---|---:|---|",
    ]
    for m in methods:
        won = "" if m == "clean" else ", ".join(
            f"attempt {n}{' (speculative)' if s else ''}" for _, n, s in tails[m])
        after = "" if m == "clean" else f"{tail_med[m]:.2f}"
        lines.append(f"| {m} | {med[m]:.2f} | {', '.join(f'{t:.2f}' for t in times[m])} | {after} | {won} |")
    verdict = "PASS" if tail_med["hung"] <= 2.0 else "MISS"
    lines += ["", f"Target: the hung run ends <= 2 s after the other chunks finish: {tail_med['hung']:.2f} s, {verdict}.",
              f"hung / clean: {med['hung'] / med['clean']:.2f}x; hung-off / clean: {med['hung-off'] / med['clean']:.2f}x.",
              "Checks: " + "; ".join(sorted(checks))]
    text = "\n".join(lines) + "\n"
    print(text)
    (a.work_dir / "tail.md").write_text(text)
    (a.work_dir / "tail.json").write_text(json.dumps(
        {"times": times, "median": med, "tails": tails, "checks": sorted(checks), "last_chunk": last,
         "commands": {k: [str(x) for x in v] for k, v in methods.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        sys.stderr.write(f"bench.sh tail: error: {e}\n")
        sys.exit(1)
