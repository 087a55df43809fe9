#!/usr/bin/env bash
# Small and mid sizes through the plugin on a one-GPU machine (two ranks under MPS that
# NCCL takes for two hosts): all_reduce_perf 8 B .. 4 MiB, 200 iterations, with the
# plugin's defaults, with its tuner off, with the tuner's other channel share, and with
# I/O threads off; then the defaults again beside NCCL's Socket and Socket 4 x 4, all in
# one call (docs/nccl-plugin.md, "The tuner").
#
#   NCCL_TESTS_BUILD=/path/to/nccl-tests/build tests/gpu/nccl_plugin_small_sizes.sh [out-dir]
#
# Needs what nccl_plugin_two_hosts.sh needs (nccl-tests built with MPI=1, the plugin in
# build/plugins/nccl or $PLUGIN_DIR). Exits non-zero if any run failed or reported a wrong
# result.
set -u
OUT=${1:-/tmp/nccl-plugin-small}
export SIZES=${SIZES:-"-b 8 -e 4M -f 2"} ITERS=${ITERS:-"-n 200 -w 20"} TESTS=all_reduce_perf
status=0
for settings in "" "CIUIC_NCCL_TUNER=0" "CIUIC_NCCL_CHANNEL_BYTES=256K" "CIUIC_TCP_THREADS=0"; do
  echo "##### plugin with: ${settings:-its defaults}"
  BASELINES=0 CIUIC_ENV="$settings" "$(dirname "$0")/nccl_plugin_two_hosts.sh" \
    "$OUT/${settings:-defaults}" || status=1
done
echo "##### plugin with its defaults, then NCCL's Socket transport"
"$(dirname "$0")/nccl_plugin_two_hosts.sh" "$OUT/with-socket" || status=1
exit $status
