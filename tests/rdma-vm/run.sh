#!/usr/bin/env bash
# Runs a command inside a QEMU guest that has a real RDMA stack: Debian's kernel with
# Soft-RoCE (rdma_rxe), the host's root shared read-only so every host binary and library
# runs there unchanged. See tests/rdma-vm/README.md.
#
#   tests/rdma-vm/run.sh [--nodes 1|2] [--timeout S] [--mem MB] [--rw DIR]... [--env NAME=VALUE]... [--verbose] -- COMMAND...
#   tests/rdma-vm/run.sh --prepare     # only fetch the kernel and build the initramfs
#
# Exit status: the command's; 77 when the VM cannot run here (reason on one line);
# 124 when the command ran past --timeout; 1 when the guest failed before the command.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${CIUIC_RDMA_VM_CACHE:-$repo/_build/rdma-vm}

nodes=1 timeout=300 mem=2048 prepare_only=0 verbose=0
rw_dirs=() extra_env=()
usage() { sed -n '6,7p' "$0" | sed 's/^# *//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --rw) rw_dirs+=("$(cd "$2" && pwd)"); shift 2 ;;
    --env) extra_env+=("$2"); shift 2 ;;
    --prepare) prepare_only=1; shift ;;
    --verbose) verbose=1; shift ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "rdma-vm: unknown option $1" >&2; usage ;;
  esac
