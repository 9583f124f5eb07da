#!/usr/bin/env bash
# Build the release binaries, then run the benchmark: scripts/bench.sh [bench.py options]
# (see scripts/BENCH.md or scripts/bench.sh --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
(cd "$ROOT" && cargo build --release --bins && cargo build --release -p blocksum-worker --example decode_floor)
exec python3 "$ROOT/scripts/bench.py" "$@"
