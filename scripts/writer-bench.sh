#!/usr/bin/env bash
# The one writer alone (`coordinator bench-writer`: synthetic finished chunks into the real
# GeoTIFF sink), with GDAL's compression threads and without; then the coordinator's peak RSS
# on a raster and on one twice as wide (whole-tile chunks: it must stay flat, <= 1.05x).
# Usage: scripts/writer-bench.sh [SIDE]   (default 8192: SIDE x SIDE and 2*SIDE x SIDE rasters)
set -euo pipefail
cd "$(dirname "$0")/.."
side=${1:-8192}
cargo build --release --bins -q
bin=target/release
mkdir -p target/bench/inputs target/bench/out
echo "== the writer alone: F = 8, Float64 output, 16 MiB chunks of Float32 input"
"$bin/coordinator" bench-writer target/bench/out/bench-writer.tif --overwrite
"$bin/coordinator" bench-writer target/bench/out/bench-writer.tif --overwrite --co NUM_THREADS=1
echo "== coordinator peak RSS against the raster's width: F = 8, 2 workers"
for w in "$side" $((2 * side)); do
  f="target/bench/inputs/synth_${w}x${side}_seed1.tif"
  [ -f "$f" ] || "$bin/coordinator" -q synth "$f" --width "$w" --height "$side" --seed 1
  "$bin/coordinator" -q --workers 2 resample "$f" "target/bench/out/width-$w.tif" -f 8 --overwrite \
    --report "target/bench/out/width-$w.json"
done
python3 - "target/bench/out/width-$side.json" "target/bench/out/width-$((2 * side)).json" <<'PY'
import json, sys
mib = 1 << 20
rs = [json.load(open(p)) for p in sys.argv[1:3]]
for r in rs:
    p, t = r["plan"], r["totals"]
    print(f"{p['width']}x{p['height']}: chunks {p['chunk_width']}x{p['chunk_height']}, "
          f"coordinator peak RSS {t['coordinator_peak_rss_bytes']/mib:.1f} MiB, in process {t['done_in_process']}")
a, b = (r["totals"]["coordinator_peak_rss_bytes"] for r in rs)
print(f"coordinator peak RSS, 2x the width: {b/a:.3f}x (target <= 1.05)")
PY