done
case "$nodes" in 1|2) ;; *) echo "rdma-vm: --nodes must be 1 or 2" >&2; exit 2 ;; esac
[ "$prepare_only" = 1 ] || [ $# -gt 0 ] || usage
[ ${#rw_dirs[@]} -le 4 ] || { echo "rdma-vm: at most 4 --rw folders" >&2; exit 2; }

skip() { echo "rdma-vm: SKIPPED: $*" >&2; exit 77; }

# --- QEMU -------------------------------------------------------------------------------
qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || skip "qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)"
qemu_devices=$("$qemu" -device help 2> /dev/null || true)
grep -q '"virtio-9p-pci"' <<< "$qemu_devices" ||
  skip "this QEMU has no virtio-9p (virtfs) support, which shares the host root"
[ "$(uname -m)" = x86_64 ] || skip "the guest kernel is x86_64 and this host is $(uname -m)"

# --- Kernel and modules: Debian's, fetched once into the cache ---------------------------
# Load order matters: each module's dependencies come first. crc32_generic provides the
# crc32 that rdma_rxe asks the crypto API for; veth is for --nodes 2; the bridge and the
# netem qdisc are for the network-namespace fault tests (tests/fault), which need a kernel
# with netem to add delay.
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         netfs fscache 9pnet 9p 9pnet_virtio failover net_failover virtio_net
         overlay veth udp_tunnel ip6_udp_tunnel crc32_generic ib_core ib_uverbs rdma_rxe
         llc stp bridge sch_netem)

fetch_kernel() {
  local tmp pkg deb
  command -v dpkg-deb > /dev/null || skip "no kernel in $cache and no dpkg-deb to unpack one"
  tmp=$(mktemp -d "$cache/fetch.XXXXXX")
  if [ -n "${CIUIC_RDMA_VM_KERNEL_DEB:-}" ]; then
    deb=$CIUIC_RDMA_VM_KERNEL_DEB
  else
    command -v apt-get > /dev/null || { rm -rf "$tmp"; skip "no kernel in $cache and no apt-get to fetch one (set CIUIC_RDMA_VM_KERNEL_DEB)"; }
    # The versioned package that linux-image-amd64 points at today: pinned names vanish
    # from the archive.
    pkg=$(apt-cache depends linux-image-amd64 2> /dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || { rm -rf "$tmp"; skip "apt-cache knows no linux-image-amd64 (run apt-get update)"; }
    echo "rdma-vm: fetching $pkg into $cache" >&2
    (cd "$tmp" && apt-get download "$pkg" > "$tmp/apt.log" 2>&1) ||
      { rm -rf "$tmp"; skip "apt-get download $pkg failed (offline?)"; }
    deb=$(ls "$tmp"/*.deb)
  fi
  mkdir -p "$tmp/x"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/vmlinuz-*' \
    $(printf "*/%s.ko " "${modules[@]}") ||
    { rm -rf "$tmp"; echo "rdma-vm: cannot unpack $deb" >&2; exit 1; }
  rm -rf "$cache/kernel"
  mkdir -p "$cache/kernel/modules"
  mv "$tmp"/x/boot/vmlinuz-* "$cache/kernel/vmlinuz"
  local m f
  for m in "${modules[@]}"; do
    f=$(find "$tmp/x/lib/modules" -name "$m.ko" | head -1)
    [ -n "$f" ] || { rm -rf "$tmp"; echo "rdma-vm: $deb has no $m.ko" >&2; exit 1; }
    cp "$f" "$cache/kernel/modules/"
  done
  extract_vmlinux "$cache/kernel/vmlinuz" "$cache/kernel/vmlinux" || rm -f "$cache/kernel/vmlinux"
  basename "$deb" > "$cache/kernel/source"
  rm -rf "$tmp"
}

# The uncompressed ELF kernel boots straight into its PVH entry point: no BIOS real mode,
# no decompression under emulation (measured: 8 s instead of 15 s to power-off under
# load). Only kept when it has the PVH note; otherwise QEMU boots vmlinuz.
extract_vmlinux() {
  local offset
  offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$1" 2> /dev/null | head -1 | cut -d: -f1)
  [ -n "$offset" ] || return 1
  tail -c +$((offset + 1)) "$1" | xz -dc > "$2" 2> /dev/null  # trailing bytes make xz complain
  command -v readelf > /dev/null || return 1
  local notes  # the Xen note 18 is the PVH entry point (older binutils have no name for it)
  notes=$(readelf -n "$2" 2> /dev/null) || return 1
  grep -qE 'PHYS32_ENTRY|note type: \(0x00000012\)' <<< "$notes"
}

# The initramfs: static busybox, init and the modules; rebuilt when any of them changes.
build_initramfs() {
  local busybox stamp root
  busybox=$(command -v busybox || true)
  # The initramfs has no libraries: busybox must be the static build.
  [ -n "$busybox" ] && ! ldd "$busybox" > /dev/null 2>&1 ||
    skip "no static busybox (Debian: apt-get install busybox-static)"
  command -v cpio > /dev/null || skip "no cpio (Debian: apt-get install cpio)"
  stamp=$( (cat "$here/init" "$busybox" "$cache/kernel/source"; printf "%s\n" "${modules[@]}") |
    md5sum | cut -c1-16)
  [ -f "$cache/initramfs-$stamp.cpio" ] && { echo "$cache/initramfs-$stamp.cpio"; return; }
  root=$(mktemp -d "$cache/initramfs.XXXXXX")
  mkdir -p "$root/bin" "$root/modules" "$root/dev"
  cp "$busybox" "$root/bin/busybox"
  cp "$here/init" "$root/init" && chmod +x "$root/init"
  cp "$cache"/kernel/modules/*.ko "$root/modules/"
  printf "%s\n" "${modules[@]}" > "$root/modules/order"
  (cd "$root" && find . | cpio -o -H newc --quiet > "$cache/initramfs-$stamp.cpio.part")
  mv "$cache/initramfs-$stamp.cpio.part" "$cache/initramfs-$stamp.cpio"
  find "$cache" -maxdepth 1 -name 'initramfs-*.cpio' ! -name "initramfs-$stamp.cpio" -delete
  rm -rf "$root"
  echo "$cache/initramfs-$stamp.cpio"
}

mkdir -p "$cache" || skip "cannot create the cache folder $cache"
exec 9> "$cache/.lock"
flock 9  # parallel runs: one fetches, the others wait for it
kernel_complete() {  # the kernel and every module of the list (the list grows)
  [ -f "$cache/kernel/vmlinuz" ] || return 1
  local m
  for m in "${modules[@]}"; do [ -f "$cache/kernel/modules/$m.ko" ] || return 1; done
}
kernel_complete || fetch_kernel
kernel=$cache/kernel/vmlinuz
[ -f "$cache/kernel/vmlinux" ] && kernel=$cache/kernel/vmlinux
initramfs=$(build_initramfs)
flock -u 9
[ "$prepare_only" = 1 ] && { echo "rdma-vm: ready: $(cat "$cache/kernel/source")"; exit 0; }

# --- The job: command, working directory and the caller's environment that matters -----
# Control folders of runs killed before their cleanup (SIGKILL) go after a day.
find "$cache" -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2> /dev/null || true
ctl=$(mktemp -d "$cache/run.XXXXXX")
qemu_pid=
cleanup() {
  if [ -n "$qemu_pid" ]; then kill -KILL "$qemu_pid" 2> /dev/null || true; fi
  rm -rf "$ctl"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cp "$here/guest.sh" "$ctl/guest.sh"
printf 'NODES=%s\nTIMEOUT=%s\n' "$nodes" "$timeout" > "$ctl/config"
printf '%s\n' "${rw_dirs[@]}" > "$ctl/rw"
{
  echo "# generated by tests/rdma-vm/run.sh"
  # The host's variables that tests and tools read; everything else starts clean.
  while IFS= read -r name; do
    printf 'export %s=%q\n' "$name" "${!name}"
  done < <(compgen -e | grep -E '^(CIUIC_|GTEST_|NCCL_|UCX_|RDMAV_|IBV_|LD_LIBRARY_PATH$|PYTHONPATH$|PYTHONDONTWRITEBYTECODE$|HOME$|USER$|LANG$|LC_|TZ$|TERM$)' || true)
  printf 'export PATH=%q\n' "/run/rdma-vm/bin:$PATH"
  printf 'export RDMA_VM=1 RDMA_VM_NODES=%s\n' "$nodes"
  for kv in "${extra_env[@]}"; do printf 'export %q\n' "$kv"; done
  printf 'cd %q || exit 1\n' "$PWD"
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$ctl/job.sh"

# --- Boot -------------------------------------------------------------------------------
# KVM where it really works: /dev/kvm can exist and still hang a guest in early boot
# (nested virtualisation), so a probe boot decides once per host boot; TCG otherwise.
# CIUIC_RDMA_VM_ACCEL=tcg|kvm overrides.
kernel_args="console=ttyS0 panic=-1 mitigations=off 8250.nr_uarts=1 random.trust_cpu=on"
[ "$verbose" = 1 ] || kernel_args="$kernel_args quiet loglevel=1"
kvm_works() {
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  local stamp verdict
  stamp="$cache/kvm-$(cat /proc/sys/kernel/random/boot_id 2> /dev/null || echo unknown)"
  if [ ! -f "$stamp" ]; then
    verdict=no
    { timeout -s KILL 20 setpriv --pdeathsig KILL -- "$qemu" -machine q35,accel=kvm -cpu host -smp 1 -m 256 \
      -nodefaults -display none -no-reboot -monitor none -serial none -kernel "$kernel" \
      -initrd "$initramfs" -append "$kernel_args rdmavm.probe" < /dev/null > /dev/null 2>&1; } 2> /dev/null && verdict=yes
    echo "$verdict" > "$stamp"
  fi
  [ "$(cat "$stamp")" = yes ]
}
accel=${CIUIC_RDMA_VM_ACCEL:-}
if [ -z "$accel" ]; then
  exec 9> "$cache/.lock" && flock 9
  if kvm_works; then accel=kvm; else accel=tcg; fi
  flock -u 9
fi
cpu=max
[ "$accel" = kvm ] && cpu=host
args=(-machine q35,accel="$accel" -cpu "$cpu" -smp 2 -m "$mem"
      -nodefaults -display none -no-reboot -monitor none -serial stdio
      -kernel "$kernel" -initrd "$initramfs"
      -append "$kernel_args"
      -netdev user,id=net0 -device virtio-net-pci,netdev=net0,romfile=
      -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
      -virtfs local,path="$ctl",mount_tag=ctl,security_model=none,multidevs=remap)
i=0
for d in "${rw_dirs[@]}"; do
  i=$((i + 1))
  args+=(-virtfs "local,path=$d,mount_tag=rw$i,security_model=none,multidevs=remap")
done

# QEMU dies with this script (pdeathsig), is killed on any exit (trap), and is given the
# command's time plus a margin for boot and setup before it is killed regardless.
limit=$((timeout + 120))
started=$(date +%s)
# (exec: QEMU's parent must be this script itself, not a forked copy that outlives it.)
(exec setpriv --pdeathsig KILL -- "$qemu" "${args[@]}" < /dev/null) &
qemu_pid=$!
# (sleep holds no descriptor of ours: a caller reading our output through a pipe, CTest
# for one, must see it close when we exit, not when sleep ends.)
(
  sleep "$limit" < /dev/null > /dev/null 2>&1
  kill -KILL "$qemu_pid" 2> /dev/null && echo "rdma-vm: the guest ran $limit s without powering off; QEMU killed" >&2
) &
host_watchdog=$!
set +e
wait "$qemu_pid"
qemu_rc=$?
set -e
qemu_pid=
kill "$host_watchdog" 2> /dev/null || true
elapsed=$(($(date +%s) - started))
[ "$verbose" = 1 ] && echo "rdma-vm: guest ran ${elapsed}s (accel $accel)" >&2

if [ -f "$ctl/timed_out" ]; then
  echo "rdma-vm: FAILED: the command ran past --timeout $timeout s: $*" >&2
  exit 124
fi
if [ -f "$ctl/setup_failed" ]; then
  echo "rdma-vm: FAILED: guest setup: $(cat "$ctl/setup_failed")" >&2
  exit 1
fi
if [ ! -f "$ctl/rc" ]; then
  echo "rdma-vm: FAILED: the guest stopped without the command's exit status (QEMU exit $qemu_rc after ${elapsed}s)" >&2
  exit 1
fi
exit "$(cat "$ctl/rc")"
