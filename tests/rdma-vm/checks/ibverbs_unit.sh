#!/bin/bash
# Inside the rdma-vm guest: the ibverbs transport's own tests (tests/unit/ibverbs_*_test)
# against rxe0. Outside the guest their device tests skip; here a device exists, so a test
# skipped for want of one is a failure.
# Usage: ibverbs_unit.sh BUILD_DIR
set -uo pipefail
build=$1
shopt -s nullglob
binaries=("$build"/tests/ibverbs_*_test)
[ ${#binaries[@]} -gt 0 ] || { echo "no $build/tests/ibverbs_*_test binaries"; exit 77; }
export CIUIC_IB_HCA=${CIUIC_IB_HCA:-rxe0} CIUIC_TIMEOUT_MS=${CIUIC_TIMEOUT_MS:-60000}
failed=0
for bin in "${binaries[@]}"; do
  log=$(mktemp)
  start=$(date +%s%N)
  "$bin" --gtest_brief=1 > "$log" 2>&1
  rc=$?
  secs=$(((($(date +%s%N) - start) / 100000000)))
  secs=$((secs / 10)).$((secs % 10))
  summary=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]' "$log" | tr '\n' ' ')
  if [ $rc -ne 0 ]; then
    echo "FAIL $(basename "$bin") (exit $rc, ${secs}s): $summary"; cat "$log"; failed=1
  elif grep -q 'no usable RDMA device' "$log"; then
    echo "FAIL $(basename "$bin"): skipped for want of a device, inside a guest that has rxe0"; cat "$log"; failed=1
  else
    echo "ok   $(basename "$bin") (${secs}s): $summary"
  fi
  rm -f "$log"
done
exit $failed
