#!/bin/bash
# Inside the rdma-vm guest: the RDMA stack itself works. The rxe devices are listed with an
# ACTIVE port, and perftest's ib_write_bw and ib_send_lat pairs move data on rxe0 (server
# and client on one device) and, with --nodes 2, from rxe_a to rxe_b across the veth wire.
# One line per check; exits 1 if any failed.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

failed=0
devices=(rxe0)
[ "${RDMA_VM_NODES:-1}" = 2 ] && devices+=(rxe_a rxe_b)
for d in "${devices[@]}"; do check_device "$d" || failed=1; done

# ib_write_bw row: #bytes #iterations BW_peak BW_average MsgRate (MB/s).
# A zero average with exit 0 means every write completed but perftest's cycle-to-time
# conversion failed (the same emulated-clock trouble as ib_send_lat's "inf" on a loaded host):
# try again, and after three such runs say so rather than fail on perftest's clock.
write_bw() {
  local attempt
  for attempt in 1 2 3; do
    perftest_pair "ib_write_bw 64 KiB $1" "$2" "$3" "$4" ib_write_bw -s 65536 -n 50 || { failed=1; return; }
    awk '{exit !($4 > 0)}' <<< "$PERFTEST_ROW" && return
    echo "note ib_write_bw $1: run $attempt completed every write but timed them at zero bandwidth"
  done
  echo "note ib_write_bw $1: every write completed in three runs, but perftest could not time them (CPU clock)"
}
# ib_send_lat row: #bytes #iterations t_min t_max t_typical ... (usec).
send_lat() {
  perftest_pair "ib_send_lat 8 B $1" "$2" "$3" "$4" ib_send_lat -s 8 -n 100 || { failed=1; return; }
  # The exchanges completed (exit 0, a row); "inf" only means that perftest could not turn
  # CPU cycles into time, which happens under emulation on a loaded host.
  if grep -q inf <<< "$PERFTEST_ROW"; then
    echo "note ib_send_lat $1: every exchange completed, but perftest could not time them (CPU clock)"
  else
    awk '{exit !($5 > 0)}' <<< "$PERFTEST_ROW" || { echo "FAIL ib_send_lat $1: no latency measured"; failed=1; }
  fi
}

write_bw "rxe0 -> rxe0" rxe0 rxe0 10.0.2.15
send_lat "rxe0 -> rxe0" rxe0 rxe0 10.0.2.15
if [ "${RDMA_VM_NODES:-1}" = 2 ]; then
  write_bw "rxe_a -> rxe_b" rxe_b rxe_a 192.168.77.2
  send_lat "rxe_a -> rxe_b" rxe_b rxe_a 192.168.77.2
fi
exit $failed
