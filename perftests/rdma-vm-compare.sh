#!/usr/bin/env bash
# ciuic's ibverbs transport beside perftest on the same Soft-RoCE device, in one boot of
# the tests/rdma-vm guest: ib_write_bw at 64 KiB and 1 MiB and ib_send_lat at 8 B, then
# `ciuic-perf transport bw|lat --transport ibverbs` at the same sizes, and a table of
# ratios (ciuic / perftest). Under emulation the absolute figures mean little; the ratio,
# taken in the same guest minutes apart, is the point.
#
#   perftests/rdma-vm-compare.sh [--build DIR] [--baseline DIR] [--nodes 1|2] [--repeat N]
#
# --nodes 1 (default): both sides of each test on rxe0. --nodes 2: rxe_a -> rxe_b across
# the guest's veth wire. --repeat N runs the whole set N times (the table shows each).
# --baseline DIR: a second build (say, before a change) measured in the same boot right
# after the first, in two more columns.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

if [ "${1:-}" != --inside ]; then
  build=$repo/build baseline=- nodes=1 repeat=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --build) build=$(cd "$2" && pwd); shift 2 ;;
      --baseline) baseline=$(cd "$2" && pwd); shift 2 ;;
      --nodes) nodes=$2; shift 2 ;;
      --repeat) repeat=$2; shift 2 ;;
      *) sed -n '9p' "$0" | sed 's/^# *//' >&2; exit 2 ;;
    esac
  done
  limit=500; [ "$baseline" != - ] && limit=580
  exec "$repo/tests/rdma-vm/run.sh" --nodes "$nodes" --timeout $limit -- "$0" --inside "$build" "$repeat" "$baseline"
fi

# --- inside the guest -------------------------------------------------------------------
build=$2 repeat=$3 baseline=${4:--}
. "$repo/tests/rdma-vm/checks/lib.sh"
perf=$build/perftests/ciuic-perf
if [ "${RDMA_VM_NODES:-1}" = 2 ]; then
  server_dev=rxe_b client_dev=rxe_a server_addr=192.168.77.2 where="rxe_a -> rxe_b (veth)"
else
  server_dev=rxe0 client_dev=rxe0 server_addr=10.0.2.15 where="rxe0 -> rxe0"
fi

ciuic_ok=1 ciuic_why=""
if [ ! -x "$perf" ]; then
  ciuic_ok=0 ciuic_why="$perf is not built"
elif ! ciuic_has_ibverbs "$build"; then
  ciuic_ok=0 ciuic_why="this build of ciuic has no ibverbs transport (ciuic-perf --print-config has no CIUIC_IB_HCA)"
fi

# ciuic-perf transport <mode> <bytes> <iters>: two ranks (rank 0 sends), one per device.
# Prints the result row or returns 1 with the output kept in $ciuic_log.
ciuic_log=$(mktemp)
ciuic_run() {
  local mode=$1 bytes=$2 iters=$3 perf=${4:-$perf} secret port pids=() rc=0
  secret=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  port=$((29500 + RANDOM % 1000))
  local root=127.0.0.1 a_env=(CIUIC_IB_HCA=$client_dev CIUIC_SOCKET_IFNAME=eth0)
  local b_env=(CIUIC_IB_HCA=$server_dev CIUIC_SOCKET_IFNAME=eth0)
  if [ "${RDMA_VM_NODES:-1}" = 2 ]; then
    root=192.168.77.1 a_env=(CIUIC_IB_HCA=rxe_a CIUIC_SOCKET_IFNAME=vetha)
    b_env=(CIUIC_IB_HCA=rxe_b CIUIC_SOCKET_IFNAME=vethb)
  else
    root=10.0.2.15
  fi
  : > "$ciuic_log"
  env "${a_env[@]}" CIUIC_RANK=0 CIUIC_WORLD_SIZE=2 CIUIC_ROOT=$root:$port CIUIC_SECRET="$secret" \
    CIUIC_TRANSPORT=ibverbs timeout 200 "$perf" transport "$mode" -b "$bytes" -e "$bytes" -n "$iters" -w 5 \
    > "$ciuic_log.0" 2>&1 &
  pids+=($!)
  env "${b_env[@]}" CIUIC_RANK=1 CIUIC_WORLD_SIZE=2 CIUIC_ROOT=$root:$port CIUIC_SECRET="$secret" \
    CIUIC_TRANSPORT=ibverbs timeout 200 "$perf" transport "$mode" -b "$bytes" -e "$bytes" -n "$iters" -w 5 \
    > "$ciuic_log.1" 2>&1 &
  pids+=($!)
  wait "${pids[0]}" || rc=1
  wait "${pids[1]}" || rc=1
  cat "$ciuic_log.0" "$ciuic_log.1" > "$ciuic_log"
  [ "$perf" != "$build/perftests/ciuic-perf" ] || grep -m1 '^# transport' "$ciuic_log.0" > "$ciuic_log.transport" || true
  [ $rc = 0 ] || return 1
  awk '$1 ~ /^[0-9]+$/ {row = $0} END {if (row == "") exit 1; print row}' "$ciuic_log.0"
}

