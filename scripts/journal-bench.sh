#!/usr/bin/env bash
# The chunk journal's cost and the merge's time and memory (README, "Scale on paper"): a
# release build, a 16384² Float32 raster (1 GiB of pixels), F = 8 and F = 2. Minutes.
# Usage: bash scripts/journal-bench.sh [DIR]   (default target/journal-bench; the raster is kept)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins -q
bin=$PWD/target/release/coordinator
dir=${1:-target/journal-bench}
mkdir -p "$dir"
cd "$dir"
[ -f s16.tif ] || "$bin" -q synth s16.tif --width 16384 --height 16384
rm -rf o.tif r.json m8.tif m8.tif.shards m2.tif m2.tif.shards
"$bin" -q --workers 1 resample s16.tif o.tif -f 8 --report r.json
python3 - <<'PY'
import json
r = json.load(open("r.json"))
j, t = r["journal"], r["totals"]
print(f"whole run, F=8, 1 worker: {t['wall_ms'] / 1000:.2f} s; journal {j['appended_chunks']} records, "
      f"{j['appended_bytes'] / 1e6:.1f} MB, {j['append_ms']:.0f} ms appending and syncing "
      f"({100 * j['append_ms'] / t['wall_ms']:.1f} % of the wall time)")
PY
for f in 8 2; do
  for i in 0 1; do
    /usr/bin/time -f "shard $i/2, F=$f: %e s, %M KiB peak RSS" \
      "$bin" -q --workers 2 resample s16.tif "m$f.tif" -f "$f" --shard "$i/2"
  done
  echo "journals, F=$f: $(du -sh "m$f.tif.shards" | cut -f1)"
  /usr/bin/time -f "merge, F=$f: %e s wall, %U s user, %M KiB peak RSS" "$bin" -q merge "m$f.tif"
done
