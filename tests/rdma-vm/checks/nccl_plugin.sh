#!/bin/bash
# Inside the rdma-vm guest: the NCCL plugin and its tuner, played as NCCL plays them, over
# the ibverbs transport on rxe0. CIUIC_NET_TRANSPORT=ibverbs is explicit, so no fallback to
# TCP can pass for it. Only the transport-neutral scenarios run: the others check TCP's
# settings, send from unregistered memory (TCP allows it, ibverbs asks for a memory handle,
# which NCCL always passes), or move more than the emulated link carries in the check's time.
# Usage: nccl_plugin.sh BUILD_DIR
set -uo pipefail
build=$1
for bin in nccl_plugin_test nccl_tuner_test; do
  [ -x "$build/tests/$bin" ] || { echo "no $build/tests/$bin"; exit 77; }
done
export CIUIC_NET_TRANSPORT=ibverbs CIUIC_IB_HCA=${CIUIC_IB_HCA:-rxe0} CIUIC_TIMEOUT_MS=${CIUIC_TIMEOUT_MS:-60000}
filter='NcclPluginTest.GroupedTransfersOverTheConfiguredTransport'
filter+=':NcclPluginTest.ContextsAreCountedAndTheLastFinalizeClosesTheTransport'
filter+=':NcclPluginTest.RefusesGpuMemoryBadHandlesAndForeignPointers'
failed=0
for run in "nccl_plugin_test --gtest_filter=$filter" "nccl_tuner_test"; do
  set -- $run
  log=$(mktemp)
  "$build/tests/$1" "${@:2}" --gtest_brief=1 > "$log" 2>&1
  rc=$?
  summary=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]' "$log" | tr '\n' ' ')
  if [ $rc -ne 0 ] || ! grep -q '^\[  PASSED  \]' "$log"; then
    echo "FAIL $1 (exit $rc): $summary"; cat "$log"; failed=1
  else
    echo "ok   $1 over ibverbs: $summary"
  fi
  rm -f "$log"
done
exit $failed