# One ciuic figure in the unit of the row ("failed" and the reason in ciuic_why otherwise).
ciuic_value() {
  local test=$1 bytes=$2 iters=$3 perf=$4 mode=bw n row
  [ "$test" = send_lat ] && mode=lat
  # ciuic-perf multiplies -n by 50 for sizes up to 64 KiB.
  n=$iters; [ "$bytes" -le 65536 ] && n=$(((iters + 49) / 50))
  if row=$(ciuic_run $mode "$bytes" "$n" "$perf"); then
    # bw row: bytes iterations BW_average[GB/s] MsgRate -> MiB/s; lat row: bytes n t_min t_avg t_p50 t_p99.
    if [ $mode = bw ]; then awk '{printf "%.2f", $3 * 1e9 / 1048576}' <<< "$row"; else awk '{print $5}' <<< "$row"; fi
  else
    echo failed
  fi
}
# Why the last ciuic_value failed (it runs in a subshell: its variables do not come back).
ciuic_failure() {
  echo "$1 failed: $(grep -m1 -E 'rank [01]:|error|Error' "$ciuic_log" || tail -1 "$ciuic_log")"
}
ratio_of() {
  if [[ "$1" =~ ^[0-9.]+$ ]] && [[ "$2" =~ ^[0-9.]+$ ]]; then
    awk -v p="$1" -v c="$2" 'BEGIN {if (p > 0) printf "%.2f", c / p; else print "n/a"}'
  else
    echo n/a
  fi
}

echo "# perftest vs ciuic ibverbs on $where, $(uname -r), $(nproc) vCPUs"
if [ "$baseline" != - ]; then
  echo "# baseline: $baseline/perftests/ciuic-perf, measured right after ciuic ($build)"
  printf "%-10s %-8s %16s %16s %8s %16s %8s\n" "test" "size" "perftest" "ciuic" "ratio" "baseline" "ratio"
else
  printf "%-10s %-8s %16s %16s %8s\n" "test" "size" "perftest" "ciuic" "ratio"
fi
results=()
for round in $(seq "$repeat"); do
  for spec in "write_bw 65536 200 64KiB" "write_bw 1048576 20 1MiB" "send_lat 8 1000 8B"; do
    read -r test bytes iters label <<< "$spec"
    tool=ib_$test
    p_val="" c_val="" ratio="n/a"
    if perftest_pair "$tool $label" "$server_dev" "$client_dev" "$server_addr" "$tool" -s "$bytes" -n "$iters" > /dev/null; then
      # ib_write_bw: BW average[MB/sec] (MiB/s) is field 4; ib_send_lat: t_typical (the median, usec) is field 5.
      if [ "$test" = write_bw ]; then p_val=$(awk '{print $4}' <<< "$PERFTEST_ROW"); else p_val=$(awk '{print $5}' <<< "$PERFTEST_ROW"); fi
    else
      p_val=failed
    fi
    if [ $ciuic_ok = 1 ]; then
      c_val=$(ciuic_value "$test" "$bytes" "$iters" "$perf")
      [ "$c_val" != failed ] || ciuic_why=$(ciuic_failure "$perf")
    else
      c_val="-"
    fi
    ratio=$(ratio_of "$p_val" "$c_val")
    unit="MiB/s"; [ "$test" = send_lat ] && unit="us p50"
    if [ "$baseline" != - ]; then
      b_val=$(ciuic_value "$test" "$bytes" "$iters" "$baseline/perftests/ciuic-perf")
      [ "$b_val" != failed ] || ciuic_why=$(ciuic_failure "$baseline/perftests/ciuic-perf")
      printf "%-10s %-8s %16s %16s %8s %16s %8s\n" "$test" "$label" "$p_val $unit" "$c_val $unit" "$ratio" \
        "$b_val $unit" "$(ratio_of "$p_val" "$b_val")"
    else
      printf "%-10s %-8s %16s %16s %8s\n" "$test" "$label" "$p_val $unit" "$c_val $unit" "$ratio"
    fi
  done
done
[ -s "$ciuic_log.transport" ] && echo "# ciuic: $(sed 's/^# //' "$ciuic_log.transport")"
rm -f "$ciuic_log" "$ciuic_log".*
echo "# ratio = ciuic / perftest: bandwidth wants >= 0.9, latency <= 1.2 (docs/performance.md)"
if [ -n "$ciuic_why" ]; then
  echo "# ciuic: $ciuic_why"
  [ $ciuic_ok = 1 ] || exit 0
  exit 1
fi
