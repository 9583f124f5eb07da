#!/usr/bin/env bash
# The breaker for systematic failure against its targets (docs/supervision.md, "Systematic
# failure: the breaker", which holds the last results):
# - one always-crashing chunk (--inject-fault crash:4 of 8) on a 4096^2 raster ends within
#   2x a clean run plus 1 s;
# - a fault or a C kernel (examples/c-kernels/faulty.c) that crashes on every chunk (a
#   segfault, an abort, exit(0), an overflowed error buffer) ends with exit 6 in under 10 s;
# - a hanging kernel is stopped at the median's limit (here the 1 s floor) once the other
#   chunk finished, not at the start-of-run 60 s.
# Each run prints its wall time, exit code and the workers' deaths and timeouts (from the
# report).
# Usage: scripts/breaker-bench.sh [BIN_DIR]   (default: target/release, built first; pass
# another build's directory to measure it with the same runs)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
  bin=$1
else
  cargo build --release --bins -q
  bin=target/release
fi
c="$bin/coordinator"
out=target/bench/breaker
mkdir -p target/bench/inputs "$out"
in=target/bench/inputs/synth_4096x4096_seed1.tif
[ -f "$in" ] || "$c" -q synth "$in" --width 4096 --height 4096 --seed 1
striped=target/bench/inputs/synth_4096x4096_seed1_striped.tif
[ -f "$striped" ] || gdal_translate -q -co COMPRESS=DEFLATE "$in" "$striped"
small=target/bench/inputs/synth_512x256_seed1.tif
[ -f "$small" ] || "$c" -q synth "$small" --width 512 --height 256 --seed 1
cc -shared -fPIC -I include -o "$out/libfaulty.so" examples/c-kernels/faulty.c

# run LABEL ARGS...: one coordinator run with a report, a line of results.
run() {
  local label=$1
  shift
  local rep="$out/$label.json" start end rc=0
  rm -f "$rep"
  start=$(date +%s.%N)
  timeout 600 "$c" -q --workers 2 "$@" --overwrite --report "$rep" 2>"$out/$label.err" || rc=$?
  end=$(date +%s.%N)
  python3 - "$label" "$rc" "$start" "$end" "$rep" <<'PY'
import json, os, sys
label, rc, start, end, rep = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
deaths = "-"
if os.path.exists(rep):
    r = json.load(open(rep))
    t = r["totals"]
    deaths = f"{sum(t['deaths_by_cause'].values())} deaths, {t['splits']} splits"
    timeouts = [a["failure"]["after_ms"] for c in r["chunks"] for a in c["attempts"]
                if (a.get("failure") or {}).get("kind") == "timeout"]
    if timeouts:
        deaths += ", timeouts after " + ", ".join(f"{ms} ms" for ms in timeouts)
print(f"{label:<28} {end - start:7.2f} s  exit {rc:<3} {deaths}")
PY
}

for i in 1 2 3; do
  run "clean-$i" resample "$in" "$out/clean.tif" -f 4
  run "crash-one-chunk-$i" resample "$in" "$out/crash.tif" -f 4 --inject-fault crash:4
done
run "crash-every-chunk" resample "$in" "$out/all.tif" -f 4 --inject-fault 'crash:*'
run "kernel-segv-every-chunk" map "$striped" "$out/segv.tif" \
  --kernel-lib "$out/libfaulty.so" --kernel-arg crash_x=0
run "kernel-abort-every-chunk" map "$striped" "$out/abort.tif" \
  --kernel-lib "$out/libfaulty.so" --kernel-arg abort_x=0
run "kernel-exit0-every-chunk" map "$striped" "$out/exit0.tif" \
  --kernel-lib "$out/libfaulty.so" --kernel-arg exit_x=0
run "kernel-errflood-every-chunk" map "$striped" "$out/errflood.tif" \
  --kernel-lib "$out/libfaulty.so" --kernel-arg errflood_x=0
run "kernel-hang-one-of-two" map "$small" "$out/hang.tif" \
  --kernel-lib "$out/libfaulty.so" --kernel-arg hang_x=20 --chunk-mib 2 \
  --task-timeout-floor 1s --kill-grace 100ms --max-attempts 2
