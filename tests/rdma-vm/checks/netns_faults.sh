#!/bin/bash
# Inside the rdma-vm guest: the network-namespace fault case that needs a stock kernel —
# 10 ms of netem delay on one host's link (the development machine's kernel has no netem)
# — over TCP between four namespaces on a bridge: results must stay correct. It must
# really run: a "skipped" note (no netem qdisc) is a failure here. (The other cases run on
# the host, where emulation does not stretch their short deadlines.)
# Usage: netns_faults.sh BUILD_DIR
set -uo pipefail
build=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
out=$(python3 "$repo/tests/fault/netns_faults.py" --build "$build" --cases delay 2>&1)
rc=$?
echo "$out"
if [ $rc = 77 ] || grep -qi "skip" <<< "$out"; then
  echo "FAIL: a case was skipped inside the guest (its kernel should have netem and bridges)"
  exit 1
fi
exit $rc
