#!/bin/bash
# Inside the rdma-vm guest, in the host's root (read-only) as root: builds the Soft-RoCE
# network, then runs the caller's job (ctl/job.sh) under the watchdog. Its exit status
# is the job's; init writes it to ctl/rc for run.sh.
ctl=/run/rdma-vm/ctl
# shellcheck source=/dev/null
. "$ctl/config"  # NODES, TIMEOUT
stty -onlcr 2> /dev/null  # the console is the caller's stdout: no CR before every LF
exec < /dev/null
fail() { echo "rdma-vm guest: $*" >&2; echo "$*" > "$ctl/setup_failed"; exit 1; }

wait_active() {  # <rdma device>: a fresh rxe port turns ACTIVE within a moment
  local state=/sys/class/infiniband/$1/ports/1/state
  for _ in $(seq 100); do
    grep -q ACTIVE "$state" 2> /dev/null && return 0
    sleep 0.05
  done
  fail "$1: port 1 never became ACTIVE ($(cat "$state" 2> /dev/null))"
}

hostname rdma-vm 2> /dev/null  # ranks name their host in errors
ip link set lo up || fail "ip link set lo up"
ip link set eth0 up || fail "eth0 missing (is virtio_net loaded?)"
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2 2> /dev/null
rdma link add rxe0 type rxe netdev eth0 || fail "rdma link add rxe0 netdev eth0 failed"
wait_active rxe0

mkdir -p /run/rdma-vm/bin
if [ "$NODES" = 2 ]; then
  # Two "nodes" joined by a veth wire, each with its own address and rxe device. rxe in
  # Linux 6.1 opens its UDP socket and routes only in the initial network namespace, so
  # both ends stay there (rxe on a veth end moved into another namespace never sees a
  # packet); policy routing sends traffic between the two addresses across the wire
  # instead of through the local table, and accept_local lets each end take packets
  # that come from an address of its own host.
  ip link add vetha type veth peer name vethb || fail "cannot create the veth pair"
  ip addr add 192.168.77.1/24 dev vetha
  ip addr add 192.168.77.2/24 dev vethb
  ip link set vetha up && ip link set vethb up
  for conf in vetha vethb all; do
    echo 1 > /proc/sys/net/ipv4/conf/$conf/accept_local
    echo 0 > /proc/sys/net/ipv4/conf/$conf/rp_filter
  done
  # Local table after the wire rules; each address reaches the other across the veth.
  # "iif lo" limits the rules to traffic sent from this host: what arrives on the wire
  # is delivered through the local table.
  ip rule add pref 100 from 192.168.77.1 to 192.168.77.2 iif lo lookup 101
  ip rule add pref 100 from 192.168.77.2 to 192.168.77.1 iif lo lookup 102
  ip route add 192.168.77.2 dev vetha src 192.168.77.1 table 101
  ip route add 192.168.77.1 dev vethb src 192.168.77.2 table 102
  ip rule add pref 200 lookup local
  ip rule del pref 0 lookup local
  rdma link add rxe_a type rxe netdev vetha || fail "rdma link add rxe_a netdev vetha failed"
  rdma link add rxe_b type rxe netdev vethb || fail "rdma link add rxe_b netdev vethb failed"
  wait_active rxe_a
  wait_active rxe_b
  cat > /run/rdma-vm/bin/rdma-vm-node << 'EOF'
#!/bin/bash
# rdma-vm-node a|b COMMAND...: runs COMMAND as node A or B: its rxe device, interface and
# address in CIUIC_IB_HCA / CIUIC_SOCKET_IFNAME / RDMA_VM_ADDR.
case "$1" in
  a|A) export CIUIC_IB_HCA=rxe_a CIUIC_SOCKET_IFNAME=vetha RDMA_VM_ADDR=192.168.77.1 RDMA_VM_PEER_ADDR=192.168.77.2 ;;
  b|B) export CIUIC_IB_HCA=rxe_b CIUIC_SOCKET_IFNAME=vethb RDMA_VM_ADDR=192.168.77.2 RDMA_VM_PEER_ADDR=192.168.77.1 ;;
  *) echo "usage: rdma-vm-node a|b COMMAND..." >&2; exit 2 ;;
esac
shift
exec "$@"
EOF
  chmod +x /run/rdma-vm/bin/rdma-vm-node
fi

# The job runs in its own process group so that the watchdog ends all of it.
cd / || exit 1
setsid bash "$ctl/job.sh" &
job=$!
(
  sleep "$TIMEOUT"
  echo "$TIMEOUT" > "$ctl/timed_out"
  echo "rdma-vm guest: the command ran past --timeout $TIMEOUT s; stopping it" >&2
  kill -TERM -- -$job 2> /dev/null
  sleep 3
  kill -KILL -- -$job 2> /dev/null
) &
watchdog=$!
wait $job
rc=$?
kill $watchdog 2> /dev/null
exit $rc
