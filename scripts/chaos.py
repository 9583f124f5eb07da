#!/usr/bin/env python3
"""Supervision measurements with the release binaries.

1. Restart latency: a run with `--inject-fault crash:K:1`; from the report, the time from
   the crashed worker's exit to its replacement being ready.
2. Chaos: a run in which a random worker is SIGKILLed every --interval seconds, against a
   clean run of the same job: wall times, restarts, and identical output.

Usage: scripts/chaos.py INPUT [--workers 2] [--factor 8] [--interval 0.3]
"""
import argparse, json, os, random, signal, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COORD = ROOT / "target" / "release" / "coordinator"


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        rest = stat[stat.rfind(")") + 2:].split()
        if comm == "worker" and int(rest[1]) == pid and rest[0] != "Z":
            out.append(int(d))
    return out


def run(args, extra, out, report, chaos=None):
    cmd = [str(COORD), "-q", "--workers", str(args.workers), "resample", args.input, out,
           "--factor", str(args.factor), "--overwrite", "--report", report] + extra
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    kills = 0
    rng = random.Random(7)
    while p.poll() is None:
        if chaos:
            time.sleep(chaos)
            ws = children(p.pid)
            if ws:
                try:
                    os.kill(rng.choice(ws), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
        else:
            time.sleep(0.01)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode()
    return p.returncode, wall, kills, json.load(open(report)), err


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--factor", type=int, default=8)
    ap.add_argument("--interval", type=float, default=0.3)
    ap.add_argument("--chunk-mib", default="2")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    ck = ["--chunk-mib", args.chunk_mib]

    rc, wall, _, rep, err = run(args, ck + ["--inject-fault", "crash:1:1"], f"{tmp}/crash.tif", f"{tmp}/crash.json")
    if rc != 0:
        sys.exit(f"chaos.py: crash run failed ({rc}): {err}")
    ws = rep["workers"]
    lat = []
    for w in ws:
        if w["cause"] and w["exited_ms"] is not None:
            nxt = [x for x in ws if x["worker"] == w["worker"] and x["incarnation"] == w["incarnation"] + 1]
            if nxt and nxt[0]["ready_ms"] is not None:
                lat.append(nxt[0]["ready_ms"] - w["exited_ms"])
    takeover = []
    for c in rep["chunks"]:
        a = c["attempts"]
        for x, y in zip(a, a[1:]):
            if x.get("failure"):
                takeover.append(y["started_ms"] - x["ended_ms"])
    print(f"restart latency (exit -> replacement process ready): {lat} ms")
    print(f"takeover latency (crash -> chunk running again, on a warm spare): {takeover} ms")

    rc, clean_wall, _, clean, err = run(args, ck, f"{tmp}/clean.tif", f"{tmp}/clean.json")
    if rc != 0:
        sys.exit(f"chaos.py: clean run failed ({rc}): {err}")
    rc, chaos_wall, kills, rep, err = run(args, ck + ["--max-attempts", "20"], f"{tmp}/chaos.tif", f"{tmp}/chaos.json",
                                          chaos=args.interval)
    t = rep["totals"]
    cmp = subprocess.run([sys.executable, str(ROOT / "scripts/py/compare.py"), f"{tmp}/clean.tif", f"{tmp}/chaos.tif",
                          "--rtol", "0"], capture_output=True, text=True)
    same = cmp.returncode == 0
    print(f"clean: {clean_wall:.2f} s, {clean['totals']['chunks']} chunks")
    print(f"chaos: {chaos_wall:.2f} s, exit {rc}, {kills} SIGKILLs sent, {t['restarts']} restarts, "
          f"done {t['done']} + in process {t['done_in_process']} of {t['chunks']}, quarantined {t['quarantined']}, "
          f"pixels identical to clean: {same}")
    sys.exit(0 if rc == 0 else 1)


if __name__ == "__main__":
    main()
