#!/usr/bin/env bash
# Small and mid sizes through the plugin on a one-GPU machine (two ranks under MPS that
# NCCL takes for two hosts): all_reduce_perf 8 B .. 1 MiB, 300 iterations, with the
# plugin's defaults and with the settings that could explain a gap to NCCL's Socket
# transport (I/O threads off, the speed NCCL sizes its channels from, one socket, one
# channel), each beside Socket and Socket 4 x 4 in the same call.
#
#   NCCL_TESTS_BUILD=/path/to/nccl-tests/build tests/gpu/nccl_plugin_small_sizes.sh [out-dir]
#
# Needs what nccl_plugin_two_hosts.sh needs (nccl-tests built with MPI=1, the plugin in
# build/plugins/nccl). Exits non-zero if any run failed or reported a wrong result.
set -u
OUT=${1:-/tmp/nccl-plugin-small}
export SIZES=${SIZES:-"-b 8 -e 1M -f 4"} ITERS=${ITERS:-"-n 300 -w 30"} TESTS=all_reduce_perf
status=0
for settings in "" "CIUIC_TCP_THREADS=0" "CIUIC_NET_SPEED_MBPS=10000" \
                "CIUIC_TCP_SOCKETS=1 CIUIC_TCP_THREADS=0" "NCCL_MAX_NCHANNELS=1"; do
  echo "##### plugin with: ${settings:-its defaults}"
  CIUIC_ENV="$settings" "$(dirname "$0")/nccl_plugin_two_hosts.sh" "$OUT/${settings// /_}" || status=1
done
exit $status
