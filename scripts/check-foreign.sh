#!/usr/bin/env bash
# Checks the coordinator from outside the project: rasters written by rasterio (not by us),
# resampled by the pool and in process, compared with an independent numpy reference
# (values within 1e-6 relative, same nodata mask, geotransform and CRS).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${BLOCKSUM_PYTHON:-python3}
bin=${BLOCKSUM_BIN_DIR:-target/debug}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_case() {
  local name=$1 factor=$2 agg=$3; shift 3
  "$py" scripts/py/make_raster.py "$work/$name.tif" "$@"
  "$py" scripts/py/reference.py "$work/$name.tif" "$work/$name.ref.tif" --factor "$factor" --agg "$agg"
  "$bin/coordinator" -q --workers 2 resample "$work/$name.tif" "$work/$name.pool.tif" --factor "$factor" --agg "$agg" --chunk-mib 0.25
  "$bin/coordinator" -q resample "$work/$name.tif" "$work/$name.inproc.tif" --factor "$factor" --agg "$agg" --in-process --chunk-mib 0.25
  echo -n "$name (F=$factor, $agg) pool vs reference: "
  "$py" scripts/py/compare.py "$work/$name.pool.tif" "$work/$name.ref.tif" --rtol 1e-6
  echo -n "$name (F=$factor, $agg) pool vs in-process: "
  "$py" scripts/py/compare.py "$work/$name.pool.tif" "$work/$name.inproc.tif" --rtol 0
}

run_case f32 8 sum --width 1999 --height 1037 --dtype float32 --nodata-frac 0.3 --seed 7
run_case f32nan 7 mean --width 1203 --height 901 --dtype float32 --nodata-frac 0.3 --nan-frac 0.05 --seed 8
run_case i16 5 sum --width 777 --height 555 --dtype int16 --bands 3 --nodata-frac 0.3 --seed 9
run_case u16striped 4 max --width 640 --height 481 --dtype uint16 --striped --nodata-frac 0.2 --seed 10
run_case f64 9 min --width 500 --height 700 --dtype float64 --nodata-frac 0.3 --seed 11
run_case u8 6 count --width 333 --height 222 --dtype uint8 --nodata-frac 0.3 --seed 12
run_case i32 3 sum --width 257 --height 129 --dtype int32 --nodata-frac 0.3 --seed 13
run_case u32 10 mean --width 401 --height 399 --dtype uint32 --bands 2 --nodata-frac 0.3 --seed 14
echo "foreign rasters: all cases agree"
