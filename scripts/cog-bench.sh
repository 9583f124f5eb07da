#!/usr/bin/env bash
# What --of COG and --pyramid cost: the same resample written as a GTiff, as a COG (one more
# pass: GDAL's COG driver copies the staged GTiff), with the exact pyramid (one more read of
# the input per overview level for a floating-point sum; max levels are derived from the level
# below), and both. Wall time of the whole command, best of REPEATS.
# Usage: scripts/cog-bench.sh [SIDE] [FACTOR] [REPEATS]  (default 8192 4 3)
set -euo pipefail
cd "$(dirname "$0")/.."
side=${1:-8192}
factor=${2:-4}
repeats=${3:-3}
cargo build --release --bins -q
bin=target/release
dir=target/bench/inputs
out=target/bench/out
mkdir -p "$dir" "$out"
f="$dir/synth_${side}x${side}_seed1.tif"
[ -f "$f" ] || "$bin/coordinator" -q synth "$f" --width "$side" --height "$side" --seed 1
best() {
  python3 - "$repeats" "$bin/coordinator" -q --workers 2 resample "$f" "$out/cog-bench.tif" -f "$factor" --overwrite "$@" <<'PY'
import subprocess, sys, time
best = None
for _ in range(int(sys.argv[1])):
    t0 = time.monotonic()
    subprocess.run(sys.argv[2:], check=True)
    t = time.monotonic() - t0
    best = t if best is None else min(best, t)
print(f"{best:.2f}")
PY
}
printf '%-28s %8s %10s %s\n' run wall_s size_MiB overviews
for args in "" "--of COG" "--pyramid" "--of COG --pyramid" "--agg max" "--agg max --of COG --pyramid"; do
  # shellcheck disable=SC2086
  t=$(best $args)
  size=$(python3 -c "import os,sys; print(f'{os.path.getsize(sys.argv[1])/2**20:.1f}')" "$out/cog-bench.tif")
  ov=$(gdalinfo "$out/cog-bench.tif" | sed -n 's/^ *Overviews: //p' | head -1)
  printf '%-28s %8s %10s %s\n' "${args:-sum, GTiff}" "$t" "$size" "${ov:-none}"
done
