#!/usr/bin/env bash
# Sets up what is missing, builds, synthesizes a demo raster (Float32, 12288 x 12288,
# 576 MiB of pixels, DEFLATE), resamples it by block-sum (F = 8) through the worker pool,
# and prints where the output and the report are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins

out=${DEMO_DIR:-demo-out}
size=${DEMO_SIZE:-12288}
mkdir -p "$out"
bin=target/release
if [ ! -f "$out/demo.tif" ]; then
  "$bin/coordinator" synth "$out/demo.tif" --width "$size" --height "$size" --seed 1
fi
"$bin/coordinator" plan "$out/demo.tif" --factor 8
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -f 'demo: wall %e s, peak RSS %M KiB (the coordinator, or its largest worker)')
"${timer[@]}" "$bin/coordinator" resample "$out/demo.tif" "$out/demo-sum8.tif" --factor 8 \
  --overwrite --report "$out/demo-report.json"
echo
echo "output: $out/demo-sum8.tif"
echo "report: $out/demo-report.json"
echo "try:    gdalinfo -stats $out/demo-sum8.tif"
