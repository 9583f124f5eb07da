#!/usr/bin/env bash
# Installs what the project needs on a Debian or Ubuntu machine, where missing:
# GDAL (library, headers, tools), pkg-config, a C toolchain, and Rust (rustup) if there is no cargo.
# `--tests` (what scripts/test.sh passes) adds what only the tests use: headless Chromium,
# GDAL's Python tools (the COG validator), a one-node Slurm and bzip2 (the decoder corpus); the demo
# does not need them.
set -euo pipefail
tests=false
[ "${1:-}" = "--tests" ] && tests=true

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
command -v gdal-config >/dev/null 2>&1 || need+=(libgdal-dev)
command -v gdalinfo >/dev/null 2>&1 || need+=(gdal-bin)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
[ -x /usr/bin/time ] || need+=(time)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if $tests; then
# The HTML report's test opens the page in a real headless browser.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# GDAL's COG validator (osgeo_utils.samples.validate_cloud_optimized_geotiff), used by tests/it/cog.rs.
[ -f /usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py ] || need+=(python3-gdal)
# A one-node Slurm for the sharding test (scripts/slurm/start.sh): Debian's packages.
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || need+=(slurmd)
command -v sbatch >/dev/null 2>&1 || need+=(slurm-client)
command -v munged >/dev/null 2>&1 || need+=(munge)
# The decoder corpus (scripts/corpus/fetch.sh) unpacks a .tar.bz2.
command -v bzip2 >/dev/null 2>&1 || need+=(bzip2)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    :
  else
    echo "setup: installing Rust with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
  fi
fi
