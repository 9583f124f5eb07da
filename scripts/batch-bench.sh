#!/usr/bin/env bash
# Batch benchmark: N rasters through one pool (`resample ... --out-dir`) against N single runs
# one after the other (a pool spawned, set up and stopped per file), same workers, same
# options. Prints wall time of each and the workers spawned by the batch.
# Usage: scripts/batch-bench.sh [FILES] [SIDE] [WORKERS]  (default 20 1024 2)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-20}
side=${2:-1024}
workers=${3:-2}
cargo build --release --bins -q
bin=target/release
dir=target/bench/batch
rm -rf "$dir/out" "$dir/single"
mkdir -p "$dir/in" "$dir/out" "$dir/single"
for i in $(seq 1 "$files"); do
  f="$dir/in/r${i}_${side}.tif"
  [ -f "$f" ] || "$bin/coordinator" -q synth "$f" --width "$side" --height "$side" --seed "$i"
done
inputs=$(seq 1 "$files" | sed "s|.*|$dir/in/r&_${side}.tif|")
t0=$(date +%s.%N)
for f in $inputs; do
  "$bin/coordinator" -q --workers "$workers" resample "$f" "$dir/single/$(basename "$f")" --factor 8
done
t1=$(date +%s.%N)
# shellcheck disable=SC2086
"$bin/coordinator" -q --workers "$workers" resample $inputs --out-dir "$dir/out" --factor 8 --report "$dir/batch.json" --overwrite
t2=$(date +%s.%N)
python3 - "$dir/batch.json" "$t0" "$t1" "$t2" "$files" "$side" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t0, t1, t2 = map(float, sys.argv[2:5])
print(f"{sys.argv[5]} rasters of {sys.argv[6]}^2 Float32, factor 8")
print(f"single runs, one after the other: {t1 - t0:7.2f} s")
print(f"one batch on one pool:            {t2 - t1:7.2f} s  ({len(r['workers'])} worker processes spawned, "
      f"{r['opened_inputs']} input opens, {r['totals']['chunks']} chunks)")
PY
