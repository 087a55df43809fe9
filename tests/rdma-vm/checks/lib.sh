# Shared by the checks that run inside the rdma-vm guest (sourced, not run).

# check_device <rxe device>: listed by ibv_devices, port 1 ACTIVE in ibv_devinfo.
check_device() {
  if ! ibv_devices | awk '{print $1}' | grep -qx "$1"; then
    echo "FAIL ibv_devices does not list $1"; ibv_devices; return 1
  fi
  local state
  state=$(ibv_devinfo -d "$1" | awk '/state:/ {print $2; exit}')
  if [ "$state" != PORT_ACTIVE ]; then
    echo "FAIL $1: ibv_devinfo port state is '$state', not PORT_ACTIVE"; ibv_devinfo -d "$1"; return 1
  fi
  echo "ok   $1: listed by ibv_devices, port 1 PORT_ACTIVE ($(ibv_devinfo -d "$1" | awk '/link_layer:/ {print $2}'))"
}

# perftest_pair <label> <server dev> <client dev> <server addr> <tool> <tool args...>
# Runs a perftest server in the background and its client against it (retrying until the
# server listens). Sets PERFTEST_ROW to the client's result row; prints why on failure.
perftest_pair() {
  local label=$1 sdev=$2 cdev=$3 addr=$4 tool=$5
  shift 5
  local port=$((18515 + RANDOM % 1000)) server server_log client_out="" client_rc=1
  server_log=$(mktemp)
  timeout 120 "$tool" -d "$sdev" -p "$port" -F "$@" > "$server_log" 2>&1 &
  server=$!
  for _ in $(seq 60); do
    client_out=$(timeout 120 "$tool" -d "$cdev" -p "$port" -F "$@" "$addr" 2>&1) && { client_rc=0; break; }
    client_rc=$?
    grep -q "Couldn't connect" <<< "$client_out" || break
    sleep 0.25
  done
  wait "$server"
  local server_rc=$?
  # The result row: a numeric size first, at least five fields.
  PERFTEST_ROW=$(awk '$1 ~ /^[0-9]+$/ && NF >= 5 {row = $0} END {print row}' <<< "$client_out" | tr -s ' \t' ' ')
  if [ $client_rc -ne 0 ] || [ $server_rc -ne 0 ] || [ -z "$PERFTEST_ROW" ]; then
    echo "FAIL $label: $tool client exit $client_rc, server exit $server_rc"
    tail -8 <<< "$client_out" | sed 's/^/  client: /'
    tail -8 "$server_log" | sed 's/^/  server: /'
    rm -f "$server_log"
    return 1
  fi
  rm -f "$server_log"
  echo "ok   $label: $PERFTEST_ROW"
}

# The ibverbs transport is built into this ciuic (the registry lists it)?
ciuic_has_ibverbs() {
  local config  # (no pipe into grep -q: under pipefail its early exit would fail the pipe)
  config=$("$1/perftests/ciuic-perf" --print-config 2> /dev/null) || return 1
  grep -q '^CIUIC_IB_HCA ' <<< "$config"
}
