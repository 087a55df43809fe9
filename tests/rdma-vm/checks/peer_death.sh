#!/bin/bash
# Inside the rdma-vm guest: a rank killed (SIGKILL) in the middle of an all-reduce over
# ibverbs. The survivors must each return an error that names the dead rank, within
# CIUIC_TIMEOUT_MS, and nothing may hang. Ranks are processes started by ciuic-run.
# Usage: peer_death.sh BUILD_DIR
set -uo pipefail
build=$1
deadline_ms=20000
failed=0
trial() {  # <ranks> <victim> <delay_us>
  local n=$1 victim=$2 delay=$3 out rc start end
  start=$(date +%s%N)
  out=$("$build/tools/ciuic-run/ciuic-run" -n "$n" --tag-output --grace-ms 30000 --timeout-ms 90000 \
        -x CIUIC_TRANSPORT=ibverbs -x CIUIC_IB_HCA=rxe0 -x CIUIC_SOCKET_IFNAME=eth0 \
        -x CIUIC_TIMEOUT_MS=$deadline_ms -- "$build/tests/fault_rank" die 262144 "$victim" "$delay" 2>&1)
  rc=$?
  end=$(date +%s%N)
  local label="rank $victim of $n killed ${delay} us into an allreduce" bad=""
  grep -q "KILL rank=$victim " <<< "$out" || bad+=" the victim never reached its kill point;"
  [ $rc -eq 137 ] || bad+=" ciuic-run exit $rc, want 137 (the killed rank);"
  local killed_ns
  killed_ns=$(sed -n "s/.*KILL rank=$victim at_ns=\([0-9]*\).*/\1/p" <<< "$out" | head -1)
  for ((r = 0; r < n; r++)); do
    [ $r -eq "$victim" ] && continue
    local line
    line=$(grep -E "RESULT rank=$r " <<< "$out" | head -1)
    if [ -z "$line" ]; then bad+=" rank $r never returned (hang);"; continue; fi
    grep -q "code=0 " <<< "$line" && bad+=" rank $r returned success;"
    grep -q "rank $victim" <<< "${line#*msg=}" || bad+=" rank $r's error does not name rank $victim;"
    local end_ns
    end_ns=$(sed -n 's/.*end_ns=\([0-9]*\).*/\1/p' <<< "$line")
    if [ -n "$killed_ns" ] && [ $(((end_ns - killed_ns) / 1000000)) -gt $deadline_ms ]; then
      bad+=" rank $r took $(((end_ns - killed_ns) / 1000000)) ms after the kill;"
    fi
  done
  if [ -n "$bad" ]; then
    echo "FAIL $label:$bad"; sed 's/^/  /' <<< "$out"; failed=1
  else
    echo "ok   $label: survivors failed naming rank $victim ($(((end - start) / 1000000)) ms for the job)"
    grep RESULT <<< "$out" | sed 's/ start_ns=[0-9]* end_ns=[0-9]*//; s/^/  /'
  fi
}
trial 3 1 20000
trial 4 2 150000
exit $failed
