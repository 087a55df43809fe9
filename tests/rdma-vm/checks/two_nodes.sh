#!/bin/bash
# Inside the rdma-vm guest started with --nodes 2: two ranks, one per "node" (rank 0 on
# rxe_a at 192.168.77.1, rank 1 on rxe_b at 192.168.77.2), bootstrap and RDMA traffic
# across the veth wire. Every size of the all-reduce and all-gather sweeps is checked
# (ciuic-perf -c 1 counts wrong elements).
# Usage: two_nodes.sh BUILD_DIR
set -uo pipefail
build=$1
perf=$build/perftests/ciuic-perf
failed=0
run_pair() {  # <collective> <ciuic-perf args...>
  local coll=$1 secret port logs
  shift
  secret=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  port=$((29500 + RANDOM % 1000))
  logs=$(mktemp -d)
  local pids=()
  for node in a b; do
    rank=0; [ $node = b ] && rank=1
    rdma-vm-node $node env CIUIC_RANK=$rank CIUIC_WORLD_SIZE=2 CIUIC_ROOT=192.168.77.1:$port \
      CIUIC_SECRET="$secret" CIUIC_TRANSPORT=ibverbs CIUIC_TIMEOUT_MS=60000 \
      timeout 240 "$perf" "$coll" "$@" > "$logs/$node" 2>&1 &
    pids+=($!)
  done
  local rc_a=0 rc_b=0
  wait "${pids[0]}" || rc_a=$?
  wait "${pids[1]}" || rc_b=$?
  # Result rows: a numeric size first; #wrong is the 9th field (out of place) and the
  # 13th (in place) in nccl-tests' columns. Rank 0 prints them.
  local rows wrong
  rows=$(awk '$1 ~ /^[0-9]+$/ && NF >= 9' "$logs/a")
  wrong=$(awk '{w += $9; if (NF >= 13) w += $13} END {print w + 0}' <<< "$rows")
  if [ $rc_a -ne 0 ] || [ $rc_b -ne 0 ] || [ -z "$rows" ] || [ "$wrong" != 0 ]; then
    echo "FAIL $coll across nodes: rank 0 exit $rc_a, rank 1 exit $rc_b, wrong elements: $wrong"
    sed 's/^/  node a: /' "$logs/a"; sed 's/^/  node b: /' "$logs/b"
    failed=1
  else
    echo "ok   $coll across nodes (rxe_a <-> rxe_b), $(wc -l <<< "$rows") sizes, 0 wrong:"
    grep -E '^#' "$logs/a" | grep -iE 'transport|ranks' | sed 's/^/  /'
    sed 's/^/  /' <<< "$rows"
  fi
  rm -rf "$logs"
}
run_pair allreduce -b 8 -e 1M -f 8 -n 3 -w 1 -c 1
run_pair allgather -b 8 -e 1M -f 8 -n 3 -w 1 -c 1
exit $failed
