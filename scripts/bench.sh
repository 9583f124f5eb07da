#!/usr/bin/env bash
# Build the release binaries, then run a benchmark (see scripts/BENCH.md):
#   scripts/bench.sh [bench.py options]     ours vs the decode floors, the seed design, gdalwarp
#   scripts/bench.sh targets [options]      issue 10's decode targets and issue 20's start-up cases
#                                           (bench_targets.py), then the tail case (bench_tail.py)
#   scripts/bench.sh targets --only startup the start-up cases alone: 256² with 2 workers vs in
#                                           process, --workers 50 vs --workers 2 (BLOCKSUM_SPAWN=exec
#                                           for the same without the fork server)
#   scripts/bench.sh tail [options]         a hang in the last chunk against a clean run (bench_tail.py)
#   scripts/bench.sh grid [options]         a target grid against --factor and gdalwarp (bench_grid.py)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
(cd "$ROOT" && cargo build --release --bins && cargo build --release -p blocksum-worker --example decode_floor \
  && cargo build --release -p blocksum-tiffdec --example inflate_floor)
if [ "${1:-}" = tail ]; then
  shift
  exec python3 "$ROOT/scripts/bench_tail.py" "$@"
fi
if [ "${1:-}" = targets ] || [ "${1:-}" = grid ]; then
  what="$1"
  shift
  # The start-up cases alone need neither rasterio nor numpy.
  case " $* " in *" --only startup "*) exec python3 "$ROOT/scripts/bench_targets.py" "$@" ;; esac
  # rasterio and numpy in a private virtualenv, as scripts/test.sh makes it.
  venv="$ROOT/target/pyenv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check rasterio numpy
  fi
  if [ "$what" = grid ]; then
    exec python3 "$ROOT/scripts/bench_grid.py" --python "$venv/bin/python" "$@"
  fi
  python3 "$ROOT/scripts/bench_targets.py" --python "$venv/bin/python" "$@"
  exec python3 "$ROOT/scripts/bench_tail.py" "$@"
fi
exec python3 "$ROOT/scripts/bench.py" "$@"
