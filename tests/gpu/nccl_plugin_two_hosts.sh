#!/usr/bin/env bash
# NCCL's network path through the ciuic plugin on a one-GPU machine: two ranks on GPU 0
# under MPS, each with its own NCCL_HOSTID, so NCCL takes them for two hosts and every
# byte between them crosses the net plugin. Runs nccl-tests with the plugin and, in the
# same call, with NCCL's own Socket transport (default and 4 threads x 4 sockets).
#
#   NCCL_TESTS_BUILD=/path/to/nccl-tests/build tests/gpu/nccl_plugin_two_hosts.sh [out-dir]
#
#   SIZES="-b 8 -e 512M -f 4", ITERS="-n 20 -w 5", TESTS="all_reduce_perf ..." (the plugin's
#   runs; Socket runs all-reduce only), CIUIC_ENV="K=V ..." (added to the plugin's runs),
#   BASELINES=0 (the plugin's runs alone, no Socket runs)
#
# nccl-tests must be built with MPI=1. The plugin is taken from $PLUGIN_DIR
# (default build/plugins/nccl). Prints each run's table; exits non-zero if a run fails,
# reports a wrong result, or did not go through the plugin.
set -u
: "${NCCL_TESTS_BUILD:?set NCCL_TESTS_BUILD to a built nccl-tests build/ directory (MPI=1)}"
PLUGIN_DIR=$(cd "${PLUGIN_DIR:-build/plugins/nccl}" && pwd)
OUT=${1:-${OUT:-/tmp/nccl-plugin-runs}}
SIZES=${SIZES:-"-b 8 -e 512M -f 4"}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
nvidia-cuda-mps-control -d 2>/dev/null || true
trap 'echo quit | nvidia-cuda-mps-control >/dev/null 2>&1 || true' EXIT

status=0
# run <label> <test> [NAME=value ...]
run() {
  local label=$1 test=$2
  shift 2
  local xs=(-x NCCL_TESTS_DEVICE=0 -x CUDA_MPS_PIPE_DIRECTORY -x NCCL_NVLS_ENABLE -x NCCL_DEBUG=INFO
            -x NCCL_DEBUG_SUBSYS=INIT,NET -x LD_LIBRARY_PATH="$PLUGIN_DIR:${LD_LIBRARY_PATH:-}")
  local kv
  for kv in "$@"; do xs+=(-x "$kv"); done
  local log="$OUT/$label-$test.log"
  timeout 300 mpirun --allow-run-as-root --oversubscribe -np 2 --bind-to none "${xs[@]}" \
    sh -c 'NCCL_HOSTID=host$OMPI_COMM_WORLD_RANK exec "$@"' sh \
    "$NCCL_TESTS_BUILD/$test" -g 1 $SIZES -c 1 ${ITERS:--n 20 -w 5} >"$log" 2>&1
  local rc=$?
  local via
  via=$(grep -o "via NET/[A-Za-z0-9_]*" "$log" | sort | uniq -c | tr '\n' ' ')
  echo "=== $label $test (exit $rc; $via)"
  grep -E "^ +[0-9]+ |Avg bus|Out of bounds" "$log"
  if [ $rc -ne 0 ] || grep -qE "Out of bounds values : [1-9]" "$log"; then status=1; fi
  case $label in ciuic*) grep -q "via NET/ciuic" "$log" || { echo "!!! not through the plugin"; status=1; } ;; esac
}

for t in ${TESTS:-all_reduce_perf all_gather_perf reduce_scatter_perf alltoall_perf sendrecv_perf}; do
  run ciuic "$t" NCCL_NET_PLUGIN=ciuic NCCL_NET=ciuic CIUIC_SOCKET_IFNAME=lo ${CIUIC_ENV:-}
done
[ "${BASELINES:-1}" = 0 ] && exit $status
run socket all_reduce_perf NCCL_NET_PLUGIN=none NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo
run socket4x4 all_reduce_perf NCCL_NET_PLUGIN=none NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo \
  NCCL_SOCKET_NTHREADS=4 NCCL_NSOCKS_PERTHREAD=4
exit $status
