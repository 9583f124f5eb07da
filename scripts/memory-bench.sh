#!/usr/bin/env bash
# Memory benchmark: the coordinator's peak RSS on a raster and on one 4x larger (it must stay
# flat: the slot ring bounds it), and each worker's peak RSS and private memory under a
# per-worker limit. Usage: scripts/memory-bench.sh [SMALL_SIDE] [LIMIT]  (default 8192 512MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
small=${1:-8192}
limit=${2:-512MiB}
large=$((small * 2))
cargo build --release --bins -q
bin=target/release
dir=target/bench/inputs
mkdir -p "$dir" target/bench/out
for side in "$small" "$large"; do
  f="$dir/synth_${side}x${side}_seed1.tif"
  [ -f "$f" ] || "$bin/coordinator" -q synth "$f" --width "$side" --height "$side" --seed 1
done
printf '%-12s %-10s %14s %14s %16s %14s\n' raster pixels wall_s coord_rss_MiB worker_rss_MiB private_MiB
for side in "$small" "$large"; do
  f="$dir/synth_${side}x${side}_seed1.tif"
  rep="target/bench/out/mem-$side.json"
  "$bin/coordinator" -q --workers 2 resample "$f" "target/bench/out/mem-$side.tif" --factor 8 --overwrite \
    --memory-limit-per-worker "$limit" --report "$rep"
  python3 - "$rep" "$side" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); side = sys.argv[2]; t = r["totals"]; mib = 1 << 20
ws = r["workers"]
print(f"{side+'^2':<12} {int(side)**2:<10} {t['wall_ms']/1000:>14.2f} {t['coordinator_peak_rss_bytes']/mib:>14.1f} "
      f"{max(w['peak_rss_bytes'] for w in ws)/mib:>16.1f} {max(w['peak_private_bytes'] for w in ws)/mib:>14.1f}")
PY
done
python3 - "target/bench/out/mem-$small.json" "target/bench/out/mem-$large.json" "$limit" <<'PY'
import json, sys
a, b = (json.load(open(p))["totals"]["coordinator_peak_rss_bytes"] for p in sys.argv[1:3])
print(f"coordinator peak RSS, 4x the pixels: {b/a:.2f}x (target <= 1.10); worker limit {sys.argv[3]} (worker RSS includes the shared slot pages it touched; private = RssAnon)")
PY
