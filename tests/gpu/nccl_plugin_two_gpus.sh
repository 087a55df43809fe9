#!/usr/bin/env bash
# NCCL's network path through the ciuic plugin with one GPU per rank (a 2-GPU machine):
# NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 leave NCCL no way between the GPUs but the net
# plugin. Runs nccl-tests both as one process (-g 2) and as two processes (mpirun -np 2,
# -g 1), with NCCL_ALGO=Ring and Tree, and in the same call NCCL's Socket transport
# (default and 4 threads x 4 sockets) and NVLink for the speed comparison.
#
#   NCCL_TESTS_BUILD=/path/to/nccl-tests/build tests/gpu/nccl_plugin_two_gpus.sh [out-dir]
#
#   PHASES="sweep speed variants mpi" (default all), SWEEP_SIZES, SPEED_SIZES, CIUIC_ENV="K=V ..."
# nccl-tests must be built with MPI=1 (it then runs as one process too). Exits non-zero if
# a run fails, reports a wrong result, or did not go through the plugin.
set -u
: "${NCCL_TESTS_BUILD:?set NCCL_TESTS_BUILD to a built nccl-tests build/ directory (MPI=1)}"
PLUGIN_DIR=$(cd "${PLUGIN_DIR:-build/plugins/nccl}" && pwd)
OUT=${1:-${OUT:-/tmp/nccl-plugin-2gpu}}
PHASES=${PHASES:-"sweep speed variants mpi"}
SWEEP_SIZES=${SWEEP_SIZES:-"-b 8 -e 1G -f 4"}
SPEED_SIZES=${SPEED_SIZES:-"-b 128M -e 1G -f 8"}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export LD_LIBRARY_PATH="$PLUGIN_DIR:${LD_LIBRARY_PATH:-}"
NET_ONLY="NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1"
CIUIC="NCCL_NET_PLUGIN=ciuic NCCL_NET=ciuic CIUIC_SOCKET_IFNAME=lo ${CIUIC_ENV:-}"
SOCKET="NCCL_NET_PLUGIN=none NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo"
SOCKET4X4="$SOCKET NCCL_SOCKET_NTHREADS=4 NCCL_NSOCKS_PERTHREAD=4"
status=0

# run <label> <g2|np2> <test> <sizes> <iters> [NAME=value ...]
run() {
  local label=$1 mode=$2 test=$3 sizes=$4 iters=$5
  shift 5
  local log="$OUT/$label-$mode-$test.log" rc
  if [ "$mode" = g2 ]; then
    env NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET "$@" timeout 400 \
      "$NCCL_TESTS_BUILD/$test" -g 2 $sizes -c 1 $iters >"$log" 2>&1
    rc=$?
  else
    local xs=(-x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH -x NCCL_DEBUG=INFO -x NCCL_DEBUG_SUBSYS=INIT,NET) kv
    for kv in "$@"; do xs+=(-x "$kv"); done
    timeout 400 mpirun --allow-run-as-root --oversubscribe -np 2 --bind-to none "${xs[@]}" \
      "$NCCL_TESTS_BUILD/$test" -g 1 $sizes -c 1 $iters >"$log" 2>&1
    rc=$?
  fi
  local via
  via=$(grep -o "via NET/[A-Za-z0-9_]*\|via P2P/[A-Za-z0-9_]*" "$log" | sort | uniq -c | tr '\n' ' ')
  local channels
  channels=$(grep -m1 -o "Channel 00/[0-9]*" "$log" | sed 's|.*/||')
  echo "=== $label $mode $test (exit $rc; $via; ${channels:-?} channels)"
  grep -E "^ +[0-9]+ |Avg bus|Out of bounds" "$log"
  if [ $rc -ne 0 ] || grep -qE "Out of bounds values : [1-9]" "$log"; then status=1; echo "!!! failed"; fi
  case $label in ciuic*) grep -q "via NET/ciuic" "$log" || { echo "!!! not through the plugin"; status=1; } ;; esac
}

TESTS="all_reduce_perf all_gather_perf reduce_scatter_perf alltoall_perf sendrecv_perf"
for phase in $PHASES; do
  case $phase in
    sweep)  # correctness at every size, both algorithms, one process
      for t in $TESTS; do
        run ciuic-Ring g2 "$t" "$SWEEP_SIZES" "-n 2 -w 1" $NET_ONLY $CIUIC NCCL_ALGO=Ring
      done
      # NCCL's Tree serves all-reduce only.
      run ciuic-Tree g2 all_reduce_perf "$SWEEP_SIZES" "-n 2 -w 1" $NET_ONLY $CIUIC NCCL_ALGO=Tree ;;
    speed)  # the plugin beside Socket, Socket 4x4 and NVLink in one call
      for t in all_reduce_perf all_gather_perf; do
        run ciuic g2 "$t" "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $CIUIC
        run socket g2 "$t" "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $SOCKET
        run socket4x4 g2 "$t" "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $SOCKET4X4
        run nvlink g2 "$t" "$SPEED_SIZES" "-n 10 -w 3" NCCL_NET_PLUGIN=none
      done
      run ciuic-8x7 g2 all_reduce_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $CIUIC \
        CIUIC_TCP_SOCKETS=8 CIUIC_TCP_THREADS=7
      run ciuic-small g2 all_reduce_perf "-b 8 -e 64K -f 8" "-n 50 -w 10" $NET_ONLY $CIUIC
      run socket-small g2 all_reduce_perf "-b 8 -e 64K -f 8" "-n 50 -w 10" $NET_ONLY $SOCKET ;;
    variants)  # I/O settings of the plugin beside Socket and Socket 4x4, one call
      run ciuic g2 all_reduce_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $CIUIC
      run ciuic-200G g2 all_reduce_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $CIUIC \
        CIUIC_NET_SPEED_MBPS=200000
      run ciuic-8x7 g2 all_reduce_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $CIUIC \
        CIUIC_TCP_SOCKETS=8 CIUIC_TCP_THREADS=7
      run ciuic g2 all_gather_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $CIUIC
      run socket g2 all_reduce_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $SOCKET
      run socket4x4 g2 all_reduce_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $SOCKET4X4
      run socket4x4 g2 all_gather_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $SOCKET4X4
      run ciuic-small g2 all_reduce_perf "-b 8 -e 64K -f 8" "-n 50 -w 10" $NET_ONLY $CIUIC
      run socket-small g2 all_reduce_perf "-b 8 -e 64K -f 8" "-n 50 -w 10" $NET_ONLY $SOCKET ;;
    channels)  # what bounds the network path: NCCL's channel count, or the transport
      for extra in "" NCCL_MIN_NCHANNELS=4 NCCL_MIN_NCHANNELS=8 CIUIC_NET_SPEED_MBPS=100000 \
                   CIUIC_NET_SPEED_MBPS=400000; do
        run "ciuic${extra:+-$extra}" g2 all_reduce_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $CIUIC $extra
      done
      run socket4x4 g2 all_reduce_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY $SOCKET4X4
      run socket4x4-NCCL_MIN_NCHANNELS=4 g2 all_reduce_perf "$SPEED_SIZES" "-n 10 -w 3" $NET_ONLY \
        $SOCKET4X4 NCCL_MIN_NCHANNELS=4 ;;
    mpi)  # two processes, one GPU each
      for t in $TESTS; do
        run ciuic np2 "$t" "${MPI_SIZES:-"-b 8 -e 1G -f 16"}" "-n 2 -w 1" $NET_ONLY $CIUIC
      done ;;
  esac
done
exit $status
