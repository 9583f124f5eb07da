#!/usr/bin/env bash
# Build the release binaries, then run a benchmark (see scripts/BENCH.md):
#   scripts/bench.sh [bench.py options]     ours vs the decode floors, the seed design, gdalwarp
#   scripts/bench.sh targets [options]      issue 10's decode targets in one run (bench_targets.py)
#   scripts/bench.sh grid [options]         a target grid against --factor and gdalwarp (bench_grid.py)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
(cd "$ROOT" && cargo build --release --bins && cargo build --release -p blocksum-worker --example decode_floor)
if [ "${1:-}" = targets ] || [ "${1:-}" = grid ]; then
  script="bench_targets.py"
  [ "$1" = grid ] && script="bench_grid.py"
  shift
  # rasterio and numpy in a private virtualenv, as scripts/test.sh makes it.
  venv="$ROOT/target/pyenv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check rasterio numpy
  fi
  exec python3 "$ROOT/scripts/$script" --python "$venv/bin/python" "$@"
fi
exec python3 "$ROOT/scripts/bench.py" "$@"
