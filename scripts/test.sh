#!/usr/bin/env bash
# Runs the whole test suite of a ./build made by scripts/setup.sh, in parallel, then the
# same code under AddressSanitizer + UBSan and ThreadSanitizer and the fuzzers
# (scripts/sanitize.sh, docs/reliability.md).
#
#   scripts/test.sh [--no-sanitizers] [ctest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
sanitizers=1
if [ "${1:-}" = "--no-sanitizers" ]; then
  sanitizers=0
  shift
fi
jobs=$(( $(nproc) > 1 ? $(nproc) : 2 ))
ctest --test-dir build -j "$jobs" --output-on-failure --timeout 900 "$@"
if [ "$sanitizers" = 1 ]; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-60} ./scripts/sanitize.sh asan tsan fuzz
fi
