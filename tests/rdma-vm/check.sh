#!/usr/bin/env bash
# One CTest entry of the rdma-vm label: boots the guest once and runs one check script
# of tests/rdma-vm/checks/ inside it. Skips (77) before booting when what the check
# exercises is not built, with the reason on one line.
#   tests/rdma-vm/check.sh BUILD_DIR CHECK
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "$1" && pwd)
check=$2
. "$here/checks/lib.sh"

needs_ibverbs() {
  [ -x "$build/perftests/ciuic-perf" ] || { echo "rdma-vm: SKIPPED: $check needs $build/perftests/ciuic-perf"; exit 77; }
  ciuic_has_ibverbs "$build" ||
    { echo "rdma-vm: SKIPPED: $check: this build has no ibverbs transport (ciuic-perf --print-config has no CIUIC_IB_HCA)"; exit 77; }
}
# Per check: VM shape, the command's time limit, what must be built.
case "$check" in
  perftest) nodes=2 timeout=150 ;;
  ibverbs_unit)
    needs_ibverbs
    compgen -G "$build/tests/ibverbs_*_test" > /dev/null ||
      { echo "rdma-vm: SKIPPED: no $build/tests/ibverbs_*_test binaries built"; exit 77; }
    nodes=1 timeout=360 ;;
  collectives) needs_ibverbs; nodes=1 timeout=400 ;;
  two_nodes) needs_ibverbs; nodes=2 timeout=240 ;;
  peer_death)
    needs_ibverbs
    [ -x "$build/tests/fault_rank" ] || { echo "rdma-vm: SKIPPED: $build/tests/fault_rank is not built"; exit 77; }
    nodes=1 timeout=240 ;;
  nccl_plugin)
    needs_ibverbs
    [ -x "$build/tests/nccl_plugin_test" ] || { echo "rdma-vm: SKIPPED: $build/tests/nccl_plugin_test is not built"; exit 77; }
    nodes=1 timeout=180 ;;
  netns_faults)
    [ -x "$build/tests/fault_rank" ] || { echo "rdma-vm: SKIPPED: $build/tests/fault_rank is not built"; exit 77; }
    nodes=1 timeout=400 ;;
  *) echo "check.sh: unknown check $check" >&2; exit 2 ;;
esac
exec "$here/run.sh" --nodes "$nodes" --timeout "$timeout" -- "$here/checks/$check.sh" "$build"
