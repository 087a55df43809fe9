#!/bin/bash
# Inside the rdma-vm guest: the collectives suite (tests/integration/collectives_test)
# with CIUIC_TRANSPORT=ibverbs over rxe0: every collective at 2, 3 and 4 ranks, results
# checked element by element against the reference. Ranks are threads of one process,
# each with its own queue pairs on rxe0. Emulated RDMA is slow (every message costs
# milliseconds under TCG), so the cases are float32 (every op, counts 0, 1, 7, 1023 and
# 64K+3: odd splits over the ranks) up to 256 KiB (4 pipelined chunks of 64 KiB) instead
# of every datatype up to 1 MiB. CIUIC_TEST_DATATYPES / CIUIC_TEST_LARGE_BYTES widen it.
# Usage: collectives.sh BUILD_DIR [GTEST_FILTER]
set -uo pipefail
build=$1
filter=${2:-}
if [ -z "$filter" ]; then
  for c in allreduce reduce_scatter reduce allgather broadcast alltoall; do
    # The "_shm" cases: with CIUIC_TRANSPORT forced there is no local transport, so every
    # byte of them crosses ibverbs.
    for n in 2 3 4; do filter+="*/${c}_${n}ranks_shm:"; done
  done
fi
export CIUIC_TRANSPORT=ibverbs CIUIC_IB_HCA=rxe0 CIUIC_SOCKET_IFNAME=eth0
export CIUIC_TEST_DATATYPES=${CIUIC_TEST_DATATYPES:-float32} CIUIC_TEST_LARGE_BYTES=${CIUIC_TEST_LARGE_BYTES:-262144}
# A filter that matches nothing would pass with nothing run (test names change).
cases=$("$build/tests/collectives_test" --gtest_filter="$filter" --gtest_list_tests | grep -c '^  ')
[ "$cases" -gt 0 ] || { echo "FAIL: the filter $filter matches no test of collectives_test"; exit 1; }
echo "collectives over ibverbs: $cases cases"
exec "$build/tests/collectives_test" --gtest_filter="$filter" --gtest_print_time=1 --gtest_color=no
