#!/usr/bin/env bash
# Runs the whole test suite of a ./build made by scripts/setup.sh, in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(( $(nproc) > 1 ? $(nproc) : 2 ))
ctest --test-dir build -j "$jobs" --output-on-failure --timeout 900 "$@"
