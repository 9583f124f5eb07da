#!/usr/bin/env bash
# Sets up what is missing, then: format check, clippy with warnings denied, docs without
# warnings, every test
# (unit, property, end-to-end with the real binaries), and the Python reference checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
export PATH="$HOME/.cargo/bin:$PATH"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
# End-to-end tests find the binaries in target/debug; build them first.
cargo build --workspace --bins
mkdir -p target
# Tests that could not run their check append why here (under CI they fail instead).
rm -f target/debug/skipped-tests.log
cargo test --workspace 2>&1 | tee target/cargo-test.log

# The independent Python reference (rasterio + numpy), in a private virtualenv.
venv=target/pyenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check rasterio numpy
fi
"$venv/bin/python" scripts/py/test_reference.py
BLOCKSUM_PYTHON="$venv/bin/python" bash scripts/check-foreign.sh

# The Python package (python/): `pip install ./python` into a fresh virtualenv builds the
# release binaries (cargo, into this workspace's target/, so a rerun only relinks what
# changed; pip's own cache keeps the wheels it downloads), then its pytest tests.
pkgenv=target/pkgenv
rm -rf "$pkgenv" python/build
python3 -m venv "$pkgenv"
"$pkgenv/bin/pip" install -q --disable-pip-version-check ./python pytest rasterio numpy tqdm
rm -rf python/build
"$pkgenv/bin/python" -m pytest -p no:cacheprovider python/tests 2>&1 | tee target/pytest.log

# One closing line for everything above (cargo's own last lines are the doc-test runs).
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) == "passed;") p += $i; if ($(i+1) == "failed;") f += $i } }
     /^=+ .* in [0-9.]+s/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed,?$/) p += $(i-1); if ($i ~ /^failed,?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed", p, f }' target/cargo-test.log target/pytest.log
skipped=0
[ -f target/debug/skipped-tests.log ] && skipped=$(wc -l < target/debug/skipped-tests.log)
echo ", $skipped could not run their check"
[ "$skipped" -eq 0 ] || sed 's/^/  skipped: /' target/debug/skipped-tests.log
